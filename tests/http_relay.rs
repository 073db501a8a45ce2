//! The test kit's HTTP relay (`testkit::http_relay`) in front of a real `s3s-fs`, driven by
//! Tidemark's own S3 client: every request passes and is counted by kind, object GETs with the
//! keys they read; with a share of 1 every object GET fails, by each kind of fault, and the
//! client's reads fail for the reason that kind gives; with a share of 0 they pass again.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::s3::{start_server, test_settings};
use testkit::http_relay::{FaultKind, HttpRelay, RequestCounts};
use tidemark::storage::{Cancel, ObjectKey, PutOutcome, S3Storage, Storage};

const PREFIX: &str = "relayed";

/// Three objects: a small one, one of a few network buffers, and a single byte.
fn objects() -> Vec<(ObjectKey, Vec<u8>)> {
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    vec![
        (
            ObjectKey::new("wal/one").unwrap(),
            b"the first object".to_vec(),
        ),
        (ObjectKey::new("wal/two").unwrap(), large),
        (ObjectKey::new("three").unwrap(), b"3".to_vec()),
    ]
}

fn through(relay: &HttpRelay) -> S3Storage {
    S3Storage::new(test_settings(&relay.endpoint(), PREFIX)).unwrap()
}

/// The bucket's key of a storage key: the relay sees the prefix too.
fn bucket_key(key: &ObjectKey) -> String {
    format!("{PREFIX}/{}", key.as_str())
}

#[test]
fn requests_pass_through_and_are_counted_by_kind() {
    let server = start_server();
    let relay = HttpRelay::start(&server.endpoint);
    let bucket = through(&relay);
    let objects = objects();

    for (key, bytes) in &objects {
        assert!(matches!(
            bucket.put_if_absent(key, &[bytes]),
            Ok(PutOutcome::Created)
        ));
    }
    // The server's answer to a put on a taken key passes back too.
    let (first, _) = &objects[0];
    assert!(matches!(
        bucket.put_if_absent(first, &[b"other bytes"]),
        Ok(PutOutcome::AlreadyExists)
    ));
    assert_eq!(relay.counts(), counts(0, 0, 0, 4));

    let listed: Vec<String> = bucket
        .list(&ObjectKey::new("wal").unwrap(), &Cancel::never())
        .unwrap()
        .into_iter()
        .map(|object| object.key.as_str().to_owned())
        .collect();
    assert_eq!(listed, ["wal/one", "wal/two"]);
    let size = bucket.head(&objects[1].0).unwrap().unwrap().size;
    assert_eq!(size, objects[1].1.len() as u64);
    assert_eq!(relay.counts(), counts(0, 1, 1, 4));

    for (key, bytes) in &objects {
        assert!(bucket.get(key).unwrap() == *bytes, "{key} read back");
    }
    assert_eq!(relay.counts(), counts(3, 1, 1, 4));
    let keys: Vec<String> = objects.iter().map(|(key, _)| bucket_key(key)).collect();
    assert_eq!(relay.object_get_keys(), keys);
    assert_eq!(relay.faults_injected(), 0);

    relay.reset_counts();
    assert_eq!(relay.counts(), RequestCounts::default());
    assert_eq!(relay.object_get_keys(), Vec::<String>::new());
    assert_eq!(bucket.get(&objects[2].0).unwrap(), b"3");
    assert_eq!(relay.counts(), counts(1, 0, 0, 0));
}

#[test]
fn each_kind_of_fault_fails_every_object_get_until_the_share_is_zero_again() {
    let server = start_server();
    let relay = HttpRelay::start(&server.endpoint);
    let bucket = through(&relay);
    let objects = objects();
    for (key, bytes) in &objects {
        bucket.put_if_absent(key, &[bytes]).unwrap();
    }
    let (key, bytes) = &objects[1];

    // What the client says when each kind strikes every attempt it makes.
    let kinds = [
        (FaultKind::CloseWithoutResponse, "cannot reach the endpoint"),
        (FaultKind::InternalError, "(InternalError)"),
        (FaultKind::TruncatedBody, "the body broke off"),
    ];
    for (seed, (kind, says)) in kinds.into_iter().enumerate() {
        relay.set_get_faults_of(kind, 1.0, seed as u64);
        let failed = faults_strike_every_object_get(&relay, || bucket.get(key));
        assert!(failed.contains(says), "{kind:?}: {failed}");
        assert!(relay.faults_of(kind) > 0, "{kind:?}");
    }
    // Other requests pass under the same plan.
    assert_eq!(bucket.head(key).unwrap().unwrap().size, bytes.len() as u64);

    relay.set_get_faults(1.0, 99);
    for (key, _) in &objects {
        faults_strike_every_object_get(&relay, || bucket.get(key));
    }

    relay.set_get_faults(0.0, 0);
    let injected = relay.faults_injected();
    for (key, bytes) in &objects {
        assert!(bucket.get(key).unwrap() == *bytes, "{key} read back");
    }
    assert_eq!(relay.faults_injected(), injected);
}

#[test]
fn a_dropped_relay_cuts_its_connections_and_stops_listening() {
    let server = start_server();
    let relay = HttpRelay::start(&server.endpoint);
    let address = relay.endpoint().trim_start_matches("http://").to_owned();
    // A client part-way through its request: the relay waits (up to 30 s) for the rest.
    let mut client = TcpStream::connect(&address).unwrap();
    client
        .write_all(b"GET /archive/x HTTP/1.1\r\nHost: ")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let dropping = Instant::now();
    drop(relay);
    assert!(
        dropping.elapsed() < Duration::from_secs(5),
        "the drop waited"
    );
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8];
    match client.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the client's connection was not cut: {other:?}"),
    }
    assert!(TcpStream::connect(&address).is_err());
}

/// Runs `read`, which must fail with every object GET it makes struck by a fault (one for
/// each of the client's attempts); returns its error.
fn faults_strike_every_object_get<T: std::fmt::Debug>(
    relay: &HttpRelay,
    read: impl FnOnce() -> Result<T, tidemark::storage::StorageError>,
) -> String {
    let (gets, injected) = (relay.counts().object_gets, relay.faults_injected());
    let error = read().expect_err("a read with every GET failed");
    let gets = relay.counts().object_gets - gets;
    let injected = relay.faults_injected() - injected;
    assert!(
        gets >= 1 && injected == gets,
        "{injected} faults in {gets} GETs"
    );
    error.to_string()
}

fn counts(object_gets: u64, lists: u64, heads: u64, others: u64) -> RequestCounts {
    RequestCounts {
        object_gets,
        lists,
        heads,
        others,
    }
}
