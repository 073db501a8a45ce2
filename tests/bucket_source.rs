//! Bucket sources against a real S3-compatible server (`s3s-fs`, started per test on a free
//! loopback port): a bucket of thousands of objects of every kind is snapshot, changed (the same
//! size with other bytes, deleted, added, copied) and snapshot again, and each snapshot restored
//! into an empty bucket holds exactly what the source held then — every key, byte, content type
//! and user metadata; an object copied to a new key is not stored twice; `expire` keeps what the
//! kept snapshots' objects need; bad input is refused with one line and nothing written.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::bucket::{Held, NewObject, TestClient, noise, varied_objects};
use common::bucket_setup::BucketSetup as Setup;
use common::s3::{S3Server, SECRET_KEY, start_server};

/// A server holding bucket `src`, and the test's own client of it.
fn server_with_source() -> (S3Server, TestClient) {
    let server = start_server();
    let client = TestClient::new(&server.endpoint);
    client.create_bucket("src");
    (server, client)
}

/// Every file under `dir`, with its content, for "nothing was written" checks.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.insert(path.clone(), fs::read(&path).unwrap());
        }
    }
    files
}

/// Changes 1% of `held`'s objects: overwrites some with other bytes of the same size (and
/// other metadata), deletes some, adds some, and copies one to a new key.
fn change_one_percent(client: &TestClient, held: &BTreeMap<String, Held>) -> (usize, usize, usize) {
    // The largest object, copied first (it may be deleted below): its content is stored
    // already.
    let largest = held.iter().max_by_key(|(_, h)| h.size).unwrap().0;
    client.copy("src", largest, "copies/the largest, again");
    let keys: Vec<&String> = held.keys().collect();
    let step = keys.len() / 20;
    let mut overwritten = Vec::new();
    let mut deleted = 0;
    for (n, key) in keys.iter().step_by(step).take(20).enumerate() {
        if n % 2 == 0 {
            let size = held[*key].size as usize;
            overwritten.push(NewObject {
                key: (*key).clone(),
                content: noise(size, 9000 + n as u64),
                content_type: Some("text/csv".into()),
                metadata: BTreeMap::from([("rewritten".into(), "yes".into())]),
            });
        } else {
            client.delete("src", key);
            deleted += 1;
        }
    }
    let changed = overwritten.len();
    let added: Vec<NewObject> = (0..25)
        .map(|i| NewObject {
            key: format!("added/übung {i}.bin"),
            content: noise(100 + i * 37, 7000 + i as u64),
            content_type: Some("application/octet-stream".into()),
            metadata: BTreeMap::new(),
        })
        .collect();
    client.put_all("src", overwritten);
    client.put_all("src", added);
    (changed, deleted, 26)
}

#[test]
fn each_snapshot_of_a_changing_bucket_restores_exactly_what_it_held() {
    let (server, client) = server_with_source();
    let setup = Setup::new(&server.endpoint, "");
    client.put_all("src", varied_objects(5000, 100 << 20, 1));
    let first_state = client.held("src");
    assert_eq!(first_state.len(), 5000);
    setup.ok(&["source", "backup", "uploads"]);

    let (changed, deleted, added) = change_one_percent(&client, &first_state);
    let second_state = client.held("src");
    let said = setup.ok(&["source", "backup", "uploads"]);
    assert!(
        said.contains(&format!(
            "{added} added, {changed} changed, {deleted} deleted"
        )),
        "{said}"
    );

    let snapshots = setup.snapshots();
    assert_eq!(snapshots.len(), 2);
    let (first, second) = (&snapshots[0], &snapshots[1]);
    assert_eq!(first["meta"]["objects"], 5000);
    assert_eq!(second["meta"]["objects"], second_state.len() as u64);
    assert_eq!(second["meta"]["deleted"], deleted as u64);
    // Only what changed was read again, and the copy of the largest object stored nothing new
    // beyond the lists: far less than its 100 MiB.
    assert_eq!(second["meta"]["fetched"], (changed + added) as u64);
    let new_bytes = second["sizes"]["new"].as_u64().unwrap();
    assert!(
        new_bytes < 4 << 20,
        "second snapshot stored {new_bytes} bytes new"
    );

    for (snapshot, state, bucket) in [
        (first, &first_state, "restore-1"),
        (second, &second_state, "restore-2"),
    ] {
        let id = snapshot["id"].as_str().unwrap();
        let restored = setup.restored_into(&client, id, bucket);
        assert_eq!(restored.len(), state.len(), "snapshot {id}");
        for (key, held) in state {
            assert_eq!(restored.get(key), Some(held), "snapshot {id}: {key:?}");
        }
    }
}

