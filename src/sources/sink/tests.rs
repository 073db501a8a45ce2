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
fn chunks_queued_from_many_threads_come_back_in_the_order_each_thread_queued_them() {
    let repo = Arc::new(test_repository(Box::new(MemoryStorage::new())));
    let area = repo.open_or_create_source("uploads", "bucket").unwrap();
    let pieces: Vec<Vec<u8>> = (0..24)
        .map(|seed| noise(70_000 + seed * 13, seed as u64))
        .collect();
    let ((), streams, sizes) = take_snapshot(&area.blobs(), |sink| {
        let sink: &SnapshotSink<'_> = sink;
        let pieces = &pieces;
        let queued: Vec<Vec<QueuedChunk>> = std::thread::scope(|scope| {
            let threads: Vec<_> = pieces
                .chunks(6)
                .map(|mine| {
                    scope.spawn(move || {
                        mine.iter()
                            .map(|piece| sink.queue_chunk(piece).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for (thread, queued) in queued.into_iter().enumerate() {
            let references = sink.stored_chunks(queued)?;
            for (i, reference) in references.iter().enumerate() {
                let piece = &pieces[thread * 6 + i];
                assert_eq!(reference.size, piece.len() as u64);
                let mut back = Vec::new();
                sink.pool().get_chunk(reference, &mut back)?;
                assert!(
                    back == *piece,
                    "chunk {i} of thread {thread} reads back different"
                );
            }
        }
        Ok(())
    })
    .unwrap();
    assert!(streams.is_empty());
    assert_eq!(sizes.chunks, 24);
    assert_eq!(sizes.raw, 0, "loose chunks are not a stream's bytes");
}

#[test]
fn waiting_for_queued_chunks_ends_with_an_error_when_the_repository_fails() {
    let storage = Arc::new(FaultyStorage::new(MemoryStorage::new(), FaultPlan::none()));
    let repo = Arc::new(test_repository(Box::new(Arc::clone(&storage))));
    // On a thread of its own, so a wait that never ends fails the test instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let area = repo.open_or_create_source("uploads", "bucket").unwrap();
        storage.set_plan(FaultPlan {
            after_effect: false,
            ..FaultPlan::failing(1.0, 7)
        });
        let result = take_snapshot(&area.blobs(), |sink| {
            let mut queued = Vec::new();
            for seed in 0..3 {
                queued.push(sink.queue_chunk(&noise(50_000, seed))?);
            }
            sink.stored_chunks(queued).map(|_| ())
        });
        done.send(result.map(|_| ())).unwrap();
    });
    let result = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the wait for queued chunks ended");
    let error = result.unwrap_err();
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
