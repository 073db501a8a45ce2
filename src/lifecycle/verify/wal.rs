//! Whether the archived WAL is whole: per timeline, every segment from the oldest backup's start
//! (or, with `--backup`, that backup's start) to the end of the archive is there, a missing one
//! named with the backups whose restores it breaks; and the history files agree with the
//! segments: a timeline with segments has one, it does not start before its switch point's
//! segment, and its parent holds WAL up to that switch point (unless below every backup's
//! start, where nothing needs it). Pure: it works on what was listed and read.

use std::collections::{BTreeMap, BTreeSet};

use super::findings::Problem;
use crate::pg::history::TimelineHistory;
use crate::pg::{SegmentName, SegmentSize, TimelineId, WalFileName};
use crate::repo::layout;

/// What the archive holds, as `verify` saw it.
#[derive(Debug, Default)]
pub struct WalInventory {
    /// Archived segment numbers (not `.partial` files), per timeline.
    pub segments: BTreeMap<TimelineId, BTreeSet<u64>>,
    /// Archived history files: `Some` once read and parsed; `None` when only listed (`--fast`)
    /// or unreadable (reported where it was read).
    pub histories: BTreeMap<TimelineId, Option<TimelineHistory>>,
}

/// The WAL one backup needs: segments `from` to `to` of `timeline` (by segment number).
#[derive(Clone, Debug)]
pub struct WalNeed {
    pub label: String,
    pub timeline: TimelineId,
    pub from: u64,
    pub to: u64,
}

/// How far each backup's need reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// To the end of the archive, along every timeline descending from the backup's.
    EndOfArchive,
    /// To the backup's own last segment: what it needs to become consistent.
    Consistency,
}

/// The archive of stanza `stanza` (segments of `size`) checked against what `needs` require.
pub struct WalCheck<'a> {
    pub stanza: &'a str,
    pub size: SegmentSize,
    pub inventory: &'a WalInventory,
    pub needs: &'a [WalNeed],
    pub reach: Reach,
}

