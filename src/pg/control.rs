//! The few facts of a data directory that bind a stanza to one cluster: the system identifier in
//! `global/pg_control`, the major version in `PG_VERSION`.

use super::fields::{u32_at, u64_at};

/// Fields of `pg_control` whose offsets are the same in every supported version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlFileIdentity {
    pub system_id: u64,
    pub pg_control_version: u32,
}

/// Why bytes are not a `pg_control` file.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlFileError {
    #[error("it is {0} bytes long; pg_control is 8192 bytes")]
    WrongSize(usize),
    #[error(
        "its pg_control_version is {0}, not one of {supported} (1201, 1300, 1700, 1800): wrong file or unsupported version",
        supported = super::version::SUPPORTED
    )]
    UnknownVersion(u32),
}

/// `PG_CONTROL_FILE_SIZE`: the file is padded to this size.
const CONTROL_FILE_SIZE: usize = 8192;

impl ControlFileIdentity {
    /// Reads `system_identifier` (offset 0) and `pg_control_version` (offset 8), which
    /// `ControlFileData` keeps first in every version so that tools can tell versions apart.
    pub fn decode(bytes: &[u8]) -> Result<ControlFileIdentity, ControlFileError> {
        if bytes.len() != CONTROL_FILE_SIZE {
            return Err(ControlFileError::WrongSize(bytes.len()));
        }
        let system_id = u64_at(bytes, 0);
        let pg_control_version = u32_at(bytes, 8);
        // PG_CONTROL_VERSION: 1201 in 12, 1300 in 13 to 16, 1700 in 17, 1800 in 18.
        if ![1201, 1300, 1700, 1800].contains(&pg_control_version) {
            return Err(ControlFileError::UnknownVersion(pg_control_version));
        }
        Ok(ControlFileIdentity {
            system_id,
            pg_control_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_identity_and_refuses_other_files() {
        let mut bytes = vec![0u8; 8192];
        bytes[0..8].copy_from_slice(&7_310_000_000_000_000_001u64.to_le_bytes());
        bytes[8..12].copy_from_slice(&1300u32.to_le_bytes());
        assert_eq!(
            ControlFileIdentity::decode(&bytes),
            Ok(ControlFileIdentity {
                system_id: 7_310_000_000_000_000_001,
                pg_control_version: 1300
            })
        );
        assert_eq!(
            ControlFileIdentity::decode(&bytes[..100]),
            Err(ControlFileError::WrongSize(100))
        );
        for version in [1201, 1700, 1800] {
            bytes[8..12].copy_from_slice(&u32::to_le_bytes(version));
            assert!(ControlFileIdentity::decode(&bytes).is_ok(), "{version}");
        }
        // 942 (9.6) and whatever 19 will bring are not guessed at.
        for version in [942, 1900] {
            bytes[8..12].copy_from_slice(&u32::to_le_bytes(version));
            assert_eq!(
                ControlFileIdentity::decode(&bytes),
                Err(ControlFileError::UnknownVersion(version))
            );
        }
    }
}
