//! The local-directory backend: each object is a file under the repository's root directory.
//!
//! Writes are durable and atomic: the bytes go to a uniquely named temporary file in the target
//! directory, which is fsynced and then renamed to its key without replacing anything
//! (`renameat2(RENAME_NOREPLACE)`, or link-and-unlink where the file system lacks it), and the
//! directory is fsynced. A crash at any moment leaves no file, or a complete one, under the key;
//! at worst a temporary file (name starting with `.`) that no reader ever looks at. The next put
//! of the same key removes such leftovers once their writer is gone.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

use super::{ListedObject, ObjectKey, PutOutcome, Storage, StorageError};
use crate::temp_files;

/// A repository in a local directory.
#[derive(Clone, Debug)]
pub struct LocalDirectory {
    root: PathBuf,
}

impl LocalDirectory {
    /// A store rooted at `root`, which is created on the first write if missing.
    pub fn new(root: impl Into<PathBuf>) -> LocalDirectory {
        LocalDirectory { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn io_error(&self, doing: String, source: io::Error) -> StorageError {
        if source.kind() == ErrorKind::PermissionDenied {
            StorageError::PermissionDenied {
                doing,
                uid: rustix::process::geteuid().as_raw(),
                cause: source,
            }
        } else {
            StorageError::Io { doing, source }
        }
    }

    /// Creates `dir` and any missing parents, fsyncing each parent after adding an entry so the
    /// new directories survive a crash along with the files later put in them.
    fn create_dir_durably(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.create_dir_durably(parent)?;
        }
        match fs::DirBuilder::new().mode(0o750).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
            Err(e) => return Err(e),
        }
        match dir.parent() {
            Some(parent) => fsync_dir(parent),
            None => Ok(()),
        }
    }

