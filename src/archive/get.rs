//! archive-get: fetch one archived WAL file, verify it, and put it where PostgreSQL asked.
//!
//! What is read and written is bounded by what the file can be, before it is read or written:
//! the object is read through a range no longer than the largest object a file of its kind can
//! be stored as (so no store, S3 included, hands over or buffers more), and its header must
//! promise exactly one segment (or at most a history file's limit) before a byte reaches the
//! destination's directory. Decompression then stops at the promised length.

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::pg::WalFileName;
use crate::repo::Stanza;
use crate::repo::object::{self, HEADER_LEN, ObjectError, ObjectHeader};
use crate::storage::{ByteRange, Cancel, ObjectKey, StorageError, durable};

/// What archive-get did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetOutcome {
    /// The verified file is at the destination.
    Restored(ObjectHeader),
    /// The archive does not hold this file. Not an error: PostgreSQL asks for names that do not
    /// exist, such as the history file of the next timeline.
    NotArchived,
}

/// The largest history or backup history file: archive-push refuses larger ones.
const HISTORY_FILE_LIMIT: u64 = 16 << 20;

/// What the file behind an object may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OriginalLength {
    /// A segment or `.partial` file: exactly the stanza's segment size.
    Exactly(u64),
    /// A history or backup history file.
    AtMost(u64),
}

impl OriginalLength {
    fn of(name: WalFileName, stanza: &Stanza<'_>) -> OriginalLength {
        match name {
            WalFileName::Segment(_) | WalFileName::Partial(_) => {
                OriginalLength::Exactly(u64::from(stanza.expected_cluster().segment_size.bytes()))
            }
            WalFileName::History(_) | WalFileName::BackupHistory { .. } => {
                OriginalLength::AtMost(HISTORY_FILE_LIMIT)
            }
        }
    }

    fn limit(self) -> u64 {
        match self {
            OriginalLength::Exactly(len) | OriginalLength::AtMost(len) => len,
        }
    }

