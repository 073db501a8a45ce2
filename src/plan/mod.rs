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

use std::collections::BTreeMap;

use crate::pg::history::TimelineHistory;
use crate::pg::wal::{RestorePoint, SegmentSummary, XactEnd};
use crate::pg::{Lsn, SegmentName, SegmentSize, TimelineId};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A backup as the planner needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupPoint {
    pub label: String,
    pub timeline: u32,
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
pub type SegmentIndex = BTreeMap<(u32, u64), IndexedSegment>;

/// Timeline histories by timeline.
pub type Histories = BTreeMap<u32, TimelineHistory>;

/// Where recovery should stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    EndOfArchive,
    Immediate,
    /// PostgreSQL time: microseconds since 2000-01-01 UTC.
    Time(i64),
    Lsn(Lsn),
    Xid(u32),
    Name(String),
}

/// Which timeline to recover along (`recovery_target_timeline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineChoice {
    Latest,
    Current,
    Exact(u32),
}

/// What recovery is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRequest {
    pub target: Target,
    /// `recovery_target_inclusive` (PostgreSQL's default: on).
    pub inclusive: bool,
    pub timeline: TimelineChoice,
}

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
    pub histories: &'a Histories,
    pub events: &'a dyn SegmentEvents,
}

/// A stretch of the timeline path: `timeline` from `begins` until `ends`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineSpan {
    pub timeline: u32,
    pub begins: Lsn,
    pub ends: Option<Lsn>,
}

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

/// How to recover to the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPlan {
    pub backup: String,
    pub why: String,
    pub timeline: u32,
    pub path: Vec<TimelineSpan>,
    /// Every segment recovery reads, in order, from the backup's start to the stop record.
    pub segments: Vec<SegmentName>,
    pub bytes: u64,
    pub stop: StopPoint,
}

/// Why the target cannot be reached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the stanza has no backup yet: take one with 'tidemark backup'")]
    NoBackup,
    #[error("timeline {0} has no history file in the archive, so its ancestry is unknown")]
    UnknownTimeline(u32),
    #[error("no backup lies on the path of timeline {0}")]
    NoBackupOnPath(u32),
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
        timeline: u32,
        what: String,
        today: String,
    },
    #[error("cannot read the records of archived segment {segment}: {reason}")]
    Unreadable {
        segment: SegmentName,
        reason: String,
    },
}

/// PostgreSQL time as UTC text, for messages.
pub fn format_time(postgres_micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(postgres_micros + POSTGRES_EPOCH_UNIX_MICROS)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        .unwrap_or_else(|| postgres_micros.to_string())
}

/// Unix microseconds as PostgreSQL time.
pub fn postgres_time(unix_micros: i64) -> i64 {
    unix_micros - POSTGRES_EPOCH_UNIX_MICROS
}

