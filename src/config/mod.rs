//! The configuration file: TOML, found by `--config`, else `TIDEMARK_CONFIG`, else
//! `/etc/tidemark/tidemark.toml`. Every key is known; an unknown key is refused by name, so a
//! typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::repo::compress::DEFAULT_ZSTD_LEVEL;
use crate::repo::layout::check_stanza_name;
use crate::repo::{Compression, Repository, WriteSettings};
use crate::storage::faulty::{self, FAULT_INJECTION_VARIABLE};
use crate::storage::s3::{DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::storage::{
    FaultyStorage, LocalDirectory, S3Credentials, S3Settings, S3Storage, Storage,
};
use crate::units::ByteSize;

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

/// Where the repository is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoType {
    /// A directory on a local (or mounted) file system.
    #[default]
    Local,
    /// An S3 bucket, or one on an S3-compatible server (MinIO, s3s).
    S3,
}

/// `[repo] credentials`: a source of S3 keys that is neither written in the file nor a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    /// The EC2 instance metadata service (IMDSv2), for the instance's IAM role.
    Instance,
}

/// `[repo]`: where and how objects are stored.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    #[serde(default, rename = "type")]
    pub kind: RepoType,
    /// Absolute path of the local directory repository (type "local").
    #[serde(default)]
    pub path: PathBuf,
    /// The bucket, and what else type "s3" needs.
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// A profile of the AWS shared credentials file (and config file) to take the keys from.
    pub profile: Option<String>,
    /// Another source of the keys, asked only when named here.
    pub credentials: Option<CredentialSource>,
    pub storage_class: Option<String>,
    pub sse: Option<String>,
    /// Objects larger than this go up in a multipart upload, in parts of this size.
    pub multipart_part_size: Option<ByteSize>,
    /// Compression of new objects.
    #[serde(default)]
    pub compress: Compression,
    /// zstd level of new objects (1 to 19).
    pub compress_level: Option<i32>,
}

