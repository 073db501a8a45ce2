//! archive-push: check a WAL file and compress it (side by side, from one mapping), then store it.

use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::path::Path;

use anyhow::{Context, bail};

use crate::pg::WalFileName;
use crate::pg::history::TimelineHistory;
use crate::pg::page::{LONG_HEADER_LEN, PageHeader};
use crate::pg::segment_check::{CHUNK_ALIGNMENT, SegmentChecker, SegmentKind};
use crate::pg::wal::{RecordWalker, SegmentSummary};
use crate::repo::compress::compress;
use crate::repo::object::{self, EncodedObject, ObjectHeader};
use crate::repo::{Stanza, layout};
use crate::storage::PutOutcome;

/// What happened to a pushed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Newly stored and durable.
    Stored,
    /// The archive already held a byte-identical copy; nothing was written.
    AlreadyArchived,
}

/// A successful push.
#[derive(Clone, Debug)]
pub struct PushReport {
    pub name: WalFileName,
    pub outcome: PushOutcome,
    pub original_len: u64,
    pub stored_len: u64,
}

/// Bytes checked per step: a whole number of the largest WAL pages, so no page is ever split.
const READ_CHUNK: usize = 16 * CHUNK_ALIGNMENT;

/// Checks the WAL file at `path` against `stanza` and stores it.
///
/// Success means the file is durable in the repository, now or from an earlier push of the same
/// bytes. A different file already archived under the same name is an error naming both
/// checksums, and the archived one is left as it is.
pub fn push_wal_file(stanza: &Stanza<'_>, path: &Path) -> anyhow::Result<PushReport> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("'{}' does not end in a file name", path.display()))?;
    let name = WalFileName::parse(file_name)?;
    let mut file = File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => anyhow::anyhow!(
            "it does not exist: archive_command must pass %p, the path PostgreSQL gives relative to its data directory"
        ),
        _ => anyhow::Error::new(e).context("open it"),
    })?;
    let length = file.metadata().context("read its size")?.len();
    // What the segment's records say, for the WAL index; segments only.
    let mut index: Option<SegmentSummary> = None;
    let encoded = match name {
        WalFileName::Segment(segment) | WalFileName::Partial(segment) => {
            let kind = if matches!(name, WalFileName::Partial(_)) {
                SegmentKind::Partial
            } else {
                SegmentKind::Complete
            };
            let mut checker = SegmentChecker::new(stanza.expected_cluster(), segment, kind)?;
            if checker.check_length(length).is_err() {
                let mut first_page = [0u8; LONG_HEADER_LEN];
                let read = read_full(&mut file, &mut first_page).context("read it")?;
                checker.diagnose_length(length, &first_page[..read])?;
            }
            // Mapped, not read: compression and the checks read the page cache directly. The
            // page and record checks run on a second core beside compression, so indexing
            // costs the push next to nothing.
            let expected = stanza.expected_cluster();
            let complete = kind == SegmentKind::Complete;
            // SAFETY: PostgreSQL never changes, truncates or recycles a WAL file it handed to
            // archive_command until archive_command succeeded (the length is checked again
            // below). A file cut short meanwhile by someone else would end this process with
            // SIGBUS before anything is stored, which PostgreSQL reports as a failed push.
            let map =
                unsafe { memmap2::MmapOptions::new().populate().map(&file) }.context("read it")?;
            let settings = stanza.repository().write_settings();
            let (checked, body) = std::thread::scope(|scope| {
                let checking = scope.spawn(|| -> anyhow::Result<(SegmentSummary, u32)> {
                    let mut walker: Option<RecordWalker> = None;
                    let mut crc = 0u32;
                    for chunk in map.chunks(READ_CHUNK) {
                        checker.feed(chunk)?;
                        crc = crc32c::crc32c_append(crc, chunk);
                        // The checker accepted this long header, page size included.
                        let walker = walker.get_or_insert_with(|| {
                            let page_size = PageHeader::decode(chunk)
                                .and_then(|header| header.page_size())
                                .expect("a long header");
                            RecordWalker::new(
                                segment,
                                expected.segment_size,
                                expected.version,
                                page_size,
                            )
                        });
                        walker.feed(chunk)?;
                    }
                    checker.finish()?;
                    let summary = walker
                        .context("it holds no WAL page")?
                        .finish(complete)?
                        .summary;
                    Ok((summary, crc))
                });
                let body = compress(settings.compression, settings.zstd_level, &map);
                (checking.join().expect("the checks do not panic"), body)
            });
            let (summary, original_crc) = checked?;
            let body = body.context("compress it")?;
            if file.metadata().context("read its size")?.len() != length {
                bail!(
                    "it changed size while being read: PostgreSQL never changes a file it hands to archive_command"
                );
            }
            index = Some(summary);
            EncodedObject::new(settings.compression, length, original_crc, body)
        }
        WalFileName::History(timeline) => {
            let content = read_small(&mut file)?;
            TimelineHistory::parse(timeline, &content)
                .context("it is not a valid timeline history file")?;
            encode_bytes(stanza, &content)?
        }
        WalFileName::BackupHistory { .. } => {
            let content = read_small(&mut file)?;
            let text = std::str::from_utf8(&content).ok();
            if !text.is_some_and(|t| t.starts_with("START WAL LOCATION: ")) {
                bail!(
                    "it is not a backup history file: it does not start with 'START WAL LOCATION: '"
                );
            }
            encode_bytes(stanza, &content)?
        }
    };
    finish_push(stanza, name, path, encoded, index)
}

