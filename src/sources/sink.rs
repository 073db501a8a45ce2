//! Where a snapshot's bytes go as they stream in: cut into content-defined chunks (`cutter`), so
//! bytes that only moved (a longer header, a key expired) still make the same chunks; each
//! chunk named, compressed and stored once in the source's pool on all cores; and the list of
//! chunks each stream is made of, in order.
//!
//! The writer blocks while every store worker is busy and two chunks per core wait, so a fast
//! source is held back to the repository's pace with a bounded amount of memory (at most a
//! chunk per store worker, per waiting place and per writing thread, 16 MiB each at worst), and
//! a slow repository never makes a snapshot's bytes pile up. Chunks a source cuts itself (a
//! bucket's objects) are queued to the same workers, so the thread that read them goes on
//! reading while they are stored.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::cutter::{Cutter, LARGEST_CHUNK};
use crate::repo::blob_pool::{BlobPool, StoredChunk};
use crate::repo::catalog::ChunkRef;
use crate::repo::source_catalog::{SnapshotSizes, SnapshotStream};

/// A stream's buffer of bytes not yet cut. Chunks are copied out where they lie; only when it
/// is full are the uncut bytes (fewer than a largest chunk) moved to its front, so a byte is
/// moved about a quarter of a time on average, not once for every chunk cut before it.
const PENDING_CAPACITY: usize = 4 * LARGEST_CHUNK;

/// Where a stored chunk's reference goes.
#[derive(Clone, Copy)]
enum Slot {
    /// The `index`th chunk of stream `stream`.
    Stream { stream: usize, index: usize },
    /// A chunk a source cut itself, by the number [`SnapshotSink::queue_chunk`] gave it.
    Loose(usize),
}

/// Store workers of a snapshot, whatever the cores.
const MIN_STORE_WORKERS: usize = 8;

/// A chunk on its way to a store worker.
struct ChunkJob {
    slot: Slot,
    bytes: Vec<u8>,
}

/// What the workers stored: streams' chunks by (stream, index), loose chunks by number.
#[derive(Default)]
struct Stored {
    chunks: BTreeMap<(usize, usize), ChunkRef>,
    loose: BTreeMap<usize, ChunkRef>,
    /// Loose chunks stored so far (whether or not handed out since).
    loose_stored: usize,
    sizes: SnapshotSizes,
    /// A worker failed: what it was given may never be stored.
    failed: bool,
}

/// [`Stored`], and a signal to whoever waits for loose chunks each time it changes.
#[derive(Default)]
struct Progress {
    stored: Mutex<Stored>,
    changed: Condvar,
    buffers: Buffers,
}

impl Progress {
    /// The lock on [`Stored`]; a worker that panicked never held it while changing it.
    fn lock(&self) -> MutexGuard<'_, Stored> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The buffers chunks travel to the store workers in, kept once used: a fresh allocation of a
/// chunk's size costs the kernel a zeroed page for every 4 KiB of it, more than the copy into
/// it. As many are kept as were ever in flight at once, which the job queue bounds.
#[derive(Default)]
struct Buffers {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Buffers {
    /// A buffer holding a copy of `bytes`.
    fn copy_of(&self, bytes: &[u8]) -> Vec<u8> {
        let kept = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut buffer = kept.unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(bytes);
        buffer
    }

    fn give_back(&self, buffer: Vec<u8>) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buffer);
    }
}

/// A chunk queued by [`SnapshotSink::queue_chunk`]: its reference, once stored, is had with
/// [`SnapshotSink::stored_chunks`].
#[derive(Debug)]
pub struct QueuedChunk(usize);

impl Stored {
    /// Counts a chunk stored or found (not its raw bytes: only streams' bytes are).
    fn count(&mut self, chunk: &StoredChunk) {
        let sizes = &mut self.sizes;
        sizes.stored += chunk.stored_size;
        sizes.chunks += 1;
        if chunk.new {
            sizes.new += chunk.stored_size;
        } else {
            sizes.reused_chunks += 1;
        }
    }
}

/// Takes one snapshot's streams: hands out a writer per stream and stores what they are given.
/// Several streams may be written at once, from as many threads (an Azure Table source writes
/// a stream per table, tables read in parallel). Chunks a source cuts itself (a bucket's
/// objects) go to [`SnapshotSink::queue_chunk`], from as many threads as it likes.
pub struct SnapshotSink<'s> {
    jobs: SyncSender<ChunkJob>,
    /// Each stream's name and, once finished, its size; in the order they were begun.
    streams: Mutex<Vec<(String, u64)>>,
    pool: &'s BlobPool<'s>,
    progress: &'s Progress,
    /// Loose chunks queued so far.
    queued: AtomicUsize,
}

