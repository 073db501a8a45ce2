//! The commands PostgreSQL runs: `archive_command` (`tidemark-archive`, `tidemark archive-push`)
//! and `restore_command` (`tidemark-restore`, `tidemark archive-get`). Both load the
//! configuration, open the stanza and call one library function; no network, no probing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::archive::helper_process::{ConfigSnapshot, HelperCommand};
use crate::archive::prefetch::{
    FetcherSettings, Handover, RestoreSpool, hand_over, run_fetcher, wait_for_fetch,
};
use crate::archive::recovery_mode::RecoveryMode;
use crate::archive::work_ahead::{
    PushedTo, Spool, Waited, WorkerSettings, run_worker, wait_for_worker,
};
use crate::archive::{GetOutcome, PushOutcome, get_wal_file, push_wal_file};
use crate::config::ConfigChoice;
use crate::config::Selected;
use crate::config::config_path;
use crate::pg::{SegmentName, WalFileName};
use crate::program::{self, Failure, Finished};
use crate::repo::Stanza;
use crate::storage::durable;
use crate::units;

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

/// The flag that makes `tidemark-archive` the work-ahead worker.
const WORKER_FLAG: &str = "--work-ahead-worker";

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

/// The flag that makes `tidemark-restore` the prefetcher.
const PREFETCHER_FLAG: &str = "--prefetcher";

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
                work_ahead_worker(&args.choice, &args.work_ahead_worker)
            }),
            Err(code) => code,
        };
    }
    match program::parse_args::<ArchiveCommandArgs>(program) {
        Ok(args) => program::run(program, || archive_push(&args.choice, &args.wal_path)),
        Err(code) => code,
    }
}

