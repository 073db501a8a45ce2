//! A TCP relay in front of an S3-compatible HTTP/1.1 server (`s3s-fs`, path-style requests):
//! it counts the requests passing by kind (object GETs, with the keys they read; listings;
//! HEADs; the rest) and fails a chosen share of object GETs, by a seeded plan that can be
//! changed at any time: the connection closed without a response, a `500 InternalError`, or
//! the response cut off part-way through its body. Tests use it to see what a reader of a
//! bucket asked for, and that it rides out a failing server.
//!
//! Each connection carries one request and its response: the relay makes both say
//! `Connection: close` (the SDK does not sign that header), so it can pass the request's body
//! and the response through to their ends without parsing them, and the client opens a fresh
//! connection for its next request or retry.
//!
//! * `head.rs` — reading message heads and rewriting their `Connection` header;
//! * `request_kind.rs` — what a request is, from its method and target;
//! * `faults.rs` — the kinds of fault, the plan that picks them, the canned error;
//! * `exchange.rs` — one relayed connection, start to end.

mod exchange;
mod faults;
mod head;
mod request_kind;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use faults::FaultKind;
use faults::FaultPlan;
use request_kind::RequestKind;

/// How many requests of each kind have passed (faulted ones included) since the relay
/// started or its counts were last reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// GETs of an object's bytes (GetObject).
    pub object_gets: u64,
    /// GETs of the bucket: ListObjectsV2 and other bucket-level reads.
    pub lists: u64,
    pub heads: u64,
    /// Puts, posts, deletes, and GETs of an object's sub-resources.
    pub others: u64,
}

/// The relay's listener and the thread accepting on it; stopped on drop, with every
/// connection it still relays cut.
pub struct HttpRelay {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpRelay {
    /// Listens on a free loopback port, relaying each connection to the server at
    /// `server_endpoint` (`http://host:port`), with no faults planned.
    pub fn start(server_endpoint: &str) -> HttpRelay {
        let server = server_address(server_endpoint);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        listener
            .set_nonblocking(true)
            .expect("make the relay's listener non-blocking");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::new());
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept(&listener, server, &shared))
        };
        HttpRelay {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where clients reach the server through the relay: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn counts(&self) -> RequestCounts {
        let read = |count: &AtomicU64| count.load(Ordering::SeqCst);
        let counts = &self.shared.counts;
        RequestCounts {
            object_gets: read(&counts.object_gets),
            lists: read(&counts.lists),
            heads: read(&counts.heads),
            others: read(&counts.others),
        }
    }

    /// Sets every request count to zero and forgets the keys read (faults injected are
    /// counted on).
    pub fn reset_counts(&self) {
        let counts = &self.shared.counts;
        for count in [
            &counts.object_gets,
            &counts.lists,
            &counts.heads,
            &counts.others,
        ] {
            count.store(0, Ordering::SeqCst);
        }
        self.shared.object_get_keys.lock().unwrap().clear();
    }

    /// The keys (percent-decoded, the bucket's prefix included) of the object GETs counted,
    /// in the order they arrived, repeats included.
    pub fn object_get_keys(&self) -> Vec<String> {
        self.shared.object_get_keys.lock().unwrap().clone()
    }

    /// From now on, fails each object GET with probability `share` (0 passes every one, 1
    /// fails every one), with a kind of fault picked evenly among all three; `seed` makes the
    /// sequence of decisions repeatable.
    pub fn set_get_faults(&self, share: f64, seed: u64) {
        *self.shared.plan.lock().unwrap() = FaultPlan::new(&FaultKind::ALL, share, seed);
    }

    /// As [`set_get_faults`](HttpRelay::set_get_faults), with faults of `kind` only.
    pub fn set_get_faults_of(&self, kind: FaultKind, share: f64, seed: u64) {
        *self.shared.plan.lock().unwrap() = FaultPlan::new(&[kind], share, seed);
    }

    /// How many object GETs have been failed since the relay started.
    pub fn faults_injected(&self) -> u64 {
        FaultKind::ALL
            .iter()
            .map(|&kind| self.faults_of(kind))
            .sum()
    }

    /// How many object GETs have been failed with `kind` since the relay started.
    pub fn faults_of(&self, kind: FaultKind) -> u64 {
        self.shared.faults[kind.index()].load(Ordering::SeqCst)
    }
}

