//! The bucket source's speed: `tidemark source backup` and `source restore --to-bucket` against
//! `rclone` (copy, `sync --checksum`, copy back) on the same `s3s-fs` server in the same run.
//!
//! For each kind of data — incompressible random bytes, and text (CSV and JSON lines of words
//! and numbers, which Tidemark's zstd level 1 stores in 28% of their size) — a fresh `s3s-fs`
//! (testkit's: a free loopback port, its own directory) gets bucket `src`, filled untimed through
//! the S3 API by the tests' own `aws-sdk-s3` client (so the server keeps each object's ETag):
//! 10,000 objects of mixed sizes (9,000 of 1–64 KiB, 950 of 256 KiB–2 MiB, 50 of 10–40 MiB, in
//! shuffled order) under 240 nested prefixes (`tenant-N/2024-MM/DD/`), 2.57 GiB in all. Both kinds
//! have the same keys (bar the extension) and sizes. Both tools move 8 objects at once: Tidemark's default
//! `concurrency`, rclone's `--transfers 8 --checkers 8`; rclone is configured by environment
//! variables only (remote `s3:`, provider Other, path style), with no configuration file.
//!
//! **Snapshots**, the order of the tools alternating by round: rclone's pair is `rclone copy
//! s3:src DIR` into an empty DIR, then `rclone sync --checksum s3:src DIR` against the complete
//! DIR (which lists the bucket and compares every local file's MD5 with the listed ETag);
//! Tidemark's pair is `tidemark source backup` into an empty local repository (every object
//! read, chunked, zstd level 1, fsynced), then again into the same repository with the bucket
//! unchanged (listed and compared with the previous snapshot's objects; nothing read). Before
//! each run everything dirty is flushed (`sync`); how long the flush after each run takes is
//! reported too, since rclone leaves its files in the page cache where Tidemark fsyncs.
//! Two parts of each re-snapshot are timed on their own as well (rows "of it"): for rclone, the
//! MD5 of every local file and a listing of the bucket, which it needs on any server (see
//! [`RcloneRuns`] for what `s3s-fs` adds); for Tidemark, `source check`, one listing of the
//! bucket.
//!
//! **Restores**, each into a fresh empty bucket made untimed: `tidemark source restore uploads
//! --to-bucket NAME` from the last snapshot against `rclone copy DIR s3:NAME` from the complete
//! DIR. Every restored bucket must list 10,000 keys; the last of each tool is read back whole
//! and must hold every object's bytes (and, Tidemark's, its content type) as the source did.
//! Each bucket is removed after its check.
//!
//! Reported per run: median wall time, MB/s (10^6 bytes of the bucket's objects per second of
//! wall time, for the unchanged re-snapshot too), CPU seconds of the command (its rusage, from
//! /proc/self/stat's cutime and cstime) and of `s3s-fs`, and the ratios rclone's median time /
//! Tidemark's (above 1: Tidemark is faster) against the targets. Prints a table per kind,
//! writes `target/bench-results/bucket_source.json`. Run: `cargo bench --bench bucket_source`
//! (about 20 minutes on 2 cores; 11 GB free: the server's directory is in /tmp, the repository
//! and rclone's copy in /tmp or `TIDEMARK_BENCH_DIR`, all removed before the next kind);
//! `TIDEMARK_BENCH_ROUNDS=5` for more rounds, `TIDEMARK_BENCH_KINDS=text` for one kind. Needs
//! `rclone` (`apt-get install rclone`) and `s3s-fs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::bucket::{Held, NewObject, TestClient};
use common::cpu::{children_cpu, server_cpu};
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY, start_server};
use common::{in_rotation, remove_if_present, run_timed, succeeded, sync_all};
use sha2::{Digest, Sha256};

/// Timed rounds, unless `TIDEMARK_BENCH_ROUNDS` says otherwise.
const ROUNDS: usize = 3;

/// The layout's and the contents' seed (logged with the results).
const SEED: u64 = 23;

/// Objects in the bucket, by size class: (count, smallest, largest bytes).
const SIZE_CLASSES: [(usize, usize, usize); 3] = [
    (9_000, 1 << 10, 64 << 10),
    (950, 256 << 10, 2 << 20),
    (50, 10 << 20, 40 << 20),
];

/// The issue asks for at least this much in the bucket.
const MIN_DATASET_BYTES: u64 = 2 << 30;

/// Objects both tools move at once: Tidemark's default `concurrency`.
const CONCURRENCY: usize = 8;

/// Bytes of objects generated before they are put, so the fill holds little in memory.
const FILL_BATCH_BYTES: usize = 256 << 20;

/// The source's name in the configuration, and its bucket.
const SOURCE: &str = "uploads";
const SOURCE_BUCKET: &str = "src";

