//! The recovery planner: a pure function, without I/O, from a recovery target, the backups, the
//! WAL index and the timeline histories to a plan — which backup, which timelines, exactly which
//! segments, and the record where PostgreSQL will stop — or to the reason the target cannot be
//! reached. PostgreSQL's own rules decide (`recoveryStopsBefore`/`After`): a time target stops
//! before the first commit or abort whose time is past it (at or past it, when exclusive), in WAL
//! order; an xid target stops after that transaction's end (before it, when exclusive); a
//! restore point stops after it; a stop before the backup is consistent is an error.
//!
//! The WAL index keeps ranges per segment (commit times, XIDs, restore points), not every
//! transaction end: the planner finds the segment where recovery stops from the ranges and asks
//! the caller's [`SegmentEvents`] for that segment's transaction ends, so a plan over years of
//! WAL reads one segment.
//!
//! Split as the work divides: `timelines` (the path of timelines and the backups on it), `stop`
//! (the record where recovery stops), `stretch` (the archived WAL from a backup on), `switches`
//! (the older timeline's copies of segments where a switch falls inside, which a restore puts
//! in `pg_wal`), `windows` (what restores can reach, for `info`); this file holds the types and
//! puts a plan together.
//!
//! May import: `pg/` and `planning::target`. Nothing here reads a file or the repository.

mod stop;
mod stretch;
mod switches;
#[cfg(test)]
mod tests;
mod timelines;
mod windows;

use std::collections::{BTreeMap, BTreeSet};

use super::target::{PlanRequest, RecoveryTarget};
use crate::pg::history::TimelineHistory;
use crate::pg::wal::{RestorePoint, SegmentSummary, XactEnd};
use crate::pg::{Lsn, SegmentName, SegmentSize, TimelineId, time};
pub use stop::StopPoint;
use stop::{earliest_known_time, first_stop, lsn_stop_segment};
use stretch::{Stretch, stretch_from, unbroken_stretch};
pub use switches::{CopySource, SwitchSegment};
use timelines::Route;
pub use timelines::TimelineSpan;
pub use windows::{RecoverableWindow, recoverable_windows};

/// A backup as the planner needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupPoint {
    pub label: String,
    pub timeline: TimelineId,
    /// Where replay starts.
    pub start: Lsn,
    /// Where the backup is consistent.
    pub stop: Lsn,
}

/// An archived segment and what its records say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedSegment {
    pub bytes: u64,
    pub summary: SegmentSummary,
}

/// The WAL index by (timeline, segment number).
pub type SegmentIndex = BTreeMap<(TimelineId, u64), IndexedSegment>;

/// The archived `.partial` files by (timeline, segment number).
pub type PartialSegments = BTreeSet<(TimelineId, u64)>;

/// Timeline histories by timeline.
pub type Histories = BTreeMap<TimelineId, TimelineHistory>;

/// The events of one segment that a target can stop at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentDetail {
    pub xact_ends: Vec<XactEnd>,
    pub restore_points: Vec<RestorePoint>,
}

/// Reads the events of an archived segment: every transaction end and restore point starting
/// in `segment`, including the record that continues into `next` when there is one (read from
/// both). The caller supplies it; the planner itself does no I/O.
pub trait SegmentEvents {
    fn segment_events(
        &self,
        segment: SegmentName,
        next: Option<SegmentName>,
    ) -> Result<SegmentDetail, String>;

    /// The first record in `segment` that starts at or past `from`, if any.
    fn first_record_from(&self, segment: SegmentName, from: Lsn) -> Result<Option<Lsn>, String>;
}

/// What is archived.
pub struct Archive<'a> {
    pub segment_size: SegmentSize,
    pub backups: &'a [BackupPoint],
    /// Keyed by (timeline, segment number).
    pub segments: &'a SegmentIndex,
    pub partials: &'a PartialSegments,
    pub histories: &'a Histories,
    pub events: &'a dyn SegmentEvents,
}

