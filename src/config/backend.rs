//! From the `[repo]` section to the repository: the description of its backend that
//! `storage::open` builds from (config/ describes backends, it never builds them), with the one
//! source of S3 keys (or of Azure access) resolved, the write settings of new objects, and in an
//! encrypted repository where its keys come from.

use std::sync::Arc;

use super::s3_keys::WrittenKeys;
use super::schema::{Config, RepoConfig, RepoType};
use crate::repo::compress::DEFAULT_ZSTD_LEVEL;
use crate::repo::keys::RepoKeys;
use crate::repo::{Codec, Repository, WriteSettings};
use crate::storage::azure::{DEFAULT_BLOCK_SIZE, DEFAULT_REQUEST_TIMEOUT};
use crate::storage::s3::DEFAULT_PART_SIZE;
use crate::storage::{self, AzureSettings, BackendSettings, S3Credentials, S3Settings, Storage};

impl Config {
    /// The repository this configuration points at: encrypted when `[repo] cipher` says so,
    /// its keys opened only when an object is first sealed or opened.
    pub fn open_repository(&self) -> anyhow::Result<Repository> {
        let storage: Arc<dyn Storage> = Arc::from(storage::open(self.repo.backend()?)?);
        let write = WriteSettings {
            compression: self.repo.compress,
            zstd_level: self.repo.compress_level.unwrap_or(DEFAULT_ZSTD_LEVEL),
        };
        let codec = match self.repo.key_source()? {
            None => Codec::plain(write),
            Some(source) => {
                Codec::encrypted(write, Arc::new(RepoKeys::new(Arc::clone(&storage), source)))
            }
        };
        Ok(Repository::with_codec(Box::new(storage), codec))
    }
}

impl RepoConfig {
    /// The backend this section describes.
    pub fn backend(&self) -> anyhow::Result<BackendSettings> {
        Ok(match self.kind {
            RepoType::Local => BackendSettings::Local(self.path.clone()),
            RepoType::S3 => BackendSettings::S3(S3Settings {
                bucket: self.bucket.clone().unwrap_or_default(),
                prefix: self.prefix.clone().unwrap_or_default(),
                endpoint: self.endpoint.clone(),
                region: self.region.clone().unwrap_or_default(),
                path_style: self.path_style,
                credentials: self.s3_credentials()?,
                storage_class: self.storage_class.clone(),
                sse: self.sse.clone(),
                multipart_part_size: self.multipart_part_size.map_or(DEFAULT_PART_SIZE, |s| s.0),
            }),
            RepoType::Azure => BackendSettings::Azure(AzureSettings {
                account: self.account.clone().unwrap_or_default(),
                container: self.container.clone().unwrap_or_default(),
                prefix: self.prefix.clone().unwrap_or_default(),
                endpoint: self.endpoint.clone(),
                credentials: self.azure_credentials()?,
                block_size: self.multipart_part_size.map_or(DEFAULT_BLOCK_SIZE, |s| s.0),
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
            }),
        })
    }

    /// The one source of S3 keys this section names (`check` refused more than one), else the
    /// environment.
    fn s3_credentials(&self) -> anyhow::Result<S3Credentials> {
        self.written_keys().resolve()
    }

    /// The key settings as written.
    pub(super) fn written_keys(&self) -> WrittenKeys<'_> {
        WrittenKeys {
            section: "repo",
            access_key_id: self.access_key_id.as_deref(),
            secret_access_key: self.secret_access_key.as_deref(),
            profile: self.profile.as_deref(),
            credentials: self.credentials,
        }
    }
}
