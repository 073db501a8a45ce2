//! The compression of stored objects: zstd (default), lz4, or none.
//!
//! Measured on real PostgreSQL 15 WAL by `benches/wal_compression.rs` (figures in
//! docs/repository-format.md): zstd at level 1 stores pgbench WAL at about half the size lz4
//! does and makes the faster push, since fewer bytes are written and fsynced; so it is the
//! default. `none` is there for data that is already compressed.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

/// How an object's bytes are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Lz4,
    None,
}

/// The zstd level used unless the configuration says otherwise.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

impl Compression {
    /// The byte that names this compression in an object header.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    pub fn from_id(id: u8) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            2 => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// A streaming compressor that collects its output in memory.
pub enum Compressor {
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Lz4(lz4_flex::frame::FrameEncoder<Vec<u8>>),
    None(Vec<u8>),
}

impl Compressor {
    /// A compressor for `compression`; `expected_len` sizes the output buffer.
    pub fn new(
        compression: Compression,
        zstd_level: i32,
        expected_len: usize,
    ) -> io::Result<Compressor> {
        Ok(match compression {
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(
                    Vec::with_capacity(expected_len / 4),
                    zstd_level,
                )?;
                // The header already carries a stronger check of the original bytes.
                encoder.include_checksum(false)?;
                Compressor::Zstd(encoder)
            }
            Compression::Lz4 => Compressor::Lz4(lz4_flex::frame::FrameEncoder::new(
                Vec::with_capacity(expected_len / 2),
            )),
            Compression::None => Compressor::None(Vec::with_capacity(expected_len)),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Zstd(encoder) => encoder.write_all(bytes),
            Compressor::Lz4(encoder) => encoder.write_all(bytes),
            Compressor::None(buffer) => {
                buffer.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// The compressed bytes.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Compressor::Zstd(encoder) => encoder.finish(),
            Compressor::Lz4(encoder) => encoder.finish().map_err(io::Error::other),
            Compressor::None(buffer) => Ok(buffer),
        }
    }
}

/// Decompresses `stored` into `out`.
pub fn decompress_into(
    compression: Compression,
    stored: &[u8],
    out: &mut dyn Write,
) -> io::Result<()> {
    match compression {
        Compression::Zstd => zstd::stream::copy_decode(stored, out),
        Compression::Lz4 => {
            io::copy(&mut lz4_flex::frame::FrameDecoder::new(stored), out)?;
            Ok(())
        }
        Compression::None => out.write_all(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compression_round_trips() {
        let original: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for compression in [Compression::Zstd, Compression::Lz4, Compression::None] {
            let mut compressor =
                Compressor::new(compression, DEFAULT_ZSTD_LEVEL, original.len()).unwrap();
            for chunk in original.chunks(65536) {
                compressor.write_all(chunk).unwrap();
            }
            let stored = compressor.finish().unwrap();
            let mut restored = Vec::new();
            decompress_into(compression, &stored, &mut restored).unwrap();
            assert_eq!(restored, original, "{compression:?}");
            assert_eq!(Compression::from_id(compression.id()), Some(compression));
        }
    }
}
