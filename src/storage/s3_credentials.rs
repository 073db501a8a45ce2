//! Where the S3 client's keys come from: given outright, or a named profile of the AWS shared
//! files. Only the one source named is consulted; nothing is probed. Keys are read when the store
//! is built, so a source that cannot give them fails the command at once with one line, not at
//! its first request as a "cannot reach" error.

use std::fmt;
use std::io;

use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};

use super::StorageError;
use super::aws_profile::{SharedFiles, read_profile};

/// The one source of an S3 store's keys.
#[derive(Clone)]
pub enum S3Credentials {
    /// Keys given outright, from the configuration file or the environment.
    Keys(Credentials),
    /// A named profile of the AWS shared credentials and config files.
    Profile(String),
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
        }
    }
}

/// The provider the S3 client is built with, its keys already read.
pub(super) fn credentials_provider(
    source: &S3Credentials,
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
    }
}

/// A source that gave no keys: not retried, the command fails with this line.
fn credentials_error(doing: String, message: String) -> StorageError {
    StorageError::Io {
        doing,
        source: io::Error::other(message),
    }
}
