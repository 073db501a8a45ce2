//! A throwaway Redis server for tests and benches: Debian's `redis-server` (7.0; `.ci/run`
//! installs it), on a free loopback port, with its own directory (or one given, to serve a
//! restored `dump.rdb`), persistence off, `DEBUG` allowed from loopback, killed when dropped.
//! A missing `redis-server` fails the test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tempfile::TempDir;

use crate::servers::s3s_fs::unused_port;

/// What a fresh machine needs.
const INSTALL_HINT: &str = "install it with `apt-get install redis-server` (.ci/run does)";

/// How long a server has to answer PING once started. Loading a bench's gigabyte `dump.rdb`
/// on a shared two-core machine takes a while; a server that answers LOADING is waited on
/// within the same bound.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a command of the test's own may take before its connection gives up: generous,
/// since `DEBUG DIGEST` of a large keyspace and big pipelines run on a loaded machine.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `stop` waits for a `SHUTDOWN NOSAVE` to end the process before killing it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How many free ports are tried when another process takes the one picked first.
const PORT_ATTEMPTS: usize = 5;

/// How a server is started; `Default` is a diskless primary without a password.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `repl-diskless-sync`: send a replica's RDB straight from the fork (`$EOF:` form) rather
    /// than from a file written first (`$<len>` form).
    pub diskless_sync: bool,
    /// `repl-diskless-sync-delay`, in seconds: 0 starts a diskless transfer at once.
    pub diskless_sync_delay: u32,
    /// `requirepass`: the default user's password.
    pub requirepass: Option<String>,
    /// Users created once the server answers, each the arguments of one `ACL SETUSER`
    /// separated by spaces, e.g. `"backup on >secret ~* +@all"`.
    pub acl_users: Vec<String>,
    /// More settings, each passed as `--name value`.
    pub extra: Vec<(String, String)>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            diskless_sync: true,
            diskless_sync_delay: 0,
            requirepass: None,
            acl_users: Vec::new(),
            extra: Vec::new(),
        }
    }
}

/// A running `redis-server`, killed when dropped (its own directory removed with it).
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    password: Option<String>,
    /// The directory the server owns, when it was not given one; removed on drop.
    _own_dir: Option<TempDir>,
}

impl RedisServer {
    /// Starts a server with an empty keyspace in a temporary directory of its own.
    pub fn start(opts: &RedisOptions) -> RedisServer {
        let own_dir = tempfile::Builder::new()
            .prefix("tidemark-redis-")
            .tempdir()
            .expect("create a directory for redis-server");
        let mut server = RedisServer::start_in(own_dir.path(), opts);
        server._own_dir = Some(own_dir);
        server
    }

