//! The storage conformance suite: one set of tests that every `Storage` backend must pass, and a
//! second set that shows callers which retry still get exactly the repository's invariants
//! through a `FaultyStorage` wrapper around the backend.
//!
//! A test file includes this module (`mod storage_suite;`) and instantiates the tests per
//! backend with [`conformance_tests!`] and [`fault_tests!`], giving a function that makes a fresh,
//! empty store and whatever must live as long as it (a temporary directory, a server). Object
//! store backends reuse it the same way from their own test files.
#![allow(dead_code)]

use std::io::{self, Read};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use tidemark::storage::{
    ByteRange, Cancel, Cut, FaultPlan, FaultyStorage, ObjectKey, PutOutcome, Storage, StorageError,
};

/// Generates one `#[test]` per conformance case for the store `$make()` returns as
/// `(store, keep_alive)`; `@portable` leaves out the cases that are not portable (see
/// [`suite_tests!`]).
macro_rules! conformance_tests {
    ($(@$scope:ident)? $make:expr) => {
        $crate::storage_suite::suite_tests!($($scope)? $make;
            portable: [
                put_then_get_round_trips,
                empty_objects_are_objects,
                a_missing_key_has_no_head_and_reads_are_not_found,
                ranged_gets_at_the_start_middle_and_end_and_past_it,
                puts_are_create_only_and_keep_the_first_object,
                list_prefixes_match_whole_components,
                list_is_sorted_by_key_bytes_with_sizes,
                list_of_an_unknown_prefix_is_empty,
                list_children_names_one_level_once,
                delete_then_get_is_not_found,
                deleting_a_missing_key_is_ok,
                delete_all_deletes_every_key_and_skips_missing_ones,
                streaming_put_and_get_of_a_large_object,
                a_streaming_put_needs_exactly_the_announced_length,
                a_body_that_fails_part_way_leaves_nothing,
                cancelling_a_streaming_put_leaves_no_object,
                cancelling_a_streaming_read_stops_it,
                a_cancelled_list_fails,
            ];
            not_portable: [
                keys_above_or_below_objects_hold_no_object,
                concurrent_create_only_puts_let_exactly_one_win,
            ]
        );
    };
}
pub(crate) use conformance_tests;

/// Generates one `#[test]` per fault-tolerance case, each with a [`FaultyStorage`] around the
/// store `$make()` returns as `(store, keep_alive)`; `@portable` leaves out competing
/// create-only writers, as `conformance_tests!` does.
macro_rules! fault_tests {
    ($(@$scope:ident)? $make:expr) => {
        $crate::storage_suite::suite_tests!(
            $($scope)? $crate::storage_suite::inside_faulty_storage($make);
            portable: [
                retried_puts_store_every_object_exactly_once,
                a_retry_after_a_write_that_took_effect_finds_the_same_bytes,
                reads_under_faults_never_yield_other_bytes,
                retried_deletes_and_lists_converge,
            ];
            not_portable: [competing_writers_under_faults_leave_one_whole_object]
        );
    };
}
pub(crate) use fault_tests;

/// Generates one `#[test]` per case for the store `$make()` returns as `(store, keep_alive)`.
/// With `portable` first it leaves out the `not_portable` cases: those that hold only where the
/// store itself makes create-only puts atomic and keeps keys apart from the files they map to
/// (see storage_conformance_s3.rs).
macro_rules! suite_tests {
    (portable $make:expr;
        portable: [$($case:ident),* $(,)?]; not_portable: [$($other:ident),* $(,)?]) => {
        $crate::storage_suite::suite_tests!(@each $make; $($case),*);
    };
    ($make:expr; portable: [$($case:ident),* $(,)?]; not_portable: [$($other:ident),* $(,)?]) => {
        $crate::storage_suite::suite_tests!(@each $make; $($case,)* $($other),*);
    };
    (@each $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (store, _keep) = ($make)();
                $crate::storage_suite::$case(&store);
            }
        )*
    };
}
pub(crate) use suite_tests;

/// The store `make()` returns inside a [`FaultyStorage`] that injects nothing until a test plans
/// faults, with what must live as long as it.
pub fn inside_faulty_storage<S: Storage, K>(
    make: impl Fn() -> (S, K),
) -> impl Fn() -> (FaultyStorage<S>, K) {
    move || {
        let (inner, keep) = make();
        (FaultyStorage::new(inner, FaultPlan::none()), keep)
    }
}

