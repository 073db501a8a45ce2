//! [`S3Storage`]'s [`Storage`] operations: single-request puts, streamed ranged reads, heads,
//! listings and deletes (multipart uploads are in `multipart.rs`).

use std::io::{self, Read};
use std::sync::Arc;

use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, Delete, ObjectIdentifier};

use super::bucket::S3Storage;
use super::errors::{classify, no_such_bucket, status_of};
use super::multipart;
use crate::storage::error_chain;
use crate::storage::{
    ByteRange, Cancel, ListedObject, ObjectKey, ObjectMeta, ObjectReading, PartsReader, PutBody,
    PutOutcome, PutResult, Storage, StorageError, child_names,
};

impl S3Storage {
    fn put_bytes(&self, key: &ObjectKey, body: Vec<u8>) -> PutResult {
        let doing = self.doing("put", key.as_str());
        let mut request = self
            .client
            .put_object()
            .bucket(&self.settings.bucket)
            .key(self.object_key(key.as_str()))
            .if_none_match("*")
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(body));
        if let Some(class) = &self.settings.storage_class {
            request = request.storage_class(class.as_str().into());
        }
        if let Some(sse) = &self.settings.sse {
            request = request.server_side_encryption(sse.as_str().into());
        }
        match self.runtime.block_on(request.send()) {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if status_of(&e) == Some(412) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(classify(doing, &e)),
        }
    }
}

