//! The S3 client's HTTP transport: hyper's pooled HTTP/1.1 client over rustls (the store's
//! TLS configuration, `storage::tls`), in place of the SDK's own, for one difference: after every read from a
//! connection it asks the kernel to acknowledge what arrived at once (`TCP_QUICKACK`).
//!
//! Why: on a kept-alive connection Linux delays the acknowledgement of a response's first
//! segment (up to 40 ms) in the hope of sending it with the next request. A server that does
//! not set `TCP_NODELAY` (s3s-fs; hyper-based servers by default) sends a GET's headers, then
//! holds back the body's last, partial segment until those headers are acknowledged (Nagle),
//! so every object smaller than a segment took 40 ms however fast the server was. Set after
//! each read, the flag sends that acknowledgement now; a server that sets `TCP_NODELAY` (AWS,
//! MinIO) sees no change but one extra system call per read.
//!
//! Failures map to the SDK's classes as its own client maps them, so its retries are the same:
//! a connection that could not be made, was closed or reset, or an answer cut short is worth
//! retrying; anything else is not.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::primitives::SdkBody;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::retry::ErrorKind;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector as TcpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

/// How long connecting may take when the SDK's settings name no bound.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The SDK's HTTP client: one pooled transport, made on first use with the SDK's connect
/// timeout and shared by every request after.
pub fn http_client(tls: rustls::ClientConfig) -> SharedHttpClient {
    let transport = OnceLock::new();
    http_client_fn(move |settings, _components| {
        transport
            .get_or_init(|| SharedHttpConnector::new(Transport::new(tls.clone(), settings)))
            .clone()
    })
}

/// hyper's client over connections that acknowledge at once.
#[derive(Clone)]
struct Transport {
    client: Client<HttpsConnector<QuickAckConnector>, SdkBody>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport (hyper, TCP_QUICKACK)")
    }
}

impl Transport {
    fn new(tls: rustls::ClientConfig, settings: &HttpConnectorSettings) -> Transport {
        let mut tcp = TcpConnector::new();
        tcp.set_connect_timeout(Some(
            settings
                .connect_timeout()
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        ));
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(QuickAckConnector { tcp });
        let mut builder = Client::builder(TokioExecutor::new());
        // Without a timer the pool never closes an idle connection.
        builder.pool_timer(TokioTimer::new());
        Transport {
            client: builder.build(connector),
        }
    }
}

impl HttpConnector for Transport {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let answer = self.client.request(request);
        HttpConnectorFuture::new(async move {
            match answer.await {
                Ok(response) => Response::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

/// The SDK's class of a request that got no answer, as its own client would give it.
fn classify(failure: hyper_util::client::legacy::Error) -> ConnectorError {
    if failure.is_connect() {
        return ConnectorError::io(failure.into());
    }
    let kind = match first_in_chain::<hyper::Error>(&failure) {
        Some(e) if e.is_timeout() => Class::Timeout,
        Some(e) if e.is_user() => Class::User,
        Some(e) if e.is_closed() || e.is_canceled() => Class::Io,
        Some(e) if e.is_incomplete_message() => Class::Transient,
        _ if first_in_chain::<std::io::Error>(&failure).is_some() => Class::Io,
        _ => Class::Other,
    };
    let failure = failure.into();
    match kind {
        Class::Timeout => ConnectorError::timeout(failure),
        Class::User => ConnectorError::user(failure),
        Class::Io => ConnectorError::io(failure),
        Class::Transient => ConnectorError::other(failure, Some(ErrorKind::TransientError)),
        Class::Other => ConnectorError::other(failure, None),
    }
}

enum Class {
    Timeout,
    User,
    Io,
    Transient,
    Other,
}

/// The first error of type `E` in `error`'s chain of sources, itself included.
fn first_in_chain<'e, E: Error + 'static>(error: &'e (dyn Error + 'static)) -> Option<&'e E> {
    std::iter::successors(Some(error), |&e| e.source()).find_map(|e| e.downcast_ref::<E>())
}

/// hyper's TCP connector, its connections wrapped in [`QuickAck`].
#[derive(Clone)]
struct QuickAckConnector {
    tcp: TcpConnector,
}

type Connecting = Pin<Box<dyn Future<Output = Result<QuickAck, ConnectFailure>> + Send>>;
type ConnectFailure = Box<dyn Error + Send + Sync>;

impl tower_service::Service<Uri> for QuickAckConnector {
    type Response = QuickAck;
    type Error = ConnectFailure;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.tcp.call(uri);
        Box::pin(async move {
            let stream = connecting.await?;
            Ok(QuickAck { stream })
        })
    }
}

/// A TCP connection that acknowledges what it received as soon as it is read.
struct QuickAck {
    stream: TokioIo<TcpStream>,
}

impl Connection for QuickAck {
    fn connected(&self) -> Connected {
        self.stream.connected()
    }
}

impl Read for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if polled.is_ready() {
            // The kernel clears the flag as it goes back to delaying; it is set again after
            // every read. A failure only means acknowledgements may be delayed, as before.
            let _ = rustix::net::sockopt::set_tcp_quickack(self.stream.inner(), true);
        }
        polled
    }
}

impl Write for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
}
