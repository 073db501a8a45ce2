//! [`AzureStorage`]'s [`Storage`] operations: single-request puts, streamed ranged reads (a whole
//! read checked against the blob's MD5), heads, listings and deletes (block uploads are in
//! `blocks.rs`).

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use md5::{Digest, Md5};
use tokio::task::JoinSet;

use super::blocks::{self, md5_base64};
use super::container::{AzureStorage, failure_for};
use super::http::{Call, Failure};
use crate::storage::{
    ByteRange, Cancel, ListedObject, ObjectKey, ObjectMeta, ObjectReading, PartsReader, PutBody,
    PutOutcome, PutResult, Storage, StorageError, child_names,
};

/// How long a read may wait for the next bytes of a body before it is given up as broken.
const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Deletes sent at once by `delete_all`.
const DELETES_IN_FLIGHT: usize = 16;

impl AzureStorage {
    /// Put Blob, create-only, with the body's MD5 for the service to check and keep.
    fn put_bytes(&self, key: &ObjectKey, body: Bytes) -> PutResult {
        let doing = self.doing("put", key.as_str());
        let call = Call::new(Method::PUT, self.blob_path(key.as_str()), &doing)
            .header("x-ms-blob-type", "BlockBlob")
            .header("if-none-match", "*")
            .header("content-md5", md5_base64(&Md5::digest(&body)))
            .body(body);
        self.created_or_taken(&call, doing.clone())
    }

