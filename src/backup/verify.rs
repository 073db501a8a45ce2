//! Checks what was received against PostgreSQL's manifest: every listed file present with the
//! listed size and CRC-32C, and nothing unlisted but the WAL a backup may carry.

use std::collections::HashMap;

use anyhow::bail;

use crate::pg::backup_manifest::{BackupManifest, crc32c_hex};
use crate::repo::catalog::{BackupEntry, EntryKind};

/// Fails on the first difference between `entries` and `manifest`, naming the file.
pub fn check_against_manifest(
    entries: &[BackupEntry],
    manifest: &BackupManifest,
) -> anyhow::Result<()> {
    let files: HashMap<&str, &BackupEntry> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| (e.path.as_str(), e))
        .collect();
    for listed in &manifest.files {
        let Some(entry) = files.get(listed.path.as_str()) else {
            bail!(
                "the backup manifest lists {}, but the server did not send it",
                listed.path
            );
        };
        if entry.size != listed.size {
            bail!(
                "{}: the manifest says {} bytes, {} were received",
                listed.path,
                listed.size,
                entry.size
            );
        }
        if let (Some(expected), Some(actual)) = (listed.crc32c, entry.crc32c)
            && expected != actual
        {
            bail!(
                "{}: the manifest says CRC-32C {}, the received bytes have {}",
                listed.path,
                crc32c_hex(expected),
                crc32c_hex(actual)
            );
        }
    }
    let listed: std::collections::HashSet<&str> =
        manifest.files.iter().map(|f| f.path.as_str()).collect();
    if let Some(extra) = files
        .keys()
        .find(|path| !listed.contains(*path) && !path.starts_with("pg_wal/"))
    {
        bail!("the server sent {extra}, which its manifest does not list");
    }
    Ok(())
}
