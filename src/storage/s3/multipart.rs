//! Multipart uploads, for objects larger than one part. The body is read one part at a time on
//! the caller's thread, and up to [`PARTS_IN_FLIGHT`] parts are sent at once, each with its
//! CRC-32C; so a put holds about (`PARTS_IN_FLIGHT` + 1) × the part size in memory, whatever the
//! object's size. The upload is completed with `If-None-Match: *`: the object appears whole
//! under its key, or not at all, and never replaces one.
//!
//! An upload that does not complete is aborted, whatever stopped it: a part that still fails
//! after the SDK's retries, a body that fails or is short or long, a cancelled token, or a key
//! already taken (a 412 on completion leaves the upload open on the server). Parts already on
//! the wire are waited for first, so none can land after the abort; the parts of an aborted
//! upload are deleted and nothing is left to be billed. Only a process killed mid-upload, or an
//! abort that itself fails, leaves an unfinished upload: a bucket lifecycle rule with
//! `AbortIncompleteMultipartUpload` removes those.

use std::io;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use tokio::task::{JoinError, JoinSet};

use super::bucket::{S3Settings, S3Storage};
use super::errors::{classify, status_of};
use crate::storage::{ObjectKey, PutBody, PutOutcome, PutResult, StorageError};
use crate::units;

/// S3 refuses parts smaller than this, except the last.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3 refuses parts larger than this.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// S3 refuses uploads of more parts than this.
const MAX_PARTS: u64 = 10_000;
/// The part size when none is configured. Larger than a 16 MiB WAL segment or backup chunk with
/// its header, so a repository of default-sized segments puts every object in one request even
/// when it does not compress.
pub const DEFAULT_PART_SIZE: u64 = 32 << 20;
/// Parts sent at once: enough to keep a link busy while the next part is read, few enough that
/// memory stays small.
const PARTS_IN_FLIGHT: usize = 4;

/// Objects up to this size go up in one PUT: the configured part size, within S3's bounds.
pub(super) fn single_put_limit(settings: &S3Settings) -> u64 {
    settings
        .multipart_part_size
        .clamp(MIN_PART_SIZE, MAX_PART_SIZE)
}

/// The size of the parts an object of `length` bytes goes up in: the configured size, grown to
/// a whole number of MiB where the object would otherwise need more than 10,000 parts. `None`
/// when not even 10,000 parts of the largest size hold it.
fn part_size_for(length: u64, settings: &S3Settings) -> Option<u64> {
    let fitting = length.div_ceil(MAX_PARTS).next_multiple_of(1 << 20);
    let size = single_put_limit(settings).max(fitting);
    (size <= MAX_PART_SIZE).then_some(size)
}

/// How S3 writes a CRC-32C in headers and in the completion request: the base64 of its four
/// big-endian bytes.
fn crc32c_base64(crc: u32) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // 32 bits padded with 4 zero bits make six 6-bit digits; two '=' pad them to eight.
    let bits = u64::from(crc) << 4;
    let mut text: String = (0..6)
        .map(|digit| char::from(ALPHABET[((bits >> (30 - 6 * digit)) & 63) as usize]))
        .collect();
    text.push_str("==");
    text
}

/// An upload the server has opened.
struct OpenUpload {
    object_key: String,
    upload_id: String,
    /// What the put is, for errors ("put s3://bucket/key").
    doing: String,
}

impl S3Storage {
    /// Stores the `length` bytes `body` yields under `key` in a multipart upload, with the
    /// promises of [`Storage::put_if_absent_from`](crate::storage::Storage::put_if_absent_from).
    pub(super) fn put_multipart(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
        let (length, cancel) = (body.length, body.cancel);
        let doing = self.doing("put", key.as_str());
        let Some(part_size) = part_size_for(length, &self.settings) else {
            return Err(StorageError::Io {
                doing,
                source: io::Error::other(format!(
                    "{length} bytes is more than S3 takes in one object ({MAX_PARTS} parts of {})",
                    units::bytes(MAX_PART_SIZE)
                )),
            });
        };
        // A token cancelled before the put starts opens no upload.
        cancel.check(|| doing.clone())?;
        let upload = self.open_upload(key, doing)?;
        let outcome = self.send_parts(&upload, body, part_size).and_then(|parts| {
            // The last moment a cancellation can stop the put: completing it is the commit.
            cancel.check(|| upload.doing.clone())?;
            self.complete_upload(&upload, parts)
        });
        if !matches!(outcome, Ok(PutOutcome::Created)) {
            self.abort_upload(&upload);
        }
        outcome
    }

