//! What garbage collection marks and sweeps: the chunks every listed backup refers to, and the
//! chunks stored. A chunk is garbage only when it is stored and no listed backup refers to it;
//! `lifecycle::expire` decides when sweeping that garbage is safe, `lifecycle::verify` reports it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;

use super::Stanza;
use super::catalog::BackupRecord;
use super::layout;
use crate::storage::{Cancel, ObjectKey};

/// A stored chunk, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub key: ObjectKey,
    /// Its stored size in bytes (header and compressed content).
    pub size: u64,
}

/// Every chunk `backups` refer to, by SHA-256.
pub fn referenced_blobs(backups: &[BackupRecord]) -> BTreeSet<String> {
    backups
        .iter()
        .flat_map(|backup| &backup.entries)
        .flat_map(|entry| &entry.chunks)
        .map(|chunk| chunk.name.clone())
        .collect()
}

/// The chunks in `stored` that none of `referenced` names: what a sweep removes.
pub fn unreferenced_blobs(
    stored: &BTreeMap<String, StoredBlob>,
    referenced: &BTreeSet<String>,
) -> Vec<StoredBlob> {
    stored
        .iter()
        .filter(|(sha256, _)| !referenced.contains(*sha256))
        .map(|(_, blob)| blob.clone())
        .collect()
}

impl Stanza<'_> {
    /// Labels of the backup directories holding objects but no record: backups that were
    /// interrupted, or running now, or whose expiry was interrupted after their record went.
    pub fn unrecorded_backup_directories(&self) -> anyhow::Result<BTreeSet<String>> {
        let storage = self.repository().storage();
        let root = layout::backup_root(self.name());
        let mut labels = BTreeSet::new();
        let mut recorded = BTreeSet::new();
        for listed in storage.list(&root, &Cancel::never())? {
            let label = backup_label_of(&root, &listed.key).with_context(|| {
                format!("unexpected object {} in {}", listed.key, storage.location())
            })?;
            if listed.key.file_name() == "backup.json" {
                recorded.insert(label.clone());
            }
            labels.insert(label);
        }
        Ok(labels.difference(&recorded).cloned().collect())
    }
}

/// The label of the backup directory `key` lies in, below `root` (`<stanza>/backup`).
fn backup_label_of(root: &ObjectKey, key: &ObjectKey) -> Option<String> {
    let rest = key
        .as_str()
        .strip_prefix(root.as_str())?
        .strip_prefix('/')?;
    let (label, _) = rest.split_once('/')?;
    Some(label.to_owned())
}

/// Whether `name` can name a chunk: 64 lower-case hex digits.
pub(super) fn is_chunk_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::catalog::{BackupEntry, ChunkRef, EntryKind};
    use crate::repo::test_repository;
    use crate::storage::MemoryStorage;

    fn entry(chunks: &[&str]) -> BackupEntry {
        BackupEntry {
            path: "base/1/1".into(),
            kind: EntryKind::File,
            mode: 0o600,
            mtime: 0,
            size: 1,
            crc32c: Some(0),
            chunks: chunks
                .iter()
                .map(|sha256| ChunkRef {
                    name: (*sha256).into(),
                    size: 1,
                })
                .collect(),
            link: None,
        }
    }

    #[test]
    fn a_chunk_is_garbage_only_when_stored_and_referenced_by_no_backup() {
        let repo = test_repository(Box::new(MemoryStorage::new()));
        let stanza = repo.open_stanza("main").unwrap();
        let (a, b, c) = ("aa".repeat(32), "bb".repeat(32), "cc".repeat(32));
        for sha256 in [&a, &b, &c] {
            stanza.blobs().put(sha256, b"x").unwrap();
        }
        let mut first = BackupRecord::example("1F", "2026-11-21T10:00:01Z", crate::pg::Lsn(1));
        first.entries = vec![entry(&[&a])];
        let mut second = first.clone();
        second.entries = vec![entry(&[&a, &b]), entry(&["dd".repeat(32).as_str()])];
        let referenced = referenced_blobs(&[first, second]);
        let stored = stanza.blobs().list().unwrap();
        let garbage = unreferenced_blobs(&stored, &referenced);
        assert_eq!(garbage.len(), 1);
        assert_eq!(garbage[0].key, layout::blob("main", &c));
    }

    #[test]
    fn a_foreign_object_under_blob_is_refused_with_what_to_do() {
        let repo = test_repository(Box::new(MemoryStorage::new()));
        let stanza = repo.open_stanza("main").unwrap();
        let key = ObjectKey::new("main/blob/aa/notes.txt").unwrap();
        repo.storage().put_if_absent(&key, &[b"x"]).unwrap();
        let error = stanza.blobs().list().unwrap_err().to_string();
        assert!(
            error.starts_with("unexpected object main/blob/aa/notes.txt in "),
            "{error}"
        );
        assert!(error.ends_with("move it away"), "{error}");
    }

    #[test]
    fn backup_directories_without_a_record_are_found() {
        let repo = test_repository(Box::new(MemoryStorage::new()));
        let stanza = repo.open_stanza("main").unwrap();
        let record = BackupRecord::example("1F", "2026-11-21T10:00:01Z", crate::pg::Lsn(1));
        stanza.put_backup_record(&record).unwrap();
        stanza.put_backup_manifest("1F", b"{}").unwrap();
        stanza.put_backup_manifest("2F", b"{}").unwrap();
        let unrecorded = stanza.unrecorded_backup_directories().unwrap();
        assert_eq!(unrecorded, BTreeSet::from(["2F".to_owned()]));
    }
}
