//! The other stateful parts of a deployment, backed up into the same repository as snapshots:
//! what every kind of source shares — one [`Source`] trait, taking a snapshot into the
//! repository (`take`: lock, sink, record last), the sink a snapshot streams into (`sink`),
//! reading a stored stream back (`reader`), where chunks end (`cutter`) — and each kind with
//! its own protocol (`redis`, `bucket`, `azure_table`).

pub mod azure_table;
pub mod bucket;
pub mod cutter;
pub mod reader;
pub mod redis;
pub mod sink;
pub mod take;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{SourceKind, SourceSettings};
use crate::repo::Repository;
use crate::repo::source_catalog::SnapshotRecord;
use crate::units;
use sink::SnapshotSink;

/// One kind of source: what `source check`, `source backup` and `source restore` do with it.
pub trait Source {
    /// The letter that ends its snapshots' ids (`R` for Redis).
    fn id_letter(&self) -> char;

    /// Checks the settings a snapshot needs (a URL's parts, secret files) without reaching
    /// the source: called before a snapshot writes anything.
    fn ready(&self) -> anyhow::Result<()>;

    /// Checks that a snapshot can be taken, short of taking one: what was found, line by
    /// line; an error says what the source lacks and how to give it.
    fn check(&self) -> anyhow::Result<Vec<String>>;

    /// Streams a snapshot into `sink`; returns what the record keeps of the source (its
    /// version, identity, sizes). `previous` is the source's last complete snapshot, for a
    /// kind that takes only what changed since. An error leaves the sink's chunks unrecorded.
    fn snapshot(
        &self,
        sink: &mut SnapshotSink<'_>,
        previous: Option<&SnapshotRecord>,
    ) -> anyhow::Result<serde_json::Value>;

    /// Restores `snapshot`, read from `repo`, to `target`; returns what to tell the user.
    fn restore(
        &self,
        repo: Arc<Repository>,
        snapshot: &SnapshotRecord,
        target: &RestoreTarget,
    ) -> anyhow::Result<String>;
}

/// Where `source restore` puts a snapshot.
#[derive(Clone, Debug)]
pub enum RestoreTarget {
    /// A Redis `dump.rdb` in a stopped server's directory.
    RedisDir {
        dir: PathBuf,
        force: bool,
        pid: Option<u32>,
        port: Option<u16>,
        /// The server that will load it, asked which RDB versions it loads.
        check_against: Option<String>,
    },
    /// A running Redis server, loaded as a replica of Tidemark.
    RedisInto {
        url: String,
        flush: bool,
        listen: SocketAddr,
        advertise: Option<String>,
    },
    /// A bucket on the bucket source's server; over the source bucket itself only `in_place`.
    Bucket {
        target: bucket::restore::BucketTarget,
        in_place: bool,
    },
    /// One object of a bucket snapshot, as a new local file.
    File { key: String, path: PathBuf },
    /// A table of an Azure Table snapshot, or part of it, into a table of the account.
    AzureTable(azure_table::restore::TableTarget),
}

/// What a snapshot holds, in a few words: what its kind records of it, else its size.
pub fn describe(record: &SnapshotRecord) -> String {
    let size = units::bytes(record.sizes.raw);
    let recorded = match record.kind.as_str() {
        "redis" => {
            serde_json::from_value::<redis::snapshot::RedisSnapshotMeta>(record.meta.clone())
                .ok()
                .map(|meta| format!("{size} {}", meta.describe()))
        }
        "bucket" => bucket::bucket_meta(record).ok().map(|meta| meta.describe()),
        "azure-table" => azure_table::table_meta(record)
            .ok()
            .map(|meta| meta.describe()),
        _ => None,
    };
    recorded.unwrap_or_else(|| format!("{size} ({} snapshot)", record.kind))
}

/// Every chunk a snapshot uses: its streams', and for a bucket its objects' (read from its
/// list of objects, so a list that cannot be read is an error, never fewer chunks).
pub fn snapshot_chunks(
    repo: &Repository,
    record: &SnapshotRecord,
) -> anyhow::Result<Vec<crate::repo::catalog::ChunkRef>> {
    match record.kind.as_str() {
        "bucket" => bucket::snapshot_chunks(repo, record),
        _ => Ok(record
            .streams
            .iter()
            .flat_map(|stream| stream.chunks.iter().cloned())
            .collect()),
    }
}

/// Every chunk `snapshots` use, by name: what a sweep of their source's pool must keep.
pub fn referenced_chunks(
    repo: &Repository,
    snapshots: &[SnapshotRecord],
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let mut names = std::collections::BTreeSet::new();
    for snapshot in snapshots {
        names.extend(snapshot_chunks(repo, snapshot)?.into_iter().map(|c| c.name));
    }
    Ok(names)
}

/// The source `settings` configure.
pub fn open(settings: &SourceSettings) -> Box<dyn Source> {
    match &settings.kind {
        SourceKind::Redis(redis) => Box::new(redis::RedisSource::new(redis)),
        SourceKind::Bucket(bucket) => Box::new(bucket::BucketSource::new(&settings.name, bucket)),
        SourceKind::AzureTable(tables) => {
            Box::new(azure_table::AzureTableSource::new(&settings.name, tables))
        }
    }
}
