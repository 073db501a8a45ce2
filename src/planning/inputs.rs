//! Loads what the pure planner needs from a stanza — its backups, the index entry of every
//! archived segment, its timeline history files — once, and plans over it: `restore`, `plan`
//! and `info` all see a stanza through [`StanzaPlanner`].
//!
//! May import: `repo/` (the catalog, the WAL index, archived objects), `pg/`, and the rest of
//! `planning/`.

use anyhow::Context;

use crate::pg::history::TimelineHistory;
use crate::pg::{TimelineId, WalFileName};
use crate::planning::planner::{
    self, Archive, BackupPoint, Histories, IndexedSegment, PartialSegments, PlanError,
    RecoverableWindow, RecoveryPlan, SegmentIndex,
};
use crate::planning::segment_events::ArchivedEvents;
use crate::planning::target::PlanRequest;
use crate::repo::Stanza;
use crate::repo::catalog::BackupRecord;
use crate::repo::object;

/// A stanza as the planner sees it, read once to plan over as often as asked.
pub struct StanzaPlanner<'s, 'r> {
    backups: Vec<BackupPoint>,
    segments: SegmentIndex,
    partials: PartialSegments,
    histories: Histories,
    events: ArchivedEvents<'s, 'r>,
}

impl<'s, 'r> StanzaPlanner<'s, 'r> {
    /// Reads the planner's inputs; `backups` are the stanza's, as `list_backups` gives them. A
    /// segment without an index entry is an error that says how to write the missing entries:
    /// planning around it would be guessing.
    pub fn load(
        stanza: &'s Stanza<'r>,
        backups: &[BackupRecord],
    ) -> anyhow::Result<StanzaPlanner<'s, 'r>> {
        let Loaded {
            segments,
            partials,
            histories,
        } = load_archive(stanza)?;
        Ok(StanzaPlanner {
            backups: backups
                .iter()
                .map(|b| BackupPoint {
                    start: b.start_lsn,
                    stop: b.stop_lsn,
                    timeline: b.timeline,
                    label: b.label.clone(),
                })
                .collect(),
            segments,
            partials,
            histories,
            events: ArchivedEvents { stanza },
        })
    }

    /// Plans `request`.
    pub fn plan(&self, request: &PlanRequest) -> Result<RecoveryPlan, PlanError> {
        planner::plan(&self.archive(), request)
    }

    /// What restores along `timeline` can reach.
    pub fn recoverable_windows(
        &self,
        timeline: TimelineId,
    ) -> Result<Vec<RecoverableWindow>, PlanError> {
        planner::recoverable_windows(&self.archive(), timeline)
    }

    fn archive(&self) -> Archive<'_> {
        Archive {
            segment_size: self.events.stanza.expected_cluster().segment_size,
            backups: &self.backups,
            segments: &self.segments,
            partials: &self.partials,
            histories: &self.histories,
            events: &self.events,
        }
    }
}

/// Plans `request` over what `stanza` holds.
pub fn plan_for(
    stanza: &Stanza<'_>,
    backups: &[BackupRecord],
    request: &PlanRequest,
) -> anyhow::Result<RecoveryPlan> {
    Ok(StanzaPlanner::load(stanza, backups)?.plan(request)?)
}

/// What the planner reads of the archive.
struct Loaded {
    segments: SegmentIndex,
    partials: PartialSegments,
    histories: Histories,
}

/// The index entry of every archived segment, which `.partial` files are archived, and every
/// timeline history.
fn load_archive(stanza: &Stanza<'_>) -> anyhow::Result<Loaded> {
    let size = stanza.expected_cluster().segment_size;
    let mut segments = SegmentIndex::new();
    let mut partials = PartialSegments::new();
    let mut histories = Histories::new();
    // Reading the packs is CPU work, listing the archive is system calls: side by side.
    let (packed, listed) = std::thread::scope(|scope| {
        let packing = scope.spawn(|| stanza.packed_wal_index());
        let listed = stanza.list_wal();
        (
            packing.join().expect("reading the packs does not panic"),
            listed,
        )
    });
    let mut packed = packed?;
    for (name, listed) in listed? {
        match name {
            WalFileName::Segment(segment) => {
                let entry = match packed.remove(&name.to_string()) {
                    Some(entry) => entry,
                    None => stanza.get_wal_index(name)?.with_context(|| {
                        format!("archived segment {name} has no WAL index entry: run 'tidemark index rebuild'")
                    })?,
                };
                segments.insert(
                    (segment.timeline, segment.segment_number(size)?),
                    IndexedSegment {
                        bytes: listed.size,
                        summary: entry.summary,
                    },
                );
            }
            WalFileName::History(timeline) => {
                histories.insert(timeline, read_history(stanza, name, timeline)?);
            }
            WalFileName::Partial(segment) => {
                partials.insert((segment.timeline, segment.segment_number(size)?));
            }
            WalFileName::BackupHistory { .. } => {}
        }
    }
    Ok(Loaded {
        segments,
        partials,
        histories,
    })
}

/// The archived history file `name` of `timeline`, decoded and parsed.
fn read_history(
    stanza: &Stanza<'_>,
    name: WalFileName,
    timeline: TimelineId,
) -> anyhow::Result<TimelineHistory> {
    let stored = stanza
        .get_wal(name)?
        .with_context(|| format!("{name} vanished"))?;
    let mut content = Vec::new();
    object::decode_into(&stored, &mut content)
        .with_context(|| format!("archived object {} is damaged", stanza.wal_key(name)))?;
    TimelineHistory::parse(timeline, &content).with_context(|| format!("archived {name}"))
}
