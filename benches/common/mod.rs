//! What the end-to-end benchmarks share: finding (or installing) pgBackRest, sizes of trees,
//! removing and syncing between runs, medians and pgBackRest's configuration; CPU time from
//! /proc (`cpu`); the tests' client of Azurite's tables (`tests/common/azurite_tables.rs`); the
//! tests' S3 test bucket (`tests/common/s3.rs`, over testkit's `s3s-fs` server)
//! and their own S3 client of buckets (`tests/common/bucket.rs`).

#![allow(dead_code)] // Each bench uses its own subset.

#[path = "../../tests/common/azurite_tables.rs"]
pub mod azurite_tables;
#[path = "../../tests/common/bucket.rs"]
pub mod bucket;
pub mod cpu;
#[path = "../../tests/common/s3.rs"]
pub mod s3;
pub mod wal_kinds;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};

/// The path of `pgbackrest`, installing it with apt-get when we are root and it is missing.
pub fn pgbackrest_program() -> anyhow::Result<PathBuf> {
    let find = || -> Option<PathBuf> {
        let output = Command::new("sh")
            .args(["-c", "command -v pgbackrest"])
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
    };
    if let Some(path) = find() {
        return Ok(path);
    }
    if !rustix::process::geteuid().is_root() {
        bail!(
            "pgbackrest is not installed: install it (`apt-get install pgbackrest`) or run this bench as root, which installs it"
        );
    }
    println!("pgbackrest is missing: installing it with apt-get");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "pgbackrest"][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("run apt-get {}", args.join(" ")))?;
        ensure!(
            status.success(),
            "apt-get {} failed ({status})",
            args.join(" ")
        );
    }
    find().context("pgbackrest is still not on PATH after apt-get install pgbackrest")
}

/// A pgBackRest configuration for stanza `bench`: the cluster at `pgdata` reached through its
/// socket in `socket_dir` (port 5432, which only names the socket), LZ4 and two processes, its log
/// and lock under `dir`, quiet on the console; `global` adds lines to `[global]`.
pub fn pgbackrest_conf(global: &str, dir: &Path, pgdata: &Path, socket_dir: &Path) -> String {
    format!(
        "[global]\n\
         {global}\
         compress-type=lz4\n\
         process-max=2\n\
         log-level-console=warn\n\
         log-level-file=off\n\
         log-path={dir}/log\n\
         lock-path={dir}/lock\n\
         \n\
         [bench]\n\
         pg1-path={pgdata}\n\
         pg1-socket-path={socket}\n\
         pg1-port=5432\n\
         pg1-user=postgres\n",
        dir = dir.display(),
        pgdata = pgdata.display(),
        socket = socket_dir.display(),
    )
}

/// pgBackRest's version line ("pgBackRest 2.45").
pub fn pgbackrest_version(pgbackrest: &Path) -> String {
    Command::new(pgbackrest)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Apparent size of every file under `path` (like `du -sb`, less directories).
pub fn tree_bytes(path: &Path) -> anyhow::Result<u64> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("inspect {}", path.display()))?;
    if !meta.is_dir() {
        return Ok(if meta.is_file() { meta.len() } else { 0 });
    }
    let mut total = 0;
    for entry in fs::read_dir(path).with_context(|| format!("list {}", path.display()))? {
        total += tree_bytes(&entry?.path())?;
    }
    Ok(total)
}

pub fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("remove {}", path.display())),
    }
}

/// Flushes everything dirty, so one run's writeback is not billed to the next.
pub fn sync_all() -> anyhow::Result<()> {
    let status = Command::new("sync").status().context("run sync")?;
    ensure!(status.success(), "sync failed ({status})");
    Ok(())
}

/// The median of `values` (the upper one of an even count); NaN when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median of `key` over `samples`.
pub fn median_by<S>(samples: &[S], key: impl Fn(&S) -> f64) -> f64 {
    median(&samples.iter().map(key).collect::<Vec<_>>())
}

/// The machine's load averages over 1, 5 and 15 minutes, as `/proc/loadavg` gives them.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The choices (each a `what`, named by `key`) a comma-separated environment `variable` names,
/// else `all`.
pub fn chosen_from_env<T: Copy>(
    variable: &str,
    what: &str,
    all: &[T],
    key: impl Fn(T) -> &'static str,
) -> anyhow::Result<Vec<T>> {
    let Ok(names) = std::env::var(variable) else {
        return Ok(all.to_vec());
    };
    let known = || all.iter().map(|&c| key(c)).collect::<Vec<_>>().join(", ");
    names
        .split(',')
        .map(|name| {
            all.iter()
                .copied()
                .find(|&choice| key(choice) == name.trim())
                .with_context(|| format!("{variable}: no {what} {name:?}; use {}", known()))
        })
        .collect()
}

/// Calls `measure(round, index, tool)` once per tool in each of `rounds` rounds, the order
/// rotating by one each round, so that no tool always runs first or right after the same one.
pub fn in_rotation<T: Copy>(
    rounds: usize,
    tools: &[T],
    mut measure: impl FnMut(usize, usize, T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for round in 0..rounds {
        for i in 0..tools.len() {
            let index = (round + i) % tools.len();
            measure(round, index, tools[index])?;
        }
    }
    Ok(())
}

pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Rounds from `TIDEMARK_BENCH_ROUNDS`, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("TIDEMARK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// A lab whose three programs are this bench's own (release) `tidemark`, which answers to each
/// name it is called by.
pub fn lab(prefix: &str) -> anyhow::Result<testkit::Lab> {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tidemark"));
    let binaries = testkit::TidemarkBinaries {
        tidemark: exe.clone(),
        archive: exe.clone(),
        restore: exe,
    };
    testkit::Lab::new(prefix, &binaries)
}

/// Writes `json` to `target/bench-results/<name>.json` and returns where.
pub fn write_results(name: &str, json: &serde_json::Value) -> anyhow::Result<PathBuf> {
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!("{name}.json"));
    fs::write(&out, serde_json::to_string_pretty(json)?)?;
    Ok(out)
}

/// A key file `<lab>/<name>` for an encrypted repository: 32 random bytes as 64 hex digits,
/// owned by the cluster owner, mode 0600.
pub fn owner_key_file(lab: &testkit::Lab, name: &str) -> anyhow::Result<PathBuf> {
    let key: String = (0..32)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect();
    let path = lab.tmp.path().join(name);
    testkit::owner::write_owned_file(&path, &format!("{key}\n"), 0o600)?;
    Ok(path)
}

/// Runs `command` to its end with no input: its output and its wall time.
pub fn run_timed(
    command: &mut Command,
) -> anyhow::Result<(std::process::Output, std::time::Duration)> {
    let started = std::time::Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {command:?}"))?;
    Ok((output, started.elapsed()))
}

/// Fails with the output of `shown` unless it succeeded.
pub fn succeeded(shown: &str, output: &std::process::Output) -> anyhow::Result<()> {
    ensure!(
        output.status.success(),
        "{shown} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        String::from_utf8_lossy(&output.stdout).trim()
    );
    Ok(())
}
