//! Crash-safe files: the one place that writes a file so that a crash at any moment (SIGKILL,
//! power loss, a failed fsync) leaves either nothing or the whole file under its name, and that
//! says a file is stored only once this process has fsynced it, its directory and every
//! directory above it that may be new.
//!
//! Every writer that promises durability goes through here: the local-directory backend, the
//! restore of a data directory, its `pg_control` ([`replace_with`]) and its recovery settings
//! ([`write_replacing`]). The order is always
//! write → fsync(file) → rename → fsync(directory) → fsync(each parent up to the top):
//! * a file is written under a temporary name beside its destination (`.<stem>.<host>.<pid>.<n>.tmp`;
//!   the dot keeps readers, and PostgreSQL in `pg_wal`, from taking it for data; host and
//!   process ID let a later writer tell safely that its writer is gone);
//! * a file found already there is not trusted to be durable: another process may have renamed
//!   it into place and died, or seen its directory fsync fail, before the entry reached the
//!   disk. [`make_durable`] fsyncs it and its directory chain before anyone reports it stored;
//! * a directory that exists is not trusted either, for the same reasons: the chain is fsynced
//!   on every write, whoever created its directories.
//!
//! Files that are only caches (the hot paths' spools) use [`write_whole`], which is atomic
//! but not fsynced: losing one only costs work. So does, with its own streamed write, the WAL
//! file archive-get hands PostgreSQL: PostgreSQL fsyncs the files it keeps itself.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{CWD, RenameFlags, renameat_with};

/// Distinguishes temporary files of concurrent writes within one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// This machine's name, reduced to characters safe in a file name. A directory may be shared
/// by several hosts, and a process ID says whether a writer is alive only on its own host.
pub fn host_name() -> &'static str {
    static HOST_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST_NAME.get_or_init(read_host_name)
}

/// [`host_name`], asked of the kernel (once a process: every put names a temporary file by it).
fn read_host_name() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if plain.is_empty() {
        "host".to_owned()
    } else {
        plain
    }
}

/// A new temporary path in `dir` for a file that will become `stem`.
pub fn temp_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!(
        ".{stem}.{}.{}.{}.tmp",
        host_name(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Creates the file at a path from [`temp_path`], which must not exist. A file already there can
/// only be a leftover of a dead process that had our process ID, so it is replaced once.
pub fn create_temp(path: &Path, mode: u32) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            open()
        }
        result => result,
    }
}

