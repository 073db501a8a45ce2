//! What `restore_command` does (`tidemark-restore`, `tidemark archive-get`): load the
//! configuration, open the stanza and fetch one WAL file, from the prefetch spool when the
//! prefetcher has it (starting the prefetcher during a recovery); and what the prefetcher process
//! does. No network but the repository's, no probing.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use super::helper_process::{HelperCommand, absolute_parent, start_helper};
use super::prefetch::{
    FetcherSettings, Handover, RestoreSpool, hand_over, run_fetcher, wait_for_fetch,
};
use super::recovery_mode::RecoveryMode;
use super::{GetOutcome, get_wal_file};
use crate::config::{ConfigChoice, Selected};
use crate::pg::{SegmentName, WalFileName};
use crate::storage::durable;
use crate::units;

/// The name the prefetcher runs under: it is `tidemark-restore`, started by itself.
pub const RESTORE_PROGRAM: &str = "tidemark-restore";

/// The flag that makes `tidemark-restore` the prefetcher, naming the `pg_wal` directory of the
/// recovering server.
pub const PREFETCHER_FLAG: &str = "--prefetcher";

/// What a `restore_command` call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The verified file is at the destination.
    InPlace,
    /// The archive does not hold the file (not an error: PostgreSQL asks for names that do not
    /// exist).
    NotArchived,
}

/// Fetches `wal_file_name` from the chosen stanza into `destination`. Every error, a
/// configuration error included, says it was met restoring `wal_file_name`.
pub fn get_command(
    choice: &ConfigChoice,
    wal_file_name: &str,
    destination: &Path,
) -> anyhow::Result<Fetched> {
    fetch(choice, wal_file_name, destination).with_context(|| format!("restore {wal_file_name}"))
}

/// [`get_command`], its errors not yet said to be of this file.
fn fetch(
    choice: &ConfigChoice,
    wal_file_name: &str,
    destination: &Path,
) -> anyhow::Result<Fetched> {
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
            Ok(true) => return Ok(Fetched::InPlace),
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
            Ok(Fetched::InPlace)
        }
        GetOutcome::NotArchived => {
            tracing::info!(
                "{wal_file_name} is not in the archive of stanza '{}'",
                stanza.name()
            );
            Ok(Fetched::NotArchived)
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

/// The prefetching side of [`get_command`]: notes what PostgreSQL asks for, starts the fetcher
/// when none runs, and hands the segment over from the spool when it is there (waiting for a
/// fetch of it under way). `false` when the call must fetch the segment itself.
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
        let fetcher =
            HelperCommand::this_program(selected, RESTORE_PROGRAM, PREFETCHER_FLAG, pg_wal)?;
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

/// Runs the prefetcher (`tidemark-restore --prefetcher PG_WAL`) for the server whose `pg_wal`
/// directory is `pg_wal`, until its recovery ends or it must leave.
pub fn prefetcher_command(choice: &ConfigChoice, pg_wal: &Path) -> anyhow::Result<()> {
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
    run_fetcher(&stanza, &settings).context("prefetcher")
}