impl WalCheck<'_> {
    /// Every problem: missing stretches of segments, then history files that disagree.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for timeline in self.timelines() {
            problems.extend(self.missing_segments(timeline));
        }
        for (&timeline, segments) in &self.inventory.segments {
            problems.extend(self.history_problems(timeline, segments));
        }
        problems
    }

    /// Every timeline that holds segments, is named by a history file or is needed.
    fn timelines(&self) -> BTreeSet<TimelineId> {
        let inventory = self.inventory;
        inventory
            .segments
            .keys()
            .chain(inventory.histories.keys())
            .copied()
            .chain(self.needs.iter().map(|n| n.timeline))
            .collect()
    }

    /// Where `timeline` was started from: its parent and the segment number of the switch
    /// point, if its history file was read.
    fn switch(&self, timeline: TimelineId) -> Option<(TimelineId, u64, u64)> {
        let history = self.inventory.histories.get(&timeline)?.as_ref()?;
        let last = history.entries.last()?;
        let segment_bytes = u64::from(self.size.bytes());
        // The parent's last byte is the one before the switch point.
        let parent_last = last.switch_point.0.saturating_sub(1) / segment_bytes;
        Some((
            last.parent,
            last.switch_point.0 / segment_bytes,
            parent_last,
        ))
    }

    /// The timelines `timeline` descends from, per its history file (none if unread).
    fn ancestors(&self, timeline: TimelineId) -> Vec<TimelineId> {
        match self.inventory.histories.get(&timeline) {
            Some(Some(history)) => history.entries.iter().map(|e| e.parent).collect(),
            _ => Vec::new(),
        }
    }

    /// The needs whose restores read segment `segment` of `timeline`.
    fn needs_through(&self, timeline: TimelineId, segment: u64) -> Vec<&WalNeed> {
        let ancestors = self.ancestors(timeline);
        self.needs
            .iter()
            .filter(|n| n.from <= segment)
            .filter(|n| match self.reach {
                Reach::Consistency => n.timeline == timeline && segment <= n.to,
                Reach::EndOfArchive => n.timeline == timeline || ancestors.contains(&n.timeline),
            })
            .collect()
    }

    /// The segment numbers of `timeline` that must be archived, if any must.
    fn required(&self, timeline: TimelineId) -> Option<(u64, u64)> {
        let own = self.needs.iter().filter(|n| n.timeline == timeline);
        let mut from = own.clone().map(|n| n.from).min();
        let mut to = own.map(|n| n.to).max();
        if self.reach == Reach::Consistency {
            return Some((from?, to?));
        }
        let oldest = self.needs.iter().map(|n| n.from).min()?;
        if let Some((_, switch, _)) = self.switch(timeline)
            && !self.needs_through(timeline, switch).is_empty()
        {
            from = Some(from.map_or(switch, |f| f.min(switch)));
        }
        let last = self
            .inventory
            .segments
            .get(&timeline)
            .and_then(|s| s.last());
        let children_need = self
            .inventory
            .histories
            .keys()
            .filter_map(|&child| self.switch(child))
            .filter(|&(parent, _, parent_last)| parent == timeline && parent_last >= oldest)
            .map(|(_, _, parent_last)| parent_last);
        to = [to, last.copied()]
            .into_iter()
            .flatten()
            .chain(children_need)
            .max();
        Some((from?, to?))
    }

    /// One problem per stretch of missing segments that some backup needs.
    fn missing_segments(&self, timeline: TimelineId) -> Vec<Problem> {
        let Some((from, to)) = self.required(timeline) else {
            return Vec::new();
        };
        let empty = BTreeSet::new();
        let present = self.inventory.segments.get(&timeline).unwrap_or(&empty);
        let missing: Vec<u64> = (from..=to).filter(|n| !present.contains(n)).collect();
        stretches(&missing)
            .into_iter()
            .map(|(first, last)| self.missing_problem(timeline, first, last))
            .collect()
    }

    fn missing_problem(&self, timeline: TimelineId, first: u64, last: u64) -> Problem {
        let key = |n| {
            let name = SegmentName::from_segment_number(timeline, n, self.size);
            layout::wal_file(self.stanza, WalFileName::Segment(name)).to_string()
        };
        let object = if first == last {
            key(first)
        } else {
            format!("{} … {}", key(first), key(last))
        };
        let count = last - first + 1;
        let mut labels: Vec<&str> = self
            .needs_through(timeline, first)
            .into_iter()
            .map(|n| n.label.as_str())
            .collect();
        labels.dedup();
        let what = if count == 1 {
            "missing segment".to_owned()
        } else {
            format!("{count} missing segments")
        };
        Problem {
            object,
            problem: format!(
                "{what} of timeline {}: restores from backup(s) {} cannot replay past it",
                timeline.0,
                labels.join(", ")
            ),
            action: "if the cluster's pg_wal (or another copy) still has it, archive it with tidemark-archive; otherwise take a new backup, since the older ones cannot recover past this point".to_owned(),
        }
    }

    /// Whether `timeline`'s history file is archived and agrees with its `segments`.
    fn history_problems(&self, timeline: TimelineId, segments: &BTreeSet<u64>) -> Vec<Problem> {
        if timeline.0 == 1 {
            return Vec::new();
        }
        let key = layout::wal_file(self.stanza, WalFileName::History(timeline)).to_string();
        if !self.inventory.histories.contains_key(&timeline) {
            return vec![Problem {
                object: key,
                problem: format!(
                    "missing: timeline {} has archived segments but no history file, so recovery cannot follow it",
                    timeline.0
                ),
                action: format!(
                    "archive pg_wal/{:08X}.history from the cluster with tidemark-archive",
                    timeline.0
                ),
            }];
        }
        let (Some((parent, switch, _)), Some(&first)) = (self.switch(timeline), segments.first())
        else {
            return Vec::new();
        };
        if first >= switch {
            return Vec::new();
        }
        let name = SegmentName::from_segment_number(timeline, first, self.size);
        vec![Problem {
            object: layout::wal_file(self.stanza, WalFileName::Segment(name)).to_string(),
            problem: format!(
                "segment of timeline {} before its switch point from timeline {} (segment {switch:X} per {key}): the history file or the segment is not this cluster's",
                timeline.0, parent.0
            ),
            action: "compare both with the cluster's pg_wal and move the wrong one out of the repository".to_owned(),
        }]
    }
}

