//! The names of the files PostgreSQL hands to `archive_command` and asks `restore_command` for:
//! WAL segments, `.partial` segments, timeline history files and backup history files.
//!
//! PostgreSQL writes these names with upper-case hexadecimal digits only (`IsXLogFileName`); a
//! lower-case name is not one it wrote, so it is refused rather than silently accepted.

use std::fmt;

use super::lsn::{Lsn, TimelineId};

/// A WAL segment size: a power of two from 1 MiB to 1 GiB (`initdb --wal-segsize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSize(u32);

/// Why a number of bytes is not a WAL segment size.
#[derive(Debug, thiserror::Error)]
#[error("{0} bytes is not a WAL segment size: PostgreSQL uses a power of two from 1 MiB to 1 GiB")]
pub struct InvalidSegmentSize(pub u64);

impl SegmentSize {
    pub const DEFAULT: SegmentSize = SegmentSize(16 * 1024 * 1024);

    pub fn new(bytes: u64) -> Result<SegmentSize, InvalidSegmentSize> {
        if bytes.is_power_of_two() && (1 << 20..=1 << 30).contains(&bytes) {
            Ok(SegmentSize(bytes as u32))
        } else {
            Err(InvalidSegmentSize(bytes))
        }
    }

    pub fn bytes(self) -> u32 {
        self.0
    }

    /// Segments per 4 GiB "log" (`XLogSegmentsPerXLogId`): the range of a name's last 8 digits.
    pub fn segments_per_log(self) -> u64 {
        0x1_0000_0000 / u64::from(self.0)
    }
}

/// A segment's name: its timeline and the two halves of its segment number, as written.
///
/// The segment number itself depends on the segment size, so a name alone cannot say whether its
/// last 8 digits are in range; [`SegmentName::segment_number`] checks that once the size is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    pub timeline: TimelineId,
    pub log: u32,
    pub seg: u32,
}

/// Why a name does not fit a segment size.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} is not a segment name for {size} MiB segments: its last 8 digits must be below {limit:08X}"
)]
pub struct SegmentOutOfRange {
    name: SegmentName,
    size: u32,
    limit: u64,
}

impl SegmentName {
    /// The segment with number `segno` on `timeline` (`XLogFileName`).
    pub fn from_segment_number(timeline: TimelineId, segno: u64, size: SegmentSize) -> SegmentName {
        let per_log = size.segments_per_log();
        SegmentName {
            timeline,
            log: (segno / per_log) as u32,
            seg: (segno % per_log) as u32,
        }
    }

    /// The segment number (`XLogFromFileName`), if the name fits `size`.
    pub fn segment_number(self, size: SegmentSize) -> Result<u64, SegmentOutOfRange> {
        let per_log = size.segments_per_log();
        if u64::from(self.seg) >= per_log {
            return Err(SegmentOutOfRange {
                name: self,
                size: size.bytes() >> 20,
                limit: per_log,
            });
        }
        Ok(u64::from(self.log) * per_log + u64::from(self.seg))
    }

    /// The LSN of the segment's first byte.
    pub fn start_lsn(self, size: SegmentSize) -> Result<Lsn, SegmentOutOfRange> {
        Ok(Lsn(self.segment_number(size)? * u64::from(size.bytes())))
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.timeline.0, self.log, self.seg)
    }
}

/// A file name PostgreSQL archives or asks to restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WalFileName {
    /// `TTTTTTTTLLLLLLLLSSSSSSSS`
    Segment(SegmentName),
    /// `<segment>.partial`: the last, incomplete segment of a timeline left at promotion.
    Partial(SegmentName),
    /// `TTTTTTTT.history`
    History(TimelineId),
    /// `<segment>.OOOOOOOO.backup`: written at the end of a base backup; the segment and offset
    /// are those of its start.
    BackupHistory { segment: SegmentName, offset: u32 },
}

