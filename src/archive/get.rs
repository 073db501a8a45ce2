//! archive-get: fetch one archived WAL file, verify it, and put it where PostgreSQL asked.
//!
//! What is read and written is bounded by what the file can be, before it is read or written:
//! the object is read through a range no longer than the largest object a file of its kind can
//! be stored as (so no store, S3 included, hands over or buffers more), and its header must
//! promise exactly one segment (or at most a history file's limit) before a byte reaches the
//! destination's directory. Decompression then stops at the promised length.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::pg::page::{LONG_HEADER_LEN, PageHeader};
use crate::pg::{SegmentName, WalFileName};
use crate::repo::object::{self, ObjectError, ObjectHeader};
use crate::repo::{BoundedRead, Stanza};
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
    let stored = match stanza
        .read_at_most(&key, expected.limit())
        .context("read it from the repository")?
    {
        BoundedRead::Object(stored) => match stanza.repository().codec().open(&key, stored) {
            Ok(opened) => opened.frame,
            Err(why) => bail!(
                "archived object {key} in {location}: {why}; {}",
                nothing_written()
            ),
        },
        BoundedRead::Missing => return Ok(GetOutcome::NotArchived),
        BoundedRead::TooLarge { limit } => bail!(
            "archived object {key} in {location} is larger than the {limit} bytes any object of a {}-byte file can be stored in: it is not one Tidemark archived for this stanza; nothing was read past that",
            expected.limit()
        ),
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
    let mut writer = FirstPage {
        inner: BufWriter::with_capacity(1 << 20, file),
        first: Vec::with_capacity(LONG_HEADER_LEN),
    };
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
    if let WalFileName::Segment(segment) | WalFileName::Partial(segment) = name
        && let Err(problem) = check_first_page(segment, stanza, &writer.first)
    {
        bail!(
            "archived object {key} in {location} does not hold segment {}: {problem}; it was put under another segment's name; {}",
            segment,
            nothing_written()
        );
    }
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

/// A writer that keeps the first [`LONG_HEADER_LEN`] bytes that pass through it: a segment's
/// long page header.
struct FirstPage<W: Write> {
    inner: W,
    first: Vec<u8>,
}

impl<W: Write> Write for FirstPage<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        let wanted = (LONG_HEADER_LEN - self.first.len()).min(written);
        self.first.extend_from_slice(&bytes[..wanted]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Refuses a segment whose first page is another segment's or another cluster's: its object
/// passed every checksum, so only its name can be wrong. An object copied over another
/// segment's name is otherwise whole, and PostgreSQL would replay it as that segment.
fn check_first_page(segment: SegmentName, stanza: &Stanza<'_>, first: &[u8]) -> Result<(), String> {
    let expected = stanza.expected_cluster();
    let header = PageHeader::decode(first)
        .filter(|header| header.long.is_some())
        .ok_or("its first page has no long page header")?;
    let long = header.long.expect("checked above");
    let start = segment
        .start_lsn(expected.segment_size)
        .map_err(|e| e.to_string())?;
    if header.page_address != start {
        return Err(format!(
            "its first page is at {}, not at {start}",
            header.page_address
        ));
    }
    if long.system_id != expected.system_id {
        return Err(format!(
            "its first page names system identifier {}, not the stanza's {}",
            long.system_id, expected.system_id
        ));
    }
    if header.timeline.0 > segment.timeline.0 {
        return Err(format!(
            "its first page is of timeline {}, later than the name's {}",
            header.timeline.0, segment.timeline.0
        ));
    }
    Ok(())
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
