//! Hashes, compresses and stores chunks on all cores. A chunk whose SHA-256 is already in the
//! repository (from this backup or an earlier one) is not stored again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::splitter::ChunkJob;
use crate::repo::Stanza;
use crate::repo::object;

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
    stanza: &Stanza<'_>,
    jobs: &Arc<Mutex<Receiver<ChunkJob>>>,
    stats: &StoreStats,
) -> anyhow::Result<()> {
    let settings = stanza.repository().write_settings;
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
        let sha256 = super::splitter::sha256_hex(&job.bytes);
        stats
            .hashes
            .lock()
            .expect("no worker panics while holding the lock")
            .insert(job.id, sha256.clone());
        if let Some(size) = stanza.blob_size(&sha256)? {
            stats.stored.fetch_add(size, Ordering::Relaxed);
            stats.reused_chunks.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let object = object::encode(settings.compression, settings.zstd_level, &job.bytes)
            .context("compress a chunk")?;
        let size = (crate::repo::object::HEADER_LEN + object.body.len()) as u64;
        stats.stored.fetch_add(size, Ordering::Relaxed);
        match stanza.put_blob(&sha256, &object).context("store a chunk")? {
            Some(written) => {
                stats.new.fetch_add(written, Ordering::Relaxed);
            }
            // Another worker stored the same content a moment earlier.
            None => {
                stats.reused_chunks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
