//! Reading real archived WAL in the tests: segment names, PostgreSQL's WAL page size, and where
//! the zero tail after an `XLOG_SWITCH` starts.

use tidemark::pg::page::SHORT_HEADER_LEN;
use tidemark::pg::{SegmentName, WalFileName};

/// PostgreSQL's default (and every lab's) WAL page size, `XLOG_BLCKSZ`.
pub const PAGE: usize = 8192;

/// The segment `file_name` names; panics on any other file name.
pub fn segment_name(file_name: &str) -> SegmentName {
    match WalFileName::parse(file_name) {
        Ok(WalFileName::Segment(name)) => name,
        other => panic!("{file_name} should parse as a segment, got {other:?}"),
    }
}

/// Index of the first page after the first whose header is all zeros: where the zero tail that
/// follows an `XLOG_SWITCH` starts. `None` for a segment filled to its end.
pub fn zero_tail_page(bytes: &[u8]) -> Option<usize> {
    (1..bytes.len() / PAGE).find(|&page| {
        bytes[page * PAGE..page * PAGE + SHORT_HEADER_LEN]
            .iter()
            .all(|&b| b == 0)
    })
}
