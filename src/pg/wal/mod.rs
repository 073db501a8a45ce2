//! Walks the records of one WAL segment while it is read, page by page: record headers (length,
//! resource manager, prev-link), CRC-32C of every record reassembled across page headers,
//! continuation pages, and where valid WAL ends. On the way it collects what planning a recovery
//! needs from the segment: transaction ends with their timestamps, restore points, checkpoints,
//! backup ends, end-of-recovery records and whether an `XLOG_SWITCH` ends the segment.
//!
//! This module owns the byte layout of `XLogRecord`, of the block and data headers after it
//! (`DecodeXLogRecord`), and of the few record bodies read here (`xl_xact_commit`/`abort`,
//! `CheckPoint`, `xl_restore_point`, `xl_end_of_recovery`, the backup-end start point). Page
//! headers themselves are validated by [`super::segment_check`]; the walker only uses what record
//! walking needs from them: the continuation flags and `xlp_rem_len`, and whether a page belongs to
//! this segment's WAL at all (magic and address), since that is where a `.partial` segment's WAL
//! may stop.

use super::fields::{i64_at, u16_at, u32_at, u64_at};
use serde::{Deserialize, Serialize};

use super::file_name::{SegmentName, SegmentSize};
use super::lsn::{Lsn, lsn_text, optional_lsn_text};
use super::page::{
    LONG_HEADER_LEN, PageHeader, SHORT_HEADER_LEN, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER,
};
use super::version::PgMajor;

/// `SizeOfXLogRecord`: the fixed header every record starts with.
const RECORD_HEADER_LEN: usize = 24;
/// Offset of `xl_crc`; the CRC covers the header only up to here, after the rest of the record.
const CRC_OFFSET: usize = 20;
/// `xlp_info`: the record that was continuing onto this page was lost in a crash and the page was
/// rewritten with new WAL (12.9+/13.5+/14.1+); a reader drops the partial record.
const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// The longest record PostgreSQL's reader accepts (`AllocSizeIsValid` in `allocate_recordbuf`,
/// `xlogreader.c`); a longer `xl_tot_len` is garbage.
const MAX_RECORD_LEN: u32 = 0x3FFF_FFFF;
/// An upper bound on the block and data headers that follow the record header: 33 block headers of
/// at most 27 bytes, an origin, a top-level XID and a main-data header take 904 bytes. Records of
/// other resource managers than XLOG and XACT are only kept this far, so a 1 GiB logical message
/// costs no memory.
const MAX_HEADERS_LEN: usize = 1024;

/// Resource manager IDs (`rmgrlist.h`).
const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
const RM_MAX_BUILTIN_ID: u8 = 21;
/// PostgreSQL 15 added custom resource managers 128..=255 (`RmgrIdIsValid`, `rmgr.h`).
const RM_MIN_CUSTOM_ID: u8 = 128;

/// The bits of `xl_info` that belong to the resource manager; the low bits are generic flags
/// (`wal_consistency_checking` sets 0x02), so opcodes are always compared after masking.
const XLR_RMGR_INFO_MASK: u8 = 0xF0;

/// RM_XLOG opcodes (`src/include/catalog/pg_control.h`).
const XLOG_CHECKPOINT_SHUTDOWN: u8 = 0x00;
const XLOG_CHECKPOINT_ONLINE: u8 = 0x10;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_BACKUP_END: u8 = 0x50;
const XLOG_RESTORE_POINT: u8 = 0x70;
const XLOG_END_OF_RECOVERY: u8 = 0x90;

/// RM_XACT opcodes (`src/include/access/xact.h`): `xl_info & XLOG_XACT_OPMASK`.
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_ABORT: u8 = 0x20;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
/// `xl_info`: an `xinfo` word follows `xact_time`.
const XLOG_XACT_HAS_INFO: u8 = 0x80;

/// `xinfo` flags, in the order their payloads follow one another.
const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
const XACT_XINFO_HAS_RELFILENODES: u32 = 1 << 2;
const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
/// PostgreSQL 15+.
const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;
/// `sizeof(RelFileNode)` / `sizeof(RelFileLocator)`, `sizeof(xl_xact_stats_item)` (12–17; 16 bytes
/// in 18) and `sizeof(SharedInvalidationMessage)`.
const RELFILENODE_LEN: usize = 12;
const STATS_ITEM_LEN: usize = 12;
const INVAL_MSG_LEN: usize = 16;

/// Block reference IDs and the special IDs after them (`xlogrecord.h`).
const XLR_MAX_BLOCK_ID: u8 = 32;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
/// PostgreSQL 14+.
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
/// `fork_flags` bits of a block header.
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
/// `bimg_info` bits: the hole bit is the same in every version, compression is not.
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
const BKPIMAGE_IS_COMPRESSED_BEFORE_15: u8 = 0x02;
/// PGLZ, LZ4 and ZSTD in PostgreSQL 15+.
const BKPIMAGE_COMPRESSED_SINCE_15: u8 = 0x04 | 0x08 | 0x10;

/// `sizeof(CheckPoint)` in 12–17. Its fields read here keep their offsets in every supported
/// version: PostgreSQL 17 put `wal_level` at 20, in what was padding before `nextXid` at 24.
const CHECKPOINT_LEN: usize = 88;
const CHECKPOINT_REDO_AT: usize = 0;
const CHECKPOINT_TIMELINE_AT: usize = 8;
/// `pg_time_t`: Unix seconds, unlike every other timestamp in WAL.
const CHECKPOINT_TIME_AT: usize = 64;
/// `xl_restore_point`: `TimestampTz rp_time`, then `char rp_name[MAXFNAMELEN = 64]`.
const RESTORE_POINT_LEN: usize = 72;
const RESTORE_POINT_NAME_AT: usize = 8;
/// `xl_end_of_recovery`: `TimestampTz end_time`, `TimeLineID ThisTimeLineID, PrevTimeLineID`.
const END_OF_RECOVERY_LEN: usize = 16;

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum XactEndKind {
    Commit,
    Abort,
    CommitPrepared,
    AbortPrepared,
}

/// A transaction end record: what a time or XID recovery target is checked against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XactEnd {
    #[serde(with = "lsn_text")]
    pub lsn: Lsn,
    pub kind: XactEndKind,
    /// The record's `xl_xid`; for the `*_PREPARED` kinds the prepared transaction's XID from the
    /// record body (their `xl_xid` is 0).
    pub xid: u32,
    /// `xact_time`: a TimestampTz, microseconds since 2000-01-01 00:00:00 UTC.
    pub time: i64,
}

/// An `XLOG_RESTORE_POINT` record (`pg_create_restore_point`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    #[serde(with = "lsn_text")]
    pub lsn: Lsn,
    pub name: String,
    /// TimestampTz.
    pub time: i64,
}

/// An `XLOG_CHECKPOINT_SHUTDOWN` or `XLOG_CHECKPOINT_ONLINE` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    #[serde(with = "lsn_text")]
    pub lsn: Lsn,
    /// Where replay starting from this checkpoint begins.
    #[serde(with = "lsn_text")]
    pub redo: Lsn,
    /// Unix seconds (`pg_time_t`).
    pub time_unix: i64,
    pub online: bool,
    pub timeline: u32,
}

/// An `XLOG_BACKUP_END` record: the end of the base backup that started at `backup_start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupEnd {
    #[serde(with = "lsn_text")]
    pub lsn: Lsn,
    #[serde(with = "lsn_text")]
    pub backup_start: Lsn,
}

/// An `XLOG_END_OF_RECOVERY` record: a promotion that started `timeline` after `prev_timeline`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndOfRecovery {
    #[serde(with = "lsn_text")]
    pub lsn: Lsn,
    /// TimestampTz.
    pub time: i64,
    pub timeline: u32,
    pub prev_timeline: u32,
}

/// What one segment holds. Fields that are empty, absent or false are left out of its JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSummary {
    /// The first record that starts in this segment (none if one record covers all of it).
    #[serde(with = "optional_lsn_text")]
    pub first_record: Option<Lsn>,
    /// The last record that starts in this segment, complete or continuing into the next.
    #[serde(with = "optional_lsn_text")]
    pub last_record: Option<Lsn>,
    /// Where valid WAL ends in this segment: the end of its last complete record (after a switch,
    /// the switch record's end), or the segment end if a record continues into the next segment.
    #[serde(with = "lsn_text")]
    pub end_of_wal: Lsn,
    #[serde(default, skip_serializing_if = "is_false")]
    pub ends_with_switch: bool,
    /// WAL continues into the next segment: the last record spills over (its CRC is not checked
    /// here), or one record covers the whole segment.
    pub continues_into_next: bool,
    /// Transaction end records starting in this segment. Each is listed only by
    /// [`WalkedSegment::xact_ends`]: a busy segment holds tens of thousands, and the planner needs
    /// them for the one segment where recovery stops, which it reads again.
    pub xact_count: u32,
    /// The last transaction end, in WAL order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_xact: Option<XactEnd>,
    /// The earliest and latest `xact_time` of the transaction ends. WAL order is not time order:
    /// a commit's time is taken before its record is inserted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time: Option<i64>,
    /// The record spilling into the next segment may be a transaction end or a restore point, but
    /// too little of it is in this segment to read it; it is read with the next segment when needed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub spill_undecoded: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_points: Vec<RestorePoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<CheckpointRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup_ends: Vec<BackupEnd>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_of_recovery: Vec<EndOfRecovery>,
    /// The lowest and highest XID of the transaction end records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_xid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_xid: Option<u32>,
}

/// Entries leave out what is empty or false: an index of 100,000 entries is read in one go.
fn is_false(value: &bool) -> bool {
    !value
}

impl SegmentSummary {
    fn empty(start: u64) -> SegmentSummary {
        SegmentSummary {
            first_record: None,
            last_record: None,
            end_of_wal: Lsn(start),
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

    /// Counts a transaction end into the ranges; ends come in WAL order.
    fn note_xact_end(&mut self, end: &XactEnd) {
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
    /// The first record starting at or past the LSN given to [`RecordWalker::watch_from`], when
    /// one was given: where PostgreSQL stops for an LSN target.
    pub first_record_from: Option<Lsn>,
}

/// What is wrong with the records of a segment.
///
/// In a complete segment each of these is a defect. In a `.partial` segment, those that mark where
/// PostgreSQL itself would stop reading (a bad length, resource manager, prev-link, CRC or
/// continuation) only end its WAL; a record with a valid CRC whose body does not decode, and a
/// segment of the wrong length, are defects in both.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalRecordDefect {
    #[error("{name} is not a segment of {size} MiB segments: its last 8 digits are out of range")]
    NameOutOfRange { name: SegmentName, size: u32 },
    #[error(
        "{page_size} is not a WAL page size that divides {segment_bytes}-byte segments: PostgreSQL uses a power of two from 1 kB to 64 kB"
    )]
    UnusablePageSize { page_size: u32, segment_bytes: u32 },
    #[error(
        "the record at {lsn} has total length {length}: a record is at least 24 bytes and at most 1 GiB"
    )]
    BadTotalLength { lsn: Lsn, length: u32 },
    #[error(
        "the record at {lsn} names resource manager {rmid}, which PostgreSQL {version} does not have"
    )]
    InvalidRmgr {
        lsn: Lsn,
        rmid: u8,
        version: PgMajor,
    },
    #[error(
        "the record at {lsn} says the previous record starts at {found}, but it starts at {expected}: the chain of records is broken"
    )]
    PrevLinkMismatch { lsn: Lsn, expected: Lsn, found: Lsn },
    #[error(
        "the record at {lsn} says the previous record starts at {found}, which is not before it"
    )]
    PrevLinkForward { lsn: Lsn, found: Lsn },
    #[error(
        "the record at {lsn} fails its CRC: its bytes give {expected:#010X}, the record says {found:#010X}"
    )]
    CrcMismatch { lsn: Lsn, expected: u32, found: u32 },
    #[error(
        "the record at {lsn} continues onto the page at {page}, but that page's header has xlp_info {info:#06X} and xlp_rem_len {found}, where the continuation flag and {expected} bytes still to come were expected"
    )]
    ContinuationMismatch {
        lsn: Lsn,
        page: Lsn,
        info: u16,
        expected: u32,
        found: u32,
    },
    #[error(
        "the record at {lsn} continues onto the page at {page}, but that page is not WAL of this segment (zeroed, or left from an older segment)"
    )]
    ContinuationLost { lsn: Lsn, page: Lsn },
    #[error(
        "the page at {page} says it starts with the rest of a record (xlp_info {info:#06X}), but the WAL before it ended at {end}, so a new record must start there"
    )]
    UnexpectedContinuation { page: Lsn, info: u16, end: Lsn },
    #[error("the record at {lsn} has a valid CRC but does not decode: {reason}")]
    BadBody { lsn: Lsn, reason: String },
    #[error("valid WAL ends at {end}, but the segment is complete: {reason}")]
    EndsEarly { end: Lsn, reason: String },
    #[error(
        "the segment ends at {end} after {fed} bytes, but segments are {expected} bytes: it is truncated"
    )]
    Truncated { end: Lsn, fed: u64, expected: u64 },
    #[error(
        "more than {expected} bytes were fed as one segment: whatever follows its end at {end} is not part of it"
    )]
    Overlong { end: Lsn, expected: u64 },
}