/// The runs of consecutive numbers in sorted `numbers`, as (first, last).
fn stretches(numbers: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &n in numbers {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == n => *last = n,
            _ => runs.push((n, n)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Lsn;

    const SIZE: SegmentSize = SegmentSize::DEFAULT;

    fn inventory(timelines: &[(u32, &[u64])]) -> WalInventory {
        let mut inventory = WalInventory::default();
        for (timeline, numbers) in timelines {
            inventory
                .segments
                .insert(TimelineId(*timeline), numbers.iter().copied().collect());
        }
        inventory
    }

    fn history(inventory: &mut WalInventory, timeline: u32, parent: u32, switch: u64) {
        let text = format!("{parent}\t{}\tno recovery target specified\n", Lsn(switch));
        let parsed = TimelineHistory::parse(TimelineId(timeline), text.as_bytes()).unwrap();
        inventory
            .histories
            .insert(TimelineId(timeline), Some(parsed));
    }

    fn need(label: &str, timeline: u32, from: u64, to: u64) -> WalNeed {
        WalNeed {
            label: label.into(),
            timeline: TimelineId(timeline),
            from,
            to,
        }
    }

    /// The one problem `problems` finds; fails unless there is exactly one.
    fn only_problem(inventory: &WalInventory, needs: &[WalNeed], reach: Reach) -> Problem {
        let mut found = problems(inventory, needs, reach);
        assert_eq!(found.len(), 1, "{found:?}");
        found.remove(0)
    }

    fn problems(inventory: &WalInventory, needs: &[WalNeed], reach: Reach) -> Vec<Problem> {
        WalCheck {
            stanza: "main",
            size: SIZE,
            inventory,
            needs,
            reach,
        }
        .problems()
    }

    #[test]
    fn a_hole_after_a_backup_is_named_with_the_backups_it_breaks_and_one_before_all_is_not() {
        let inventory = inventory(&[(1, &[1, 3, 4, 5, 7, 8, 9])]);
        let needs = [need("A", 1, 3, 4), need("B", 1, 8, 8)];
        let found = only_problem(&inventory, &needs, Reach::EndOfArchive);
        assert_eq!(
            found.object,
            "main/wal/0000000100000000/000000010000000000000006"
        );
        assert!(
            found
                .problem
                .starts_with("missing segment of timeline 1: restores from backup(s) A cannot"),
            "{}",
            found.problem
        );
        // Segment 2 lies below every backup: nothing needs it.
        assert!(problems(&inventory, &needs[1..], Reach::EndOfArchive).is_empty());
    }

    #[test]
    fn consistency_needs_only_the_backups_own_segments_and_stretches_are_one_line() {
        let inventory = inventory(&[(1, &[3, 4, 9])]);
        let needs = [need("A", 1, 3, 7)];
        let found = only_problem(&inventory, &needs, Reach::Consistency);
        assert_eq!(
            found.object,
            "main/wal/0000000100000000/000000010000000000000005 … main/wal/0000000100000000/000000010000000000000007"
        );
        assert!(found.problem.starts_with("3 missing segments"));
    }

    #[test]
    fn a_timeline_needs_its_history_file_and_must_not_start_before_its_switch_point() {
        let mut inv = inventory(&[(1, &[1, 2, 3, 4]), (2, &[3, 4])]);
        let needs = [need("A", 1, 1, 1)];
        let found = only_problem(&inv, &needs, Reach::EndOfArchive);
        assert_eq!(found.object, "main/wal/history/00000002.history");
        history(&mut inv, 2, 1, 3 * (16 << 20) + 0x100);
        assert!(problems(&inv, &needs, Reach::EndOfArchive).is_empty());
        history(&mut inv, 2, 1, 4 * (16 << 20) + 0x100);
        let found = only_problem(&inv, &needs, Reach::EndOfArchive);
        assert_eq!(
            found.object,
            "main/wal/0000000200000000/000000020000000000000003"
        );
        assert!(found.problem.contains("before its switch point"));
    }

    #[test]
    fn the_parent_must_hold_wal_up_to_the_switch_point_unless_no_backup_needs_it() {
        let mut inv = inventory(&[(1, &[5, 6]), (2, &[8, 9])]);
        history(&mut inv, 2, 1, 8 * (16 << 20) + 0x100);
        let found = only_problem(&inv, &[need("A", 1, 5, 5)], Reach::EndOfArchive);
        assert!(
            found.object.ends_with(
                "000000010000000000000007 … main/wal/0000000100000000/000000010000000000000008"
            ),
            "{}",
            found.object
        );
        assert!(found.problem.contains("backup(s) A "), "{}", found.problem);
        // A backup on timeline 2 after the switch needs nothing of timeline 1.
        assert!(problems(&inv, &[need("B", 2, 9, 9)], Reach::EndOfArchive).is_empty());
    }
}
