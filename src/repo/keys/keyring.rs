//! An opened keyring — its data keys and chunk-name key unwrapped — and the next generation each
//! key operation makes of it (rotate, a new slot, retire), sealed with the same key-encryption
//! key. No I/O here.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use zeroize::Zeroizing;

use super::document::{KEYRING_FORMAT, KeyEntry, KeyringDocument, RetiredEntry, SlotEntry};
use super::kdf::SlotKdf;
use super::wrap::{Role, random, to_hex, unwrap, wrap};
use crate::repo::crypto::DataKey;

/// An opened keyring: decrypted data keys and the chunk-name key. Never prints a secret.
pub struct Keyring {
    document: KeyringDocument,
    kek: Zeroizing<[u8; 32]>,
    keys: BTreeMap<u32, DataKey>,
    name_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("repository", &self.document.repository)
            .field("generation", &self.document.generation)
            .field("current", &self.document.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// RFC 3339 in whole seconds, as the keyring writes times.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Keyring {
    /// 32 hex digits, random at creation: the repository's identity.
    pub fn repository_id(&self) -> &str {
        &self.document.repository
    }

    pub fn generation(&self) -> u64 {
        self.document.generation
    }

    /// The key new objects are sealed with.
    pub fn current(&self) -> &DataKey {
        &self.keys[&self.document.current]
    }

    pub fn data_key(&self, id: u32) -> Option<&DataKey> {
        self.keys.get(&id)
    }

    /// Whether `id` was a data key of this repository, retired since.
    pub fn is_retired(&self, id: u32) -> bool {
        self.document.retired.iter().any(|r| r.id == id)
    }

    /// BLAKE3 keyed-mode key for chunk names: the repository's, never rotated.
    pub fn chunk_name_key(&self) -> &[u8; 32] {
        &self.name_key
    }

    /// The stored form: ids, times and wrapped keys only.
    pub fn document(&self) -> &KeyringDocument {
        &self.document
    }

    /// A keyring of these keys, for tests of what uses one: no storage, no secret.
    #[doc(hidden)]
    pub fn for_tests(
        repository_id: &str,
        name_key: [u8; 32],
        keys: Vec<DataKey>,
        current: u32,
    ) -> Keyring {
        let kek = random::<32>();
        let now = timestamp(Utc::now());
        let mut document = KeyringDocument {
            format: KEYRING_FORMAT,
            repository: repository_id.to_owned(),
            generation: 1,
            written: now.clone(),
            operation: "create".to_owned(),
            slots: Vec::new(),
            name_key: wrap(&kek, repository_id, Role::Name, 0, &name_key),
            current,
            keys: Vec::new(),
            retired: Vec::new(),
            mac: String::new(),
        };
        document.seal(&kek);
        Keyring {
            document,
            kek,
            keys: keys.into_iter().map(|key| (key.id(), key)).collect(),
            name_key: Zeroizing::new(name_key),
        }
    }

    /// A new repository's first keyring: a random id, key-encryption key, chunk-name key and
    /// data key 1, and one slot, `kdf` with its `slot_key`.
    pub fn create(kdf: SlotKdf, slot_key: &[u8; 32], now: DateTime<Utc>) -> Keyring {
        let repository = to_hex(&*random::<16>());
        let kek = random::<32>();
        let name_key = random::<32>();
        let data_key = random::<32>();
        let written = timestamp(now);
        let mut document = KeyringDocument {
            format: KEYRING_FORMAT,
            generation: 1,
            written: written.clone(),
            operation: "create".to_owned(),
            slots: vec![SlotEntry {
                id: 1,
                kdf,
                wrapped_kek: wrap(slot_key, &repository, Role::Kek, 1, &kek),
            }],
            name_key: wrap(&kek, &repository, Role::Name, 0, &name_key),
            current: 1,
            keys: vec![KeyEntry {
                id: 1,
                created: written,
                superseded: None,
                wrapped: wrap(&kek, &repository, Role::Data, 1, &data_key),
            }],
            retired: Vec::new(),
            mac: String::new(),
            repository,
        };
        document.seal(&kek);
        Keyring::with_kek(document, kek).expect("a keyring just made opens")
    }

    /// Opens `document` with the first slot whose key `slot_key` gives (it answers `None` for
    /// a slot that takes another kind of secret) and that unwraps the key-encryption key.
    /// `secret_named` says where the secret came from, for the error.
    pub fn open(
        document: KeyringDocument,
        mut slot_key: impl FnMut(&SlotKdf) -> anyhow::Result<Option<Zeroizing<[u8; 32]>>>,
        secret_named: &str,
    ) -> anyhow::Result<Keyring> {
        let mut tried = 0;
        for slot in &document.slots {
            let Some(key) = slot_key(&slot.kdf)? else {
                continue;
            };
            tried += 1;
            let repository = &document.repository;
            if let Some(kek) = unwrap(&key, repository, Role::Kek, slot.id, &slot.wrapped_kek) {
                return Keyring::with_kek(document, kek);
            }
        }
        let (repository, generation) = (&document.repository, document.generation);
        if tried == 0 {
            let wanted = match document.slots[0].kdf {
                SlotKdf::KeyFile => "a key_file",
                SlotKdf::Argon2id { .. } => {
                    "a passphrase (passphrase_file, passphrase_command or TIDEMARK_PASSPHRASE)"
                }
            };
            bail!(
                "repository {repository}'s keyring (generation {generation}) is opened by {wanted}, which {secret_named} is not: configure that kind of source"
            );
        }
        bail!(
            "the secret from {secret_named} does not open repository {repository}'s keyring (generation {generation}): check {secret_named}"
        )
    }

    /// `document`, a later generation of this keyring's repository, opened with the
    /// key-encryption key this keyring already holds (it never changes): a running process
    /// follows a rotation or a passphrase change without reading any secret again.
    pub fn reopen(&self, document: KeyringDocument) -> anyhow::Result<Keyring> {
        Keyring::with_kek(document, self.kek.clone())
    }

    /// The keyring `document` is, given its key-encryption key: every key unwrapped and the MAC
    /// checked.
    fn with_kek(document: KeyringDocument, kek: Zeroizing<[u8; 32]>) -> anyhow::Result<Keyring> {
        document.check_mac(&kek)?;
        let repository = &document.repository;
        let altered = || {
            format!(
                "repository {repository}'s keyring (generation {}) holds a key its key-encryption key does not open: restore _keys/ from a copy",
                document.generation
            )
        };
        let name_key =
            unwrap(&kek, repository, Role::Name, 0, &document.name_key).with_context(altered)?;
        let mut keys = BTreeMap::new();
        for entry in &document.keys {
            let secret = unwrap(&kek, repository, Role::Data, entry.id, &entry.wrapped)
                .with_context(altered)?;
            keys.insert(entry.id, DataKey::new(entry.id, *secret));
        }
        Ok(Keyring {
            document,
            kek,
            keys,
            name_key,
        })
    }

    /// The next generation, made by `operation` at `now`, as yet unchanged and unsealed.
    fn next(&self, operation: &str, now: DateTime<Utc>) -> KeyringDocument {
        KeyringDocument {
            generation: self.document.generation + 1,
            written: timestamp(now),
            operation: operation.to_owned(),
            mac: String::new(),
            ..self.document.clone()
        }
    }

    /// `document` sealed and opened with this keyring's key-encryption key.
    fn sealed(&self, mut document: KeyringDocument) -> Keyring {
        document.seal(&self.kek);
        Keyring::with_kek(document, self.kek.clone()).expect("a keyring just made opens")
    }

    /// The next generation with a new data key, current from now; the old one superseded.
    pub fn rotated(&self, now: DateTime<Utc>) -> Keyring {
        let mut document = self.next("rotate", now);
        let id = document
            .keys
            .iter()
            .map(|k| k.id)
            .chain(document.retired.iter().map(|r| r.id))
            .max()
            .unwrap_or(0)
            + 1;
        for entry in &mut document.keys {
            if entry.id == document.current {
                entry.superseded = Some(timestamp(now));
            }
        }
        let secret = random::<32>();
        document.keys.push(KeyEntry {
            id,
            created: timestamp(now),
            superseded: None,
            wrapped: wrap(&self.kek, &document.repository, Role::Data, id, &secret),
        });
        document.current = id;
        self.sealed(document)
    }

    /// The next generation with one slot, `kdf` with its `slot_key`, in place of every slot: the
    /// old secrets no longer open it.
    pub fn with_only_slot(&self, kdf: SlotKdf, slot_key: &[u8; 32], now: DateTime<Utc>) -> Keyring {
        let mut document = self.next("change-passphrase", now);
        let id = document.slots.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        let wrapped_kek = wrap(slot_key, &document.repository, Role::Kek, id, &self.kek);
        document.slots = vec![SlotEntry {
            id,
            kdf,
            wrapped_kek,
        }];
        self.sealed(document)
    }

    /// The next generation without data key `id`: objects it sealed can no longer be opened.
    /// Refused for an unknown, retired or current key (the caller checks that none uses it).
    pub fn without_key(&self, id: u32, now: DateTime<Utc>) -> anyhow::Result<Keyring> {
        let repository = self.repository_id();
        if self.is_retired(id) {
            bail!("data key {id} of repository {repository} is already retired; nothing changed");
        }
        if self.data_key(id).is_none() {
            bail!(
                "repository {repository} has no data key {id}: `tidemark key list` shows its keys; nothing changed"
            );
        }
        if id == self.document.current {
            bail!(
                "data key {id} is the current key of repository {repository}: run `tidemark key rotate` first, and retire it once nothing uses it; nothing changed"
            );
        }
        let mut document = self.next("retire", now);
        document.keys.retain(|k| k.id != id);
        document.retired.push(RetiredEntry {
            id,
            retired: timestamp(now),
        });
        Ok(self.sealed(document))
    }
}
