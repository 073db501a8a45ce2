//! The RDB file's frame, checked as it streams by, without I/O: the `REDIS` + four-digit version
//! header, the EOF opcode (0xFF) before the 8-byte trailer, and the trailer's CRC-64 over
//! everything before it; plus the leading AUX fields (`aux.rs`) that say which server wrote it.
//!
//! Facts from redis `rdb.c` (`rdbSaveRio`, `rdbLoadRio`): the header is `REDIS%04d`; the body ends
//! with `RDB_OPCODE_EOF` (255) and the CRC-64/Jones (CRC-64/REDIS) of every byte from the
//! `R` through that opcode, little-endian; a trailer of 0 means the server runs `rdbchecksum no`
//! and computed none.

mod aux;
mod lzf;
#[cfg(test)]
mod tests;

use anyhow::bail;
use crc_fast::{CrcAlgorithm, Digest};

pub use aux::{AuxFields, AuxReader};

/// The newest RDB format version this code was written against (Redis 7.4 writes 12). A file
/// claiming a newer one is still taken — the frame and CRC have not changed in years — but the
/// caller warns, as a restore target may not load it.
pub const NEWEST_KNOWN_RDB_VERSION: u32 = 12;

/// `REDIS` and four ASCII digits.
const HEADER_LEN: usize = 9;
/// The CRC-64 after the EOF opcode.
const TRAILER_LEN: usize = 8;
/// `RDB_OPCODE_EOF`.
const OPCODE_EOF: u8 = 0xFF;

/// The CRC-64 Redis puts at the end of an RDB, of `bytes` at once (tests and tools).
pub fn crc64(bytes: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Redis, bytes)
}

/// What a whole, checked RDB is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbSummary {
    /// The version its header claims.
    pub version: u32,
    /// Its length, header through trailer.
    pub bytes: u64,
    /// The CRC-64 its trailer holds, which matched; `None` when the trailer is 0 (`rdbchecksum
    /// no` on the server: nothing to compare).
    pub crc64: Option<u64>,
}

/// Checks an RDB fed to it piece by piece ([`RdbChecker::update`]), then as a whole
/// ([`RdbChecker::finish`]). The last 8 bytes seen are held back from the CRC, since only the end
/// of the stream says they are the trailer.
pub struct RdbChecker {
    /// Carry-less multiplication where the CPU has it: many GB/s, so checking the stream costs
    /// almost nothing beside receiving it (table lookups managed 1.4 GB/s).
    digest: Digest,
    header: Vec<u8>,
    version: Option<u32>,
    /// The last (up to) 8 bytes seen: not in the CRC yet.
    held: Vec<u8>,
    /// The last byte given to the CRC: the EOF opcode when the stream has ended.
    last_digested: Option<u8>,
    bytes: u64,
}

impl Default for RdbChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl RdbChecker {
    pub fn new() -> RdbChecker {
        RdbChecker {
            digest: Digest::new(CrcAlgorithm::Crc64Redis),
            header: Vec::with_capacity(HEADER_LEN),
            version: None,
            held: Vec::with_capacity(TRAILER_LEN * 2),
            last_digested: None,
            bytes: 0,
        }
    }

    /// The version the header claims, once its 9 bytes have been seen.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// How many bytes have been fed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Feeds the next bytes of the stream; refuses a header that is not an RDB's as soon as it
    /// is complete.
    pub fn update(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.bytes += bytes.len() as u64;
        if self.version.is_none() {
            let wanted = (HEADER_LEN - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..wanted]);
            if self.header.len() == HEADER_LEN {
                self.version = Some(parse_header(&self.header)?);
            }
        }
        if bytes.len() >= TRAILER_LEN {
            let (body, tail) = bytes.split_at(bytes.len() - TRAILER_LEN);
            let held = std::mem::take(&mut self.held);
            self.digest_bytes(&held);
            self.digest_bytes(body);
            self.held.extend_from_slice(tail);
        } else {
            self.held.extend_from_slice(bytes);
            let surplus = self.held.len().saturating_sub(TRAILER_LEN);
            let out: Vec<u8> = self.held.drain(..surplus).collect();
            self.digest_bytes(&out);
        }
        Ok(())
    }

    fn digest_bytes(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.digest.update(bytes);
            self.last_digested = Some(last);
        }
    }

    /// The stream has ended: checks the EOF opcode and the trailer's CRC-64.
    pub fn finish(self) -> anyhow::Result<RdbSummary> {
        let Some(version) = self.version else {
            bail!(
                "the RDB is {} bytes long, shorter than its 9-byte header",
                self.bytes
            );
        };
        if self.bytes < (HEADER_LEN + 1 + TRAILER_LEN) as u64 {
            bail!(
                "the RDB is {} bytes long, too short to hold the EOF opcode and the 8-byte CRC-64 after its header",
                self.bytes
            );
        }
        if self.last_digested != Some(OPCODE_EOF) {
            bail!(
                "the RDB's byte before its 8-byte trailer is {:#04x}, not the EOF opcode 0xff: the file is cut short or not an RDB",
                self.last_digested.unwrap_or_default()
            );
        }
        let trailer = u64::from_le_bytes(self.held[..].try_into().expect("8 bytes held"));
        let computed = self.digest.finalize();
        if trailer == 0 {
            return Ok(RdbSummary {
                version,
                bytes: self.bytes,
                crc64: None,
            });
        }
        if trailer != computed {
            bail!(
                "the RDB's CRC-64 trailer says {trailer:016x} but its {} bytes give {computed:016x}: the snapshot is corrupt",
                self.bytes
            );
        }
        Ok(RdbSummary {
            version,
            bytes: self.bytes,
            crc64: Some(trailer),
        })
    }
}

/// The version in `REDIS0012`.
fn parse_header(header: &[u8]) -> anyhow::Result<u32> {
    let (magic, digits) = header.split_at(5);
    if magic != b"REDIS" || !digits.iter().all(u8::is_ascii_digit) {
        bail!(
            "the stream does not start with an RDB header (REDIS and a 4-digit version) but with {:?}",
            String::from_utf8_lossy(header)
        );
    }
    let version: u32 = std::str::from_utf8(digits)
        .expect("ASCII digits")
        .parse()
        .expect("four digits");
    if version == 0 {
        bail!("the RDB header claims version 0, which no Redis writes");
    }
    Ok(version)
}
