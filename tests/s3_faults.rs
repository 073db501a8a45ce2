//! Pushes to a bucket while a fifth of repository operations fail, before or after they took
//! effect or part-way through an upload (`TIDEMARK_FAULT_INJECTION` in `archive_command`): every
//! segment ends up archived through PostgreSQL's own retries, exactly once, with exactly the
//! bytes PostgreSQL handed over, and a restore from that archive gives exactly the rows
//! committed at the chosen instant.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use common::s3::{repo_section, start_server};
use testkit::Lab;
use testkit::give_to_owner;
use testkit::steps::restore_to_instant;
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::workload;
use tidemark::storage::{Cancel, ObjectKey, Storage};

const PREFIX: &str = "faults";

#[test]
fn pushes_under_injected_faults_archive_every_segment_once_and_exactly() {
    let server = start_server();
    let lab = Lab::new("tm-s3faults-", &common::binaries()).unwrap();
    let copies = lab.tmp.subdir("copies").unwrap();
    give_to_owner(&copies).unwrap();
    // What PostgreSQL handed over is kept by cp first, to compare the archive with.
    let archive_command = format!(
        "cp %p {}/%f && TIDEMARK_FAULT_INJECTION=share=0.2 {}",
        copies.display(),
        lab.archive_command()
    );
    let options = PrimaryOptions::default()
        .commit_timestamps()
        .archive_command(archive_command)
        .repo_section(repo_section(&server.endpoint, PREFIX));
    let mut primary = archiving_primary(&lab, &options).unwrap();
    workload::create_table(&primary).unwrap();
    lab.tidemark(&["backup", "--archive-timeout", "300"])
        .unwrap();
    let last = switch_segments_until_archived(&primary);
    let rows = workload::committed_rows(&primary).unwrap();
    let failed: u64 = primary
        .query_value("SELECT failed_count FROM pg_stat_archiver")
        .unwrap();
    let log = fs::read_to_string(primary.log_file()).unwrap();
    primary.stop().unwrap();
    the_faults_struck(&log, failed);
    let handed_over = archived_exactly_what_was_handed_over(&server, &copies, &last);
    fetched_copies_are_what_was_handed_over(&lab, &copies, &handed_over);

    // A restore from this archive, to an instant in the middle, is exact.
    let instant = workload::instant_between(&rows, rows.len() / 2).unwrap();
    // The copied postgresql.conf archives under faults; the restored cluster must not.
    let mut restored =
        restore_to_instant(&lab, "restored", &rows, instant, &[("archive_mode", "off")])
            .unwrap_or_else(|e| panic!("{e:#}"))
            .cluster;
    assert_eq!(common::tidemark_errors(&restored), Vec::<String>::new());
    restored.stop().unwrap();
}

/// Each round commits rows and switches to a new segment: one push each, at least. Waits
/// (at most five minutes) until the last segment is archived, and returns its name.
fn switch_segments_until_archived(primary: &testkit::ThrowawayCluster) -> String {
    for round in 0..24 {
        workload::insert_rows(
            primary,
            2,
            Duration::from_millis(5),
            &format!("round {round}"),
        )
        .unwrap();
        primary.query("SELECT pg_switch_wal()").unwrap();
    }
    // After three failures in a row the archiver sleeps until it is woken, at the latest a
    // minute later; a reload wakes it sooner.
    let last = primary
        .query("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while primary
        .query(&format!(
            "SELECT coalesce(last_archived_wal >= '{last}', false) FROM pg_stat_archiver"
        ))
        .unwrap()
        != "t"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{last} not archived; server log: {}",
            primary.log_tail(10)
        );
        primary.query("SELECT pg_reload_conf()").unwrap();
        std::thread::sleep(Duration::from_secs(2));
    }
    last
}

/// The faults really struck, each kind, and PostgreSQL retried past them. Each push drew its
/// own seed and logged it: printed, to repeat a failure's faults.
fn the_faults_struck(log: &str, failed: u64) {
    let seeds: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once("on purpose (seed ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(';').next())
        .collect();
    println!(
        "fault seeds of the {} pushes: {}",
        seeds.len(),
        seeds.join(" ")
    );
    assert!(!seeds.is_empty(), "no push logged its fault seed");
    assert!(failed > 0, "no push failed under injected faults");
    for kind in [
        "injected fault before the operation",
        "injected fault after the operation took effect",
        "injected fault in the middle of the stream",
    ] {
        assert!(log.contains(kind), "no '{kind}' in the server log");
    }
}

/// Every file PostgreSQL handed over is archived, once, and nothing else is. Returns their
/// names.
fn archived_exactly_what_was_handed_over(
    server: &common::s3::S3Server,
    copies: &std::path::Path,
    last: &str,
) -> BTreeSet<String> {
    let handed_over: BTreeSet<String> = fs::read_dir(copies)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        handed_over.contains(last),
        "{last} not among {handed_over:?}"
    );
    assert!(handed_over.len() >= 25, "{handed_over:?}");
    let bucket = common::s3::test_bucket(server, PREFIX);
    let archived: Vec<String> = bucket
        .list(&ObjectKey::new("main/wal").unwrap(), &Cancel::never())
        .unwrap()
        .into_iter()
        .map(|object| object.key.file_name().to_owned())
        .collect();
    let archived_set: BTreeSet<String> = archived.iter().cloned().collect();
    assert_eq!(archived.len(), archived_set.len(), "{archived:?}");
    assert_eq!(archived_set, handed_over);
    handed_over
}

/// Each archived copy, fetched and checked as restore_command would, is byte for byte what
/// PostgreSQL handed over.
fn fetched_copies_are_what_was_handed_over(
    lab: &Lab,
    copies: &std::path::Path,
    handed_over: &BTreeSet<String>,
) {
    let fetched = lab.tmp.subdir("fetched").unwrap();
    give_to_owner(&fetched).unwrap();
    for name in handed_over {
        let destination = fetched.join(name);
        lab.tidemark(&["archive-get", name, destination.to_str().unwrap()])
            .unwrap();
        assert!(
            fs::read(&destination).unwrap() == fs::read(copies.join(name)).unwrap(),
            "{name} differs from what PostgreSQL handed over"
        );
    }
}
