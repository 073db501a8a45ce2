//! The background helpers of the hot paths (the work-ahead worker of `tidemark-archive`, the
//! prefetcher of `tidemark-restore`): how a call starts one, detached, with its log kept bounded;
//! what a helper does first; the lock file that keeps it to one per spool; where the spools are;
//! and when a helper must leave (its server stopped, its configuration file changed, its log
//! outgrew its bound).

use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustix::fs::FlockOperation;

use crate::config::{ConfigChoice, Selected};

/// How large a helper's log may grow. A call that starts a helper moves a larger log aside to
/// `<log>.old` (replacing the one there), and a running helper whose log passed it leaves so the
/// next call does that: at most about twice this much log per helper is ever kept.
pub const LOG_LIMIT: u64 = 4 << 20;

/// The program and arguments that run a helper.
#[derive(Clone, Debug)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub arg0: String,
    pub args: Vec<OsString>,
}

impl HelperCommand {
    /// How a call starts its helper: this program as `arg0`, with the call's configuration and
    /// stanza, and `flag` naming the `pg_wal` directory.
    pub fn this_program(
        selected: &Selected,
        arg0: &str,
        flag: &str,
        pg_wal: &Path,
    ) -> anyhow::Result<HelperCommand> {
        let program = std::env::current_exe().context("find this program to start its helper")?;
        let config_path = std::path::absolute(&selected.config_path)
            .with_context(|| format!("resolve {}", selected.config_path.display()))?;
        Ok(HelperCommand {
            program,
            arg0: arg0.to_owned(),
            args: vec![
                "--config".into(),
                config_path.into_os_string(),
                "--stanza".into(),
                selected.stanza_name.clone().into(),
                flag.into(),
                pg_wal.as_os_str().to_owned(),
            ],
        })
    }

    /// Starts the helper in its own process group (so signals PostgreSQL sends the process
    /// that called us do not reach it), its log appended to `log_path` (moved aside first when
    /// it outgrew [`LOG_LIMIT`]).
    pub fn spawn(&self, what: &str, log_path: &Path) -> anyhow::Result<std::process::Child> {
        rotate_outgrown_log(log_path)
            .with_context(|| format!("keep the log {} under its limit", log_path.display()))?;
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

/// Moves the log at `path` to `<path>.old` when it is larger than [`LOG_LIMIT`], or empties it
/// when it cannot be moved (its directory is not writable). Two calls doing this at once lose at
/// worst the older log, which is only ever read by people.
fn rotate_outgrown_log(path: &Path) -> std::io::Result<()> {
    match fs::metadata(path) {
        Ok(meta) if meta.len() > LOG_LIMIT => {}
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => return Ok(()),
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".old");
    match fs::rename(path, &old) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(_) => fs::OpenOptions::new().write(true).open(path)?.set_len(0),
    }
}

/// Why a helper must leave although its server may still need it, if it must: its
/// configuration file changed (it would go on serving the old repository), or its log outgrew
/// [`LOG_LIMIT`]. Either way the next call starts a new one, which reads the file anew and moves
/// the log aside.
pub fn reason_to_leave(config: &ConfigSnapshot) -> Option<&'static str> {
    if config.changed() {
        Some("the configuration file changed; the next call starts a helper that reads it")
    } else if own_log_outgrown() {
        Some("its log outgrew its limit; the next call moves it aside and starts another")
    } else {
        None
    }
}

/// Whether this helper's own log, its stderr, has outgrown [`LOG_LIMIT`].
fn own_log_outgrown() -> bool {
    rustix::fs::fstat(std::io::stderr()).is_ok_and(|stat| {
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile
            && u64::try_from(stat.st_size).is_ok_and(|size| size > LOG_LIMIT)
    })
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

    /// `flock`s the lock file without waiting: `Ok(true)` when locked, `Ok(false)` when a helper
    /// holds it. Any other failure is an error, never taken for "held": on a file system that
    /// does not lock (NFS without lockd answers ENOLCK) nobody could ever hold it.
    fn try_flock(&self, file: &fs::File, operation: FlockOperation) -> anyhow::Result<bool> {
        match rustix::fs::flock(file, operation) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(errno) => Err(std::io::Error::from(errno))
                .with_context(|| format!("lock {}", self.path.display())),
        }
    }

    /// Takes the lock for this process: `None` when another helper holds it. The lock lasts as
    /// long as the returned file is open.
    pub fn try_take(&self) -> anyhow::Result<Option<fs::File>> {
        let file = self
            .open()
            .with_context(|| format!("open {}", self.path.display()))?;
        Ok(self
            .try_flock(&file, FlockOperation::NonBlockingLockExclusive)?
            .then_some(file))
    }

    /// Whether a helper holds the lock; an error when that cannot be told (the lock file cannot
    /// be opened, or the file system cannot lock it). No directory means no helper.
    pub fn held(&self) -> anyhow::Result<bool> {
        let file = match self.open() {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(e).with_context(|| format!("open {}", self.path.display()));
            }
        };
        Ok(!self.try_flock(&file, FlockOperation::NonBlockingLockShared)?)
    }

    /// Whether a helper holds the lock, as far as can be told: one that cannot be checked
    /// counts as not held, so a caller that would wait for its holder does not wait for
    /// nobody, and one that starts a helper meets the error in [`HelperLock::try_take`].
    pub fn is_held(&self) -> bool {
        self.held().unwrap_or(false)
    }
}

