//! Smoke test for the throwaway PostgreSQL cluster: needs the PostgreSQL 15 server
//! programs, and fails (rather than skipping) when they are missing.

use std::time::Duration;

use testkit::*;

#[test]
fn throwaway_cluster_runs_queries_and_takes_a_base_backup() -> anyhow::Result<()> {
    let bins = PgBinaries::locate()?;
    // Declared first so it is dropped last, after the cluster has stopped.
    let tmp = SharedTempDir::new("tm-")?;
    let mut cluster = ThrowawayCluster::init(&bins, tmp.path(), "primary", 1)?;
    cluster.configure(&[("track_commit_timestamp", "on")])?;
    assert!(!cluster.is_running());
    cluster.start()?;
    assert!(cluster.is_running());

    assert_eq!(cluster.query("SHOW wal_segment_size")?, "1MB");
    assert_eq!(cluster.query("SHOW track_commit_timestamp")?, "on");
    assert_eq!(cluster.query("SHOW listen_addresses")?, "");

    cluster.query("CREATE TABLE t (id int PRIMARY KEY, note text)")?;
    cluster.query("INSERT INTO t VALUES (1, 'one'), (2, 'it''s two'), (3, NULL)")?;
    assert_eq!(
        cluster.query("SELECT id || ':' || coalesce(note, '-') FROM t ORDER BY id")?,
        "1:one\n2:it's two\n3:-"
    );
    cluster.wait_for("SELECT count(*) FROM t", "3", Duration::from_secs(10))?;

    let err = cluster
        .query("SELECT * FROM no_such_table")
        .expect_err("querying a missing table must fail");
    assert!(
        format!("{err:#}").contains("no_such_table"),
        "error should carry psql's stderr: {err:#}"
    );

    let dest = tmp.path().join("backup");
    cluster.base_backup(&dest)?;
    assert!(dest.join("backup_label").is_file());

    cluster.stop()?;
    assert!(!cluster.is_running());
    // Stopping twice is a no-op.
    cluster.stop()?;
    Ok(())
}

/// The harness starts a cluster of every supported major, with the server programs of that
/// major (from the cache `.ci/fetch-pg-packages` fills) and the default clients; a package
/// missing from the cache fails the test with the command that fetches it.
#[test]
fn a_throwaway_cluster_of_every_supported_major_starts_and_answers() -> anyhow::Result<()> {
    for major in SUPPORTED_MAJORS {
        let bins = PgBinaries::for_major(major)?;
        let tmp = SharedTempDir::new("tm-major-")?;
        let mut cluster = ThrowawayCluster::init(&bins, tmp.path(), "primary", 1)?;
        cluster.start()?;
        let version: u32 = cluster.query_value("SHOW server_version_num")?;
        assert_eq!(
            version / 10000,
            major,
            "the cluster for {major} runs {version}"
        );
        assert_eq!(cluster.query("SHOW wal_segment_size")?, "1MB");
        cluster.stop()?;
    }
    Ok(())
}
