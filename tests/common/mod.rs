//! Shared by the integration tests: the real Tidemark binaries, a lab with a real PostgreSQL 15
//! cluster whose WAL was archived by `cp` (so tests can feed real segments to the binaries), and
//! small helpers to run a binary, to see whether a directory changed and to read Tidemark's lines
//! in a server log. Servers, clusters and labs themselves are the `testkit` crate's.
#![allow(dead_code)]

pub mod azure;
pub mod azure_tables;
pub mod azurite_tables;
pub mod backups;
pub mod bucket;
pub mod bucket_setup;
pub mod configured;
pub mod direct;
pub mod encryption;
pub mod s3;
pub mod strace;
pub mod wal;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use testkit::{Lab, ThrowawayCluster, TidemarkBinaries};

// Re-exported for the tests that used them from here; each test uses its own subset.
#[allow(unused_imports)]
pub use testkit::pgbench::{pgbench, wait_ok};
#[allow(unused_imports)]
pub use testkit::processes::{has_flag, helper_pid, processes};
#[allow(unused_imports)]
pub use testkit::steps::PATIENCE;

/// The freshly built `tidemark`, `tidemark-archive` and `tidemark-restore`.
///
/// Cargo builds only this package's binary for its tests, so the other two come from
/// `cargo build --workspace --bins` (which `.ci/run` runs first); a missing or stale one fails
/// the test rather than testing old code.
pub fn binaries() -> TidemarkBinaries {
    let tidemark = PathBuf::from(env!("CARGO_BIN_EXE_tidemark"));
    let dir = tidemark.parent().expect("binaries live in a directory");
    let library = fs::metadata(dir.join("libtidemark.rlib"))
        .and_then(|m| m.modified())
        .ok();
    let find = |name: &str| {
        let path = dir.join(name);
        let built = fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|_| {
            panic!("{} is missing: run `cargo build --workspace --bins` before `cargo test` (.ci/run does)", path.display())
        });
        if let Some(library) = library {
            assert!(
                built >= library,
                "{} is older than the library it links: run `cargo build --workspace --bins` before `cargo test`",
                path.display()
            );
        }
        path
    };
    TidemarkBinaries {
        archive: find("tidemark-archive"),
        restore: find("tidemark-restore"),
        tidemark,
    }
}

/// What a program run ended with.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The single stderr line, allowing before it the WARN lines of the S3 client's retries
    /// (an endpoint that does not answer is tried 5 times, each retry logged).
    pub fn only_line_after_retries(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let (last, before) = lines
            .split_last()
            .unwrap_or_else(|| panic!("expected a stderr line, got none"));
        assert!(
            before
                .iter()
                .all(|line| line.contains("failed; trying again, attempt")),
            "expected one stderr line after retry warnings, got: {:?}",
            self.stderr
        );
        last
    }

    /// The single stderr line, asserting there is exactly one.
    pub fn only_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one stderr line, got: {:?}",
            self.stderr
        );
        lines[0]
    }
}

