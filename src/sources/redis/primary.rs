//! A replication primary for one replica, serving a stored snapshot (`source restore --into`):
//! it accepts the target's connection, answers its handshake as a Redis primary does, sends
//! the RDB as a full resynchronisation, and keeps the link alive until told to stop.
//!
//! What a Redis replica sends (replication.c `syncWithMaster`): `PING`, `AUTH` when it has a
//! `masterauth` (any password is accepted: the target trusts us, not we it), `REPLCONF …`
//! (listening-port, ip-address, capa), then `PSYNC <replid|?> <offset|-1>` (`SYNC` before 2.8).
//! The answer to `PSYNC` is `+FULLRESYNC <replid> <offset>`, then `$<len>\r\n` and exactly the
//! RDB's bytes, streamed from the reader and checked as they pass. Afterwards a primary sends
//! `PING` into the stream every few seconds and the replica answers `REPLCONF ACK`, which is read
//! and ignored. Every wait is bounded: the accept, each read and write of the handshake.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::readback::ReadBack;

/// How often the idle link carries a `PING`, as `repl-ping-replica-period` (10 s by default)
/// would, but sooner, well inside any `repl-timeout`.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(3);

/// How long one wait for the replica's bytes lasts once the snapshot is sent, so a stop
/// request is seen promptly.
const IDLE_READ: Duration = Duration::from_millis(250);

/// How often a listener with no connection yet is looked at again.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// The longest line or argument of a handshake command accepted from the replica.
const MAX_HANDSHAKE_ARG: usize = 64 * 1024;

/// How much of the snapshot is sent at a time.
const SEND_BUF: usize = 1 << 20;

/// What is served, and the bounds on serving it.
pub struct Offer {
    /// The RDB's length in bytes.
    pub len: u64,
    /// The RDB version its header must carry.
    pub rdb_version: u32,
    /// The replication offset announced with `+FULLRESYNC`.
    pub repl_offset: u64,
    /// How long to wait for the replica to connect.
    pub accept_timeout: Duration,
    /// How long one read or write of the handshake, or one write of the snapshot, may wait.
    pub io_timeout: Duration,
}

/// A listener a replica will be told to connect to.
pub struct Primary {
    listener: TcpListener,
}

impl Primary {
    /// Listens on `addr` (port 0: any free port).
    pub fn bind(addr: SocketAddr) -> anyhow::Result<Primary> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("listen on {addr} for the target's replication connection"))?;
        listener
            .set_nonblocking(true)
            .with_context(|| format!("set up the listener on {addr}"))?;
        Ok(Primary { listener })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("read the replication listener's address")
    }

    /// Serves `rdb` to the first replica that connects, on a thread of its own.
    pub fn serve(self, rdb: Box<dyn Read + Send>, offer: Offer) -> Serving {
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let handle = std::thread::Builder::new()
            .name("redis-primary".to_owned())
            .spawn(move || serve_one(&self.listener, rdb, &offer, &shared))
            .expect("start the replication primary's thread");
        Serving { handle, state }
    }
}

/// What the serving thread shares with whoever waits for it.
#[derive(Default)]
struct State {
    stop: AtomicBool,
    sent: AtomicU64,
    served: AtomicBool,
}

/// A primary serving its one replica.
pub struct Serving {
    handle: JoinHandle<anyhow::Result<()>>,
    state: Arc<State>,
}

impl Serving {
    /// Bytes of the snapshot sent so far.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::Relaxed)
    }

    /// Whether the whole snapshot was sent and passed its check.
    pub fn served(&self) -> bool {
        self.state.served.load(Ordering::Acquire)
    }

    /// Whether serving ended (it only ends by itself on an error).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Asks it to stop; a link the replica closes from now on is no error.
    pub fn request_stop(&self) {
        self.state.stop.store(true, Ordering::Release);
    }

    /// Stops it, waits for its thread (at most one idle read), and returns how serving went.
    pub fn stop(self) -> anyhow::Result<()> {
        self.request_stop();
        match self.handle.join() {
            Ok(result) => result,
            Err(_) => bail!("the replication primary's thread panicked"),
        }
    }
}