/// Main of `tidemark-restore`.
pub fn restore_command_main() -> ExitCode {
    let program = "tidemark-restore";
    if std::env::args_os().any(|arg| arg == PREFETCHER_FLAG) {
        return match program::parse_args::<PrefetcherArgs>(program) {
            Ok(args) => program::run(program, || prefetcher(&args.choice, &args.prefetcher)),
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

/// Runs [`archive_get`] as restore_command (`tidemark-restore`, `tidemark archive-get`): a
/// failure exits as the recovery it serves needs (see `archive::recovery_mode`).
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

/// Pushes the WAL file at `wal_path` into the selected stanza; with `[archive] async`, waits
/// for the work-ahead worker to have pushed it (starting one if none runs), or pushes it itself
/// when the worker cannot be used.
pub fn archive_push(choice: &ConfigChoice, wal_path: &Path) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let selected = choice.select()?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    if selected.config.archive.work_ahead
        && let Some(finished) = archive_through_worker(&selected, &stanza, wal_path, started)?
    {
        return Ok(finished);
    }
    let report = push_wal_file(&stanza, wal_path)
        .with_context(|| format!("archive {}", wal_path.display()))?;
    match report.outcome {
        PushOutcome::Stored => tracing::info!(
            "archived {} to stanza '{}' ({} → {} {}) in {} ms",
            report.name,
            stanza.name(),
            units::bytes(report.original_len),
            units::bytes(report.stored_len),
            repo.write_settings.compression.name(),
            started.elapsed().as_millis()
        ),
        PushOutcome::AlreadyArchived => tracing::warn!(
            "{} was already archived in stanza '{}' with identical content; nothing was written",
            report.name,
            stanza.name()
        ),
    }
    Ok(Finished::Success)
}

/// The work-ahead side of `archive_push`: `None` when the call must push the file itself. The
/// worker only saves time, so whatever keeps the call from using it is one warning, and the
/// call pushes the file directly; only the worker's failed attempt at the file is an error.
fn archive_through_worker(
    selected: &Selected,
    stanza: &Stanza<'_>,
    wal_path: &Path,
    started: Instant,
) -> anyhow::Result<Option<Finished>> {
    let (Some(name), Some(pg_wal)) = (
        wal_path.file_name().and_then(|n| n.to_str()),
        absolute_parent(wal_path),
    ) else {
        return Ok(None);
    };
    let spool = Spool::locate(
        selected.config.archive.spool_path.as_deref(),
        &pg_wal,
        &selected.stanza_name,
    );
    let waited =
        helper_command(selected, "tidemark-archive", WORKER_FLAG, &pg_wal).and_then(|worker| {
            let to = PushedTo::of(stanza);
            wait_for_worker(&spool, &pg_wal, name, &pg_wal.join(name), &to, &worker)
        });
    match waited {
        Ok(Waited::Archived) => {
            tracing::info!(
                "archived {name} to stanza '{}' (pushed by the work-ahead worker; waited {} ms)",
                selected.stanza_name,
                started.elapsed().as_millis()
            );
            Ok(Some(Finished::Success))
        }
        Ok(Waited::Failed(error)) => Err(anyhow::anyhow!("{error}")),
        Ok(Waited::PushYourself) => Ok(None),
        Err(e) => {
            tracing::warn!("work-ahead: {e:#}; archiving {name} without the worker");
            Ok(None)
        }
    }
}

/// How a call starts its helper: this program as `arg0`, with the call's configuration and
/// stanza, and `flag` naming the `pg_wal` directory.
fn helper_command(
    selected: &Selected,
    arg0: &str,
    flag: &str,
    pg_wal: &Path,
) -> anyhow::Result<HelperCommand> {
    let program = std::env::current_exe().context("find this program to start its helper")?;
    let config_path = std::path::absolute(&selected.config_path)
        .with_context(|| format!("resolve {}", selected.config_path.display()))?;
    Ok(HelperCommand {
        program,
        arg0: arg0.to_owned(),
        args: vec![
            "--config".into(),
            config_path.into_os_string(),
            "--stanza".into(),
            selected.stanza_name.clone().into(),
            flag.into(),
            pg_wal.as_os_str().to_owned(),
        ],
    })
}

/// The directory a hot-path file lives in, absolute: a helper outlives the call and runs
/// elsewhere than its working directory.
fn absolute_parent(path: &Path) -> Option<PathBuf> {
    let parent = path.parent()?;
    std::path::absolute(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    })
    .ok()
}

/// Runs the work-ahead worker for the `pg_wal` directory `pg_wal`.
fn work_ahead_worker(choice: &ConfigChoice, pg_wal: &Path) -> anyhow::Result<Finished> {
    let (config, selected, pg_wal) = start_helper(choice, pg_wal)?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let settings = WorkerSettings {
        spool: Spool::locate(
            selected.config.archive.spool_path.as_deref(),
            &pg_wal,
            &selected.stanza_name,
        ),
        pg_wal,
        parallel: selected.config.archive.workers(),
        config,
    };
    run_worker(&stanza, &settings).context("work-ahead worker")?;
    Ok(Finished::Success)
}

/// Fetches `wal_file_name` from the selected stanza into `destination`. Every error, a
/// configuration error included, says it was met restoring `wal_file_name`.
pub fn archive_get(
    choice: &ConfigChoice,
    wal_file_name: &str,
    destination: &Path,
) -> anyhow::Result<Finished> {
    fetch(choice, wal_file_name, destination).with_context(|| format!("restore {wal_file_name}"))
}

/// [`archive_get`], its errors not yet said to be of this file.
fn fetch(
    choice: &ConfigChoice,
    wal_file_name: &str,
    destination: &Path,
) -> anyhow::Result<Finished> {
    let started = Instant::now();
    remove_abandoned_hand_overs(destination);
    let selected = choice.select()?;
    if selected.config.restore.prefetch() > 0
        && let Ok(WalFileName::Segment(segment)) = WalFileName::parse(wal_file_name)
        && let Some(pg_wal) = absolute_parent(destination)
        && RecoveryMode::of_pg_wal(&pg_wal).is_recovery()
    {
        // The spool only ever saves time: whatever goes wrong there, the call fetches directly.
        match from_spool(&selected, segment, &pg_wal, destination, started) {
            Ok(true) => return Ok(Finished::Success),
            Ok(false) => {}
            Err(e) => tracing::warn!("prefetch: {e:#}; fetching {segment} directly"),
        }
    }
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let outcome = get_wal_file(&stanza, wal_file_name, destination)?;
    match outcome {
        GetOutcome::Restored(header) => {
            tracing::info!(
                "restored {wal_file_name} from stanza '{}' ({}) in {} ms",
                stanza.name(),
                units::bytes(header.original_len),
                started.elapsed().as_millis()
            );
            Ok(Finished::Success)
        }
        GetOutcome::NotArchived => {
            tracing::info!(
                "{wal_file_name} is not in the archive of stanza '{}'",
                stanza.name()
            );
            Ok(Finished::NotFound)
        }
    }
}

/// Removes the temporary files of earlier calls to `destination` whose process is gone: a call
/// killed (PostgreSQL sends SIGTERM at shutdown) between claiming a segment from the spool, or
/// fetching one, and renaming it to `%p` leaves a segment-sized hidden file beside it.
fn remove_abandoned_hand_overs(destination: &Path) {
    if let Some(name) = destination.file_name() {
        durable::remove_abandoned(durable::parent_dir(destination), &name.to_string_lossy());
    }
}

/// The prefetching side of `archive_get`: notes what PostgreSQL asks for, starts the fetcher when
/// none runs, and hands the segment over from the spool when it is there (waiting for a fetch of
/// it under way). `false` when the call must fetch the segment itself.
fn from_spool(
    selected: &Selected,
    segment: SegmentName,
    pg_wal: &Path,
    destination: &Path,
    started: Instant,
) -> anyhow::Result<bool> {
    let spool = RestoreSpool::locate(pg_wal, &selected.stanza_name);
    let name = segment.to_string();
    spool.note_position(segment)?;
    if !spool.lock().is_held() {
        let fetcher = helper_command(selected, "tidemark-restore", PREFETCHER_FLAG, pg_wal)?;
        // Best effort: without a fetcher every call fetches its own segment.
        if let Err(e) = fetcher.spawn("prefetcher", &spool.log_path()) {
            tracing::warn!("{e:#}; fetching {name} without prefetch");
        }
    }
    for attempt in 0..2 {
        match hand_over(&spool, &name, destination)? {
            Handover::HandedOver { bytes } => {
                tracing::info!(
                    "restored {name} from stanza '{}' ({}, prefetched) in {} ms",
                    selected.stanza_name,
                    units::bytes(bytes),
                    started.elapsed().as_millis()
                );
                return Ok(true);
            }
            Handover::Rejected(problem) => {
                tracing::warn!("{problem}; fetching it from the repository");
                return Ok(false);
            }
            Handover::Miss if attempt == 0 && spool.is_fetching(&name) => {
                wait_for_fetch(&spool, &name);
            }
            Handover::Miss => return Ok(false),
        }
    }
    Ok(false)
}

/// Runs the prefetcher for the server whose `pg_wal` directory is `pg_wal`.
fn prefetcher(choice: &ConfigChoice, pg_wal: &Path) -> anyhow::Result<Finished> {
    let (config, selected, pg_wal) = start_helper(choice, pg_wal)?;
    let pg_wal = pg_wal.as_path();
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let ahead = selected.config.restore.prefetch();
    // Replay is one process on one core, and the fetcher must not take it from it: measured on
    // 2 cores (benches/hot_paths.rs), a fetcher at normal priority with a thread per core made
    // recovery slower the further ahead it ran.
    let _ = rustix::process::nice(10);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let settings = FetcherSettings {
        pg_wal: pg_wal.to_owned(),
        spool: RestoreSpool::locate(pg_wal, &selected.stanza_name),
        ahead,
        parallel: ahead.min(cores / 2).max(1),
        config,
    };
    run_fetcher(&stanza, &settings).context("prefetcher")?;
    Ok(Finished::Success)
}

/// What a helper (work-ahead worker, prefetcher) does first: notes its configuration file as it
/// reads it (taken before loading, so that a change in between is seen as one), selects its
/// stanza, and leaves the data directory. A helper outlives the call that started it and must
/// not keep the data directory (in a failover, maybe a file system about to be unmounted) busy;
/// every path it uses from here on is absolute, `pg_wal` included.
fn start_helper(
    choice: &ConfigChoice,
    pg_wal: &Path,
) -> anyhow::Result<(ConfigSnapshot, Selected, PathBuf)> {
    let config_path = std::path::absolute(config_path(choice.config.as_deref()))
        .context("resolve the configuration file's path")?;
    let pg_wal =
        std::path::absolute(pg_wal).with_context(|| format!("resolve {}", pg_wal.display()))?;
    let config = ConfigSnapshot::take(&config_path)?;
    let selected = choice.select()?;
    std::env::set_current_dir("/").context("change the working directory to /")?;
    Ok((config, selected, pg_wal))
}
