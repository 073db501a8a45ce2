//! Splits one tar archive of the BASE_BACKUP stream into catalog entries and content chunks,
//! as it arrives: no file is staged on local disk. This thread is the one serial step, so it
//! does only what needs stream order (tar headers, each file's CRC-32C); each chunk goes to the
//! store pool under a number, and the pool's SHA-256 of it (its name in the repository) is
//! filled into the entry afterwards.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

use anyhow::{Context, bail};
use bytes::Bytes;
use sha2::{Digest, Sha256};

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

/// Reads the bytes of one archive from the network side, for the synchronous tar reader.
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

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads every member of the archive, prefixing paths with `prefix` (`""` for the base
/// directory, `pg_tblspc/<oid>/` for a tablespace), sends each file's chunks to `jobs`, and
/// returns the entries. `received` counts file bytes read, for progress.
pub fn split_archive(
    reader: impl Read,
    prefix: &str,
    jobs: &SyncSender<ChunkJob>,
    next_id: &std::sync::atomic::AtomicUsize,
    received: &AtomicU64,
) -> anyhow::Result<SplitArchive> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = Vec::new();
    let mut pending = Vec::new();
    for member in archive.entries().context("read the tar stream")? {
        let mut member = member.context("read the tar stream")?;
        let header = member.header();
        let raw_path = member
            .path()
            .context("tar member path")?
            .to_string_lossy()
            .into_owned();
        // PostgreSQL writes one member as "./pg_wal/archive_status"; "." and empty components
        // mean nothing, ".." would escape the data directory on restore.
        let components: Vec<&str> = raw_path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if components.is_empty() || components.contains(&"..") {
            bail!("the tar stream has an unsafe path {raw_path:?}");
        }
        let path = components.join("/");
        let mode = header.mode().context("tar member mode")?;
        let mtime = header.mtime().context("tar member time")?;
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink => EntryKind::Symlink,
            other => bail!("the tar stream has {path} of unexpected type {other:?}"),
        };
        let link = match kind {
            EntryKind::Symlink => Some(
                member
                    .link_name()
                    .context("tar link target")?
                    .context("a symbolic link without a target")?
                    .to_string_lossy()
                    .into_owned(),
            ),
            _ => None,
        };
        let mut entry = BackupEntry {
            path: format!("{prefix}{path}"),
            kind,
            mode,
            mtime,
            size: 0,
            crc32c: None,
            chunks: Vec::new(),
            link,
        };
        if kind == EntryKind::File {
            let size = member.size();
            let mut crc = 0u32;
            let mut left = size;
            while left > 0 {
                let take = left.min(CHUNK_SIZE as u64) as usize;
                // Filled straight from the stream, never zeroed first.
                let mut bytes = Vec::with_capacity(take);
                (&mut member)
                    .take(take as u64)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("read {} from the tar stream", entry.path))?;
                if bytes.len() != take {
                    bail!("the tar stream ended inside {}", entry.path);
                }
                crc = crc32c::crc32c_append(crc, &bytes);
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                pending.push((entries.len(), entry.chunks.len(), id));
                entry.chunks.push(ChunkRef {
                    sha256: String::new(),
                    size: take as u64,
                });
                received.fetch_add(take as u64, Ordering::Relaxed);
                jobs.send(ChunkJob { id, bytes })
                    .map_err(|_| anyhow::anyhow!("the store workers stopped"))?;
                left -= take as u64;
            }
            entry.size = size;
            entry.crc32c = Some(crc);
        }
        entries.push(entry);
    }
    Ok(SplitArchive { entries, pending })
}

/// The SHA-256 of `bytes` as the repository names blobs: lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            entries[entry].chunks[chunk].sha256 =
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
        assert_eq!(entries[0].chunks[0].sha256, hex(&Sha256::digest(b"hello")));
        assert_eq!(jobs[0].bytes, b"hello");
        assert_eq!(split(&tar).0, entries, "with or without the zero blocks");
    }

    #[test]
    fn paths_that_would_escape_the_data_directory_are_refused() {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..6].copy_from_slice(b"../etc");
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
}
