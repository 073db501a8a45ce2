//! What a failed S3 request means for the caller: its HTTP status, whether it says the bucket is
//! missing, and the [`StorageError`] it becomes (retryable or not, with a line that says what to
//! check). Used by every file that sends requests; imports nothing else of `s3/`.

use std::io;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::storage::{StorageError, error_chain};

/// The HTTP status of a failed request, when it got an answer.
pub fn status_of<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    match error {
        SdkError::ServiceError(service) => Some(service.raw().status().as_u16()),
        SdkError::ResponseError(response) => Some(response.raw().status().as_u16()),
        _ => None,
    }
}

/// Whether a 404 says the bucket, not the object, is missing. (A HEAD answer has no body to
/// say it; a missing bucket then looks like a missing object, and the next GET or PUT tells.)
pub fn no_such_bucket<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    matches!(error, SdkError::ServiceError(service) if service.err().code() == Some("NoSuchBucket"))
}

/// What a failed request of the repository's store means for the caller.
pub fn classify<E>(doing: String, error: &SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    classify_in("repo", doing, error)
}

/// What a failed request means for the caller, whose settings are in `[section]`.
pub fn classify_in<E>(
    section: &str,
    doing: String,
    error: &SdkError<E, HttpResponse>,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = status_of(error);
    let detail = match error {
        SdkError::ServiceError(service) => {
            // A HEAD answer has no body, so neither code nor message; the status says it all.
            let e = service.err();
            match (e.message(), e.code()) {
                (Some(message), Some(code)) => format!("{message} ({code})"),
                (Some(text), None) | (None, Some(text)) => text.to_owned(),
                (None, None) => format!("HTTP {}", service.raw().status().as_u16()),
            }
        }
        SdkError::TimeoutError(_) => "the request timed out".to_owned(),
        SdkError::DispatchFailure(failure) => {
            let cause = failure
                .as_connector_error()
                .map(|e| error_chain(e))
                .unwrap_or_else(|| "no answer".to_owned());
            format!(
                "cannot reach the endpoint ({cause}); check [{section}] endpoint and that the server runs"
            )
        }
        other => format!("{other}"),
    };
    match status {
        Some(403) => StorageError::Io {
            doing,
            source: io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("access denied: {detail}; check the keys and the bucket's policy"),
            ),
        },
        Some(404) => StorageError::Io {
            doing,
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("{detail}; check [{section}] bucket and endpoint"),
            ),
        },
        Some(status) if status == 409 || status == 429 || status >= 500 => {
            StorageError::Transient {
                doing,
                reason: format!("HTTP {status}: {detail}"),
            }
        }
        Some(status) => StorageError::Io {
            doing,
            source: io::Error::other(format!("HTTP {status}: {detail}")),
        },
        None => StorageError::Transient {
            doing,
            reason: detail,
        },
    }
}
