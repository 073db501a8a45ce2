//! The keyring object as stored: plain JSON (it must be readable before any key is), every
//! secret in it wrapped, the whole bound by a MAC under a key only the key-encryption key gives.
//! Parsing checks its shape; the MAC is checked once the key-encryption key is unwrapped.

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

use super::kdf::SlotKdf;
use super::wrap::{WRAPPED_HEX_LEN, from_hex, to_hex};

/// The keyring format this code writes and reads.
pub const KEYRING_FORMAT: u32 = 1;

/// The largest keyring read (years of daily rotations fit many times over); a larger object is
/// not one Tidemark wrote.
pub const MAX_KEYRING_LEN: u64 = 4 << 20;

/// BLAKE3's derivation context for the keyring's MAC key: fixed forever.
const MAC_KEY_CONTEXT: &str = "tidemark 2026-12-06 keyring mac v1";

/// One generation of the keyring. Field order is the stored order, and the MAC is computed over
/// this serialization with `mac` empty, so it must not change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringDocument {
    pub format: u32,
    /// 16 random bytes, hex: the repository's identity, which stanzas name.
    pub repository: String,
    pub generation: u64,
    /// When this generation was written (RFC 3339).
    pub written: String,
    /// What wrote it: "create", "rotate", "change-passphrase", "retire".
    pub operation: String,
    /// Each slot wraps the key-encryption key under a key from one secret.
    pub slots: Vec<SlotEntry>,
    /// The chunk-name key, wrapped by the key-encryption key.
    pub name_key: String,
    /// The id of the data key new objects are sealed with.
    pub current: u32,
    pub keys: Vec<KeyEntry>,
    pub retired: Vec<RetiredEntry>,
    /// BLAKE3 keyed hash (hex) of this document with `mac` empty.
    pub mac: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotEntry {
    pub id: u32,
    pub kdf: SlotKdf,
    /// The key-encryption key, wrapped by this slot's key.
    pub wrapped_kek: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub id: u32,
    pub created: String,
    /// When another key became current; `null` for the current key.
    pub superseded: Option<String>,
    /// The data key, wrapped by the key-encryption key.
    pub wrapped: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredEntry {
    pub id: u32,
    pub retired: String,
}

impl KeyringDocument {
    /// Parses and checks the shape of the keyring stored as `generation`.
    pub fn parse(bytes: &[u8], generation: u64) -> anyhow::Result<KeyringDocument> {
        let document: KeyringDocument = serde_json::from_slice(bytes)
            .with_context(|| format!("keyring generation {generation} is not a keyring"))?;
        document
            .check_shape(generation)
            .with_context(|| format!("keyring generation {generation} is malformed"))?;
        Ok(document)
    }

    fn check_shape(&self, generation: u64) -> anyhow::Result<()> {
        ensure!(
            self.format == KEYRING_FORMAT,
            "format {} is not one this Tidemark reads ({KEYRING_FORMAT}): upgrade Tidemark",
            self.format
        );
        ensure!(
            self.generation == generation,
            "it says it is generation {}",
            self.generation
        );
        ensure!(
            self.repository.len() == 32 && from_hex(&self.repository).is_some(),
            "its repository id is not 32 hex digits"
        );
        ensure!(!self.slots.is_empty(), "it has no key slot");
        let wrapped = |text: &str| text.len() == WRAPPED_HEX_LEN && from_hex(text).is_some();
        ensure!(wrapped(&self.name_key), "its name key is not a wrapped key");
        ensure!(
            self.slots.iter().all(|s| wrapped(&s.wrapped_kek))
                && self.keys.iter().all(|k| wrapped(&k.wrapped)),
            "a wrapped key is not one"
        );
        let mut ids: Vec<u32> = self.keys.iter().map(|k| k.id).collect();
        ids.extend(self.retired.iter().map(|r| r.id));
        ids.sort_unstable();
        ids.dedup();
        ensure!(
            ids.len() == self.keys.len() + self.retired.len() && !ids.contains(&0),
            "its key ids are not distinct ids from 1"
        );
        ensure!(
            self.keys.iter().any(|k| k.id == self.current),
            "its current key {} is not among its keys",
            self.current
        );
        let mut slot_ids: Vec<u32> = self.slots.iter().map(|s| s.id).collect();
        slot_ids.sort_unstable();
        slot_ids.dedup();
        ensure!(slot_ids.len() == self.slots.len(), "its slot ids repeat");
        Ok(())
    }

    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a keyring serializes");
        bytes.push(b'\n');
        bytes
    }

    /// The MAC of this document under the key-encryption key `kek`.
    fn compute_mac(&self, kek: &[u8; 32]) -> String {
        let unsealed = KeyringDocument {
            mac: String::new(),
            ..self.clone()
        };
        let key = zeroize::Zeroizing::new(blake3::derive_key(MAC_KEY_CONTEXT, kek));
        let input = serde_json::to_vec(&unsealed).expect("a keyring serializes");
        to_hex(blake3::keyed_hash(&key, &input).as_bytes())
    }

    /// Sets `mac` for `kek`.
    pub fn seal(&mut self, kek: &[u8; 32]) {
        self.mac = self.compute_mac(kek);
    }

    /// Checks `mac` under `kek`: whether the document is as its writer made it.
    pub fn check_mac(&self, kek: &[u8; 32]) -> anyhow::Result<()> {
        let expected = blake3::Hash::from_hex(self.compute_mac(kek)).expect("hex of a hash");
        // Compared as hashes: in constant time. Only the canonical (lower-case) spelling is the
        // writer's: the same MAC in capitals is an altered document too.
        let stored = blake3::Hash::from_hex(&self.mac)
            .ok()
            .filter(|hash| hash.to_hex().as_str() == self.mac);
        if stored != Some(expected) {
            bail!(
                "repository {}'s keyring (generation {}) fails its MAC: it was altered after it was written; restore _keys/ from a copy",
                self.repository,
                self.generation
            );
        }
        Ok(())
    }
}
