//! The keyring in the repository: `_keys/keyring.<generation>`, create-only, the highest
//! generation in force; and `_keys/stanzas/<name>`, one empty object per stanza of an encrypted
//! repository, so that whole-repository key operations find every stanza without listing the
//! repository's root.

use anyhow::{Context, bail};

use super::document::{KeyringDocument, MAX_KEYRING_LEN};
use crate::repo::layout::check_stanza_name;
use crate::storage::{Cancel, ObjectKey, PutOutcome, Storage};

/// Where every key object lives. `_` cannot start a stanza name, so no stanza can collide.
pub const KEYS_DIR: &str = "_keys";
const KEYRING_STEM: &str = "keyring.";
const STANZAS_DIR: &str = "_keys/stanzas";

fn keys_dir() -> ObjectKey {
    ObjectKey::new(KEYS_DIR).expect("a valid key")
}

/// `_keys/keyring.<10-digit generation>`.
pub fn keyring_key(generation: u64) -> ObjectKey {
    ObjectKey::new(format!("{KEYS_DIR}/{KEYRING_STEM}{generation:010}")).expect("a valid key")
}

/// The generation `key` names, if it is a keyring's key.
fn generation_of(key: &ObjectKey) -> Option<u64> {
    let digits = key
        .as_str()
        .strip_prefix(KEYS_DIR)?
        .strip_prefix('/')?
        .strip_prefix(KEYRING_STEM)?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Every keyring generation stored, lowest first.
pub fn generations(storage: &dyn Storage) -> anyhow::Result<Vec<u64>> {
    let listed = storage
        .list(&keys_dir(), &Cancel::never())
        .with_context(|| format!("list the keyring in {}", storage.location()))?;
    let mut found: Vec<u64> = listed
        .iter()
        .filter_map(|o| generation_of(&o.key))
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// Whether `_keys/` holds a keyring (a plain configuration must refuse such a repository).
pub fn keyring_exists(storage: &dyn Storage) -> anyhow::Result<bool> {
    Ok(!generations(storage)?.is_empty())
}

/// The keyring stored as `generation`, or `None` if it is gone (deleted after a newer one was
/// written). Reads at most [`MAX_KEYRING_LEN`] bytes.
pub fn read(storage: &dyn Storage, generation: u64) -> anyhow::Result<Option<KeyringDocument>> {
    let key = keyring_key(generation);
    let bytes = match storage.get_range(&key, 0, MAX_KEYRING_LEN + 1) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("read {key} from {}", storage.location()));
        }
    };
    if bytes.len() as u64 > MAX_KEYRING_LEN {
        bail!(
            "{key} in {} is larger than {} MiB, which no keyring is: it was not written by Tidemark",
            storage.location(),
            MAX_KEYRING_LEN >> 20
        );
    }
    KeyringDocument::parse(&bytes, generation)
        .map(Some)
        .with_context(|| format!("read {key} from {}", storage.location()))
}

/// The newest keyring, or `None` when the repository has none. A generation deleted between
/// the listing and the read (a key operation finishing) sends it back to the listing.
pub fn read_newest(storage: &dyn Storage) -> anyhow::Result<Option<KeyringDocument>> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let Some(&newest) = generations(storage)?.last() else {
            return Ok(None);
        };
        if let Some(document) = read(storage, newest)? {
            return Ok(Some(document));
        }
    }
    bail!(
        "the keyring in {} changed {ATTEMPTS} times while being read: run again",
        storage.location()
    )
}

/// Stores `document` as its generation, create-only. `AlreadyExists` means another process
/// wrote that generation first.
pub fn put(storage: &dyn Storage, document: &KeyringDocument) -> anyhow::Result<PutOutcome> {
    let key = keyring_key(document.generation);
    storage
        .put_if_absent(&key, &[&document.to_bytes()])
        .with_context(|| format!("store {key} in {}", storage.location()))
}

/// Deletes every generation older than `newest`, best effort: each failure is a warning, as the
/// newest generation is in force whatever is left (an object-locked bucket refuses deletes).
pub fn delete_older(storage: &dyn Storage, newest: u64) -> Vec<String> {
    let older = match generations(storage) {
        Ok(all) => all.into_iter().filter(|&g| g < newest),
        Err(e) => return vec![format!("{e:#}; older keyring generations were not deleted")],
    };
    older
        .filter_map(|generation| {
            let key = keyring_key(generation);
            storage.delete(&key).err().map(|e| {
                format!(
                    "could not delete {key} in {}: {e}; it is no longer in force, but it still opens with the secrets it had: delete it by hand",
                    storage.location()
                )
            })
        })
        .collect()
}

/// Records that stanza `name` lives in this encrypted repository (empty, create-only).
pub fn register_stanza(storage: &dyn Storage, name: &str) -> anyhow::Result<()> {
    check_stanza_name(name)?;
    let key = ObjectKey::new(format!("{STANZAS_DIR}/{name}")).expect("a checked stanza name");
    storage
        .put_if_absent(&key, &[])
        .with_context(|| format!("store {key} in {}", storage.location()))?;
    Ok(())
}

/// The stanzas recorded by [`register_stanza`], sorted.
pub fn registered_stanzas(storage: &dyn Storage) -> anyhow::Result<Vec<String>> {
    let dir = ObjectKey::new(STANZAS_DIR).expect("a valid key");
    let listed = storage
        .list(&dir, &Cancel::never())
        .with_context(|| format!("list {dir} in {}", storage.location()))?;
    Ok(listed
        .into_iter()
        .filter_map(|o| {
            let name = o
                .key
                .as_str()
                .strip_prefix(STANZAS_DIR)?
                .strip_prefix('/')?;
            check_stanza_name(name).ok().map(|()| name.to_owned())
        })
        .collect())
}