const MIB: usize = 1 << 20;

fn key(text: &str) -> ObjectKey {
    ObjectKey::new(text).unwrap()
}

fn never() -> Cancel {
    Cancel::never()
}

fn keys(store: &dyn Storage, prefix: &str) -> Vec<String> {
    store
        .list(&key(prefix), &never())
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect()
}

/// `length` bytes that differ with `seed`, produced as [`Generated`] produces them.
fn content(seed: u64, length: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(length);
    Generated::new(seed, length as u64)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// A body of pseudo-random bytes made as it is read, so a large object is never held whole by
/// the test. Each byte depends only on the seed and its position, not on how it is read.
struct Generated {
    seed: u64,
    position: u64,
    length: u64,
}

impl Generated {
    fn new(seed: u64, length: u64) -> Generated {
        Generated {
            seed,
            position: 0,
            length,
        }
    }

    /// The 8 bytes at word `index` (splitmix64 of seed and index).
    fn word(&self, index: u64) -> [u8; 8] {
        let mut z = index
            .wrapping_add(self.seed.wrapping_mul(0xD1B5_4A32_D192_ED03))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).to_le_bytes()
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min((self.length - self.position).min(usize::MAX as u64) as usize);
        let mut filled = 0;
        while filled < n {
            let position = self.position + filled as u64;
            let within = (position % 8) as usize;
            let take = (8 - within).min(n - filled);
            buf[filled..filled + take]
                .copy_from_slice(&self.word(position / 8)[within..within + take]);
            filled += take;
        }
        self.position += n as u64;
        Ok(n)
    }
}

