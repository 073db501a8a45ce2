//! `tidemark backup`: a base backup over the replication protocol, streamed straight into the
//! repository. The tar stream is split into files as it arrives, each file's chunks are hashed,
//! compressed and stored on all cores, content already in the repository is not stored again,
//! every file is checked against PostgreSQL's manifest, and the WAL the backup needs must be in
//! the archive (or inside the backup) before its record is written — the record is what makes
//! the backup exist, so an interrupted backup leaves nothing that looks usable.
//!
//! A backup holds the stanza's backup lock (`repo::lock`) from before BASE_BACKUP until its
//! record is stored: an expire that sees it does not sweep the chunks the backup stores and
//! reuses before its record lists them, and the backup does not start while an expire runs.

mod receive;
pub mod splitter;
pub mod store_pool;
pub mod ustar;
pub mod verify;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::pg::backup_label::BackupLabel;
use crate::pg::backup_manifest::BackupManifest;
use crate::pg::{SegmentName, SegmentSize, WalFileName};
use crate::protocol::ConnectTarget;
use crate::repo::Stanza;
use crate::repo::catalog::{BackupEntry, BackupRecord, BackupSizes, EntryKind, RECORD_FORMAT};
use crate::repo::lock::HeldLock;
use receive::{Received, receive_and_store};
use store_pool::StoreStats;

/// How to take the backup.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub fast_checkpoint: bool,
    pub include_wal: bool,
    /// How long to wait for the needed WAL to reach the archive.
    pub archive_timeout: Duration,
}

/// Takes a base backup of the server at `target` into `stanza`, under the stanza's backup lock
/// (taken first; it waits, bounded, for a running expire to end).
pub fn take_backup(
    stanza: &Stanza<'_>,
    target: &ConnectTarget,
    options: &BackupOptions,
) -> anyhow::Result<BackupRecord> {
    let lock = stanza.locks().lock_for_backup()?;
    let started = Instant::now();
    let start_time = chrono::Utc::now();
    let label = start_time.format("%Y%m%d-%H%M%SF").to_string();
    check_label_is_free(stanza, &label)?;
    let (received, entries, stats) = receive_and_store(stanza, target, options, &label)?;
    check_what_was_received(stanza, &received, &entries)?;
    let wal = WalRange::of(stanza, &received);
    if options.include_wal {
        check_wal_is_included(&entries, &wal)?;
    } else {
        wait_for_wal(stanza, wal.first, wal.last, options.archive_timeout)?;
    }
    let has_manifest = !received.manifest.is_empty();
    if has_manifest {
        stanza.put_backup_manifest(&label, &received.manifest)?;
    }
    let record = BackupRecord {
        format: RECORD_FORMAT,
        label,
        kind: "full".to_owned(),
        system_id: stanza.identity().system_id,
        pg_version: stanza.identity().pg_version,
        timeline: received.start.1,
        start_lsn: received.start.0,
        stop_lsn: received.end.0,
        start_time: start_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        stop_time: received
            .end
            .2
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        duration_ms: started.elapsed().as_millis() as u64,
        wal_start: wal.first.to_string(),
        wal_stop: wal.last.to_string(),
        wal_included: options.include_wal,
        has_manifest,
        sizes: sizes(&entries, &stats),
        tablespaces: received.tablespaces,
        entries,
    };
    check_lock_is_held(&lock)?;
    stanza.put_backup_record(&record)?;
    Ok(record)
}

/// Refuses to record the backup when its lock is gone: an expire (on another host, which took
/// the lock for stale) may have swept chunks the backup uses, so its record could name chunks
/// that are no longer stored.
fn check_lock_is_held(lock: &HeldLock) -> anyhow::Result<()> {
    if !lock.still_held()? {
        bail!(
            "the backup's lock {} was deleted while it ran (an expire on another host took it for stale, and may have removed chunks this backup uses), so the backup was not recorded: check that the hosts' clocks agree, then back up again",
            lock.key()
        );
    }
    Ok(())
}

/// Refuses a label a backup already has. Labels have one-second resolution: find out now, not
/// after all the work.
fn check_label_is_free(stanza: &Stanza<'_>, label: &str) -> anyhow::Result<()> {
    if stanza.list_backups()?.iter().any(|b| b.label == label)
        || stanza
            .repository()
            .storage()
            .head(&crate::repo::layout::backup_manifest(stanza.name(), label))?
            .is_some()
    {
        bail!(
            "a backup labelled {label} was started in this same second; start the next one a second later"
        );
    }
    Ok(())
}

