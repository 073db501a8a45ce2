//! The repository: where each object lives (`layout`), how it is framed and checked (`object`,
//! `compress`), which cluster each stanza serves (`stanza`), and who is backing up or expiring
//! it now (`lock`), over any [`Storage`].

pub mod blob_pool;
pub mod catalog;
pub mod codec;
pub mod compress;
pub mod crypto;
pub mod gc;
pub mod key_usage;
pub mod keys;
pub mod layout;
pub mod limits;
pub mod lock;
pub mod object;
pub mod put_gate;
pub mod retention;
pub mod sealed;
pub mod source_catalog;
pub mod stanza;
pub mod wal_index;

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::pg::WalFileName;
use crate::pg::segment_check::ExpectedCluster;

use crate::storage::{
    ByteRange, Cancel, ListedObject, ObjectKey, PutOutcome, PutResult, Storage, StorageError,
};
pub use codec::{ChunkHash, Codec, OpenedObject, StoredObject, WriteSettings};
pub use compress::Compression;
use object::{EncodedObject, ObjectHeader};
pub use stanza::StanzaIdentity;

/// A repository over a storage backend.
pub struct Repository {
    /// Shared, so that a thread renewing a lock (`lock`) can outlive a borrow of the repository.
    storage: Arc<dyn Storage>,
    codec: Codec,
    blob_puts: put_gate::PutGate,
}

/// What `create_stanza` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaCreated {
    Created,
    /// The stanza already existed for the same cluster; nothing was written.
    AlreadyExisted,
}

/// What [`Stanza::put_once`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOnce {
    /// Stored now, durably.
    Stored,
    /// The key held these very bytes already (now made durable): an earlier attempt took effect.
    Identical,
    /// The key holds other content, left as it is.
    Different,
}

/// What [`Stanza::read_at_most`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum BoundedRead {
    /// The stored object, whole.
    Object(Vec<u8>),
    /// No object under the key.
    Missing,
    /// An object larger than `limit` bytes, more than any object of a file of the size asked
    /// for can be: not one Tidemark stored there. Nothing past the limit was read.
    TooLarge { limit: u64 },
}

/// A stanza opened for reading and writing WAL.
pub struct Stanza<'r> {
    repo: &'r Repository,
    identity: StanzaIdentity,
    expected: ExpectedCluster,
    /// What names its chunks, as its identity says.
    chunk_hash: ChunkHash,
}

impl Repository {
    /// A plain repository: objects stored as they are compressed.
    pub fn new(storage: Box<dyn Storage>, write_settings: WriteSettings) -> Repository {
        Repository::with_codec(storage, Codec::plain(write_settings))
    }

    pub fn with_codec(storage: Box<dyn Storage>, codec: Codec) -> Repository {
        Repository {
            storage: Arc::from(storage),
            codec,
            blob_puts: put_gate::PutGate::default(),
        }
    }

    /// Which blobs this process is storing now.
    pub fn blob_puts(&self) -> &put_gate::PutGate {
        &self.blob_puts
    }