/// How to recover to the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPlan {
    pub backup: String,
    pub why: String,
    pub timeline: TimelineId,
    pub path: Vec<TimelineSpan>,
    /// Every segment recovery reads, in order, from the backup's start to the stop record.
    pub segments: Vec<SegmentName>,
    pub bytes: u64,
    pub stop: StopPoint,
    /// The switches inside a segment on the path up to the stop: the older timeline's copies
    /// a restore may put in `pg_wal` ([`RecoveryPlan::copies_to_place`]).
    pub switch_segments: Vec<SwitchSegment>,
}

impl RecoveryPlan {
    /// The older timeline's copies a restore of a backup starting at `backup_start` puts in
    /// `pg_wal`: those of the switches after it. Before it, the backup's checkpoint wrote every
    /// prepared transaction's state to `pg_twophase`, so none is read from WAL.
    pub fn copies_to_place(&self, backup_start: Lsn) -> Vec<&SwitchSegment> {
        self.switch_segments
            .iter()
            .filter(|s| backup_start < s.switch)
            .collect()
    }
}

/// Why the target cannot be reached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the stanza has no backup yet: take one with 'tidemark backup'")]
    NoBackup,
    #[error("timeline {0} has no history file in the archive, so its ancestry is unknown")]
    UnknownTimeline(TimelineId),
    #[error("no backup lies on the path of timeline {0}")]
    NoBackupOnPath(TimelineId),
    #[error(
        "no backup ends before the target: the earliest point a restore can reach is the end of backup {label} at {stop}"
    )]
    NoBackupBefore { label: String, stop: Lsn },
    #[error(
        "WAL segment {missing} is not in the archive: recovery from backup {label} cannot get past it"
    )]
    Gap { missing: SegmentName, label: String },
    #[error(
        "the archived WAL along timeline {timeline} does not reach the target: {what} is archived yet, so PostgreSQL would stop with \"recovery ended before configured recovery target was reached\"; {today}"
    )]
    NotReached {
        timeline: TimelineId,
        what: String,
        today: String,
    },
    #[error("cannot read the records of archived segment {segment}: {reason}")]
    Unreadable {
        segment: SegmentName,
        reason: String,
    },
}

/// Plans recovery to `request` from what `archive` holds.
pub fn plan(archive: &Archive<'_>, request: &PlanRequest) -> Result<RecoveryPlan, PlanError> {
    if archive.backups.is_empty() {
        return Err(PlanError::NoBackup);
    }
    let route = Route::choose(archive, request.timeline)?;
    match &request.target {
        RecoveryTarget::EndOfArchive | RecoveryTarget::Immediate => {
            plan_from_newest(archive, &route, &request.target)
        }
        RecoveryTarget::Lsn(target) => plan_to_lsn(archive, &route, *target),
        RecoveryTarget::Time { .. } | RecoveryTarget::Xid { .. } | RecoveryTarget::Name(_) => {
            plan_to_record(archive, &route, request)
        }
    }
}

/// The plan that restores `backup` and replays `stretch` along `route`, stopping at `stop`.
fn planned(
    archive: &Archive<'_>,
    route: &Route<'_>,
    backup: &BackupPoint,
    why: String,
    stretch: Stretch,
    stop: StopPoint,
) -> RecoveryPlan {
    RecoveryPlan {
        switch_segments: switches::switch_segments(
            archive,
            &route.path,
            stretch
                .segments
                .last()
                .and_then(|s| s.segment_number(archive.segment_size).ok()),
        ),
        backup: backup.label.clone(),
        why,
        timeline: route.timeline,
        path: route.path.clone(),
        segments: stretch.segments,
        bytes: stretch.bytes,
        stop,
    }
}

