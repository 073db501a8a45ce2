//! Reading one object and checking everything it carries: the header, the stored and original
//! CRC-32C and length (`repo::object`), the length its kind must have, and for a chunk the
//! name it is stored under (the hash of its content). Reads are bounded before they start by the largest object of that
//! kind; content is checked as it is decompressed and kept only when the caller needs it. In an
//! encrypted repository every object is opened (authenticated and decrypted) first, so even the
//! fast checks learn which data key sealed it.

use std::collections::BTreeMap;
use std::io;

use crate::repo::ChunkHash;
use crate::repo::codec::Codec;
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
    /// The content must hash to this name with this hash (`Codec::chunk_namer`): a chunk.
    ChunkName(String, ChunkHash),
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
    /// The header of its plain frame.
    pub header: ObjectHeader,
    /// The data key that sealed it, in an encrypted repository.
    pub key_id: Option<u32>,
    /// The content, when the job asked for it.
    pub content: Option<Vec<u8>>,
}

/// How many of the objects read each data key sealed, and how many were not sealed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub by_key: BTreeMap<u32, u64>,
    pub unencrypted: u64,
}

impl KeyCounts {
    pub fn count(&mut self, key_id: Option<u32>) {
        match key_id {
            Some(id) => *self.by_key.entry(id).or_default() += 1,
            None => self.unencrypted += 1,
        }
    }
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
    let codec = stanza.repository().codec();
    let outcome = match codec.open(&job.key, stored) {
        Ok(opened) => check_stored(codec, &opened.frame, job).map(|checked| Checked {
            key_id: opened.key_id,
            ..checked
        }),
        Err(why) => Err(why.to_string()),
    };
    ReadResult { bytes, outcome }
}

fn failed(bytes: u64, why: String) -> ReadResult {
    ReadResult {
        bytes,
        outcome: Err(why),
    }
}

/// Checks the plain frame of a stored object against what `job` expects.
fn check_stored(codec: &Codec, stored: &[u8], job: &ReadJob) -> Result<Checked, String> {
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
                key_id: None,
                content: None,
            })
        }
        Content::Discard => {
            object::decode_into(stored, &mut io::sink()).map_err(|e| e.to_string())?;
            Ok(Checked {
                header,
                key_id: None,
                content: None,
            })
        }
        Content::Keep => {
            let mut content = Vec::with_capacity(header.original_len as usize);
            object::decode_into(stored, &mut content).map_err(|e| e.to_string())?;
            Ok(Checked {
                header,
                key_id: None,
                content: Some(content),
            })
        }
        Content::ChunkName(expected, hash) => {
            let mut namer = codec.chunk_namer(*hash).map_err(|e| format!("{e:#}"))?;
            object::decode_into(stored, &mut namer).map_err(|e| e.to_string())?;
            let actual = namer.finish();
            if &actual != expected {
                return Err(format!(
                    "its content hashes to {actual}, not the name it is stored under"
                ));
            }
            Ok(Checked {
                header,
                key_id: None,
                content: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{Compression, WriteSettings};

    fn plain() -> Codec {
        Codec::plain(WriteSettings {
            compression: Compression::Zstd,
            zstd_level: 1,
        })
    }

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
    fn a_chunk_is_checked_against_the_name_it_is_stored_under() {
        let content = b"some chunk".repeat(100);
        let name = plain().chunk_name(&content, ChunkHash::Blake3).unwrap();
        let right = job(
            Length::AtMost(1 << 20),
            Content::ChunkName(name.clone(), ChunkHash::Blake3),
        );
        assert!(check_stored(&plain(), &stored(&content), &right).is_ok());
        let other = stored(b"another chunk");
        let error = check_stored(&plain(), &other, &right).unwrap_err();
        assert!(error.contains("not the name it is stored under"), "{error}");
        // The same content checked as a SHA-256 pool's chunk does not pass under that name.
        let as_sha256 = job(
            Length::AtMost(1 << 20),
            Content::ChunkName(name, ChunkHash::Sha256),
        );
        let error = check_stored(&plain(), &stored(&content), &as_sha256).unwrap_err();
        assert!(error.contains("not the name it is stored under"), "{error}");
    }

    #[test]
    fn a_file_of_the_wrong_length_and_damage_are_named() {
        let segment = stored(&[7u8; 4096]);
        let exactly = |n| job(Length::Exactly(n), Content::Discard);
        assert!(check_stored(&plain(), &segment, &exactly(4096)).is_ok());
        let error = check_stored(&plain(), &segment, &exactly(8192)).unwrap_err();
        assert_eq!(
            error,
            "its header promises 4096 bytes, not the 8192 of a file of its kind"
        );
        let mut flipped = segment.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let error = check_stored(&plain(), &flipped, &exactly(4096)).unwrap_err();
        assert!(error.starts_with("its stored bytes are damaged"), "{error}");
        let error = check_stored(&plain(), &segment[..last], &exactly(4096)).unwrap_err();
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
