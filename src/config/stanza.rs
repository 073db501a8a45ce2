//! Which `[stanza.NAME]` section a command works on: the one named, else the only one.

use anyhow::bail;

use super::schema::{Config, StanzaConfig};
use crate::repo::layout::check_stanza_name;

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
