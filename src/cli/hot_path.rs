//! The commands PostgreSQL runs: `archive_command` (`tidemark-archive`, `tidemark archive-push`)
//! and `restore_command` (`tidemark-restore`, `tidemark archive-get`). Both load the
//! configuration, open the stanza and call one library function; no network, no probing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::archive::get_command::PREFETCHER_FLAG;
use crate::archive::push_command::WORKER_FLAG;
use crate::archive::recovery_mode::RecoveryMode;
use crate::archive::{self, Fetched};
use crate::config::ConfigChoice;
use crate::program::{self, Failure, Finished};

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
pub struct ArchiveCommandArgs {
    #[command(flatten)]
    pub choice: ConfigChoice,

    /// The WAL file to archive: PostgreSQL's %p (e.g. pg_wal/000000010000000000000003)
    #[arg(value_name = "WAL_PATH")]
    pub wal_path: PathBuf,
}

/// The work-ahead worker, which `tidemark-archive` starts itself with `[archive] async = true`;
/// not for people, so it is not in `--help`.
#[derive(Debug, clap::Parser)]
#[command(name = "tidemark-archive")]
struct WorkAheadWorkerArgs {
    #[command(flatten)]
    choice: ConfigChoice,

    /// The pg_wal directory whose `.ready` files the worker pushes
    #[arg(long, value_name = "PG_WAL")]
    work_ahead_worker: PathBuf,
}

/// The prefetcher, which `tidemark-restore` starts itself unless `[restore] prefetch = 0`; not
/// for people, so it is not in `--help`.
#[derive(Debug, clap::Parser)]
#[command(name = "tidemark-restore")]
struct PrefetcherArgs {
    #[command(flatten)]
    choice: ConfigChoice,

    /// The pg_wal directory of the recovering server
    #[arg(long, value_name = "PG_WAL")]
    prefetcher: PathBuf,
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
pub struct RestoreCommandArgs {
    #[command(flatten)]
    pub choice: ConfigChoice,

    /// The file PostgreSQL asks for: its %f (e.g. 000000010000000000000003 or 00000002.history)
    #[arg(value_name = "WAL_FILE_NAME")]
    pub wal_file_name: String,

    /// Where to put it: PostgreSQL's %p (e.g. pg_wal/RECOVERYXLOG)
    #[arg(value_name = "DESTINATION")]
    pub destination: PathBuf,
}

/// Main of `tidemark-archive`.
pub fn archive_command_main() -> ExitCode {
    let program = "tidemark-archive";
    if std::env::args_os().any(|arg| arg == WORKER_FLAG) {
        return match program::parse_args::<WorkAheadWorkerArgs>(program) {
            Ok(args) => program::run(program, || {
                archive::work_ahead_worker_command(&args.choice, &args.work_ahead_worker)
                    .map(|()| Finished::Success)
            }),
            Err(code) => code,
        };
    }
    match program::parse_args::<ArchiveCommandArgs>(program) {
        Ok(args) => program::run(program, || {
            archive::push_command(&args.choice, &args.wal_path).map(|()| Finished::Success)
        }),
        Err(code) => code,
    }
}

/// Main of `tidemark-restore`.
pub fn restore_command_main() -> ExitCode {
    let program = "tidemark-restore";
    if std::env::args_os().any(|arg| arg == PREFETCHER_FLAG) {
        return match program::parse_args::<PrefetcherArgs>(program) {
            Ok(args) => program::run(program, || {
                archive::prefetcher_command(&args.choice, &args.prefetcher)
                    .map(|()| Finished::Success)
            }),
            Err(code) => code,
        };
    }
    match program::parse_args::<RestoreCommandArgs>(program) {
        Ok(args) => run_archive_get(
            program,
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
pub fn run_archive_get(
    program: &str,
    choice: &ConfigChoice,
    wal_file_name: &str,
    destination: &Path,
) -> ExitCode {
    let mode = RecoveryMode::of_destination(destination);
    let failure = Failure {
        code: mode.failure_exit_code(),
        consequence: mode.failure_consequence(),
    };
    program::run_failing_as(program, failure, || {
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
