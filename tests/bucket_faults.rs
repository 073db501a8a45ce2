//! A bucket source when the source bucket misbehaves, against a real `s3s-fs` behind an HTTP
//! relay that counts requests and fails object GETs (`testkit::http_relay`): a second snapshot
//! of an unchanged bucket reads no object; with a fifth of GETs failing (no answer, a 500, a body
//! cut short) a snapshot either completes with exactly the bucket's content or fails listing
//! nothing; an object replaced between the listing and its read is recorded as it was read,
//! with that read's headers; a listing folder by folder finds exactly what a flat one does.

mod common;

use std::collections::BTreeMap;

use common::bucket::{NewObject, TestClient, noise, varied_objects};
use common::bucket_setup::{BucketSetup as Setup, snapshot_in_memory, source_settings};
use common::direct::describe;
use common::s3::start_server;
use testkit::http_relay::HttpRelay;
use tidemark::config::BucketListing;
use tidemark::sources::bucket::client::BucketClient;

#[test]
fn a_second_snapshot_of_an_unchanged_bucket_reads_no_object_and_stores_nothing_new() {
    let server = start_server();
    let client = TestClient::new(&server.endpoint);
    client.create_bucket("src");
    client.put_all("src", varied_objects(400, 8 << 20, 11));
    let relay = HttpRelay::start(&server.endpoint);
    let setup = Setup::new(&relay.endpoint(), "");
    setup.ok(&["source", "backup", "uploads"]);
    assert_eq!(relay.counts().object_gets, 400);

    relay.reset_counts();
    setup.ok(&["source", "backup", "uploads"]);
    let counts = relay.counts();
    assert_eq!(counts.object_gets, 0, "{counts:?}");
    assert_eq!(counts.heads, 0, "{counts:?}");
    assert!(counts.lists >= 1, "{counts:?}");
    let second = &setup.snapshots()[1];
    assert_eq!(second["sizes"]["new"], 0, "{second:#}");
    assert_eq!(second["meta"]["fetched"], 0);
    assert_eq!(second["meta"]["objects"], 400);
}

#[test]
fn with_a_fifth_of_gets_failing_a_snapshot_is_exact_or_is_not_listed() {
    let server = start_server();
    let client = TestClient::new(&server.endpoint);
    client.create_bucket("src");
    client.put_all("src", varied_objects(250, 3 << 20, 12));
    let state = client.held("src");
    let relay = HttpRelay::start(&server.endpoint);
    let setup = Setup::new(&relay.endpoint(), "");
    let mut completed = 0;
    for seed in 1..=3u64 {
        relay.set_get_faults(0.2, seed);
        let before = setup.snapshots().len();
        let output = setup.run(&["source", "backup", "uploads"]);
        relay.set_get_faults(0.0, seed);
        let after = setup.snapshots();
        if output.status.success() {
            completed += 1;
            assert_eq!(after.len(), before + 1);
            let bucket = format!("restored-{seed}");
            client.create_bucket(&bucket);
            let id = after.last().unwrap()["id"].as_str().unwrap().to_owned();
            setup.ok(&[
                "source",
                "restore",
                "uploads",
                "--snapshot",
                &id,
                "--to-bucket",
                &bucket,
            ]);
            assert_eq!(client.held(&bucket), state, "seed {seed}");
        } else {
            assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
            assert_eq!(
                after.len(),
                before,
                "seed {seed}: a failed snapshot is listed"
            );
        }
    }
    assert!(
        relay.faults_injected() > 50,
        "{} faults",
        relay.faults_injected()
    );
    // Reads are tried again, so most snapshots complete despite the faults.
    assert!(completed >= 1, "no snapshot completed");
}

#[test]
fn an_object_replaced_between_the_listing_and_its_read_is_recorded_as_read() {
    let server = start_server();
    let client = TestClient::new(&server.endpoint);
    client.create_bucket("src");
    let object = |content: Vec<u8>, content_type: &str, version: &str| NewObject {
        key: "report.csv".into(),
        content,
        content_type: Some(content_type.into()),
        metadata: BTreeMap::from([("version".into(), version.into())]),
    };
    client.put_all("src", vec![object(noise(5000, 1), "text/csv", "1")]);
    let settings = source_settings(&server.endpoint, BucketListing::Walk);
    let source = BucketClient::connect(&settings, "source.uploads", "src").unwrap();
    let listed = source.list("").unwrap();
    // A second later (the time a listing and a read compare to), another version.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let replacement = noise(7000, 2);
    client.put_all(
        "src",
        vec![object(replacement.clone(), "application/json", "2")],
    );

    let (fetched, contents) = snapshot_in_memory(&source, listed);
    assert_eq!(fetched.changed_while_read, 1);
    let entry = &fetched.entries["report.csv"];
    assert_eq!(entry.size, 7000);
    assert_eq!(
        entry.headers.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(entry.headers.metadata["version"], "2");
    assert_eq!(contents["report.csv"], replacement);
    // The ETag recorded is the read's: the MD5 of what was stored.
    let held = &client.held("src")["report.csv"];
    assert_eq!(held.size, 7000);
    assert!(entry.etag.is_some());
}

#[test]
fn a_walk_folder_by_folder_lists_exactly_what_one_flat_listing_does() {
    let server = start_server();
    let client = TestClient::new(&server.endpoint);
    client.create_bucket("src");
    let keys = [
        "top.txt",
        "tenant-a/2024/01/a b.csv",
        "tenant-a/2024/01/ü/ö é.json",
        "tenant-a/2024/02/x",
        "tenant-a/readme",
        "tenant-ab/y",
        "tenant-b/deep/er/and/deeper/still/z",
        "zz top/ 1",
    ];
    client.put_all(
        "src",
        keys.iter()
            .enumerate()
            .map(|(i, key)| NewObject {
                key: (*key).into(),
                content: noise(100 + i, i as u64),
                content_type: None,
                metadata: BTreeMap::new(),
            })
            .collect(),
    );
    let relay = HttpRelay::start(&server.endpoint);
    let connect = |listing| {
        let settings = source_settings(&relay.endpoint(), listing);
        BucketClient::connect(&settings, "source.uploads", "src").unwrap()
    };
    let (walk, flat) = (connect(BucketListing::Walk), connect(BucketListing::Flat));
    for prefix in [
        "",
        "tenant-a",
        "tenant-a/",
        "tenant-a/2024/01/",
        "t",
        "nothing/",
    ] {
        relay.reset_counts();
        let walked = walk.list(prefix).unwrap();
        let walk_lists = relay.counts().lists;
        relay.reset_counts();
        let listed = flat.list(prefix).unwrap();
        assert_eq!(relay.counts().lists, 1, "{prefix:?}");
        assert_eq!(walked, listed, "{prefix:?}");
        let expected: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| k.starts_with(prefix))
            .collect();
        let mut expected = expected;
        expected.sort_unstable();
        let got: Vec<&str> = walked.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(got, expected, "{prefix:?}");
        if prefix.is_empty() {
            // The root; tenant-a/, its 2024/, 01/, ü/ and 02/; tenant-ab/; tenant-b/ and the
            // five folders below it; zz top/.
            assert_eq!(walk_lists, 14, "{prefix:?}");
        }
    }
}