/// Why a string is not a name PostgreSQL gives its WAL files.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalFileNameError {
    #[error(
        "'{given}' is not a WAL file name: PostgreSQL writes its hexadecimal digits in upper case ('{expected}')"
    )]
    LowerCase { given: String, expected: String },
    #[error(
        "'{0}' is not a WAL file name: expected a 24-digit segment name, NNNNNNNN.history, <segment>.partial or <segment>.NNNNNNNN.backup"
    )]
    Malformed(String),
    #[error("'{0}' is not a WAL file name: timeline 0 does not exist")]
    TimelineZero(String),
}

fn is_upper_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// `text` with the hexadecimal part of the name in upper case and its suffix left as it is.
fn with_upper_case_digits(text: &str) -> String {
    for suffix in [".history", ".partial", ".backup"] {
        if let Some(stem) = text.strip_suffix(suffix) {
            return format!("{}{suffix}", stem.to_ascii_uppercase());
        }
    }
    text.to_ascii_uppercase()
}

fn hex_u32(text: &str) -> u32 {
    u32::from_str_radix(text, 16).expect("caller checked 8 hexadecimal digits")
}

fn parse_segment(text: &str) -> Option<SegmentName> {
    if text.len() != 24 || !is_upper_hex(text) {
        return None;
    }
    Some(SegmentName {
        timeline: TimelineId(hex_u32(&text[0..8])),
        log: hex_u32(&text[8..16]),
        seg: hex_u32(&text[16..24]),
    })
}

impl WalFileName {
    pub fn parse(text: &str) -> Result<WalFileName, WalFileNameError> {
        let malformed = || WalFileNameError::Malformed(text.to_owned());
        let parsed = if let Some(tli) = text.strip_suffix(".history") {
            if tli.len() != 8 || !is_upper_hex(tli) {
                None
            } else {
                Some(WalFileName::History(TimelineId(hex_u32(tli))))
            }
        } else if let Some(segment) = text.strip_suffix(".partial") {
            parse_segment(segment).map(WalFileName::Partial)
        } else if let Some(rest) = text.strip_suffix(".backup") {
            match rest.split_once('.') {
                Some((segment, offset)) if offset.len() == 8 && is_upper_hex(offset) => {
                    parse_segment(segment).map(|segment| WalFileName::BackupHistory {
                        segment,
                        offset: hex_u32(offset),
                    })
                }
                _ => None,
            }
        } else {
            parse_segment(text).map(WalFileName::Segment)
        };
        let Some(parsed) = parsed else {
            // Tell a lower-case name apart: it is the one mistake a hand-written script makes.
            let expected = with_upper_case_digits(text);
            if expected != text && WalFileName::parse(&expected).is_ok() {
                return Err(WalFileNameError::LowerCase {
                    given: text.to_owned(),
                    expected,
                });
            }
            return Err(malformed());
        };
        if parsed.timeline().0 == 0 {
            return Err(WalFileNameError::TimelineZero(text.to_owned()));
        }
        Ok(parsed)
    }

    /// The timeline the file belongs to.
    pub fn timeline(self) -> TimelineId {
        match self {
            WalFileName::Segment(s) | WalFileName::Partial(s) => s.timeline,
            WalFileName::BackupHistory { segment, .. } => segment.timeline,
            WalFileName::History(tli) => tli,
        }
    }

