//! One HTTP exchange with the Blob service (or the instance metadata service): hyper's pooled
//! client over TLS with the system's roots (aws-lc-rs, as everything else), a bounded wait to
//! connect and for the answer's head. Retries and authorization are `http.rs`'s.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::storage::error_chain;

/// How long connecting may take: a host that does not answer fails the attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled HTTP/1.1 client, for `http://` and `https://` URLs.
pub(super) struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Transport {
    /// A client trusting the system's root certificates; `tls` is false for an endpoint that
    /// is `http://` (Azurite), which then needs none.
    pub fn new(tls: bool) -> Result<Transport, String> {
        let config = crate::storage::tls::client_config(tls)?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Transport {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends `request`; the answer once its head is in, within `timeout`. The error is the
    /// reason there was no answer, on one line.
    pub async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<http::Response<Incoming>, String> {
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        }
    }
}

/// Reads a whole (small) body: an error answer's or a listing's, within `timeout`.
pub(super) async fn read_body(body: Incoming, timeout: Duration) -> Result<Bytes, String> {
    use http_body_util::BodyExt;
    match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(format!("the answer broke off: {}", error_chain(&e))),
        Err(_) => Err(format!("the answer stalled for {} s", timeout.as_secs())),
    }
}
