//! Compression of real WAL and the cost of one synchronous push, per codec, on two kinds of WAL.
//!
//! Makes real PostgreSQL 15 WAL (16 MiB segments) on a throwaway cluster for each kind (see
//! `common::wal_kinds`: pgbench's, mostly full-page images, and small rows', short records
//! only), then for each codec measures in process the stored size and the compress and
//! decompress throughput, and end to end the median wall time and CPU time of one
//! `tidemark-archive` call per segment (into a fresh local repository, fsync included) next to
//! `cp` and `cp` + fsync of the same segments. Prints a table per kind, writes
//! `target/bench-results/wal_compression.json`. Run: `cargo bench --bench wal_compression`
//! (`TIDEMARK_BENCH_WAL=pgbench` or `small_rows` for one kind).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cpu::timed_call;
use common::wal_kinds::{WalKind, write_small_rows};
use testkit::Lab;
use testkit::ThrowawayCluster;
use tidemark::repo::Compression;
use tidemark::repo::object::{decode_into, encode};

struct Codec {
    label: &'static str,
    compression: Compression,
    level: i32,
}

const CODECS: [Codec; 7] = [
    Codec {
        label: "zstd 1",
        compression: Compression::Zstd,
        level: 1,
    },
    Codec {
        label: "zstd 3",
        compression: Compression::Zstd,
        level: 3,
    },
    Codec {
        label: "zstd 6",
        compression: Compression::Zstd,
        level: 6,
    },
    Codec {
        label: "zstd -1",
        compression: Compression::Zstd,
        level: -1,
    },
    Codec {
        label: "zstd -5",
        compression: Compression::Zstd,
        level: -5,
    },
    Codec {
        label: "lz4",
        compression: Compression::Lz4,
        level: 1,
    },
    Codec {
        label: "none",
        compression: Compression::None,
        level: 1,
    },
];

/// Small-row WAL written per run: about 20 segments, as many as pgbench's run writes.
const SMALL_ROW_WAL_BYTES: u64 = 320 << 20;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn mib_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / time.as_secs_f64()
}

/// Real WAL of `kind`: a cluster archives with `cp` while the workload runs. Returns the
/// archive directory and the (stopped) cluster's data directory, which `stanza-create` reads.
fn make_wal(lab: &Lab, kind: WalKind) -> anyhow::Result<(PathBuf, PathBuf)> {
    let raw = lab.tmp.subdir(&format!("raw-{}", kind.key()))?;
    let mut cluster = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), kind.key(), 16)?;
    let archive_command = format!("cp %p {}/%f", raw.display());
    cluster.configure(&[
        ("archive_mode", "on"),
        ("archive_command", &archive_command),
        ("max_wal_size", "4GB"),
        ("checkpoint_timeout", "30min"),
    ])?;
    cluster.start()?;
    match kind {
        WalKind::Pgbench => {
            cluster.run_pgbench(&["-i", "-q", "-s", "20"])?;
            cluster.run_pgbench(&["-n", "-T", "20", "-c", "2"])?;
        }
        WalKind::SmallRows => {
            write_small_rows(&cluster, SMALL_ROW_WAL_BYTES)?;
        }
    }
    testkit::switch_and_wait_for_archive(&cluster)?;
    cluster.stop()?;
    Ok((raw, cluster.data_dir().to_path_buf()))
}

fn segments_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() == 24)
    });
    paths.sort();
    Ok(paths)
}

