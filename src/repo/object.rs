//! The format of every object Tidemark stores: a 48-byte header, then the stored bytes.
//!
//! The header names the compression and carries the length and CRC-32C of the original bytes and
//! of the stored bytes, and a CRC-32C of itself. Reading an object checks all three before a single
//! byte is handed on: the stored checksum before decompressing, the original checksum and length
//! while decompressing into the caller's writer. Layout (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `TIDEMARK` |
//! | 8 | 2 | format version (1) |
//! | 10 | 1 | compression (0 none, 1 lz4 frame, 2 zstd frame) |
//! | 11 | 5 | reserved, zero |
//! | 16 | 8 | original length |
//! | 24 | 8 | stored length (bytes after the header) |
//! | 32 | 4 | CRC-32C of the original bytes |
//! | 36 | 4 | CRC-32C of the stored bytes |
//! | 40 | 4 | reserved, zero |
//! | 44 | 4 | CRC-32C of bytes 0..44 |

use std::io::{self, Write};

use super::compress::{Compression, compress, decompress_into, worth_compressing};

pub const HEADER_LEN: usize = 48;
/// The first bytes of every object, plain or sealed (`sealed`).
pub(super) const MAGIC: &[u8; 8] = b"TIDEMARK";
const FORMAT_VERSION: u16 = 1;

/// What an object's header says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectHeader {
    pub compression: Compression,
    pub original_len: u64,
    pub stored_len: u64,
    pub original_crc: u32,
    pub stored_crc: u32,
}

/// Why an object cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("it is not a Tidemark object (bad magic)")]
    BadMagic,
    #[error("its header is damaged (header checksum mismatch)")]
    BadHeader,
    #[error("it has format version {0}, which this Tidemark does not know; upgrade Tidemark")]
    UnknownVersion(u16),
    #[error("its header names unknown compression {0}")]
    UnknownCompression(u8),
    #[error("its header names unknown cipher {0}; upgrade Tidemark")]
    UnknownCipher(u8),
    #[error(
        "its header names chunks of {0} bytes, which this Tidemark does not write; upgrade Tidemark"
    )]
    UnknownChunkLength(u32),
    #[error("it does not open with the data key it names: {0}")]
    Unauthentic(super::crypto::OpenError),
    #[error("it is {actual} bytes long, its header says {expected}: truncated or appended to")]
    WrongLength { actual: u64, expected: u64 },
    #[error("its stored bytes are damaged: CRC-32C {actual:08x}, the header says {expected:08x}")]
    StoredChecksum { actual: u32, expected: u32 },
    #[error("it decompresses to {actual} bytes, the header says {expected}")]
    OriginalLength { actual: u64, expected: u64 },
    #[error("it decompresses to more than the {expected} bytes its header says")]
    TooLong { expected: u64 },
    #[error(
        "its content is damaged: CRC-32C {actual:08x} after decompression, the header says {expected:08x}"
    )]
    OriginalChecksum { actual: u32, expected: u32 },
    #[error("it cannot be decompressed: {0}")]
    Decompress(io::Error),
    #[error("writing its content failed: {0}")]
    Write(io::Error),
}

impl ObjectHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[10] = self.compression.id();
        bytes[16..24].copy_from_slice(&self.original_len.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.stored_len.to_le_bytes());
        bytes[32..36].copy_from_slice(&self.original_crc.to_le_bytes());
        bytes[36..40].copy_from_slice(&self.stored_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&bytes[0..44]);
        bytes[44..48].copy_from_slice(&header_crc.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<ObjectHeader, ObjectError> {
        check_frame_header(bytes, HEADER_LEN, FORMAT_VERSION)?;
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(ObjectHeader {
            compression: Compression::from_id(bytes[10])
                .ok_or(ObjectError::UnknownCompression(bytes[10]))?,
            original_len: u64_at(16),
            stored_len: u64_at(24),
            original_crc: u32_at(32),
            stored_crc: u32_at(36),
        })
    }
}

/// Checks what the header of every frame, plain or sealed (`sealed`), begins and ends with:
/// at least `len` bytes starting with the magic, the CRC-32C of its first `len - 4` bytes in its
/// last 4, and format version `version`.
pub(super) fn check_frame_header(
    bytes: &[u8],
    len: usize,
    version: u16,
) -> Result<(), ObjectError> {
    if bytes.len() < len || &bytes[0..8] != MAGIC {
        return Err(ObjectError::BadMagic);
    }
    let stored_crc = u32::from_le_bytes(bytes[len - 4..len].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..len - 4]) != stored_crc {
        return Err(ObjectError::BadHeader);
    }
    let found = u16::from_le_bytes([bytes[8], bytes[9]]);
    if found != version {
        return Err(ObjectError::UnknownVersion(found));
    }
    Ok(())
}

/// An object ready to be stored: its header and its stored bytes.
pub struct EncodedObject {
    pub header: ObjectHeader,
    pub body: Vec<u8>,
}

