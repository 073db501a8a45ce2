//! Hostile input: every decoder of what Tidemark reads from a repository, a server or a file is
//! fed real inputs mutated by proptest — bit flips, truncation, splices of another input, chunks
//! reordered or duplicated, and length fields at known offsets set to 0, 1, 2^31, u32::MAX and
//! u64::MAX — and must return an error or (for checksummed objects) exactly the original bytes,
//! never panic, never accept a WAL record whose CRC fails, and never allocate without bound: a
//! counting global allocator holds each decode to 4 × its input + 64 MiB at its peak and to no
//! single allocation over 64 MiB.
//!
//! The inputs are real: WAL segments (1 MiB) archived by a real PostgreSQL 15 through
//! `tidemark-archive`, the repository a real `tidemark backup` of it wrote (every stored object:
//! WAL, index entries and packs, backup record, manifest, chunks, `stanza.json`), and the tar
//! archive and manifest `pg_basebackup -Ft` writes, framed as the BASE_BACKUP messages of
//! PostgreSQL 15 and 14. They are made once per run. The stored objects are also sealed (format
//! version 2, as an encrypted repository stores them), and a sealed object must open to exactly
//! what was sealed under its name or not at all, even with its CRCs forged. Keyrings written by
//! a real create and two rotations must be refused when altered, or open to one that was written.
//!
//! `PROPTEST_CASES` sets the cases per decoder (default 2,000 here); `hostile_input_long`
//! (ignored) runs 100,000 per decoder. The random seed is printed; `TIDEMARK_TEST_SEED` repeats
//! it. Failing cases are kept in `tests/hostile_input.proptest-regressions`.
//!
//! A missing PostgreSQL fails these tests: nothing is skipped.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::Context;
use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, RngSeed, TestCaseError, TestRunner,
};
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::{Lab, owner_command};
use tidemark::backup::splitter::split_archive;
use tidemark::pg::backup_manifest::BackupManifest;
use tidemark::pg::history::TimelineHistory;
use tidemark::pg::segment_check::{CHUNK_ALIGNMENT, ExpectedCluster, SegmentChecker, SegmentKind};
use tidemark::pg::wal::RecordWalker;
use tidemark::pg::{PgMajor, SegmentName, SegmentSize, TimelineId, WalFileName};
use tidemark::protocol::base_backup::{BackupEvent, BaseBackupDecoder};
use tidemark::repo::codec::{Codec, FixedKeys, WriteSettings};
use tidemark::repo::crypto::DataKey;
use tidemark::repo::keys::{
    KEYS_DIR, KeySource, Keyring, KeyringDocument, RepoKeys, Secret, parse_key_file,
};
use tidemark::repo::lock::{LockKind, LockRecord};
use tidemark::repo::{Compression, Repository, StanzaIdentity, test_repository};
use tidemark::repo::{limits, object};
use tidemark::storage::ObjectKey;
use tidemark::storage::memory::MemoryStorage;

// ---------------------------------------------------------------------------------------------
// The counting allocator.

/// Counts, per thread, the bytes allocated now, the peak since the last reset, and the largest
/// single allocation; each decode runs on one thread, so other tests running beside it do not
/// disturb its figures.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    // `try_with`: allocations while the thread's locals are torn down are not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
    });
}

fn note_free(size: usize) {
    // Saturating: memory allocated on another thread may be freed here.
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;
/// No single allocation of a decode may be larger.
const LARGEST_ALLOCATION: usize = 64 * MIB;

/// Runs `decode` of an input of `input_len` bytes and checks what it allocated: at its peak at
/// most 4 × the input + 64 MiB more than before it, and no single allocation over 64 MiB.
fn bounded<T>(
    what: &str,
    input_len: usize,
    decode: impl FnOnce() -> T,
) -> Result<T, TestCaseError> {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    LARGEST.with(|largest| largest.set(0));
    let result = decode();
    let peak = PEAK.with(Cell::get) - before;
    let largest = LARGEST.with(Cell::get);
    let allowed = 4 * input_len + 64 * MIB;
    prop_assert!(
        peak <= allowed,
        "{what}: {peak} bytes allocated at the peak for {input_len} bytes of input (at most {allowed})"
    );
    prop_assert!(
        largest <= LARGEST_ALLOCATION,
        "{what}: one allocation of {largest} bytes for {input_len} bytes of input"
    );
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// Where a length field lies in a seed and how wide it is (little- or big-endian).
#[derive(Clone, Copy, Debug)]
struct LengthField {
    offset: usize,
    width: usize,
    big_endian: bool,
}

/// One change to an input. Positions are fractions of the input's length (in 1/2^32), so one
/// strategy serves inputs of every size.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBits {
        at: u32,
        mask: u8,
    },
    Truncate {
        keep: u32,
    },
    /// Bytes `[from, from + len)` of another seed written over this input at `to`.
    Splice {
        other: usize,
        from: u32,
        len: u16,
        to: u32,
    },
    /// Two chunks of 64 KiB (or of a sixteenth of a small input) swapped.
    SwapChunks {
        a: u32,
        b: u32,
    },
    /// A chunk written again after itself, the input growing.
    DuplicateChunk {
        at: u32,
    },
    /// A known length field set to a value that breaks assumptions.
    Length {
        field: usize,
        value: u64,
    },
}