/// Compares a stream with a [`Generated`] body chunk by chunk, without holding either whole.
fn assert_stream_equals(mut got: impl Read, mut expected: Generated) {
    let mut a = vec![0; MIB];
    let mut b = vec![0; MIB];
    let mut offset = 0;
    loop {
        let n = read_full(&mut got, &mut a).unwrap();
        let m = read_full(&mut expected, &mut b[..n.max(1)]).unwrap();
        assert_eq!(n, m, "lengths differ near offset {offset}");
        if n == 0 {
            return;
        }
        assert!(
            a[..n] == b[..n],
            "bytes differ within {n} bytes of offset {offset}"
        );
        offset += n;
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A body that yields `inner` but fails, or cancels a token, after `after` bytes.
struct Interrupting<R> {
    inner: R,
    after: u64,
    then: Interruption,
}

enum Interruption {
    Fail,
    Cancel(Cancel),
}

impl<R: Read> Read for Interrupting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.after == 0 {
            match &self.then {
                Interruption::Fail => {
                    return Err(StorageError::Transient {
                        doing: "read the source".into(),
                        reason: "connection reset by peer".into(),
                    }
                    .into_io());
                }
                // The storage sees the token at its next chunk boundary.
                Interruption::Cancel(cancel) => cancel.cancel(),
            }
        }
        let want = buf
            .len()
            .min(self.after.max(1).min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.after = self.after.saturating_sub(n as u64);
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Conformance: what every backend does.

pub fn put_then_get_round_trips(store: &dyn Storage) {
    let k = key("s/wal/0000000100000000/000000010000000000000001");
    let outcome = store
        .put_if_absent(&k, &[b"hello, ", b"", b"world"])
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(store.get(&k).unwrap(), b"hello, world");
    assert_eq!(store.head(&k).unwrap().unwrap().size, 12);
    let mut streamed = Vec::new();
    store
        .get_reader(&k, ByteRange::ALL, &never())
        .unwrap()
        .read_to_end(&mut streamed)
        .unwrap();
    assert_eq!(streamed, b"hello, world");
    let listed = store.list(&key("s"), &never()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((&listed[0].key, listed[0].size), (&k, 12));

    let streamed_key = key("s/other");
    let bytes = content(1, 100_000);
    stream_new(store, &streamed_key, &bytes);
    assert_eq!(store.get(&streamed_key).unwrap(), bytes);
}

/// Streams `bytes` into a new object at `k`, which must not have existed.
fn stream_new(store: &dyn Storage, k: &ObjectKey, bytes: &[u8]) {
    let outcome = store
        .put_if_absent_from(k, &mut &bytes[..], bytes.len() as u64, &never())
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
}

pub fn empty_objects_are_objects(store: &dyn Storage) {
    let k = key("e/empty");
    assert_eq!(store.put_if_absent(&k, &[]).unwrap(), PutOutcome::Created);
    assert_eq!(store.head(&k).unwrap().unwrap().size, 0);
    assert_eq!(store.get(&k).unwrap(), b"");
    assert_eq!(store.get_range(&k, 0, 10).unwrap(), b"");
    assert_eq!(keys(store, "e"), ["e/empty"]);
    assert_eq!(
        store.put_if_absent(&k, &[b"x"]).unwrap(),
        PutOutcome::AlreadyExists
    );
    let streamed = key("e/streamed");
    let outcome = store
        .put_if_absent_from(&streamed, &mut io::empty(), 0, &never())
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(store.get(&streamed).unwrap(), b"");
}

pub fn a_missing_key_has_no_head_and_reads_are_not_found(store: &dyn Storage) {
    store.put_if_absent(&key("m/present"), &[b"x"]).unwrap();
    let k = key("m/absent");
    assert_eq!(store.head(&k).unwrap(), None);
    let errors = [
        store.get(&k).unwrap_err(),
        store.get_range(&k, 0, 10).unwrap_err(),
        store
            .get_reader(&k, ByteRange::ALL, &never())
            .err()
            .expect("no reader for a missing key"),
    ];
    for err in errors {
        assert!(err.is_not_found(), "{err}");
        assert!(!err.is_retryable(), "{err}");
        assert!(
            err.to_string().starts_with("m/absent does not exist in "),
            "{err}"
        );
    }
}

pub fn ranged_gets_at_the_start_middle_and_end_and_past_it(store: &dyn Storage) {
    let k = key("r/object");
    let bytes: Vec<u8> = (0..100).collect();
    store.put_if_absent(&k, &[&bytes]).unwrap();
    let range = |offset, length| store.get_range(&k, offset, length).unwrap();
    assert_eq!(range(0, 10), bytes[..10]);
    assert_eq!(range(45, 10), bytes[45..55]);
    assert_eq!(range(90, 10), bytes[90..]);
    assert_eq!(
        range(95, 10),
        bytes[95..],
        "a range past the end is cut there"
    );
    assert_eq!(range(0, 1000), bytes);
    assert_eq!(range(100, 10), b"", "a range at the end is empty");
    assert_eq!(range(1000, 10), b"", "a range past the end is empty");
    assert_eq!(range(50, 0), b"");
    let stream = |range| {
        let mut out = Vec::new();
        store
            .get_reader(&k, range, &never())
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    assert_eq!(stream(ByteRange::ALL), bytes);
    assert_eq!(stream(ByteRange::starting_at(97)), bytes[97..]);
    assert_eq!(stream(ByteRange::new(10, 5)), bytes[10..15]);
    assert_eq!(stream(ByteRange::starting_at(200)), b"");
}

pub fn puts_are_create_only_and_keep_the_first_object(store: &dyn Storage) {
    let k = key("c/segment");
    assert_eq!(
        store.put_if_absent(&k, &[b"first"]).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store.put_if_absent(&k, &[b"first"]).unwrap(),
        PutOutcome::AlreadyExists,
        "the same bytes again"
    );
    assert_eq!(
        store.put_if_absent(&k, &[b"second, longer"]).unwrap(),
        PutOutcome::AlreadyExists,
        "different bytes"
    );
    let outcome = store
        .put_if_absent_from(&k, &mut &b"third"[..], 5, &never())
        .unwrap();
    assert_eq!(outcome, PutOutcome::AlreadyExists, "a streaming put");
    assert_eq!(store.get(&k).unwrap(), b"first");
    assert_eq!(store.head(&k).unwrap().unwrap().size, 5);
    assert_eq!(keys(store, "c"), ["c/segment"]);
}

pub fn list_prefixes_match_whole_components(store: &dyn Storage) {
    for k in [
        "a/b/1", "a/b/2/x", "a/bc/1", "a/b-c", "a/b.d", "a/c", "ab/1",
    ] {
        store.put_if_absent(&key(k), &[k.as_bytes()]).unwrap();
    }
    assert_eq!(keys(store, "a/b"), ["a/b/1", "a/b/2/x"]);
    assert_eq!(keys(store, "a/b/2"), ["a/b/2/x"]);
    assert_eq!(keys(store, "a/b/1"), ["a/b/1"], "a key is under itself");
    assert_eq!(keys(store, "a/b-c"), ["a/b-c"]);
    assert_eq!(
        keys(store, "a"),
        ["a/b-c", "a/b.d", "a/b/1", "a/b/2/x", "a/bc/1", "a/c"]
    );
}

pub fn list_is_sorted_by_key_bytes_with_sizes(store: &dyn Storage) {
    // Put in an order unlike the sorted one; byte order puts '-' < '.' < '/' < '0' < 'A' < 'a',
    // which differs from a depth-first walk of directories.
    let puts = ["s/b", "s/a/y/z", "s/A", "s/a0", "s/a/x", "s/a.c", "s/a-b"];
    for (n, k) in puts.iter().enumerate() {
        store.put_if_absent(&key(k), &[&vec![b'x'; n]]).unwrap();
    }
    let listed = store.list(&key("s"), &never()).unwrap();
    let got: Vec<(&str, u64)> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    assert_eq!(
        got,
        [
            ("s/A", 2),
            ("s/a-b", 6),
            ("s/a.c", 5),
            ("s/a/x", 4),
            ("s/a/y/z", 1),
            ("s/a0", 3),
            ("s/b", 0),
        ]
    );
}

pub fn list_of_an_unknown_prefix_is_empty(store: &dyn Storage) {
    assert!(keys(store, "nothing").is_empty(), "an empty store");
    store.put_if_absent(&key("p/q/r"), &[b"x"]).unwrap();
    assert!(keys(store, "nothing/here").is_empty());
    assert!(keys(store, "p/q/r/s").is_empty());
    assert!(keys(store, "p/qq").is_empty());
    assert!(keys(store, "p/q/rr").is_empty());
}

pub fn list_children_names_one_level_once(store: &dyn Storage) {
    for k in [
        "t/b/1", "t/b/2/x", "t/a", "t/a-b/1", "t/c/d/e", "tt/z", "u/t/1",
    ] {
        store.put_if_absent(&key(k), &[k.as_bytes()]).unwrap();
    }
    let children = |prefix: &str| store.list_children(&key(prefix), &never()).unwrap();
    assert_eq!(children("t"), ["a", "a-b", "b", "c"]);
    assert_eq!(children("t/b"), ["1", "2"]);
    assert_eq!(children("t/c/d"), ["e"]);
    assert!(children("t/a").is_empty(), "an object has no children");
    assert!(children("nothing").is_empty());
    assert!(children("t/b/2/x/y").is_empty());
}

pub fn delete_then_get_is_not_found(store: &dyn Storage) {
    store.put_if_absent(&key("d/1"), &[b"one"]).unwrap();
    store.put_if_absent(&key("d/2"), &[b"two"]).unwrap();
    store.delete(&key("d/1")).unwrap();
    assert!(store.get(&key("d/1")).unwrap_err().is_not_found());
    assert_eq!(store.head(&key("d/1")).unwrap(), None);
    assert_eq!(keys(store, "d"), ["d/2"]);
    assert_eq!(store.get(&key("d/2")).unwrap(), b"two");
    // The key is free again.
    assert_eq!(
        store.put_if_absent(&key("d/1"), &[b"new"]).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(store.get(&key("d/1")).unwrap(), b"new");
}

pub fn deleting_a_missing_key_is_ok(store: &dyn Storage) {
    store.delete(&key("never/was")).unwrap();
    store.put_if_absent(&key("once/was"), &[b"x"]).unwrap();
    store.delete(&key("once/was")).unwrap();
    store.delete(&key("once/was")).unwrap();
    assert!(keys(store, "once").is_empty());
}

pub fn delete_all_deletes_every_key_and_skips_missing_ones(store: &dyn Storage) {
    // More than one S3 DeleteObjects request holds, across several directories.
    let mut doomed: Vec<ObjectKey> = (0..1100)
        .map(|n| key(&format!("many/{}/{n:04}", n % 7)))
        .collect();
    for k in &doomed {
        store.put_if_absent(k, &[b"x"]).unwrap();
    }
    store
        .put_if_absent(&key("many/3/kept"), &[b"kept"])
        .unwrap();
    doomed.push(key("many/never/was"));
    store.delete_all(&doomed).unwrap();
    assert_eq!(keys(store, "many"), ["many/3/kept"]);
    store.delete_all(&doomed).unwrap();
    store.delete_all(&[]).unwrap();
    assert_eq!(store.get(&key("many/3/kept")).unwrap(), b"kept");
}

pub fn keys_above_or_below_objects_hold_no_object(store: &dyn Storage) {
    store.put_if_absent(&key("t/a/b"), &[b"leaf"]).unwrap();
    for missing in ["t/a", "t/a/b/c"] {
        let k = key(missing);
        assert_eq!(store.head(&k).unwrap(), None, "{missing}");
        assert!(store.get(&k).unwrap_err().is_not_found(), "{missing}");
        assert!(store.get_range(&k, 0, 1).unwrap_err().is_not_found());
        store.delete(&k).unwrap();
    }
    assert_eq!(store.get(&key("t/a/b")).unwrap(), b"leaf");
    // Once nothing is stored under a key, it can hold an object itself.
    store.delete(&key("t/a/b")).unwrap();
    assert_eq!(
        store.put_if_absent(&key("t/a"), &[b"now a leaf"]).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(keys(store, "t"), ["t/a"]);
}

pub fn streaming_put_and_get_of_a_large_object(store: &dyn Storage) {
    const LENGTH: u64 = 20 * MIB as u64;
    let k = key("big/base.tar");
    let outcome = store
        .put_if_absent_from(&k, &mut Generated::new(20, LENGTH), LENGTH, &never())
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(store.head(&k).unwrap().unwrap().size, LENGTH);
    let reader = store.get_reader(&k, ByteRange::ALL, &never()).unwrap();
    assert_stream_equals(reader, Generated::new(20, LENGTH));
    // A range in the middle of it, spanning chunk boundaries.
    let whole = content(20, LENGTH as usize);
    let (offset, length) = (3 * MIB as u64 - 5, 2 * MIB as u64 + 11);
    let range = store.get_range(&k, offset, length).unwrap();
    assert!(range == whole[offset as usize..(offset + length) as usize]);
    assert!(store.get(&k).unwrap() == whole);
}

pub fn a_streaming_put_needs_exactly_the_announced_length(store: &dyn Storage) {
    let k = key("l/object");
    let bytes = content(3, 1000);
    let short = store
        .put_if_absent_from(&k, &mut &bytes[..999], 1000, &never())
        .unwrap_err();
    assert!(!short.is_retryable(), "{short}");
    assert!(
        short
            .to_string()
            .ends_with("the body ended after 999 of the 1000 bytes announced"),
        "{short}"
    );
    let long = store
        .put_if_absent_from(&k, &mut &bytes[..], 999, &never())
        .unwrap_err();
    assert!(
        long.to_string()
            .ends_with("the body is longer than the 999 bytes announced"),
        "{long}"
    );
    assert_eq!(store.head(&k).unwrap(), None);
    assert!(keys(store, "l").is_empty());
    stream_new(store, &k, &bytes);
    assert_eq!(store.get(&k).unwrap(), bytes);
}

pub fn a_body_that_fails_part_way_leaves_nothing(store: &dyn Storage) {
    let k = key("f/object");
    let mut body = Interrupting {
        inner: Generated::new(4, 3 * MIB as u64),
        after: MIB as u64 + 3,
        then: Interruption::Fail,
    };
    let err = store
        .put_if_absent_from(&k, &mut body, 3 * MIB as u64, &never())
        .unwrap_err();
    assert!(err.is_retryable(), "the body's own error comes back: {err}");
    assert!(
        err.to_string().contains("connection reset by peer"),
        "{err}"
    );
    assert_eq!(store.head(&k).unwrap(), None);
    assert!(keys(store, "f").is_empty());
}

/// Starts `writers` threads that each make their own bytes with `bytes_of(writer)`, wait for
/// one another, then all store them at once with `put(writer, bytes)`; returns each writer's
/// outcome with its bytes.
fn racing_puts(
    writers: usize,
    bytes_of: impl Fn(usize) -> Vec<u8> + Sync,
    put: impl Fn(usize, &[u8]) -> PutOutcome + Sync,
) -> Vec<(PutOutcome, Vec<u8>)> {
    let barrier = Barrier::new(writers);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for writer in 0..writers {
            let (barrier, outcomes, bytes_of, put) = (&barrier, &outcomes, &bytes_of, &put);
            scope.spawn(move || {
                let bytes = bytes_of(writer);
                barrier.wait();
                let outcome = put(writer, &bytes);
                outcomes.lock().unwrap().push((outcome, bytes));
            });
        }
    });
    outcomes.into_inner().unwrap()
}

pub fn concurrent_create_only_puts_let_exactly_one_win(store: &dyn Storage) {
    const WRITERS: usize = 8;
    for round in 0..4u64 {
        let k = key(&format!("race/{round}"));
        let outcomes = racing_puts(
            WRITERS,
            |writer| content(round * 100 + writer as u64, 64 * 1024 + writer),
            // Half the writers stream, half put from memory: both paths race.
            |writer, bytes| {
                if writer % 2 == 0 {
                    store.put_if_absent(&k, &[bytes]).unwrap()
                } else {
                    let length = bytes.len() as u64;
                    store
                        .put_if_absent_from(&k, &mut &bytes[..], length, &never())
                        .unwrap()
                }
            },
        );
        let winners: Vec<_> = outcomes
            .iter()
            .filter(|(outcome, _)| *outcome == PutOutcome::Created)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one put creates");
        assert!(
            store.get(&k).unwrap() == winners[0].1,
            "the winner's bytes are stored"
        );
        assert_eq!(keys(store, "race").len(), round as usize + 1);
    }
}

pub fn cancelling_a_streaming_put_leaves_no_object(store: &dyn Storage) {
    let k = key("x/object");
    const LENGTH: u64 = 8 * MIB as u64;
    let cancel = Cancel::new();
    let mut body = Interrupting {
        inner: Generated::new(5, LENGTH),
        after: 2 * MIB as u64,
        then: Interruption::Cancel(cancel.clone()),
    };
    let err = store
        .put_if_absent_from(&k, &mut body, LENGTH, &cancel)
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(store.head(&k).unwrap(), None);
    assert!(keys(store, "x").is_empty());
    // A token cancelled before the put starts stops it at once.
    let err = store
        .put_if_absent_from(&k, &mut Generated::new(5, 10), 10, &cancel)
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(store.head(&k).unwrap(), None);
    // Nothing is in the way of the next put.
    let outcome = store
        .put_if_absent_from(&k, &mut Generated::new(5, LENGTH), LENGTH, &Cancel::new())
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
}

pub fn cancelling_a_streaming_read_stops_it(store: &dyn Storage) {
    let k = key("y/object");
    const LENGTH: u64 = 4 * MIB as u64;
    store
        .put_if_absent_from(&k, &mut Generated::new(6, LENGTH), LENGTH, &never())
        .unwrap();
    let cancel = Cancel::new();
    let mut reader = store.get_reader(&k, ByteRange::ALL, &cancel).unwrap();
    let mut first = vec![0; 1024];
    reader.read_exact(&mut first).unwrap();
    cancel.cancel();
    let mut rest = Vec::new();
    let err = reader.read_to_end(&mut rest).unwrap_err();
    assert!(
        (rest.len() as u64) < LENGTH,
        "the read stops before the end"
    );
    let err = StorageError::from_io("read the rest", err);
    assert!(err.is_cancelled(), "{err}");
    // The object is untouched by a cancelled read.
    assert_eq!(store.head(&k).unwrap().unwrap().size, LENGTH);
}

pub fn a_cancelled_list_fails(store: &dyn Storage) {
    store.put_if_absent(&key("z/1"), &[b"x"]).unwrap();
    let cancel = Cancel::new();
    cancel.cancel();
    let err = store.list(&key("z"), &cancel).unwrap_err();
    assert!(err.is_cancelled(), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Fault tolerance: what callers that retry get through a backend that fails.

/// Runs `operation` until it stops failing with a retryable error, asserting that no other
/// error comes; returns its result and how many attempts failed.
fn retry<T>(mut operation: impl FnMut() -> Result<T, StorageError>) -> (T, u32) {
    for failures in 0..200 {
        match operation() {
            Ok(value) => return (value, failures),
            Err(e) => assert!(e.is_retryable(), "only retryable errors are injected: {e}"),
        }
    }
    panic!("200 attempts in a row failed");
}

/// Reads a whole object as a careful caller does: retrying failures and checking the length
/// against `head`, since a cut transfer can look like a short success.
fn read_checked(store: &dyn Storage, k: &ObjectKey) -> Vec<u8> {
    loop {
        let (size, _) = retry(|| store.head(k));
        let size = size.expect("the object exists").size;
        let (bytes, _) = retry(|| store.get(k));
        if bytes.len() as u64 == size {
            return bytes;
        }
    }
}

/// The object under `k` in the store behind the faults: none, or exactly `expected`.
fn assert_absent_or_whole<S: Storage>(store: &FaultyStorage<S>, k: &ObjectKey, expected: &[u8]) {
    match store.inner().get(k) {
        Ok(stored) => assert!(stored == expected, "{k}: a partial or different object"),
        Err(e) => assert!(e.is_not_found(), "{e}"),
    }
}

pub fn retried_puts_store_every_object_exactly_once<S: Storage>(store: &FaultyStorage<S>) {
    store.set_plan(FaultPlan::failing(0.35, 61).with_cut(Cut::Fail));
    const OBJECTS: u64 = 100;
    let mut found_existing = 0;
    for n in 0..OBJECTS {
        let k = key(&format!("w/{n:03}"));
        let bytes = content(n, 1000 + 5000 * (n as usize % 7));
        let outcome = loop {
            let attempt = if n % 2 == 0 {
                store.put_if_absent(&k, &[&bytes[..10], &bytes[10..]])
            } else {
                store.put_if_absent_from(&k, &mut &bytes[..], bytes.len() as u64, &never())
            };
            match attempt {
                Ok(outcome) => break outcome,
                Err(e) => {
                    assert!(e.is_retryable(), "{e}");
                    assert_absent_or_whole(store, &k, &bytes);
                }
            }
        };
        if outcome == PutOutcome::AlreadyExists {
            // Only an earlier attempt of this caller can have stored it: the same bytes.
            found_existing += 1;
            assert!(read_checked(store, &k) == bytes);
        }
    }
    store.set_plan(FaultPlan::none());
    let listed = store.inner().list(&key("w"), &never()).unwrap();
    assert_eq!(
        listed.len(),
        OBJECTS as usize,
        "no extra and no missing object"
    );
    for (n, object) in listed.iter().enumerate() {
        let bytes = content(n as u64, 1000 + 5000 * (n % 7));
        assert_eq!(object.key.as_str(), format!("w/{n:03}"));
        assert!(
            store.inner().get(&object.key).unwrap() == bytes,
            "{}",
            object.key
        );
    }
    let counts = store.counts();
    assert!(
        counts.failed_before > 0 && counts.failed_after > 0 && counts.writes_cut > 0,
        "every kind of fault struck: {counts:?}"
    );
    assert!(
        found_existing > 0 && found_existing <= counts.failed_after,
        "a retry finds the object only where a write took effect and its answer was lost: {found_existing} vs {counts:?}"
    );
}

pub fn a_retry_after_a_write_that_took_effect_finds_the_same_bytes<S: Storage>(
    store: &FaultyStorage<S>,
) {
    let k = key("a/segment");
    store.set_plan(FaultPlan {
        failure_share: 1.0,
        after_effect: true,
        ..FaultPlan::none()
    });
    let err = store.put_if_absent(&k, &[b"archived"]).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("after the operation took effect"),
        "{err}"
    );
    store.set_plan(FaultPlan::none());
    assert_eq!(
        store.put_if_absent(&k, &[b"archived"]).unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(store.get(&k).unwrap(), b"archived");
    // Different bytes find the first object there and leave it alone.
    assert_eq!(
        store
            .put_if_absent_from(&k, &mut &b"imposter"[..], 8, &never())
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(store.get(&k).unwrap(), b"archived");
    assert_eq!(store.counts().failed_after, 1);
}

pub fn competing_writers_under_faults_leave_one_whole_object<S: Storage>(store: &FaultyStorage<S>) {
    store.set_plan(
        FaultPlan::failing(0.3, 7)
            .with_cut(Cut::Fail)
            .with_delays(0.3, Duration::from_millis(2)),
    );
    const WRITERS: usize = 4;
    for round in 0..10u64 {
        let k = key(&format!("race/{round}"));
        let outcomes = racing_puts(
            WRITERS,
            |writer| content(round * 10 + writer as u64, 20_000 + writer),
            |_, bytes| {
                let length = bytes.len() as u64;
                retry(|| store.put_if_absent_from(&k, &mut &bytes[..], length, &never())).0
            },
        );
        let stored = store.inner().get(&k).unwrap();
        let owners = outcomes
            .iter()
            .filter(|(_, bytes)| *bytes == stored)
            .count();
        assert_eq!(
            owners, 1,
            "round {round}: the stored object is one writer's, whole"
        );
        let created: Vec<_> = outcomes
            .iter()
            .filter(|(outcome, _)| *outcome == PutOutcome::Created)
            .collect();
        assert!(created.len() <= 1, "round {round}: at most one put creates");
        if let Some((_, bytes)) = created.first() {
            assert!(
                *bytes == stored,
                "round {round}: a writer told Created owns the object"
            );
        }
    }
    store.set_plan(FaultPlan::none());
    assert_eq!(keys(store.inner(), "race").len(), 10);
    assert!(store.counts().failures() > 0);
}

pub fn reads_under_faults_never_yield_other_bytes<S: Storage>(store: &FaultyStorage<S>) {
    let sizes = [1usize, 1000, 300_000, MIB + 17];
    for (n, size) in sizes.iter().enumerate() {
        let k = key(&format!("g/{n}"));
        store
            .inner()
            .put_if_absent(&k, &[&content(n as u64, *size)])
            .unwrap();
    }
    for (cut, seed) in [(Cut::Truncate, 11), (Cut::Fail, 12)] {
        store.set_plan(FaultPlan::failing(0.4, seed).with_cut(cut));
        for round in 0..40usize {
            let n = round % sizes.len();
            let k = key(&format!("g/{n}"));
            let expected = content(n as u64, sizes[n]);
            match store.get(&k) {
                Ok(got) => assert!(
                    expected.starts_with(&got),
                    "a read yields the object or a prefix of it"
                ),
                Err(e) => assert!(e.is_retryable(), "{e}"),
            }
            let offset = (round * 7919 % sizes[n]) as u64;
            let (start, end) = ByteRange::new(offset, 5000).within(sizes[n] as u64);
            match store.get_range(&k, offset, 5000) {
                Ok(got) => assert!(expected[start as usize..end as usize].starts_with(&got)),
                Err(e) => assert!(e.is_retryable(), "{e}"),
            }
            assert!(
                read_checked(store, &k) == expected,
                "a careful reader gets it whole"
            );
        }
    }
    let counts = store.counts();
    assert!(
        counts.reads_truncated > 0 && counts.reads_cut > 0,
        "both kinds of cut struck: {counts:?}"
    );
}

pub fn retried_deletes_and_lists_converge<S: Storage>(store: &FaultyStorage<S>) {
    for n in 0..20 {
        store
            .inner()
            .put_if_absent(&key(&format!("del/{n:02}")), &[b"x"])
            .unwrap();
    }
    store.set_plan(FaultPlan::failing(0.4, 5));
    let (listed, _) = retry(|| store.list(&key("del"), &never()));
    assert_eq!(listed.len(), 20);
    for object in &listed {
        retry(|| store.delete(&object.key));
        assert_eq!(store.inner().head(&object.key).unwrap(), None);
    }
    let (listed, _) = retry(|| store.list(&key("del"), &never()));
    assert!(listed.is_empty());
    let counts = store.counts();
    assert!(
        counts.failed_after > 0 && counts.failed_before > 0,
        "{counts:?}"
    );
}