/// The targets, as rclone's median time over Tidemark's.
const FIRST_TARGET: f64 = 1.0;
const UNCHANGED_TARGET: f64 = 10.0;
const RESTORE_TARGET: f64 = 1.0;

/// The two kinds of data the bucket is filled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Random,
    Text,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Random => "random",
            Kind::Text => "text",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Random => "incompressible random bytes",
            Kind::Text => "CSV and JSON lines of words and numbers",
        }
    }

    /// Object `index`'s extension and content type: text alternates CSV and JSON lines.
    fn format(self, index: usize) -> (&'static str, &'static str) {
        match (self, index % 2) {
            (Kind::Random, _) => ("bin", "application/octet-stream"),
            (Kind::Text, 0) => ("csv", "text/csv"),
            (Kind::Text, _) => ("jsonl", "application/x-ndjson"),
        }
    }

    fn content(self, index: usize, size: usize, seed: u64) -> Vec<u8> {
        match self {
            Kind::Random => common::bucket::noise(size, seed),
            Kind::Text => text::lines(size, seed, index % 2 == 1),
        }
    }
}

/// Text that compresses like logs and exports do: CSV or JSON lines whose ids and times climb,
/// with words, names and amounts drawn at random.
mod text {
    use std::io::Write as _;

    use fastrand::Rng;

    const WORDS: [&str; 64] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra",
        "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "red", "green", "blue",
        "amber", "violet", "north", "south", "east", "west", "order", "invoice", "refund",
        "shipment", "pending", "active", "closed", "error", "warning", "info", "debug", "user",
        "account", "session", "payment", "widget", "gadget", "gizmo", "sprocket", "bolt", "nut",
        "screw", "lever", "spring", "cable", "socket", "valve", "gear", "pulley",
    ];

    const CITIES: [&str; 16] = [
        "stockholm",
        "oslo",
        "helsinki",
        "berlin",
        "paris",
        "madrid",
        "lisbon",
        "rome",
        "vienna",
        "prague",
        "warsaw",
        "dublin",
        "london",
        "amsterdam",
        "brussels",
        "copenhagen",
    ];

    fn word(rng: &mut Rng) -> &'static str {
        WORDS[rng.usize(..WORDS.len())]
    }

    fn city(rng: &mut Rng) -> &'static str {
        CITIES[rng.usize(..CITIES.len())]
    }

    /// `size` bytes of lines (the last one cut short), JSON objects or CSV records.
    pub fn lines(size: usize, seed: u64, json: bool) -> Vec<u8> {
        let mut rng = Rng::with_seed(seed);
        let mut out = Vec::with_capacity(size + 256);
        let mut id = rng.u64(..1_000_000);
        let mut time = 1_700_000_000 + rng.u64(..10_000_000);
        while out.len() < size {
            id += 1 + rng.u64(..3);
            time += rng.u64(..5);
            let (cents, small) = (rng.u32(..100), rng.u32(..10_000));
            let written = if json {
                writeln!(
                    out,
                    "{{\"id\":{id},\"ts\":{time},\"user\":\"{}_{small}\",\"event\":\"{}\",\"tags\":[\"{}\",\"{}\"],\"amount\":{}.{cents:02},\"city\":\"{}\"}}",
                    word(&mut rng),
                    word(&mut rng),
                    word(&mut rng),
                    word(&mut rng),
                    rng.u32(..10_000),
                    city(&mut rng),
                )
            } else {
                writeln!(
                    out,
                    "{id},{time},{},{},{} {} {},{}.{cents:02},{}",
                    city(&mut rng),
                    word(&mut rng),
                    word(&mut rng),
                    word(&mut rng),
                    word(&mut rng),
                    rng.u32(..100_000),
                    word(&mut rng),
                )
            };
            written.expect("writing to a Vec does not fail");
        }
        out.truncate(size);
        out
    }
}

/// One object of the layout: its number, size and content seed.
struct Planned {
    index: usize,
    size: usize,
    seed: u64,
}

/// The bucket's objects: the size classes' counts, shuffled, each size drawn in its class.
fn layout() -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut classes: Vec<(usize, usize)> = SIZE_CLASSES
        .iter()
        .flat_map(|&(count, low, high)| std::iter::repeat_n((low, high), count))
        .collect();
    rng.shuffle(&mut classes);
    classes
        .into_iter()
        .enumerate()
        .map(|(index, (low, high))| Planned {
            index,
            size: rng.usize(low..=high),
            seed: (SEED << 32) ^ index as u64,
        })
        .collect()
}

/// Object `index`'s key: 8 tenants × 6 months × 5 days of prefixes.
fn object_key(kind: Kind, index: usize) -> String {
    let (extension, _) = kind.format(index);
    format!(
        "tenant-{}/2024-{:02}/{:02}/obj-{index:05}.{extension}",
        index % 8,
        (index / 8) % 6 + 1,
        (index / 48) % 5 + 1
    )
}

