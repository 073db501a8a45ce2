//! The S3 requests a bucket source makes, on the repository's client stack (the same SDK
//! client, retries and retry log, credentials and 0600 rules): listing a bucket under a prefix,
//! reading an object with its headers, writing one back with them (in parts when large), and
//! deleting. Errors name the source's section, not `[repo]`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use anyhow::{Context, anyhow};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};

use super::manifest::ObjectHeaders;
use crate::config::{BucketListing, BucketSettings};
use crate::storage::s3::{no_such_bucket, request_failure};
use crate::storage::{S3Settings, S3Storage};

/// The headers a GET or HEAD answer carries (two types with the same accessors).
macro_rules! headers_of {
    ($answer:expr) => {
        ObjectHeaders {
            content_type: $answer.content_type().map(str::to_owned),
            content_encoding: $answer.content_encoding().map(str::to_owned),
            content_disposition: $answer.content_disposition().map(str::to_owned),
            content_language: $answer.content_language().map(str::to_owned),
            cache_control: $answer.cache_control().map(str::to_owned),
            metadata: sorted($answer.metadata()),
            tags: BTreeMap::new(),
        }
    };
}

/// A PUT or a multipart upload's start (two builder types with the same setters), with
/// `headers` set.
macro_rules! with_headers {
    ($request:expr, $headers:expr) => {
        $request
            .set_content_type($headers.content_type.clone())
            .set_content_encoding($headers.content_encoding.clone())
            .set_content_disposition($headers.content_disposition.clone())
            .set_content_language($headers.content_language.clone())
            .set_cache_control($headers.cache_control.clone())
            .set_metadata(metadata_of($headers))
            .set_tagging(tagging_of($headers))
    };
}

/// An object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Without quotes; `None` where the server lists none (s3s-fs).
    pub etag: Option<String>,
    /// RFC 3339, as listed.
    pub last_modified: Option<String>,
    /// Whole seconds since the epoch, to compare with a read's `Last-Modified` header.
    pub modified_secs: Option<i64>,
    /// The current version, when the bucket is listed by versions; reads ask for exactly it.
    pub version_id: Option<String>,
}

/// What a GET answered, before its body is read.
pub struct Fetched {
    pub size: u64,
    pub etag: Option<String>,
    pub modified_secs: Option<i64>,
    /// RFC 3339, to the second (as the `Last-Modified` header has it).
    pub last_modified: Option<String>,
    pub headers: ObjectHeaders,
    /// Tags the object has (`x-amz-tagging-count`), read with another request if any.
    pub tag_count: i32,
    pub body: Box<dyn Read + Send>,
}

/// One bucket on the source's server.
pub struct BucketClient {
    store: S3Storage,
    bucket: String,
    /// `source.NAME`, named in errors.
    section: String,
    listing: BucketListing,
    /// Folders listed at once in a walk.
    concurrency: usize,
}

