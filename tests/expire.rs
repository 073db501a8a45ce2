//! `tidemark expire` against a real PostgreSQL 15 and its backups: each retention rule keeps
//! exactly what it predicts (calendar periods in a time zone, the time window, a per-stanza
//! override), restores to instants inside the window left are exact and a target before it is
//! refused naming it; verify names what expire would remove; on a bucket too. Killed at random
//! moments, expire never leaves a listed backup without a chunk or a segment it needs, and the
//! next run finishes the work (verify is clean after it). A backup running meanwhile is not
//! swept from under, a second expire refuses, and every bad setting is one line that deletes
//! nothing.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use rustix::process::{Pid, Signal, kill_process};

use common::backups::{backup_record, object_path, rewrite_object, take_backup};
use common::s3::{keys_under, repo_section, start_server};
use testkit::steps::{PrimaryOptions, archiving_primary, restore_and_check, restore_to_instant};
use testkit::workload::{self, CommittedRow};
use testkit::{Lab, ThrowawayCluster, owner_command, switch_and_wait_for_archive};

/// A primary with `count` backups, rows inserted before each one and after the last; returns
/// the labels and, for each backup, how many of the rows were committed before it started.
fn primary_with_backups(
    lab: &Lab,
    options: &PrimaryOptions,
    count: usize,
) -> (ThrowawayCluster, Vec<String>, Vec<usize>) {
    let primary = archiving_primary(lab, options).unwrap();
    workload::create_table(&primary).unwrap();
    let mut labels = Vec::new();
    let mut rows_before = Vec::new();
    for n in 0..count {
        workload::insert_rows(&primary, 12, Duration::from_millis(20), &format!("b{n}")).unwrap();
        switch_and_wait_for_archive(&primary).unwrap();
        rows_before.push(12 * (n + 1));
        labels.push(take_backup(lab));
        // The rows after a backup commit in a later second than its checkpoint, whose time
        // the WAL holds to the second: the planner can only tell an instant in that second
        // is after the backup's start once it is past the second (and a backup's label is
        // the second it starts in, a second backup in the same second refused).
        common::backups::wait_for_the_next_second();
    }
    workload::insert_rows(&primary, 12, Duration::from_millis(20), "after").unwrap();
    switch_and_wait_for_archive(&primary).unwrap();
    (primary, labels, rows_before)
}

/// Rewrites the record of backup `label` so that it started and stopped at `time` (RFC 3339):
/// the clock, injected through the catalog.
fn set_backup_time(lab: &Lab, label: &str, time: &str) {
    let mut record = backup_record(lab, label);
    record["start_time"] = time.into();
    record["stop_time"] = time.into();
    let path = object_path(lab, &format!("main/backup/{label}/backup.json"));
    rewrite_object(&path, &serde_json::to_vec(&record).unwrap());
}

fn days_ago(days: u64) -> String {
    let then = SystemTime::now() - Duration::from_secs(days * 86_400);
    chrono::DateTime::<chrono::Utc>::from(then).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The configuration as `archiving_primary` wrote it, with `retention` (TOML) appended.
fn set_retention(lab: &Lab, original: &str, retention: &str) {
    fs::write(&lab.config_path, format!("{original}\n{retention}\n")).unwrap();
}

/// `tidemark expire --output json` (and `extra`), which must succeed.
fn expire_json(lab: &Lab, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["expire", "--output", "json"];
    args.extend(extra);
    let output = lab.tidemark(&args).unwrap_or_else(|e| panic!("{e:#}"));
    serde_json::from_str(&output).unwrap_or_else(|e| panic!("{e}: {output}"))
}

/// Each backup's label and the rules keeping it ("expired" when none), in the report's order.
fn verdicts(report: &serde_json::Value) -> Vec<(String, String)> {
    report["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let rules: Vec<&str> = b["kept_by"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            let verdict = if b["expired"].as_bool().unwrap() {
                "expired".to_owned()
            } else {
                rules.join(",")
            };
            (b["label"].as_str().unwrap().to_owned(), verdict)
        })
        .collect()
}

