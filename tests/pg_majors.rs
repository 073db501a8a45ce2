//! The version matrix: the same end-to-end scenario on every supported PostgreSQL major, as the
//! real binaries run it. A primary with commit timestamps and 1 MiB segments archives through
//! `tidemark-archive` while recorded single-row commits run beside a rate-limited pgbench;
//! `tidemark backup` copies it over the replication protocol (with PostgreSQL's manifest from 13
//! on, without on 12); `tidemark plan` and `tidemark restore` (prefetch on) bring back random
//! instants on timeline 1 and, after a restored copy promoted onto timeline 2 and archived there,
//! an instant on timeline 2. Every restore holds exactly the rows committed by its target, read
//! exactly the segments its plan named and stopped at the transaction the plan named.
//! `pg_verifybackup` checks a restored directory where the installed one is the server's major.
//! 17 and later run with `summarize_wal` on, and the WAL summarizer of the restored copies,
//! the one along timeline 2 too, must keep summarizing.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use common::backups::{backup_record, take_backup, verify_backup_with_its_wal};
use testkit::steps::{PrimaryOptions, archiving_primary, check_rows, start_restored};
use testkit::workload::{self, CommittedRow};
use testkit::{Lab, ThrowawayCluster, switch_and_wait_for_archive};

#[test]
fn on_postgres_12() {
    the_whole_cycle(12);
}

#[test]
fn on_postgres_13() {
    the_whole_cycle(13);
}

#[test]
fn on_postgres_14() {
    the_whole_cycle(14);
}

#[test]
fn on_postgres_15() {
    the_whole_cycle(15);
}

#[test]
fn on_postgres_16() {
    the_whole_cycle(16);
}

#[test]
fn on_postgres_17() {
    the_whole_cycle(17);
}

#[test]
fn on_postgres_18() {
    the_whole_cycle(18);
}

/// Recorded rows committed before the backup, after it, and on timeline 2.
const ROWS_BEFORE_BACKUP: usize = 20;
const ROWS_AFTER_BACKUP: usize = 60;
const ROWS_ON_TIMELINE_2: usize = 30;

