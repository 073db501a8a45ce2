//! Redis as a source: snapshots taken over the replication handshake (as `redis-cli --rdb`
//! does), checked as they stream, and restored to a `dump.rdb` or into a running server.

pub mod endpoint;
pub mod info;
pub mod primary;
pub mod probe;
pub mod rdb;
pub mod readback;
pub mod restore_dir;
pub mod restore_into;
pub mod snapshot;
pub mod sync;
pub mod tls;
pub mod versions;

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};

use super::reader::StreamReader;
use super::sink::SnapshotSink;
use super::{RestoreTarget, Source};
use crate::config::RedisSettings;
use crate::repo::Repository;
use crate::repo::source_catalog::{SnapshotRecord, SnapshotStream};
use endpoint::RedisEndpoint;
use restore_dir::{DUMP_NAME, DirRestore};
use restore_into::IntoRestore;
use snapshot::RedisSnapshotMeta;

/// How long each step of a restore into a running server may take (connecting, a command);
/// the wait for the load itself grows with the snapshot's size.
const INTO_STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// A configured Redis server.
pub struct RedisSource {
    settings: RedisSettings,
    /// Resolved (the URL read, the password found) when first needed: a restore never
    /// connects to the source, so it never reads the source's password file.
    endpoint: OnceLock<RedisEndpoint>,
}

impl RedisSource {
    pub fn new(settings: &RedisSettings) -> RedisSource {
        RedisSource {
            settings: settings.clone(),
            endpoint: OnceLock::new(),
        }
    }

    /// The configured server, its URL read and its password found.
    fn endpoint(&self) -> anyhow::Result<&RedisEndpoint> {
        if let Some(endpoint) = self.endpoint.get() {
            return Ok(endpoint);
        }
        let endpoint = RedisEndpoint::resolve(
            &self.settings.url,
            self.settings.password_file.as_deref(),
            self.settings.tls_ca_file.as_deref(),
            self.settings.connect_timeout,
        )?;
        Ok(self.endpoint.get_or_init(|| endpoint))
    }

    /// A server named on the command line (`--into`, `--check-against`): its password from
    /// the URL or `REDISCLI_AUTH`, never an argument of its own.
    fn other_server(&self, url: &str) -> anyhow::Result<RedisEndpoint> {
        RedisEndpoint::resolve(url, None, None, self.settings.connect_timeout)
    }
}

impl Source for RedisSource {
    fn id_letter(&self) -> char {
        'R'
    }

    fn ready(&self) -> anyhow::Result<()> {
        self.endpoint().map(|_| ())
    }

    fn check(&self) -> anyhow::Result<Vec<String>> {
        Ok(probe::probe(self.endpoint()?)?
            .into_iter()
            .map(|line| format!("{}: {}", line.what, line.found))
            .collect())
    }

    fn snapshot(
        &self,
        sink: &mut SnapshotSink<'_>,
        _previous: Option<&SnapshotRecord>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut writer = sink.stream(DUMP_NAME);
        let meta = snapshot::take_snapshot(self.endpoint()?, &mut writer)?;
        writer.flush()?;
        writer.finish()?;
        Ok(serde_json::to_value(meta)?)
    }

