//! `[source.NAME]`: the deployment's other stateful parts, each checked only when a `source`
//! command (or `expire`/`verify` of a source) uses it, so a mistake in a source's section never
//! stops WAL archiving. Each section becomes the settings of its kind, one line per mistake
//! naming its key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

use super::retention::{RetentionSettings, parse_duration};
use super::s3_keys::WrittenKeys;
use super::schema::{Config, CredentialSource, RetentionConfig, WrittenDuration};
use crate::repo::layout::check_source_name;
use crate::repo::retention::RetentionPolicy;
use crate::storage::S3Credentials;

/// The kinds of source Tidemark knows.
pub const SOURCE_TYPES: [&str; 3] = ["redis", "bucket", "azure-table"];

/// Objects a bucket snapshot or restore transfers at once, unless `concurrency` says.
const DEFAULT_BUCKET_CONCURRENCY: usize = 8;

/// How long connecting to a source may take, unless `connect_timeout` says.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tables an Azure Table snapshot reads at once, and transactions a restore sends at once,
/// unless `concurrency` says.
const DEFAULT_TABLE_CONCURRENCY: usize = 8;

/// How long one attempt of one Table storage request may take, unless `timeout` says.
const DEFAULT_TABLE_TIMEOUT: Duration = Duration::from_secs(30);

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
    bucket: Option<String>,
    prefix: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    path_style: Option<bool>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    profile: Option<String>,
    credentials: Option<CredentialSource>,
    concurrency: Option<usize>,
    listing: Option<String>,
    account: Option<String>,
    tables: Option<WrittenTables>,
    key_file: Option<PathBuf>,
    signing: Option<String>,
    timeout: Option<WrittenDuration>,
    #[serde(default)]
    retention: RetentionConfig,
}

/// `tables` as written: `"*"` or a list of names.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum WrittenTables {
    All(String),
    Named(Vec<String>),
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
    Bucket(BucketSettings),
    AzureTable(AzureTableSettings),
}

/// `type = "azure-table"`: tables of an Azure Storage account (or of Azurite).
#[derive(Clone, Debug)]
pub struct AzureTableSettings {
    pub account: String,
    /// The Table service's URL, without a trailing slash: as written, else
    /// `https://ACCOUNT.table.core.windows.net`.
    pub endpoint: String,
    pub tables: TableChoice,
    /// The account key or a SAS token, in a file of mode 0600; `None`: `AZURE_STORAGE_KEY`.
    pub key_file: Option<PathBuf>,
    /// How requests are signed with the account key, when `signing` is written; `None`:
    /// [`TableSigning::SharedKey`].
    pub signing: Option<TableSigning>,
    /// Tables read at once by a snapshot, and transactions sent at once by a restore.
    pub concurrency: usize,
    /// One attempt of one request, connecting included.
    pub timeout: Duration,
}

/// Which of the Table service's two schemes signs requests with the account key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TableSigning {
    /// Verb, content type, date and resource signed (the stronger, and the default).
    #[default]
    SharedKey,
    /// Date and resource only, for proxies and policies that expect it.
    SharedKeyLite,
}

/// Which tables an Azure Table snapshot exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableChoice {
    /// Every table the account has when the snapshot is taken (`tables = "*"`).
    All,
    Named(Vec<String>),
}

/// `type = "bucket"`: an S3 bucket (or one on MinIO or another S3-compatible server), or the
/// part of it under a prefix.
#[derive(Clone, Debug)]
pub struct BucketSettings {
    pub bucket: String,
    /// Only keys starting with this are snapshot; empty for the whole bucket.
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub credentials: S3Credentials,
    /// Objects transferred at once, and folders listed at once in a [`BucketListing::Walk`].
    pub concurrency: usize,
    pub listing: BucketListing,
}

