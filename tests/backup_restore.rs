//! `tidemark backup` against a real PostgreSQL 15 whose replication user logs in with
//! SCRAM-SHA-256.

mod common;

use std::fs;

use tidemark::demo::cluster::ThrowawayCluster;
use tidemark::demo::lab::Lab;

/// A running cluster archiving through the lab's tidemark-archive, with a stanza, a
/// replication user `backup` (SCRAM-SHA-256) and a configuration whose conninfo uses it.
fn backed_up_cluster(lab: &Lab) -> ThrowawayCluster {
    let mut cluster = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
    let hba = cluster.data_dir().join("pg_hba.conf");
    let existing = fs::read_to_string(&hba).unwrap();
    fs::write(
        &hba,
        format!("local replication backup scram-sha-256\n{existing}"),
    )
    .unwrap();
    let archive_command = lab.archive_command();
    cluster
        .configure(&[
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
            ("track_commit_timestamp", "on"),
            ("password_encryption", "scram-sha-256"),
        ])
        .unwrap();
    cluster.start().unwrap();
    cluster
        .query("CREATE ROLE backup LOGIN REPLICATION PASSWORD 'backup secret'")
        .unwrap();
    let conninfo = format!(
        "host={} port={} user=backup password='backup secret'",
        cluster.socket_dir().display(),
        cluster.port()
    );
    lab.write_config_with_conninfo(cluster.data_dir(), "", Some(&conninfo))
        .unwrap();
    lab.tidemark(&["stanza-create"]).unwrap();
    cluster
}

/// The figures of a `backup complete` line: (files, label).
fn parse_complete_line(line: &str) -> (u64, String) {
    assert!(
        line.starts_with("backup ") && line.contains(" complete: "),
        "{line}"
    );
    let label = line.split_whitespace().nth(1).unwrap().to_owned();
    let files = line
        .split("complete: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (files, label)
}

#[test]
fn backup_stores_every_file_and_a_second_backup_reuses_unchanged_content() {
    let lab = Lab::new("tm-backup-", &common::binaries()).unwrap();
    let cluster = backed_up_cluster(&lab);
    cluster
        .query("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 200000) g")
        .unwrap();
    // Settle hint bits and the visibility map, so that only real changes differ next time.
    cluster.query("VACUUM (FREEZE, ANALYZE)").unwrap();
    cluster.query("CHECKPOINT").unwrap();
    let first = lab.tidemark(&["backup"]).unwrap();
    let (files, first_label) = parse_complete_line(first.trim());
    assert!(files > 900, "{first}");
    cluster
        .query("CREATE TABLE small (id int); INSERT INTO small VALUES (1)")
        .unwrap();
    let second = lab.tidemark(&["backup"]).unwrap();
    let (_, second_label) = parse_complete_line(second.trim());
    assert_ne!(first_label, second_label);

    // Each backup's record exists; the second stored far fewer new bytes than the first.
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    let backups = info["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{info:#}");
    let new = |i: usize| backups[i]["sizes"]["new"].as_u64().unwrap();
    let original = |i: usize| backups[i]["sizes"]["original"].as_u64().unwrap();
    println!(
        "first backup: {} original, {} new; second: {} original, {} new",
        original(0),
        new(0),
        original(1),
        new(1)
    );
    assert!(
        new(1) * 4 < new(0),
        "the second backup stored {} new bytes, the first {}",
        new(1),
        new(0)
    );
}

/// Lines of the server log that are Tidemark errors.
fn tidemark_errors(cluster: &ThrowawayCluster) -> Vec<String> {
    fs::read_to_string(cluster.log_file())
        .unwrap()
        .lines()
        .filter(|l| l.contains("tidemark-") && l.contains("ERROR"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn restore_to_a_recorded_instant_gives_exactly_the_rows_committed_by_then() {
    use std::time::Duration;
    use tidemark::demo::cluster::run_as_owner;
    use tidemark::demo::workload;

    let lab = Lab::new("tm-restore-", &common::binaries()).unwrap();
    let mut cluster = backed_up_cluster(&lab);
    workload::create_table(&cluster).unwrap();
    cluster
        .query("CREATE INDEX ON tidemark_ledger (written)")
        .unwrap();
    workload::insert_rows(&cluster, 20, Duration::from_millis(10), "before the backup").unwrap();
    let backup = lab.tidemark(&["backup"]).unwrap();
    assert!(backup.starts_with("backup "), "{backup}");
    workload::insert_rows(&cluster, 80, Duration::from_millis(30), "after the backup").unwrap();
    let rows = workload::committed_rows(&cluster).unwrap();
    let instant = workload::instant_between(&rows, 20 + fastrand::usize(5..70)).unwrap();
    let expected = workload::ids_committed_by(&rows, instant);
    tidemark::demo::switch_and_wait_for_archive(&cluster).unwrap();
    cluster.stop().unwrap();

    let pgdata = lab.tmp.path().join("restored");
    let target_time = workload::format_instant(instant);
    let restored = lab
        .tidemark(&[
            "restore",
            "--pgdata",
            pgdata.to_str().unwrap(),
            "--target-time",
            &target_time,
        ])
        .unwrap();
    assert!(
        restored.contains("chosen because it is the newest backup that ended"),
        "{restored}"
    );
    assert!(pgdata.join("recovery.signal").exists());

    // pg_verifybackup checks every file against the manifest and parses the backup's WAL.
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    let (wal_start, wal_stop) = (
        info["backups"][0]["wal_start"].as_str().unwrap().to_owned(),
        info["backups"][0]["wal_stop"].as_str().unwrap().to_owned(),
    );
    let wal_dir = lab.tmp.subdir("verify-wal").unwrap();
    let first = u64::from_str_radix(&wal_start[16..], 16).unwrap();
    let last = u64::from_str_radix(&wal_stop[16..], 16).unwrap();
    for seg in first..=last {
        let name = format!("{}{seg:08X}", &wal_start[..16]);
        let dest = wal_dir.join(&name);
        lab.tidemark(&["archive-get", &name, dest.to_str().unwrap()])
            .unwrap();
    }
    let verified = run_as_owner(
        &lab.pg.path("pg_verifybackup"),
        &["-w".as_ref(), wal_dir.as_os_str(), pgdata.as_os_str()],
        lab.tmp.path(),
    )
    .unwrap();
    assert!(
        verified.contains("backup successfully verified"),
        "{verified}"
    );

    let mut recovered =
        ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", pgdata).unwrap();
    recovered.start().unwrap();
    recovered
        .wait_for_promotion(Duration::from_secs(120))
        .unwrap();
    assert_eq!(
        workload::present_ids(&recovered).unwrap(),
        expected,
        "recovery to {target_time}"
    );
    assert_eq!(tidemark_errors(&recovered), Vec::<String>::new());
    let port = recovered.port().to_string();
    run_as_owner(
        &lab.pg.path("pg_amcheck"),
        &[
            "-h".as_ref(),
            recovered.socket_dir().as_os_str(),
            "-p".as_ref(),
            port.as_ref(),
            "-U".as_ref(),
            "postgres".as_ref(),
            "--install-missing".as_ref(),
            "--heapallindexed".as_ref(),
            "postgres".as_ref(),
        ],
        lab.tmp.path(),
    )
    .expect("amcheck finds no damage");
}