/// Runs `snapshot` with a sink over `pool`, then waits for every chunk to be stored: the
/// streams (their chunks in order) and the sizes, with what `snapshot` returned. An error of
/// `snapshot` or of any store is returned once every worker has stopped.
pub fn take_snapshot<T>(
    pool: &BlobPool<'_>,
    snapshot: impl FnOnce(&mut SnapshotSink<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<(T, Vec<SnapshotStream>, SnapshotSizes)> {
    // Twice the cores, and at least eight: a store worker spends much of each chunk waiting for
    // its fsyncs (or an S3 round trip), not on a core, and a bucket's small objects are mostly
    // that wait.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = (2 * cores).max(MIN_STORE_WORKERS);
    let (jobs, receiver) = sync_channel(2 * cores);
    let receiver = Arc::new(Mutex::new(receiver));
    let progress = Progress::default();
    let (taken, store_results) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (receiver, progress) = (Arc::clone(&receiver), &progress);
                scope.spawn(move || {
                    // A panic is a failure too: whoever waits for loose chunks must hear of it.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        store_chunks(pool, &receiver, progress)
                    }))
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a chunk store worker panicked")));
                    if result.is_err() {
                        progress.lock().failed = true;
                        progress.changed.notify_all();
                    }
                    result
                })
            })
            .collect();
        drop(receiver);
        let mut sink = SnapshotSink {
            jobs,
            streams: Mutex::new(Vec::new()),
            pool,
            progress: &progress,
            queued: AtomicUsize::new(0),
        };
        let taken = snapshot(&mut sink);
        let SnapshotSink { jobs, streams, .. } = sink;
        // With the sender gone, the workers finish what is queued and stop.
        drop(jobs);
        let streams = streams
            .into_inner()
            .expect("no stream writer panicked holding it");
        let taken = taken.map(|value| (value, streams));
        let results: Vec<anyhow::Result<()>> = handles
            .into_iter()
            .map(|h| h.join().expect("a store worker does not panic"))
            .collect();
        (taken, results)
    });
    for result in store_results {
        result?;
    }
    let (value, streams) = taken?;
    let stored = progress.stored.into_inner().expect("no worker panicked");
    Ok((value, assemble(streams, &stored.chunks)?, stored.sizes))
}

/// The streams with their chunks in order.
fn assemble(
    streams: Vec<(String, u64)>,
    chunks: &BTreeMap<(usize, usize), ChunkRef>,
) -> anyhow::Result<Vec<SnapshotStream>> {
    let mut assembled: Vec<SnapshotStream> = streams
        .into_iter()
        .map(|(name, size)| SnapshotStream {
            name,
            size,
            chunks: Vec::new(),
        })
        .collect();
    for (&(stream, _), chunk) in chunks {
        assembled[stream].chunks.push(chunk.clone());
    }
    for stream in &assembled {
        let total: u64 = stream.chunks.iter().map(|c| c.size).sum();
        anyhow::ensure!(
            total == stream.size,
            "stream {} of the snapshot holds {} bytes in its chunks but {} were written",
            stream.name,
            total,
            stream.size
        );
    }
    Ok(assembled)
}

/// One store worker: until the job channel closes, or its first error (then it stops taking
/// jobs, so the writer's next send fails and the snapshot stops).
fn store_chunks(
    pool: &BlobPool<'_>,
    jobs: &Mutex<Receiver<ChunkJob>>,
    progress: &Progress,
) -> anyhow::Result<()> {
    loop {
        let job = match jobs.lock().expect("no worker panics holding it").recv() {
            Ok(job) => job,
            Err(_) => return Ok(()),
        };
        let chunk = pool.store(&job.bytes)?;
        let size = job.bytes.len() as u64;
        progress.buffers.give_back(job.bytes);
        let mut stored = progress.lock();
        stored.count(&chunk);
        let reference = ChunkRef {
            name: chunk.name,
            size,
        };
        match job.slot {
            Slot::Stream { stream, index } => {
                stored.sizes.raw += reference.size;
                stored.chunks.insert((stream, index), reference);
            }
            Slot::Loose(number) => {
                stored.loose.insert(number, reference);
                stored.loose_stored += 1;
                progress.changed.notify_all();
            }
        }
    }
}

