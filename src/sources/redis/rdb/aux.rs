//! The AUX fields at the head of an RDB (`redis-ver`, `ctime`, `repl-id`, `repl-offset`,
//! `aof-base`, …): read from the first bytes of the stream, stopping at the first opcode that
//! is not AUX, so nothing past the metadata is parsed or held.
//!
//! Encodings from redis `rdb.c`/`rdb.h`: an AUX field is opcode 0xFA, then two strings; a
//! string is a length (`rdbLoadLen`: 6-bit, 14-bit, 32- or 64-bit big-endian) and its bytes, or
//! a special encoding (`RDB_ENCVAL`): an 8-, 16- or 32-bit little-endian integer, or LZF.

use std::collections::BTreeMap;

use anyhow::bail;

use super::lzf;

/// `RDB_OPCODE_AUX`.
const OPCODE_AUX: u8 = 0xFA;
/// The metadata is read from at most this many leading bytes; AUX fields are tens of bytes.
const AUX_LIMIT: usize = 64 * 1024;
/// `REDIS` and four digits, before the first opcode.
const HEADER_LEN: usize = 9;

/// The AUX fields an RDB starts with, by name; integer-encoded values in decimal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuxFields {
    pub fields: BTreeMap<String, String>,
}

impl AuxFields {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// `redis-ver`: the version of the server that wrote it.
    pub fn redis_version(&self) -> Option<&str> {
        self.get("redis-ver")
    }

    /// `ctime`: when it was written, in Unix seconds.
    pub fn ctime(&self) -> Option<i64> {
        self.get("ctime")?.parse().ok()
    }

    /// `repl-id`: the replication id the data is at (written when the server keeps one).
    pub fn repl_id(&self) -> Option<&str> {
        self.get("repl-id")
    }

    /// `repl-offset`: the replication offset the data is at.
    pub fn repl_offset(&self) -> Option<u64> {
        self.get("repl-offset")?.parse().ok()
    }

    /// `aof-base`: whether it is the base of an AOF rewrite (1) rather than a snapshot.
    pub fn aof_base(&self) -> Option<bool> {
        self.get("aof-base").map(|value| value != "0")
    }
}

/// Reads the AUX fields from the stream's first bytes as they arrive ([`AuxReader::update`]).
pub struct AuxReader {
    buffer: Vec<u8>,
    /// Where the next unread field starts in `buffer`.
    next: usize,
    fields: AuxFields,
    state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Reading,
    Done,
    /// The fields could not be read; why. Not an error for the snapshot: the CRC decides that.
    Failed(String),
}

impl Default for AuxReader {
    fn default() -> Self {
        Self::new()
    }
}

impl AuxReader {
    pub fn new() -> AuxReader {
        AuxReader {
            buffer: Vec::new(),
            next: HEADER_LEN,
            fields: AuxFields::default(),
            state: State::Reading,
        }
    }

    /// Feeds the next bytes of the stream (from its first byte on).
    pub fn update(&mut self, bytes: &[u8]) {
        if self.state != State::Reading {
            return;
        }
        let room = AUX_LIMIT - self.buffer.len();
        self.buffer
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        while let Some(&opcode) = self.buffer.get(self.next) {
            if opcode != OPCODE_AUX {
                self.state = State::Done;
                break;
            }
            match read_field(&self.buffer[self.next + 1..]) {
                Ok(Some((name, value, used))) => {
                    self.fields.fields.insert(name, value);
                    self.next += 1 + used;
                }
                Ok(None) => break,
                Err(e) => {
                    self.state = State::Failed(format!("{e:#}"));
                    break;
                }
            }
        }
        if self.state == State::Reading && self.buffer.len() == AUX_LIMIT {
            self.state = State::Failed(format!(
                "the AUX fields run past the first {AUX_LIMIT} bytes"
            ));
        }
        if self.state != State::Reading {
            self.buffer = Vec::new();
        }
    }

    /// Where the data after the AUX fields starts in the stream, once known (a test compares
    /// two RDBs of the same data past their differing `ctime`s).
    pub fn aux_end(&self) -> Option<usize> {
        (self.state == State::Done).then_some(self.next)
    }

