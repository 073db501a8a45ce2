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
    #[error(
        "{location} answers a read of the deleted probe object {key} with 'access denied', not 'not found': tidemark-restore could not tell a WAL file that is not archived from a failure, and an archive recovery would stop at the first file PostgreSQL asks for that is not there; allow listing the bucket (s3:ListBucket), which S3 needs to answer 404"
    )]
    MissingIsDenied { location: String, key: ObjectKey },
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

/// Deletes the probe, and reads it again as `tidemark-restore` reads a WAL file: the store must
/// say it is not there, the one answer a restore_command may take for "not archived".
fn delete_probe(storage: &dyn Storage, key: &ObjectKey) -> Result<(), ProbeError> {
    storage.delete(key)?;
    match storage.get_range(key, 0, 1) {
        Err(e) if e.is_not_found() => Ok(()),
        Ok(_) => Err(ProbeError::NotDeleted {
            location: storage.location(),
            key: key.clone(),
        }),
        Err(e) if e.is_permission_denied() => Err(ProbeError::MissingIsDenied {
            location: storage.location(),
            key: key.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// A probe body that says what it is, should one ever be left behind.
fn probe_content(key: &ObjectKey, which: &str) -> Vec<u8> {
    format!("tidemark check probe {key}, {which} put; safe to delete\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::storage::{
        ByteRange, Cancel, FaultPlan, FaultyStorage, ListedObject, MemoryStorage, ObjectMeta,
        ObjectReading, PutBody, PutResult,
    };

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

    /// What S3 is to keys that may not list the bucket: a missing object is "access denied".
    struct DeniesMissing(MemoryStorage);

    impl Storage for DeniesMissing {
        fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
            self.0.head(key)
        }

        fn get_reader(&self, key: &ObjectKey, range: ByteRange, cancel: &Cancel) -> ObjectReading {
            self.0.get_reader(key, range, cancel).map_err(|e| {
                if e.is_not_found() {
                    StorageError::Io {
                        doing: format!("read {key}"),
                        source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                    }
                } else {
                    e
                }
            })
        }

        fn put_body_if_absent(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
            self.0.put_body_if_absent(key, body)
        }

        fn list(
            &self,
            prefix: &ObjectKey,
            cancel: &Cancel,
        ) -> Result<Vec<ListedObject>, StorageError> {
            self.0.list(prefix, cancel)
        }

        fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
            self.0.delete(key)
        }

        fn location(&self) -> String {
            "s3://bucket".to_owned()
        }

        fn check_reachable(&self) -> Result<(), StorageError> {
            Ok(())
        }
    }

    #[test]
    fn a_store_that_denies_missing_objects_is_refused() {
        let store = DeniesMissing(MemoryStorage::new());
        let error = probe(&store, &key()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "s3://bucket answers a read of the deleted probe object _check/probe with 'access denied', not 'not found': tidemark-restore could not tell a WAL file that is not archived from a failure, and an archive recovery would stop at the first file PostgreSQL asks for that is not there; allow listing the bucket (s3:ListBucket), which S3 needs to answer 404"
        );
        assert!(store.0.head(&key()).unwrap().is_none(), "the probe is gone");
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