impl EncodedObject {
    /// The object of original bytes of length `original_len` and CRC `original_crc`, stored as
    /// `body`.
    pub fn new(
        compression: Compression,
        original_len: u64,
        original_crc: u32,
        body: Vec<u8>,
    ) -> EncodedObject {
        EncodedObject {
            header: ObjectHeader {
                compression,
                original_len,
                stored_len: body.len() as u64,
                original_crc,
                stored_crc: crc32c::crc32c(&body),
            },
            body,
        }
    }

    pub fn header_bytes(&self) -> [u8; HEADER_LEN] {
        self.header.encode()
    }
}

/// Encodes `bytes`: compressed, or as they are where compressing would not make them smaller.
pub fn encode(
    compression: Compression,
    zstd_level: i32,
    bytes: &[u8],
) -> io::Result<EncodedObject> {
    let original_crc = crc32c::crc32c(bytes);
    if worth_compressing(compression, zstd_level, bytes) {
        let body = compress(compression, zstd_level, bytes)?;
        if body.len() < bytes.len() {
            return Ok(EncodedObject::new(
                compression,
                bytes.len() as u64,
                original_crc,
                body,
            ));
        }
    }
    // Stored as it is: its stored bytes are its original bytes, with the same CRC.
    Ok(EncodedObject {
        header: ObjectHeader {
            compression: Compression::None,
            original_len: bytes.len() as u64,
            stored_len: bytes.len() as u64,
            original_crc,
            stored_crc: original_crc,
        },
        body: bytes.to_vec(),
    })
}

/// A writer that checksums and counts what passes through it, and refuses to pass more than
/// `limit` bytes so a damaged object cannot flood the disk.
struct CheckingWriter<'a> {
    inner: &'a mut dyn Write,
    crc: u32,
    len: u64,
    limit: u64,
    /// Set when decompression produced more than `limit` bytes.
    overflowed: bool,
    /// Set when `inner` failed, so its error is not mistaken for damaged data.
    inner_failed: bool,
}

impl Write for CheckingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.len + bytes.len() as u64 > self.limit {
            self.overflowed = true;
            return Err(io::Error::other("decompressed past the header's length"));
        }
        if let Err(e) = self.inner.write_all(bytes) {
            self.inner_failed = true;
            return Err(e);
        }
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.len += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The largest object a file of `original_len` bytes can be stored as: the header, then the
/// bytes as compressed. Neither zstd nor lz4 frames grow incompressible input by more than a
/// block header per block and a frame header (zstd: n/256 + 64 bytes at most, lz4: 4 bytes per
/// 64 KiB block and 27), well inside n/128 + 64 KiB. Readers bound what they read by it.
pub fn max_stored_len(original_len: u64) -> u64 {
    HEADER_LEN as u64 + original_len + original_len / 128 + (64 << 10)
}

