//! The replication handshake, as `redis-cli --rdb` does it (redis `redis-cli.c`: `sendCapa`,
//! `sendRdbOnly`, `sendSync`, `getRDB`), hand-written on a plain TCP stream: `AUTH`,
//! `REPLCONF capa eof`, `REPLCONF rdb-only 1`, `SYNC`, then the RDB in either form — `$<len>`
//! (the server wrote the file first) or `$EOF:<40 chars>` (diskless, ended by the same 40
//! chars) — streamed into the caller's writer and checked as it passes (`rdb`). After the
//! payload we hang up: servers before 7.0 follow it with the command stream.

mod holdback;
#[cfg(test)]
mod tests;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};

use super::endpoint::{RedisEndpoint, resp_command};
use super::rdb::{AuxFields, AuxReader, RdbChecker, RdbSummary};
use holdback::{EOF_MARK_LEN, Holdback};

/// How long the server may say nothing before it counts as dead. It sends a `\n` every second
/// while its BGSAVE runs and before the header (redis `replicationCron`), so a minute of silence
/// is a stopped server or a dropped network, never a busy one.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How long one write of ours (a command) may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest reply line read before the payload: replies here are short.
const LINE_LIMIT: u64 = 64 * 1024;
/// The read buffer: large reads keep the CRC and the writer fed.
const READ_BUFFER: usize = 256 * 1024;

/// The ACL rules a snapshot's user needs, and how to grant them.
pub fn acl_rules_needed(user: &str) -> String {
    format!("+sync +replconf +info (grant them with: ACL SETUSER {user} +sync +replconf +info)")
}

/// How the server sent the RDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferForm {
    /// `$<len>`: from a file written by BGSAVE first (`repl-diskless-sync no`).
    Disk,
    /// `$EOF:<mark>`: straight from the fork, ended by the mark.
    Diskless,
}

impl TransferForm {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferForm::Disk => "disk",
            TransferForm::Diskless => "diskless",
        }
    }
}

/// A whole RDB received and checked.
#[derive(Debug, Clone)]
pub struct Received {
    pub form: TransferForm,
    pub summary: RdbSummary,
    pub aux: AuxFields,
    /// Why the AUX fields could not all be read, if so (a warning, not an error).
    pub aux_problem: Option<String>,
}

/// The server closed the stream before the RDB's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClosed {
    pub received: u64,
    /// The RDB's length, when the server said it (`$<len>` form).
    pub expected: Option<u64>,
}

impl std::fmt::Display for StreamClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.expected {
            Some(expected) => write!(
                f,
                "the server closed the replication stream after {} of {expected} bytes",
                self.received
            ),
            None => write!(
                f,
                "the server closed the replication stream after {} bytes, before the diskless transfer's end mark",
                self.received
            ),
        }
    }
}

impl std::error::Error for StreamClosed {}

/// The header the server sent before the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Header {
    Length(u64),
    EofMark([u8; EOF_MARK_LEN]),
}

/// Takes one RDB from `endpoint` over the replication handshake into `out`, checking it as it
/// passes. On any error `out` holds part of it, to be discarded; a stream closed early is a
/// [`StreamClosed`] (see [`explain_closed`] for the message that names the setting).
pub fn receive(endpoint: &RedisEndpoint, out: &mut dyn Write) -> anyhow::Result<Received> {
    let stream = endpoint.stream(SILENCE_LIMIT, WRITE_TIMEOUT)?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    handshake(endpoint, &mut reader)?;
    let header = read_header(endpoint, &mut reader)?;
    stream_payload(&mut reader, header, out)
    // The connection is dropped, so closed, at once: a server before 7.0 goes on with the
    // command stream.
}

/// `AUTH`, the two `REPLCONF`s (a refusal of either is a warning, as redis-cli has it, except
/// an ACL refusal), and `SYNC`.
fn handshake<S: Read + Write>(
    endpoint: &RedisEndpoint,
    reader: &mut BufReader<S>,
) -> anyhow::Result<()> {
    if endpoint.write_auth(reader.get_mut())? {
        let reply = read_line(endpoint, reader, "the reply to AUTH")?;
        if reply.starts_with('-') {
            return Err(endpoint.connect_error(reply.trim_start_matches('-')));
        }
    }
    for args in [["capa", "eof"], ["rdb-only", "1"]] {
        let command = resp_command(&[b"REPLCONF", args[0].as_bytes(), args[1].as_bytes()]);
        send(endpoint, reader.get_mut(), &command, "REPLCONF")?;
        let reply = read_line(endpoint, reader, "the reply to REPLCONF")?;
        if let Some(error) = reply.strip_prefix('-') {
            if error.starts_with("NOPERM") {
                return Err(refused(endpoint, "REPLCONF", error));
            }
            if error.starts_with("NOAUTH") {
                return Err(endpoint.connect_error(error));
            }
            tracing::warn!(
                "Redis at {} refused REPLCONF {} {}: {error}; going on without it (older servers do not know it)",
                endpoint.display(),
                args[0],
                args[1]
            );
        }
    }
    send(endpoint, reader.get_mut(), b"SYNC\r\n", "SYNC")
}

