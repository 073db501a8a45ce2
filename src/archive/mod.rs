//! archive-push and archive-get: the library side of `archive_command` and `restore_command`,
//! and their hot-path policy (`push_command.rs`, `get_command.rs`: the work-ahead worker and the
//! prefetcher, when to start them and when to do without). It takes configuration values and
//! knows nothing of the command line.
//!
//! Push checks a WAL file against its stanza, stores it, and succeeds only once it is durable;
//! it never replaces an archived file. Get checks both checksums of the stored object and hands
//! PostgreSQL nothing but the verified original bytes.

pub mod get;
pub mod get_command;
pub mod helper_process;
pub mod index_rebuild;
pub mod prefetch;
pub mod push;
pub mod push_command;
pub mod recovery_mode;
pub mod walk_archived;
pub mod work_ahead;

pub use get::{GetOutcome, get_wal_file};
pub use get_command::{Fetched, get_command, prefetcher_command};
pub use push::{PushOutcome, PushReport, push_wal_file};
pub use push_command::{push_command, work_ahead_worker_command};
