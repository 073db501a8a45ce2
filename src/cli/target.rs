//! The two options every command shares: which configuration file, and which stanza in it.

use std::path::PathBuf;

use anyhow::Context;

use crate::config::{Config, StanzaConfig, config_path};

/// `--config` and `--stanza`, each also settable from the environment.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Target {
    /// Configuration file [default: /etc/tidemark/tidemark.toml]
    #[arg(long, value_name = "FILE", env = "TIDEMARK_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Stanza to work on; optional when the configuration file has only one
    #[arg(long, value_name = "NAME", env = "TIDEMARK_STANZA", global = true)]
    pub stanza: Option<String>,
}

/// A loaded configuration and the stanza chosen in it.
pub struct Selected {
    pub config: Config,
    pub config_path: PathBuf,
    pub stanza_name: String,
    pub stanza: StanzaConfig,
}

impl Target {
    pub fn select(&self) -> anyhow::Result<Selected> {
        let path = config_path(self.config.as_deref());
        let config = Config::load(&path)?;
        let (stanza_name, stanza) = config
            .select_stanza(self.stanza.as_deref())
            .with_context(|| format!("config file {}", path.display()))?;
        Ok(Selected {
            config,
            config_path: path,
            stanza_name,
            stanza,
        })
    }
}