fn expect(labels: &[String], verdicts: &[&str]) -> Vec<(String, String)> {
    labels
        .iter()
        .cloned()
        .zip(verdicts.iter().map(|v| (*v).to_owned()))
        .collect()
}

/// Labels of the backups whose records are in the local repository.
fn listed_backups(lab: &Lab) -> Vec<String> {
    let root = lab.repo_path.join("main/backup");
    let mut labels: Vec<String> = fs::read_dir(&root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("backup.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    labels
}

/// Every file below `dir`, by name.
fn file_names(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return names;
    };
    for entry in entries.flatten() {
        if entry.file_type().unwrap().is_dir() {
            names.extend(file_names(&entry.path()));
        } else {
            names.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

/// The archived segments of the local repository (no history, partial or backup files).
fn archived_segments(lab: &Lab) -> BTreeSet<String> {
    file_names(&lab.repo_path.join("main/wal"))
        .into_iter()
        .filter(|name| common::is_segment_name(name))
        .collect()
}

/// What a restore of each listed backup needs and the repository lacks: a chunk, or a segment
/// from the backup's first one to the end of the archive. Empty when every listed backup can
/// be restored to any instant after it.
fn missing_for_listed_backups(lab: &Lab) -> Vec<String> {
    let blobs = file_names(&lab.repo_path.join("main/blob"));
    let segments = archived_segments(lab);
    let last = segments.last().cloned().unwrap_or_default();
    let mut missing = Vec::new();
    for label in listed_backups(lab) {
        let record = backup_record(lab, &label);
        for entry in record["entries"].as_array().unwrap() {
            for chunk in entry["chunks"].as_array().into_iter().flatten() {
                let sha256 = chunk["sha256"].as_str().unwrap();
                if !blobs.contains(sha256) {
                    missing.push(format!("{label}: chunk {sha256}"));
                }
            }
        }
        let first = record["wal_start"].as_str().unwrap();
        for segment in segment_range(first, &last) {
            if !segments.contains(&segment) {
                missing.push(format!("{label}: segment {segment}"));
            }
        }
    }
    missing
}

/// The segment names from `first` to `last` on `first`'s timeline (1 MiB segments: 4096 a log).
fn segment_range(first: &str, last: &str) -> Vec<String> {
    let number = |name: &str| {
        u64::from_str_radix(&name[8..16], 16).unwrap() * 4096
            + u64::from_str_radix(&name[16..24], 16).unwrap()
    };
    (number(first)..=number(last))
        .map(|n| format!("{}{:08X}{:08X}", &first[..8], n / 4096, n % 4096))
        .collect()
}

/// Chunks in the repository that no listed backup refers to.
fn unreferenced_chunks(lab: &Lab) -> usize {
    let mut referenced = BTreeSet::new();
    for label in listed_backups(lab) {
        let record = backup_record(lab, &label);
        for entry in record["entries"].as_array().unwrap() {
            for chunk in entry["chunks"].as_array().into_iter().flatten() {
                referenced.insert(chunk["sha256"].as_str().unwrap().to_owned());
            }
        }
    }
    file_names(&lab.repo_path.join("main/blob"))
        .difference(&referenced)
        .count()
}

fn one_mib_segments() -> PrimaryOptions {
    PrimaryOptions::default().commit_timestamps().segment_mb(1)
}

#[test]
fn each_rule_keeps_what_it_predicts_and_restores_inside_the_window_left_are_exact() {
    common::seed_randomness();
    let lab = Lab::new("tm-expire-", &common::binaries()).unwrap();
    let (mut primary, labels, rows_before) = primary_with_backups(&lab, &one_mib_segments(), 6);
    let rows = workload::committed_rows(&primary).unwrap();
    primary.stop().unwrap();
    let original = fs::read_to_string(&lab.config_path).unwrap();

    calendar_periods_keep_the_newest_of_each_in_the_time_zone(&lab, &labels, &original);

    // The time window, set for the stanza over the repository-wide default: the newest backup
    // before the 35 days is kept, for the instants just inside them.
    for (label, days) in labels.iter().zip([50, 40, 36, 20, 2, 0]) {
        set_backup_time(&lab, label, &days_ago(days));
    }
    set_retention(
        &lab,
        &original,
        "[retention]\nfull = 1\ntime = \"10d\"\n[stanza.main.retention]\ntime = \"35d\"\n",
    );
    // verify reports what the next expire removes, and fails on none of it.
    let verified = lab
        .tidemark(&["verify"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    for label in &labels[..2] {
        assert!(
            verified.contains(&format!(
                "backup {label} is kept by no retention rule: `tidemark expire` removes it"
            )),
            "{verified}"
        );
    }
    assert!(
        verified.contains("are needed by no backup the retention policy keeps"),
        "{verified}"
    );
    let segments_before = archived_segments(&lab);
    let wal_files_before = file_names(&lab.repo_path.join("main/wal"));
    let report = expire_json(&lab, &[]);
    assert_eq!(
        verdicts(&report),
        expect(
            &labels,
            &[
                "expired",
                "expired",
                "time",
                "time",
                "time",
                "newest,full,time"
            ]
        )
    );
    let oldest_kept = backup_record(&lab, &labels[2]);
    let keep_from = oldest_kept["wal_start"].as_str().unwrap();
    assert_eq!(report["wal"]["keep_from"], keep_from, "{report:#}");
    let segments_after = archived_segments(&lab);
    let removed: BTreeSet<&String> = segments_before.difference(&segments_after).collect();
    assert!(!removed.is_empty(), "{report:#}");
    assert!(
        removed.iter().all(|s| s.as_str() < keep_from),
        "{removed:?}"
    );
    assert!(segments_after.iter().all(|s| s.as_str() >= keep_from));
    // Segments and the backup history files (`.backup`) beside them.
    let wal_files = || file_names(&lab.repo_path.join("main/wal"));
    assert_eq!(
        report["wal"]["removed"][0]["files"],
        (wal_files_before.len() - wal_files().len()) as u64,
        "{report:#}"
    );
    assert_eq!(listed_backups(&lab), sorted(&labels[2..]));
    assert!(!lab.repo_path.join("main/backup").join(&labels[0]).exists());
    assert_eq!(missing_for_listed_backups(&lab), Vec::<String>::new());
    assert_eq!(unreferenced_chunks(&lab), 0, "{report:#}");
    assert_eq!(report["sweep"]["state"], "swept", "{report:#}");

    // Inside the window left, restores are exact; before it, plan names where it starts.
    restore_at_random_instants(&lab, &rows, rows_before[2]..rows.len() - 1, 2);
    let before = workload::instant_between(&rows, rows_before[1] + 2).unwrap();
    let ran = run_tidemark(
        &lab,
        &["plan", "--target-time", &workload::format_instant(before)],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.only_line().contains(&format!(
            "no backup ends before the target: the earliest point a restore can reach is the end of backup {}",
            labels[2]
        )),
        "{ran:?}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    assert_eq!(
        info["timelines"][0]["recoverable"][0]["from_backup"],
        labels[2].as_str(),
        "{info:#}"
    );
}

/// GFS in UTC and in Europe/Berlin, as dry runs: the catalog's times place the backups in
/// different days, months and years in each.
fn calendar_periods_keep_the_newest_of_each_in_the_time_zone(
    lab: &Lab,
    labels: &[String],
    original: &str,
) {
    // Calendar periods: 2025-12-31T23:30Z is already 2026 in Berlin, 2026-11-30T23:30Z December.
    let times = [
        "2024-06-01T12:00:00Z",
        "2025-12-31T23:30:00Z",
        "2026-11-15T10:00:00Z",
        "2026-11-30T23:30:00Z",
        "2026-12-01T08:00:00Z",
        "2026-12-02T08:00:00Z",
    ];
    for (label, time) in labels.iter().zip(times) {
        set_backup_time(lab, label, time);
    }
    let gfs = "gfs = { daily = 2, monthly = 2, yearly = 3 }";
    set_retention(lab, original, &format!("[retention]\n{gfs}\n"));
    assert_eq!(
        verdicts(&expire_json(lab, &["--dry-run"])),
        expect(
            labels,
            &[
                "yearly",
                "yearly",
                "expired",
                "monthly",
                "daily",
                "newest,daily,monthly,yearly"
            ]
        ),
        "UTC"
    );
    set_retention(
        lab,
        original,
        &format!("[retention]\n{gfs}\ntime_zone = \"Europe/Berlin\"\n"),
    );
    assert_eq!(
        verdicts(&expire_json(lab, &["--dry-run"])),
        expect(
            labels,
            &[
                "yearly",
                "expired",
                "monthly",
                "expired",
                "daily",
                "newest,daily,monthly,yearly"
            ]
        ),
        "Europe/Berlin"
    );
    assert_eq!(listed_backups(lab).len(), 6, "a dry run deletes nothing");
}

fn sorted(labels: &[String]) -> Vec<String> {
    let mut labels = labels.to_vec();
    labels.sort();
    labels
}

/// Restores to `count` random instants between rows `range` and checks the rows.
fn restore_at_random_instants(
    lab: &Lab,
    rows: &[CommittedRow],
    range: std::ops::Range<usize>,
    count: usize,
) {
    for n in 0..count {
        let index = fastrand::usize(range.clone());
        let instant = workload::instant_between(rows, index).unwrap();
        let restored = restore_to_instant(
            lab,
            &format!("restored-{n}"),
            rows,
            instant,
            &[("archive_mode", "off")],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        drop(restored);
    }
}

#[test]
fn expire_on_a_bucket_deletes_the_expired_backups_wal_and_chunks_and_the_rest_restores() {
    common::seed_randomness();
    let server = start_server();
    let lab = Lab::new("tm-expire-s3-", &common::binaries()).unwrap();
    let options = one_mib_segments().repo_section(repo_section(&server.endpoint, "prod"));
    let (mut primary, labels, rows_before) = primary_with_backups(&lab, &options, 3);
    let rows = workload::committed_rows(&primary).unwrap();
    primary.stop().unwrap();
    let original = fs::read_to_string(&lab.config_path).unwrap();
    set_retention(&lab, &original, "[retention]\nfull = 1\n");
    let keys_before = keys_under(&server, "prod/main");

    let report = expire_json(&lab, &[]);
    assert_eq!(
        verdicts(&report),
        expect(&labels, &["expired", "expired", "newest,full"])
    );
    let keys_after = keys_under(&server, "prod/main");
    for label in &labels[..2] {
        assert!(
            !keys_after.iter().any(|k| k.contains(label.as_str())),
            "{label} left objects: {keys_after:?}"
        );
    }
    let chunks = |keys: &[String]| keys.iter().filter(|k| k.contains("/blob/")).count();
    assert!(chunks(&keys_after) < chunks(&keys_before), "{report:#}");
    assert!(report["wal"]["removed"][0]["files"].as_u64().unwrap() > 0);
    assert_eq!(report["sweep"]["state"], "swept", "{report:#}");
    restore_at_random_instants(&lab, &rows, rows_before[2]..rows.len() - 1, 1);
}

/// The `tidemark` process (not `runuser` above it) of this lab running `command`, if any.
fn tidemark_pid(lab: &Lab, command: &str) -> Option<i32> {
    testkit::processes::processes()
        .into_iter()
        .find(|(_, args)| {
            args.first().is_some_and(|a| a.ends_with(b"/tidemark"))
                && testkit::processes::has_flag(args, "--config", &lab.config_path)
                && args.iter().any(|a| a == command.as_bytes())
        })
        .map(|(pid, _)| pid)
}

/// `tidemark --config <lab config> ARGS`, however it ends.
fn run_tidemark(lab: &Lab, args: &[&str]) -> common::Ran {
    let mut full = vec!["--config", lab.config_path.to_str().unwrap()];
    full.extend_from_slice(args);
    common::run(lab, "tidemark", &full)
}

fn spawn_tidemark(lab: &Lab, args: &[&str]) -> Child {
    owner_command(&lab.bin_dir.join("tidemark"), lab.tmp.path())
        .arg("--config")
        .arg(&lab.config_path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(pid: i32, signal: Signal) {
    let process = Pid::from_raw(pid).expect("a process ID is positive");
    kill_process(process, signal).unwrap_or_else(|e| panic!("signal {signal:?} to {pid}: {e}"));
}

/// Lets a stopped `tidemark` go on, and `runuser` above it: runuser stops itself when its
/// child stops, and would never reap the child otherwise.
fn resume(pid: i32, runuser: &Child) {
    signal(pid, Signal::CONT);
    signal(runuser.id() as i32, Signal::CONT);
}

/// Waits (at most a minute) until `lab`'s `tidemark COMMAND` runs and holds a lock object
/// named `<kind>-…`, and returns its process ID.
fn wait_for_lock(lab: &Lab, command: &str, kind: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = file_names(&lab.repo_path.join("main/lock"))
            .iter()
            .any(|name| name.starts_with(&format!("{kind}-")));
        if let (true, Some(pid)) = (held, tidemark_pid(lab, command)) {
            return pid;
        }
        assert!(Instant::now() < deadline, "no {kind} lock appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies the directory `from` to `to` (replacing it), owner and modes kept.
fn copy_tree(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn expire_killed_at_random_moments_never_leaves_a_listed_backup_short_and_the_next_run_finishes() {
    let seed = common::seed_randomness();
    let lab = Lab::new("tm-expire-kill-", &common::binaries()).unwrap();
    let (mut primary, _labels, _) = primary_with_backups(&lab, &one_mib_segments(), 5);
    let all_rows: Vec<i64> = workload::present_ids(&primary).unwrap();
    primary.stop().unwrap();
    let original = fs::read_to_string(&lab.config_path).unwrap();
    set_retention(&lab, &original, "[retention]\nfull = 2\n");
    let pristine: PathBuf = lab.tmp.path().join("pristine");
    copy_tree(&lab.repo_path, &pristine);

    // How long an expire takes here (the shorter of two, the second with a warm cache), so
    // the kills fall all along it.
    let state = |lab: &Lab| {
        let chunks = file_names(&lab.repo_path.join("main/blob")).len();
        (listed_backups(lab), archived_segments(lab), chunks)
    };
    let untouched = state(&lab);
    let mut whole = Duration::MAX;
    for _ in 0..2 {
        copy_tree(&pristine, &lab.repo_path);
        let started = Instant::now();
        let report = expire_json(&lab, &[]);
        whole = whole.min(started.elapsed());
        assert_eq!(missing_for_listed_backups(&lab), Vec::<String>::new());
        assert_eq!(unreferenced_chunks(&lab), 0, "{report:#}");
    }
    let finished = (listed_backups(&lab), archived_segments(&lab));
    let finished_state = state(&lab);

    let (mut killed_midway, mut killed_while_deleting) = (0, 0);
    // Thirty trials, and up to thirty more while fewer than five kills landed part way: the
    // machine may be faster than when the run was timed.
    let mut trials = 0;
    while trials < 30 || (killed_midway < 5 && trials < 60) {
        let trial = trials;
        trials += 1;
        copy_tree(&pristine, &lab.repo_path);
        // The first part of a run is start-up and reading; deleting comes after.
        let delay = whole.mul_f64(0.4 + fastrand::f64() * 0.55);
        let status = run_and_kill_after(&lab, &["expire"], delay);
        if status.success() {
            // It ended before the kill: aim the next ones earlier.
            whole = whole.mul_f64(0.8);
        }
        let after_kill = state(&lab);
        let part_way = !status.success() && after_kill != finished_state;
        killed_while_deleting += usize::from(part_way && after_kill != untouched);
        assert_eq!(
            missing_for_listed_backups(&lab),
            Vec::<String>::new(),
            "trial {trial} (seed {seed}), killed after {delay:?}: a listed backup lost what it needs"
        );
        if part_way && killed_midway == 0 {
            // Every backup still listed restores, to the end of the archive, with every row.
            for (n, label) in listed_backups(&lab).iter().enumerate() {
                let restored = restore_and_check(
                    &lab,
                    &format!("restored-{n}"),
                    &["--backup", label],
                    &[("archive_mode", "off")],
                    &all_rows,
                )
                .unwrap_or_else(|e| panic!("trial {trial}, backup {label}: {e:#}"));
                drop(restored);
            }
        }
        killed_midway += usize::from(part_way);
        let again = expire_json(&lab, &[]);
        assert_eq!(
            (listed_backups(&lab), archived_segments(&lab)),
            finished,
            "trial {trial} (seed {seed}): the next expire did not finish the work: {again:#}"
        );
        assert_eq!(unreferenced_chunks(&lab), 0, "trial {trial} (seed {seed})");
        let verified = lab.tidemark(&["verify"]).unwrap_or_else(|e| {
            panic!("trial {trial} (seed {seed}): verify after the next expire: {e:#}")
        });
        assert_eq!(
            verified.lines().count(),
            1,
            "trial {trial} (seed {seed}): verify is not clean: {verified}"
        );
        assert!(
            !file_names(&lab.repo_path.join("main/lock"))
                .iter()
                .any(|name| name.starts_with("expire-")),
            "trial {trial}: a finished expire left its lock"
        );
    }
    eprintln!(
        "{killed_midway} of {trials} expires were killed part way, {killed_while_deleting} of them after deleting some and before the end (an expire took {whole:?} at the last)"
    );
    assert!(
        killed_midway >= 5,
        "too few kills landed part way: {killed_midway}"
    );
}

/// Runs `tidemark ARGS` and sends its process SIGKILL `delay` after it started, unless it
/// ended first; returns how it ended.
fn run_and_kill_after(lab: &Lab, args: &[&str], delay: Duration) -> std::process::ExitStatus {
    let mut child = spawn_tidemark(lab, args);
    let deadline = Instant::now() + delay;
    let pid = loop {
        if let Some(pid) = tidemark_pid(lab, args[0]) {
            break Some(pid);
        }
        if child.try_wait().unwrap().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    if let Some(pid) = pid
        && child.try_wait().unwrap().is_none()
    {
        // It may end between the look and the kill: then there is nothing to kill.
        let _ = kill_process(Pid::from_raw(pid).expect("positive"), Signal::KILL);
    }
    child.wait().unwrap()
}

#[test]
fn a_backup_running_while_expire_runs_is_not_swept_from_under_and_a_second_expire_refuses() {
    let lab = Lab::new("tm-expire-busy-", &common::binaries()).unwrap();
    let (primary, labels, _) = primary_with_backups(&lab, &one_mib_segments(), 2);
    let original = fs::read_to_string(&lab.config_path).unwrap();
    set_retention(&lab, &original, "[retention]\nfull = 1\n");

    // A backup, frozen once it holds its lock (before BASE_BACKUP), while expire runs.
    workload::insert_rows(&primary, 12, Duration::from_millis(10), "during").unwrap();
    let backup = spawn_tidemark(&lab, &["backup"]);
    let backup_pid = wait_for_lock(&lab, "backup", "backup");
    signal(backup_pid, Signal::STOP);
    let report = expire_json(&lab, &[]);
    resume(backup_pid, &backup);
    assert_eq!(
        verdicts(&report),
        expect(&labels, &["expired", "newest,full"])
    );
    assert_eq!(report["sweep"]["state"], "skipped", "{report:#}");
    assert!(
        report["sweep"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("a backup is running"),
        "{report:#}"
    );
    let output = backup.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let line = String::from_utf8_lossy(&output.stdout);
    let new_label = line.split_whitespace().nth(1).unwrap().to_owned();
    switch_and_wait_for_archive(&primary).unwrap();
    let all_rows = workload::present_ids(&primary).unwrap();

    // A second expire while the first holds the lock refuses, in one line, deleting nothing.
    let first = spawn_tidemark(&lab, &["expire"]);
    let first_pid = wait_for_lock(&lab, "expire", "expire");
    signal(first_pid, Signal::STOP);
    let before = common::snapshot(&lab.repo_path);
    let second = run_tidemark(&lab, &["expire"]);
    let after = common::snapshot(&lab.repo_path);
    resume(first_pid, &first);
    assert_eq!(second.code, Some(1), "{second:?}");
    assert!(
        second
            .only_line()
            .contains("another expire of stanza 'main' is running"),
        "{second:?}"
    );
    assert!(before == after, "the refused expire changed the repository");
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{first:?}");
    assert_eq!(listed_backups(&lab), vec![new_label.clone()]);
    assert_eq!(missing_for_listed_backups(&lab), Vec::<String>::new());
    assert_eq!(unreferenced_chunks(&lab), 0);

    // The backup taken while expire ran restores, with every row.
    drop(primary);
    restore_and_check(
        &lab,
        "restored",
        &["--backup", &new_label],
        &[("archive_mode", "off")],
        &all_rows,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn every_bad_retention_setting_is_one_line_and_deletes_nothing() {
    let lab = Lab::new("tm-expire-bad-", &common::binaries()).unwrap();
    let (mut primary, labels, _) = primary_with_backups(&lab, &one_mib_segments(), 2);
    primary.stop().unwrap();
    let original = fs::read_to_string(&lab.config_path).unwrap();
    let cases = [
        ("[retention]\nfull = 1\nkeep = 3\n", "keep"),
        ("[retention]\nfull = 0\n", "full"),
        ("[retention]\ntime = \"-3d\"\n", "time"),
        ("[retention]\ntime = \"soon\"\n", "time"),
        ("[retention]\ngfs = { fortnightly = 2 }\n", "fortnightly"),
        (
            "[retention]\ntime_zone = \"Mars/Olympus\"\n",
            "Mars/Olympus",
        ),
        ("", "no retention rule is set for stanza 'main'"),
    ];
    let before = common::snapshot(&lab.repo_path);
    for (retention, named) in cases {
        set_retention(&lab, &original, retention);
        let ran = run_tidemark(&lab, &["expire"]);
        assert_eq!(ran.code, Some(1), "{retention}: {ran:?}");
        assert!(ran.only_line().contains(named), "{retention}: {ran:?}");
        assert!(
            common::snapshot(&lab.repo_path) == before,
            "{retention}: the repository changed"
        );
    }

    // A policy that keeps only a backup that cannot be restored (the segment it starts in is
    // gone), while the one it would expire still can, is refused: nothing is deleted.
    let (older, newest) = (&labels[0], &labels[1]);
    let first = backup_record(&lab, newest)["wal_start"]
        .as_str()
        .unwrap()
        .to_owned();
    let segment = lab
        .repo_path
        .join(format!("main/wal/{}/{first}", &first[..16]));
    fs::remove_file(&segment).unwrap();
    set_retention(&lab, &original, "[retention]\nfull = 1\n");
    let before = common::snapshot(&lab.repo_path);
    let ran = run_tidemark(&lab, &["expire"]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.only_line().contains(&format!(
            "the retention policy would leave no recoverable instant: the backups it keeps ({newest}) cannot be restored"
        )),
        "{ran:?}"
    );
    assert!(common::snapshot(&lab.repo_path) == before);
    assert_eq!(
        listed_backups(&lab),
        sorted(&[older.clone(), newest.clone()])
    );
}
