//! A lock this process holds: its object stored once, renewed every minute by a thread that
//! stores the next renewal before deleting the previous one (objects are never overwritten, and
//! there is never a moment with none), and deleted when the lock is dropped.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::record::{LockRecord, rfc3339};
use crate::repo::{Codec, layout};
use crate::storage::{ObjectKey, PutOutcome, Storage};

/// A lock held by this process. Dropping it stops the renewals at once and deletes its object
/// (best effort: one left behind is stale as soon as this process has ended).
pub struct HeldLock {
    shared: Arc<Shared>,
    /// Dropped to wake the renewal thread and make it end.
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
}

/// What the holder and its renewal thread share.
struct Shared {
    storage: Arc<dyn Storage>,
    codec: Codec,
    stanza: String,
    name: String,
    /// Held across a renewal, so that a look at the lock sees its object before or after.
    current: Mutex<Current>,
}

/// The object the lock is now.
struct Current {
    record: LockRecord,
    seq: u64,
    /// Another process deleted the lock, taking it for stale: it is not ours any more.
    lost: bool,
}

impl HeldLock {
    /// Stores `record` as renewal 0 of a new lock of `stanza` and starts renewing it every
    /// `renew_every`.
    pub(super) fn take(
        storage: Arc<dyn Storage>,
        codec: Codec,
        stanza: &str,
        record: LockRecord,
        renew_every: Duration,
    ) -> anyhow::Result<HeldLock> {
        let name = record.name()?;
        let key = layout::lock(stanza, &name, 0);
        let outcome = put(storage.as_ref(), &codec, &key, &record)
            .with_context(|| format!("store lock {key} in {}", storage.location()))?;
        if outcome == PutOutcome::AlreadyExists {
            anyhow::bail!(
                "store lock {key} in {}: a lock of that name exists already; try again",
                storage.location()
            );
        }
        let shared = Arc::new(Shared {
            storage,
            codec,
            stanza: stanza.to_owned(),
            name,
            current: Mutex::new(Current {
                record,
                seq: 0,
                lost: false,
            }),
        });
        let (stop, stopped) = mpsc::channel();
        let renewing = Arc::clone(&shared);
        let renewer = std::thread::Builder::new()
            .name("lock renewal".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(renew_every) {
                    renewing.renew(SystemTime::now());
                }
            })
            .context("start the thread that renews the lock")?;
        Ok(HeldLock {
            shared,
            stop: Some(stop),
            renewer: Some(renewer),
        })
    }

    /// The lock's name, `<kind>-<host>-<pid>-<nanos>`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// What the lock object says now.
    pub fn record(&self) -> LockRecord {
        self.shared.lock().record.clone()
    }

    /// The key of the lock's current object.
    pub fn key(&self) -> ObjectKey {
        let current = self.shared.lock();
        layout::lock(&self.shared.stanza, &self.shared.name, current.seq)
    }

    /// Whether the lock is still ours: its object is there, and no renewal found it deleted
    /// (which another host's process does when it takes the lock for stale).
    pub fn still_held(&self) -> anyhow::Result<bool> {
        let current = self.shared.lock();
        if current.lost {
            return Ok(false);
        }
        let key = layout::lock(&self.shared.stanza, &self.shared.name, current.seq);
        let storage = &self.shared.storage;
        Ok(storage
            .head(&key)
            .with_context(|| format!("look for lock {key} in {}", storage.location()))?
            .is_some())
    }

    /// Stores the next renewal now, as the thread does every minute (for tests).
    #[cfg(test)]
    pub(super) fn renew_now(&self, now: SystemTime) {
        self.shared.renew(now);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores renewal `seq + 1`, then deletes renewal `seq`. If renewal `seq` is gone by then,
    /// another process took the lock for stale and may be acting on that: the new renewal is
    /// deleted too and the lock is lost. A failure is logged and tried again next time.
    fn renew(&self, now: SystemTime) {
        let mut current = self.lock();
        if current.lost {
            return;
        }
        let location = self.storage.location();
        let previous = layout::lock(&self.stanza, &self.name, current.seq);
        let next = layout::lock(&self.stanza, &self.name, current.seq + 1);
        let mut record = current.record.clone();
        record.renewed = rfc3339(now);
        if let Err(e) = put(self.storage.as_ref(), &self.codec, &next, &record) {
            tracing::warn!("renew lock {previous} in {location}: {e:#}; trying again in a minute");
            return;
        }
        match self.storage.head(&previous) {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(
                    "lock {previous} in {location} was deleted by another process that took it for stale; this process no longer holds it"
                );
                current.lost = true;
                let _ = self.storage.delete(&next);
                return;
            }
            Err(e) => tracing::warn!("look for lock {previous} in {location}: {e:#}"),
        }
        // A previous renewal left behind is harmless: readers take the newest.
        if let Err(e) = self.storage.delete(&previous) {
            tracing::warn!("delete the renewed lock {previous} in {location}: {e:#}");
        }
        current.record = record;
        current.seq += 1;
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        let current = self.shared.lock();
        let key = layout::lock(&self.shared.stanza, &self.shared.name, current.seq);
        if let Err(e) = self.shared.storage.delete(&key) {
            tracing::warn!(
                "delete lock {key} in {}: {e:#}; it is stale once this process has ended",
                self.shared.storage.location()
            );
        }
    }
}

/// Stores a lock object, framed like every object, unless one is there.
fn put(
    storage: &dyn Storage,
    codec: &Codec,
    key: &ObjectKey,
    record: &LockRecord,
) -> anyhow::Result<PutOutcome> {
    let stored = codec.encode(key, &record.to_json())?;
    Ok(storage.put_if_absent(key, &stored.parts())?)
}
