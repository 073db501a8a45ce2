//! The WAL index: for each archived segment, what its records say (commit and abort times,
//! restore points, checkpoints, where valid WAL ends), written at push time next to the segment
//! and read by the recovery planner. An entry names the CRC-32C of the segment it describes, so
//! it can never be taken for another segment's; a missing entry is rebuilt from the segment.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Stanza;
use super::layout;
use crate::pg::WalFileName;
use crate::pg::wal_records::SegmentSummary;
use crate::storage::PutOutcome;

/// Version of the index entry format.
pub const INDEX_FORMAT: u32 = 1;

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
        if entry.format != INDEX_FORMAT {
            bail!(
                "index entry {key} has format {}, which this Tidemark does not know; upgrade Tidemark",
                entry.format
            );
        }
        Ok(Some(entry))
    }
}
