//! Work-ahead archiving: while PostgreSQL waits for `tidemark-archive` on one segment, a worker
//! pushes every `.ready` WAL file in `pg_wal/archive_status` in parallel, so the calls that follow
//! find theirs durable already and return at once.
//!
//! The foreground call and the worker meet in a spool directory, one per stanza:
//! * `<name>.ok` is written by the worker only after the push of `<name>` returned, that is once
//!   the file is durable in the repository; it records the size, modification time and inode of
//!   the file it pushed, so it never vouches for a file that was since replaced;
//! * `<name>.error` holds the one line why the worker could not push `<name>`; the foreground
//!   call reports it and removes it, so the next call tries again;
//! * `worker.lock` is held (`flock`) by the one worker of the spool for as long as it runs.
//!
//! Losing any of these files loses nothing: a missing `.ok` means the file is pushed again,
//! and pushing an archived file again with identical content succeeds.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::helper_process::{HelperCommand, HelperLock, server_running, spool_dirs};
use super::push::push_wal_file;
use crate::pg::WalFileName;
use crate::repo::Stanza;
use crate::storage::durable;

/// How long a worker waits for new `.ready` files before it exits.
const WORKER_LINGER: Duration = Duration::from_secs(3);
/// How often an idle worker looks for new `.ready` files.
const WORKER_RESCAN: Duration = Duration::from_millis(5);
/// How often a waiting call looks for its `.ok`.
const WAIT_POLL: Duration = Duration::from_millis(1);
/// How long a call waits for a worker it started to take the lock.
const WORKER_START: Duration = Duration::from_secs(5);

/// What identifies the content of a WAL file without reading it: PostgreSQL never rewrites a
/// file it marked `.ready`, and a recycled file gets a new name and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    mtime_ns: i128,
    inode: u64,
}

impl Fingerprint {
    fn of(path: &Path) -> std::io::Result<Fingerprint> {
        let meta = fs::metadata(path)?;
        Ok(Fingerprint {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
        })
    }

    fn to_line(self) -> String {
        format!("{} {} {}\n", self.len, self.mtime_ns, self.inode)
    }

    fn parse(line: &str) -> Option<Fingerprint> {
        let mut fields = line.split_whitespace();
        Some(Fingerprint {
            len: fields.next()?.parse().ok()?,
            mtime_ns: fields.next()?.parse().ok()?,
            inode: fields.next()?.parse().ok()?,
        })
    }
}

/// The spool directory of one stanza.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The spool of `stanza`: under `spool_path` when configured, else in `pg_wal/.tidemark`,
    /// which base backups leave out (PostgreSQL never sends `pg_wal`'s contents).
    pub fn locate(spool_path: Option<&Path>, pg_wal: &Path, stanza: &str) -> Spool {
        let root = spool_path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| pg_wal.join(".tidemark"));
        Spool {
            dir: root.join("archive").join(stanza),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn create(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("create spool directory {}", self.dir.display()))
    }

    fn ok_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ok"))
    }

    fn error_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.error"))
    }

    pub fn lock(&self) -> HelperLock {
        HelperLock::new(self.dir.join("worker.lock"))
    }

    /// Records that `file` (at `path`) is durable in the repository.
    fn mark_ok(&self, name: &str, fingerprint: Fingerprint) -> std::io::Result<()> {
        let _ = fs::remove_file(self.error_path(name));
        // Not fsynced: a lost `.ok` only means the file is pushed again.
        durable::write_whole(&self.ok_path(name), fingerprint.to_line().as_bytes())
    }

    /// Whether a worker made the file at `path` durable, as it is now.
    fn is_ok(&self, name: &str, path: &Path) -> bool {
        let Ok(recorded) = fs::read_to_string(self.ok_path(name)) else {
            return false;
        };
        let Ok(now) = Fingerprint::of(path) else {
            return false;
        };
        Fingerprint::parse(&recorded) == Some(now)
    }

    /// The worker's error for `name`, removed so that the next call tries again.
    fn take_error(&self, name: &str) -> Option<String> {
        let path = self.error_path(name);
        let text = fs::read_to_string(&path).ok()?;
        let _ = fs::remove_file(&path);
        Some(text.trim().to_owned())
    }

    /// The spools of every stanza under `pg_wal` in the default place.
    pub fn all_in(pg_wal: &Path) -> Vec<Spool> {
        spool_dirs(pg_wal, "archive")
            .into_iter()
            .map(|dir| Spool { dir })
            .collect()
    }

    /// Whether a worker holds the spool's lock.
    pub fn worker_running(&self) -> bool {
        self.lock().is_held()
    }
}

/// The WAL files PostgreSQL has marked ready to archive, history files first, then in name order
/// (oldest first), as PostgreSQL itself would ask for them.
pub fn ready_files(pg_wal: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(pg_wal.join("archive_status"))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".ready")?.to_owned())
        })
        .filter(|name| WalFileName::parse(name).is_ok())
        .collect();
    names.sort_by_key(|name| (!name.ends_with(".history"), name.clone()));
    Ok(names)
}

/// How the worker is set up.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub pg_wal: PathBuf,
    pub spool: Spool,
    /// Pushes at once.
    pub parallel: usize,
}

