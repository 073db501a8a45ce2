//! Azure Table sources against Azurite (started per test on free loopback ports): tables of
//! 20,000 entities over 60 partitions with every EDM type, schemas that grew over time,
//! keys in several scripts and entities near the 1 MiB limit are exported and restored into
//! new tables entity for entity, types included; one entity, one partition and a filter's
//! entities restore only themselves; insert reports every conflict and writes nothing, merge
//! keeps what the snapshot lacks and replace overwrites; bad input is refused in one line with
//! nothing written.

mod common;

use std::collections::BTreeMap;

use common::azure_tables::{TableSetup, TestTables, large_entity, varied_entity};
use testkit::servers::azurite::start_azurite;
use tidemark::sources::azure_table::batch::WriteMode;
use tidemark::sources::azure_table::entity::{Entity, Property};

#[test]
fn every_table_restores_into_new_tables_entity_for_entity() {
    let azurite = start_azurite();
    let tables = TestTables::new(&azurite.table_endpoint);
    tables.create("AuditLog");
    tables.create("Tenants");
    tables.create("NotExported");
    let audit: Vec<Entity> = (0..20_000).map(|n| varied_entity(n, 60)).collect();
    tables.write("AuditLog", WriteMode::Insert, &audit);
    let mut tenants: Vec<Entity> = (0..40).map(|n| varied_entity(n * 13, 7)).collect();
    tenants.extend((0..4).map(|n| large_entity("large ones", n)));
    tables.write("Tenants", WriteMode::Insert, &tenants);
    let setup = TableSetup::new(&azurite.table_endpoint, "[\"AuditLog\", \"Tenants\"]", "");

    let checked = setup.ok(&["source", "check", "audit"]);
    assert!(
        checked.contains("3 tables; a snapshot exports 2: AuditLog, Tenants"),
        "{checked}"
    );
    let said = setup.ok(&["source", "backup", "audit"]);
    assert!(
        said.contains("2 tables of account devstoreaccount1, 20044 entities in 68 partitions"),
        "{said}"
    );
    let snapshots = setup.snapshots();
    assert_eq!(snapshots.len(), 1);
    let meta = &snapshots[0]["meta"]["tables"];
    assert_eq!(meta[0]["name"], "AuditLog");
    assert_eq!(meta[0]["entities"], 20_000);
    assert_eq!(meta[0]["partitions"], 60);
    assert_eq!(meta[1]["name"], "Tenants");
    assert_eq!(meta[1]["entities"], 44);
    assert!(
        meta[0]["scan_started"].as_str().unwrap() <= meta[0]["scan_finished"].as_str().unwrap()
    );
    assert!(snapshots[0]["id"].as_str().unwrap().ends_with('T'));
    let listed = setup.ok(&["source", "list"]);
    assert!(
        listed.contains("source 'audit' (azure-table): 1 snapshots"),
        "{listed}"
    );

    for (table, copy, count) in [
        ("AuditLog", "AuditCopy", 20_000),
        ("Tenants", "TenantsCopy", 44),
    ] {
        let said = setup.restore(&["--table", table, "--as", copy]);
        assert!(
            said.starts_with(&format!("restored {count} entities in ")),
            "{said}"
        );
        let (original, restored) = (tables.held(table), tables.held(copy));
        assert_eq!(restored.len(), count);
        // Each entity equals the original, property types included (the lines say each
        // property's type; NaN is written "NaN", so it equals itself here).
        for (key, line) in &original {
            assert_eq!(restored.get(key), Some(line), "{table} {key:?}");
        }
    }
    // Every type was there to be compared.
    let sample = &tables.held("AuditLog")[&(
        varied_entity(15_994, 60).partition_key,
        varied_entity(15_994, 60).row_key,
    )];
    for edm in [
        "String", "Int32", "Int64", "Double", "Boolean", "DateTime", "Guid", "Binary",
    ] {
        assert!(
            sample.contains(&format!("\"type\":\"{edm}\"")),
            "{edm}: {sample}"
        );
    }
    assert!(
        tables
            .held("Tenants")
            .values()
            .any(|line| line.len() > 900_000)
    );
}

/// Source `audit` over table `Small`: 600 entities in 6 partitions, snapshot taken.
fn small_table_snapshot() -> (
    testkit::servers::azurite::AzuriteServer,
    TestTables,
    TableSetup,
) {
    let azurite = start_azurite();
    let tables = TestTables::new(&azurite.table_endpoint);
    tables.create("Small");
    let entities: Vec<Entity> = (0..600).map(|n| varied_entity(n, 6)).collect();
    tables.write("Small", WriteMode::Insert, &entities);
    let setup = TableSetup::new(&azurite.table_endpoint, "\"*\"", "concurrency = 3\n");
    setup.ok(&["source", "backup", "audit"]);
    (azurite, tables, setup)
}

