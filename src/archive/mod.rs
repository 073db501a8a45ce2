//! archive-push and archive-get: the library side of `archive_command` and `restore_command`.
//!
//! Push checks a WAL file against its stanza, stores it, and succeeds only once it is durable;
//! it never replaces an archived file. Get checks both checksums of the stored object and hands
//! PostgreSQL nothing but the verified original bytes.

pub mod get;
pub mod helper_process;
pub mod index_rebuild;
pub mod prefetch;
pub mod push;
pub mod recovery_mode;
pub mod walk_archived;
pub mod work_ahead;

pub use get::{GetOutcome, get_wal_file};
pub use push::{PushOutcome, PushReport, push_wal_file};