    /// The segment the file holds or points into, if it is tied to one.
    pub fn segment(self) -> Option<SegmentName> {
        match self {
            WalFileName::Segment(s) | WalFileName::Partial(s) => Some(s),
            WalFileName::BackupHistory { segment, .. } => Some(segment),
            WalFileName::History(_) => None,
        }
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalFileName::Segment(s) => write!(f, "{s}"),
            WalFileName::Partial(s) => write!(f, "{s}.partial"),
            WalFileName::History(tli) => write!(f, "{:08X}.history", tli.0),
            WalFileName::BackupHistory { segment, offset } => {
                write!(f, "{segment}.{offset:08X}.backup")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(tli: u32, log: u32, seg: u32) -> SegmentName {
        SegmentName {
            timeline: TimelineId(tli),
            log,
            seg,
        }
    }

    #[test]
    fn every_kind_of_name_parses_and_prints_back() {
        let cases = [
            (
                "000000010000000A000000FF",
                WalFileName::Segment(seg(1, 0xA, 0xFF)),
            ),
            (
                "000000020000000000000009.partial",
                WalFileName::Partial(seg(2, 0, 9)),
            ),
            ("0000000A.history", WalFileName::History(TimelineId(10))),
            (
                "000000010000000000000007.00000028.backup",
                WalFileName::BackupHistory {
                    segment: seg(1, 0, 7),
                    offset: 0x28,
                },
            ),
        ];
        for (text, name) in cases {
            assert_eq!(WalFileName::parse(text), Ok(name), "{text}");
            assert_eq!(name.to_string(), text);
        }
    }

    #[test]
    fn names_postgresql_never_writes_are_refused_with_the_reason() {
        use WalFileNameError::*;
        let lower = |given: &str, expected: &str| LowerCase {
            given: given.to_owned(),
            expected: expected.to_owned(),
        };
        assert_eq!(
            WalFileName::parse("000000010000000a000000ff"),
            Err(lower(
                "000000010000000a000000ff",
                "000000010000000A000000FF"
            ))
        );
        assert_eq!(
            WalFileName::parse("0000000a.history"),
            Err(lower("0000000a.history", "0000000A.history"))
        );
        type Expected = fn(String) -> WalFileNameError;
        let cases: [(&str, Expected); 11] = [
            ("000000010000000000000009.PARTIAL", Malformed),
            ("00000001000000000000000", Malformed),
            ("0000000100000000000000001", Malformed),
            ("00000001000000000000000G", Malformed),
            ("", Malformed),
            ("RECOVERYXLOG", Malformed),
            ("00000001.history.gz", Malformed),
            ("000000010000000000000007.0000028.backup", Malformed),
            ("000000000000000000000001", TimelineZero),
            ("00000000.history", TimelineZero),
            ("../00000001000000000000001", Malformed),
        ];
        for (text, expected) in cases {
            assert_eq!(
                WalFileName::parse(text),
                Err(expected(text.to_owned())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn timeline_1_history_is_a_name_postgresql_asks_for() {
        // PostgreSQL never writes it, but asks restore_command for it at every promotion from
        // timeline 1, which must get a quiet "not archived".
        assert_eq!(
            WalFileName::parse("00000001.history"),
            Ok(WalFileName::History(TimelineId(1)))
        );
    }

    #[test]
    fn segment_numbers_follow_the_segment_size() {
        let mib16 = SegmentSize::new(16 << 20).unwrap();
        let gib1 = SegmentSize::new(1 << 30).unwrap();
        let mib1 = SegmentSize::new(1 << 20).unwrap();
        assert_eq!(seg(1, 0, 0xFF).segment_number(mib16).unwrap(), 0xFF);
        assert_eq!(seg(1, 1, 0).segment_number(mib16).unwrap(), 0x100);
        assert_eq!(
            SegmentName::from_segment_number(TimelineId(1), 0x100, mib16).to_string(),
            "000000010000000100000000"
        );
        assert_eq!(seg(1, 2, 3).segment_number(gib1).unwrap(), 11);
        assert!(seg(1, 0, 4).segment_number(gib1).is_err());
        assert!(seg(1, 0, 0x100).segment_number(mib16).is_err());
        assert_eq!(seg(1, 0, 0xFFF).segment_number(mib1).unwrap(), 0xFFF);
        assert_eq!(seg(1, 0, 2).start_lsn(mib16).unwrap(), Lsn(0x200_0000));
    }

    #[test]
    fn only_powers_of_two_from_1_mib_to_1_gib_are_segment_sizes() {
        for ok in [1u64 << 20, 2 << 20, 16 << 20, 64 << 20, 1 << 30] {
            assert!(SegmentSize::new(ok).is_ok(), "{ok}");
        }
        for bad in [0u64, 1 << 19, 3 << 20, 1 << 31, (16 << 20) + 1] {
            assert!(SegmentSize::new(bad).is_err(), "{bad}");
        }
    }
}
