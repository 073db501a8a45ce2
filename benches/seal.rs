//! What encryption at rest costs per byte, beside what every push and backup already pays:
//! sealing and opening 16 MiB (a WAL segment's worth, incompressible, as compressed WAL is) with
//! `repo::crypto` (AES-256-GCM STREAM in 64 KiB chunks under a per-object key), next to CRC-32C
//! (every object's checksums), SHA-256 (today's backup chunk names) and keyed BLAKE3 (the chunk
//! names of an encrypted repository). One thread; medians of the rounds, in GB/s, with the
//! thread's CPU time per GiB and the time per 16 MiB segment. Run: `cargo bench --bench seal`.

use std::time::Instant;

use sha2::{Digest, Sha256};
use tidemark::repo::crypto::{DataKey, SALT_LEN, open_in_place, seal_in_place};

#[path = "common/mod.rs"]
mod common;

const SEGMENT: usize = 16 << 20;
/// Segments per round: 256 MiB.
const PER_ROUND: usize = 16;

/// Pseudo-random bytes (xorshift), which no compression shrinks.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A measured operation: its label, and one call of it.
type Operation<'a> = (&'static str, Box<dyn Fn() + 'a>);

/// This thread's CPU time so far, in seconds (`/proc/thread-self/schedstat`: nanoseconds on
/// a CPU first), precise where the tick-counted user and system times are not.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("read schedstat");
    let nanos: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    nanos as f64 / 1e9
}

/// (wall seconds, CPU seconds) of `PER_ROUND` calls of `work`.
fn timed(mut work: impl FnMut()) -> (f64, f64) {
    let (started, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..PER_ROUND {
        work();
    }
    (started.elapsed().as_secs_f64(), cpu_seconds() - cpu)
}

fn main() {
    let rounds = common::rounds(7);
    let plain = incompressible(SEGMENT);
    let key = DataKey::new(1, [7; 32]);
    let salt = [9u8; SALT_LEN];
    let name = b"main/wal/0000000100000000/000000010000000000000003";
    let mut sealed = plain.clone();
    seal_in_place(&key, &salt, name, &mut sealed, 0);
    let name_key = [5u8; 32];
    let ops: Vec<Operation> = vec![
        (
            "seal (AES-256-GCM STREAM)",
            Box::new(|| {
                let mut buffer = plain.clone();
                seal_in_place(&key, &salt, name, &mut buffer, 0);
            }),
        ),
        (
            "open (AES-256-GCM STREAM)",
            Box::new(|| {
                let mut buffer = sealed.clone();
                open_in_place(&key, &salt, name, &mut buffer, 0).unwrap();
            }),
        ),
        (
            "copy only (the clone above)",
            Box::new(|| {
                std::hint::black_box(plain.clone());
            }),
        ),
        (
            "CRC-32C",
            Box::new(|| {
                std::hint::black_box(crc32c::crc32c(&plain));
            }),
        ),
        (
            "SHA-256",
            Box::new(|| {
                std::hint::black_box(Sha256::digest(&plain));
            }),
        ),
        (
            "BLAKE3 keyed",
            Box::new(|| {
                std::hint::black_box(blake3::keyed_hash(&name_key, &plain));
            }),
        ),
    ];
    let mut results: Vec<(&str, Vec<f64>, Vec<f64>)> = Vec::new();
    for (label, op) in &ops {
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (wall, cpu) = timed(op);
            walls.push(wall);
            cpus.push(cpu);
        }
        results.push((label, walls, cpus));
    }
    let bytes = (SEGMENT * PER_ROUND) as f64;
    println!("{rounds} rounds of {PER_ROUND} × 16 MiB, one thread; medians");
    println!(
        "{:<30} {:>8} {:>12} {:>14}",
        "", "GB/s", "CPU-s/GiB", "ms/16 MiB"
    );
    for (label, walls, cpus) in results {
        let wall = common::median(&walls);
        let cpu = common::median(&cpus);
        println!(
            "{label:<30} {:>8.2} {:>12.3} {:>14.2}",
            bytes / wall / 1e9,
            cpu / (bytes / (1u64 << 30) as f64),
            wall * 1e3 / PER_ROUND as f64
        );
    }
}