    /// The largest object a file of this length can be stored as: the header, then the bytes
    /// as compressed. Neither zstd nor lz4 frames grow incompressible input by more than a
    /// block header per block and a frame header (zstd: n/256 + 64 bytes at most, lz4: 4 bytes
    /// per 64 KiB block and 27), well inside n/128 + 64 KiB.
    fn object_limit(self) -> u64 {
        let len = self.limit();
        HEADER_LEN as u64 + len + len / 128 + (64 << 10)
    }
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
/// The object is read no further than the largest object its kind can be, and its header must
/// promise a file of the right length before anything is written. Then its stored checksum is
/// checked before decompressing, its original length and checksum while decompressing into a
/// temporary file beside `destination`; only a file that passed every check is renamed to
/// `destination`. On any error `destination` is not created.
pub fn get_wal_file(
    stanza: &Stanza<'_>,
    file_name: &str,
    destination: &Path,
) -> anyhow::Result<GetOutcome> {
    let name = WalFileName::parse(file_name)?;
    let dest_name = destination.file_name().with_context(|| {
        format!(
            "destination '{}' does not end in a file name",
            destination.display()
        )
    })?;
    let expected = OriginalLength::of(name, stanza);
    let key = stanza.wal_key(name);
    let location = stanza.repository().storage().location();
    let nothing_written = || format!("nothing was written to {}", destination.display());
    let Some(stored) = read_bounded(stanza, &key, expected)? else {
        return Ok(GetOutcome::NotArchived);
    };
    let header = ObjectHeader::decode(&stored).with_context(|| {
        format!(
            "archived object {key} in {location} is damaged; {}",
            nothing_written()
        )
    })?;
    if let Err(problem) = check_original_length(&header, expected) {
        bail!(
            "archived object {key} in {location} {problem}; {}",
            nothing_written()
        );
    }
    let dest_dir = durable::parent_dir(destination);
    let dest_name = dest_name.to_string_lossy();
    let temp_path = durable::temp_path(dest_dir, &dest_name);
    let file = durable::create_temp(&temp_path, 0o600)
        .with_context(|| format!("create {}", temp_path.display()))?;
    let mut temp = TempFile(Some(temp_path.clone()));
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    // Decompression stops at the header's original length, checked above.
    let header = match object::decode_into(&stored, &mut writer) {
        Ok(header) => header,
        // The object may be fine: the destination's disk failed (or is full).
        Err(ObjectError::Write(e)) => {
            return Err(e)
                .with_context(|| format!("write {}; {}", temp_path.display(), nothing_written()));
        }
        Err(damage) => {
            return Err(damage).with_context(|| {
                format!(
                    "archived object {key} in {location} is damaged; {}",
                    nothing_written()
                )
            });
        }
    };
    writer
        .flush()
        .with_context(|| format!("write {}", destination.display()))?;
    temp.0 = None;
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

/// The whole object under `key`, or `None` if there is none. Read through a range one byte
/// longer than the largest object a file of length `expected` can be stored as, so an object
/// larger than that is refused without reading (or, from S3, downloading) the rest of it.
fn read_bounded(
    stanza: &Stanza<'_>,
    key: &ObjectKey,
    expected: OriginalLength,
) -> anyhow::Result<Option<Vec<u8>>> {
    let storage = stanza.repository().storage();
    let limit = expected.object_limit();
    let doing = || format!("read {key} from {}", storage.location());
    // The range keeps the store (an S3 server) from sending more; `take`, a server that
    // ignored it from being read further.
    let reader = match storage.get_reader(key, ByteRange::new(0, limit + 1), &Cancel::never()) {
        Ok(reader) => reader,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e).context("read it from the repository"),
    };
    let mut reader = reader.take(limit + 1);
    // A segment's object is read into one allocation; other files are small.
    let mut stored = match expected {
        OriginalLength::Exactly(_) => Vec::with_capacity(limit as usize + 1),
        OriginalLength::AtMost(_) => Vec::new(),
    };
    reader
        .read_to_end(&mut stored)
        .map_err(|e| StorageError::from_io(doing(), e))
        .context("read it from the repository")?;
    if stored.len() as u64 > limit {
        bail!(
            "archived object {key} in {} is larger than the {limit} bytes any object of a {}-byte file can be stored in: it is not one Tidemark archived for this stanza; nothing was read past that",
            storage.location(),
            expected.limit()
        );
    }
    Ok(Some(stored))
}

/// Refuses an object whose header promises a file of another length than `expected`, saying
/// what it holds.
fn check_original_length(header: &ObjectHeader, expected: OriginalLength) -> Result<(), String> {
    match expected {
        OriginalLength::Exactly(len) if header.original_len != len => Err(format!(
            "holds {} bytes, not a {len}-byte segment",
            header.original_len
        )),
        OriginalLength::AtMost(limit) if header.original_len > limit => Err(format!(
            "holds {} bytes, more than the {limit} any history file may have",
            header.original_len
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::compress::Compression;

    #[test]
    fn no_compression_grows_a_file_past_its_object_limit() {
        // Incompressible bytes are the worst case for every compression.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..(1 << 20) + 12_345)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let limit = OriginalLength::Exactly(noise.len() as u64).object_limit();
        for compression in [Compression::Zstd, Compression::Lz4, Compression::None] {
            let object = object::encode(compression, 1, &noise).unwrap();
            let stored = (HEADER_LEN + object.body.len()) as u64;
            assert!(stored <= limit, "{compression:?}: {stored} > {limit}");
        }
    }

    #[test]
    fn a_header_must_promise_a_file_of_the_right_length() {
        let header = |original_len| ObjectHeader {
            compression: Compression::None,
            original_len,
            stored_len: 0,
            original_crc: 0,
            stored_crc: 0,
        };
        let segment = OriginalLength::Exactly(16 << 20);
        assert!(check_original_length(&header(16 << 20), segment).is_ok());
        let short = check_original_length(&header(1 << 20), segment).unwrap_err();
        assert_eq!(short, "holds 1048576 bytes, not a 16777216-byte segment");
        assert!(check_original_length(&header((16 << 20) + 1), segment).is_err());
        let history = OriginalLength::AtMost(HISTORY_FILE_LIMIT);
        assert!(check_original_length(&header(120), history).is_ok());
        assert!(check_original_length(&header(HISTORY_FILE_LIMIT + 1), history).is_err());
    }
}
