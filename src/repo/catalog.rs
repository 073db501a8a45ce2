//! The backup catalog: what each complete backup holds, and the content blobs backups share.
//!
//! A backup exists only once its record (`backup.json`) is stored, and that is the last thing a
//! backup writes, after every blob, PostgreSQL's manifest and the WAL it needs are durable. An
//! interrupted backup therefore leaves at most blobs, which later backups reuse, and nothing
//! `info` or `restore` would take for a backup.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::PutOnce;
use super::Stanza;
use super::{layout, limits};
use crate::pg::lsn::{lsn_text, timeline_number};
use crate::pg::{Lsn, TimelineId};
use crate::storage::Cancel;

/// The largest chunk a file is cut into: every blob holds at most this many bytes.
pub const MAX_CHUNK: u64 = 16 << 20;

/// Version of the backup record format.
pub const RECORD_FORMAT: u32 = 1;

/// What kind of entry a backed-up path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
}

/// A piece of a file's content, stored once under its name: its BLAKE3 (SHA-256 in stanzas made
/// before BLAKE3, see `ChunkHash`), or in an encrypted repository its keyed BLAKE3
/// (`Codec::chunk_namer`); 64 hex digits either way. The field keeps its first name, `sha256`,
/// so that every record reads as it always did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    #[serde(rename = "sha256")]
    pub name: String,
    pub size: u64,
}

/// One path of the backed-up cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupEntry {
    /// Relative to the data directory; tablespace contents under `pg_tblspc/<oid>/`.
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: u64,
    pub size: u64,
    /// CRC-32C of the whole file (files only).
    pub crc32c: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
    /// Target of a symbolic link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// A tablespace of the backed-up cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablespaceRecord {
    pub oid: u32,
    pub location: String,
}

/// Sizes of a backup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSizes {
    /// Bytes of all files as PostgreSQL sent them.
    pub original: u64,
    /// Stored bytes of every blob the backup uses, its own and those shared with earlier ones.
    pub stored: u64,
    /// Stored bytes this backup added to the repository.
    pub new: u64,
    pub files: u64,
    /// Chunks already in the repository, not stored again.
    pub reused_chunks: u64,
}

/// The record of one complete backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRecord {
    pub format: u32,
    pub label: String,
    /// `full`: every file is in the record (unchanged content is shared, not skipped).
    pub kind: String,
    pub system_id: u64,
    pub pg_version: u32,
    /// The timeline the backup starts on, stored as its number.
    #[serde(with = "timeline_number")]
    pub timeline: TimelineId,
    /// Where the backup starts and ends in the WAL, stored as PostgreSQL prints them (`0/2000028`).
    #[serde(with = "lsn_text")]
    pub start_lsn: Lsn,
    #[serde(with = "lsn_text")]
    pub stop_lsn: Lsn,
    /// RFC 3339, UTC.
    pub start_time: String,
    pub stop_time: String,
    pub duration_ms: u64,
    /// First and last WAL segment recovery needs to reach consistency.
    pub wal_start: String,
    pub wal_stop: String,
    /// The WAL segments are inside the backup (`pg_wal/`), so it restores without the archive.
    pub wal_included: bool,
    /// PostgreSQL sent a backup manifest (13+) and every file was checked against it.
    #[serde(default = "manifest_default")]
    pub has_manifest: bool,
    pub sizes: BackupSizes,
    pub tablespaces: Vec<TablespaceRecord>,
    pub entries: Vec<BackupEntry>,
}

impl Stanza<'_> {
    /// Stores PostgreSQL's manifest of a backup. Finding the same manifest there is success:
    /// an earlier attempt of this put took effect and only its answer was lost.
    pub fn put_backup_manifest(&self, label: &str, manifest: &[u8]) -> anyhow::Result<()> {
        let key = layout::backup_manifest(self.name(), label);
        match self.put_once(&key, manifest)? {
            PutOnce::Stored | PutOnce::Identical => Ok(()),
            PutOnce::Different => {
                bail!("backup {label} already has another manifest in the repository")
            }
        }
    }

    /// Reads PostgreSQL's manifest of a backup.
    pub fn get_backup_manifest(&self, label: &str) -> anyhow::Result<Vec<u8>> {
        let key = layout::backup_manifest(self.name(), label);
        self.get_checked_object(&key, limits::BACKUP_MANIFEST)?
            .with_context(|| format!("{key} is missing from the repository"))
    }

    /// Stores a backup's record, which makes the backup exist. Never replaces one; finding
    /// this very record there is success (an earlier attempt of this put took effect and only
    /// its answer was lost, as when an S3 PUT is retried and answered 412).
    pub fn put_backup_record(&self, record: &BackupRecord) -> anyhow::Result<()> {
        let key = layout::backup_record(self.name(), &record.label);
        match self.put_once(&key, &serde_json::to_vec(record)?)? {
            PutOnce::Stored | PutOnce::Identical => Ok(()),
            PutOnce::Different => bail!("a backup labelled {} already exists", record.label),
        }
    }

    /// Every complete backup, oldest first.
    pub fn list_backups(&self) -> anyhow::Result<Vec<BackupRecord>> {
        let storage = self.repository().storage();
        let mut records = Vec::new();
        for listed in storage.list(&layout::backup_root(self.name()), &Cancel::never())? {
            if listed.key.file_name() != "backup.json" {
                continue;
            }
            let json = self
                .get_checked_object(&listed.key, limits::BACKUP_RECORD)?
                .with_context(|| format!("backup record {} vanished", listed.key))?;
            let record: BackupRecord = serde_json::from_slice(&json)
                .with_context(|| format!("backup record {} is not valid", listed.key))?;
            if record.format != RECORD_FORMAT {
                bail!(
                    "backup record {} has format {}, which this Tidemark does not know; upgrade Tidemark",
                    listed.key,
                    record.format
                );
            }
            records.push(record);
        }
        records.sort_by(|a, b| a.stop_lsn.cmp(&b.stop_lsn).then(a.label.cmp(&b.label)));
        Ok(records)
    }
}

