//! `tidemark info` shows the archive lag of the stanza's cluster: the WAL files PostgreSQL marked
//! ready to archive that are not in the repository yet, and the oldest of them.

mod common;

use testkit::Lab;
use testkit::ThrowawayCluster;
use testkit::steps::{PrimaryOptions, archiving_primary};

fn info_json(lab: &Lab) -> serde_json::Value {
    serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap()
}

/// Waits until the archiver has either archived `segment` (it still ran the old command) or
/// failed on it; true when it failed.
fn archiving_fails_at(cluster: &ThrowawayCluster, segment: &str) -> bool {
    let query = format!(
        "SELECT CASE WHEN last_archived_wal = '{segment}' THEN 'archived' \
                WHEN last_failed_wal = '{segment}' THEN 'failed' ELSE 'pending' END \
         FROM pg_stat_archiver"
    );
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        match cluster.query(&query).unwrap().as_str() {
            "archived" => return false,
            "failed" => return true,
            _ => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the archiver neither archived nor failed on {segment}"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn info_shows_the_ready_wal_files_not_archived_yet() {
    let lab = Lab::new("tm-lag-", &common::binaries()).unwrap();
    let mut cluster = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    testkit::switch_and_wait_for_archive(&cluster).unwrap();
    let info = info_json(&lab);
    assert_eq!(info["archive_lag"]["waiting"], 0, "{info:#}");
    assert!(
        lab.tidemark(&["info"])
            .unwrap()
            .contains("archive lag: none (every WAL file"),
    );

    // Archiving stops working: three segments wait. The archiver takes the reload in its own
    // time, so segments go on being archived until one is seen failing; that one waits first.
    cluster
        .configure(&[("archive_command", "/bin/false")])
        .unwrap();
    cluster.query("SELECT pg_reload_conf()").unwrap();
    let mut waiting = Vec::new();
    let mut switches = 0;
    while waiting.len() < 3 {
        switches += 1;
        assert!(
            switches < 50,
            "the archiver never ran the new archive_command"
        );
        cluster
            .query(&format!("CREATE TABLE waiting_{switches} AS SELECT 1 AS x"))
            .unwrap();
        let end = cluster.query("SELECT pg_switch_wal()").unwrap();
        let segment = cluster
            .query(&format!("SELECT pg_walfile_name('{end}'::pg_lsn - 1)"))
            .unwrap();
        if waiting.is_empty() && !archiving_fails_at(&cluster, &segment) {
            continue;
        }
        waiting.push(segment);
    }
    let info = info_json(&lab);
    let lag = &info["archive_lag"];
    assert_eq!(lag["waiting"], 3, "{info:#}");
    assert_eq!(lag["bytes"], 3 << 20, "{info:#}");
    assert_eq!(lag["oldest"], waiting[0].as_str(), "{info:#}");
    assert!(lag["oldest_age_seconds"].as_u64().is_some(), "{info:#}");
    let text = lab.tidemark(&["info"]).unwrap();
    let expected = format!(
        "archive lag: 3 WAL files (3.0 MiB) ready in {}/pg_wal and not archived yet, the oldest {}",
        cluster.data_dir().display(),
        waiting[0]
    );
    assert!(text.contains(&expected), "{text}");

    // Without pgdata the lag cannot be seen, and info says how to see it.
    let config = std::fs::read_to_string(&lab.config_path).unwrap();
    let without: String = config
        .lines()
        .filter(|l| !l.starts_with("pgdata"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&lab.config_path, without).unwrap();
    let info = info_json(&lab);
    assert_eq!(
        info["archive_lag_error"], "set pgdata in [stanza.main] to see it",
        "{info:#}"
    );
    cluster.stop().unwrap();
}