#[test]
fn one_entity_one_partition_and_a_filter_restore_only_themselves() {
    let (_azurite, tables, setup) = small_table_snapshot();
    let source = tables.held("Small");
    let one = varied_entity(123, 6);
    let partition = varied_entity(4, 6).partition_key;

    let said = setup.restore(&[
        "--table",
        "Small",
        "--as",
        "OneEntity",
        "--partition",
        &one.partition_key,
        "--row",
        &one.row_key,
    ]);
    assert!(
        said.starts_with("restored 1 entities in 1 partitions"),
        "{said}"
    );
    let restored = tables.held("OneEntity");
    assert_eq!(restored.len(), 1);
    let key = (one.partition_key.clone(), one.row_key.clone());
    assert_eq!(restored.get(&key), source.get(&key));

    setup.restore(&[
        "--table",
        "Small",
        "--as",
        "OnePartition",
        "--partition",
        &partition,
    ]);
    let restored = tables.held("OnePartition");
    let wanted: BTreeMap<_, _> = source
        .iter()
        .filter(|((p, _), _)| *p == partition)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(wanted.len(), 100);
    assert_eq!(restored, wanted);

    // The filter's entities, worked out here from the entities themselves.
    let filter =
        "(Count ge 0 and Flag eq true) or RowKey lt '000010' or Big eq 9223372036854375807L";
    setup.restore(&["--table", "Small", "--as", "Filtered", "--filter", filter]);
    let restored = tables.held("Filtered");
    let matching: BTreeMap<_, _> = (0..600)
        .map(|n| varied_entity(n, 6))
        .filter(|e| {
            let count = matches!(e.properties.get("Count"), Some(Property::Int32(c)) if *c >= 0);
            let flag = e.properties["Flag"] == Property::Boolean(true);
            let big = e.properties["Big"] == Property::Int64(9_223_372_036_854_375_807);
            (count && flag) || e.row_key.as_str() < "000010" || big
        })
        .map(|e| {
            let key = (e.partition_key.clone(), e.row_key.clone());
            (key.clone(), source[&key].clone())
        })
        .collect();
    assert!(
        matching.len() > 50 && matching.len() < 300,
        "{}",
        matching.len()
    );
    assert_eq!(restored, matching);

    // A dry run counts per partition and creates nothing.
    let said = setup.restore(&["--table", "Small", "--as", "DryRun", "--dry-run"]);
    assert!(
        said.starts_with("would restore 600 entities in 6 partitions"),
        "{said}"
    );
    assert!(
        said.contains(&format!("partition {partition:?}: 100 entities")),
        "{said}"
    );
    assert!(said.ends_with("dry run: nothing was written\n"), "{said}");
    assert!(!tables.tables().contains(&"DryRun".to_owned()));
}

#[test]
fn insert_reports_every_conflict_and_writes_nothing_merge_keeps_replace_overwrites() {
    let (_azurite, tables, setup) = small_table_snapshot();
    let partition = varied_entity(2, 6).partition_key;
    let in_partition: Vec<Entity> = (0..600)
        .map(|n| varied_entity(n, 6))
        .filter(|e| e.partition_key == partition)
        .collect();
    assert_eq!(in_partition.len(), 100);

    // Into the table itself, an insert meets all 600 entities: each is reported.
    let output = setup.run(&["source", "restore", "audit", "--table", "Small"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 600, "{stdout}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("600 of the 600 entities to insert exist in table Small already (listed above), so nothing was written: restore them with --mode merge or --mode replace"),
        "{stderr}"
    );

    // A table holding one entity of the partition, changed since, and one the snapshot lacks.
    let mut changed = in_partition[10].clone();
    setup.restore(&[
        "--table",
        "Small",
        "--as",
        "Partial",
        "--partition",
        &partition,
        "--row",
        &changed.row_key,
    ]);
    changed
        .properties
        .insert("Text".into(), Property::String("changed".into()));
    changed
        .properties
        .insert("AddedLater".into(), Property::Int64(7));
    tables.write(
        "Partial",
        WriteMode::Replace,
        std::slice::from_ref(&changed),
    );
    let mut added = in_partition[0].clone();
    added.row_key = "zz-added-after".into();
    tables.write("Partial", WriteMode::Insert, std::slice::from_ref(&added));
    let before = tables.held("Partial");
    assert_eq!(before.len(), 2);

    // Insert of the partition: one conflict, reported; none of the 99 others written.
    let output = setup.run(&[
        "source",
        "restore",
        "audit",
        "--table",
        "Small",
        "--as",
        "Partial",
        "--partition",
        &partition,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout,
        format!(
            "conflict: PartitionKey {partition:?} RowKey {:?} exists in table Partial\n",
            changed.row_key
        )
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("1 of the 100 entities to insert exist in table Partial already"),
        "{stderr}"
    );
    assert_eq!(tables.held("Partial"), before);
    // A dry run says the same, and writes nothing either.
    let said = setup.restore(&[
        "--table",
        "Small",
        "--as",
        "Partial",
        "--partition",
        &partition,
        "--dry-run",
    ]);
    assert!(
        said.contains("1 conflicts: an insert would write nothing"),
        "{said}"
    );
    assert_eq!(tables.held("Partial"), before);

    // Merge: the snapshot's values come back, the property it lacks stays.
    let key = (changed.partition_key.clone(), changed.row_key.clone());
    let added_key = (added.partition_key.clone(), added.row_key.clone());
    setup.restore(&[
        "--table",
        "Small",
        "--as",
        "Partial",
        "--partition",
        &partition,
        "--mode",
        "merge",
    ]);
    let merged = tables.held("Partial");
    assert_eq!(merged.len(), 101);
    assert!(merged[&key].contains("AddedLater"), "{}", merged[&key]);
    assert!(!merged[&key].contains("changed"), "{}", merged[&key]);
    assert_eq!(merged[&added_key], before[&added_key]);

    // Replace: exactly the snapshot's entity; what it lacks is gone; others are untouched.
    setup.restore(&[
        "--table",
        "Small",
        "--as",
        "Partial",
        "--partition",
        &partition,
        "--mode",
        "replace",
    ]);
    let replaced = tables.held("Partial");
    let source = tables.held("Small");
    assert_eq!(replaced[&key], source[&key]);
    assert!(!replaced[&key].contains("AddedLater"));
    assert_eq!(replaced.len(), 101);
    assert_eq!(replaced[&added_key], before[&added_key]);
}
