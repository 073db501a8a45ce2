//! Timelines: the path of timelines recovery follows to a target timeline (from its history
//! file), which timeline each segment is read from along it, and which backups lie on it.

use super::{Archive, BackupPoint, Histories, PlanError};
use crate::pg::{Lsn, SegmentSize, TimelineId};
use crate::planning::target::TimelineChoice;

/// A stretch of the timeline path: `timeline` from `begins` until `ends`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineSpan {
    pub timeline: TimelineId,
    pub begins: Lsn,
    pub ends: Option<Lsn>,
}

/// The path to `timeline`: its ancestors from its history file, then itself.
pub(super) fn timeline_path(
    timeline: TimelineId,
    histories: &Histories,
) -> Result<Vec<TimelineSpan>, PlanError> {
    if timeline == TimelineId(1) {
        return Ok(vec![TimelineSpan {
            timeline,
            begins: Lsn(0),
            ends: None,
        }]);
    }
    let history = histories
        .get(&timeline)
        .ok_or(PlanError::UnknownTimeline(timeline))?;
    let mut path = Vec::new();
    let mut begins = Lsn(0);
    for entry in &history.entries {
        path.push(TimelineSpan {
            timeline: entry.parent,
            begins,
            ends: Some(entry.switch_point),
        });
        begins = entry.switch_point;
    }
    path.push(TimelineSpan {
        timeline,
        begins,
        ends: None,
    });
    Ok(path)
}

/// The timeline PostgreSQL reads segment `segno` from: the newest on the path that has begun
/// by then (a new timeline's first segment holds the parent's WAL up to the switch, too).
pub(super) fn timeline_of_segment(
    path: &[TimelineSpan],
    segno: u64,
    size: SegmentSize,
) -> TimelineId {
    let segment_bytes = u64::from(size.bytes());
    path.iter()
        .rev()
        .find(|span| span.begins.0 / segment_bytes <= segno)
        .map(|span| span.timeline)
        .unwrap_or(path[0].timeline)
}

/// Whether `backup` is consistent somewhere on `path`.
pub(super) fn on_path(backup: &BackupPoint, path: &[TimelineSpan]) -> bool {
    path.iter().any(|span| {
        span.timeline == backup.timeline
            && span.begins <= backup.stop
            && span.ends.is_none_or(|end| backup.stop <= end)
    })
}

/// The timeline recovery follows, its path, and the backups consistent on that path.
pub(super) struct Route<'a> {
    pub timeline: TimelineId,
    pub path: Vec<TimelineSpan>,
    /// Newest (latest consistency point) first; never empty.
    backups: Vec<&'a BackupPoint>,
}

impl<'a> Route<'a> {
    /// The route `choice` names over `archive`, whose backups are not empty: `current` is the
    /// newest backup's timeline, `latest` the highest timeline with a history file.
    pub fn choose(archive: &Archive<'a>, choice: TimelineChoice) -> Result<Route<'a>, PlanError> {
        let mut backups: Vec<&BackupPoint> = archive.backups.iter().collect();
        backups.sort_by_key(|b| std::cmp::Reverse(b.stop));
        let timeline = match choice {
            TimelineChoice::Exact(timeline) => timeline,
            TimelineChoice::Latest => archive
                .histories
                .keys()
                .copied()
                .max()
                .unwrap_or(TimelineId(1))
                .max(TimelineId(1)),
            TimelineChoice::Current => backups[0].timeline,
        };
        let path = timeline_path(timeline, archive.histories)?;
        backups.retain(|b| on_path(b, &path));
        if backups.is_empty() {
            return Err(PlanError::NoBackupOnPath(timeline));
        }
        Ok(Route {
            timeline,
            path,
            backups,
        })
    }

    /// The backup consistent last on the path.
    pub fn newest(&self) -> &'a BackupPoint {
        self.backups[0]
    }

    /// The newest backup consistent at or before `lsn`: a newer one already holds what lies
    /// there. None is an error that names the earliest point a restore can reach.
    pub fn newest_consistent_by(&self, lsn: Lsn) -> Result<&'a BackupPoint, PlanError> {
        self.backups
            .iter()
            .copied()
            .find(|b| b.stop <= lsn)
            .ok_or_else(|| {
                let oldest = self.backups[self.backups.len() - 1];
                PlanError::NoBackupBefore {
                    label: oldest.label.clone(),
                    stop: oldest.stop,
                }
            })
    }
}