fn encode_bytes(stanza: &Stanza<'_>, content: &[u8]) -> anyhow::Result<EncodedObject> {
    let settings = stanza.repository().write_settings();
    object::encode(settings.compression, settings.zstd_level, content).context("compress it")
}

/// History and backup history files are a few hundred bytes; anything huge is not one.
fn read_small(file: &mut File) -> anyhow::Result<Vec<u8>> {
    const LIMIT: u64 = 16 << 20;
    let mut content = Vec::new();
    file.take(LIMIT + 1)
        .read_to_end(&mut content)
        .context("read it")?;
    if content.len() as u64 > LIMIT {
        bail!("it is larger than 16 MiB, far more than any history file");
    }
    Ok(content)
}

/// Fills `buffer` unless the file ends first; returns the bytes read.
fn read_full(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn finish_push(
    stanza: &Stanza<'_>,
    name: WalFileName,
    path: &Path,
    encoded: EncodedObject,
    index: Option<SegmentSummary>,
) -> anyhow::Result<PushReport> {
    let header = encoded.header;
    let report = |outcome| PushReport {
        name,
        outcome,
        original_len: header.original_len,
        stored_len: header.stored_len,
    };
    let stored = stanza.seal(&stanza.wal_key(name), encoded)?;
    match stanza
        .put_wal(name, &stored)
        .context("store it in the repository")?
    {
        PutOutcome::Created => {
            put_index(stanza, name, &header, index)?;
            Ok(report(PushOutcome::Stored))
        }
        PutOutcome::AlreadyExists => {
            confirm_identical(stanza, name, path, &header)?;
            // A crash between the segment and its index leaves the index to this retry.
            put_index(stanza, name, &header, index)?;
            Ok(report(PushOutcome::AlreadyArchived))
        }
    }
}

/// Stores the segment's index entry unless one is there. Written after the segment: an index
/// entry always describes an archived segment, and one missing is rebuilt from the segment.
fn put_index(
    stanza: &Stanza<'_>,
    name: WalFileName,
    header: &ObjectHeader,
    index: Option<SegmentSummary>,
) -> anyhow::Result<()> {
    if let Some(summary) = index {
        stanza
            .put_wal_index(name, header.original_crc, summary)
            .context("store its WAL index entry")?;
        pack_previous_directory(stanza, name);
    }
    Ok(())
}

/// The first segment of a WAL directory packs the index entries of the directory before it
/// (same timeline), which is then complete. Packing only speeds planning up, so a failure is a
/// warning: the segment is archived, and its entry is there.
fn pack_previous_directory(stanza: &Stanza<'_>, name: WalFileName) {
    let WalFileName::Segment(segment) = name else {
        return;
    };
    if segment.seg != 0 || segment.log == 0 {
        return;
    }
    let previous = layout::wal_directory(segment.timeline, segment.log - 1);
    if let Err(e) = stanza.pack_wal_index(&previous) {
        tracing::warn!(
            "could not pack the WAL index entries of {previous} (planning reads them one by one until 'tidemark index rebuild' packs them): {e:#}"
        );
    }
}

/// Succeeds only if the archived copy of `name` holds exactly the bytes of the file at `path`.
fn confirm_identical(
    stanza: &Stanza<'_>,
    name: WalFileName,
    path: &Path,
    new: &ObjectHeader,
) -> anyhow::Result<()> {
    let key = stanza.wal_key(name);
    let location = stanza.repository().storage().location();
    let stored = stanza
        .get_wal(name)
        .context("read the archived copy")?
        .with_context(|| format!("{key} vanished from {location} while being compared"))?;
    let mut archived = Vec::new();
    let header = object::decode_into(&stored, &mut archived).with_context(|| {
        format!("it is already archived, but the archived copy {key} in {location} is damaged; it was not replaced")
    })?;
    let differs = |archived_crc: u32, archived_len: u64| {
        anyhow::anyhow!(
            "it is already archived with different content: archived copy CRC-32C {archived_crc:08x} ({archived_len} bytes), this file CRC-32C {:08x} ({} bytes); the archived copy is kept. Two clusters may be archiving to one stanza, or this file was damaged",
            new.original_crc,
            new.original_len
        )
    };
    if header.original_crc != new.original_crc || header.original_len != new.original_len {
        return Err(differs(header.original_crc, header.original_len));
    }
    // Equal checksums: compare every byte, so a CRC collision cannot pass as a duplicate.
    let current = std::fs::read(path).context("read it again to compare")?;
    if current != archived {
        return Err(differs(header.original_crc, header.original_len));
    }
    Ok(())
}
