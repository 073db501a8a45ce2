//! Which data key each stored object of a repository names: read from each object's header
//! alone (96 bytes, no key needed), so `key retire` can refuse a key that still seals anything.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;

use super::sealed::{SEALED_HEADER_LEN, SealedHeader, is_sealed};
use super::{Repository, layout};
use crate::storage::{Cancel, ObjectKey};

/// Header reads at once: each is one small request, so a remote repository's latency, not its
/// bandwidth, bounds the scan.
const READERS: usize = 8;

/// What the scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// Objects per data key.
    pub by_key: BTreeMap<u32, u64>,
    /// The first object (in key order) of each data key, to name in a refusal.
    pub first: BTreeMap<u32, ObjectKey>,
    /// Framed objects that are not sealed.
    pub unencrypted: u64,
}

/// Whether `key` is a stanza's or a source's identity: plain JSON in every repository.
fn is_plain_identity(key: &ObjectKey) -> bool {
    let mut parts = key.as_str().split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(stanza), Some("stanza.json"), None, None) => !stanza.starts_with('_'),
        (Some(layout::SOURCES), Some(_), Some("source.json"), None) => true,
        _ => false,
    }
}

impl Repository {
    /// Reads the header of every object of `stanzas` and of every source (`_source/`) and
    /// counts the data keys they name. The stanza and source identities are plain JSON and not
    /// counted; an object whose header cannot be read fails the scan, since it might be sealed
    /// with any key.
    pub fn objects_by_key(&self, stanzas: &[String]) -> anyhow::Result<KeyUsage> {
        let mut keys = Vec::new();
        let roots = stanzas.iter().map(String::as_str).chain([layout::SOURCES]);
        for root in roots {
            let prefix =
                ObjectKey::new(root).with_context(|| format!("'{root}' is not a stanza name"))?;
            keys.extend(
                self.storage
                    .list(&prefix, &Cancel::never())?
                    .into_iter()
                    .map(|listed| listed.key)
                    .filter(|key| !is_plain_identity(key)),
            );
        }
        keys.sort();
        let next = AtomicUsize::new(0);
        let found = Mutex::new(BTreeMap::new());
        std::thread::scope(|scope| {
            for _ in 0..READERS.min(keys.len()) {
                scope.spawn(|| {
                    while let Some(key) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let named = self.key_named_by(key);
                        found
                            .lock()
                            .expect("no reader panics")
                            .insert(key.clone(), named);
                    }
                });
            }
        });
        let mut usage = KeyUsage::default();
        for (key, named) in found.into_inner().expect("no reader panics") {
            match named? {
                Some(id) => {
                    *usage.by_key.entry(id).or_default() += 1;
                    usage.first.entry(id).or_insert(key);
                }
                None => usage.unencrypted += 1,
            }
        }
        Ok(usage)
    }

    /// The data key the object under `key` names, or `None` for a plain object. An object that
    /// vanished meanwhile (an expire ran) names none.
    fn key_named_by(&self, key: &ObjectKey) -> anyhow::Result<Option<u32>> {
        let location = self.storage.location();
        let prefix = match self.storage.get_range(key, 0, SEALED_HEADER_LEN as u64) {
            Ok(prefix) => prefix,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read the header of {key}")),
        };
        if !is_sealed(&prefix) {
            super::object::ObjectHeader::decode(&prefix)
                .with_context(|| format!("{key} in {location} is damaged"))?;
            return Ok(None);
        }
        let header = SealedHeader::decode(&prefix)
            .with_context(|| format!("{key} in {location} is damaged"))?;
        Ok(Some(header.key_id))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::repo::codec::{Codec, FixedKeys};
    use crate::repo::crypto::DataKey;
    use crate::repo::{Compression, WriteSettings, test_repository};
    use crate::storage::memory::MemoryStorage;

    #[test]
    fn every_object_is_counted_under_the_key_that_sealed_it() {
        let plain = test_repository(Box::new(MemoryStorage::new()));
        let identity = plain.open_stanza("main").unwrap().identity().clone();
        let storage = plain.shared_storage();
        let with_current = |current| {
            Repository::with_codec(
                Box::new(Arc::clone(&storage)),
                Codec::encrypted(
                    WriteSettings {
                        compression: Compression::Zstd,
                        zstd_level: 1,
                    },
                    Arc::new(FixedKeys {
                        keys: vec![DataKey::new(1, [1; 32]), DataKey::new(2, [2; 32])],
                        current,
                        name_key: [0; 32],
                    }),
                ),
            )
        };
        let mut encrypted = identity.clone();
        encrypted.stanza = "sealed".into();
        with_current(1).create_stanza(&encrypted).unwrap();
        let put = |repo: &Repository, name: &str| {
            let stanza = repo.open_stanza("sealed").unwrap();
            let key = ObjectKey::new(format!("sealed/walindex/{name}")).unwrap();
            stanza.put_new_object(&key, b"entry").unwrap();
        };
        put(&with_current(1), "a");
        put(&with_current(2), "b");
        put(&with_current(2), "c");
        // A source's objects are counted too, though no stanza lists them.
        let old = with_current(1);
        let source = old.open_or_create_source("cache", "redis").unwrap();
        source.blobs().store(b"a chunk of a snapshot").unwrap();
        let usage = with_current(2)
            .objects_by_key(&["sealed".to_owned(), "main".to_owned()])
            .unwrap();
        assert_eq!(usage.by_key, BTreeMap::from([(1, 2), (2, 2)]));
        assert_eq!(usage.first[&2].as_str(), "sealed/walindex/b");
        assert_eq!(usage.unencrypted, 0);
    }
}
