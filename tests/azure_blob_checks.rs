//! What the Azure Blob backend promises beyond the conformance suite, on Azurite: every put's
//! bytes are checked by the service (Put Blob against its `Content-MD5`, each block against its
//! CRC-64), so bytes damaged on the way are refused and nothing is stored; a whole read is
//! checked against the blob's MD5 (recorded for block uploads too), so damaged bytes are never
//! handed on as the blob; racing block uploads of one name commit exactly one blob; and
//! listings go on past the service's 5000-name pages.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use common::azure::{AzuriteServer, start_azurite, test_container, test_settings};
use tidemark::storage::{
    AzureStorage, ByteRange, Cancel, ObjectKey, PutOutcome, Storage, StorageError,
};

fn key(text: &str) -> ObjectKey {
    ObjectKey::new(text).unwrap()
}

/// `length` bytes that differ with `seed`.
fn bytes(seed: u64, length: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..length).map(|_| rng.u8(..)).collect()
}

/// Which way the relay damages a byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// In the body of the first request that has one past `AT`.
    Request,
    /// In the body of the first response that has one past `AT`.
    Response,
}

/// How far into a message's body the damaged byte is.
const AT: usize = 1000;

/// A TCP relay to Azurite that flips one bit of one message body, once, and passes everything
/// else through as it is.
fn damaging_relay(server: &AzuriteServer, damage: Damage) -> String {
    let target = server
        .blob_endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let server = TcpStream::connect(&target).unwrap();
            let (to_server, to_client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            let (up, down) = (Arc::clone(&done), Arc::clone(&done));
            let damage_up = (damage == Damage::Request).then_some(up);
            let damage_down = (damage == Damage::Response).then_some(down);
            std::thread::spawn(move || pass(client, to_server, damage_up));
            std::thread::spawn(move || pass(server, to_client, damage_down));
        }
    });
    format!("http://127.0.0.1:{port}/{}", common::azure::ACCOUNT)
}

/// Copies `from` to `to`; when `damage` is given and not yet done, flips a bit of the byte
/// `AT` bytes past the end of the first message head on this stream.
fn pass(mut from: TcpStream, mut to: TcpStream, damage: Option<Arc<AtomicBool>>) {
    let mut buffer = vec![0; 64 * 1024];
    let mut seen: Vec<u8> = Vec::new();
    let mut body_start: Option<usize> = None;
    let mut total = 0;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(done) = &damage
            && !done.load(Ordering::SeqCst)
        {
            if body_start.is_none() {
                seen.extend_from_slice(&buffer[..n]);
                body_start = seen
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|at| at + 4);
            }
            if let Some(start) = body_start {
                let target = start + AT;
                if (total..total + n).contains(&target) && !done.swap(true, Ordering::SeqCst) {
                    buffer[target - total] ^= 0x01;
                }
            }
        }
        total += n;
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A store reaching the server through `endpoint`, blocks of 1 MiB.
fn store_at(endpoint: &str) -> AzureStorage {
    AzureStorage::new(test_settings(endpoint, "checks")).unwrap()
}

#[test]
fn bytes_damaged_on_the_way_up_are_refused_and_nothing_is_stored() {
    let server = start_azurite();
    let direct = test_container(&server, "checks");
    // One Put Blob (checked against its Content-MD5), then blocks (each against its CRC-64).
    for (name, length, refusal) in [
        ("small", 64 * 1024, "Md5Mismatch"),
        ("large", 3 << 20, "Crc64Mismatch"),
    ] {
        let store = store_at(&damaging_relay(&server, Damage::Request));
        let err = store
            .put_if_absent(&key(name), &[&bytes(1, length)])
            .unwrap_err();
        assert!(err.to_string().contains(refusal), "{name}: {err}");
        assert_eq!(direct.head(&key(name)).unwrap(), None, "{name}");
        // The same put with nothing in the way is stored.
        assert_eq!(
            direct
                .put_if_absent(&key(name), &[&bytes(1, length)])
                .unwrap(),
            PutOutcome::Created
        );
    }
}

