use super::*;
use crate::repo::test_repository;
use crate::storage::MemoryStorage;

fn record(id: &str) -> SnapshotRecord {
    SnapshotRecord {
        format: SOURCE_FORMAT,
        source: "cache".into(),
        kind: "redis".into(),
        id: id.into(),
        start_time: "2026-12-06T19:30:00Z".into(),
        stop_time: "2026-12-06T19:30:01Z".into(),
        duration_ms: 1000,
        sizes: SnapshotSizes::default(),
        streams: vec![SnapshotStream {
            name: "dump.rdb".into(),
            size: 1,
            chunks: vec![ChunkRef {
                name: "aa".repeat(32),
                size: 1,
            }],
        }],
        meta: serde_json::json!({"redis_version": "7.0.15"}),
    }
}

#[test]
fn a_source_is_created_by_its_first_snapshot_and_keeps_its_kind() {
    let repo = test_repository(Box::new(MemoryStorage::new()));
    assert!(repo.open_source("cache").unwrap().is_none());
    assert!(repo.list_sources().unwrap().is_empty());
    let area = repo.open_or_create_source("cache", "redis").unwrap();
    assert_eq!((area.name(), area.kind()), ("cache", "redis"));
    repo.open_or_create_source("cache", "redis").unwrap();
    let error = repo
        .open_or_create_source("cache", "bucket")
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.starts_with("source 'cache' in ")
            && error.ends_with(
                "holds redis snapshots, not bucket: give this [source.cache] another name"
            ),
        "{error}"
    );
    assert_eq!(repo.list_sources().unwrap(), vec!["cache".to_owned()]);
    let error = repo.open_source("../x").err().unwrap().to_string();
    assert!(error.contains("is not a valid source name"), "{error}");
}

#[test]
fn snapshots_are_listed_oldest_first_and_found_by_id_or_latest() {
    let repo = test_repository(Box::new(MemoryStorage::new()));
    let area = repo.open_or_create_source("cache", "redis").unwrap();
    let error = area.find_snapshot(None).unwrap_err().to_string();
    assert_eq!(
        error,
        "source 'cache' has no snapshot: take one with 'tidemark source backup cache'"
    );
    assert_eq!(area.latest_snapshot().unwrap(), None);
    for id in ["20261206-193000R", "20261205-100000R"] {
        area.put_snapshot_record(&record(id)).unwrap();
    }
    area.put_snapshot_record(&record("20261205-100000R"))
        .unwrap();
    let ids: Vec<String> = area
        .list_snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["20261205-100000R", "20261206-193000R"]);
    assert_eq!(
        area.find_snapshot(Some("latest")).unwrap().id,
        "20261206-193000R"
    );
    // The record stored last is the older one: the latest is the newest by id.
    assert_eq!(
        area.latest_snapshot().unwrap().unwrap().id,
        "20261206-193000R"
    );
    assert_eq!(
        area.find_snapshot(Some("20261205-100000R")).unwrap().id,
        "20261205-100000R"
    );
    let error = area.find_snapshot(Some("x")).unwrap_err().to_string();
    assert_eq!(
        error,
        "source 'cache' has no snapshot x (it has: 20261205-100000R, 20261206-193000R): name one of them, or latest"
    );
    let mut other = record("20261205-100000R");
    other.duration_ms = 7;
    let error = area.put_snapshot_record(&other).unwrap_err().to_string();
    assert_eq!(
        error,
        "a snapshot 20261205-100000R of source 'cache' already exists"
    );
    area.remove_snapshots(&["20261205-100000R".into()]).unwrap();
    assert_eq!(area.list_snapshots().unwrap().len(), 1);
}

#[test]
fn a_new_source_names_chunks_by_blake3_and_one_recorded_before_keeps_sha256() {
    let repo = test_repository(Box::new(MemoryStorage::new()));
    // Before its first snapshot is recorded, and after: BLAKE3, as its identity then says.
    assert_eq!(
        source_blobs(&repo, "cache").unwrap().chunk_hash(),
        ChunkHash::Blake3
    );
    let area = repo.open_or_create_source("cache", "redis").unwrap();
    assert_eq!(area.identity().chunk_hash.as_deref(), Some("blake3"));
    assert_eq!(area.blobs().chunk_hash(), ChunkHash::Blake3);
    // source.json as a Tidemark of before wrote it: no chunk_hash.
    let old = serde_json::json!({
        "format": 1, "source": "uploads", "kind": "bucket", "created": "2026-12-01T00:00:00Z"
    });
    repo.storage()
        .put_if_absent(
            &layout::source_identity("uploads"),
            &[&serde_json::to_vec(&old).unwrap()],
        )
        .unwrap();
    assert_eq!(
        source_blobs(&repo, "uploads").unwrap().chunk_hash(),
        ChunkHash::Sha256
    );
}