/// How a bucket is listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BucketListing {
    /// One listing per folder (`delimiter=/`), `concurrency` folders at once, as rclone lists
    /// without `--fast-list`: servers that keep objects as files (MinIO, s3s-fs) answer each
    /// from one directory, where a flat listing walks the whole tree for every page.
    #[default]
    Walk,
    /// One paged listing of every key: the fewest requests on AWS S3, for buckets of many
    /// folders holding few objects each.
    Flat,
    /// One paged listing of every version (ListObjectVersions), taking each key's current one
    /// and reading exactly that version: a versioned bucket's objects as they were listed, even
    /// if they are overwritten while the snapshot reads.
    Versions,
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
            SourceKind::Bucket(_) => "bucket",
            SourceKind::AzureTable(_) => "azure-table",
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
        if written.secret_access_key.is_some() {
            self.refuse_exposed(&format!("{section}.secret_access_key"))?;
        }
        let kind = match written.kind.as_str() {
            "redis" => SourceKind::Redis(redis_settings(&section, &written)?),
            "bucket" => SourceKind::Bucket(bucket_settings(&section, &written)?),
            "azure-table" => SourceKind::AzureTable(azure_table_settings(&section, &written)?),
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
    refuse_keys_of_other_kinds(section, "redis", &written.bucket_keys())?;
    refuse_keys_of_other_kinds(section, "redis", &written.azure_table_keys())?;
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

fn bucket_settings(section: &str, written: &SourceSection) -> anyhow::Result<BucketSettings> {
    refuse_keys_of_other_kinds(section, "bucket", &written.redis_keys())?;
    refuse_keys_of_other_kinds(section, "bucket", &written.azure_table_keys())?;
    let bucket = written
        .bucket
        .clone()
        .filter(|bucket| !bucket.is_empty())
        .with_context(|| format!("{section} has no bucket: add bucket = \"NAME\""))?;
    let keys = WrittenKeys {
        section,
        access_key_id: written.access_key_id.as_deref(),
        secret_access_key: written.secret_access_key.as_deref(),
        profile: written.profile.as_deref(),
        credentials: written.credentials,
    };
    keys.check()?;
    if let Some(endpoint) = &written.endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        bail!(
            "{section}.endpoint \"{endpoint}\" is not a URL: write http://HOST:PORT or https://HOST"
        );
    }
    let concurrency = written.concurrency.unwrap_or(DEFAULT_BUCKET_CONCURRENCY);
    if !(1..=64).contains(&concurrency) {
        bail!("{section}.concurrency {concurrency} is out of range: use 1 to 64");
    }
    let listing = match written.listing.as_deref() {
        None | Some("walk") => BucketListing::Walk,
        Some("flat") => BucketListing::Flat,
        Some("versions") => BucketListing::Versions,
        Some(other) => bail!(
            "{section}.listing \"{other}\" is not a way to list: use \"walk\" (a listing per folder, the default), \"flat\" (one listing of every key) or \"versions\" (the current versions of a versioned bucket)"
        ),
    };
    Ok(BucketSettings {
        bucket,
        prefix: written.prefix.clone().unwrap_or_default(),
        endpoint: written.endpoint.clone(),
        region: written
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_owned()),
        // An S3-compatible server (MinIO) wants the bucket in the path; AWS, in the host name.
        path_style: written.path_style.unwrap_or(written.endpoint.is_some()),
        credentials: keys.resolve()?,
        concurrency,
        listing,
    })
}

