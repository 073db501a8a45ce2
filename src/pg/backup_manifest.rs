//! PostgreSQL's backup manifest (`backup_manifest`, PostgreSQL 13+): the files of a base backup
//! with their sizes and checksums, the WAL it needs, and a SHA-256 of the manifest itself.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::lsn::Lsn;

/// One file the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    /// Relative to the data directory; tablespace files under `pg_tblspc/<oid>/`.
    pub path: String,
    pub size: u64,
    /// The CRC-32C of the file, when the manifest uses CRC32C checksums.
    pub crc32c: Option<u32>,
}

/// A range of WAL the backup needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRange {
    pub timeline: u32,
    pub start: Lsn,
    pub end: Lsn,
}

/// A parsed and self-checked manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupManifest {
    /// The cluster's system identifier, which manifests name from version 2 (PostgreSQL 17) on.
    pub system_id: Option<u64>,
    pub files: Vec<ManifestFile>,
    pub wal_ranges: Vec<WalRange>,
}

/// Why a manifest cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("it is not a valid backup manifest: {0}")]
    Parse(String),
    #[error("its own checksum does not match: SHA-256 {actual}, it says {expected}")]
    Checksum { actual: String, expected: String },
    #[error("file {path}: checksum {checksum:?} is not a CRC32C in hexadecimal")]
    BadChecksum { path: String, checksum: String },
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u32,
    #[serde(rename = "System-Identifier")]
    system_id: Option<u64>,
    #[serde(rename = "Files")]
    files: Vec<RawFile>,
    #[serde(rename = "WAL-Ranges", default)]
    wal_ranges: Vec<RawWalRange>,
    #[serde(rename = "Manifest-Checksum")]
    checksum: String,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

#[derive(Deserialize)]
struct RawWalRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start: String,
    #[serde(rename = "End-LSN")]
    end: String,
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

impl BackupManifest {
    /// Parses `bytes` and checks the manifest's own SHA-256, which covers every byte before
    /// the `"Manifest-Checksum"` key.
    pub fn parse(bytes: &[u8]) -> Result<BackupManifest, ManifestError> {
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
        if !(1..=2).contains(&raw.version) {
            return Err(ManifestError::Parse(format!(
                "unknown version {}",
                raw.version
            )));
        }
        // Version 2 added the system identifier; the one must come with the other.
        if raw.system_id.is_some() != (raw.version >= 2) {
            return Err(ManifestError::Parse(format!(
                "a version {} manifest {} a System-Identifier",
                raw.version,
                if raw.version >= 2 { "without" } else { "with" }
            )));
        }
        let key = b"\"Manifest-Checksum\"";
        let covered = bytes
            .windows(key.len())
            .rposition(|w| w == key)
            .ok_or_else(|| ManifestError::Parse("no Manifest-Checksum".into()))?;
        let actual: String = Sha256::digest(&bytes[..covered])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if actual != raw.checksum.to_ascii_lowercase() {
            return Err(ManifestError::Checksum {
                actual,
                expected: raw.checksum,
            });
        }
        let mut files = Vec::with_capacity(raw.files.len());
        for file in raw.files {
            let path = match (file.path, file.encoded_path) {
                (Some(path), _) => path,
                (None, Some(encoded)) => hex_decode(&encoded)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .ok_or_else(|| ManifestError::Parse(format!("bad Encoded-Path {encoded}")))?,
                (None, None) => return Err(ManifestError::Parse("a file has no path".into())),
            };
            let crc32c = match (file.algorithm.as_deref(), file.checksum) {
                (Some("CRC32C"), Some(checksum)) => {
                    // The hex of the CRC's native (little-endian) bytes.
                    let bytes =
                        hex_decode(&checksum)
                            .filter(|b| b.len() == 4)
                            .ok_or_else(|| ManifestError::BadChecksum {
                                path: path.clone(),
                                checksum: checksum.clone(),
                            })?;
                    Some(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
                }
                _ => None,
            };
            files.push(ManifestFile {
                path,
                size: file.size,
                crc32c,
            });
        }
        let wal_ranges = raw
            .wal_ranges
            .into_iter()
            .map(|r| {
                Ok(WalRange {
                    timeline: r.timeline,
                    start: r
                        .start
                        .parse()
                        .map_err(|e| ManifestError::Parse(format!("{e}")))?,
                    end: r
                        .end
                        .parse()
                        .map_err(|e| ManifestError::Parse(format!("{e}")))?,
                })
            })
            .collect::<Result<_, ManifestError>>()?;
        Ok(BackupManifest {
            system_id: raw.system_id,
            files,
            wal_ranges,
        })
    }
}

/// The manifest checksum form of a CRC-32C: hex of its little-endian bytes.
pub fn crc32c_hex(crc: u32) -> String {
    crc.to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(body: &str) -> Vec<u8> {
        let checksum: String = Sha256::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{body}\"Manifest-Checksum\": \"{checksum}\"}}\n").into_bytes()
    }

    const BODY: &str = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{ \"Path\": \"PG_VERSION\", \"Size\": 3, \"Last-Modified\": \"2026-11-21 13:46:24 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"8a744722\" },\n{ \"Encoded-Path\": \"6162\", \"Size\": 0, \"Last-Modified\": \"2026-11-21 13:46:24 GMT\" }\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/7000028\", \"End-LSN\": \"0/7000138\" }\n],\n";

    #[test]
    fn parses_files_wal_ranges_and_checks_itself() {
        let parsed = BackupManifest::parse(&manifest(BODY)).unwrap();
        assert_eq!(
            parsed.files,
            vec![
                ManifestFile {
                    path: "PG_VERSION".into(),
                    size: 3,
                    crc32c: Some(0x2247748a)
                },
                ManifestFile {
                    path: "ab".into(),
                    size: 0,
                    crc32c: None
                },
            ]
        );
        assert_eq!(
            crc32c::crc32c(b"15\n"),
            0x2247748a,
            "PostgreSQL's own example"
        );
        assert_eq!(crc32c_hex(0x2247748a), "8a744722");
        assert_eq!(
            parsed.wal_ranges,
            vec![WalRange {
                timeline: 1,
                start: Lsn(0x7000028),
                end: Lsn(0x7000138)
            }]
        );
        assert_eq!(parsed.system_id, None);
        let mut damaged = manifest(BODY);
        damaged[60] ^= 1;
        assert!(BackupManifest::parse(&damaged).is_err());
    }

    #[test]
    fn a_version_2_manifest_names_its_system_and_only_it_does() {
        // The opening 17 and 18 write.
        let v2 = BODY.replace(
            "Version\": 1,\n",
            "Version\": 2,\n\"System-Identifier\": 7716157807858345808,\n",
        );
        let parsed = BackupManifest::parse(&manifest(&v2)).unwrap();
        assert_eq!(parsed.system_id, Some(7_716_157_807_858_345_808));
        assert_eq!(parsed.files.len(), 2);
        let v2_without = BODY.replace("Version\": 1", "Version\": 2");
        let v1_with = v2.replace("Version\": 2", "Version\": 1");
        for bad in [v2_without, v1_with] {
            assert!(BackupManifest::parse(&manifest(&bad)).is_err(), "{bad}");
        }
    }
}
