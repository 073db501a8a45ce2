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
//!
//! What an entry and a pack hold, as JSON, is `schema`'s.

mod schema;

pub use schema::{INDEX_FORMAT, IndexEntry, IndexPack};

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};

use super::Stanza;
use super::{layout, limits};
use crate::pg::WalFileName;
use crate::pg::wal::SegmentSummary;
use crate::storage::{Cancel, PutOutcome};

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
        let Some(json) = self.get_checked_object(&key, limits::WAL_INDEX_ENTRY)? else {
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
            .get_checked_object(&key, limits::WAL_INDEX_PACK)?
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
