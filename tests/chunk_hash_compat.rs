//! Repositories written before chunks were named by BLAKE3 stay usable, end to end on a real
//! PostgreSQL 15: a stanza whose `stanza.json` names no `chunk_hash` (as `stanza-create` wrote
//! it then) backs up with its chunks named by SHA-256 — so a second backup still shares them —
//! passes `verify --deep`, and restores every file as it was; a stanza made now records
//! `chunk_hash = "blake3"`.

mod common;

use std::fs;

use common::backups::{back_up_and_stop, backup_record, object_path, relation_path, take_backup};
use sha2::Digest;
use testkit::Lab;
use testkit::steps::{PrimaryOptions, archiving_primary};

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The names of every chunk of backup `label`.
fn chunk_names(lab: &Lab, label: &str) -> Vec<String> {
    let record = backup_record(lab, label);
    record["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["chunks"].as_array())
        .flatten()
        .map(|c| c["sha256"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_stanza_made_before_blake3_keeps_naming_its_chunks_by_sha256_and_restores() {
    let lab = Lab::new("tm-chunkhash-", &common::binaries()).unwrap();
    let options = PrimaryOptions::default().replication_user("backup", "backup secret");
    let mut cluster = archiving_primary(&lab, &options).unwrap();

    // stanza-create now records BLAKE3; make it the file an older Tidemark wrote.
    let identity_path = object_path(&lab, &format!("{}/stanza.json", lab.stanza));
    let mut identity: serde_json::Value =
        serde_json::from_slice(&fs::read(&identity_path).unwrap()).unwrap();
    assert_eq!(identity["chunk_hash"], "blake3", "{identity:#}");
    identity.as_object_mut().unwrap().remove("chunk_hash");
    // Replaced by a rename, never truncated in place: the cluster's archive_command reads it
    // meanwhile, and a push that found it empty would fail.
    let rewritten = identity_path.with_extension("rewritten");
    let text = serde_json::to_string_pretty(&identity).unwrap();
    testkit::owner::write_owned_file(&rewritten, &text, 0o640).unwrap();
    fs::rename(&rewritten, &identity_path).unwrap();

    cluster
        .query("CREATE TABLE notes AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 20000) g")
        .unwrap();
    cluster.query("VACUUM (FREEZE, ANALYZE)").unwrap();
    cluster.query("CHECKPOINT").unwrap();
    let table = relation_path(&cluster, "notes");
    let first = take_backup(&lab);
    let second = back_up_and_stop(&lab, &mut cluster);

    // The table's file is one chunk, named by the SHA-256 of what it held.
    let record = backup_record(&lab, &first);
    let entry = record["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == table.as_str())
        .unwrap_or_else(|| panic!("backup {first} has no {table}"));
    let chunks = entry["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 1, "{entry:#}");
    let table_chunk = chunks[0]["sha256"].as_str().unwrap().to_owned();

    // The second backup of the unchanged table shares its chunk: the names did not change hash.
    assert!(chunk_names(&lab, &second).contains(&table_chunk));

    lab.tidemark(&["verify", "--deep"]).unwrap();
    let restored = lab.tmp.path().join("restored");
    lab.tidemark(&["restore", "--pgdata", restored.to_str().unwrap()])
        .unwrap();
    let content = fs::read(restored.join(&table)).unwrap();
    assert_eq!(sha256_hex(&content), table_chunk);
    assert_ne!(blake3::hash(&content).to_hex().as_str(), table_chunk);
}
