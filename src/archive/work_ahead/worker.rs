//! The work-ahead worker: pushes every `.ready` WAL file, a few at once, recording each result in
//! the spool, and leaves when there is nothing left to do, when its server stopped, when its
//! configuration file changed, when its log outgrew its bound, or when it cannot record what it
//! did.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::ready_files;
use super::spool::{Fingerprint, PushedTo, Spool};
use crate::archive::helper_process::{ConfigSnapshot, reason_to_leave, server_running};
use crate::archive::push::push_wal_file;
use crate::repo::Stanza;

/// How long a worker waits for new `.ready` files before it exits.
const WORKER_LINGER: Duration = Duration::from_secs(3);
/// How often an idle worker looks for new `.ready` files.
const WORKER_RESCAN: Duration = Duration::from_millis(5);
/// How long a file whose push failed waits before the worker tries it again on its own; a call
/// for it has it tried at once.
const RETRY_FAILED: Duration = Duration::from_secs(10);

/// How the worker is set up.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub pg_wal: PathBuf,
    pub spool: Spool,
    /// Pushes at once.
    pub parallel: usize,
    /// The configuration file as the worker read it.
    pub config: ConfigSnapshot,
}

impl WorkerSettings {
    /// Why the worker must stop now, if it must.
    fn reason_to_stop(&self) -> Option<&'static str> {
        if !server_running(&self.pg_wal) {
            // Nothing becomes ready once the server is gone, and a stopped cluster's directory
            // must have no process of ours working in it.
            Some("the server stopped")
        } else {
            reason_to_leave(&self.config)
        }
    }
}

/// Runs the worker of `settings.spool`; returns at once if another worker holds the lock. Each
/// push is durable before its `.ok` is written. An error means the spool could not be used: the
/// calls then push their files themselves.
pub fn run_worker(stanza: &Stanza<'_>, settings: &WorkerSettings) -> anyhow::Result<()> {
    let spool = &settings.spool;
    spool.create()?;
    let Some(_lock) = spool.lock().try_take()? else {
        return Ok(());
    };
    spool.check_writable()?;
    spool.remove_abandoned();
    let to = PushedTo::of(stanza);
    let read_ready = || {
        ready_files(&settings.pg_wal)
            .with_context(|| format!("read {}/archive_status", settings.pg_wal.display()))
    };
    let mut idle_since = Instant::now();
    loop {
        if let Some(reason) = settings.reason_to_stop() {
            tracing::info!("work-ahead worker leaves: {reason}");
            break;
        }
        let ready = read_ready()?;
        spool.remove_stale(&ready);
        let queue: Vec<String> = ready
            .into_iter()
            .filter(|name| {
                !spool.is_ok(name, &settings.pg_wal.join(name), &to)
                    && !spool.failed_within(name, RETRY_FAILED)
            })
            .collect();
        if queue.is_empty() {
            if idle_since.elapsed() > WORKER_LINGER {
                break;
            }
            std::thread::sleep(WORKER_RESCAN);
            continue;
        }
        push_all(stanza, settings, &to, &queue)?;
        idle_since = Instant::now();
    }
    spool.remove_stale(&read_ready()?);
    Ok(())
}

/// Pushes `queue` with `settings.parallel` pushes at once, each ending in a `.ok` or `.error`.
/// Stops taking new files as soon as the worker must stop, and fails when a result could not be
/// recorded.
fn push_all(
    stanza: &Stanza<'_>,
    settings: &WorkerSettings,
    to: &PushedTo,
    queue: &[String],
) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let unrecorded = Mutex::new(None::<anyhow::Error>);
    std::thread::scope(|scope| {
        for _ in 0..settings.parallel.min(queue.len()) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(name) = queue.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    // Checked between pushes, not only between batches: a backlog must not
                    // keep a worker pushing for a server that is gone.
                    if settings.reason_to_stop().is_some() {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    if let Err(e) = push_one(stanza, settings, to, name) {
                        stop.store(true, Ordering::Relaxed);
                        *unrecorded.lock().expect("not poisoned") = Some(e);
                    }
                }
            });
        }
    });
    match unrecorded.into_inner().expect("not poisoned") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Pushes `name` and records the result; fails only when the result could not be recorded.
fn push_one(
    stanza: &Stanza<'_>,
    settings: &WorkerSettings,
    to: &PushedTo,
    name: &str,
) -> anyhow::Result<()> {
    let path = settings.pg_wal.join(name);
    // Taken before the push: a file replaced meanwhile is not vouched for.
    let pushed = Fingerprint::of(&path)
        .map_err(anyhow::Error::new)
        .and_then(|fingerprint| push_wal_file(stanza, &path).map(|_| fingerprint));
    match pushed {
        Ok(fingerprint) => settings.spool.mark_ok(name, fingerprint, to),
        Err(e) => settings
            .spool
            .mark_error(name, &format!("archive {}: {e:#}", path.display())),
    }
}
