//! `tidemark-archive`'s command line: its arguments (PostgreSQL's `%p`, `--config`, `--stanza`,
//! and the hidden `--work-ahead-worker` of the helper it starts itself), and how each call ends.
//! What it does is `tidemark::archive::push_command`.
//!
//! The `tidemark` binary compiles this file too (src/cli/mod.rs): called by this name (a link or
//! copy, or as the worker that `tidemark archive-push` starts), it is this program.

use std::path::PathBuf;
use std::process::ExitCode;

use tidemark::archive;
use tidemark::archive::push_command::{ARCHIVE_PROGRAM, WORKER_FLAG};
use tidemark::config::ConfigChoice;
use tidemark::program::{self, Finished};

/// Push one WAL file into the repository (PostgreSQL's archive_command).
///
/// Exits 0 only once the file is durable in the repository; 1 on any failure, with one error
/// line on stderr. Set in postgresql.conf:
///   archive_command = 'tidemark-archive --config /etc/tidemark/tidemark.toml %p'
/// With `[archive] async = true`, the first call starts a background worker that pushes every
/// `.ready` WAL file ahead of PostgreSQL's calls (they meet in pg_wal/.tidemark/archive); a
/// call that cannot use it (spool not writable, no lock, no answer within 60 s) pushes its own
/// file and warns why in one line.
#[derive(Debug, clap::Parser)]
#[command(name = "tidemark-archive", version, verbatim_doc_comment)]
struct ArchiveCommandArgs {
    #[command(flatten)]
    choice: ConfigChoice,

    /// The WAL file to archive: PostgreSQL's %p (e.g. pg_wal/000000010000000000000003)
    #[arg(value_name = "WAL_PATH")]
    wal_path: PathBuf,
}

/// The work-ahead worker, which `tidemark-archive` starts itself with `[archive] async = true`;
/// not for people, so it is not in `--help`.
#[derive(Debug, clap::Parser)]
#[command(name = "tidemark-archive")]
pub struct WorkAheadWorkerArgs {
    #[command(flatten)]
    pub choice: ConfigChoice,

    /// The pg_wal directory whose `.ready` files the worker pushes
    #[arg(long, value_name = "PG_WAL")]
    pub work_ahead_worker: PathBuf,
}

/// Main of `tidemark-archive`.
pub fn main() -> ExitCode {
    let helper = |args: WorkAheadWorkerArgs| {
        archive::work_ahead_worker_command(&args.choice, &args.work_ahead_worker)
    };
    if let Some(code) = program::run_as_helper(ARCHIVE_PROGRAM, WORKER_FLAG, helper) {
        return code;
    }
    match program::parse_args::<ArchiveCommandArgs>(ARCHIVE_PROGRAM) {
        Ok(args) => program::run(ARCHIVE_PROGRAM, || {
            archive::push_command(&args.choice, &args.wal_path).map(|()| Finished::Success)
        }),
        Err(code) => code,
    }
}
