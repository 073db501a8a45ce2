//! archive-get: fetch one archived WAL file, verify it, and put it where PostgreSQL asked.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::pg::WalFileName;
use crate::repo::Stanza;
use crate::repo::object::{self, ObjectHeader};
use crate::storage::durable;

/// What archive-get did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetOutcome {
    /// The verified file is at the destination.
    Restored(ObjectHeader),
    /// The archive does not hold this file. Not an error: PostgreSQL asks for names that do not
    /// exist, such as the history file of the next timeline.
    NotArchived,
}

/// A temporary file beside the destination that is removed unless it was renamed into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Fetches `file_name` from `stanza` into `destination`.
///
/// The object's stored checksum is checked before decompressing, its original length and
/// checksum while decompressing into a temporary file beside `destination`; only a file that
/// passed every check is renamed to `destination`. On any error `destination` is not created.
pub fn get_wal_file(
    stanza: &Stanza<'_>,
    file_name: &str,
    destination: &Path,
) -> anyhow::Result<GetOutcome> {
    let name = WalFileName::parse(file_name)?;
    let Some(stored) = stanza
        .get_wal(name)
        .context("read it from the repository")?
    else {
        return Ok(GetOutcome::NotArchived);
    };
    let dest_name = destination.file_name().with_context(|| {
        format!(
            "destination '{}' does not end in a file name",
            destination.display()
        )
    })?;
    let dest_dir = match destination.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dest_name = dest_name.to_string_lossy();
    let temp_path = durable::temp_path(dest_dir, &dest_name);
    let file = durable::create_temp(&temp_path, 0o600)
        .with_context(|| format!("create {}", temp_path.display()))?;
    let mut temp = TempFile(Some(temp_path));
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let key = stanza.wal_key(name);
    let location = stanza.repository().storage().location();
    let header = object::decode_into(&stored, &mut writer).with_context(|| {
        format!(
            "archived object {key} in {location} is damaged; nothing was written to {}",
            destination.display()
        )
    })?;
    writer
        .flush()
        .with_context(|| format!("write {}", destination.display()))?;
    if let WalFileName::Segment(_) | WalFileName::Partial(_) = name {
        let expected = u64::from(stanza.expected_cluster().segment_size.bytes());
        if header.original_len != expected {
            bail!(
                "archived object {key} in {location} holds {} bytes, not a {expected}-byte segment; nothing was written to {}",
                header.original_len,
                destination.display()
            );
        }
    }
    let temp_path = temp.0.take().expect("set above");
    if let Err(e) = fs::rename(&temp_path, destination) {
        let _ = fs::remove_file(&temp_path);
        return Err(e).with_context(|| {
            format!(
                "rename {} to {}",
                temp_path.display(),
                destination.display()
            )
        });
    }
    // What an earlier, killed call left beside the destination would stay there for good.
    durable::remove_abandoned(dest_dir, &dest_name);
    Ok(GetOutcome::Restored(header))
}
