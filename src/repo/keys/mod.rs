//! The repository's keys. A passphrase (Argon2id) or a key file opens a slot of the keyring,
//! which unwraps the repository's key-encryption key; that unwraps the data keys objects are
//! sealed with and the key chunk names are made with. The keyring is one plain JSON object per
//! generation under `_keys/`, bound by a MAC; every change is one create-only put of the next
//! generation, so a crash leaves either the old keyring or the new one in force.
//!
//! * `source.rs` — where the secret comes from (file, command, key file, environment);
//! * `secret_file.rs` — the rule for files that hold secrets;
//! * `wrap.rs` — keys wrapping keys (AES-256-GCM), random bytes, hex;
//! * `kdf.rs` — a slot's key derivation (Argon2id, its cost stored);
//! * `document.rs` — the keyring as stored, and its MAC;
//! * `keyring.rs` — an opened keyring, and the next generation each operation makes;
//! * `store.rs` — the keyring's objects in the repository;
//! * `repo_keys.rs` — the keys as a running process opens and follows them;
//! * `object_keys.rs` — those keys as the repository's codec asks for them.

mod document;
mod kdf;
mod keyring;
mod object_keys;
mod repo_keys;
mod secret_file;
mod source;
mod store;
mod wrap;

#[cfg(test)]
mod tests;

pub use document::{KeyEntry, KeyringDocument, RetiredEntry, SlotEntry};
pub use kdf::{KdfCost, SlotKdf};
pub use keyring::Keyring;
pub use repo_keys::{KeyChange, REFRESH_INTERVAL, RETIRE_GRACE, RepoKeys};
pub use secret_file::{read_secret_file, secret_file_problem};
pub use source::{
    COMMAND_TIMEOUT, KeySource, MAX_PASSPHRASE_LEN, PASSPHRASE_VARIABLE, Secret, parse_key_file,
    passphrase, run_passphrase_command,
};
pub use store::{KEYS_DIR, keyring_exists};
pub(crate) use wrap::random;