    /// Starts a server serving `dir`: it loads `dir/dump.rdb` if there is one (a restored
    /// snapshot), and the directory is left in place when the server stops.
    pub fn start_in(dir: &Path, opts: &RedisOptions) -> RedisServer {
        let program = redis_server();
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = unused_port();
            let child = Command::new(&program)
                .args(server_args(dir, port, opts))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
            let mut server = RedisServer {
                port,
                dir: dir.to_path_buf(),
                child: Some(child),
                password: opts.requirepass.clone(),
                _own_dir: None,
            };
            match server.wait_until_ready() {
                Ok(()) => {
                    server.create_acl_users(&opts.acl_users);
                    return server;
                }
                Err(Exited) => {
                    last_log = server.log();
                    // Another process took the port between its release and the bind.
                    if last_log.contains("Address already in use") {
                        continue;
                    }
                    panic!(
                        "redis-server in {} exited while starting; its log:\n{last_log}",
                        dir.display()
                    );
                }
            }
        }
        panic!(
            "redis-server in {} found no free port in {PORT_ATTEMPTS} attempts; its log:\n{last_log}",
            dir.display()
        )
    }

    /// The directory the server reads and would write `dump.rdb` in, and logs to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the redis-server is running")
            .id()
    }

    /// Where the server listens, without credentials: `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The default user's password, if the server was given one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// A connection authenticated as the default user, with read and write timeouts.
    pub fn client(&self) -> redis::Connection {
        self.try_client(None, self.password.as_deref())
            .unwrap_or_else(|e| panic!("connect to redis-server on port {}: {e}", self.port))
    }

    /// A connection authenticated as `user` (the default user when `None`) with `password`.
    pub fn client_as(&self, user: Option<&str>, password: &str) -> redis::Connection {
        self.try_client(user, Some(password)).unwrap_or_else(|e| {
            panic!(
                "connect to redis-server on port {} as {}: {e}",
                self.port,
                user.unwrap_or("default")
            )
        })
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Stops the server without saving (`SHUTDOWN NOSAVE`), killing it if it has not ended
    /// within a bound. The directory stays until the server is dropped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(mut conn) = self.try_client(None, self.password.as_deref()) {
            // The server closes the connection instead of answering.
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut conn);
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn try_client(
        &self,
        user: Option<&str>,
        password: Option<&str>,
    ) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(connection_info(self.port, user, password))?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
        conn.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        conn.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(conn)
    }

    /// Waits until the server answers PING, or has exited.
    fn wait_until_ready(&mut self) -> Result<(), Exited> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("the redis-server was started");
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return Err(Exited);
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // LOADING replies (a dump.rdb being read) and refusals alike mean: wait on.
                let pong: Option<String> = self
                    .try_client(None, self.password.as_deref())
                    .and_then(|mut conn| redis::cmd("PING").query(&mut conn))
                    .ok();
                if pong.as_deref() == Some("PONG") {
                    return Ok(());
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn create_acl_users(&self, users: &[String]) {
        if users.is_empty() {
            return;
        }
        let mut conn = self.client();
        for user in users {
            let mut setuser = redis::cmd("ACL");
            setuser
                .arg("SETUSER")
                .arg(user.split_whitespace().collect::<Vec<_>>());
            let () = setuser
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("ACL SETUSER {user}: {e}"));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The server ended before it answered.
struct Exited;

/// How to reach the server on loopback `port`, authenticated with `password` (as `user`, else
/// the default user). No `CLIENT SETINFO`: Redis 7.0 does not know it.
pub fn connection_info(port: u16, user: Option<&str>, password: Option<&str>) -> ConnectionInfo {
    let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(user) = user {
        settings = settings.set_username(user);
    }
    if let Some(password) = password {
        settings = settings.set_password(password);
    }
    ConnectionAddr::Tcp("127.0.0.1".to_string(), port)
        .into_connection_info()
        .expect("a TCP address is connection info")
        .set_redis_settings(settings)
}

/// The command line of a server on `port` serving `dir` as `opts` says.
fn server_args(dir: &Path, port: u16, opts: &RedisOptions) -> Vec<String> {
    let yes_no = |on: bool| if on { "yes" } else { "no" }.to_string();
    let mut args: Vec<String> = [
        ("bind", "127.0.0.1".to_string()),
        ("port", port.to_string()),
        ("dir", dir.display().to_string()),
        ("dbfilename", "dump.rdb".to_string()),
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        ("daemonize", "no".to_string()),
        ("logfile", dir.join("redis.log").display().to_string()),
        ("enable-debug-command", "local".to_string()),
        ("repl-diskless-sync", yes_no(opts.diskless_sync)),
        (
            "repl-diskless-sync-delay",
            opts.diskless_sync_delay.to_string(),
        ),
    ]
    .into_iter()
    .chain(
        opts.requirepass
            .iter()
            .map(|password| ("requirepass", password.clone())),
    )
    .flat_map(|(name, value)| [format!("--{name}"), value])
    .collect();
    for (name, value) in &opts.extra {
        args.push(format!("--{name}"));
        args.push(value.clone());
    }
    args
}

/// The `redis-server` program: on PATH, else Debian's.
fn redis_server() -> PathBuf {
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("redis-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin/redis-server")])
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("redis-server is not installed: {INSTALL_HINT}"))
}