/// Runs the worker of `settings.spool` until no `.ready` file has been left for a while; returns
/// at once if another worker holds the lock. Each push is durable before its `.ok` is written.
pub fn run_worker(stanza: &Stanza<'_>, settings: &WorkerSettings) -> anyhow::Result<()> {
    let spool = &settings.spool;
    spool.create()?;
    let Some(_lock) = spool.lock().try_take()? else {
        return Ok(());
    };
    remove_stale(spool, &settings.pg_wal);
    let mut idle_since = Instant::now();
    loop {
        let queue: Vec<String> = ready_files(&settings.pg_wal)
            .with_context(|| format!("read {}/archive_status", settings.pg_wal.display()))?
            .into_iter()
            .filter(|name| {
                !spool.error_path(name).exists() && !spool.is_ok(name, &settings.pg_wal.join(name))
            })
            .collect();
        if queue.is_empty() {
            // Nothing will become ready once the server is gone: leave at once, so that a
            // stopped cluster's directory has no process of ours in it.
            if idle_since.elapsed() > WORKER_LINGER || !server_running(&settings.pg_wal) {
                remove_stale(spool, &settings.pg_wal);
                return Ok(());
            }
            std::thread::sleep(WORKER_RESCAN);
            continue;
        }
        push_all(stanza, settings, &queue);
        idle_since = Instant::now();
    }
}

/// Pushes `queue` with `settings.parallel` pushes at once, each ending in a `.ok` or `.error`.
fn push_all(stanza: &Stanza<'_>, settings: &WorkerSettings, queue: &[String]) {
    let next = AtomicUsize::new(0);
    let failed_to_record = Mutex::new(None::<String>);
    std::thread::scope(|scope| {
        for _ in 0..settings.parallel.min(queue.len()) {
            scope.spawn(|| {
                while let Some(name) = queue.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let path = settings.pg_wal.join(name);
                    // Taken before the push: a file replaced meanwhile is not vouched for.
                    let fingerprint = Fingerprint::of(&path);
                    let pushed = fingerprint
                        .map_err(anyhow::Error::new)
                        .and_then(|fingerprint| push_wal_file(stanza, &path).map(|_| fingerprint));
                    let recorded = match pushed {
                        Ok(fingerprint) => settings.spool.mark_ok(name, fingerprint),
                        Err(e) => durable::write_whole(
                            &settings.spool.error_path(name),
                            format!("archive {}: {e:#}", path.display()).as_bytes(),
                        ),
                    };
                    if let Err(e) = recorded {
                        *failed_to_record.lock().expect("not poisoned") = Some(format!(
                            "cannot write to spool {}: {e}",
                            settings.spool.dir().display()
                        ));
                    }
                }
            });
        }
    });
    if let Some(problem) = failed_to_record.into_inner().expect("not poisoned") {
        tracing::warn!("{problem}");
    }
}

/// Removes `.ok` and `.error` files of WAL files PostgreSQL no longer wants archived.
fn remove_stale(spool: &Spool, pg_wal: &Path) {
    let Ok(ready) = ready_files(pg_wal) else {
        return;
    };
    let Ok(entries) = fs::read_dir(spool.dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let name = file_name
            .strip_suffix(".ok")
            .or_else(|| file_name.strip_suffix(".error"));
        if name.is_some_and(|name| !ready.iter().any(|r| r == name)) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// What the foreground call found.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The worker made the file durable.
    Archived,
    /// The worker could not push it; the message says why.
    Failed(String),
    /// No worker could take the file (it is not marked `.ready`, or workers kept exiting):
    /// the call pushes it itself.
    PushYourself,
}

/// The foreground side: waits until the worker has made `name` (at `path`, in `pg_wal`)
/// durable, starting a worker when none runs.
pub fn wait_for_worker(
    spool: &Spool,
    pg_wal: &Path,
    name: &str,
    path: &Path,
    worker: &HelperCommand,
) -> anyhow::Result<Waited> {
    if spool.is_ok(name, path) {
        return Ok(Waited::Archived);
    }
    if let Some(error) = spool.take_error(name) {
        return Ok(Waited::Failed(error));
    }
    if !pg_wal
        .join("archive_status")
        .join(format!("{name}.ready"))
        .exists()
    {
        return Ok(Waited::PushYourself);
    }
    spool.create()?;
    // A worker may be lingering, about to exit; a new one is started whenever none holds the lock.
    for _ in 0..3 {
        let mut started = None;
        if !spool.worker_running() {
            started = Some(worker.spawn("work-ahead worker", &spool.dir().join("worker.log"))?);
        }
        let mut waiting_for_start = Instant::now();
        loop {
            if spool.is_ok(name, path) {
                return Ok(Waited::Archived);
            }
            if let Some(error) = spool.take_error(name) {
                return Ok(Waited::Failed(error));
            }
            std::thread::sleep(WAIT_POLL);
            if spool.worker_running() {
                waiting_for_start = Instant::now();
                continue;
            }
            // No worker holds the lock: one that just started may not have taken it yet.
            let child_gone = match started.as_mut() {
                Some(child) => child.try_wait()?.is_some(),
                None => true,
            };
            if child_gone || waiting_for_start.elapsed() > WORKER_START {
                break;
            }
        }
        // The worker ended without a word about this file: check once more, then start another.
        if spool.is_ok(name, path) {
            return Ok(Waited::Archived);
        }
    }
    Ok(Waited::PushYourself)
}