fn azure_table_settings(
    section: &str,
    written: &SourceSection,
) -> anyhow::Result<AzureTableSettings> {
    refuse_keys_of_other_kinds(section, "azure-table", &written.redis_keys())?;
    let shared = ["endpoint", "concurrency"];
    let bucket_only: Vec<(&'static str, bool)> = written
        .bucket_keys()
        .into_iter()
        .filter(|(key, _)| !shared.contains(key))
        .collect();
    refuse_keys_of_other_kinds(section, "azure-table", &bucket_only)?;
    let account = written
        .account
        .clone()
        .filter(|account| !account.is_empty())
        .with_context(|| format!("{section} has no account: add account = \"NAME\""))?;
    if !account
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        bail!(
            "{section}.account \"{account}\" is not a storage account's name: lowercase letters and digits only"
        );
    }
    let endpoint = match &written.endpoint {
        Some(endpoint) if endpoint.starts_with("http://") || endpoint.starts_with("https://") => {
            endpoint.trim_end_matches('/').to_owned()
        }
        Some(endpoint) => bail!(
            "{section}.endpoint \"{endpoint}\" is not a URL: write http://HOST:PORT/ACCOUNT (an emulator) or https://HOST"
        ),
        None => format!("https://{account}.table.core.windows.net"),
    };
    let tables = match &written.tables {
        None => bail!(
            "{section} has no tables: add tables = [\"NAME\", …], or tables = \"*\" for every table"
        ),
        Some(WrittenTables::All(star)) if star == "*" => TableChoice::All,
        Some(WrittenTables::All(other)) => bail!(
            "{section}.tables \"{other}\" is neither \"*\" nor a list: write tables = [\"{other}\"]"
        ),
        Some(WrittenTables::Named(names)) if names.is_empty() => {
            bail!("{section}.tables is empty: name at least one table, or write tables = \"*\"")
        }
        Some(WrittenTables::Named(names)) => {
            if let Some(bad) = names.iter().find(|name| !is_table_name(name)) {
                bail!(
                    "{section}.tables names {bad:?}, which is no table's name: a letter, then 2 to 62 letters and digits"
                );
            }
            let mut names = names.clone();
            names.sort();
            names.dedup();
            TableChoice::Named(names)
        }
    };
    let concurrency = written.concurrency.unwrap_or(DEFAULT_TABLE_CONCURRENCY);
    if !(1..=64).contains(&concurrency) {
        bail!("{section}.concurrency {concurrency} is out of range: use 1 to 64");
    }
    let signing = match written.signing.as_deref() {
        None => None,
        Some("SharedKey") => Some(TableSigning::SharedKey),
        Some("SharedKeyLite") => Some(TableSigning::SharedKeyLite),
        Some(other) => bail!(
            "{section}.signing \"{other}\" is not a signing scheme: write \"SharedKey\" (the default) or \"SharedKeyLite\""
        ),
    };
    let timeout = match &written.timeout {
        None => DEFAULT_TABLE_TIMEOUT,
        Some(text) => parse_duration(&text.0)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                anyhow!(
                    "{section}.timeout {:?} is not a duration: write a whole number and a unit, such as \"30s\"",
                    text.0
                )
            })?,
    };
    Ok(AzureTableSettings {
        account,
        endpoint,
        tables,
        key_file: written.key_file.clone(),
        signing,
        concurrency,
        timeout,
    })
}

/// Table storage's rule for a table's name: a letter, then 2 to 62 letters and digits.
pub fn is_table_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes[0].is_ascii_alphabetic()
        && bytes.iter().all(u8::is_ascii_alphanumeric)
}

impl SourceSection {
    /// The keys only an Azure Table source takes, with whether each is set.
    fn azure_table_keys(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("account", self.account.is_some()),
            ("tables", self.tables.is_some()),
            ("key_file", self.key_file.is_some()),
            ("signing", self.signing.is_some()),
            ("timeout", self.timeout.is_some()),
        ]
    }

    /// The keys only a Redis source takes, with whether each is set.
    fn redis_keys(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("url", self.url.is_some()),
            ("password_file", self.password_file.is_some()),
            ("tls_ca_file", self.tls_ca_file.is_some()),
            ("connect_timeout", self.connect_timeout.is_some()),
        ]
    }

    /// The keys only a bucket source takes, with whether each is set.
    fn bucket_keys(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("bucket", self.bucket.is_some()),
            ("prefix", self.prefix.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("region", self.region.is_some()),
            ("path_style", self.path_style.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("profile", self.profile.is_some()),
            ("credentials", self.credentials.is_some()),
            ("concurrency", self.concurrency.is_some()),
            ("listing", self.listing.is_some()),
        ]
    }
}

/// Refuses a key, set in a source of `kind`, that only another kind of source takes.
fn refuse_keys_of_other_kinds(
    section: &str,
    kind: &str,
    others: &[(&'static str, bool)],
) -> anyhow::Result<()> {
    let article = if kind.starts_with('a') { "an" } else { "a" };
    match others.iter().find(|(_, set)| *set) {
        Some((key, _)) => bail!(
            "{section}.{key} is not a setting of {article} {kind} source: remove it, or fix {section}.type"
        ),
        None => Ok(()),
    }
}
