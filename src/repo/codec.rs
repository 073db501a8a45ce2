//! How one repository frames its objects: the compression of new objects and, in an encrypted
//! repository, sealing them with its current data key (`sealed`) and opening them with the key
//! each names. The configuration decides whether the repository is encrypted, never the objects:
//! a plain object where sealed ones belong (or the reverse) is refused, so stripping encryption
//! from an object cannot smuggle content in.

use std::io::Write;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::compress::Compression;
use super::crypto::{DataKey, SALT_LEN};
use super::object::{self, EncodedObject, HEADER_LEN, ObjectError};
use super::sealed;
use crate::storage::ObjectKey;

/// How new objects are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteSettings {
    pub compression: Compression,
    pub zstd_level: i32,
}

/// Where an encrypted repository's keys come from (its keyring, `keys`): loaded when first
/// asked for, so a command that seals and opens nothing derives no key.
pub trait ObjectKeys: Send + Sync {
    /// The data key new objects are sealed with.
    fn sealing_key(&self) -> anyhow::Result<DataKey>;
    /// Data key `id`, to open an object sealed with it.
    fn opening_key(&self, id: u32) -> anyhow::Result<DataKey>;
    /// The key chunk names are a keyed hash under.
    fn chunk_name_key(&self) -> anyhow::Result<Zeroizing<[u8; 32]>>;
    /// Records that stanza `stanza` is kept in this repository, creating the keyring if there
    /// is none yet (the first `stanza-create`); returns the keyring's repository id.
    fn enroll_stanza(&self, stanza: &str) -> anyhow::Result<String>;
    /// The id of the keyring the keys come from.
    fn repository_id(&self) -> anyhow::Result<String>;
    /// The keyring's id, creating the keyring if there is none yet (a source's first snapshot
    /// in a repository no stanza was created in).
    fn open_or_create_keyring(&self) -> anyhow::Result<String>;
}

/// A repository's way of framing objects.
#[derive(Clone)]
pub struct Codec {
    pub write: WriteSettings,
    keys: Option<Arc<dyn ObjectKeys>>,
}

/// An object ready to be stored.
pub struct StoredObject {
    /// A plain object's header, kept apart so the compressed bytes are not copied behind it.
    plain_header: Option<[u8; HEADER_LEN]>,
    bytes: Vec<u8>,
}

impl StoredObject {
    /// The object's bytes, in the pieces a put takes.
    pub fn parts(&self) -> Vec<&[u8]> {
        match &self.plain_header {
            Some(header) => vec![header, &self.bytes],
            None => vec![&self.bytes],
        }
    }

    /// Its stored size.
    pub fn len(&self) -> u64 {
        (self.plain_header.map_or(0, |h| h.len()) + self.bytes.len()) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stored object opened: its plain frame (`object`), whose checks the reader goes on to.
#[derive(Debug)]
pub struct OpenedObject {
    pub frame: Vec<u8>,
    /// The data key that sealed it, in an encrypted repository.
    pub key_id: Option<u32>,
}

/// Why a stored object was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenFailure {
    // Not `#[from]`: that would make the damage the error's source too, and a chain printed
    // whole (`{:#}`) would say it twice.
    #[error("it is damaged: {0}")]
    Damaged(ObjectError),
    #[error(
        "it is encrypted, and this configuration sets no cipher: set [repo] cipher = \"aes-256-gcm\" and passphrase_file, passphrase_command or key_file"
    )]
    Encrypted,
    #[error(
        "it is not encrypted, though this repository is: it was put there by something other than Tidemark, or by a Tidemark configured without a cipher; nothing of it was used"
    )]
    NotEncrypted,
    #[error("{0:#}")]
    Key(anyhow::Error),
}

impl From<ObjectError> for OpenFailure {
    fn from(damage: ObjectError) -> OpenFailure {
        OpenFailure::Damaged(damage)
    }
}

impl Codec {
    /// Objects stored as they are compressed.
    pub fn plain(write: WriteSettings) -> Codec {
        Codec { write, keys: None }
    }