/// Runs one of the lab's programs as the cluster owner (as PostgreSQL would).
pub fn run(lab: &Lab, program: &str, args: &[&str]) -> Ran {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let output = lab.run(program, &args).expect("spawn program");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Stops a restored cluster and removes its data directory (its log stays, for post-mortems).
pub fn discard(mut cluster: ThrowawayCluster) {
    cluster.stop().unwrap();
    fs::remove_dir_all(cluster.data_dir()).unwrap();
}

/// Runs `program args` as the cluster owner, expects exit 1 with exactly `expected` on stderr
/// and nothing on stdout, and no change under the repository.
pub fn refused(lab: &Lab, program: &str, args: &[&str], expected: &str) {
    let line = refusal_in(lab, &lab.repo_path, program, args);
    assert_eq!(line, expected, "{program} {args:?}");
}

/// Runs `program args` as the cluster owner, expects exit 1 with one line on stderr and
/// nothing on stdout, and no change under `repo` (a repository directory, or a bucket's in an
/// `s3s-fs` directory); returns the line, for a caller that knows only part of it.
pub fn refusal_in(lab: &Lab, repo: &Path, program: &str, args: &[&str]) -> String {
    let before = snapshot(repo);
    let ran = run(lab, program, args);
    assert_eq!(ran.code, Some(1), "{program} {args:?}: {ran:?}");
    let line = ran.only_line().to_owned();
    assert!(ran.stdout.is_empty(), "{ran:?}");
    assert!(
        snapshot(repo) == before,
        "{program} {args:?} changed {}",
        repo.display()
    );
    line
}

/// Runs `tidemark --config <config> restore --pgdata <pgdata> <extra>` as the cluster owner.
pub fn run_restore(lab: &Lab, config: &Path, pgdata: &Path, extra: &[&str]) -> Ran {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "restore",
        "--pgdata",
        pgdata.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(lab, "tidemark", &args)
}

/// Writes a configuration file the cluster owner can read, with `mode` (0600 when it holds a
/// secret, as Tidemark demands).
pub fn write_config_file(path: &Path, text: &str, mode: u32) {
    testkit::owner::write_owned_file(path, text, mode).unwrap();
}

/// Every file under `dir` (temporary ones included) with its bytes, to prove nothing changed.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), Vec::new());
                pending.push(path);
            } else {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// A lab whose cluster (1 MiB segments) has archived real WAL into `raw` with `cp`, and whose
/// stanza is created. The cluster is stopped again, so its data directory can serve
/// `stanza-create` and its segments can be fed to the binaries by hand.
pub struct WalLab {
    /// Declared before `lab` so it is dropped (stopped) before the lab's directory goes.
    pub cluster: ThrowawayCluster,
    pub lab: Lab,
    pub raw: PathBuf,
    pub system_id: u64,
}

impl WalLab {
    pub fn new(prefix: &str) -> WalLab {
        let lab = Lab::new(prefix, &binaries()).expect("create lab");
        let raw = lab.tmp.subdir("raw").expect("create raw archive dir");
        let mut cluster =
            ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).expect("initdb");
        let archive_command = format!("cp %p {}/%f", raw.display());
        cluster
            .configure(&[
                ("archive_mode", "on"),
                ("archive_command", &archive_command),
            ])
            .unwrap();
        cluster.start().expect("start cluster");
        lab.write_config(cluster.data_dir(), "").unwrap();
        lab.tidemark(&["stanza-create"]).expect("stanza-create");
        cluster
            .query("CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 20000) g")
            .unwrap();
        for _ in 0..3 {
            cluster
                .query("INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 2000) g")
                .unwrap();
            cluster.query("SELECT pg_switch_wal()").unwrap();
        }
        testkit::switch_and_wait_for_archive(&cluster).unwrap();
        let system_id = cluster.system_identifier().unwrap();
        cluster.stop().unwrap();
        WalLab {
            cluster,
            lab,
            raw,
            system_id,
        }
    }

    /// Names of the archived segments, in order.
    pub fn segments(&self) -> Vec<String> {
        segment_names_in(&self.raw)
    }

    /// The path of the archived segment `index` in name order.
    pub fn segment_path(&self, index: usize) -> PathBuf {
        self.raw.join(&self.segments()[index])
    }

    /// A file the owner can read, holding `bytes`, under `name` in a fresh directory.
    pub fn file_named(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let dir = self
            .lab
            .tmp
            .path()
            .join(format!("in-{}", fastrand::u64(..)));
        fs::create_dir(&dir).unwrap();
        testkit::give_to_owner(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        testkit::give_to_owner(&path).unwrap();
        path
    }

    /// Writes a configuration `<lab>/<name>` (mode 0600: it may hold keys) with `repo` as its
    /// `[repo]` section and this cluster as stanza `main`, and creates the stanza in it.
    pub fn config_with_stanza(&self, name: &str, repo: &str) -> PathBuf {
        let path = self.lab.tmp.path().join(name);
        write_config_file(
            &path,
            &format!(
                "[repo]\n{repo}\n[stanza.main]\npgdata = \"{}\"\n",
                self.cluster.data_dir().display()
            ),
            0o600,
        );
        let config = path.to_str().unwrap();
        let created = run(
            &self.lab,
            "tidemark",
            &["--config", config, "stanza-create"],
        );
        assert_eq!(created.code, Some(0), "{created:?}");
        path
    }

    pub fn config(&self) -> &str {
        self.lab.config_path.to_str().unwrap()
    }
}

/// Where the first record that starts on the segment's first page is, and its length: after
/// the long header and what the previous segment's last record spilled into this one. The test
/// segments are real; this only reads what PostgreSQL wrote.
pub fn first_record(segment: &[u8]) -> (usize, usize) {
    let info = u16::from_le_bytes([segment[2], segment[3]]);
    let continued = u32::from_le_bytes(segment[16..20].try_into().unwrap()) as usize;
    let start = 40
        + if info & 1 != 0 {
            (continued + 7) & !7
        } else {
            0
        };
    let length = u32::from_le_bytes(segment[start..start + 4].try_into().unwrap()) as usize;
    assert!(
        length > 24 && start + length <= 8192,
        "the first record must lie on the first page"
    );
    (start, length)
}

/// The same segment with other content that is still valid WAL of the same cluster: the last
/// byte of its first record (data, not structure) flipped and the record's CRC-32C redone, as
/// PostgreSQL computes it (the body, then the header up to the CRC).
pub fn with_other_content(segment: &[u8]) -> Vec<u8> {
    let (start, length) = first_record(segment);
    let mut changed = segment.to_vec();
    let record = &mut changed[start..start + length];
    record[length - 1] ^= 0xFF;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&record[24..]), &record[..20]);
    record[20..24].copy_from_slice(&crc.to_le_bytes());
    changed
}

