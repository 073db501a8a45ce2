//! A TCP relay in front of a Redis server that damages one RDB in transit: in the first
//! disk-form SYNC reply it passes (`$<len>\r\n` then `REDIS…`), the payload's last byte — the
//! last byte of its CRC-64 trailer — is flipped; everything else passes unchanged, both ways.
//! Tests use it to show a snapshot whose checksum does not match is refused, with a real
//! server's real RDB rather than a hand-made one.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The relay's listener and the thread accepting on it; stopped on drop.
pub struct CorruptingRelay {
    port: u16,
    stopping: Arc<AtomicBool>,
    corrupted: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl CorruptingRelay {
    /// Listens on a free loopback port, relaying each connection to the server on loopback
    /// `server_port`.
    pub fn start(server_port: u16) -> CorruptingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        listener
            .set_nonblocking(true)
            .expect("make the relay's listener non-blocking");
        let port = listener.local_addr().unwrap().port();
        let stopping = Arc::new(AtomicBool::new(false));
        let corrupted = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (stopping, corrupted) = (stopping.clone(), corrupted.clone());
            std::thread::spawn(move || accept(&listener, server_port, &stopping, &corrupted))
        };
        CorruptingRelay {
            port,
            stopping,
            corrupted,
            acceptor: Some(acceptor),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether an RDB's last byte has been flipped and passed on.
    pub fn corrupted(&self) -> bool {
        self.corrupted.load(Ordering::SeqCst)
    }
}

impl Drop for CorruptingRelay {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts until told to stop (polling, so the stop is seen within 10 ms).
fn accept(
    listener: &TcpListener,
    server_port: u16,
    stopping: &AtomicBool,
    corrupted: &Arc<AtomicBool>,
) {
    while !stopping.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                client
                    .set_nonblocking(false)
                    .expect("make a relayed client blocking");
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    // The server is gone: the client sees its connection closed.
                    continue;
                };
                relay(client, server, corrupted.clone());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("the relay's accept failed: {e}"),
        }
    }
}

/// Copies both ways on threads of their own, the server's side through the corrupter; either
/// side's end closes the other.
fn relay(client: TcpStream, server: TcpStream, corrupted: Arc<AtomicBool>) {
    let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        copy(client_in, server_out, |_| {});
    });
    std::thread::spawn(move || {
        let mut finder = RdbEnd::default();
        copy(server, client, |chunk| {
            if !corrupted.load(Ordering::SeqCst) && finder.flip_in(chunk) {
                corrupted.store(true, Ordering::SeqCst);
            }
        });
    });
}

/// Passes what `from` sends to `to`, each chunk through `alter` first, until either ends.
fn copy(mut from: TcpStream, mut to: TcpStream, mut alter: impl FnMut(&mut [u8])) {
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                alter(&mut buffer[..n]);
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Finds a disk-form RDB's header in a stream passed chunk by chunk and the position of its
/// last byte.
#[derive(Default)]
struct RdbEnd {
    /// Bytes of the stream passed before the current chunk.
    passed: u64,
    /// The last bytes passed, so a header split between chunks is found.
    tail: Vec<u8>,
    /// The stream position of the RDB's last byte, once its header was seen.
    last_byte: Option<u64>,
}

impl RdbEnd {
    /// Looks for the header in `chunk` and flips the RDB's last byte if `chunk` holds it;
    /// says whether it did.
    fn flip_in(&mut self, chunk: &mut [u8]) -> bool {
        let start = self.passed;
        if self.last_byte.is_none() {
            let window_start = start - self.tail.len() as u64;
            let mut window = std::mem::take(&mut self.tail);
            window.extend_from_slice(chunk);
            if let Some((payload_at, len)) = find_header(&window) {
                self.last_byte = Some(window_start + payload_at as u64 + len - 1);
            }
            let keep = window.len().min(32);
            self.tail = window[window.len() - keep..].to_vec();
        }
        self.passed += chunk.len() as u64;
        match self.last_byte {
            Some(at) if (start..self.passed).contains(&at) => {
                chunk[(at - start) as usize] ^= 0xFF;
                true
            }
            _ => false,
        }
    }
}

/// Where `$<len>\r\nREDIS` is in `window`: the payload's offset and its length.
fn find_header(window: &[u8]) -> Option<(usize, u64)> {
    let marker = b"\r\nREDIS";
    (0..window.len().saturating_sub(marker.len() - 1)).find_map(|at| {
        if &window[at..at + marker.len()] != marker {
            return None;
        }
        let digits_start = window[..at].iter().rposition(|&b| b == b'$')? + 1;
        let len = std::str::from_utf8(&window[digits_start..at])
            .ok()?
            .parse()
            .ok()?;
        Some((at + 2, len))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_byte_of_a_disk_form_rdb_is_flipped_wherever_the_chunks_split() {
        let mut stream = b"+OK\r\n\n\n$12\r\nREDIS0010xyz".to_vec();
        stream.extend_from_slice(b"tail after");
        let last = stream.iter().position(|&b| b == b'z').unwrap();
        for split in 1..stream.len() {
            let mut finder = RdbEnd::default();
            let (mut first, mut second) = (stream[..split].to_vec(), stream[split..].to_vec());
            let flipped = finder.flip_in(&mut first) | finder.flip_in(&mut second);
            let mut passed = first;
            passed.extend(second);
            let mut expected = stream.clone();
            expected[last] ^= 0xFF;
            assert!(flipped, "split at {split}");
            assert_eq!(passed, expected, "split at {split}");
        }
    }

    #[test]
    fn a_reply_without_an_rdb_passes_unchanged() {
        let mut reply = b"$10\r\n# Server\r\nx\r\n".to_vec();
        let original = reply.clone();
        assert!(!RdbEnd::default().flip_in(&mut reply));
        assert_eq!(reply, original);
    }
}
