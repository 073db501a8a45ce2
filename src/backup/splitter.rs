//! Splits one tar archive of the BASE_BACKUP stream into catalog entries and content chunks,
//! as it arrives: no file is staged on local disk. This thread is the one serial step, so it
//! does only what needs stream order (tar headers, each file's CRC-32C); each chunk goes to the
//! store pool under a number, and the pool's hash of it (its name in the repository) is
//! filled into the entry afterwards.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

use anyhow::{Context, bail};
use bytes::Bytes;

use super::ustar::{self, BLOCK_LEN, MemberHeader, MemberKind, padding_after};
use crate::repo::catalog::{BackupEntry, ChunkRef, EntryKind, MAX_CHUNK};

/// Files are stored in chunks of at most this size, the catalog's [`MAX_CHUNK`]: the unit of
/// parallel compression and of sharing between backups (an unchanged 16 MiB of a 1 GiB table
/// file is not stored again).
pub const CHUNK_SIZE: usize = MAX_CHUNK as usize;

/// A chunk to hash and store; `id` says where its SHA-256 goes.
pub struct ChunkJob {
    pub id: usize,
    pub bytes: Vec<u8>,
}

/// A chunk reference whose SHA-256 the pool has yet to compute: entry, chunk, job id.
pub type PendingChunk = (usize, usize, usize);

/// What one archive gave: its entries (chunk hashes still empty) and where each hash goes.
pub struct SplitArchive {
    pub entries: Vec<BackupEntry>,
    pub pending: Vec<PendingChunk>,
}