/// The serving thread: accept, handshake, send, keep alive.
fn serve_one(
    listener: &TcpListener,
    rdb: Box<dyn Read + Send>,
    offer: &Offer,
    state: &State,
) -> anyhow::Result<()> {
    let (stream, peer) = accept(listener, offer.accept_timeout, state)?;
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(offer.io_timeout)))
        .and_then(|()| stream.set_write_timeout(Some(offer.io_timeout)))
        .with_context(|| format!("set up the replication connection from {peer}"))?;
    let mut reader = BufReader::new(stream.try_clone().context("clone the replication socket")?);
    let mut writer = stream;
    handshake(&mut reader, &mut writer, offer)
        .with_context(|| format!("answer the replication handshake of {peer}"))?;
    send_snapshot(&mut writer, rdb, offer, state)
        .with_context(|| format!("send the snapshot to {peer}"))?;
    keep_alive(reader.get_mut(), &mut writer, state)
        .with_context(|| format!("keep the replication link to {peer}"))
}

/// Waits, bounded, for the replica's connection.
fn accept(
    listener: &TcpListener,
    timeout: Duration,
    state: &State,
) -> anyhow::Result<(TcpStream, SocketAddr)> {
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok(accepted) => return Ok(accepted),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("accept the target's replication connection"),
        }
        if state.stop.load(Ordering::Acquire) {
            bail!("stopped before the target connected");
        }
        if Instant::now() >= deadline {
            bail!(
                "the target did not connect within {}s: can it reach this host at the address \
                 it was given (--listen, --advertise)?",
                timeout.as_secs()
            );
        }
        std::thread::sleep(ACCEPT_POLL);
    }
}

/// Answers commands until `PSYNC` or `SYNC`, then announces the full resynchronisation.
fn handshake(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
    offer: &Offer,
) -> anyhow::Result<()> {
    loop {
        let command = read_command(reader)?;
        let name = command
            .first()
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_str() {
            "PING" => writer.write_all(b"+PONG\r\n")?,
            "AUTH" | "REPLCONF" => writer.write_all(b"+OK\r\n")?,
            "PSYNC" => {
                let line = format!("+FULLRESYNC {} {}\r\n", random_replid()?, offer.repl_offset);
                writer.write_all(line.as_bytes())?;
                break;
            }
            "SYNC" => break,
            _ => {
                let _ = writer.write_all(b"-ERR unexpected command during a restore\r\n");
                bail!(
                    "it sent {:?}, which a replica does not send before PSYNC: is the \
                     --into address a Redis server?",
                    command.join(" ").chars().take(80).collect::<String>()
                );
            }
        }
    }
    writer.write_all(format!("${}\r\n", offer.len).as_bytes())?;
    Ok(())
}

/// One command from the replica: a RESP array of bulk strings, or an inline line.
fn read_command(reader: &mut impl BufRead) -> anyhow::Result<Vec<String>> {
    let line = read_line(reader)?;
    let Some(count) = line.strip_prefix('*') else {
        return Ok(line.split_whitespace().map(str::to_owned).collect());
    };
    let count: usize = count
        .parse()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .with_context(|| format!("it sent a command header {line:?}"))?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let header = read_line(reader)?;
        let len: usize = header
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .filter(|n| *n <= MAX_HANDSHAKE_ARG)
            .with_context(|| format!("it sent an argument header {header:?}"))?;
        let mut arg = vec![0u8; len + 2];
        reader
            .read_exact(&mut arg)
            .context("read the replica's command")?;
        arg.truncate(len);
        args.push(String::from_utf8_lossy(&arg).into_owned());
    }
    Ok(args)
}