    /// The fields read, and why reading stopped early if it did (for a warning).
    pub fn finish(self) -> (AuxFields, Option<String>) {
        let problem = match self.state {
            State::Done => None,
            State::Failed(why) => Some(why),
            State::Reading => Some("the stream ended inside its AUX fields".to_owned()),
        };
        (self.fields, problem)
    }
}

/// One AUX field's name and value and how many bytes they took, or `None` if `bytes` does not
/// hold all of it yet.
fn read_field(bytes: &[u8]) -> anyhow::Result<Option<(String, String, usize)>> {
    let Some((name, used_name)) = read_string(bytes)? else {
        return Ok(None);
    };
    let Some((value, used_value)) = read_string(&bytes[used_name..])? else {
        return Ok(None);
    };
    Ok(Some((name, value, used_name + used_value)))
}

/// A length or special encoding (`rdbLoadLenByRef`).
enum Length {
    Plain(u64),
    Int8,
    Int16,
    Int32,
    Lzf,
}

/// Reads an RDB length, and how many bytes it took; `None` if cut short.
fn read_length(bytes: &[u8]) -> anyhow::Result<Option<(Length, usize)>> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    let need = |n: usize| bytes.get(..n);
    Ok(match first >> 6 {
        0 => Some((Length::Plain(u64::from(first & 0x3f)), 1)),
        1 => need(2).map(|b| {
            let len = (u64::from(b[0] & 0x3f) << 8) | u64::from(b[1]);
            (Length::Plain(len), 2)
        }),
        2 => match first {
            0x80 => need(5).map(|b| {
                let len = u32::from_be_bytes(b[1..5].try_into().expect("4 bytes"));
                (Length::Plain(u64::from(len)), 5)
            }),
            0x81 => need(9).map(|b| {
                let len = u64::from_be_bytes(b[1..9].try_into().expect("8 bytes"));
                (Length::Plain(len), 9)
            }),
            other => bail!("unknown RDB length encoding {other:#04x}"),
        },
        _ => match first & 0x3f {
            0 => Some((Length::Int8, 1)),
            1 => Some((Length::Int16, 1)),
            2 => Some((Length::Int32, 1)),
            3 => Some((Length::Lzf, 1)),
            other => bail!("unknown RDB string encoding {other}"),
        },
    })
}

/// Reads a length that must be a plain one (an LZF string's two lengths).
fn read_plain_length(bytes: &[u8]) -> anyhow::Result<Option<(u64, usize)>> {
    match read_length(bytes)? {
        None => Ok(None),
        Some((Length::Plain(len), used)) => Ok(Some((len, used))),
        Some(_) => bail!("an LZF string's length is itself specially encoded"),
    }
}

/// Reads an RDB string (`rdbGenericLoadStringObject`), and how many bytes it took; `None` if
/// cut short.
fn read_string(bytes: &[u8]) -> anyhow::Result<Option<(String, usize)>> {
    let Some((length, at)) = read_length(bytes)? else {
        return Ok(None);
    };
    let rest = &bytes[at..];
    let int = |n: usize| -> Option<(String, usize)> {
        let b = rest.get(..n)?;
        let value = match n {
            1 => i64::from(b[0] as i8),
            2 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            _ => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        };
        Some((value.to_string(), at + n))
    };
    Ok(match length {
        Length::Int8 => int(1),
        Length::Int16 => int(2),
        Length::Int32 => int(4),
        Length::Plain(len) => {
            let len = usize::try_from(len)?;
            rest.get(..len)
                .map(|b| (String::from_utf8_lossy(b).into_owned(), at + len))
        }
        Length::Lzf => {
            let Some((compressed, used_c)) = read_plain_length(rest)? else {
                return Ok(None);
            };
            let Some((plain, used_p)) = read_plain_length(&rest[used_c..])? else {
                return Ok(None);
            };
            let start = used_c + used_p;
            let compressed = usize::try_from(compressed)?;
            let Some(data) = rest.get(start..start + compressed) else {
                return Ok(None);
            };
            let text = lzf::decompress(data, usize::try_from(plain)?)?;
            Some((
                String::from_utf8_lossy(&text).into_owned(),
                at + start + compressed,
            ))
        }
    })
}
