//! Reading a stored stream of a snapshot back, in order, as a `Read`: a thread fetches and
//! checks each chunk (its object checksums and that its content has its name) a few chunks
//! ahead, so a restore's consumer (a file, a Redis replica) is never kept waiting on the
//! repository more than once.

use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use crate::repo::Repository;
use crate::repo::source_catalog::{SnapshotStream, source_blobs};

/// Chunks fetched ahead of the reader.
const AHEAD: usize = 3;

/// A stream of a snapshot, read back.
pub struct StreamReader {
    chunks: Receiver<anyhow::Result<Vec<u8>>>,
    current: Vec<u8>,
    position: usize,
    remaining: u64,
    name: String,
}

impl StreamReader {
    /// Starts fetching `stream` of source `source` from `repo`.
    pub fn open(repo: Arc<Repository>, source: &str, stream: &SnapshotStream) -> StreamReader {
        let (sender, chunks) = sync_channel(AHEAD);
        let source = source.to_owned();
        let refs = stream.chunks.clone();
        std::thread::spawn(move || {
            let pool = match source_blobs(&repo, &source) {
                Ok(pool) => pool,
                Err(e) => {
                    let _ = sender.send(Err(e));
                    return;
                }
            };
            for chunk in refs {
                let mut bytes = Vec::new();
                let fetched = pool.get_chunk(&chunk, &mut bytes).map(|()| bytes);
                let failed = fetched.is_err();
                // The reader hung up: nothing more is wanted.
                if sender.send(fetched).is_err() || failed {
                    return;
                }
            }
        });
        StreamReader {
            chunks,
            current: Vec::new(),
            position: 0,
            remaining: stream.size,
            name: stream.name.clone(),
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.position == self.current.len() {
            if self.remaining == 0 {
                return Ok(0);
            }
            self.current = match self.chunks.recv() {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "read {} from the repository: {e:#}",
                        self.name
                    )));
                }
                Err(_) => {
                    return Err(std::io::Error::other(format!(
                        "read {} from the repository: it ended {} bytes early",
                        self.name, self.remaining
                    )));
                }
            };
            self.position = 0;
        }
        let n = out.len().min(self.current.len() - self.position);
        out[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}