/// Checks that a stored object holds exactly the bytes that were stored: its header, its length
/// and the CRC-32C of its stored bytes, without decompressing them. Storage damage — a flipped
/// byte, a truncation — fails here; the original bytes' checksum is [`decode_into`]'s.
pub fn check_stored(object: &[u8]) -> Result<ObjectHeader, ObjectError> {
    let header = ObjectHeader::decode(object)?;
    let body = &object[HEADER_LEN..];
    if body.len() as u64 != header.stored_len {
        return Err(ObjectError::WrongLength {
            actual: object.len() as u64,
            // Saturating: a damaged header may claim any length.
            expected: (HEADER_LEN as u64).saturating_add(header.stored_len),
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

/// Checks a whole stored object and writes its original bytes to `out`. On error, whatever was
/// written to `out` must be discarded by the caller.
pub fn decode_into(object: &[u8], out: &mut dyn Write) -> Result<ObjectHeader, ObjectError> {
    let header = check_stored(object)?;
    let body = &object[HEADER_LEN..];
    let mut checking = CheckingWriter {
        inner: out,
        crc: 0,
        len: 0,
        limit: header.original_len,
        overflowed: false,
        inner_failed: false,
    };
    if let Err(e) = decompress_into(header.compression, body, &mut checking) {
        return Err(if checking.overflowed {
            ObjectError::TooLong {
                expected: header.original_len,
            }
        } else if checking.inner_failed {
            ObjectError::Write(e)
        } else {
            ObjectError::Decompress(e)
        });
    }
    checking.flush().map_err(ObjectError::Write)?;
    if checking.len != header.original_len {
        return Err(ObjectError::OriginalLength {
            actual: checking.len,
            expected: header.original_len,
        });
    }
    if checking.crc != header.original_crc {
        return Err(ObjectError::OriginalChecksum {
            actual: checking.crc,
            expected: header.original_crc,
        });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(compression: Compression, original: &[u8]) -> Vec<u8> {
        let object = encode(compression, 1, original).unwrap();
        [&object.header_bytes()[..], &object.body].concat()
    }

    #[test]
    fn no_compression_stores_a_file_in_more_than_max_stored_len() {
        // Incompressible bytes are the worst case for every compression.
        let noise = noise((1 << 20) + 12_345);
        let limit = max_stored_len(noise.len() as u64);
        for compression in [Compression::Zstd, Compression::Lz4, Compression::None] {
            let object = encode(compression, 1, &noise).unwrap();
            let stored = (HEADER_LEN + object.body.len()) as u64;
            assert!(stored <= limit, "{compression:?}: {stored} > {limit}");
        }
    }

    /// Pseudo-random bytes, which no compression shrinks.
    fn noise(length: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(7);
        (0..length).map(|_| rng.u8(..)).collect()
    }

    #[test]
    fn what_would_not_shrink_is_stored_as_it_is_and_reads_back() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{i},row {},{}\n", i % 97, i * 7 % 1000).into_bytes())
            .collect();
        let mut mixed = noise(3 << 20);
        mixed.extend_from_slice(&text[..100_000]);
        // Small noise is compressed and found not to shrink; large noise is sampled.
        for (original, expected) in [
            (noise(5000), Compression::None),
            (noise(6 << 20), Compression::None),
            (text.clone(), Compression::Zstd),
            (mixed, Compression::None),
        ] {
            let object = encode(Compression::Zstd, 1, &original).unwrap();
            assert_eq!(
                object.header.compression,
                expected,
                "{} bytes",
                original.len()
            );
            if expected == Compression::None {
                assert_eq!(object.body, original);
            }
            let bytes = [&object.header_bytes()[..], &object.body].concat();
            let mut out = Vec::new();
            decode_into(&bytes, &mut out).unwrap();
            assert_eq!(out, original);
        }
        let lz4 = encode(Compression::Lz4, 1, &noise(2 << 20)).unwrap();
        assert_eq!(lz4.header.compression, Compression::None);
        assert_eq!(
            encode(Compression::Lz4, 1, &text)
                .unwrap()
                .header
                .compression,
            Compression::Lz4
        );
    }

    /// Found by tests/hostile_input.rs: the error's arithmetic overflowed (a panic in a debug
    /// build) when a forged header claimed u64::MAX stored bytes.
    #[test]
    fn a_header_claiming_u64_max_stored_bytes_is_a_wrong_length() {
        let mut bytes = stored(Compression::None, b"hello");
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..44]);
        bytes[44..48].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode_into(&bytes, &mut Vec::new()),
            Err(ObjectError::WrongLength {
                actual: 53,
                expected: u64::MAX
            })
        ));
    }

    #[test]
    fn objects_round_trip_with_every_compression() {
        let original: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 13) as u8).collect();
        for compression in [Compression::Zstd, Compression::Lz4, Compression::None] {
            let bytes = stored(compression, &original);
            let mut out = Vec::new();
            let header = decode_into(&bytes, &mut out).unwrap();
            assert_eq!(out, original);
            assert_eq!(header.original_crc, crc32c::crc32c(&original));
            assert_eq!(header.original_len, original.len() as u64);
        }
    }

    #[test]
    fn any_flipped_byte_is_caught() {
        let original: Vec<u8> = (0..20_000u32).map(|i| (i % 97) as u8).collect();
        let good = stored(Compression::Zstd, &original);
        for at in [
            0,
            9,
            10,
            17,
            30,
            33,
            38,
            45,
            HEADER_LEN,
            HEADER_LEN + 5,
            good.len() - 1,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(
                decode_into(&bad, &mut Vec::new()).is_err(),
                "flip at {at} went unnoticed"
            );
        }
        assert!(matches!(
            decode_into(&good[..good.len() - 1], &mut Vec::new()),
            Err(ObjectError::WrongLength { .. })
        ));
        assert!(matches!(
            decode_into(b"short", &mut Vec::new()),
            Err(ObjectError::BadMagic)
        ));
    }

    #[test]
    fn a_header_that_lies_about_the_original_is_caught_after_decompression() {
        let original = vec![5u8; 10_000];
        let object = encode(Compression::Lz4, 1, &original).unwrap();
        let mut header = object.header;
        header.original_crc ^= 1;
        let bytes = [&header.encode()[..], &object.body].concat();
        assert!(matches!(
            decode_into(&bytes, &mut Vec::new()),
            Err(ObjectError::OriginalChecksum { .. })
        ));
        header.original_crc ^= 1;
        header.original_len -= 1;
        let bytes = [&header.encode()[..], &object.body].concat();
        assert!(matches!(
            decode_into(&bytes, &mut Vec::new()),
            Err(ObjectError::TooLong { expected: 9_999 })
        ));
        header.original_len += 2;
        let bytes = [&header.encode()[..], &object.body].concat();
        assert!(matches!(
            decode_into(&bytes, &mut Vec::new()),
            Err(ObjectError::OriginalLength {
                actual: 10_000,
                expected: 10_001
            })
        ));
    }
}
