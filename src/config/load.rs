//! Finding and reading the configuration file: which path (`--config`, else `TIDEMARK_CONFIG`,
//! else the default), a file that cannot be read or holds a secret others can read, and TOML
//! errors reworded into one line that names the line and the key.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::schema::Config;
use crate::repo::keys::secret_file_problem;

/// Used when neither `--config` nor `TIDEMARK_CONFIG` names a file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tidemark/tidemark.toml";

/// Which file to read: the flag, else the environment (clap folds `TIDEMARK_CONFIG` into the
/// flag), else the default path.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => "pass --config FILE or set TIDEMARK_CONFIG",
                std::io::ErrorKind::PermissionDenied => {
                    "it must be readable by the user running this command (for archive_command, PostgreSQL's)"
                }
                _ => "check the path given by --config or TIDEMARK_CONFIG",
            };
            anyhow::anyhow!("cannot read config file {}: {e}; {hint}", path.display())
        })?;
        let config =
            Config::parse(&text).with_context(|| format!("config file {}", path.display()))?;
        let mut config = config;
        config.loaded_from = Some(path.to_path_buf());
        if config.repo.secret_access_key.is_some() {
            config.refuse_exposed("repo.secret_access_key")?;
        }
        Ok(config)
    }

    /// Refuses `key`, a secret the file this configuration was read from holds, when others may
    /// read or write that file: a secret in a file others can read is a secret no more.
    pub(super) fn refuse_exposed(&self, key: &str) -> anyhow::Result<()> {
        let Some(path) = &self.loaded_from else {
            return Ok(());
        };
        let metadata = std::fs::metadata(path)
            .with_context(|| format!("inspect config file {}", path.display()))?;
        match secret_file_problem(&metadata) {
            Some(problem) => bail!("config file {} holds {key} but {problem}", path.display()),
            None => Ok(()),
        }
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
                .map(|line| format!("line {line}: "))
                .unwrap_or_default();
            let message = e
                .message()
                .trim()
                .replace("unknown field", "unknown key")
                .replace("missing field", "missing key")
                .replace("expected i32", "expected an integer")
                .replace("expected i64", "expected an integer");
            anyhow::anyhow!("{line}{message}")
        })?;
        config.check()?;
        Ok(config)
    }
}