    fn write_temp(&self, temp: &Path, parts: &[&[u8]]) -> io::Result<()> {
        let mut file = temp_files::create(temp, 0o640)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to` unless `to` exists. Returns `Ok(false)` if it does.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<bool> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        // File systems without RENAME_NOREPLACE: a hard link also fails if the name is taken.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => match fs::hard_link(from, to) {
            Ok(()) => {
                fs::remove_file(from)?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        },
        Err(errno) => Err(errno.into()),
    }
}

impl Storage for LocalDirectory {
    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> Result<PutOutcome, StorageError> {
        let path = self.path_of(key);
        let dir = path.parent().expect("an object path has a parent");
        self.create_dir_durably(dir)
            .map_err(|e| self.io_error(format!("create directory {}", dir.display()), e))?;
        let temp = temp_files::temp_path(dir, key.file_name());
        let result = self
            .write_temp(&temp, parts)
            .map_err(|e| self.io_error(format!("write {}", temp.display()), e))
            .and_then(|()| {
                rename_no_replace(&temp, &path)
                    .map_err(|e| self.io_error(format!("rename {} into place", temp.display()), e))
            });
        if result.is_ok() {
            temp_files::remove_abandoned(dir, key.file_name());
        }
        match result {
            Ok(true) => {
                fsync_dir(dir)
                    .map_err(|e| self.io_error(format!("fsync directory {}", dir.display()), e))?;
                Ok(PutOutcome::Created)
            }
            Ok(false) => {
                let _ = fs::remove_file(&temp);
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StorageError> {
        let path = self.path_of(key);
        fs::read(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => StorageError::NotFound {
                key: key.clone(),
                location: self.location(),
            },
            _ => self.io_error(format!("read {}", path.display()), e),
        })
    }

    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, StorageError> {
        let path = self.path_of(key);
        match fs::symlink_metadata(&path) {
            Ok(metadata) => Ok(metadata.is_file().then_some(metadata.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error(format!("stat {}", path.display()), e)),
        }
    }

    fn get_prefix(&self, key: &ObjectKey, length: usize) -> Result<Vec<u8>, StorageError> {
        let path = self.path_of(key);
        let read = || -> io::Result<Vec<u8>> {
            let mut buffer = Vec::with_capacity(length);
            File::open(&path)?
                .take(length as u64)
                .read_to_end(&mut buffer)?;
            Ok(buffer)
        };
        read().map_err(|e| match e.kind() {
            ErrorKind::NotFound => StorageError::NotFound {
                key: key.clone(),
                location: self.location(),
            },
            _ => self.io_error(format!("read {}", path.display()), e),
        })
    }

    fn list(&self, prefix: &ObjectKey) -> Result<Vec<ListedObject>, StorageError> {
        let mut found = Vec::new();
        let mut pending = vec![self.path_of(prefix)];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io_error(format!("list {}", dir.display()), e)),
            };
            for entry in entries {
                let entry =
                    entry.map_err(|e| self.io_error(format!("list {}", dir.display()), e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue;
                }
                let path = entry.path();
                // The directory entry's type needs no stat; only files' sizes do.
                let is_dir = match entry.file_type() {
                    Ok(kind) if !kind.is_symlink() => kind.is_dir(),
                    _ => entry
                        .metadata()
                        .map_err(|e| self.io_error(format!("stat {}", path.display()), e))?
                        .is_dir(),
                };
                if is_dir {
                    pending.push(path);
                    continue;
                }
                let metadata = entry
                    .metadata()
                    .map_err(|e| self.io_error(format!("stat {}", path.display()), e))?;
                if let Some(key) = path
                    .strip_prefix(&self.root)
                    .ok()
                    .and_then(|relative| relative.to_str())
                    .and_then(|relative| ObjectKey::new(relative).ok())
                {
                    found.push(ListedObject {
                        key,
                        size: metadata.len(),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> ObjectKey {
        ObjectKey::new(text).unwrap()
    }

    #[test]
    fn puts_never_replace_and_reads_see_whole_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::new(dir.path().join("repo"));
        let k = key("main/wal/0000000100000000/000000010000000000000001");
        assert!(store.get(&k).unwrap_err().is_not_found());
        assert_eq!(
            store.put_if_absent(&k, &[b"abc", b"def"]).unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            store.put_if_absent(&k, &[b"other"]).unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(store.get(&k).unwrap(), b"abcdef");
        assert_eq!(store.get_prefix(&k, 2).unwrap(), b"ab");
        assert_eq!(store.get_prefix(&k, 100).unwrap(), b"abcdef");
        let leftovers: Vec<_> = fs::read_dir(store.path_of(&k).parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "no temporary file is left: {leftovers:?}"
        );
    }

    #[test]
    fn a_put_removes_what_a_dead_writer_of_the_same_key_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::new(dir.path());
        let k = key("s/wal/a/000000010000000000000001");
        let object_dir = dir.path().join("s/wal/a");
        fs::create_dir_all(&object_dir).unwrap();
        let leftover = crate::temp_files::temp_path(&object_dir, "000000010000000000000001");
        fs::write(&leftover, b"partial").unwrap();
        // Pretend it was another process: rename it to a PID that has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let name = leftover.file_name().unwrap().to_str().unwrap().to_owned();
        let parts: Vec<&str> = name.split('.').collect();
        let abandoned = object_dir.join(format!(".{}.{}.{dead}.0.tmp", parts[1], parts[2]));
        fs::rename(&leftover, &abandoned).unwrap();
        store.put_if_absent(&k, &[b"whole"]).unwrap();
        assert!(!abandoned.exists(), "the dead writer's leftover is removed");
        assert_eq!(store.get(&k).unwrap(), b"whole");
    }

    #[test]
    fn lists_recursively_in_key_order_and_skips_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::new(dir.path());
        for k in ["s/wal/b/2", "s/wal/a/1", "s/other", "t/x"] {
            store.put_if_absent(&key(k), &[b"12"]).unwrap();
        }
        fs::write(dir.path().join("s/wal/a/.1.99.0.tmp"), b"partial").unwrap();
        let listed: Vec<_> = store
            .list(&key("s/wal"))
            .unwrap()
            .into_iter()
            .map(|o| o.key.to_string())
            .collect();
        assert_eq!(listed, ["s/wal/a/1", "s/wal/b/2"]);
        assert!(store.list(&key("nothing/here")).unwrap().is_empty());
    }

    #[test]
    fn keys_cannot_escape_the_root_or_collide_with_temporary_files() {
        for bad in [
            "",
            "/abs",
            "a//b",
            "../x",
            "a/./b",
            "a/.hidden",
            "a/b c",
            "a/b\\c",
        ] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
        }
    }
}
