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

#[path = "common/synthetic_archive.rs"]
mod synthetic_archive;

use synthetic_archive::SEGMENT_BYTES;
use tidemark::pg::Lsn;
use tidemark::repo::test_repository;
use tidemark::storage::LocalDirectory;

const SEGMENTS: u64 = 100_000;
const RUNS: usize = 7;

fn build(root: &Path) -> anyhow::Result<()> {
    synthetic_archive::write_segments(root, SEGMENTS)?;
    let repo = test_repository(Box::new(LocalDirectory::new(root)));
    let stanza = repo.open_stanza("main")?;
    stanza.put_backup_record(&synthetic_archive::backup_at(
        &stanza,
        "20261121-000000F",
        0,
    )?)?;
    Ok(())
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
    let tidemark = synthetic_archive::release_tidemark()?;
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
    let packs = synthetic_archive::pack_all(&root, SEGMENTS)?;
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
