//! What a refused or failed Blob service request means for the caller: the [`StorageError`] it
//! becomes, retryable or not, in one line that says what to check. Imports only `xml.rs`.

use std::io;

use super::xml;
use crate::storage::StorageError;

/// An answer that was not a success: its status, and the service's error code and message
/// (from the `x-ms-error-code` header, or the XML body where there is one).
#[derive(Clone, Debug)]
pub(super) struct Refusal {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
}

impl Refusal {
    /// Reads the refusal from a status, the `x-ms-error-code` header and the body.
    pub fn new(status: u16, code_header: Option<&str>, body: &[u8]) -> Refusal {
        let body = String::from_utf8_lossy(body);
        let code = code_header
            .map(str::to_owned)
            .or_else(|| xml::element(&body, "Code"));
        // Azure's messages go on with "\nRequestId:…\nTime:…": the first line says it.
        let message = xml::element(&body, "Message")
            .and_then(|m| m.lines().next().map(str::to_owned))
            .filter(|m| !m.is_empty());
        Refusal {
            status,
            code,
            message,
        }
    }

    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// "Code: message", or whichever of them the answer had, else the status.
    fn detail(&self) -> String {
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(text), None) | (None, Some(text)) => text.clone(),
            (None, None) => "no reason given".to_owned(),
        }
    }

    /// Whether the service did not accept the key or token at all: Azure says
    /// AuthenticationFailed; Azurite says AuthorizationFailure, with the same message.
    fn is_authentication_failure(&self) -> bool {
        self.code_is("AuthenticationFailed")
            || self
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("Server failed to authenticate the request"))
    }

    /// Whether trying the same request again may get another answer.
    pub fn is_retryable(&self) -> bool {
        matches!(self.status, 408 | 429 | 500 | 502 | 503 | 504)
    }
}

/// Where the requests go, for the messages: `[repo] container` at `endpoint`.
pub(super) struct Place<'a> {
    pub container: &'a str,
    pub endpoint: &'a str,
}

/// What a refusal means for the caller.
pub(super) fn classify(doing: String, refusal: &Refusal, place: &Place<'_>) -> StorageError {
    let detail = refusal.detail();
    let io = |kind, text: String| StorageError::Io {
        doing: doing.clone(),
        source: io::Error::new(kind, text),
    };
    match refusal.status {
        403 if refusal.is_authentication_failure() => io(
            io::ErrorKind::PermissionDenied,
            format!(
                "the key or token was not accepted ({detail}); check [repo] account and its key (account_key_file or AZURE_STORAGE_KEY), or that the SAS token in sas_token_file is whole and not expired"
            ),
        ),
        401 | 403 => io(
            io::ErrorKind::PermissionDenied,
            format!(
                "access denied ({detail}); the key, SAS token or identity must be allowed to read, add, create, write, delete and list blobs in container '{}'",
                place.container
            ),
        ),
        404 if refusal.code_is("ContainerNotFound") => {
            io(io::ErrorKind::NotFound, no_container(place))
        }
        404 => io(
            io::ErrorKind::NotFound,
            format!("{detail}; check [repo] account, container and endpoint"),
        ),
        status if refusal.is_retryable() => StorageError::Transient {
            doing,
            reason: format!("HTTP {status}: {detail}"),
        },
        status => io(io::ErrorKind::Other, format!("HTTP {status}: {detail}")),
    }
}

/// The line for a container that is not there.
pub(super) fn no_container(place: &Place<'_>) -> String {
    format!(
        "no container '{}' at {}; create it (az storage container create --name {}), or fix [repo] container, account and endpoint",
        place.container, place.endpoint, place.container
    )
}

/// A request that got no answer, after its retries: the endpoint is wrong, down or slow.
pub(super) fn no_answer(doing: String, cause: &str) -> StorageError {
    StorageError::Transient {
        doing,
        reason: format!(
            "cannot reach the endpoint ({cause}); check [repo] endpoint and account, and that the service runs"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLACE: Place<'static> = Place {
        container: "pg",
        endpoint: "http://127.0.0.1:10000/devstoreaccount1",
    };

    #[test]
    fn refusals_say_what_to_check() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1\nTime:2</Message></Error>";
        let denied = classify("put a".into(), &Refusal::new(403, None, body), &PLACE);
        assert!(denied.is_permission_denied() && !denied.is_retryable());
        assert_eq!(
            denied.to_string(),
            "put a: the key or token was not accepted (AuthenticationFailed: Server failed to authenticate the request.); check [repo] account and its key (account_key_file or AZURE_STORAGE_KEY), or that the SAS token in sas_token_file is whole and not expired"
        );
        // Azurite's code for a request signed with another key.
        let azurite = b"<Error><Code>AuthorizationFailure</Code><Message>Server failed to authenticate the request. Make sure the value of the Authorization header is formed correctly including the signature.</Message></Error>";
        let denied = classify("put a".into(), &Refusal::new(403, None, azurite), &PLACE);
        assert!(
            denied
                .to_string()
                .contains("the key or token was not accepted"),
            "{denied}"
        );
        let forbidden = b"<Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.</Message></Error>";
        let denied = classify("put a".into(), &Refusal::new(403, None, forbidden), &PLACE);
        assert!(
            denied
                .to_string()
                .contains("access denied (AuthorizationPermissionMismatch: "),
            "{denied}"
        );
        let missing = classify(
            "list a".into(),
            &Refusal::new(404, Some("ContainerNotFound"), b""),
            &PLACE,
        );
        assert!(
            !missing.is_not_found(),
            "a missing container is no missing object"
        );
        assert!(
            missing.to_string().contains(
                "no container 'pg' at http://127.0.0.1:10000/devstoreaccount1; create it"
            )
        );
        let busy = classify(
            "get a".into(),
            &Refusal::new(503, Some("ServerBusy"), b""),
            &PLACE,
        );
        assert!(busy.is_retryable(), "{busy}");
        let bad = classify("put a".into(), &Refusal::new(400, None, b""), &PLACE);
        assert_eq!(bad.to_string(), "put a: HTTP 400: no reason given");
        assert!(!bad.is_retryable());
    }
}
