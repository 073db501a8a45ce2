//! The source catalog: which kind of source each name is (`source.json`), and what each complete
//! snapshot of it holds (`snapshot.json`, written last, as a backup's record is).
//!
//! A snapshot exists only once its record is stored, after every chunk it names is durable. An
//! interrupted snapshot therefore leaves at most chunks, which later snapshots reuse and
//! `expire` sweeps, and nothing `source list` or `source restore` would take for a snapshot.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::blob_pool::BlobPool;
use super::catalog::ChunkRef;
use super::lock::LockScope;
use super::{ChunkHash, PutOnce, Repository, layout, limits, stanza};
use crate::storage::{Cancel, ObjectKey, PutOutcome};

/// Version of the source identity and snapshot record formats.
pub const SOURCE_FORMAT: u32 = 1;

/// What `_source/<name>/source.json` records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceIdentity {
    pub format: u32,
    pub source: String,
    /// `redis`: a source's snapshots are all of one kind.
    pub kind: String,
    /// When its first snapshot started (RFC 3339, UTC); informational.
    pub created: String,
    /// `aes-256-gcm` in an encrypted repository, as a stanza's identity says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// The id of the encrypted repository's keyring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// `blake3`, or absent for SHA-256, as a stanza's identity says (see [`ChunkHash`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_hash: Option<String>,
}

/// One stream of bytes a snapshot stored (a Redis snapshot has one, `dump.rdb`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStream {
    pub name: String,
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
}

/// Sizes of a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSizes {
    /// Bytes the source sent.
    pub raw: u64,
    /// Stored bytes of every chunk the snapshot uses, its own and those shared with others.
    pub stored: u64,
    /// Stored bytes this snapshot added to the repository.
    pub new: u64,
    pub chunks: u64,
    /// Chunks already in the repository, not stored again.
    pub reused_chunks: u64,
}

/// The record of one complete snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRecord {
    pub format: u32,
    pub source: String,
    pub kind: String,
    /// `YYYYMMDD-HHMMSS` of its start (UTC) and a letter for the kind: `20261206-193000R`.
    pub id: String,
    /// RFC 3339, UTC.
    pub start_time: String,
    pub stop_time: String,
    pub duration_ms: u64,
    pub sizes: SnapshotSizes,
    pub streams: Vec<SnapshotStream>,
    /// What the source said about itself: for Redis, its version, run id, RDB version, keys
    /// per database, replication offset, CRC-64.
    pub meta: serde_json::Value,
}

/// A source's area of the repository, opened.
pub struct SourceArea<'r> {
    repo: &'r Repository,
    identity: SourceIdentity,
    /// What names its chunks, as its identity says.
    chunk_hash: ChunkHash,
}

impl Repository {
    /// Refuses a snapshot of `kind` under source `name` that [`Repository::open_or_create_source`]
    /// would refuse, writing nothing: checked before a snapshot starts, so a refused one leaves
    /// no trace.
    pub fn check_source_kind(&self, name: &str, kind: &str) -> anyhow::Result<()> {
        match self.open_source(name)? {
            Some(area) => area.check_kind(kind),
            None => self.refuse_plain_where_encrypted(),
        }
    }

