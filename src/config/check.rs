//! What the configuration file's types cannot say: which `[repo]` keys go with which type, the
//! ranges of numbers, absolute paths, one source of S3 keys (and of Azure access, in
//! `azure_keys.rs`), valid stanza names, retention settings (checked by `retention.rs`). Each
//! mistake is refused with one line naming the key and what to do.

use anyhow::{Context, bail};

use super::schema::{Config, RepoConfig, RepoType};
use crate::repo::Compression;
use crate::repo::layout::check_stanza_name;
use crate::storage::s3::{MAX_PART_SIZE, MIN_PART_SIZE};

impl Config {
    /// Checks a file that parsed, section by section, in the order its errors are reported.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        self.repo.check()?;
        if let Some(level) = self.repo.compress_level {
            if self.repo.compress != Compression::Zstd {
                bail!(
                    "repo.compress_level applies to zstd only, but compress = \"{}\": remove compress_level",
                    self.repo.compress.name()
                );
            }
            if !is_zstd_level(level) {
                bail!(
                    "repo.compress_level {level} is out of range: use 1 to 19, or -7 to -1 for zstd's fast levels"
                );
            }
        }
        if let Some(workers) = self.archive.workers
            && !(1..=64).contains(&workers)
        {
            bail!("archive.workers {workers} is out of range: use 1 to 64");
        }
        if let Some(spool) = &self.archive.spool_path
            && !spool.is_absolute()
        {
            bail!(
                "archive.spool_path '{}' must be an absolute path",
                spool.display()
            );
        }
        if let Some(prefetch) = self.restore.prefetch
            && prefetch > 256
        {
            bail!("restore.prefetch {prefetch} is out of range: use 0 (off) to 256");
        }
        for name in self.stanza.keys() {
            check_stanza_name(name).context("in a [stanza.NAME] section")?;
        }
        self.retention.settings("retention")?;
        for (name, stanza) in &self.stanza {
            stanza
                .retention
                .settings(&format!("stanza.{name}.retention"))?;
        }
        Ok(())
    }
}

impl RepoConfig {
    /// The keys that only type "s3" takes, with whether each is set.
    fn s3_keys(&self) -> [(&'static str, bool); 9] {
        [
            ("bucket", self.bucket.is_some()),
            ("region", self.region.is_some()),
            ("path_style", self.path_style),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("profile", self.profile.is_some()),
            ("credentials", self.credentials.is_some()),
            ("storage_class", self.storage_class.is_some()),
            ("sse", self.sse.is_some()),
        ]
    }

    /// The keys that only type "azure" takes, with whether each is set.
    pub(super) fn azure_keys(&self) -> [(&'static str, bool); 6] {
        [
            ("account", self.account.is_some()),
            ("container", self.container.is_some()),
            ("account_key_file", self.account_key_file.is_some()),
            ("sas_token_file", self.sas_token_file.is_some()),
            ("use_managed_identity", self.use_managed_identity),
            (
                "managed_identity_client_id",
                self.managed_identity_client_id.is_some(),
            ),
        ]
    }

    /// The keys both object stores take, and a directory does not.
    fn object_store_keys(&self) -> [(&'static str, bool); 3] {
        [
            ("prefix", self.prefix.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("multipart_part_size", self.multipart_part_size.is_some()),
        ]
    }

    fn check(&self) -> anyhow::Result<()> {
        match self.kind {
            RepoType::Local => self.check_local()?,
            RepoType::S3 => self.check_s3()?,
            RepoType::Azure => self.check_azure()?,
        }
        self.check_cipher()
    }

    /// Refuses the first key of `keys` that is set, as one that applies to `types` only.
    fn refuse_keys_of(keys: &[(&'static str, bool)], types: &str) -> anyhow::Result<()> {
        if let Some((key, _)) = keys.iter().find(|(_, set)| *set) {
            bail!(
                "repo.{key} applies to type = {types} only: add type = {types} to [repo], or remove {key}"
            );
        }
        Ok(())
    }

    fn check_local(&self) -> anyhow::Result<()> {
        Self::refuse_keys_of(&self.s3_keys(), "\"s3\"")?;
        Self::refuse_keys_of(&self.azure_keys(), "\"azure\"")?;
        Self::refuse_keys_of(&self.object_store_keys(), "\"s3\" or \"azure\"")?;
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
        Ok(())
    }

    /// An endpoint, when given, is a URL.
    pub(super) fn check_endpoint(&self) -> anyhow::Result<()> {
        if let Some(endpoint) = &self.endpoint
            && !endpoint.starts_with("http://")
            && !endpoint.starts_with("https://")
        {
            bail!("repo.endpoint '{endpoint}' must start with http:// or https://");
        }
        Ok(())
    }

    fn check_s3(&self) -> anyhow::Result<()> {
        if !self.path.as_os_str().is_empty() {
            bail!("repo.path applies to type = \"local\" only: a bucket has no path; remove it");
        }
        Self::refuse_keys_of(&self.azure_keys(), "\"azure\"")?;
        if self.bucket.as_deref().is_none_or(str::is_empty) {
            bail!("[repo] type = \"s3\" needs bucket = \"NAME\"");
        }
        if self.region.as_deref().is_none_or(str::is_empty) {
            bail!(
                "[repo] type = \"s3\" needs region = \"REGION\" (for MinIO and most S3-compatible servers, \"us-east-1\")"
            );
        }
        self.check_endpoint()?;
        self.check_s3_credentials()?;
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
        Ok(())
    }

    /// Keys given whole, a profile that is named, and at most one source of them.
    fn check_s3_credentials(&self) -> anyhow::Result<()> {
        self.written_keys().check()
    }

    fn check_azure(&self) -> anyhow::Result<()> {
        if !self.path.as_os_str().is_empty() {
            bail!("repo.path applies to type = \"local\" only: a container has no path; remove it");
        }
        Self::refuse_keys_of(&self.s3_keys(), "\"s3\"")?;
        self.check_endpoint()?;
        self.check_azure_settings()
    }
}

/// zstd's levels the configuration takes: 1 to 19, and the fast levels -7 to -1 (less
/// compression for less CPU; level 0 would mean zstd's own default, 3).
fn is_zstd_level(level: i32) -> bool {
    (1..=19).contains(&level) || (-7..=-1).contains(&level)
}
