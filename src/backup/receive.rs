//! The receiving side of a backup: BASE_BACKUP's answer is read on one thread, each tar archive
//! in it handed in batches to a tar reader of its own (`splitter.rs`), whose chunks a pool of
//! store workers (`store_pool.rs`) hashes, compresses and stores on all cores. Whatever fails,
//! every thread is let finish before the first failure is returned, and the failure reported
//! is the one that says why (a tar reader's own error, not the network side's "it stopped").

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::Sender;

use super::BackupOptions;
use super::splitter::{ChannelReader, ChunkJob, PendingChunk, SplitArchive, split_archive};
use super::store_pool::{StoreStats, run_worker};
use crate::pg::{Lsn, TimelineId};
use crate::progress::Progress;
use crate::protocol::base_backup::{
    BackupEvent, BaseBackupDecoder, BaseBackupOptions, TablespaceEntry,
};
use crate::protocol::{ConnectTarget, ReplicationConnection, ServerError};
use crate::repo::Stanza;
use crate::repo::catalog::{BackupEntry, TablespaceRecord};

/// Bytes of the stream passed to the tar reader at a time.
const HANDOFF_BATCH: usize = 1 << 20;

/// The tar reader ended before the stream did; its own error is the cause.
#[derive(Debug, thiserror::Error)]
#[error("the tar reader stopped early")]
struct ReaderStopped;

/// What the network side collected.
pub(super) struct Received {
    pub server_version_num: u32,
    pub start: (Lsn, TimelineId),
    /// End position, timeline, and when the server reported it.
    pub end: (Lsn, TimelineId, chrono::DateTime<chrono::Utc>),
    pub tablespaces: Vec<TablespaceRecord>,
    pub manifest: Vec<u8>,
}

/// Receives the backup labelled `label` from the server at `target` and stores its files'
/// chunks in `stanza`: what the server said, every file's entry with its chunks' hashes, and
/// what storing them took.
pub(super) fn receive_and_store(
    stanza: &Stanza<'_>,
    target: &ConnectTarget,
    options: &BackupOptions,
    label: &str,
) -> anyhow::Result<(Received, Vec<BackupEntry>, StoreStats)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the network runtime")?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    // Two per core: each chunk stored waits for an fsync of itself (its directories' are owed
    // until the end), and another worker compresses meanwhile (on 2 cores, 11% less wall time
    // than one per core, measured when each chunk also waited for its directories). The queue
    // stays sized by cores, so what is held in memory grows by a third.
    let workers = cores * 2;
    let stats = StoreStats::default();
    let received_bytes = AtomicU64::new(0);
    let next_chunk_id = AtomicUsize::new(0);
    // The chunks' directories are fsynced once each, after the last chunk and before the
    // record that refers to them, not once per chunk.
    let blobs = stanza.blobs().deferring_syncs();
    let (received, entries) = std::thread::scope(|scope| {
        let (job_sender, job_receiver) = sync_channel(cores * 2);
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let pool: Vec<_> = (0..workers)
            .map(|_| {
                let jobs = Arc::clone(&job_receiver);
                let (stats, blobs) = (&stats, &blobs);
                scope.spawn(move || run_worker(blobs, &jobs, stats))
            })
            .collect();
        drop(job_receiver);
        let mut splitters = Splitters {
            scope,
            jobs: job_sender,
            next_chunk_id: &next_chunk_id,
            received_bytes: &received_bytes,
            running: Vec::new(),
        };
        let network = runtime.block_on(stream(stanza, target, options, label, &mut splitters));
        // Whatever happened, let the threads finish: closing the channels ends them.
        let (mut entries, pending, mut first_error) = splitters.finish();
        for worker in pool {
            if let Err(e) = worker.join().expect("a store worker does not panic") {
                first_error.get_or_insert(e);
            }
        }
        name_chunks(&mut entries, pending, &stats, &mut first_error);
        if first_error.is_none() && network.is_ok() {
            first_error = blobs.sync_deferred().err();
        }
        match (network, first_error) {
            (Ok(received), None) => Ok((received, entries)),
            // The reader's own error says why it stopped.
            (Err(e), Some(cause)) if e.is::<ReaderStopped>() => Err(cause),
            (Err(e), _) => Err(e),
            (Ok(_), Some(e)) => Err(e),
        }
    })?;
    Ok((received, entries, stats))
}

/// The pool hashed each chunk; puts the names into the entries. A chunk the pool never stored
/// is a failure, unless there is one already.
fn name_chunks(
    entries: &mut [BackupEntry],
    pending: Vec<PendingChunk>,
    stats: &StoreStats,
    first_error: &mut Option<anyhow::Error>,
) {
    let hashes = std::mem::take(&mut *stats.hashes.lock().expect("workers have ended"));
    for (entry, chunk, id) in pending {
        match hashes.get(&id) {
            Some(sha256) => entries[entry].chunks[chunk].name = sha256.clone(),
            None => {
                first_error.get_or_insert_with(|| {
                    anyhow::anyhow!("chunk {id} of {} was never stored", entries[entry].path)
                });
            }
        }
    }
}

