//! Where the S3 client's keys come from: given outright, a named profile of the AWS shared files,
//! or the EC2 instance metadata service. Only the one source named is consulted; nothing is
//! probed. Keys are fetched when the store is built, so a source that cannot give them fails
//! the command at once with one line, not at its first request as a "cannot reach" error.

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_credential_types::provider::future;
use aws_sdk_s3::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};

use super::aws_profile::{SharedFiles, read_profile};
use crate::storage::StorageError;
use crate::storage::error_chain;

/// The one source of an S3 store's keys.
#[derive(Clone)]
pub enum S3Credentials {
    /// Keys given outright, from the configuration file or the environment.
    Keys(Credentials),
    /// A named profile of the AWS shared credentials and config files.
    Profile(String),
    /// The EC2 instance metadata service (IMDSv2), for the instance's IAM role.
    InstanceMetadata,
}

impl S3Credentials {
    /// Keys given outright; `origin` says where from (the SDK shows it in its debug output).
    pub fn keys(
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        origin: &'static str,
    ) -> S3Credentials {
        S3Credentials::Keys(Credentials::new(
            access_key_id,
            secret_access_key,
            session_token,
            None,
            origin,
        ))
    }
}

/// Never shows a secret.
impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `Credentials` prints its secret redacted.
            S3Credentials::Keys(credentials) => credentials.fmt(f),
            S3Credentials::Profile(name) => write!(f, "Profile({name:?})"),
            S3Credentials::InstanceMetadata => f.write_str("InstanceMetadata"),
        }
    }
}

/// Where the instance metadata service is when `AWS_EC2_METADATA_SERVICE_ENDPOINT` (the AWS
/// SDKs' variable, also how tests point at a port of theirs) does not say.
const METADATA_SERVICE: &str = "http://169.254.169.254";

/// How long the first fetch from the metadata service may take in all. On EC2 it answers in
/// milliseconds; elsewhere nothing may answer at all, and a command must fail, not hang.
const FIRST_FETCH_LIMIT: Duration = Duration::from_secs(5);

/// The provider the S3 client is built with, its first keys already fetched.
pub(super) fn credentials_provider(
    source: &S3Credentials,
    runtime: &tokio::runtime::Runtime,
) -> Result<SharedCredentialsProvider, StorageError> {
    match source {
        S3Credentials::Keys(credentials) => Ok(SharedCredentialsProvider::new(credentials.clone())),
        S3Credentials::Profile(name) => {
            let keys = SharedFiles::locate(|name| std::env::var_os(name))
                .and_then(|files| read_profile(name, &files))
                .map_err(|message| credentials_error("get S3 credentials".to_owned(), message))?;
            Ok(SharedCredentialsProvider::new(Credentials::new(
                keys.access_key_id,
                keys.secret_access_key,
                keys.session_token,
                None,
                "AWS shared credentials profile",
            )))
        }
        S3Credentials::InstanceMetadata => instance_metadata_provider(runtime),
    }
}

/// A source that gave no keys: not retried, the command fails with this line.
fn credentials_error(doing: String, message: String) -> StorageError {
    StorageError::Io {
        doing,
        source: io::Error::other(message),
    }
}

/// The instance's role credentials from IMDSv2, refreshed by the SDK before they expire.
fn instance_metadata_provider(
    runtime: &tokio::runtime::Runtime,
) -> Result<SharedCredentialsProvider, StorageError> {
    let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .ok()
        .filter(|endpoint| !endpoint.is_empty())
        .unwrap_or_else(|| METADATA_SERVICE.to_owned());
    let doing = format!("get S3 credentials from the EC2 instance metadata service at {endpoint}");
    let client = aws_config::imds::Client::builder()
        .endpoint(&endpoint)
        .map_err(|e| {
            credentials_error(
                doing.clone(),
                format!(
                    "{}; fix AWS_EC2_METADATA_SERVICE_ENDPOINT",
                    error_chain(e.as_ref())
                ),
            )
        })?
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .max_attempts(2)
        .build();
    let provider = ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build();
    let hint = "credentials = \"instance\" needs an EC2 instance with an IAM role (elsewhere give keys or a profile)";
    let first = runtime.block_on(async {
        tokio::time::timeout(FIRST_FETCH_LIMIT, provider.provide_credentials()).await
    });
    match first {
        Ok(Ok(credentials)) => Ok(SharedCredentialsProvider::new(FetchedFirst {
            first: Mutex::new(Some(credentials)),
            source: provider,
        })),
        // The error's own text is the SDK's category ("the credential provider was not
        // enabled"); its causes say what happened.
        Ok(Err(e)) => Err(credentials_error(
            doing,
            format!("{}; {hint}", error_chain(e.source().unwrap_or(&e))),
        )),
        Err(_) => Err(credentials_error(
            doing,
            format!("no answer in {} s; {hint}", FIRST_FETCH_LIMIT.as_secs()),
        )),
    }
}

/// Hands the SDK the keys fetched at start-up, then asks the source again whenever the SDK's
/// cache finds them about to expire: one fetch per process, not one to check and one to use.
#[derive(Debug)]
struct FetchedFirst {
    first: Mutex<Option<Credentials>>,
    source: ImdsCredentialsProvider,
}

impl ProvideCredentials for FetchedFirst {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let first = self
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match first {
            Some(credentials) => future::ProvideCredentials::ready(Ok(credentials)),
            None => self.source.provide_credentials(),
        }
    }
}
