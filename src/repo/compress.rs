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

/// Compresses `bytes` in one call. Every object is compressed whole from memory (a segment, a
/// backup chunk), and one-shot zstd is about twice as fast as its streaming mode, which copies
/// the input into its own window first.
pub fn compress(compression: Compression, zstd_level: i32, bytes: &[u8]) -> io::Result<Vec<u8>> {
    match compression {
        Compression::Zstd => {
            let mut compressor = zstd::bulk::Compressor::new(zstd_level)?;
            // The header already carries a stronger check of the original bytes.
            compressor.include_checksum(false)?;
            compressor.compress(bytes)
        }
        Compression::Lz4 => {
            let mut encoder =
                lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(bytes.len() / 2));
            encoder.write_all(bytes)?;
            encoder.finish().map_err(io::Error::other)
        }
        Compression::None => Ok(bytes.to_vec()),
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
            let stored = compress(compression, DEFAULT_ZSTD_LEVEL, &original).unwrap();
            let mut restored = Vec::new();
            decompress_into(compression, &stored, &mut restored).unwrap();
            assert_eq!(restored, original, "{compression:?}");
            assert_eq!(Compression::from_id(compression.id()), Some(compression));
        }
    }
}