/// What the source bucket holds, as put.
struct Dataset {
    /// Every object as the bucket should hold it, by key.
    expected: BTreeMap<String, Held>,
    bytes: u64,
    fill_seconds: f64,
}

/// Puts the layout's objects of `kind` into the source bucket, `FILL_BATCH_BYTES` at a time.
fn fill(client: &TestClient, kind: Kind) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    client.create_bucket(SOURCE_BUCKET);
    let mut expected = BTreeMap::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for planned in layout() {
        let object = new_object(kind, &planned);
        expected.insert(object.key.clone(), held_as_put(&object));
        batch_bytes += object.content.len();
        batch.push(object);
        if batch_bytes >= FILL_BATCH_BYTES {
            client.put_all(SOURCE_BUCKET, std::mem::take(&mut batch));
            batch_bytes = 0;
        }
    }
    client.put_all(SOURCE_BUCKET, batch);
    let bytes = expected.values().map(|held| held.size).sum();
    ensure!(
        bytes >= MIN_DATASET_BYTES,
        "the layout holds {bytes} bytes, short of {MIN_DATASET_BYTES}"
    );
    Ok(Dataset {
        expected,
        bytes,
        fill_seconds: started.elapsed().as_secs_f64(),
    })
}

fn new_object(kind: Kind, planned: &Planned) -> NewObject {
    NewObject {
        key: object_key(kind, planned.index),
        content: kind.content(planned.index, planned.size, planned.seed),
        content_type: Some(kind.format(planned.index).1.to_owned()),
        metadata: BTreeMap::new(),
    }
}

fn held_as_put(object: &NewObject) -> Held {
    Held {
        sha256: sha256_hex(&object.content),
        size: object.content.len() as u64,
        content_type: object.content_type.clone(),
        metadata: object.metadata.clone(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The path of `rclone`, or a one-line failure saying how to install it.
fn rclone_program() -> anyhow::Result<PathBuf> {
    let output = Command::new("sh")
        .args(["-c", "command -v rclone"])
        .output()
        .context("run sh")?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || path.is_empty() {
        bail!("rclone is not installed: apt-get install rclone");
    }
    Ok(PathBuf::from(path))
}

fn rclone_version(rclone: &Path) -> String {
    Command::new(rclone)
        .arg("version")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines().next().unwrap_or_default().trim().to_owned()
        })
        .unwrap_or_default()
}

/// One timed run.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    wall: Duration,
    /// User + system CPU of the command (and whatever it waited for).
    client_cpu_s: f64,
    /// CPU of `s3s-fs` meanwhile.
    server_cpu_s: f64,
    /// Seconds a `sync` right after the run took: the writeback the run left behind.
    flush_s: f64,
    /// Bytes of the bucket's objects the run covered.
    bytes: u64,
}

impl Sample {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall.as_secs_f64()
    }
}

/// Runs `command` to completion after a `sync`, failing with its output unless it succeeds;
/// then times the `sync` of what it left dirty. Returns its sample (with `bytes`) and stdout.
fn time_command(
    mut command: Command,
    server_pid: u32,
    bytes: u64,
) -> anyhow::Result<(Sample, String)> {
    let shown = format!("{command:?}");
    sync_all()?;
    let client_before = children_cpu()?;
    let server_before = server_cpu(&server_pid.to_string())?;
    let (output, wall) = run_timed(&mut command)?;
    succeeded(&shown, &output)?;
    let client_cpu_s = children_cpu()? - client_before;
    let server_cpu_s = server_cpu(&server_pid.to_string())? - server_before;
    let flush_started = Instant::now();
    sync_all()?;
    let sample = Sample {
        wall,
        client_cpu_s,
        server_cpu_s,
        flush_s: flush_started.elapsed().as_secs_f64(),
        bytes,
    };
    Ok((sample, String::from_utf8_lossy(&output.stdout).into_owned()))
}

/// The pid of the `s3s-fs` serving `server`, found by its port among the machine's processes.
fn server_pid(server: &S3Server) -> anyhow::Result<u32> {
    let port = server
        .endpoint
        .rsplit(':')
        .next()
        .context("the endpoint's port")?;
    testkit::processes::processes()
        .into_iter()
        .find(|(_, args)| {
            testkit::processes::has_flag(args, "--port", Path::new(port))
                && args.last().map(Vec::as_slice)
                    == Some(server.data_dir().as_os_str().as_encoded_bytes())
        })
        .map(|(pid, _)| pid as u32)
        .context("find the s3s-fs process by its port")
}

