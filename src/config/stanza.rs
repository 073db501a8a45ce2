//! Which configuration file and which `[stanza.NAME]` section in it a command works on (the
//! stanza named, else the only one), and that stanza's settings.

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::load::config_path;
use super::schema::{Config, StanzaConfig};
use crate::repo::layout::check_stanza_name;
use crate::repo::retention::RetentionPolicy;

/// `--config` and `--stanza`, each also settable from the environment: the two options every
/// Tidemark program shares. Their flags, environment variables and help lines are defined here
/// once, for all three programs, as the configuration's other options are.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConfigChoice {
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
    /// The file it was loaded from, as chosen (maybe relative).
    pub config_path: PathBuf,
    pub stanza_name: String,
    /// The chosen `[stanza.NAME]` section.
    pub stanza: StanzaConfig,
}

impl Selected {
    /// The chosen stanza's setting `key`, which `setting` reads, when the command cannot do
    /// without it: else the error that names what is missing and the `key = example` line to
    /// add to the stanza's section.
    pub fn required<T: ?Sized>(
        &self,
        key: &str,
        example: &str,
        setting: impl FnOnce(&StanzaConfig) -> Option<&T>,
    ) -> anyhow::Result<&T> {
        let name = &self.stanza_name;
        setting(&self.stanza).with_context(|| {
            format!(
                "stanza '{name}' has no {key} in config file {}: add {key} = {example} to [stanza.{name}]",
                self.config_path.display()
            )
        })
    }
}

impl Selected {
    /// The chosen stanza's retention policy: its `[stanza.NAME.retention]` over `[retention]`,
    /// key by key; `None` when neither sets a rule (`full`, `time` or `gfs`).
    pub fn retention_policy(&self) -> anyhow::Result<Option<RetentionPolicy>> {
        let policy = || -> anyhow::Result<_> {
            let default = self.config.retention.settings("retention")?;
            let own = (self.stanza.retention)
                .settings(&format!("stanza.{}.retention", self.stanza_name))?;
            Ok(own.over(default).policy())
        };
        policy().with_context(|| format!("config file {}", self.config_path.display()))
    }
}

impl ConfigChoice {
    /// The file chosen: `--config`, else `TIDEMARK_CONFIG`, else the default.
    pub fn config_path(&self) -> PathBuf {
        config_path(self.config.as_deref())
    }

    /// Loads the chosen configuration file and chooses the stanza in it.
    pub fn select(&self) -> anyhow::Result<Selected> {
        let path = self.config_path();
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

impl Config {
    /// The stanza to work on: `requested` (from `--stanza` or `TIDEMARK_STANZA`), else the only
    /// one in the file.
    pub fn select_stanza(&self, requested: Option<&str>) -> anyhow::Result<(String, StanzaConfig)> {
        let known = || self.stanza.keys().cloned().collect::<Vec<_>>().join(", ");
        match requested {
            Some(name) => {
                check_stanza_name(name)?;
                match self.stanza.get(name) {
                    Some(stanza) => Ok((name.to_owned(), stanza.clone())),
                    None if self.stanza.is_empty() => {
                        bail!(
                            "stanza '{name}' is not in the config file: add a [stanza.{name}] section"
                        )
                    }
                    None => bail!(
                        "stanza '{name}' is not in the config file (it has: {}): fix --stanza or add a [stanza.{name}] section",
                        known()
                    ),
                }
            }
            None => match self.stanza.len() {
                1 => {
                    let (name, stanza) = self.stanza.iter().next().expect("one entry");
                    Ok((name.clone(), stanza.clone()))
                }
                0 => bail!(
                    "the config file has no [stanza.NAME] section: add one, e.g. [stanza.main]"
                ),
                _ => bail!(
                    "the config file has several stanzas ({}): choose one with --stanza or TIDEMARK_STANZA",
                    known()
                ),
            },
        }
    }
}
