//! WAL records, split along PostgreSQL's own lines: the fixed record header (`record`), the
//! block and data headers after it (`block_headers`, `DecodeXLogRecord`), the reader that
//! gathers records across pages and checks them (`reader`, `XLogReadRecord`), the decoders of
//! the record bodies that matter to planning a recovery, one per resource manager (`rmgr`, as
//! `rmgrdesc/`), and the walker that walks one segment and sums up what it holds (`walker`).
//!
//! What a walk finds are plain facts (`facts`); how the WAL index stores them is `repo/`'s
//! business.
//!
//! Every segment pushed is walked, record by record: the small functions the walk calls from
//! one of these files into another are `#[inline]`, since the files compile into different
//! codegen units and the walk must cost no more than it did as one file.

mod block_headers;
mod defect;
mod facts;
#[cfg(test)]
mod hostile_tests;
mod reader;
mod record;
mod rmgr;
#[cfg(test)]
pub(crate) mod test_wal;
mod walker;

pub use defect::WalRecordDefect;
pub use facts::{
    BackupEnd, CheckpointRecord, EndOfRecovery, RestorePoint, SegmentSummary, WalkedSegment,
    XactEnd, XactEndKind,
};
pub use walker::RecordWalker;
