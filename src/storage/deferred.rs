//! Directory fsyncs a writer of many objects leaves until it is about to report them: a
//! backup's chunks (or a source snapshot's) are referred to only by its record, written after
//! the last of them, so the names of its new chunks need only be durable by then. Each chunk's
//! content is fsynced before its rename as always; what waits is the fsync of its directory and
//! of every directory above it, done once per directory when the writer calls
//! [`Storage::sync_deferred`](super::Storage::sync_deferred) instead of once per chunk. A
//! writer killed before that reported nothing, and the next one to find a chunk in place makes
//! it durable again (`head_durable`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

/// Directories whose entries changed (a rename into them, or an object found in them), whose
/// fsyncs, up to the store's root, are owed before the objects in them are reported.
#[derive(Debug, Default)]
pub struct DeferredSyncs {
    dirs: Mutex<BTreeSet<PathBuf>>,
}

impl DeferredSyncs {
    /// Owes the fsyncs of `dir` and the directories above it.
    pub fn owe(&self, dir: PathBuf) {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dir);
    }

    /// Everything owed so far, owed no longer.
    pub fn take(&self) -> BTreeSet<PathBuf> {
        std::mem::take(&mut *self.dirs.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
