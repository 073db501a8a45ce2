//! Hashes, compresses and stores chunks on all cores. A chunk whose SHA-256 is already in the
//! repository (from this backup or an earlier one) is not stored again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use super::splitter::ChunkJob;
use crate::repo::blob_pool::BlobPool;

/// What the pool stored.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Stored bytes of every chunk used, new or reused.
    pub stored: AtomicU64,
    /// Stored bytes written by this backup.
    pub new: AtomicU64,
    pub reused_chunks: AtomicU64,
    /// Job id → SHA-256 of its chunk, for the entries to be completed with.
    pub hashes: Mutex<std::collections::HashMap<usize, String>>,
}

/// Runs one worker until the job channel closes. Returns the first error it met; after an
/// error it stops taking jobs, so the channel backs up and the backup stops.
pub fn run_worker(
    pool: &BlobPool<'_>,
    jobs: &Arc<Mutex<Receiver<ChunkJob>>>,
    stats: &StoreStats,
) -> anyhow::Result<()> {
    loop {
        let job = {
            let receiver = jobs
                .lock()
                .expect("no worker panics while holding the lock");
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return Ok(()),
            }
        };
        let chunk = pool.store(&job.bytes)?;
        stats
            .hashes
            .lock()
            .expect("no worker panics while holding the lock")
            .insert(job.id, chunk.name);
        stats.stored.fetch_add(chunk.stored_size, Ordering::Relaxed);
        if chunk.new {
            stats.new.fetch_add(chunk.stored_size, Ordering::Relaxed);
        } else {
            stats.reused_chunks.fetch_add(1, Ordering::Relaxed);
        }
    }
}