    /// Opens source `name` for a snapshot's record, recording it as a source of `kind` if this
    /// is its first; a name already used by another kind is refused.
    pub fn open_or_create_source(&self, name: &str, kind: &str) -> anyhow::Result<SourceArea<'_>> {
        layout::check_source_name(name)?;
        let key = layout::source_identity(name);
        if self.storage.head(&key)?.is_none() {
            self.refuse_plain_where_encrypted()?;
            let identity = SourceIdentity {
                format: SOURCE_FORMAT,
                source: name.to_owned(),
                kind: kind.to_owned(),
                created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                cipher: self.codec.keys().map(|_| stanza::CIPHER.to_owned()),
                repository: self
                    .codec
                    .keys()
                    .map(|keys| keys.repository_id())
                    .transpose()?,
                // What the snapshot that records it stored its chunks with: a source's pool
                // names its chunks with the new hash until an identity says otherwise.
                chunk_hash: ChunkHash::NEW.identity_field(),
            };
            let json = serde_json::to_vec_pretty(&identity).expect("identity serializes");
            // A lost race leaves the winner's identity, read and checked below.
            let _: PutOutcome = self.storage.put_if_absent(&key, &[&json])?;
        }
        let area = self
            .open_source(name)?
            .with_context(|| format!("source '{name}' vanished while it was created"))?;
        area.check_kind(kind)?;
        Ok(area)
    }

    /// Opens source `name`; `None` if it has no snapshot yet.
    pub fn open_source(&self, name: &str) -> anyhow::Result<Option<SourceArea<'_>>> {
        layout::check_source_name(name)?;
        let key = layout::source_identity(name);
        let location = self.storage.location();
        let Some(bytes) = self.read_identity(&key, "source")? else {
            return Ok(None);
        };
        let identity: SourceIdentity = serde_json::from_slice(&bytes).with_context(|| {
            format!("read source identity {key} in {location}: it is not valid")
        })?;
        if identity.format != SOURCE_FORMAT || identity.source != name {
            bail!(
                "source identity {key} in {location} has format {} and names source '{}': it is not one this Tidemark wrote for '{name}'",
                identity.format,
                identity.source
            );
        }
        let chunk_hash = ChunkHash::from_identity(identity.chunk_hash.as_deref())
            .map_err(|why| anyhow::anyhow!("source identity {key} in {location} records {why}"))?;
        self.check_cipher_of(
            "source",
            name,
            identity.cipher.is_some(),
            "give it another name",
        )?;
        Ok(Some(SourceArea {
            repo: self,
            identity,
            chunk_hash,
        }))
    }

    /// The names of every source with a snapshot area, sorted.
    pub fn list_sources(&self) -> anyhow::Result<Vec<String>> {
        let root = ObjectKey::new(layout::SOURCES).expect("a valid key");
        let mut names = Vec::new();
        // One level under `_source/`, never the chunks below it; a name counts once its first
        // snapshot has recorded the source's identity.
        for name in self.storage.list_children(&root, &Cancel::never())? {
            if layout::check_source_name(&name).is_ok()
                && self
                    .storage
                    .head(&layout::source_identity(&name))?
                    .is_some()
            {
                names.push(name);
            }
        }
        Ok(names)
    }
}

impl<'r> SourceArea<'r> {
    fn check_kind(&self, kind: &str) -> anyhow::Result<()> {
        if self.identity.kind != kind {
            bail!(
                "source '{}' in {} holds {} snapshots, not {kind}: give this [source.{}] another name",
                self.name(),
                self.repo.storage().location(),
                self.identity.kind,
                self.name()
            );
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.identity.source
    }

    pub fn kind(&self) -> &str {
        &self.identity.kind
    }

    pub fn identity(&self) -> &SourceIdentity {
        &self.identity
    }

    pub fn repository(&self) -> &'r Repository {
        self.repo
    }

