//! Encrypted repositories in the tests: the key files and passphrase files a configuration
//! names (owned by the cluster owner, mode 0600, as Tidemark demands), the `[repo]` lines that
//! turn encryption on, and the scan of every stored byte for plaintext that must not be there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use testkit::Lab;
use testkit::owner::write_owned_file;

/// The cipher every encrypted test repository uses.
pub const CIPHER: &str = "aes-256-gcm";

/// Random bytes as lowercase hex (`fastrand`, so a logged seed repeats them).
pub fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

/// A key file `<lab>/<name>`: 32 random bytes as 64 hex digits and a newline, owned by the
/// cluster owner, mode 0600.
pub fn write_key_file(lab: &Lab, name: &str) -> PathBuf {
    let path = lab.tmp.path().join(name);
    write_owned_file(&path, &format!("{}\n", random_hex(32)), 0o600).unwrap();
    path
}

/// A passphrase file `<lab>/<name>` holding `passphrase` and a newline, owned by the cluster
/// owner, mode 0600.
pub fn write_passphrase_file(lab: &Lab, name: &str, passphrase: &str) -> PathBuf {
    let path = lab.tmp.path().join(name);
    write_owned_file(&path, &format!("{passphrase}\n"), 0o600).unwrap();
    path
}

/// A passphrase no test text could hold by chance.
pub fn random_passphrase() -> String {
    format!("tidemark-passphrase-{}", random_hex(12))
}

/// The `[repo]` lines of an encrypted repository whose key is the key file `path`.
pub fn with_key_file(path: &Path) -> String {
    format!("cipher = \"{CIPHER}\"\nkey_file = \"{}\"\n", path.display())
}

/// The `[repo]` lines of an encrypted repository whose passphrase is in the file `path`.
pub fn with_passphrase_file(path: &Path) -> String {
    format!(
        "cipher = \"{CIPHER}\"\npassphrase_file = \"{}\"\n",
        path.display()
    )
}

/// Every file under `dir` with its bytes, by path relative to `dir`.
pub fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    crate::common::snapshot(dir)
        .into_iter()
        .filter(|(path, _)| path.is_file())
        .map(|(path, bytes)| {
            let relative = path.strip_prefix(dir).unwrap().display().to_string();
            (relative, bytes)
        })
        .collect()
}

/// Where `needle` occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Every occurrence of each named needle in `files`, as "<what> in <file> at byte <offset>"
/// (the first occurrence in each file).
pub fn plaintext_in(files: &BTreeMap<String, Vec<u8>>, needles: &[(&str, &[u8])]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, bytes) in files {
        for (what, needle) in needles {
            if let Some(at) = find(bytes, needle) {
                found.push(format!("{what} in {name} at byte {at}"));
            }
        }
    }
    found
}

/// The files among `files` that hold a Tidemark object frame of a version other than 2 (the
/// encrypted frame): `TIDEMARK` then the version, u16 LE.
pub fn unencrypted_frames(files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    files
        .iter()
        .filter(|(_, bytes)| bytes.len() >= 10 && bytes.starts_with(b"TIDEMARK"))
        .filter(|(_, bytes)| u16::from_le_bytes([bytes[8], bytes[9]]) != 2)
        .map(|(name, bytes)| {
            format!(
                "{name} (frame version {})",
                u16::from_le_bytes([bytes[8], bytes[9]])
            )
        })
        .collect()
}

/// The data key id an encrypted object names (u32 LE at byte 12 of the frame), or `None` for
/// anything that is not an encrypted frame.
pub fn data_key_id(object: &[u8]) -> Option<u32> {
    if object.len() < 96 || !object.starts_with(b"TIDEMARK") || object[8..10] != [2, 0] {
        return None;
    }
    Some(u32::from_le_bytes(object[12..16].try_into().unwrap()))
}

/// The names of the stored chunks (`<stanza>/blob/<2 hex>/<64 hex>`) among `files`.
pub fn chunk_names(files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    files
        .keys()
        .filter_map(|name| {
            let rest = name.split_once("/blob/")?.1;
            let (prefix, chunk) = rest.split_once('/')?;
            (prefix.len() == 2 && chunk.len() == 64 && chunk.starts_with(prefix))
                .then(|| chunk.to_owned())
        })
        .collect()
}
