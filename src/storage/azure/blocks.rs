//! Block uploads, for blobs larger than one block. The body is read one block at a time on the
//! caller's thread, and up to [`BLOCKS_IN_FLIGHT`] blocks are sent at once (Put Block), each
//! with its CRC-64 the service checks; so a put holds about (`BLOCKS_IN_FLIGHT` + 1) × the block
//! size in memory, whatever the blob's size. The blocks are committed by one Put Block List with
//! `If-None-Match: *` that records the whole blob's MD5 (what a whole read checks): the blob
//! appears whole under its name, or not at all, and never replaces one.
//!
//! A put that does not commit leaves only uncommitted blocks: no blob, nothing listed, nothing
//! a read finds. There is no call to drop them; the service discards them after a week, or at
//! the next commit of a blob of that name. Each upload names its blocks after a random number
//! of its own, so two writers of one name never mix their blocks.

use std::io;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::Method;
use md5::{Digest, Md5};
use tokio::task::{JoinError, JoinSet};

use super::container::{AzureSettings, AzureStorage, failure_for};
use super::http::{BlobClient, Call};
use crate::storage::{ObjectKey, PutBody, PutResult, StorageError};
use crate::units;

/// The smallest block size taken: smaller blocks only make more requests.
pub const MIN_BLOCK_SIZE: u64 = 1 << 20;
/// Azure refuses blocks larger than this (4000 MiB).
pub const MAX_BLOCK_SIZE: u64 = 4000 << 20;
/// Azure refuses blobs of more blocks than this.
const MAX_BLOCKS: u64 = 50_000;
/// The block size when none is configured: as for S3's parts, larger than a 16 MiB WAL segment
/// or backup chunk with its header, so those go up in one request.
pub const DEFAULT_BLOCK_SIZE: u64 = 32 << 20;
/// Blocks sent at once.
const BLOCKS_IN_FLIGHT: usize = 4;

/// Blobs up to this size go up in one Put Blob: the configured block size, within bounds.
pub(super) fn single_put_limit(settings: &AzureSettings) -> u64 {
    settings.block_size.clamp(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE)
}

/// The size of the blocks a blob of `length` bytes goes up in: the configured size, grown to a
/// whole number of MiB where the blob would otherwise need more than 50,000 blocks. `None` when
/// not even 50,000 of the largest hold it.
fn block_size_for(length: u64, settings: &AzureSettings) -> Option<u64> {
    let fitting = length.div_ceil(MAX_BLOCKS).next_multiple_of(1 << 20);
    let size = single_put_limit(settings).max(fitting);
    (size <= MAX_BLOCK_SIZE).then_some(size)
}

/// How Azure writes a CRC-64/NVME in `x-ms-content-crc64`: the base64 of its eight
/// little-endian bytes.
pub(super) fn crc64_base64(bytes: &[u8]) -> String {
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, bytes);
    STANDARD.encode(crc.to_le_bytes())
}

/// The base64 of an MD5, as `Content-MD5` holds it.
pub(super) fn md5_base64(digest: &[u8]) -> String {
    STANDARD.encode(digest)
}

impl AzureStorage {
    /// Stores the `length` bytes `body` yields under `key` in blocks, with the promises of
    /// [`Storage::put_if_absent_from`](crate::storage::Storage::put_if_absent_from).
    pub(super) fn put_blocks(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
        let (length, cancel) = (body.length, body.cancel);
        let doing = self.doing("put", key.as_str());
        let Some(block_size) = block_size_for(length, &self.settings) else {
            return Err(StorageError::Io {
                doing,
                source: io::Error::other(format!(
                    "{length} bytes is more than Azure takes in one blob ({MAX_BLOCKS} blocks of {})",
                    units::bytes(MAX_BLOCK_SIZE)
                )),
            });
        };
        cancel.check(|| doing.clone())?;
        let mut sending = BlocksInFlight {
            storage: self,
            path: self.blob_path(key.as_str()),
            doing: doing.clone(),
            upload: fastrand::u64(..),
            tasks: JoinSet::new(),
            stored: Vec::new(),
        };
        let mut whole = Md5::new();
        let mut block: Vec<u8> = Vec::new();
        let mut taken: u64 = 0;
        let read = body
            .copy(&|| doing.clone(), |mut chunk| {
                whole.update(chunk);
                while !chunk.is_empty() {
                    if block.is_empty() {
                        // Sized once, for this block only: the last one is usually smaller.
                        block.reserve_exact(block_size.min(length - taken) as usize);
                    }
                    let take = chunk.len().min((block_size - block.len() as u64) as usize);
                    block.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    taken += take as u64;
                    if block.len() as u64 == block_size {
                        sending.start(std::mem::take(&mut block))?;
                    }
                }
                Ok(())
            })
            .and_then(|()| {
                if block.is_empty() {
                    Ok(())
                } else {
                    sending.start(std::mem::take(&mut block))
                }
            });
        let ids = sending.finish();
        read?;
        let ids = ids?;
        // The last moment a cancellation can stop the put: committing is the commit.
        cancel.check(|| doing.clone())?;
        self.commit_blocks(key, &ids, &whole.finalize(), &doing)
    }

