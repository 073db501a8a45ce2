//! What `archive_command` does (`tidemark-archive`, `tidemark archive-push`): load the
//! configuration, open the stanza and push one WAL file, through the work-ahead worker when
//! `[archive] async` is on; and what the work-ahead worker process does. No network but the
//! repository's, no probing.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use super::helper_process::{HelperCommand, absolute_parent, start_helper};
use super::work_ahead::{PushedTo, Spool, Waited, WorkerSettings, run_worker, wait_for_worker};
use super::{PushOutcome, push_wal_file};
use crate::config::{ConfigChoice, Selected};
use crate::repo::Stanza;
use crate::units;

/// The name the work-ahead worker runs under: it is `tidemark-archive`, started by itself.
pub const ARCHIVE_PROGRAM: &str = "tidemark-archive";

/// The flag that makes `tidemark-archive` the work-ahead worker, naming the `pg_wal` directory
/// whose `.ready` files it pushes.
pub const WORKER_FLAG: &str = "--work-ahead-worker";

/// Pushes the WAL file at `wal_path` into the chosen stanza; with `[archive] async`, waits for
/// the work-ahead worker to have pushed it (starting one if none runs), or pushes it itself when
/// the worker cannot be used. `Ok` only once the file is durable in the repository.
pub fn push_command(choice: &ConfigChoice, wal_path: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let selected = choice.select()?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    if selected.config.archive.work_ahead
        && archive_through_worker(&selected, &stanza, wal_path, started)?
    {
        return Ok(());
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
            repo.write_settings().compression.name(),
            started.elapsed().as_millis()
        ),
        PushOutcome::AlreadyArchived => tracing::warn!(
            "{} was already archived in stanza '{}' with identical content; nothing was written",
            report.name,
            stanza.name()
        ),
    }
    Ok(())
}

/// The work-ahead side of [`push_command`]: `false` when the call must push the file itself.
/// The worker only saves time, so whatever keeps the call from using it is one warning, and the
/// call pushes the file directly; only the worker's failed attempt at the file is an error.
fn archive_through_worker(
    selected: &Selected,
    stanza: &Stanza<'_>,
    wal_path: &Path,
    started: Instant,
) -> anyhow::Result<bool> {
    let (Some(name), Some(pg_wal)) = (
        wal_path.file_name().and_then(|n| n.to_str()),
        absolute_parent(wal_path),
    ) else {
        return Ok(false);
    };
    let spool = Spool::locate(
        selected.config.archive.spool_path.as_deref(),
        &pg_wal,
        &selected.stanza_name,
    );
    let waited = HelperCommand::this_program(selected, ARCHIVE_PROGRAM, WORKER_FLAG, &pg_wal)
        .and_then(|worker| {
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
            Ok(true)
        }
        Ok(Waited::Failed(error)) => Err(anyhow::anyhow!("{error}")),
        Ok(Waited::PushYourself) => Ok(false),
        Err(e) => {
            tracing::warn!("work-ahead: {e:#}; archiving {name} without the worker");
            Ok(false)
        }
    }
}

/// Runs the work-ahead worker (`tidemark-archive --work-ahead-worker PG_WAL`) for the `pg_wal`
/// directory `pg_wal`, until it has nothing left to push or must leave.
pub fn work_ahead_worker_command(choice: &ConfigChoice, pg_wal: &Path) -> anyhow::Result<()> {
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
    run_worker(&stanza, &settings).context("work-ahead worker")
}