    /// How objects are framed here.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn write_settings(&self) -> WriteSettings {
        self.codec.write
    }

    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// The storage, for a thread that works beside the caller (a lock's renewal).
    pub(crate) fn shared_storage(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.storage)
    }

    /// Records `identity` as a new stanza. Creating it again for the same cluster changes
    /// nothing; for another cluster it is refused.
    /// In an encrypted repository the stanza is enrolled with the keyring first (which
    /// `stanza-create` of the first stanza creates), and its identity names the cipher.
    pub fn create_stanza(&self, identity: &StanzaIdentity) -> anyhow::Result<StanzaCreated> {
        layout::check_stanza_name(&identity.stanza)?;
        let key = layout::stanza_identity(&identity.stanza);
        let mut identity = identity.clone();
        let outcome = match self.codec.keys() {
            // An existing stanza is only compared: nothing, not even a keyring, is written.
            Some(keys) if self.storage.head(&key)?.is_none() => {
                identity.cipher = Some(stanza::CIPHER.to_owned());
                identity.repository = Some(keys.enroll_stanza(&identity.stanza)?);
                self.storage.put_if_absent(&key, &[&identity.to_json()])?
            }
            Some(_) => PutOutcome::AlreadyExists,
            None => {
                self.refuse_plain_where_encrypted()?;
                self.storage.put_if_absent(&key, &[&identity.to_json()])?
            }
        };
        match outcome {
            PutOutcome::Created => Ok(StanzaCreated::Created),
            PutOutcome::AlreadyExists => {
                let existing = self.open_stanza(&identity.stanza)?.identity;
                if existing.same_cluster(&identity) {
                    Ok(StanzaCreated::AlreadyExisted)
                } else {
                    bail!(
                        "stanza '{}' already exists in {} for another cluster (system identifier {}, PostgreSQL {}, {} MiB WAL segments); this data directory has system identifier {}, PostgreSQL {}, {} MiB WAL segments: use another stanza name",
                        identity.stanza,
                        self.storage.location(),
                        existing.system_id,
                        existing.pg_version,
                        existing.segment_size >> 20,
                        identity.system_id,
                        identity.pg_version,
                        identity.segment_size >> 20
                    )
                }
            }
        }
    }

    /// Opens an existing stanza.
    pub fn open_stanza(&self, name: &str) -> anyhow::Result<Stanza<'_>> {
        layout::check_stanza_name(name)?;
        let key = layout::stanza_identity(name);
        let Some(bytes) = self.read_identity(&key, "stanza")? else {
            bail!(
                "stanza '{name}' does not exist in repository {}: run 'tidemark stanza-create' for it first",
                self.storage.location()
            );
        };
        let identity = StanzaIdentity::from_json(&bytes).with_context(|| {
            format!("read stanza identity {key} in {}", self.storage.location())
        })?;
        if identity.stanza != name {
            bail!(
                "stanza identity {key} names stanza '{}', not '{name}': the repository was tampered with",
                identity.stanza
            );
        }
        self.check_cipher_of(
            "stanza",
            name,
            identity.cipher.is_some(),
            "create it in a new repository",
        )?;
        let expected = identity.expected_cluster()?;
        let chunk_hash = identity.chunk_hash()?;
        Ok(Stanza {
            repo: self,
            identity,
            expected,
            chunk_hash,
        })
    }
}

impl Repository {
    /// The identity object `key` of a stanza or a source (`kind`), read through a bounded
    /// range; `None` when there is none.
    fn read_identity(&self, key: &ObjectKey, kind: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match read_bounded(
            self.storage.as_ref(),
            key,
            limits::STANZA_IDENTITY,
            Reserve::AsRead,
        )? {
            BoundedRead::Object(bytes) => Ok(Some(bytes)),
            BoundedRead::Missing => Ok(None),
            BoundedRead::TooLarge { limit } => bail!(
                "read {kind} identity {key} in {}: it is larger than {limit} bytes, far more than any {kind} identity; the repository is damaged",
                self.storage.location()
            ),
        }
    }

    /// Refuses a stanza or source (`kind` `name`, whose identity says whether it is
    /// `encrypted`) whose encryption is not the configuration's: the configuration decides, so
    /// neither a plain one can be written sealed objects nor the reverse. `to_start_over` is
    /// how to get an encrypted one instead of a plain one.
    fn check_cipher_of(
        &self,
        kind: &str,
        name: &str,
        encrypted: bool,
        to_start_over: &str,
    ) -> anyhow::Result<()> {
        let location = self.storage.location();
        match (encrypted, self.codec.is_encrypted()) {
            (false, true) => bail!(
                "{kind} '{name}' in {location} is not encrypted; encryption cannot be turned on for an existing {kind}: {to_start_over}, or set [repo] cipher = \"none\""
            ),
            (true, false) => bail!(
                "{kind} '{name}' in {location} is encrypted: set [repo] cipher = \"aes-256-gcm\" and passphrase_file, passphrase_command or key_file"
            ),
            _ => Ok(()),
        }
    }