/// The directory a hot-path file lives in, absolute: a helper outlives the call and runs
/// elsewhere than its working directory.
pub fn absolute_parent(path: &Path) -> Option<PathBuf> {
    let parent = path.parent()?;
    std::path::absolute(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    })
    .ok()
}

/// What a helper (work-ahead worker, prefetcher) does first: notes its configuration file as it
/// reads it (taken before loading, so that a change in between is seen as one), selects its
/// stanza, and leaves the data directory. A helper outlives the call that started it and must
/// not keep the data directory (in a failover, maybe a file system about to be unmounted) busy;
/// every path it uses from here on is absolute, `pg_wal` included.
pub fn start_helper(
    choice: &ConfigChoice,
    pg_wal: &Path,
) -> anyhow::Result<(ConfigSnapshot, Selected, PathBuf)> {
    let config_path = std::path::absolute(choice.config_path())
        .context("resolve the configuration file's path")?;
    let pg_wal =
        std::path::absolute(pg_wal).with_context(|| format!("resolve {}", pg_wal.display()))?;
    let config = ConfigSnapshot::take(&config_path)?;
    let selected = choice.select()?;
    std::env::set_current_dir("/").context("change the working directory to /")?;
    Ok((config, selected, pg_wal))
}

/// The configuration file as a helper read it when it started. A helper outlives the call that
/// started it; once the file says something else (another repository, say), the helper leaves
/// so that the next call starts one that reads it anew.
#[derive(Clone, Debug)]
pub struct ConfigSnapshot {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl ConfigSnapshot {
    /// Reads the file at `path`; take it before loading the configuration from it, so that a
    /// change in between is seen as one.
    pub fn take(path: &Path) -> anyhow::Result<ConfigSnapshot> {
        let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
        Ok(ConfigSnapshot {
            path: path.to_owned(),
            bytes,
        })
    }

    /// Whether the file no longer holds what it held (or cannot be read any more).
    pub fn changed(&self) -> bool {
        fs::read(&self.path).map_or(true, |now| now != self.bytes)
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

/// The last line of the log at `path`, for saying why a helper failed: it ends with the
/// helper's error line. Only the end of the file is read.
pub fn last_log_line(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 4096;
    let mut file = fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_over_the_limit_is_moved_aside_and_a_smaller_one_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("worker.log");
        let old = dir.path().join("worker.log.old");
        fs::write(&log, b"short\n").unwrap();
        rotate_outgrown_log(&log).unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"short\n");
        assert!(!old.exists());

        let big = vec![b'x'; LOG_LIMIT as usize + 1];
        fs::write(&log, &big).unwrap();
        rotate_outgrown_log(&log).unwrap();
        assert!(!log.exists(), "the outgrown log was moved");
        assert_eq!(fs::read(&old).unwrap().len(), big.len());
        rotate_outgrown_log(&log).unwrap();
    }

    #[test]
    fn a_changed_or_vanished_configuration_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tidemark.toml");
        fs::write(&path, "[repo]\npath = \"/a\"\n").unwrap();
        let snapshot = ConfigSnapshot::take(&path).unwrap();
        assert!(!snapshot.changed());
        fs::write(&path, "[repo]\npath = \"/b\"\n").unwrap();
        assert!(snapshot.changed());
        fs::remove_file(&path).unwrap();
        assert!(snapshot.changed());
    }

    #[test]
    fn the_last_line_of_a_log_is_its_last_non_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("worker.log");
        let mut text = "x".repeat(10_000);
        text.push_str("\nprogram: ERROR: the reason\n\n");
        fs::write(&log, text).unwrap();
        assert_eq!(
            last_log_line(&log).as_deref(),
            Some("program: ERROR: the reason")
        );
        assert_eq!(last_log_line(&dir.path().join("none")), None);
    }

    #[test]
    fn a_held_lock_is_seen_and_a_missing_directory_holds_none() {
        let dir = tempfile::tempdir().unwrap();
        let lock = HelperLock::new(dir.path().join("worker.lock"));
        assert!(!lock.held().unwrap());
        let taken = lock.try_take().unwrap().expect("nobody holds it");
        assert!(lock.held().unwrap());
        assert!(lock.try_take().unwrap().is_none());
        drop(taken);
        assert!(!lock.held().unwrap());
        let nowhere = HelperLock::new(dir.path().join("gone").join("worker.lock"));
        assert!(!nowhere.held().unwrap());
    }
}