/// The names of the segments (24 characters) in `dir`, in order.
pub fn segment_names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    names.sort();
    names
}

pub fn is_segment_name(name: &str) -> bool {
    name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit())
}

/// The segments (history files left out) PostgreSQL got through `tidemark-restore`, from its
/// `restored` lines in a server log, in the order asked.
pub fn fetched_segments(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.strip_prefix("tidemark-restore: INFO: restored "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .filter(|name| is_segment_name(name))
        .collect()
}

/// Asserts that `restored` recovered without a Tidemark error and that PostgreSQL read exactly
/// the `planned` segments through `tidemark-restore`.
pub fn assert_recovered_as_planned(
    restored: &ThrowawayCluster,
    planned: &std::collections::BTreeSet<String>,
) {
    assert_eq!(tidemark_errors(restored), Vec::<String>::new());
    let log = fs::read_to_string(restored.log_file()).unwrap();
    let fetched: std::collections::BTreeSet<String> = fetched_segments(&log).into_iter().collect();
    assert_eq!(
        &fetched, planned,
        "PostgreSQL read other segments than planned"
    );
}

/// The segments a plan (`tidemark plan --output json`) names, in its order.
pub fn planned_segments(plan: &serde_json::Value) -> Vec<String> {
    let segments = plan["segments"].as_array();
    let segments = segments.unwrap_or_else(|| panic!("a plan without segments: {plan:#}"));
    segments
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Seeds this test thread's `fastrand` generator and prints the seed, so that a failure's
/// random picks can be had again: `TIDEMARK_TEST_SEED=N` repeats a run's seed. Tests that
/// pick at random call it first.
pub fn seed_randomness() -> u64 {
    let seed = std::env::var("TIDEMARK_TEST_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    fastrand::seed(seed);
    println!("random picks from seed {seed} (TIDEMARK_TEST_SEED={seed} repeats them)");
    seed
}

/// The Tidemark error lines in a server's log. Recovery asks for names that do not exist (the
/// next timeline's history, `00000001.history` at promotion); those are quiet "not archived"
/// answers, so any line here is a real failure.
pub fn tidemark_errors(cluster: &ThrowawayCluster) -> Vec<String> {
    fs::read_to_string(cluster.log_file())
        .unwrap()
        .lines()
        .filter(|l| l.contains("tidemark-") && l.contains("ERROR"))
        .map(str::to_owned)
        .collect()
}
