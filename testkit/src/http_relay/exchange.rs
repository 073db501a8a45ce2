//! One relayed connection, start to end: the client's request head read and counted; its
//! fault, if it gets one; otherwise the request passed to the server with `Connection: close`
//! and its body piped on as it comes, and the server's response passed back to its end (or
//! cut short, for a truncation fault).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use super::Shared;
use super::faults::{FaultKind, internal_error_response};
use super::head::{self, ReadHead};
use super::request_kind::classify;

/// The longest any read, write or connect of the relay waits.
const PATIENCE: Duration = Duration::from_secs(30);

/// Relays connection `id` from `client` to `server` until its exchange is over; then closes
/// both ends. Failures of either end just end it: the other end sees its connection closed.
pub(super) fn relay(id: u64, client: TcpStream, server: SocketAddr, shared: &Shared) {
    if shared.track(id, &client) {
        let _ = exchange(id, &client, server, shared);
    }
    let _ = client.shutdown(Shutdown::Both);
    shared.forget(id);
}

fn exchange(id: u64, client: &TcpStream, server: SocketAddr, shared: &Shared) -> io::Result<()> {
    client.set_nonblocking(false)?;
    set_patience(client)?;
    let Some(request) = head::read_head(&mut &*client, Vec::new())? else {
        return Ok(());
    };
    let (method, target) = head::method_and_target(&request.head);
    let fault = shared.arrived(&classify(&method, &target));
    match fault {
        Some(FaultKind::CloseWithoutResponse) => {
            shared.injected(FaultKind::CloseWithoutResponse);
            return Ok(());
        }
        Some(FaultKind::InternalError) => {
            shared.injected(FaultKind::InternalError);
            return (&*client).write_all(&internal_error_response());
        }
        Some(FaultKind::TruncatedBody) | None => {}
    }
    let upstream = TcpStream::connect_timeout(&server, PATIENCE)?;
    set_patience(&upstream)?;
    if !shared.track(id, &upstream) {
        return Ok(());
    }
    forward(request, client, &upstream, fault.is_some(), shared)
}

/// Sends the request on to the server and its answer back; with `truncate`, cuts the answer's
/// body short.
fn forward(
    request: ReadHead,
    client: &TcpStream,
    upstream: &TcpStream,
    truncate: bool,
    shared: &Shared,
) -> io::Result<()> {
    let mut to_server = upstream;
    to_server.write_all(&head::with_connection_close(&request.head))?;
    to_server.write_all(&request.past)?;
    std::thread::scope(|scope| {
        // The rest of the request's body, as the client sends it. With `Connection: close`
        // the server ends the exchange once it has answered; the client's side is shut down
        // then, which ends this copy too.
        scope.spawn(|| pipe(&mut &*client, &mut &*upstream, None));
        let answered = answer(upstream, client, truncate, shared);
        // Both ends, so a copy blocked writing to a server that no longer reads ends too.
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        answered
    })
}

/// Passes the server's response to the client: interim (1xx) heads as they are, the final
/// head with `Connection: close`, and its body to the server's end of the connection, or,
/// with `truncate`, half of it.
fn answer(
    upstream: &TcpStream,
    client: &TcpStream,
    truncate: bool,
    shared: &Shared,
) -> io::Result<()> {
    let (mut from, mut to) = (upstream, client);
    let mut read = Vec::new();
    loop {
        let Some(response) = head::read_head(&mut from, read)? else {
            // The server closed without answering: so does the relay.
            return Ok(());
        };
        let status = head::status(&response.head);
        if (100..200).contains(&status) && status != 101 {
            to.write_all(&response.head)?;
            read = response.past;
            continue;
        }
        if truncate {
            return truncated(response, from, to, shared);
        }
        to.write_all(&head::with_connection_close(&response.head))?;
        to.write_all(&response.past)?;
        return pipe(&mut from, &mut to, None).map(|_| ());
    }
}

/// Passes the response's head and the first half of its body (at least one byte short of its
/// `Content-Length`), then stops. A response without a body to cut is not passed at all.
fn truncated(
    response: ReadHead,
    mut from: &TcpStream,
    mut to: &TcpStream,
    shared: &Shared,
) -> io::Result<()> {
    let length = head::header(&response.head, "content-length").and_then(|v| v.parse().ok());
    let Some(length) = length.filter(|&length: &u64| length > 0) else {
        shared.injected(FaultKind::CloseWithoutResponse);
        return Ok(());
    };
    shared.injected(FaultKind::TruncatedBody);
    let keep = length / 2;
    to.write_all(&head::with_connection_close(&response.head))?;
    let from_past = response.past.len().min(keep as usize);
    to.write_all(&response.past[..from_past])?;
    pipe(&mut from, &mut to, Some(keep - from_past as u64)).map(|_| ())
}

/// Copies from `from` to `to` until `from` ends or, with a `limit`, that many bytes have
/// passed; returns how many did.
fn pipe(from: &mut impl Read, to: &mut impl Write, limit: Option<u64>) -> io::Result<u64> {
    let mut buffer = vec![0u8; 64 << 10];
    let mut passed = 0u64;
    loop {
        let room = match limit {
            Some(limit) if passed >= limit => return Ok(passed),
            Some(limit) => buffer.len().min((limit - passed) as usize),
            None => buffer.len(),
        };
        let n = from.read(&mut buffer[..room])?;
        if n == 0 {
            return Ok(passed);
        }
        to.write_all(&buffer[..n])?;
        passed += n as u64;
    }
}

fn set_patience(socket: &TcpStream) -> io::Result<()> {
    socket.set_read_timeout(Some(PATIENCE))?;
    socket.set_write_timeout(Some(PATIENCE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limited_pipe_passes_exactly_its_limit() {
        let source = vec![7u8; 200_000];
        for limit in [0, 1, 65_536, 100_000, 200_000, 300_000] {
            let mut out = Vec::new();
            let passed = pipe(&mut &source[..], &mut out, Some(limit)).unwrap();
            let expected = limit.min(200_000);
            assert_eq!((passed, out.len() as u64), (expected, expected));
        }
        let mut out = Vec::new();
        assert_eq!(pipe(&mut &source[..], &mut out, None).unwrap(), 200_000);
    }
}