    fn restore(
        &self,
        repo: Arc<Repository>,
        snapshot: &SnapshotRecord,
        target: &RestoreTarget,
    ) -> anyhow::Result<String> {
        if let RestoreTarget::Bucket { .. }
        | RestoreTarget::File { .. }
        | RestoreTarget::AzureTable(_) = target
        {
            bail!(
                "source '{}' is a Redis source: restore it with --to DIR or --into URL",
                snapshot.source
            );
        }
        let (meta, stream) = redis_snapshot(snapshot)?;
        let reader = StreamReader::open(repo, &snapshot.source, stream);
        let restoring = Restoring {
            snapshot,
            meta,
            size: stream.size,
        };
        match target {
            RestoreTarget::RedisDir {
                dir,
                force,
                pid,
                port,
                check_against,
            } => {
                let mut check = match check_against {
                    Some(url) => Some(self.other_server(url)?.connection()?),
                    None => None,
                };
                let options = DirRestore {
                    dir,
                    force: *force,
                    pid: *pid,
                    port: *port,
                    check_against: check.as_mut(),
                };
                restoring.to_dir(reader, options)
            }
            RestoreTarget::RedisInto {
                url,
                flush,
                listen,
                advertise,
            } => {
                let options = IntoRestore {
                    flush: *flush,
                    listen: *listen,
                    advertise: advertise.clone(),
                    timeout: INTO_STEP_TIMEOUT,
                };
                restoring.load_into(&self.other_server(url)?, reader, &options)
            }
            RestoreTarget::Bucket { .. }
            | RestoreTarget::File { .. }
            | RestoreTarget::AzureTable(_) => {
                unreachable!("refused above")
            }
        }
    }
}

/// A Redis snapshot being restored: its record, what the record says of the RDB, its size.
struct Restoring<'a> {
    snapshot: &'a SnapshotRecord,
    meta: RedisSnapshotMeta,
    size: u64,
}

impl Restoring<'_> {
    /// `--to DIR`: the snapshot as `DIR/dump.rdb`.
    fn to_dir(&self, mut reader: StreamReader, options: DirRestore) -> anyhow::Result<String> {
        let dir = options.dir.to_owned();
        let crc64 = self
            .meta
            .crc64
            .as_deref()
            .map(|hex| u64::from_str_radix(hex, 16))
            .transpose()
            .with_context(|| {
                format!(
                    "snapshot {} records a CRC-64 that is not hex",
                    self.snapshot.id
                )
            })?;
        let path = restore_dir::restore_to_dir(
            &mut reader,
            self.size,
            crc64,
            self.meta.rdb_version,
            options,
        )?;
        Ok(format!(
            "restored snapshot {} of source '{}' to {} ({} bytes, RDB version {}): start a Redis server with dir {} to load it",
            self.snapshot.id,
            self.snapshot.source,
            path.display(),
            self.size,
            self.meta.rdb_version,
            dir.display()
        ))
    }

    /// `--into URL`: the snapshot loaded into a running server.
    fn load_into(
        &self,
        server: &RedisEndpoint,
        reader: StreamReader,
        options: &IntoRestore,
    ) -> anyhow::Result<String> {
        let mut connection = server.connection()?;
        let outcome = restore_into::restore_into(
            &mut connection,
            &server.display(),
            Box::new(reader),
            self.size,
            self.meta.rdb_version,
            self.meta.repl_offset.unwrap_or(0),
            options,
        )?;
        let keys: u64 = outcome.keys.values().map(|db| db.keys).sum();
        Ok(format!(
            "loaded snapshot {} of source '{}' into {} ({keys} keys in {} databases); it is a primary again",
            self.snapshot.id,
            self.snapshot.source,
            server.display(),
            outcome.keys.len()
        ))
    }
}

/// What a Redis snapshot's record holds: its metadata and its one stream, the `dump.rdb`.
fn redis_snapshot(record: &SnapshotRecord) -> anyhow::Result<(RedisSnapshotMeta, &SnapshotStream)> {
    let meta: RedisSnapshotMeta =
        serde_json::from_value(record.meta.clone()).with_context(|| {
            format!(
                "snapshot {} of source '{}' does not record a Redis snapshot's metadata",
                record.id, record.source
            )
        })?;
    match record.streams.as_slice() {
        [stream] if stream.name == DUMP_NAME && stream.size == meta.bytes => Ok((meta, stream)),
        _ => bail!(
            "snapshot {} of source '{}' is not one dump.rdb of {} bytes: the repository was tampered with",
            record.id,
            record.source,
            meta.bytes
        ),
    }
}