    fn open_upload(&self, key: &ObjectKey, doing: String) -> Result<OpenUpload, StorageError> {
        let object_key = self.object_key(key.as_str());
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(&object_key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C);
        if let Some(class) = &self.settings.storage_class {
            request = request.storage_class(class.as_str().into());
        }
        if let Some(sse) = &self.settings.sse {
            request = request.server_side_encryption(sse.as_str().into());
        }
        let opened = self
            .runtime
            .block_on(request.send())
            .map_err(|e| classify(format!("{doing}: start a multipart upload"), &e))?;
        let Some(upload_id) = opened.upload_id() else {
            return Err(StorageError::Io {
                doing,
                source: io::Error::other("the server started a multipart upload but gave no id"),
            });
        };
        Ok(OpenUpload {
            object_key,
            upload_id: upload_id.to_owned(),
            doing,
        })
    }

    /// Reads the body part by part and sends each; the parts sent, in order, once every one is
    /// stored. On failure, returns only when no part is on the way any more.
    fn send_parts(
        &self,
        upload: &OpenUpload,
        body: PutBody<'_>,
        part_size: u64,
    ) -> Result<Vec<CompletedPart>, StorageError> {
        let length = body.length;
        let mut sending = PartsInFlight {
            storage: self,
            upload,
            tasks: JoinSet::new(),
            stored: Vec::new(),
            next_number: 1,
        };
        let mut part: Vec<u8> = Vec::new();
        let mut taken: u64 = 0;
        let read = body
            .copy(&|| upload.doing.clone(), |mut chunk| {
                while !chunk.is_empty() {
                    if part.is_empty() {
                        // Sized once, for this part only: the last one is usually smaller.
                        part.reserve_exact(part_size.min(length - taken) as usize);
                    }
                    let take = chunk.len().min((part_size - part.len() as u64) as usize);
                    part.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    taken += take as u64;
                    if part.len() as u64 == part_size {
                        sending.start(std::mem::take(&mut part))?;
                    }
                }
                Ok(())
            })
            .and_then(|()| {
                if part.is_empty() {
                    Ok(())
                } else {
                    sending.start(std::mem::take(&mut part))
                }
            });
        let stored = sending.finish();
        // The body's own failure, or the first part's, whichever stopped the put.
        read?;
        stored
    }

    fn complete_upload(&self, upload: &OpenUpload, parts: Vec<CompletedPart>) -> PutResult {
        let request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(&upload.object_key)
            .upload_id(&upload.upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        match self.runtime.block_on(request.send()) {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if status_of(&e) == Some(412) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(classify(
                format!("{}: complete the multipart upload", upload.doing),
                &e,
            )),
        }
    }

    /// Aborts an upload that did not complete, so the server deletes its parts. A failure is
    /// logged, not returned: the put has already failed for its own reason.
    fn abort_upload(&self, upload: &OpenUpload) {
        let request = self
            .client
            .abort_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(&upload.object_key)
            .upload_id(&upload.upload_id);
        match self.runtime.block_on(request.send()) {
            Ok(_) => {}
            // Gone already: a completion whose answer was lost took effect.
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => {
                let failure = classify(
                    format!(
                        "{}: abort the unfinished multipart upload {}",
                        upload.doing, upload.upload_id
                    ),
                    &e,
                );
                tracing::warn!(
                    "{failure}; its parts stay stored until a lifecycle rule with AbortIncompleteMultipartUpload removes them"
                );
            }
        }
    }
}

/// The parts of one upload on their way, at most [`PARTS_IN_FLIGHT`] at once.
struct PartsInFlight<'a> {
    storage: &'a S3Storage,
    upload: &'a OpenUpload,
    tasks: JoinSet<Result<CompletedPart, StorageError>>,
    stored: Vec<CompletedPart>,
    next_number: i32,
}