/// Reads the bytes of one archive from the network side, for the synchronous splitter.
pub struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    pub fn new(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> ChannelReader {
        ChannelReader {
            receiver,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(bytes) => self.current = bytes,
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Reads every member of the archive, prefixing paths with `prefix` (`""` for the base
/// directory, `pg_tblspc/<oid>/` for a tablespace), sends each file's chunks to `jobs`, and
/// returns the entries. `received` counts file bytes read, for progress.
pub fn split_archive(
    mut reader: impl Read,
    prefix: &str,
    jobs: &SyncSender<ChunkJob>,
    next_id: &std::sync::atomic::AtomicUsize,
    received: &AtomicU64,
) -> anyhow::Result<SplitArchive> {
    let mut entries = Vec::new();
    let mut pending = Vec::new();
    while let Some(header) = next_header(&mut reader)? {
        let path = safe_path(&header.path)?;
        let kind = match header.kind {
            MemberKind::File => EntryKind::File,
            MemberKind::Directory => EntryKind::Directory,
            MemberKind::Symlink => EntryKind::Symlink,
        };
        let mut entry = BackupEntry {
            path: format!("{prefix}{path}"),
            kind,
            mode: header.mode,
            mtime: header.mtime,
            size: 0,
            crc32c: None,
            chunks: Vec::new(),
            link: header.link,
        };
        if kind == EntryKind::File {
            let mut crc = 0u32;
            let mut left = header.size;
            while left > 0 {
                let take = left.min(CHUNK_SIZE as u64) as usize;
                let bytes = read_exactly(&mut reader, take, &entry.path)?;
                crc = crc32c::crc32c_append(crc, &bytes);
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                pending.push((entries.len(), entry.chunks.len(), id));
                entry.chunks.push(ChunkRef {
                    name: String::new(),
                    size: take as u64,
                });
                received.fetch_add(take as u64, Ordering::Relaxed);
                jobs.send(ChunkJob { id, bytes })
                    .map_err(|_| anyhow::anyhow!("the store workers stopped"))?;
                left -= take as u64;
            }
            read_exactly(&mut reader, padding_after(header.size), &entry.path)?;
            entry.size = header.size;
            entry.crc32c = Some(crc);
        }
        entries.push(entry);
    }
    Ok(SplitArchive { entries, pending })
}

/// The next member's header; `None` at a zero block or where the stream ends between members
/// (PostgreSQL 13 and 14 leave the two closing zero blocks out).
fn next_header(reader: &mut impl Read) -> anyhow::Result<Option<MemberHeader>> {
    let mut block = [0u8; BLOCK_LEN];
    let mut filled = 0;
    while filled < BLOCK_LEN {
        match reader.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => bail!("the tar stream ended inside a header"),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(anyhow::Error::new(e).context("read the tar stream")),
        }
    }
    ustar::decode_header(&block).context("read the tar stream")
}

/// A member path as a relative path inside the data directory. PostgreSQL writes one member as
/// "./pg_wal/archive_status"; "." and empty components mean nothing, ".." would escape the
/// data directory on restore.
fn safe_path(raw_path: &str) -> anyhow::Result<String> {
    let components: Vec<&str> = raw_path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if components.is_empty() || components.contains(&"..") {
        bail!("the tar stream has an unsafe path {raw_path:?}");
    }
    Ok(components.join("/"))
}

/// Exactly `len` bytes of member `path` (at most a chunk), filled straight from the stream,
/// never zeroed first.
fn read_exactly(reader: &mut impl Read, len: usize, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(len);
    reader
        .take(len as u64)
        .read_to_end(&mut bytes)
        .with_context(|| format!("read {path} from the tar stream"))?;
    if bytes.len() != len {
        bail!("the tar stream ended inside {path}");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use sha2::{Digest, Sha256};

    fn hex(digest: &[u8]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The SHA-256 of `bytes` as a plain repository names blobs: lower-case hex.
    fn sha256_hex(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        for (path, content) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn split(bytes: &[u8]) -> (Vec<BackupEntry>, Vec<ChunkJob>) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1000);
        let ids = std::sync::atomic::AtomicUsize::new(0);
        let split =
            split_archive(bytes, "pg_tblspc/16385/", &sender, &ids, &AtomicU64::new(0)).unwrap();
        drop(sender);
        let jobs: Vec<ChunkJob> = receiver.iter().collect();
        // Fill in the hashes as the pool would.
        let mut entries = split.entries;
        for (entry, chunk, id) in split.pending {
            entries[entry].chunks[chunk].name =
                sha256_hex(&jobs.iter().find(|j| j.id == id).unwrap().bytes);
        }
        (entries, jobs)
    }

    #[test]
    fn an_archive_without_its_closing_zero_blocks_reads_whole() {
        let big = vec![7u8; CHUNK_SIZE + 10];
        let tar = tar_of(&[
            ("PG_15_1/1/1", b"hello"),
            ("PG_15_1/1/2", &big),
            ("PG_15_1/1/3", b""),
        ]);
        // PostgreSQL 13 and 14 leave the two 512-byte zero blocks out.
        let (entries, jobs) = split(&tar[..tar.len() - 1024]);
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "pg_tblspc/16385/PG_15_1/1/1",
                "pg_tblspc/16385/PG_15_1/1/2",
                "pg_tblspc/16385/PG_15_1/1/3"
            ]
        );
        assert_eq!(
            entries[1].chunks.len(),
            2,
            "a file over 16 MiB is two chunks"
        );
        assert_eq!(entries[1].crc32c, Some(crc32c::crc32c(&big)));
        assert!(entries[2].chunks.is_empty());
        assert_eq!(jobs.len(), 3);
        assert_eq!(entries[0].chunks[0].name, hex(&Sha256::digest(b"hello")));
        assert_eq!(jobs[0].bytes, b"hello");
        assert_eq!(split(&tar).0, entries, "with or without the zero blocks");
    }

    #[test]
    fn paths_that_would_escape_the_data_directory_are_refused() {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..6].copy_from_slice(b"../etc");
        header.set_mode(0o600);
        header.set_mtime(0);
        header.set_size(0);
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(&[0u8; 1024]);
        let (sender, _receiver) = std::sync::mpsc::sync_channel(10);
        let ids = std::sync::atomic::AtomicUsize::new(0);
        let error = split_archive(&tar[..], "", &sender, &ids, &AtomicU64::new(0))
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "the tar stream has an unsafe path \"../etc\""
        );
    }

    fn refusal(tar: &[u8]) -> String {
        let (sender, _receiver) = std::sync::mpsc::sync_channel(10);
        let ids = std::sync::atomic::AtomicUsize::new(0);
        let error = split_archive(tar, "", &sender, &ids, &AtomicU64::new(0))
            .err()
            .expect("refused");
        format!("{error:#}")
    }

    /// The tar crate read a GNU long name's content into memory whole, at the size its header
    /// claimed: a stream of such members could make the backup allocate without bound.
    #[test]
    fn a_gnu_long_name_is_refused_by_its_header_without_reading_its_content() {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(1 << 40);
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(&[b'a'; 4096]);
        assert_eq!(
            refusal(&tar),
            "read the tar stream: the tar stream has ././@LongLink of type 'L', which PostgreSQL never sends (GNU long names and pax headers are refused)"
        );
    }

    #[test]
    fn a_truncated_archive_is_refused() {
        let tar = tar_of(&[("PG_15_1/1/1", &[5u8; 1000])]);
        assert_eq!(
            refusal(&tar[..700]),
            "the tar stream ended inside PG_15_1/1/1"
        );
        assert_eq!(
            refusal(&tar[..1300]),
            "the tar stream ended inside PG_15_1/1/1",
            "inside its padding"
        );
        assert_eq!(
            refusal(&tar[..1536 + 100]),
            "the tar stream ended inside a header"
        );
    }
}
