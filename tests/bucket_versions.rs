//! Bucket sources listed by versions (`listing = "versions"`), against moto's S3 server (s3s-fs
//! has no versions): a versioned bucket with overwritten and deleted objects is snapshot as its
//! current versions, each read by the version listed; a second snapshot after changes reads only
//! what changed (a new version of the same bytes only has its headers read); an unchanged
//! bucket is snapshot again with no object read; each snapshot restores exactly what the bucket
//! held then; a version overwritten after the listing is stored as listed; a server that lists no
//! versions is refused with one line.

mod common;

use std::collections::BTreeMap;

use common::bucket::{NewObject, TestClient, noise, varied_objects};
use common::bucket_setup::{BucketSetup as Setup, snapshot_in_memory, source_settings};
use common::s3::start_server;
use testkit::servers::moto::{MotoServer, start_moto};
use tidemark::config::BucketListing;
use tidemark::sources::bucket::client::BucketClient;

const LISTING: &str = "listing = \"versions\"\n";

/// A moto server holding versioned bucket `src`, and the test's own client of it.
fn versioned_source() -> (MotoServer, TestClient) {
    let server = start_moto();
    let client = TestClient::new(&server.endpoint);
    client.create_bucket("src");
    client.enable_versioning("src");
    (server, client)
}

fn object(key: &str, content: Vec<u8>, label: &str) -> NewObject {
    NewObject {
        key: key.into(),
        content,
        content_type: Some("text/plain".into()),
        metadata: BTreeMap::from([("label".into(), label.into())]),
    }
}

/// The object requests (not listings) the server was asked since `from`: (method, key, version).
fn object_requests(server: &MotoServer, from: usize) -> Vec<(String, String, Option<String>)> {
    server.requests()[from..]
        .iter()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let (method, target) = (parts.next()?, parts.next()?);
            let path = target.strip_prefix("/src/")?;
            let (key, query) = path.split_once('?').unwrap_or((path, ""));
            // A listing is of the bucket, not of an object.
            if key.is_empty() {
                return None;
            }
            let version = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("versionId="))
                .map(str::to_owned);
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
            Some((method.to_owned(), key.into_owned(), version))
        })
        .collect()
}

#[test]
fn each_snapshot_of_a_versioned_bucket_restores_its_current_versions() {
    let (server, client) = versioned_source();
    let setup = Setup::new(&server.endpoint, LISTING);
    client.put_all("src", varied_objects(150, 2 << 20, 5));
    // Older versions and delete markers the snapshot must not take.
    let keys = client.keys("src");
    client.put_all(
        "src",
        keys.iter()
            .take(20)
            .map(|key| object(key, noise(3000, 77), "second version"))
            .collect(),
    );
    for key in keys.iter().skip(20).take(10) {
        client.delete("src", key);
    }
    let first_state = client.held("src");
    assert_eq!(first_state.len(), 140);
    let before = server.requests().len();
    setup.ok(&["source", "backup", "uploads"]);
    let reads = object_requests(&server, before);
    let gets: Vec<_> = reads.iter().filter(|(m, _, _)| m == "GET").collect();
    assert_eq!(gets.len(), 140);
    assert!(
        gets.iter().all(|(_, _, version)| version.is_some()),
        "a read asked for no version: {gets:?}"
    );

    // A new version of the same bytes, one of other bytes of the same size, a delete, an add.
    let same_bytes = &keys[0];
    let rewritten = &keys[1];
    let deleted = &keys[40];
    client.put_all(
        "src",
        vec![
            object(same_bytes, noise(3000, 77), "same bytes, new version"),
            object(rewritten, noise(3000, 78), "other bytes"),
            object("added/new one.txt", noise(500, 79), "added"),
        ],
    );
    client.delete("src", deleted);
    let second_state = client.held("src");
    let before = server.requests().len();
    let said = setup.ok(&["source", "backup", "uploads"]);
    assert!(said.contains("1 added, 2 changed, 1 deleted"), "{said}");
    let reads = object_requests(&server, before);
    let mut read_keys: Vec<(&str, &str)> = reads
        .iter()
        .map(|(m, k, _)| (m.as_str(), k.as_str()))
        .collect();
    read_keys.sort();
    let mut expected = vec![
        ("GET", "added/new one.txt"),
        ("GET", rewritten.as_str()),
        ("HEAD", same_bytes.as_str()),
    ];
    expected.sort();
    assert_eq!(read_keys, expected, "{reads:?}");

    let before = server.requests().len();
    let said = setup.ok(&["source", "backup", "uploads"]);
    assert!(said.contains("0 added, 0 changed, 0 deleted"), "{said}");
    assert_eq!(object_requests(&server, before), Vec::new());

    let snapshots = setup.snapshots();
    assert_eq!(snapshots.len(), 3);
    let new_bytes = snapshots[2]["sizes"]["new"].as_u64().unwrap();
    assert!(
        new_bytes < 64 << 10,
        "an unchanged bucket's snapshot stored {new_bytes} bytes new"
    );
    for (snapshot, state, bucket) in [
        (&snapshots[0], &first_state, "restore-1"),
        (&snapshots[1], &second_state, "restore-2"),
    ] {
        let id = snapshot["id"].as_str().unwrap();
        assert_eq!(
            &setup.restored_into(&client, id, bucket),
            state,
            "snapshot {id}"
        );
    }
}

#[test]
fn a_version_overwritten_after_the_listing_is_stored_as_listed() {
    let (server, client) = versioned_source();
    let first = noise(5000, 1);
    client.put_all("src", vec![object("report.csv", first.clone(), "1")]);
    let settings = source_settings(&server.endpoint, BucketListing::Versions);
    let source = BucketClient::connect(&settings, "source.uploads", "src").unwrap();
    let listed = source.list("").unwrap();
    assert_eq!(listed.len(), 1);
    let listed_version = listed[0].version_id.clone().expect("a version listed");
    client.put_all("src", vec![object("report.csv", noise(7000, 2), "2")]);

    let (fetched, contents) = snapshot_in_memory(&source, listed);
    assert_eq!(fetched.changed_while_read, 0);
    let entry = &fetched.entries["report.csv"];
    assert_eq!(entry.version_id.as_deref(), Some(listed_version.as_str()));
    assert_eq!(entry.size, 5000);
    assert_eq!(entry.headers.metadata["label"], "1");
    assert_eq!(contents["report.csv"], first);
}

#[test]
fn a_server_that_lists_no_versions_is_refused_with_one_line() {
    let server = start_server();
    let client = TestClient::new(&server.endpoint);
    client.create_bucket("src");
    client.put_all("src", vec![object("a", b"a".to_vec(), "a")]);
    let setup = Setup::new(&server.endpoint, LISTING);
    setup.ok(&["source", "list", "uploads"]);
    let before = common::snapshot(&setup.repo());
    let refused = setup.refused(&["source", "backup", "uploads"]);
    assert!(
        refused.ends_with(
            "the server does not list versions (NotImplemented); set source.uploads.listing = \"walk\""
        ),
        "{refused}"
    );
    assert_eq!(
        common::snapshot(&setup.repo()),
        before,
        "the refused snapshot wrote to the repository"
    );
}
