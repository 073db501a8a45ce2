//! Work-ahead archiving: while PostgreSQL waits for `tidemark-archive` on one segment, a worker
//! pushes every `.ready` WAL file in `pg_wal/archive_status` in parallel, so the calls that follow
//! find theirs durable already and return at once.
//!
//! The foreground call and the worker meet in a spool directory, one per stanza ([`Spool`]). The
//! worker only ever saves time: a call that cannot use it (the spool cannot be written, the lock
//! cannot be checked, no worker starts or answers in time) pushes its file itself, which is
//! always correct, since pushing an archived file again with identical content succeeds. For the
//! same reason losing any spool file loses nothing: a missing `.ok` means the file is pushed
//! again.

mod spool;
mod worker;

use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::helper_process::{HelperCommand, last_log_line};
use crate::pg::WalFileName;
pub use spool::{PushedTo, Spool};
pub use worker::{WorkerSettings, run_worker};

/// How often a waiting call looks for its `.ok`.
const WAIT_POLL: Duration = Duration::from_millis(1);
/// How long a call waits for the worker's answer before it pushes its file itself.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Workers a call starts at most; each that exits without an answer for it may have been one
/// that was lingering, about to exit, or have lost the lock to another.
const MAX_STARTS: usize = 3;

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

/// What the foreground call found.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The worker made the file durable.
    Archived,
    /// The worker's attempt at the file, made while the call waited, failed; the message says
    /// why.
    Failed(String),
    /// The file is not marked `.ready` (a call by hand): the call pushes it itself.
    PushYourself,
}

/// The foreground side: waits until the worker has made `name` (at `path`, in `pg_wal`)
/// durable in `to`, starting a worker when none runs. An error says why the worker cannot be
/// used; the call then pushes the file itself.
pub fn wait_for_worker(
    spool: &Spool,
    pg_wal: &Path,
    name: &str,
    path: &Path,
    to: &PushedTo,
    worker: &HelperCommand,
) -> anyhow::Result<Waited> {
    if spool.is_ok(name, path, to) {
        return Ok(Waited::Archived);
    }
    if !pg_wal
        .join("archive_status")
        .join(format!("{name}.ready"))
        .exists()
    {
        return Ok(Waited::PushYourself);
    }
    spool.create()?;
    // An error answers one attempt, not the file: one left from before this call (an outage
    // since over) goes, and the worker tries the file again.
    spool.forget_error(name)?;
    let lock = spool.lock();
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut started: Option<Child> = None;
    let mut starts = 0;
    loop {
        if spool.is_ok(name, path, to) {
            return Ok(Waited::Archived);
        }
        if let Some(error) = spool.take_error(name) {
            return Ok(Waited::Failed(error));
        }
        if !lock.held()? {
            check_started(spool, &mut started)?;
            // The worker may have answered just before it left.
            if spool.is_ok(name, path, to) {
                return Ok(Waited::Archived);
            }
            if started.is_none() {
                if starts == MAX_STARTS {
                    bail!("{MAX_STARTS} workers in a row exited without pushing {name}");
                }
                started = Some(worker.spawn("work-ahead worker", &spool.log_path())?);
                starts += 1;
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the worker did not push {name} within {} s",
                WAIT_LIMIT.as_secs()
            );
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// Looks at the worker this call started, if any: forgets it once it has exited, and fails if
/// it failed, with the last line of its log (its error line).
fn check_started(spool: &Spool, started: &mut Option<Child>) -> anyhow::Result<()> {
    let Some(child) = started.as_mut() else {
        return Ok(());
    };
    let Some(status) = child.try_wait()? else {
        // Still starting up: it has not taken the lock yet.
        return Ok(());
    };
    *started = None;
    if !status.success() {
        let log = spool.log_path();
        let said = last_log_line(&log).unwrap_or_else(|| "nothing".to_owned());
        bail!(
            "the worker failed ({status}); the last line of {} says: {said}",
            log.display()
        );
    }
    Ok(())
}
