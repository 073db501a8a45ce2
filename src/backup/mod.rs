//! `tidemark backup`: a base backup over the replication protocol, streamed straight into the
//! repository. The tar stream is split into files as it arrives, each file's chunks are hashed,
//! compressed and stored on all cores, content already in the repository is not stored again,
//! every file is checked against PostgreSQL's manifest, and the WAL the backup needs must be in
//! the archive (or inside the backup) before its record is written — the record is what makes
//! the backup exist, so an interrupted backup leaves nothing that looks usable.

pub mod splitter;
pub mod store_pool;
pub mod verify;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use crate::pg::backup_label::BackupLabel;
use crate::pg::backup_manifest::BackupManifest;
use crate::pg::{Lsn, SegmentName, TimelineId, WalFileName};
use crate::protocol::base_backup::{BackupEvent, BaseBackupDecoder, BaseBackupOptions};
use crate::protocol::{ConnectTarget, ReplicationConnection};
use crate::repo::Stanza;
use crate::repo::catalog::{
    BackupEntry, BackupRecord, BackupSizes, EntryKind, RECORD_FORMAT, TablespaceRecord,
};
use splitter::{ChannelReader, split_archive};
use store_pool::{StoreStats, run_worker};

/// Bytes of the stream passed to the tar reader at a time.
const HANDOFF_BATCH: usize = 1 << 20;

/// How to take the backup.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub fast_checkpoint: bool,
    pub include_wal: bool,
    /// How long to wait for the needed WAL to reach the archive.
    pub archive_timeout: Duration,
}

/// The tar reader ended before the stream did; its own error is the cause.
#[derive(Debug, thiserror::Error)]
#[error("the tar reader stopped early")]
struct ReaderStopped;

/// What the network side collected.
struct Received {
    server_version_num: u32,
    start: (Lsn, TimelineId),
    /// End position, timeline, and when the server reported it.
    end: (Lsn, TimelineId, chrono::DateTime<chrono::Utc>),
    tablespaces: Vec<TablespaceRecord>,
    manifest: Vec<u8>,
}

