//! The stop record: where PostgreSQL stops recovery for a target, by its own rules
//! (`recoveryStopsBefore`/`After`), found from the WAL index's per-segment ranges and the
//! events of the one segment where it lies.

use super::timelines::{TimelineSpan, timeline_of_segment};
use super::{Archive, BackupPoint, PlanError, SegmentDetail};
use crate::pg::wal::{RestorePoint, SegmentSummary, XactEnd};
use crate::pg::{Lsn, SegmentName, time};
use crate::planning::target::{PlanRequest, RecoveryTarget};

/// The record at which recovery will stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopPoint {
    /// Before this transaction end (not applied).
    BeforeTransaction {
        lsn: Lsn,
        xid: u32,
        time: i64,
    },
    /// After this transaction end (applied).
    AfterTransaction {
        lsn: Lsn,
        xid: u32,
        time: i64,
    },
    AfterRestorePoint {
        lsn: Lsn,
        name: String,
    },
    /// At the backup's consistency point.
    Consistency(Lsn),
    /// At the first record at or past this LSN.
    AtLsn(Lsn),
    /// Where the archived WAL ends.
    EndOfArchive(Lsn),
}

/// One event of the WAL that a target can stop at, in WAL order.
enum Event<'s> {
    Transaction(&'s XactEnd),
    RestorePoint(&'s RestorePoint),
}

impl Event<'_> {
    fn lsn(&self) -> Lsn {
        match self {
            Event::Transaction(x) => x.lsn,
            Event::RestorePoint(r) => r.lsn,
        }
    }
}

/// Decides whether recovery stops at `event`, as PostgreSQL would.
fn stops_at(event: &Event<'_>, request: &PlanRequest) -> Option<StopPoint> {
    match (event, &request.target) {
        (Event::Transaction(x), RecoveryTarget::Time { at: target, .. }) => {
            let past = if request.inclusive {
                x.time > *target
            } else {
                x.time >= *target
            };
            past.then_some(StopPoint::BeforeTransaction {
                lsn: x.lsn,
                xid: x.xid,
                time: x.time,
            })
        }
        (Event::Transaction(x), RecoveryTarget::Xid { xid, .. }) if u64::from(x.xid) == *xid => {
            Some(if request.inclusive {
                StopPoint::AfterTransaction {
                    lsn: x.lsn,
                    xid: x.xid,
                    time: x.time,
                }
            } else {
                StopPoint::BeforeTransaction {
                    lsn: x.lsn,
                    xid: x.xid,
                    time: x.time,
                }
            })
        }
        (Event::RestorePoint(r), RecoveryTarget::Name(name)) if r.name == *name => {
            Some(StopPoint::AfterRestorePoint {
                lsn: r.lsn,
                name: r.name.clone(),
            })
        }
        _ => None,
    }
}

/// Whether, by its summary, a segment can hold the record where recovery stops.
fn may_stop_in(summary: &SegmentSummary, request: &PlanRequest) -> bool {
    if summary.spill_undecoded {
        return true;
    }
    match &request.target {
        RecoveryTarget::Time { at: target, .. } => summary.max_time.is_some_and(|latest| {
            if request.inclusive {
                latest > *target
            } else {
                latest >= *target
            }
        }),
        RecoveryTarget::Xid { xid, .. } => {
            matches!((summary.min_xid, summary.max_xid), (Some(min), Some(max)) if (u64::from(min)..=u64::from(max)).contains(xid))
        }
        RecoveryTarget::Name(name) => summary.restore_points.iter().any(|r| r.name == *name),
        RecoveryTarget::EndOfArchive | RecoveryTarget::Immediate | RecoveryTarget::Lsn(_) => false,
    }
}

/// The first record, in WAL order along `path`, at which PostgreSQL stops for `request`,
/// over every archived segment: a backup whose state already includes it is too new.
pub(super) fn first_stop(
    archive: &Archive<'_>,
    path: &[TimelineSpan],
    request: &PlanRequest,
) -> Result<Option<(Lsn, StopPoint, u64)>, PlanError> {
    let size = archive.segment_size;
    for (&(timeline, segno), indexed) in archive.segments {
        if timeline != timeline_of_segment(path, segno, size) {
            continue;
        }
        let summary = &indexed.summary;
        if !may_stop_in(summary, request) {
            continue;
        }
        // Restore points are all in the summary; transaction ends only in the segment.
        let needs_segment = summary.spill_undecoded
            || matches!(
                request.target,
                RecoveryTarget::Time { .. } | RecoveryTarget::Xid { .. }
            );
        let detail = if needs_segment {
            let segment = SegmentName::from_segment_number(timeline, segno, size);
            let next_timeline = timeline_of_segment(path, segno + 1, size);
            let next = (summary.continues_into_next
                && archive.segments.contains_key(&(next_timeline, segno + 1)))
            .then(|| SegmentName::from_segment_number(next_timeline, segno + 1, size));
            archive
                .events
                .segment_events(segment, next)
                .map_err(|reason| PlanError::Unreadable { segment, reason })?
        } else {
            SegmentDetail {
                xact_ends: Vec::new(),
                restore_points: summary.restore_points.clone(),
            }
        };
        let mut events: Vec<Event<'_>> = detail
            .xact_ends
            .iter()
            .map(Event::Transaction)
            .chain(detail.restore_points.iter().map(Event::RestorePoint))
            .collect();
        events.sort_by_key(Event::lsn);
        for event in &events {
            if let Some(stop) = stops_at(event, request) {
                // A record that spills into the next segment is read from both.
                let last =
                    if summary.continues_into_next && summary.last_record == Some(event.lsn()) {
                        segno + 1
                    } else {
                        segno
                    };
                return Ok(Some((event.lsn(), stop, last)));
            }
        }
    }
    Ok(None)
}