/// Plans recovery from the newest backup: to where it is consistent (`immediate`), or through
/// all archived WAL.
fn plan_from_newest(
    archive: &Archive<'_>,
    route: &Route<'_>,
    target: &RecoveryTarget,
) -> Result<RecoveryPlan, PlanError> {
    let newest = route.newest();
    let immediate = *target == RecoveryTarget::Immediate;
    let segment_bytes = u64::from(archive.segment_size.bytes());
    let last = immediate.then(|| (newest.stop.0.max(1) - 1) / segment_bytes);
    let stretch = unbroken_stretch(archive, &route.path, newest, last)?;
    let stop = if immediate {
        StopPoint::Consistency(newest.stop)
    } else {
        StopPoint::EndOfArchive(stretch.end)
    };
    let why = "it is the newest backup".to_owned();
    Ok(planned(archive, route, newest, why, stretch, stop))
}

/// Plans recovery to the first record at or past LSN `target`.
fn plan_to_lsn(
    archive: &Archive<'_>,
    route: &Route<'_>,
    target: Lsn,
) -> Result<RecoveryPlan, PlanError> {
    let path = &route.path;
    let backup = route.newest_consistent_by(target)?;
    let stretch = match lsn_stop_segment(archive, path, target)? {
        Ok(last) => unbroken_stretch(archive, path, backup, Some(last))?,
        Err(missing) => {
            // A hole before it, or in it with WAL archived beyond, is a gap.
            let before = missing.saturating_sub(1);
            unbroken_stretch(archive, path, backup, Some(before))?;
            let after = stretch_from(archive, path, backup, None);
            if let Some(missing) = after.missing {
                return Err(PlanError::Gap {
                    missing,
                    label: backup.label.clone(),
                });
            }
            return Err(PlanError::NotReached {
                timeline: route.timeline,
                what: format!("no record starting at or past {target}"),
                today: format!("today a restore can reach LSN {}", after.end),
            });
        }
    };
    let why = format!(
        "it is the newest backup consistent (at {}) before {target}",
        backup.stop
    );
    Ok(planned(
        archive,
        route,
        backup,
        why,
        stretch,
        StopPoint::AtLsn(target),
    ))
}

/// Plans recovery to a target that stops at a record: a time, a transaction or a restore point.
fn plan_to_record(
    archive: &Archive<'_>,
    route: &Route<'_>,
    request: &PlanRequest,
) -> Result<RecoveryPlan, PlanError> {
    let path = &route.path;
    let Some((lsn, stop, last)) = first_stop(archive, path, request)? else {
        return Err(not_reached(archive, route, &request.target));
    };
    // The newest backup whose state does not yet include the stop record.
    let backup = route.newest_consistent_by(lsn)?;
    if let RecoveryTarget::Time { at, .. } = request.target
        && earliest_known_time(archive, path, backup).is_some_and(|known| at < known)
    {
        return Err(PlanError::NoBackupBefore {
            label: backup.label.clone(),
            stop: backup.stop,
        });
    }
    let stretch = unbroken_stretch(archive, path, backup, Some(last))?;
    let why = format!(
        "it is the newest backup consistent (at {}) before recovery stops at {lsn}",
        backup.stop
    );
    Ok(planned(archive, route, backup, why, stretch, stop))
}

/// Why no archived record stops recovery for `target`, and what a restore can reach today; a
/// gap in the archive, if there is one, comes first.
fn not_reached(archive: &Archive<'_>, route: &Route<'_>, target: &RecoveryTarget) -> PlanError {
    let stretch = match unbroken_stretch(archive, &route.path, route.newest(), None) {
        Ok(stretch) => stretch,
        Err(gap) => return gap,
    };
    let what = match target {
        RecoveryTarget::Time { at, .. } => {
            format!("no commit or abort after {}", time::format_utc(*at))
        }
        RecoveryTarget::Xid { xid, .. } => format!("no end of transaction {xid}"),
        RecoveryTarget::Name(name) => format!("no restore point '{name}'"),
        _ => unreachable!("only these targets stop at a record"),
    };
    let today = match stretch.last_xact {
        Some((_, time)) => format!(
            "today a restore can reach the last archived commit or abort, at {}",
            time::format_utc(time)
        ),
        None => format!("today a restore can reach LSN {}", stretch.end),
    };
    PlanError::NotReached {
        timeline: route.timeline,
        what,
        today,
    }
}
