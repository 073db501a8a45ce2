//! The local-directory backend: each object is a file under the repository's root directory.
//!
//! Writes are durable and atomic: the bytes go to a uniquely named temporary file in the target
//! directory, which is fsynced and then renamed to its key without replacing anything
//! (`renameat2(RENAME_NOREPLACE)`, or link-and-unlink where the file system lacks it), and the
//! directory is fsynced. A crash at any moment leaves no file, or a complete one, under the key;
//! at worst a temporary file (name starting with `.`) that no reader ever looks at. The next put
//! of the same key removes such leftovers once their writer is gone.
//!
//! Reads stream from the file; a key naming a directory, or lying under a file, has no object.
//! A delete removes the file and then the directories it left empty.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::durable;
use super::{
    ByteRange, Cancel, CancellableReader, DeferredSyncs, ListedObject, ObjectKey, ObjectMeta,
    ObjectReading, PutBody, PutOutcome, PutResult, Storage, StorageError,
};

/// A repository in a local directory.
#[derive(Clone, Debug)]
pub struct LocalDirectory {
    root: PathBuf,
}

/// Whether an error opening or statting an object's path means there is no object there: no
/// such file, a directory in its place (the key is a prefix of other keys), or a file where a
/// directory of the path should be (the key lies under another object's key).
fn means_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory
    )
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

    fn not_found(&self, key: &ObjectKey) -> StorageError {
        StorageError::NotFound {
            key: key.clone(),
            location: self.location(),
        }
    }

    /// A put that the tree of files cannot hold: `key` is a prefix of stored keys, or lies
    /// under a stored key.
    fn conflict(&self, key: &ObjectKey, why: &str) -> StorageError {
        StorageError::Io {
            doing: format!("put {key} in {}", self.location()),
            source: io::Error::new(ErrorKind::InvalidInput, why.to_owned()),
        }
    }

    /// Creates `dir` and any missing parents. Not fsynced here: a put fsyncs the whole chain
    /// once its object is in place, whoever created the directories.
    fn create_dirs(&self, dir: &Path) -> io::Result<()> {
        // A file in the way is `AlreadyExists` (at `dir`) or `NotADirectory` (above it).
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
    }

    /// Whether a file (an object) sits at `dir` or at a directory above it, below the root.
    fn file_in_the_way(&self, dir: &Path) -> bool {
        dir.ancestors()
            .take_while(|a| *a != self.root)
            .any(|a| fs::symlink_metadata(a).is_ok_and(|m| !m.is_dir()))
    }

    /// Makes the entries leading to `dir` durable: `dir` and every directory above it up to
    /// the root, and the root's own entry in its parent, since any of them may be new (made by
    /// this put, or by a writer that died or failed before its fsync).
    fn fsync_chain(&self, dir: &Path) -> io::Result<()> {
        match durable::fsync_dirs_up_to(dir, &self.root) {
            // A delete removed the directory since: the entry the put made is gone with it (a
            // directory is only removed once empty), and there is nothing left to make durable.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            result => result?,
        }
        self.fsync_root_entry()
    }

    /// Makes the root's own entry in its parent durable. A parent of the root this user may
    /// not read was not made by Tidemark and cannot be fsynced: it is left.
    fn fsync_root_entry(&self) -> io::Result<()> {
        match durable::fsync_dir(durable::parent_dir(&self.root)) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(()),
            result => result,
        }
    }

    /// Stores what `write` writes into a new file under `key` unless the key is taken: a unique
    /// temporary file, fsynced, renamed into place without replacing anything, directory chain
    /// fsynced (or owed in `deferred`). On any error, including one from `write`, the temporary
    /// file is removed. An object found under the key is made durable (file and directory
    /// chain) before the put reports it: its writer may have died before its own fsyncs.
    fn put_with(
        &self,
        key: &ObjectKey,
        deferred: Option<&DeferredSyncs>,
        write: impl FnOnce(&mut File, &Path) -> Result<(), StorageError>,
    ) -> PutResult {
        let path = self.path_of(key);
        let dir = path.parent().expect("an object path has a parent");
        let temp = durable::temp_path(dir, key.file_name());
        let write_error = |e| StorageError::from_io(format!("write {}", temp.display()), e);
        // A delete of the last object in a directory removes the directory and its emptied
        // parents; if that happens while this put creates them or before its temporary file is
        // in them, start again. Once the temporary file is there, nothing removes the directory.
        let mut attempts = 0;
        let file = loop {
            attempts += 1;
            let again = attempts < 10;
            match self.create_dirs(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound && again => continue,
                // `AlreadyExists` also comes from a directory another put made and a delete
                // removed between the mkdir and the check that it is a directory: only a file
                // in the way is a conflict.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::AlreadyExists | ErrorKind::NotADirectory
                    ) =>
                {
                    if again && !self.file_in_the_way(dir) {
                        continue;
                    }
                    return Err(self.conflict(key, "another object's key is a prefix of this key"));
                }
                Err(e) => {
                    return Err(StorageError::from_io(
                        format!("create directory {}", dir.display()),
                        e,
                    ));
                }
            }
            match durable::create_temp(&temp, 0o640) {
                Err(e) if e.kind() == ErrorKind::NotFound && again => continue,
                file => break file,
            }
        };
        let result = file
            .map_err(write_error)
            .and_then(|mut file| {
                write(&mut file, &temp)?;
                file.sync_all().map_err(write_error)
            })
            .and_then(|()| {
                durable::rename_no_replace(&temp, &path).map_err(|e| {
                    StorageError::from_io(format!("rename {} into place", temp.display()), e)
                })
            });
        if result.is_ok() {
            durable::remove_abandoned(dir, key.file_name());
        }
        match result {
            Ok(true) => {
                self.name_durable(key, dir, deferred)?;
                Ok(PutOutcome::Created)
            }
            Ok(false) => {
                let _ = fs::remove_file(&temp);
                if path.is_dir() {
                    return Err(self.conflict(key, "this key is a prefix of other objects' keys"));
                }
                self.make_durable(key, &path, deferred)?;
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    /// Removes `dir` and the ancestors below the root that deletes left empty, so retention
    /// leaves no husks and a key depends only on the objects stored, as in other backends.
    /// `remove_dir` refuses a directory that is not empty, which stops the walk; a put that
    /// loses its directory this way creates it again. Best effort: a directory that stays does
    /// no harm.
    fn remove_empty_directories(&self, dir: &Path) {
        for ancestor in dir.ancestors() {
            if ancestor == self.root || !ancestor.starts_with(&self.root) {
                break;
            }
            if fs::remove_dir(ancestor).is_err() {
                break;
            }
        }
    }

    /// Fsyncs the object at `path` (under `key`), found in place, and its directory chain (or
    /// owes that in `deferred`).
    fn make_durable(
        &self,
        key: &ObjectKey,
        path: &Path,
        deferred: Option<&DeferredSyncs>,
    ) -> Result<(), StorageError> {
        durable::fsync_file(path)
            .map_err(|e| StorageError::from_io(format!("fsync {}", path.display()), e))?;
        self.name_durable(
            key,
            path.parent().expect("an object path has a parent"),
            deferred,
        )
    }

    /// Makes the name of `key`, in `dir`, durable: its directory chain fsynced now, or owed in
    /// `deferred`.
    fn name_durable(
        &self,
        key: &ObjectKey,
        dir: &Path,
        deferred: Option<&DeferredSyncs>,
    ) -> Result<(), StorageError> {
        match deferred {
            Some(deferred) => {
                deferred.owe(dir.to_path_buf());
                Ok(())
            }
            None => self.fsync_chain(dir).map_err(|e| {
                StorageError::from_io(format!("fsync directory {} of {key}", dir.display()), e)
            }),
        }
    }

    /// What [`head`](Storage::head) says, after making the object found durable (its directory
    /// chain fsynced now, or owed in `deferred`).
    fn head_made_durable(
        &self,
        key: &ObjectKey,
        deferred: Option<&DeferredSyncs>,
    ) -> Result<Option<ObjectMeta>, StorageError> {
        let meta = self.head(key)?;
        if meta.is_some() {
            self.make_durable(key, &self.path_of(key), deferred)?;
        }
        Ok(meta)
    }

    /// Writes `parts`, already in memory, without a copy through a chunk buffer.
    fn put_parts(
        &self,
        key: &ObjectKey,
        parts: &[&[u8]],
        deferred: Option<&DeferredSyncs>,
    ) -> PutResult {
        self.put_with(key, deferred, |file, temp| {
            for part in parts {
                durable::write_in_pieces(file, part)
                    .map_err(|e| StorageError::from_io(format!("write {}", temp.display()), e))?;
            }
            Ok(())
        })
    }
}

/// Fsyncs `dir` after a change to its entries, unless a delete has removed it since: then the
/// entry the change made is gone too (a directory is only removed once empty), and there is
/// nothing left to make durable.
fn fsync_dir_if_present(dir: &Path) -> io::Result<()> {
    match durable::fsync_dir(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        result => result,
    }
}

impl Storage for LocalDirectory {
    fn head_durable(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        self.head_made_durable(key, None)
    }

    fn head_durable_deferred(
        &self,
        key: &ObjectKey,
        deferred: &DeferredSyncs,
    ) -> Result<Option<ObjectMeta>, StorageError> {
        self.head_made_durable(key, Some(deferred))
    }

    fn put_if_absent_deferred(
        &self,
        key: &ObjectKey,
        parts: &[&[u8]],
        deferred: &DeferredSyncs,
    ) -> PutResult {
        self.put_parts(key, parts, Some(deferred))
    }

    /// Each directory owed, and each above it up to the root, fsynced once, then the root's
    /// entry in its parent, as [`fsync_chain`](LocalDirectory::fsync_chain) does for one put.
    fn sync_deferred(&self, deferred: &DeferredSyncs) -> Result<(), StorageError> {
        let owed = deferred.take();
        if owed.is_empty() {
            return Ok(());
        }
        let mut synced = std::collections::BTreeSet::new();
        for dir in &owed {
            for ancestor in dir.ancestors().take_while(|a| a.starts_with(&self.root)) {
                // Its ancestors were synced with it.
                if !synced.insert(ancestor) {
                    break;
                }
                fsync_dir_if_present(ancestor).map_err(|e| {
                    StorageError::from_io(format!("fsync directory {}", ancestor.display()), e)
                })?;
            }
        }
        self.fsync_root_entry().map_err(|e| {
            StorageError::from_io(
                format!("fsync the directory above {}", self.root.display()),
                e,
            )
        })
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        let path = self.path_of(key);
        match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(Some(ObjectMeta {
                size: metadata.len(),
                modified: metadata.modified().ok(),
            })),
            Ok(_) => Ok(None),
            Err(e) if means_absent(&e) => Ok(None),
            Err(e) => Err(StorageError::from_io(format!("stat {}", path.display()), e)),
        }
    }

    fn get_reader(&self, key: &ObjectKey, range: ByteRange, cancel: &Cancel) -> ObjectReading {
        let path = self.path_of(key);
        let doing = || format!("read {}", path.display());
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if means_absent(&e) => return Err(self.not_found(key)),
            Err(e) => return Err(StorageError::from_io(doing(), e)),
        };
        // Opening a directory succeeds; it is no object.
        let metadata = file
            .metadata()
            .map_err(|e| StorageError::from_io(doing(), e))?;
        if !metadata.is_file() {
            return Err(self.not_found(key));
        }
        // Seeking past the end is allowed and then reads nothing: an empty range.
        file.seek(SeekFrom::Start(range.offset))
            .map_err(|e| StorageError::from_io(doing(), e))?;
        Ok(Box::new(CancellableReader {
            inner: file.take(range.length.unwrap_or(u64::MAX)),
            cancel: cancel.clone(),
            doing: doing(),
        }))
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StorageError> {
        // `fs::read` sizes its buffer from the file's length: one allocation for a segment.
        let path = self.path_of(key);
        fs::read(&path).map_err(|e| {
            if means_absent(&e) {
                self.not_found(key)
            } else {
                StorageError::from_io(format!("read {}", path.display()), e)
            }
        })
    }

    fn put_body_if_absent(&self, key: &ObjectKey, body: PutBody<'_>) -> PutResult {
        let doing = || format!("put {key} in {}", self.location());
        self.put_with(key, None, |file, temp| {
            body.copy(&doing, |chunk| {
                durable::write_in_pieces(file, chunk)
                    .map_err(|e| StorageError::from_io(format!("write {}", temp.display()), e))
            })
        })
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> PutResult {
        self.put_parts(key, parts, None)
    }

    /// One `read_dir`; names starting with `.` (temporary files of puts under way) are not
    /// objects, and are left out as [`list`](Storage::list) leaves them out.
    fn list_children(
        &self,
        prefix: &ObjectKey,
        cancel: &Cancel,
    ) -> Result<Vec<String>, StorageError> {
        cancel.check(|| format!("list {prefix} in {}", self.location()))?;
        let dir = self.path_of(prefix);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if means_absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::from_io(format!("list {}", dir.display()), e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| StorageError::from_io(format!("list {}", dir.display()), e))?;
            if let Some(name) = entry.file_name().to_str()
                && !name.starts_with('.')
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn list(&self, prefix: &ObjectKey, cancel: &Cancel) -> Result<Vec<ListedObject>, StorageError> {
        let start = self.path_of(prefix);
        match fs::symlink_metadata(&start) {
            Ok(metadata) if metadata.is_file() => {
                return Ok(vec![ListedObject {
                    key: prefix.clone(),
                    size: metadata.len(),
                }]);
            }
            Ok(_) => {}
            Err(e) if means_absent(&e) => return Ok(Vec::new()),
            Err(e) => {
                return Err(StorageError::from_io(
                    format!("stat {}", start.display()),
                    e,
                ));
            }
        }
        let mut found = Vec::new();
        let mut pending = vec![start];
        while let Some(dir) = pending.pop() {
            cancel.check(|| format!("list {prefix} in {}", self.location()))?;
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // Removed since it was seen: nothing under it any more.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(StorageError::from_io(format!("list {}", dir.display()), e));
                }
            };
            for entry in entries {
                let entry = entry
                    .map_err(|e| StorageError::from_io(format!("list {}", dir.display()), e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue;
                }
                let path = entry.path();
                // An entry deleted since the directory was read is no longer there to list.
                let stat = || match entry.metadata() {
                    Ok(metadata) => Ok(Some(metadata)),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(StorageError::from_io(format!("stat {}", path.display()), e)),
                };
                // The directory entry's type needs no stat; only files' sizes do.
                let is_dir = match entry.file_type() {
                    Ok(kind) if !kind.is_symlink() => kind.is_dir(),
                    _ => match stat()? {
                        Some(metadata) => metadata.is_dir(),
                        None => continue,
                    },
                };
                if is_dir {
                    pending.push(path);
                    continue;
                }
                let Some(metadata) = stat()? else { continue };
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

    fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.delete_all(std::slice::from_ref(key))
    }

    /// Unlinks every file first and then fsyncs each directory once: expiring ten thousand
    /// segments costs a few hundred directory fsyncs, not ten thousand.
    fn delete_all(&self, keys: &[ObjectKey]) -> Result<(), StorageError> {
        let mut directories = std::collections::BTreeSet::new();
        for key in keys {
            let path = self.path_of(key);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if means_absent(&e) => continue,
                Err(e) => {
                    return Err(StorageError::from_io(
                        format!("delete {}", path.display()),
                        e,
                    ));
                }
            }
            directories.insert(
                path.parent()
                    .expect("an object path has a parent")
                    .to_owned(),
            );
        }
        for dir in &directories {
            fsync_dir_if_present(dir).map_err(|e| {
                StorageError::from_io(format!("fsync directory {}", dir.display()), e)
            })?;
        }
        // Deepest first, so a parent is tried after its children went.
        for dir in directories.iter().rev() {
            self.remove_empty_directories(dir);
        }
        Ok(())
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    /// The root, or the nearest of its ancestors that exists (puts create the rest), must be a
    /// directory; whether it is writable, only a write tells.
    fn check_reachable(&self) -> Result<(), StorageError> {
        let doing = || format!("look at repository directory {}", self.root.display());
        let mut dir = self.root.as_path();
        loop {
            match fs::metadata(dir) {
                Ok(metadata) if metadata.is_dir() => return Ok(()),
                Ok(_) => {
                    return Err(StorageError::Io {
                        doing: doing(),
                        source: io::Error::new(
                            ErrorKind::NotADirectory,
                            format!(
                                "{} is not a directory; point [repo] path at a directory",
                                dir.display()
                            ),
                        ),
                    });
                }
                // A missing directory, or a file where a directory should be higher up.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    match dir.parent() {
                        Some(parent) => dir = parent,
                        None => return Err(StorageError::from_io(doing(), e)),
                    }
                }
                Err(e) => return Err(StorageError::from_io(doing(), e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::durable::tests::pid_of_an_exited_process;
    use crate::storage::tests::{key, refuses_keys_that_are_prefixes};

    #[test]
    fn deferred_puts_owe_their_directories_until_synced_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::new(dir.path().join("repo"));
        let deferred = DeferredSyncs::default();
        let (a, b, c) = (key("s/blob/aa/1"), key("s/blob/aa/2"), key("s/blob/bb/3"));
        for k in [&a, &b, &c] {
            assert_eq!(
                store.put_if_absent_deferred(k, &[b"x"], &deferred).unwrap(),
                PutOutcome::Created
            );
        }
        assert_eq!(
            store
                .put_if_absent_deferred(&a, &[b"y"], &deferred)
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(store.get(&a).unwrap(), b"x");
        let root = dir.path().join("repo");
        let owed = deferred.take();
        assert_eq!(
            owed,
            [root.join("s/blob/aa"), root.join("s/blob/bb")].into()
        );
        // A directory emptied and removed since (its objects deleted) owes nothing.
        for dir in owed {
            deferred.owe(dir);
        }
        store.delete(&c).unwrap();
        store.sync_deferred(&deferred).unwrap();
        assert!(deferred.take().is_empty());
        assert_eq!(
            store
                .head_durable_deferred(&b, &deferred)
                .unwrap()
                .map(|m| m.size),
            Some(1)
        );
        assert_eq!(deferred.take(), [root.join("s/blob/aa")].into());
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
        assert_eq!(store.get_range(&k, 0, 2).unwrap(), b"ab");
        assert_eq!(store.get_range(&k, 0, 100).unwrap(), b"abcdef");
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
        let leftover = durable::temp_path(&object_dir, "000000010000000000000001");
        fs::write(&leftover, b"partial").unwrap();
        // Pretend it was another process: rename it to a PID that has exited.
        let dead = pid_of_an_exited_process();
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
            .list(&key("s/wal"), &Cancel::never())
            .unwrap()
            .into_iter()
            .map(|o| o.key.to_string())
            .collect();
        assert_eq!(listed, ["s/wal/a/1", "s/wal/b/2"]);
        assert!(
            store
                .list(&key("nothing/here"), &Cancel::never())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn puts_survive_deletes_removing_their_directories_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::new(dir.path());
        // Each thread empties p/q/r, p/q and p over and over while the other puts into them.
        std::thread::scope(|scope| {
            for thread in 0..2 {
                let store = &store;
                scope.spawn(move || {
                    for n in 0..300 {
                        let k = key(&format!("p/q/r/{thread}-{n}"));
                        store.put_if_absent(&k, &[b"x"]).unwrap();
                        assert_eq!(store.get(&k).unwrap(), b"x");
                        store.delete(&k).unwrap();
                    }
                });
            }
        });
        assert!(!dir.path().join("p").exists());
    }

    #[test]
    fn listings_skip_what_deletes_remove_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::new(dir.path());
        store.put_if_absent(&key("l/kept"), &[b"x"]).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in 0..300 {
                    let k = key(&format!("l/d{}/{n}", n % 3));
                    store.put_if_absent(&k, &[b"x"]).unwrap();
                    store.delete(&k).unwrap();
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let listed = store.list(&key("l"), &Cancel::never()).unwrap();
                assert!(listed.iter().any(|o| o.key.as_str() == "l/kept"));
            }
        });
    }

    #[test]
    fn a_key_cannot_be_both_an_object_and_a_prefix_of_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::new(dir.path());
        store.put_if_absent(&key("a/b/c"), &[b"1"]).unwrap();
        refuses_keys_that_are_prefixes(&store);
        // Neither left anything behind, and the object that was there is intact.
        let listed = store.list(&key("a"), &Cancel::never()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(store.get(&key("a/b/c")).unwrap(), b"1");
        // Such keys hold no object: reads say so the same way as for any missing key.
        assert!(store.get(&key("a/b")).unwrap_err().is_not_found());
        assert!(
            store
                .get_range(&key("a/b"), 0, 1)
                .unwrap_err()
                .is_not_found()
        );
        assert!(store.get(&key("a/b/c/d")).unwrap_err().is_not_found());
        assert_eq!(store.head(&key("a/b/c/d")).unwrap(), None);
        store.delete(&key("a/b")).unwrap();
        store.delete(&key("a/b/c/d")).unwrap();
        assert_eq!(store.get(&key("a/b/c")).unwrap(), b"1");
        // Deleting the object takes its emptied directories with it, not the root.
        store.delete(&key("a/b/c")).unwrap();
        assert!(!dir.path().join("a").exists());
        assert!(dir.path().exists());
        assert_eq!(
            store.put_if_absent(&key("a/b"), &[b"2"]).unwrap(),
            PutOutcome::Created
        );
    }
}
