//! The other stateful parts of a deployment, backed up into the same repository as snapshots:
//! what every kind of source shares — one [`Source`] trait, taking a snapshot into the
//! repository (`take`: lock, sink, record last), the sink a snapshot streams into (`sink`),
//! reading a stored stream back (`reader`) — and each kind with its own protocol (`redis`).

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
    /// version, identity, sizes). An error leaves the sink's chunks unrecorded.
    fn snapshot(&self, sink: &mut SnapshotSink) -> anyhow::Result<serde_json::Value>;

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
}

/// What a snapshot holds, in a few words: its size, then what its kind records of it.
pub fn describe(record: &SnapshotRecord) -> String {
    let size = units::bytes(record.sizes.raw);
    let recorded = match record.kind.as_str() {
        "redis" => {
            serde_json::from_value::<redis::snapshot::RedisSnapshotMeta>(record.meta.clone())
                .ok()
                .map(|meta| meta.describe())
        }
        _ => None,
    };
    match recorded {
        Some(recorded) => format!("{size} {recorded}"),
        None => format!("{size} ({} snapshot)", record.kind),
    }
}

/// The source `settings` configure.
pub fn open(settings: &SourceSettings) -> Box<dyn Source> {
    match &settings.kind {
        SourceKind::Redis(redis) => Box::new(redis::RedisSource::new(redis)),
    }
}
