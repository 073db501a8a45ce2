//! `tidemark-restore`'s command line: its arguments (PostgreSQL's `%f` and `%p`, `--config`,
//! `--stanza`, and the hidden `--prefetcher` of the helper it starts itself), and the exit code
//! each call ends with, which depends on the recovery it serves. What it does is
//! `tidemark::archive::get_command`.
//!
//! The `tidemark` binary compiles this file too (src/cli/mod.rs): called by this name (a link or
//! copy, or as the prefetcher that `tidemark archive-get` starts), it is this program, and its
//! `archive-get` ends as this program does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tidemark::archive::get_command::{PREFETCHER_FLAG, RESTORE_PROGRAM};
use tidemark::archive::recovery_mode::RecoveryMode;
use tidemark::archive::{self, Fetched};
use tidemark::config::ConfigChoice;
use tidemark::program::{self, Failure, Finished};

/// The prefetcher, which `tidemark-restore` starts itself unless `[restore] prefetch = 0`; not
/// for people, so it is not in `--help`.
#[derive(Debug, clap::Parser)]
#[command(name = "tidemark-restore")]
pub struct PrefetcherArgs {
    #[command(flatten)]
    pub choice: ConfigChoice,

    /// The pg_wal directory of the recovering server
    #[arg(long, value_name = "PG_WAL")]
    pub prefetcher: PathBuf,
}

/// Fetch one WAL file from the repository (PostgreSQL's restore_command).
///
/// Exits 0 when the verified file is at DESTINATION, and 1 when the archive does not hold
/// it (not an error: PostgreSQL asks for names that do not exist). A failure (repository
/// unreachable after its retries, a damaged object, a full disk, a configuration error)
/// prints one error line and exits
///   128 during an archive recovery (recovery.signal): PostgreSQL stops recovery with a
///       FATAL instead of taking the failure for the end of the archive and promoting;
///       fix the cause and start the server again to resume;
///   1 on a standby (standby.signal), which asks again later, and by hand.
/// Set in the recovery settings (postgresql.conf):
///   restore_command = 'tidemark-restore --config /etc/tidemark/tidemark.toml %f %p'
/// During a recovery, the first call starts a background fetcher that keeps the next
/// `[restore] prefetch` segments (default 8; 0 = off) verified in pg_wal/.tidemark/restore,
/// within the free space of pg_wal's file system; a call whose segment is there checks it
/// again and renames it into place.
#[derive(Debug, clap::Parser)]
#[command(name = "tidemark-restore", version, verbatim_doc_comment)]
struct RestoreCommandArgs {
    #[command(flatten)]
    choice: ConfigChoice,

    /// The file PostgreSQL asks for: its %f (e.g. 000000010000000000000003 or 00000002.history)
    #[arg(value_name = "WAL_FILE_NAME")]
    wal_file_name: String,

    /// Where to put it: PostgreSQL's %p (e.g. pg_wal/RECOVERYXLOG)
    #[arg(value_name = "DESTINATION")]
    destination: PathBuf,
}

/// Main of `tidemark-restore`.
pub fn main() -> ExitCode {
    let helper = |args: PrefetcherArgs| archive::prefetcher_command(&args.choice, &args.prefetcher);
    if let Some(code) = program::run_as_helper(RESTORE_PROGRAM, PREFETCHER_FLAG, helper) {
        return code;
    }
    match program::parse_args::<RestoreCommandArgs>(RESTORE_PROGRAM) {
        Ok(args) => run_as_restore_command(
            RESTORE_PROGRAM,
            &args.choice,
            &args.wal_file_name,
            &args.destination,
        ),
        // A restore_command that cannot be read is a failure too: in archive recovery exit 1
        // would end the recovery as if the archive were empty.
        Err(code) if code != ExitCode::SUCCESS => {
            ExitCode::from(RecoveryMode::of_working_directory().failure_exit_code())
        }
        Err(code) => code,
    }
}

/// Runs `archive::get_command` as restore_command (`tidemark-restore`, `tidemark archive-get`):
/// exit 1 when the archive does not hold the file, and a failure exits as the recovery it serves
/// needs (see `archive::recovery_mode`).
pub fn run_as_restore_command(
    program_name: &str,
    choice: &ConfigChoice,
    wal_file_name: &str,
    destination: &Path,
) -> ExitCode {
    let mode = RecoveryMode::of_destination(destination);
    let failure = Failure {
        code: mode.failure_exit_code(),
        consequence: mode.failure_consequence(),
    };
    program::run_failing_as(program_name, failure, || {
        archive_get(choice, wal_file_name, destination)
    })
}

/// `archive::get_command`, "not archived" ending as exit 1 without an error line.
pub fn archive_get(
    choice: &ConfigChoice,
    wal_file_name: &str,
    destination: &Path,
) -> anyhow::Result<Finished> {
    Ok(
        match archive::get_command(choice, wal_file_name, destination)? {
            Fetched::InPlace => Finished::Success,
            Fetched::NotArchived => Finished::NotFound,
        },
    )
}
