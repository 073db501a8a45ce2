//! `tidemark info`: prints the stanza report (`lifecycle::report`) and the sources beside it
//! (`lifecycle::report_sources`) for a person (text) or a script (`--output json`).

use tidemark::config::{Config, ConfigChoice};
use tidemark::lifecycle;
use tidemark::lifecycle::report_sources::{collect_sources, render_sources_text};
use tidemark::program::{self, Finished};

/// Output format of reporting commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

pub fn info(choice: &ConfigChoice, format: OutputFormat) -> anyhow::Result<Finished> {
    let config = Config::load(&choice.config_path())?;
    // A configuration of sources alone has no stanza to report.
    if config.stanza.is_empty() && !config.source.is_empty() {
        let repo = config.open_repository()?;
        let sources = collect_sources(&repo, &config.source_names())?;
        match format {
            OutputFormat::Text => program::print_stdout(&render_sources_text(&sources))?,
            OutputFormat::Json => program::print_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&serde_json::json!({ "sources": sources }))?
            ))?,
        }
        return Ok(Finished::Success);
    }
    let selected = choice.select()?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let info = lifecycle::collect(&stanza, selected.stanza.pgdata.as_deref())?;
    let sources = collect_sources(&repo, &selected.config.source_names())?;
    match format {
        OutputFormat::Text => program::print_stdout(&format!(
            "{}{}",
            lifecycle::render_text(&info),
            render_sources_text(&sources)
        ))?,
        OutputFormat::Json => {
            let mut json = serde_json::to_value(&info)?;
            json["sources"] = serde_json::to_value(&sources)?;
            program::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&json)?))?
        }
    }
    Ok(Finished::Success)
}
