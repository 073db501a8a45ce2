//! Where a backup's entries go on disk: the data directory, and each tablespace's original
//! location or the one `--tablespace-map` gives; what may already be there (the checks that
//! nothing is overwritten unasked, clearing for `--force`, strays for `--delta`); and which
//! directories the restored tree has, so that every one of them can be made durable.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::ExistingData;
use crate::repo::catalog::{BackupRecord, EntryKind};
use crate::storage::durable;

/// The data directory and the tablespace locations of one restore.
pub struct Places {
    pub pgdata: PathBuf,
    /// Tablespace OID → where it is restored.
    pub tablespaces: HashMap<u32, PathBuf>,
    /// The OIDs `--tablespace-map` named: only their locations may ever be cleared.
    mapped: BTreeSet<u32>,
}

impl Places {
    /// The places for `record`, each tablespace at its original location unless `map` moves
    /// it; a mapped OID the backup does not have is refused.
    pub fn new(
        record: &BackupRecord,
        pgdata: &Path,
        map: &BTreeMap<u32, PathBuf>,
    ) -> anyhow::Result<Places> {
        let tablespaces: HashMap<u32, PathBuf> = record
            .tablespaces
            .iter()
            .map(|t| {
                let location = map.get(&t.oid).cloned();
                (
                    t.oid,
                    location.unwrap_or_else(|| PathBuf::from(&t.location)),
                )
            })
            .collect();
        if let Some(oid) = map.keys().find(|oid| !tablespaces.contains_key(oid)) {
            let known: Vec<String> = record
                .tablespaces
                .iter()
                .map(|t| t.oid.to_string())
                .collect();
            bail!(
                "--tablespace-map names tablespace {oid}, which backup {} does not have (it has: {})",
                record.label,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            );
        }
        Ok(Places {
            pgdata: pgdata.to_path_buf(),
            tablespaces,
            mapped: map.keys().copied().collect(),
        })
    }

    /// Where an entry of the backup goes.
    pub fn destination(&self, entry_path: &str) -> PathBuf {
        if let Some(rest) = entry_path.strip_prefix("pg_tblspc/")
            && let Some((oid, inner)) = rest.split_once('/')
            && let Some(location) = oid
                .parse()
                .ok()
                .and_then(|oid: u32| self.tablespaces.get(&oid))
        {
            return location.join(inner);
        }
        self.pgdata.join(entry_path)
    }

    /// The data directory, then each tablespace location.
    pub fn tops(&self) -> Vec<&Path> {
        let mut tops = vec![self.pgdata.as_path()];
        let mut locations: Vec<&PathBuf> = self.tablespaces.values().collect();
        locations.sort();
        tops.extend(locations.into_iter().map(PathBuf::as_path));
        tops
    }

    /// The link PostgreSQL follows to tablespace `oid`.
    pub fn link(&self, oid: u32) -> PathBuf {
        self.pgdata.join("pg_tblspc").join(oid.to_string())
    }

    /// Refuses, before anything is written, a data directory a server may be running on, and
    /// a place that is not empty unless `existing` allows it there.
    pub fn check_nothing_is_overwritten_unasked(
        &self,
        existing: ExistingData,
    ) -> anyhow::Result<()> {
        if self.pgdata.join("postmaster.pid").exists() {
            bail!(
                "{} has a postmaster.pid: a server may be running on it; stop it first",
                self.pgdata.display()
            );
        }
        // A tablespace's original location may belong to a cluster still running on this host:
        // only locations named with --tablespace-map are ever cleared.
        let mut original: Vec<(&u32, &PathBuf)> = self
            .tablespaces
            .iter()
            .filter(|(oid, _)| !self.mapped.contains(oid))
            .collect();
        original.sort();
        for (oid, location) in original {
            if !is_empty_dir(location)? {
                bail!(
                    "tablespace {oid}'s location {0} is not empty, and restore never clears a location it was not given: restore it elsewhere with --tablespace-map {oid}=DIR, or in place with --tablespace-map {oid}={0} and --delta or --force",
                    location.display()
                );
            }
        }
        for top in self.tops() {
            if existing == ExistingData::Refuse && !is_empty_dir(top)? {
                bail!(
                    "{} is not empty: restore into an empty directory, or use --delta to keep the files that match the backup, or --force to overwrite it",
                    top.display()
                );
            }
        }
        Ok(())
    }

    /// Makes the data directory (mode 0700) and each tablespace location, emptied first with
    /// `--force`. Every directory made, and the one above the topmost made, is fsynced: the
    /// restore's tree must not vanish from a parent that existed before it.
    pub fn make_tops(&self, existing: ExistingData) -> anyhow::Result<()> {
        for top in self.tops() {
            let existed_above = deepest_existing(top);
            durable::create_dir_all(top, 0o700, &existed_above)
                .with_context(|| format!("create {}", top.display()))?;
            if existing == ExistingData::Force && remove_contents(top)? {
                durable::fsync_dir(top).with_context(|| format!("fsync {}", top.display()))?;
            }
        }
        set_mode(&self.pgdata, 0o700)
    }

