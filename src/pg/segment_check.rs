//! Checks, page by page while it is read, that a file is a WAL segment of the expected cluster:
//! the magic of the stanza's PostgreSQL version, its system identifier and segment size in the long
//! header, every page's address matching the file name, timelines that never go back, and nothing
//! but zeros after the zero-filled end that follows an `XLOG_SWITCH`.
//!
//! A complete segment handed to `archive_command` is always filled, or ended by a switch and zero
//! pages, so any other page is a defect. A `.partial` segment may end in stale pages recycled from
//! an older segment; checking stops at its first page that is not a continuation of the stream.

use super::file_name::{SegmentName, SegmentSize};
use super::lsn::{Lsn, TimelineId};
use super::page::{PageHeader, SHORT_HEADER_LEN, XLP_ALL_FLAGS, XLP_LONG_HEADER};
use super::version::PgMajor;

/// What a stanza is bound to; a segment must agree on all of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedCluster {
    pub system_id: u64,
    pub version: PgMajor,
    pub segment_size: SegmentSize,
}

/// Whether the segment must be complete or may end in stale pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    Complete,
    Partial,
}

/// What is wrong with a file presented as a WAL segment.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SegmentDefect {
    #[error(
        "it is {actual} bytes long, but this cluster's WAL segments are {expected} bytes: the file is truncated or not a WAL segment"
    )]
    WrongSize { actual: u64, expected: u64 },
    #[error(
        "it is not a WAL segment: its first page starts with {found:#06X}, PostgreSQL {version} pages start with {expected:#06X}"
    )]
    NotWal {
        found: u16,
        expected: u16,
        version: PgMajor,
    },
    #[error(
        "it was written by PostgreSQL {found}, but the stanza is bound to PostgreSQL {expected}: after a major upgrade, create a new stanza"
    )]
    OtherVersion { found: PgMajor, expected: PgMajor },
    #[error(
        "it was written by a PostgreSQL version Tidemark does not support (page magic {found:#06X}; Tidemark supports {supported}), but the stanza is bound to PostgreSQL {expected}",
        supported = super::version::SUPPORTED
    )]
    UnsupportedVersion { found: u16, expected: PgMajor },
    #[error(
        "it belongs to another cluster: its system identifier is {found}, the stanza is bound to {expected}; check --stanza and --config in archive_command"
    )]
    OtherCluster { found: u64, expected: u64 },
    #[error(
        "its first page has no long header (xlp_info {info:#06X}): it is not the start of a WAL segment"
    )]
    NoLongHeader { info: u16 },
    #[error(
        "its long header says {found}-byte segments, but the stanza is bound to {expected}-byte segments"
    )]
    OtherSegmentSize { found: u32, expected: u32 },
    #[error(
        "its long header says {0}-byte WAL pages; PostgreSQL uses a power of two from 1 kB to 64 kB"
    )]
    BadPageSize(u32),
    #[error(
        "the page at {lsn} starts with {found:#06X}, expected the WAL page magic {expected:#06X}"
    )]
    BadMagic { lsn: Lsn, found: u16, expected: u16 },
    #[error("the page at {lsn} has unknown flags (xlp_info {info:#06X})")]
    BadFlags { lsn: Lsn, info: u16 },
    #[error(
        "the page at {lsn} says it is at {found}: the file does not hold segment {name} (renamed, recycled or copied over)"
    )]
    WrongAddress {
        lsn: Lsn,
        found: Lsn,
        name: SegmentName,
    },
    #[error("the page at {lsn} is on timeline {found}, after a page on timeline {previous}")]
    TimelineWentBack {
        lsn: Lsn,
        found: TimelineId,
        previous: TimelineId,
    },
    #[error("the page at {lsn} is on timeline {found}, later than the file name's timeline {file}")]
    TimelineAhead {
        lsn: Lsn,
        found: TimelineId,
        file: TimelineId,
    },
    #[error("it has non-zero bytes at {lsn}, after the zero-filled end of its WAL at {end}")]
    DataAfterEnd { lsn: Lsn, end: Lsn },
    #[error("{name} does not fit this cluster's {size} MiB segments")]
    NameOutOfRange { name: SegmentName, size: u32 },
}

/// Where checking stands past the last page of real WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    /// Still in pages of WAL.
    None,
    /// A zero page started at this LSN; everything after it must be zero too.
    Zeros(Lsn),
    /// A `.partial` segment's stale or zero tail; not checked.
    Unchecked,
}

