//! The configuration file: TOML, found by `--config`, else `TIDEMARK_CONFIG`, else
//! `/etc/tidemark/tidemark.toml`. Every key is known; an unknown key is refused by name, so a
//! typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::repo::compress::DEFAULT_ZSTD_LEVEL;
use crate::repo::layout::check_stanza_name;
use crate::repo::{Compression, Repository, WriteSettings};
use crate::storage::LocalDirectory;

/// Used when neither `--config` nor `TIDEMARK_CONFIG` names a file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tidemark/tidemark.toml";

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub repo: RepoConfig,
    #[serde(default)]
    pub archive: ArchiveConfig,
    #[serde(default)]
    pub restore: RestoreConfig,

    #[serde(default)]
    pub stanza: BTreeMap<String, StanzaConfig>,
}

/// `[archive]`: how `tidemark-archive` pushes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Work-ahead archiving: a background worker pushes every `.ready` WAL file in parallel.
    /// Off by default: on 2 cores and a local repository `benches/hot_paths.rs` measured it no
    /// faster than synchronous pushes (both are bound by compression there, and a synchronous
    /// push already checks and compresses on two cores); it pays where a push waits.
    #[serde(default = "work_ahead_by_default", rename = "async")]
    pub work_ahead: bool,
    /// Pushes the worker runs at once (default: the number of cores).
    pub workers: Option<usize>,
    /// Where the worker and the calls meet (default: `pg_wal/.tidemark`).
    pub spool_path: Option<PathBuf>,
}

fn work_ahead_by_default() -> bool {
    false
}

impl Default for ArchiveConfig {
    fn default() -> ArchiveConfig {
        ArchiveConfig {
            work_ahead: work_ahead_by_default(),
            workers: None,
            spool_path: None,
        }
    }
}

impl ArchiveConfig {
    /// Pushes the work-ahead worker runs at once: `workers`, else the number of cores.
    pub fn workers(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// Segments `tidemark-restore` keeps fetched ahead of replay when `[restore] prefetch` is not set.
pub const DEFAULT_PREFETCH: usize = 8;

/// `[restore]`: how `tidemark-restore` fetches.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// Segments a background fetcher keeps ready ahead of replay (0: none, every call fetches
    /// its own segment).
    pub prefetch: Option<usize>,
}

impl RestoreConfig {
    pub fn prefetch(&self) -> usize {
        self.prefetch.unwrap_or(DEFAULT_PREFETCH)
    }
}

/// `[repo]`: where and how objects are stored.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Absolute path of the local directory repository.
    pub path: PathBuf,
    /// Compression of new objects.
    #[serde(default)]
    pub compress: Compression,
    /// zstd level of new objects (1 to 19).
    pub compress_level: Option<i32>,
}

