//! The whole cycle with the repository in a container on Azure Blob Storage as Azurite emulates
//! it: PostgreSQL 15 archives through `tidemark-archive`, `tidemark check` passes, `tidemark
//! backup` stores a base backup, `tidemark plan` and `tidemark restore` to an instant between
//! two commits, then recovery through `tidemark-restore`, gives exactly the rows committed by
//! then, having read exactly the segments the plan named.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::azure::{ACCOUNT_KEY, keys_under, repo_section, start_azurite, test_container};
use testkit::Lab;
use testkit::steps::restore_to_instant;
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::workload;

#[test]
fn archive_backup_and_restore_to_an_instant_with_the_repository_on_azure_blob_storage() {
    let server = start_azurite();
    test_container(&server, "");
    let lab = Lab::new("tm-azure-", &common::binaries()).unwrap();
    // The account key in a file of its own, readable by the cluster's owner only.
    let key_file = lab.tmp.path().join("azure.key");
    common::azure::write_key_file(&key_file, ACCOUNT_KEY, 0o600);
    let options = PrimaryOptions::default()
        .commit_timestamps()
        .repo_section(repo_section(&server.blob_endpoint, "prod", &key_file));
    let mut primary = archiving_primary(&lab, &options).unwrap();
    workload::create_table(&primary).unwrap();
    // The start-up check passes: the container answers, a second create-only put of its probe
    // is refused, the probe reads back and is deleted.
    let checked = lab.tidemark(&["check"]).unwrap();
    assert!(!checked.contains("FAIL"), "{checked}");
    let report = lab.tidemark(&["backup"]).unwrap();
    assert!(report.starts_with("backup "), "{report}");
    workload::insert_rows(&primary, 20, Duration::from_millis(30), "on azure").unwrap();
    testkit::switch_and_wait_for_archive(&primary).unwrap();
    let rows = workload::committed_rows(&primary).unwrap();
    primary.stop().unwrap();

    let instant = workload::instant_between(&rows, 10).unwrap();
    let target = workload::format_instant(instant);
    let plan: serde_json::Value = serde_json::from_str(
        &lab.tidemark(&["plan", "--target-time", &target, "--output", "json"])
            .unwrap(),
    )
    .unwrap();
    let planned: BTreeSet<String> = common::planned_segments(&plan).into_iter().collect();
    assert!(!planned.is_empty(), "{plan:#}");
    // PostgreSQL's own read-ahead would ask for a segment past the stop (see pitr_proof.rs).
    let mut restored = restore_to_instant(
        &lab,
        "restored",
        &rows,
        instant,
        &[("recovery_prefetch", "off")],
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
    .cluster;
    common::assert_recovered_as_planned(&restored, &planned);
    restored.stop().unwrap();
    // Everything went through the container, under the prefix: the local repository directory
    // was never made, and the stanza, its WAL and its backup are under `prod/`.
    assert!(!lab.repo_path.exists());
    let stored = keys_under(&server, "prod");
    for expected in [
        "prod/main/stanza.json",
        "prod/main/wal/",
        "prod/main/backup",
    ] {
        assert!(
            stored.iter().any(|key| key.starts_with(expected)),
            "{expected} in {stored:?}"
        );
    }
}