    /// Refuses a plain configuration's first stanza or source in a repository that has a
    /// keyring: everything else there is sealed.
    fn refuse_plain_where_encrypted(&self) -> anyhow::Result<()> {
        if self.codec.keys().is_none() && keys::keyring_exists(self.storage.as_ref())? {
            bail!(
                "repository {} (its keyring is under {}/) is encrypted: set [repo] cipher = \"aes-256-gcm\" and passphrase_file, passphrase_command or key_file",
                self.storage.location(),
                keys::KEYS_DIR
            );
        }
        Ok(())
    }
}

impl Stanza<'_> {
    /// In an encrypted repository, opens the keys and checks they are the ones the stanza was
    /// created under; returns the data key new objects are sealed with. `None` in a plain one.
    pub fn check_keys(&self) -> anyhow::Result<Option<u32>> {
        let Some(keys) = self.repo.codec.keys() else {
            return Ok(None);
        };
        let sealing = keys.sealing_key()?;
        let opened = keys.repository_id()?;
        let recorded = self.identity.repository.as_deref().unwrap_or_default();
        if opened != recorded {
            bail!(
                "stanza '{}' was created under keyring {recorded}, but the keyring in {} is {opened}: the keyring under {}/ was replaced; put back the one the stanza was created under",
                self.name(),
                self.repo.storage.location(),
                keys::KEYS_DIR
            );
        }
        Ok(Some(sealing.id()))
    }

    pub fn identity(&self) -> &StanzaIdentity {
        &self.identity
    }

    /// What names this stanza's chunks.
    pub fn chunk_hash(&self) -> ChunkHash {
        self.chunk_hash
    }

    pub fn name(&self) -> &str {
        &self.identity.stanza
    }

    pub fn expected_cluster(&self) -> ExpectedCluster {
        self.expected
    }

    pub fn repository(&self) -> &Repository {
        self.repo
    }

    pub fn wal_key(&self, name: WalFileName) -> ObjectKey {
        layout::wal_file(&self.identity.stanza, name)
    }

    /// Plain object `object`, framed to be stored under `key` (sealed, in an encrypted
    /// repository).
    pub fn seal(&self, key: &ObjectKey, object: EncodedObject) -> anyhow::Result<StoredObject> {
        self.repo.codec.seal(key, object)
    }

    /// Opens `stored`, read from `key`: its plain frame, whose checks are the caller's.
    pub fn open(&self, key: &ObjectKey, stored: Vec<u8>) -> anyhow::Result<OpenedObject> {
        self.repo.open_object(key, stored)
    }

    /// Stores an archived WAL file unless one is already there.
    pub fn put_wal(&self, name: WalFileName, object: &StoredObject) -> PutResult {
        self.repo
            .storage
            .put_if_absent(&self.wal_key(name), &object.parts())
    }

    /// The largest file that can be archived under `name`: the segment size for a segment or
    /// `.partial`, [`limits::HISTORY_FILE`] for a history or backup history file.
    pub fn wal_original_limit(&self, name: WalFileName) -> u64 {
        match name {
            WalFileName::Segment(_) | WalFileName::Partial(_) => {
                u64::from(self.expected.segment_size.bytes())
            }
            WalFileName::History(_) | WalFileName::BackupHistory { .. } => limits::HISTORY_FILE,
        }
    }

    /// The stored object of an archived WAL file, or `None` if it is not archived. An object
    /// larger than such a file can be stored as, or whose header promises a larger file, is
    /// refused before more of it is read or any of it decompressed.
    pub fn get_wal(&self, name: WalFileName) -> anyhow::Result<Option<Vec<u8>>> {
        // A segment's object is near its limit; a history file's, far below it.
        let reserve = match name.segment() {
            Some(_) => Reserve::Limit,
            None => Reserve::AsRead,
        };
        self.repo
            .read_within(&self.wal_key(name), self.wal_original_limit(name), reserve)
    }

    /// Every archived WAL file with its object, in name order. Objects whose names are not WAL
    /// file names are reported as errors: nothing else belongs there.
    pub fn list_wal(&self) -> anyhow::Result<Vec<(WalFileName, ListedObject)>> {
        let root = layout::wal_root(&self.identity.stanza);
        let mut files = Vec::new();
        for object in self.repo.storage.list(&root, &Cancel::never())? {
            let name = WalFileName::parse(object.key.file_name()).with_context(|| {
                format!(
                    "unexpected object {} in {}",
                    object.key,
                    self.repo.storage.location()
                )
            })?;
            // The key is `<stanza>/wal/<directory>/<name>`; only the directory can be wrong.
            let expected_directory = match name.segment() {
                Some(segment) => layout::wal_directory_of(segment),
                None => "history".to_owned(),
            };
            let mut components = object.key.as_str().rsplit('/');
            let directory = components.nth(1).unwrap_or_default();
            if directory != expected_directory || components.count() != 2 {
                bail!(
                    "object {} is misplaced in {}: it belongs at {}",
                    object.key,
                    self.repo.storage.location(),
                    self.wal_key(name)
                );
            }
            files.push((name, object));
        }
        Ok(files)
    }

    /// Encodes `bytes` with the repository's settings and stores them under `key`, unless an
    /// object is there already.
    pub fn put_new_object(&self, key: &ObjectKey, bytes: &[u8]) -> anyhow::Result<PutOutcome> {
        self.repo.put_new_object(key, bytes)
    }

    /// Stores `bytes` under `key` unless an object is there, and says whether one that is
    /// there holds the same bytes (see [`Repository::put_once`]).
    pub fn put_once(&self, key: &ObjectKey, bytes: &[u8]) -> anyhow::Result<PutOnce> {
        self.repo.put_once(key, bytes)
    }

    /// The stored object under `key` of a file of at most `max_original` bytes, as stored (see
    /// [`Repository::read_at_most`]).
    pub fn read_at_most(
        &self,
        key: &ObjectKey,
        max_original: u64,
    ) -> Result<BoundedRead, StorageError> {
        self.repo.read_at_most(key, max_original)
    }

    /// Reads the object under `key`, of a file of at most `max_original` bytes (a limit from
    /// [`limits`]), and checks it; `None` if there is none.
    pub fn get_checked_object(
        &self,
        key: &ObjectKey,
        max_original: u64,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        self.repo.get_checked_object(key, max_original)
    }
}

