//! The in-memory backend: objects in a sorted map behind a lock, for tests that want a store
//! without a file system and for wrapping in [`FaultyStorage`](super::FaultyStorage).
//!
//! Its semantics are the local directory's, exactly: create-only puts that are atomic (a body is
//! read whole before the object appears, so a failing, short or cancelled body leaves nothing),
//! listings sorted by key with prefixes matching whole components, `NotFound` for missing
//! objects, idempotent deletes, and keys that form a tree (a key cannot be put when it is a
//! component-prefix of a stored key, or a stored key is one of it) as files in directories do.
//! Nothing is durable beyond the process, which is all a test needs.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;

use super::{
    ByteRange, Cancel, CancellableReader, ListedObject, ObjectKey, ObjectMeta, ObjectReading,
    PutBody, PutOutcome, PutResult, Storage, StorageError,
};

/// Tells stores apart in messages when a test has several.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A store in this process's memory.
#[derive(Debug)]
pub struct MemoryStorage {
    id: u64,
    objects: Mutex<BTreeMap<ObjectKey, StoredObject>>,
}

#[derive(Debug)]
struct StoredObject {
    /// Shared with the readers handed out, so a read copies nothing up front.
    bytes: Bytes,
    modified: SystemTime,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            objects: Mutex::new(BTreeMap::new()),
        }
    }

    /// The map, even if a thread panicked while holding it: every change is a single insert or
    /// remove, so the map is never half-changed.
    fn objects(&self) -> MutexGuard<'_, BTreeMap<ObjectKey, StoredObject>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn not_found(&self, key: &ObjectKey) -> StorageError {
        StorageError::NotFound {
            key: key.clone(),
            location: self.location(),
        }
    }

    /// Inserts `bytes` under `key` unless the key is taken, in one step under the lock.
    fn insert(&self, key: &ObjectKey, bytes: Bytes) -> PutResult {
        let mut objects = self.objects();
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        let conflict = |why: &str| StorageError::Io {
            doing: format!("put {key} in {}", self.location()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_owned()),
        };
        // Stored keys under this one sort right after it, before any key that merely shares
        // its text as a prefix ("a/b/c" < "a/b0"), but after siblings such as "a/b-c": skip
        // those and look at the first key that starts with "a/b/".
        let as_directory = format!("{key}/");
        if objects
            .range(key.clone()..)
            .take_while(|(stored, _)| stored.as_str().starts_with(key.as_str()))
            .any(|(stored, _)| stored.as_str().starts_with(&as_directory))
        {
            return Err(conflict("this key is a prefix of other objects' keys"));
        }
        let text = key.as_str();
        if text
            .match_indices('/')
            .any(|(slash, _)| objects.contains_key(&ObjectKey(text[..slash].to_owned())))
        {
            return Err(conflict("another object's key is a prefix of this key"));
        }
        objects.insert(
            key.clone(),
            StoredObject {
                bytes,
                modified: SystemTime::now(),
            },
        );
        Ok(PutOutcome::Created)
    }
}

impl Default for MemoryStorage {
    fn default() -> MemoryStorage {
        MemoryStorage::new()
    }
}

impl Storage for MemoryStorage {
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        Ok(self.objects().get(key).map(|object| ObjectMeta {
            size: object.bytes.len() as u64,
            modified: Some(object.modified),
        }))
    }

    fn get_reader(&self, key: &ObjectKey, range: ByteRange, cancel: &Cancel) -> ObjectReading {
        let bytes = match self.objects().get(key) {
            Some(object) => object.bytes.clone(),
            None => return Err(self.not_found(key)),
        };
        let (start, end) = range.within(bytes.len() as u64);
        Ok(Box::new(CancellableReader {
            inner: Cursor::new(bytes.slice(start as usize..end as usize)),
            cancel: cancel.clone(),
            doing: format!("read {key} from {}", self.location()),
        }))
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StorageError> {
        match self.objects().get(key) {
            Some(object) => Ok(object.bytes.to_vec()),
            None => Err(self.not_found(key)),
        }
    }

    fn put_body_if_absent(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
        let doing = || format!("put {key} in {}", self.location());
        // The whole body is read before the object appears, as the local backend writes a
        // temporary file before renaming it.
        let mut bytes = Vec::new();
        body.copy(&doing, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        self.insert(key, Bytes::from(bytes))
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> PutResult {
        self.insert(key, Bytes::from(parts.concat()))
    }

    fn list(&self, prefix: &ObjectKey, cancel: &Cancel) -> Result<Vec<ListedObject>, StorageError> {
        cancel.check(|| format!("list {prefix} in {}", self.location()))?;
        Ok(self
            .objects()
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.as_str().starts_with(prefix.as_str()))
            .filter(|(key, _)| key.is_under(prefix))
            .map(|(key, object)| ListedObject {
                key: key.clone(),
                size: object.bytes.len() as u64,
            })
            .collect())
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.objects().remove(key);
        Ok(())
    }

    fn location(&self) -> String {
        format!("memory store {}", self.id)
    }

    /// A store in memory is always there.
    fn check_reachable(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::{key, refuses_keys_that_are_prefixes};

    #[test]
    fn a_key_cannot_be_both_an_object_and_a_prefix_of_objects() {
        let store = MemoryStorage::new();
        store.put_if_absent(&key("a/b/c"), &[b"1"]).unwrap();
        // Siblings that share text but not components are fine.
        store.put_if_absent(&key("a/b-c"), &[b"s"]).unwrap();
        store.put_if_absent(&key("a/bc"), &[b"s"]).unwrap();
        refuses_keys_that_are_prefixes(&store);
        assert_eq!(store.list(&key("a"), &Cancel::never()).unwrap().len(), 3);
        assert_eq!(store.get(&key("a/b/c")).unwrap(), b"1");
        // Once the object is gone, its key is free to be a prefix.
        store.delete(&key("a/b/c")).unwrap();
        assert_eq!(
            store.put_if_absent(&key("a/b/c/d"), &[b"3"]).unwrap(),
            PutOutcome::Created
        );
    }

    #[test]
    fn stores_are_named_apart() {
        assert_ne!(
            MemoryStorage::new().location(),
            MemoryStorage::new().location()
        );
    }
}
