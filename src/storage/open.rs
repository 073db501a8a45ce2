//! `storage::open`: builds the backend a repository's description names, under injected faults
//! when `TIDEMARK_FAULT_INJECTION` asks for them.
//!
//! The description, [`BackendSettings`], is plain data defined here. `config/` sits above
//! `storage/`: it reads the `[repo]` section, checks it and fills in a `BackendSettings`
//! (resolving where S3 keys come from); this module builds from that and knows nothing of the
//! configuration file. So the arrow points down, config → storage, and no backend is built in
//! `config/`.

use std::path::PathBuf;
use std::sync::Arc;

use super::faulty::{self, FAULT_INJECTION_VARIABLE};
use super::{
    AzureSettings, AzureStorage, FaultyStorage, LocalDirectory, S3Settings, S3Storage, Storage,
    StorageError,
};

/// Which backend a repository is on, and what building it takes.
#[derive(Clone, Debug)]
pub enum BackendSettings {
    /// A directory on a local (or mounted) file system, at this absolute path.
    Local(PathBuf),
    /// An S3 bucket, or one on an S3-compatible server (MinIO, s3s).
    S3(S3Settings),
    /// An Azure Blob Storage container (or Azurite's).
    Azure(AzureSettings),
}

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Building the backend failed (an S3 source of keys that gave none, say).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `TIDEMARK_FAULT_INJECTION` is set to something that is not a fault plan.
    #[error("{0}")]
    FaultPlan(String),
}

/// The storage `settings` describe; under faults when the environment asks for them (see
/// [`FAULT_INJECTION_VARIABLE`]).
pub fn open(settings: BackendSettings) -> Result<Box<dyn Storage>, OpenError> {
    let storage = build(settings)?;
    match faulty::plan_from_environment().map_err(OpenError::FaultPlan)? {
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

fn build(settings: BackendSettings) -> Result<Box<dyn Storage>, StorageError> {
    Ok(match settings {
        BackendSettings::Local(path) => Box::new(LocalDirectory::new(path)),
        BackendSettings::S3(settings) => Box::new(S3Storage::new(settings)?),
        BackendSettings::Azure(settings) => Box::new(AzureStorage::new(settings)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::azure::{DEFAULT_BLOCK_SIZE, DEFAULT_REQUEST_TIMEOUT};
    use crate::storage::s3::DEFAULT_PART_SIZE;
    use crate::storage::{AzureCredentials, S3Credentials};

    #[test]
    fn each_description_builds_its_backend() {
        let dir = tempfile::tempdir().unwrap();
        let local = build(BackendSettings::Local(dir.path().to_path_buf())).unwrap();
        assert_eq!(local.location(), dir.path().display().to_string());
        let s3 = build(BackendSettings::S3(S3Settings {
            bucket: "pg-archive".into(),
            prefix: "prod".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "us-east-1".into(),
            path_style: true,
            credentials: S3Credentials::keys("k".into(), "s".into(), None, "test"),
            storage_class: None,
            sse: None,
            multipart_part_size: DEFAULT_PART_SIZE,
        }))
        .unwrap();
        assert_eq!(
            s3.location(),
            "s3://pg-archive/prod at http://127.0.0.1:9000"
        );
        let azure = build(BackendSettings::Azure(AzureSettings {
            account: "pgarchive".into(),
            container: "wal".into(),
            prefix: String::new(),
            endpoint: None,
            credentials: AzureCredentials::account_key("AAEC").unwrap(),
            block_size: DEFAULT_BLOCK_SIZE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }))
        .unwrap();
        assert_eq!(
            azure.location(),
            "azure://wal at https://pgarchive.blob.core.windows.net"
        );
    }
}
