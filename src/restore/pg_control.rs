//! `global/pg_control`, the file without which PostgreSQL refuses to start a data directory, is
//! the last data file a restore puts in place (as pgBackRest does): written under a temporary
//! name and renamed once every other file and directory is durable. A restore that fails or is
//! interrupted therefore leaves a directory that cannot be started by mistake; so that this
//! holds for `--delta` too, the `pg_control` and `recovery.signal` already there are removed,
//! durably, before anything else changes.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::storage::durable::{self, ReplaceError};

/// The path of `pg_control` in a data directory.
pub fn path(pgdata: &Path) -> PathBuf {
    pgdata.join("global").join("pg_control")
}

/// The entry path of `pg_control` in a backup record.
pub const ENTRY: &str = "global/pg_control";

/// Removes `pg_control` and `recovery.signal` from `pgdata` if they are there, and makes the
/// removals durable, so that until the restore ends the directory can be neither started nor
/// mistaken for one set to recover.
pub fn withdraw(pgdata: &Path) -> anyhow::Result<()> {
    for file in [path(pgdata), pgdata.join("recovery.signal")] {
        match fs::remove_file(&file) {
            Ok(()) => durable::fsync_dir(durable::parent_dir(&file))
                .with_context(|| format!("fsync the directory of {}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", file.display())),
        }
    }
    Ok(())
}

/// Writes `pg_control` through `write` (which must fsync what it writes) under a temporary
/// name in `global/`, renames it into place and fsyncs `global/`. On failure the temporary
/// file is removed.
pub fn put_in_place(
    pgdata: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<u64>,
) -> anyhow::Result<u64> {
    let destination = path(pgdata);
    let global = durable::parent_dir(&destination);
    durable::replace_with(&destination, global, write).map_err(|e| match e {
        ReplaceError::Write(e) => e,
        ReplaceError::Rename { temporary, source } => {
            anyhow::Error::new(source).context(format!("rename {} into place", temporary.display()))
        }
        ReplaceError::Fsync { dir, source } => {
            anyhow::Error::new(source).context(format!("fsync {}", dir.display()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withdrawn_then_put_in_place_with_nothing_left_over() {
        let pgdata = tempfile::tempdir().unwrap();
        fs::create_dir(pgdata.path().join("global")).unwrap();
        fs::write(path(pgdata.path()), b"old").unwrap();
        fs::write(pgdata.path().join("recovery.signal"), b"").unwrap();
        withdraw(pgdata.path()).unwrap();
        assert!(!path(pgdata.path()).exists());
        assert!(!pgdata.path().join("recovery.signal").exists());
        withdraw(pgdata.path()).unwrap();

        let failed = put_in_place(pgdata.path(), |temporary| {
            fs::write(temporary, b"half")?;
            anyhow::bail!("chunk damaged")
        });
        assert!(failed.is_err());
        assert_eq!(
            fs::read_dir(pgdata.path().join("global")).unwrap().count(),
            0,
            "a failed write leaves no temporary file and no pg_control"
        );
        let size = put_in_place(pgdata.path(), |temporary| {
            fs::write(temporary, b"new")?;
            Ok(3)
        })
        .unwrap();
        assert_eq!(size, 3);
        assert_eq!(fs::read(path(pgdata.path())).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(pgdata.path().join("global")).unwrap().count(),
            1
        );
    }
}
