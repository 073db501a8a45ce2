//! Hostile input for the record walker on synthetic WAL (`test_wal`): records split across
//! pages and a record header split by a segment end, mutated by proptest (bit flips,
//! truncation, record and page length fields set to 0, 1, 2^31, u32::MAX). The walk of complete
//! WAL never panics and never passes when a byte of one of its records changed. Real WAL gets the
//! same, under a counting allocator, in tests/hostile_input.rs.

use std::ops::Range;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRunner};

use super::test_wal::{MIB, PAGE, WalWriter, split_records, three_commits};
use super::walker::RecordWalker;
use crate::pg::file_name::{SegmentName, SegmentSize};
use crate::pg::lsn::TimelineId;

/// Synthetic WAL of one or two segments, with the byte ranges of each record (page headers
/// left out): PostgreSQL's CRC covers all of them.
struct Synthetic {
    bytes: Vec<u8>,
    first_segment: u64,
    records: Vec<Vec<Range<usize>>>,
    /// Offsets of each record's `xl_tot_len` and each page's `xlp_rem_len`.
    length_fields: Vec<usize>,
}

fn synthetic(wal: &WalWriter, segments: usize) -> Synthetic {
    let records = wal
        .lsns
        .iter()
        .map(|&lsn| {
            let at = wal.offset(lsn);
            let total = u32::from_le_bytes(wal.bytes[at..at + 4].try_into().unwrap());
            let (mut pos, mut left, mut ranges) = (lsn, u64::from(total), Vec::new());
            while left > 0 {
                if pos.is_multiple_of(PAGE as u64) {
                    pos += wal.header_len(pos);
                }
                let n = left.min(PAGE as u64 - pos % PAGE as u64);
                ranges.push(wal.offset(pos)..wal.offset(pos) + n as usize);
                pos += n;
                left -= n;
            }
            ranges
        })
        .collect::<Vec<_>>();
    let bytes = wal.bytes[..segments * MIB as usize].to_vec();
    let mut length_fields: Vec<usize> = records.iter().map(|r| r[0].start).collect();
    length_fields.extend((0..bytes.len()).step_by(PAGE).map(|page| page + 16));
    Synthetic {
        bytes,
        first_segment: wal.first_segment,
        records,
        length_fields,
    }
}

/// One segment of commits and records split 8/16 and 16/8 across pages and over three pages;
/// one of three commits; two segments with a commit whose header the segment end splits.
fn seeds() -> Vec<Synthetic> {
    let mut across = WalWriter::mib(3, 2);
    across.fill_until(across.base + MIB - 8);
    across.commit(900, 30);
    across.commit(901, 40);
    across.filler(20_000);
    across.switch();
    vec![
        synthetic(&split_records().0, 1),
        synthetic(&three_commits().0, 1),
        synthetic(&across, 2),
    ]
}

/// Walks `bytes` as complete WAL from segment `first_segment`: one segment alone, two as one
/// stream.
fn walk(bytes: &[u8], first_segment: u64, segments: usize) -> bool {
    let size = SegmentSize::new(MIB).unwrap();
    let name = SegmentName::from_segment_number(TimelineId(1), first_segment, size);
    let version = super::test_wal::pg(15);
    let mut walker = if segments == 1 {
        RecordWalker::new(name, size, version, PAGE as u32)
    } else {
        match RecordWalker::spanning(name, size, version, PAGE as u32) {
            Ok(walker) => walker,
            Err(_) => return false,
        }
    };
    bytes
        .chunks(64 << 10)
        .all(|chunk| walker.feed(chunk).is_ok())
        && walker.finish(true).is_ok()
}

const HOSTILE_LENGTHS: [u32; 4] = [0, 1, 1 << 31, u32::MAX];

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: u32, mask: u8 },
    Truncate { keep: u32 },
    Length { field: usize, value: u32 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<u32>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        1 => any::<u32>().prop_map(|keep| Mutation::Truncate { keep }),
        2 => (any::<usize>(), prop::sample::select(&HOSTILE_LENGTHS[..]))
            .prop_map(|(field, value)| Mutation::Length { field, value }),
    ]
}

fn scaled(fraction: u32, len: usize) -> usize {
    ((u64::from(fraction) * len as u64) >> 32) as usize
}

fn apply(seed: &Synthetic, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.bytes.clone();
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match *m {
            Mutation::Flip { at, mask } => {
                let at = scaled(at, bytes.len());
                bytes[at] ^= mask;
            }
            Mutation::Truncate { keep } => bytes.truncate(scaled(keep, bytes.len())),
            Mutation::Length { field, value } => {
                let at = seed.length_fields[field % seed.length_fields.len()];
                if at + 4 <= bytes.len() {
                    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
        }
    }
    bytes
}

#[test]
fn a_walk_never_passes_synthetic_wal_with_a_changed_record() {
    let seeds = seeds();
    for seed in &seeds {
        let segments = seed.bytes.len() / MIB as usize;
        assert!(
            walk(&seed.bytes, seed.first_segment, segments),
            "an unharmed seed passes"
        );
    }
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2_000);
    let seed = std::env::var("TIDEMARK_TEST_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
    println!("random cases from seed {seed} (TIDEMARK_TEST_SEED={seed} repeats them)");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    });
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..=4));
    let result = runner.run(&strategy, |(index, mutations)| {
        let seed = &seeds[index];
        let segments = seed.bytes.len() / MIB as usize;
        let input = apply(seed, &mutations);
        let passed = walk(&input, seed.first_segment, segments);
        if input.len() == seed.bytes.len() {
            let changed = seed.records.iter().position(|ranges| {
                ranges
                    .iter()
                    .any(|r| input[r.clone()] != seed.bytes[r.clone()])
            });
            if let Some(record) = changed {
                prop_assert!(
                    !passed,
                    "record {record} of seed {index} changed, yet the walk passed"
                );
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