    /// Every directory of the restored tree: the tops, `pg_tblspc`, each directory the backup
    /// has and each directory holding one of its files or links.
    pub fn directories(&self, record: &BackupRecord) -> BTreeSet<PathBuf> {
        let mut directories: BTreeSet<PathBuf> =
            self.tops().into_iter().map(Path::to_path_buf).collect();
        directories.insert(self.pgdata.join("pg_tblspc"));
        for entry in &record.entries {
            let path = self.destination(&entry.path);
            if entry.kind == EntryKind::Directory {
                directories.insert(path.clone());
            }
            directories.insert(durable::parent_dir(&path).to_path_buf());
        }
        directories
    }

    /// Removes, under every top, what the backup does not have; returns how many paths went.
    pub fn remove_strays(&self, record: &BackupRecord) -> anyhow::Result<u64> {
        let wanted: HashSet<PathBuf> = record
            .entries
            .iter()
            .map(|e| self.destination(&e.path))
            .chain(self.tablespaces.keys().map(|oid| self.link(*oid)))
            .collect();
        let mut removed = 0;
        for top in self.tops() {
            removed += remove_strays_under(top, &wanted)?;
        }
        Ok(removed)
    }

    /// Whether a tablespace is restored somewhere else than where the backup found it.
    pub fn moved(&self, record: &BackupRecord) -> bool {
        record
            .tablespaces
            .iter()
            .any(|t| self.tablespaces[&t.oid].as_path() != Path::new(&t.location))
    }

    /// `tablespace_map` naming the locations used: PostgreSQL recreates the links from it at
    /// startup. Newlines and backslashes are escaped as PostgreSQL writes them.
    pub fn tablespace_map(&self) -> String {
        let mut ordered: Vec<(&u32, &PathBuf)> = self.tablespaces.iter().collect();
        ordered.sort();
        ordered
            .into_iter()
            .map(|(oid, location)| {
                let escaped = location
                    .to_string_lossy()
                    .replace('\\', "\\\\")
                    .replace('\n', "\\\n")
                    .replace('\r', "\\\r");
                format!("{oid} {escaped}\n")
            })
            .collect()
    }
}

/// `path` itself if it exists, else its nearest ancestor that does.
fn deepest_existing(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|a| a.as_os_str().is_empty() || a.exists())
        .filter(|a| !a.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

pub fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("set mode {mode:o} on {}", path.display()))
}

fn is_empty_dir(path: &Path) -> anyhow::Result<bool> {
    match fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Removes everything in `dir`; returns whether there was anything.
fn remove_contents(dir: &Path) -> anyhow::Result<bool> {
    let mut any = false;
    for entry in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        remove_path(&entry?.path())?;
        any = true;
    }
    Ok(any)
}

fn remove_path(path: &Path) -> anyhow::Result<()> {
    let kind = fs::symlink_metadata(path)
        .with_context(|| format!("inspect {}", path.display()))?
        .file_type();
    if kind.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .with_context(|| format!("remove {}", path.display()))
}

/// Removes every path under `dir` that is not in `wanted` (nor a parent of one).
fn remove_strays_under(dir: &Path, wanted: &HashSet<PathBuf>) -> anyhow::Result<u64> {
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    for entry in entries {
        let path = entry?.path();
        let is_parent = wanted.iter().any(|w| w.starts_with(&path) && *w != path);
        if wanted.contains(&path) || is_parent {
            if fs::symlink_metadata(&path)?.is_dir() {
                removed += remove_strays_under(&path, wanted)?;
            }
            continue;
        }
        remove_path(&path)?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_existing_ancestor_is_where_new_directories_hang() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b/c");
        assert_eq!(deepest_existing(&missing), dir.path());
        assert_eq!(deepest_existing(dir.path()), dir.path());
        assert_eq!(deepest_existing(Path::new("not-here/x")), Path::new("."));
    }

    #[test]
    fn strays_go_and_what_the_backup_has_stays() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("base/1/1259");
        fs::create_dir_all(keep.parent().unwrap()).unwrap();
        fs::write(&keep, b"x").unwrap();
        fs::write(dir.path().join("base/1/stray"), b"x").unwrap();
        fs::create_dir(dir.path().join("stray-dir")).unwrap();
        let wanted = HashSet::from([keep.clone()]);
        assert_eq!(remove_strays_under(dir.path(), &wanted).unwrap(), 2);
        assert!(keep.exists());
        assert!(!dir.path().join("stray-dir").exists());
    }
}
