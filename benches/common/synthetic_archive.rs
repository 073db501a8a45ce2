//! A stanza of stand-in WAL for the benchmarks of whole-stanza commands (`plan`, `expire`):
//! segments of a few bytes with index entries of a busy segment's shape, packs, and records of
//! backups without files.

use std::fs;
use std::path::Path;

use tidemark::pg::wal::{CheckpointRecord, RestorePoint, SegmentSummary, XactEnd, XactEndKind};
use tidemark::pg::{Lsn, SegmentName, SegmentSize, TimelineId, WalFileName};
use tidemark::repo::catalog::{BackupRecord, BackupSizes};
use tidemark::repo::{Stanza, test_repository};
use tidemark::storage::LocalDirectory;

/// The segment size of the stanza (`test_repository`'s).
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// An index entry summary like a busy segment's: thousands of commits a second apart in time,
/// a checkpoint every 16 segments, the restore point in the last one.
pub fn summary(segno: u64, segments: u64) -> SegmentSummary {
    let start = segno * SEGMENT_BYTES;
    let time = |offset: u64| (segno * 16 + offset) as i64 * 1_000_000;
    let xid = |offset: u64| 1000 + (segno * 5000 + offset) as u32;
    SegmentSummary {
        first_record: Some(Lsn(start + 40)),
        last_record: Some(Lsn(start + SEGMENT_BYTES - 200)),
        end_of_wal: Lsn(start + SEGMENT_BYTES),
        // The last segment ends with a switch, as `archive_timeout` or `pg_switch_wal()` leave
        // the newest one; all others end inside a record that spills into the next.
        ends_with_switch: segno == segments - 1,
        continues_into_next: segno != segments - 1,
        xact_count: 5000,
        last_xact: Some(XactEnd {
            lsn: Lsn(start + SEGMENT_BYTES - 400),
            kind: XactEndKind::Commit,
            xid: xid(4999),
            time: time(15),
        }),
        min_time: Some(time(0)),
        max_time: Some(time(15)),
        spill_undecoded: false,
        restore_points: if segno == segments - 1 {
            vec![RestorePoint {
                lsn: Lsn(start + 4096),
                name: "before migration".into(),
                time: time(1),
            }]
        } else {
            vec![]
        },
        checkpoints: if segno.is_multiple_of(16) {
            vec![CheckpointRecord {
                lsn: Lsn(start + 8192),
                redo: Lsn(start + 100),
                time_unix: 1_790_000_000 + segno as i64 * 16,
                online: true,
                timeline: 1,
            }]
        } else {
            vec![]
        },
        backup_ends: vec![],
        end_of_recovery: vec![],
        min_xid: Some(xid(0)),
        max_xid: Some(xid(4999)),
    }
}

/// Stores `segments` stand-in segments of 16 MiB on timeline 1 (a few bytes each: planning
/// and expiry list them and read none of them) with an index entry of [`summary`]'s shape each,
/// in the stanza `main` of a test repository at `root`.
pub fn write_segments(root: &Path, segments: u64) -> anyhow::Result<()> {
    let repo = test_repository(Box::new(LocalDirectory::new(root)));
    let stanza = repo.open_stanza("main")?;
    anyhow::ensure!(u64::from(stanza.identity().segment_size) == SEGMENT_BYTES);
    let size = SegmentSize::new(SEGMENT_BYTES)?;
    for segno in 0..segments {
        let name = SegmentName::from_segment_number(TimelineId(1), segno, size);
        let file = WalFileName::Segment(name);
        let path = root.join(stanza.wal_key(file).as_str());
        fs::create_dir_all(path.parent().unwrap())?;
        fs::write(&path, b"stand-in")?;
        stanza.put_wal_index(file, segno as u32, summary(segno, segments))?;
    }
    Ok(())
}

/// The record of a backup of stanza `main` (no files) that starts in segment `first` and is
/// consistent in the next one.
pub fn backup_at(stanza: &Stanza<'_>, label: &str, first: u64) -> anyhow::Result<BackupRecord> {
    let identity = stanza.identity();
    let size = SegmentSize::new(SEGMENT_BYTES)?;
    Ok(BackupRecord {
        format: 1,
        label: label.into(),
        kind: "full".into(),
        system_id: identity.system_id,
        pg_version: identity.pg_version,
        timeline: TimelineId(1),
        start_lsn: Lsn(first * SEGMENT_BYTES + 40),
        stop_lsn: Lsn((first + 1) * SEGMENT_BYTES + 100),
        start_time: "2026-11-21T00:00:00Z".into(),
        stop_time: "2026-11-21T00:00:10Z".into(),
        duration_ms: 10_000,
        wal_start: SegmentName::from_segment_number(TimelineId(1), first, size).to_string(),
        wal_stop: SegmentName::from_segment_number(TimelineId(1), first + 1, size).to_string(),
        wal_included: false,
        has_manifest: false,
        sizes: BackupSizes::default(),
        tablespaces: vec![],
        entries: vec![],
    })
}

/// Packs the index entries of every complete WAL directory below segment `segments`, as pushes
/// leave them; returns how many packs it wrote.
pub fn pack_all(root: &Path, segments: u64) -> anyhow::Result<usize> {
    let repo = test_repository(Box::new(LocalDirectory::new(root)));
    let stanza = repo.open_stanza("main")?;
    let size = SegmentSize::new(SEGMENT_BYTES)?;
    let last = SegmentName::from_segment_number(TimelineId(1), segments - 1, size);
    let mut packs = 0;
    for log in 0..last.log {
        if stanza
            .pack_wal_index(&format!("00000001{log:08X}"))?
            .is_some()
        {
            packs += 1;
        }
    }
    Ok(packs)
}

/// The release build of `tidemark`, which the benchmarks time; an error says how to build it.
pub fn release_tidemark() -> anyhow::Result<std::path::PathBuf> {
    let tidemark = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/tidemark");
    anyhow::ensure!(
        tidemark.exists(),
        "{} is missing: run `cargo build --release --bin tidemark` first",
        tidemark.display()
    );
    Ok(tidemark)
}
