//! `tidemark index rebuild`: writes the WAL index entries that are missing, from the archived
//! segments themselves (each read and checked like a restore). Entries already there are
//! checked to describe the archived content; none is replaced.

use std::collections::BTreeSet;

use super::walk_archived::walk_archived;
use crate::pg::WalFileName;
use crate::repo::{Stanza, layout};

/// What a rebuild did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub segments: u64,
    pub written: u64,
    pub already_there: u64,
    /// New packs written, one per WAL directory whose entries were not all packed.
    pub packs: u64,
}

/// Indexes every archived segment and `.partial` of `stanza` that has no index entry, then
/// packs the entries of every WAL directory that are not packed yet.
pub fn rebuild_index(stanza: &Stanza<'_>) -> anyhow::Result<RebuildReport> {
    let mut report = RebuildReport::default();
    let mut directories = BTreeSet::new();
    for (name, _) in stanza.list_wal()? {
        let (WalFileName::Segment(segment) | WalFileName::Partial(segment)) = name else {
            continue;
        };
        directories.insert(layout::wal_directory_of(segment));
        report.segments += 1;
        if stanza.get_wal_index(name)?.is_some() {
            report.already_there += 1;
            continue;
        }
        let (header, walked) = walk_archived(stanza, name)?;
        stanza.put_wal_index(name, header.original_crc, walked.summary)?;
        report.written += 1;
    }
    for directory in directories {
        if stanza.pack_wal_index(&directory)?.is_some() {
            report.packs += 1;
        }
    }
    Ok(report)
}
