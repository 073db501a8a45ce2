//! A restore across a timeline switch inside a segment, with transactions prepared before the
//! switch and still prepared after it (issue 15 item 5), on every supported major.
//!
//! Timeline 1 prepares two transactions at the start of a fresh segment, then commits rows; a
//! restore of its backup to an instant while both are prepared promotes onto timeline 2 (the
//! switch inside that segment) and archives into the same stanza. Timeline 2 commits one of
//! them and leaves the other open. A second restore from the timeline-1 backup to an instant
//! on timeline 2 must then give exactly the rows committed by then, with the open one still in
//! `pg_prepared_xacts` and committable; and again with timeline 1's copy of the switch segment
//! gone from the archive, from the `.partial` the fork archived when it promoted.
//!
//! PostgreSQL reads a prepared transaction's state from WAL only through `pg_wal`, by the name
//! of the timeline the PREPARE was written on: without timeline 1's copy of the switch segment
//! there, recovery fails at timeline 2's first checkpoint ("requested WAL segment … has already
//! been removed"). `tidemark restore` puts that copy in `pg_wal`, and `plan` says it will.

mod common;

use std::fs;
use std::time::Duration;

use testkit::steps::{PrimaryOptions, archiving_primary, check_rows, restore_to};
use testkit::{Lab, ThrowawayCluster, switch_and_wait_for_archive, workload};
use tidemark::pg::{Lsn, SegmentName, SegmentSize, TimelineId, WalFileName};
use tidemark::repo::layout;

/// The transaction timeline 2 commits.
const COMMITTED_LATER: &str = "tm_committed_on_two";
/// The transaction still prepared at the end of the second restore.
const KEPT_OPEN: &str = "tm_kept_open";

const SEGMENT_BYTES: u64 = 1 << 20;

#[test]
fn on_postgres_12() {
    prepared_transactions_survive_a_restore_across_the_switch(12);
}

#[test]
fn on_postgres_13() {
    prepared_transactions_survive_a_restore_across_the_switch(13);
}

#[test]
fn on_postgres_14() {
    prepared_transactions_survive_a_restore_across_the_switch(14);
}

#[test]
fn on_postgres_15() {
    prepared_transactions_survive_a_restore_across_the_switch(15);
}

#[test]
fn on_postgres_16() {
    prepared_transactions_survive_a_restore_across_the_switch(16);
}

#[test]
fn on_postgres_17() {
    prepared_transactions_survive_a_restore_across_the_switch(17);
}

#[test]
fn on_postgres_18() {
    prepared_transactions_survive_a_restore_across_the_switch(18);
}

/// Prepares transaction `gid`, which inserted one workload row noted `gid`.
fn prepare(cluster: &ThrowawayCluster, gid: &str) {
    let insert = format!("INSERT INTO {} (note) VALUES ('{gid}')", workload::TABLE);
    let prepare = format!("PREPARE TRANSACTION '{gid}'");
    cluster.execute_each(&["BEGIN", &insert, &prepare]).unwrap();
}

/// The gids in `pg_prepared_xacts`, in order, comma-separated.
fn prepared(cluster: &ThrowawayCluster) -> String {
    cluster
        .query("SELECT coalesce(string_agg(gid, ',' ORDER BY gid), '') FROM pg_prepared_xacts")
        .unwrap()
}

/// The id of the row transaction `gid` inserted, once it is visible.
fn id_of(cluster: &ThrowawayCluster, gid: &str) -> Option<i64> {
    let text = cluster
        .query(&format!(
            "SELECT id FROM {} WHERE note = '{gid}'",
            workload::TABLE
        ))
        .unwrap();
    (!text.is_empty()).then(|| text.parse().unwrap())
}

