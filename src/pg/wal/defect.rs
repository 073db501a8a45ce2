//! What can be wrong with the records of a segment, each named with the LSN where it is.

use crate::pg::file_name::SegmentName;
use crate::pg::lsn::Lsn;
use crate::pg::version::PgMajor;

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
        "the WAL starts inside a record begun earlier whose rest, the page before says, continues onto the page at {page} with {expected} bytes still to come, but that page's header has xlp_info {info:#06X} and xlp_rem_len {found}"
    )]
    SkippedContinuationMismatch {
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
