//! An S3 bucket (or MinIO's, or the part under a prefix) as a source: incremental snapshots
//! that read only new and changed objects (`diff`, `fetch`), each object's content chunked and
//! stored once however many keys hold it, the objects and deletions recorded as the snapshot's
//! lists (`manifest`), and restores of a whole snapshot or one object into a bucket
//! (`restore`) or a file (`to_file`), on the repository's S3 client stack (`client`).

pub mod client;
pub mod diff;
pub mod fetch;
pub mod manifest;
pub mod restore;
pub mod to_file;

use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail};

use super::sink::SnapshotSink;
use super::{RestoreTarget, Source};
use crate::config::BucketSettings;
use crate::repo::Repository;
use crate::repo::catalog::ChunkRef;
use crate::repo::source_catalog::{SnapshotRecord, source_blobs};
use client::BucketClient;
use manifest::{BucketSnapshotMeta, DELETED_STREAM, OBJECTS_STREAM};

/// A configured bucket.
pub struct BucketSource {
    name: String,
    settings: BucketSettings,
    /// Made when first needed: a restore to a file never reaches the bucket.
    client: OnceLock<BucketClient>,
}

impl BucketSource {
    pub fn new(name: &str, settings: &BucketSettings) -> BucketSource {
        BucketSource {
            name: name.to_owned(),
            settings: settings.clone(),
            client: OnceLock::new(),
        }
    }

    fn section(&self) -> String {
        format!("source.{}", self.name)
    }

    /// The source bucket's client.
    fn client(&self) -> anyhow::Result<&BucketClient> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = BucketClient::connect(&self.settings, &self.section(), &self.settings.bucket)?;
        Ok(self.client.get_or_init(|| client))
    }

    /// `--to-bucket`: refused into the source bucket itself without `--in-place`.
    fn restore_to_bucket(
        &self,
        repo: &Repository,
        snapshot: &SnapshotRecord,
        target: &restore::BucketTarget,
        in_place: bool,
    ) -> anyhow::Result<String> {
        if target.bucket == self.settings.bucket && !in_place {
            bail!(
                "--to-bucket {} is source '{}' itself: pass --in-place to restore over it, or name another bucket",
                target.bucket,
                self.name
            );
        }
        let pool = source_blobs(repo, &snapshot.source)?;
        let entries = self.entries_wanted(&pool, snapshot, target.key.as_deref())?;
        let meta = bucket_meta(snapshot)?;
        let client = BucketClient::connect(&self.settings, &self.section(), &target.bucket)?;
        let report = restore::restore_into_bucket(
            &client,
            &pool,
            &entries,
            &meta.prefix,
            target,
            self.settings.concurrency,
        )?;
        Ok(format!(
            "{report}snapshot {} of source '{}' ({})",
            snapshot.id,
            self.name,
            meta.describe()
        ))
    }

    /// Whether `record` is of the bucket, prefix and server configured now: only then do its
    /// objects stand for what this snapshot need not read.
    fn same_bucket_as(&self, record: &SnapshotRecord) -> anyhow::Result<bool> {
        let meta = bucket_meta(record)?;
        Ok(meta.bucket == self.settings.bucket
            && meta.prefix == self.settings.prefix
            && meta.endpoint == self.settings.endpoint)
    }

    /// The snapshot's objects, or only `key`'s (refused if the snapshot lacks it).
    fn entries_wanted(
        &self,
        pool: &crate::repo::blob_pool::BlobPool<'_>,
        snapshot: &SnapshotRecord,
        key: Option<&str>,
    ) -> anyhow::Result<Vec<manifest::ObjectEntry>> {
        let mut entries = manifest::read_entries(pool, snapshot)?;
        if let Some(key) = key {
            entries.retain(|entry| entry.key == key);
            if entries.is_empty() {
                bail!(
                    "snapshot {} of source '{}' has no object {key:?}: 'tidemark source list {}' shows the snapshots; name a key as the bucket held it",
                    snapshot.id,
                    self.name,
                    self.name
                );
            }
        }
        Ok(entries)
    }
}

impl Source for BucketSource {
    fn id_letter(&self) -> char {
        'B'
    }

    fn ready(&self) -> anyhow::Result<()> {
        self.client().map(|_| ())
    }

    fn check(&self) -> anyhow::Result<Vec<String>> {
        let client = self.client()?;
        let listed = client.list(&self.settings.prefix)?;
        let bytes: u64 = listed.iter().map(|l| l.size).sum();
        Ok(vec![format!(
            "{} under {:?}: {} objects, {} (listed)",
            client.location(),
            self.settings.prefix,
            listed.len(),
            crate::units::bytes(bytes)
        )])
    }

