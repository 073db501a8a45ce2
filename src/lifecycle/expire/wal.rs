//! Which archived WAL no kept backup needs: everything below the cutoff, the first segment the
//! oldest kept backup needs to become consistent. Restores start at a kept backup and only read
//! forward from it, on whatever timelines they follow, so nothing with a smaller segment number,
//! on any timeline, is read again. History files are kept: they are tiny, and a timeline's
//! history names every ancestor.

use anyhow::{Context, bail};
use serde::Serialize;

use crate::pg::{SegmentSize, WalFileName};
use crate::repo::Stanza;
use crate::repo::catalog::BackupRecord;
use crate::repo::layout;
use crate::storage::{Cancel, ObjectKey};

/// The WAL files an expiry removes.
#[derive(Debug, Default, Serialize)]
pub struct WalExpiry {
    /// The first segment (by number) every kept backup's restore may need; `None` when no WAL
    /// is removed (`archive = "all"`, or no backup kept).
    pub keep_from: Option<String>,
    /// What goes, per timeline.
    pub removed: Vec<WalRangeRemoved>,
    /// Segments, `.partial` and `.backup` files.
    #[serde(skip)]
    pub files: Vec<ObjectKey>,
    /// WAL-index entries and packs of removed segments, including those a killed expire left
    /// behind after their segments went.
    #[serde(skip)]
    pub index: Vec<ObjectKey>,
}

/// The WAL files removed from one timeline.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WalRangeRemoved {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub files: u64,
    pub stored_bytes: u64,
}

/// The smallest segment number among the first segments `kept` backups need, with that
/// segment's name.
pub fn cutoff(kept: &[BackupRecord], size: SegmentSize) -> anyhow::Result<Option<(u64, String)>> {
    let mut smallest: Option<(u64, String)> = None;
    for backup in kept {
        let segment = WalFileName::parse(&backup.wal_start)
            .ok()
            .and_then(WalFileName::segment)
            .with_context(|| {
                format!(
                    "backup {} records wal_start '{}', which is not a segment name: its record is damaged; expire removes no WAL until it is fixed",
                    backup.label, backup.wal_start
                )
            })?;
        let number = segment.segment_number(size)?;
        if smallest.as_ref().is_none_or(|(s, _)| number < *s) {
            smallest = Some((number, backup.wal_start.clone()));
        }
    }
    Ok(smallest)
}

/// The WAL files and index objects of `stanza` with a segment number below `cutoff`.
pub fn below_cutoff(stanza: &Stanza<'_>, cutoff: u64) -> anyhow::Result<WalExpiry> {
    let size = stanza.expected_cluster().segment_size;
    let mut expiry = WalExpiry {
        keep_from: None,
        ..WalExpiry::default()
    };
    for (name, listed) in stanza.list_wal()? {
        let Some(segment) = name.segment() else {
            continue;
        };
        if segment.segment_number(size)? >= cutoff {
            continue;
        }
        expiry.files.push(listed.key);
        let timeline = segment.timeline.0;
        match expiry.removed.iter_mut().find(|r| r.timeline == timeline) {
            Some(range) => {
                range.last = name.to_string();
                range.files += 1;
                range.stored_bytes += listed.size;
            }
            None => expiry.removed.push(WalRangeRemoved {
                timeline,
                first: name.to_string(),
                last: name.to_string(),
                files: 1,
                stored_bytes: listed.size,
            }),
        }
    }
    expiry.removed.sort_by_key(|r| r.timeline);
    expiry.index = index_below_cutoff(stanza, cutoff, size)?;
    Ok(expiry)
}

/// Index entries of segments below `cutoff`, and packs of WAL directories wholly below it. The
/// index is listed, not derived from the segments, so entries whose segments a killed expire
/// already removed are found too.
fn index_below_cutoff(
    stanza: &Stanza<'_>,
    cutoff: u64,
    size: SegmentSize,
) -> anyhow::Result<Vec<ObjectKey>> {
    let storage = stanza.repository().storage();
    let packs = layout::wal_index_packs(stanza.name());
    let mut doomed = Vec::new();
    let root = layout::wal_index_root(stanza.name());
    for listed in storage.list(&root, &Cancel::never())? {
        let file = listed.key.file_name();
        let below = if listed.key.as_str().starts_with(packs.as_str()) {
            let directory = file.split_once('.').map_or(file, |(d, _)| d);
            directory_end(directory, size)? <= cutoff
        } else {
            let name = WalFileName::parse(file)
                .ok()
                .and_then(WalFileName::segment)
                .with_context(|| format!("unexpected object {} in the WAL index", listed.key))?;
            name.segment_number(size)? < cutoff
        };
        if below {
            doomed.push(listed.key);
        }
    }
    Ok(doomed)
}

/// The segment number just past WAL directory `directory` (`TTTTTTTTLLLLLLLL`).
fn directory_end(directory: &str, size: SegmentSize) -> anyhow::Result<u64> {
    let log = directory
        .get(8..16)
        .filter(|_| directory.len() == 16)
        .and_then(|log| u32::from_str_radix(log, 16).ok());
    match log {
        Some(log) => Ok((u64::from(log) + 1) * size.segments_per_log()),
        None => bail!("unexpected WAL index pack of directory '{directory}'"),
    }
}