const HOSTILE_LENGTHS: [u64; 5] = [0, 1, 1 << 31, u32::MAX as u64, u64::MAX];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<u32>(), 1u8..=255).prop_map(|(at, mask)| Mutation::FlipBits { at, mask }),
        1 => any::<u32>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => (any::<usize>(), any::<u32>(), any::<u16>(), any::<u32>())
            .prop_map(|(other, from, len, to)| Mutation::Splice { other, from, len, to }),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Mutation::SwapChunks { a, b }),
        1 => any::<u32>().prop_map(|at| Mutation::DuplicateChunk { at }),
        3 => (any::<usize>(), prop::sample::select(&HOSTILE_LENGTHS[..]))
            .prop_map(|(field, value)| Mutation::Length { field, value }),
    ]
}

/// A seed and up to eight mutations of it (none: the seed itself, which must pass as well).
fn case() -> impl Strategy<Value = (usize, Vec<Mutation>)> {
    (any::<usize>(), prop::collection::vec(mutation(), 0..=8))
}

fn scaled(fraction: u32, len: usize) -> usize {
    ((fraction as u64 * len as u64) >> 32) as usize
}

/// A seed input with the length fields mutations may target.
#[derive(Clone, Debug)]
struct Seed {
    bytes: Vec<u8>,
    lengths: Vec<LengthField>,
}

impl Seed {
    fn plain(bytes: Vec<u8>) -> Seed {
        Seed {
            bytes,
            lengths: Vec::new(),
        }
    }
}

fn apply(seeds: &[Seed], seed: &Seed, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.bytes.clone();
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let len = bytes.len();
        match *m {
            Mutation::FlipBits { at, mask } => bytes[scaled(at, len)] ^= mask,
            Mutation::Truncate { keep } => bytes.truncate(scaled(keep, len)),
            Mutation::Splice {
                other,
                from,
                len: n,
                to,
            } => {
                let source = &seeds[other % seeds.len()].bytes;
                if source.is_empty() {
                    continue;
                }
                let from = scaled(from, source.len());
                let n = usize::from(n).min(source.len() - from);
                let to = scaled(to, len);
                let n = n.min(len - to);
                bytes[to..to + n].copy_from_slice(&source[from..from + n]);
            }
            Mutation::SwapChunks { a, b } => {
                let chunk = (64 << 10).min(len / 16).max(1);
                let chunks = len / chunk;
                if chunks < 2 {
                    continue;
                }
                let (a, b) = (scaled(a, chunks), scaled(b, chunks));
                if a != b {
                    let (low, high) = (a.min(b) * chunk, a.max(b) * chunk);
                    let (head, tail) = bytes.split_at_mut(high);
                    head[low..low + chunk].swap_with_slice(&mut tail[..chunk]);
                }
            }
            Mutation::DuplicateChunk { at } => {
                let chunk = (64 << 10).min(len / 16).max(1);
                let start = scaled(at, len).min(len - chunk);
                let copy = bytes[start..start + chunk].to_vec();
                bytes.splice(start + chunk..start + chunk, copy);
            }
            Mutation::Length { field, value } => {
                let Some(f) = seed.lengths.get(field % seed.lengths.len().max(1)) else {
                    continue;
                };
                if f.offset + f.width > len {
                    continue;
                }
                let value = value.to_le_bytes();
                let mut field_bytes = value[..f.width].to_vec();
                if f.big_endian {
                    field_bytes.reverse();
                }
                bytes[f.offset..f.offset + f.width].copy_from_slice(&field_bytes);
            }
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// The real inputs.

/// One stored object of the real repository: its key there and its bytes.
struct StoredObject {
    key: String,
    bytes: Vec<u8>,
}

struct RealInputs {
    /// Archived segments, decoded: (name, bytes).
    segments: Vec<(SegmentName, Vec<u8>)>,
    system_id: u64,
    objects: Vec<StoredObject>,
    /// The start of `base.tar` from `pg_basebackup -Ft`, cut after a member.
    tar: Vec<u8>,
    manifest: Vec<u8>,
}

fn real_inputs() -> &'static RealInputs {
    static INPUTS: OnceLock<RealInputs> = OnceLock::new();
    INPUTS.get_or_init(make_real_inputs)
}

fn make_real_inputs() -> RealInputs {
    let lab = Lab::new("tm-hostile-", &common::binaries()).expect("create lab");
    let mut cluster = archiving_primary(&lab, &PrimaryOptions::default()).expect("start primary");
    cluster
        .query("CREATE TABLE marker AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 20000) g")
        .unwrap();
    cluster
        .query("BEGIN; INSERT INTO marker VALUES (0, 'a'); SAVEPOINT s; INSERT INTO marker VALUES (-1, 'b'); COMMIT")
        .unwrap();
    cluster
        .query("SELECT pg_create_restore_point('hostile')")
        .unwrap();
    lab.tidemark(&["backup"]).expect("tidemark backup");
    testkit::switch_and_wait_for_archive(&cluster).unwrap();

    let tar_dir = lab.tmp.subdir("tar").unwrap();
    let port = cluster.port().to_string();
    let socket = cluster.socket_dir().to_str().unwrap().to_owned();
    let output = owner_command(&lab.pg.path("pg_basebackup"), lab.tmp.path())
        .args([
            "-D",
            tar_dir.to_str().unwrap(),
            "-Ft",
            "-X",
            "none",
            "-c",
            "fast",
        ])
        .args(["--no-sync", "-h", &socket, "-p", &port, "-U", "postgres"])
        .output()
        .expect("run pg_basebackup");
    assert!(
        output.status.success(),
        "pg_basebackup -Ft: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let system_id = cluster.system_identifier().unwrap();
    cluster.stop().unwrap();

    let mut objects = Vec::new();
    collect_objects(&lab.repo_path, &lab.repo_path, &mut objects);
    let mut segments = Vec::new();
    for stored in &objects {
        let file = stored.key.rsplit('/').next().unwrap();
        if stored.key.contains("/wal/")
            && let Ok(WalFileName::Segment(name)) = WalFileName::parse(file)
        {
            let mut content = Vec::new();
            object::decode_into(&stored.bytes, &mut content).unwrap();
            segments.push((name, content));
        }
    }
    assert!(segments.len() >= 3, "{} segments archived", segments.len());
    let tar = tar_prefix(&fs::read(tar_dir.join("base.tar")).unwrap(), 256 << 10);
    let manifest = fs::read(tar_dir.join("backup_manifest")).unwrap();
    println!(
        "real inputs: {} stored objects, {} segments, {} tar bytes, {} manifest bytes",
        objects.len(),
        segments.len(),
        tar.len(),
        manifest.len()
    );
    RealInputs {
        segments,
        system_id,
        objects,
        tar,
        manifest,
    }
}

fn collect_objects(root: &Path, dir: &Path, out: &mut Vec<StoredObject>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_objects(root, &path, out);
        } else {
            let key = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            out.push(StoredObject {
                key,
                bytes: fs::read(&path).unwrap(),
            });
        }
    }
}

