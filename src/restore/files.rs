//! Writing a backup's files: each from its chunks, every chunk and the whole file checked, with
//! its mode and modification time back and fsynced, in parallel on all cores, each chunk counted
//! in the restore's progress. With `--delta`, a file that already holds exactly the backup's
//! content (size and CRC-32C) is kept.
//!
//! A file is written in place, not through a temporary name: one cut short by a crash or a
//! damaged chunk cannot pass for restored, since `--delta` trusts a file only when its CRC-32C
//! matches, and the directory cannot be started before the restore completes (see
//! [`super::pg_control`]).

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};

use super::places::Places;
use crate::progress::Progress;
use crate::repo::Stanza;
use crate::repo::catalog::BackupEntry;
use crate::storage::durable;

/// What writing the files did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Written {
    pub files: u64,
    pub kept: u64,
    pub bytes: u64,
}

/// Writes `files` to their places, on all cores; the first failure stops the others and is
/// returned, naming the file.
pub fn write_all(
    stanza: &Stanza<'_>,
    files: &[&BackupEntry],
    places: &Places,
    delta: bool,
    progress: &Progress,
) -> anyhow::Result<Written> {
    let next = Mutex::new(files.iter());
    let totals = Mutex::new(Written::default());
    let failed = AtomicBool::new(false);
    let worker = || -> anyhow::Result<()> {
        while !failed.load(Ordering::Relaxed) {
            let Some(entry) = next.lock().expect("no panic while locked").next().copied() else {
                return Ok(());
            };
            let path = places.destination(&entry.path);
            if delta && matches(&path, entry) {
                totals.lock().expect("no panic while locked").kept += 1;
                progress.add_done(entry.size);
                continue;
            }
            let written = write_file(stanza, entry, &path, progress).inspect_err(|_| {
                failed.store(true, Ordering::Relaxed);
            })?;
            let mut totals = totals.lock().expect("no panic while locked");
            totals.files += 1;
            totals.bytes += written;
        }
        Ok(())
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(worker)).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a restore worker does not panic"))
            .collect::<anyhow::Result<Vec<()>>>()
    })?;
    Ok(totals.into_inner().expect("workers have ended"))
}

/// Writes one file at `path` from its chunks, checking each chunk and the whole file's CRC-32C,
/// gives it its mode and modification time, and fsyncs it. Returns its size.
pub fn write_file(
    stanza: &Stanza<'_>,
    entry: &BackupEntry,
    path: &Path,
    progress: &Progress,
) -> anyhow::Result<u64> {
    write_checked(stanza, entry, path, progress).with_context(|| format!("write {}", entry.path))
}

fn write_checked(
    stanza: &Stanza<'_>,
    entry: &BackupEntry,
    path: &Path,
    progress: &Progress,
) -> anyhow::Result<u64> {
    let mut file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut crc = 0u32;
    let mut chunk = Vec::new();
    for reference in &entry.chunks {
        stanza.blobs().get(&reference.name, &mut chunk)?;
        crc = crc32c::crc32c_append(crc, &chunk);
        durable::write_in_pieces(&mut file, &chunk)
            .with_context(|| format!("write {}", path.display()))?;
        progress.add_done(chunk.len() as u64);
    }
    if Some(crc) != entry.crc32c {
        bail!(
            "the restored content has CRC-32C {crc:08x}, the backup recorded {}",
            entry
                .crc32c
                .map_or_else(|| "none".to_owned(), |c| format!("{c:08x}"))
        );
    }
    file.set_permissions(fs::Permissions::from_mode(entry.mode & 0o7777))
        .with_context(|| format!("set the mode of {}", path.display()))?;
    file.set_modified(UNIX_EPOCH + Duration::from_secs(entry.mtime))
        .with_context(|| format!("set the modification time of {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    Ok(entry.size)
}

/// Whether the file at `path` already holds exactly this entry's content.
pub fn matches(path: &Path, entry: &BackupEntry) -> bool {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return false;
    };
    if !metadata.is_file() || metadata.len() != entry.size {
        return false;
    }
    // Streamed: relation files run to 1 GiB.
    let crc = File::open(path).and_then(|mut file| {
        let mut crc = 0u32;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut buffer)? {
                0 => return Ok(crc),
                n => crc = crc32c::crc32c_append(crc, &buffer[..n]),
            }
        }
    });
    entry.crc32c.is_some() && crc.ok() == entry.crc32c
}