/// Where the walk stands between two pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the segment start, which may be the middle of a record begun in an earlier segment.
    SkippingContinuation,
    /// The next record starts at this LSN.
    Between { next: u64 },
    /// Gathering the record in `RecordWalker::record`.
    InRecord,
    /// After an `XLOG_SWITCH`, or where valid WAL ended: the rest is not walked.
    Done,
}

/// The record being gathered, its pieces taken from consecutive pages.
#[derive(Debug, Default)]
struct Assembly {
    lsn: u64,
    total: u32,
    gathered: u32,
    header: [u8; RECORD_HEADER_LEN],
    /// CRC-32C of the bytes after the header gathered so far.
    crc: u32,
    /// How many of the record's first bytes `bytes` keeps.
    keep: usize,
    /// The record's first `keep` bytes, header included; reused from record to record.
    bytes: Vec<u8>,
}

impl Assembly {
    fn begin(&mut self, lsn: u64, total: u32) {
        self.lsn = lsn;
        self.total = total;
        self.gathered = 0;
        self.crc = 0;
        self.keep = 0;
        self.bytes.clear();
    }

    fn rmid(&self) -> u8 {
        self.header[17]
    }

    /// Takes the next `piece` of the record; returns true when it completed the header.
    fn take(&mut self, mut piece: &[u8]) -> bool {
        let mut completed_header = false;
        let have = self.gathered as usize;
        if have < RECORD_HEADER_LEN {
            let n = piece.len().min(RECORD_HEADER_LEN - have);
            self.header[have..have + n].copy_from_slice(&piece[..n]);
            self.gathered += n as u32;
            piece = &piece[n..];
            if self.gathered as usize == RECORD_HEADER_LEN {
                completed_header = true;
                self.keep = self.kept_length();
                self.bytes.extend_from_slice(&self.header);
            }
        }
        if !piece.is_empty() {
            self.crc = crc32c::crc32c_append(self.crc, piece);
            let room = self.keep.saturating_sub(self.bytes.len());
            self.bytes
                .extend_from_slice(&piece[..room.min(piece.len())]);
            self.gathered += piece.len() as u32;
        }
        completed_header
    }

    /// The whole record for the resource managers whose bodies are read here; the headers only
    /// for the others.
    fn kept_length(&self) -> usize {
        let total = self.total as usize;
        match self.rmid() {
            RM_XLOG_ID | RM_XACT_ID => total,
            _ => total.min(RECORD_HEADER_LEN + MAX_HEADERS_LEN),
        }
    }
}

/// Walks the records of one segment, fed in order in page-aligned chunks (the same chunks
/// `SegmentChecker::feed` gets: whole multiples of `segment_check::CHUNK_ALIGNMENT` except the
/// last). Chunks that split a page are accepted too; the split page is walked once complete.
#[derive(Debug)]
pub struct RecordWalker {
    version: PgMajor,
    page_size: usize,
    segment_bytes: u64,
    /// LSN of the segment's first byte.
    start: u64,
    /// Whole pages walked so far.
    walked: u64,
    /// The start of a page split by the chunks fed so far.
    split_page: Vec<u8>,
    state: State,
    record: Assembly,
    /// The last complete record, which the next record's `xl_prev` must name.
    previous: Option<u64>,
    /// The end of the last complete record (or of the continuation the segment starts with).
    valid_end: u64,
    records: u64,
    summary: SegmentSummary,
    xact_ends: Vec<XactEnd>,
    /// Records starting at or past this LSN are watched for; the first is kept.
    watch_from: Option<u64>,
    first_record_from: Option<Lsn>,
    /// Why the walk stopped before the end of the segment: the end of WAL in a `.partial`
    /// segment, a defect in a complete one.
    stop: Option<WalRecordDefect>,
    /// A defect in any segment; every later call returns it.
    failed: Option<WalRecordDefect>,
}

impl RecordWalker {
    pub fn new(
        name: SegmentName,
        segment_size: SegmentSize,
        version: PgMajor,
        page_size: u32,
    ) -> RecordWalker {
        let segment_bytes = segment_size.bytes();
        match name.start_lsn(segment_size) {
            Ok(start) => RecordWalker::over(start, u64::from(segment_bytes), version, page_size),
            Err(_) => {
                let mut walker =
                    RecordWalker::over(Lsn(0), u64::from(segment_bytes), version, page_size);
                walker.failed = Some(WalRecordDefect::NameOutOfRange {
                    name,
                    size: segment_bytes >> 20,
                });
                walker
            }
        }
    }

    /// Walks `name` and the segment after it as one stream, so that a record spilling from the
    /// first into the second is read whole (and its CRC checked). Every record starting in either
    /// is noted; callers keep those that start in the first.
    pub fn spanning(
        name: SegmentName,
        segment_size: SegmentSize,
        version: PgMajor,
        page_size: u32,
    ) -> Result<RecordWalker, WalRecordDefect> {
        let start = name
            .start_lsn(segment_size)
            .map_err(|_| WalRecordDefect::NameOutOfRange {
                name,
                size: segment_size.bytes() >> 20,
            })?;
        Ok(RecordWalker::over(
            start,
            2 * u64::from(segment_size.bytes()),
            version,
            page_size,
        ))
    }

    /// A walker over `length` bytes of WAL from `start`.
    fn over(start: Lsn, length: u64, version: PgMajor, page_size: u32) -> RecordWalker {
        let start = start.0;
        let segment_bytes = length;
        let page_size_defect = (!page_size.is_power_of_two()
            || !(1024..=65536).contains(&page_size)
            || !segment_bytes.is_multiple_of(u64::from(page_size)))
        .then_some(WalRecordDefect::UnusablePageSize {
            page_size,
            segment_bytes: segment_bytes as u32,
        });
        RecordWalker {
            version,
            page_size: page_size as usize,
            segment_bytes,
            start,
            walked: 0,
            split_page: Vec::new(),
            state: State::SkippingContinuation,
            record: Assembly::default(),
            previous: None,
            valid_end: start,
            records: 0,
            summary: SegmentSummary::empty(start),
            xact_ends: Vec::new(),
            watch_from: None,
            first_record_from: None,
            stop: None,
            failed: page_size_defect,
        }
    }

    /// Keeps the first record that starts at or past `lsn` (as
    /// [`WalkedSegment::first_record_from`]).
    pub fn watch_from(&mut self, lsn: Lsn) {
        self.watch_from = Some(lsn.0);
    }

    /// Notes that a record starts at `lsn`, for [`RecordWalker::watch_from`].
    fn note_start(&mut self, lsn: Lsn) {
        if self.first_record_from.is_none() && self.watch_from.is_some_and(|from| lsn.0 >= from) {
            self.first_record_from = Some(lsn);
        }
    }

