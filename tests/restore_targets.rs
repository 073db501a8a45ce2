//! `tidemark restore` targets against a real PostgreSQL 15, each restored cluster started and
//! recovering through `tidemark-restore`: a restore point (`--target-name`) whose name holds a
//! quote, a backslash and `%`, restored with a configuration file whose path holds spaces,
//! quotes, a backslash, `$` and `%f` (so `restore_command` must survive `postgresql.conf`'s
//! quoting, PostgreSQL's `%` substitution and `sh -c`); and `--target immediate`, with the
//! backup the planner chooses and with an older one named by `--backup`.

mod common;

use std::fs;
use std::path::Path;

use testkit::Lab;
use testkit::ThrowawayCluster;
use testkit::steps::start_restored;
use testkit::steps::{PrimaryOptions, archiving_primary};

/// Creates the table the tests count rows of.
fn create_ledger(cluster: &ThrowawayCluster) {
    cluster
        .query("CREATE TABLE ledger (id int PRIMARY KEY)")
        .unwrap();
}

/// Commits rows `from..=to` of the ledger, one transaction each.
fn insert(cluster: &ThrowawayCluster, from: u32, to: u32) {
    let statements: Vec<String> = (from..=to)
        .map(|id| format!("INSERT INTO ledger VALUES ({id})"))
        .collect();
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    cluster.execute_each(&statements).unwrap();
}

/// Runs `tidemark --config <config> restore --pgdata <pgdata> <extra>` as the cluster owner and
/// returns its report, failing the test unless it succeeded.
fn restore(lab: &Lab, config: &Path, pgdata: &Path, extra: &[&str]) -> String {
    let ran = common::run_restore(lab, config, pgdata, extra);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    ran.stdout
}

/// Starts the restored data directory (archiving off: it is a copy), waits until it has
/// promoted and returns the ids it holds; the server's log must show segments restored
/// through `tidemark-restore` and no Tidemark error.
fn recovered_ids(lab: &Lab, name: &str) -> (ThrowawayCluster, String) {
    let cluster = start_restored(lab, name, &[("archive_mode", "off")]).unwrap();
    let log = fs::read_to_string(cluster.log_file()).unwrap();
    assert!(
        log.contains("tidemark-restore: INFO: restored "),
        "no segment came through tidemark-restore:\n{log}"
    );
    assert_eq!(common::tidemark_errors(&cluster), Vec::<String>::new());
    let ids = cluster
        .query("SELECT coalesce(min(id), 0) || '..' || coalesce(max(id), 0) || ' ' || count(*) FROM ledger")
        .unwrap();
    (cluster, ids)
}

/// An archiving primary whose `ledger` holds rows 1 to 10.
fn ledger_primary(lab: &Lab) -> ThrowawayCluster {
    let cluster = archiving_primary(lab, &PrimaryOptions::default()).unwrap();
    create_ledger(&cluster);
    insert(&cluster, 1, 10);
    cluster
}

#[test]
fn a_restore_point_is_reached_through_a_config_path_full_of_shell_and_percent_characters() {
    let lab = Lab::new("tm-rname-", &common::binaries()).unwrap();
    let mut cluster = ledger_primary(&lab);
    common::backups::take_backup(&lab);
    insert(&cluster, 11, 20);
    let point = r"it's a \ 100% point";
    cluster
        .query(&format!(
            "SELECT pg_create_restore_point('{}')",
            point.replace('\'', "''")
        ))
        .unwrap();
    insert(&cluster, 21, 30);
    testkit::switch_and_wait_for_archive(&cluster).unwrap();
    cluster.stop().unwrap();

    // %f would become the requested file's name if PostgreSQL's substitution reached it.
    let odd_dir = lab.tmp.subdir(r#"it's a "100%f" \ dir $HOME"#).unwrap();
    let config = odd_dir.join("tidemark 100%.toml");
    common::write_config_file(
        &config,
        &fs::read_to_string(&lab.config_path).unwrap(),
        0o644,
    );
    let pgdata = lab.tmp.path().join("restored");
    let report = restore(&lab, &config, &pgdata, &["--target-name", point]);
    assert!(
        report.contains("restore point 'it's a \\ 100% point'"),
        "{report}"
    );
    let settings = fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(
        settings.contains(r"recovery_target_name = 'it''s a \\ 100% point'"),
        "{settings}"
    );

    let (restored, ids) = recovered_ids(&lab, "restored");
    assert_eq!(ids, "1..20 20", "recovery to restore point {point:?}");
    let log = fs::read_to_string(restored.log_file()).unwrap();
    assert!(
        log.contains(&format!("recovery stopping at restore point \"{point}\"")),
        "{log}"
    );
}

#[test]
fn target_immediate_stops_at_the_end_of_the_chosen_backup_or_of_the_one_backup_names() {
    let lab = Lab::new("tm-rimm-", &common::binaries()).unwrap();
    let mut cluster = ledger_primary(&lab);
    let first = common::backups::take_backup(&lab);
    insert(&cluster, 11, 20);
    let second = common::backups::take_backup(&lab);
    insert(&cluster, 21, 30);
    testkit::switch_and_wait_for_archive(&cluster).unwrap();
    cluster.stop().unwrap();

    let newest = lab.tmp.path().join("newest");
    let report = restore(&lab, &lab.config_path, &newest, &["--target", "immediate"]);
    assert!(
        report.starts_with(&format!("restored backup {second} into ")),
        "{report}"
    );
    assert!(
        fs::read_to_string(newest.join("postgresql.auto.conf"))
            .unwrap()
            .contains("recovery_target = 'immediate'\n")
    );
    let (newest_cluster, ids) = recovered_ids(&lab, "newest");
    assert_eq!(ids, "1..20 20", "--target immediate from backup {second}");
    drop(newest_cluster);

    let older = lab.tmp.path().join("older");
    let report = restore(
        &lab,
        &lab.config_path,
        &older,
        &["--target", "immediate", "--backup", &first],
    );
    assert!(
        report.starts_with(&format!(
            "restored backup {first} into {}: chosen because backup {first} was asked for with --backup",
            older.display()
        )),
        "{report}"
    );
    let (_older_cluster, ids) = recovered_ids(&lab, "older");
    assert_eq!(ids, "1..10 10", "--target immediate --backup {first}");
}
