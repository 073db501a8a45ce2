//! A throwaway PostgreSQL server in a temporary directory, for the demo and the tests.
//!
//! Servers listen on a Unix socket inside their own temporary directory only, so
//! they never clash with other clusters (or TCP ports) on the machine; a test of TCP or TLS
//! adds a free loopback port. They run as the cluster
//! owner (see [`crate::owner`]).

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::owner::{
    give_to_owner_recursively, make_owned_dir, owner_command, run_as_owner, write_owned_file,
};
use crate::processes::wait_for_helpers_to_leave;
use crate::servers::s3s_fs::unused_port;

/// The port only names the socket file (`.s.PGSQL.<port>`): with TCP disabled and a
/// private socket directory per cluster, every cluster can use the same number (one that
/// listens on loopback too gets a free one instead).
const PORT: u16 = 5432;

/// Where the programs of one PostgreSQL major live: its server programs (`initdb`, `pg_ctl`,
/// `postgres`) and the client programs used against it (`psql`, `pgbench`, ...). The server
/// packages of the version matrix carry only the three server programs, so their clients are
/// Debian's (15), which speak to every major; tools bound to their own major (`pg_waldump`,
/// `pg_verifybackup`, `pg_controldata`) are offered only through [`PgBinaries::own_tool`].
#[derive(Debug, Clone)]
pub struct PgBinaries {
    /// The directory holding the server programs.
    pub bindir: PathBuf,
    /// The directory holding the client programs.
    pub client_bindir: PathBuf,
    /// The server's major version (12, 13, ...).
    pub major: u32,
    /// The client programs' major version.
    pub client_major: u32,
}

/// The server programs; every other program is a client.
const SERVER_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The PostgreSQL majors Tidemark supports, each of which the version matrix runs.
pub const SUPPORTED_MAJORS: [u32; 7] = [12, 13, 14, 15, 16, 17, 18];

/// What a fresh machine needs for the default PostgreSQL.
const INSTALL_HINT: &str = "install the PostgreSQL server package \
     (e.g. `apt-get install postgresql-15`) or set TIDEMARK_PG_BINDIR";

impl PgBinaries {
    /// `TIDEMARK_PG_BINDIR` if set, else `pg_config --bindir`; errors if `initdb` is
    /// not there. Its clients are its own.
    pub fn locate() -> Result<PgBinaries> {
        let bindir = match std::env::var_os("TIDEMARK_PG_BINDIR").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => pg_config_bindir()?,
        };
        if !bindir.join("initdb").is_file() {
            bail!(
                "PostgreSQL server programs not found: {} does not exist; {INSTALL_HINT}",
                bindir.join("initdb").display()
            );
        }
        let major = server_major(&bindir)?;
        Ok(PgBinaries {
            client_bindir: bindir.clone(),
            bindir,
            major,
            client_major: major,
        })
    }

    /// The programs of PostgreSQL `major`: the default ones ([`Self::locate`]) when they are
    /// that major, else the server package `.ci/pg-packages` pins for it, from the cache
    /// `.ci/fetch-pg-packages` fills (`TIDEMARK_PG_CACHE`, default `/var/cache/tidemark/pg`),
    /// with the default clients. Errors, naming the fix, when the package is not there.
    pub fn for_major(major: u32) -> Result<PgBinaries> {
        let default = Self::locate()?;
        if default.major == major {
            return Ok(default);
        }
        let package = matrix_package(major)?;
        let bindir = package.join("package/native/bin");
        let found = server_major(&bindir)?;
        if found != major {
            bail!(
                "{} is PostgreSQL {found}, not {major}: run .ci/fetch-pg-packages again",
                bindir.display()
            );
        }
        Ok(PgBinaries {
            bindir,
            client_bindir: default.client_bindir,
            major,
            client_major: default.client_major,
        })
    }

    /// The full path of one of the programs, e.g. `path("pg_ctl")`: a server program from the
    /// server's directory, any other from the clients'.
    pub fn path(&self, program: &str) -> PathBuf {
        if SERVER_PROGRAMS.contains(&program) {
            self.bindir.join(program)
        } else {
            self.client_bindir.join(program)
        }
    }

    /// A tool that must be the server's own major (`pg_waldump`, `pg_verifybackup`,
    /// `pg_controldata`), or None when only another major's is at hand.
    pub fn own_tool(&self, program: &str) -> Option<PathBuf> {
        (self.major == self.client_major).then(|| self.client_bindir.join(program))
    }
}