/// Removes temporary files for `stem` in `dir` whose writer, a process on this host other than
/// this one, no longer exists. Best effort: a file that cannot be judged or removed is left, and
/// no error is reported, since nothing ever reads them.
pub fn remove_abandoned(dir: &Path, stem: &str) {
    let prefix = format!(".{stem}.{}.", host_name());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if writer_is_gone(rest) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes the temporary files in `dir`, whatever file they were to become, whose writer, a
/// process on this host other than this one, no longer exists; best effort, as
/// [`remove_abandoned`]. For directories of small files with names of their own (spools).
pub fn remove_all_abandoned(dir: &Path) {
    let host = format!(".{}.", host_name());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().filter(|n| n.starts_with('.')) else {
            continue;
        };
        // `.<stem>.<host>.<pid>.<n>.tmp`: the host is the last such part before pid and counter.
        let Some(rest) = name.rfind(&host).map(|at| &name[at + host.len()..]) else {
            continue;
        };
        if writer_is_gone(rest) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether the writer of a temporary file is gone, from the part of its name after
/// `.<stem>.<host>.`: `<pid>.<n>.tmp`. A name that does not parse is judged alive.
fn writer_is_gone(rest: &str) -> bool {
    let Some(pid) = rest
        .strip_suffix(".tmp")
        .and_then(|r| r.split('.').next())
        .and_then(|pid| pid.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    pid.as_raw_nonzero().get() as u32 != std::process::id()
        && rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

/// The directory `path` is in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory `dir`, making its entries (files renamed or created in it, directories
/// made in it) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Fsyncs `dir` and each directory above it up to and including `top`, so that every entry
/// along the way is durable whoever created it. `top` must be `dir` or one of its ancestors;
/// otherwise only `dir` and its ancestors up to the root are fsynced.
pub fn fsync_dirs_up_to(dir: &Path, top: &Path) -> io::Result<()> {
    for ancestor in dir.ancestors() {
        if ancestor.as_os_str().is_empty() {
            return fsync_dir(Path::new("."));
        }
        fsync_dir(ancestor)?;
        if ancestor == top {
            break;
        }
    }
    Ok(())
}

/// Makes the file at `path`, which is already there, durable: fsyncs the file, then its
/// directory chain up to `top`. What a writer calls before it reports a file found in place
/// (an earlier, perhaps killed, writer's) as stored.
pub fn make_durable(path: &Path, top: &Path) -> io::Result<()> {
    fsync_file(path)?;
    fsync_dirs_up_to(parent_dir(path), top)
}

/// Fsyncs the file at `path`, which is already there, making its content durable (not its
/// name: that is its directory's, see [`fsync_dir`]).
pub fn fsync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Renames `from` to `to` unless `to` exists. Returns `Ok(false)` if it does.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<bool> {
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

/// Creates `dir` and any missing parents (mode `mode`), then fsyncs it and each directory up to
/// `top`, so the new entries survive a crash.
pub fn create_dir_all(dir: &Path, mode: u32, top: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    fsync_dirs_up_to(dir, top)
}

/// Writes `bytes` to a new file at `path`, replacing any file there, durably: a temporary
/// file beside it is written and fsynced, renamed over `path`, and the directory chain up to
/// `top` fsynced. A crash leaves the old file or the new one, never a mix.
pub fn write_replacing(path: &Path, bytes: &[u8], mode: u32, top: &Path) -> io::Result<()> {
    let written = replace_with(path, top, |temporary| {
        let mut file = create_temp(temporary, mode)?;
        write_in_pieces(&mut file, bytes)?;
        file.sync_all()
    });
    written.map_err(|e| match e {
        ReplaceError::Write(e) | ReplaceError::Rename { source: e, .. } => e,
        ReplaceError::Fsync { source, .. } => source,
    })
}

/// Which step of [`replace_with`] failed.
#[derive(Debug)]
pub enum ReplaceError<E> {
    /// The writer's own failure.
    Write(E),
    /// Renaming the written temporary file over the destination.
    Rename {
        temporary: PathBuf,
        source: io::Error,
    },
    /// Fsyncing the directory chain after the rename; the new file is in place, but not yet
    /// known to be durable.
    Fsync { dir: PathBuf, source: io::Error },
}

/// Puts a new file in place of `path`, replacing any file there, durably: `write` writes the
/// file at the temporary path beside `path` it is given, and must fsync it; that file is then
/// renamed over `path`, and the directory chain up to `top` fsynced. On a failure of the write
/// or the rename the temporary file is removed, and `path` is as it was.
pub fn replace_with<T, E>(
    path: &Path,
    top: &Path,
    write: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, ReplaceError<E>> {
    let dir = parent_dir(path);
    let stem = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = temp_path(dir, &stem);
    let placed = write(&temporary)
        .map_err(ReplaceError::Write)
        .and_then(|value| match fs::rename(&temporary, path) {
            Ok(()) => Ok(value),
            Err(source) => Err(ReplaceError::Rename {
                temporary: temporary.clone(),
                source,
            }),
        });
    if placed.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    let value = placed?;
    fsync_dirs_up_to(dir, top).map_err(|source| ReplaceError::Fsync {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(value)
}

/// The most one `write(2)` is given: a file's writes are cut into pieces of this size.
pub const WRITE_PIECE: usize = 1 << 20;

/// Writes all of `bytes` to `out` in pieces of at most [`WRITE_PIECE`]. One `write(2)` of a
/// whole segment into the page cache cost 50 to 80 ms of CPU on the development VM (ext4, kernel
/// 6.x) where sixteen writes of 1 MiB cost 5 to 6 ms, measured with a C program writing the same
/// 16 MiB buffer to new files; pieces of 256 KiB to 2 MiB were all as cheap.
pub fn write_in_pieces<W: Write + ?Sized>(out: &mut W, bytes: &[u8]) -> io::Result<()> {
    for piece in bytes.chunks(WRITE_PIECE) {
        out.write_all(piece)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a reader sees all of
/// them or none. Not fsynced: for files that are checked before use or may be lost (caches).
pub fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let stem = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = temp_path(dir, &stem);
    // A write cut short (a full disk) must not leave its temporary file behind either.
    File::create(&temporary)
        .and_then(|mut file| write_in_pieces(&mut file, bytes))
        .and_then(|()| fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&temporary);
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A writer that records the length of each write it is given, taking all of it.
    struct PieceLengths(Vec<usize>, Vec<u8>);

    impl Write for PieceLengths {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.push(bytes.len());
            self.1.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_large_buffer_is_written_whole_in_pieces_of_at_most_one_mib() {
        let bytes: Vec<u8> = (0..(5 * WRITE_PIECE + 123)).map(|i| i as u8).collect();
        let mut out = PieceLengths(Vec::new(), Vec::new());
        write_in_pieces(&mut out, &bytes).unwrap();
        assert_eq!(
            out.0,
            [
                WRITE_PIECE,
                WRITE_PIECE,
                WRITE_PIECE,
                WRITE_PIECE,
                WRITE_PIECE,
                123
            ]
        );
        assert!(out.1 == bytes);
    }

    /// The id of a process that has exited: what a writer that died leaves in the names of its
    /// temporary files.
    pub(crate) fn pid_of_an_exited_process() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        dead
    }

    #[test]
    fn only_leftovers_of_dead_writers_on_this_host_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = pid_of_an_exited_process();
        let host = host_name();
        let abandoned = dir.path().join(format!(".seg.{host}.{dead}.0.tmp"));
        let alive = dir.path().join(format!(".seg.{host}.1.0.tmp"));
        let other_host = dir.path().join(format!(".seg.elsewhere.{dead}.0.tmp"));
        let other_stem = dir.path().join(format!(".other.{host}.{dead}.0.tmp"));
        let ours = temp_path(dir.path(), "seg");
        for path in [&abandoned, &alive, &other_host, &other_stem, &ours] {
            fs::write(path, b"partial").unwrap();
        }
        remove_abandoned(dir.path(), "seg");
        assert!(!abandoned.exists(), "the dead writer's leftover is removed");
        assert!(alive.exists(), "pid 1 is alive: its file is kept");
        assert!(
            other_host.exists(),
            "another host's writer cannot be judged: kept"
        );
        assert!(
            other_stem.exists(),
            "only leftovers of the same stem are touched"
        );
        assert!(ours.exists(), "this process's own files are kept");
    }

    #[test]
    fn leftovers_of_every_stem_are_removed_when_their_writer_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let dead = pid_of_an_exited_process();
        let host = host_name();
        let abandoned = [
            dir.path()
                .join(format!(".000000010000000000000003.ok.{host}.{dead}.0.tmp")),
            dir.path()
                .join(format!(".00000002.history.error.{host}.{dead}.7.tmp")),
        ];
        let alive = dir.path().join(format!(".a.ok.{host}.1.0.tmp"));
        let other_host = dir.path().join(format!(".a.ok.elsewhere.{dead}.0.tmp"));
        let ours = temp_path(dir.path(), "b.ok");
        let not_temporary = dir.path().join("000000010000000000000003.ok");
        for path in abandoned
            .iter()
            .chain([&alive, &other_host, &ours, &not_temporary])
        {
            fs::write(path, b"partial").unwrap();
        }
        remove_all_abandoned(dir.path());
        for path in &abandoned {
            assert!(!path.exists(), "{} is removed", path.display());
        }
        for path in [&alive, &other_host, &ours, &not_temporary] {
            assert!(path.exists(), "{} is kept", path.display());
        }
    }

    #[test]
    fn a_leftover_under_our_own_name_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = temp_path(dir.path(), "seg");
        fs::write(&path, b"left by a dead process that had our pid").unwrap();
        drop(create_temp(&path, 0o600).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn renames_never_replace() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        fs::write(&a, b"first").unwrap();
        fs::write(&b, b"second").unwrap();
        assert!(!rename_no_replace(&b, &a).unwrap());
        assert_eq!(fs::read(&a).unwrap(), b"first");
        assert!(rename_no_replace(&b, &c).unwrap());
        assert_eq!(fs::read(&c).unwrap(), b"second");
        assert!(!b.exists());
    }

    #[test]
    fn a_replacement_that_fails_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg_control");
        fs::write(&path, b"old").unwrap();
        let failed = replace_with(&path, dir.path(), |temporary| {
            fs::write(temporary, b"half")?;
            Err::<(), io::Error>(io::Error::other("chunk damaged"))
        });
        assert!(matches!(failed, Err(ReplaceError::Write(_))));
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        // A directory that is not empty cannot be renamed over.
        let occupied = dir.path().join("occupied");
        fs::create_dir(&occupied).unwrap();
        fs::write(occupied.join("inside"), b"x").unwrap();
        let refused = replace_with(&occupied, dir.path(), |temporary| {
            fs::write(temporary, b"new").map(|()| 3)
        });
        assert!(matches!(refused, Err(ReplaceError::Rename { .. })));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary file"
        );

        let size = replace_with(&path, dir.path(), |temporary| {
            fs::write(temporary, b"new").map(|()| 3)
        })
        .unwrap();
        assert_eq!(size, 3);
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_replacing_write_leaves_only_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("x/y");
        create_dir_all(&nested, 0o700, dir.path()).unwrap();
        let path = nested.join("settings");
        write_replacing(&path, b"old", 0o600, dir.path()).unwrap();
        write_replacing(&path, b"new", 0o600, dir.path()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(&nested).unwrap().count(),
            1,
            "no temporary file"
        );
        make_durable(&path, dir.path()).unwrap();
        let err = make_durable(&nested.join("missing"), dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}
