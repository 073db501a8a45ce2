//! `[source.NAME]`: the deployment's other stateful parts, each checked only when a `source`
//! command (or `expire`/`verify` of a source) uses it, so a mistake in a source's section never
//! stops WAL archiving. Each section becomes the settings of its kind, one line per mistake
//! naming its key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

use super::retention::{RetentionSettings, parse_duration};
use super::schema::{Config, RetentionConfig, WrittenDuration};
use crate::repo::layout::check_source_name;
use crate::repo::retention::RetentionPolicy;

/// The kinds of source Tidemark knows.
pub const SOURCE_TYPES: [&str; 1] = ["redis"];

/// How long connecting to a source may take, unless `connect_timeout` says.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A source's section as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    password_file: Option<PathBuf>,
    tls_ca_file: Option<PathBuf>,
    connect_timeout: Option<WrittenDuration>,
    #[serde(default)]
    retention: RetentionConfig,
}

/// One configured source, checked.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    pub name: String,
    pub kind: SourceKind,
    retention: RetentionSettings,
}

/// A source's kind, with its own settings.
#[derive(Clone, Debug)]
pub enum SourceKind {
    Redis(RedisSettings),
}

/// `type = "redis"`.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl SourceKind {
    /// The kind's name, as `type` writes it and the repository records it.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Redis(_) => "redis",
        }
    }
}

impl Config {
    /// The names of the configured sources.
    pub fn source_names(&self) -> Vec<String> {
        self.source.keys().cloned().collect()
    }

    /// Source `name`'s section, checked.
    pub fn source(&self, name: &str) -> anyhow::Result<SourceSettings> {
        check_source_name(name)?;
        let Some(value) = self.source.get(name) else {
            let known = self.source_names();
            if known.is_empty() {
                bail!("source '{name}' is not in the config file: add a [source.{name}] section");
            }
            bail!(
                "source '{name}' is not in the config file (it has: {}): fix the name or add a [source.{name}] section",
                known.join(", ")
            );
        };
        let section = format!("source.{name}");
        let written: SourceSection = value.clone().try_into().map_err(|e: toml::de::Error| {
            let message = e.message().trim().replace("unknown field", "unknown key");
            anyhow!(
                "{section}: {}",
                message.replace("missing field", "missing key")
            )
        })?;
        let kind = match written.kind.as_str() {
            "redis" => SourceKind::Redis(redis_settings(&section, &written)?),
            other => bail!(
                "{section}.type \"{other}\" is not a kind of source Tidemark knows: use {}",
                SOURCE_TYPES.join(", ")
            ),
        };
        if written.retention.archive.is_some() {
            bail!(
                "{section}.retention.archive is about WAL, which a source has none of: remove it"
            );
        }
        let retention = written
            .retention
            .settings(&format!("{section}.retention"))?;
        Ok(SourceSettings {
            name: name.to_owned(),
            kind,
            retention,
        })
    }

    /// What `expire` keeps of source `settings`: its own retention over `[retention]`; `None`
    /// when neither sets a rule.
    pub fn source_retention(
        &self,
        settings: &SourceSettings,
    ) -> anyhow::Result<Option<RetentionPolicy>> {
        let default = self.retention.settings("retention")?;
        Ok(settings.retention.clone().over(default).policy())
    }
}

fn redis_settings(section: &str, written: &SourceSection) -> anyhow::Result<RedisSettings> {
    let url = written
        .url
        .clone()
        .with_context(|| format!("{section} has no url: add url = \"redis://HOST:PORT/\""))?;
    let connect_timeout = match &written.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(text) => parse_duration(&text.0).map_err(|problem| {
            anyhow!(
                "{section}.connect_timeout {:?} {problem}: write a whole number and a unit, such as \"10s\"",
                text.0
            )
        })?,
    };
    Ok(RedisSettings {
        url,
        password_file: written.password_file.clone(),
        tls_ca_file: written.tls_ca_file.clone(),
        connect_timeout,
    })
}
