//! What walking a segment finds, as plain facts: the records that matter to planning a recovery
//! (transaction ends with their timestamps, restore points, checkpoints, backup ends,
//! end-of-recovery records) and the segment's summary (where its records start and its valid WAL
//! ends, ranges of times and XIDs).
//!
//! How a summary is stored in the repository is not decided here: `repo::wal_index::schema` owns
//! that.

use crate::pg::lsn::Lsn;

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XactEndKind {
    Commit,
    Abort,
    CommitPrepared,
    AbortPrepared,
}

/// A transaction end record: what a time or XID recovery target is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XactEnd {
    pub lsn: Lsn,
    pub kind: XactEndKind,
    /// The record's `xl_xid`; for the `*_PREPARED` kinds the prepared transaction's XID from the
    /// record body (their `xl_xid` is 0).
    pub xid: u32,
    /// `xact_time`: a TimestampTz, microseconds since 2000-01-01 00:00:00 UTC.
    pub time: i64,
}

/// An `XLOG_RESTORE_POINT` record (`pg_create_restore_point`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePoint {
    pub lsn: Lsn,
    pub name: String,
    /// TimestampTz.
    pub time: i64,
}

/// An `XLOG_CHECKPOINT_SHUTDOWN` or `XLOG_CHECKPOINT_ONLINE` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub lsn: Lsn,
    /// Where replay starting from this checkpoint begins.
    pub redo: Lsn,
    /// Unix seconds (`pg_time_t`).
    pub time_unix: i64,
    pub online: bool,
    pub timeline: u32,
}

/// An `XLOG_BACKUP_END` record: the end of the base backup that started at `backup_start`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupEnd {
    pub lsn: Lsn,
    pub backup_start: Lsn,
}

/// An `XLOG_END_OF_RECOVERY` record: a promotion that started `timeline` after `prev_timeline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndOfRecovery {
    pub lsn: Lsn,
    /// TimestampTz.
    pub time: i64,
    pub timeline: u32,
    pub prev_timeline: u32,
}

/// What one record that matters to planning says, as its resource manager's decoder reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RecordFact {
    XactEnd(XactEnd),
    RestorePoint(RestorePoint),
    Checkpoint(CheckpointRecord),
    BackupEnd(BackupEnd),
    EndOfRecovery(EndOfRecovery),
}

/// What one segment holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The first record that starts in this segment (none if one record covers all of it).
    pub first_record: Option<Lsn>,
    /// The last record that starts in this segment, complete or continuing into the next.
    pub last_record: Option<Lsn>,
    /// Where valid WAL ends in this segment: the end of its last complete record (after a switch,
    /// the switch record's end), or the segment end if a record continues into the next segment.
    pub end_of_wal: Lsn,
    pub ends_with_switch: bool,
    /// WAL continues into the next segment: the last record spills over (its CRC is not checked
    /// here), or one record covers the whole segment.
    pub continues_into_next: bool,
    /// Transaction end records starting in this segment. Each is listed only by
    /// [`WalkedSegment::xact_ends`]: a busy segment holds tens of thousands, and the planner needs
    /// them for the one segment where recovery stops, which it reads again.
    pub xact_count: u32,
    /// The last transaction end, in WAL order.
    pub last_xact: Option<XactEnd>,
    /// The earliest and latest `xact_time` of the transaction ends. WAL order is not time order:
    /// a commit's time is taken before its record is inserted.
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    /// The record spilling into the next segment may be a transaction end or a restore point, but
    /// too little of it is in this segment to read it; it is read with the next segment when needed.
    pub spill_undecoded: bool,
    pub restore_points: Vec<RestorePoint>,
    pub checkpoints: Vec<CheckpointRecord>,
    pub backup_ends: Vec<BackupEnd>,
    pub end_of_recovery: Vec<EndOfRecovery>,
    /// The lowest and highest XID of the transaction end records.
    pub min_xid: Option<u32>,
    pub max_xid: Option<u32>,
}

impl SegmentSummary {
    /// The summary of a segment starting at `start` before any record is walked: nothing found,
    /// valid WAL ending where it starts.
    pub fn empty(start: Lsn) -> SegmentSummary {
        SegmentSummary {
            first_record: None,
            last_record: None,
            end_of_wal: start,
            ends_with_switch: false,
            continues_into_next: false,
            xact_count: 0,
            last_xact: None,
            min_time: None,
            max_time: None,
            spill_undecoded: false,
            restore_points: Vec::new(),
            checkpoints: Vec::new(),
            backup_ends: Vec::new(),
            end_of_recovery: Vec::new(),
            min_xid: None,
            max_xid: None,
        }
    }

    /// Notes a record that starts in this segment; records come in WAL order.
    #[inline]
    pub(super) fn note_start(&mut self, lsn: Lsn) {
        self.first_record = self.first_record.or(Some(lsn));
        self.last_record = Some(lsn);
    }

    /// Counts a transaction end into the ranges; ends come in WAL order.
    #[inline(always)]
    pub(super) fn note_xact_end(&mut self, end: &XactEnd) {
        self.xact_count += 1;
        self.min_xid = Some(self.min_xid.map_or(end.xid, |x| x.min(end.xid)));
        self.max_xid = Some(self.max_xid.map_or(end.xid, |x| x.max(end.xid)));
        self.min_time = Some(self.min_time.map_or(end.time, |t| t.min(end.time)));
        self.max_time = Some(self.max_time.map_or(end.time, |t| t.max(end.time)));
        self.last_xact = Some(end.clone());
    }
}

/// What walking a segment found: its summary, which the WAL index keeps, and every transaction
/// end, which it does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkedSegment {
    pub summary: SegmentSummary,
    pub xact_ends: Vec<XactEnd>,
    /// The first record starting at or past the LSN given to
    /// [`RecordWalker::watch_from`](super::RecordWalker::watch_from), when one was given: where
    /// PostgreSQL stops for an LSN target.
    pub first_record_from: Option<Lsn>,
}
