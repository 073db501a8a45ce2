//! The background helpers of the hot paths (the work-ahead worker of `tidemark-archive`, the
//! prefetcher of `tidemark-restore`): how a call starts one, detached, and the lock file that
//! keeps it to one per spool, where the spools are, and whether their server still runs.

use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustix::fs::FlockOperation;

/// The program and arguments that run a helper.
#[derive(Clone, Debug)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub arg0: String,
    pub args: Vec<OsString>,
}

impl HelperCommand {
    /// Starts the helper in its own process group (so signals PostgreSQL sends the process
    /// that called us do not reach it), its log appended to `log_path`.
    pub fn spawn(&self, what: &str, log_path: &Path) -> anyhow::Result<std::process::Child> {
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        // Best effort: a separator makes a helper's lines findable in the log.
        let _ = writeln!(log, "-- {what} started by process {}", std::process::id());
        std::process::Command::new(&self.program)
            .arg0(&self.arg0)
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => anyhow::anyhow!(
                    "cannot start the {what} {}: it does not exist",
                    self.program.display()
                ),
                _ => anyhow::Error::new(e)
                    .context(format!("start the {what} {}", self.program.display())),
            })
    }
}

/// The file a helper holds `flock`ed for as long as it runs.
#[derive(Clone, Debug)]
pub struct HelperLock {
    path: PathBuf,
}

impl HelperLock {
    pub fn new(path: PathBuf) -> HelperLock {
        HelperLock { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> std::io::Result<fs::File> {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.path)
    }

    /// Takes the lock for this process: `None` when another helper holds it. The lock lasts as
    /// long as the returned file is open.
    pub fn try_take(&self) -> anyhow::Result<Option<fs::File>> {
        let file = self
            .open()
            .with_context(|| format!("open {}", self.path.display()))?;
        Ok(
            rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
                .is_ok()
                .then_some(file),
        )
    }

    /// Whether a helper holds the lock.
    pub fn is_held(&self) -> bool {
        let Ok(file) = self.open() else {
            return false;
        };
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared).is_err()
    }
}

/// The spool directories of every stanza for helpers of `kind` (`"archive"`, `"restore"`) in
/// their default place, `pg_wal/.tidemark/<kind>/<stanza>`.
pub fn spool_dirs(pg_wal: &Path, kind: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(pg_wal.join(".tidemark").join(kind)) else {
        return Vec::new();
    };
    entries.flatten().map(|entry| entry.path()).collect()
}

/// Whether the server whose WAL directory is `pg_wal` runs: its data directory has a
/// `postmaster.pid`. Helpers leave once it is gone.
pub fn server_running(pg_wal: &Path) -> bool {
    pg_wal
        .parent()
        .is_some_and(|data_dir| data_dir.join("postmaster.pid").exists())
}
