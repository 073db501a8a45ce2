//! The proof that matters (DESIGN.md §8), on a real PostgreSQL 15 with `track_commit_timestamp`:
//! a workload of single-row commits runs beside pgbench noise; for each of many instants — random
//! ones strictly between commits, one inside a backup's window, one exactly at a commit (with
//! `--target-exclusive` off and on), instants on a second timeline and on the first after it
//! forked — `tidemark restore` and a start of the restored cluster give back exactly the rows
//! committed by then. For every one of those restores the plan `tidemark plan` printed before is
//! held against what PostgreSQL did: the segments it fetched through `tidemark-restore` are
//! exactly the planned ones, and it stopped before the transaction the plan named.
//! The same proof the way a DBA recovers without `tidemark restore`: a `pg_basebackup` copy,
//! recovered through `tidemark-restore` to a recorded instant, gives back exactly the rows
//! committed by then; promoted (timeline 2), it archives more, and a second recovery from the same
//! copy follows both timelines to an instant on timeline 2, which `info` then shows without gaps.
//! Then the targets the archive cannot serve: before the first backup, beyond the last archived
//! commit, behind a segment missing from the repository — refused by `plan` and `restore` alike
//! with one line that says why, leaving `--pgdata` as it was.
//! Last, two ignored regression tests for planner bugs this proof found: a commit record that
//! continues into the next segment is missing from the WAL index, and an LSN target's plan leaves
//! out the segment holding the first record at or past the LSN.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use common::backups::take_backup;
use testkit::Lab;
use testkit::ThrowawayCluster;
use testkit::recovery::{RecoveryTarget, recover_copy};
use testkit::steps::{
    PrimaryOptions, Restored, archiving_primary, check_rows, restore_to, rows_differ,
};
use testkit::switch_and_wait_for_archive;
use testkit::workload::{self, CommittedRow};

/// Rate-limited pgbench for `seconds`: a steady stream of commits interleaved with the recorded
/// ones in the WAL, without starving the 2 cores the tests share.
fn noise(cluster: &ThrowawayCluster, seconds: u32) -> std::process::Child {
    let seconds = seconds.to_string();
    common::pgbench(cluster, &["-n", "-c", "2", "-R", "150", "-T", &seconds])
}

/// Runs `work` while two clients of pgbench commit beside it throughout.
fn with_noise_throughout<T: Send>(
    cluster: &ThrowawayCluster,
    work: impl FnOnce() -> T + Send,
) -> T {
    testkit::pgbench::throughout(cluster, 2, || noise(cluster, 1), work)
}

/// A primary archiving into the lab's stanza through `tidemark-archive`, with 1 MiB segments (so
/// a short workload spans several), commit timestamps on, and a configuration `tidemark backup`
/// can use; pgbench's tables (scale 1) and the workload's table are created.
fn primary(lab: &Lab, autovacuum: bool) -> ThrowawayCluster {
    let options = PrimaryOptions::default()
        .commit_timestamps()
        .setting("autovacuum", if autovacuum { "on" } else { "off" });
    let primary = archiving_primary(lab, &options).unwrap();
    common::wait_ok(common::pgbench(&primary, &["-i", "-q", "-s", "1"]));
    workload::create_table(&primary).unwrap();
    primary
}

/// The stanza's backups as `info --output json` lists them, oldest first.
fn backups(lab: &Lab) -> Vec<serde_json::Value> {
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    info["backups"].as_array().unwrap().clone()
}

/// Each workload row's transaction ID, by row id.
fn xids(cluster: &ThrowawayCluster) -> BTreeMap<i64, u64> {
    column_by_id(cluster, "xmin")
}

/// Each workload row's note (which says which phase wrote it), by row id.
fn notes(cluster: &ThrowawayCluster) -> BTreeMap<i64, String> {
    column_by_id(cluster, "note")
}

/// `column` of each workload row, by row id.
fn column_by_id<T: std::str::FromStr>(cluster: &ThrowawayCluster, column: &str) -> BTreeMap<i64, T>
where
    T::Err: std::fmt::Debug,
{
    cluster
        .query(&format!("SELECT id, {column} FROM {}", workload::TABLE))
        .unwrap()
        .lines()
        .map(|line| {
            let (id, value) = line.split_once('|').unwrap();
            (id.parse().unwrap(), value.parse().unwrap())
        })
        .collect()
}

/// An instant strictly between two commits, at a random row index in `range`.
fn random_instant(rows: &[CommittedRow], range: std::ops::Range<usize>) -> (usize, i64) {
    let index = fastrand::usize(range);
    (index, workload::instant_between(rows, index).unwrap())
}