    /// Consumes the next chunk. Errors on corruption found before the end of valid WAL that is
    /// a defect whatever kind the segment is (a record with a valid CRC whose body does not decode,
    /// more bytes than a segment); whatever may just be the end of a `.partial` segment's WAL is
    /// judged by [`RecordWalker::finish`].
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), WalRecordDefect> {
        if let Some(defect) = &self.failed {
            return Err(defect.clone());
        }
        let fed = self.walked + (self.split_page.len() + chunk.len()) as u64;
        if fed > self.segment_bytes {
            return Err(self.fail(WalRecordDefect::Overlong {
                end: Lsn(self.start + self.segment_bytes),
                expected: self.segment_bytes,
            }));
        }
        let mut rest = chunk;
        if !self.split_page.is_empty() {
            let n = rest.len().min(self.page_size - self.split_page.len());
            self.split_page.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.split_page.len() == self.page_size {
                let page = std::mem::take(&mut self.split_page);
                let walked = self.walk_page(&page);
                self.split_page = page;
                self.split_page.clear();
                walked?;
            }
        }
        let mut pages = rest.chunks_exact(self.page_size);
        for page in pages.by_ref() {
            self.walk_page(page)?;
        }
        self.split_page.extend_from_slice(pages.remainder());
        Ok(())
    }

    /// Records starting in this segment walked so far, including one still being gathered when
    /// the bytes fed end (after the whole segment: the one continuing into the next segment).
    pub fn record_count(&self) -> u64 {
        self.records + u64::from(self.state == State::InRecord)
    }

    /// After the whole segment: what it holds. `complete` = a segment PostgreSQL handed to
    /// archive_command as complete (filled, or ended by XLOG_SWITCH): then valid WAL must run to
    /// the switch or to the end of the segment (a record may continue into the next segment), and
    /// anything invalid before that is a defect. For a `.partial` (complete = false) the first
    /// invalid record simply ends the WAL.
    pub fn finish(mut self, complete: bool) -> Result<WalkedSegment, WalRecordDefect> {
        if let Some(defect) = self.failed {
            return Err(defect);
        }
        let fed = self.walked + self.split_page.len() as u64;
        if fed != self.segment_bytes {
            return Err(WalRecordDefect::Truncated {
                end: Lsn(self.start + fed),
                fed,
                expected: self.segment_bytes,
            });
        }
        let segment_end = self.start + self.segment_bytes;
        match self.state {
            State::Done if self.summary.ends_with_switch => {}
            State::Done => {
                if let Some(stop) = self.stop.take().filter(|_| complete) {
                    return Err(stop);
                }
            }
            State::InRecord => {
                // It spills into the next segment, where its CRC is checked.
                let lsn = Some(Lsn(self.record.lsn));
                self.note_start(Lsn(self.record.lsn));
                self.summary.first_record = self.summary.first_record.or(lsn);
                self.summary.last_record = lsn;
                self.summary.continues_into_next = true;
                self.note_spilled_record();
                self.valid_end = segment_end;
            }
            // One record covers the whole segment.
            State::SkippingContinuation => {
                self.summary.continues_into_next = true;
                self.valid_end = segment_end;
            }
            State::Between { .. } => {}
        }
        self.summary.end_of_wal = Lsn(self.valid_end);
        Ok(WalkedSegment {
            summary: self.summary,
            xact_ends: self.xact_ends,
            first_record_from: self.first_record_from,
        })
    }

    /// Reads what it can of the record that continues into the next segment: a transaction end
    /// needs only its header and the first 8 bytes of its body for its XID and time, a restore
    /// point the 72 bytes of its body. Its CRC can only be checked with the next segment; when
    /// too little of it is here to tell what it says, the summary says so.
    fn note_spilled_record(&mut self) {
        let kept = &self.record.bytes;
        let Some(&rmid) = kept.get(17) else {
            // Not even the header is here: it could be anything.
            self.summary.spill_undecoded = true;
            return;
        };
        let (total, lsn, info, xl_xid) = (
            self.record.total as usize,
            Lsn(self.record.lsn),
            kept[16],
            u32_at(kept, 4),
        );
        let main = || -> Option<&[u8]> {
            let main_len = main_data_len(kept, total, self.version).ok()?;
            kept.get(total - main_len..).or(Some(&[]))
        };
        match rmid {
            RM_XACT_ID => {
                let Some(kind) = xact_end_kind(info) else {
                    return;
                };
                let end = main().and_then(|main| {
                    match xact_end(lsn, info, xl_xid, main, self.version) {
                        Ok(end) => end,
                        // The prepared transaction's XID lies beyond the part that is here.
                        Err(_)
                            if matches!(
                                kind,
                                XactEndKind::CommitPrepared | XactEndKind::AbortPrepared
                            ) =>
                        {
                            None
                        }
                        Err(_) => (main.len() >= 8).then(|| XactEnd {
                            lsn,
                            kind,
                            xid: xl_xid,
                            time: i64_at(main, 0),
                        }),
                    }
                });
                match end {
                    Some(end) => {
                        self.summary.note_xact_end(&end);
                        self.xact_ends.push(end);
                    }
                    None => self.summary.spill_undecoded = true,
                }
            }
            RM_XLOG_ID if is_planned_xlog_record(info) => {
                let noted = main().ok_or(()).and_then(|main| {
                    note_xlog_record(&mut self.summary, lsn, info, main).map_err(|_| ())
                });
                if noted.is_err() {
                    self.summary.spill_undecoded = true;
                }
            }
            _ => {}
        }
    }

    fn fail(&mut self, defect: WalRecordDefect) -> WalRecordDefect {
        self.failed = Some(defect.clone());
        self.state = State::Done;
        defect
    }

    /// Stops the walk where valid WAL ends; whether that is a defect depends on the segment kind.
    fn end_here(&mut self, why: WalRecordDefect) {
        self.stop = Some(why);
        self.state = State::Done;
    }

    /// Walks one whole page.
    fn walk_page(&mut self, page: &[u8]) -> Result<(), WalRecordDefect> {
        let page_lsn = self.start + self.walked;
        self.walked += page.len() as u64;
        if self.state == State::Done {
            return Ok(());
        }
        let header = PageHeader::decode(page).expect("a page is longer than its header");
        let header_len = if header.info & XLP_LONG_HEADER != 0 {
            LONG_HEADER_LEN
        } else {
            SHORT_HEADER_LEN
        };
        // Where a `.partial` segment's WAL ends, the next page is zeroed or recycled from an older
        // segment; either way it cannot continue this segment's WAL.
        let ours = header.magic == self.version.page_magic() && header.page_address.0 == page_lsn;
        let offset = match self.state {
            State::SkippingContinuation => {
                match self.skip_continuation(&header, header_len, page_lsn, ours) {
                    Some(offset) => offset,
                    None => return Ok(()),
                }
            }
            State::Between { next } => {
                if next == page_lsn {
                    if !self.starts_records(&header, page_lsn, ours) {
                        return Ok(());
                    }
                    self.state = State::Between {
                        next: page_lsn + header_len as u64,
                    };
                }
                0
            }
            State::InRecord => {
                if !self.continues_record(&header, header_len, page_lsn, ours) {
                    return Ok(());
                }
                header_len
            }
            State::Done => return Ok(()),
        };
        self.walk_records(page, page_lsn, offset)
    }

    /// At the segment start, skips the rest of a record begun in an earlier segment as
    /// `XLogFindNextRecord` does, trusting each page's `xlp_rem_len`. Returns where the first
    /// record of the segment starts on this page, if it does.
    fn skip_continuation(
        &mut self,
        header: &PageHeader,
        header_len: usize,
        page_lsn: u64,
        ours: bool,
    ) -> Option<usize> {
        if !ours {
            self.end_here(WalRecordDefect::EndsEarly {
                end: Lsn(self.valid_end),
                reason: format!("the page at {} is not WAL of this segment", Lsn(page_lsn)),
            });
            return None;
        }
        if header.info & XLP_FIRST_IS_CONTRECORD == 0 {
            self.state = State::Between {
                next: page_lsn + header_len as u64,
            };
            return Some(0);
        }
        let remaining = u64::from(header.remaining_length);
        let room = (self.page_size - header_len) as u64;
        if maxalign(remaining) >= room {
            // The continuation covers this page; the next page's header says how much is left.
            self.valid_end = page_lsn + header_len as u64 + remaining.min(room);
            return None;
        }
        self.valid_end = page_lsn + header_len as u64 + remaining;
        self.state = State::Between {
            next: page_lsn + header_len as u64 + maxalign(remaining),
        };
        Some(0)
    }

    /// Checks a page on which a new record must start right after the header.
    fn starts_records(&mut self, header: &PageHeader, page_lsn: u64, ours: bool) -> bool {
        let end = Lsn(self.valid_end);
        if !ours {
            self.end_here(WalRecordDefect::EndsEarly {
                end,
                reason: format!(
                    "the page at {}, where the next record starts, is not WAL of this segment (zeroed, or left from an older segment)",
                    Lsn(page_lsn)
                ),
            });
            return false;
        }
        if header.info & XLP_FIRST_IS_CONTRECORD != 0 {
            self.end_here(WalRecordDefect::UnexpectedContinuation {
                page: Lsn(page_lsn),
                info: header.info,
                end,
            });
            return false;
        }
        true
    }

    /// Checks a page onto which the record being gathered continues. A page marked as overwriting
    /// a lost continuation drops that record: the walk restarts after the page header, and the
    /// next record's prev-link names the record before the lost one.
    fn continues_record(
        &mut self,
        header: &PageHeader,
        header_len: usize,
        page_lsn: u64,
        ours: bool,
    ) -> bool {
        let lsn = Lsn(self.record.lsn);
        if !ours {
            self.end_here(WalRecordDefect::ContinuationLost {
                lsn,
                page: Lsn(page_lsn),
            });
            return false;
        }
        if header.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 {
            self.state = State::Between {
                next: page_lsn + header_len as u64,
            };
            return true;
        }
        let missing = self.record.total - self.record.gathered;
        if header.info & XLP_FIRST_IS_CONTRECORD == 0 || header.remaining_length != missing {
            self.end_here(WalRecordDefect::ContinuationMismatch {
                lsn,
                page: Lsn(page_lsn),
                info: header.info,
                expected: missing,
                found: header.remaining_length,
            });
            return false;
        }
        true
    }

    /// Walks the records on `page` from `offset` (where a continued record resumes; a new record
    /// starts where `State::Between` says).
    fn walk_records(
        &mut self,
        page: &[u8],
        page_lsn: u64,
        mut offset: usize,
    ) -> Result<(), WalRecordDefect> {
        loop {
            match self.state {
                State::Between { next } => {
                    offset = (next - page_lsn) as usize;
                    // Records start MAXALIGNed, so `xl_tot_len` is always on the record's first
                    // page; past the page end the record starts on the next page.
                    if offset + 4 > page.len() {
                        return Ok(());
                    }
                    let lsn = page_lsn + offset as u64;
                    let total = u32_at(page, offset);
                    if !self.plausible_length(lsn, total) {
                        return Ok(());
                    }
                    let end = offset + total as usize;
                    if end <= page.len() {
                        // Most records lie within one page: read them in place.
                        let record = &page[offset..end];
                        if self.check_record_header(lsn, record) {
                            let body_crc = crc32c::crc32c(&record[RECORD_HEADER_LEN..]);
                            self.complete_record(lsn, record, body_crc, page_lsn + end as u64)?;
                        }
                    } else {
                        self.record.begin(lsn, total);
                        self.state = State::InRecord;
                    }
                }
                State::InRecord => {
                    let wanted = (self.record.total - self.record.gathered) as usize;
                    let n = wanted.min(page.len() - offset);
                    if self.record.take(&page[offset..offset + n]) {
                        let header = self.record.header;
                        self.check_record_header(self.record.lsn, &header);
                    }
                    offset += n;
                    if self.state != State::InRecord || self.record.gathered < self.record.total {
                        return Ok(());
                    }
                    self.complete_gathered_record(page_lsn + offset as u64)?;
                }
                State::SkippingContinuation | State::Done => return Ok(()),
            }
        }
    }

    /// Whether `total` can be the length of the record at `lsn`; if not, valid WAL ends there.
    fn plausible_length(&mut self, lsn: u64, total: u32) -> bool {
        if total == 0 {
            self.end_here(WalRecordDefect::EndsEarly {
                end: Lsn(self.valid_end),
                reason: format!(
                    "the record header at {} is zeros, where the next record should start",
                    Lsn(lsn)
                ),
            });
            return false;
        }
        if (total as usize) < RECORD_HEADER_LEN || total > MAX_RECORD_LEN {
            self.end_here(WalRecordDefect::BadTotalLength {
                lsn: Lsn(lsn),
                length: total,
            });
            return false;
        }
        true
    }

    /// `ValidXLogRecordHeader`: the resource manager and the prev-link, checked as soon as the
    /// header is whole (it may be split across pages), before the body is gathered. False when
    /// valid WAL ends at this record.
    fn check_record_header(&mut self, lsn: u64, header: &[u8]) -> bool {
        let lsn = Lsn(lsn);
        let rmid = header[17];
        if !rmgr_is_valid(rmid, self.version) {
            self.end_here(WalRecordDefect::InvalidRmgr {
                lsn,
                rmid,
                version: self.version,
            });
            return false;
        }
        let found = Lsn(u64_at(header, 8));
        match self.previous {
            Some(expected) if found.0 != expected => {
                self.end_here(WalRecordDefect::PrevLinkMismatch {
                    lsn,
                    expected: Lsn(expected),
                    found,
                });
                false
            }
            // The segment's first record follows one in an earlier segment, whose LSN is unknown
            // here; PostgreSQL checks only that the link points back.
            None if found >= lsn => {
                self.end_here(WalRecordDefect::PrevLinkForward { lsn, found });
                false
            }
            _ => true,
        }
    }

    fn complete_gathered_record(&mut self, end: u64) -> Result<(), WalRecordDefect> {
        let kept = std::mem::take(&mut self.record.bytes);
        let completed = self.complete_record(self.record.lsn, &kept, self.record.crc, end);
        self.record.bytes = kept;
        completed
    }

    /// Checks a whole record's CRC, decodes it and notes what it says. `kept` holds its first
    /// bytes (header included; all of them for XLOG and XACT records), `body_crc` the CRC-32C of
    /// the bytes after its header, `end` the LSN just after its last byte.
    fn complete_record(
        &mut self,
        lsn: u64,
        kept: &[u8],
        body_crc: u32,
        end: u64,
    ) -> Result<(), WalRecordDefect> {
        let lsn = Lsn(lsn);
        let expected = record_crc(body_crc, kept);
        let found = u32_at(kept, CRC_OFFSET);
        if expected != found {
            self.end_here(WalRecordDefect::CrcMismatch {
                lsn,
                expected,
                found,
            });
            return Ok(());
        }
        // PostgreSQL wrote this record (its CRC is right), so a body that does not decode is
        // corruption or a version mismatch, never the end of WAL.
        if let Err(reason) = self.note_record(lsn, kept) {
            return Err(self.fail(WalRecordDefect::BadBody { lsn, reason }));
        }
        self.records += 1;
        self.note_start(lsn);
        self.previous = Some(lsn.0);
        self.valid_end = end;
        self.summary.first_record = self.summary.first_record.or(Some(lsn));
        self.summary.last_record = Some(lsn);
        if is_switch(kept[17], kept[16]) {
            // The rest of the segment is zeroed padding, page headers included.
            self.summary.ends_with_switch = true;
            self.state = State::Done;
        } else {
            self.state = State::Between {
                next: maxalign(end),
            };
        }
        Ok(())
    }

    /// Decodes the record's headers and reads the bodies this module cares about.
    fn note_record(&mut self, lsn: Lsn, kept: &[u8]) -> Result<(), String> {
        let total = u32_at(kept, 0) as usize;
        let main_len = main_data_len(kept, total, self.version)?;
        let main = || &kept[total - main_len..total];
        let (xid, info, rmid) = (u32_at(kept, 4), kept[16], kept[17]);
        let summary = &mut self.summary;
        match rmid {
            RM_XACT_ID => {
                if let Some(end) = xact_end(lsn, info, xid, main(), self.version)? {
                    summary.note_xact_end(&end);
                    self.xact_ends.push(end);
                }
            }
            RM_XLOG_ID => note_xlog_record(summary, lsn, info, main())?,
            _ => {}
        }
        Ok(())
    }
}

