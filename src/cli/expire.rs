//! `tidemark expire`: applies the stanza's retention policy (`lifecycle::expire`), or with
//! `--source` a source's, and prints the decision for a person (text) or a script
//! (`--output json`).

use std::time::SystemTime;

use anyhow::Context;
use tidemark::config::{Config, ConfigChoice};
use tidemark::lifecycle::expire::{self, source};
use tidemark::program::{self, Finished};

use crate::cli::info::OutputFormat;

pub fn run_expire(
    choice: &ConfigChoice,
    source: Option<&str>,
    dry_run: bool,
    format: OutputFormat,
) -> anyhow::Result<Finished> {
    if let Some(source) = source {
        return expire_source(choice, source, dry_run, format);
    }
    let selected = choice.select()?;
    let policy = expire::require_policy(
        selected.retention_policy()?,
        "stanza",
        &selected.stanza_name,
    )?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let report = expire::expire(&stanza, &policy, SystemTime::now(), dry_run)?;
    match format {
        OutputFormat::Text => program::print_stdout(&expire::text::render_text(&report))?,
        OutputFormat::Json => {
            program::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?
        }
    }
    Ok(Finished::Success)
}

/// `tidemark expire --source NAME`: the source's retention over its snapshots.
fn expire_source(
    choice: &ConfigChoice,
    name: &str,
    dry_run: bool,
    format: OutputFormat,
) -> anyhow::Result<Finished> {
    let config = Config::load(&choice.config_path())?;
    let settings = config.source(name)?;
    let policy = expire::require_policy(config.source_retention(&settings)?, "source", name)?;
    let repo = config.open_repository()?;
    let area = repo.open_source(name)?.with_context(|| {
        format!(
            "source '{name}' has no snapshot in {}: nothing to expire",
            repo.storage().location()
        )
    })?;
    let report = source::expire_source(&area, &policy, SystemTime::now(), dry_run)?;
    match format {
        OutputFormat::Text => program::print_stdout(&source::render_source_text(&report))?,
        OutputFormat::Json => {
            program::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?
        }
    }
    Ok(Finished::Success)
}
