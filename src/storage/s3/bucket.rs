//! The bucket a store works on: its settings, the SDK client built from them (explicitly: the
//! endpoint, region and keys given, nothing probed; bounded retries, each logged), the runtime
//! the client runs on, and how storage keys map to the bucket's keys under the prefix. The
//! operations on it are in `store.rs` and `multipart.rs`, which import this file, never the
//! other way round.

use std::sync::Arc;

use super::credentials::{S3Credentials, credentials_provider};
use super::{retry_log, transport};
use crate::storage::{ObjectKey, StorageError};

/// Where and how to reach the bucket.
#[derive(Clone, Debug)]
pub struct S3Settings {
    pub bucket: String,
    /// Prepended, with a `/`, to every key; empty for none.
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Bucket in the path (`host/bucket/key`) rather than the host name, as MinIO wants.
    pub path_style: bool,
    /// Where the keys come from; nothing else is looked at.
    pub credentials: S3Credentials,
    pub storage_class: Option<String>,
    /// Server-side encryption (`AES256` or `aws:kms`).
    pub sse: Option<String>,
    /// Objects larger than this go up in parts of this size (kept within S3's 5 MiB to 5 GiB,
    /// and grown for objects that would otherwise need more than 10,000 parts).
    pub multipart_part_size: u64,
}

/// An S3 bucket (under a prefix) as a [`Storage`](crate::storage::Storage).
pub struct S3Storage {
    pub(super) settings: S3Settings,
    pub(super) client: aws_sdk_s3::Client,
    /// The SDK is async; this store is not. Several threads may wait on it at once.
    pub(super) runtime: Arc<tokio::runtime::Runtime>,
}

/// Attempts of one request, the first included, before its failure is the caller's.
const MAX_ATTEMPTS: u32 = 5;

impl S3Storage {
    pub fn new(settings: S3Settings) -> Result<S3Storage, StorageError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| StorageError::from_io("start the S3 client's runtime", e))?;
        let credentials = credentials_provider(&settings.credentials, &runtime)?;
        let plain_http = settings
            .endpoint
            .as_ref()
            .is_some_and(|endpoint| endpoint.starts_with("http://"));
        let tls =
            crate::storage::tls::client_config(!plain_http).map_err(|reason| StorageError::Io {
                doing: format!("reach bucket {} over https", settings.bucket),
                source: std::io::Error::other(reason),
            })?;
        let mut config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.path_style)
            .http_client(transport::http_client(tls))
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS),
            )
            .interceptor(retry_log::RetryLog {
                max_attempts: MAX_ATTEMPTS,
            });
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let client = aws_sdk_s3::Client::from_conf(config.build());
        Ok(S3Storage {
            settings,
            client,
            runtime: Arc::new(runtime),
        })
    }

    /// The SDK client, for another user of the same client stack (a bucket source), with
    /// [`S3Storage::block_on`] to run its requests.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Runs one of the client's requests to its end, on the store's runtime.
    pub fn block_on<F: std::future::Future>(&self, request: F) -> F::Output {
        self.runtime.block_on(request)
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// The bucket key of `key`.
    pub(super) fn object_key(&self, key: &str) -> String {
        if self.settings.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.settings.prefix)
        }
    }

    /// The storage key of a bucket key under our prefix.
    pub(super) fn storage_key(&self, object_key: &str) -> Option<ObjectKey> {
        let key = if self.settings.prefix.is_empty() {
            object_key
        } else {
            object_key.strip_prefix(&format!("{}/", self.settings.prefix))?
        };
        ObjectKey::new(key).ok()
    }

    pub(super) fn doing(&self, what: &str, key: &str) -> String {
        format!(
            "{what} s3://{}/{}",
            self.settings.bucket,
            self.object_key(key)
        )
    }
}