/// The tar readers, one thread per archive, feeding the store pool.
struct Splitters<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    jobs: SyncSender<ChunkJob>,
    next_chunk_id: &'env AtomicUsize,
    received_bytes: &'env AtomicU64,
    running: Vec<ScopedJoinHandle<'scope, anyhow::Result<SplitArchive>>>,
}

impl<'scope> Splitters<'scope, '_> {
    /// Starts a tar reader for an archive whose members go under `prefix`; the archive's bytes
    /// are sent to what this returns, and dropping it ends the archive.
    fn start(&mut self, prefix: String) -> Sender<Bytes> {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
        let jobs = self.jobs.clone();
        let next_chunk_id = self.next_chunk_id;
        let received_bytes = self.received_bytes;
        self.running.push(self.scope.spawn(move || {
            split_archive(
                ChannelReader::new(receiver),
                &prefix,
                &jobs,
                next_chunk_id,
                received_bytes,
            )
        }));
        sender
    }

    /// Closes the pool's channel and waits for every reader: the entries of all archives in
    /// order, the chunks whose hashes they wait for, and the first reader's failure.
    fn finish(self) -> (Vec<BackupEntry>, Vec<PendingChunk>, Option<anyhow::Error>) {
        drop(self.jobs);
        let mut entries = Vec::new();
        let mut pending = Vec::new();
        let mut first_error = None;
        for splitter in self.running {
            match splitter.join().expect("the tar reader does not panic") {
                Ok(split) => {
                    let offset = entries.len();
                    entries.extend(split.entries);
                    pending.extend(
                        split
                            .pending
                            .into_iter()
                            .map(|(e, c, id)| (e + offset, c, id)),
                    );
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        (entries, pending, first_error)
    }
}

/// Runs BASE_BACKUP on a replication connection to `target`, handing each archive to a tar
/// reader of `splitters`, and returns what the server said about the backup.
async fn stream(
    stanza: &Stanza<'_>,
    target: &ConnectTarget,
    options: &BackupOptions,
    label: &str,
    splitters: &mut Splitters<'_, '_>,
) -> anyhow::Result<Received> {
    let mut connection = connect_to_the_stanzas_server(stanza, target).await?;
    let command = BaseBackupOptions {
        label: format!("tidemark {label}"),
        fast_checkpoint: options.fast_checkpoint,
        include_wal: options.include_wal,
    }
    .command(connection.server_version_num)?;
    connection.start_query(&command).await?;
    let mut decoder = BaseBackupDecoder::new(connection.server_version_num);
    let mut answer = Answer::new(splitters);
    while !decoder.is_done() {
        let message = connection.next_message().await.map_err(with_what_to_do)?;
        for event in decoder.feed(message)? {
            answer.take(event).await?;
        }
    }
    answer.progress.finish();
    let server_version_num = connection.server_version_num;
    connection.close().await;
    Ok(Received {
        server_version_num,
        start: answer
            .start
            .context("the server never said where the backup starts")?,
        end: answer
            .end
            .context("the server never said where the backup ends")?,
        tablespaces: answer.tablespaces,
        manifest: answer.manifest,
    })
}

/// An error ending BASE_BACKUP, with what to do when the server found the data damaged.
fn with_what_to_do(error: anyhow::Error) -> anyhow::Error {
    match error.downcast_ref::<ServerError>() {
        // ERRCODE_DATA_CORRUPTED: with data checksums on (18's default), the server checks every
        // page it sends, warns of each bad one, and ends the backup with this error.
        Some(server) if server.code == "XX001" => anyhow::anyhow!(
            "BASE_BACKUP: {server}: the server's warnings above name the damaged file and block; repair it (from a standby or an earlier backup) and back up again"
        ),
        _ => error.context("BASE_BACKUP"),
    }
}

/// A replication connection to `target`, once it has shown to be the stanza's cluster.
async fn connect_to_the_stanzas_server(
    stanza: &Stanza<'_>,
    target: &ConnectTarget,
) -> anyhow::Result<ReplicationConnection> {
    let mut connection = ReplicationConnection::connect(target).await?;
    // First, because a cluster upgraded in place has both a new major and a new identifier.
    let server_major = connection.server_version_num / 10000;
    let stanza_major = stanza.identity().pg_version;
    if server_major != stanza_major {
        bail!(
            "the server at {} runs PostgreSQL {server_major}, but stanza '{}' holds PostgreSQL {stanza_major}: back up a server of the stanza's version, or create a new stanza for the upgraded cluster",
            target.endpoint,
            stanza.name()
        );
    }
    let identity = connection.identify_system().await?;
    let expected = stanza.identity().system_id;
    if identity.system_id != expected {
        bail!(
            "the server at {} has system identifier {}, but stanza '{}' is bound to {}: check conninfo for this stanza",
            target.endpoint,
            identity.system_id,
            stanza.name(),
            expected
        );
    }
    Ok(connection)
}

/// The server's answer to BASE_BACKUP as it arrives: what it says about the backup, and the
/// archive being received.
struct Answer<'a, 'scope, 'env> {
    splitters: &'a mut Splitters<'scope, 'env>,
    progress: Progress,
    start: Option<(Lsn, TimelineId)>,
    end: Option<(Lsn, TimelineId, chrono::DateTime<chrono::Utc>)>,
    tablespaces: Vec<TablespaceRecord>,
    manifest: Vec<u8>,
    /// The tar reader of the archive being received, if one is.
    archive: Option<Sender<Bytes>>,
    /// Bytes of that archive not yet handed to it.
    batch: BytesMut,
}

impl<'a, 'scope, 'env> Answer<'a, 'scope, 'env> {
    fn new(splitters: &'a mut Splitters<'scope, 'env>) -> Self {
        Answer {
            splitters,
            progress: Progress::new("backup", "received"),
            start: None,
            end: None,
            tablespaces: Vec::new(),
            manifest: Vec::new(),
            archive: None,
            batch: BytesMut::with_capacity(2 * HANDOFF_BATCH),
        }
    }

    fn received_bytes(&self) -> u64 {
        self.splitters.received_bytes.load(Ordering::Relaxed)
    }

    async fn take(&mut self, event: BackupEvent) -> anyhow::Result<()> {
        match event {
            BackupEvent::Started {
                start_lsn,
                timeline,
            } => self.start = Some((start_lsn, timeline)),
            BackupEvent::Tablespaces(list) => self.take_tablespaces(&list),
            BackupEvent::ArchiveStart { name, tablespace } => {
                self.start_archive(&name, tablespace)?
            }
            BackupEvent::ArchiveData(bytes) => {
                // Handed to the tar reader in batches: one hand-off per CopyData message (a
                // few KiB) costs more than the reading itself.
                self.batch.extend_from_slice(&bytes);
                if self.batch.len() >= HANDOFF_BATCH {
                    let sender = self
                        .archive
                        .as_ref()
                        .context("archive data before any archive started")?;
                    if sender.send(self.batch.split().freeze()).await.is_err() {
                        return Err(ReaderStopped.into());
                    }
                    self.progress.set_done(self.received_bytes());
                }
            }
            BackupEvent::ArchiveEnd => {
                let sender = self
                    .archive
                    .take()
                    .context("an archive ended that never started")?;
                if !self.batch.is_empty() && sender.send(self.batch.split().freeze()).await.is_err()
                {
                    return Err(ReaderStopped.into());
                }
            }
            BackupEvent::Progress(_) => self.progress.set_done(self.received_bytes()),
            BackupEvent::ManifestData(bytes) => self.manifest.extend_from_slice(&bytes),
            BackupEvent::Finished { end_lsn, timeline } => {
                // Taken as the server reports the end: the end record is older, so a time
                // target after this instant is certainly after the backup.
                self.end = Some((end_lsn, timeline, chrono::Utc::now()));
            }
        }
        Ok(())
    }

    fn take_tablespaces(&mut self, list: &[TablespaceEntry]) {
        self.progress.set_total(estimated_total(list), true);
        for t in list {
            if let (Some(oid), Some(location)) = (t.oid, &t.location) {
                self.tablespaces.push(TablespaceRecord {
                    oid,
                    location: location.clone(),
                });
            }
        }
    }

    fn start_archive(
        &mut self,
        name: &str,
        tablespace: Option<TablespaceEntry>,
    ) -> anyhow::Result<()> {
        let prefix = match tablespace.and_then(|t| t.oid) {
            Some(oid) => format!("pg_tblspc/{oid}/"),
            None if name.starts_with("base.tar") => String::new(),
            None => bail!("the server sent archive {name} for an unknown tablespace"),
        };
        if !name.ends_with(".tar") {
            bail!("the server sent a compressed archive {name}; Tidemark asks for plain tar");
        }
        self.archive = Some(self.splitters.start(prefix));
        Ok(())
    }
}

// The decoder refuses a manifest the repository would refuse to read back.
const _: () =
    assert!(crate::protocol::base_backup::MAX_MANIFEST_LEN == crate::repo::limits::BACKUP_MANIFEST);

/// The server's estimate of the bytes it will send, from the tablespace sizes it listed (files
/// change while they are sent). Saturating: a size no server sends must not wrap or panic.
fn estimated_total(list: &[TablespaceEntry]) -> u64 {
    list.iter()
        .filter_map(|t| t.size_kib)
        .fold(0u64, |total, kib| {
            total.saturating_add(kib.saturating_mul(1024))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tablespace_size_no_server_sends_saturates_the_estimate() {
        let entry = |size_kib| TablespaceEntry {
            oid: None,
            location: None,
            size_kib: Some(size_kib),
        };
        assert_eq!(estimated_total(&[entry(3), entry(5)]), 8192);
        assert_eq!(
            estimated_total(&[entry(u64::MAX / 1024), entry(2)]),
            u64::MAX
        );
        assert_eq!(estimated_total(&[entry(u64::MAX)]), u64::MAX);
    }
}
