//! Tidemark: a PostgreSQL WAL archiver and point-in-time-recovery engine.
//!
//! Modules, lowest first; each uses only those above it in this list:
//! `pg` (PostgreSQL formats), `storage` (object stores), `repo` (the repository), `archive`
//! (archive-push and archive-get), `config`, and `cli`.

pub mod archive;
pub mod backup;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod pg;
pub mod planning;
pub mod protocol;
pub mod repo;
pub mod restore;
pub mod storage;
pub mod units;