impl Drop for HttpRelay {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The socket address of `endpoint`, an `http://host:port` URL.
fn server_address(endpoint: &str) -> SocketAddr {
    let authority = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("the relay speaks plain HTTP, not {endpoint}"))
        .trim_end_matches('/');
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .unwrap_or_else(|| panic!("no address for {endpoint}"))
}

/// What the relay's threads share with its handle.
struct Shared {
    counts: Counts,
    object_get_keys: Mutex<Vec<String>>,
    plan: Mutex<FaultPlan>,
    /// Faults injected, by [`FaultKind::index`].
    faults: [AtomicU64; 3],
    stopping: AtomicBool,
    /// The sockets of the connections being relayed, by connection, to cut when stopping.
    live: Mutex<HashMap<u64, Vec<TcpStream>>>,
}

#[derive(Default)]
struct Counts {
    object_gets: AtomicU64,
    lists: AtomicU64,
    heads: AtomicU64,
    others: AtomicU64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            counts: Counts::default(),
            object_get_keys: Mutex::default(),
            plan: Mutex::new(FaultPlan::none()),
            faults: Default::default(),
            stopping: AtomicBool::new(false),
            live: Mutex::default(),
        }
    }

    /// Counts a request of `kind` and says which fault, if any, it gets.
    fn arrived(&self, kind: &RequestKind) -> Option<FaultKind> {
        let counts = &self.counts;
        let count = match kind {
            RequestKind::ObjectGet { key } => {
                self.object_get_keys.lock().unwrap().push(key.clone());
                counts.object_gets.fetch_add(1, Ordering::SeqCst);
                return self.plan.lock().unwrap().next_fault();
            }
            RequestKind::List => &counts.lists,
            RequestKind::Head => &counts.heads,
            RequestKind::Other => &counts.others,
        };
        count.fetch_add(1, Ordering::SeqCst);
        None
    }

    fn injected(&self, kind: FaultKind) {
        self.faults[kind.index()].fetch_add(1, Ordering::SeqCst);
    }

    /// Notes `socket` as one of connection `id`'s, to cut when stopping; false if the relay
    /// is stopping already (then the caller ends the connection itself).
    fn track(&self, id: u64, socket: &TcpStream) -> bool {
        if let Ok(clone) = socket.try_clone() {
            self.live.lock().unwrap().entry(id).or_default().push(clone);
        }
        // Read after the insertion: a stop that began before it is seen here, one that began
        // after it cuts the socket just noted.
        !self.stopping.load(Ordering::SeqCst)
    }

    /// Forgets connection `id`'s sockets once it has ended.
    fn forget(&self, id: u64) {
        self.live.lock().unwrap().remove(&id);
    }

    /// Cuts every connection still being relayed: their threads' reads and writes end.
    fn cut_all(&self) {
        for socket in self.live.lock().unwrap().values().flatten() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Accepts until told to stop (polling, so the stop is seen within 10 ms), each connection
/// on a thread of its own; then cuts the connections left and waits for their threads.
fn accept(listener: &TcpListener, server: SocketAddr, shared: &Arc<Shared>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    while !shared.stopping.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                connections.retain(|connection| !connection.is_finished());
                let (shared, id) = (shared.clone(), next_id);
                next_id += 1;
                connections.push(std::thread::spawn(move || {
                    exchange::relay(id, client, server, &shared);
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("the relay's accept failed: {e}"),
        }
    }
    shared.cut_all();
    for connection in connections {
        let _ = connection.join();
    }
}
