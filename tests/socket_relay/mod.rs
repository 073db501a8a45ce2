//! A relay in front of PostgreSQL's Unix socket that passes a client at most a set number of
//! bytes from the server and then stalls it: what the server sends after that is read and
//! dropped, so the server goes on as if it had been delivered, while the client waits. Tests use
//! it to stop a backup at a known point of its stream instead of racing it: a stalled backup
//! cannot finish first. Whichever side closes, the relay closes the other: a killed client's
//! WAL sender ends, and a terminated WAL sender's client sees its connection lost.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes the server may still send, and whether the limit was reached.
struct Budget {
    left: Mutex<(u64, bool)>,
    reached: Condvar,
}

/// A running relay; stopped on drop.
pub struct SocketRelay {
    socket: PathBuf,
    budget: Arc<Budget>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SocketRelay {
    /// Listens at `<dir>/.s.PGSQL.<port>` (so conninfo `host=<dir> port=<port>` reaches it) and
    /// relays each connection to `server`, the server's socket file.
    pub fn start(server: &Path, dir: &Path, port: u16, limit: u64) -> Self {
        let socket = dir.join(format!(".s.PGSQL.{port}"));
        let listener = UnixListener::bind(&socket).unwrap();
        // The client runs as the cluster owner.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
        let budget = Arc::new(Budget {
            left: Mutex::new((limit, false)),
            reached: Condvar::new(),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (server, budget, stopping) =
                (server.to_path_buf(), budget.clone(), stopping.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let client = client.unwrap();
                    let server = UnixStream::connect(&server).unwrap();
                    relay(client, server, budget.clone());
                }
            })
        };
        SocketRelay {
            socket,
            budget,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    /// Waits, at most `timeout`, until the server has sent the client its share; returns
    /// whether it has.
    pub fn wait_until_limit(&self, timeout: Duration) -> bool {
        let left = self.budget.left.lock().unwrap();
        let (left, _) = self
            .budget
            .reached
            .wait_timeout_while(left, timeout, |(_, reached)| !*reached)
            .unwrap();
        left.1
    }
}

impl Drop for SocketRelay {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees it is stopping.
        let _ = UnixStream::connect(&self.socket);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Copies client → server freely and server → client within the budget, each way on its own
/// thread; when either side closes, closes both.
fn relay(client: UnixStream, server: UnixStream, budget: Arc<Budget>) {
    let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = copy(&client_in, &server_out, None);
        // The client is gone: so is its connection to the server.
        let _ = server_out.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let _ = copy(&server, &client, Some(&budget));
        // The server is gone (or failed): so is the client's connection.
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    });
}

/// Copies `from` to `to` until either ends; with a budget, once it is spent, reads on and
/// drops what it reads.
fn copy(
    mut from: &UnixStream,
    mut to: &UnixStream,
    budget: Option<&Budget>,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let read = from.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        let passed = match budget {
            None => read,
            Some(budget) => {
                let mut left = budget.left.lock().unwrap();
                let passed = read.min(usize::try_from(left.0).unwrap_or(usize::MAX));
                left.0 -= passed as u64;
                if left.0 == 0 && !left.1 {
                    left.1 = true;
                    budget.reached.notify_all();
                }
                passed
            }
        };
        to.write_all(&buffer[..passed])?;
    }
}