fn main() -> anyhow::Result<()> {
    let lab = common::lab("tm-bench-")?;
    let mut by_kind = serde_json::Map::new();
    for kind in WalKind::chosen()? {
        by_kind.insert(kind.key().to_owned(), measure_kind(&lab, kind)?);
    }
    let out = common::write_results("wal_compression", &serde_json::Value::Object(by_kind))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Every codec and the copies on WAL of `kind`; prints its table.
fn measure_kind(lab: &Lab, kind: WalKind) -> anyhow::Result<serde_json::Value> {
    let (wal_dir, pgdata) = make_wal(lab, kind)?;
    let segments = segments_in(&wal_dir)?;
    anyhow::ensure!(
        !segments.is_empty(),
        "no WAL segments in {}",
        wal_dir.display()
    );
    let contents: Vec<Vec<u8>> = segments.iter().map(fs::read).collect::<Result<_, _>>()?;
    let original: u64 = contents.iter().map(|c| c.len() as u64).sum();
    println!(
        "\n{}: {} real segments, {:.0} MiB",
        kind.label(),
        segments.len(),
        original as f64 / (1 << 20) as f64
    );
    println!(
        "{:<8} {:>8} {:>14} {:>16} {:>15} {:>15}",
        "codec", "stored", "compress MiB/s", "decompress MiB/s", "push ms median", "push CPU ms"
    );
    let walk = time_check_and_walk(&segments, &contents)?;
    println!(
        "page check + record walk: {:.2} ms per {} MiB segment (median, in process)",
        walk.as_secs_f64() * 1000.0,
        contents[0].len() >> 20
    );
    let mut results = vec![
        serde_json::json!({ "check": "page headers + record walk", "ms_median_per_segment": walk.as_secs_f64() * 1000.0 }),
    ];
    for codec in &CODECS {
        results.push(measure_codec(lab, &pgdata, &segments, &contents, codec)?);
    }
    results.extend(measure_copy_baselines(lab, kind, &segments)?);
    Ok(
        serde_json::json!({ "segments": segments.len(), "original_bytes": original, "results": results }),
    )
}

/// The checks a push makes besides compressing: page headers and the record walk. Returns
/// the median time per segment, in process.
fn time_check_and_walk(segments: &[PathBuf], contents: &[Vec<u8>]) -> anyhow::Result<Duration> {
    let mut walks = Vec::new();
    for (segment, content) in segments.iter().zip(contents) {
        let name = match tidemark::pg::WalFileName::parse(
            &segment.file_name().unwrap().to_string_lossy(),
        )? {
            tidemark::pg::WalFileName::Segment(name) => name,
            other => anyhow::bail!("{other} is not a segment"),
        };
        let size = tidemark::pg::SegmentSize::new(content.len() as u64)?;
        let version = tidemark::pg::PgMajor::new(15)?;
        let system_id = u64::from_le_bytes(content[24..32].try_into()?);
        let expected = tidemark::pg::segment_check::ExpectedCluster {
            system_id,
            version,
            segment_size: size,
        };
        let started = Instant::now();
        let mut checker = tidemark::pg::segment_check::SegmentChecker::new(
            expected,
            name,
            tidemark::pg::segment_check::SegmentKind::Complete,
        )?;
        let mut walker = tidemark::pg::wal::RecordWalker::new(name, size, version, 8192);
        for chunk in content.chunks(1 << 20) {
            checker.feed(chunk)?;
            walker.feed(chunk)?;
        }
        checker.finish()?;
        let summary = walker.finish(true)?;
        walks.push(started.elapsed());
        std::hint::black_box(summary);
    }
    Ok(median(walks))
}

/// One codec: the share stored, in-process compress and decompress speed over every segment
/// (each decoded back and compared), and the median push end to end; prints its row.
fn measure_codec(
    lab: &Lab,
    pgdata: &Path,
    segments: &[PathBuf],
    contents: &[Vec<u8>],
    codec: &Codec,
) -> anyhow::Result<serde_json::Value> {
    let original: u64 = contents.iter().map(|c| c.len() as u64).sum();
    let mut stored = 0u64;
    let mut compress = Duration::ZERO;
    let mut decompress = Duration::ZERO;
    for content in contents {
        let started = Instant::now();
        let object = encode(codec.compression, codec.level, content)?;
        compress += started.elapsed();
        stored += object.header.stored_len;
        let bytes = [&object.header_bytes()[..], &object.body].concat();
        let mut out = Vec::with_capacity(content.len());
        let started = Instant::now();
        decode_into(&bytes, &mut out)?;
        decompress += started.elapsed();
        assert_eq!(&out, content);
    }
    let (push, push_cpu) = median_push(lab, pgdata, segments, codec)?;
    println!(
        "{:<8} {:>7.1}% {:>14.0} {:>16.0} {:>15.1} {:>15.1}",
        codec.label,
        stored as f64 * 100.0 / original as f64,
        mib_per_s(original, compress),
        mib_per_s(original, decompress),
        push,
        push_cpu
    );
    Ok(serde_json::json!({
        "codec": codec.label,
        "stored_percent": stored as f64 * 100.0 / original as f64,
        "compress_mib_s": mib_per_s(original, compress),
        "decompress_mib_s": mib_per_s(original, decompress),
        "push_ms_median": push,
        "push_cpu_ms_median": push_cpu,
    }))
}

/// End to end: one tidemark-archive process per segment into a fresh repository that stores
/// with `codec`; the median wall and CPU milliseconds of a push.
fn median_push(
    lab: &Lab,
    pgdata: &Path,
    segments: &[PathBuf],
    codec: &Codec,
) -> anyhow::Result<(f64, f64)> {
    let repo_extra = match codec.compression {
        Compression::Zstd => format!("compress = \"zstd\"\ncompress_level = {}", codec.level),
        other => format!("compress = \"{}\"", other.name()),
    };
    let _ = fs::remove_dir_all(&lab.repo_path);
    lab.write_config(pgdata, &repo_extra)?;
    lab.tidemark(&["stanza-create"])?;
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for segment in segments {
        // Spawned directly, not through runuser, so only the call itself is timed.
        let mut command = std::process::Command::new(lab.bin_dir.join("tidemark-archive"));
        command.args([
            OsStr::new("--config"),
            lab.config_path.as_os_str(),
            segment.as_os_str(),
        ]);
        let (wall, cpu) = timed_call(&mut command)?;
        walls.push(wall);
        cpus.push(cpu);
    }
    Ok((common::median(&walls), common::median(&cpus)))
}

/// Baselines on the same segments: the seeds' `cp`, and `cp` followed by fsync; prints
/// their rows.
fn measure_copy_baselines(
    lab: &Lab,
    kind: WalKind,
    segments: &[PathBuf],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let copies = lab.tmp.subdir(&format!("copies-{}", kind.key()))?;
    let mut results = Vec::new();
    for (label, sync) in [("cp", false), ("cp+fsync", true)] {
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        for segment in segments {
            let target = copies.join(format!(
                "{label}-{}",
                segment.file_name().unwrap().to_string_lossy()
            ));
            let mut command = std::process::Command::new("sh");
            let script = if sync {
                "cp \"$0\" \"$1\" && sync \"$1\""
            } else {
                "cp \"$0\" \"$1\""
            };
            command.args([
                OsStr::new("-c"),
                OsStr::new(script),
                segment.as_os_str(),
                target.as_os_str(),
            ]);
            let (wall, cpu) = timed_call(&mut command)?;
            walls.push(wall);
            cpus.push(cpu);
        }
        let (wall, cpu) = (common::median(&walls), common::median(&cpus));
        println!(
            "{:<8} {:>8} {:>14} {:>16} {:>15.1} {:>15.1}",
            label, "100.0%", "-", "-", wall, cpu
        );
        results.push(
            serde_json::json!({ "codec": label, "push_ms_median": wall, "push_cpu_ms_median": cpu }),
        );
    }
    Ok(results)
}