impl S3Storage {
    /// One DeleteObjects request for at most a thousand keys, in quiet mode: the answer lists
    /// only the keys that failed. A key that was not there is not one of them.
    fn delete_batch(&self, keys: &[ObjectKey]) -> Result<(), StorageError> {
        let first = keys.first().map_or("", |k| k.as_str());
        let doing = self.doing(&format!("delete {} objects, the first", keys.len()), first);
        let objects = keys
            .iter()
            .map(|key| {
                ObjectIdentifier::builder()
                    .key(self.object_key(key.as_str()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StorageError::Transient {
                doing: doing.clone(),
                reason: e.to_string(),
            })?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| StorageError::Transient {
                doing: doing.clone(),
                reason: e.to_string(),
            })?;
        let request = self
            .client
            .delete_objects()
            .bucket(&self.settings.bucket)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .delete(delete);
        let answer = self
            .runtime
            .block_on(request.send())
            .map_err(|e| classify(doing.clone(), &e))?;
        match answer.errors().first() {
            None => Ok(()),
            Some(failed) => Err(StorageError::Transient {
                doing: self.doing("delete", failed.key().unwrap_or_default()),
                reason: format!(
                    "{} {}",
                    failed.code().unwrap_or("error"),
                    failed.message().unwrap_or_default()
                ),
            }),
        }
    }
}

impl S3Storage {
    /// A blocking reader of an object's body that another user of this client got (a bucket
    /// source), read on the store's runtime; `doing` names the read in its errors.
    pub fn body_reader(&self, body: ByteStream, doing: String) -> impl Read + Send + use<> {
        BodyReader {
            runtime: Arc::clone(&self.runtime),
            body,
            chunk: bytes::Bytes::new(),
            cancel: Cancel::never(),
            doing,
        }
    }
}

/// A streamed object body, read chunk by chunk on the store's runtime.
struct BodyReader {
    runtime: Arc<tokio::runtime::Runtime>,
    body: ByteStream,
    chunk: bytes::Bytes,
    cancel: Cancel,
    doing: String,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            self.cancel
                .check(|| self.doing.clone())
                .map_err(StorageError::into_io)?;
            match self.runtime.block_on(self.body.try_next()) {
                Ok(Some(chunk)) => self.chunk = chunk,
                Ok(None) => return Ok(0),
                Err(e) => {
                    return Err(StorageError::Transient {
                        doing: self.doing.clone(),
                        reason: format!("the body broke off: {}", error_chain(&e)),
                    }
                    .into_io());
                }
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

impl Storage for S3Storage {
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        let request = self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(self.object_key(key.as_str()));
        match self.runtime.block_on(request.send()) {
            Ok(head) => Ok(Some(ObjectMeta {
                size: head.content_length().unwrap_or(0).max(0) as u64,
                modified: head
                    .last_modified()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(classify(self.doing("head", key.as_str()), &e)),
        }
    }

    fn get_reader(&self, key: &ObjectKey, range: ByteRange, cancel: &Cancel) -> ObjectReading {
        let doing = self.doing("read", key.as_str());
        cancel.check(|| doing.clone())?;
        if range.length == Some(0) {
            // No bytes wanted; the object must still exist.
            return match self.head(key)? {
                Some(_) => Ok(Box::new(io::empty())),
                None => Err(StorageError::NotFound {
                    key: key.clone(),
                    location: self.location(),
                }),
            };
        }
        let header = match range.length {
            Some(length) => format!("bytes={}-{}", range.offset, range.offset + length - 1),
            None => format!("bytes={}-", range.offset),
        };
        let mut request = self
            .client
            .get_object()
            .bucket(&self.settings.bucket)
            .key(self.object_key(key.as_str()));
        if range != ByteRange::ALL {
            request = request.range(header);
        }
        match self.runtime.block_on(request.send()) {
            Ok(object) => Ok(Box::new(BodyReader {
                runtime: Arc::clone(&self.runtime),
                body: object.body,
                chunk: bytes::Bytes::new(),
                cancel: cancel.clone(),
                doing,
            })),
            Err(e) if status_of(&e) == Some(404) && !no_such_bucket(&e) => {
                Err(StorageError::NotFound {
                    key: key.clone(),
                    location: self.location(),
                })
            }
            // A range starting at or past the end (an empty object included).
            Err(e) if status_of(&e) == Some(416) => Ok(Box::new(io::empty())),
            Err(e) => Err(classify(doing, &e)),
        }
    }

    fn put_body_if_absent(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
        if body.length > multipart::single_put_limit(&self.settings) {
            return self.put_multipart(key, body);
        }
        let doing = self.doing("put", key.as_str());
        let bytes = body.read_whole(&|| doing.clone())?;
        self.put_bytes(key, bytes)
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> PutResult {
        let length = parts.iter().map(|p| p.len() as u64).sum();
        if length > multipart::single_put_limit(&self.settings) {
            let body = PutBody {
                reader: &mut PartsReader::new(parts),
                length,
                cancel: &Cancel::never(),
            };
            return self.put_multipart(key, body);
        }
        self.put_bytes(key, parts.concat())
    }

    fn list(&self, prefix: &ObjectKey, cancel: &Cancel) -> Result<Vec<ListedObject>, StorageError> {
        let mut listed = Vec::new();
        let under = self.object_key(prefix.as_str());
        self.list_pages(prefix, &under, None, cancel, |page| {
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| self.storage_key(k))
                    && key.is_under(prefix)
                {
                    listed.push(ListedObject {
                        key,
                        size: object.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        })?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// ListObjectsV2 with a `/` delimiter: a page names up to a thousand children, however
    /// many objects lie below them.
    fn list_children(
        &self,
        prefix: &ObjectKey,
        cancel: &Cancel,
    ) -> Result<Vec<String>, StorageError> {
        let base = format!("{}/", self.object_key(prefix.as_str()));
        let mut found = Vec::new();
        self.list_pages(prefix, &base, Some("/"), cancel, |page| {
            let deeper = page.common_prefixes().iter().filter_map(|p| p.prefix());
            let direct = page.contents().iter().filter_map(|o| o.key());
            found.extend(deeper.chain(direct).map(str::to_owned));
        })?;
        Ok(child_names(&base, found.iter().map(String::as_str)))
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let request = self
            .client
            .delete_object()
            .bucket(&self.settings.bucket)
            .key(self.object_key(key.as_str()));
        match self.runtime.block_on(request.send()) {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(classify(self.doing("delete", key.as_str()), &e)),
        }
    }

    /// DeleteObjects, a thousand keys a request (S3's limit); a key the server could not delete
    /// fails the whole call, naming it.
    fn delete_all(&self, keys: &[ObjectKey]) -> Result<(), StorageError> {
        for batch in keys.chunks(1000) {
            self.delete_batch(batch)?;
        }
        Ok(())
    }

    /// HeadBucket: a 404 is a missing bucket (said as such, since a put to some servers would
    /// create it), a 403 keys that are refused, no answer an endpoint that is not reachable.
    fn check_reachable(&self) -> Result<(), StorageError> {
        let doing = format!("look at bucket {}", self.settings.bucket);
        let request = self.client.head_bucket().bucket(&self.settings.bucket);
        match self.runtime.block_on(request.send()) {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(StorageError::Io {
                doing,
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no bucket '{}' at {}; create it, or fix [repo] bucket and endpoint",
                        self.settings.bucket,
                        self.settings.endpoint.as_deref().unwrap_or("AWS")
                    ),
                ),
            }),
            Err(e) if status_of(&e) == Some(301) => Err(StorageError::Io {
                doing,
                source: io::Error::other(format!(
                    "the bucket is in another region than [repo] region = \"{}\"; set the bucket's region",
                    self.settings.region
                )),
            }),
            Err(e) => Err(classify(doing, &e)),
        }
    }

    fn location(&self) -> String {
        let endpoint = self.settings.endpoint.as_deref().unwrap_or("AWS");
        if self.settings.prefix.is_empty() {
            format!("s3://{} at {endpoint}", self.settings.bucket)
        } else {
            format!(
                "s3://{}/{} at {endpoint}",
                self.settings.bucket, self.settings.prefix
            )
        }
    }
}

impl S3Storage {
    /// Every page of ListObjectsV2 for the bucket keys starting with `under` (grouped at
    /// `delimiter`, if given), each handed to `each`: the listing of `prefix`.
    fn list_pages(
        &self,
        prefix: &ObjectKey,
        under: &str,
        delimiter: Option<&str>,
        cancel: &Cancel,
        mut each: impl FnMut(&ListObjectsV2Output),
    ) -> Result<(), StorageError> {
        let doing = self.doing("list", prefix.as_str());
        let mut continuation: Option<String> = None;
        loop {
            cancel.check(|| doing.clone())?;
            let request = self
                .client
                .list_objects_v2()
                .bucket(&self.settings.bucket)
                .prefix(under)
                .set_delimiter(delimiter.map(str::to_owned))
                .set_continuation_token(continuation.take());
            let page = self
                .runtime
                .block_on(request.send())
                .map_err(|e| classify(doing.clone(), &e))?;
            each(&page);
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => {
                    continuation = Some(token.to_owned())
                }
                _ => return Ok(()),
            }
        }
    }
}
