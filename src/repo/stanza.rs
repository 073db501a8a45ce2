//! A stanza's identity: the one cluster whose WAL and backups it holds. Recorded once by
//! `stanza-create` and never changed, so WAL of two clusters can never interleave in one archive.

use serde::{Deserialize, Serialize};

use super::ChunkHash;
use crate::pg::segment_check::ExpectedCluster;
use crate::pg::{PgMajor, SegmentSize};

/// Version of the stanza identity format.
pub const STANZA_FORMAT: u32 = 1;

/// What `<stanza>/stanza.json` records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StanzaIdentity {
    pub format: u32,
    pub stanza: String,
    pub system_id: u64,
    pub pg_version: u32,
    pub segment_size: u32,
    /// When `stanza-create` ran (RFC 3339, UTC); informational.
    pub created: String,
    /// `aes-256-gcm` in an encrypted repository: every object of the stanza is sealed. Absent
    /// in a plain one, so a plain stanza's file is as it always was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// The id of the encrypted repository's keyring (`keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// `blake3` when the stanza's chunks are named by their BLAKE3 hash; absent in stanzas made
    /// before, whose chunks are named by SHA-256 (see [`ChunkHash`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_hash: Option<String>,
}

/// The one cipher a stanza can name.
pub const CIPHER: &str = "aes-256-gcm";

/// Why a stanza identity file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StanzaIdentityError {
    // Not `#[from]`, which would print the parse error twice in a chain printed whole.
    #[error("it is not valid: {0}")]
    Parse(serde_json::Error),
    #[error("it has format {0}, which this Tidemark does not know; upgrade Tidemark")]
    UnknownFormat(u32),
    #[error("it records {0}")]
    BadField(String),
}

impl StanzaIdentity {
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("identity serializes");
        bytes.push(b'\n');
        bytes
    }

    pub fn from_json(bytes: &[u8]) -> Result<StanzaIdentity, StanzaIdentityError> {
        let identity: StanzaIdentity =
            serde_json::from_slice(bytes).map_err(StanzaIdentityError::Parse)?;
        if identity.format != STANZA_FORMAT {
            return Err(StanzaIdentityError::UnknownFormat(identity.format));
        }
        if let Some(cipher) = identity.cipher.as_deref().filter(|&c| c != CIPHER) {
            return Err(StanzaIdentityError::BadField(format!(
                "cipher '{cipher}', which this Tidemark does not know; upgrade Tidemark"
            )));
        }
        identity.expected_cluster()?;
        identity.chunk_hash()?;
        Ok(identity)
    }

    /// The hash that names this stanza's chunks.
    pub fn chunk_hash(&self) -> Result<ChunkHash, StanzaIdentityError> {
        ChunkHash::from_identity(self.chunk_hash.as_deref()).map_err(StanzaIdentityError::BadField)
    }

    /// What every segment pushed to this stanza must agree with.
    pub fn expected_cluster(&self) -> Result<ExpectedCluster, StanzaIdentityError> {
        Ok(ExpectedCluster {
            system_id: self.system_id,
            version: PgMajor::new(self.pg_version)
                .map_err(|e| StanzaIdentityError::BadField(e.to_string()))?,
            segment_size: SegmentSize::new(u64::from(self.segment_size))
                .map_err(|e| StanzaIdentityError::BadField(e.to_string()))?,
        })
    }

    /// Whether `other` describes the same cluster (the creation time aside).
    pub fn same_cluster(&self, other: &StanzaIdentity) -> bool {
        (self.system_id, self.pg_version, self.segment_size)
            == (other.system_id, other.pg_version, other.segment_size)
    }
}
