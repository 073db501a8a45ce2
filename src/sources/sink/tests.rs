use std::io::{Read, Write};
use std::sync::Arc;

use super::*;
use crate::repo::catalog::MAX_CHUNK;
use crate::repo::test_repository;
use crate::sources::reader::StreamReader;
use crate::storage::MemoryStorage;
use crate::storage::faulty::{FaultPlan, FaultyStorage};

/// Bytes that do not repeat (so chunks are told apart by content), from a seed.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Writes `bytes` in pieces of `piece` bytes as one stream `dump.rdb`.
fn snapshot_of(
    pool: &BlobPool<'_>,
    bytes: &[u8],
    piece: usize,
) -> anyhow::Result<(Vec<SnapshotStream>, SnapshotSizes)> {
    let ((), streams, sizes) = take_snapshot(pool, |sink| {
        let mut writer = sink.stream("dump.rdb");
        for part in bytes.chunks(piece) {
            writer.write_all(part)?;
        }
        writer.finish()?;
        Ok(())
    })?;
    Ok((streams, sizes))
}

#[test]
fn a_stream_is_stored_in_chunks_that_read_back_as_the_same_bytes() {
    let repo = Arc::new(test_repository(Box::new(MemoryStorage::new())));
    let area = repo.open_or_create_source("cache", "redis").unwrap();
    let bytes = noise(40 << 20, 1);
    let (streams, sizes) = snapshot_of(&area.blobs(), &bytes, 65_536 + 7).unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].size, bytes.len() as u64);
    assert!(
        streams[0].chunks.len() >= 3,
        "{:?}",
        streams[0].chunks.len()
    );
    assert!(streams[0].chunks.iter().all(|c| c.size <= MAX_CHUNK));
    assert_eq!(sizes.raw, bytes.len() as u64);
    assert_eq!(sizes.reused_chunks, 0);
    let mut back = Vec::new();
    StreamReader::open(Arc::clone(&repo), "cache", &streams[0])
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == bytes, "the bytes read back differ");
}

#[test]
fn bytes_that_only_moved_are_stored_once() {
    let repo = test_repository(Box::new(MemoryStorage::new()));
    let area = repo.open_or_create_source("cache", "redis").unwrap();
    let first = noise(48 << 20, 2);
    let (_, sizes) = snapshot_of(&area.blobs(), &first, 1 << 20).unwrap();
    // A header a few bytes longer, and a few bytes gone in the middle: everything after
    // each edit moved.
    let mut second = b"longer header".to_vec();
    second.extend_from_slice(&first[..20 << 20]);
    second.extend_from_slice(&first[(20 << 20) + 100..]);
    let (_, again) = snapshot_of(&area.blobs(), &second, 1 << 20).unwrap();
    assert!(
        again.new * 3 < sizes.new,
        "the second snapshot stored {} new bytes of {} ({} the first time)",
        again.new,
        again.raw,
        sizes.new
    );
    assert!(again.reused_chunks > 0);
}

#[test]
fn a_failing_repository_fails_the_snapshot() {
    let storage = Arc::new(FaultyStorage::new(MemoryStorage::new(), FaultPlan::none()));
    let repo = test_repository(Box::new(Arc::clone(&storage)));
    let area = repo.open_or_create_source("cache", "redis").unwrap();
    storage.set_plan(FaultPlan {
        after_effect: false,
        ..FaultPlan::failing(1.0, 5)
    });
    let error = snapshot_of(&area.blobs(), &noise(20 << 20, 3), 4096).unwrap_err();
    assert!(format!("{error:#}").contains("store chunk "), "{error:#}");
}

#[test]
fn streams_written_at_once_from_several_threads_each_read_back_whole() {
    let repo = Arc::new(test_repository(Box::new(MemoryStorage::new())));
    let area = repo.open_or_create_source("tables", "azure-table").unwrap();
    let contents: Vec<Vec<u8>> = (0..4)
        .map(|i| noise((6 << 20) + i * 1000, 40 + i as u64))
        .collect();
    let ((), streams, _) = take_snapshot(&area.blobs(), |sink| {
        std::thread::scope(|scope| {
            let writers: Vec<_> = contents
                .iter()
                .enumerate()
                .map(|(i, bytes)| {
                    let sink = &*sink;
                    scope.spawn(move || -> anyhow::Result<()> {
                        let mut writer = sink.stream(&format!("table-{i}"));
                        for part in bytes.chunks(100_003) {
                            writer.write_all(part)?;
                        }
                        writer.finish()?;
                        Ok(())
                    })
                })
                .collect();
            writers.into_iter().try_for_each(|w| w.join().unwrap())
        })
    })
    .unwrap();
    assert_eq!(streams.len(), contents.len());
    for stream in &streams {
        let i: usize = stream.name.strip_prefix("table-").unwrap().parse().unwrap();
        assert_eq!(stream.size, contents[i].len() as u64);
        let mut back = Vec::new();
        StreamReader::open(Arc::clone(&repo), "tables", stream)
            .read_to_end(&mut back)
            .unwrap();
        assert!(
            back == contents[i],
            "stream {} reads back other bytes",
            stream.name
        );
    }
}