    /// The chunks this source's snapshots share.
    pub fn blobs(&self) -> BlobPool<'r> {
        source_pool(self.repo, self.name(), Some(self))
    }

    /// The locks of this source's snapshots and expires.
    pub fn locks(&self) -> LockScope<'r> {
        source_locks(self.repo, self.name())
    }

    /// Stores a snapshot's record, which makes the snapshot exist. Never replaces one; finding
    /// this very record there is success (an earlier attempt's answer was lost).
    pub fn put_snapshot_record(&self, record: &SnapshotRecord) -> anyhow::Result<()> {
        let key = layout::snapshot_record(self.name(), &record.id);
        match self.repo.put_once(&key, &serde_json::to_vec(record)?)? {
            PutOnce::Stored | PutOnce::Identical => Ok(()),
            PutOnce::Different => bail!(
                "a snapshot {} of source '{}' already exists",
                record.id,
                self.name()
            ),
        }
    }

    /// Every complete snapshot, oldest first.
    pub fn list_snapshots(&self) -> anyhow::Result<Vec<SnapshotRecord>> {
        let mut records = self
            .record_keys()?
            .iter()
            .map(|key| self.read_record(key))
            .collect::<anyhow::Result<Vec<_>>>()?;
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    /// The newest complete snapshot, its record alone read; `None` before the first.
    pub fn latest_snapshot(&self) -> anyhow::Result<Option<SnapshotRecord>> {
        // Ids sort in time order, and the keys with them.
        match self.record_keys()?.iter().max() {
            Some(key) => self.read_record(key).map(Some),
            None => Ok(None),
        }
    }

    /// The keys of every snapshot record.
    fn record_keys(&self) -> anyhow::Result<Vec<ObjectKey>> {
        let storage = self.repo.storage();
        Ok(storage
            .list(&layout::snapshot_root(self.name()), &Cancel::never())?
            .into_iter()
            .map(|listed| listed.key)
            .filter(|key| key.file_name() == "snapshot.json")
            .collect())
    }

    /// The record under `key`, checked: its format, and that it names the snapshot of its key.
    fn read_record(&self, key: &ObjectKey) -> anyhow::Result<SnapshotRecord> {
        let json = self
            .repo
            .get_checked_object(key, limits::BACKUP_RECORD)?
            .with_context(|| format!("snapshot record {key} vanished"))?;
        let record: SnapshotRecord = serde_json::from_slice(&json)
            .with_context(|| format!("snapshot record {key} is not valid"))?;
        if record.format != SOURCE_FORMAT {
            bail!(
                "snapshot record {key} has format {}, which this Tidemark does not know; upgrade Tidemark",
                record.format
            );
        }
        if layout::snapshot_record(self.name(), &record.id) != *key {
            bail!(
                "snapshot record {key} names snapshot {} of source '{}': the repository was tampered with",
                record.id,
                record.source
            );
        }
        Ok(record)
    }

    /// The snapshot `wanted` names: `latest` (or none) is the newest, else the id given.
    pub fn find_snapshot(&self, wanted: Option<&str>) -> anyhow::Result<SnapshotRecord> {
        let mut snapshots = self.list_snapshots()?;
        let ids = || {
            snapshots
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match wanted {
            None | Some("latest") => snapshots.pop().with_context(|| {
                format!(
                    "source '{}' has no snapshot: take one with 'tidemark source backup {}'",
                    self.name(),
                    self.name()
                )
            }),
            Some(id) => match snapshots.iter().position(|s| s.id == id) {
                Some(index) => Ok(snapshots.swap_remove(index)),
                None => bail!(
                    "source '{}' has no snapshot {id} (it has: {}): name one of them, or latest",
                    self.name(),
                    ids()
                ),
            },
        }
    }

    /// The newest snapshot that started at or before `at`: the source as it was then.
    pub fn snapshot_at(&self, at: chrono::DateTime<chrono::Utc>) -> anyhow::Result<SnapshotRecord> {
        let snapshots = self.list_snapshots()?;
        let started = |s: &SnapshotRecord| {
            chrono::DateTime::parse_from_rfc3339(&s.start_time)
                .map(|t| t.with_timezone(&chrono::Utc))
                .with_context(|| {
                    format!(
                        "snapshot {} records a start time that is not RFC 3339",
                        s.id
                    )
                })
        };
        let mut chosen = None;
        for snapshot in snapshots.iter() {
            if started(snapshot)? <= at {
                chosen = Some(snapshot);
            }
        }
        match (chosen, snapshots.first()) {
            (Some(snapshot), _) => Ok(snapshot.clone()),
            (None, Some(first)) => bail!(
                "source '{}' has no snapshot taken at or before {}: its first started at {}; name a later --at",
                self.name(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                first.start_time
            ),
            (None, None) => bail!(
                "source '{}' has no snapshot: take one with 'tidemark source backup {}'",
                self.name(),
                self.name()
            ),
        }
    }

    /// Removes snapshots `ids`: a record is all a snapshot's directory holds; its chunks go
    /// with the next sweep.
    pub fn remove_snapshots(&self, ids: &[String]) -> anyhow::Result<()> {
        let records: Vec<ObjectKey> = ids
            .iter()
            .map(|id| layout::snapshot_record(self.name(), id))
            .collect();
        self.repo.storage().delete_all(&records)?;
        Ok(())
    }
}

/// The chunks source `name`'s snapshots share, named as its identity says; before its first
/// snapshot is recorded, as a new source's are.
pub fn source_blobs<'r>(repo: &'r Repository, name: &str) -> anyhow::Result<BlobPool<'r>> {
    Ok(source_pool(repo, name, repo.open_source(name)?.as_ref()))
}

/// The chunks of source `name` whose area, once its first snapshot is recorded, is `area`.
pub fn source_pool<'r>(
    repo: &'r Repository,
    name: &str,
    area: Option<&SourceArea<'r>>,
) -> BlobPool<'r> {
    let hash = area.map_or(ChunkHash::NEW, |area| area.chunk_hash);
    BlobPool::new(repo, &layout::source_owner(name), hash)
}

/// The locks of source `name`'s snapshots and expires.
pub fn source_locks<'r>(repo: &'r Repository, name: &str) -> LockScope<'r> {
    LockScope::new(
        repo,
        &layout::source_owner(name),
        format!("source '{name}'"),
    )
}

#[cfg(test)]
mod tests;
