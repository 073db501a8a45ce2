//! The compression of stored objects: zstd (default), lz4, or none.
//!
//! Measured on real PostgreSQL 15 WAL by `benches/wal_compression.rs` (figures in
//! docs/repository-format.md): zstd at level 1 stores pgbench WAL at about half the size lz4
//! does and makes the faster push, since fewer bytes are written and fsynced; so it is the
//! default. `none` is there for data that is already compressed; an object that would not shrink
//! is stored as it is whatever the setting ([`worth_compressing`]).

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

/// The largest zstd window (log2 bytes) a stored object may ask its decoder for: 32 MiB. Level
/// 19, the highest the configuration allows, uses 2^23.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// Objects at least this long are sampled before they are compressed.
const SAMPLED_FROM: usize = 1 << 20;
/// Samples taken, spread evenly through the object, and the length of each.
const SAMPLES: usize = 4;
const SAMPLE_LEN: usize = 32 << 10;

/// Whether `bytes` are worth compressing with `compression`: false for a large object whose
/// samples do not shrink by 3% (already-compressed or encrypted content: images, archives,
/// random bytes), which is then stored as it is for about 1/30 of compressing it whole. An
/// object that is compressible only outside the samples is stored larger than it could be,
/// never wrongly.
pub fn worth_compressing(compression: Compression, zstd_level: i32, bytes: &[u8]) -> bool {
    if compression == Compression::None {
        return false;
    }
    if bytes.len() < SAMPLED_FROM {
        return true;
    }
    let step = bytes.len() / SAMPLES;
    let mut samples = Vec::with_capacity(SAMPLES * SAMPLE_LEN);
    for i in 0..SAMPLES {
        samples.extend_from_slice(&bytes[i * step..i * step + SAMPLE_LEN]);
    }
    match compress(compression, zstd_level, &samples) {
        Ok(compressed) => compressed.len() * 100 < samples.len() * 97,
        Err(_) => true,
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
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(stored)?;
            // A frame may ask for a window of up to 2^27 bytes by default, which the decoder
            // allocates whatever the object's size; no object Tidemark writes (levels 1 to 19)
            // uses more than 2^23.
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            io::copy(&mut decoder, out)?;
            Ok(())
        }
        Compression::Lz4 => {
            io::copy(&mut lz4_flex::frame::FrameDecoder::new(stored), out)?;
            Ok(())
        }
        Compression::None => crate::storage::durable::write_in_pieces(out, stored),
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
        for fast_level in [-1, -7] {
            let stored = compress(Compression::Zstd, fast_level, &original).unwrap();
            assert!(stored.len() < original.len(), "{fast_level}");
            let mut restored = Vec::new();
            decompress_into(Compression::Zstd, &stored, &mut restored).unwrap();
            assert_eq!(restored, original, "{fast_level}");
        }
    }

    /// A zstd frame of a few bytes that asks for a 2^26-byte window is refused rather than
    /// making the decoder allocate 64 MiB.
    #[test]
    fn a_zstd_frame_asking_for_a_larger_window_is_refused() {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        encoder
            .set_parameter(zstd::stream::raw::CParameter::WindowLog(26))
            .unwrap();
        encoder.write_all(b"tiny").unwrap();
        let frame = encoder.finish().unwrap();
        let mut restored = Vec::new();
        let error = decompress_into(Compression::Zstd, &frame, &mut restored).unwrap_err();
        assert!(error.to_string().contains("memory"), "{error}");
    }

    /// Level 19 of a large input, the most the configuration allows, stays within the cap.
    #[test]
    fn the_highest_configurable_level_decodes_within_the_window_cap() {
        let original: Vec<u8> = (0..40_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 29) as u8)
            .collect();
        let stored = compress(Compression::Zstd, 19, &original).unwrap();
        let mut restored = Vec::new();
        decompress_into(Compression::Zstd, &stored, &mut restored).unwrap();
        assert!(restored == original);
    }
}
