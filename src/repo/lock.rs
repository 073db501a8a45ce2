//! Who is backing up or expiring a stanza now: lock objects under `<stanza>/lock/`, what makes
//! garbage collection safe beside running backups (docs/repository-format.md, "Locks").
//!
//! A running backup stores and reuses chunks long before its record lists them, so an expire
//! must not sweep while one runs, and a backup must not start while a sweep runs. Each holds a
//! lock object naming its host, process and that process's start time, renewed every minute
//! (`held`); a lock whose holder is gone (`record::liveness`) is deleted by whoever finds it.
//! Every lock is stored *before* its holder lists the others, so of two that start at once,
//! at least one sees the other. Archive pushes take no lock.

mod held;
mod record;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

pub use held::HeldLock;
pub use record::{
    Liveness, LockKind, LockRecord, RENEW_EVERY, STALE_AFTER, liveness, process_start_time,
};

use super::{Repository, Stanza, layout, limits};
use crate::storage::{Cancel, ObjectKey};

/// How long a backup waits for a running expire to end before it gives up.
pub const BACKUP_WAITS_AT_MOST: Duration = Duration::from_secs(30 * 60);

/// How long the expire that wins a tie waits for the ones that lost it to withdraw.
const WITHDRAWAL_WAIT: Duration = Duration::from_secs(30);

/// How often a waiting process looks at the locks again.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// How often listing the locks is started again when an object vanishes while being read.
const LIST_ATTEMPTS: usize = 10;

/// A live lock, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// Its newest object.
    pub key: ObjectKey,
    /// `<kind>-<host>-<pid>-<nanos>`, shared by all its renewals.
    pub name: String,
    pub record: LockRecord,
}

impl LockInfo {
    /// "host H, pid P, since T".
    pub fn holder(&self) -> String {
        self.record.holder()
    }
}

/// How long waits for other locks last and how often they look (shortened by tests).
#[derive(Clone, Copy, Debug)]
struct Waits {
    poll: Duration,
    max: Duration,
}

/// The locks of one stanza's backups and expires, or one source's snapshots and expires: the
/// objects under `<owner>/lock/`.
pub struct LockScope<'r> {
    repo: &'r Repository,
    /// The key prefix the locks live under: the stanza's name, or `_source/<name>`.
    owner: String,
    /// What is locked, for messages: "stanza 'main'", "source 'cache'".
    what: String,
}

impl Stanza<'_> {
    /// The locks of this stanza's backups and expires.
    pub fn locks(&self) -> LockScope<'_> {
        LockScope::new(
            self.repository(),
            self.name(),
            format!("stanza '{}'", self.name()),
        )
    }
}

