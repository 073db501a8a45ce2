//! A slot's key-derivation: Argon2id (RFC 9106) from a passphrase, with its cost and salt stored
//! in the slot, or none for a key file, whose 32 bytes are the slot key.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::source::Secret;
use super::wrap::{from_hex, random, to_hex};

/// Argon2's version 1.3, the only one RFC 9106 specifies.
const ARGON2_VERSION: u32 = 0x13;

/// The most memory a slot may ask Argon2id for (1 GiB): a keyring someone altered to ask for
/// more is refused before any is allocated.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

/// How costly Argon2id is for new slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfCost {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes. One lane: the machines archiving
    /// have few cores, and each `archive_command` call pays this once.
    pub const DEFAULT: KdfCost = KdfCost {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
}

/// How a slot's key is made, as stored in the keyring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum SlotKdf {
    /// From a passphrase.
    #[serde(rename = "argon2id")]
    Argon2id {
        version: u32,
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        /// 32 random bytes, hex.
        salt: String,
    },
    /// The key file's bytes are the slot key.
    #[serde(rename = "key-file")]
    KeyFile,
}

impl SlotKdf {
    /// A new slot's derivation for `secret`: Argon2id at `cost` with a fresh salt for a
    /// passphrase, none for a key.
    pub fn for_secret(secret: &Secret, cost: KdfCost) -> SlotKdf {
        match secret {
            Secret::Passphrase(_) => SlotKdf::Argon2id {
                version: ARGON2_VERSION,
                memory_kib: cost.memory_kib,
                iterations: cost.iterations,
                parallelism: cost.parallelism,
                salt: to_hex(&*random::<32>()),
            },
            Secret::Key(_) => SlotKdf::KeyFile,
        }
    }

    /// Whether `secret` is the kind of secret this slot takes.
    pub fn takes(&self, secret: &Secret) -> bool {
        matches!(
            (self, secret),
            (SlotKdf::Argon2id { .. }, Secret::Passphrase(_)) | (SlotKdf::KeyFile, Secret::Key(_))
        )
    }

    /// The slot key `secret` gives. The caller checked [`takes`](SlotKdf::takes).
    pub fn slot_key(&self, secret: &Secret) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        match (self, secret) {
            (SlotKdf::KeyFile, Secret::Key(key)) => Ok(key.clone()),
            (
                SlotKdf::Argon2id {
                    version,
                    memory_kib,
                    iterations,
                    parallelism,
                    salt,
                },
                Secret::Passphrase(passphrase),
            ) => {
                if *version != ARGON2_VERSION
                    || !(8..=MAX_MEMORY_KIB).contains(memory_kib)
                    || !(1..=MAX_ITERATIONS).contains(iterations)
                    || !(1..=MAX_PARALLELISM).contains(parallelism)
                    || *memory_kib < 8 * parallelism
                {
                    bail!(
                        "a key slot asks for Argon2 version {version}, {memory_kib} KiB, {iterations} passes, {parallelism} lanes, beyond what Tidemark writes or accepts (up to 1 GiB, 64 passes, 16 lanes): the keyring was altered"
                    );
                }
                let salt = from_hex(salt)
                    .filter(|salt| salt.len() == 32)
                    .context("a key slot's salt is not 32 bytes of hex: the keyring was altered")?;
                let params = argon2::Params::new(*memory_kib, *iterations, *parallelism, Some(32))
                    .map_err(|e| anyhow::anyhow!("Argon2 parameters of a key slot: {e}"))?;
                let argon2 = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let mut key = Zeroizing::new([0u8; 32]);
                argon2
                    .hash_password_into(passphrase, &salt, &mut *key)
                    .map_err(|e| anyhow::anyhow!("derive the key of a passphrase: {e}"))?;
                Ok(key)
            }
            _ => bail!("a slot was asked for a key from the wrong kind of secret"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cost small enough for debug-built tests; the keyring stores whatever a slot used.
    pub const CHEAP: KdfCost = KdfCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn passphrase(text: &str) -> Secret {
        Secret::Passphrase(Zeroizing::new(text.as_bytes().to_vec()))
    }

    #[test]
    fn a_passphrase_gives_the_same_key_only_with_the_same_salt_and_cost() {
        let kdf = SlotKdf::for_secret(&passphrase("correct horse"), CHEAP);
        let key = kdf.slot_key(&passphrase("correct horse")).unwrap();
        assert_eq!(*kdf.slot_key(&passphrase("correct horse")).unwrap(), *key);
        assert_ne!(*kdf.slot_key(&passphrase("correct horsf")).unwrap(), *key);
        let other_salt = SlotKdf::for_secret(&passphrase("correct horse"), CHEAP);
        assert_ne!(other_salt, kdf);
        assert_ne!(
            *other_salt.slot_key(&passphrase("correct horse")).unwrap(),
            *key
        );
        let SlotKdf::Argon2id { salt, .. } = &kdf else {
            panic!("a passphrase slot")
        };
        let costlier = SlotKdf::Argon2id {
            version: 0x13,
            memory_kib: 128,
            iterations: 1,
            parallelism: 1,
            salt: salt.clone(),
        };
        assert_ne!(
            *costlier.slot_key(&passphrase("correct horse")).unwrap(),
            *key
        );
    }

    #[test]
    fn an_altered_cost_is_refused_before_anything_is_allocated() {
        let altered = SlotKdf::Argon2id {
            version: 0x13,
            memory_kib: u32::MAX,
            iterations: 3,
            parallelism: 1,
            salt: "00".repeat(32),
        };
        let error = format!("{:#}", altered.slot_key(&passphrase("x")).unwrap_err());
        assert!(error.ends_with("the keyring was altered"), "{error}");
        let bad_salt = SlotKdf::Argon2id {
            version: 0x13,
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            salt: "00".repeat(31),
        };
        let error = format!("{:#}", bad_salt.slot_key(&passphrase("x")).unwrap_err());
        assert_eq!(
            error,
            "a key slot's salt is not 32 bytes of hex: the keyring was altered"
        );
    }

    #[test]
    fn the_slot_is_stored_as_documented() {
        let kdf = SlotKdf::Argon2id {
            version: 0x13,
            memory_kib: 65536,
            iterations: 3,
            parallelism: 1,
            salt: "ab".repeat(32),
        };
        assert_eq!(
            serde_json::to_string(&kdf).unwrap(),
            format!(
                r#"{{"kind":"argon2id","version":19,"memory_kib":65536,"iterations":3,"parallelism":1,"salt":"{}"}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(
            serde_json::to_string(&SlotKdf::KeyFile).unwrap(),
            r#"{"kind":"key-file"}"#
        );
    }
}