/// One kind's server, bucket, files and tools.
struct KindBench {
    kind: Kind,
    rclone: PathBuf,
    client: TestClient,
    server_pid: u32,
    dataset: Dataset,
    config: PathBuf,
    repo: PathBuf,
    local_dir: PathBuf,
    /// The repository, the configuration and rclone's copy.
    _work: tempfile::TempDir,
    server: S3Server,
}

impl KindBench {
    fn start(kind: Kind, rclone: &Path) -> anyhow::Result<KindBench> {
        let server = start_server();
        let client = TestClient::new(&server.endpoint);
        println!(
            "{}: filling bucket {SOURCE_BUCKET} on s3s-fs {}",
            kind.key(),
            server.endpoint
        );
        let dataset = fill(&client, kind)?;
        println!(
            "{}: {} objects, {:.2} GiB, put in {:.0} s",
            kind.key(),
            dataset.expected.len(),
            common::gib(dataset.bytes),
            dataset.fill_seconds
        );
        let work = work_dir()?;
        let repo = work.path().join("repo");
        let config = write_config(work.path(), &repo, &server.endpoint)?;
        Ok(KindBench {
            kind,
            rclone: rclone.to_owned(),
            client,
            server_pid: server_pid(&server)?,
            dataset,
            config,
            repo,
            local_dir: work.path().join("rclone-copy"),
            _work: work,
            server,
        })
    }

    fn tidemark(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        command
            .env_remove("TIDEMARK_CONFIG")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .arg("--config")
            .arg(&self.config)
            .args(args);
        command
    }

    /// `rclone` with remote `s3:` this server, from environment variables alone.
    fn rclone(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.rclone);
        // The AWS SDK inside rclone 1.60 fails to start on any AWS_CA_BUNDLE ("unsupported
        // transport"); the server is plain HTTP on loopback, so none is needed.
        command
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG", "/dev/null")
            .env("RCLONE_CONFIG_S3_TYPE", "s3")
            .env("RCLONE_CONFIG_S3_PROVIDER", "Other")
            .env("RCLONE_CONFIG_S3_ENDPOINT", &self.server.endpoint)
            .env("RCLONE_CONFIG_S3_REGION", "us-east-1")
            .env("RCLONE_CONFIG_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("RCLONE_CONFIG_S3_FORCE_PATH_STYLE", "true")
            .args(args)
            .args(["--transfers", "8", "--checkers", "8"]);
        command
    }

    fn time(&self, command: Command) -> anyhow::Result<(Sample, String)> {
        time_command(command, self.server_pid, self.dataset.bytes)
    }

    /// The newest snapshot record of the source.
    fn last_snapshot(&self) -> anyhow::Result<serde_json::Value> {
        let output = self
            .tidemark(&["source", "list", SOURCE, "--output", "json"])
            .output()
            .context("run tidemark source list")?;
        ensure!(output.status.success(), "tidemark source list failed");
        let list: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        list.as_array()
            .and_then(|a| a.last())
            .cloned()
            .context("source list shows no snapshot")
    }

    /// One `tidemark source backup`, timed; checks the record says it read `fetched` objects.
    fn tidemark_backup(&self, fetched: usize) -> anyhow::Result<(Sample, serde_json::Value)> {
        let (sample, _) = self.time(self.tidemark(&["source", "backup", SOURCE]))?;
        let record = self.last_snapshot()?;
        let meta = &record["meta"];
        ensure!(
            meta["objects"] == self.dataset.expected.len() && meta["fetched"] == fetched,
            "the snapshot records {} objects, {} read; expected {}, {fetched} read",
            meta["objects"],
            meta["fetched"],
            self.dataset.expected.len()
        );
        Ok((sample, record))
    }

    /// The first snapshot into an empty repository, then one of the unchanged bucket, then
    /// `source check`, whose one listing of the bucket is the part of the unchanged snapshot
    /// that is the server's (`s3s-fs` rebuilds its whole listing for every page of 1,000).
    fn tidemark_runs(&self) -> anyhow::Result<TidemarkRuns> {
        remove_if_present(&self.repo)?;
        let (first, record) = self.tidemark_backup(self.dataset.expected.len())?;
        let stored = record["sizes"]["stored"].as_u64().context("sizes.stored")?;
        let (unchanged, _) = self.tidemark_backup(0)?;
        let (check, said) = self.time(self.tidemark(&["source", "check", SOURCE]))?;
        let objects = format!("{} objects", self.dataset.expected.len());
        ensure!(said.contains(&objects), "source check says {said}");
        Ok(TidemarkRuns {
            first,
            unchanged,
            check,
            stored,
        })
    }