    /// Sends a create-only write: `Created`, or `AlreadyExists` when the name is taken (409
    /// BlobAlreadyExists from Azure, 412 from some versions and emulators).
    pub(super) fn created_or_taken(&self, call: &Call<'_>, doing: String) -> PutResult {
        match self.send(call) {
            Ok(_) => Ok(PutOutcome::Created),
            Err(Failure::Refused(refusal))
                if refusal.status == 412
                    || (refusal.status == 409 && refusal.code_is("BlobAlreadyExists")) =>
            {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(failure) => Err(self.failed(doing, failure)),
        }
    }

    /// Whether a refusal says the blob, not the container, is missing.
    fn blob_missing(failure: &Failure) -> bool {
        matches!(failure, Failure::Refused(r) if r.status == 404 && !r.code_is("ContainerNotFound"))
    }

    fn not_found(&self, key: &ObjectKey) -> StorageError {
        StorageError::NotFound {
            key: key.clone(),
            location: self.location(),
        }
    }
}

/// A streamed blob body, read frame by frame on the store's runtime; for a whole read, checked
/// against the blob's MD5 at its end.
struct BodyReader {
    runtime: Arc<tokio::runtime::Runtime>,
    body: Incoming,
    chunk: Bytes,
    cancel: Cancel,
    doing: String,
    /// The MD5 the blob's `Content-MD5` gives, and the hash of the bytes read so far.
    check: Option<(Vec<u8>, Md5)>,
}

impl BodyReader {
    /// The next frame of data, `None` at the end.
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let frame = self.runtime.block_on(async {
                tokio::time::timeout(BODY_STALL_TIMEOUT, self.body.frame()).await
            });
            let broken = |reason: String| StorageError::Transient {
                doing: self.doing.clone(),
                reason: format!("the body broke off: {reason}"),
            };
            match frame {
                Err(_) => {
                    return Err(
                        broken(format!("no bytes for {} s", BODY_STALL_TIMEOUT.as_secs()))
                            .into_io(),
                    );
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err(broken(crate::storage::error_chain(&e)).into_io());
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// At the end of a whole read: the bytes must be those the blob's MD5 describes.
    fn check_end(&mut self) -> io::Result<()> {
        let Some((expected, hash)) = self.check.take() else {
            return Ok(());
        };
        let got = hash.finalize();
        if got[..] == expected[..] {
            return Ok(());
        }
        Err(StorageError::Io {
            doing: self.doing.clone(),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the bytes read have MD5 {}, the blob's Content-MD5 is {}: they were damaged in storage or on the way",
                    md5_base64(&got),
                    md5_base64(&expected)
                ),
            ),
        }
        .into_io())
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            self.cancel
                .check(|| self.doing.clone())
                .map_err(StorageError::into_io)?;
            match self.next_chunk()? {
                Some(chunk) => {
                    if let Some((_, hash)) = &mut self.check {
                        hash.update(&chunk);
                    }
                    self.chunk = chunk;
                }
                None => {
                    self.check_end()?;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

impl Storage for AzureStorage {
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        let doing = self.doing("head", key.as_str());
        let call = Call::new(Method::HEAD, self.blob_path(key.as_str()), &doing);
        match self.send(&call) {
            Ok(answer) => Ok(Some(ObjectMeta {
                size: answer
                    .header("content-length")
                    .and_then(|size| size.parse().ok())
                    .unwrap_or(0),
                modified: answer
                    .header("last-modified")
                    .and_then(|text| chrono::DateTime::parse_from_rfc2822(text).ok())
                    .map(SystemTime::from),
            })),
            Err(failure) if Self::blob_missing(&failure) => Ok(None),
            Err(failure) => Err(self.failed(doing, failure)),
        }
    }

    fn get_reader(&self, key: &ObjectKey, range: ByteRange, cancel: &Cancel) -> ObjectReading {
        let doing = self.doing("read", key.as_str());
        cancel.check(|| doing.clone())?;
        if range.length == Some(0) {
            // No bytes wanted; the blob must still exist.
            return match self.head(key)? {
                Some(_) => Ok(Box::new(io::empty())),
                None => Err(self.not_found(key)),
            };
        }
        let mut call = Call::new(Method::GET, self.blob_path(key.as_str()), &doing);
        if range != ByteRange::ALL {
            let header = match range.length {
                Some(length) => format!("bytes={}-{}", range.offset, range.offset + length - 1),
                None => format!("bytes={}-", range.offset),
            };
            call = call.header("range", header);
        }
        match self.send(&call) {
            Ok(answer) => {
                // Only a whole read's answer carries the blob's own MD5.
                let expected = answer
                    .header("content-md5")
                    .filter(|_| range == ByteRange::ALL && answer.status == 200)
                    .and_then(|text| STANDARD.decode(text).ok());
                Ok(Box::new(BodyReader {
                    runtime: Arc::clone(&self.runtime),
                    body: answer.body,
                    chunk: Bytes::new(),
                    cancel: cancel.clone(),
                    doing,
                    check: expected.map(|md5| (md5, Md5::new())),
                }))
            }
            Err(failure) if Self::blob_missing(&failure) => Err(self.not_found(key)),
            // A range starting at or past the end (an empty blob included).
            Err(Failure::Refused(refusal)) if refusal.status == 416 => Ok(Box::new(io::empty())),
            Err(failure) => Err(self.failed(doing, failure)),
        }
    }

    fn put_body_if_absent(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
        if body.length > blocks::single_put_limit(&self.settings) {
            return self.put_blocks(key, body);
        }
        let doing = self.doing("put", key.as_str());
        let bytes = body.read_whole(&|| doing.clone())?;
        self.put_bytes(key, Bytes::from(bytes))
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> PutResult {
        let length = parts.iter().map(|p| p.len() as u64).sum();
        if length > blocks::single_put_limit(&self.settings) {
            let body = PutBody {
                reader: &mut PartsReader::new(parts),
                length,
                cancel: &Cancel::never(),
            };
            return self.put_blocks(key, body);
        }
        self.put_bytes(key, Bytes::from(parts.concat()))
    }

    fn list(&self, prefix: &ObjectKey, cancel: &Cancel) -> Result<Vec<ListedObject>, StorageError> {
        let mut listed = Vec::new();
        let under = self.blob_name(prefix.as_str());
        self.list_pages(prefix, &under, false, cancel, |page| {
            for (name, size) in page.blobs {
                if let Some(key) = self.storage_key(&name)
                    && key.is_under(prefix)
                {
                    listed.push(ListedObject { key, size });
                }
            }
        })?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// List Blobs with a `/` delimiter: a page names up to 5000 children, however many blobs
    /// lie below them.
    fn list_children(
        &self,
        prefix: &ObjectKey,
        cancel: &Cancel,
    ) -> Result<Vec<String>, StorageError> {
        let base = format!("{}/", self.blob_name(prefix.as_str()));
        let mut found = Vec::new();
        self.list_pages(prefix, &base, true, cancel, |page| {
            found.extend(page.prefixes);
            found.extend(page.blobs.into_iter().map(|(name, _)| name));
        })?;
        Ok(child_names(&base, found.iter().map(String::as_str)))
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let doing = self.doing("delete", key.as_str());
        let call = Call::new(Method::DELETE, self.blob_path(key.as_str()), &doing);
        match self.send(&call) {
            Ok(_) => Ok(()),
            Err(failure) if Self::blob_missing(&failure) => Ok(()),
            Err(failure) => Err(self.failed(doing, failure)),
        }
    }

    /// Deletes up to [`DELETES_IN_FLIGHT`] blobs at once; the first failure fails the call,
    /// once every delete sent has answered.
    fn delete_all(&self, keys: &[ObjectKey]) -> Result<(), StorageError> {
        let mut deleting = JoinSet::new();
        let mut first_failure = None;
        let mut record = |joined: Option<Result<Result<(), StorageError>, _>>| match joined {
            Some(Ok(Err(failure))) => {
                first_failure.get_or_insert(failure);
            }
            Some(Err(e)) => {
                first_failure.get_or_insert(StorageError::Io {
                    doing: format!("delete {} blobs", keys.len()),
                    source: io::Error::other(format!("a delete failed: {e}")),
                });
            }
            _ => {}
        };
        for key in keys {
            while deleting.len() >= DELETES_IN_FLIGHT {
                record(self.runtime.block_on(deleting.join_next()));
            }
            let client = Arc::clone(&self.client);
            let settings = self.settings.clone();
            let path = self.blob_path(key.as_str());
            let doing = self.doing("delete", key.as_str());
            deleting.spawn_on(
                async move {
                    let call = Call::new(Method::DELETE, path, &doing);
                    match client.send(&call).await {
                        Ok(_) => Ok(()),
                        Err(failure) if AzureStorage::blob_missing(&failure) => Ok(()),
                        Err(failure) => Err(failure_for(&settings, doing.clone(), failure)),
                    }
                },
                self.runtime.handle(),
            );
        }
        while !deleting.is_empty() {
            record(self.runtime.block_on(deleting.join_next()));
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// Lists at most one blob: a missing container is named as such, refused access and an
    /// endpoint that does not answer too, and nothing is written.
    fn check_reachable(&self) -> Result<(), StorageError> {
        let doing = format!("look at container {}", self.settings.container);
        self.probe_container(&doing)
    }

    fn location(&self) -> String {
        let endpoint = self.settings.endpoint_url();
        if self.settings.prefix.is_empty() {
            format!("azure://{} at {endpoint}", self.settings.container)
        } else {
            format!(
                "azure://{}/{} at {endpoint}",
                self.settings.container, self.settings.prefix
            )
        }
    }
}
