//! The WAL index: for each archived segment, what its records say (ranges of commit times and
//! XIDs, restore points, checkpoints, where valid WAL ends), written at push time next to the
//! segment and read by the recovery planner. An entry names the CRC-32C of the segment it
//! describes, so it can never be taken for another segment's; a missing entry is rebuilt from the
//! segment.
//!
//! Entries are also gathered into packs, one object per WAL directory (256 segments of 16 MiB),
//! so that planning over 100,000 segments reads a few hundred objects, not 100,000. A pack is
//! named by how many entries it holds; a later, larger pack of the same directory supersedes it,
//! and nothing is ever overwritten. Entries no pack holds yet are read one by one.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Stanza;
use super::layout;
use crate::pg::WalFileName;
use crate::pg::wal::SegmentSummary;
use crate::storage::{Cancel, PutOutcome};

/// Version of the index entry and pack format.
pub const INDEX_FORMAT: u32 = 2;

/// One segment's index entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub format: u32,
    pub segment: String,
    /// CRC-32C of the segment's original bytes, as its object header records it.
    pub segment_crc32c: u32,
    pub summary: SegmentSummary,
}

/// The entries of one WAL directory in one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPack {
    pub format: u32,
    pub directory: String,
    /// In segment name order.
    pub entries: Vec<IndexEntry>,
}

/// Checks a decoded entry or pack's format.
fn check_format(format: u32, what: &dyn std::fmt::Display) -> anyhow::Result<()> {
    if format != INDEX_FORMAT {
        bail!(
            "{what} has format {format}, but this Tidemark reads format {INDEX_FORMAT}: use the Tidemark that wrote it, or delete the walindex directory and run 'tidemark index rebuild'"
        );
    }
    Ok(())
}

