//! The frame of an object in an encrypted repository (format version 2): a 96-byte header, then
//! the object's plain frame (`object`: its 48-byte header and compressed bytes) sealed by
//! `crypto` under one of the repository's data keys.
//!
//! Sealing the plain frame whole keeps the original length and CRC-32C, a fingerprint of the
//! content, out of sight, and leaves every check of the plain frame in force after opening. The
//! header says which data key sealed the object and with which salt; the object's key (its name
//! in the repository) and the header are authenticated with every chunk, so an object copied
//! over another name, or a header edited, fails to open. Layout (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `TIDEMARK` |
//! | 8 | 2 | format version (2) |
//! | 10 | 1 | reserved, zero (the compression is the sealed frame's) |
//! | 11 | 1 | cipher (1: AES-256-GCM in the STREAM construction) |
//! | 12 | 4 | data key id |
//! | 16 | 8 | reserved, zero |
//! | 24 | 8 | stored length (bytes after the header) |
//! | 32 | 4 | reserved, zero |
//! | 36 | 4 | CRC-32C of the stored bytes |
//! | 40 | 4 | chunk length (65536) |
//! | 44 | 32 | salt |
//! | 76 | 16 | reserved, zero |
//! | 92 | 4 | CRC-32C of bytes 0..92 |
//!
//! The stored length and CRC sit where version 1 has them, so storage damage is told from a
//! failed authentication without any key.

use super::crypto::{self, CHUNK_LEN, DataKey, SALT_LEN};
use super::object::{EncodedObject, HEADER_LEN, MAGIC, ObjectError, check_frame_header};
use crate::storage::ObjectKey;

pub const SEALED_HEADER_LEN: usize = 96;
pub const SEALED_FORMAT_VERSION: u16 = 2;
/// The one cipher: AES-256-GCM, STREAM over 64 KiB chunks (`crypto`).
const AES_256_GCM_STREAM: u8 = 1;

/// What a sealed object's header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedHeader {
    pub key_id: u32,
    pub stored_len: u64,
    pub stored_crc: u32,
    pub salt: [u8; SALT_LEN],
}

impl SealedHeader {
    pub fn encode(&self) -> [u8; SEALED_HEADER_LEN] {
        let mut bytes = [0u8; SEALED_HEADER_LEN];
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[8..10].copy_from_slice(&SEALED_FORMAT_VERSION.to_le_bytes());
        bytes[11] = AES_256_GCM_STREAM;
        bytes[12..16].copy_from_slice(&self.key_id.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.stored_len.to_le_bytes());
        bytes[36..40].copy_from_slice(&self.stored_crc.to_le_bytes());
        bytes[40..44].copy_from_slice(&(CHUNK_LEN as u32).to_le_bytes());
        bytes[44..76].copy_from_slice(&self.salt);
        let header_crc = crc32c::crc32c(&bytes[0..92]);
        bytes[92..96].copy_from_slice(&header_crc.to_le_bytes());
        bytes
    }

    /// Decodes the header at the start of `bytes`, which [`is_sealed`] said is a sealed object's.
    pub fn decode(bytes: &[u8]) -> Result<SealedHeader, ObjectError> {
        check_frame_header(bytes, SEALED_HEADER_LEN, SEALED_FORMAT_VERSION)?;
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        if bytes[11] != AES_256_GCM_STREAM {
            return Err(ObjectError::UnknownCipher(bytes[11]));
        }
        if u32_at(40) != CHUNK_LEN as u32 {
            return Err(ObjectError::UnknownChunkLength(u32_at(40)));
        }
        Ok(SealedHeader {
            key_id: u32_at(12),
            stored_len: u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes")),
            stored_crc: u32_at(36),
            salt: bytes[44..76].try_into().expect("32 bytes"),
        })
    }
}

/// Whether `stored` begins like a sealed object (magic and version 2) rather than a plain one.
/// Nothing is trusted yet: the header is checked when decoded.
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.len() >= 10
        && &stored[0..8] == MAGIC
        && u16::from_le_bytes([stored[8], stored[9]]) == SEALED_FORMAT_VERSION
}

/// What every chunk of the object under `key` authenticates besides itself: a label, the key,
/// and the header without its two CRCs (the stored CRC is computed over the sealed bytes).
fn associated_data(key: &ObjectKey, header: &[u8; SEALED_HEADER_LEN]) -> Vec<u8> {
    let name = key.as_str().as_bytes();
    let mut data = Vec::with_capacity(24 + name.len() + 88);
    data.extend_from_slice(b"tidemark object v2\0");
    data.extend_from_slice(&(name.len() as u32).to_le_bytes());
    data.extend_from_slice(name);
    data.extend_from_slice(&header[0..36]);
    data.extend_from_slice(&header[40..92]);
    data
}

/// Seals the plain object `object`, to be stored under `key`, with `data_key` and `salt`: the
/// whole stored object, header first.
pub fn seal(
    key: &ObjectKey,
    data_key: &DataKey,
    salt: [u8; SALT_LEN],
    object: &EncodedObject,
) -> Vec<u8> {
    let plain_len = HEADER_LEN + object.body.len();
    let mut header = SealedHeader {
        key_id: data_key.id(),
        stored_len: crypto::sealed_len(plain_len) as u64,
        stored_crc: 0,
        salt,
    };
    let associated = associated_data(key, &header.encode());
    let mut stored = Vec::with_capacity(SEALED_HEADER_LEN + crypto::sealed_len(plain_len));
    stored.resize(SEALED_HEADER_LEN, 0);
    stored.extend_from_slice(&object.header_bytes());
    stored.extend_from_slice(&object.body);
    crypto::seal_in_place(data_key, &salt, &associated, &mut stored, SEALED_HEADER_LEN);
    header.stored_crc = crc32c::crc32c(&stored[SEALED_HEADER_LEN..]);
    stored[..SEALED_HEADER_LEN].copy_from_slice(&header.encode());
    stored
}

/// Checks the length and CRC-32C of sealed object `stored` against its header: storage damage,
/// found without a key.
pub fn check_stored(stored: &[u8]) -> Result<SealedHeader, ObjectError> {
    let header = SealedHeader::decode(stored)?;
    let body = &stored[SEALED_HEADER_LEN..];
    if body.len() as u64 != header.stored_len {
        return Err(ObjectError::WrongLength {
            actual: stored.len() as u64,
            expected: (SEALED_HEADER_LEN as u64).saturating_add(header.stored_len),
        });
    }
    let stored_crc = crc32c::crc32c(body);
    if stored_crc != header.stored_crc {
        return Err(ObjectError::StoredChecksum {
            actual: stored_crc,
            expected: header.stored_crc,
        });
    }
    Ok(header)
}

/// Opens sealed object `stored`, read from `key`, with `data_key` (the one its header names, as
/// [`check_stored`] returned it): afterwards `stored` holds the plain object that was sealed,
/// whose own checks the caller goes on to. On error `stored` is left empty.
pub fn open(
    key: &ObjectKey,
    header: &SealedHeader,
    data_key: &DataKey,
    stored: &mut Vec<u8>,
) -> Result<(), ObjectError> {
    debug_assert_eq!(header.key_id, data_key.id());
    let header_bytes: [u8; SEALED_HEADER_LEN] = stored[..SEALED_HEADER_LEN]
        .try_into()
        .expect("checked to hold a header");
    let associated = associated_data(key, &header_bytes);
    crypto::open_in_place(
        data_key,
        &header.salt,
        &associated,
        stored,
        SEALED_HEADER_LEN,
    )
    .map_err(ObjectError::Unauthentic)
}

#[cfg(test)]
mod tests;
