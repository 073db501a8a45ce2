//! Temporary files beside their destination: unique names that say which host and process
//! wrote them, exclusive creation, and removal of what writers that no longer exist left behind.
//!
//! A name is `.<stem>.<host>.<pid>.<n>.tmp`. A dot keeps readers (and PostgreSQL, in `pg_wal`)
//! from taking it for real data; host and process ID let a later writer tell, safely, that the
//! one that made it is gone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of concurrent writes within one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// This machine's name, reduced to characters safe in a file name. A directory may be shared
/// by several hosts, and a process ID says whether a writer is alive only on its own host.
pub fn host_name() -> String {
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
pub fn create(path: &Path, mode: u32) -> io::Result<File> {
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
        let Some(pid) = rest
            .strip_suffix(".tmp")
            .and_then(|r| r.split('.').next())
            .and_then(|pid| pid.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        if pid.as_raw_nonzero().get() as u32 != std::process::id()
            && rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a reader sees all of
/// them or none. Not fsynced: for files that are checked before use or may be lost.
pub fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let stem = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = temp_path(dir, &stem);
    fs::write(&temporary, bytes)?;
    fs::rename(&temporary, path).inspect_err(|_| {
        let _ = fs::remove_file(&temporary);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_leftovers_of_dead_writers_on_this_host_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
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
    fn a_leftover_under_our_own_name_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = temp_path(dir.path(), "seg");
        fs::write(&path, b"left by a dead process that had our pid").unwrap();
        drop(create(&path, 0o600).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"");
    }
}