impl BucketClient {
    /// A client of `bucket` on the server and with the keys `settings` give.
    pub fn connect(
        settings: &BucketSettings,
        section: &str,
        bucket: &str,
    ) -> anyhow::Result<BucketClient> {
        let store = S3Storage::new(S3Settings {
            bucket: bucket.to_owned(),
            prefix: String::new(),
            endpoint: settings.endpoint.clone(),
            region: settings.region.clone(),
            path_style: settings.path_style,
            credentials: settings.credentials.clone(),
            storage_class: None,
            sse: None,
            multipart_part_size: crate::storage::s3::DEFAULT_PART_SIZE,
        })?;
        Ok(BucketClient {
            store,
            bucket: bucket.to_owned(),
            section: section.to_owned(),
            listing: settings.listing,
            concurrency: settings.concurrency,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Where the bucket is, for messages: `s3://NAME at ENDPOINT`.
    pub fn location(&self) -> String {
        match &self.store.settings().endpoint {
            Some(endpoint) => format!("s3://{} at {endpoint}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }

    /// Every object under `prefix`, in key order: ListObjectsV2 a page at a time, one folder
    /// after another or all at once, or ListObjectVersions, as the source's `listing` says.
    pub fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let mut listed = match self.listing {
            BucketListing::Flat => self.list_level(prefix, None)?.0,
            BucketListing::Walk => self.walk(prefix)?,
            BucketListing::Versions => self.list_current_versions(prefix)?,
        };
        // Servers list in key byte order; the manifest relies on it, so it is not left to them.
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        listed.dedup_by(|a, b| a.key == b.key);
        Ok(listed)
    }

    /// Lists each folder under `prefix` on its own (`delimiter=/`), `concurrency` at once.
    fn walk(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let mut listed = Vec::new();
        let mut folders = vec![prefix.to_owned()];
        std::thread::scope(|scope| {
            let (done, finished) = std::sync::mpsc::channel();
            let mut running = 0;
            loop {
                while running < self.concurrency
                    && let Some(folder) = folders.pop()
                {
                    let done = done.clone();
                    scope.spawn(move || {
                        // A lister that panicked still answers: the walk keeps a sender itself,
                        // so the channel never closes and would wait for the answer for ever.
                        let level = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.list_level(&folder, Some("/"))
                        }))
                        .unwrap_or_else(|_| {
                            Err(anyhow!(
                                "list {} under {folder:?}: the lister panicked",
                                self.location()
                            ))
                        });
                        let _ = done.send((folder, level));
                    });
                    running += 1;
                }
                if running == 0 {
                    return Ok(());
                }
                let (folder, level) = finished.recv().expect("a lister sends before it ends");
                running -= 1;
                let (objects, subfolders) = level?;
                listed.extend(objects);
                for subfolder in subfolders {
                    // A folder is longer than the one it is in; a server that says otherwise
                    // would have the walk go round for ever.
                    if !(subfolder.len() > folder.len() && subfolder.starts_with(&folder)) {
                        anyhow::bail!(
                            "list {} under {folder:?}: the server answered with folder {subfolder:?}, which is not inside it; set {}.listing = \"flat\"",
                            self.location(),
                            self.section
                        );
                    }
                    folders.push(subfolder);
                }
            }
        })?;
        Ok(listed)
    }

    /// The objects under `prefix` (every page), and with a `delimiter` the folders below it.
    fn list_level(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> anyhow::Result<(Vec<Listed>, Vec<String>)> {
        let mut listed = Vec::new();
        let mut folders = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let request = self
                .store
                .client()
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_owned))
                .set_continuation_token(continuation.take());
            let page = self
                .store
                .block_on(request.send())
                .map_err(|e| self.failure(format!("list {}", self.location()), &e))?;
            listed.extend(page.contents().iter().filter_map(listed_object));
            folders.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|folder| folder.prefix().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => {
                    continuation = Some(token.to_owned())
                }
                _ => return Ok((listed, folders)),
            }
        }
    }

    /// The current version of every object under `prefix` (ListObjectVersions, every page): a
    /// key whose current version is a delete marker is not there. A bucket that never had
    /// versioning lists each object once, as version "null".
    fn list_current_versions(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let mut listed = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let request = self
                .store
                .client()
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take());
            let page = self.store.block_on(request.send()).map_err(|e| {
                if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("NotImplemented") {
                    return anyhow!(
                        "list the versions in {}: the server does not list versions (NotImplemented); set {}.listing = \"walk\"",
                        self.location(),
                        self.section
                    );
                }
                self.failure(format!("list the versions in {}", self.location()), &e)
            })?;
            listed.extend(
                page.versions()
                    .iter()
                    .filter(|version| version.is_latest() == Some(true))
                    .filter_map(listed_version),
            );
            if page.is_truncated() != Some(true) {
                return Ok(listed);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                anyhow::bail!(
                    "list the versions in {}: the server said there is more but gave no key to go on from",
                    self.location()
                );
            }
        }
    }

    /// Reads `key` (`version` of it, if given): its headers now, its body as the caller reads
    /// on. `None` if it is gone.
    pub fn get(&self, key: &str, version: Option<&str>) -> anyhow::Result<Option<Fetched>> {
        let request = self
            .store
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned));
        let doing = format!("read {key:?} from {}", self.location());
        let answer = match self.store.block_on(request.send()) {
            Ok(answer) => answer,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) if is_no_such_version(&e) => return Ok(None),
            Err(e) => return Err(self.failure(doing, &e)),
        };
        let headers = headers_of!(answer);
        Ok(Some(Fetched {
            size: answer.content_length().unwrap_or(0).max(0) as u64,
            etag: answer.e_tag().map(unquoted),
            modified_secs: answer.last_modified().map(DateTime::secs),
            last_modified: answer
                .last_modified()
                .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok()),
            headers,
            tag_count: answer.tag_count().unwrap_or(0),
            body: Box::new(self.store.body_reader(answer.body, doing)),
        }))
    }

    /// The headers of `key` (`version` of it, if given) without its body (content type,
    /// metadata), and its ETag; `None` if it is gone.
    pub fn head(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> anyhow::Result<Option<(Option<String>, ObjectHeaders, i32)>> {
        let request = self
            .store
            .client()
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned));
        let answer = match self.store.block_on(request.send()) {
            Ok(answer) => answer,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(None),
            Err(e) if is_no_such_version(&e) => return Ok(None),
            Err(e) => {
                return Err(self.failure(format!("look at {key:?} in {}", self.location()), &e));
            }
        };
        let headers = headers_of!(answer);
        Ok(Some((
            answer.e_tag().map(unquoted),
            headers,
            answer.tag_count().unwrap_or(0),
        )))
    }

    /// The tags of `key` (`version` of it, if given).
    pub fn tags(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let request = self
            .store
            .client()
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned));
        let answer = self.store.block_on(request.send()).map_err(|e| {
            self.failure(
                format!("read the tags of {key:?} in {}", self.location()),
                &e,
            )
        })?;
        Ok(answer
            .tag_set()
            .iter()
            .map(|tag| (tag.key().to_owned(), tag.value().to_owned()))
            .collect())
    }

    /// Writes `key` with `content` and `headers` in one PUT, replacing what is there.
    pub fn put(&self, key: &str, content: Vec<u8>, headers: &ObjectHeaders) -> anyhow::Result<()> {
        let request = with_headers!(
            self.store
                .client()
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_length(content.len() as i64)
                .body(ByteStream::from(content)),
            headers
        );
        self.store
            .block_on(request.send())
            .map_err(|e| self.failure(format!("write {key:?} to {}", self.location()), &e))?;
        Ok(())
    }

    /// Writes `key` in a multipart upload of the parts `next_part` fills in turn (empty: no
    /// more), with `headers`; the upload is aborted if any part fails.
    pub fn put_in_parts(
        &self,
        key: &str,
        headers: &ObjectHeaders,
        mut next_part: impl FnMut(&mut Vec<u8>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let doing = format!("write {key:?} to {}", self.location());
        let request = with_headers!(
            self.store
                .client()
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(key),
            headers
        );
        let upload = self
            .store
            .block_on(request.send())
            .map_err(|e| self.failure(doing.clone(), &e))?;
        let upload_id = upload
            .upload_id()
            .with_context(|| format!("{doing}: the server named no upload"))?
            .to_owned();
        let sent = self.send_parts(key, &upload_id, &mut next_part);
        let completed = sent.and_then(|parts| {
            let request = self
                .store
                .client()
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                );
            self.store
                .block_on(request.send())
                .map(|_| ())
                .map_err(|e| self.failure(doing.clone(), &e))
        });
        if completed.is_err() {
            let abort = self
                .store
                .client()
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id);
            if let Err(e) = self.store.block_on(abort.send()) {
                tracing::warn!(
                    "abort the upload of {key:?} to {}: {}",
                    self.location(),
                    self.failure(doing.clone(), &e)
                );
            }
        }
        completed
    }

    fn send_parts(
        &self,
        key: &str,
        upload_id: &str,
        next_part: &mut impl FnMut(&mut Vec<u8>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<CompletedPart>> {
        let mut parts = Vec::new();
        let mut content = Vec::new();
        loop {
            content.clear();
            next_part(&mut content)?;
            if content.is_empty() {
                return Ok(parts);
            }
            let number = parts.len() as i32 + 1;
            let request = self
                .store
                .client()
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(content.len() as i64)
                .body(ByteStream::from(std::mem::take(&mut content)));
            let answer = self.store.block_on(request.send()).map_err(|e| {
                self.failure(
                    format!("write part {number} of {key:?} to {}", self.location()),
                    &e,
                )
            })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(answer.e_tag().map(str::to_owned))
                    .build(),
            );
        }
    }

    /// Deletes `keys` (a thousand at a time, as S3 takes them).
    pub fn delete(&self, keys: &[String]) -> anyhow::Result<()> {
        for batch in keys.chunks(1000) {
            let objects: Vec<ObjectIdentifier> = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<_, _>>()?;
            let request = self
                .store
                .client()
                .delete_objects()
                .bucket(&self.bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()?,
                );
            let answer = self
                .store
                .block_on(request.send())
                .map_err(|e| self.failure(format!("delete from {}", self.location()), &e))?;
            if let Some(failed) = answer.errors().first() {
                return Err(anyhow!(
                    "delete {:?} from {}: {} {}",
                    failed.key().unwrap_or_default(),
                    self.location(),
                    failed.code().unwrap_or("error"),
                    failed.message().unwrap_or_default()
                ));
            }
        }
        Ok(())
    }

    fn missing_bucket(&self) -> anyhow::Error {
        anyhow!(
            "bucket {} does not exist: create it, or fix [{}] bucket and endpoint",
            self.location(),
            self.section
        )
    }

    fn failure<E>(
        &self,
        doing: String,
        error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> anyhow::Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        if no_such_bucket(error) {
            return self.missing_bucket();
        }
        anyhow::Error::new(request_failure(&self.section, doing, error))
    }
}

