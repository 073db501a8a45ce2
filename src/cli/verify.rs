//! `tidemark verify`: runs `lifecycle::verify` and prints one line per problem and finding and a
//! summary (or the report as JSON); exit 1 when any problem was found.

use anyhow::{Context, bail};

use super::info::OutputFormat;
use tidemark::config::{Config, ConfigChoice, RepoType};
use tidemark::lifecycle::verify::{self, VerifyOptions, source};
use tidemark::program::{self, Finished};

/// Requests in flight at once against an object store (S3, Azure): enough to hide each
/// request's latency.
const S3_READERS: usize = 16;

/// `tidemark verify [--backup LABEL] [--fast | --deep]`.
pub fn run_verify(
    choice: &ConfigChoice,
    backup: Option<String>,
    fast: bool,
    deep: bool,
    format: OutputFormat,
) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let readers = readers_for(selected.config.repo.kind);
    let options = VerifyOptions {
        backup,
        fast,
        deep,
        readers,
        retention: selected.retention_policy()?,
    };
    let report = verify::verify(&stanza, &options)?;
    match format {
        OutputFormat::Text => program::print_stdout(&verify::render_text(&report))?,
        OutputFormat::Json => {
            program::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?
        }
    }
    if !report.clean() {
        bail!(
            "verify of stanza '{}' found {} problem(s), one per line above: see \"verify found a problem\" in docs/runbooks.md",
            report.stanza,
            report.problems.len()
        );
    }
    Ok(Finished::Success)
}

/// Objects read at once from a repository of `kind`.
fn readers_for(kind: RepoType) -> usize {
    match kind {
        RepoType::S3 | RepoType::Azure => S3_READERS,
        RepoType::Local => local_readers(),
    }
}

/// Readers for a local directory: one per core to decode, and as many again so that a core
/// never idles waiting for the disk.
fn local_readers() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `tidemark verify --source NAME`.
pub fn run_verify_source(
    choice: &ConfigChoice,
    name: &str,
    format: OutputFormat,
) -> anyhow::Result<Finished> {
    let config = Config::load(&choice.config_path())?;
    config.source(name)?;
    let repo = config.open_repository()?;
    let area = repo.open_source(name)?.with_context(|| {
        format!(
            "source '{name}' has no snapshot in {}: nothing to verify",
            repo.storage().location()
        )
    })?;
    let report = source::verify_source(&area, readers_for(config.repo.kind))?;
    match format {
        OutputFormat::Text => program::print_stdout(&source::render_source_text(&report))?,
        OutputFormat::Json => {
            program::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?
        }
    }
    if !report.clean() {
        bail!(
            "verify of source '{name}' found {} problem(s), one per line above: see \"verify found a problem\" in docs/runbooks.md",
            report.problems.len()
        );
    }
    Ok(Finished::Success)
}
