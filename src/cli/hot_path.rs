//! The commands PostgreSQL runs: `archive_command` (`tidemark-archive`, `tidemark archive-push`)
//! and `restore_command` (`tidemark-restore`, `tidemark archive-get`). Both load the
//! configuration, open the stanza and call one library function; no network, no probing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use super::run::{self, Finished};
use super::target::Target;
use crate::archive::{GetOutcome, PushOutcome, get_wal_file, push_wal_file};
use crate::units;

/// Push one WAL file into the repository (PostgreSQL's archive_command).
///
/// Exits 0 only once the file is durable in the repository; 1 on any failure, with one error
/// line on stderr. Set in postgresql.conf:
///   archive_command = 'tidemark-archive --config /etc/tidemark/tidemark.toml %p'
#[derive(Debug, clap::Parser)]
#[command(name = "tidemark-archive", version, verbatim_doc_comment)]
pub struct ArchiveCommandArgs {
    #[command(flatten)]
    pub target: Target,

    /// The WAL file to archive: PostgreSQL's %p (e.g. pg_wal/000000010000000000000003)
    #[arg(value_name = "WAL_PATH")]
    pub wal_path: PathBuf,
}

/// Fetch one WAL file from the repository (PostgreSQL's restore_command).
///
/// Exits 0 when the verified file is at DESTINATION; 1 when the archive does not hold it
/// (not an error: PostgreSQL asks for names that do not exist) or on any failure, which
/// prints one error line. Set in the recovery settings (postgresql.conf):
///   restore_command = 'tidemark-restore --config /etc/tidemark/tidemark.toml %f %p'
#[derive(Debug, clap::Parser)]
#[command(name = "tidemark-restore", version, verbatim_doc_comment)]
pub struct RestoreCommandArgs {
    #[command(flatten)]
    pub target: Target,

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
    match run::parse_args::<ArchiveCommandArgs>(program) {
        Ok(args) => run::run(program, || archive_push(&args.target, &args.wal_path)),
        Err(code) => code,
    }
}

/// Main of `tidemark-restore`.
pub fn restore_command_main() -> ExitCode {
    let program = "tidemark-restore";
    match run::parse_args::<RestoreCommandArgs>(program) {
        Ok(args) => run::run(program, || {
            archive_get(&args.target, &args.wal_file_name, &args.destination)
        }),
        Err(code) => code,
    }
}

/// Pushes the WAL file at `wal_path` into the selected stanza.
pub fn archive_push(target: &Target, wal_path: &Path) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let selected = target.select()?;
    let repo = selected.config.open_repository();
    let stanza = repo.open_stanza(&selected.stanza_name)?;
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

/// Fetches `wal_file_name` from the selected stanza into `destination`.
pub fn archive_get(
    target: &Target,
    wal_file_name: &str,
    destination: &Path,
) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let selected = target.select()?;
    let repo = selected.config.open_repository();
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let outcome = get_wal_file(&stanza, wal_file_name, destination)
        .with_context(|| format!("restore {wal_file_name}"))?;
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