/// `[stanza.NAME]`: one PostgreSQL cluster.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StanzaConfig {
    /// The cluster's data directory (read by `stanza-create`).
    pub pgdata: Option<PathBuf>,
    /// libpq connection string of the cluster.
    pub conninfo: Option<String>,
}

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
        Config::parse(&text).with_context(|| format!("config file {}", path.display()))
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
                .replace("expected i32", "expected an integer");
            anyhow::anyhow!("{line}{message}")
        })?;
        if !config.repo.path.is_absolute() {
            bail!(
                "repo.path '{}' must be an absolute path (archive_command runs in the data directory)",
                config.repo.path.display()
            );
        }
        if let Some(level) = config.repo.compress_level {
            if config.repo.compress != Compression::Zstd {
                bail!(
                    "repo.compress_level applies to zstd only, but compress = \"{}\": remove compress_level",
                    config.repo.compress.name()
                );
            }
            if !(1..=19).contains(&level) {
                bail!("repo.compress_level {level} is out of range: use 1 to 19");
            }
        }
        if let Some(workers) = config.archive.workers
            && !(1..=64).contains(&workers)
        {
            bail!("archive.workers {workers} is out of range: use 1 to 64");
        }
        if let Some(spool) = &config.archive.spool_path
            && !spool.is_absolute()
        {
            bail!(
                "archive.spool_path '{}' must be an absolute path",
                spool.display()
            );
        }
        if let Some(prefetch) = config.restore.prefetch
            && prefetch > 256
        {
            bail!("restore.prefetch {prefetch} is out of range: use 0 (off) to 256");
        }
        for name in config.stanza.keys() {
            check_stanza_name(name).context("in a [stanza.NAME] section")?;
        }
        Ok(config)
    }

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

    /// The repository this configuration points at.
    pub fn open_repository(&self) -> Repository {
        Repository::new(
            Box::new(LocalDirectory::new(&self.repo.path)),
            WriteSettings {
                compression: self.repo.compress,
                zstd_level: self.repo.compress_level.unwrap_or(DEFAULT_ZSTD_LEVEL),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[repo]
path = "/var/lib/tidemark"
compress = "lz4"

[stanza.main]
pgdata = "/var/lib/postgresql/15/main"
conninfo = "host=/var/run/postgresql port=5432 user=postgres"
"#;

    #[test]
    fn reads_the_documented_example() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.repo.path, PathBuf::from("/var/lib/tidemark"));
        assert_eq!(config.repo.compress, Compression::Lz4);
        let (name, stanza) = config.select_stanza(None).unwrap();
        assert_eq!(name, "main");
        assert_eq!(
            stanza.pgdata.unwrap(),
            PathBuf::from("/var/lib/postgresql/15/main")
        );
        let defaults = Config::parse("[repo]\npath = \"/r\"\n").unwrap();
        assert_eq!(defaults.repo.compress, Compression::Zstd);
        assert!(!defaults.archive.work_ahead);
        let work_ahead = Config::parse(&GOOD.replace(
            "[stanza.main]",
            "[archive]\nasync = true\nworkers = 4\nspool_path = \"/var/spool/tidemark\"\n[stanza.main]",
        ))
        .unwrap();
        assert!(work_ahead.archive.work_ahead);
        assert_eq!(work_ahead.archive.workers, Some(4));
        assert_eq!(defaults.restore.prefetch(), DEFAULT_PREFETCH);
        let no_prefetch =
            Config::parse(&GOOD.replace("[stanza.main]", "[restore]\nprefetch = 0\n[stanza.main]"))
                .unwrap();
        assert_eq!(no_prefetch.restore.prefetch(), 0);
    }

    #[test]
    fn every_mistake_is_named_on_one_line() {
        let cases = [
            (
                GOOD.replace("compress =", "compresss ="),
                "line 4: unknown key `compresss`, expected one of",
            ),
            (
                GOOD.replace("pgdata", "pg_data"),
                "line 7: unknown key `pg_data`",
            ),
            (
                GOOD.replace("\"lz4\"", "\"gzip\""),
                "line 4: unknown variant `gzip`, expected one of `zstd`, `lz4`, `none`",
            ),
            (
                GOOD.replace("/var/lib/tidemark", "relative/dir"),
                "repo.path 'relative/dir' must be an absolute path",
            ),
            (
                GOOD.replace("[repo]", "[repository]"),
                "unknown key `repository`",
            ),
            (
                format!("{GOOD}compress_level = 30\n"),
                "unknown key `compress_level`",
            ),
            (
                GOOD.replace("compress = \"lz4\"", "compress_level = 30"),
                "repo.compress_level 30 is out of range",
            ),
            (
                GOOD.replace("compress = \"lz4\"", "compress_level = \"3\""),
                "line 4: invalid type: string \"3\", expected an integer",
            ),
            (
                GOOD.replace(
                    "compress = \"lz4\"",
                    "compress = \"lz4\"\ncompress_level = 3",
                ),
                "repo.compress_level applies to zstd only, but compress = \"lz4\": remove compress_level",
            ),
            ("[stanza.main]\n".to_owned(), "missing key `repo`"),
            (
                GOOD.replace("stanza.main", "stanza.\"a/b\""),
                "'a/b' is not a valid stanza name",
            ),
            (
                GOOD.replace("[stanza.main]", "[archive]\nasync = \"yes\"\n[stanza.main]"),
                "line 7: invalid type: string \"yes\", expected a boolean",
            ),
            (
                GOOD.replace("[stanza.main]", "[archive]\nworkers = 0\n[stanza.main]"),
                "archive.workers 0 is out of range: use 1 to 64",
            ),
            (
                GOOD.replace(
                    "[stanza.main]",
                    "[archive]\nspool_path = \"spool\"\n[stanza.main]",
                ),
                "archive.spool_path 'spool' must be an absolute path",
            ),
            (
                GOOD.replace("[stanza.main]", "[archive]\nasynch = true\n[stanza.main]"),
                "line 7: unknown key `asynch`, expected one of `async`, `workers`, `spool_path`",
            ),
            (
                GOOD.replace("[stanza.main]", "[restore]\nprefetch = 1000\n[stanza.main]"),
                "restore.prefetch 1000 is out of range: use 0 (off) to 256",
            ),
            (
                GOOD.replace("[stanza.main]", "[restore]\nprefetch = -1\n[stanza.main]"),
                "line 7: invalid value: integer `-1`, expected usize",
            ),
        ];
        for (text, expected) in cases {
            let message = format!("{:#}", Config::parse(&text).unwrap_err());
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(!message.contains('\n'), "{message:?} is not one line");
        }
    }

    #[test]
    fn the_stanza_is_chosen_by_name_or_by_being_the_only_one() {
        let two = format!("{GOOD}[stanza.other]\n");
        let config = Config::parse(&two).unwrap();
        assert_eq!(config.select_stanza(Some("other")).unwrap().0, "other");
        let message = format!("{:#}", config.select_stanza(None).unwrap_err());
        assert!(
            message.contains("several stanzas (main, other)"),
            "{message}"
        );
        let message = format!("{:#}", config.select_stanza(Some("mian")).unwrap_err());
        assert!(
            message.contains("stanza 'mian' is not in the config file (it has: main, other)"),
            "{message}"
        );
    }
}
