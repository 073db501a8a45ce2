//! What a bucket snapshot records: one line of JSON per object (`objects.jsonl`, sorted by key:
//! its size, ETag, last-modified time, headers, user metadata, tags and the chunks of its
//! content), the keys deleted since the previous snapshot (`deleted.jsonl`), and the counts the
//! snapshot's record keeps. Both lists are streams of the snapshot, chunked like any other, so
//! the list of an unchanged bucket is stored again as nothing new.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::repo::blob_pool::BlobPool;
use crate::repo::catalog::ChunkRef;
use crate::repo::source_catalog::{SnapshotRecord, SnapshotStream};
use crate::units;

/// The stream listing every object of a snapshot.
pub const OBJECTS_STREAM: &str = "objects.jsonl";
/// The stream listing the keys deleted since the previous snapshot.
pub const DELETED_STREAM: &str = "deleted.jsonl";

/// The headers of an object that a restore writes back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// User metadata (`x-amz-meta-*`), by name without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// One object of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    /// As the server gave it, without quotes; a multipart upload's is no MD5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The version read, when the source lists versions (`listing = "versions"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// As the listing gave it (RFC 3339): compared, never parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(flatten)]
    pub headers: ObjectHeaders,
    pub chunks: Vec<ChunkRef>,
}

/// What a bucket snapshot's record keeps (its `meta`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSnapshotMeta {
    pub bucket: String,
    pub prefix: String,
    /// The server's endpoint as configured; `None` for AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub objects: u64,
    /// Bytes of every object's content.
    pub bytes: u64,
    /// Objects not in the previous snapshot.
    pub added: u64,
    /// Objects whose content or headers changed since the previous snapshot.
    pub changed: u64,
    pub deleted: u64,
    /// Objects read (GET) by this snapshot, and their bytes.
    pub fetched: u64,
    pub fetched_bytes: u64,
    /// Objects whose ETag or time at the read differed from the listing's: stored as read,
    /// with the headers of that read.
    pub changed_while_read: u64,
}

impl BucketSnapshotMeta {
    /// A few words on the snapshot: `5003 objects, 1.2 GiB; 12 added, 50 changed, 3 deleted`.
    pub fn describe(&self) -> String {
        format!(
            "{} objects, {}; {} added, {} changed, {} deleted",
            self.objects,
            units::bytes(self.bytes),
            self.added,
            self.changed,
            self.deleted
        )
    }
}

/// Writes `entries` as JSON lines.
pub fn write_entries<'e>(
    out: &mut impl Write,
    entries: impl IntoIterator<Item = &'e ObjectEntry>,
) -> anyhow::Result<()> {
    for entry in entries {
        serde_json::to_writer(&mut *out, entry)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Writes the deleted keys as JSON lines (each a JSON string).
pub fn write_deleted(out: &mut impl Write, keys: &[String]) -> anyhow::Result<()> {
    for key in keys {
        serde_json::to_writer(&mut *out, key)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The objects of a bucket snapshot, read back from `pool` and checked: keys in order and
/// unique, each object's chunks adding up to its size.
pub fn read_entries(
    pool: &BlobPool<'_>,
    record: &SnapshotRecord,
) -> anyhow::Result<Vec<ObjectEntry>> {
    let stream = stream_of(record, OBJECTS_STREAM)?;
    let mut entries: Vec<ObjectEntry> = Vec::new();
    for (number, line) in lines(pool, stream).enumerate() {
        let line = line?;
        let entry: ObjectEntry = serde_json::from_str(&line).with_context(|| {
            format!(
                "line {} of {OBJECTS_STREAM} of snapshot {} is not valid",
                number + 1,
                record.id
            )
        })?;
        check_entry(&entry, entries.last(), &record.id)?;
        entries.push(entry);
    }
    Ok(entries)
}

/// The keys a bucket snapshot lists as deleted since the snapshot before it.
pub fn read_deleted(pool: &BlobPool<'_>, record: &SnapshotRecord) -> anyhow::Result<Vec<String>> {
    let stream = stream_of(record, DELETED_STREAM)?;
    lines(pool, stream)
        .map(|line| {
            let line = line?;
            serde_json::from_str(&line).with_context(|| {
                format!(
                    "{DELETED_STREAM} of snapshot {} holds a line that is not a key",
                    record.id
                )
            })
        })
        .collect()
}

fn check_entry(entry: &ObjectEntry, before: Option<&ObjectEntry>, id: &str) -> anyhow::Result<()> {
    let chunked: u64 = entry.chunks.iter().map(|c| c.size).sum();
    if chunked != entry.size {
        bail!(
            "object {:?} of snapshot {id} is {} bytes but its chunks hold {chunked}: the snapshot is damaged",
            entry.key,
            entry.size
        );
    }
    if let Some(before) = before
        && before.key >= entry.key
    {
        bail!(
            "{OBJECTS_STREAM} of snapshot {id} lists {:?} after {:?}: the snapshot is damaged",
            entry.key,
            before.key
        );
    }
    Ok(())
}

/// The stream `name` of a bucket snapshot.
fn stream_of<'r>(record: &'r SnapshotRecord, name: &str) -> anyhow::Result<&'r SnapshotStream> {
    record
        .streams
        .iter()
        .find(|stream| stream.name == name)
        .with_context(|| {
            format!(
                "snapshot {} of source '{}' has no {name}: it is not a bucket snapshot this Tidemark wrote",
                record.id, record.source
            )
        })
}

/// The lines of a stream, read chunk by chunk.
fn lines<'a>(
    pool: &'a BlobPool<'_>,
    stream: &'a SnapshotStream,
) -> impl Iterator<Item = anyhow::Result<String>> + 'a {
    let reader = PoolStream {
        pool,
        chunks: stream.chunks.iter(),
        current: Vec::new(),
        at: 0,
    };
    BufReader::new(reader)
        .lines()
        .map(|line| line.context("read a list of the snapshot"))
}

/// A stream's chunks read one after another from the pool, each checked as it is read.
struct PoolStream<'a, 'p> {
    pool: &'a BlobPool<'p>,
    chunks: std::slice::Iter<'a, ChunkRef>,
    current: Vec<u8>,
    at: usize,
}

impl Read for PoolStream<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            let Some(chunk) = self.chunks.next() else {
                return Ok(0);
            };
            self.pool
                .get_chunk(chunk, &mut self.current)
                .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            self.at = 0;
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