impl<'s> SnapshotSink<'s> {
    /// A writer for the next stream, stored under `name`; [`StreamWriter::finish`] ends it.
    pub fn stream(&self, name: &str) -> StreamWriter<'_, 's> {
        let mut streams = self
            .streams
            .lock()
            .expect("no stream writer panics holding it");
        streams.push((name.to_owned(), 0));
        StreamWriter {
            stream: streams.len() - 1,
            sink: self,
            pending: Vec::with_capacity(PENDING_CAPACITY),
            cut_to: 0,
            next_index: 0,
            written: 0,
            cutter: Cutter::default(),
        }
    }

    /// Queues one chunk a source cut itself to be stored (waiting while every store worker is
    /// busy and one chunk per worker waits); counted in the snapshot's sizes as a stream's
    /// chunks are, but part of no stream. Its reference comes from [`Self::stored_chunks`].
    pub fn queue_chunk(&self, bytes: &[u8]) -> anyhow::Result<QueuedChunk> {
        let number = self.queued.fetch_add(1, Ordering::Relaxed);
        let job = ChunkJob {
            slot: Slot::Loose(number),
            bytes: self.progress.buffers.copy_of(bytes),
        };
        self.jobs.send(job).map_err(|_| {
            anyhow::anyhow!("the repository stopped taking chunks (its error follows)")
        })?;
        Ok(QueuedChunk(number))
    }

    /// Waits until every chunk queued so far is stored, then hands out the references of
    /// `queued`, in order. Call it once every thread that queues has stopped; an error means a
    /// store failed (the snapshot's error says which).
    pub fn stored_chunks(&self, queued: Vec<QueuedChunk>) -> anyhow::Result<Vec<ChunkRef>> {
        let mut stored = self.progress.lock();
        while stored.loose_stored < self.queued.load(Ordering::Relaxed) && !stored.failed {
            stored = self
                .progress
                .changed
                .wait(stored)
                .unwrap_or_else(|e| e.into_inner());
        }
        anyhow::ensure!(
            !stored.failed,
            "the repository stopped taking chunks (its error follows)"
        );
        queued
            .into_iter()
            .map(|QueuedChunk(number)| {
                stored
                    .loose
                    .remove(&number)
                    .ok_or_else(|| anyhow::anyhow!("chunk {number} was handed out twice"))
            })
            .collect()
    }

    /// The pool the snapshot stores into, where earlier snapshots' chunks are read back.
    pub fn pool(&self) -> &BlobPool<'s> {
        self.pool
    }
}

/// One stream of a snapshot: bytes written are cut into chunks and queued to be stored.
pub struct StreamWriter<'w, 's> {
    sink: &'w SnapshotSink<'s>,
    stream: usize,
    /// Bytes received: those before `cut_to` are queued already; fewer than a largest chunk
    /// follow it once each write returns.
    pending: Vec<u8>,
    cut_to: usize,
    next_index: usize,
    written: u64,
    cutter: Cutter,
}

impl StreamWriter<'_, '_> {
    /// Cuts and queues what is left; returns the stream's size.
    pub fn finish(mut self) -> std::io::Result<u64> {
        while self.cut_to < self.pending.len() {
            self.cut_one()?;
        }
        self.sink
            .streams
            .lock()
            .expect("no stream writer panics holding it")[self.stream]
            .1 = self.written;
        Ok(self.written)
    }

    /// Cuts the next chunk of the pending bytes and queues a copy of it.
    fn cut_one(&mut self) -> std::io::Result<()> {
        let uncut = &self.pending[self.cut_to..];
        let length = self.cutter.next_length(uncut);
        let job = ChunkJob {
            slot: Slot::Stream {
                stream: self.stream,
                index: self.next_index,
            },
            bytes: self.sink.progress.buffers.copy_of(&uncut[..length]),
        };
        self.cut_to += length;
        self.next_index += 1;
        self.sink.jobs.send(job).map_err(|_| {
            std::io::Error::other("the repository stopped taking chunks (its error follows)")
        })
    }
}

impl Write for StreamWriter<'_, '_> {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<usize> {
        let given = bytes.len();
        while !bytes.is_empty() {
            if self.pending.len() == PENDING_CAPACITY {
                self.pending.drain(..self.cut_to);
                self.cut_to = 0;
            }
            let taken = bytes.len().min(PENDING_CAPACITY - self.pending.len());
            self.pending.extend_from_slice(&bytes[..taken]);
            self.written += taken as u64;
            bytes = &bytes[taken..];
            while self.pending.len() - self.cut_to >= LARGEST_CHUNK {
                self.cut_one()?;
            }
        }
        Ok(given)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