    /// Objects sealed with `keys`.
    pub fn encrypted(write: WriteSettings, keys: Arc<dyn ObjectKeys>) -> Codec {
        Codec {
            write,
            keys: Some(keys),
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// The keys of an encrypted repository.
    pub fn keys(&self) -> Option<&dyn ObjectKeys> {
        self.keys.as_deref()
    }

    /// `bytes` compressed (and sealed) to be stored under `key`.
    pub fn encode(&self, key: &ObjectKey, bytes: &[u8]) -> anyhow::Result<StoredObject> {
        let object = object::encode(self.write.compression, self.write.zstd_level, bytes)
            .map_err(|e| anyhow::anyhow!("compress {key}: {e}"))?;
        self.seal(key, object)
    }

    /// Plain object `object`, sealed to be stored under `key` in an encrypted repository.
    pub fn seal(&self, key: &ObjectKey, object: EncodedObject) -> anyhow::Result<StoredObject> {
        let Some(keys) = &self.keys else {
            return Ok(StoredObject {
                plain_header: Some(object.header_bytes()),
                bytes: object.body,
            });
        };
        let data_key = keys.sealing_key()?;
        // Not secret, but it must never repeat: the kernel's generator.
        let salt: [u8; SALT_LEN] = *super::keys::random();
        Ok(StoredObject {
            plain_header: None,
            bytes: sealed::seal(key, &data_key, salt, &object),
        })
    }

    /// Opens `stored`, read from `key`. The checks of the plain frame are the caller's.
    pub fn open(&self, key: &ObjectKey, stored: Vec<u8>) -> Result<OpenedObject, OpenFailure> {
        let is_sealed = sealed::is_sealed(&stored);
        let keys = match (&self.keys, is_sealed) {
            (None, false) => {
                return Ok(OpenedObject {
                    frame: stored,
                    key_id: None,
                });
            }
            (None, true) => return Err(OpenFailure::Encrypted),
            (Some(_), false) => {
                // A damaged header is damage, not a plain object.
                object::ObjectHeader::decode(&stored)?;
                return Err(OpenFailure::NotEncrypted);
            }
            (Some(keys), true) => keys,
        };
        let header = sealed::check_stored(&stored)?;
        let data_key = keys.opening_key(header.key_id).map_err(OpenFailure::Key)?;
        let mut frame = stored;
        sealed::open(key, &header, &data_key, &mut frame)?;
        Ok(OpenedObject {
            frame,
            key_id: Some(header.key_id),
        })
    }

    /// A hasher whose hex digest names a chunk of backup content: in a plain repository the
    /// owner's `hash` (see [`ChunkHash`]); in an encrypted one BLAKE3 keyed with the
    /// repository's name key, whatever `hash` says, so equal content still shares one object
    /// but a name tells nothing of the content.
    pub fn chunk_namer(&self, hash: ChunkHash) -> anyhow::Result<ChunkNamer> {
        Ok(match (&self.keys, hash) {
            (None, ChunkHash::Sha256) => ChunkNamer::Sha256(<sha2::Sha256 as sha2::Digest>::new()),
            (None, ChunkHash::Blake3) => ChunkNamer::Blake3(Box::new(blake3::Hasher::new())),
            (Some(keys), _) => ChunkNamer::Blake3(Box::new(blake3::Hasher::new_keyed(
                &*keys.chunk_name_key()?,
            ))),
        })
    }

    /// The name of a chunk of `bytes` in a pool that names chunks with `hash`.
    pub fn chunk_name(&self, bytes: &[u8], hash: ChunkHash) -> anyhow::Result<String> {
        let mut namer = self.chunk_namer(hash)?;
        namer.update(bytes);
        Ok(namer.finish())
    }
}

/// Which hash names the chunks of a stanza's or a source's pool in a plain repository:
/// SHA-256 in those made before Tidemark named chunks with BLAKE3 (their identity names no
/// hash; they keep SHA-256, so their new chunks still share objects with their old ones), BLAKE3
/// in those made since: on the development VM it hashed at 2.5–3.3 GB/s against SHA-256's
/// 1.1–1.3 GB/s (with SHA-NI), and every byte of a backup or snapshot is hashed when stored and
/// again when read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkHash {
    Sha256,
    Blake3,
}

impl ChunkHash {
    /// What a stanza or source made now names its chunks with.
    pub const NEW: ChunkHash = ChunkHash::Blake3;

    /// From an identity's `chunk_hash` field: absent for SHA-256, `"blake3"`.
    pub fn from_identity(field: Option<&str>) -> Result<ChunkHash, String> {
        match field {
            None => Ok(ChunkHash::Sha256),
            Some("blake3") => Ok(ChunkHash::Blake3),
            Some(other) => Err(format!(
                "chunk_hash \"{other}\", which this Tidemark does not know; upgrade Tidemark"
            )),
        }
    }

    /// The identity's `chunk_hash` field for this hash: absent for SHA-256, so identities of
    /// the older kind are written as they always were.
    pub fn identity_field(self) -> Option<String> {
        match self {
            ChunkHash::Sha256 => None,
            ChunkHash::Blake3 => Some("blake3".to_owned()),
        }
    }
}

/// Hashes a chunk into its name (see [`Codec::chunk_namer`]).
pub enum ChunkNamer {
    Sha256(sha2::Sha256),
    /// Plain, or keyed in an encrypted repository.
    Blake3(Box<blake3::Hasher>),
}

impl ChunkNamer {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            ChunkNamer::Sha256(hasher) => sha2::Digest::update(hasher, bytes),
            ChunkNamer::Blake3(hasher) => {
                hasher.update(bytes);
            }
        }
    }

    /// The name: 64 lowercase hex digits.
    pub fn finish(self) -> String {
        let digest: [u8; 32] = match self {
            ChunkNamer::Sha256(hasher) => sha2::Digest::finalize(hasher).into(),
            ChunkNamer::Blake3(hasher) => hasher.finalize().into(),
        };
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Write for ChunkNamer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fixed keys, for tests and benchmarks of encrypted repositories without a keyring.
#[doc(hidden)]
pub struct FixedKeys {
    pub keys: Vec<DataKey>,
    pub current: u32,
    pub name_key: [u8; 32],
}

impl ObjectKeys for FixedKeys {
    fn sealing_key(&self) -> anyhow::Result<DataKey> {
        self.opening_key(self.current)
    }

    fn opening_key(&self, id: u32) -> anyhow::Result<DataKey> {
        self.keys
            .iter()
            .find(|key| key.id() == id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no data key {id}"))
    }

    fn chunk_name_key(&self) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        Ok(Zeroizing::new(self.name_key))
    }

    fn enroll_stanza(&self, _stanza: &str) -> anyhow::Result<String> {
        self.repository_id()
    }

    fn repository_id(&self) -> anyhow::Result<String> {
        Ok("00".repeat(16))
    }

    fn open_or_create_keyring(&self) -> anyhow::Result<String> {
        self.repository_id()
    }
}

#[cfg(test)]
mod tests;