#[test]
fn a_whole_read_of_damaged_bytes_fails_at_its_end() {
    let server = start_azurite();
    let direct = test_container(&server, "checks");
    // Past 4 MiB: Azurite works out an MD5 for a whole read of up to 4 MiB of a blob that has
    // none (Azure does not), which would hide a block upload that recorded none.
    for (name, length) in [("small", 64 * 1024), ("large", 5 << 20)] {
        let original = bytes(2, length);
        direct.put_if_absent(&key(name), &[&original]).unwrap();
        let store = store_at(&damaging_relay(&server, Damage::Response));
        let mut reader = store
            .get_reader(&key(name), ByteRange::ALL, &Cancel::never())
            .unwrap();
        let mut read = Vec::new();
        let err = reader.read_to_end(&mut read).unwrap_err();
        let err = StorageError::from_io("read", err);
        assert!(
            err.to_string().contains("the blob's Content-MD5 is")
                && err.to_string().contains("damaged in storage or on the way"),
            "{name}: {err}"
        );
        assert!(!err.is_retryable());
        // Undamaged, the same read passes its check.
        assert!(direct.get(&key(name)).unwrap() == original, "{name}");
    }
}

#[test]
fn a_block_upload_never_replaces_a_blob() {
    let server = start_azurite();
    let store = test_container(&server, "taken");
    let first = bytes(3, 3 << 20);
    let k = key("big");
    assert_eq!(
        store.put_if_absent(&k, &[&first]).unwrap(),
        PutOutcome::Created
    );
    for other in [bytes(4, 3 << 20), bytes(5, 5 << 20)] {
        let outcome = store
            .put_if_absent_from(&k, &mut &other[..], other.len() as u64, &Cancel::never())
            .unwrap();
        assert_eq!(outcome, PutOutcome::AlreadyExists);
    }
    assert!(store.get(&k).unwrap() == first);
}

#[test]
fn racing_block_uploads_of_one_name_commit_exactly_one_blob() {
    let server = start_azurite();
    let store = test_container(&server, "race");
    const WRITERS: usize = 4;
    for round in 0..3u64 {
        let k = key(&format!("big/{round}"));
        let barrier = Barrier::new(WRITERS);
        let outcomes = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for writer in 0..WRITERS {
                let (store, k, barrier, outcomes) = (&store, &k, &barrier, &outcomes);
                scope.spawn(move || {
                    // Three blocks of 1 MiB and a bit: every writer's own bytes.
                    let mine = bytes(round * 10 + writer as u64, (3 << 20) + writer);
                    barrier.wait();
                    let outcome = store
                        .put_if_absent_from(k, &mut &mine[..], mine.len() as u64, &Cancel::never())
                        .unwrap();
                    outcomes.lock().unwrap().push((outcome, mine));
                });
            }
        });
        let outcomes = outcomes.into_inner().unwrap();
        let winners: Vec<_> = outcomes
            .iter()
            .filter(|(outcome, _)| *outcome == PutOutcome::Created)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one commit creates"
        );
        assert!(store.get(&k).unwrap() == winners[0].1, "the winner's bytes");
    }
}

#[test]
fn listings_go_on_past_a_page() {
    let server = start_azurite();
    let store = test_container(&server, "many");
    const BLOBS: usize = 5050;
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= BLOBS {
                        break;
                    }
                    let k = key(&format!("d/{:02}/{i:05}", i % 60));
                    store.put_if_absent(&k, &[b"x"]).unwrap();
                }
            });
        }
    });
    let listed = store.list(&key("d"), &Cancel::never()).unwrap();
    assert_eq!(listed.len(), BLOBS);
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
    let children = store.list_children(&key("d"), &Cancel::never()).unwrap();
    assert_eq!(children.len(), 60);
}
