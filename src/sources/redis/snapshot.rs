//! One snapshot of a Redis server: what `INFO` says of it first, then its RDB over the
//! replication handshake (`sync`), streamed into the caller's writer and checked, and the
//! metadata a snapshot's record keeps.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use super::endpoint::RedisEndpoint;
pub use super::info::DbKeys;
use super::info::ServerFacts;
use super::rdb::NEWEST_KNOWN_RDB_VERSION;
use super::sync::{self, StreamClosed};

/// What a snapshot's record keeps of the server and of the RDB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisSnapshotMeta {
    /// `redis_version` from `INFO server`.
    pub redis_version: String,
    /// `run_id` from `INFO server`: which run of the server (it changes on restart).
    pub run_id: String,
    /// `master` or `slave` (`INFO replication`): replicas serve SYNC too.
    pub role: String,
    /// The RDB format version its header claims.
    pub rdb_version: u32,
    /// How it was sent: "diskless" (`$EOF:` form) or "disk" (`$<len>`).
    pub form: String,
    /// The RDB's length, header through CRC trailer.
    pub bytes: u64,
    /// The CRC-64 trailer, 16 hex digits; `None` when the server wrote 0 (`rdbchecksum no`).
    pub crc64: Option<String>,
    /// The `repl-id` AUX field: the replication history the data is at.
    pub repl_id: Option<String>,
    /// The `repl-offset` AUX field: the replication offset the data is at.
    pub repl_offset: Option<u64>,
    /// The `ctime` AUX field: when the server wrote it (Unix seconds).
    pub ctime: Option<i64>,
    /// Keys (and keys with a TTL) per db from `INFO keyspace`: counts at the START of the
    /// snapshot, read before SYNC; the RDB is the keyspace at the fork a moment later, so with
    /// writers running they may differ a little.
    pub keys: BTreeMap<u32, DbKeys>,
    /// The server, as `RedisEndpoint::display` shows it (no password).
    pub server: String,
}

impl RedisSnapshotMeta {
    /// Where the snapshot came from and what it holds, in a few words.
    pub fn describe(&self) -> String {
        let keys: u64 = self.keys.values().map(|db| db.keys).sum();
        format!(
            "from Redis {} (RDB version {}, {} transfer), {keys} keys",
            self.redis_version, self.rdb_version, self.form
        )
    }
}

/// Takes a snapshot of `endpoint` into `out`: exactly the `dump.rdb` file, header through
/// trailer. The metadata is returned only when every check passed; on an error `out` holds
/// part of the RDB, which the caller discards.
pub fn take_snapshot(
    endpoint: &RedisEndpoint,
    out: &mut dyn Write,
) -> anyhow::Result<RedisSnapshotMeta> {
    let facts = {
        let mut connection = endpoint.connection()?;
        ServerFacts::read(&mut connection, endpoint)?
    };
    if facts.role != "master" {
        tracing::info!(
            "Redis at {} is a replica ({}): the snapshot is its copy of its primary's data",
            endpoint.display(),
            facts.role
        );
    }
    let received = sync::receive(endpoint, out).map_err(|error| {
        match error.downcast_ref::<StreamClosed>() {
            Some(closed) => sync::explain_closed(endpoint, closed),
            None => error,
        }
    })?;
    let summary = &received.summary;
    if summary.version > NEWEST_KNOWN_RDB_VERSION {
        tracing::warn!(
            "Redis at {} wrote RDB version {}, newer than the newest this Tidemark knows ({NEWEST_KNOWN_RDB_VERSION}): the snapshot is kept, but only a server as new can load it",
            endpoint.display(),
            summary.version
        );
    }
    if summary.crc64.is_none() {
        tracing::warn!(
            "Redis at {} wrote no CRC-64 (rdbchecksum no): the snapshot's bytes are kept with the repository's own checksums, but its RDB checksum cannot be verified",
            endpoint.display()
        );
    }
    if let Some(problem) = &received.aux_problem {
        tracing::warn!(
            "read the metadata (AUX fields) of the RDB from Redis at {}: {problem}; the snapshot is kept without it",
            endpoint.display()
        );
    }
    Ok(RedisSnapshotMeta {
        redis_version: facts.redis_version,
        run_id: facts.run_id,
        role: facts.role,
        rdb_version: summary.version,
        form: received.form.as_str().to_owned(),
        bytes: summary.bytes,
        crc64: summary.crc64.map(|crc| format!("{crc:016x}")),
        repl_id: received.aux.repl_id().map(str::to_owned),
        repl_offset: received.aux.repl_offset(),
        ctime: received.aux.ctime(),
        keys: facts.keys,
        server: endpoint.display(),
    })
}