/// The members of a tar archive up to the first one ending past `at_least` bytes, then the two
/// zero blocks: real headers, few enough bytes for thousands of cases.
fn tar_prefix(tar: &[u8], at_least: usize) -> Vec<u8> {
    let mut at = 0;
    while at + 512 <= tar.len() && at < at_least {
        let header: &[u8; 512] = tar[at..at + 512].try_into().unwrap();
        let Some(member) = tidemark::backup::ustar::decode_header(header).unwrap() else {
            break;
        };
        at += 512 + member.size as usize + tidemark::backup::ustar::padding_after(member.size);
    }
    let mut prefix = tar[..at].to_vec();
    prefix.extend_from_slice(&[0; 1024]);
    prefix
}

// ---------------------------------------------------------------------------------------------
// Running the cases.

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2_000)
}

/// Runs `cases` cases of `check` over mutations of `seeds`, with the run's seed.
fn run(
    name: &str,
    cases: u32,
    seeds: &[Seed],
    check: impl Fn(&Seed, &[u8]) -> Result<(), TestCaseError>,
) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    println!("{name}:");
    let seed = common::seed_randomness();
    let config = Config {
        cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |(index, mutations)| {
        let chosen = &seeds[index % seeds.len()];
        let input = apply(seeds, chosen, &mutations);
        check(chosen, &input)
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    println!("{name}: {cases} cases passed");
}

// ---------------------------------------------------------------------------------------------
// Decoders.

/// Object frames (v1: zstd, lz4, none) of a real segment and of every real stored object: a
/// decode either fails or gives exactly the bytes of an object that was stored.
fn object_frames(cases: u32) {
    let inputs = real_inputs();
    let segment = &inputs.segments[1].1;
    let mut originals: Vec<Vec<u8>> = Vec::new();
    let mut seeds = Vec::new();
    for compression in [Compression::Zstd, Compression::Lz4, Compression::None] {
        let encoded = object::encode(compression, 1, segment).unwrap();
        seeds.push(framed(&encoded.header_bytes(), &encoded.body));
    }
    originals.push(segment.clone());
    for (stored, content) in framed_objects(inputs) {
        seeds.push(framed(
            &stored.bytes[..object::HEADER_LEN],
            &stored.bytes[object::HEADER_LEN..],
        ));
        originals.push(content);
    }
    let known: std::collections::HashSet<(usize, u32)> = originals
        .iter()
        .map(|o| (o.len(), crc32c::crc32c(o)))
        .collect();
    run("object frames", cases, &seeds, |_, input| {
        // Also with the header's own checksum made right again, as a forger would: the damage
        // then reaches the lengths and checksums the header carries.
        for input in [input, &resealed_object(input)[..]] {
            let mut out = Vec::new();
            let result = bounded("object frame", input.len(), || {
                object::decode_into(input, &mut out)
            })?;
            if result.is_ok() {
                prop_assert!(
                    known.contains(&(out.len(), crc32c::crc32c(&out))),
                    "a damaged object decoded to {} bytes that were never stored",
                    out.len()
                );
            }
        }
        Ok(())
    });
}

/// Every real stored object in an object frame (all but `stanza.json`), with its content.
fn framed_objects(inputs: &RealInputs) -> impl Iterator<Item = (&StoredObject, Vec<u8>)> {
    inputs
        .objects
        .iter()
        .filter(|o| !o.key.ends_with("stanza.json"))
        .map(|stored| {
            let mut content = Vec::new();
            object::decode_into(&stored.bytes, &mut content).unwrap();
            (stored, content)
        })
}

/// The keys the sealed seeds are sealed under.
fn seed_keys() -> std::sync::Arc<FixedKeys> {
    std::sync::Arc::new(FixedKeys {
        keys: vec![DataKey::new(1, [0x51; 32]), DataKey::new(2, [0x52; 32])],
        current: 2,
        name_key: [0x53; 32],
    })
}

/// Sealed objects (format version 2) of a real segment and of every real stored object, each
/// under its own key: opening either fails or gives exactly the object that was sealed under
/// that very key, also when a forger makes both CRCs right again.
fn sealed_frames(cases: u32) {
    let inputs = real_inputs();
    let codec = Codec::encrypted(
        WriteSettings {
            compression: Compression::Zstd,
            zstd_level: 1,
        },
        seed_keys(),
    );
    let mut plain: Vec<(ObjectKey, Vec<u8>)> = vec![(
        ObjectKey::new("main/wal/0000000100000000/000000010000000000000002").unwrap(),
        inputs.segments[1].1.clone(),
    )];
    for (stored, content) in framed_objects(inputs) {
        plain.push((ObjectKey::new(stored.key.as_str()).unwrap(), content));
    }
    let sealed: Vec<(ObjectKey, Vec<u8>)> = plain
        .iter()
        .map(|(key, content)| {
            (
                key.clone(),
                codec.encode(key, content).unwrap().parts().concat(),
            )
        })
        .collect();
    let le = |offset, width| LengthField {
        offset,
        width,
        big_endian: false,
    };
    let seeds: Vec<Seed> = sealed
        .iter()
        .map(|(_, bytes)| Seed {
            bytes: bytes.clone(),
            // Key id, stored length, chunk length, the cipher byte.
            lengths: vec![le(12, 4), le(24, 8), le(24, 4), le(40, 4), le(11, 1)],
        })
        .collect();
    run("sealed frames", cases, &seeds, |seed, input| {
        let index = seeds
            .iter()
            .position(|s| std::ptr::eq(s, seed))
            .expect("a seed of the run");
        let (key, original) = &plain[index];
        for input in [input.to_vec(), forged_sealed(input)] {
            let opened = bounded("sealed frame", input.len(), || {
                let frame = codec.open(key, input.clone()).ok()?.frame;
                let mut out = Vec::new();
                object::decode_into(&frame, &mut out).ok()?;
                Some(out)
            })?;
            if let Some(out) = opened {
                prop_assert!(
                    &out == original,
                    "a damaged sealed object opened to {} bytes that were not sealed under {key}",
                    out.len()
                );
            }
        }
        Ok(())
    });
}

/// `sealed` with its stored length, stored CRC and header CRC made to match, as a forger would.
fn forged_sealed(sealed: &[u8]) -> Vec<u8> {
    let mut sealed = sealed.to_vec();
    if sealed.len() >= 96 {
        let body_len = (sealed.len() - 96) as u64;
        sealed[24..32].copy_from_slice(&body_len.to_le_bytes());
        let crc = crc32c::crc32c(&sealed[96..]);
        sealed[36..40].copy_from_slice(&crc.to_le_bytes());
        let crc = crc32c::crc32c(&sealed[..92]);
        sealed[92..96].copy_from_slice(&crc.to_le_bytes());
    }
    sealed
}

/// `object` with its header checksum (bytes 44..48) made to match its first 44 bytes.
fn resealed_object(object: &[u8]) -> Vec<u8> {
    let mut object = object.to_vec();
    if object.len() >= 48 {
        let crc = crc32c::crc32c(&object[..44]);
        object[44..48].copy_from_slice(&crc.to_le_bytes());
    }
    object
}

fn framed(header: &[u8], body: &[u8]) -> Seed {
    let le = |offset, width| LengthField {
        offset,
        width,
        big_endian: false,
    };
    Seed {
        bytes: [header, body].concat(),
        // Original length, stored length, the reserved word, and the compression byte.
        lengths: vec![
            le(16, 8),
            le(24, 8),
            le(16, 4),
            le(24, 4),
            le(40, 4),
            le(10, 1),
        ],
    }
}

const PAGE: usize = 8192;

/// Each record that starts and ends in segment `bytes` from `first` on: the byte ranges it
/// covers, page headers left out. PostgreSQL's CRC covers all of them.
fn record_spans(bytes: &[u8], first: usize) -> Vec<Vec<std::ops::Range<usize>>> {
    let mut spans = Vec::new();
    let mut at = first;
    loop {
        if at.is_multiple_of(PAGE) {
            at += 24;
        }
        if at + 4 > bytes.len() {
            return spans;
        }
        let total = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if total == 0 {
            return spans;
        }
        let (mut left, mut p, mut ranges) = (total, at, Vec::new());
        while left > 0 {
            let take = left.min(PAGE - p % PAGE);
            ranges.push(p..p + take);
            left -= take;
            p += take;
            if left > 0 {
                p += 24;
            }
            if p > bytes.len() {
                return spans;
            }
        }
        spans.push(ranges);
        at = p.div_ceil(8) * 8;
    }
}

/// The WAL segment checker and record walker on real segments: no panic, and the walk of a
/// complete segment never passes when a byte of one of its records changed.
fn wal_segments(cases: u32) {
    let inputs = real_inputs();
    let segment_size = SegmentSize::new(MIB as u64).unwrap();
    let pg15 = PgMajor::new(15).unwrap();
    let expected = ExpectedCluster {
        system_id: inputs.system_id,
        version: pg15,
        segment_size,
    };
    let mut seeds = Vec::new();
    let mut spans_of = Vec::new();
    for (name, bytes) in &inputs.segments {
        let mut whole = RecordWalker::new(*name, segment_size, pg15, PAGE as u32);
        whole.feed(bytes).unwrap();
        let Some(first) = whole.finish(true).unwrap().summary.first_record else {
            continue;
        };
        let prefix = bytes.clone();
        let mut walker = RecordWalker::new(*name, segment_size, pg15, PAGE as u32);
        walker.feed(&prefix).unwrap();
        // Less the one spilling into the next segment, whose CRC is checked there.
        let count = walker.record_count()
            - u64::from(walker.finish(true).unwrap().summary.continues_into_next);
        let first = (first.0 - name.start_lsn(segment_size).unwrap().0) as usize;
        let spans = record_spans(&prefix, first);
        // The spans agree with the walker, or this test's own reading of WAL is wrong.
        assert_eq!(
            spans.len() as u64,
            count,
            "records in the first pages of {name}"
        );
        let mut lengths = vec![LengthField {
            offset: 16,
            width: 4,
            big_endian: false,
        }];
        for ranges in spans.iter().take(64) {
            lengths.push(LengthField {
                offset: ranges[0].start,
                width: 4,
                big_endian: false,
            });
        }
        seeds.push(Seed {
            bytes: prefix,
            lengths,
        });
        spans_of.push((*name, spans));
    }
    let damaged_records = AtomicUsize::new(0);
    run("WAL segments", cases, &seeds, |seed, input| {
        let index = seeds.iter().position(|s| std::ptr::eq(s, seed)).unwrap();
        let (name, spans) = &spans_of[index];
        bounded("segment checker", input.len(), || {
            let mut checker = SegmentChecker::new(expected, *name, SegmentKind::Complete).unwrap();
            for chunk in input.chunks(CHUNK_ALIGNMENT) {
                if checker.feed(chunk).is_err() {
                    return;
                }
            }
            let _ = checker.finish();
        })?;
        let walked = bounded("record walker", input.len(), || {
            let mut walker = RecordWalker::new(*name, segment_size, pg15, PAGE as u32);
            walker.feed(input)?;
            walker.finish(true)
        })?;
        // Only same-length inputs keep every record where it was.
        if input.len() == seed.bytes.len() {
            let damaged = spans.iter().position(|ranges| {
                ranges
                    .iter()
                    .any(|r| input[r.clone()] != seed.bytes[r.clone()])
            });
            if let Some(damaged) = damaged {
                damaged_records.fetch_add(1, Ordering::Relaxed);
                prop_assert!(
                    walked.is_err(),
                    "{name}: record {damaged} was changed, yet the walk of the segment passed"
                );
            }
        }
        Ok(())
    });
    // What shows the property was put to the test.
    let damaged = damaged_records.load(Ordering::Relaxed);
    println!("WAL segments: {damaged} cases changed a record, and every walk refused them");
    assert!(damaged > 0 || cases < 100, "no case changed a record");
}

/// Every kind of catalog object, stored in a repository and read through the functions that
/// read it: `stanza.json`, WAL index entries and packs, backup records, manifests, chunks and
/// WAL objects.
fn catalogs(cases: u32) {
    let inputs = real_inputs();
    // Chunks of large files are left out: thousands of cases of MiBs each would take minutes.
    let objects: Vec<&StoredObject> = inputs
        .objects
        .iter()
        .filter(|o| o.bytes.len() <= 256 << 10)
        .collect();
    let mut objects: Vec<StoredObject> = objects
        .into_iter()
        .map(|o| StoredObject {
            key: o.key.clone(),
            bytes: o.bytes.clone(),
        })
        .collect();
    // A lock record, which no finished backup leaves behind, as a backup writes it.
    let lock = LockRecord::for_process(
        LockKind::Backup,
        std::process::id(),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
    )
    .unwrap();
    let encoded = object::encode(Compression::Zstd, 1, &lock.to_json()).unwrap();
    objects.push(StoredObject {
        key: format!("main/lock/{}.1", lock.name().unwrap()),
        bytes: [&encoded.header_bytes()[..], &encoded.body].concat(),
    });
    // Unharmed, every one reads: the harness reads each kind as Tidemark does.
    for stored in &objects {
        let repo = test_repository(Box::new(MemoryStorage::new()));
        if let Err(e) = read_as_its_kind(&repo, &stored.key, &stored.bytes) {
            panic!("the real object {} does not read: {e:#}", stored.key);
        }
    }
    // Decompression bombs: valid objects of 100 MiB of zeros (a few KiB stored) under the keys
    // of kinds that hold far less, which must be refused by their header, not decompressed.
    let bomb = zeros_object(100 * MIB);
    for key in [
        "main/lock/backup.1",
        "main/walindex/0000000100000000/000000010000000000000003",
        "main/walindex/packs/0000000100000000.00004",
        "main/wal/0000000100000000/000000010000000000000003",
        "main/wal/history/00000002.history",
    ] {
        // Each unmutated first: among hundreds of seeds, few cases would pick one untouched.
        let repo = test_repository(Box::new(MemoryStorage::new()));
        match bounded(key, bomb.len(), || read_as_its_kind(&repo, key, &bomb)) {
            Ok(Err(_)) => {}
            Ok(Ok(())) => panic!("a decompression bomb under {key} was read"),
            Err(e) => panic!("a decompression bomb under {key}: {e}"),
        }
        objects.push(StoredObject {
            key: key.to_owned(),
            bytes: bomb.clone(),
        });
    }
    let seeds: Vec<Seed> = objects
        .iter()
        .map(|o| {
            let mut seed = Seed::plain(o.bytes.clone());
            if !o.key.ends_with("stanza.json") {
                seed = framed(
                    &o.bytes[..object::HEADER_LEN],
                    &o.bytes[object::HEADER_LEN..],
                );
            }
            seed
        })
        .collect();
    run("catalogs", cases, &seeds, |seed, input| {
        let index = seeds.iter().position(|s| std::ptr::eq(s, seed)).unwrap();
        let key = &objects[index].key;
        let resealed = if key.ends_with("stanza.json") {
            input.to_vec()
        } else {
            resealed_object(input)
        };
        for input in [input, &resealed[..]] {
            let repo = test_repository(Box::new(MemoryStorage::new()));
            let _ = bounded(key, input.len(), || read_as_its_kind(&repo, key, input))?;
        }
        Ok(())
    });
}

/// Stores `bytes` under `key` (its stanza renamed `main`) and reads it as what its key says it
/// is; whether that succeeds does not matter, only that it neither panics nor allocates without
/// bound.
/// A stored object of `len` zero bytes, zstd-compressed.
fn zeros_object(len: usize) -> Vec<u8> {
    let encoded = object::encode(Compression::Zstd, 1, &vec![0; len]).unwrap();
    [&encoded.header_bytes()[..], &encoded.body].concat()
}

fn read_as_its_kind(repo: &Repository, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let (_, rest) = key.split_once('/').unwrap();
    let parts: Vec<&str> = rest.split('/').collect();
    if parts == ["stanza.json"] {
        StanzaIdentity::from_json(bytes)?;
        // In a repository of its own: the one given has a `main` already.
        let repo = Repository::new(Box::new(MemoryStorage::new()), repo.write_settings());
        let key = ObjectKey::new("main/stanza.json").unwrap();
        repo.storage().put_if_absent(&key, &[bytes]).unwrap();
        repo.open_stanza("main")?;
        return Ok(());
    }
    let key = ObjectKey::new(format!("main/{rest}")).unwrap();
    repo.storage().put_if_absent(&key, &[bytes]).unwrap();
    let stanza = repo.open_stanza("main").unwrap();
    let found = |found: bool| -> anyhow::Result<()> {
        anyhow::ensure!(found, "{key} not found");
        Ok(())
    };
    match parts.as_slice() {
        ["wal", _, file] => {
            let stored = stanza.get_wal(WalFileName::parse(file)?)?;
            object::decode_into(&stored.context("missing")?, &mut Vec::new())?;
        }
        ["walindex", "packs", _] => found(!stanza.packed_wal_index()?.is_empty())?,
        ["walindex", _, file] => found(stanza.get_wal_index(WalFileName::parse(file)?)?.is_some())?,
        ["backup", _, "backup.json"] => found(stanza.list_backups()?.len() == 1)?,
        ["backup", label, "backup_manifest"] => {
            BackupManifest::parse(&stanza.get_backup_manifest(label)?)?;
        }
        ["lock", _] => {
            let json = stanza.get_checked_object(&key, limits::LOCK)?;
            LockRecord::from_json(&json.context("missing")?)?;
        }
        ["blob", _, sha256] => stanza.blobs().get(sha256, &mut Vec::new())?,
        other => panic!("an object of unknown kind in the repository: {other:?}"),
    }
    Ok(())
}

/// PostgreSQL's backup manifest as `tidemark backup` checks a backup against it.
fn manifests(cases: u32) {
    let seeds = vec![Seed::plain(real_inputs().manifest.clone())];
    BackupManifest::parse(&seeds[0].bytes).expect("the real manifest parses");
    run("backup manifests", cases, &seeds, |_, input| {
        let _ = bounded("manifest", input.len(), || {
            BackupManifest::parse(input).map(drop)
        })?;
        Ok(())
    });
}

/// The tar splitter on the start of a real `base.tar` (PostgreSQL 15's ustar): the size field
/// of each header is a length target, in octal text and in base-256.
fn tar_archives(cases: u32) {
    let tar = real_inputs().tar.clone();
    let mut lengths = Vec::new();
    let mut at = 0;
    while let Ok(Some(member)) =
        tidemark::backup::ustar::decode_header(tar[at..at + 512].try_into().unwrap())
    {
        // The size field (124..136), its first byte switching it to base-256.
        lengths.push(LengthField {
            offset: at + 124,
            width: 8,
            big_endian: true,
        });
        lengths.push(LengthField {
            offset: at + 128,
            width: 8,
            big_endian: true,
        });
        at += 512 + member.size as usize + tidemark::backup::ustar::padding_after(member.size);
    }
    let seeds = vec![Seed {
        bytes: tar,
        lengths,
    }];
    let (jobs, _receiver) = std::sync::mpsc::sync_channel(1 << 16);
    let split = split_archive(
        &seeds[0].bytes[..],
        "",
        &jobs,
        &AtomicUsize::new(0),
        &AtomicU64::new(0),
    )
    .expect("the real tar splits");
    assert!(split.entries.len() > 10, "{} members", split.entries.len());
    run("tar archives", cases, &seeds, |_, input| {
        // Half the time with every header's checksum made right again, so the damage reaches
        // what the checksum protects.
        let resealed = resealed_tar(input);
        for input in [input, &resealed[..]] {
            split_within_bounds(input)?;
        }
        Ok(())
    });
}

/// `tar` with the checksum of every block that looks like a ustar header made to match it.
fn resealed_tar(tar: &[u8]) -> Vec<u8> {
    let mut tar = tar.to_vec();
    for block in tar.chunks_exact_mut(512) {
        if &block[257..262] == b"ustar" {
            block[148..156].copy_from_slice(b"        ");
            let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
            block[148..156].copy_from_slice(format!("{:06o}\0 ", sum & 0o777777).as_bytes());
        }
    }
    tar
}

fn split_within_bounds(input: &[u8]) -> Result<(), TestCaseError> {
    bounded("tar splitter", input.len(), || {
        let (jobs, receiver) = std::sync::mpsc::sync_channel(1 << 16);
        let result = split_archive(input, "", &jobs, &AtomicUsize::new(0), &AtomicU64::new(0));
        drop(jobs);
        let stored: usize = receiver.iter().map(|job| job.bytes.len()).sum();
        if let Ok(split) = result {
            let listed: u64 = split.entries.iter().map(|e| e.size).sum();
            assert_eq!(listed, stored as u64, "every byte listed was handed on");
        }
    })?;
    Ok(())
}

/// Keyrings (`_keys/keyring.<generation>`) of a repository with a key file, created and rotated
/// twice: a mutated one is refused, or opens (its MAC checked) to exactly a keyring that was
/// written.
fn keyrings(cases: u32) {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("repo.key");
    fs::write(&key_path, format!("{}\n", "3c".repeat(32))).unwrap();
    fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let storage: std::sync::Arc<dyn tidemark::storage::Storage> =
        std::sync::Arc::new(MemoryStorage::new());
    let keys = RepoKeys::new(
        std::sync::Arc::clone(&storage),
        KeySource::KeyFile(key_path.clone()),
    );
    keys.create_or_open().unwrap();
    keys.rotate().unwrap();
    keys.rotate().unwrap();
    let mut written = Vec::new();
    for listed in storage
        .list(
            &ObjectKey::new(KEYS_DIR).unwrap(),
            &tidemark::storage::Cancel::never(),
        )
        .unwrap()
        .into_iter()
        .filter(|listed| listed.key.file_name().starts_with("keyring."))
    {
        let bytes = storage.get(&listed.key).unwrap();
        let generation: u64 = listed.key.file_name()["keyring.".len()..].parse().unwrap();
        written.push((generation, bytes));
    }
    assert!(!written.is_empty(), "no keyring was written");
    let secret = Secret::Key(parse_key_file(&fs::read(&key_path).unwrap()).unwrap());
    let originals: Vec<KeyringDocument> = written
        .iter()
        .map(|(generation, bytes)| KeyringDocument::parse(bytes, *generation).unwrap())
        .collect();
    let seeds: Vec<Seed> = written
        .iter()
        .map(|(_, bytes)| Seed::plain(bytes.clone()))
        .collect();
    run("keyrings", cases, &seeds, |seed, input| {
        let generation = written
            .iter()
            .find(|(_, bytes)| *bytes == seed.bytes)
            .map(|(generation, _)| *generation)
            .expect("a seed of the run");
        let opened = bounded("keyring", input.len(), || {
            let document = KeyringDocument::parse(input, generation).ok()?;
            Keyring::open(
                document.clone(),
                |kdf| {
                    kdf.takes(&secret)
                        .then(|| kdf.slot_key(&secret))
                        .transpose()
                },
                "the test's key file",
            )
            .ok()
            .map(|_| document)
        })?;
        if let Some(document) = opened {
            prop_assert!(
                originals.contains(&document),
                "an altered keyring opened: {document:?}"
            );
        }
        Ok(())
    });
}

/// Timeline history files.
fn history_files(cases: u32) {
    let seeds = vec![Seed::plain(
        b"1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tbefore 2026-11-21 10:00:00+00\n"
            .to_vec(),
    )];
    TimelineHistory::parse(TimelineId(3), &seeds[0].bytes).expect("the history file parses");
    run("history files", cases, &seeds, |_, input| {
        let _ = bounded("history", input.len(), || {
            TimelineHistory::parse(TimelineId(3), input).map(drop)
        })?;
        Ok(())
    });
}

/// The BASE_BACKUP answer of PostgreSQL 15 (one typed CopyOut stream) and 14 (a CopyOut per
/// archive, then one for the manifest) around the real tar and manifest, as the bytes of its
/// messages: each message's length is a target. Messages are parsed only once they are whole,
/// as a reader that bounds message lengths hands them over.
fn base_backup_streams(cases: u32) {
    let inputs = real_inputs();
    let mut seeds = Vec::new();
    for version in [150_000u32, 140_000] {
        let messages = backup_messages(version, &inputs.tar, &inputs.manifest);
        let mut lengths = Vec::new();
        let mut at = 0;
        for message in &messages {
            lengths.push(LengthField {
                offset: at + 1,
                width: 4,
                big_endian: true,
            });
            at += message.len();
        }
        let bytes = messages.concat();
        assert!(
            decode_stream(version, &bytes).expect("the real stream decodes"),
            "the stream of {version} ends"
        );
        seeds.push(Seed { bytes, lengths });
    }
    run("BASE_BACKUP streams", cases, &seeds, |seed, input| {
        let version = if std::ptr::eq(seed, &seeds[0]) {
            150_000
        } else {
            140_000
        };
        let _ = bounded("BASE_BACKUP decoder", input.len(), || {
            decode_stream(version, input)
        })?;
        Ok(())
    });
}

/// Whether the stream reached its end.
fn decode_stream(version: u32, input: &[u8]) -> anyhow::Result<bool> {
    let mut decoder = BaseBackupDecoder::new(version);
    let mut buffer = BytesMut::from(input);
    while buffer.len() >= 5 {
        let len = u32::from_be_bytes(buffer[1..5].try_into().unwrap()) as usize;
        if len < 4 || buffer.len() < len + 1 {
            break;
        }
        let Some(message) = Message::parse(&mut buffer)? else {
            break;
        };
        for event in decoder.feed(message)? {
            if let BackupEvent::Finished { .. } = event {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![tag];
    bytes.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn data_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut body = (values.len() as u16).to_be_bytes().to_vec();
    for value in values {
        match value {
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v.as_bytes());
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    message(b'D', &body)
}

fn row_description(columns: &[&str]) -> Vec<u8> {
    let mut body = (columns.len() as u16).to_be_bytes().to_vec();
    for column in columns {
        body.extend_from_slice(column.as_bytes());
        body.push(0);
        body.extend_from_slice(&[0; 18]);
    }
    message(b'T', &body)
}

fn backup_messages(version: u32, tar: &[u8], manifest: &[u8]) -> Vec<Vec<u8>> {
    let complete = |tag: &str| message(b'C', format!("{tag}\0").as_bytes());
    let copy_out = || message(b'H', &[0, 0, 0]);
    let copy_done = || message(b'c', b"");
    let mut messages = vec![
        row_description(&["recptr", "tli"]),
        data_row(&[Some("0/B000028"), Some("1")]),
        complete("SELECT"),
        row_description(&["spcoid", "spclocation", "size"]),
        data_row(&[None, None, Some("30000")]),
        complete("SELECT"),
        copy_out(),
    ];
    let typed = version >= 150_000;
    let data = |bytes: &[u8]| {
        if typed {
            message(b'd', &[&b"d"[..], bytes].concat())
        } else {
            message(b'd', bytes)
        }
    };
    if typed {
        messages.push(message(b'd', b"nbase.tar\0\0"));
    }
    messages.extend(tar.chunks(32 << 10).map(data));
    if typed {
        messages.push(message(b'd', &[b'p', 0, 0, 0, 0, 0, 1, 0, 0]));
        messages.push(message(b'd', b"m"));
    } else {
        messages.extend([copy_done(), copy_out()]);
    }
    messages.extend(manifest.chunks(32 << 10).map(data));
    messages.extend([
        copy_done(),
        row_description(&["recptr", "tli"]),
        data_row(&[Some("0/B000138"), Some("1")]),
        complete("SELECT"),
        complete("BASE_BACKUP"),
        message(b'Z', b"I"),
    ]);
    messages
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn object_frames_refuse_damage_or_give_the_stored_bytes() {
    object_frames(cases());
}

#[test]
fn sealed_frames_refuse_damage_or_give_the_sealed_bytes() {
    sealed_frames(cases());
}

#[test]
fn wal_walks_never_accept_a_damaged_record() {
    wal_segments(cases());
}

#[test]
fn catalog_objects_are_read_within_bounds() {
    catalogs(cases());
}

#[test]
fn backup_manifests_are_read_within_bounds() {
    manifests(cases());
}

#[test]
fn tar_archives_are_split_within_bounds() {
    tar_archives(cases());
}

#[test]
fn keyrings_are_refused_when_altered() {
    keyrings(cases());
}

#[test]
fn history_files_are_read_within_bounds() {
    history_files(cases());
}

#[test]
fn base_backup_streams_are_decoded_within_bounds() {
    base_backup_streams(cases());
}

/// The long run: 100,000 cases per decoder (`cargo build --release --workspace --bins`, then
/// `cargo test --release --test hostile_input -- --ignored`).
#[test]
#[ignore = "the long run: 100,000 cases per decoder, by hand or nightly"]
fn hostile_input_long() {
    const LONG: u32 = 100_000;
    object_frames(LONG);
    sealed_frames(LONG);
    wal_segments(LONG);
    catalogs(LONG);
    manifests(LONG);
    tar_archives(LONG);
    keyrings(LONG);
    history_files(LONG);
    base_backup_streams(LONG);
}