    fn snapshot(
        &self,
        sink: &mut SnapshotSink<'_>,
        previous: Option<&SnapshotRecord>,
    ) -> anyhow::Result<serde_json::Value> {
        let client = self.client()?;
        let listed = client.list(&self.settings.prefix)?;
        let before = match previous {
            Some(record) if self.same_bucket_as(record)? => {
                manifest::read_entries(sink.pool(), record).with_context(|| {
                    format!("read the objects of the previous snapshot {}", record.id)
                })?
            }
            // The first snapshot, or the configuration now names another bucket: all is new.
            _ => Vec::new(),
        };
        let plan = diff::plan(listed, before);
        let mut deleted = plan.deleted;
        let fetched = fetch::carry_out(client, sink, plan.steps, self.settings.concurrency)?;
        deleted.extend(fetched.vanished.iter().cloned());
        deleted.sort();
        let meta = BucketSnapshotMeta {
            bucket: self.settings.bucket.clone(),
            prefix: self.settings.prefix.clone(),
            endpoint: self.settings.endpoint.clone(),
            objects: fetched.entries.len() as u64,
            bytes: fetched.entries.values().map(|e| e.size).sum(),
            added: fetched.added,
            changed: fetched.changed,
            deleted: deleted.len() as u64,
            fetched: fetched.fetched,
            fetched_bytes: fetched.fetched_bytes,
            changed_while_read: fetched.changed_while_read,
        };
        write_lists(sink, &fetched, &deleted)?;
        Ok(serde_json::to_value(meta)?)
    }

    fn restore(
        &self,
        repo: Arc<Repository>,
        snapshot: &SnapshotRecord,
        target: &RestoreTarget,
    ) -> anyhow::Result<String> {
        match target {
            RestoreTarget::Bucket { target, in_place } => {
                self.restore_to_bucket(&repo, snapshot, target, *in_place)
            }
            RestoreTarget::File { key, path } => {
                let pool = source_blobs(&repo, &snapshot.source)?;
                let entries = self.entries_wanted(&pool, snapshot, Some(key))?;
                to_file::restore_to_file(&pool, &entries[0], path)?;
                Ok(format!(
                    "restored {key:?} of snapshot {} of source '{}' to {} ({} bytes)",
                    snapshot.id,
                    self.name,
                    path.display(),
                    entries[0].size
                ))
            }
            RestoreTarget::RedisDir { .. }
            | RestoreTarget::RedisInto { .. }
            | RestoreTarget::AzureTable(_) => bail!(
                "source '{}' is a bucket: restore it with --to-bucket NAME, or one object with --key KEY --to-file PATH",
                self.name
            ),
        }
    }
}

/// The snapshot's lists: its objects, then the keys deleted since the previous snapshot.
fn write_lists(
    sink: &mut SnapshotSink<'_>,
    fetched: &fetch::Fetched,
    deleted: &[String],
) -> anyhow::Result<()> {
    let mut objects = std::io::BufWriter::with_capacity(1 << 20, sink.stream(OBJECTS_STREAM));
    manifest::write_entries(&mut objects, fetched.entries.values())?;
    objects.into_inner().map_err(|e| e.into_error())?.finish()?;
    let mut gone = sink.stream(DELETED_STREAM);
    manifest::write_deleted(&mut gone, deleted)?;
    gone.finish()?;
    Ok(())
}

/// What a bucket snapshot's record says of it.
pub fn bucket_meta(record: &SnapshotRecord) -> anyhow::Result<BucketSnapshotMeta> {
    serde_json::from_value(record.meta.clone()).with_context(|| {
        format!(
            "snapshot {} of source '{}' does not record a bucket snapshot's counts",
            record.id, record.source
        )
    })
}

/// Every chunk a bucket snapshot uses: its lists' and its objects'.
pub fn snapshot_chunks(
    repo: &Repository,
    record: &SnapshotRecord,
) -> anyhow::Result<Vec<ChunkRef>> {
    let pool = source_blobs(repo, &record.source)?;
    let mut chunks: Vec<ChunkRef> = record
        .streams
        .iter()
        .flat_map(|s| s.chunks.iter().cloned())
        .collect();
    for entry in manifest::read_entries(&pool, record)? {
        chunks.extend(entry.chunks);
    }
    Ok(chunks)
}
