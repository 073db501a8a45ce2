//! The other ways an Azure Table source proves who it is, against Azurite: an account SAS token
//! in `key_file` (made here with the development account's key, as `az storage account
//! generate-sas` would) snapshots and restores, one that may only read is refused a restore
//! with the 403 explained and nothing written, and an expired one is refused a snapshot with
//! none recorded; `signing = "SharedKeyLite"` snapshots and restores; `signing` beside a SAS
//! token is refused in one line.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::azure::account_sas;
use common::azure_tables::{TableSetup, TestTables, varied_entity};
use testkit::servers::azurite::start_azurite;
use tidemark::sources::azure_table::batch::WriteMode;

/// Puts `token` in `setup`'s key file (mode 0600, as the rule wants).
fn use_token(setup: &TableSetup, token: &str) {
    fs::write(setup.key_file(), format!("{token}\n")).unwrap();
    fs::set_permissions(setup.key_file(), fs::Permissions::from_mode(0o600)).unwrap();
}

/// Table `AuditLog` holding 300 varied entities over 6 partitions.
fn filled(tables: &TestTables) {
    tables.create("AuditLog");
    let entities: Vec<_> = (0..300).map(|n| varied_entity(n, 6)).collect();
    tables.write("AuditLog", WriteMode::Insert, &entities);
}

#[test]
fn a_sas_token_snapshots_and_restores_and_one_that_may_only_read_or_has_expired_is_refused() {
    let azurite = start_azurite();
    let tables = TestTables::new(&azurite.table_endpoint);
    filled(&tables);
    let setup = TableSetup::new(&azurite.table_endpoint, "[\"AuditLog\"]", "");

    use_token(&setup, &account_sas("t", "rl", "2001-01-01T00:00:00Z"));
    let refused = setup.refused(&["source", "backup", "audit"]);
    assert!(refused.contains("refused the request (403"), "{refused}");
    assert!(
        refused.contains("the SAS token lacks a permission or has expired"),
        "{refused}"
    );
    assert!(setup.snapshots().is_empty());

    use_token(&setup, &account_sas("t", "rl", "2099-01-01T00:00:00Z"));
    setup.ok(&["source", "backup", "audit"]);
    assert_eq!(setup.snapshots().len(), 1);

    let refused = setup.refused(&[
        "source",
        "restore",
        "audit",
        "--table",
        "AuditLog",
        "--as",
        "ReadOnlyCopy",
    ]);
    assert!(refused.contains("refused the request (403"), "{refused}");
    assert!(
        refused.contains("the SAS token lacks a permission or has expired"),
        "{refused}"
    );
    assert_eq!(tables.tables(), ["AuditLog"]);

    use_token(&setup, &account_sas("t", "rlacu", "2099-01-01T00:00:00Z"));
    setup.restore(&["--table", "AuditLog", "--as", "SasCopy"]);
    let original = tables.held("AuditLog");
    assert_eq!(original.len(), 300);
    assert_eq!(tables.held("SasCopy"), original);
}

#[test]
fn shared_key_lite_signs_a_snapshot_and_a_restore_and_is_refused_beside_a_sas_token() {
    let azurite = start_azurite();
    let tables = TestTables::new(&azurite.table_endpoint);
    filled(&tables);
    let setup = TableSetup::new(
        &azurite.table_endpoint,
        "[\"AuditLog\"]",
        "signing = \"SharedKeyLite\"\n",
    );
    setup.ok(&["source", "backup", "audit"]);
    setup.restore(&["--table", "AuditLog", "--as", "LiteCopy"]);
    assert_eq!(tables.held("LiteCopy"), tables.held("AuditLog"));

    use_token(&setup, &account_sas("t", "rl", "2099-01-01T00:00:00Z"));
    let refused = setup.refused(&["source", "backup", "audit"]);
    assert!(
        refused.ends_with("source.audit.signing is set, but its key is a SAS token, which is not signed: remove signing, or give the account key"),
        "{refused}"
    );
    assert_eq!(setup.snapshots().len(), 1);
}