    /// `rclone copy` into an empty directory, then `rclone sync --checksum` against it, then
    /// the two parts of that sync's work that any server leaves it (see [`RcloneRuns`]).
    fn rclone_runs(&self) -> anyhow::Result<RcloneRuns> {
        remove_if_present(&self.local_dir)?;
        fs::create_dir_all(&self.local_dir)?;
        let local = self.local_dir.to_str().context("a UTF-8 work directory")?;
        let source = format!("s3:{SOURCE_BUCKET}");
        let (copy, _) = self.time(self.rclone(&["copy", &source, local]))?;
        self.check_local_copy()?;
        let (sync, _) = self.time(self.rclone(&["sync", "--checksum", &source, local]))?;
        self.check_local_copy()?;
        let (hash, _) = self.time(self.rclone(&["md5sum", local]))?;
        let lsf = ["lsf", "-R", "--disable", "ListR", &source];
        let (list, listed) = self.time(self.rclone(&lsf))?;
        let objects = listed.lines().filter(|line| !line.ends_with('/')).count();
        ensure!(
            objects == self.dataset.expected.len(),
            "rclone lsf listed {objects} objects"
        );
        Ok(RcloneRuns {
            copy,
            sync,
            hash,
            list,
        })
    }

    /// rclone's copy holds every object with its size; every 50th has the source's bytes.
    fn check_local_copy(&self) -> anyhow::Result<()> {
        let mut files = 0;
        for (n, (key, held)) in self.dataset.expected.iter().enumerate() {
            let path = self.local_dir.join(key);
            let size = fs::metadata(&path)
                .with_context(|| format!("rclone's copy lacks {key}"))?
                .len();
            ensure!(size == held.size, "rclone's copy of {key} has {size} bytes");
            if n % 50 == 0 {
                ensure!(
                    sha256_hex(&fs::read(&path)?) == held.sha256,
                    "rclone's copy of {key} differs"
                );
            }
            files += 1;
        }
        let total = common::tree_bytes(&self.local_dir)?;
        ensure!(
            total == self.dataset.bytes,
            "rclone's copy holds {total} bytes over {files} expected files, the bucket {}",
            self.dataset.bytes
        );
        Ok(())
    }

    /// A fresh empty bucket; returns the server's entries before it, to remove what follows.
    fn new_bucket(&self, name: &str) -> anyhow::Result<BTreeSet<String>> {
        let before = entries_of(self.server.data_dir())?;
        self.client.create_bucket(name);
        Ok(before)
    }

