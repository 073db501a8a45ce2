//! Removing what no listed backup needs: the objects of expired backups (record first, so a
//! backup is unlisted before anything it holds goes), and the sweep of chunks no listed backup
//! refers to, with the directories of backups that never got a record.

use serde::Serialize;

use std::collections::BTreeSet;

use crate::repo::Stanza;
use crate::repo::blob_pool::BlobPool;
use crate::repo::catalog::BackupRecord;
use crate::repo::gc::{referenced_blobs, unreferenced_blobs};
use crate::repo::layout;
use crate::storage::{Cancel, ObjectKey};

/// What a sweep removed (or, dry, would remove).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub chunks: u64,
    pub chunk_bytes: u64,
    /// Directories of backups without a record: interrupted backups, or expiries killed after
    /// the record went.
    pub unrecorded_backups: Vec<String>,
}

/// Removes the backups `labels`: every record first, durably, then each backup's other
/// objects. Killed in between, the backups are already unlisted; their leftovers are
/// directories without a record, which the next sweep removes.
pub fn remove_backups(stanza: &Stanza<'_>, labels: &[String]) -> anyhow::Result<()> {
    let storage = stanza.repository().storage();
    let records: Vec<ObjectKey> = labels
        .iter()
        .map(|label| layout::backup_record(stanza.name(), label))
        .collect();
    storage.delete_all(&records)?;
    for label in labels {
        remove_backup_directory(stanza, label)?;
    }
    Ok(())
}

/// Chunks none of `live` refers to, and backup directories without a record: removed, or with
/// `dry_run` only counted. Only safe while no backup runs (see `repo::lock`).
pub fn sweep(
    stanza: &Stanza<'_>,
    live: &[BackupRecord],
    dry_run: bool,
) -> anyhow::Result<SweepReport> {
    let unrecorded: Vec<String> = stanza
        .unrecorded_backup_directories()?
        .into_iter()
        .collect();
    let mut report = sweep_chunks(&stanza.blobs(), &referenced_blobs(live), dry_run)?;
    if !dry_run {
        for label in &unrecorded {
            remove_backup_directory(stanza, label)?;
        }
    }
    report.unrecorded_backups = unrecorded;
    Ok(report)
}

/// The chunks of `pool` that none of `referenced` names: removed, or with `dry_run` only
/// counted. A stanza's sweep and a source's share it.
pub fn sweep_chunks(
    pool: &BlobPool<'_>,
    referenced: &BTreeSet<String>,
    dry_run: bool,
) -> anyhow::Result<SweepReport> {
    let garbage = unreferenced_blobs(&pool.list()?, referenced);
    let report = SweepReport {
        chunks: garbage.len() as u64,
        chunk_bytes: garbage.iter().map(|blob| blob.size).sum(),
        unrecorded_backups: Vec::new(),
    };
    if !dry_run {
        let keys: Vec<ObjectKey> = garbage.into_iter().map(|blob| blob.key).collect();
        pool.repository().storage().delete_all(&keys)?;
    }
    Ok(report)
}

/// Deletes every object under `backup/<label>/`.
fn remove_backup_directory(stanza: &Stanza<'_>, label: &str) -> anyhow::Result<()> {
    let storage = stanza.repository().storage();
    let directory = layout::backup_root(stanza.name()).join(label)?;
    let keys: Vec<ObjectKey> = storage
        .list(&directory, &Cancel::never())?
        .into_iter()
        .map(|listed| listed.key)
        .collect();
    storage.delete_all(&keys)?;
    Ok(())
}