/// Timeline 1: a backup, the two transactions prepared at the start of a fresh segment, rows
/// committed while they are prepared, then (after the instant the fork restores to) timeline 1
/// commits both and goes on. Returns the instant and the rows committed by then, and the LSN
/// where the PREPAREs begin.
fn write_timeline_one(lab: &Lab) -> (i64, Vec<i64>, Lsn) {
    let options = PrimaryOptions::default()
        .commit_timestamps()
        .setting("max_prepared_transactions", "10");
    let mut primary = archiving_primary(lab, &options).unwrap();
    workload::create_table(&primary).unwrap();
    workload::insert_rows(&primary, 3, Duration::from_millis(20), "before the backup").unwrap();
    common::backups::take_backup(lab);
    workload::insert_rows(&primary, 3, Duration::from_millis(20), "after the backup").unwrap();
    // A fresh segment: the PREPAREs and the switch fall in the same one, the case at stake.
    primary.query("SELECT pg_switch_wal()").unwrap();
    let prepared_at: Lsn = primary
        .query("SELECT pg_current_wal_insert_lsn()")
        .unwrap()
        .parse()
        .unwrap();
    prepare(&primary, COMMITTED_LATER);
    prepare(&primary, KEPT_OPEN);
    workload::insert_rows(&primary, 4, Duration::from_millis(20), "while prepared").unwrap();
    let rows = workload::committed_rows(&primary).unwrap();
    let instant = workload::instant_between(&rows, rows.len() - 2).unwrap();
    // What timeline 1 does after the instant must not reach timeline 2.
    primary
        .execute_each(&[
            &format!("COMMIT PREPARED '{COMMITTED_LATER}'"),
            &format!("COMMIT PREPARED '{KEPT_OPEN}'"),
        ])
        .unwrap();
    workload::insert_rows(&primary, 3, Duration::from_millis(20), "timeline 1 goes on").unwrap();
    switch_and_wait_for_archive(&primary).unwrap();
    primary.stop().unwrap();
    (
        instant,
        workload::ids_committed_by(&rows, instant),
        prepared_at,
    )
}

/// The fork: the timeline-1 backup restored to `instant`, promoted onto timeline 2 with
/// archiving on; it commits rows, commits one prepared transaction, leaves the other open,
/// commits more. Returns the instant on timeline 2 the second restore goes to, the rows
/// committed by then, and where timeline 2 begins.
fn write_timeline_two(lab: &Lab, instant: i64, expected: &[i64]) -> (i64, Vec<i64>, Lsn) {
    let target = workload::format_instant(instant);
    let mut fork = restore_to(lab, "fork", &["--target-time", &target], &[])
        .unwrap()
        .cluster;
    check_rows(&fork, expected).unwrap();
    assert_eq!(prepared(&fork), format!("{COMMITTED_LATER},{KEPT_OPEN}"));
    assert_eq!(fork.checkpoint_timeline().unwrap(), "2");
    let history = fs::read_to_string(fork.data_dir().join("pg_wal/00000002.history")).unwrap();
    let switch: Lsn = history
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no switch point in 00000002.history: {history:?}"))
        .parse()
        .unwrap();
    workload::insert_rows(&fork, 2, Duration::from_millis(20), "timeline 2").unwrap();
    fork.query(&format!("COMMIT PREPARED '{COMMITTED_LATER}'"))
        .unwrap();
    workload::insert_rows(&fork, 3, Duration::from_millis(20), "timeline 2 later").unwrap();
    let rows = workload::committed_rows(&fork).unwrap();
    // Between the first two of the last three rows: after the COMMIT PREPARED.
    let instant = workload::instant_between(&rows, rows.len() - 3).unwrap();
    switch_and_wait_for_archive(&fork).unwrap();
    fork.stop().unwrap();
    (instant, workload::ids_committed_by(&rows, instant), switch)
}