    /// Removes bucket `name` by hand, with the attribute files `s3s-fs` keeps beside the
    /// buckets for its objects (DeleteBucket would leave them): everything that came after
    /// `before`.
    fn remove_bucket(&self, before: &BTreeSet<String>) -> anyhow::Result<()> {
        for name in entries_of(self.server.data_dir())?.difference(before) {
            let path = self.server.data_dir().join(name);
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    fn restore(&self, tool: RestoreTool, bucket: &str) -> anyhow::Result<Sample> {
        let command = match tool {
            RestoreTool::Tidemark => {
                self.tidemark(&["source", "restore", SOURCE, "--to-bucket", bucket])
            }
            RestoreTool::Rclone => {
                let local = self.local_dir.to_str().context("a UTF-8 work directory")?;
                self.rclone(&["copy", local, &format!("s3:{bucket}")])
            }
        };
        Ok(self.time(command)?.0)
    }

    /// The restored bucket lists every key; `whole`: every object's bytes as the source's
    /// (and, Tidemark's, its content type and metadata).
    fn check_restored(&self, tool: RestoreTool, bucket: &str, whole: bool) -> anyhow::Result<()> {
        let keys = self.client.keys(bucket);
        let expected: Vec<&String> = self.dataset.expected.keys().collect();
        ensure!(
            keys.iter().collect::<Vec<_>>() == expected,
            "{tool:?} restored {} keys into {bucket}, the source holds {}",
            keys.len(),
            expected.len()
        );
        if !whole {
            return Ok(());
        }
        for (key, held) in self.client.held(bucket) {
            let want = &self.dataset.expected[&key];
            let same = match tool {
                RestoreTool::Tidemark => &held == want,
                RestoreTool::Rclone => held.sha256 == want.sha256 && held.size == want.size,
            };
            ensure!(
                same,
                "{tool:?} restored {key} as {held:?}, the source held {want:?}"
            );
        }
        Ok(())
    }
}

/// The names in `dir`.
fn entries_of(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    fs::read_dir(dir)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect()
}

fn work_dir() -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("tm-bucket-bench-");
    Ok(match std::env::var_os("TIDEMARK_BENCH_DIR") {
        Some(dir) => builder.tempdir_in(dir)?,
        None => builder.tempdir()?,
    })
}

/// A configuration (mode 0600, as its keys require) naming source `uploads`: bucket `src`.
fn write_config(dir: &Path, repo: &Path, endpoint: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("tidemark.toml");
    let mut file = fs::File::create(&path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    write!(
        file,
        "[repo]\npath = \"{}\"\n\n[source.{SOURCE}]\ntype = \"bucket\"\nbucket = \"{SOURCE_BUCKET}\"\nendpoint = \"{endpoint}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\nconcurrency = {CONCURRENCY}\n",
        repo.display()
    )?;
    Ok(path)
}

/// One round of rclone's side of the snapshots.
///
/// `s3s-fs` lists no ETags, so `rclone sync --checksum` sends a HEAD per object to learn each
/// one's MD5 (counted with `--dump headers`: 50 HEADs for 50 objects), which a server that lists
/// ETags (S3, MinIO) spares it. What it cannot be spared anywhere is a listing of the bucket and
/// the MD5 of every local file: `hash` (`rclone md5sum DIR`) and `list` (`rclone lsf -R
/// --disable ListR s3:src`, a listing per directory as the sync makes) time those alone, and
/// their sum is a floor under the sync on such a server. (Plain `lsf -R` lists the bucket in one
/// go with an empty `delimiter=`, which `s3s-fs` 0.14.1 takes for a delimiter: it answers one
/// common prefix and no object.)
struct RcloneRuns {
    copy: Sample,
    sync: Sample,
    hash: Sample,
    list: Sample,
}

/// One round of Tidemark's side of the snapshots.
struct TidemarkRuns {
    first: Sample,
    unchanged: Sample,
    /// `source check`: the bucket's listing alone.
    check: Sample,
    /// Stored bytes of the first snapshot.
    stored: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SnapshotTool {
    Rclone,
    Tidemark,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RestoreTool {
    Rclone,
    Tidemark,
}

impl RestoreTool {
    fn key(self) -> &'static str {
        match self {
            RestoreTool::Rclone => "rclone",
            RestoreTool::Tidemark => "tidemark",
        }
    }
}

/// Everything measured on one kind of data.
#[derive(Default)]
struct KindSamples {
    rclone_copy: Vec<Sample>,
    rclone_sync: Vec<Sample>,
    rclone_md5sum: Vec<Sample>,
    rclone_lsf: Vec<Sample>,
    tidemark_first: Vec<Sample>,
    tidemark_unchanged: Vec<Sample>,
    tidemark_check: Vec<Sample>,
    rclone_restore: Vec<Sample>,
    tidemark_restore: Vec<Sample>,
    /// Stored bytes of a first snapshot (compressed chunks and the lists).
    stored: u64,
    objects: usize,
    bytes: u64,
    fill_seconds: f64,
    /// Load averages before and after the kind's runs.
    load: (String, String),
}

impl KindSamples {
    fn first_ratio(&self) -> f64 {
        median_wall(&self.rclone_copy) / median_wall(&self.tidemark_first)
    }

    fn unchanged_ratio(&self) -> f64 {
        median_wall(&self.rclone_sync) / median_wall(&self.tidemark_unchanged)
    }

    /// rclone's floor for the unchanged re-snapshot on a server that lists ETags (the median
    /// local hashing plus the median listing) over Tidemark's time: not a target, a check of
    /// how much of the ratio above comes from `s3s-fs`.
    fn unchanged_floor_ratio(&self) -> f64 {
        (median_wall(&self.rclone_md5sum) + median_wall(&self.rclone_lsf))
            / median_wall(&self.tidemark_unchanged)
    }

    fn restore_ratio(&self) -> f64 {
        median_wall(&self.rclone_restore) / median_wall(&self.tidemark_restore)
    }
}

fn time_snapshots(
    bench: &KindBench,
    rounds: usize,
    samples: &mut KindSamples,
) -> anyhow::Result<()> {
    let kind = bench.kind.key();
    let tools = [SnapshotTool::Rclone, SnapshotTool::Tidemark];
    in_rotation(rounds, &tools, |round, _, tool| {
        match tool {
            SnapshotTool::Rclone => {
                let runs = bench.rclone_runs()?;
                println!(
                    "  {kind} round {round}: rclone copy {:.2} s, sync --checksum {:.2} s (md5sum {:.2} s, lsf {:.2} s)",
                    runs.copy.wall.as_secs_f64(),
                    runs.sync.wall.as_secs_f64(),
                    runs.hash.wall.as_secs_f64(),
                    runs.list.wall.as_secs_f64()
                );
                samples.rclone_copy.push(runs.copy);
                samples.rclone_sync.push(runs.sync);
                samples.rclone_md5sum.push(runs.hash);
                samples.rclone_lsf.push(runs.list);
            }
            SnapshotTool::Tidemark => {
                let runs = bench.tidemark_runs()?;
                println!(
                    "  {kind} round {round}: tidemark first {:.2} s, unchanged {:.2} s (source check {:.2} s)",
                    runs.first.wall.as_secs_f64(),
                    runs.unchanged.wall.as_secs_f64(),
                    runs.check.wall.as_secs_f64()
                );
                samples.tidemark_first.push(runs.first);
                samples.tidemark_unchanged.push(runs.unchanged);
                samples.tidemark_check.push(runs.check);
                samples.stored = runs.stored;
            }
        }
        Ok(())
    })
}

fn time_restores(
    bench: &KindBench,
    rounds: usize,
    samples: &mut KindSamples,
) -> anyhow::Result<()> {
    let kind = bench.kind.key();
    let tools = [RestoreTool::Rclone, RestoreTool::Tidemark];
    in_rotation(rounds, &tools, |round, _, tool| {
        let bucket = format!("dst-{kind}-{round}-{}", tool.key());
        let before = bench.new_bucket(&bucket)?;
        let sample = bench.restore(tool, &bucket)?;
        bench.check_restored(tool, &bucket, round + 1 == rounds)?;
        bench.remove_bucket(&before)?;
        println!(
            "  {kind} restore round {round}: {tool:?} {:.2} s",
            sample.wall.as_secs_f64()
        );
        match tool {
            RestoreTool::Rclone => samples.rclone_restore.push(sample),
            RestoreTool::Tidemark => samples.tidemark_restore.push(sample),
        }
        Ok(())
    })
}

/// Fills a fresh server with `kind`, times everything, and removes the kind's files.
fn run_kind(kind: Kind, rclone: &Path, rounds: usize) -> anyhow::Result<KindSamples> {
    let load_before = common::load_average();
    let bench = KindBench::start(kind, rclone)?;
    let mut samples = KindSamples {
        objects: bench.dataset.expected.len(),
        bytes: bench.dataset.bytes,
        fill_seconds: bench.dataset.fill_seconds,
        ..KindSamples::default()
    };
    time_snapshots(&bench, rounds, &mut samples)?;
    time_restores(&bench, rounds, &mut samples)?;
    samples.load = (load_before, common::load_average());
    drop(bench);
    Ok(samples)
}

fn median_wall(samples: &[Sample]) -> f64 {
    common::median_by(samples, |s| s.wall.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let bench_started = Instant::now();
    let rclone = rclone_program()?;
    let rounds = common::rounds(ROUNDS);
    let mut kinds = Vec::new();
    for kind in common::chosen_from_env(
        "TIDEMARK_BENCH_KINDS",
        "kind",
        &[Kind::Random, Kind::Text],
        |c| c.key(),
    )? {
        kinds.push((kind, run_kind(kind, &rclone, rounds)?));
    }
    let results = Results {
        rounds,
        kinds,
        rclone_version: rclone_version(&rclone),
    };
    results.print();
    results.write_json(bench_started)
}

/// The table's rows of one kind: label, JSON name, samples.
fn rows(samples: &KindSamples) -> [(&'static str, &'static str, &[Sample]); 9] {
    [
        (
            "rclone copy s3:src DIR",
            "rclone_copy",
            &samples.rclone_copy,
        ),
        (
            "tidemark backup, first",
            "tidemark_first",
            &samples.tidemark_first,
        ),
        (
            "rclone sync --checksum (complete)",
            "rclone_sync_checksum",
            &samples.rclone_sync,
        ),
        (
            "  of it: rclone md5sum DIR",
            "rclone_md5sum",
            &samples.rclone_md5sum,
        ),
        (
            "  of it: rclone lsf -R (per dir)",
            "rclone_lsf",
            &samples.rclone_lsf,
        ),
        (
            "tidemark backup, unchanged",
            "tidemark_unchanged",
            &samples.tidemark_unchanged,
        ),
        (
            "  of it: tidemark source check",
            "tidemark_check_listing",
            &samples.tidemark_check,
        ),
        (
            "rclone copy DIR s3:dst",
            "rclone_copy_back",
            &samples.rclone_restore,
        ),
        (
            "tidemark restore --to-bucket",
            "tidemark_restore",
            &samples.tidemark_restore,
        ),
    ]
}

/// The ratios of one kind: what, rclone's time over Tidemark's, the target.
fn ratios(samples: &KindSamples) -> [(&'static str, f64, f64); 3] {
    [
        ("first snapshot", samples.first_ratio(), FIRST_TARGET),
        (
            "unchanged re-snapshot",
            samples.unchanged_ratio(),
            UNCHANGED_TARGET,
        ),
        (
            "restore into a bucket",
            samples.restore_ratio(),
            RESTORE_TARGET,
        ),
    ]
}

struct Results {
    rounds: usize,
    kinds: Vec<(Kind, KindSamples)>,
    rclone_version: String,
}

impl Results {
    fn print(&self) {
        println!();
        println!(
            "{}; medians of {} rounds, {} cores, s3s-fs on loopback, 8 objects at once",
            self.rclone_version,
            self.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        for (kind, samples) in &self.kinds {
            print_kind(*kind, samples);
        }
    }

    fn write_json(&self, bench_started: Instant) -> anyhow::Result<()> {
        let kinds: serde_json::Map<String, serde_json::Value> = self
            .kinds
            .iter()
            .map(|(kind, samples)| (kind.key().to_owned(), kind_json(*kind, samples)))
            .collect();
        let elapsed = bench_started.elapsed().as_secs_f64();
        let json = serde_json::json!({
            "rclone_version": self.rclone_version,
            "seed": SEED,
            "rounds": self.rounds,
            "concurrency": CONCURRENCY,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "kinds": kinds,
            "bench_seconds": elapsed,
        });
        let out = common::write_results("bucket_source", &json)?;
        println!("wrote {} ({:.0} s in all)", out.display(), elapsed);
        Ok(())
    }
}

fn print_kind(kind: Kind, samples: &KindSamples) {
    println!();
    println!(
        "{} ({}): {} objects, {:.2} GiB; a first snapshot stores {:.2} GiB ({:.0}%); load average {} before, {} after",
        kind.key(),
        kind.describe(),
        samples.objects,
        common::gib(samples.bytes),
        common::gib(samples.stored),
        100.0 * samples.stored as f64 / samples.bytes as f64,
        samples.load.0,
        samples.load.1
    );
    println!(
        "{:<34} {:>8} {:>15} {:>7} {:>12} {:>12} {:>8}",
        "run", "wall s", "min-max s", "MB/s", "client CPU s", "s3s-fs CPU s", "sync s"
    );
    for (label, _, runs) in rows(samples) {
        print_row(label, runs);
    }
    for (what, ratio, target) in ratios(samples) {
        println!(
            "{what}: rclone time / tidemark time = {ratio:.2} (target >= {target}): {}",
            if ratio >= target { "met" } else { "MISSED" }
        );
    }
    println!(
        "unchanged re-snapshot, rclone's floor on a server listing ETags (md5sum + lsf) / tidemark time = {:.2} (not a target)",
        samples.unchanged_floor_ratio()
    );
}

fn print_row(label: &str, samples: &[Sample]) {
    let walls: Vec<f64> = samples.iter().map(|s| s.wall.as_secs_f64()).collect();
    let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
    let max = walls.iter().copied().fold(0.0, f64::max);
    println!(
        "{:<34} {:>8.2} {:>15} {:>7.0} {:>12.2} {:>12.2} {:>8.2}",
        label,
        median_wall(samples),
        format!("{min:.2}-{max:.2}"),
        common::median_by(samples, Sample::mb_per_s),
        common::median_by(samples, |s| s.client_cpu_s),
        common::median_by(samples, |s| s.server_cpu_s),
        common::median_by(samples, |s| s.flush_s),
    );
}

fn kind_json(kind: Kind, samples: &KindSamples) -> serde_json::Value {
    let runs: serde_json::Map<String, serde_json::Value> = rows(samples)
        .into_iter()
        .map(|(label, name, runs)| (name.to_owned(), tool_json(label, runs)))
        .collect();
    let ratios: serde_json::Map<String, serde_json::Value> = ratios(samples)
        .into_iter()
        .map(|(what, ratio, target)| {
            let json = serde_json::json!({
                "rclone_over_tidemark_wall": ratio,
                "target_at_least": target,
                "met": ratio >= target,
            });
            (what.replace(' ', "_"), json)
        })
        .collect();
    serde_json::json!({
        "data": kind.describe(),
        "objects": samples.objects,
        "bytes": samples.bytes,
        "fill_seconds": samples.fill_seconds,
        "first_snapshot_stored_bytes": samples.stored,
        "load_average_before": samples.load.0,
        "load_average_after": samples.load.1,
        "runs": runs,
        "ratios": ratios,
        "unchanged_floor_ratio_md5sum_plus_lsf_over_tidemark": samples.unchanged_floor_ratio(),
    })
}

fn tool_json(label: &str, samples: &[Sample]) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            serde_json::json!({
                "wall_s": s.wall.as_secs_f64(),
                "mb_per_s": s.mb_per_s(),
                "client_cpu_s": s.client_cpu_s,
                "server_cpu_s": s.server_cpu_s,
                "sync_after_s": s.flush_s,
            })
        })
        .collect();
    serde_json::json!({
        "label": label,
        "median_wall_s": median_wall(samples),
        "median_mb_per_s": common::median_by(samples, Sample::mb_per_s),
        "median_client_cpu_s": common::median_by(samples, |s| s.client_cpu_s),
        "median_server_cpu_s": common::median_by(samples, |s| s.server_cpu_s),
        "median_sync_after_s": common::median_by(samples, |s| s.flush_s),
        "runs": runs,
    })
}