/// The segments PostgreSQL asked `tidemark-restore` for and did not get, because they are not
/// archived (yet).
fn unarchived_segments_asked_for(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.strip_prefix("tidemark-restore: INFO: "))
        .filter(|rest| rest.contains(" is not in the archive of stanza "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .filter(|name| common::is_segment_name(name))
        .collect()
}

/// One restore to check: where to, and the rows it must give back.
struct Case {
    /// Names the restored directory and its server log.
    name: String,
    /// `--target-time ...` and friends, given alike to `plan` and `restore`.
    target: Vec<String>,
    expected: Vec<i64>,
    /// Archive the new timeline into the stanza after promotion (default: archiving off, so
    /// that the restore leaves no trace in the archive).
    archive_after: bool,
}

impl Case {
    /// A restore to `target` that must give back `expected`, archiving off.
    fn new(name: impl Into<String>, target: Vec<String>, expected: Vec<i64>) -> Case {
        Case {
            name: name.into(),
            target,
            expected,
            archive_after: false,
        }
    }

    /// A restore to `instant` (with `more` target options) that must give back the rows of
    /// `rows` committed by then, archiving off.
    fn at_instant(
        name: impl Into<String>,
        rows: &[CommittedRow],
        instant: i64,
        more: &[&str],
    ) -> Case {
        let mut target = time_target(instant);
        target.extend(more.iter().map(|option| option.to_string()));
        Case::new(name, target, workload::ids_committed_by(rows, instant))
    }
}

/// What one restore showed.
struct Outcome {
    plan: serde_json::Value,
    /// Started, promoted and still running.
    cluster: ThrowawayCluster,
}

/// Plans `case`, restores it into a fresh directory, starts it and checks the rows, the
/// segments PostgreSQL fetched and where it stopped against the plan. Mismatches go to
/// `problems` (so that one run shows them all); the cluster is returned running, or `None` when
/// the plan was refused or recovery did not finish (which is a problem too).
fn prove(lab: &Lab, case: &Case, problems: &mut Vec<String>) -> Option<Outcome> {
    let started = Instant::now();
    let target: Vec<&str> = case.target.iter().map(String::as_str).collect();
    let mut plan_args = vec!["plan"];
    plan_args.extend(&target);
    plan_args.extend(["--output", "json"]);
    let plan: serde_json::Value = match lab.tidemark(&plan_args) {
        Ok(json) => serde_json::from_str(&json).unwrap(),
        Err(e) => {
            problems.push(format!("{}: {e:#}", case.name));
            return None;
        }
    };

    let archive_mode = if case.archive_after { "on" } else { "off" };
    // PostgreSQL 15's default `recovery_prefetch = try` decodes WAL up to
    // `wal_decode_buffer_size` (512 kB) ahead of replay, through restore_command: when the stop
    // record lies that close to the end of its segment, the next segment is asked for too,
    // although nothing in it is replayed (and if it is not archived, the last segment is fetched
    // a second time after the stop). That read-ahead is PostgreSQL's speculation, not something
    // recovery needs; with it off, PostgreSQL reads exactly what replay needs, which is what the
    // plan promises and what is compared here.
    let settings = [("archive_mode", archive_mode), ("recovery_prefetch", "off")];
    let Restored { report, cluster } = match restore_to(lab, &case.name, &target, &settings) {
        Ok(restored) => restored,
        Err(e) => {
            problems.push(format!(
                "{}: restore or recovery did not finish, though the plan {plan} says it can: {e:#}",
                case.name
            ));
            return None;
        }
    };
    assert!(
        report.contains(&format!(
            "restored backup {} into ",
            plan["backup"].as_str().unwrap()
        )),
        "{report}"
    );

    let present = workload::present_ids(&cluster).unwrap();
    if let Some(difference) = rows_differ(&present, &case.expected) {
        problems.push(format!(
            "{}: restored rows differ from those committed by the target ({:?}): {difference}; plan stop {}",
            case.name, case.target, plan["stop"]
        ));
    }

    let log = fs::read_to_string(cluster.log_file()).unwrap();
    let errors = common::tidemark_errors(&cluster);
    if !errors.is_empty() {
        problems.push(format!(
            "{}: tidemark errors in the log: {errors:#?}",
            case.name
        ));
    }
    let planned: Vec<String> = common::planned_segments(&plan);
    let fetched = common::fetched_segments(&log);
    let planned_set: BTreeSet<&String> = planned.iter().collect();
    let fetched_set: BTreeSet<&String> = fetched.iter().collect();
    if planned_set != fetched_set {
        problems.push(format!(
            "{}: planned segments {planned:?}, PostgreSQL fetched {fetched:?} (not planned: {:?}; planned, not fetched: {:?})\nplan: {plan:#}",
            case.name,
            fetched_set.difference(&planned_set).collect::<Vec<_>>(),
            planned_set.difference(&fetched_set).collect::<Vec<_>>(),
        ));
    }
    // Nor did it look for anything beyond the plan that happens not to be archived.
    let unarchived = unarchived_segments_asked_for(&log);
    if !unarchived.is_empty() {
        problems.push(format!(
            "{}: PostgreSQL also asked for {unarchived:?}, which are not archived; planned {planned:?}",
            case.name
        ));
    }
    if let Some(problem) = stop_differs(&plan["stop"], &log) {
        problems.push(format!("{}: {problem}", case.name));
    }
    println!(
        "{}: {} rows, backup {}, {} segments planned, {} fetched ({} distinct), {:.1} s",
        case.name,
        present.len(),
        plan["backup"].as_str().unwrap(),
        planned.len(),
        fetched.len(),
        fetched_set.len(),
        started.elapsed().as_secs_f64()
    );
    Some(Outcome { plan, cluster })
}

/// Whether the server log shows PostgreSQL stopping elsewhere than at the plan's `stop`; says
/// how if so.
fn stop_differs(stop: &serde_json::Value, log: &str) -> Option<String> {
    let xid = &stop["xid"];
    // For a transaction, PostgreSQL names it and reports the record's LSN as where redo was done.
    let expected: Vec<String> = match stop["kind"].as_str().unwrap() {
        "before_transaction" => vec![
            format!("recovery stopping before commit of transaction {xid}, time "),
            format!("redo done at {} ", stop["lsn"].as_str().unwrap()),
        ],
        "after_transaction" => vec![
            format!("recovery stopping after commit of transaction {xid}, time "),
            format!("redo done at {} ", stop["lsn"].as_str().unwrap()),
        ],
        // At the first record at or past the LSN, which the plan does not name.
        "lsn" => vec!["recovery stopping after WAL location (LSN) ".to_owned()],
        kind => return Some(format!("no check for a stop of kind {kind}")),
    };
    if expected.iter().all(|line| log.contains(line)) {
        return None;
    }
    Some(format!(
        "the plan predicted a stop {stop}; the server log says:\n{}",
        log.lines()
            .filter(|l| l.contains("recovery stopping")
                || l.contains("redo done")
                || l.contains("FATAL"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

fn time_target(instant: i64) -> Vec<String> {
    vec![
        "--target-time".to_owned(),
        workload::format_instant(instant),
    ]
}

#[test]
fn restores_to_instants_give_exactly_the_rows_committed_by_then_and_read_exactly_the_planned_wal() {
    common::seed_randomness();
    let started = Instant::now();
    let lab = Lab::new("tm-proof-", &common::binaries()).unwrap();
    let history = write_timeline_one(&lab, started);
    let mut problems = Vec::new();
    let mut cases = instants_between_commits(&history.rows);
    cases.push(during_second_backup(&lab, &history));
    let at = history.rows[240 + fastrand::usize(1..18)];
    cases.extend(at_a_commit(&history.rows, at));
    for case in &cases {
        let Some(outcome) = prove(&lab, case, &mut problems) else {
            continue;
        };
        check_timeline_one_plan(&history, case, &outcome, at, &mut problems);
        common::discard(outcome.cluster);
    }

    let fork = fork_onto_timeline_two(&lab, &history.rows, &mut problems);
    let after_fork = cases_after_the_fork(&history.rows, &fork);
    for case in &after_fork {
        let Some(outcome) = prove(&lab, case, &mut problems) else {
            continue;
        };
        check_after_fork(&history, &fork, case, &outcome, &mut problems);
        common::discard(outcome.cluster);
    }

    println!(
        "{} restores, {:.1} s in all",
        cases.len() + 1 + after_fork.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Timeline 1 as archived: the backups' labels, the recorded rows, and each row's transaction
/// and note.
struct TimelineOne {
    first_backup: String,
    second_backup: String,
    rows: Vec<CommittedRow>,
    xid_of: BTreeMap<i64, u64>,
    notes: BTreeMap<i64, String>,
}

/// Timeline 1: recorded single-row commits, pgbench noise beside them, a second backup taken
/// in the middle of it all, then a quiet stretch of recorded commits alone; archived, and the
/// primary stopped.
fn write_timeline_one(lab: &Lab, started: Instant) -> TimelineOne {
    let mut primary = primary(lab, true);
    let first_backup = take_backup(lab);
    let pgbench_noise = noise(&primary, 5);
    workload::insert_rows(&primary, 120, Duration::from_millis(30), "noisy first").unwrap();
    common::wait_ok(pgbench_noise);
    let second_backup = with_noise_throughout(&primary, || take_backup(lab));
    let pgbench_noise = noise(&primary, 5);
    workload::insert_rows(&primary, 120, Duration::from_millis(30), "noisy second").unwrap();
    common::wait_ok(pgbench_noise);
    workload::insert_rows(&primary, 20, Duration::from_millis(30), "quiet").unwrap();
    let rows = workload::committed_rows(&primary).unwrap();
    assert_eq!(rows.len(), 260);
    let xid_of = xids(&primary);
    let notes = notes(&primary);
    // The quiet stretch ends its segment; noise fills the next one, so that WAL past the
    // last planned segment is archived and a read-ahead into it would show.
    primary.query("SELECT pg_switch_wal()").unwrap();
    common::wait_ok(noise(&primary, 1));
    switch_and_wait_for_archive(&primary).unwrap();
    primary.stop().unwrap();
    println!(
        "workload archived in {:.1} s; backups {first_backup}, {second_backup}",
        started.elapsed().as_secs_f64()
    );
    TimelineOne {
        first_backup,
        second_backup,
        rows,
        xid_of,
        notes,
    }
}

/// Random instants strictly between recorded commits, five on each side of the second
/// backup; rows[119] and rows[120] are the commits just before and after it.
fn instants_between_commits(rows: &[CommittedRow]) -> Vec<Case> {
    let mut picked = BTreeSet::new();
    while picked.len() < 10 {
        let range = if picked.len() < 5 { 0..119 } else { 120..240 };
        picked.insert(fastrand::usize(range));
    }
    picked
        .into_iter()
        .map(|index| {
            let instant = workload::instant_between(rows, index).unwrap();
            Case::at_instant(format!("between-{index}"), rows, instant, &[])
        })
        .collect()
}

/// Halfway through the second backup: pgbench commits past the target lie before that
/// backup is consistent, so only the first can serve.
fn during_second_backup(lab: &Lab, history: &TimelineOne) -> Case {
    let rows = &history.rows;
    let second = &backups(lab)[1];
    assert_eq!(second["label"], history.second_backup);
    let micros = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(second[field].as_str().unwrap())
            .unwrap()
            .timestamp_micros()
    };
    let during_backup = (micros("start_time") + micros("stop_time")) / 2;
    assert!(rows[119].commit_micros < during_backup && during_backup < rows[120].commit_micros);
    Case::at_instant("during-second-backup".to_owned(), rows, during_backup, &[])
}

/// Exactly at a commit of the quiet stretch (no concurrent commit can share its WAL
/// neighbourhood there): inclusive keeps it, exclusive does not. Commit times are whole
/// microseconds and format_instant prints all six digits, so the target is that commit's time.
fn at_a_commit(rows: &[CommittedRow], at: CommittedRow) -> [Case; 2] {
    let at_text = workload::format_instant(at.commit_micros);
    assert_eq!(
        chrono::DateTime::parse_from_str(&at_text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .unwrap()
            .timestamp_micros(),
        at.commit_micros,
        "{at_text}"
    );
    let inclusive = workload::ids_committed_by(rows, at.commit_micros);
    let exclusive = workload::ids_committed_by(rows, at.commit_micros - 1);
    assert!(inclusive.contains(&at.id) && !exclusive.contains(&at.id));
    let mut exclusive_target = time_target(at.commit_micros);
    exclusive_target.push("--target-exclusive".to_owned());
    [
        Case::new(
            format!("at-commit-of-{}-inclusive", at.id),
            time_target(at.commit_micros),
            inclusive,
        ),
        Case::new(
            format!("at-commit-of-{}-exclusive", at.id),
            exclusive_target,
            exclusive,
        ),
    ]
}

/// The target inside the second backup is served by the first; the exclusive target at
/// row `at`'s commit stops before its transaction.
fn check_timeline_one_plan(
    history: &TimelineOne,
    case: &Case,
    outcome: &Outcome,
    at: CommittedRow,
    problems: &mut Vec<String>,
) {
    let first_backup = &history.first_backup;
    if case.name == "during-second-backup" && outcome.plan["backup"] != *first_backup {
        problems.push(format!(
            "{}: a target inside the second backup's window must be served by the first backup, {first_backup}; the plan chose {}",
            case.name, outcome.plan["backup"]
        ));
    }
    let xid_of = &history.xid_of;
    if case.target.iter().any(|a| a == "--target-exclusive")
        && outcome.plan["stop"]["xid"] != xid_of[&at.id]
    {
        problems.push(format!(
            "{}: an exclusive target at the commit of row {} stops before its transaction {}; the plan says {}",
            case.name, at.id, xid_of[&at.id], outcome.plan["stop"]
        ));
    }
}

/// Timeline 2, forked from timeline 1 at `instant` (between rows `index` and `index + 1`):
/// what the fork restored, the rows and notes written there.
struct Fork {
    index: usize,
    instant: i64,
    expected: Vec<i64>,
    rows: Vec<CommittedRow>,
    notes: BTreeMap<i64, String>,
}

/// A fork: restore to an instant in the second half, let the restored cluster promote to
/// timeline 2 and archive into the same stanza, and write more there.
fn fork_onto_timeline_two(lab: &Lab, rows: &[CommittedRow], problems: &mut Vec<String>) -> Fork {
    let (index, instant) = random_instant(rows, 140..200);
    let fork_case = Case {
        name: format!("fork-{index}"),
        target: time_target(instant),
        expected: workload::ids_committed_by(rows, instant),
        archive_after: true,
    };
    let Some(Outcome {
        cluster: mut fork, ..
    }) = prove(lab, &fork_case, problems)
    else {
        panic!("{}", problems.join("\n\n"));
    };
    assert_eq!(fork.checkpoint_timeline().unwrap(), "2");
    let pgbench_noise = noise(&fork, 3);
    workload::insert_rows(&fork, 60, Duration::from_millis(30), "timeline 2").unwrap();
    common::wait_ok(pgbench_noise);
    let rows_2 = workload::committed_rows(&fork).unwrap();
    let notes_2 = notes(&fork);
    assert_eq!(rows_2.len(), fork_case.expected.len() + 60);
    switch_and_wait_for_archive(&fork).unwrap();
    fork.stop().unwrap();
    Fork {
        index,
        instant,
        expected: fork_case.expected,
        rows: rows_2,
        notes: notes_2,
    }
}

/// Restores after the fork: two instants along timeline 2, an instant timeline 1 reached only
/// after the fork asked for along timeline 2, and timeline 1 past the fork by number.
fn cases_after_the_fork(rows: &[CommittedRow], fork: &Fork) -> Vec<Case> {
    let mut after_fork = Vec::new();
    for _ in 0..2 {
        let (index, instant) = random_instant(&fork.rows, fork.expected.len()..fork.rows.len() - 1);
        after_fork.push(Case::at_instant(
            format!("timeline-2-between-{index}"),
            &fork.rows,
            instant,
            &["--target-timeline", "latest"],
        ));
    }
    // An instant timeline 1 reached only after the fork: along timeline 2 nothing commits
    // between the fork and timeline 2's first commit, so the restore holds what the fork did.
    let (index, instant) = random_instant(rows, fork.index + 3..239);
    let mut target = time_target(instant);
    target.extend(["--target-timeline".to_owned(), "latest".to_owned()]);
    after_fork.push(Case {
        name: format!("timeline-1-instant-{index}-along-timeline-2"),
        target,
        expected: fork.expected.clone(),
        archive_after: false,
    });
    // And timeline 1 past the fork, asked for by number.
    let (index, instant) = random_instant(rows, fork.index + 5..239);
    after_fork.push(Case::at_instant(
        format!("timeline-1-past-the-fork-{index}"),
        rows,
        instant,
        &["--target-timeline", "1"],
    ));
    after_fork
}

/// A restore after the fork follows the timeline asked for; along timeline 2 it holds none
/// of timeline 1's rows committed after the fork, and only rows timeline 2 has.
fn check_after_fork(
    history: &TimelineOne,
    fork: &Fork,
    case: &Case,
    outcome: &Outcome,
    problems: &mut Vec<String>,
) {
    let along_two = case.target.contains(&"latest".to_owned());
    let timeline = if along_two { 2 } else { 1 };
    if outcome.plan["timeline"] != timeline {
        problems.push(format!(
            "{}: the plan follows timeline {}, not {timeline}",
            case.name, outcome.plan["timeline"]
        ));
    }
    if !along_two {
        return;
    }
    // Timeline 1's rows committed after the fork: a restore along timeline 2 must not have them.
    let lost_at_fork: BTreeSet<&String> = history
        .rows
        .iter()
        .filter(|r| r.commit_micros > fork.instant)
        .map(|r| &history.notes[&r.id])
        .collect();
    let present = notes(&outcome.cluster);
    let resurrected: Vec<&String> = present
        .values()
        .filter(|n| lost_at_fork.contains(n))
        .collect();
    if !resurrected.is_empty() {
        problems.push(format!(
            "{}: rows timeline 1 committed after the fork are back: {resurrected:?}",
            case.name
        ));
    }
    // Ids may repeat across timelines (the sequence is WAL-logged ahead), notes do not.
    if !present.iter().all(|(id, n)| fork.notes.get(id) == Some(n)) {
        problems.push(format!(
            "{}: rows that timeline 2 does not have: {present:?}",
            case.name
        ));
    }
}

/// Recovers a copy of `base_backup` as `name` to `target`, which must give exactly the rows
/// `expected`; `what` says which recovery failed.
fn recover_and_check(
    lab: &Lab,
    base_backup: &std::path::Path,
    name: &str,
    target: &RecoveryTarget,
    expected: &[i64],
    what: &str,
) -> ThrowawayCluster {
    let restored = recover_copy(lab, base_backup, name, target).unwrap();
    check_rows(&restored, expected).unwrap_or_else(|e| {
        let instant = target.time.as_deref().unwrap_or("the end of the archive");
        panic!("recovery to {instant} ({what}): {e:#}")
    });
    restored
}

/// Recovery asks for names that do not exist (the next timeline's history, `00000001.history`
/// at promotion); those must be quiet "not archived" answers, never ERROR lines in the log.
fn assert_no_tidemark_errors(cluster: &ThrowawayCluster) {
    let log = fs::read_to_string(cluster.log_file()).unwrap();
    let errors = common::tidemark_errors(cluster);
    assert!(
        errors.is_empty(),
        "tidemark errors in {}: {errors:#?}",
        cluster.log_file().display()
    );
    assert!(
        log.contains("tidemark-restore: INFO: restored "),
        "no segment came through tidemark-restore"
    );
}

#[test]
fn recovery_of_a_base_backup_copy_to_an_instant_gives_exactly_the_rows_committed_by_then_across_timelines()
 {
    common::seed_randomness();
    let lab = Lab::new("tm-pitr-", &common::binaries()).unwrap();
    let mut primary =
        archiving_primary(&lab, &PrimaryOptions::default().commit_timestamps()).unwrap();
    common::wait_ok(common::pgbench(&primary, &["-i", "-q", "-s", "2"]));
    workload::create_table(&primary).unwrap();
    let base_backup = lab.tmp.path().join("base");
    primary.base_backup(&base_backup).unwrap();

    // Timeline 1: recorded commits with pgbench noise in between.
    let noise = common::pgbench(&primary, &["-T", "4", "-c", "2", "-n"]);
    workload::insert_rows(&primary, 120, Duration::from_millis(30), "timeline 1").unwrap();
    common::wait_ok(noise);
    let rows = workload::committed_rows(&primary).unwrap();
    assert_eq!(rows.len(), 120);
    switch_and_wait_for_archive(&primary).unwrap();
    primary.stop().unwrap();

    let (_, instant) = random_instant(&rows, 10..rows.len() - 1);
    let expected = workload::ids_committed_by(&rows, instant);
    let target = RecoveryTarget {
        time: Some(workload::format_instant(instant)),
        archive_after: true,
        ..RecoveryTarget::default()
    };
    let restored = recover_and_check(
        &lab,
        &base_backup,
        "restored1",
        &target,
        &expected,
        "timeline 1",
    );
    assert_eq!(restored.checkpoint_timeline().unwrap(), "2");

    // Timeline 2: the recovered cluster writes and archives through the same stanza.
    let noise = common::pgbench(&restored, &["-T", "2", "-c", "1", "-n"]);
    workload::insert_rows(&restored, 40, Duration::from_millis(30), "timeline 2").unwrap();
    common::wait_ok(noise);
    let rows_timeline_2 = workload::committed_rows(&restored).unwrap();
    assert_eq!(rows_timeline_2.len(), expected.len() + 40);
    switch_and_wait_for_archive(&restored).unwrap();
    assert_no_tidemark_errors(&restored);
    drop(restored);

    let (_, instant_2) = random_instant(
        &rows_timeline_2,
        expected.len() + 5..rows_timeline_2.len() - 1,
    );
    let expected_2 = workload::ids_committed_by(&rows_timeline_2, instant_2);
    let target_2 = RecoveryTarget {
        time: Some(workload::format_instant(instant_2)),
        timeline: Some("latest".to_owned()),
        ..RecoveryTarget::default()
    };
    let restored_2 = recover_and_check(
        &lab,
        &base_backup,
        "restored2",
        &target_2,
        &expected_2,
        "timeline 2, through timeline 1",
    );
    assert_eq!(restored_2.checkpoint_timeline().unwrap(), "3");
    assert_no_tidemark_errors(&restored_2);

    // The repository shows both timelines, without gaps, and the history file.
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    let timelines: Vec<u64> = info["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["timeline"].as_u64().unwrap())
        .collect();
    assert_eq!(timelines, [1, 2], "{info:#}");
    for timeline in info["timelines"].as_array().unwrap() {
        assert_eq!(timeline["missing_segments"], 0, "{info:#}");
    }
    assert!(
        info["history_files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "00000002.history"),
        "{info:#}"
    );
}

/// Runs `tidemark <args>` as the cluster owner with the lab's configuration.
fn tidemark_fails(lab: &Lab, args: &[&str]) -> common::Ran {
    let mut full = vec!["--config", lab.config_path.to_str().unwrap()];
    full.extend_from_slice(args);
    common::run(lab, "tidemark", &full)
}

#[test]
fn unreachable_targets_are_refused_by_plan_and_restore_leaving_pgdata_untouched() {
    let lab = Lab::new("tm-unreach-", &common::binaries()).unwrap();
    // No autovacuum: the last commit archived is the workload's, known to the microsecond.
    let mut primary = primary(&lab, false);
    workload::insert_rows(&primary, 5, Duration::from_millis(20), "before the backup").unwrap();
    let label = take_backup(&lab);
    workload::insert_rows(&primary, 5, Duration::from_millis(20), "first").unwrap();
    primary.query("SELECT pg_switch_wal()").unwrap();
    // The segment the second batch goes to; it will be taken out of the repository.
    let lost_segment = primary
        .query("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
        .unwrap();
    workload::insert_rows(&primary, 5, Duration::from_millis(20), "second").unwrap();
    primary.query("SELECT pg_switch_wal()").unwrap();
    workload::insert_rows(&primary, 5, Duration::from_millis(20), "third").unwrap();
    let rows = workload::committed_rows(&primary).unwrap();
    let last_commit: i64 = primary
        .query_value("SELECT (extract(epoch FROM timestamp) * 1000000)::bigint FROM pg_last_committed_xact()")
        .unwrap();
    assert_eq!(last_commit, rows.last().unwrap().commit_micros);
    switch_and_wait_for_archive(&primary).unwrap();
    primary.stop().unwrap();
    let stop_lsn = backups(&lab)[0]["stop_lsn"].as_str().unwrap().to_owned();

    // An existing data directory (a real restore, plus a file of the DBA's) for --delta.
    let existing = lab.tmp.path().join("existing");
    lab.tidemark(&["restore", "--pgdata", existing.to_str().unwrap()])
        .unwrap();
    fs::write(existing.join("precious"), b"keep me").unwrap();
    let before = common::snapshot(&existing);
    let absent = lab.tmp.path().join("absent");

    let before_backup = workload::instant_between(&rows, 2).unwrap();
    let beyond = last_commit + 1_000_000;
    let behind_gap = workload::instant_between(&rows, 17).unwrap();
    let cases: Vec<(&str, i64, String)> = vec![
        (
            "before the first backup",
            before_backup,
            format!(
                "no backup ends before the target: the earliest point a restore can reach is the end of backup {label} at {stop_lsn}"
            ),
        ),
        (
            "beyond the last archived commit",
            beyond,
            format!(
                "the archived WAL along timeline 1 does not reach the target: no commit or abort after {} is archived yet, so PostgreSQL would stop with \"recovery ended before configured recovery target was reached\"; today a restore can reach the last archived commit or abort, at {}",
                workload::format_instant(beyond),
                workload::format_instant(last_commit)
            ),
        ),
        (
            "behind a missing segment",
            behind_gap,
            format!(
                "WAL segment {lost_segment} is not in the archive: recovery from backup {label} cannot get past it"
            ),
        ),
    ];
    for (what, instant, reason) in &cases {
        if *what == "behind a missing segment" {
            // Reachable until the segment goes.
            let target = workload::format_instant(*instant);
            lab.tidemark(&["plan", "--target-time", &target]).unwrap();
            let object = lab
                .repo_path
                .join("main/wal")
                .join(&lost_segment[..16])
                .join(&lost_segment);
            fs::remove_file(&object).unwrap();
        }
        let target = workload::format_instant(*instant);
        let planned = tidemark_fails(&lab, &["plan", "--target-time", &target]);
        assert_eq!(planned.code, Some(1), "{what}: {planned:?}");
        assert_eq!(
            planned.only_line(),
            format!("tidemark: ERROR: plan: {reason}"),
            "{what}"
        );
        for (pgdata, extra) in [(&absent, None), (&existing, Some("--delta"))] {
            let mut args = vec![
                "restore",
                "--pgdata",
                pgdata.to_str().unwrap(),
                "--target-time",
                &target,
            ];
            args.extend(extra);
            let restored = tidemark_fails(&lab, &args);
            assert_eq!(restored.code, Some(1), "{what}, {extra:?}: {restored:?}");
            assert_eq!(
                restored.only_line(),
                format!("tidemark: ERROR: restore: {reason}"),
                "{what}, {extra:?}"
            );
            assert_eq!(restored.stdout, "", "{what}, {extra:?}");
        }
        assert!(
            !absent.exists(),
            "{what}: a refused restore created {}",
            absent.display()
        );
        assert!(
            common::snapshot(&existing) == before,
            "{what}: a refused restore --delta changed {}",
            existing.display()
        );
    }
}

/// `primary` without autovacuum, with a backup and three recorded rows after it.
fn small_primary(lab: &Lab) -> ThrowawayCluster {
    let primary = primary(lab, false);
    take_backup(lab);
    workload::insert_rows(&primary, 3, Duration::from_millis(20), "first").unwrap();
    primary
}

/// Forces a switch and waits until the segment it ended is archived; returns the end of the
/// switch record (what `pg_switch_wal()` returns).
fn switch_wal(primary: &ThrowawayCluster) -> String {
    let end = primary.query("SELECT pg_switch_wal()").unwrap();
    let segment = primary
        .query(&format!("SELECT pg_walfile_name('{end}'::pg_lsn - 1)"))
        .unwrap();
    primary
        .wait_for(
            &format!(
                "SELECT coalesce(last_archived_wal >= '{segment}', false) FROM pg_stat_archiver"
            ),
            "t",
            common::PATIENCE,
        )
        .unwrap();
    end
}

// Regression test for a bug the proof found: the WAL index once missed a commit (or abort) whose
// record starts in one segment and continues into the next (the segment it starts in ended in
// the middle of the record, the next one skipped the continuation), so the planner named the
// following commit as the stop and refused an xid target at that transaction. The index now
// reads such a record from the part in the segment it starts in.
#[test]
fn a_commit_record_continuing_into_the_next_segment_is_where_recovery_stops() {
    let lab = Lab::new("tm-spanning-", &common::binaries()).unwrap();
    let mut primary = small_primary(&lab);
    // One transaction whose commit record is several kB (it lists the 20 relations it drops,
    // and their invalidations), begun less than 1.5 kB before the end of a segment: logical
    // messages pad the WAL up to there first.
    let tables: String = (0..20)
        .map(|i| format!("CREATE TABLE dropped_{i} (x int);"))
        .collect();
    primary.query(&tables).unwrap();
    let drops: String = (0..20)
        .map(|i| format!("DROP TABLE dropped_{i};"))
        .collect();
    primary
        .query(&format!(
            "DO $$ DECLARE room bigint; BEGIN \
             INSERT INTO {} (note) VALUES ('spanning'); {drops} \
             LOOP \
                 room := 1048576 - (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint % 1048576; \
                 EXIT WHEN room < 1500; \
                 PERFORM pg_logical_emit_message(false, 'pad', repeat('x', greatest(50, least(room - 1200, 100000))::int)); \
             END LOOP; END $$",
            workload::TABLE
        ))
        .unwrap();
    let into_next: i64 = primary
        .query_value("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint % 1048576")
        .unwrap();
    assert!(
        into_next < 65536,
        "the commit record ends {into_next} bytes into a segment: it did not cross a boundary"
    );
    workload::insert_rows(&primary, 3, Duration::from_millis(20), "last").unwrap();
    let rows = workload::committed_rows(&primary).unwrap();
    let xid_of = xids(&primary);
    let notes = notes(&primary);
    switch_and_wait_for_archive(&primary).unwrap();
    primary.stop().unwrap();
    let spanning = rows[3];
    assert_eq!(notes[&spanning.id], "spanning");

    let mut problems = Vec::new();
    // The tables' creation commits between rows 2 and 3: the instant is just before the
    // spanning commit.
    let instant = spanning.commit_micros - 1;
    let cases = [
        // PostgreSQL stops before the spanning commit.
        Case::at_instant(
            "just-before-the-spanning-commit".to_owned(),
            &rows,
            instant,
            &[],
        ),
        // And can stop right after it.
        Case::new(
            "at-the-spanning-transaction".to_owned(),
            vec!["--target-xid".to_owned(), xid_of[&spanning.id].to_string()],
            workload::ids_committed_by(&rows, spanning.commit_micros),
        ),
    ];
    for case in &cases {
        if let Some(outcome) = prove(&lab, case, &mut problems) {
            common::discard(outcome.cluster);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// Regression test for a bug the proof found: for an LSN target PostgreSQL replays up to the
// first record that starts at or past the LSN, which after a switch (the LSN `pg_switch_wal()`
// returns) is in the next segment. The plan used to stop at the segment holding the LSN: it left
// out a segment recovery reads, and when that segment was not archived yet it said the target
// was reachable while PostgreSQL failed with "recovery ended before configured recovery target
// was reached".
#[test]
fn an_lsn_target_at_the_end_of_a_switch_is_reached_in_the_next_segment() {
    let lab = Lab::new("tm-lsn-", &common::binaries()).unwrap();
    let mut primary = small_primary(&lab);
    let first_switch = switch_wal(&primary);
    workload::insert_rows(&primary, 3, Duration::from_millis(20), "second").unwrap();
    let last_switch = switch_wal(&primary);
    let rows = workload::committed_rows(&primary).unwrap();
    primary.stop().unwrap();

    let mut problems = Vec::new();
    // The next segment is archived: the plan must list it.
    let case = Case::new(
        "at-the-end-of-a-switch".to_owned(),
        vec!["--target-lsn".to_owned(), first_switch],
        workload::ids_committed_by(&rows, rows[2].commit_micros),
    );
    if let Some(outcome) = prove(&lab, &case, &mut problems) {
        common::discard(outcome.cluster);
    }
    // The last archived segment ends with the switch: the target is out of reach until the next
    // segment is archived, so the plan must refuse it.
    let planned = tidemark_fails(&lab, &["plan", "--target-lsn", &last_switch]);
    if planned.code != Some(1) {
        problems.push(format!(
            "{last_switch}, the end of the last archived segment's switch, is planned as reachable:\n{}",
            planned.stdout
        ));
        // What restoring to it does.
        let case = Case::new(
            "at-the-end-of-the-archive".to_owned(),
            vec!["--target-lsn".to_owned(), last_switch],
            workload::ids_committed_by(&rows, rows[5].commit_micros),
        );
        if let Some(outcome) = prove(&lab, &case, &mut problems) {
            common::discard(outcome.cluster);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
