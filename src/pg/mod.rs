//! PostgreSQL's own formats, without I/O: LSNs, timelines, WAL file names, WAL page headers,
//! timeline history files and the `pg_control` fields that bind a stanza to one cluster.
//!
//! Nothing outside this module knows a byte offset of a PostgreSQL structure. Every multi-byte
//! field is little-endian (the server's native order on every platform we support) and is read at
//! its explicit offset, never by casting a `#[repr(C)]` struct.

pub mod backup_label;
pub mod backup_manifest;
pub mod control;
pub mod fields;
pub mod file_name;
pub mod history;
pub mod lsn;
pub mod page;
pub mod segment_check;
pub mod time;
pub mod version;
pub mod wal;

pub use file_name::{SegmentName, SegmentSize, WalFileName};
pub use lsn::{Lsn, TimelineId};
pub use version::PgMajor;