/// Checks one segment, fed in order in chunks of whole pages.
#[derive(Debug)]
pub struct SegmentChecker {
    expected: ExpectedCluster,
    name: SegmentName,
    kind: SegmentKind,
    start: Lsn,
    offset: u64,
    page_size: u32,
    previous_timeline: TimelineId,
    tail: Tail,
}

/// The largest WAL page PostgreSQL can be built with; chunks fed to the checker are whole
/// multiples of it (except that a chunk may end the segment), so no page is ever split.
pub const CHUNK_ALIGNMENT: usize = 64 * 1024;

impl SegmentChecker {
    pub fn new(
        expected: ExpectedCluster,
        name: SegmentName,
        kind: SegmentKind,
    ) -> Result<SegmentChecker, SegmentDefect> {
        let start =
            name.start_lsn(expected.segment_size)
                .map_err(|_| SegmentDefect::NameOutOfRange {
                    name,
                    size: expected.segment_size.bytes() >> 20,
                })?;
        Ok(SegmentChecker {
            expected,
            name,
            kind,
            start,
            offset: 0,
            page_size: 0,
            previous_timeline: TimelineId(0),
            tail: Tail::None,
        })
    }

    /// Checks the file's length before any byte is read.
    pub fn check_length(&self, length: u64) -> Result<(), SegmentDefect> {
        let expected = u64::from(self.expected.segment_size.bytes());
        if length != expected {
            return Err(SegmentDefect::WrongSize {
                actual: length,
                expected,
            });
        }
        Ok(())
    }

    /// Explains a file of the wrong `length` by its first page when it can: a segment of another
    /// cluster or segment size has the wrong length too, and saying so is more useful than
    /// "truncated". `first_page` is the file's first bytes (at least a long header's worth).
    pub fn diagnose_length(&mut self, length: u64, first_page: &[u8]) -> Result<(), SegmentDefect> {
        let wrong_size = match self.check_length(length) {
            Ok(()) => return Ok(()),
            Err(defect) => defect,
        };
        if PageHeader::decode(first_page).is_some_and(|h| h.long.is_some()) {
            self.check_first_page(first_page)?;
        }
        Err(wrong_size)
    }

