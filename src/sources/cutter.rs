//! Where content-defined chunks end (FastCDC: at least 1 MiB, about 4 MiB, at most
//! [`MAX_CHUNK`]): one rule for every source, so the same bytes make the same chunks wherever
//! they lie, after a longer header in a Redis stream or under another key in a bucket.

use std::io::{ErrorKind, Read};

use fastcdc::v2020::{Normalization, cut, select_masks};

use crate::repo::catalog::MAX_CHUNK;

pub const MIN_CHUNK: usize = 1 << 20;
pub const AVERAGE_CHUNK: usize = 4 << 20;
pub const LARGEST_CHUNK: usize = MAX_CHUNK as usize;

/// What reads at a time into a [`CutBuffer`].
const READ_SIZE: usize = 256 << 10;

/// FastCDC's masks for [`AVERAGE_CHUNK`]: small, large, and each shifted left once.
#[derive(Clone, Copy)]
pub struct Cutter {
    masks: [u64; 4],
}

impl Default for Cutter {
    fn default() -> Cutter {
        let (mask_s, mask_l) = select_masks(AVERAGE_CHUNK, Normalization::Level1);
        Cutter {
            masks: [mask_s, mask_l, mask_s << 1, mask_l << 1],
        }
    }
}

impl Cutter {
    /// The length of the chunk `uncut` starts with: all of it when it is shorter than a
    /// smallest chunk. Only the end of a stream may be cut with fewer than [`LARGEST_CHUNK`]
    /// bytes given, or the cut would depend on how the bytes arrived.
    pub fn next_length(&self, uncut: &[u8]) -> usize {
        let [mask_s, mask_l, mask_s_ls, mask_l_ls] = self.masks;
        let (_, length) = cut(
            uncut,
            MIN_CHUNK,
            AVERAGE_CHUNK,
            LARGEST_CHUNK,
            mask_s,
            mask_l,
            mask_s_ls,
            mask_l_ls,
        );
        length
    }
}

/// Why [`CutBuffer::cut_reader`] stopped.
#[derive(Debug)]
pub enum CutError {
    /// The reader failed: read again from the start.
    Read(std::io::Error),
    /// What the chunks were handed to failed.
    Chunk(anyhow::Error),
}

/// The bytes [`CutBuffer::cut_reader`] holds between reads: kept by a reader thread from one
/// object to the next, so its memory is zeroed once (as it first grows), not on every read.
#[derive(Default)]
pub struct CutBuffer {
    /// Every byte initialised; at most a largest chunk and one read.
    bytes: Vec<u8>,
}

impl CutBuffer {
    /// Reads `reader` to its end, handing each chunk to `each` in order; returns the bytes
    /// read. Holds at most a largest chunk and one read.
    pub fn cut_reader(
        &mut self,
        reader: &mut dyn Read,
        mut each: impl FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> Result<u64, CutError> {
        let cutter = Cutter::default();
        let mut filled = 0;
        let mut total = 0u64;
        let mut ended = false;
        while !ended {
            ended = self.fill(reader, &mut filled).map_err(CutError::Read)?;
            let mut cut_to = 0;
            while filled - cut_to >= LARGEST_CHUNK || (ended && cut_to < filled) {
                let length = cutter.next_length(&self.bytes[cut_to..filled]);
                each(&self.bytes[cut_to..cut_to + length]).map_err(CutError::Chunk)?;
                cut_to += length;
            }
            total += cut_to as u64;
            self.bytes.copy_within(cut_to..filled, 0);
            filled -= cut_to;
        }
        Ok(total)
    }

    /// Reads on after the `filled` bytes until they are a largest chunk or the reader ends;
    /// returns whether it ended.
    fn fill(&mut self, reader: &mut dyn Read, filled: &mut usize) -> std::io::Result<bool> {
        while *filled < LARGEST_CHUNK {
            let end = *filled + READ_SIZE.min(LARGEST_CHUNK - *filled);
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
            }
            match reader.read(&mut self.bytes[*filled..end]) {
                Ok(0) => return Ok(true),
                Ok(n) => *filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(length: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..length).map(|_| rng.u8(..)).collect()
    }

    /// Hands out at most `step` bytes per read, as a network body does.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = out.len().min(self.step).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn chunks_of(bytes: &[u8], step: usize) -> Vec<usize> {
        let mut lengths = Vec::new();
        let mut reader = Trickle { bytes, step };
        let total = CutBuffer::default()
            .cut_reader(&mut reader, |chunk| {
                lengths.push(chunk.len());
                Ok(())
            })
            .unwrap();
        assert_eq!(total, bytes.len() as u64);
        lengths
    }

    #[test]
    fn cuts_do_not_depend_on_how_the_bytes_arrive() {
        let bytes = noise(40 << 20, 1);
        let whole = chunks_of(&bytes, usize::MAX);
        assert!(whole.len() > 3, "{whole:?}");
        assert_eq!(whole.iter().sum::<usize>(), bytes.len());
        assert!(whole.iter().all(|&n| n <= LARGEST_CHUNK));
        assert_eq!(chunks_of(&bytes, 4097), whole);
    }

    #[test]
    fn a_buffer_kept_from_object_to_object_cuts_each_as_a_fresh_one() {
        let objects = [
            noise(20 << 20, 4),
            noise(1000, 5),
            Vec::new(),
            noise(30 << 20, 6),
        ];
        let mut kept = CutBuffer::default();
        for object in &objects {
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            let total = kept
                .cut_reader(
                    &mut Trickle {
                        bytes: object,
                        step: 70_000,
                    },
                    |chunk| {
                        chunks.push(chunk.to_vec());
                        Ok(())
                    },
                )
                .unwrap();
            assert_eq!(total, object.len() as u64);
            assert_eq!(chunks.concat(), *object, "the bytes given are the object's");
            let lengths: Vec<usize> = chunks.iter().map(Vec::len).collect();
            assert_eq!(lengths, chunks_of(object, usize::MAX));
        }
    }

    #[test]
    fn a_small_or_empty_object_is_one_chunk_or_none() {
        assert_eq!(chunks_of(&noise(1000, 2), 100), vec![1000]);
        assert_eq!(chunks_of(&[], 100), Vec::<usize>::new());
    }

    #[test]
    fn a_failing_reader_is_told_apart_from_a_failing_store() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("cut off"))
            }
        }
        assert!(matches!(
            CutBuffer::default().cut_reader(&mut Broken, |_| Ok(())),
            Err(CutError::Read(_))
        ));
        let bytes = noise(10, 3);
        assert!(matches!(
            CutBuffer::default().cut_reader(&mut &bytes[..], |_| anyhow::bail!("full")),
            Err(CutError::Chunk(_))
        ));
    }
}