/// Writes one command and flushes it (through TLS too).
fn send(
    endpoint: &RedisEndpoint,
    stream: &mut impl Write,
    command: &[u8],
    name: &str,
) -> anyhow::Result<()> {
    stream
        .write_all(command)
        .and_then(|()| stream.flush())
        .with_context(|| format!("send {name} to Redis at {}", endpoint.display()))
}

/// Reads the payload's header, skipping the `\n` keep-alives before it.
fn read_header(endpoint: &RedisEndpoint, reader: &mut impl BufRead) -> anyhow::Result<Header> {
    let mut keep_alives = 0u64;
    loop {
        let line = read_line(endpoint, reader, "the reply to SYNC")?;
        if line.is_empty() {
            keep_alives += 1;
            if keep_alives.is_multiple_of(60) {
                tracing::info!(
                    "Redis at {} is still preparing the snapshot ({keep_alives} s)",
                    endpoint.display()
                );
            }
            continue;
        }
        // PSYNC's answers, should a server send one to SYNC: the header follows.
        if line.starts_with("+FULLRESYNC") || line.starts_with("+CONTINUE") {
            continue;
        }
        if let Some(error) = line.strip_prefix('-') {
            return Err(sync_refused(endpoint, error));
        }
        return parse_header(&line).ok_or_else(|| {
            anyhow::anyhow!(
                "Redis at {} answered SYNC with {:?}, not an RDB header ($<length> or $EOF:<mark>)",
                endpoint.display(),
                shorten(&line)
            )
        });
    }
}

fn parse_header(line: &str) -> Option<Header> {
    let rest = line.strip_prefix('$')?;
    if let Some(mark) = rest.strip_prefix("EOF:") {
        return Some(Header::EofMark(mark.as_bytes().try_into().ok()?));
    }
    rest.parse().ok().map(Header::Length)
}

/// SYNC refused: one line saying why and what to do.
fn sync_refused(endpoint: &RedisEndpoint, error: &str) -> anyhow::Error {
    if error.starts_with("NOPERM") {
        return refused(endpoint, "SYNC", error);
    }
    if error.starts_with("NOAUTH") || error.starts_with("WRONGPASS") {
        return endpoint.connect_error(error);
    }
    if error.to_ascii_lowercase().contains("unknown command") {
        return anyhow::anyhow!(
            "Redis at {} does not accept SYNC ({error}): this service blocks replication, so it cannot be snapshotted over it; snapshots need a self-managed Redis",
            endpoint.display()
        );
    }
    anyhow::anyhow!("Redis at {} refused SYNC: {error}", endpoint.display())
}

/// An ACL refusal of `command`: the rules the user needs.
fn refused(endpoint: &RedisEndpoint, command: &str, error: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "Redis at {} refused {command} to ACL user {} ({error}): a snapshot's user needs {}",
        endpoint.display(),
        endpoint.user(),
        acl_rules_needed(endpoint.user())
    )
}

/// One reply line without its `\r\n`; a closed connection or a timeout is said as such.
fn read_line(
    endpoint: &RedisEndpoint,
    reader: &mut impl BufRead,
    what: &str,
) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let read = reader.take(LINE_LIMIT).read_until(b'\n', &mut line);
    match read {
        Ok(0) => bail!(
            "read {what} from Redis at {}: the server closed the connection",
            endpoint.display()
        ),
        Ok(_) if line.last() != Some(&b'\n') => bail!(
            "read {what} from Redis at {}: a line longer than {LINE_LIMIT} bytes or cut short",
            endpoint.display()
        ),
        Ok(_) => {}
        Err(e) if is_timeout(&e) => bail!(
            "read {what} from Redis at {}: nothing for {} s (not even the keep-alive it sends every second): the server is stuck or the network dropped",
            endpoint.display(),
            SILENCE_LIMIT.as_secs()
        ),
        Err(e) => bail!("read {what} from Redis at {}: {e}", endpoint.display()),
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Where the payload's bytes go: the checker, the AUX reader and the caller's writer.
struct Payload<'a> {
    checker: RdbChecker,
    aux: AuxReader,
    out: &'a mut dyn Write,
}

