//! Work-ahead archiving (`[archive] async = true`) on a real PostgreSQL 15 under pgbench with a
//! small `max_wal_size`, while the worker is killed with SIGKILL again and again: at every moment
//! each WAL file PostgreSQL counts as archived (`.done`) is complete in the repository; at the end
//! every segment PostgreSQL produced is there and restores through its checksums; `pg_wal` never
//! outgrows what `max_wal_size` allows; and the calls did find their segments pushed by the worker.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::Lab;
use testkit::steps::{PrimaryOptions, archiving_primary};

/// How long pgbench writes.
const LOAD_SECONDS: u64 = 120;
/// Kills of the worker the test insists on.
const MIN_KILLS: usize = 20;
/// `max_wal_size` in 1 MiB segments.
const MAX_WAL_SEGMENTS: usize = 32;

fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The names in `dir`; an error reading it fails the test rather than counting as empty.
fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect()
}

/// Segment files in `pg_wal`.
fn segments_in(pg_wal: &Path) -> usize {
    names_in(pg_wal).iter().filter(|n| is_segment(n)).count()
}

/// WAL files PostgreSQL counts as archived.
fn done_files(pg_wal: &Path) -> Vec<String> {
    names_in(&pg_wal.join("archive_status"))
        .into_iter()
        .filter_map(|n| n.strip_suffix(".done").map(str::to_owned))
        .collect()
}

/// Where the repository keeps an archived WAL file.
fn repo_object(repo: &Path, name: &str) -> PathBuf {
    if name.ends_with(".history") {
        repo.join("main/wal/history").join(name)
    } else {
        repo.join("main/wal").join(&name[..16]).join(name)
    }
}

#[test]
fn work_ahead_keeps_up_under_load_and_reports_only_durable_segments_while_its_worker_is_killed() {
    let lab = Lab::new("tm-workahead-", &common::binaries()).unwrap();
    let options = PrimaryOptions::default()
        .repo_extra("\n[archive]\nasync = true\n")
        .setting("max_wal_size", &format!("{MAX_WAL_SEGMENTS}MB"))
        .setting("min_wal_size", "4MB");
    let mut cluster = archiving_primary(&lab, &options).unwrap();
    let pg_wal = cluster.data_dir().join("pg_wal");
    // Segments written before archive_mode was on (by initdb) are never archived: archiving
    // starts with the segment current at the first start.
    let first = cluster
        .query("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .unwrap();

    common::wait_ok(common::pgbench(&cluster, &["-i", "-q", "-s", "2"]));
    let seconds = LOAD_SECONDS.to_string();
    let mut load = common::pgbench(&cluster, &["-n", "-c", "2", "-T", &seconds]);

    let mut kills = 0;
    let mut most_segments = 0;
    let mut checked_done = BTreeSet::new();
    let mut next_kill = Instant::now() + Duration::from_millis(fastrand::u64(100..800));
    while load.try_wait().unwrap().is_none() {
        most_segments = most_segments.max(segments_in(&pg_wal));
        // Whatever PostgreSQL counts as archived is complete under its final name.
        for name in done_files(&pg_wal) {
            if checked_done.insert(name.clone()) {
                assert!(
                    repo_object(&lab.repo_path, &name).is_file(),
                    "PostgreSQL counts {name} as archived, but the repository has no object for it"
                );
            }
        }
        if Instant::now() >= next_kill {
            if let Some(pid) = common::helper_pid("--work-ahead-worker", &pg_wal) {
                let pid = rustix::process::Pid::from_raw(pid).unwrap();
                if rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok() {
                    kills += 1;
                }
            }
            next_kill = Instant::now() + Duration::from_millis(fastrand::u64(100..1500));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = load.wait_with_output().unwrap();
    assert!(output.status.success(), "pgbench: {output:?}");
    let last = testkit::switch_and_wait_for_archive(&cluster).unwrap();
    let failed = cluster
        .query("SELECT failed_count FROM pg_stat_archiver")
        .unwrap();
    cluster.stop().unwrap();

    // pg_wal stays within what max_wal_size allows (a soft limit PostgreSQL may exceed by a
    // checkpoint's worth), which it would outgrow if archiving fell behind.
    assert!(
        most_segments <= 2 * MAX_WAL_SEGMENTS + 8,
        "pg_wal grew to {most_segments} segments with max_wal_size = {MAX_WAL_SEGMENTS} MB"
    );
    // Every segment from the first to the last archived is there and restores.
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    let timeline = &info["timelines"][0];
    assert_eq!(timeline["first_segment"], first.as_str(), "{info:#}");
    assert_eq!(timeline["missing_segments"], 0, "{info:#}");
    assert!(
        timeline["last_segment"].as_str().unwrap() >= last.as_str(),
        "{info:#}"
    );
    let restored = lab.tmp.subdir("restored").unwrap();
    let first_number = u64::from_str_radix(&first[8..], 16).unwrap();
    let last_number = u64::from_str_radix(&last[8..], 16).unwrap();
    for number in first_number..=last_number {
        let name = format!("00000001{number:016X}");
        let destination = restored.join(&name);
        lab.tidemark(&["archive-get", &name, destination.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(fs::metadata(&destination).unwrap().len(), 1 << 20, "{name}");
        fs::remove_file(&destination).unwrap();
    }
    let log = fs::read_to_string(cluster.log_file()).unwrap();
    let by_worker = log
        .lines()
        .filter(|l| l.contains("pushed by the work-ahead worker"))
        .count();
    println!(
        "{} segments, {by_worker} calls answered by the worker, {kills} kills, pg_wal at most {most_segments} segments, {failed} failed archive_command calls",
        last_number - first_number + 1
    );
    assert!(by_worker > 0, "no call was answered by the worker");
    assert!(
        kills >= MIN_KILLS,
        "the worker was killed only {kills} times in {LOAD_SECONDS} s"
    );
}