impl RepoConfig {
    /// The keys that only type "s3" takes, with whether each is set.
    fn s3_keys(&self) -> [(&'static str, bool); 12] {
        [
            ("bucket", self.bucket.is_some()),
            ("prefix", self.prefix.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("region", self.region.is_some()),
            ("path_style", self.path_style),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("profile", self.profile.is_some()),
            ("credentials", self.credentials.is_some()),
            ("storage_class", self.storage_class.is_some()),
            ("sse", self.sse.is_some()),
            ("multipart_part_size", self.multipart_part_size.is_some()),
        ]
    }

    fn check(&self) -> anyhow::Result<()> {
        match self.kind {
            RepoType::Local => {
                if let Some((key, _)) = self.s3_keys().into_iter().find(|(_, set)| *set) {
                    bail!(
                        "repo.{key} applies to type = \"s3\" only: add type = \"s3\" to [repo], or remove {key}"
                    );
                }
                if self.path.as_os_str().is_empty() {
                    bail!(
                        "[repo] has no path: add path = \"/var/lib/tidemark\" (or type = \"s3\" and a bucket)"
                    );
                }
                if !self.path.is_absolute() {
                    bail!(
                        "repo.path '{}' must be an absolute path (archive_command runs in the data directory)",
                        self.path.display()
                    );
                }
            }
            RepoType::S3 => {
                if !self.path.as_os_str().is_empty() {
                    bail!(
                        "repo.path applies to type = \"local\" only: a bucket has no path; remove it"
                    );
                }
                if self.bucket.as_deref().is_none_or(str::is_empty) {
                    bail!("[repo] type = \"s3\" needs bucket = \"NAME\"");
                }
                if self.region.as_deref().is_none_or(str::is_empty) {
                    bail!(
                        "[repo] type = \"s3\" needs region = \"REGION\" (for MinIO and most S3-compatible servers, \"us-east-1\")"
                    );
                }
                if let Some(endpoint) = &self.endpoint
                    && !endpoint.starts_with("http://")
                    && !endpoint.starts_with("https://")
                {
                    bail!("repo.endpoint '{endpoint}' must start with http:// or https://");
                }
                if self.access_key_id.is_some() != self.secret_access_key.is_some() {
                    bail!(
                        "[repo] has only one of access_key_id and secret_access_key: give both, or neither to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    );
                }
                if self.profile.as_deref() == Some("") {
                    bail!(
                        "repo.profile is empty: name a profile of the AWS credentials file, or remove profile"
                    );
                }
                let sources: Vec<&str> = [
                    (
                        self.access_key_id.is_some(),
                        "access_key_id/secret_access_key",
                    ),
                    (self.profile.is_some(), "profile"),
                    (self.credentials.is_some(), "credentials = \"instance\""),
                ]
                .into_iter()
                .filter_map(|(set, source)| set.then_some(source))
                .collect();
                if sources.len() > 1 {
                    bail!(
                        "[repo] names more than one source of S3 credentials ({}): keep one and remove the rest",
                        sources.join(", ")
                    );
                }
                if let Some(sse) = &self.sse
                    && sse != "AES256"
                    && sse != "aws:kms"
                {
                    bail!("repo.sse '{sse}' is not one of \"AES256\", \"aws:kms\"");
                }
                if let Some(size) = self.multipart_part_size
                    && !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size.0)
                {
                    bail!(
                        "repo.multipart_part_size {size} is out of range: S3 takes parts of \"5MiB\" to \"5GiB\""
                    );
                }
            }
        }
        Ok(())
    }

    /// The one source of S3 keys this section names (`check` refused more than one), else the
    /// environment.
    fn s3_credentials(&self) -> anyhow::Result<S3Credentials> {
        if let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            return Ok(S3Credentials::keys(
                id.clone(),
                secret.clone(),
                None,
                "tidemark configuration",
            ));
        }
        if let Some(profile) = &self.profile {
            return Ok(S3Credentials::Profile(profile.clone()));
        }
        if self.credentials == Some(CredentialSource::Instance) {
            return Ok(S3Credentials::InstanceMetadata);
        }
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        match (
            variable("AWS_ACCESS_KEY_ID"),
            variable("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Ok(S3Credentials::keys(
                id,
                secret,
                variable("AWS_SESSION_TOKEN"),
                "environment",
            )),
            _ => bail!(
                "no S3 credentials: in [repo] set access_key_id and secret_access_key (in a file of mode 0600), profile = \"NAME\" or credentials = \"instance\"; or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
        }
    }

    /// The storage this section names; under faults when the environment asks for them (see
    /// [`FAULT_INJECTION_VARIABLE`]).
    pub fn open_storage(&self) -> anyhow::Result<Box<dyn Storage>> {
        let storage = self.open_configured_storage()?;
        match faulty::plan_from_environment().map_err(anyhow::Error::msg)? {
            None => Ok(storage),
            Some(plan) => {
                // The seed is logged so that a run's faults can be had again.
                tracing::warn!(
                    "{FAULT_INJECTION_VARIABLE} is set: failing {}% of repository operations on purpose (seed {}; share={},seed={} repeats them)",
                    plan.failure_share * 100.0,
                    plan.seed,
                    plan.failure_share,
                    plan.seed
                );
                Ok(Box::new(FaultyStorage::new(
                    Arc::<dyn Storage>::from(storage),
                    plan,
                )))
            }
        }
    }

    fn open_configured_storage(&self) -> anyhow::Result<Box<dyn Storage>> {
        Ok(match self.kind {
            RepoType::Local => Box::new(LocalDirectory::new(&self.path)),
            RepoType::S3 => {
                let credentials = self.s3_credentials()?;
                Box::new(S3Storage::new(S3Settings {
                    bucket: self.bucket.clone().unwrap_or_default(),
                    prefix: self.prefix.clone().unwrap_or_default(),
                    endpoint: self.endpoint.clone(),
                    region: self.region.clone().unwrap_or_default(),
                    path_style: self.path_style,
                    credentials,
                    storage_class: self.storage_class.clone(),
                    sse: self.sse.clone(),
                    multipart_part_size: self
                        .multipart_part_size
                        .map_or(DEFAULT_PART_SIZE, |s| s.0),
                })?)
            }
        })
    }
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
        let config =
            Config::parse(&text).with_context(|| format!("config file {}", path.display()))?;
        // A secret in a file others can read is a secret no more.
        if config.repo.secret_access_key.is_some() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .with_context(|| format!("inspect config file {}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bail!(
                    "config file {} holds repo.secret_access_key but is readable by others (mode {:04o}): chmod 600 it",
                    path.display(),
                    mode & 0o7777
                );
            }
        }
        Ok(config)
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
        config.repo.check()?;
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
    pub fn open_repository(&self) -> anyhow::Result<Repository> {
        Ok(Repository::new(
            self.repo.open_storage()?,
            WriteSettings {
                compression: self.repo.compress,
                zstd_level: self.repo.compress_level.unwrap_or(DEFAULT_ZSTD_LEVEL),
            },
        ))
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

    /// The keys an S3 repository cannot do without.
    const S3: &str = "bucket = \"pg-archive\"\nregion = \"us-east-1\"\n";

    #[test]
    fn reads_an_s3_repository() {
        let config = Config::parse(&format!(
            "[repo]\ntype = \"s3\"\n{S3}prefix = \"prod\"\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\nstorage_class = \"STANDARD_IA\"\nsse = \"AES256\"\nmultipart_part_size = \"64MiB\"\n"
        ))
        .unwrap();
        assert_eq!(config.repo.kind, RepoType::S3);
        assert_eq!(config.repo.multipart_part_size, Some(ByteSize(64 << 20)));
        assert_eq!(config.repo.bucket.as_deref(), Some("pg-archive"));
        assert!(config.repo.path_style);
        assert_eq!(
            config.open_repository().unwrap().storage().location(),
            "s3://pg-archive/prod at http://127.0.0.1:9000"
        );
        // A size may also be a number of bytes.
        let in_bytes = Config::parse(&format!(
            "[repo]\ntype = \"s3\"\n{S3}multipart_part_size = 5242880\n"
        ))
        .unwrap();
        assert_eq!(in_bytes.repo.multipart_part_size, Some(ByteSize(5 << 20)));
        let profile =
            Config::parse(&format!("[repo]\ntype = \"s3\"\n{S3}profile = \"prod\"\n")).unwrap();
        assert_eq!(profile.repo.profile.as_deref(), Some("prod"));
        let instance = Config::parse(&format!(
            "[repo]\ntype = \"s3\"\n{S3}credentials = \"instance\"\n"
        ))
        .unwrap();
        assert_eq!(instance.repo.credentials, Some(CredentialSource::Instance));
    }

    #[test]
    fn a_secret_in_a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tidemark.toml");
        std::fs::write(
            &path,
            format!(
                "[repo]\ntype = \"s3\"\n{S3}access_key_id = \"k\"\nsecret_access_key = \"s\"\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(
            refused.ends_with(
                "holds repo.secret_access_key but is readable by others (mode 0644): chmod 600 it"
            ),
            "{refused}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Config::load(&path).unwrap();
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
                GOOD.replace("compress = \"lz4\"", "bucket = \"b\""),
                "repo.bucket applies to type = \"s3\" only: add type = \"s3\" to [repo], or remove bucket",
            ),
            (
                "[repo]\ncompress = \"lz4\"\n".to_owned(),
                "[repo] has no path: add path = \"/var/lib/tidemark\"",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}path = \"/x\"\n"),
                "repo.path applies to type = \"local\" only",
            ),
            (
                "[repo]\ntype = \"s3\"\nregion = \"us-east-1\"\n".to_owned(),
                "[repo] type = \"s3\" needs bucket = \"NAME\"",
            ),
            (
                "[repo]\ntype = \"s3\"\nbucket = \"b\"\n".to_owned(),
                "[repo] type = \"s3\" needs region = \"REGION\"",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}endpoint = \"127.0.0.1:9000\"\n"),
                "repo.endpoint '127.0.0.1:9000' must start with http:// or https://",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}access_key_id = \"k\"\n"),
                "[repo] has only one of access_key_id and secret_access_key",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}credentials = \"static\"\n"),
                "line 5: unknown variant `static`, expected `instance`",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}profile = \"\"\n"),
                "repo.profile is empty: name a profile of the AWS credentials file, or remove profile",
            ),
            (
                format!(
                    "[repo]\ntype = \"s3\"\n{S3}access_key_id = \"k\"\nsecret_access_key = \"s\"\nprofile = \"prod\"\n"
                ),
                "[repo] names more than one source of S3 credentials (access_key_id/secret_access_key, profile): keep one and remove the rest",
            ),
            (
                format!(
                    "[repo]\ntype = \"s3\"\n{S3}profile = \"prod\"\ncredentials = \"instance\"\n"
                ),
                "[repo] names more than one source of S3 credentials (profile, credentials = \"instance\"): keep one",
            ),
            (
                format!(
                    "[repo]\ntype = \"s3\"\n{S3}access_key_id = \"k\"\nsecret_access_key = \"s\"\ncredentials = \"instance\"\n"
                ),
                "(access_key_id/secret_access_key, credentials = \"instance\"): keep one",
            ),
            (
                GOOD.replace("compress = \"lz4\"", "profile = \"prod\""),
                "repo.profile applies to type = \"s3\" only: add type = \"s3\" to [repo], or remove profile",
            ),
            (
                GOOD.replace("compress = \"lz4\"", "credentials = \"instance\""),
                "repo.credentials applies to type = \"s3\" only",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}sse = \"rot13\"\n"),
                "repo.sse 'rot13' is not one of \"AES256\", \"aws:kms\"",
            ),
            (
                GOOD.replace("compress = \"lz4\"", "multipart_part_size = \"16MiB\""),
                "repo.multipart_part_size applies to type = \"s3\" only: add type = \"s3\" to [repo], or remove multipart_part_size",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}multipart_part_size = \"16MB\"\n"),
                "line 5: \"16MB\" is not a size: write a whole number and one of B, KiB, MiB, GiB, TiB, such as \"16MiB\"",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}multipart_part_size = \"1.5GiB\"\n"),
                "line 5: \"1.5GiB\" is not a size: write a whole number",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}multipart_part_size = \"\"\n"),
                "line 5: \"\" is not a size",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}multipart_part_size = -5\n"),
                "line 5: -5 is not a size: sizes are not negative",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}multipart_part_size = true\n"),
                "line 5: invalid type: boolean `true`, expected a size such as \"16MiB\"",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}multipart_part_size = \"99999999TiB\"\n"),
                "line 5: \"99999999TiB\" is too large a size",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}multipart_part_size = \"4MiB\"\n"),
                "repo.multipart_part_size 4.0 MiB is out of range: S3 takes parts of \"5MiB\" to \"5GiB\"",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}multipart_part_size = 0\n"),
                "repo.multipart_part_size 0 B is out of range",
            ),
            (
                format!("[repo]\ntype = \"s3\"\n{S3}multipart_part_size = \"6GiB\"\n"),
                "repo.multipart_part_size 6.0 GiB is out of range: S3 takes parts of \"5MiB\" to \"5GiB\"",
            ),
            (
                "[repo]\ntype = \"ftp\"\n".to_owned(),
                "unknown variant `ftp`, expected `local` or `s3`",
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
