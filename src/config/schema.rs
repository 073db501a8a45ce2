//! The configuration file's schema: one serde type per section, every key named, defaults
//! where a key may be left out, and the few values computed from keys. What is allowed beyond
//! the types is checked in `check.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::repo::Compression;
use crate::units::ByteSize;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub repo: RepoConfig,
    #[serde(default)]
    pub archive: ArchiveConfig,
    #[serde(default)]
    pub restore: RestoreConfig,
    /// The repository-wide retention policy, which each stanza's own section overrides.
    #[serde(default)]
    pub retention: RetentionConfig,

    #[serde(default)]
    pub stanza: BTreeMap<String, StanzaConfig>,

    /// `[source.NAME]` as written: checked by `sources.rs` when a command uses the source.
    #[serde(default)]
    pub source: BTreeMap<String, toml::Value>,

    /// The file it was read from (`None` for text parsed as it is): a secret key in a section
    /// is refused when that file is exposed, checked when the section is used — a source's
    /// only by the commands that use the source.
    #[serde(skip)]
    pub(super) loaded_from: Option<std::path::PathBuf>,
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
    /// An Azure Blob Storage container (or Azurite's).
    Azure,
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
    /// Objects larger than this go up in a multipart upload (S3) or in blocks (Azure), in parts
    /// of this size.
    pub multipart_part_size: Option<ByteSize>,
    /// The storage account and the container, and what else type "azure" needs. (Not
    /// `key_file`: that is the repository's encryption key.)
    pub account: Option<String>,
    pub container: Option<String>,
    /// A file of mode 0600 holding the storage account's key.
    pub account_key_file: Option<PathBuf>,
    /// A file of mode 0600 holding a SAS token for the container.
    pub sas_token_file: Option<PathBuf>,
    /// Tokens of the Azure machine's managed identity, from its instance metadata service.
    #[serde(default)]
    pub use_managed_identity: bool,
    /// Which user-assigned managed identity (its client id); the system-assigned one if unset.
    pub managed_identity_client_id: Option<String>,
    /// Compression of new objects.
    #[serde(default)]
    pub compress: Compression,
    /// zstd level of new objects (1 to 19).
    pub compress_level: Option<i32>,
    /// Encryption at rest of every object: "aes-256-gcm", or "none" (the default).
    #[serde(default)]
    pub cipher: Cipher,
    /// The repository's key, from one of these, else `TIDEMARK_PASSPHRASE`: a file holding the
    /// passphrase (mode 0600), a command printing it (`sh -c`), or a key file of 64 hex digits.
    pub passphrase_file: Option<PathBuf>,
    pub passphrase_command: Option<String>,
    pub key_file: Option<PathBuf>,
}

/// `[repo] cipher`: how objects are encrypted at rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Cipher {
    /// Stored as they are (after compression).
    #[default]
    #[serde(rename = "none")]
    None,
    /// AES-256-GCM, in authenticated chunks, under keys from the repository's keyring.
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

impl Cipher {
    /// The name the configuration and `stanza.json` use.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
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
    /// `[stanza.NAME.retention]`: this stanza's retention, key by key over `[retention]`.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// `[retention]` and `[stanza.NAME.retention]`: what `expire` keeps, as written. The values are
/// checked, each error naming its key, and made a policy in `retention.rs`
/// (`Selected::retention_policy`); nothing else reads them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep the newest N backups.
    pub(super) full: Option<i64>,
    /// Keep what restores to any instant in this last stretch of time ("35d").
    pub(super) time: Option<WrittenDuration>,
    /// Keep the newest backup of each of the newest N days, weeks, months, years; by name, so a
    /// period that does not exist is refused naming the four that do.
    pub(super) gfs: Option<BTreeMap<String, i64>>,
    /// "window" or "all".
    pub(super) archive: Option<String>,
    /// IANA name of the time zone calendar periods are counted in.
    pub(super) time_zone: Option<String>,
}

/// A duration as written: `time = "35d"`, or a bare number (`time = 35`) kept as its text, so the
/// check says it has no unit rather than that it has the wrong type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct WrittenDuration(pub(super) String);

impl<'de> Deserialize<'de> for WrittenDuration {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<WrittenDuration, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WrittenDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"35d\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<WrittenDuration, E> {
                Ok(WrittenDuration(text.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<WrittenDuration, E> {
                Ok(WrittenDuration(number.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<WrittenDuration, E> {
                Ok(WrittenDuration(number.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<WrittenDuration, E> {
                Ok(WrittenDuration(number.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
