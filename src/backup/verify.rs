//! Checks a backup's files against PostgreSQL's manifest: every listed file present with the
//! listed size and CRC-32C, and nothing unlisted but the WAL a backup may carry. Backups ask
//! for CRC-32C checksums, so a file without one on either side is a mismatch, never a pass.
//! Run on what the server sent, before the backup is recorded, and again by restore on the
//! record, before anything is written.

use std::collections::{HashMap, HashSet};

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
                "the manifest lists {}, but the backup has no such file",
                listed.path
            );
        };
        if entry.size != listed.size {
            bail!(
                "{}: the manifest says {} bytes, the backup has {}",
                listed.path,
                listed.size,
                entry.size
            );
        }
        match (listed.crc32c, entry.crc32c) {
            (None, _) => bail!(
                "{}: the manifest gives no CRC-32C for it, though CRC-32C checksums were asked for",
                listed.path
            ),
            (_, None) => bail!("{}: the backup has no CRC-32C of it", listed.path),
            (Some(expected), Some(actual)) if expected != actual => bail!(
                "{}: the manifest says CRC-32C {}, the backup's content has {}",
                listed.path,
                crc32c_hex(expected),
                crc32c_hex(actual)
            ),
            _ => {}
        }
    }
    let listed: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    if let Some(extra) = entries.iter().find(|e| {
        e.kind == EntryKind::File
            && !listed.contains(e.path.as_str())
            && !e.path.starts_with("pg_wal/")
    }) {
        bail!(
            "the backup has {}, which the manifest does not list",
            extra.path
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::backup_manifest::ManifestFile;

    fn file(path: &str, content: &[u8]) -> BackupEntry {
        BackupEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o600,
            mtime: 0,
            size: content.len() as u64,
            crc32c: Some(crc32c::crc32c(content)),
            chunks: vec![],
            link: None,
        }
    }

    fn listed(entry: &BackupEntry) -> ManifestFile {
        ManifestFile {
            path: entry.path.clone(),
            size: entry.size,
            crc32c: entry.crc32c,
        }
    }

    /// A backup of PG_VERSION, a relation file, a directory and a link, a WAL segment it
    /// carries, and the manifest PostgreSQL would send for it.
    fn backup() -> (Vec<BackupEntry>, BackupManifest) {
        let entries = vec![
            file("PG_VERSION", b"15\n"),
            file("base/5/16384", &[7u8; 8192]),
            BackupEntry {
                kind: EntryKind::Directory,
                ..file("base/5", b"")
            },
            BackupEntry {
                kind: EntryKind::Symlink,
                link: Some("/srv/ts".into()),
                ..file("pg_tblspc/16385", b"")
            },
            file("pg_wal/000000010000000000000002", &[1u8; 64]),
        ];
        let manifest = BackupManifest {
            system_id: None,
            files: entries[..2].iter().map(listed).collect(),
            wal_ranges: vec![],
        };
        (entries, manifest)
    }

    /// Why [`backup`], once `change` has altered its entries or manifest, is refused.
    fn refusal(change: impl FnOnce(&mut Vec<BackupEntry>, &mut BackupManifest)) -> String {
        let (mut entries, mut manifest) = backup();
        change(&mut entries, &mut manifest);
        check_against_manifest(&entries, &manifest)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_backup_that_matches_its_manifest_passes() {
        let (entries, manifest) = backup();
        check_against_manifest(&entries, &manifest).unwrap();
    }

    #[test]
    fn a_listed_file_the_backup_lacks_is_named() {
        assert_eq!(
            refusal(|entries, _| {
                entries.remove(1);
            }),
            "the manifest lists base/5/16384, but the backup has no such file"
        );
    }

    #[test]
    fn a_file_of_another_size_is_named() {
        assert_eq!(
            refusal(|entries, _| entries[1].size = 8191),
            "base/5/16384: the manifest says 8192 bytes, the backup has 8191"
        );
    }

    #[test]
    fn a_file_with_another_crc_is_named() {
        assert_eq!(
            refusal(|entries, _| entries[0].crc32c = Some(crc32c::crc32c(b"16\n"))),
            format!(
                "PG_VERSION: the manifest says CRC-32C {}, the backup's content has {}",
                crc32c_hex(crc32c::crc32c(b"15\n")),
                crc32c_hex(crc32c::crc32c(b"16\n"))
            )
        );
    }

    #[test]
    fn a_crc_missing_on_either_side_is_a_mismatch_not_a_pass() {
        assert_eq!(
            refusal(|_, manifest| manifest.files[1].crc32c = None),
            "base/5/16384: the manifest gives no CRC-32C for it, though CRC-32C checksums were asked for"
        );
        assert_eq!(
            refusal(|entries, _| entries[0].crc32c = None),
            "PG_VERSION: the backup has no CRC-32C of it"
        );
    }

    #[test]
    fn an_unlisted_file_is_named_but_carried_wal_is_not() {
        assert_eq!(
            refusal(|entries, _| entries.push(file("base/5/stray", b"x"))),
            "the backup has base/5/stray, which the manifest does not list"
        );
    }
}