impl Repository {
    /// Encodes `bytes` with the repository's settings and stores them under `key`, unless an
    /// object is there already.
    pub fn put_new_object(&self, key: &ObjectKey, bytes: &[u8]) -> anyhow::Result<PutOutcome> {
        let stored = self.codec.encode(key, bytes)?;
        Ok(self.storage.put_if_absent(key, &stored.parts())?)
    }

    /// Stores `bytes` under `key` unless an object is there, and says whether one that is
    /// there holds the same bytes: what a put that may be a retry of itself needs (an S3 PUT
    /// whose answer was lost is retried by the client and then finds its own object).
    pub fn put_once(&self, key: &ObjectKey, bytes: &[u8]) -> anyhow::Result<PutOnce> {
        match self.put_new_object(key, bytes)? {
            PutOutcome::Created => Ok(PutOnce::Stored),
            PutOutcome::AlreadyExists => self.compare_stored(key, bytes),
        }
    }

    /// Whether the object under `key` holds `bytes`, reading no more of it than an object of
    /// `bytes` can be stored as: a larger one, or one whose header promises another length,
    /// holds other content. A damaged object of the right length is an error.
    fn compare_stored(&self, key: &ObjectKey, bytes: &[u8]) -> anyhow::Result<PutOnce> {
        let location = self.storage.location();
        let vanished = || format!("{key} vanished from {location} while being compared");
        let stored = match read_bounded(
            self.storage.as_ref(),
            key,
            bytes.len() as u64,
            Reserve::Limit,
        )
        .with_context(|| format!("read {key} from {location}"))?
        {
            BoundedRead::Object(stored) => self.open_object(key, stored)?.frame,
            BoundedRead::Missing => bail!(vanished()),
            BoundedRead::TooLarge { .. } => return Ok(PutOnce::Different),
        };
        let header = ObjectHeader::decode(&stored)
            .with_context(|| format!("{key} in {location} is damaged"))?;
        if header.original_len != bytes.len() as u64 {
            return Ok(PutOnce::Different);
        }
        let mut content = Vec::with_capacity(bytes.len());
        object::decode_into(&stored, &mut content)
            .with_context(|| format!("{key} in {location} is damaged"))?;
        Ok(if content == bytes {
            PutOnce::Identical
        } else {
            PutOnce::Different
        })
    }

