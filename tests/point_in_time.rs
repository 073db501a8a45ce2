//! The proof that matters, on a real PostgreSQL 15: WAL archived through `tidemark-archive`
//! during a pgbench run, and a `pg_basebackup` copy recovered through `tidemark-restore` to a
//! recorded instant, gives back exactly the rows committed by that instant. Then across a
//! timeline switch: the recovered cluster is promoted (timeline 2), archives more, and a second
//! recovery from the same base backup follows both timelines to an instant on timeline 2.

mod common;

use std::time::Duration;

use testkit::Lab;
use testkit::ThrowawayCluster;
use testkit::recovery::{RecoveryTarget, recover_copy};
use testkit::switch_and_wait_for_archive;
use testkit::workload::{self, CommittedRow};

/// An instant strictly between two of `rows`' commits, picked at random among those after `from`.
fn random_instant(rows: &[CommittedRow], from: usize) -> i64 {
    let index = fastrand::usize(from..rows.len() - 1);
    workload::instant_between(rows, index).unwrap()
}

/// Recovery asks for names that do not exist (the next timeline's history, `00000001.history`
/// at promotion); those must be quiet "not archived" answers, never ERROR lines in the log.
fn assert_no_tidemark_errors(cluster: &ThrowawayCluster) {
    let log = std::fs::read_to_string(cluster.log_file()).unwrap();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tidemark-") && l.contains("ERROR"))
        .collect();
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
fn recovery_to_an_instant_gives_exactly_the_rows_committed_by_then_across_timelines() {
    common::seed_randomness();
    let lab = Lab::new("tm-pitr-", &common::binaries()).unwrap();
    let mut primary = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
    lab.write_config(primary.data_dir(), "").unwrap();
    let archive_command = lab.archive_command();
    primary
        .configure(&[
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
            ("track_commit_timestamp", "on"),
        ])
        .unwrap();
    primary.start().unwrap();
    lab.tidemark(&["stanza-create"]).unwrap();
    common::wait_ok(common::pgbench(&lab, &primary, &["-i", "-q", "-s", "2"]));
    workload::create_table(&primary).unwrap();
    let base_backup = lab.tmp.path().join("base");
    primary.base_backup(&base_backup).unwrap();

    // Timeline 1: recorded commits with pgbench noise in between.
    let noise = common::pgbench(&lab, &primary, &["-T", "4", "-c", "2", "-n"]);
    workload::insert_rows(&primary, 120, Duration::from_millis(30), "timeline 1").unwrap();
    common::wait_ok(noise);
    let rows = workload::committed_rows(&primary).unwrap();
    assert_eq!(rows.len(), 120);
    switch_and_wait_for_archive(&primary).unwrap();
    primary.stop().unwrap();

    let instant = random_instant(&rows, 10);
    let expected = workload::ids_committed_by(&rows, instant);
    let target = RecoveryTarget {
        time: Some(workload::format_instant(instant)),
        archive_after: true,
        ..RecoveryTarget::default()
    };
    let restored = recover_copy(&lab, &base_backup, "restored1", &target).unwrap();
    assert_eq!(
        workload::present_ids(&restored).unwrap(),
        expected,
        "recovery to {} (timeline 1)",
        workload::format_instant(instant)
    );
    assert_eq!(
        restored
            .query("SELECT timeline_id FROM pg_control_checkpoint()")
            .unwrap(),
        "2"
    );

    // Timeline 2: the recovered cluster writes and archives through the same stanza.
    let noise = common::pgbench(&lab, &restored, &["-T", "2", "-c", "1", "-n"]);
    workload::insert_rows(&restored, 40, Duration::from_millis(30), "timeline 2").unwrap();
    common::wait_ok(noise);
    let rows_timeline_2 = workload::committed_rows(&restored).unwrap();
    assert_eq!(rows_timeline_2.len(), expected.len() + 40);
    switch_and_wait_for_archive(&restored).unwrap();
    assert_no_tidemark_errors(&restored);
    drop(restored);

    let instant_2 = random_instant(&rows_timeline_2, expected.len() + 5);
    let expected_2 = workload::ids_committed_by(&rows_timeline_2, instant_2);
    let target_2 = RecoveryTarget {
        time: Some(workload::format_instant(instant_2)),
        timeline: Some("latest".to_owned()),
        ..RecoveryTarget::default()
    };
    let restored_2 = recover_copy(&lab, &base_backup, "restored2", &target_2).unwrap();
    assert_eq!(
        workload::present_ids(&restored_2).unwrap(),
        expected_2,
        "recovery to {} (timeline 2, through timeline 1)",
        workload::format_instant(instant_2)
    );
    assert_eq!(
        restored_2
            .query("SELECT timeline_id FROM pg_control_checkpoint()")
            .unwrap(),
        "3"
    );
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
