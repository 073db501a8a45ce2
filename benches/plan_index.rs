//! How long `tidemark plan` takes over a large WAL index: 100,000 archived segments of 16 MiB
//! (1.5 TiB of WAL) on one timeline, each with an index entry of a realistic shape, one backup at
//! the start. The segments themselves are stand-ins of a few bytes: planning reads only the list
//! of segments and the index, except for the one segment where a time or XID target stops,
//! whose decoding `wal_compression` measures (a few milliseconds per 16 MiB), and for an LSN
//! target in a segment whose last record spills into the next (here the last segment ends with
//! a switch, so the index alone answers).
//!
//! Measures end to end (process start included) the median of `tidemark plan` to a restore
//! point in the last segment, to an LSN in it, and to the end of the archive, first with every
//! complete WAL directory packed (as pushes leave it), then with no packs (entries read one by
//! one). Run: `cargo bench --bench plan_index`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tidemark::pg::wal::{CheckpointRecord, RestorePoint, SegmentSummary, XactEnd, XactEndKind};
use tidemark::pg::{Lsn, SegmentName, SegmentSize, TimelineId, WalFileName};
use tidemark::repo::catalog::{BackupRecord, BackupSizes};
use tidemark::repo::{Compression, Repository, WriteSettings, test_repository};
use tidemark::storage::LocalDirectory;

const SEGMENTS: u64 = 100_000;
const SEGMENT_BYTES: u64 = 16 << 20;
const RUNS: usize = 7;

/// An index entry summary like a busy segment's: thousands of commits a second apart in time,
/// a checkpoint every 16 segments, the restore point in the last one.
fn summary(segno: u64) -> SegmentSummary {
    let start = segno * SEGMENT_BYTES;
    let time = |offset: u64| (segno * 16 + offset) as i64 * 1_000_000;
    let xid = |offset: u64| 1000 + (segno * 5000 + offset) as u32;
    SegmentSummary {
        first_record: Some(Lsn(start + 40)),
        last_record: Some(Lsn(start + SEGMENT_BYTES - 200)),
        end_of_wal: Lsn(start + SEGMENT_BYTES),
        // The last segment ends with a switch, as `archive_timeout` or `pg_switch_wal()` leave
        // the newest one; all others end inside a record that spills into the next.
        ends_with_switch: segno == SEGMENTS - 1,
        continues_into_next: segno != SEGMENTS - 1,
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
        restore_points: if segno == SEGMENTS - 1 {
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

fn build(root: &Path) -> anyhow::Result<()> {
    let repo = test_repository(Box::new(LocalDirectory::new(root)));
    let stanza = repo.open_stanza("main")?;
    let identity = stanza.identity().clone();
    anyhow::ensure!(u64::from(identity.segment_size) == SEGMENT_BYTES);
    let size = SegmentSize::new(SEGMENT_BYTES)?;
    for segno in 0..SEGMENTS {
        let name = SegmentName::from_segment_number(TimelineId(1), segno, size);
        let file = WalFileName::Segment(name);
        // A stand-in for the segment: planning lists it, and reads none of it here.
        let path = root.join(stanza.wal_key(file).as_str());
        fs::create_dir_all(path.parent().unwrap())?;
        fs::write(&path, b"stand-in")?;
        stanza.put_wal_index(file, segno as u32, summary(segno))?;
    }
    let backup = BackupRecord {
        format: 1,
        label: "20261121-000000F".into(),
        kind: "full".into(),
        system_id: identity.system_id,
        pg_version: identity.pg_version,
        timeline: TimelineId(1),
        start_lsn: Lsn(40),
        stop_lsn: Lsn(SEGMENT_BYTES + 100),
        start_time: "2026-11-21T00:00:00Z".into(),
        stop_time: "2026-11-21T00:00:10Z".into(),
        duration_ms: 10_000,
        wal_start: SegmentName::from_segment_number(TimelineId(1), 0, size).to_string(),
        wal_stop: SegmentName::from_segment_number(TimelineId(1), 1, size).to_string(),
        wal_included: false,
        has_manifest: false,
        sizes: BackupSizes::default(),
        tablespaces: vec![],
        entries: vec![],
    };
    stanza.put_backup_record(&backup)?;
    Ok(())
}

fn pack_all(root: &Path) -> anyhow::Result<usize> {
    let repo = Repository::new(
        Box::new(LocalDirectory::new(root)),
        WriteSettings {
            compression: Compression::Zstd,
            zstd_level: 3,
        },
    );
    let stanza = repo.open_stanza("main")?;
    let size = SegmentSize::new(SEGMENT_BYTES)?;
    let last = SegmentName::from_segment_number(TimelineId(1), SEGMENTS - 1, size);
    let mut packs = 0;
    // Every directory but the one still being written, as pushes leave them.
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

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time_plan(tidemark: &Path, config: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let output = Command::new(tidemark)
            .arg("--config")
            .arg(config)
            .arg("plan")
            .args(args)
            .args(["--output", "json"])
            .output()?;
        samples.push(started.elapsed());
        anyhow::ensure!(
            output.status.success(),
            "tidemark plan {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(median(samples))
}

fn main() -> anyhow::Result<()> {
    let tidemark = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/tidemark");
    anyhow::ensure!(
        tidemark.exists(),
        "{} is missing: run `cargo build --release --bin tidemark` first",
        tidemark.display()
    );
    let dir = tempfile::tempdir()?;
    // TIDEMARK_BENCH_KEEP=1 keeps the stanza (and prints where), to profile `plan` over it.
    let dir_path = if std::env::var_os("TIDEMARK_BENCH_KEEP").is_some() {
        dir.keep()
    } else {
        dir.path().to_owned()
    };
    let dir = dir_path.as_path();
    let root = dir.join("repo");
    let started = Instant::now();
    build(&root)?;
    println!(
        "built a stanza of {SEGMENTS} indexed segments in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let config = dir.join("tidemark.toml");
    fs::write(
        &config,
        format!(
            "[repo]\npath = \"{}\"\n\n[stanza.main]\npgdata = \"/nonexistent\"\n",
            root.display()
        ),
    )?;
    let last_lsn = Lsn((SEGMENTS - 1) * SEGMENT_BYTES + 8192).to_string();
    let targets: [(&str, Vec<&str>); 3] = [
        ("restore point", vec!["--target-name", "before migration"]),
        ("LSN", vec!["--target-lsn", &last_lsn]),
        ("end of archive", vec![]),
    ];
    let mut rows = Vec::new();
    for (label, args) in &targets {
        rows.push((label, "loose entries", time_plan(&tidemark, &config, args)?));
    }
    let packs = pack_all(&root)?;
    println!("packed {packs} WAL directories");
    for (label, args) in &targets {
        rows.push((label, "packed", time_plan(&tidemark, &config, args)?));
    }
    if std::env::var_os("TIDEMARK_BENCH_KEEP").is_some() {
        println!("kept the stanza: {}", config.display());
    }
    println!("\n`tidemark plan --output json` over {SEGMENTS} segments, median of {RUNS} runs:");
    for (label, how, time) in rows {
        println!(
            "  {label:<15} {how:<14} {:>8.1} ms",
            time.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