#[test]
fn expire_keeps_every_chunk_the_kept_snapshots_objects_use() {
    let (server, client) = server_with_source();
    let setup = Setup::new(&server.endpoint, "[source.uploads.retention]\nfull = 1\n");
    client.put_all("src", varied_objects(60, 3 << 20, 2));
    setup.ok(&["source", "backup", "uploads"]);
    let held = client.held("src");
    let (_, _, _) = change_one_percent(&client, &held);
    let state = client.held("src");
    setup.ok(&["source", "backup", "uploads"]);
    let expired = setup.ok(&["expire", "--source", "uploads"]);
    assert!(expired.contains("removed"), "{expired}");
    assert_eq!(setup.snapshots().len(), 1);
    let verified = setup.ok(&["verify", "--source", "uploads"]);
    assert!(verified.contains("0 problems"), "{verified}");
    client.create_bucket("back");
    setup.ok(&["source", "restore", "uploads", "--to-bucket", "back"]);
    assert_eq!(client.held("back"), state);
}

#[test]
fn a_restore_shows_what_it_would_change_and_leaves_extras_unless_told() {
    let (server, client) = server_with_source();
    let setup = Setup::new(&server.endpoint, "");
    client.put_all("src", varied_objects(30, 4096, 3));
    let state = client.held("src");
    setup.ok(&["source", "backup", "uploads"]);
    client.create_bucket("target");
    let extra = NewObject {
        key: "not in the snapshot".into(),
        content: b"extra".to_vec(),
        content_type: None,
        metadata: BTreeMap::new(),
    };
    client.put_all("target", vec![extra]);
    let planned = setup.ok(&[
        "source",
        "restore",
        "uploads",
        "--to-bucket",
        "target",
        "--dry-run",
    ]);
    assert!(
        planned.contains("30 objects to add, 0 to replace"),
        "{planned}"
    );
    assert!(
        planned.contains("leave \"not in the snapshot\""),
        "{planned}"
    );
    assert_eq!(
        client.keys("target"),
        vec!["not in the snapshot".to_owned()]
    );

    setup.ok(&["source", "restore", "uploads", "--to-bucket", "target"]);
    assert_eq!(client.held("target").len(), 31);
    setup.ok(&[
        "source",
        "restore",
        "uploads",
        "--to-bucket",
        "target",
        "--delete-extra",
    ]);
    assert_eq!(client.held("target"), state);

    // One object, into a bucket or a file.
    let key = state.keys().nth(4).unwrap().clone();
    client.create_bucket("one");
    setup.ok(&[
        "source",
        "restore",
        "uploads",
        "--key",
        &key,
        "--to-bucket",
        "one",
    ]);
    assert_eq!(
        client.held("one").into_iter().collect::<Vec<_>>(),
        vec![(key.clone(), state[&key].clone())]
    );
    let file = setup.dir.path().join("one object");
    setup.ok(&[
        "source",
        "restore",
        "uploads",
        "--key",
        &key,
        "--to-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(fs::metadata(&file).unwrap().len(), state[&key].size);

    // Under another prefix of the source bucket itself: only with --in-place.
    let refused = setup.refused(&[
        "source",
        "restore",
        "uploads",
        "--to-bucket",
        "src",
        "--prefix",
        "restored/",
    ]);
    assert_eq!(
        refused,
        "tidemark: ERROR: --to-bucket src is source 'uploads' itself: pass --in-place to restore over it, or name another bucket"
    );
    setup.ok(&[
        "source",
        "restore",
        "uploads",
        "--to-bucket",
        "src",
        "--prefix",
        "restored/",
        "--in-place",
    ]);
    let restored: Vec<String> = client
        .keys("src")
        .into_iter()
        .filter(|k| k.starts_with("restored/"))
        .collect();
    assert_eq!(restored.len(), 30);
}

#[test]
fn bad_input_is_refused_with_one_line_and_nothing_written() {
    let (server, client) = server_with_source();
    client.put_all("src", varied_objects(5, 100, 4));
    let setup = Setup::new(&server.endpoint, "");

    let missing = Setup::new(&server.endpoint, "");
    fs::write(
        &missing.config,
        fs::read_to_string(&missing.config)
            .unwrap()
            .replace("bucket = \"src\"", "bucket = \"nowhere\""),
    )
    .unwrap();
    let refused = missing.refused(&["source", "backup", "uploads"]);
    assert!(refused.contains("bucket s3://nowhere at"), "{refused}");
    assert!(
        refused.ends_with("does not exist: create it, or fix [source.uploads] bucket and endpoint"),
        "{refused}"
    );
    assert!(
        files_under(&missing.repo())
            .keys()
            .all(|p| !p.to_string_lossy().contains("snapshot"))
    );

    let wrong_keys = Setup::new(&server.endpoint, "");
    fs::write(
        &wrong_keys.config,
        fs::read_to_string(&wrong_keys.config)
            .unwrap()
            .replace(SECRET_KEY, "not-the-secret"),
    )
    .unwrap();
    let refused = wrong_keys.refused(&["source", "backup", "uploads"]);
    assert!(refused.contains("access denied"), "{refused}");
    assert!(refused.contains("check the keys"), "{refused}");

    let open = Setup::new(&server.endpoint, "");
    fs::set_permissions(&open.config, fs::Permissions::from_mode(0o644)).unwrap();
    let refused = open.refused(&["source", "backup", "uploads"]);
    assert!(
        refused.contains("holds source.uploads.secret_access_key but is readable by others"),
        "{refused}"
    );

    setup.ok(&["source", "backup", "uploads"]);
    let before = files_under(&setup.repo());
    let refused = setup.refused(&["source", "restore", "uploads", "--to-bucket", "src"]);
    assert!(refused.contains("pass --in-place"), "{refused}");
    let refused = setup.refused(&[
        "source",
        "restore",
        "uploads",
        "--to-bucket",
        "r",
        "--at",
        "2001-01-01 00:00:00+00",
    ]);
    assert!(
        refused.contains(
            "has no snapshot taken at or before 2001-01-01T00:00:00Z: its first started at"
        ),
        "{refused}"
    );
    let refused = setup.refused(&[
        "source",
        "restore",
        "uploads",
        "--to-bucket",
        "r",
        "--at",
        "yesterday",
    ]);
    assert!(
        refused.contains("cannot read --at 'yesterday'"),
        "{refused}"
    );
    let refused = setup.refused(&[
        "source",
        "restore",
        "uploads",
        "--key",
        "no such key",
        "--to-file",
        "/tmp/x",
    ]);
    assert!(
        refused.contains("has no object \"no such key\""),
        "{refused}"
    );
    let exists = setup.dir.path().join("tidemark.toml");
    let key = client.keys("src")[0].clone();
    let refused = setup.refused(&[
        "source",
        "restore",
        "uploads",
        "--key",
        &key,
        "--to-file",
        exists.to_str().unwrap(),
    ]);
    assert!(
        refused.contains("exists: name a path where nothing is"),
        "{refused}"
    );
    let refused = setup.refused(&["source", "restore", "uploads", "--to", "/tmp"]);
    assert!(
        refused.contains("is a bucket: restore it with --to-bucket NAME"),
        "{refused}"
    );
    assert_eq!(files_under(&setup.repo()), before);
    assert_eq!(client.keys("src").len(), 5);
}

#[test]
fn an_encrypted_repository_holds_no_key_name_metadata_or_content_in_the_clear() {
    let (server, client) = server_with_source();
    let setup = Setup::encrypted(&server.endpoint);
    let marker = "tidemark-marker-4f9c1e";
    let mut objects = varied_objects(40, 2 << 20, 5);
    objects.push(NewObject {
        key: format!("secret/{marker}.txt"),
        content: format!("{marker} ").repeat(5000).into_bytes(),
        content_type: Some("text/plain".into()),
        metadata: BTreeMap::from([("owner".into(), marker.into())]),
    });
    client.put_all("src", objects);
    let state = client.held("src");
    setup.ok(&["source", "backup", "uploads"]);
    setup.ok(&["source", "backup", "uploads"]);
    for (path, bytes) in files_under(&setup.repo()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(marker),
            "{} holds the marker in the clear",
            path.display()
        );
    }
    client.create_bucket("decrypted");
    setup.ok(&["source", "restore", "uploads", "--to-bucket", "decrypted"]);
    assert_eq!(client.held("decrypted"), state);
}