    /// Put Block List of `ids`, create-only, recording the blob's MD5.
    fn commit_blocks(&self, key: &ObjectKey, ids: &[String], md5: &[u8], doing: &str) -> PutResult {
        let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in ids {
            list.push_str(&format!("<Latest>{id}</Latest>"));
        }
        list.push_str("</BlockList>");
        let committing = format!("{doing}: commit its {} blocks", ids.len());
        let call = Call::new(Method::PUT, self.blob_path(key.as_str()), &committing)
            .query("comp", "blocklist")
            .header("if-none-match", "*")
            .header("x-ms-blob-content-md5", md5_base64(md5))
            .body(Bytes::from(list));
        self.created_or_taken(&call, committing.clone())
    }
}

/// The blocks of one upload on their way, at most [`BLOCKS_IN_FLIGHT`] at once.
struct BlocksInFlight<'a> {
    storage: &'a AzureStorage,
    path: String,
    doing: String,
    /// This upload's own number, in every block id.
    upload: u64,
    tasks: JoinSet<(usize, Result<String, StorageError>)>,
    /// The id of each block stored so far, by index.
    stored: Vec<Option<String>>,
}

impl BlocksInFlight<'_> {
    /// Sends `bytes` as the next block once fewer than [`BLOCKS_IN_FLIGHT`] are on the way.
    /// Fails with the failure of an earlier block, if one has failed by then.
    fn start(&mut self, bytes: Vec<u8>) -> Result<(), StorageError> {
        while let Some(joined) = self.tasks.try_join_next() {
            self.record(joined)?;
        }
        while self.tasks.len() >= BLOCKS_IN_FLIGHT {
            let joined = self.storage.runtime.block_on(self.tasks.join_next());
            self.record(joined.expect("blocks are on the way"))?;
        }
        let index = self.stored.len();
        self.stored.push(None);
        // Every id of a blob has the same length: 16 hex digits of the upload, 6 of the index.
        let id = STANDARD.encode(format!("{:016x}{index:06}", self.upload));
        let checksum = crc64_base64(&bytes);
        let client: Arc<BlobClient> = Arc::clone(&self.storage.client);
        let settings = self.storage.settings.clone();
        let path = self.path.clone();
        let doing = format!("{}: send block {}", self.doing, index + 1);
        let sent = async move {
            let call = Call::new(Method::PUT, path, &doing)
                .query("comp", "block")
                .query("blockid", id.clone())
                .header("x-ms-content-crc64", checksum)
                .body(Bytes::from(bytes));
            let outcome = match client.send(&call).await {
                Ok(_) => Ok(id),
                Err(failure) => Err(failure_for(&settings, doing.clone(), failure)),
            };
            (index, outcome)
        };
        self.tasks.spawn_on(sent, self.storage.runtime.handle());
        Ok(())
    }

    fn record(
        &mut self,
        joined: Result<(usize, Result<String, StorageError>), JoinError>,
    ) -> Result<(), StorageError> {
        match joined {
            Ok((index, Ok(id))) => {
                self.stored[index] = Some(id);
                Ok(())
            }
            Ok((_, Err(failure))) => Err(failure),
            Err(e) => Err(StorageError::Io {
                doing: self.doing.clone(),
                source: io::Error::other(format!("sending a block failed: {e}")),
            }),
        }
    }

    /// Waits for every block still on the way: the block ids in order, or the first failure
    /// among them.
    fn finish(mut self) -> Result<Vec<String>, StorageError> {
        let mut first_failure = None;
        while let Some(joined) = self.storage.runtime.block_on(self.tasks.join_next()) {
            if let Err(failure) = self.record(joined) {
                first_failure.get_or_insert(failure);
            }
        }
        match first_failure {
            Some(failure) => Err(failure),
            None => Ok(self.stored.into_iter().flatten().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::storage::azure::AzureCredentials;

    fn settings(block_size: u64) -> AzureSettings {
        AzureSettings {
            account: "a".into(),
            container: "c".into(),
            prefix: String::new(),
            endpoint: None,
            credentials: AzureCredentials::account_key("AAEC").unwrap(),
            block_size,
            request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn blocks_stay_within_azures_limits() {
        const MIB: u64 = 1 << 20;
        let default = settings(DEFAULT_BLOCK_SIZE);
        assert_eq!(
            block_size_for(100 * MIB, &default),
            Some(DEFAULT_BLOCK_SIZE)
        );
        assert_eq!(block_size_for(50_000 * 32 * MIB, &default), Some(32 * MIB));
        assert_eq!(
            block_size_for(50_000 * 32 * MIB + 1, &default),
            Some(33 * MIB)
        );
        assert_eq!(
            block_size_for(50_000 * MAX_BLOCK_SIZE, &default),
            Some(MAX_BLOCK_SIZE)
        );
        assert_eq!(block_size_for(50_000 * MAX_BLOCK_SIZE + 1, &default), None);
        assert_eq!(single_put_limit(&settings(1)), MIN_BLOCK_SIZE);
        assert_eq!(single_put_limit(&settings(u64::MAX)), MAX_BLOCK_SIZE);
    }

    #[test]
    fn checksums_are_written_as_azure_writes_them() {
        // CRC-64/NVME of "123456789" is AE8B14860A799888, sent least significant byte first.
        assert_eq!(
            crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, b"123456789"),
            0xAE8B_1486_0A79_9888
        );
        assert_eq!(crc64_base64(b"123456789"), "iJh5CoYUi64=");
        // MD5 of "abc", as `printf abc | openssl md5 -binary | base64` prints it.
        assert_eq!(md5_base64(&Md5::digest(b"abc")), "kAFQmDzST7DWlj99KOF/cg==");
    }
}