    /// Checks the next `chunk` of the file. Chunks are whole multiples of [`CHUNK_ALIGNMENT`],
    /// except the last one of the segment.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), SegmentDefect> {
        let mut position = 0;
        if self.offset == 0 {
            self.check_first_page(chunk)?;
        }
        debug_assert!(self.page_size > 0, "first page sets the page size");
        let page_size = self.page_size as usize;
        debug_assert_eq!(
            self.offset % self.page_size as u64,
            0,
            "chunks split a page"
        );
        // A segment is whole pages: bytes ending inside a page are a truncated (or overlong)
        // segment, whose last page cannot be read as one.
        if !(self.offset + chunk.len() as u64).is_multiple_of(u64::from(self.page_size)) {
            return Err(SegmentDefect::WrongSize {
                actual: self.offset + chunk.len() as u64,
                expected: u64::from(self.expected.segment_size.bytes()),
            });
        }
        while position < chunk.len() {
            let page = &chunk[position..position + page_size];
            let lsn = Lsn(self.start.0 + self.offset + position as u64);
            self.check_page(page, lsn)?;
            position += page_size;
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// Confirms the whole segment was fed.
    pub fn finish(self) -> Result<(), SegmentDefect> {
        self.check_length(self.offset)
    }

    fn check_first_page(&mut self, page: &[u8]) -> Result<(), SegmentDefect> {
        let expected_magic = self.expected.version.page_magic();
        let header = PageHeader::decode(page).ok_or(SegmentDefect::WrongSize {
            actual: page.len() as u64,
            expected: u64::from(self.expected.segment_size.bytes()),
        })?;
        if header.magic != expected_magic {
            return Err(match PgMajor::from_page_magic(header.magic) {
                Some(found) => SegmentDefect::OtherVersion {
                    found,
                    expected: self.expected.version,
                },
                // PostgreSQL's page magics have grown from 0xD0xx (9.x, 10, 11) into 0xD1xx
                // (12 on): one of those no supported version writes is an older or later one.
                None if header.magic & 0xFE00 == 0xD000 => SegmentDefect::UnsupportedVersion {
                    found: header.magic,
                    expected: self.expected.version,
                },
                None => SegmentDefect::NotWal {
                    found: header.magic,
                    expected: expected_magic,
                    version: self.expected.version,
                },
            });
        }
        let long = header
            .long
            .ok_or(SegmentDefect::NoLongHeader { info: header.info })?;
        if long.system_id != self.expected.system_id {
            return Err(SegmentDefect::OtherCluster {
                found: long.system_id,
                expected: self.expected.system_id,
            });
        }
        if long.segment_size != self.expected.segment_size.bytes() {
            return Err(SegmentDefect::OtherSegmentSize {
                found: long.segment_size,
                expected: self.expected.segment_size.bytes(),
            });
        }
        if !long.page_size.is_power_of_two() || !(1024..=65536).contains(&long.page_size) {
            return Err(SegmentDefect::BadPageSize(long.page_size));
        }
        self.page_size = long.page_size;
        Ok(())
    }

    fn check_page(&mut self, page: &[u8], lsn: Lsn) -> Result<(), SegmentDefect> {
        match self.tail {
            Tail::Unchecked => return Ok(()),
            Tail::Zeros(end) => {
                return match page.iter().position(|&b| b != 0) {
                    Some(at) => Err(SegmentDefect::DataAfterEnd {
                        lsn: Lsn(lsn.0 + at as u64),
                        end,
                    }),
                    None => Ok(()),
                };
            }
            Tail::None => {}
        }
        let is_first = lsn == self.start;
        if !is_first && page[..SHORT_HEADER_LEN].iter().all(|&b| b == 0) {
            // After XLOG_SWITCH PostgreSQL zeroes whole pages, headers included.
            self.tail = match self.kind {
                SegmentKind::Complete => Tail::Zeros(lsn),
                SegmentKind::Partial => Tail::Unchecked,
            };
            return self.check_page(page, lsn);
        }
        match self.check_page_header(page, lsn, is_first) {
            Err(_) if self.kind == SegmentKind::Partial && !is_first => {
                self.tail = Tail::Unchecked;
                Ok(())
            }
            result => result,
        }
    }

    fn check_page_header(
        &mut self,
        page: &[u8],
        lsn: Lsn,
        is_first: bool,
    ) -> Result<(), SegmentDefect> {
        let header = PageHeader::decode(page).expect("a page is longer than its header");
        let expected_magic = self.expected.version.page_magic();
        if header.magic != expected_magic {
            return Err(SegmentDefect::BadMagic {
                lsn,
                found: header.magic,
                expected: expected_magic,
            });
        }
        let long_flag_misplaced = (header.info & XLP_LONG_HEADER != 0) != is_first;
        if header.info & !XLP_ALL_FLAGS != 0 || long_flag_misplaced {
            return Err(SegmentDefect::BadFlags {
                lsn,
                info: header.info,
            });
        }
        if header.page_address != lsn {
            return Err(SegmentDefect::WrongAddress {
                lsn,
                found: header.page_address,
                name: self.name,
            });
        }
        // Pages of a new timeline's first segment copied from the parent keep the parent's
        // timeline, so a page may be on an earlier timeline than the file, never a later one.
        if header.timeline > self.name.timeline {
            return Err(SegmentDefect::TimelineAhead {
                lsn,
                found: header.timeline,
                file: self.name.timeline,
            });
        }
        if header.timeline < self.previous_timeline {
            return Err(SegmentDefect::TimelineWentBack {
                lsn,
                found: header.timeline,
                previous: self.previous_timeline,
            });
        }
        self.previous_timeline = header.timeline;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const SYSTEM_ID: u64 = 7_310_000_000_000_000_001;
    const PAGE: usize = 8192;

    pub fn cluster() -> ExpectedCluster {
        ExpectedCluster {
            system_id: SYSTEM_ID,
            version: PgMajor::new(15).unwrap(),
            segment_size: SegmentSize::new(1 << 20).unwrap(),
        }
    }

    fn name(tli: u32, seg: u32) -> SegmentName {
        SegmentName {
            timeline: TimelineId(tli),
            log: 0,
            seg,
        }
    }

    /// A 1 MiB segment with valid headers on its first `pages_of_wal` pages and zeros after.
    pub fn synthetic_segment(tli: u32, seg: u32, pages_of_wal: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; 1 << 20];
        for page in 0..pages_of_wal {
            let at = page * PAGE;
            let header = &mut bytes[at..at + 40];
            header[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
            let info: u16 = if page == 0 { 0x0002 } else { 0x0001 };
            header[2..4].copy_from_slice(&info.to_le_bytes());
            header[4..8].copy_from_slice(&tli.to_le_bytes());
            let address = u64::from(seg) * (1 << 20) + at as u64;
            header[8..16].copy_from_slice(&address.to_le_bytes());
            if page == 0 {
                header[24..32].copy_from_slice(&SYSTEM_ID.to_le_bytes());
                header[32..36].copy_from_slice(&(1u32 << 20).to_le_bytes());
                header[36..40].copy_from_slice(&(PAGE as u32).to_le_bytes());
            }
            // Some record bytes so the page is not all zero.
            bytes[at + 40..at + 48].copy_from_slice(&[0xAB; 8]);
        }
        bytes
    }

    fn check(bytes: &[u8], name: SegmentName, kind: SegmentKind) -> Result<(), SegmentDefect> {
        let mut checker = SegmentChecker::new(cluster(), name, kind)?;
        checker.check_length(bytes.len() as u64)?;
        for chunk in bytes.chunks(CHUNK_ALIGNMENT * 2) {
            checker.feed(chunk)?;
        }
        checker.finish()
    }

    fn set_u16(bytes: &mut [u8], at: usize, value: u16) {
        bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    /// Found by tests/hostile_input.rs: bytes ending inside a page made the checker slice past
    /// them (a panic) instead of reporting the wrong size.
    #[test]
    fn bytes_ending_inside_a_page_are_the_wrong_size() {
        let segment = synthetic_segment(1, 3, 4);
        for end in [PAGE + 13, 3 * PAGE + 100, (1 << 20) - 1] {
            let mut checker =
                SegmentChecker::new(cluster(), name(1, 3), SegmentKind::Complete).unwrap();
            assert_eq!(
                checker.feed(&segment[..end]),
                Err(SegmentDefect::WrongSize {
                    actual: end as u64,
                    expected: 1 << 20
                })
            );
        }
    }

    #[test]
    fn full_and_switched_segments_pass() {
        let full = synthetic_segment(1, 3, 128);
        assert_eq!(check(&full, name(1, 3), SegmentKind::Complete), Ok(()));
        let switched = synthetic_segment(1, 3, 10);
        assert_eq!(check(&switched, name(1, 3), SegmentKind::Complete), Ok(()));
    }

    #[test]
    fn each_defect_is_named() {
        let good = synthetic_segment(2, 3, 128);
        let lsn = |offset: u64| Lsn(3 * (1 << 20) + offset);
        type Damage = fn(&mut Vec<u8>);
        let cases: Vec<(&str, Damage, SegmentDefect)> = vec![
            (
                "truncated",
                |b| b.truncate(1 << 19),
                SegmentDefect::WrongSize {
                    actual: 1 << 19,
                    expected: 1 << 20,
                },
            ),
            (
                "random bytes",
                |b| b[0..2].copy_from_slice(&[0x37, 0x13]),
                SegmentDefect::NotWal {
                    found: 0x1337,
                    expected: 0xD110,
                    version: PgMajor::new(15).unwrap(),
                },
            ),
            (
                "other version",
                |b| set_u16(b, 0, 0xD113),
                SegmentDefect::OtherVersion {
                    found: PgMajor::new(16).unwrap(),
                    expected: PgMajor::new(15).unwrap(),
                },
            ),
            (
                "a later version",
                |b| set_u16(b, 0, 0xD120),
                SegmentDefect::UnsupportedVersion {
                    found: 0xD120,
                    expected: PgMajor::new(15).unwrap(),
                },
            ),
            (
                "other cluster",
                |b| b[24..32].copy_from_slice(&42u64.to_le_bytes()),
                SegmentDefect::OtherCluster {
                    found: 42,
                    expected: SYSTEM_ID,
                },
            ),
            (
                "no long header",
                |b| set_u16(b, 2, 0),
                SegmentDefect::NoLongHeader { info: 0 },
            ),
            (
                "other segment size",
                |b| b[32..36].copy_from_slice(&(2u32 << 20).to_le_bytes()),
                SegmentDefect::OtherSegmentSize {
                    found: 2 << 20,
                    expected: 1 << 20,
                },
            ),
            (
                "bad page size",
                |b| b[36..40].copy_from_slice(&1000u32.to_le_bytes()),
                SegmentDefect::BadPageSize(1000),
            ),
            (
                "bad magic mid-segment",
                |b| set_u16(b, 5 * 8192, 0xD101),
                SegmentDefect::BadMagic {
                    lsn: lsn(5 * 8192),
                    found: 0xD101,
                    expected: 0xD110,
                },
            ),
            (
                "unknown flag",
                |b| set_u16(b, 8192 + 2, 0x0011),
                SegmentDefect::BadFlags {
                    lsn: lsn(8192),
                    info: 0x0011,
                },
            ),
            (
                "stale page address",
                |b| b[7 * 8192 + 8..7 * 8192 + 16].copy_from_slice(&0x100_E000u64.to_le_bytes()),
                SegmentDefect::WrongAddress {
                    lsn: lsn(7 * 8192),
                    found: Lsn(0x100_E000),
                    name: name(2, 3),
                },
            ),
            (
                "timeline ahead of the name",
                |b| b[8192 + 4..8192 + 8].copy_from_slice(&3u32.to_le_bytes()),
                SegmentDefect::TimelineAhead {
                    lsn: lsn(8192),
                    found: TimelineId(3),
                    file: TimelineId(2),
                },
            ),
            (
                "timeline goes back",
                |b| b[2 * 8192 + 4..2 * 8192 + 8].copy_from_slice(&1u32.to_le_bytes()),
                SegmentDefect::TimelineWentBack {
                    lsn: lsn(2 * 8192),
                    found: TimelineId(1),
                    previous: TimelineId(2),
                },
            ),
            (
                "data after the zero tail",
                |b| {
                    b[100 * 8192..].fill(0);
                    b[(1 << 20) - 1] = 1;
                },
                SegmentDefect::DataAfterEnd {
                    lsn: lsn((1 << 20) - 1),
                    end: lsn(100 * 8192),
                },
            ),
        ];
        for (what, damage, expected) in cases {
            let mut bytes = good.clone();
            damage(&mut bytes);
            assert_eq!(
                check(&bytes, name(2, 3), SegmentKind::Complete),
                Err(expected),
                "{what}"
            );
        }
    }

    #[test]
    fn a_wrong_length_is_explained_by_the_first_page_when_it_can_be() {
        let segment = synthetic_segment(1, 3, 2);
        let mut checker =
            SegmentChecker::new(cluster(), name(1, 3), SegmentKind::Complete).unwrap();
        // The first page's long header with `value` written at `at`.
        let header_with = |at: std::ops::Range<usize>, value: &[u8]| {
            let mut header = segment[..40].to_vec();
            header[at].copy_from_slice(value);
            header
        };
        for (length, header, expected) in [
            (
                1 << 19,
                segment[..40].to_vec(),
                SegmentDefect::WrongSize {
                    actual: 1 << 19,
                    expected: 1 << 20,
                },
            ),
            (
                16 << 20,
                header_with(32..36, &(16u32 << 20).to_le_bytes()),
                SegmentDefect::OtherSegmentSize {
                    found: 16 << 20,
                    expected: 1 << 20,
                },
            ),
            (
                100,
                header_with(24..32, &9u64.to_le_bytes()),
                SegmentDefect::OtherCluster {
                    found: 9,
                    expected: SYSTEM_ID,
                },
            ),
        ] {
            assert_eq!(checker.diagnose_length(length, &header), Err(expected));
        }
        assert!(checker.diagnose_length(1 << 20, &[]).is_ok());
    }

    #[test]
    fn a_segment_under_another_name_is_refused() {
        let bytes = synthetic_segment(1, 3, 128);
        assert_eq!(
            check(&bytes, name(1, 4), SegmentKind::Complete),
            Err(SegmentDefect::WrongAddress {
                lsn: Lsn(4 << 20),
                found: Lsn(3 << 20),
                name: name(1, 4),
            })
        );
    }

    #[test]
    fn a_partial_segment_may_end_in_stale_pages_but_must_start_right() {
        let mut bytes = synthetic_segment(1, 3, 128);
        bytes[60 * 8192 + 8..60 * 8192 + 16].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert_eq!(check(&bytes, name(1, 3), SegmentKind::Partial), Ok(()));
        assert!(check(&bytes, name(1, 3), SegmentKind::Complete).is_err());
        assert!(matches!(
            check(&bytes, name(1, 4), SegmentKind::Partial),
            Err(SegmentDefect::WrongAddress { .. })
        ));
    }

    #[test]
    fn a_name_beyond_the_segment_size_is_refused() {
        let bytes = synthetic_segment(1, 3, 1);
        assert!(matches!(
            check(&bytes, name(1, 0x1000), SegmentKind::Complete),
            Err(SegmentDefect::NameOutOfRange { .. })
        ));
    }
}