/// The scenario, on PostgreSQL `major`.
fn the_whole_cycle(major: u32) {
    common::seed_randomness();
    let started = Instant::now();
    let lab = Lab::for_major(&format!("tm-pg{major}-"), &common::binaries(), major).unwrap();
    assert_eq!(lab.pg.major, major);
    let (label, rows) = write_timeline_one(&lab);
    println!(
        "PostgreSQL {major}: timeline 1 archived, backup {label}, {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Two random instants on timeline 1, after the backup; the first is checked by
    // pg_verifybackup too before it starts.
    for n in 0..2 {
        let index = fastrand::usize(ROWS_BEFORE_BACKUP..rows.len() - 1);
        let restore = Restore::at_instant(format!("timeline-1-{n}-at-{index}"), &rows, index);
        let cluster = restore.run(&lab, &label, 1, n == 0);
        common::discard(cluster);
    }

    // The fork: a restore to an instant on timeline 1 promotes onto timeline 2 and archives
    // into the same stanza; rows are committed there.
    let index = fastrand::usize(ROWS_BEFORE_BACKUP..rows.len() - 1);
    let mut fork = Restore::at_instant(format!("fork-at-{index}"), &rows, index);
    fork.archive_after = true;
    let kept_at_fork = fork.expected.len();
    let mut forked = fork.run(&lab, &label, 1, false);
    assert_eq!(forked.checkpoint_timeline().unwrap(), "2");
    let rows_2 = with_noise(&forked, || {
        workload::insert_rows(
            &forked,
            ROWS_ON_TIMELINE_2,
            Duration::from_millis(20),
            "timeline 2",
        )?;
        workload::committed_rows(&forked)
    });
    assert_eq!(rows_2.len(), kept_at_fork + ROWS_ON_TIMELINE_2);
    switch_and_wait_for_archive(&forked).unwrap();
    if major >= 17 {
        // A copy restored along timeline 1 summarizes its WAL, that timeline's and its own.
        the_wal_summarizer_goes_on(&forked);
    }
    forked.stop().unwrap();

    // From the timeline 1 backup to a random instant between timeline 2's commits.
    let index = fastrand::usize(kept_at_fork..rows_2.len() - 1);
    let mut along_two = Restore::at_instant(format!("timeline-2-at-{index}"), &rows_2, index);
    along_two
        .target
        .extend(["--target-timeline".to_owned(), "latest".to_owned()]);
    let restored = along_two.run(&lab, &label, 2, false);
    if major >= 17 {
        // Recovery read the segment where timeline 2 forked from timeline 2's copy; the
        // summarizer, which summarizes timeline 1 up to the fork first, needs timeline 1's copy
        // of it in pg_wal too (without it, it stalled for ever and pg_wal grew without end).
        the_wal_summarizer_goes_on(&restored);
    }
    common::discard(restored);

    println!(
        "PostgreSQL {major}: the whole cycle in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Fails unless the WAL summarizer of `cluster` summarizes up to a checkpoint made now (it
/// writes a summary at each checkpoint's redo point).
fn the_wal_summarizer_goes_on(cluster: &ThrowawayCluster) {
    cluster.query("CHECKPOINT").unwrap();
    let redo = cluster
        .query("SELECT redo_lsn FROM pg_control_checkpoint()")
        .unwrap();
    let summarized = cluster.wait_for(
        &format!("SELECT summarized_lsn >= '{redo}' FROM pg_get_wal_summarizer_state()"),
        "t",
        Duration::from_secs(60),
    );
    if let Err(e) = summarized {
        panic!(
            "the WAL summarizer does not reach the checkpoint at {redo}: {e:#}; its state \
             (timeline, summarized, pending, pid): {:?}; {} segments in pg_wal; server log:\n{}",
            cluster.query("SELECT * FROM pg_get_wal_summarizer_state()"),
            common::segment_names_in(&cluster.data_dir().join("pg_wal")).len(),
            cluster.log_tail(20)
        );
    }
}

/// Timeline 1: a primary of the lab's major (with `summarize_wal` from 17 on), pgbench's tables
/// and the workload's; recorded commits beside pgbench before and after `tidemark backup`, which
/// `info` then lists, with PostgreSQL's manifest from 13 on. Archived, and the primary stopped.
/// Returns the backup's label and the recorded rows.
fn write_timeline_one(lab: &Lab) -> (String, Vec<CommittedRow>) {
    let major = lab.pg.major;
    let mut options = PrimaryOptions::default().commit_timestamps();
    if major >= 17 {
        options = options.setting("summarize_wal", "on");
    }
    let mut primary = archiving_primary(lab, &options).unwrap();
    if major >= 17 {
        assert_eq!(primary.query("SHOW summarize_wal").unwrap(), "on");
    }
    common::wait_ok(common::pgbench(&primary, &["-i", "-q", "-s", "1"]));
    workload::create_table(&primary).unwrap();
    if major >= 17 {
        // The summarizer is at work (it summarizes up to a checkpoint's redo point), so the
        // backup and the restores below run beside it and carry its summaries.
        primary.query("CHECKPOINT").unwrap();
        primary
            .wait_for(
                "SELECT count(*) > 0 FROM pg_available_wal_summaries()",
                "t",
                common::PATIENCE,
            )
            .unwrap();
    }

    let insert = |count: usize, tag: &str| {
        workload::insert_rows(&primary, count, Duration::from_millis(20), tag).unwrap()
    };
    let (label, rows) = with_noise(&primary, || {
        insert(ROWS_BEFORE_BACKUP, "before the backup");
        let label = take_backup(lab);
        insert(ROWS_AFTER_BACKUP, "after the backup");
        Ok((label, workload::committed_rows(&primary)?))
    });
    assert_eq!(rows.len(), ROWS_BEFORE_BACKUP + ROWS_AFTER_BACKUP);
    switch_and_wait_for_archive(&primary).unwrap();
    primary.stop().unwrap();

    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    assert_eq!(info["pg_version"], major, "{info:#}");
    let listed: Vec<&str> = info["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [label.as_str()], "{info:#}");
    // PostgreSQL sends a manifest from 13 on, and the backup checked every file against it.
    assert_eq!(
        backup_record(lab, &label)["has_manifest"],
        major >= 13,
        "PostgreSQL {major}"
    );
    (label, rows)
}

/// Runs `work` while a rate-limited pgbench commits beside it throughout, then returns what it
/// returned, or fails.
fn with_noise<T: Send>(
    cluster: &ThrowawayCluster,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> T {
    testkit::pgbench::throughout(cluster, 1, || noise(cluster), work).unwrap()
}

/// Two seconds of pgbench at 50 transactions a second: commits interleaved with the recorded
/// ones, without starving the two cores the matrix shares.
fn noise(cluster: &ThrowawayCluster) -> Child {
    common::pgbench(cluster, &["-n", "-c", "1", "-R", "50", "-T", "2"])
}

/// One restore to check: where to, and the rows it must give back.
struct Restore {
    /// Names the restored directory and its server log.
    name: String,
    /// Given alike to `plan` and `restore`.
    target: Vec<String>,
    expected: Vec<i64>,
    /// Archive the new timeline into the stanza after promotion (else archiving is off).
    archive_after: bool,
}

impl Restore {
    /// To the instant strictly between the commits of `rows[index]` and `rows[index + 1]`.
    fn at_instant(name: String, rows: &[CommittedRow], index: usize) -> Restore {
        let instant = workload::instant_between(rows, index).unwrap();
        Restore {
            name,
            target: vec![
                "--target-time".to_owned(),
                workload::format_instant(instant),
            ],
            expected: workload::ids_committed_by(rows, instant),
            archive_after: false,
        }
    }

    /// Plans the target (which must come from backup `label` along `timeline`), restores it,
    /// first checking the directory with pg_verifybackup if `verify` and the server's own is at
    /// hand, starts it and checks the rows, the segments read and the stop against the plan.
    /// Returns the cluster, promoted and running.
    fn run(&self, lab: &Lab, label: &str, timeline: u32, verify: bool) -> ThrowawayCluster {
        let started = Instant::now();
        let what = format!(
            "PostgreSQL {}, {} ({:?})",
            lab.pg.major, self.name, self.target
        );
        let target: Vec<&str> = self.target.iter().map(String::as_str).collect();
        let mut args = vec!["plan"];
        args.extend(&target);
        args.extend(["--output", "json"]);
        let plan: serde_json::Value = serde_json::from_str(
            &lab.tidemark(&args)
                .unwrap_or_else(|e| panic!("{what}: {e:#}")),
        )
        .unwrap();
        assert_eq!(plan["backup"], label, "{what}: {plan:#}");
        assert_eq!(plan["timeline"], timeline, "{what}: {plan:#}");

        let pgdata = lab.tmp.path().join(&self.name);
        let mut args = vec!["restore", "--pgdata", pgdata.to_str().unwrap()];
        args.extend(&target);
        let report = lab
            .tidemark(&args)
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert!(
            report.contains(&format!("restored backup {label} into ")),
            "{what}: {report}"
        );
        if verify {
            verify_restored(lab, &pgdata, label);
        }
        let settings = self.settings(lab);
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let cluster = start_restored(lab, &self.name, &settings)
            .unwrap_or_else(|e| panic!("{what}: recovery did not finish: {e:#}"));
        check_rows(&cluster, &self.expected).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let prefetched = followed_the_plan(&cluster, &plan, &what);
        println!(
            "{what}: {} rows, {} segments planned, {prefetched} prefetched, {:.1} s",
            self.expected.len(),
            plan["segments"].as_array().unwrap().len(),
            started.elapsed().as_secs_f64()
        );
        cluster
    }

    /// What the restored cluster starts with: archiving on through the lab's stanza or off, and
    /// from 15 on PostgreSQL's own WAL read-ahead off, so that it reads exactly what replay needs
    /// (which is what the plan promises) and not the next segment as well.
    fn settings(&self, lab: &Lab) -> Vec<(&'static str, String)> {
        let mut settings = if self.archive_after {
            vec![
                ("archive_mode", "on".to_owned()),
                ("archive_command", lab.archive_command()),
            ]
        } else {
            vec![("archive_mode", "off".to_owned())]
        };
        if lab.pg.major >= 15 {
            settings.push(("recovery_prefetch", "off".to_owned()));
        }
        settings
    }
}

/// pg_verifybackup on a restored directory, before it starts, when the installed one is the
/// server's major (it refuses others); says so when it is not.
fn verify_restored(lab: &Lab, pgdata: &std::path::Path, label: &str) {
    let Some(tool) = lab.pg.own_tool("pg_verifybackup") else {
        println!(
            "PostgreSQL {}: no pg_verifybackup of this major at hand, not run",
            lab.pg.major
        );
        return;
    };
    let record = backup_record(lab, label);
    verify_backup_with_its_wal(
        lab,
        &tool,
        pgdata,
        record["wal_start"].as_str().unwrap(),
        record["wal_stop"].as_str().unwrap(),
    );
    println!(
        "PostgreSQL {}: pg_verifybackup verified {}",
        lab.pg.major,
        pgdata.display()
    );
}

/// Fails unless the restored cluster's recovery read, through `tidemark-restore`, exactly the
/// segments `plan` names (and asked for none that is not archived), stopped before the
/// transaction it names and logged no Tidemark error; returns how many segments came from the
/// prefetcher's spool.
fn followed_the_plan(cluster: &ThrowawayCluster, plan: &serde_json::Value, what: &str) -> usize {
    let log = fs::read_to_string(cluster.log_file()).unwrap();
    let errors = common::tidemark_errors(cluster);
    assert!(errors.is_empty(), "{what}: {errors:#?}");
    let planned: BTreeSet<String> = common::planned_segments(plan).into_iter().collect();
    let fetched: BTreeSet<String> = common::fetched_segments(&log).into_iter().collect();
    assert_eq!(fetched, planned, "{what}: segments read, then planned");
    let not_archived: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" is not in the archive of stanza "))
        .filter_map(|l| l.strip_prefix("tidemark-restore: INFO: "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| common::is_segment_name(name))
        .collect();
    assert!(
        not_archived.is_empty(),
        "{what}: PostgreSQL asked for {not_archived:?} too, which are not archived"
    );
    assert_eq!(
        plan["stop"]["kind"], "before_transaction",
        "{what}: {plan:#}"
    );
    let stop = format!(
        "recovery stopping before commit of transaction {}, time ",
        plan["stop"]["xid"]
    );
    assert!(
        log.contains(&stop),
        "{what}: the plan predicted a stop {}; the server log says:\n{}",
        plan["stop"],
        log.lines()
            .filter(|l| l.contains("recovery stopping") || l.contains("redo done"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    log.lines()
        .filter(|l| l.contains(", prefetched) in "))
        .count()
}
