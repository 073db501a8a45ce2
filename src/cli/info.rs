//! `tidemark info`: prints the stanza report (`lifecycle::report`) for a person (text) or a
//! script (`--output json`).

use tidemark::config::ConfigChoice;
use tidemark::lifecycle;
use tidemark::program::{self, Finished};

/// Output format of reporting commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

pub fn info(choice: &ConfigChoice, format: OutputFormat) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let info = lifecycle::collect(&stanza, selected.stanza.pgdata.as_deref())?;
    match format {
        OutputFormat::Text => program::print_stdout(&lifecycle::render_text(&info))?,
        OutputFormat::Json => {
            program::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&info)?))?
        }
    }
    Ok(Finished::Success)
}