/// The path to `timeline`: its ancestors from its history file, then itself.
fn timeline_path(
    timeline: u32,
    histories: &BTreeMap<u32, TimelineHistory>,
) -> Result<Vec<TimelineSpan>, PlanError> {
    if timeline == 1 {
        return Ok(vec![TimelineSpan {
            timeline: 1,
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
            timeline: entry.parent.0,
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
fn timeline_of_segment(path: &[TimelineSpan], segno: u64, size: SegmentSize) -> u32 {
    let segment_bytes = u64::from(size.bytes());
    path.iter()
        .rev()
        .find(|span| span.begins.0 / segment_bytes <= segno)
        .map(|span| span.timeline)
        .unwrap_or(path[0].timeline)
}

/// Whether `backup` is consistent somewhere on `path`.
fn on_path(backup: &BackupPoint, path: &[TimelineSpan]) -> bool {
    path.iter().any(|span| {
        span.timeline == backup.timeline
            && span.begins <= backup.stop
            && span.ends.is_none_or(|end| backup.stop <= end)
    })
}

/// One event of the WAL that a target can stop at, in WAL order.
enum Event<'s> {
    Transaction(&'s crate::pg::wal::XactEnd),
    RestorePoint(&'s crate::pg::wal::RestorePoint),
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
        (Event::Transaction(x), Target::Time(target)) => {
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
        (Event::Transaction(x), Target::Xid(xid)) if x.xid == *xid => Some(if request.inclusive {
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
        }),
        (Event::RestorePoint(r), Target::Name(name)) if r.name == *name => {
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
        Target::Time(target) => summary.max_time.is_some_and(|latest| {
            if request.inclusive {
                latest > *target
            } else {
                latest >= *target
            }
        }),
        Target::Xid(xid) => {
            matches!((summary.min_xid, summary.max_xid), (Some(min), Some(max)) if (min..=max).contains(xid))
        }
        Target::Name(name) => summary.restore_points.iter().any(|r| r.name == *name),
        Target::EndOfArchive | Target::Immediate | Target::Lsn(_) => false,
    }
}

/// The first record, in WAL order along `path`, at which PostgreSQL stops for `request`,
/// over every archived segment: a backup whose state already includes it is too new.
fn first_stop(
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
        let needs_segment =
            summary.spill_undecoded || matches!(request.target, Target::Time(_) | Target::Xid(_));
        let detail = if needs_segment {
            let segment = SegmentName::from_segment_number(TimelineId(timeline), segno, size);
            let next_timeline = timeline_of_segment(path, segno + 1, size);
            let next = (summary.continues_into_next
                && archive.segments.contains_key(&(next_timeline, segno + 1)))
            .then(|| SegmentName::from_segment_number(TimelineId(next_timeline), segno + 1, size));
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
fn lsn_stop_segment(
    archive: &Archive<'_>,
    path: &[TimelineSpan],
    target: Lsn,
) -> Result<Result<u64, u64>, PlanError> {
    let size = archive.segment_size;
    let name_of = |segno: u64| {
        SegmentName::from_segment_number(
            TimelineId(timeline_of_segment(path, segno, size)),
            segno,
            size,
        )
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

/// What the archive holds from a backup's start on along `path`.
struct Stretch {
    segments: Vec<SegmentName>,
    bytes: u64,
    end: Lsn,
    /// The last transaction end in it (WAL order): LSN and time.
    last_xact: Option<(Lsn, i64)>,
    /// The first segment missing before `last` (or, open-ended, before the archive's end on
    /// `path`), and whether archived WAL follows it.
    missing: Option<SegmentName>,
    archive_continues: bool,
}

/// The archived segments from the one holding `backup.start` through segment `last` (or as far
/// as the archive goes), up to the first one missing.
fn stretch_from(
    archive: &Archive<'_>,
    path: &[TimelineSpan],
    backup: &BackupPoint,
    last: Option<u64>,
) -> Stretch {
    let size = archive.segment_size;
    let segment_bytes = u64::from(size.bytes());
    let archived_end = archive
        .segments
        .keys()
        .filter(|(timeline, segno)| *timeline == timeline_of_segment(path, *segno, size))
        .map(|(_, segno)| *segno)
        .max();
    let mut stretch = Stretch {
        segments: Vec::new(),
        bytes: 0,
        end: backup.start,
        last_xact: None,
        missing: None,
        archive_continues: false,
    };
    let mut segno = backup.start.0 / segment_bytes;
    while last.is_none_or(|last| segno <= last) {
        let timeline = timeline_of_segment(path, segno, size);
        let name = SegmentName::from_segment_number(TimelineId(timeline), segno, size);
        let Some(indexed) = archive.segments.get(&(timeline, segno)) else {
            stretch.archive_continues = archived_end.is_some_and(|end| segno < end);
            if last.is_some() || stretch.archive_continues {
                stretch.missing = Some(name);
            } else if segno * segment_bytes < backup.stop.0 {
                // The archive ends before the backup is consistent.
                stretch.missing = Some(name);
            }
            break;
        };
        stretch.segments.push(name);
        stretch.bytes += indexed.bytes;
        stretch.end = indexed.summary.end_of_wal;
        if let Some(x) = indexed
            .summary
            .last_xact
            .as_ref()
            .filter(|x| x.lsn >= backup.start)
        {
            stretch.last_xact = Some((x.lsn, x.time));
        }
        segno += 1;
    }
    stretch
}

/// The segments from the one holding `backup.start` through `last` (or as far as the archive
/// goes), failing on the first one missing before that.
fn collect(
    archive: &Archive<'_>,
    path: &[TimelineSpan],
    backup: &BackupPoint,
    last: Option<u64>,
) -> Result<Stretch, PlanError> {
    let stretch = stretch_from(archive, path, backup, last);
    match stretch.missing {
        Some(missing) => Err(PlanError::Gap {
            missing,
            label: backup.label.clone(),
        }),
        None => Ok(stretch),
    }
}

/// A stretch of WAL that restores can reach on one timeline's path: from where the earliest
/// backup that reaches it is consistent to the end of the archived WAL after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverableWindow {
    /// The earliest backup the window starts with, and where it is consistent.
    pub backup: String,
    pub from: Lsn,
    /// Where the archived WAL it reaches ends.
    pub to: Lsn,
    /// The last transaction end in it: what a time target can reach at most.
    pub last_xact: Option<(Lsn, i64)>,
    /// The first segment missing after it, when more WAL is archived past that hole.
    pub gap: Option<SegmentName>,
}

/// The windows a restore along `timeline` can reach, oldest first: from each backup's
/// consistency point to where its WAL runs out, overlapping windows merged. A backup whose WAL
/// has a hole before it is consistent reaches nothing.
pub fn recoverable_windows(
    archive: &Archive<'_>,
    timeline: u32,
) -> Result<Vec<RecoverableWindow>, PlanError> {
    let path = timeline_path(timeline, archive.histories)?;
    let mut backups: Vec<&BackupPoint> = archive
        .backups
        .iter()
        .filter(|b| on_path(b, &path))
        .collect();
    backups.sort_by_key(|b| b.stop);
    let mut windows: Vec<RecoverableWindow> = Vec::new();
    for backup in backups {
        let stretch = stretch_from(archive, &path, backup, None);
        if stretch.end < backup.stop {
            continue;
        }
        let window = RecoverableWindow {
            backup: backup.label.clone(),
            from: backup.stop,
            to: stretch.end,
            last_xact: stretch.last_xact,
            gap: stretch.missing,
        };
        match windows.last_mut() {
            Some(open) if window.from <= open.to => {
                if window.to > open.to {
                    open.to = window.to;
                    open.last_xact = window.last_xact.or(open.last_xact);
                    open.gap = window.gap;
                }
            }
            _ => windows.push(window),
        }
    }
    Ok(windows)
}

/// Plans recovery to `request` from what `archive` holds.
pub fn plan(archive: &Archive<'_>, request: &PlanRequest) -> Result<RecoveryPlan, PlanError> {
    if archive.backups.is_empty() {
        return Err(PlanError::NoBackup);
    }
    let mut candidates: Vec<&BackupPoint> = archive.backups.iter().collect();
    candidates.sort_by_key(|b| std::cmp::Reverse(b.stop));
    let timeline = match request.timeline {
        TimelineChoice::Exact(timeline) => timeline,
        TimelineChoice::Latest => archive.histories.keys().copied().max().unwrap_or(1).max(1),
        TimelineChoice::Current => candidates[0].timeline,
    };
    let path = timeline_path(timeline, archive.histories)?;
    let on_path: Vec<&BackupPoint> = candidates
        .into_iter()
        .filter(|b| on_path(b, &path))
        .collect();
    let (Some(newest), Some(oldest)) = (on_path.first(), on_path.last()) else {
        return Err(PlanError::NoBackupOnPath(timeline));
    };
    let segment_bytes = u64::from(archive.segment_size.bytes());
    let no_backup_before = || PlanError::NoBackupBefore {
        label: oldest.label.clone(),
        stop: oldest.stop,
    };
    let made =
        |backup: &BackupPoint, why: String, stretch: Stretch, stop: StopPoint| RecoveryPlan {
            backup: backup.label.clone(),
            why,
            timeline,
            path: path.clone(),
            segments: stretch.segments,
            bytes: stretch.bytes,
            stop,
        };
    match &request.target {
        Target::EndOfArchive => {
            let stretch = collect(archive, &path, newest, None)?;
            let end = stretch.end;
            Ok(made(
                newest,
                "it is the newest backup".to_owned(),
                stretch,
                StopPoint::EndOfArchive(end),
            ))
        }
        Target::Immediate => {
            let last = (newest.stop.0.max(1) - 1) / segment_bytes;
            let stretch = collect(archive, &path, newest, Some(last))?;
            Ok(made(
                newest,
                "it is the newest backup".to_owned(),
                stretch,
                StopPoint::Consistency(newest.stop),
            ))
        }
        Target::Lsn(target) => {
            let backup = on_path
                .iter()
                .find(|b| b.stop <= *target)
                .ok_or_else(no_backup_before)?;
            let stretch = match lsn_stop_segment(archive, &path, *target)? {
                Ok(last) => collect(archive, &path, backup, Some(last))?,
                Err(missing) => {
                    // A hole before it, or in it with WAL archived beyond, is a gap.
                    let before = missing.saturating_sub(1);
                    collect(archive, &path, backup, Some(before))?;
                    let after = stretch_from(archive, &path, backup, None);
                    if let Some(missing) = after.missing {
                        return Err(PlanError::Gap {
                            missing,
                            label: backup.label.clone(),
                        });
                    }
                    return Err(PlanError::NotReached {
                        timeline,
                        what: format!("no record starting at or past {target}"),
                        today: format!("today a restore can reach LSN {}", after.end),
                    });
                }
            };
            let why = format!(
                "it is the newest backup consistent (at {}) before {target}",
                backup.stop
            );
            Ok(made(backup, why, stretch, StopPoint::AtLsn(*target)))
        }
        Target::Time(_) | Target::Xid(_) | Target::Name(_) => {
            match first_stop(archive, &path, request)? {
                Some((lsn, stop, last)) => {
                    // The newest backup whose state does not yet include the stop record.
                    let backup = on_path
                        .iter()
                        .find(|b| b.stop <= lsn)
                        .ok_or_else(no_backup_before)?;
                    let stretch = collect(archive, &path, backup, Some(last))?;
                    let why = format!(
                        "it is the newest backup consistent (at {}) before recovery stops at {lsn}",
                        backup.stop
                    );
                    Ok(made(backup, why, stretch, stop))
                }
                None => {
                    let stretch = collect(archive, &path, newest, None)?;
                    let what = match &request.target {
                        Target::Time(time) => {
                            format!("no commit or abort after {}", format_time(*time))
                        }
                        Target::Xid(xid) => format!("no end of transaction {xid}"),
                        Target::Name(name) => format!("no restore point '{name}'"),
                        _ => unreachable!("only these targets stop at a record"),
                    };
                    let today = match stretch.last_xact {
                        Some((_, time)) => format!(
                            "today a restore can reach the last archived commit or abort, at {}",
                            format_time(time)
                        ),
                        None => format!("today a restore can reach LSN {}", stretch.end),
                    };
                    Err(PlanError::NotReached {
                        timeline,
                        what,
                        today,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::wal::XactEndKind;

    const MIB: u64 = 1 << 20;

    fn segment(
        segno: u64,
        commits: &[(u64, u32, i64)],
        spills: bool,
    ) -> (IndexedSegment, Vec<XactEnd>) {
        let xact_ends: Vec<XactEnd> = commits
            .iter()
            .map(|&(offset, xid, time)| XactEnd {
                lsn: Lsn(segno * MIB + offset),
                kind: XactEndKind::Commit,
                xid,
                time,
            })
            .collect();
        let indexed = IndexedSegment {
            bytes: MIB,
            summary: SegmentSummary {
                first_record: Some(Lsn(segno * MIB + 40)),
                last_record: xact_ends.last().map(|x| x.lsn),
                end_of_wal: Lsn((segno + 1) * MIB),
                ends_with_switch: false,
                continues_into_next: spills,
                xact_count: xact_ends.len() as u32,
                last_xact: xact_ends.last().cloned(),
                min_time: xact_ends.iter().map(|x| x.time).min(),
                max_time: xact_ends.iter().map(|x| x.time).max(),
                spill_undecoded: false,
                restore_points: vec![],
                checkpoints: vec![],
                backup_ends: vec![],
                end_of_recovery: vec![],
                min_xid: xact_ends.iter().map(|x| x.xid).min(),
                max_xid: xact_ends.iter().map(|x| x.xid).max(),
            },
        };
        (indexed, xact_ends)
    }

    /// Segment events from memory, counting which segments the planner reads.
    #[derive(Default)]
    struct Events {
        details: BTreeMap<SegmentName, SegmentDetail>,
        /// Where each segment's records start.
        starts: BTreeMap<SegmentName, Vec<Lsn>>,
        read: std::cell::RefCell<Vec<SegmentName>>,
    }

    impl SegmentEvents for Events {
        fn segment_events(
            &self,
            segment: SegmentName,
            _next: Option<SegmentName>,
        ) -> Result<SegmentDetail, String> {
            self.read.borrow_mut().push(segment);
            self.details
                .get(&segment)
                .cloned()
                .ok_or_else(|| format!("{segment} is not archived"))
        }

        fn first_record_from(
            &self,
            segment: SegmentName,
            from: Lsn,
        ) -> Result<Option<Lsn>, String> {
            self.read.borrow_mut().push(segment);
            let starts = self
                .starts
                .get(&segment)
                .ok_or_else(|| format!("{segment} is not archived"))?;
            Ok(starts.iter().copied().find(|&start| start >= from))
        }
    }

    /// Indexes `segment` under (timeline, segno) and keeps its events.
    fn add(
        segments: &mut SegmentIndex,
        events: &mut Events,
        timeline: u32,
        segno: u64,
        (indexed, xact_ends): (IndexedSegment, Vec<XactEnd>),
    ) {
        let name = SegmentName::from_segment_number(
            TimelineId(timeline),
            segno,
            SegmentSize::new(MIB).unwrap(),
        );
        let summary = &indexed.summary;
        let mut starts: Vec<Lsn> = summary.first_record.into_iter().collect();
        starts.extend(xact_ends.iter().map(|x| x.lsn));
        starts.extend(summary.restore_points.iter().map(|r| r.lsn));
        starts.sort();
        starts.dedup();
        events.starts.insert(name, starts);
        events.details.insert(
            name,
            SegmentDetail {
                xact_ends,
                restore_points: indexed.summary.restore_points.clone(),
            },
        );
        segments.insert((timeline, segno), indexed);
    }

    /// Timeline 1: segments 1-6. Commits: seg 1 xid 99 @800, before backup A is consistent; seg 2 xid 100 @1000 and 101 @2000; seg 3 102 @3000
    /// (at 0/3000200, after backup B is consistent); seg 4 103 @4000, the last record, spilling
    /// into seg 5; seg 5 104 @5000 and a restore point; seg 6 105 @6000.
    /// Timeline 2 forks at 0/4000100 (after 102, before 103): its segments 4-5 hold 200 @4500.
    fn archive_fixture() -> (Vec<BackupPoint>, SegmentIndex, Histories, Events) {
        let backups = vec![
            BackupPoint {
                label: "A".into(),
                timeline: 1,
                start: Lsn(MIB + 0x28),
                stop: Lsn(MIB + 0x100),
            },
            BackupPoint {
                label: "B".into(),
                timeline: 1,
                start: Lsn(3 * MIB + 0x28),
                stop: Lsn(3 * MIB + 0x100),
            },
        ];
        let mut segments = BTreeMap::new();
        let mut events = Events::default();
        // Commit 99 lies before backup A is consistent (at 0/100100).
        add(
            &mut segments,
            &mut events,
            1,
            1,
            segment(1, &[(0x50, 99, 800)], false),
        );
        add(
            &mut segments,
            &mut events,
            1,
            2,
            segment(2, &[(0x300, 100, 1000), (0x400, 101, 2000)], false),
        );
        add(
            &mut segments,
            &mut events,
            1,
            3,
            segment(3, &[(0x200, 102, 3000)], false),
        );
        add(
            &mut segments,
            &mut events,
            1,
            4,
            segment(4, &[(0x500, 103, 4000)], true),
        );
        let mut fifth = segment(5, &[(0x300, 104, 5000)], false);
        fifth.0.summary.restore_points.push(RestorePoint {
            lsn: Lsn(5 * MIB + 0x400),
            name: "before upgrade".into(),
            time: 5100,
        });
        add(&mut segments, &mut events, 1, 5, fifth);
        add(
            &mut segments,
            &mut events,
            1,
            6,
            segment(6, &[(0x100, 105, 6000)], false),
        );
        add(
            &mut segments,
            &mut events,
            2,
            4,
            segment(4, &[(0x800, 200, 4500)], false),
        );
        add(&mut segments, &mut events, 2, 5, segment(5, &[], false));
        let mut histories = BTreeMap::new();
        histories.insert(
            2,
            TimelineHistory::parse(
                TimelineId(2),
                b"1\t0/400100\tbefore 2026-11-21 10:00:00+00\n",
            )
            .unwrap(),
        );
        (backups, segments, histories, events)
    }

    fn request(target: Target, inclusive: bool, timeline: TimelineChoice) -> PlanRequest {
        PlanRequest {
            target,
            inclusive,
            timeline,
        }
    }

    fn names(plan: &RecoveryPlan) -> Vec<String> {
        plan.segments
            .iter()
            .map(|s| s.to_string()[14..].to_owned())
            .collect()
    }

    #[test]
    fn plans_follow_postgresql_stopping_rules() {
        let (backups, segments, histories, events) = archive_fixture();
        let archive = Archive {
            segment_size: SegmentSize::new(MIB).unwrap(),
            backups: &backups,
            segments: &segments,
            histories: &histories,
            events: &events,
        };
        let on_one = TimelineChoice::Exact(1);
        // (request, backup, segments as "TTLLLLLLLLSS" tails, stop)
        let cases: Vec<(PlanRequest, &str, Vec<&str>, StopPoint)> = vec![
            // Between commits: stop before the first commit past the target.
            (
                request(Target::Time(3500), true, on_one),
                "B",
                vec!["0000000003", "0000000004", "0000000005"],
                StopPoint::BeforeTransaction {
                    lsn: Lsn(4 * MIB + 0x500),
                    xid: 103,
                    time: 4000,
                },
            ),
            // Commit 102 comes after B is consistent, so B serves.
            (
                request(Target::Time(2500), true, on_one),
                "B",
                vec!["0000000003"],
                StopPoint::BeforeTransaction {
                    lsn: Lsn(3 * MIB + 0x200),
                    xid: 102,
                    time: 3000,
                },
            ),
            // A commit before B's consistency point is past the target: B is too new, A serves.
            (
                request(Target::Time(1500), true, on_one),
                "A",
                vec!["0000000001", "0000000002"],
                StopPoint::BeforeTransaction {
                    lsn: Lsn(2 * MIB + 0x400),
                    xid: 101,
                    time: 2000,
                },
            ),
            // Exactly at a commit time: inclusive keeps it, exclusive does not.
            (
                request(Target::Time(2000), true, on_one),
                "B",
                vec!["0000000003"],
                StopPoint::BeforeTransaction {
                    lsn: Lsn(3 * MIB + 0x200),
                    xid: 102,
                    time: 3000,
                },
            ),
            (
                request(Target::Time(2000), false, on_one),
                "A",
                vec!["0000000001", "0000000002"],
                StopPoint::BeforeTransaction {
                    lsn: Lsn(2 * MIB + 0x400),
                    xid: 101,
                    time: 2000,
                },
            ),
            // Xid: after it when inclusive, before it when not.
            (
                request(Target::Xid(104), true, on_one),
                "B",
                vec!["0000000003", "0000000004", "0000000005"],
                StopPoint::AfterTransaction {
                    lsn: Lsn(5 * MIB + 0x300),
                    xid: 104,
                    time: 5000,
                },
            ),
            (
                request(Target::Xid(101), false, on_one),
                "A",
                vec!["0000000001", "0000000002"],
                StopPoint::BeforeTransaction {
                    lsn: Lsn(2 * MIB + 0x400),
                    xid: 101,
                    time: 2000,
                },
            ),
            (
                request(Target::Name("before upgrade".into()), true, on_one),
                "B",
                vec!["0000000003", "0000000004", "0000000005"],
                StopPoint::AfterRestorePoint {
                    lsn: Lsn(5 * MIB + 0x400),
                    name: "before upgrade".into(),
                },
            ),
            (
                request(Target::Immediate, true, on_one),
                "B",
                vec!["0000000003"],
                StopPoint::Consistency(Lsn(3 * MIB + 0x100)),
            ),
            (
                request(Target::Lsn(Lsn(2 * MIB + 5)), true, on_one),
                "A",
                vec!["0000000001", "0000000002"],
                StopPoint::AtLsn(Lsn(2 * MIB + 5)),
            ),
            // Past the last record start of its segment (as after a switch): the stop record is
            // the first of the next segment.
            (
                request(Target::Lsn(Lsn(3 * MIB + 0x300)), false, on_one),
                "B",
                vec!["0000000003", "0000000004"],
                StopPoint::AtLsn(Lsn(3 * MIB + 0x300)),
            ),
            // The first record at or past it is the one spilling into the next segment.
            (
                request(Target::Lsn(Lsn(4 * MIB + 0x400)), true, on_one),
                "B",
                vec!["0000000003", "0000000004", "0000000005"],
                StopPoint::AtLsn(Lsn(4 * MIB + 0x400)),
            ),
            // A record before the spilling one is at or past it.
            (
                request(Target::Lsn(Lsn(4 * MIB + 0x20)), true, on_one),
                "B",
                vec!["0000000003", "0000000004"],
                StopPoint::AtLsn(Lsn(4 * MIB + 0x20)),
            ),
            (
                request(Target::EndOfArchive, true, on_one),
                "B",
                vec!["0000000003", "0000000004", "0000000005", "0000000006"],
                StopPoint::EndOfArchive(Lsn(7 * MIB)),
            ),
            // Along timeline 2 (latest): segment 4 comes from timeline 2, which forked in it.
            (
                request(Target::Time(4400), true, TimelineChoice::Latest),
                "B",
                vec!["0000000003", "0000000004"],
                StopPoint::BeforeTransaction {
                    lsn: Lsn(4 * MIB + 0x800),
                    xid: 200,
                    time: 4500,
                },
            ),
        ];
        for (request, backup, expected, stop) in cases {
            let planned = plan(&archive, &request).unwrap_or_else(|e| panic!("{request:?}: {e}"));
            assert_eq!(planned.backup, backup, "{request:?}");
            let tails: Vec<String> = names(&planned);
            let expected: Vec<String> = expected.iter().map(|e| e.to_string()).collect();
            assert_eq!(tails, expected, "{request:?}");
            assert_eq!(planned.stop, stop, "{request:?}");
        }
        let along_two = plan(
            &archive,
            &request(Target::Time(4400), true, TimelineChoice::Latest),
        )
        .unwrap();
        assert_eq!(along_two.timeline, 2);
        assert_eq!(
            along_two
                .segments
                .iter()
                .map(|s| s.timeline.0)
                .collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn only_the_segments_where_recovery_may_stop_are_read() {
        let (backups, mut segments, histories, events) = archive_fixture();
        let size = SegmentSize::new(MIB).unwrap();
        let name = |segno| SegmentName::from_segment_number(TimelineId(1), segno, size);
        let time_3500 = request(Target::Time(3500), true, TimelineChoice::Exact(1));
        {
            let archive = Archive {
                segment_size: size,
                backups: &backups,
                segments: &segments,
                histories: &histories,
                events: &events,
            };
            plan(&archive, &time_3500).unwrap();
            assert_eq!(*events.read.borrow(), [name(4)]);
            events.read.borrow_mut().clear();
            // A restore point target reads no segment: the summaries hold every restore point.
            plan(
                &archive,
                &request(Target::Name("nope".into()), true, TimelineChoice::Exact(1)),
            )
            .unwrap_err();
            plan(
                &archive,
                &request(
                    Target::Name("before upgrade".into()),
                    true,
                    TimelineChoice::Exact(1),
                ),
            )
            .unwrap();
            assert_eq!(*events.read.borrow(), []);
        }
        // A segment whose spilling record could not be read from it is read when passed.
        segments.get_mut(&(1, 2)).unwrap().summary.spill_undecoded = true;
        let archive = Archive {
            segment_size: size,
            backups: &backups,
            segments: &segments,
            histories: &histories,
            events: &events,
        };
        plan(&archive, &time_3500).unwrap();
        assert_eq!(*events.read.borrow(), [name(2), name(4)]);
    }

    #[test]
    fn recoverable_windows_run_from_each_backup_to_the_end_of_its_wal() {
        let (backups, mut segments, histories, events) = archive_fixture();
        let size = SegmentSize::new(MIB).unwrap();
        let windows = |segments: &SegmentIndex, timeline| {
            let archive = Archive {
                segment_size: size,
                backups: &backups,
                segments,
                histories: &histories,
                events: &events,
            };
            recoverable_windows(&archive, timeline).unwrap()
        };
        // Timeline 1: A's and B's windows overlap into one, to the end of segment 6.
        assert_eq!(
            windows(&segments, 1),
            [RecoverableWindow {
                backup: "A".into(),
                from: Lsn(MIB + 0x100),
                to: Lsn(7 * MIB),
                last_xact: Some((Lsn(6 * MIB + 0x100), 6000)),
                gap: None,
            }]
        );
        // Timeline 2 follows timeline 1 to the fork, then its own segments 4 and 5.
        let along_two = windows(&segments, 2);
        assert_eq!(along_two.len(), 1);
        assert_eq!(along_two[0].to, Lsn(6 * MIB));
        assert_eq!(along_two[0].last_xact, Some((Lsn(4 * MIB + 0x800), 4500)));
        // A hole between A and B: A's window ends at it, B's starts after it.
        segments.remove(&(1, 2));
        assert_eq!(
            windows(&segments, 1),
            [
                RecoverableWindow {
                    backup: "A".into(),
                    from: Lsn(MIB + 0x100),
                    to: Lsn(2 * MIB),
                    last_xact: Some((Lsn(MIB + 0x50), 800)),
                    gap: Some(SegmentName::from_segment_number(TimelineId(1), 2, size)),
                },
                RecoverableWindow {
                    backup: "B".into(),
                    from: Lsn(3 * MIB + 0x100),
                    to: Lsn(7 * MIB),
                    last_xact: Some((Lsn(6 * MIB + 0x100), 6000)),
                    gap: None,
                }
            ]
        );
        segments.insert((1, 2), segment(2, &[], false).0);
        segments.remove(&(1, 5));
        let split = windows(&segments, 1);
        assert_eq!(split.len(), 1, "{split:?}");
        assert_eq!(
            (split[0].to, split[0].gap.map(|g| g.to_string())),
            (Lsn(5 * MIB), Some("000000010000000000000005".to_owned()))
        );
    }

    #[test]
    fn unreachable_targets_say_why() {
        let (backups, mut segments, histories, events) = archive_fixture();
        let size = SegmentSize::new(MIB).unwrap();
        let on_one = TimelineChoice::Exact(1);
        {
            let archive = Archive {
                segment_size: size,
                backups: &backups,
                segments: &segments,
                histories: &histories,
                events: &events,
            };
            // Before the first backup is consistent.
            assert_eq!(
                plan(&archive, &request(Target::Time(500), true, on_one))
                    .unwrap_err()
                    .to_string(),
                "no backup ends before the target: the earliest point a restore can reach is the end of backup A at 0/100100"
            );
            // Past the last archived commit.
            assert_eq!(
                plan(&archive, &request(Target::Time(9000), true, on_one))
                    .unwrap_err()
                    .to_string(),
                "the archived WAL along timeline 1 does not reach the target: no commit or abort after 2000-01-01 00:00:00.009000+00 is archived yet, so PostgreSQL would stop with \"recovery ended before configured recovery target was reached\"; today a restore can reach the last archived commit or abort, at 2000-01-01 00:00:00.006000+00"
            );
            // No record starts at or past it in the archived WAL yet.
            assert_eq!(
                plan(
                    &archive,
                    &request(Target::Lsn(Lsn(6 * MIB + 0x200)), true, on_one)
                )
                .unwrap_err(),
                PlanError::NotReached {
                    timeline: 1,
                    what: "no record starting at or past 0/600200".into(),
                    today: "today a restore can reach LSN 0/700000".into()
                }
            );
            assert_eq!(
                plan(&archive, &request(Target::Name("nope".into()), true, on_one)).unwrap_err(),
                PlanError::NotReached {
                    timeline: 1,
                    what: "no restore point 'nope'".into(),
                    today: "today a restore can reach the last archived commit or abort, at 2000-01-01 00:00:00.006000+00".into()
                }
            );
            assert_eq!(
                plan(
                    &archive,
                    &request(Target::EndOfArchive, true, TimelineChoice::Exact(3))
                )
                .unwrap_err(),
                PlanError::UnknownTimeline(3)
            );
            let none = Archive {
                segment_size: size,
                backups: &[],
                segments: &segments,
                histories: &histories,
                events: &events,
            };
            assert_eq!(
                plan(&none, &request(Target::EndOfArchive, true, on_one)).unwrap_err(),
                PlanError::NoBackup
            );
        }
        // A hole in the archive.
        segments.remove(&(1, 4));
        let archive = Archive {
            segment_size: size,
            backups: &backups,
            segments: &segments,
            histories: &histories,
            events: &events,
        };
        assert_eq!(
            plan(&archive, &request(Target::Time(4500), true, on_one))
                .unwrap_err()
                .to_string(),
            "WAL segment 000000010000000000000004 is not in the archive: recovery from backup B cannot get past it"
        );
        assert_eq!(
            plan(&archive, &request(Target::EndOfArchive, true, on_one))
                .unwrap_err()
                .to_string(),
            "WAL segment 000000010000000000000004 is not in the archive: recovery from backup B cannot get past it"
        );
        // The segment after the target's, where its stop record is, is missing.
        for target in [Lsn(3 * MIB + 0x300), Lsn(4 * MIB + 0x10)] {
            assert_eq!(
                plan(&archive, &request(Target::Lsn(target), true, on_one))
                    .unwrap_err()
                    .to_string(),
                "WAL segment 000000010000000000000004 is not in the archive: recovery from backup B cannot get past it",
                "{target}"
            );
        }
    }
}
