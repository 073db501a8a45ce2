//! The check of a stored `dump.rdb` as a restore reads it back: exactly the recorded length,
//! the `REDIS` header with the recorded version, the EOF opcode, and the CRC-64 trailer both
//! recomputed over the bytes as they pass and compared with the snapshot's record.
//!
//! Wrapping the reader keeps a restore streaming (nothing held whole) and lets every way of
//! restoring say, after the last byte, whether what it wrote or served was the snapshot.

use std::io::{self, Read};

use anyhow::{Context, bail};
use crc::{CRC_64_REDIS, Crc, Digest, Table};

/// CRC-64/Jones as Redis computes it (`crc64.c`), sliced by 16 to keep up with a disk.
static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// `REDIS` and four digits of version.
const HEADER_LEN: usize = 9;
/// The CRC-64 trailer, little-endian.
const TRAILER_LEN: u64 = 8;
/// `RDB_OPCODE_EOF`, the byte before the trailer.
const EOF_OPCODE: u8 = 0xFF;

/// A reader of a stored RDB of known length that checks it as it is read; [`ReadBack::finish`]
/// says whether it was whole and intact.
pub struct ReadBack<R> {
    inner: R,
    len: u64,
    done: u64,
    digest: Digest<'static, u64, Table<16>>,
    header: [u8; HEADER_LEN],
    /// The EOF opcode and the trailer: the last nine bytes.
    tail: [u8; 9],
    expected: Expected,
    rdb_version: u32,
}

/// What the trailer is checked against, besides the CRC-64 computed over the bytes.
enum Expected {
    /// The snapshot's record: `None` when the server wrote no CRC (`rdbchecksum no`).
    Recorded(Option<u64>),
    /// Nothing recorded is at hand: the trailer is only checked against the bytes (0 passes).
    TrailerOnly,
}

impl<R: Read> ReadBack<R> {
    /// Reads `len` bytes from `inner`, expected to be an RDB of `rdb_version` whose trailer is
    /// `recorded_crc` (`None`: the server wrote none, `rdbchecksum no`).
    pub fn new(inner: R, len: u64, recorded_crc: Option<u64>, rdb_version: u32) -> ReadBack<R> {
        ReadBack {
            inner,
            len,
            done: 0,
            digest: CRC64.digest(),
            header: [0; HEADER_LEN],
            tail: [0; 9],
            expected: Expected::Recorded(recorded_crc),
            rdb_version,
        }
    }

    /// Reads `len` bytes from `inner`, an RDB of `rdb_version` whose trailer must be the CRC-64
    /// of its bytes, or 0 (written without one).
    pub fn self_checked(inner: R, len: u64, rdb_version: u32) -> ReadBack<R> {
        ReadBack {
            expected: Expected::TrailerOnly,
            ..ReadBack::new(inner, len, None, rdb_version)
        }
    }

    /// Bytes read so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// After the last byte: an error unless exactly the recorded bytes came, with the recorded
    /// header version, the EOF opcode, and a trailer that is both the recorded CRC-64 and the one
    /// computed over the bytes.
    pub fn finish(mut self) -> anyhow::Result<()> {
        let min_len = (HEADER_LEN + 1) as u64 + TRAILER_LEN;
        if self.len < min_len {
            bail!(
                "the snapshot is recorded as {} bytes, fewer than any RDB has ({min_len})",
                self.len
            );
        }
        if self.done < self.len {
            bail!(
                "the snapshot's content ended after {} of its {} bytes",
                self.done,
                self.len
            );
        }
        let mut extra = [0u8; 1];
        if self
            .inner
            .read(&mut extra)
            .context("read past the snapshot's end")?
            > 0
        {
            bail!(
                "the snapshot's content is longer than its recorded {} bytes",
                self.len
            );
        }
        let expected_header = format!("REDIS{:04}", self.rdb_version);
        if self.header != expected_header.as_bytes() {
            bail!(
                "the snapshot starts with {:?}, not {expected_header:?} as recorded",
                String::from_utf8_lossy(&self.header)
            );
        }
        if self.tail[0] != EOF_OPCODE {
            bail!(
                "the snapshot's byte before its CRC-64 is {:#04x}, not the RDB EOF opcode 0xff",
                self.tail[0]
            );
        }
        let trailer = u64::from_le_bytes(self.tail[1..].try_into().expect("eight bytes"));
        let computed = self.digest.finalize();
        match self.expected {
            Expected::TrailerOnly if trailer == 0 || trailer == computed => Ok(()),
            Expected::TrailerOnly => bail!(
                "the snapshot's CRC-64 over its bytes is {computed:016x}, its trailer says \
                 {trailer:016x}: the stored content is damaged"
            ),
            Expected::Recorded(None) if trailer == 0 => Ok(()),
            Expected::Recorded(None) => bail!(
                "the snapshot was recorded without a CRC-64 but ends with {trailer:016x}: \
                 the stored content is not what was taken"
            ),
            Expected::Recorded(Some(recorded)) if trailer != recorded => bail!(
                "the snapshot's CRC-64 trailer is {trailer:016x}, its record says \
                 {recorded:016x}: the stored content is damaged"
            ),
            Expected::Recorded(Some(_)) if computed != trailer => bail!(
                "the snapshot's CRC-64 over its bytes is {computed:016x}, its trailer says \
                 {trailer:016x}: the stored content is damaged"
            ),
            Expected::Recorded(Some(_)) => Ok(()),
        }
    }