fn prepared_transactions_survive_a_restore_across_the_switch(major: u32) {
    let lab = Lab::for_major(&format!("tm-2pc{major}-"), &common::binaries(), major).unwrap();
    let (instant_1, expected_1, prepared_at) = write_timeline_one(&lab);
    let (instant_2, expected_2, switch) = write_timeline_two(&lab, instant_1, &expected_1);
    println!("PostgreSQL {major}: prepared at {prepared_at}, timeline 2 begins at {switch}");
    let switch_segment = switch.0 / SEGMENT_BYTES;
    assert_eq!(
        prepared_at.0 / SEGMENT_BYTES,
        switch_segment,
        "the PREPAREs and the switch must share a segment for this test to mean anything"
    );
    assert_ne!(
        switch.0 % SEGMENT_BYTES,
        0,
        "the switch must fall inside a segment"
    );
    let size = SegmentSize::new(SEGMENT_BYTES).unwrap();
    let older_copy = SegmentName::from_segment_number(TimelineId(1), switch_segment, size);

    let target = workload::format_instant(instant_2);
    let target_args = ["--target-time", target.as_str(), "--target-timeline", "2"];
    let (report, mut cluster) =
        restore_with_one_left_prepared(&lab, "second", &target_args, &expected_2, false);
    cluster.stop().unwrap();
    assert!(report.contains(&older_copy.to_string()), "{report}");
    let plan = plan_json(&lab, &target_args);
    assert_eq!(
        plan["switch_segments"][0]["segment"],
        older_copy.to_string(),
        "{plan:#}"
    );
    assert_eq!(plan["switch_segments"][0]["source"], "archived", "{plan:#}");

    // Had timeline 1's segment never reached the archive whole (its primary lost, say), the
    // .partial a promoted standby archives serves: it holds timeline 1's WAL up to the switch,
    // all that is read from it. Such a .partial, nothing after the switch, replaces it here.
    archive_as_partial(&lab, older_copy, switch.0 % SEGMENT_BYTES);
    let plan = plan_json(&lab, &target_args);
    assert_eq!(plan["switch_segments"][0]["source"], "partial", "{plan:#}");
    let (report, mut cluster) =
        restore_with_one_left_prepared(&lab, "from-partial", &target_args, &expected_2, true);
    assert!(
        report.contains(&format!("{older_copy}.partial")),
        "{report}"
    );
    // The placed copy is marked archived, as PostgreSQL marks segments it restored itself: when
    // checkpoints retire it, the archiver must not push the .partial's bytes (nothing after the
    // switch) as timeline 1's whole segment.
    cluster
        .execute_each(&["SELECT pg_switch_wal()", "CHECKPOINT", "CHECKPOINT"])
        .unwrap();
    switch_and_wait_for_archive(&cluster).unwrap();
    let key = layout::wal_file(&lab.stanza, WalFileName::Segment(older_copy));
    assert!(
        !common::backups::object_path(&lab, key.as_str()).exists(),
        "the restored cluster archived its placed copy of {older_copy}"
    );
    cluster.stop().unwrap();
}

/// Archives `segment`'s WAL up to `switch_offset` (zeros after it) as `<segment>.partial`, as a
/// standby promoted there would, and removes the whole segment from the repository.
fn archive_as_partial(lab: &Lab, segment: SegmentName, switch_offset: u64) {
    let partial = lab.tmp.path().join(format!("{segment}.partial"));
    lab.tidemark(&[
        "archive-get",
        &segment.to_string(),
        partial.to_str().unwrap(),
    ])
    .unwrap();
    let mut bytes = fs::read(&partial).unwrap();
    bytes[switch_offset as usize..].fill(0);
    fs::write(&partial, bytes).unwrap();
    lab.tidemark(&["archive-push", partial.to_str().unwrap()])
        .unwrap();
    let key = layout::wal_file(&lab.stanza, WalFileName::Segment(segment));
    fs::remove_file(common::backups::object_path(lab, key.as_str())).unwrap();
}

/// Restores to `target` into `<lab>/<name>` (archiving into the stanza, or off: a copy) and
/// checks the restored cluster: exactly the rows `expected`, only [`KEPT_OPEN`] still prepared,
/// and committable. Returns what `tidemark restore` printed, and the running cluster.
fn restore_with_one_left_prepared(
    lab: &Lab,
    name: &str,
    target: &[&str],
    expected: &[i64],
    archiving: bool,
) -> (String, ThrowawayCluster) {
    let archive_command = lab.archive_command();
    let settings: &[(&str, &str)] = if archiving {
        &[
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
        ]
    } else {
        &[("archive_mode", "off")]
    };
    let restored = restore_to(lab, name, target, settings);
    let restored = restored.unwrap_or_else(|e| panic!("restore across the switch: {e:#}"));
    let cluster = restored.cluster;
    check_rows(&cluster, expected).unwrap();
    assert_eq!(prepared(&cluster), KEPT_OPEN);
    assert_eq!(common::tidemark_errors(&cluster), Vec::<String>::new());
    assert_eq!(id_of(&cluster, KEPT_OPEN), None);
    cluster
        .query(&format!("COMMIT PREPARED '{KEPT_OPEN}'"))
        .unwrap();
    assert!(id_of(&cluster, KEPT_OPEN).is_some());
    assert_eq!(prepared(&cluster), "");
    (restored.report, cluster)
}

/// `tidemark plan --output json` for `target`.
fn plan_json(lab: &Lab, target: &[&str]) -> serde_json::Value {
    let mut args = vec!["plan", "--output", "json"];
    args.extend_from_slice(target);
    serde_json::from_str(&lab.tidemark(&args).unwrap()).unwrap()
}
