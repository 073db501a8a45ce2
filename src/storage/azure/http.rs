//! Sending a request to the Blob service: its URL under the endpoint, the headers every request
//! carries, its authorization (a Shared Key signature, the SAS token, or a managed identity's
//! token), and bounded retries — on throttling, 5xx answers, timeouts and resets, with
//! exponential backoff and jitter, each retry a WARN line — so that what reaches the caller is an
//! answer, a refusal, or no answer after every attempt.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::Full;
use hyper::body::Incoming;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

use super::errors::Refusal;
use super::identity::ManagedIdentity;
use super::signing::{self, SignedParts};
use super::transport::{Transport, read_body};

/// The REST API version asked for: Put Blob of up to 5000 MiB, `x-ms-content-crc64`, and one
/// Azurite 3.x accepts.
const API_VERSION: &str = "2021-12-02";

/// Attempts of one request, the first included, before its failure is the caller's.
pub(super) const MAX_ATTEMPTS: u32 = 5;

/// The wait before the second attempt; it doubles for each further one, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// A body is allowed at least this rate on top of the request timeout before an attempt is
/// given up on: a 32 MiB block gets 20 s + 32 s.
const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 1 << 20;

/// How an error answer's body is read: they are small, and a stalled one is no answer.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a query value may hold unencoded (RFC 3986's unreserved characters).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How requests are authorized.
pub(super) enum Access {
    /// Signed with the account key.
    AccountKey(Zeroizing<Vec<u8>>),
    /// The SAS token appended to the URL's query.
    Sas(Zeroizing<String>),
    /// A bearer token of the machine's managed identity.
    Identity(ManagedIdentity),
}

/// A client of one storage account's Blob service.
pub(super) struct BlobClient {
    pub transport: Transport,
    pub access: Access,
    pub account: String,
    /// `http(s)://host[:port][/path]`, no trailing `/`.
    pub endpoint: String,
    /// The endpoint's path (`/devstoreaccount1` on Azurite; empty on Azure), which the
    /// signature's resource includes.
    pub endpoint_path: String,
    /// How long an attempt may wait for the answer's head, besides the body's upload time.
    pub request_timeout: Duration,
}

/// One request, as the operations describe it.
pub(super) struct Call<'a> {
    pub method: Method,
    /// `/container` or `/container/blob`, below the endpoint; only characters URLs take as
    /// they are.
    pub path: String,
    /// Names and values, not encoded.
    pub query: Vec<(&'static str, String)>,
    /// Headers besides those every request carries.
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// What the request is ("put container/a/b"), for retry lines.
    pub doing: &'a str,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: String, doing: &'a str) -> Call<'a> {
        Call {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
            doing,
        }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Call<'a> {
        self.query.push((name, value.into()));
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Call<'a> {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Bytes) -> Call<'a> {
        self.body = body;
        self
    }
}

/// A success: the status, headers and the body still to read.
pub(super) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Incoming,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a request did not succeed, after its retries.
#[derive(Debug)]
pub(super) enum Failure {
    /// The service answered with an error.
    Refused(Refusal),
    /// No answer, or one that broke off.
    NoAnswer(String),
    /// No token from the managed identity (what was asked, and why not).
    NoToken(String),
}

impl BlobClient {
    /// Sends `call`, trying again (a bounded number of times) while it fails in a way that may
    /// pass.
    pub async fn send(&self, call: &Call<'_>) -> Result<Answer, Failure> {
        let timeout = self.request_timeout
            + Duration::from_secs(call.body.len() as u64 / SLOWEST_UPLOAD_BYTES_PER_SEC);
        let mut attempt = 1;
        loop {
            let request = self.request(call).await?;
            let failure = match self.transport.exchange(request, timeout).await {
                Ok(response) if response.status().is_success() => {
                    let (parts, body) = response.into_parts();
                    return Ok(Answer {
                        status: parts.status.as_u16(),
                        headers: parts.headers,
                        body,
                    });
                }
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let code = parts
                        .headers
                        .get("x-ms-error-code")
                        .and_then(|v| v.to_str().ok());
                    let body = read_body(body, ERROR_BODY_TIMEOUT)
                        .await
                        .unwrap_or_default();
                    let refusal = Refusal::new(parts.status.as_u16(), code, &body);
                    if !refusal.is_retryable() {
                        return Err(Failure::Refused(refusal));
                    }
                    Failure::Refused(refusal)
                }
                Err(reason) => Failure::NoAnswer(reason),
            };
            if attempt == MAX_ATTEMPTS {
                return Err(failure);
            }
            attempt += 1;
            let reason = match &failure {
                Failure::Refused(refusal) => format!(
                    "HTTP {} {}",
                    refusal.status,
                    refusal.code.as_deref().unwrap_or("")
                ),
                Failure::NoAnswer(reason) | Failure::NoToken(reason) => reason.clone(),
            };
            tracing::warn!(
                "{} on Azure failed; trying again, attempt {attempt} of {MAX_ATTEMPTS} ({})",
                call.doing,
                reason.trim_end()
            );
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// The HTTP request for one attempt of `call`: dated, versioned and authorized now.
    async fn request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, Failure> {
        let mut headers = HeaderMap::new();
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        insert(&mut headers, "x-ms-date", &date);
        insert(&mut headers, "x-ms-version", API_VERSION);
        if call.method == Method::PUT || call.method == Method::POST {
            insert(&mut headers, "content-length", &call.body.len().to_string());
        }
        for (name, value) in &call.headers {
            insert(&mut headers, name, value);
        }
        let path = format!("{}{}", self.endpoint_path, call.path);
        let mut query: Vec<String> = call
            .query
            .iter()
            .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
            .collect();
        match &self.access {
            Access::AccountKey(key) => {
                let parts = SignedParts {
                    method: &call.method,
                    path: &path,
                    query: &call.query,
                    headers: &headers,
                };
                let signed = signing::authorization(&self.account, key, &parts);
                insert(&mut headers, "authorization", &signed);
            }
            Access::Sas(token) => query.push(token.to_string()),
            Access::Identity(identity) => {
                let token = identity.token(&self.transport).await.map_err(|reason| {
                    Failure::NoToken(format!("{}: {reason}", identity.doing()))
                })?;
                insert(&mut headers, "authorization", &format!("Bearer {}", *token));
            }
        }
        let mut url = format!("{}{}", self.endpoint, call.path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let mut request = http::Request::builder()
            .method(call.method.clone())
            .uri(&url);
        if let Some(all) = request.headers_mut() {
            *all = headers;
        }
        request
            .body(Full::new(call.body.clone()))
            .map_err(|e| Failure::NoAnswer(format!("cannot make a request of {url}: {e}")))
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The wait before `attempt` (2 or more): doubling from [`FIRST_BACKOFF`], capped, then a
/// random half of it taken off, so that writers failing together do not come back together.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(1 << (attempt - 2).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        for _ in 0..100 {
            let second = backoff(2);
            assert!(second >= FIRST_BACKOFF / 2 && second <= FIRST_BACKOFF);
            assert!(backoff(5) <= FIRST_BACKOFF * 8);
            assert!(backoff(30) <= MAX_BACKOFF);
        }
    }
}
