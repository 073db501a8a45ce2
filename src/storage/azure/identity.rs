//! Tokens for a managed identity: asked of the Azure instance metadata service (IMDS) on the
//! machine, kept, and asked again five minutes before they expire. Only the service named is
//! asked; `AZURE_POD_IDENTITY_AUTHORITY_HOST` (the Azure SDKs' variable) points elsewhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use zeroize::Zeroizing;

use super::transport::{Transport, read_body};

/// Where the instance metadata service is when `AZURE_POD_IDENTITY_AUTHORITY_HOST` does not say.
const METADATA_SERVICE: &str = "http://169.254.169.254";

/// What the tokens are for: Azure Storage.
const RESOURCE: &str = "https%3A%2F%2Fstorage.azure.com%2F";

/// How long one ask may take. On Azure the service answers in milliseconds; elsewhere nothing
/// may answer at all, and a command must fail, not hang.
pub(super) const ASK_LIMIT: Duration = Duration::from_secs(5);

/// A token is asked again when less than this is left of it.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The machine's managed identity, and its latest token.
pub(super) struct ManagedIdentity {
    endpoint: String,
    client_id: Option<String>,
    token: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: Zeroizing<String>,
    expires: SystemTime,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Seconds since the epoch, as a string.
    expires_on: String,
}

impl ManagedIdentity {
    pub fn new(client_id: Option<String>) -> ManagedIdentity {
        let endpoint = std::env::var("AZURE_POD_IDENTITY_AUTHORITY_HOST")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| METADATA_SERVICE.to_owned());
        ManagedIdentity {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            client_id,
            token: tokio::sync::Mutex::new(None),
        }
    }

    /// What asking for a token is, for messages.
    pub fn doing(&self) -> String {
        format!(
            "get an Azure Storage token from the instance metadata service at {}",
            self.endpoint
        )
    }

    /// A token that is good for five minutes at least.
    pub async fn token(&self, transport: &Transport) -> Result<Zeroizing<String>, String> {
        let mut held = self.token.lock().await;
        let fresh = held.as_ref().is_some_and(|token| {
            token
                .expires
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > REFRESH_MARGIN)
        });
        if !fresh {
            *held = Some(self.ask(transport).await?);
        }
        Ok(held.as_ref().expect("set above").value.clone())
    }

    async fn ask(&self, transport: &Transport) -> Result<Token, String> {
        let mut url = format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={RESOURCE}",
            self.endpoint
        );
        if let Some(id) = &self.client_id {
            url.push_str(&format!("&client_id={id}"));
        }
        let request = http::Request::get(&url)
            .header("metadata", "true")
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("{e}; fix AZURE_POD_IDENTITY_AUTHORITY_HOST"))?;
        let answer = transport.exchange(request, ASK_LIMIT).await?;
        let status = answer.status();
        let body = read_body(answer.into_body(), ASK_LIMIT).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!(
                "HTTP {}: {}",
                status.as_u16(),
                text.lines().next().unwrap_or("")
            ));
        }
        parse_token(&body)
    }
}

fn parse_token(body: &[u8]) -> Result<Token, String> {
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not a token ({e})"))?;
    let seconds: u64 = answer.expires_on.parse().map_err(|_| {
        format!(
            "the token's expires_on '{}' is not a time",
            answer.expires_on
        )
    })?;
    Ok(Token {
        value: Zeroizing::new(answer.access_token),
        expires: UNIX_EPOCH + Duration::from_secs(seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_answer_is_read_as_imds_writes_it() {
        let token = parse_token(
            br#"{"access_token":"eyJ0","client_id":"c","expires_in":"86399","expires_on":"1700000000","resource":"https://storage.azure.com/","token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(token.value.as_str(), "eyJ0");
        assert_eq!(
            token.expires,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert!(
            parse_token(b"{}")
                .err()
                .unwrap()
                .starts_with("the answer is not a token")
        );
    }
}