/// The last segment recovery to LSN `target` reads: PostgreSQL stops at the first record that
/// starts at or past the target (after it when inclusive, before it otherwise, but having read
/// it whole either way), so the segment where that record ends. After a switch record, or when
/// the target lies past the last record start of its segment, that is a later segment. `Ok(Err)`
/// is the number of the first segment that is needed and not archived.
pub(super) fn lsn_stop_segment(
    archive: &Archive<'_>,
    path: &[TimelineSpan],
    target: Lsn,
) -> Result<Result<u64, u64>, PlanError> {
    let size = archive.segment_size;
    let name_of = |segno: u64| {
        SegmentName::from_segment_number(timeline_of_segment(path, segno, size), segno, size)
    };
    let summary_of = |segno: u64| {
        archive
            .segments
            .get(&(timeline_of_segment(path, segno, size), segno))
            .map(|indexed| &indexed.summary)
    };
    let holding = target.0 / u64::from(size.bytes());
    let mut segno = holding;
    // Find the segment where the stop record starts, and whether it spills into the next.
    let spills = loop {
        let Some(summary) = summary_of(segno) else {
            return Ok(Err(segno));
        };
        let spilling_last =
            |first: Lsn| summary.continues_into_next && summary.last_record == Some(first);
        if segno == holding {
            match summary.last_record {
                Some(last) if last >= target => {
                    if !summary.continues_into_next {
                        return Ok(Ok(segno));
                    }
                    // Only the last record spills: is an earlier one at or past the target?
                    let segment = name_of(segno);
                    let first = archive
                        .events
                        .first_record_from(segment, target)
                        .map_err(|reason| PlanError::Unreadable { segment, reason })?
                        .unwrap_or(last);
                    break spilling_last(first);
                }
                _ => {}
            }
        } else if let Some(first) = summary.first_record {
            break spilling_last(first);
        }
        segno += 1;
    };
    if !spills {
        return Ok(Ok(segno));
    }
    // The record ends in the first later segment that one record does not cover whole.
    loop {
        segno += 1;
        let Some(summary) = summary_of(segno) else {
            return Ok(Err(segno));
        };
        if summary.first_record.is_some() || !summary.continues_into_next {
            return Ok(Ok(segno));
        }
    }
}

/// The earliest time the archive vouches for before `backup`: when the WAL before it is not
/// archived back to the cluster's first segment (expired, or never archived), the records
/// there are unknown, and a commit among them may lie after a time target. Recovery from
/// `backup` would then stop at the first archived commit past the target and hand back a
/// state that already holds that unknown commit: PostgreSQL cannot tell. Every commit before
/// the missing WAL ended is no later than the first WAL-dated record after it — a commit, or a
/// checkpoint (whose time PostgreSQL truncates to the second, hence the second added) — up to
/// the backup's consistency point. `None` when the archive holds all WAL before the backup.
pub(super) fn earliest_known_time(
    archive: &Archive<'_>,
    path: &[TimelineSpan],
    backup: &BackupPoint,
) -> Option<i64> {
    let size = archive.segment_size;
    let bytes = u64::from(size.bytes());
    let present = |segno: u64| {
        archive
            .segments
            .contains_key(&(timeline_of_segment(path, segno, size), segno))
    };
    let mut first = backup.start.0 / bytes;
    while first > 1 && present(first - 1) {
        first -= 1;
    }
    if first <= 1 {
        return None;
    }
    (first..=backup.stop.0 / bytes)
        .filter_map(|segno| {
            let summary = &archive
                .segments
                .get(&(timeline_of_segment(path, segno, size), segno))?
                .summary;
            let checkpoint = summary
                .checkpoints
                .iter()
                .map(|c| time::from_unix_micros((c.time_unix + 1) * 1_000_000))
                .min();
            [summary.min_time, checkpoint].into_iter().flatten().min()
        })
        .min()
}