/// The CRC PostgreSQL stores in `xl_crc`: CRC-32C over the bytes after the header (`body_crc`),
/// continued over the header up to the CRC field.
fn record_crc(body_crc: u32, header: &[u8]) -> u32 {
    crc32c::crc32c_append(body_crc, &header[..CRC_OFFSET])
}

fn rmgr_is_valid(rmid: u8, version: PgMajor) -> bool {
    rmid <= RM_MAX_BUILTIN_ID || (version.number() >= 15 && rmid >= RM_MIN_CUSTOM_ID)
}

fn is_switch(rmid: u8, info: u8) -> bool {
    rmid == RM_XLOG_ID && info & XLR_RMGR_INFO_MASK == XLOG_SWITCH
}

fn maxalign(x: u64) -> u64 {
    (x + 7) & !7
}

/// Reads the block and data headers after the record header, checking them as
/// `DecodeXLogRecord` does, and returns the length of the main data, which ends the record.
/// `kept` holds the record's first bytes (at least its headers), `total` is `xl_tot_len`.
fn main_data_len(kept: &[u8], total: usize, version: PgMajor) -> Result<usize, String> {
    let mut headers = HeaderReader {
        kept,
        at: RECORD_HEADER_LEN,
        remaining: total - RECORD_HEADER_LEN,
    };
    let compressed_bits = if version.number() >= 15 {
        BKPIMAGE_COMPRESSED_SINCE_15
    } else {
        BKPIMAGE_IS_COMPRESSED_BEFORE_15
    };
    // Bytes of block images, block data and main data that follow the headers.
    let mut data_total = 0usize;
    let mut main_len = 0usize;
    let mut last_block: Option<u8> = None;
    let mut have_relation = false;
    while headers.remaining > data_total {
        let id = headers.u8()?;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(headers.u8()?);
                data_total += main_len;
                // By convention the main data header is always the last one.
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = headers.u32()? as usize;
                data_total += main_len;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => headers.skip(2)?,
            XLR_BLOCK_ID_TOPLEVEL_XID if version.number() >= 14 => headers.skip(4)?,
            0..=XLR_MAX_BLOCK_ID => {
                if let Some(last) = last_block
                    && id <= last
                {
                    return Err(format!("block {id} follows block {last}"));
                }
                last_block = Some(id);
                data_total += block_header(&mut headers, id, compressed_bits, &mut have_relation)?;
            }
            _ => return Err(format!("invalid block id {id}")),
        }
    }
    if headers.remaining != data_total {
        return Err(format!(
            "its headers announce {data_total} bytes of data, but {} bytes follow them",
            headers.remaining
        ));
    }
    Ok(main_len)
}

/// Reads one block header (after its id) and returns the bytes of image and data it announces.
fn block_header(
    headers: &mut HeaderReader,
    id: u8,
    compressed_bits: u8,
    have_relation: &mut bool,
) -> Result<usize, String> {
    let fork_flags = headers.u8()?;
    let data_len = usize::from(headers.u16()?);
    let has_data = fork_flags & BKPBLOCK_HAS_DATA != 0;
    if has_data != (data_len != 0) {
        return Err(format!(
            "block {id} has data length {data_len}, but its has-data flag is {has_data}"
        ));
    }
    let mut announced = data_len;
    if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
        let image_len = usize::from(headers.u16()?);
        let hole_offset = headers.u16()?;
        let image_info = headers.u8()?;
        let has_hole = image_info & BKPIMAGE_HAS_HOLE != 0;
        // An uncompressed image's hole length follows from its length; a compressed one's is
        // stored.
        let hole_len = if has_hole && image_info & compressed_bits != 0 {
            headers.u16()?
        } else {
            0
        };
        if has_hole && (hole_offset == 0 || (image_info & compressed_bits != 0 && hole_len == 0)) {
            return Err(format!(
                "block {id}'s image has a hole at offset {hole_offset} of length {hole_len}"
            ));
        }
        if !has_hole && hole_offset != 0 {
            return Err(format!(
                "block {id}'s image has no hole, but a hole offset of {hole_offset}"
            ));
        }
        announced += image_len;
    }
    if fork_flags & BKPBLOCK_SAME_REL == 0 {
        headers.skip(RELFILENODE_LEN)?;
        *have_relation = true;
    } else if !*have_relation {
        return Err(format!(
            "block {id} refers to the previous block's relation, but there is none"
        ));
    }
    headers.skip(4)?; // BlockNumber
    Ok(announced)
}

/// Reads the headers after the record header, never past the record's end (`remaining`) nor past
/// what was kept of it.
struct HeaderReader<'a> {
    kept: &'a [u8],
    at: usize,
    remaining: usize,
}

impl HeaderReader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.remaining {
            return Err(format!(
                "its headers run past its end at offset {}",
                self.at
            ));
        }
        let Some(bytes) = self.kept.get(self.at..self.at + n) else {
            return Err(format!(
                "its headers run past {MAX_HEADERS_LEN} bytes, more than any valid record has"
            ));
        };
        self.at += n;
        self.remaining -= n;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.bytes(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16_at(self.bytes(2)?, 0))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32_at(self.bytes(4)?, 0))
    }
}

/// Reads a transaction end record's main data (`ParseCommitRecord`/`ParseAbortRecord`,
/// `xactdesc.c`); `None` for the other XACT records.
fn xact_end(
    lsn: Lsn,
    info: u8,
    xl_xid: u32,
    main: &[u8],
    version: PgMajor,
) -> Result<Option<XactEnd>, String> {
    let Some(kind) = xact_end_kind(info) else {
        return Ok(None);
    };
    let is_commit = matches!(kind, XactEndKind::Commit | XactEndKind::CommitPrepared);
    let mut body = BodyReader::new(main, "transaction end");
    let time = body.i64()?;
    let xinfo = if info & XLOG_XACT_HAS_INFO != 0 {
        body.u32()?
    } else {
        0
    };
    if xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        body.skip(8)?;
    }
    if xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        body.skip_array(4)?;
    }
    if xinfo & XACT_XINFO_HAS_RELFILENODES != 0 {
        body.skip_array(RELFILENODE_LEN)?;
    }
    if version.number() >= 15 && xinfo & XACT_XINFO_HAS_DROPPED_STATS != 0 {
        body.skip_array(STATS_ITEM_LEN)?;
    }
    // Abort records never carry invalidation messages; PostgreSQL does not look for them there.
    if is_commit && xinfo & XACT_XINFO_HAS_INVALS != 0 {
        body.skip_array(INVAL_MSG_LEN)?;
    }
    let twophase_xid = if xinfo & XACT_XINFO_HAS_TWOPHASE != 0 {
        Some(body.u32()?)
    } else {
        None
    };
    let xid = match kind {
        XactEndKind::Commit | XactEndKind::Abort => xl_xid,
        XactEndKind::CommitPrepared | XactEndKind::AbortPrepared => twophase_xid
            .ok_or_else(|| "a prepared transaction's end names no prepared XID".to_owned())?,
    };
    Ok(Some(XactEnd {
        lsn,
        kind,
        xid,
        time,
    }))
}

/// The kind of transaction end an XACT record's `xl_info` names, if it is one.
fn xact_end_kind(info: u8) -> Option<XactEndKind> {
    match info & XLOG_XACT_OPMASK {
        XLOG_XACT_COMMIT => Some(XactEndKind::Commit),
        XLOG_XACT_ABORT => Some(XactEndKind::Abort),
        XLOG_XACT_COMMIT_PREPARED => Some(XactEndKind::CommitPrepared),
        XLOG_XACT_ABORT_PREPARED => Some(XactEndKind::AbortPrepared),
        _ => None,
    }
}

/// Whether an RM_XLOG record is one [`note_xlog_record`] reads.
fn is_planned_xlog_record(info: u8) -> bool {
    matches!(
        info & XLR_RMGR_INFO_MASK,
        XLOG_CHECKPOINT_SHUTDOWN
            | XLOG_CHECKPOINT_ONLINE
            | XLOG_BACKUP_END
            | XLOG_RESTORE_POINT
            | XLOG_END_OF_RECOVERY
    )
}

/// Notes the RM_XLOG records that matter to planning.
fn note_xlog_record(
    summary: &mut SegmentSummary,
    lsn: Lsn,
    info: u8,
    main: &[u8],
) -> Result<(), String> {
    let need = |len: usize, what: &str| {
        if main.len() < len {
            Err(format!(
                "its {what} main data is {} bytes, expected {len}",
                main.len()
            ))
        } else {
            Ok(())
        }
    };
    match info & XLR_RMGR_INFO_MASK {
        opcode @ (XLOG_CHECKPOINT_SHUTDOWN | XLOG_CHECKPOINT_ONLINE) => {
            need(CHECKPOINT_LEN, "checkpoint")?;
            summary.checkpoints.push(CheckpointRecord {
                lsn,
                redo: Lsn(u64_at(main, CHECKPOINT_REDO_AT)),
                time_unix: i64_at(main, CHECKPOINT_TIME_AT),
                online: opcode == XLOG_CHECKPOINT_ONLINE,
                timeline: u32_at(main, CHECKPOINT_TIMELINE_AT),
            });
        }
        XLOG_BACKUP_END => {
            need(8, "backup end")?;
            summary.backup_ends.push(BackupEnd {
                lsn,
                backup_start: Lsn(u64_at(main, 0)),
            });
        }
        XLOG_RESTORE_POINT => {
            need(RESTORE_POINT_LEN, "restore point")?;
            summary.restore_points.push(RestorePoint {
                lsn,
                name: restore_point_name(&main[RESTORE_POINT_NAME_AT..RESTORE_POINT_LEN]),
                time: i64_at(main, 0),
            });
        }
        XLOG_END_OF_RECOVERY => {
            need(END_OF_RECOVERY_LEN, "end-of-recovery")?;
            summary.end_of_recovery.push(EndOfRecovery {
                lsn,
                time: i64_at(main, 0),
                timeline: u32_at(main, 8),
                prev_timeline: u32_at(main, 12),
            });
        }
        _ => {}
    }
    Ok(())
}

