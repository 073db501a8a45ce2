//! The check of a stored `dump.rdb` as a restore reads it back: exactly the recorded length,
//! and the RDB frame ([`RdbChecker`]: header, EOF opcode, CRC-64 trailer recomputed over the
//! bytes as they pass) with the recorded version and trailer.
//!
//! Wrapping the reader keeps a restore streaming (nothing held whole) and lets every way of
//! restoring say, after the last byte, whether what it wrote or served was the snapshot.

use std::io::{self, Read};

use anyhow::{Context, bail};

use super::rdb::RdbChecker;

/// A reader of a stored RDB of known length that checks it as it is read; [`ReadBack::finish`]
/// says whether it was whole and intact.
pub struct ReadBack<R> {
    inner: R,
    len: u64,
    done: u64,
    checker: RdbChecker,
    /// The first error the checker gave (a header that is not an RDB's), reported at the end.
    failed: Option<anyhow::Error>,
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
            checker: RdbChecker::new(),
            failed: None,
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
        if let Some(failed) = self.failed {
            return Err(failed.context("the stored content is damaged"));
        }
        if self.checker.version() != Some(self.rdb_version) {
            bail!(
                "the snapshot's header says RDB version {}, its record {}: the stored content \
                 is damaged",
                self.checker.version().unwrap_or_default(),
                self.rdb_version
            );
        }
        let summary = self
            .checker
            .finish()
            .context("the stored content is damaged")?;
        match self.expected {
            Expected::TrailerOnly => Ok(()),
            Expected::Recorded(recorded) if summary.crc64 == recorded => Ok(()),
            Expected::Recorded(recorded) => bail!(
                "the snapshot's CRC-64 trailer is {}, its record says {}: the stored content is \
                 damaged",
                hex_or_none(summary.crc64),
                hex_or_none(recorded)
            ),
        }
    }
}

/// A CRC-64 as 16 hex digits, or `none`.
fn hex_or_none(crc: Option<u64>) -> String {
    crc.map_or_else(|| "none".to_owned(), |crc| format!("{crc:016x}"))
}

impl<R: Read> Read for ReadBack<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.done;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if self.failed.is_none()
            && let Err(e) = self.checker.update(&buf[..n])
        {
            self.failed = Some(e);
        }
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
        rdb.push(0xFF);
        let crc = super::super::rdb::crc64(&rdb);
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
        assert_eq!(super::super::rdb::crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
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
        assert!(version.unwrap_err().to_string().contains("its record 9"));
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
