//! Reading one object and checking everything it carries: the header, the stored and original
//! CRC-32C and length (`repo::object`), the length its kind must have, and for a chunk the
//! SHA-256 it is named by. Reads are bounded before they start by the largest object of that
//! kind; content is checked as it is decompressed and kept only when the caller needs it.

use std::io::{self, Write};

use sha2::Digest;

use crate::repo::object::{self, ObjectHeader};
use crate::repo::{BoundedRead, Stanza};
use crate::storage::ObjectKey;

/// How many original bytes an object of some kind holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// Exactly this many (a WAL segment).
    Exactly(u64),
    /// At most this many (a chunk, a history file, a record).
    AtMost(u64),
}

impl Length {
    fn limit(self) -> u64 {
        match self {
            Length::Exactly(n) | Length::AtMost(n) => n,
        }
    }

    /// Why an object of listed `size` cannot hold such a file, from its size alone.
    pub fn impossible_size(self, size: u64) -> Option<String> {
        let most = object::max_stored_len(self.limit());
        if size < object::HEADER_LEN as u64 {
            Some(format!(
                "it is {size} bytes, shorter than the {}-byte header of every object: truncated",
                object::HEADER_LEN
            ))
        } else if size > most {
            Some(format!(
                "it is {size} bytes, more than the {most} any object of its kind can be: it is not one Tidemark stored"
            ))
        } else {
            None
        }
    }
}

/// What is checked beyond the object's own checksums, and what is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// The stored bytes only: header, length and their CRC-32C, nothing decompressed.
    StoredOnly,
    /// Nothing: the checksums are all.
    Discard,
    /// The content must have this SHA-256 (lower-case hex): a chunk.
    Sha256(String),
    /// The content is returned, for the caller to parse.
    Keep,
}

/// One object to read.
#[derive(Clone, Debug)]
pub struct ReadJob {
    pub key: ObjectKey,
    pub length: Length,
    pub content: Content,
}

/// An object that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub header: ObjectHeader,
    /// The content, when the job asked for it.
    pub content: Option<Vec<u8>>,
}

/// What reading one object found, and how many stored bytes it read.
#[derive(Debug)]
pub struct ReadResult {
    pub bytes: u64,
    pub outcome: Result<Checked, String>,
}

/// Reads `job`'s object and checks it.
pub fn read_and_check(stanza: &Stanza<'_>, job: &ReadJob) -> ReadResult {
    let stored = match stanza.read_at_most(&job.key, job.length.limit()) {
        Ok(BoundedRead::Object(stored)) => stored,
        Ok(BoundedRead::Missing) => {
            return failed(
                0,
                "it vanished while verify ran (an expire running?)".into(),
            );
        }
        Ok(BoundedRead::TooLarge { limit }) => {
            return failed(
                limit,
                format!("it is larger than the {limit} bytes any object of its kind can be"),
            );
        }
        Err(e) => return failed(0, format!("it cannot be read: {e}")),
    };
    let bytes = stored.len() as u64;
    ReadResult {
        bytes,
        outcome: check_stored(&stored, job),
    }
}

fn failed(bytes: u64, why: String) -> ReadResult {
    ReadResult {
        bytes,
        outcome: Err(why),
    }
}

/// Checks the bytes of a stored object against what `job` expects.
fn check_stored(stored: &[u8], job: &ReadJob) -> Result<Checked, String> {
    let header = ObjectHeader::decode(stored).map_err(|e| e.to_string())?;
    match job.length {
        Length::Exactly(n) if header.original_len != n => {
            return Err(format!(
                "its header promises {} bytes, not the {n} of a file of its kind",
                header.original_len
            ));
        }
        Length::AtMost(n) if header.original_len > n => {
            return Err(format!(
                "its header promises {} bytes, more than the {n} of any file of its kind",
                header.original_len
            ));
        }
        _ => {}
    }
    match &job.content {
        Content::StoredOnly => {
            object::check_stored(stored).map_err(|e| e.to_string())?;
            Ok(Checked {
                header,
                content: None,
            })
        }
        Content::Discard => {
            object::decode_into(stored, &mut io::sink()).map_err(|e| e.to_string())?;
            Ok(Checked {
                header,
                content: None,
            })
        }
        Content::Keep => {
            let mut content = Vec::with_capacity(header.original_len as usize);
            object::decode_into(stored, &mut content).map_err(|e| e.to_string())?;
            Ok(Checked {
                header,
                content: Some(content),
            })
        }
        Content::Sha256(expected) => {
            let mut hashing = HashingWriter(sha2::Sha256::new());
            object::decode_into(stored, &mut hashing).map_err(|e| e.to_string())?;
            let actual = hex(&hashing.0.finalize());
            if &actual != expected {
                return Err(format!(
                    "its content has SHA-256 {actual}, not the one it is named by"
                ));
            }
            Ok(Checked {
                header,
                content: None,
            })
        }
    }
}

/// Hashes what is written to it, keeping none of it.
struct HashingWriter(sha2::Sha256);

impl Write for HashingWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Compression;

    fn stored(content: &[u8]) -> Vec<u8> {
        let object = object::encode(Compression::Zstd, 1, content).unwrap();
        [&object.header_bytes()[..], &object.body].concat()
    }

    fn job(length: Length, content: Content) -> ReadJob {
        ReadJob {
            key: ObjectKey::new("main/blob/aa/x").unwrap(),
            length,
            content,
        }
    }

    #[test]
    fn a_chunk_is_checked_against_the_sha256_it_is_named_by() {
        let content = b"some chunk".repeat(100);
        let sha256 = hex(&sha2::Sha256::digest(&content));
        let right = job(Length::AtMost(1 << 20), Content::Sha256(sha256));
        assert!(check_stored(&stored(&content), &right).is_ok());
        let other = stored(b"another chunk");
        let error = check_stored(&other, &right).unwrap_err();
        assert!(error.contains("not the one it is named by"), "{error}");
    }

    #[test]
    fn a_file_of_the_wrong_length_and_damage_are_named() {
        let segment = stored(&[7u8; 4096]);
        let exactly = |n| job(Length::Exactly(n), Content::Discard);
        assert!(check_stored(&segment, &exactly(4096)).is_ok());
        let error = check_stored(&segment, &exactly(8192)).unwrap_err();
        assert_eq!(
            error,
            "its header promises 4096 bytes, not the 8192 of a file of its kind"
        );
        let mut flipped = segment.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let error = check_stored(&flipped, &exactly(4096)).unwrap_err();
        assert!(error.starts_with("its stored bytes are damaged"), "{error}");
        let error = check_stored(&segment[..last], &exactly(4096)).unwrap_err();
        assert!(error.contains("truncated"), "{error}");
    }

    #[test]
    fn sizes_no_object_of_a_kind_can_have_are_named_from_the_listing() {
        let chunk = Length::AtMost(1 << 20);
        assert!(chunk.impossible_size(40).unwrap().contains("shorter than"));
        let most = object::max_stored_len(1 << 20);
        assert!(chunk.impossible_size(most).is_none());
        assert!(
            chunk
                .impossible_size(most + 1)
                .unwrap()
                .contains("more than")
        );
    }
}
