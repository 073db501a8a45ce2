//! The start-up check of a store: it answers, and a probe object can be written, is refused a
//! second time (create-only puts are honoured), reads back exactly and can be deleted. What
//! `tidemark check` runs before anyone trusts the store with WAL.

use super::{ObjectKey, PutOutcome, Storage, StorageError};

/// What the probe found wrong, one line each.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "{location} replaced the probe object {key} on a second create-only put: it does not honour If-None-Match: *, so it cannot keep an archived segment from being overwritten; use a server that does (AWS S3, MinIO, Ceph RGW)"
    )]
    Overwrote { location: String, key: ObjectKey },
    #[error(
        "{location} gave back other bytes than were stored in the probe object {key}: do not archive to it until its storage is fixed"
    )]
    ReadBackDiffers { location: String, key: ObjectKey },
    #[error(
        "the probe object {key} is still in {location} after it was deleted; delete it by hand and check the keys may delete"
    )]
    NotDeleted { location: String, key: ObjectKey },
    #[error(
        "a probe object {key} already exists in {location}; another check may be running: try again"
    )]
    ProbeTaken { location: String, key: ObjectKey },
}

/// Runs the probe under `key` and leaves nothing behind, whatever fails after the probe was
/// written (short of the delete itself failing).
pub fn probe(storage: &dyn Storage, key: &ObjectKey) -> Result<(), ProbeError> {
    storage.check_reachable()?;
    let stored = probe_content(key, "first");
    match storage.put_if_absent(key, &[&stored]) {
        Ok(PutOutcome::Created) => {}
        Err(e) => {
            // The put may have taken effect before it failed; a delete of nothing is no error.
            let _ = storage.delete(key);
            return Err(e.into());
        }
        Ok(PutOutcome::AlreadyExists) => {
            return Err(ProbeError::ProbeTaken {
                location: storage.location(),
                key: key.clone(),
            });
        }
    }
    let checked = check_written(storage, key, &stored);
    let deleted = delete_probe(storage, key);
    checked.and(deleted)
}

/// The second put, refused, and the read-back.
fn check_written(storage: &dyn Storage, key: &ObjectKey, stored: &[u8]) -> Result<(), ProbeError> {
    if storage.put_if_absent(key, &[&probe_content(key, "second")])? == PutOutcome::Created {
        return Err(ProbeError::Overwrote {
            location: storage.location(),
            key: key.clone(),
        });
    }
    if storage.get(key)? != stored {
        return Err(ProbeError::ReadBackDiffers {
            location: storage.location(),
            key: key.clone(),
        });
    }
    Ok(())
}

fn delete_probe(storage: &dyn Storage, key: &ObjectKey) -> Result<(), ProbeError> {
    storage.delete(key)?;
    if storage.head(key)?.is_some() {
        return Err(ProbeError::NotDeleted {
            location: storage.location(),
            key: key.clone(),
        });
    }
    Ok(())
}

/// A probe body that says what it is, should one ever be left behind.
fn probe_content(key: &ObjectKey, which: &str) -> Vec<u8> {
    format!("tidemark check probe {key}, {which} put; safe to delete\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::storage::{FaultPlan, FaultyStorage, MemoryStorage};

    fn key() -> ObjectKey {
        ObjectKey::new("_check/probe").unwrap()
    }

    #[test]
    fn a_sound_store_passes_and_keeps_nothing() {
        let store = MemoryStorage::new();
        probe(&store, &key()).unwrap();
        assert!(store.head(&key()).unwrap().is_none());
    }

    #[test]
    fn a_taken_probe_key_is_left_alone() {
        let store = MemoryStorage::new();
        store.put_if_absent(&key(), &[b"someone else's"]).unwrap();
        let error = probe(&store, &key()).unwrap_err();
        assert!(matches!(error, ProbeError::ProbeTaken { .. }), "{error}");
        assert_eq!(store.get(&key()).unwrap(), b"someone else's");
    }

    #[test]
    fn a_failing_store_is_an_error_and_leaves_no_probe() {
        for (before_effect, after_effect) in [(true, false), (false, true)] {
            let store = Arc::new(MemoryStorage::new());
            let plan = FaultPlan {
                failure_share: 1.0,
                before_effect,
                after_effect,
                ..FaultPlan::none()
            };
            let faulty = FaultyStorage::new(Arc::clone(&store), plan);
            let error = probe(&faulty, &key()).unwrap_err();
            assert!(matches!(error, ProbeError::Storage(_)), "{error}");
            // After the effect, the put stored the probe and the delete that follows removed
            // it, each reporting a failure.
            assert!(store.head(&key()).unwrap().is_none());
        }
    }
}