/// A `\r\n`-ended line, bounded.
fn read_line(reader: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let n = reader
        .take(MAX_HANDSHAKE_ARG as u64)
        .read_until(b'\n', &mut line)
        .context("read the replica's command")?;
    if n == 0 {
        bail!("it closed the connection during the handshake");
    }
    if line.last() != Some(&b'\n') {
        bail!("it sent a line longer than {MAX_HANDSHAKE_ARG} bytes");
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// 40 random hex digits, as a primary's replication ID.
fn random_replid() -> anyhow::Result<String> {
    let mut bytes = [0u8; 20];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())
        .context("draw a replication ID")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Streams exactly the snapshot, checked as it passes. Its last byte is held back until the
/// check has passed: a replica that loads from disk (the default `repl-diskless-load
/// disabled`) loads only a transfer it received whole, so a damaged snapshot ends as a broken
/// connection it retries rather than as a load that fails and makes the server exit
/// (`rdbReportError` → "Terminating server after rdb file reading failure").
fn send_snapshot(
    writer: &mut impl Write,
    rdb: Box<dyn Read + Send>,
    offer: &Offer,
    state: &State,
) -> anyhow::Result<()> {
    let mut reader = ReadBack::self_checked(rdb, offer.len, offer.rdb_version);
    let mut buf = vec![0u8; SEND_BUF];
    let mut last = None;
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("read the snapshot at byte {}", reader.done()))?;
        if n == 0 {
            break;
        }
        let now = if reader.done() == offer.len {
            last = Some(buf[n - 1]);
            n - 1
        } else {
            n
        };
        writer.write_all(&buf[..now])?;
        state.sent.fetch_add(now as u64, Ordering::Relaxed);
    }
    reader.finish()?;
    let last = last.context("the snapshot is empty")?;
    writer.write_all(&[last])?;
    writer.flush()?;
    state.sent.fetch_add(1, Ordering::Relaxed);
    state.served.store(true, Ordering::Release);
    Ok(())
}

/// Holds the link: `PING` every few seconds, the replica's acknowledgements read and dropped,
/// until asked to stop. The replica closing the link first is an error: it gave up the sync.
fn keep_alive(reader: &mut TcpStream, writer: &mut TcpStream, state: &State) -> anyhow::Result<()> {
    reader.set_read_timeout(Some(IDLE_READ))?;
    let mut last_ping = Instant::now();
    let mut buf = [0u8; 4096];
    while !state.stop.load(Ordering::Acquire) {
        match reader.read(&mut buf) {
            Ok(0) if state.stop.load(Ordering::Acquire) => break,
            Ok(0) => bail!(
                "the target closed the link after the snapshot was sent: its log says why \
                 (a load error, or its repl-timeout)"
            ),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) if state.stop.load(Ordering::Acquire) => break,
            Err(e) => return Err(e).context("read the target's acknowledgements"),
        }
        if last_ping.elapsed() >= KEEPALIVE_EVERY {
            writer
                .write_all(b"*1\r\n$4\r\nPING\r\n")
                .or_else(stopping(state))?;
            last_ping = Instant::now();
        }
    }
    Ok(())
}