    /// The stored object under `key` of a file of at most `max_original` bytes, as stored (to
    /// be [`Repository::open_object`]ed). Read through a range one byte longer than the largest object such
    /// a file can be stored as ([`object::max_stored_len`]), so an object larger than that is
    /// refused without reading (or, from S3, downloading) the rest of it.
    pub fn read_at_most(
        &self,
        key: &ObjectKey,
        max_original: u64,
    ) -> Result<BoundedRead, StorageError> {
        read_bounded(self.storage(), key, max_original, Reserve::Limit)
    }

    /// Opens `stored`, read from `key`: its plain frame, whose checks are the caller's.
    pub fn open_object(&self, key: &ObjectKey, stored: Vec<u8>) -> anyhow::Result<OpenedObject> {
        self.codec
            .open(key, stored)
            .with_context(|| format!("{key} in {}", self.storage.location()))
    }

    /// Reads the object under `key`, of a file of at most `max_original` bytes (a limit from
    /// [`limits`]), and checks it; `None` if there is none. A larger object, or one whose
    /// header promises more, is refused as damaged before it is read further or decompressed.
    pub fn get_checked_object(
        &self,
        key: &ObjectKey,
        max_original: u64,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(stored) = self.read_within(key, max_original, Reserve::AsRead)? else {
            return Ok(None);
        };
        let mut content = Vec::new();
        object::decode_into(&stored, &mut content)
            .with_context(|| format!("{key} in {} is damaged", self.storage.location()))?;
        Ok(Some(content))
    }

    /// The plain frame of the object under `key` of a file of at most `max_original` bytes
    /// (opened, in an encrypted repository), its header checked to promise no more; `None` if
    /// there is none.
    fn read_within(
        &self,
        key: &ObjectKey,
        max_original: u64,
        reserve: Reserve,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let location = self.storage.location();
        let stored = match read_bounded(self.storage.as_ref(), key, max_original, reserve)
            .with_context(|| format!("read {key} from {location}"))?
        {
            BoundedRead::Object(stored) => self.open_object(key, stored)?.frame,
            BoundedRead::Missing => return Ok(None),
            BoundedRead::TooLarge { limit } => bail!(
                "{key} in {location} is damaged: it is larger than the {limit} bytes such an object can be stored in"
            ),
        };
        let header = ObjectHeader::decode(&stored)
            .with_context(|| format!("{key} in {location} is damaged"))?;
        if header.original_len > max_original {
            bail!(
                "{key} in {location} is damaged: its header promises {} bytes, more than the {max_original} such a file can hold",
                header.original_len
            );
        }
        Ok(Some(stored))
    }
}

/// The stored object under `key` of a file of at most `max_original` bytes. Read through a range
/// one byte longer than the largest object such a file can be stored as
/// ([`object::max_stored_len`]), so an object larger than that is refused without reading (or,
/// from S3, downloading) the rest of it.
fn read_bounded(
    storage: &dyn Storage,
    key: &ObjectKey,
    max_original: u64,
    reserve: Reserve,
) -> Result<BoundedRead, StorageError> {
    let mut attempt = 1;
    loop {
        match read_bounded_once(storage, key, max_original, reserve) {
            Err(e) if e.is_retryable() && attempt < READ_ATTEMPTS => {
                attempt += 1;
                tracing::warn!(
                    "read {key} from {}: {e}; trying again, attempt {attempt} of {READ_ATTEMPTS}",
                    storage.location()
                );
                std::thread::sleep(READ_RETRY_PAUSE * attempt);
            }
            outcome => return outcome,
        }
    }
}