impl PartsInFlight<'_> {
    /// Sends `bytes` as the next part once fewer than [`PARTS_IN_FLIGHT`] are on the way. Fails
    /// with the failure of an earlier part, if one has failed by then.
    fn start(&mut self, bytes: Vec<u8>) -> Result<(), StorageError> {
        while let Some(joined) = self.tasks.try_join_next() {
            self.record(joined)?;
        }
        while self.tasks.len() >= PARTS_IN_FLIGHT {
            let joined = self.storage.runtime.block_on(self.tasks.join_next());
            self.record(joined.expect("parts are on the way"))?;
        }
        let number = self.next_number;
        self.next_number += 1;
        let checksum = crc32c_base64(crc32c::crc32c(&bytes));
        let doing = format!("{}: send part {number}", self.upload.doing);
        let request = self
            .storage
            .client
            .upload_part()
            .bucket(&self.storage.settings.bucket)
            .key(&self.upload.object_key)
            .upload_id(&self.upload.upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_crc32_c(&checksum)
            .content_length(bytes.len() as i64)
            // A `Bytes` body is shared, not copied, when the SDK sends it again on a retry.
            .body(ByteStream::from(bytes::Bytes::from(bytes)));
        let sent = async move {
            let answer = request
                .send()
                .await
                .map_err(|e| classify(doing.clone(), &e))?;
            let Some(e_tag) = answer.e_tag() else {
                return Err(StorageError::Io {
                    doing,
                    source: io::Error::other("the server stored the part but gave no ETag"),
                });
            };
            Ok(CompletedPart::builder()
                .part_number(number)
                .e_tag(e_tag)
                .checksum_crc32_c(checksum)
                .build())
        };
        self.tasks.spawn_on(sent, self.storage.runtime.handle());
        Ok(())
    }

    fn record(
        &mut self,
        joined: Result<Result<CompletedPart, StorageError>, JoinError>,
    ) -> Result<(), StorageError> {
        match joined {
            Ok(Ok(part)) => {
                self.stored.push(part);
                Ok(())
            }
            Ok(Err(failure)) => Err(failure),
            Err(e) => Err(StorageError::Io {
                doing: self.upload.doing.clone(),
                source: io::Error::other(format!("sending a part failed: {e}")),
            }),
        }
    }

    /// Waits for every part still on the way: the stored parts in order, or the first failure
    /// among them.
    fn finish(mut self) -> Result<Vec<CompletedPart>, StorageError> {
        let mut first_failure = None;
        while let Some(joined) = self.storage.runtime.block_on(self.tasks.join_next()) {
            if let Err(failure) = self.record(joined) {
                first_failure.get_or_insert(failure);
            }
        }
        match first_failure {
            Some(failure) => Err(failure),
            None => {
                self.stored.sort_by_key(|part| part.part_number());
                Ok(self.stored)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(multipart_part_size: u64) -> S3Settings {
        S3Settings {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            credentials: super::super::S3Credentials::keys("k".into(), "s".into(), None, "test"),
            storage_class: None,
            sse: None,
            multipart_part_size,
        }
    }

    #[test]
    fn parts_stay_within_s3s_limits() {
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        let default = settings(DEFAULT_PART_SIZE);
        assert_eq!(part_size_for(100 * MIB, &default), Some(DEFAULT_PART_SIZE));
        // 10,000 parts of 32 MiB hold 312.5 GiB; a larger object needs larger parts.
        assert_eq!(part_size_for(10_000 * 32 * MIB, &default), Some(32 * MIB));
        assert_eq!(
            part_size_for(10_000 * 32 * MIB + 1, &default),
            Some(33 * MIB)
        );
        assert_eq!(part_size_for(1024 * GIB, &default), Some(105 * MIB));
        assert_eq!(part_size_for(10_000 * 5 * GIB, &default), Some(5 * GIB));
        assert_eq!(part_size_for(10_000 * 5 * GIB + 1, &default), None);
        // Sizes outside S3's bounds are brought within them.
        assert_eq!(single_put_limit(&settings(MIB)), MIN_PART_SIZE);
        assert_eq!(single_put_limit(&settings(6 * GIB)), MAX_PART_SIZE);
        assert_eq!(part_size_for(20 * MIB, &settings(0)), Some(5 * MIB));
    }

    #[test]
    fn checksums_are_written_as_s3_writes_them() {
        // CRC-32C of "123456789" is E3069283; `base64.b64encode(bytes.fromhex("E3069283"))`.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_base64(0xE306_9283), "4waSgw==");
        assert_eq!(crc32c_base64(0), "AAAAAA==");
        assert_eq!(crc32c_base64(u32::MAX), "/////w==");
    }
}