fn listed_object(object: &aws_sdk_s3::types::Object) -> Option<Listed> {
    Some(listed(
        object.key()?,
        object.size(),
        object.e_tag(),
        object.last_modified(),
        None,
    ))
}

fn listed_version(version: &aws_sdk_s3::types::ObjectVersion) -> Option<Listed> {
    Some(listed(
        version.key()?,
        version.size(),
        version.e_tag(),
        version.last_modified(),
        version.version_id(),
    ))
}

/// An object as a listing of either kind shows it.
fn listed(
    key: &str,
    size: Option<i64>,
    etag: Option<&str>,
    modified: Option<&DateTime>,
    version_id: Option<&str>,
) -> Listed {
    Listed {
        key: key.to_owned(),
        size: size.unwrap_or(0).max(0) as u64,
        etag: etag.map(unquoted),
        last_modified: modified.and_then(|t| t.fmt(DateTimeFormat::DateTime).ok()),
        modified_secs: modified.map(DateTime::secs),
        version_id: version_id.map(str::to_owned),
    }
}

/// Whether a read failed because the version asked for is gone (deleted since it was listed).
fn is_no_such_version<E: ProvideErrorMetadata>(
    error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    error.as_service_error().and_then(|e| e.code()) == Some("NoSuchVersion")
}

/// An ETag without the quotes HTTP puts around it.
fn unquoted(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn sorted(metadata: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    metadata
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn metadata_of(headers: &ObjectHeaders) -> Option<HashMap<String, String>> {
    (!headers.metadata.is_empty()).then(|| headers.metadata.clone().into_iter().collect())
}

/// Tags as the `x-amz-tagging` header carries them: `k=v&k2=v2`, each part percent-encoded.
pub fn tagging_of(headers: &ObjectHeaders) -> Option<String> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let pairs: Vec<String> = headers
        .tags
        .iter()
        .map(|(key, value)| {
            format!(
                "{}={}",
                utf8_percent_encode(key, NON_ALPHANUMERIC),
                utf8_percent_encode(value, NON_ALPHANUMERIC)
            )
        })
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_percent_encoded_pairs_in_key_order() {
        let mut headers = ObjectHeaders::default();
        assert_eq!(tagging_of(&headers), None);
        headers.tags.insert("team".into(), "a&b=c".into());
        headers.tags.insert("année".into(), "x y".into());
        assert_eq!(
            tagging_of(&headers).unwrap(),
            "ann%C3%A9e=x%20y&team=a%26b%3Dc"
        );
    }
}