/// Shows progress: a bar on a terminal, a log line every 10 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    total: u64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            bar: None,
            last_line: Instant::now(),
            total: 0,
        }
    }

    fn set_total(&mut self, total: u64) {
        self.total = total;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
    }

    fn update(&mut self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_line.elapsed() >= Duration::from_secs(10) => {
                self.last_line = Instant::now();
                tracing::info!(
                    "backup: {} of about {} received",
                    crate::units::bytes(done),
                    crate::units::bytes(self.total)
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Takes a base backup of the server at `target` into `stanza`.
pub fn take_backup(
    stanza: &Stanza<'_>,
    target: &ConnectTarget,
    options: &BackupOptions,
) -> anyhow::Result<BackupRecord> {
    let started = Instant::now();
    let start_time = chrono::Utc::now();
    let label = start_time.format("%Y%m%d-%H%M%SF").to_string();
    // Labels have one-second resolution: find out now, not after all the work.
    if stanza.list_backups()?.iter().any(|b| b.label == label)
        || stanza
            .repository()
            .storage()
            .head(&crate::repo::layout::backup_manifest(stanza.name(), &label))?
            .is_some()
    {
        bail!(
            "a backup labelled {label} was started in this same second; start the next one a second later"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the network runtime")?;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let stats = StoreStats::default();
    let received_bytes = AtomicU64::new(0);
    let next_chunk_id = std::sync::atomic::AtomicUsize::new(0);

    let (received, entries) = std::thread::scope(
        |scope| -> anyhow::Result<(Received, Vec<BackupEntry>)> {
            let (job_sender, job_receiver) = sync_channel(workers * 2);
            let job_receiver = Arc::new(Mutex::new(job_receiver));
            let pool: Vec<_> = (0..workers)
                .map(|_| {
                    let jobs = Arc::clone(&job_receiver);
                    let stats = &stats;
                    scope.spawn(move || run_worker(stanza, &jobs, stats))
                })
                .collect();
            drop(job_receiver);

            let mut splitters = Vec::new();
            let network = runtime.block_on(async {
            let mut connection = ReplicationConnection::connect(target).await?;
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
            let command = BaseBackupOptions {
                label: format!("tidemark {label}"),
                fast_checkpoint: options.fast_checkpoint,
                include_wal: options.include_wal,
            }
            .command(connection.server_version_num)?;
            connection.start_query(&command).await?;
            let mut decoder = BaseBackupDecoder::new(connection.server_version_num);
            let mut progress = Progress::new();
            let mut start = None;
            let mut end = None;
            let mut tablespaces = Vec::new();
            let mut manifest = Vec::new();
                        let mut archive: Option<tokio::sync::mpsc::Sender<Bytes>> = None;
            let mut batch = bytes::BytesMut::with_capacity(2 * HANDOFF_BATCH);
            while !decoder.is_done() {
                let message = connection.next_message().await.context("BASE_BACKUP")?;
                for event in decoder.feed(message)? {
                    match event {
                        BackupEvent::Started { start_lsn, timeline } => start = Some((start_lsn, timeline)),
                        BackupEvent::Tablespaces(list) => {
                            progress.set_total(list.iter().filter_map(|t| t.size_kib).sum::<u64>() * 1024);
                            for t in &list {
                                if let (Some(oid), Some(location)) = (t.oid, &t.location) {
                                    tablespaces.push(TablespaceRecord {
                                        oid,
                                        location: location.clone(),
                                    });
                                }
                            }
                        }
                        BackupEvent::ArchiveStart { name, tablespace } => {
                            let prefix = match tablespace.and_then(|t| t.oid) {
                                Some(oid) => format!("pg_tblspc/{oid}/"),
                                None if name.starts_with("base.tar") => String::new(),
                                None => bail!("the server sent archive {name} for an unknown tablespace"),
                            };
                            if !name.ends_with(".tar") {
                                bail!("the server sent a compressed archive {name}; Tidemark asks for plain tar");
                            }
                            let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
                            archive = Some(sender);
                            let jobs = job_sender.clone();
                            let received_bytes = &received_bytes;
                            let next_chunk_id = &next_chunk_id;
                            splitters.push(scope.spawn(move || {
                                split_archive(ChannelReader::new(receiver), &prefix, &jobs, next_chunk_id, received_bytes)
                            }));
                        }
                                                BackupEvent::ArchiveData(bytes) => {
                            // Handed to the tar reader in batches: one hand-off per CopyData
                            // message (a few KiB) costs more than the reading itself.
                            batch.extend_from_slice(&bytes);
                            if batch.len() >= HANDOFF_BATCH {
                                let sender = archive.as_ref().context("archive data before any archive started")?;
                                if sender.send(batch.split().freeze()).await.is_err() {
                                    return Err(ReaderStopped.into());
                                }
                                progress.update(received_bytes.load(Ordering::Relaxed));
                            }
                        }
                        BackupEvent::ArchiveEnd => {
                            let sender = archive.take().context("an archive ended that never started")?;
                            if !batch.is_empty() && sender.send(batch.split().freeze()).await.is_err() {
                                return Err(ReaderStopped.into());
                            }
                        }
                        BackupEvent::Progress(_) => progress.update(received_bytes.load(Ordering::Relaxed)),
                        BackupEvent::ManifestData(bytes) => manifest.extend_from_slice(&bytes),
                        BackupEvent::Finished { end_lsn, timeline } => {
                            // Taken as the server reports the end: the end record is older, so a
                            // time target after this instant is certainly after the backup.
                            end = Some((end_lsn, timeline, chrono::Utc::now()));
                        }
                    }
                }
            }
            progress.finish();
            let server_version_num = connection.server_version_num;
            connection.close().await;
            Ok(Received {
                server_version_num,
                start: start.context("the server never said where the backup starts")?,
                end: end.context("the server never said where the backup ends")?,
                tablespaces,
                manifest,
            })
        });
            // Whatever happened, let the threads finish: closing the channels ends them.
            drop(job_sender);
            let mut entries = Vec::new();
            let mut pending = Vec::new();
            let mut first_error: Option<anyhow::Error> = None;
            for splitter in splitters {
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
            for worker in pool {
                if let Err(e) = worker.join().expect("a store worker does not panic") {
                    first_error.get_or_insert(e);
                }
            }
            // The pool hashed each chunk; put the names into the entries.
            let hashes = std::mem::take(&mut *stats.hashes.lock().expect("workers have ended"));
            for (entry, chunk, id) in pending {
                match hashes.get(&id) {
                    Some(sha256) => entries[entry].chunks[chunk].sha256 = sha256.clone(),
                    None => {
                        first_error.get_or_insert_with(|| {
                            anyhow::anyhow!(
                                "chunk {id} of {} was never stored",
                                entries[entry].path
                            )
                        });
                    }
                }
            }
            match (network, first_error) {
                (Ok(received), None) => Ok((received, entries)),
                // The reader's own error says why it stopped.
                (Err(e), Some(cause)) if e.is::<ReaderStopped>() => Err(cause),
                (Err(e), _) => Err(e),
                (Ok(_), Some(e)) => Err(e),
            }
        },
    )?;

    let has_manifest = !received.manifest.is_empty();
    if has_manifest {
        let manifest = BackupManifest::parse(&received.manifest)
            .context("check PostgreSQL's backup manifest")?;
        verify::check_against_manifest(&entries, &manifest)
            .context("check what the server sent against its backup manifest")?;
    } else if received.server_version_num >= crate::protocol::base_backup::MANIFEST_FROM {
        bail!("the server sent no backup manifest, though it was asked for one");
    }
    let label_file = entries
        .iter()
        .find(|e| e.path == "backup_label")
        .context("the backup has no backup_label")?;
    let mut label_text = Vec::new();
    for chunk in &label_file.chunks {
        let mut bytes = Vec::new();
        stanza.get_blob(&chunk.sha256, &mut bytes)?;
        label_text.extend_from_slice(&bytes);
    }
    let backup_label = BackupLabel::parse(&String::from_utf8_lossy(&label_text))?;
    if backup_label.start_lsn != received.start.0 {
        bail!(
            "backup_label starts at {}, the server said {}",
            backup_label.start_lsn,
            received.start.0
        );
    }

    let size = stanza.expected_cluster().segment_size;
    let timeline = received.start.1;
    let first = SegmentName::from_segment_number(
        timeline,
        received.start.0.0 / u64::from(size.bytes()),
        size,
    );
    let last = SegmentName::from_segment_number(
        timeline,
        (received.end.0.0.max(1) - 1) / u64::from(size.bytes()),
        size,
    );
    if options.include_wal {
        for segno in first.segment_number(size)?..=last.segment_number(size)? {
            let name = SegmentName::from_segment_number(timeline, segno, size);
            if !entries.iter().any(|e| e.path == format!("pg_wal/{name}")) {
                bail!(
                    "--include-wal was asked for, but the server did not send WAL segment {name}"
                );
            }
        }
    } else {
        wait_for_wal(stanza, first, last, options.archive_timeout)?;
    }

    if has_manifest {
        stanza.put_backup_manifest(&label, &received.manifest)?;
    }
    let original = entries.iter().map(|e| e.size).sum();
    let files = entries.iter().filter(|e| e.kind == EntryKind::File).count() as u64;
    let record = BackupRecord {
        format: RECORD_FORMAT,
        label: label.clone(),
        kind: "full".to_owned(),
        system_id: stanza.identity().system_id,
        pg_version: stanza.identity().pg_version,
        timeline: timeline.0,
        start_lsn: received.start.0,
        stop_lsn: received.end.0,
        start_time: start_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        stop_time: received
            .end
            .2
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        duration_ms: started.elapsed().as_millis() as u64,
        wal_start: first.to_string(),
        wal_stop: last.to_string(),
        wal_included: options.include_wal,
        has_manifest,
        sizes: BackupSizes {
            original,
            stored: stats.stored.load(Ordering::Relaxed),
            new: stats.new.load(Ordering::Relaxed),
            files,
            reused_chunks: stats.reused_chunks.load(Ordering::Relaxed),
        },
        tablespaces: received.tablespaces,
        entries,
    };
    stanza.put_backup_record(&record)?;
    Ok(record)
}

/// Waits until every segment from `first` to `last` is archived in `stanza`.
fn wait_for_wal(
    stanza: &Stanza<'_>,
    first: SegmentName,
    last: SegmentName,
    timeout: Duration,
) -> anyhow::Result<()> {
    let size = stanza.expected_cluster().segment_size;
    let deadline = Instant::now() + timeout;
    for segno in first.segment_number(size)?..=last.segment_number(size)? {
        let name = SegmentName::from_segment_number(first.timeline, segno, size);
        let key = stanza.wal_key(WalFileName::Segment(name));
        while stanza.repository().storage().head(&key)?.is_none() {
            if Instant::now() >= deadline {
                bail!(
                    "the backup needs WAL segment {name}, which is not in the archive of stanza '{}' after {} s: check that archive_command pushes to this stanza (see pg_stat_archiver), or use --include-wal",
                    stanza.name(),
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