impl Stanza<'_> {
    /// Stores a segment's index entry unless one is there. An existing entry for other content
    /// is an error: it describes a different segment than the one archived.
    pub fn put_wal_index(
        &self,
        name: WalFileName,
        segment_crc32c: u32,
        summary: SegmentSummary,
    ) -> anyhow::Result<()> {
        let entry = IndexEntry {
            format: INDEX_FORMAT,
            segment: name.to_string(),
            segment_crc32c,
            summary,
        };
        let key = layout::wal_index(self.name(), name);
        match self.put_new_object(&key, &serde_json::to_vec(&entry)?)? {
            PutOutcome::Created => Ok(()),
            PutOutcome::AlreadyExists => {
                let existing = self.get_wal_index(name)?.context("index entry vanished")?;
                if existing.segment_crc32c != segment_crc32c {
                    bail!(
                        "index entry {key} describes content with CRC-32C {:08x}, not the archived {segment_crc32c:08x}",
                        existing.segment_crc32c
                    );
                }
                Ok(())
            }
        }
    }

    /// A segment's index entry, if there is one.
    pub fn get_wal_index(&self, name: WalFileName) -> anyhow::Result<Option<IndexEntry>> {
        let key = layout::wal_index(self.name(), name);
        let Some(json) = self.get_checked_object(&key)? else {
            return Ok(None);
        };
        let entry: IndexEntry = serde_json::from_slice(&json)
            .with_context(|| format!("index entry {key} is not valid"))?;
        check_format(entry.format, &format_args!("index entry {key}"))?;
        Ok(Some(entry))
    }

    /// The largest pack of each WAL directory that has one, by directory.
    fn pack_counts(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        let mut best = BTreeMap::new();
        for object in self
            .repository()
            .storage()
            .list(&layout::wal_index_packs(self.name()), &Cancel::never())?
        {
            let file = object.key.file_name();
            let parsed = file
                .split_once('.')
                .filter(|(directory, _)| {
                    directory.len() == 16 && directory.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .and_then(|(directory, count)| Some((directory, count.parse::<usize>().ok()?)));
            let Some((directory, count)) = parsed else {
                bail!("unexpected object {} among the WAL index packs", object.key);
            };
            let slot = best.entry(directory.to_owned()).or_insert(count);
            *slot = (*slot).max(count);
        }
        Ok(best)
    }

    /// Reads one pack.
    fn get_pack(&self, directory: &str, count: usize) -> anyhow::Result<IndexPack> {
        let key = layout::wal_index_pack(self.name(), directory, count);
        let json = self
            .get_checked_object(&key)?
            .with_context(|| format!("WAL index pack {key} vanished"))?;
        let pack: IndexPack = serde_json::from_slice(&json)
            .with_context(|| format!("WAL index pack {key} is not valid"))?;
        check_format(pack.format, &format_args!("WAL index pack {key}"))?;
        if pack.directory != directory || pack.entries.len() != count {
            bail!(
                "WAL index pack {key} holds {} entries of directory {}: the repository was tampered with",
                pack.entries.len(),
                pack.directory
            );
        }
        Ok(pack)
    }

    /// Every packed index entry, by segment name: the largest pack of each directory.
    pub fn packed_wal_index(&self) -> anyhow::Result<BTreeMap<String, IndexEntry>> {
        let mut entries = BTreeMap::new();
        for (directory, count) in self.pack_counts()? {
            for entry in self.get_pack(&directory, count)?.entries {
                entries.insert(entry.segment.clone(), entry);
            }
        }
        Ok(entries)
    }

    /// Packs the index entries of WAL `directory` (`TTTTTTTTLLLLLLLL`) into a new pack, unless
    /// its largest pack already holds every one of them. Returns how many entries the new pack
    /// holds.
    pub fn pack_wal_index(&self, directory: &str) -> anyhow::Result<Option<usize>> {
        let loose: BTreeSet<String> = self
            .repository()
            .storage()
            .list(
                &layout::wal_index_directory(self.name(), directory),
                &Cancel::never(),
            )?
            .into_iter()
            .map(|object| object.key.file_name().to_owned())
            .collect();
        let mut entries: BTreeMap<String, IndexEntry> = match self.pack_counts()?.get(directory) {
            Some(&count) => self
                .get_pack(directory, count)?
                .entries
                .into_iter()
                .map(|entry| (entry.segment.clone(), entry))
                .collect(),
            None => BTreeMap::new(),
        };
        let missing: Vec<&String> = loose.iter().filter(|s| !entries.contains_key(*s)).collect();
        if missing.is_empty() {
            return Ok(None);
        }
        for segment in missing {
            let name = WalFileName::parse(segment)
                .with_context(|| format!("unexpected WAL index entry {directory}/{segment}"))?;
            let entry = self
                .get_wal_index(name)?
                .with_context(|| format!("WAL index entry of {segment} vanished"))?;
            entries.insert(segment.clone(), entry);
        }
        let pack = IndexPack {
            format: INDEX_FORMAT,
            directory: directory.to_owned(),
            entries: entries.into_values().collect(),
        };
        let count = pack.entries.len();
        let key = layout::wal_index_pack(self.name(), directory, count);
        // Two writers packing the same entries write the same pack; either one's is right.
        self.put_new_object(&key, &serde_json::to_vec(&pack)?)?;
        Ok(Some(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Lsn;
    use crate::repo::{Repository, test_repository};
    use crate::storage::LocalDirectory;

    fn repository(dir: &std::path::Path) -> Repository {
        test_repository(Box::new(LocalDirectory::new(dir)))
    }

    fn summary() -> SegmentSummary {
        serde_json::from_str(
            r#"{"first_record":"0/3000028","last_record":"0/3FFFF00","end_of_wal":"0/4000000",
                "ends_with_switch":false,"continues_into_next":true,"xact_count":0,"last_xact":null,
                "min_time":null,"max_time":null,"spill_undecoded":false,"restore_points":[],
                "checkpoints":[],"backup_ends":[],"end_of_recovery":[],"min_xid":null,"max_xid":null}"#,
        )
        .unwrap()
    }

    /// A summary with every field set, as a segment with every kind of record gives one.
    fn full_summary() -> SegmentSummary {
        use crate::pg::wal::{
            BackupEnd, CheckpointRecord, EndOfRecovery, RestorePoint, XactEnd, XactEndKind,
        };
        SegmentSummary {
            first_record: Some(Lsn(0x0300_0028)),
            last_record: Some(Lsn(0x0300_1AE8)),
            end_of_wal: Lsn(0x0300_1B00),
            ends_with_switch: true,
            continues_into_next: false,
            xact_count: 4,
            last_xact: Some(XactEnd {
                lsn: Lsn(0x0300_0130),
                kind: XactEndKind::AbortPrepared,
                xid: 742,
                time: 848_583_932_543_707,
            }),
            min_time: Some(-5),
            max_time: Some(848_583_932_543_707),
            spill_undecoded: true,
            restore_points: vec![RestorePoint {
                lsn: Lsn(0x1_0300_0200),
                name: "before \"the\" upgrade".into(),
                time: 848_583_900_000_000,
            }],
            checkpoints: vec![
                CheckpointRecord {
                    lsn: Lsn(0x0300_0300),
                    redo: Lsn(0x0300_0028),
                    time_unix: 1_795_000_000,
                    online: true,
                    timeline: 3,
                },
                CheckpointRecord {
                    lsn: Lsn(0x0300_0400),
                    redo: Lsn(0x0300_0400),
                    time_unix: 1_795_000_001,
                    online: false,
                    timeline: 3,
                },
            ],
            backup_ends: vec![BackupEnd {
                lsn: Lsn(0x0300_0500),
                backup_start: Lsn(0x0200_0028),
            }],
            end_of_recovery: vec![EndOfRecovery {
                lsn: Lsn(0x0300_0600),
                time: 848_583_932_000_000,
                timeline: 3,
                prev_timeline: 2,
            }],
            min_xid: Some(739),
            max_xid: Some(u32::MAX),
        }
    }

    /// The bytes of the repository's index entries do not change: readers of older repositories
    /// and other tools depend on them. Every field set, then every field that can be left out
    /// left out.
    #[test]
    fn index_entries_are_written_in_the_repository_format() {
        let entry = |summary| IndexEntry {
            format: INDEX_FORMAT,
            segment: "000000030000000000000003".into(),
            segment_crc32c: 0xDEAD_BEEF,
            summary,
        };
        let full = entry(full_summary());
        let full_json = concat!(
            r#"{"format":2,"segment":"000000030000000000000003","segment_crc32c":3735928559,"#,
            r#""summary":{"first_record":"0/3000028","last_record":"0/3001AE8","#,
            r#""end_of_wal":"0/3001B00","ends_with_switch":true,"continues_into_next":false,"#,
            r#""xact_count":4,"last_xact":{"lsn":"0/3000130","kind":"AbortPrepared","xid":742,"#,
            r#""time":848583932543707},"min_time":-5,"max_time":848583932543707,"#,
            r#""spill_undecoded":true,"restore_points":[{"lsn":"1/3000200","#,
            r#""name":"before \"the\" upgrade","time":848583900000000}],"#,
            r#""checkpoints":[{"lsn":"0/3000300","redo":"0/3000028","time_unix":1795000000,"#,
            r#""online":true,"timeline":3},{"lsn":"0/3000400","redo":"0/3000400","#,
            r#""time_unix":1795000001,"online":false,"timeline":3}],"#,
            r#""backup_ends":[{"lsn":"0/3000500","backup_start":"0/2000028"}],"#,
            r#""end_of_recovery":[{"lsn":"0/3000600","time":848583932000000,"timeline":3,"#,
            r#""prev_timeline":2}],"min_xid":739,"max_xid":4294967295}}"#
        );
        assert_eq!(serde_json::to_string(&full).unwrap(), full_json);
        assert_eq!(serde_json::from_str::<IndexEntry>(full_json).unwrap(), full);

        let sparse = entry(SegmentSummary {
            first_record: None,
            last_record: None,
            end_of_wal: Lsn(0x0400_0000),
            ends_with_switch: false,
            continues_into_next: true,
            xact_count: 0,
            last_xact: None,
            min_time: None,
            max_time: None,
            spill_undecoded: false,
            restore_points: Vec::new(),
            checkpoints: Vec::new(),
            backup_ends: Vec::new(),
            end_of_recovery: Vec::new(),
            min_xid: None,
            max_xid: None,
        });
        let sparse_json = concat!(
            r#"{"format":2,"segment":"000000030000000000000003","segment_crc32c":3735928559,"#,
            r#""summary":{"first_record":null,"last_record":null,"end_of_wal":"0/4000000","#,
            r#""continues_into_next":true,"xact_count":0}}"#
        );
        assert_eq!(serde_json::to_string(&sparse).unwrap(), sparse_json);
        assert_eq!(
            serde_json::from_str::<IndexEntry>(sparse_json).unwrap(),
            sparse
        );

        let pack = IndexPack {
            format: INDEX_FORMAT,
            directory: "0000000300000000".into(),
            entries: vec![full, sparse],
        };
        let pack_json = format!(
            r#"{{"format":2,"directory":"0000000300000000","entries":[{full_json},{sparse_json}]}}"#
        );
        assert_eq!(serde_json::to_string(&pack).unwrap(), pack_json);
        assert_eq!(serde_json::from_str::<IndexPack>(&pack_json).unwrap(), pack);
    }

    #[test]
    fn packs_supersede_one_another_and_loose_entries_fill_in() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repository(dir.path());
        let stanza = repo.open_stanza("main").unwrap();
        let summary = summary();
        let name = |n: u32| WalFileName::parse(&format!("0000000100000003{n:08X}")).unwrap();
        for n in 0..3 {
            stanza.put_wal_index(name(n), n, summary.clone()).unwrap();
        }
        assert_eq!(stanza.pack_wal_index("0000000100000003").unwrap(), Some(3));
        // Nothing new: no new pack.
        assert_eq!(stanza.pack_wal_index("0000000100000003").unwrap(), None);
        stanza.put_wal_index(name(7), 7, summary.clone()).unwrap();
        assert_eq!(stanza.pack_wal_index("0000000100000003").unwrap(), Some(4));
        let packed = stanza.packed_wal_index().unwrap();
        assert_eq!(
            packed.keys().cloned().collect::<Vec<_>>(),
            [0, 1, 2, 7].map(|n| name(n).to_string())
        );
        assert_eq!(packed[&name(7).to_string()].segment_crc32c, 7);
        // Both packs are there; the larger one is read.
        let packs: Vec<String> = repo
            .storage()
            .list(&layout::wal_index_packs("main"), &Cancel::never())
            .unwrap()
            .into_iter()
            .map(|o| o.key.file_name().to_owned())
            .collect();
        assert_eq!(packs, ["0000000100000003.00003", "0000000100000003.00004"]);
        // A stray object among the packs is refused by name.
        std::fs::write(dir.path().join("main/walindex/packs/stray"), b"x").unwrap();
        assert_eq!(
            stanza.packed_wal_index().unwrap_err().to_string(),
            "unexpected object main/walindex/packs/stray among the WAL index packs"
        );
    }
}