/// Reads of one object in all: a body that broke off mid-stream (an S3 connection reset under
/// load) is read again from the start, a bounded number of times. The store's own requests
/// are retried by the store.
const READ_ATTEMPTS: u32 = 3;
/// The pause before a read is tried again, times the attempt's number.
const READ_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

fn read_bounded_once(
    storage: &dyn Storage,
    key: &ObjectKey,
    max_original: u64,
    reserve: Reserve,
) -> Result<BoundedRead, StorageError> {
    let limit = object::max_stored_len(max_original);
    // The range keeps the store (an S3 server) from sending more; `take`, a server that ignored
    // it from being read further.
    let reader = match storage.get_reader(key, ByteRange::new(0, limit + 1), &Cancel::never()) {
        Ok(reader) => reader,
        Err(e) if e.is_not_found() => return Ok(BoundedRead::Missing),
        Err(e) => return Err(e),
    };
    let mut stored = match reserve {
        Reserve::Limit => Vec::with_capacity(limit as usize + 1),
        Reserve::AsRead => Vec::new(),
    };
    reader
        .take(limit + 1)
        .read_to_end(&mut stored)
        .map_err(|e| StorageError::from_io(format!("read {key} from {}", storage.location()), e))?;
    Ok(if stored.len() as u64 > limit {
        BoundedRead::TooLarge { limit }
    } else {
        BoundedRead::Object(stored)
    })
}

/// How [`read_bounded`] makes room for an object.
#[derive(Clone, Copy)]
enum Reserve {
    /// All the limit at once: one allocation for a WAL segment or a chunk, whose objects are
    /// near their limit (pages an object does not fill are never touched).
    Limit,
    /// Growing with what is read: catalog objects are far smaller than their limit (a backup
    /// record may be 1 GiB but is usually KiBs), and reserving the limit would be an
    /// allocation a damaged repository need not even fill.
    AsRead,
}

/// A repository over `storage` with stanza `main` (system identifier 7, PostgreSQL 15, 16 MiB
/// segments) created, for unit tests and benchmarks; it panics where they would fail.
/// The identity of a test stanza `name` of a PostgreSQL 15 cluster, its chunks named by `hash`.
#[doc(hidden)]
pub fn test_stanza_identity(name: &str, hash: ChunkHash) -> StanzaIdentity {
    StanzaIdentity {
        format: 1,
        stanza: name.into(),
        system_id: 7,
        pg_version: 15,
        segment_size: 16 << 20,
        created: "2026-11-21T00:00:00Z".into(),
        cipher: None,
        repository: None,
        chunk_hash: hash.identity_field(),
    }
}

#[doc(hidden)]
pub fn test_repository(storage: Box<dyn Storage>) -> Repository {
    let repo = Repository::new(
        storage,
        WriteSettings {
            compression: Compression::Zstd,
            zstd_level: 3,
        },
    );
    repo.create_stanza(&test_stanza_identity("main", ChunkHash::NEW))
        .unwrap();
    repo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use crate::storage::faulty::{Cut, FaultPlan, FaultyStorage};

    #[test]
    fn a_read_that_breaks_off_is_tried_again_a_bounded_number_of_times() {
        let store = FaultyStorage::new(MemoryStorage::new(), FaultPlan::none());
        let key = ObjectKey::new("main/walindex/x").unwrap();
        let object = object::encode(Compression::None, 0, &[7u8; 5000]).unwrap();
        store
            .put_if_absent(&key, &[&object.header_bytes(), &object.body])
            .unwrap();
        store.set_plan(FaultPlan {
            failure_share: 1.0,
            cut: Some(Cut::Fail),
            seed: 3,
            ..FaultPlan::none()
        });
        let error = read_bounded(&store, &key, 5000, Reserve::AsRead).unwrap_err();
        assert!(error.is_retryable(), "{error}");
        assert_eq!(store.counts().reads_cut, u64::from(READ_ATTEMPTS));
        store.set_plan(FaultPlan::none());
        assert!(matches!(
            read_bounded(&store, &key, 5000, Reserve::AsRead).unwrap(),
            BoundedRead::Object(_)
        ));
    }
}
