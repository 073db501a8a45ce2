//! `tidemark expire`: applies the stanza's retention policy (`lifecycle::expire`) and prints
//! the decision for a person (text) or a script (`--output json`).

use std::time::SystemTime;

use tidemark::config::ConfigChoice;
use tidemark::lifecycle::expire;
use tidemark::program::{self, Finished};

use crate::cli::info::OutputFormat;

pub fn run_expire(
    choice: &ConfigChoice,
    dry_run: bool,
    format: OutputFormat,
) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let policy = expire::require_policy(selected.retention_policy()?, &selected.stanza_name)?;
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