impl<'r> LockScope<'r> {
    pub fn new(repo: &'r Repository, owner: &str, what: String) -> LockScope<'r> {
        LockScope {
            repo,
            owner: owner.to_owned(),
            what,
        }
    }

    /// Takes a backup lock, then waits (at most [`BACKUP_WAITS_AT_MOST`], looking every second)
    /// while a live expire lock exists; fails, naming the expire, when it is still there.
    pub fn lock_for_backup(&self) -> anyhow::Result<HeldLock> {
        let waits = Waits {
            poll: POLL_EVERY,
            max: BACKUP_WAITS_AT_MOST,
        };
        self.lock_for_backup_waiting(waits)
    }

    /// Takes the expire lock, or refuses while another expire of the stanza runs.
    pub fn lock_for_expire(&self) -> anyhow::Result<HeldLock> {
        let held = self.take_lock(LockKind::Expire, RENEW_EVERY)?;
        let waits = Waits {
            poll: POLL_EVERY / 5,
            max: WITHDRAWAL_WAIT,
        };
        self.settle_expire(held, waits)
    }

    /// Live backup locks now (stale ones are deleted, with a log line, and not returned).
    pub fn running_backups(&self) -> anyhow::Result<Vec<LockInfo>> {
        self.live_locks(LockKind::Backup, None)
    }

    fn lock_for_backup_waiting(&self, waits: Waits) -> anyhow::Result<HeldLock> {
        let held = self.take_lock(LockKind::Backup, RENEW_EVERY)?;
        let deadline = Instant::now() + waits.max;
        let mut said_so = false;
        loop {
            let expires = self.live_locks(LockKind::Expire, None)?;
            let Some(expire) = expires.first() else {
                return Ok(held);
            };
            if Instant::now() >= deadline {
                bail!(
                    "take the backup lock of {}: an expire has held its lock for {} min ({}): wait for it to end and back up again; if that process is gone and its host down, delete {} in {}",
                    self.what,
                    waits.max.as_secs() / 60,
                    expire.holder(),
                    expire.key,
                    self.repo.storage().location()
                );
            }
            if !said_so {
                tracing::info!(
                    "an expire of {} is running ({}); the backup waits for it to end (at most {} min)",
                    self.what,
                    expire.holder(),
                    waits.max.as_secs() / 60
                );
                said_so = true;
            }
            std::thread::sleep(waits.poll);
        }
    }

    /// Keeps `held`, an expire lock just stored, if it is the only live one or wins the tie:
    /// the earliest by (taken, name). The winner waits (bounded) for the others to withdraw, as
    /// losers do at once: one that stays is an expire already running that listed the locks
    /// before ours was stored (a clock behind made ours look earlier), and we refuse.
    fn settle_expire(&self, held: HeldLock, waits: Waits) -> anyhow::Result<HeldLock> {
        let mine = held.record();
        let refuse = |other: &LockInfo| {
            anyhow::anyhow!(
                "another expire of {} is running ({}): wait for it to end",
                self.what,
                other.holder()
            )
        };
        let deadline = Instant::now() + waits.max;
        loop {
            let others = self.live_locks(LockKind::Expire, Some(held.name()))?;
            let Some(first) = others.first() else {
                return Ok(held);
            };
            if precedes(&first.record, &first.name, &mine, held.name())? {
                return Err(refuse(first));
            }
            if Instant::now() >= deadline {
                return Err(refuse(first));
            }
            std::thread::sleep(waits.poll);
        }
    }

    fn take_lock(&self, kind: LockKind, renew_every: Duration) -> anyhow::Result<HeldLock> {
        let record = LockRecord::for_process(kind, std::process::id(), SystemTime::now())?;
        self.take_lock_as(record, renew_every)
    }

    /// Stores `record` as a new lock held by this process.
    fn take_lock_as(&self, record: LockRecord, renew_every: Duration) -> anyhow::Result<HeldLock> {
        let repo = self.repo;
        let kind = record.kind;
        HeldLock::take(
            repo.shared_storage(),
            repo.codec().clone(),
            &self.owner,
            record,
            renew_every,
        )
        .with_context(|| format!("take the {kind} lock of {}", self.what))
    }

    /// The live locks of `kind` but the one named `except`, earliest (taken, name) first. Stale
    /// ones are deleted and logged.
    fn live_locks(&self, kind: LockKind, except: Option<&str>) -> anyhow::Result<Vec<LockInfo>> {
        let host = crate::storage::durable::host_name();
        let now = SystemTime::now();
        let mut live = Vec::new();
        for lock in self.list_locks()? {
            if lock.record.kind != kind || Some(lock.name.as_str()) == except {
                continue;
            }
            match liveness(&lock.record, host, now)? {
                Liveness::Live => live.push(lock),
                Liveness::Stale(why) => self.delete_stale(&lock, &why)?,
            }
        }
        let mut keyed = Vec::with_capacity(live.len());
        for lock in live {
            keyed.push((record::parse_time(&lock.record.taken)?, lock));
        }
        keyed.sort_by(|(a, x), (b, y)| (a, &x.name).cmp(&(b, &y.name)));
        Ok(keyed.into_iter().map(|(_, lock)| lock).collect())
    }

    /// Every lock, from its newest renewal. An object that vanishes between the listing and
    /// the read was a renewal replaced or a lock released: the listing is started again.
    fn list_locks(&self) -> anyhow::Result<Vec<LockInfo>> {
        for _ in 0..LIST_ATTEMPTS {
            if let Some(locks) = self.try_list_locks()? {
                return Ok(locks);
            }
        }
        bail!(
            "read the locks of {} in {}: they changed under every one of {LIST_ATTEMPTS} readings; try again",
            self.what,
            self.repo.storage().location()
        )
    }

    /// The locks, or `None` when one vanished while they were read.
    fn try_list_locks(&self) -> anyhow::Result<Option<Vec<LockInfo>>> {
        let newest = self.lock_objects()?;
        let location = self.repo.storage().location();
        let mut locks = Vec::with_capacity(newest.len());
        for (name, seqs) in newest {
            let seq = *seqs.last().expect("each listed lock has an object");
            let key = layout::lock(&self.owner, &name, seq);
            let Some(bytes) = self.repo.get_checked_object(&key, limits::LOCK)? else {
                return Ok(None);
            };
            let record = LockRecord::from_json(&bytes).with_context(|| {
                format!(
                    "read lock {key} in {location}: delete it if no backup or expire of {} runs",
                    self.what
                )
            })?;
            locks.push(LockInfo { key, name, record });
        }
        Ok(Some(locks))
    }

    /// The lock objects listed: each lock's name with its renewals' sequence numbers, in order.
    fn lock_objects(&self) -> anyhow::Result<BTreeMap<String, Vec<u64>>> {
        let storage = self.repo.storage();
        let root = layout::lock_root(&self.owner);
        let mut locks: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for listed in storage.list(&root, &Cancel::never())? {
            let parsed = record::split_file_name(listed.key.file_name())
                .filter(|(name, seq)| layout::lock(&self.owner, name, *seq) == listed.key);
            let Some((name, seq)) = parsed else {
                bail!(
                    "unexpected object {} in {}: only lock objects belong under lock/; move it away",
                    listed.key,
                    storage.location()
                );
            };
            locks.entry(name.to_owned()).or_default().push(seq);
        }
        for seqs in locks.values_mut() {
            seqs.sort_unstable();
        }
        Ok(locks)
    }

    /// Deletes every object of a stale lock, then looks once more: a holder that was only
    /// slow may have stored a renewal meanwhile, and finds the lock lost once that is gone too.
    fn delete_stale(&self, lock: &LockInfo, why: &str) -> anyhow::Result<()> {
        let storage = self.repo.storage();
        for _ in 0..2 {
            if let Some(seqs) = self.lock_objects()?.get(&lock.name) {
                for seq in seqs {
                    let key = layout::lock(&self.owner, &lock.name, *seq);
                    storage.delete(&key).with_context(|| {
                        format!("delete stale lock {key} in {}", storage.location())
                    })?;
                }
            }
        }
        tracing::info!(
            "deleted the stale {} lock {} of {} ({}): {why}",
            lock.record.kind,
            lock.key,
            self.what,
            lock.holder()
        );
        Ok(())
    }
}

/// Whether lock `a` (named `a_name`) comes before lock `b`: taken earlier, or at the same
/// instant with a smaller name.
fn precedes(a: &LockRecord, a_name: &str, b: &LockRecord, b_name: &str) -> anyhow::Result<bool> {
    let a_taken = record::parse_time(&a.taken)?;
    let b_taken = record::parse_time(&b.taken)?;
    Ok((a_taken, a_name) < (b_taken, b_name))
}

#[cfg(test)]
mod tests;
