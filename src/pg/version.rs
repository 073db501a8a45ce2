//! PostgreSQL major versions Tidemark understands and what identifies each on disk.

use std::fmt;

/// A PostgreSQL major version from 12 to 18.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgMajor(u32);

/// `XLOG_PAGE_MAGIC` per major version (`src/include/access/xlog_internal.h`). Minor releases never
/// change it, so the magic of a segment names the major version that wrote it.
///
/// The list is closed: a later major changes record layouts (19 moves checkpoint fields and adds
/// a resource manager), so its WAL is refused rather than guessed at.
const PAGE_MAGICS: [(u32, u16); 7] = [
    (12, 0xD101),
    (13, 0xD106),
    (14, 0xD10D),
    (15, 0xD110),
    (16, 0xD113),
    (17, 0xD116),
    (18, 0xD118),
];

/// The majors of [`PAGE_MAGICS`], as every message that names them says it.
pub const SUPPORTED: &str = "PostgreSQL 12 to 18";

/// Why a version is not one Tidemark supports.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL {0} is not supported: Tidemark supports {supported}", supported = SUPPORTED)]
pub struct UnsupportedVersion(pub String);

impl PgMajor {
    /// The major version `major`, if supported.
    pub fn new(major: u32) -> Result<PgMajor, UnsupportedVersion> {
        if PAGE_MAGICS.iter().any(|&(m, _)| m == major) {
            Ok(PgMajor(major))
        } else {
            Err(UnsupportedVersion(major.to_string()))
        }
    }

    /// The major version of a server reporting `server_version_num` (150004 is 15), if supported.
    pub fn from_server_version_num(server_version_num: u32) -> Result<PgMajor, UnsupportedVersion> {
        PgMajor::new(server_version_num / 10000)
    }

    /// Parses the content of a data directory's `PG_VERSION` file ("15\n").
    pub fn from_pg_version_file(content: &str) -> Result<PgMajor, UnsupportedVersion> {
        let text = content.trim();
        let major = text
            .parse::<u32>()
            .map_err(|_| UnsupportedVersion(format!("'{text}'")))?;
        PgMajor::new(major)
    }

    /// The version whose WAL pages carry `magic`, if any supported one does.
    pub fn from_page_magic(magic: u16) -> Option<PgMajor> {
        PAGE_MAGICS
            .iter()
            .find(|&&(_, m)| m == magic)
            .map(|&(major, _)| PgMajor(major))
    }

    /// The `XLOG_PAGE_MAGIC` this version writes on every WAL page.
    pub fn page_magic(self) -> u16 {
        PAGE_MAGICS
            .iter()
            .find(|&&(m, _)| m == self.0)
            .map(|&(_, magic)| magic)
            .expect("PgMajor is only built for versions in PAGE_MAGICS")
    }

    pub fn number(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PgMajor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_round_trips_for_every_supported_version() {
        for major in 12..=18 {
            let version = PgMajor::new(major).unwrap();
            assert_eq!(
                PgMajor::from_page_magic(version.page_magic()),
                Some(version)
            );
        }
        assert_eq!(PgMajor::new(15).unwrap().page_magic(), 0xD110);
        assert_eq!(PgMajor::new(18).unwrap().page_magic(), 0xD118);
        assert_eq!(
            PgMajor::from_page_magic(0xD120),
            None,
            "PostgreSQL 19's magic names no supported version"
        );
        assert_eq!(
            PgMajor::new(19).unwrap_err().to_string(),
            "PostgreSQL 19 is not supported: Tidemark supports PostgreSQL 12 to 18"
        );
        assert_eq!(
            PgMajor::from_server_version_num(180004).unwrap().number(),
            18
        );
        for bad in [110022, 190000, 0] {
            assert!(PgMajor::from_server_version_num(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_supported_range_named_in_messages_is_the_table_s() {
        let (first, last) = (PAGE_MAGICS[0].0, PAGE_MAGICS[PAGE_MAGICS.len() - 1].0);
        assert_eq!(SUPPORTED, format!("PostgreSQL {first} to {last}"));
    }

    #[test]
    fn pg_version_file_is_parsed_and_checked() {
        assert_eq!(PgMajor::from_pg_version_file("15\n").unwrap().number(), 15);
        for bad in ["11\n", "19", "", "15.2", "fifteen"] {
            assert!(PgMajor::from_pg_version_file(bad).is_err(), "{bad:?}");
        }
    }
}