/// Checks what the server sent against its backup manifest (which servers that can send one
/// must have sent), and its `backup_label` against where it said the backup starts.
fn check_what_was_received(
    stanza: &Stanza<'_>,
    received: &Received,
    entries: &[BackupEntry],
) -> anyhow::Result<()> {
    if !received.manifest.is_empty() {
        let manifest = BackupManifest::parse(&received.manifest)
            .context("check PostgreSQL's backup manifest")?;
        let system_id = stanza.identity().system_id;
        if let Some(named) = manifest.system_id
            && named != system_id
        {
            bail!(
                "the server's backup manifest names system identifier {named}, but stanza '{}' is bound to {system_id}",
                stanza.name()
            );
        }
        verify::check_against_manifest(entries, &manifest)
            .context("check what the server sent against its backup manifest")?;
    } else if received.server_version_num >= crate::protocol::base_backup::MANIFEST_FROM {
        bail!("the server sent no backup manifest, though it was asked for one");
    }
    let label_file = entries
        .iter()
        .find(|e| e.path == "backup_label")
        .context("the backup has no backup_label")?;
    let mut label_text = Vec::new();
    for chunk in &label_file.chunks {
        let mut bytes = Vec::new();
        stanza.blobs().get(&chunk.name, &mut bytes)?;
        label_text.extend_from_slice(&bytes);
    }
    let backup_label = BackupLabel::parse(&String::from_utf8_lossy(&label_text))?;
    if backup_label.start_lsn != received.start.0 {
        bail!(
            "backup_label starts at {}, the server said {}",
            backup_label.start_lsn,
            received.start.0
        );
    }
    Ok(())
}

/// The WAL segments a backup needs to be consistent: from the one its start is in to the one
/// holding the last byte before its end, on its starting timeline.
struct WalRange {
    first: SegmentName,
    last: SegmentName,
    size: SegmentSize,
}

impl WalRange {
    fn of(stanza: &Stanza<'_>, received: &Received) -> WalRange {
        let size = stanza.expected_cluster().segment_size;
        let timeline = received.start.1;
        let segment_of = |byte: u64| {
            SegmentName::from_segment_number(timeline, byte / u64::from(size.bytes()), size)
        };
        WalRange {
            first: segment_of(received.start.0.0),
            last: segment_of(received.end.0.0.max(1) - 1),
            size,
        }
    }
}

/// With `--include-wal`, the server must have sent every segment the backup needs.
fn check_wal_is_included(entries: &[BackupEntry], wal: &WalRange) -> anyhow::Result<()> {
    let size = wal.size;
    for segno in wal.first.segment_number(size)?..=wal.last.segment_number(size)? {
        let name = SegmentName::from_segment_number(wal.first.timeline, segno, size);
        if !entries.iter().any(|e| e.path == format!("pg_wal/{name}")) {
            bail!("--include-wal was asked for, but the server did not send WAL segment {name}");
        }
    }
    Ok(())
}

/// The backup's sizes: of its files as they were, and of what storing them took.
fn sizes(entries: &[BackupEntry], stats: &StoreStats) -> BackupSizes {
    BackupSizes {
        original: entries.iter().map(|e| e.size).sum(),
        stored: stats.stored.load(Ordering::Relaxed),
        new: stats.new.load(Ordering::Relaxed),
        files: entries.iter().filter(|e| e.kind == EntryKind::File).count() as u64,
        reused_chunks: stats.reused_chunks.load(Ordering::Relaxed),
    }
}

/// Waits until every segment from `first` to `last` is archived in `stanza`.
fn wait_for_wal(
    stanza: &Stanza<'_>,
    first: SegmentName,
    last: SegmentName,
    timeout: Duration,
) -> anyhow::Result<()> {
    let size = stanza.expected_cluster().segment_size;
    let deadline = Instant::now() + timeout;
    for segno in first.segment_number(size)?..=last.segment_number(size)? {
        let name = SegmentName::from_segment_number(first.timeline, segno, size);
        let key = stanza.wal_key(WalFileName::Segment(name));
        while stanza.repository().storage().head(&key)?.is_none() {
            if Instant::now() >= deadline {
                bail!(
                    "the backup needs WAL segment {name}, which is not in the archive of stanza '{}' after {} s: check that archive_command pushes to this stanza (see pg_stat_archiver), or use --include-wal",
                    stanza.name(),
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
