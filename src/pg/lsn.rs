//! Log sequence numbers and timeline IDs, printed the way PostgreSQL prints them.

use std::fmt;
use std::str::FromStr;

/// A position in the WAL stream; prints as PostgreSQL's `X/Y` (upper 32 bits / lower 32 bits, hex).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why a string is not an LSN.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not an LSN: write it as PostgreSQL does, two hexadecimal numbers like 0/16B3748")]
pub struct LsnParseError(String);

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(text: &str) -> Result<Lsn, LsnParseError> {
        let invalid = || LsnParseError(text.to_owned());
        let (high, low) = text.split_once('/').ok_or_else(invalid)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            u32::from_str_radix(part, 16).map_err(|_| invalid())
        };
        Ok(Lsn((u64::from(half(high)?) << 32) | u64::from(half(low)?)))
    }
}

/// A timeline ID; a new one starts at every promotion. Timeline 1 is the cluster's first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimelineId(pub u32);

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Serde for an LSN written as PostgreSQL writes it (`"0/16B3748"`), in the repository's JSON:
/// `#[serde(with = "lsn_text")]`. Text that is not an LSN fails to deserialize, naming it.
pub mod lsn_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Lsn;

    pub fn serialize<S: Serializer>(lsn: &Lsn, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(lsn)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Lsn, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for a [`TimelineId`] stored as its number (`"timeline": 1`), with
/// `#[serde(with = "timeline_number")]`.
pub mod timeline_number {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::TimelineId;

    pub fn serialize<S: Serializer>(
        timeline: &TimelineId,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(timeline.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TimelineId, D::Error> {
        u32::deserialize(deserializer).map(TimelineId)
    }
}

/// The same for an `Option<Lsn>`, `null` when absent.
pub mod optional_lsn_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Lsn;

    pub fn serialize<S: Serializer>(lsn: &Option<Lsn>, serializer: S) -> Result<S::Ok, S::Error> {
        match lsn {
            Some(lsn) => serializer.collect_str(lsn),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Lsn>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_prints_and_parses_as_postgresql_does() {
        let cases = [
            (0x0000_0000_0000_0000, "0/0"),
            (0x0000_0000_016B_3748, "0/16B3748"),
            (0x0000_0001_0000_0000, "1/0"),
            (0xFFFF_FFFF_FFFF_FFFF, "FFFFFFFF/FFFFFFFF"),
        ];
        for (value, text) in cases {
            assert_eq!(Lsn(value).to_string(), text);
            assert_eq!(text.parse::<Lsn>().unwrap(), Lsn(value));
        }
        assert_eq!("0/16b3748".parse::<Lsn>().unwrap(), Lsn(0x016B_3748));
    }

    #[test]
    fn malformed_lsns_are_refused() {
        for bad in [
            "",
            "0",
            "/0",
            "0/",
            "0/G",
            "123456789/0",
            "0/0/0",
            " 0/0",
            "+1/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }
}