/// The name up to its NUL: the bytes after it are uninitialised memory, not part of the name.
fn restore_point_name(field: &[u8]) -> String {
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..len]).into_owned()
}

/// Reads a record's main data field by field, naming the structure when it is too short.
struct BodyReader<'a> {
    main: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> BodyReader<'a> {
    fn new(main: &'a [u8], what: &'static str) -> BodyReader<'a> {
        BodyReader { main, at: 0, what }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let bytes = self
            .at
            .checked_add(n)
            .and_then(|end| self.main.get(self.at..end))
            .ok_or_else(|| {
                format!(
                    "its {} main data is {} bytes, shorter than the {} bytes its flags announce",
                    self.what,
                    self.main.len(),
                    self.at.saturating_add(n)
                )
            })?;
        self.at += n;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.bytes(n).map(|_| ())
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32_at(self.bytes(4)?, 0))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64_at(self.bytes(8)?, 0))
    }

    /// Skips an `int count` followed by `count` items of `item_len` bytes.
    fn skip_array(&mut self, item_len: usize) -> Result<(), String> {
        let count = self.u32()? as i32;
        let count = usize::try_from(count)
            .map_err(|_| format!("its {} main data has a count of {count}", self.what))?;
        self.skip(count.saturating_mul(item_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::lsn::TimelineId;
    use crate::pg::segment_check::CHUNK_ALIGNMENT;

    const PAGE: usize = 8192;
    const MIB: u64 = 1 << 20;
    const RM_HEAP_ID: u8 = 10;
    const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;
    const XLOG_XACT_PREPARE: u8 = 0x10;

    fn pg(major: u32) -> PgMajor {
        PgMajor::new(major).unwrap()
    }

    /// `xl_info` of a transaction end record carrying an `xinfo` word.
    fn with_xinfo(opcode: u8) -> u8 {
        opcode | XLOG_XACT_HAS_INFO
    }

    /// A whole record: header with `prev` and the CRC over `body`, then `body`.
    fn build_record(rmid: u8, info: u8, xid: u32, prev: u64, body: &[u8]) -> Vec<u8> {
        let total = (RECORD_HEADER_LEN + body.len()) as u32;
        let mut record = Vec::with_capacity(total as usize);
        record.extend_from_slice(&total.to_le_bytes());
        record.extend_from_slice(&xid.to_le_bytes());
        record.extend_from_slice(&prev.to_le_bytes());
        record.extend_from_slice(&[info, rmid, 0, 0]);
        let crc = crc32c::crc32c_append(crc32c::crc32c(body), &record[..CRC_OFFSET]);
        record.extend_from_slice(&crc.to_le_bytes());
        record.extend_from_slice(body);
        record
    }

    /// A body holding only main data.
    fn main_data_body(main: &[u8]) -> Vec<u8> {
        let mut body = if main.len() < 256 {
            vec![XLR_BLOCK_ID_DATA_SHORT, main.len() as u8]
        } else {
            let mut header = vec![XLR_BLOCK_ID_DATA_LONG];
            header.extend_from_slice(&(main.len() as u32).to_le_bytes());
            header
        };
        body.extend_from_slice(main);
        body
    }

    /// Writes WAL the way PostgreSQL lays it out over consecutive segments: MAXALIGNed records,
    /// a page header at every page boundary (continuation flag and `xlp_rem_len` when a record
    /// goes on), a long header at every segment start, a prev-link chain and CRCs.
    struct WalWriter {
        bytes: Vec<u8>,
        first_segment: u64,
        base: u64,
        segment_size: u64,
        version: PgMajor,
        pos: u64,
        prev: u64,
        /// Extra `xlp_info` bits for the next page header written.
        next_page_flags: u16,
        lsns: Vec<u64>,
        /// Where the last record written ends, before alignment.
        end: u64,
    }

    impl WalWriter {
        fn new(first_segment: u64, segments: usize, segment_size: u64, version: PgMajor) -> Self {
            let base = first_segment * segment_size;
            WalWriter {
                bytes: vec![0; segments * segment_size as usize],
                first_segment,
                base,
                segment_size,
                version,
                pos: base,
                prev: base.saturating_sub(0x58),
                next_page_flags: 0,
                lsns: Vec::new(),
                end: base,
            }
        }

        fn mib(first_segment: u64, segments: usize) -> Self {
            WalWriter::new(first_segment, segments, MIB, pg(15))
        }

        fn header_len(&self, page_lsn: u64) -> u64 {
            if page_lsn.is_multiple_of(self.segment_size) {
                LONG_HEADER_LEN as u64
            } else {
                SHORT_HEADER_LEN as u64
            }
        }

        fn write_page_header(&mut self, page_lsn: u64, remaining: u32) {
            let at = (page_lsn - self.base) as usize;
            let long = page_lsn.is_multiple_of(self.segment_size);
            let mut info = std::mem::take(&mut self.next_page_flags);
            if long {
                info |= XLP_LONG_HEADER;
            }
            if remaining > 0 {
                info |= XLP_FIRST_IS_CONTRECORD;
            }
            let header = &mut self.bytes[at..at + LONG_HEADER_LEN];
            header[0..2].copy_from_slice(&self.version.page_magic().to_le_bytes());
            header[2..4].copy_from_slice(&info.to_le_bytes());
            header[4..8].copy_from_slice(&1u32.to_le_bytes());
            header[8..16].copy_from_slice(&page_lsn.to_le_bytes());
            header[16..20].copy_from_slice(&remaining.to_le_bytes());
            if long {
                header[24..32].copy_from_slice(&7_310_000_000_000_000_001u64.to_le_bytes());
                header[32..36].copy_from_slice(&(self.segment_size as u32).to_le_bytes());
                header[36..40].copy_from_slice(&(PAGE as u32).to_le_bytes());
            }
        }

        /// Writes a prepared record at the insert position; returns its LSN.
        fn put(&mut self, record: &[u8]) -> u64 {
            let mut lsn = None;
            let mut done = 0;
            while done < record.len() {
                if self.pos.is_multiple_of(PAGE as u64) {
                    let remaining = if done > 0 { record.len() - done } else { 0 };
                    self.write_page_header(self.pos, remaining as u32);
                    self.pos += self.header_len(self.pos);
                }
                lsn.get_or_insert(self.pos);
                let n = (record.len() - done).min(PAGE - (self.pos % PAGE as u64) as usize);
                let at = (self.pos - self.base) as usize;
                self.bytes[at..at + n].copy_from_slice(&record[done..done + n]);
                done += n;
                self.pos += n as u64;
            }
            self.end = self.pos;
            self.pos = maxalign(self.pos);
            let lsn = lsn.unwrap();
            self.prev = lsn;
            self.lsns.push(lsn);
            lsn
        }

        fn record(&mut self, rmid: u8, info: u8, xid: u32, body: &[u8]) -> u64 {
            let record = build_record(rmid, info, xid, self.prev, body);
            self.put(&record)
        }

        fn main_data(&mut self, rmid: u8, info: u8, xid: u32, main: &[u8]) -> u64 {
            self.record(rmid, info, xid, &main_data_body(main))
        }

        /// A heap record of exactly `total` bytes (at least 26).
        fn filler(&mut self, total: usize) -> u64 {
            let len = total - RECORD_HEADER_LEN;
            let main_len = if len - 2 < 256 { len - 2 } else { len - 5 };
            self.main_data(RM_HEAP_ID, 0, 0, &vec![0xAB; main_len])
        }

        fn commit(&mut self, xid: u32, time: i64) -> u64 {
            self.main_data(RM_XACT_ID, XLOG_XACT_COMMIT, xid, &time.to_le_bytes())
        }

        /// A commit record listing `subxacts`: longer than a plain one.
        fn commit_with_subxacts(&mut self, xid: u32, time: i64, subxacts: &[u32]) -> u64 {
            let mut main = time.to_le_bytes().to_vec();
            main.extend_from_slice(&XACT_XINFO_HAS_SUBXACTS.to_le_bytes());
            main.extend_from_slice(&(subxacts.len() as u32).to_le_bytes());
            for sub in subxacts {
                main.extend_from_slice(&sub.to_le_bytes());
            }
            self.main_data(
                RM_XACT_ID,
                XLOG_XACT_COMMIT | XLOG_XACT_HAS_INFO,
                xid,
                &main,
            )
        }

        /// Segments `index` and `index + 1` walked as one stream.
        fn walk_spanning(&self, index: usize) -> Result<WalkedSegment, WalRecordDefect> {
            let name = SegmentName::from_segment_number(
                TimelineId(1),
                self.first_segment + index as u64,
                SegmentSize::new(self.segment_size).unwrap(),
            );
            let mut walker = RecordWalker::spanning(
                name,
                SegmentSize::new(self.segment_size).unwrap(),
                self.version,
                PAGE as u32,
            )?;
            walker.feed(self.segment(index))?;
            walker.feed(self.segment(index + 1))?;
            walker.finish(true)
        }

        fn switch(&mut self) -> u64 {
            let lsn = self.record(RM_XLOG_ID, XLOG_SWITCH, 0, &[]);
            // PostgreSQL zeroes the rest of the segment, page headers included.
            self.pos = (lsn / self.segment_size + 1) * self.segment_size;
            lsn
        }

        /// Where a record written now would start.
        fn next_lsn(&self, pos: u64) -> u64 {
            if pos.is_multiple_of(PAGE as u64) {
                pos + self.header_len(pos)
            } else {
                pos
            }
        }

        /// The insert position after a record of `total` bytes written now.
        fn end_after(&self, total: usize) -> u64 {
            let mut pos = self.pos;
            let mut left = total as u64;
            while left > 0 {
                if pos.is_multiple_of(PAGE as u64) {
                    pos += self.header_len(pos);
                }
                let n = left.min(PAGE as u64 - pos % PAGE as u64);
                pos += n;
                left -= n;
            }
            maxalign(pos)
        }

        /// Writes filler records until the next record starts at `target`.
        fn fill_until(&mut self, target: u64) {
            while target - self.pos > 8000 {
                self.filler(3000);
            }
            let reach = (target - self.pos) as usize + 64;
            let total = (26..reach)
                .find(|&total| self.next_lsn(self.end_after(total)) == target)
                .unwrap_or_else(|| panic!("cannot fill from {:X} to {target:X}", self.pos));
            self.filler(total);
            assert_eq!(self.next_lsn(self.pos), target);
        }

        fn segment(&self, index: usize) -> &[u8] {
            let size = self.segment_size as usize;
            &self.bytes[index * size..(index + 1) * size]
        }

        fn offset(&self, lsn: u64) -> usize {
            (lsn - self.base) as usize
        }

        fn walk(&self, index: usize, complete: bool) -> Walked {
            walk_bytes(
                self.segment(index),
                self.first_segment + index as u64,
                self.segment_size,
                self.version,
                complete,
                CHUNK_ALIGNMENT,
            )
        }
    }

    type Walked = Result<(WalkedSegment, u64), WalRecordDefect>;

    /// Feeds `bytes` as segment `segno` in chunks of `chunk`; the summary and the record count.
    fn walk_bytes(
        bytes: &[u8],
        segno: u64,
        segment_size: u64,
        version: PgMajor,
        complete: bool,
        chunk: usize,
    ) -> Walked {
        let size = SegmentSize::new(segment_size).unwrap();
        let name = SegmentName::from_segment_number(TimelineId(1), segno, size);
        let mut walker = RecordWalker::new(name, size, version, PAGE as u32);
        for piece in bytes.chunks(chunk) {
            walker.feed(piece)?;
        }
        let count = walker.record_count();
        walker.finish(complete).map(|summary| (summary, count))
    }

    #[test]
    fn crc_test_vectors_from_a_real_postgresql_15_segment() {
        // COMMIT @0/2000130 and SWITCH @0/2001AE8 (reference §2.5).
        let commit = hex("22000000d602000008010002000000000001000023ed6d06ff08db82dc57c8030300");
        let switch = hex("1800000000000000701a00020000000040000000cdb176aa");
        for (record, stored) in [(commit, 0x066D_ED23), (switch, 0xAA76_B1CD)] {
            assert_eq!(u32_at(&record, CRC_OFFSET), stored);
            // In place, as a record within one page is read.
            let body_crc = crc32c::crc32c(&record[RECORD_HEADER_LEN..]);
            assert_eq!(record_crc(body_crc, &record), stored);
            // Gathered in two pieces, the header split, as across a page boundary.
            let mut assembly = Assembly::default();
            assembly.begin(0, record.len() as u32);
            assembly.take(&record[..13]);
            assembly.take(&record[13..]);
            assert_eq!(record_crc(assembly.crc, &assembly.header), stored);
            assert_eq!(assembly.bytes, record);
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn real_commit_and_switch_records_walk_where_postgresql_wrote_them() {
        // Segment 0/2000000 of 16 MiB segments, with the real records at their real LSNs and
        // fillers chained so that their prev-links (0/2000108 and 0/2001A70) hold.
        let commit = hex("22000000d602000008010002000000000001000023ed6d06ff08db82dc57c8030300");
        let switch = hex("1800000000000000701a00020000000040000000cdb176aa");
        let mut wal = WalWriter::new(2, 1, 16 * MIB, pg(15));
        wal.fill_until(0x0200_0108);
        wal.filler(0x28);
        assert_eq!(wal.put(&commit), 0x0200_0130);
        wal.fill_until(0x0200_1A70);
        wal.filler(0x78);
        assert_eq!(wal.put(&switch), 0x0200_1AE8);
        let (summary, count) = wal.walk(0, true).unwrap();
        assert_eq!(count, wal.lsns.len() as u64);
        assert_eq!(summary.summary.first_record, Some(Lsn(0x0200_0028)));
        assert_eq!(summary.summary.last_record, Some(Lsn(0x0200_1AE8)));
        assert_eq!(summary.summary.end_of_wal, Lsn(0x0200_1B00));
        assert!(summary.summary.ends_with_switch);
        assert!(!summary.summary.continues_into_next);
        // pg_waldump: "COMMIT 2026-11-21 13:45:32.543707 UTC" = 848583932543707 µs after 2000.
        assert_eq!(
            summary.xact_ends,
            vec![XactEnd {
                lsn: Lsn(0x0200_0130),
                kind: XactEndKind::Commit,
                xid: 726,
                time: 848_583_932_543_707,
            }]
        );
        assert_eq!(
            (summary.summary.min_xid, summary.summary.max_xid),
            (Some(726), Some(726))
        );
    }

    /// Segment 3 of 1 MiB segments: commits, a record whose header is split 8/16 and one split
    /// 16/8 across page boundaries, a record over three pages, and a switch.
    fn split_records() -> (WalWriter, Vec<u64>) {
        let mut wal = WalWriter::mib(3, 1);
        let base = wal.base;
        let mut commits = vec![wal.commit(700, 1_000)];
        wal.fill_until(base + PAGE as u64 - 8);
        commits.push(wal.commit(701, 2_000));
        wal.fill_until(base + 2 * PAGE as u64 - 16);
        commits.push(wal.commit(702, 3_000));
        wal.filler(20_000);
        commits.push(wal.commit(703, 4_000));
        wal.switch();
        (wal, commits)
    }

    #[test]
    fn records_split_across_pages_headers_included_are_reassembled() {
        let (wal, commits) = split_records();
        let (summary, count) = wal.walk(0, true).unwrap();
        assert_eq!(count, wal.lsns.len() as u64);
        let found: Vec<(u64, u32, i64)> = summary
            .xact_ends
            .iter()
            .map(|end| (end.lsn.0, end.xid, end.time))
            .collect();
        assert_eq!(
            found,
            vec![
                (commits[0], 700, 1_000),
                (commits[1], 701, 2_000),
                (commits[2], 702, 3_000),
                (commits[3], 703, 4_000),
            ]
        );
        assert_eq!(commits[1] % PAGE as u64, PAGE as u64 - 8);
        assert_eq!(commits[2] % PAGE as u64, PAGE as u64 - 16);
        assert_eq!(
            (summary.summary.min_xid, summary.summary.max_xid),
            (Some(700), Some(703))
        );
        assert!(summary.summary.ends_with_switch);
        assert_eq!(
            summary.summary.last_record,
            wal.lsns.last().map(|&l| Lsn(l))
        );
        assert_eq!(
            summary.summary.end_of_wal,
            Lsn(wal.lsns.last().unwrap() + 24)
        );
    }

    #[test]
    fn the_summary_does_not_depend_on_how_the_segment_is_chunked() {
        let (wal, _) = split_records();
        let expected = wal.walk(0, true).unwrap();
        for chunk in [PAGE, 1000, 4 * CHUNK_ALIGNMENT, MIB as usize] {
            let walked = walk_bytes(wal.segment(0), 3, MIB, pg(15), true, chunk);
            assert_eq!(walked, Ok(expected.clone()), "chunks of {chunk}");
        }
    }

    #[test]
    fn after_a_switch_the_rest_of_the_segment_is_not_walked() {
        let (mut wal, _) = split_records();
        let end = wal.offset(*wal.lsns.last().unwrap()) + 24;
        // Not what PostgreSQL writes (the segment checker refuses it), but no record is there.
        wal.bytes[end..end + 64].fill(0xEE);
        wal.bytes[5 * PAGE..6 * PAGE].fill(0x77);
        let (summary, _) = wal.walk(0, true).unwrap();
        assert!(summary.summary.ends_with_switch);
        assert_eq!(summary.summary.end_of_wal.0, wal.base + end as u64);
    }

    #[test]
    fn a_record_spilling_into_the_next_segment_belongs_to_the_one_it_starts_in() {
        let mut wal = WalWriter::mib(3, 2);
        let seg4 = wal.base + MIB;
        wal.commit(800, 10);
        wal.fill_until(seg4 - 1000);
        // 29 000 bytes: the next segment starts with three pages of its continuation.
        let big = wal.filler(30_000);
        let after = wal.commit(801, 20);
        wal.switch();

        let (first, count) = wal.walk(0, true).unwrap();
        assert_eq!(first.summary.last_record, Some(Lsn(big)));
        assert!(first.summary.continues_into_next);
        assert!(!first.summary.ends_with_switch);
        assert_eq!(first.summary.end_of_wal, Lsn(seg4));
        assert_eq!(count, wal.lsns.iter().filter(|&&l| l < seg4).count() as u64);

        let (second, count) = wal.walk(1, true).unwrap();
        assert_eq!(second.summary.first_record, Some(Lsn(after)));
        assert!(after > seg4 + 3 * PAGE as u64);
        assert_eq!(second.xact_ends.len(), 1);
        assert_eq!(second.xact_ends[0].lsn, Lsn(after));
        assert!(second.summary.ends_with_switch);
        assert_eq!(count, 2);
    }

    #[test]
    fn a_record_header_split_by_the_segment_end_continues_into_the_next() {
        let mut wal = WalWriter::mib(3, 2);
        let seg4 = wal.base + MIB;
        wal.fill_until(seg4 - 8);
        let split = wal.commit(900, 30);
        let after = wal.commit(901, 40);
        wal.switch();
        let (first, _) = wal.walk(0, true).unwrap();
        assert_eq!(first.summary.last_record, Some(Lsn(split)));
        assert!(first.summary.continues_into_next);
        assert!(first.xact_ends.is_empty());
        // Nothing of the commit but 8 bytes of its header is here: the summary says so.
        assert!(first.summary.spill_undecoded);
        let (second, count) = wal.walk(1, true).unwrap();
        assert_eq!(second.summary.first_record, Some(Lsn(after)));
        assert_eq!(second.xact_ends[0].xid, 901);
        assert_eq!(count, 2);
        // Walked with the next segment, the commit is read whole.
        let both = wal.walk_spanning(0).unwrap();
        let ends: Vec<(Lsn, u32, i64)> = both
            .xact_ends
            .iter()
            .map(|x| (x.lsn, x.xid, x.time))
            .collect();
        assert!(ends.contains(&(Lsn(split), 900, 30)), "{ends:?}");
        assert!(!both.summary.spill_undecoded);
    }

    #[test]
    fn a_transaction_end_spilling_into_the_next_segment_is_read_from_its_first_part() {
        let mut wal = WalWriter::mib(3, 2);
        let seg4 = wal.base + MIB;
        wal.commit(800, 10);
        // Header, data header and commit time fit in the 40 bytes left; the subtransactions
        // spill over.
        wal.fill_until(seg4 - 40);
        let split = wal.commit_with_subxacts(920, 70, &[921, 922, 923, 924, 925, 926, 927]);
        wal.commit(930, 60);
        wal.switch();
        let (first, _) = wal.walk(0, true).unwrap();
        assert_eq!(first.summary.last_record, Some(Lsn(split)));
        assert!(first.summary.continues_into_next && !first.summary.spill_undecoded);
        assert_eq!(
            first.xact_ends.last().map(|x| (x.lsn, x.xid, x.time)),
            Some((Lsn(split), 920, 70))
        );
        assert_eq!(first.summary.xact_count, 2);
        assert_eq!(
            (first.summary.min_time, first.summary.max_time),
            (Some(10), Some(70))
        );
        assert_eq!(first.summary.max_xid, Some(920));
        // The next segment does not count it again.
        let (second, _) = wal.walk(1, true).unwrap();
        assert_eq!(
            second.xact_ends.iter().map(|x| x.xid).collect::<Vec<_>>(),
            [930]
        );
        assert_eq!(second.summary.min_time, Some(60));
    }

    #[test]
    fn a_record_longer_than_the_segment_covers_it_all() {
        let mut wal = WalWriter::mib(3, 3);
        wal.commit(1, 1);
        let big = wal.filler(2 * MIB as usize + MIB as usize / 2);
        let after = wal.commit(2, 2);
        wal.switch();
        let (middle, count) = wal.walk(1, true).unwrap();
        assert_eq!(count, 0);
        assert_eq!(middle.summary.first_record, None);
        assert_eq!(middle.summary.last_record, None);
        assert!(middle.summary.continues_into_next);
        assert_eq!(middle.summary.end_of_wal, Lsn(wal.base + 2 * MIB));
        let (first, _) = wal.walk(0, true).unwrap();
        assert_eq!(first.summary.last_record, Some(Lsn(big)));
        let (last, count) = wal.walk(2, true).unwrap();
        assert_eq!(last.summary.first_record, Some(Lsn(after)));
        assert_eq!(count, 2);
    }

    #[test]
    fn a_filled_segment_ends_at_its_end() {
        // The last record ends exactly at the segment end: the next starts in the next segment.
        let mut wal = WalWriter::mib(3, 2);
        let end = wal.base + MIB;
        wal.commit(5, 5);
        wal.fill_until(end - 104);
        let last = wal.filler(104);
        wal.commit(6, 6);
        wal.switch();
        let (summary, count) = wal.walk(0, true).unwrap();
        assert_eq!(summary.summary.last_record, Some(Lsn(last)));
        assert_eq!(summary.summary.end_of_wal, Lsn(end));
        assert!(!summary.summary.continues_into_next && !summary.summary.ends_with_switch);
        assert_eq!(count, wal.lsns.iter().filter(|&&l| l < end).count() as u64);
        let (next, count) = wal.walk(1, true).unwrap();
        assert_eq!(
            next.summary.first_record,
            Some(Lsn(end + LONG_HEADER_LEN as u64))
        );
        assert_eq!(count, 2);
    }

    /// Three commits and a switch; returns the writer and the commits' LSNs.
    fn three_commits() -> (WalWriter, [u64; 3]) {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + 3 * PAGE as u64 + 200);
        let a = wal.commit(10, 100);
        let b = wal.commit(11, 200);
        let c = wal.commit(12, 300);
        wal.switch();
        (wal, [a, b, c])
    }

    #[test]
    fn a_corrupted_crc_is_a_defect_in_a_complete_segment_and_the_end_of_a_partial_one() {
        let (mut wal, [a, b, _]) = three_commits();
        let at = wal.offset(b) + 30;
        wal.bytes[at] ^= 0x01;
        match wal.walk(0, true) {
            Err(WalRecordDefect::CrcMismatch { lsn, .. }) => assert_eq!(lsn, Lsn(b)),
            other => panic!("expected a CRC mismatch at {}, got {other:?}", Lsn(b)),
        }
        let message = wal.walk(0, true).unwrap_err().to_string();
        assert!(message.contains(&Lsn(b).to_string()), "{message}");
        let (partial, _) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.last_record, Some(Lsn(a)));
        assert_eq!(partial.summary.end_of_wal, Lsn(a + 34));
        assert_eq!(partial.xact_ends.len(), 1);
        assert!(!partial.summary.ends_with_switch);
    }

    #[test]
    fn a_broken_prev_link_is_named_with_both_lsns() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + 5000);
        let a = wal.commit(10, 100);
        wal.prev = a - 0x100;
        let b = wal.commit(11, 200);
        wal.switch();
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::PrevLinkMismatch {
                lsn: Lsn(b),
                expected: Lsn(a),
                found: Lsn(a - 0x100),
            })
        );
        let (partial, _) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.last_record, Some(Lsn(a)));
    }

    #[test]
    fn the_first_record_may_not_point_forward() {
        let mut wal = WalWriter::mib(3, 1);
        wal.prev = wal.base + 0x1000;
        let first = wal.commit(10, 100);
        wal.switch();
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::PrevLinkForward {
                lsn: Lsn(first),
                found: Lsn(wal.base + 0x1000),
            })
        );
    }

    #[test]
    fn a_zeroed_record_ends_a_partial_segment_and_is_a_defect_in_a_complete_one() {
        let (mut wal, [a, b, _]) = three_commits();
        let at = wal.offset(b);
        wal.bytes[at..at + 40].fill(0);
        match wal.walk(0, true) {
            Err(WalRecordDefect::EndsEarly { end, reason }) => {
                assert_eq!(end, Lsn(a + 34));
                assert!(reason.contains(&Lsn(b).to_string()), "{reason}");
            }
            other => panic!("expected the WAL to end early, got {other:?}"),
        }
        let (partial, count) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.end_of_wal, Lsn(a + 34));
        assert_eq!(partial.summary.last_record, Some(Lsn(a)));
        assert_eq!(count, wal.lsns.iter().filter(|&&l| l <= a).count() as u64);
    }

    #[test]
    fn a_partial_segment_may_end_at_a_page_of_zeros_or_a_stale_page() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + 2 * PAGE as u64 + 24);
        let (last, last_end) = (*wal.lsns.last().unwrap(), wal.end);
        let page = 2 * PAGE;
        // A page recycled from an older segment: a valid header with the wrong address.
        let mut older = WalWriter::mib(1, 1);
        older.fill_until(older.base + 3 * PAGE as u64 + 104);
        let stale = older.bytes[page..page + PAGE].to_vec();
        for replacement in [stale, vec![0; PAGE]] {
            wal.bytes[page..page + PAGE].copy_from_slice(&replacement);
            let (summary, _) = wal.walk(0, false).unwrap();
            assert_eq!(summary.summary.last_record, Some(Lsn(last)));
            assert_eq!(summary.summary.end_of_wal, Lsn(last_end));
            assert!(matches!(
                wal.walk(0, true),
                Err(WalRecordDefect::EndsEarly { end, .. }) if end == Lsn(last_end)
            ));
        }
    }

    #[test]
    fn a_record_continuing_onto_a_page_of_zeros_is_lost() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + 2 * PAGE as u64 - 200);
        let (before, before_end) = (*wal.lsns.last().unwrap(), wal.end);
        let crossing = wal.filler(600);
        wal.switch();
        wal.bytes[2 * PAGE..].fill(0);
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::ContinuationLost {
                lsn: Lsn(crossing),
                page: Lsn(wal.base + 2 * PAGE as u64),
            })
        );
        let (partial, _) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.last_record, Some(Lsn(before)));
        assert_eq!(partial.summary.end_of_wal, Lsn(before_end));
    }

    #[test]
    fn a_continuation_page_must_say_how_much_is_left() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + PAGE as u64 - 200);
        let before = *wal.lsns.last().unwrap();
        let crossing = wal.filler(600);
        wal.switch();
        let page = PAGE;
        let right = u32_at(&wal.bytes, page + 16);
        wal.bytes[page + 16..page + 20].copy_from_slice(&(right + 8).to_le_bytes());
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::ContinuationMismatch {
                lsn: Lsn(crossing),
                page: Lsn(wal.base + page as u64),
                info: XLP_FIRST_IS_CONTRECORD,
                expected: right,
                found: right + 8,
            })
        );
        let (partial, _) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.last_record, Some(Lsn(before)));

        // Without the flag the page does not continue the record either.
        wal.bytes[page + 16..page + 20].copy_from_slice(&right.to_le_bytes());
        wal.bytes[page + 2..page + 4].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(
            wal.walk(0, true),
            Err(WalRecordDefect::ContinuationMismatch { info: 0, .. })
        ));
    }

    #[test]
    fn a_page_claiming_a_continuation_where_a_record_must_start_is_refused() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + PAGE as u64 + 24);
        let next = wal.commit(1, 1);
        wal.switch();
        let page = PAGE;
        wal.bytes[page + 2..page + 4].copy_from_slice(&XLP_FIRST_IS_CONTRECORD.to_le_bytes());
        assert!(matches!(
            wal.walk(0, true),
            Err(WalRecordDefect::UnexpectedContinuation { page, .. }) if page == Lsn(next - 24)
        ));
    }

    #[test]
    fn an_overwritten_continuation_drops_the_lost_record() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + PAGE as u64 + 104);
        let kept = wal.commit(30, 1);
        let lost = wal.filler(3 * PAGE);
        // A crash lost the rest of `lost`; recovery rewrote WAL from the page it was missing on.
        let page = (lost / PAGE as u64 + 1) * PAGE as u64;
        let from = wal.offset(page);
        wal.bytes[from..].fill(0);
        wal.pos = page;
        wal.prev = kept;
        wal.lsns.retain(|&l| l != lost);
        wal.next_page_flags = XLP_FIRST_IS_OVERWRITE_CONTRECORD;
        let mut overwrite = lost.to_le_bytes().to_vec();
        overwrite.extend_from_slice(&5i64.to_le_bytes());
        let overwrite = wal.main_data(RM_XLOG_ID, XLOG_OVERWRITE_CONTRECORD, 0, &overwrite);
        let after = wal.commit(31, 2);
        wal.switch();
        let (summary, count) = wal.walk(0, true).unwrap();
        assert_eq!(count, wal.lsns.len() as u64);
        assert_eq!(overwrite, page + 24);
        let xids: Vec<(Lsn, u32)> = summary.xact_ends.iter().map(|e| (e.lsn, e.xid)).collect();
        assert_eq!(xids, vec![(Lsn(kept), 30), (Lsn(after), 31)]);
        assert!(summary.summary.ends_with_switch);
    }

    fn commit_body(xid_info: u32, parts: &[&[u8]]) -> Vec<u8> {
        let mut main = 123_456_789i64.to_le_bytes().to_vec();
        main.extend_from_slice(&xid_info.to_le_bytes());
        for part in parts {
            main.extend_from_slice(part);
        }
        main
    }

    fn array(count: u32, item_len: usize) -> Vec<u8> {
        let mut bytes = count.to_le_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(0x5A, count as usize * item_len));
        bytes
    }

    #[test]
    fn transaction_ends_and_xlog_records_are_read_from_their_bodies() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + 200);
        let dbinfo = [1u8, 0, 0, 0, 0x7F, 0x06, 0, 0];
        // COMMIT with database, subtransactions, relations and invalidations; the consistency
        // checking bit set in the low nibble.
        let commit = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_COMMIT) | 0x02,
            740,
            &commit_body(
                XACT_XINFO_HAS_DBINFO
                    | XACT_XINFO_HAS_SUBXACTS
                    | XACT_XINFO_HAS_RELFILENODES
                    | XACT_XINFO_HAS_INVALS,
                &[&dbinfo, &array(2, 4), &array(1, 12), &array(3, 16)],
            ),
        );
        let abort = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_ABORT),
            741,
            &commit_body(XACT_XINFO_HAS_SUBXACTS, &[&array(1, 4)]),
        );
        // PREPARE is not an end.
        wal.main_data(RM_XACT_ID, XLOG_XACT_PREPARE, 742, &[0; 80]);
        // COMMIT PREPARED: xl_xid is 0, the prepared XID follows dropped stats; a GID and an
        // origin after it.
        let mut gid_and_origin = b"gid-1\0".to_vec();
        gid_and_origin.extend_from_slice(&[0x11; 16]);
        let commit_prepared = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_COMMIT_PREPARED),
            0,
            &commit_body(
                XACT_XINFO_HAS_DBINFO
                    | XACT_XINFO_HAS_DROPPED_STATS
                    | XACT_XINFO_HAS_INVALS
                    | XACT_XINFO_HAS_TWOPHASE
                    | (1 << 7)
                    | (1 << 5),
                &[
                    &dbinfo,
                    &array(2, 12),
                    &array(1, 16),
                    &742u32.to_le_bytes(),
                    &gid_and_origin,
                ],
            ),
        );
        let abort_prepared = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_ABORT_PREPARED),
            0,
            &commit_body(XACT_XINFO_HAS_TWOPHASE, &[&739u32.to_le_bytes()]),
        );
        let mut restore_point = 777i64.to_le_bytes().to_vec();
        let mut name = [0xCCu8; 64];
        name[..6].copy_from_slice(b"rp_one");
        name[6] = 0;
        restore_point.extend_from_slice(&name);
        let rp = wal.main_data(RM_XLOG_ID, XLOG_RESTORE_POINT, 0, &restore_point);
        let mut checkpoint = [0u8; CHECKPOINT_LEN];
        checkpoint[0..8].copy_from_slice(&(wal.base + 0x28).to_le_bytes());
        checkpoint[8..12].copy_from_slice(&3u32.to_le_bytes());
        checkpoint[12..16].copy_from_slice(&2u32.to_le_bytes());
        checkpoint[64..72].copy_from_slice(&1_790_000_000i64.to_le_bytes());
        let online = wal.main_data(RM_XLOG_ID, XLOG_CHECKPOINT_ONLINE, 0, &checkpoint);
        let shutdown = wal.main_data(RM_XLOG_ID, XLOG_CHECKPOINT_SHUTDOWN, 0, &checkpoint);
        let backup_end = wal.main_data(
            RM_XLOG_ID,
            XLOG_BACKUP_END,
            0,
            &0x0300_0060u64.to_le_bytes(),
        );
        let mut end_of_recovery = 888i64.to_le_bytes().to_vec();
        end_of_recovery.extend_from_slice(&3u32.to_le_bytes());
        end_of_recovery.extend_from_slice(&2u32.to_le_bytes());
        let eor = wal.main_data(RM_XLOG_ID, XLOG_END_OF_RECOVERY, 0, &end_of_recovery);
        wal.switch();

        let (summary, _) = wal.walk(0, true).unwrap();
        let time = 123_456_789;
        let end = |lsn, kind, xid| XactEnd {
            lsn: Lsn(lsn),
            kind,
            xid,
            time,
        };
        assert_eq!(
            summary.xact_ends,
            vec![
                end(commit, XactEndKind::Commit, 740),
                end(abort, XactEndKind::Abort, 741),
                end(commit_prepared, XactEndKind::CommitPrepared, 742),
                end(abort_prepared, XactEndKind::AbortPrepared, 739),
            ]
        );
        assert_eq!(
            (summary.summary.min_xid, summary.summary.max_xid),
            (Some(739), Some(742))
        );
        assert_eq!(
            summary.summary.restore_points,
            vec![RestorePoint {
                lsn: Lsn(rp),
                name: "rp_one".into(),
                time: 777
            }]
        );
        let checkpoint = |lsn, online| CheckpointRecord {
            lsn: Lsn(lsn),
            redo: Lsn(wal.base + 0x28),
            time_unix: 1_790_000_000,
            online,
            timeline: 3,
        };
        assert_eq!(
            summary.summary.checkpoints,
            vec![checkpoint(online, true), checkpoint(shutdown, false)]
        );
        assert_eq!(
            summary.summary.backup_ends,
            vec![BackupEnd {
                lsn: Lsn(backup_end),
                backup_start: Lsn(0x0300_0060)
            }]
        );
        assert_eq!(
            summary.summary.end_of_recovery,
            vec![EndOfRecovery {
                lsn: Lsn(eor),
                time: 888,
                timeline: 3,
                prev_timeline: 2
            }]
        );
    }

    #[test]
    fn a_body_too_short_for_its_flags_is_refused_by_feed_in_any_segment() {
        let mut wal = WalWriter::mib(3, 1);
        let commit = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_COMMIT_PREPARED),
            0,
            &commit_body(XACT_XINFO_HAS_SUBXACTS, &[&array(1, 4)]),
        );
        wal.switch();
        for complete in [true, false] {
            assert!(matches!(
                wal.walk(0, complete),
                Err(WalRecordDefect::BadBody { lsn, .. }) if lsn == Lsn(commit)
            ));
        }
        let mut wal = WalWriter::mib(3, 1);
        let checkpoint = wal.main_data(RM_XLOG_ID, XLOG_CHECKPOINT_ONLINE, 0, &[0; 40]);
        wal.switch();
        let size = SegmentSize::new(MIB).unwrap();
        let name = SegmentName::from_segment_number(TimelineId(1), 3, size);
        let mut walker = RecordWalker::new(name, size, pg(15), PAGE as u32);
        let defect = walker.feed(wal.segment(0)).unwrap_err();
        assert_eq!(
            defect.to_string(),
            format!(
                "the record at {} has a valid CRC but does not decode: its checkpoint main data is 40 bytes, expected 88",
                Lsn(checkpoint)
            )
        );
        assert_eq!(walker.feed(&[]), Err(defect.clone()));
        assert_eq!(walker.finish(false), Err(defect));
    }

    /// A body with two block references (the first with an image) and main data, in the layout of
    /// `version`; the main data is a commit's `xact_time`.
    fn blocks_body(version: u32, extra_headers: &[u8], image_info: u8) -> Vec<u8> {
        let mut body = vec![0u8, BKPBLOCK_HAS_IMAGE | BKPBLOCK_HAS_DATA];
        body.extend_from_slice(&10u16.to_le_bytes()); // data_length
        body.extend_from_slice(&300u16.to_le_bytes()); // bimg_len
        body.extend_from_slice(&64u16.to_le_bytes()); // hole_offset
        body.push(image_info);
        let compressed = if version >= 15 { 0x1C } else { 0x02 };
        if image_info & BKPIMAGE_HAS_HOLE != 0 && image_info & compressed != 0 {
            body.extend_from_slice(&4000u16.to_le_bytes()); // hole_length
        }
        body.extend_from_slice(&[1; RELFILENODE_LEN]);
        body.extend_from_slice(&7u32.to_le_bytes());
        body.extend_from_slice(&[1, BKPBLOCK_HAS_DATA | BKPBLOCK_SAME_REL]);
        body.extend_from_slice(&5u16.to_le_bytes());
        body.extend_from_slice(&8u32.to_le_bytes());
        body.extend_from_slice(extra_headers);
        body.extend_from_slice(&[XLR_BLOCK_ID_DATA_SHORT, 8]);
        body.extend_from_slice(&[0x99; 300 + 10 + 5]);
        body.extend_from_slice(&4242i64.to_le_bytes());
        body
    }

    fn walk_one_record(version: u32, rmid: u8, body: &[u8]) -> Walked {
        let mut wal = WalWriter::new(3, 1, MIB, pg(version));
        wal.fill_until(wal.base + PAGE as u64 - 104);
        wal.record(rmid, XLOG_XACT_COMMIT, 55, body);
        wal.switch();
        wal.walk(0, true)
    }

    fn commit_time(walked: Walked) -> i64 {
        walked.unwrap().0.xact_ends[0].time
    }

    #[test]
    fn main_data_is_found_after_block_headers_of_every_version() {
        let origin_and_toplevel = [
            XLR_BLOCK_ID_ORIGIN,
            1,
            0,
            XLR_BLOCK_ID_TOPLEVEL_XID,
            9,
            0,
            0,
            0,
        ];
        // PostgreSQL 15+: LZ4-compressed image with a hole stores the hole length.
        let pg15 = blocks_body(15, &origin_and_toplevel, BKPIMAGE_HAS_HOLE | 0x08);
        assert_eq!(commit_time(walk_one_record(15, RM_XACT_ID, &pg15)), 4242);
        assert_eq!(commit_time(walk_one_record(17, RM_XACT_ID, &pg15)), 4242);
        // PostgreSQL 12-14: compressed is 0x02.
        let pg14 = blocks_body(14, &origin_and_toplevel, BKPIMAGE_HAS_HOLE | 0x02);
        assert_eq!(commit_time(walk_one_record(14, RM_XACT_ID, &pg14)), 4242);
        // In PostgreSQL 15 0x02 means "apply", so no hole length is stored: the headers misalign.
        assert!(matches!(
            walk_one_record(15, RM_XACT_ID, &pg14),
            Err(WalRecordDefect::BadBody { .. })
        ));
        // An uncompressed image with a hole stores no hole length in any version.
        let plain = blocks_body(13, &[XLR_BLOCK_ID_ORIGIN, 1, 0], BKPIMAGE_HAS_HOLE);
        assert_eq!(commit_time(walk_one_record(13, RM_XACT_ID, &plain)), 4242);
        assert_eq!(commit_time(walk_one_record(16, RM_XACT_ID, &plain)), 4242);
        // The top-level XID block id only exists from PostgreSQL 14.
        let with_toplevel = blocks_body(13, &origin_and_toplevel, BKPIMAGE_HAS_HOLE);
        assert!(matches!(
            walk_one_record(13, RM_XACT_ID, &with_toplevel),
            Err(WalRecordDefect::BadBody { reason, .. }) if reason.contains("252")
        ));
        // Other resource managers' records are checked the same way.
        assert!(walk_one_record(15, RM_HEAP_ID, &pg15).is_ok());
    }

    #[test]
    fn inconsistent_block_headers_are_refused() {
        let good = blocks_body(15, &[], BKPIMAGE_HAS_HOLE | 0x08);
        type Damage = fn(&mut Vec<u8>);
        let cases: [(&str, Damage, &str); 5] = [
            (
                "data flag without data",
                |b| b[2..4].fill(0),
                "data length 0",
            ),
            (
                "blocks out of order",
                |b| b[27] = 0,
                "block 0 follows block 0",
            ),
            (
                "same relation first",
                |b| b[1] |= BKPBLOCK_SAME_REL,
                "there is none",
            ),
            (
                "headers announce more than follows",
                |b| b[2] = 11,
                "announce",
            ),
            ("invalid block id", |b| b[27] = 100, "invalid block id 100"),
        ];
        for (what, damage, expected) in cases {
            let mut body = good.clone();
            damage(&mut body);
            match walk_one_record(15, RM_HEAP_ID, &body) {
                Err(WalRecordDefect::BadBody { reason, .. }) => {
                    assert!(reason.contains(expected), "{what}: {reason}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn resource_manager_ids_are_checked_per_version() {
        let body = main_data_body(&[1, 2, 3]);
        for (version, rmid, valid) in [
            (14, 21, true),
            (14, 22, false),
            (14, 130, false),
            (15, 130, true),
            (15, 100, false),
        ] {
            let walked = walk_one_record(version, rmid, &body);
            if valid {
                assert!(walked.is_ok(), "PG{version} rmid {rmid}: {walked:?}");
            } else {
                assert!(
                    matches!(walked, Err(WalRecordDefect::InvalidRmgr { rmid: r, .. }) if r == rmid),
                    "PG{version} rmid {rmid}: {walked:?}"
                );
            }
        }
    }

    #[test]
    fn impossible_record_lengths_are_named() {
        let (mut wal, [_, b, _]) = three_commits();
        let at = wal.offset(b);
        wal.bytes[at..at + 4].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::BadTotalLength {
                lsn: Lsn(b),
                length: 10
            })
        );
    }

    #[test]
    fn wrong_lengths_and_names_are_refused() {
        let (wal, _) = three_commits();
        let truncated = walk_bytes(
            &wal.segment(0)[..MIB as usize - PAGE - 100],
            3,
            MIB,
            pg(15),
            false,
            CHUNK_ALIGNMENT,
        );
        assert!(matches!(
            truncated,
            Err(WalRecordDefect::Truncated { fed, .. }) if fed == MIB - PAGE as u64 - 100
        ));
        let size = SegmentSize::new(MIB).unwrap();
        let name = SegmentName::from_segment_number(TimelineId(1), 3, size);
        let mut walker = RecordWalker::new(name, size, pg(15), PAGE as u32);
        walker.feed(wal.segment(0)).unwrap();
        assert!(matches!(
            walker.feed(&[0; PAGE]),
            Err(WalRecordDefect::Overlong { .. })
        ));
        let beyond = SegmentName {
            timeline: TimelineId(1),
            log: 0,
            seg: 0x1000,
        };
        let mut walker = RecordWalker::new(beyond, size, pg(15), PAGE as u32);
        assert!(matches!(
            walker.feed(wal.segment(0)),
            Err(WalRecordDefect::NameOutOfRange { .. })
        ));
        let mut walker = RecordWalker::new(name, size, pg(15), 1000);
        assert!(matches!(
            walker.feed(wal.segment(0)),
            Err(WalRecordDefect::UnusablePageSize { .. })
        ));
    }

    #[test]
    fn summaries_serialize_with_lsns_written_as_postgresql_writes_them() {
        let (wal, _) = split_records();
        let (walked, _) = wal.walk(0, true).unwrap();
        let summary = walked.summary;
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["first_record"], "0/300028");
        assert_eq!(json["last_xact"]["kind"], "Commit");
        assert_eq!(
            json["last_xact"]["lsn"],
            walked.xact_ends.last().unwrap().lsn.to_string()
        );
        let back: SegmentSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, summary);
        let empty = SegmentSummary {
            first_record: None,
            ..summary
        };
        let json = serde_json::to_string(&empty).unwrap();
        assert!(json.contains("\"first_record\":null"), "{json}");
        assert_eq!(
            serde_json::from_str::<SegmentSummary>(&json).unwrap(),
            empty
        );
    }
}