/// A write error after a stop was asked for is the replica hanging up, as told to.
fn stopping(state: &State) -> impl Fn(io::Error) -> io::Result<()> + '_ {
    move |e| {
        if state.stop.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::readback::tests::sample_rdb;
    use super::*;

    fn offer(len: usize) -> Offer {
        Offer {
            len: len as u64,
            rdb_version: 10,
            repl_offset: 42,
            accept_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(10),
        }
    }

    /// Sends `commands` as a Redis 7 replica would, and returns everything read back up to
    /// the snapshot's end.
    fn replica(addr: SocketAddr, commands: &[&[&str]], expect: usize) -> (Vec<u8>, TcpStream) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for command in commands {
            let mut packed = format!("*{}\r\n", command.len());
            for arg in *command {
                packed.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            stream.write_all(packed.as_bytes()).unwrap();
        }
        let mut got = vec![0u8; expect];
        stream.read_exact(&mut got).unwrap();
        (got, stream)
    }

    #[test]
    fn a_replica_gets_the_handshake_answers_and_exactly_the_snapshot() {
        let rdb = sample_rdb(10);
        let primary = Primary::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = primary.local_addr().unwrap();
        let serving = primary.serve(Box::new(io::Cursor::new(rdb.clone())), offer(rdb.len()));
        let head = "+PONG\r\n+OK\r\n+OK\r\n+OK\r\n+FULLRESYNC ";
        let after_id = format!(" 42\r\n${}\r\n", rdb.len());
        let total = head.len() + 40 + after_id.len() + rdb.len();
        let (got, _link) = replica(
            addr,
            &[
                &["PING"],
                &["AUTH", "whatever"],
                &["REPLCONF", "listening-port", "6380"],
                &["REPLCONF", "capa", "eof", "capa", "psync2"],
                &["PSYNC", "?", "-1"],
            ],
            total,
        );
        assert_eq!(&got[..head.len()], head.as_bytes());
        let id = &got[head.len()..head.len() + 40];
        assert!(id.iter().all(u8::is_ascii_hexdigit), "{id:?}");
        let rest = &got[head.len() + 40..];
        assert_eq!(&rest[..after_id.len()], after_id.as_bytes());
        assert_eq!(&rest[after_id.len()..], &rdb[..]);
        while !serving.served() {
            assert!(
                !serving.is_finished(),
                "serving ended: {:?}",
                serving.stop().err()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(serving.sent(), rdb.len() as u64);
        serving.stop().unwrap();
    }

    #[test]
    fn the_link_carries_pings_and_a_replica_leaving_early_is_an_error() {
        let rdb = sample_rdb(10);
        let primary = Primary::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = primary.local_addr().unwrap();
        let serving = primary.serve(Box::new(io::Cursor::new(rdb.clone())), offer(rdb.len()));
        let bulk = format!("${}\r\n", rdb.len()).len() + rdb.len();
        let (_, mut link) = replica(addr, &[&["SYNC"]], bulk);
        link.write_all(b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n")
            .unwrap();
        let mut ping = [0u8; 14];
        link.read_exact(&mut ping).unwrap();
        assert_eq!(&ping, b"*1\r\n$4\r\nPING\r\n");
        drop(link);
        let error = format!("{:#}", serving.stop_after_end());
        assert!(error.contains("closed the link"), "{error}");
    }

    #[test]
    fn something_that_is_not_a_replica_is_named() {
        let rdb = sample_rdb(10);
        let primary = Primary::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = primary.local_addr().unwrap();
        let serving = primary.serve(Box::new(io::Cursor::new(rdb.clone())), offer(rdb.len()));
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let error = format!("{:#}", serving.stop_after_end());
        assert!(error.contains("\"GET / HTTP/1.1\""), "{error}");
    }

    #[test]
    fn a_damaged_snapshot_is_reported_and_its_last_byte_never_sent() {
        let mut rdb = sample_rdb(10);
        rdb[10] ^= 1;
        let primary = Primary::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = primary.local_addr().unwrap();
        let serving = primary.serve(Box::new(io::Cursor::new(rdb.clone())), offer(rdb.len()));
        let bulk_header = format!("${}\r\n", rdb.len()).len();
        // All but the last byte arrive; the connection closes without it.
        let (got, mut link) = replica(addr, &[&["SYNC"]], bulk_header + rdb.len() - 1);
        assert_eq!(&got[bulk_header..], &rdb[..rdb.len() - 1]);
        assert_eq!(
            link.read(&mut [0u8; 1]).unwrap(),
            0,
            "the last byte was sent"
        );
        let error = format!("{:#}", serving.stop_after_end());
        assert!(error.contains("damaged"), "{error}");
    }

    #[test]
    fn no_replica_connecting_ends_in_a_bounded_time_with_advice() {
        let primary = Primary::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut short = offer(30);
        short.accept_timeout = Duration::from_millis(100);
        let serving = primary.serve(Box::new(io::empty()), short);
        let error = format!("{:#}", serving.stop_after_end());
        assert!(error.contains("--advertise"), "{error}");
    }

    impl Serving {
        /// Waits for serving to end by itself, and returns its error.
        fn stop_after_end(self) -> anyhow::Error {
            match self.handle.join().unwrap() {
                Ok(()) => panic!("serving ended without an error"),
                Err(e) => e,
            }
        }
    }
}