/// `pg_config --bindir`.
fn pg_config_bindir() -> Result<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run `pg_config --bindir`; {INSTALL_HINT}"))?;
    if !output.status.success() {
        bail!(
            "`pg_config --bindir` failed ({}): {}; {INSTALL_HINT}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// The major version `<bindir>/postgres --version` reports ("postgres (PostgreSQL) 18.4").
fn server_major(bindir: &Path) -> Result<u32> {
    let postgres = bindir.join("postgres");
    let output = Command::new(&postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run `{} --version`", postgres.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.rsplit(' ')
        .next()
        .and_then(|version| version.trim().split('.').next()?.parse().ok())
        .filter(|_| output.status.success())
        .with_context(|| {
            format!(
                "`{} --version` said {:?}, not a version",
                postgres.display(),
                text.trim()
            )
        })
}

/// The cached, complete package directory of the server package pinned for `major`.
fn matrix_package(major: u32) -> Result<PathBuf> {
    let pins_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/pg-packages");
    let pins =
        fs::read_to_string(&pins_path).with_context(|| format!("read {}", pins_path.display()))?;
    let (version, sha512) = pins
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.len() == 3 && fields[0] == major.to_string())
        .map(|fields| (fields[1].to_owned(), fields[2].to_owned()))
        .with_context(|| {
            format!(
                "{} pins no server package for PostgreSQL {major}",
                pins_path.display()
            )
        })?;
    let cache = std::env::var_os("TIDEMARK_PG_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/var/cache/tidemark/pg"), PathBuf::from);
    let package = cache.join(&version);
    let complete = fs::read_to_string(package.join(".complete")).unwrap_or_default();
    if complete.trim() != sha512 {
        bail!(
            "the PostgreSQL {major} server package {version} is not in the cache {}: \
             run .ci/fetch-pg-packages (or set TIDEMARK_PG_CACHE to where it fetched them)",
            cache.display()
        );
    }
    Ok(package)
}

/// A PostgreSQL server in a temporary directory, reachable only through its own
/// Unix socket directory; stopped (immediately) on drop if still running.
#[derive(Debug)]
pub struct ThrowawayCluster {
    bins: PgBinaries,
    /// Working directory for the programs we spawn: the owner can always enter it.
    work_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    running: bool,
}

impl ThrowawayCluster {
    /// Runs `initdb` for a new cluster in `<dir>/<name>` with `wal_segment_mb` MiB WAL
    /// segments, set up to listen on `<dir>/s<name>` only and to allow base backups.
    pub fn init(
        bins: &PgBinaries,
        dir: &Path,
        name: &str,
        wal_segment_mb: u32,
    ) -> Result<ThrowawayCluster> {
        let cluster = Self::new(bins, dir, name, dir.join(name));
        (|| -> Result<()> {
            make_owned_dir(&cluster.socket_dir, 0o755)?;
            let wal_segsize = format!("--wal-segsize={wal_segment_mb}");
            let mut args: Vec<&OsStr> = vec![
                "-D".as_ref(),
                cluster.data_dir.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                // Locale and encoding from the caller's environment may be missing
                // or odd; the tests want predictable behaviour.
                "--locale=C".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-sync".as_ref(),
                wal_segsize.as_ref(),
            ];
            // initdb learnt --no-instructions in 14; 12 and 13 refuse the unknown option.
            if bins.major >= 14 {
                args.push("--no-instructions".as_ref());
            }
            run_as_owner(&bins.path("initdb"), &args, &cluster.work_dir)?;
            let conf = format!(
                "\n# Added by tidemark's throwaway cluster.\n\
                 listen_addresses = ''\n\
                 unix_socket_directories = {}\n\
                 port = {}\n\
                 wal_level = replica\n\
                 max_wal_senders = 4\n",
                quote(&cluster.socket_dir.to_string_lossy()),
                cluster.port
            );
            append(&cluster.data_dir.join("postgresql.conf"), &conf)
        })()
        .with_context(|| {
            format!(
                "initialise PostgreSQL cluster in {}",
                cluster.data_dir.display()
            )
        })?;
        Ok(cluster)
    }

    /// Adopts an existing data directory (e.g. a restored base backup) so it can be
    /// started here: points it at `<dir>/s<name>`, and fixes its ownership and mode.
    pub fn adopt(
        bins: &PgBinaries,
        dir: &Path,
        name: &str,
        data_dir: PathBuf,
    ) -> Result<ThrowawayCluster> {
        let cluster = Self::new(bins, dir, name, data_dir);
        (|| -> Result<()> {
            if !cluster.data_dir.join("PG_VERSION").is_file() {
                bail!("no PG_VERSION file: not a PostgreSQL data directory");
            }
            if !cluster.socket_dir.is_dir() {
                make_owned_dir(&cluster.socket_dir, 0o755)?;
            }
            // postgresql.auto.conf is read last, so these override whatever socket
            // settings the copied cluster had.
            cluster.configure(&[
                ("listen_addresses", ""),
                (
                    "unix_socket_directories",
                    &cluster.socket_dir.to_string_lossy(),
                ),
                ("port", &cluster.port.to_string()),
            ])?;
            give_to_owner_recursively(&cluster.data_dir)?;
            // The server refuses to start on a group/world-accessible data directory.
            fs::set_permissions(&cluster.data_dir, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("set mode 700 on {}", cluster.data_dir.display()))
        })()
        .with_context(|| {
            format!(
                "adopt PostgreSQL data directory {}",
                cluster.data_dir.display()
            )
        })?;
        Ok(cluster)
    }

    fn new(bins: &PgBinaries, dir: &Path, name: &str, data_dir: PathBuf) -> ThrowawayCluster {
        ThrowawayCluster {
            bins: bins.clone(),
            work_dir: dir.to_path_buf(),
            data_dir,
            socket_dir: dir.join(format!("s{name}")),
            log_file: dir.join(format!("{name}.log")),
            port: PORT,
            running: false,
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port number, which names the socket file (and the loopback TCP port, if any).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server log written by `pg_ctl -l`.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// A libpq conninfo string for this cluster.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.socket_dir.display(),
            self.port
        )
    }

    /// Appends `key = 'value'` lines to `postgresql.auto.conf`; they take effect at
    /// the next start.
    pub fn configure(&self, settings: &[(&str, &str)]) -> Result<()> {
        let path = self.data_dir.join("postgresql.auto.conf");
        let mut text = String::new();
        for (key, value) in settings {
            // Anything else could smuggle extra lines into the file.
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                bail!("invalid PostgreSQL setting name {key:?}");
            }
            if value.contains(['\n', '\r']) {
                bail!("value of PostgreSQL setting {key} contains a line break");
            }
            text.push_str(&format!("{key} = {}\n", quote(value)));
        }
        append(&path, &text).with_context(|| {
            format!(
                "configure PostgreSQL cluster in {}",
                self.data_dir.display()
            )
        })
    }

    /// Makes the server (from its next start) also listen on 127.0.0.1, on a free port that
    /// also renames its socket, and serve TLS there with `cert` and `key` (PEM), written as
    /// `server.crt` and `server.key` (0600, the owner's) in the data directory. Returns the port.
    /// `pg_hba.conf` is the caller's: add `hostssl`/`hostnossl` lines with [`Self::allow_first`].
    pub fn serve_tls_on_loopback(&mut self, cert: &str, key: &str) -> Result<u16> {
        self.listen_on_loopback()?;
        (|| -> Result<()> {
            write_owned_file(&self.data_dir.join("server.crt"), cert, 0o600)?;
            write_owned_file(&self.data_dir.join("server.key"), key, 0o600)?;
            self.configure(&[
                ("ssl", "on"),
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
            ])
        })()
        .with_context(|| format!("set up TLS for the cluster in {}", self.data_dir.display()))?;
        Ok(self.port)
    }

    /// Makes the server (from its next start) also listen on 127.0.0.1, on a free port that
    /// also renames its socket; TLS stays off. Returns the port.
    pub fn listen_on_loopback(&mut self) -> Result<u16> {
        let port = unused_port();
        self.configure(&[
            ("listen_addresses", "127.0.0.1"),
            ("port", &port.to_string()),
        ])?;
        self.port = port;
        Ok(port)
    }

    /// A libpq conninfo string for this cluster over TCP on 127.0.0.1 (after
    /// [`Self::listen_on_loopback`] or [`Self::serve_tls_on_loopback`]).
    pub fn tcp_conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// Puts `line` first in `pg_hba.conf`, where the first matching line decides; it takes
    /// effect at the next start.
    pub fn allow_first(&self, line: &str) -> Result<()> {
        let hba = self.data_dir.join("pg_hba.conf");
        let existing =
            fs::read_to_string(&hba).with_context(|| format!("read {}", hba.display()))?;
        // Rewritten in place, so the file keeps its owner (the cluster owner) even when we are root.
        fs::write(&hba, format!("{line}\n{existing}"))
            .with_context(|| format!("write {}", hba.display()))
    }

    /// Starts the server (`pg_ctl -w -t 120 start`), waiting until it accepts
    /// connections; the error includes the end of the server log.
    pub fn start(&mut self) -> Result<()> {
        let log = format!("--log={}", self.log_file.display());
        match self.pg_ctl(&["-w", "-t", "120", &log, "start"]) {
            Ok(_) => {
                self.running = true;
                Ok(())
            }
            Err(e) => {
                // pg_ctl may have given up waiting while the server runs on; make
                // sure Drop still stops it.
                self.running = self.data_dir.join("postmaster.pid").exists();
                Err(anyhow::anyhow!(
                    "{e:#}\nlast lines of {}:\n{}",
                    self.log_file.display(),
                    self.log_tail(20)
                )
                .context(format!(
                    "start PostgreSQL cluster in {}",
                    self.data_dir.display()
                )))
            }
        }
    }

    /// Stops the server (`pg_ctl -w -m fast stop`); does nothing if it is not running.
    /// Takes charge of a server started without [`start`](Self::start) (a test that runs
    /// `postgres` itself, under a tracer): [`stop`](Self::stop) and drop stop it as they stop
    /// one this cluster started.
    pub fn started_elsewhere(&mut self) {
        self.running = true;
    }

    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        self.pg_ctl_stop("fast")
            .with_context(|| format!("stop PostgreSQL cluster in {}", self.data_dir.display()))?;
        self.running = false;
        self.wait_for_helpers();
        Ok(())
    }

    /// Waits (a while) until the helpers Tidemark started for this server (work-ahead
    /// workers, prefetchers) have seen it stop and left, so its directory can be removed or
    /// restored into at once. One still running after the wait is the caller's to notice.
    fn wait_for_helpers(&self) {
        wait_for_helpers_to_leave(&self.data_dir.join("pg_wal"), Duration::from_secs(30));
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<String> {
        self.pg_ctl(&["-w", "-m", mode, "stop"])
    }

    /// Runs `pg_ctl -D <data directory> <args>` as the owner.
    fn pg_ctl(&self, args: &[&str]) -> Result<String> {
        let mut all: Vec<&OsStr> = vec!["-D".as_ref(), self.data_dir.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        run_as_owner(&self.bins.path("pg_ctl"), &all, &self.work_dir)
    }

    /// Runs `sql` with psql and returns its trimmed, unaligned, tuples-only output. Several
    /// statements in `sql` run as one implicit transaction, as PostgreSQL runs one query string.
    pub fn query(&self, sql: &str) -> Result<String> {
        self.execute_each(&[sql])
    }

    /// The single value `sql` returns, parsed (`SELECT failed_count FROM pg_stat_archiver`).
    pub fn query_value<T: std::str::FromStr>(&self, sql: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.query(sql)?;
        text.trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{sql} returned {text:?}, not a value of its type: {e}"))
    }

    /// The timeline of the latest checkpoint (`pg_control_checkpoint()`), as text: a promoted
    /// copy is on a new one once its end-of-recovery checkpoint is done.
    pub fn checkpoint_timeline(&self) -> Result<String> {
        self.query("SELECT timeline_id FROM pg_control_checkpoint()")
    }

    /// The cluster's system identifier (`pg_control_system()`), which names it in WAL and
    /// backups.
    pub fn system_identifier(&self) -> Result<u64> {
        let text = self.query("SELECT system_identifier FROM pg_control_system()")?;
        text.parse()
            .with_context(|| format!("parse system identifier {text:?}"))
    }

    /// Runs each statement as its own psql command (`-c` per statement), so each commits on its
    /// own, all in one session; returns the trimmed output of them all.
    pub fn execute_each(&self, statements: &[&str]) -> Result<String> {
        // Never prompt for a password (-w): there is no one to answer.
        let mut args = vec![
            "-X",
            "-A",
            "-t",
            "-q",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "postgres",
        ];
        for statement in statements {
            args.extend(["-c", statement]);
        }
        let out = self
            .run_client("psql", &args)
            .with_context(|| format!("query PostgreSQL cluster in {}", self.data_dir.display()))?;
        Ok(out.trim().to_string())
    }

    /// Creates tablespace `name` in `location` (a directory the owner can write) and returns its
    /// OID.
    pub fn create_tablespace(&self, name: &str, location: &Path) -> Result<String> {
        let location = location.to_string_lossy().replace('\'', "''");
        self.query(&format!("CREATE TABLESPACE {name} LOCATION '{location}'"))?;
        self.query(&format!(
            "SELECT oid FROM pg_tablespace WHERE spcname = '{name}'"
        ))
    }

    /// The client options that reach this cluster as `postgres`: its socket and port.
    fn connection(&self) -> [OsString; 6] {
        [
            "-h".into(),
            self.socket_dir.clone().into(),
            "-p".into(),
            self.port.to_string().into(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    /// Runs the PostgreSQL client `program` as the owner with [`Self::connection`], then `args`;
    /// returns its output.
    fn run_client(&self, program: &str, args: &[&str]) -> Result<String> {
        let connection = self.connection();
        let mut all: Vec<&OsStr> = connection.iter().map(OsString::as_os_str).collect();
        all.extend(args.iter().map(OsStr::new));
        run_as_owner(&self.bins.path(program), &all, &self.work_dir)
    }

    /// A `Command` that runs pgbench with `args` against this cluster's `postgres` database, as
    /// its owner.
    pub fn pgbench_command(&self, args: &[&str]) -> Command {
        let mut command = owner_command(&self.bins.path("pgbench"), &self.work_dir);
        command.args(self.connection()).args(args).arg("postgres");
        command
    }

    /// Runs pgbench with `args` against this cluster's `postgres` database to the end; returns
    /// its output, or an error with its exit status and messages.
    pub fn run_pgbench(&self, args: &[&str]) -> Result<String> {
        let mut all = args.to_vec();
        all.push("postgres");
        self.run_client("pgbench", &all)
    }

    /// Polls `query(sql)` every 100 ms until it returns `expected`; fails after
    /// `timeout`, saying what was last seen.
    pub fn wait_for(&self, sql: &str, expected: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.query(sql) {
                Ok(got) if got == expected => return Ok(()),
                Ok(got) => format!("{got:?}"),
                Err(e) => format!("error: {e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "waited {timeout:?} for `{sql}` to return {expected:?} on PostgreSQL \
                     cluster in {}; last saw {last}",
                    self.data_dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the server accepts connections and is out of recovery (e.g. a
    /// restored cluster that promotes at the end of recovery); fails after `timeout`
    /// or if the server exits, with the end of the server log.
    pub fn wait_for_promotion(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let fail = |why: String| {
            anyhow::anyhow!(
                "wait for PostgreSQL cluster in {} to finish recovery: {why}; last lines of {}:\n{}",
                self.data_dir.display(),
                self.log_file.display(),
                self.log_tail(20)
            )
        };
        loop {
            let last = match self.query("SELECT pg_is_in_recovery()") {
                Ok(got) if got == "f" => return Ok(()),
                Ok(got) => format!("pg_is_in_recovery() returned {got:?}"),
                Err(e) => {
                    // A server that stopped (recovery failure, or a `shutdown` target
                    // action) will never promote: say so now rather than at timeout.
                    if !self.data_dir.join("postmaster.pid").exists() {
                        return Err(fail(format!("the server is not running ({e:#})")));
                    }
                    format!("{e:#}")
                }
            };
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "timed out after {timeout:?}; last saw {last}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Takes a base backup into `dest` with `pg_basebackup -X none` (so restoring it
    /// needs archived WAL); `dest` must not exist and its parent must be writable by
    /// the cluster owner.
    pub fn base_backup(&self, dest: &Path) -> Result<()> {
        let dest_arg = dest
            .to_str()
            .context("a base backup's path must be UTF-8")?;
        let args = [
            "-D",
            dest_arg,
            "-X",
            "none",
            "-c",
            "fast",
            "--no-sync",
            "-w",
        ];
        self.run_client("pg_basebackup", &args).with_context(|| {
            format!(
                "take base backup of PostgreSQL cluster in {} into {}",
                self.data_dir.display(),
                dest.display()
            )
        })?;
        Ok(())
    }

    /// Whether the server is running, as tracked by `start` and `stop`.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        match fs::read(&self.log_file) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log_file.display()),
        }
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        if self.running {
            // Nothing to keep: an immediate stop is fastest, and errors cannot be
            // reported from Drop anyway.
            let _ = self.pg_ctl_stop("immediate");
            self.running = false;
        }
    }
}

/// Quotes a configuration value for postgresql.conf: single quotes, embedded ones
/// doubled.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn append(path: &Path, text: &str) -> Result<()> {
    // Appending keeps the file's owner (the cluster owner) even when we are root.
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("open {} for appending", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("append to {}", path.display()))
}