impl Payload<'_> {
    fn take(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.checker.update(bytes)?;
        self.aux.update(bytes);
        self.out.write_all(bytes).context("write the snapshot")?;
        Ok(())
    }
}

/// Streams the payload after `header` into `out`, checked.
fn stream_payload(
    reader: &mut impl Read,
    header: Header,
    out: &mut dyn Write,
) -> anyhow::Result<Received> {
    let mut payload = Payload {
        checker: RdbChecker::new(),
        aux: AuxReader::new(),
        out,
    };
    let mut buffer = vec![0u8; READ_BUFFER];
    let form = match header {
        Header::Length(len) => {
            let mut remaining = len;
            while remaining > 0 {
                let want = buffer
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let n = read_some(
                    reader,
                    &mut buffer[..want],
                    payload.checker.bytes(),
                    Some(len),
                )?;
                payload.take(&buffer[..n])?;
                remaining -= n as u64;
            }
            TransferForm::Disk
        }
        Header::EofMark(mark) => {
            let mut holdback = Holdback::new(mark);
            loop {
                let received = payload.checker.bytes() + holdback.held() as u64;
                let n = read_some(reader, &mut buffer, received, None)?;
                if holdback.push(&buffer[..n], &mut |bytes| payload.take(bytes))? {
                    break;
                }
            }
            TransferForm::Diskless
        }
    };
    let Payload { checker, aux, .. } = payload;
    let summary = checker.finish()?;
    let (aux, aux_problem) = aux.finish();
    Ok(Received {
        form,
        summary,
        aux,
        aux_problem,
    })
}

/// One read of the payload, at least one byte; the end of the stream is a [`StreamClosed`].
fn read_some(
    reader: &mut impl Read,
    buffer: &mut [u8],
    received: u64,
    expected: Option<u64>,
) -> anyhow::Result<usize> {
    loop {
        match reader.read(buffer) {
            Ok(0) => return Err(StreamClosed { received, expected }.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // rustls reads a TLS peer that hangs up without close_notify as UnexpectedEof.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                        | ErrorKind::UnexpectedEof
                ) =>
            {
                return Err(StreamClosed { received, expected }.into());
            }
            Err(e) if is_timeout(&e) => bail!(
                "the server sent nothing for {} s after {received} bytes of the snapshot: it is stuck or the network dropped; if its log shows it dropped this replica, raise `repl-timeout` or `client-output-buffer-limit replica`",
                SILENCE_LIMIT.as_secs()
            ),
            Err(e) => bail!("read the replication stream after {received} bytes: {e}"),
        }
    }
}

/// The message for a stream closed early: what was received, and — read best effort on a new
/// connection — the server's `client-output-buffer-limit` and its count of replicas it cut off,
/// naming the settings to raise.
pub fn explain_closed(endpoint: &RedisEndpoint, closed: &StreamClosed) -> anyhow::Error {
    let found = endpoint.connection().and_then(|mut connection| {
        let limits: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("client-output-buffer-limit")
            .query(&mut connection)?;
        let replica = limits
            .get(1)
            .and_then(|value| {
                value
                    .split(" replica ")
                    .nth(1)
                    .or_else(|| value.split("slave ").nth(1))
            })
            .map(|rest| {
                rest.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        let stats: String = redis::cmd("INFO").arg("stats").query(&mut connection)?;
        let cut = stats
            .lines()
            .find_map(|line| line.strip_prefix("client_output_buffer_limit_disconnections:"))
            .map(|count| count.trim().to_owned());
        Ok((replica, cut))
    });
    let detail = match found {
        Ok((replica, cut)) => {
            let now = replica.map_or_else(String::new, |limit| format!(" (now: replica {limit})"));
            let cut = cut.map_or_else(String::new, |count| {
                format!("; the server has cut off {count} clients for their output buffer since it started")
            });
            format!("{now}{cut}")
        }
        Err(e) => format!(" (its current value could not be read: {e:#})"),
    };
    anyhow::anyhow!(
        "take a snapshot of Redis at {}: {closed}: the server may have cut this replica off; raise `client-output-buffer-limit replica`{detail}, or `repl-timeout` if the network or this host was slow, and check the server's log",
        endpoint.display()
    )
}