fn manifest_default() -> bool {
    true
}

#[cfg(test)]
impl BackupRecord {
    /// A record of an empty full backup of stanza `main`'s cluster (see
    /// [`crate::repo::test_repository`]) ending at `stop_time` and `stop_lsn`, for unit tests.
    pub(crate) fn example(label: &str, stop_time: &str, stop_lsn: Lsn) -> BackupRecord {
        BackupRecord {
            format: RECORD_FORMAT,
            label: label.into(),
            kind: "full".into(),
            system_id: 7,
            pg_version: 15,
            timeline: TimelineId(1),
            start_lsn: Lsn(0x100_0028),
            stop_lsn,
            start_time: stop_time.into(),
            stop_time: stop_time.into(),
            duration_ms: 0,
            wal_start: String::new(),
            wal_stop: String::new(),
            wal_included: false,
            has_manifest: true,
            sizes: BackupSizes::default(),
            tablespaces: vec![],
            entries: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{Repository, test_repository};
    use crate::storage::MemoryStorage;

    fn repository() -> Repository {
        test_repository(Box::new(MemoryStorage::new()))
    }

    #[test]
    fn a_record_put_again_after_its_answer_was_lost_succeeds_and_another_is_refused() {
        let repo = repository();
        let stanza = repo.open_stanza("main").unwrap();
        let record =
            BackupRecord::example("20261121-100000F", "2026-11-21T10:00:01Z", Lsn(0x300_0100));
        stanza.put_backup_record(&record).unwrap();
        // The retry of a put that took effect finds its own record: the backup is complete.
        stanza.put_backup_record(&record).unwrap();
        let mut other = record.clone();
        other.duration_ms += 1;
        let refused = stanza.put_backup_record(&other).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "a backup labelled 20261121-100000F already exists"
        );
        assert_eq!(
            stanza.list_backups().unwrap(),
            std::slice::from_ref(&record)
        );

        stanza.put_backup_manifest(&record.label, b"{}").unwrap();
        stanza.put_backup_manifest(&record.label, b"{}").unwrap();
        let refused = stanza
            .put_backup_manifest(&record.label, b"{\"other\":1}")
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "backup 20261121-100000F already has another manifest in the repository"
        );
        assert_eq!(stanza.get_backup_manifest(&record.label).unwrap(), b"{}");
    }

    #[test]
    fn a_record_is_stored_as_docs_repository_format_says_timeline_a_number_lsns_as_postgresql_prints_them()
     {
        let record =
            BackupRecord::example("20261121-100000F", "2026-11-21T10:00:01Z", Lsn(0x300_0100));
        let json = serde_json::to_string(&record).unwrap();
        assert!(
            json.contains(r#""timeline":1,"start_lsn":"0/1000028","stop_lsn":"0/3000100","#),
            "{json}"
        );
        let read: BackupRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(read, record);
    }

    #[test]
    fn a_record_whose_lsn_does_not_parse_is_damaged_not_0_0() {
        let repo = repository();
        let stanza = repo.open_stanza("main").unwrap();
        let label = "20261121-100000F";
        let json = serde_json::to_string(&BackupRecord::example(
            label,
            "2026-11-21T10:00:01Z",
            Lsn(0x300_0100),
        ))
        .unwrap()
        .replace("\"0/3000100\"", "\"3000100\"");
        let key = layout::backup_record("main", label);
        stanza.put_new_object(&key, json.as_bytes()).unwrap();
        let error = format!("{:#}", stanza.list_backups().unwrap_err());
        assert!(
            error.starts_with(&format!(
                "backup record {key} is not valid: '3000100' is not an LSN"
            )),
            "{error}"
        );
    }
}