    /// Feeds the bytes `buf`, which start at offset `at`, to the header, the CRC and the tail.
    fn observe(&mut self, at: u64, buf: &[u8]) {
        let end = at + buf.len() as u64;
        if at < HEADER_LEN as u64 {
            let upto = (end.min(HEADER_LEN as u64) - at) as usize;
            self.header[at as usize..at as usize + upto].copy_from_slice(&buf[..upto]);
        }
        let crc_end = self.len.saturating_sub(TRAILER_LEN);
        if at < crc_end {
            let upto = (end.min(crc_end) - at) as usize;
            self.digest.update(&buf[..upto]);
        }
        let tail_start = self.len.saturating_sub(9);
        if end > tail_start {
            let from = tail_start.saturating_sub(at) as usize;
            let into = (at + from as u64 - tail_start) as usize;
            let bytes = &buf[from..];
            self.tail[into..into + bytes.len()].copy_from_slice(bytes);
        }
    }
}

impl<R: Read> Read for ReadBack<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.done;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        let at = self.done;
        self.observe(at, &buf[..n]);
        self.done += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small RDB as a server writes one: header, an AUX field, EOF, CRC-64 trailer.
    pub(crate) fn sample_rdb(version: u32) -> Vec<u8> {
        let mut rdb = format!("REDIS{version:04}").into_bytes();
        rdb.extend_from_slice(b"\xfa\x09redis-ver\x067.0.15");
        rdb.push(EOF_OPCODE);
        let crc = CRC64.checksum(&rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        rdb
    }

    pub(crate) fn trailer(rdb: &[u8]) -> u64 {
        u64::from_le_bytes(rdb[rdb.len() - 8..].try_into().unwrap())
    }

    /// Reads all through a [`ReadBack`] in reads of `step` bytes, then finishes.
    fn read_back(
        rdb: &[u8],
        len: u64,
        crc: Option<u64>,
        version: u32,
        step: usize,
    ) -> anyhow::Result<()> {
        let mut reader = ReadBack::new(rdb, len, crc, version);
        let mut buf = vec![0u8; step];
        while reader.read(&mut buf)? > 0 {}
        reader.finish()
    }

    #[test]
    fn the_crc_64_is_redis_own() {
        // crc64.c's self-test: crc64(0, "123456789") == 0xe9c6d914c4b8d9ca.
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn an_intact_rdb_passes_in_reads_of_every_size() {
        let rdb = sample_rdb(10);
        for step in 1..=rdb.len() + 1 {
            read_back(&rdb, rdb.len() as u64, Some(trailer(&rdb)), 10, step)
                .unwrap_or_else(|e| panic!("step {step}: {e}"));
        }
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let rdb = sample_rdb(10);
        for at in 0..rdb.len() {
            let mut bad = rdb.clone();
            bad[at] ^= 0x20;
            let verdict = read_back(&bad, rdb.len() as u64, Some(trailer(&rdb)), 10, 7);
            assert!(verdict.is_err(), "byte {at} flipped went unnoticed");
        }
    }

    #[test]
    fn short_long_and_unchecksummed_contents_are_judged() {
        let rdb = sample_rdb(10);
        let len = rdb.len() as u64;
        let short = read_back(&rdb[..rdb.len() - 1], len, Some(trailer(&rdb)), 10, 4);
        assert!(short.unwrap_err().to_string().contains("ended after"));
        let mut long = rdb.clone();
        long.push(0);
        let long = read_back(&long, len, Some(trailer(&rdb)), 10, 4);
        assert!(long.unwrap_err().to_string().contains("longer than"));
        let version = read_back(&rdb, len, Some(trailer(&rdb)), 9, 4);
        assert!(version.unwrap_err().to_string().contains("REDIS0009"));
        let mut unchecked = rdb.clone();
        let at = unchecked.len() - 8;
        unchecked[at..].fill(0);
        read_back(&unchecked, len, None, 10, 4).unwrap();
        assert!(read_back(&rdb, len, None, 10, 4).is_err());
    }

    #[test]
    fn without_a_record_the_trailer_is_checked_against_the_bytes() {
        let check = |rdb: &[u8]| {
            let mut reader = ReadBack::self_checked(rdb, rdb.len() as u64, 10);
            io::copy(&mut reader, &mut io::sink()).unwrap();
            reader.finish()
        };
        let rdb = sample_rdb(10);
        check(&rdb).unwrap();
        let mut unchecked = rdb.clone();
        let at = unchecked.len() - 8;
        unchecked[at..].fill(0);
        check(&unchecked).unwrap();
        let mut bad = rdb.clone();
        bad[11] ^= 1;
        assert!(check(&bad).unwrap_err().to_string().contains("damaged"));
    }
}
