//! `source restore NAME --key K --to-file PATH`: one object of a bucket snapshot as a local
//! file, written under a temporary name, fsynced, renamed into place (never over a file there)
//! and its directory fsynced, so a crash leaves the whole file or none.

use std::path::Path;

use anyhow::{Context, bail};

use super::manifest::ObjectEntry;
use crate::repo::blob_pool::BlobPool;
use crate::storage::durable;

/// Writes `entry`'s content to `path`; refused if `path` exists.
pub fn restore_to_file(
    pool: &BlobPool<'_>,
    entry: &ObjectEntry,
    path: &Path,
) -> anyhow::Result<()> {
    if path.symlink_metadata().is_ok() {
        bail!(
            "{} exists: name a path where nothing is, or remove it first",
            path.display()
        );
    }
    let dir = durable::parent_dir(path);
    let stem = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = durable::temp_path(dir, &stem);
    let written = write_content(pool, entry, &temporary).and_then(|()| {
        if durable::rename_no_replace(&temporary, path)
            .with_context(|| format!("rename {} to {}", temporary.display(), path.display()))?
        {
            Ok(())
        } else {
            bail!(
                "{} appeared while the object was written: it was left as it is",
                path.display()
            )
        }
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    durable::fsync_dir(dir).with_context(|| format!("fsync {}", dir.display()))
}

fn write_content(pool: &BlobPool<'_>, entry: &ObjectEntry, temporary: &Path) -> anyhow::Result<()> {
    let mut file = durable::create_temp(temporary, 0o644)
        .with_context(|| format!("create {}", temporary.display()))?;
    let mut chunk = Vec::new();
    for reference in &entry.chunks {
        pool.get_chunk(reference, &mut chunk)
            .with_context(|| format!("read {:?} from the repository", entry.key))?;
        durable::write_in_pieces(&mut file, &chunk)
            .with_context(|| format!("write {}", temporary.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("fsync {}", temporary.display()))
}
