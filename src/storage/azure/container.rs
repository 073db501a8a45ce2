//! The container a store works on: its settings, the client built from them (explicitly: the
//! endpoint, account and access given, nothing probed), the runtime the client runs on, and how
//! storage keys map to blob names under the prefix. The operations on it are in `store.rs`,
//! `listing.rs` and `blocks.rs`, which import this file, never the other way round.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::credentials::AzureCredentials;
use super::errors::{Place, Refusal, classify, no_answer};
use super::http::{Access, Answer, BlobClient, Call, Failure};
use super::identity::{ASK_LIMIT, ManagedIdentity};
use super::transport::Transport;
use crate::storage::{ObjectKey, StorageError};

/// How long an attempt may wait for an answer's head when none is configured (besides the
/// upload time of its body).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Where and how to reach the container.
#[derive(Clone, Debug)]
pub struct AzureSettings {
    /// The storage account.
    pub account: String,
    pub container: String,
    /// Prepended, with a `/`, to every key; empty for none.
    pub prefix: String,
    /// `http(s)://host[:port][/path]` of the Blob service (Azurite's is
    /// `http://127.0.0.1:10000/devstoreaccount1`); `None` for
    /// `https://ACCOUNT.blob.core.windows.net`.
    pub endpoint: Option<String>,
    /// The one source of access; nothing else is looked at.
    pub credentials: AzureCredentials,
    /// Blobs larger than this go up in blocks of this size.
    pub block_size: u64,
    /// How long an attempt may wait for an answer (see [`DEFAULT_REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
}

impl AzureSettings {
    /// The Blob service's URL, without a trailing `/`.
    pub fn endpoint_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://{}.blob.core.windows.net", self.account),
        }
    }
}

/// An Azure Blob Storage container (under a prefix) as a
/// [`Storage`](crate::storage::Storage).
pub struct AzureStorage {
    pub(super) settings: AzureSettings,
    pub(super) client: Arc<BlobClient>,
    /// The client is async; this store is not. Several threads may wait on it at once.
    pub(super) runtime: Arc<tokio::runtime::Runtime>,
}

impl AzureStorage {
    /// The store; with a managed identity, its first token is fetched now, so a machine without
    /// one fails at once with one line rather than at the first request.
    pub fn new(settings: AzureSettings) -> Result<AzureStorage, StorageError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| StorageError::from_io("start the Azure client's runtime", e))?;
        let endpoint = settings.endpoint_url();
        let setup_error = |message: String| StorageError::Io {
            doing: format!("set up the Azure client for {endpoint}"),
            source: io::Error::other(message),
        };
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| setup_error(format!("{e}; fix [repo] endpoint")))?;
        let transport = Transport::new(uri.scheme_str() == Some("https")).map_err(setup_error)?;
        let access = match &settings.credentials {
            AzureCredentials::AccountKey(key) => Access::AccountKey(key.clone()),
            AzureCredentials::Sas(token) => Access::Sas(token.clone()),
            AzureCredentials::ManagedIdentity { client_id } => {
                Access::Identity(ManagedIdentity::new(client_id.clone()))
            }
        };
        let client = BlobClient {
            transport,
            access,
            account: settings.account.clone(),
            endpoint_path: uri.path().trim_end_matches('/').to_owned(),
            endpoint,
            request_timeout: settings.request_timeout,
        };
        if let Access::Identity(identity) = &client.access {
            first_token(&runtime, identity, &client.transport)?;
        }
        Ok(AzureStorage {
            settings,
            client: Arc::new(client),
            runtime: Arc::new(runtime),
        })
    }

    pub fn settings(&self) -> &AzureSettings {
        &self.settings
    }

    /// The blob name of `key`.
    pub(super) fn blob_name(&self, key: &str) -> String {
        if self.settings.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.settings.prefix)
        }
    }

    /// The path of `key`'s blob below the endpoint.
    pub(super) fn blob_path(&self, key: &str) -> String {
        format!("/{}/{}", self.settings.container, self.blob_name(key))
    }

    /// The path of the container below the endpoint.
    pub(super) fn container_path(&self) -> String {
        format!("/{}", self.settings.container)
    }

    /// The storage key of a blob name under our prefix.
    pub(super) fn storage_key(&self, blob_name: &str) -> Option<ObjectKey> {
        let key = if self.settings.prefix.is_empty() {
            blob_name
        } else {
            blob_name.strip_prefix(&format!("{}/", self.settings.prefix))?
        };
        ObjectKey::new(key).ok()
    }

    pub(super) fn doing(&self, what: &str, key: &str) -> String {
        format!(
            "{what} azure://{}/{}",
            self.settings.container,
            self.blob_name(key)
        )
    }

    /// Sends `call` with its retries, waiting on the store's runtime.
    pub(super) fn send(&self, call: &Call<'_>) -> Result<Answer, Failure> {
        self.runtime.block_on(self.client.send(call))
    }

    /// Creates the container (Create Container), for tests and set-up: Tidemark never creates
    /// it by itself, so a mistyped name is refused rather than silently made. A container that
    /// is already there is fine.
    pub fn create_container(&self) -> Result<(), StorageError> {
        let doing = format!("create container {}", self.settings.container);
        let call = Call::new(http::Method::PUT, self.container_path(), &doing)
            .query("restype", "container");
        match self.send(&call) {
            Ok(_) => Ok(()),
            Err(Failure::Refused(refusal)) if refusal.code_is("ContainerAlreadyExists") => Ok(()),
            Err(failure) => Err(self.failed(doing, failure)),
        }
    }

    /// What a failure of the request `doing` means for the caller.
    pub(super) fn failed(&self, doing: String, failure: Failure) -> StorageError {
        failure_for(&self.settings, doing, failure)
    }
}

/// What a failure of the request `doing` to the container `settings` name means for the caller.
pub(super) fn failure_for(
    settings: &AzureSettings,
    doing: String,
    failure: Failure,
) -> StorageError {
    match failure {
        Failure::Refused(refusal) => refused_for(settings, doing, &refusal),
        Failure::NoAnswer(reason) => no_answer(doing, &reason),
        Failure::NoToken(reason) => StorageError::Io {
            doing,
            source: io::Error::other(no_token_hint(&reason)),
        },
    }
}

fn refused_for(settings: &AzureSettings, doing: String, refusal: &Refusal) -> StorageError {
    let endpoint = settings.endpoint_url();
    let place = Place {
        container: &settings.container,
        endpoint: &endpoint,
    };
    classify(doing, refusal, &place)
}

/// Fetches the managed identity's first token, within [`ASK_LIMIT`] in all.
fn first_token(
    runtime: &tokio::runtime::Runtime,
    identity: &ManagedIdentity,
    transport: &Transport,
) -> Result<(), StorageError> {
    let asked = runtime
        .block_on(async { tokio::time::timeout(ASK_LIMIT, identity.token(transport)).await });
    let reason = match asked {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(reason)) => reason,
        Err(_) => format!("no answer in {} s", ASK_LIMIT.as_secs()),
    };
    Err(StorageError::Io {
        doing: identity.doing(),
        source: io::Error::other(no_token_hint(&reason)),
    })
}

fn no_token_hint(reason: &str) -> String {
    format!(
        "{reason}; use_managed_identity = true needs an Azure machine with a managed identity allowed to use the container (elsewhere give account_key_file or sas_token_file)"
    )
}
