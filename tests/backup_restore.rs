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
