//! Tidemark: a PostgreSQL WAL archiver and point-in-time-recovery engine.
//!
//! The library the three programs share; it exports no command line (the `tidemark` binary's is
//! in `cli/`, the hot-path binaries' in their own crates). Modules, lowest first; each uses only
//! modules above it in this list:
//! * `units` — sizes and durations as people read and write them;
//! * `program` — how a Tidemark program runs and ends: logging to stderr, one-line errors, the
//!   exit codes PostgreSQL reads;
//! * `progress` — how a long transfer shows it is getting on: a bar or a line every 10 s
//!   (`units`);
//! * `pg` — PostgreSQL's formats, no I/O;
//! * `protocol` — the replication connection (`pg`);
//! * `storage` — object stores and the crash-safe file module (`units`);
//! * `repo` — the repository (`pg`, `storage`);
//! * `config` — the configuration file, choosing it and the stanza (`units`, `storage`, `repo`);
//! * `datadir` — a local data directory's identity (`pg`);
//! * `archive` — archive-push and archive-get and their hot-path policy (`units`, `pg`,
//!   `storage`, `repo`, `config`);
//! * `backup` — base backups (`units`, `progress`, `pg`, `protocol`, `repo`);
//! * `planning` — recovery targets and the recovery planner (`pg`, `repo`, `archive`);
//! * `restore` — laying out a data directory to recover (`progress`, `pg`, `storage`, `repo`,
//!   `archive`, `backup`, `planning`);
//! * `lifecycle` — whole-repository operations: the stanza report (`units`, `pg`, `storage`,
//!   `repo`, `archive`, `planning`);
//! * `sources` — snapshots of the deployment's other stateful parts, Redis first (`storage`,
//!   `repo`, `config`).
//!
//! The test harness and `tidemark demo` are the `testkit` crate, outside the library.

pub mod archive;
pub mod backup;
pub mod config;
pub mod datadir;
pub mod lifecycle;
pub mod percent;
pub mod pg;
pub mod planning;
pub mod program;
pub mod progress;
pub mod protocol;
pub mod repo;
pub mod restore;
pub mod sources;
pub mod storage;
pub mod units;
