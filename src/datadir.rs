//! Reads the identity of a local PostgreSQL data directory: the facts `stanza-create` binds a
//! stanza to. The system identifier comes from `global/pg_control` and is confirmed by the long
//! header of a segment in `pg_wal`, which also gives the segment size; the version comes from
//! `PG_VERSION` and is confirmed by that segment's page magic.

use std::fs;
use std::path::Path;

use anyhow::{Context, bail};

use crate::pg::control::ControlFileIdentity;
use crate::pg::page::{LONG_HEADER_LEN, PageHeader};
use crate::pg::{PgMajor, SegmentSize, WalFileName};

/// What a data directory says about its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataDirIdentity {
    pub system_id: u64,
    pub version: PgMajor,
    pub segment_size: SegmentSize,
}

/// Reads the identity of the data directory at `pgdata`.
pub fn read_identity(pgdata: &Path) -> anyhow::Result<DataDirIdentity> {
    let version_file = pgdata.join("PG_VERSION");
    let version_text = fs::read_to_string(&version_file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e}; is {} a PostgreSQL data directory (pgdata in the config file)?",
            version_file.display(),
            pgdata.display()
        )
    })?;
    let version = PgMajor::from_pg_version_file(&version_text)?;
    let control_path = pgdata.join("global/pg_control");
    let control_bytes =
        fs::read(&control_path).with_context(|| format!("read {}", control_path.display()))?;
    let control = ControlFileIdentity::decode(&control_bytes)
        .with_context(|| format!("{} is not a pg_control file", control_path.display()))?;

    let wal_dir = pgdata.join("pg_wal");
    let mut segments: Vec<String> = fs::read_dir(&wal_dir)
        .with_context(|| format!("list {}", wal_dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| matches!(WalFileName::parse(name), Ok(WalFileName::Segment(_))))
        .collect();
    segments.sort();
    let Some(newest) = segments.last() else {
        bail!(
            "{} holds no WAL segment to read the segment size from",
            wal_dir.display()
        );
    };
    let segment_path = wal_dir.join(newest);
    let mut first_page = vec![0u8; LONG_HEADER_LEN];
    use std::io::Read;
    fs::File::open(&segment_path)
        .and_then(|mut f| f.read_exact(&mut first_page))
        .with_context(|| format!("read the first page of {}", segment_path.display()))?;
    let header = PageHeader::decode(&first_page).expect("long enough for a long header");
    let long = header.long.with_context(|| {
        format!(
            "{} has no long page header: not a WAL segment",
            segment_path.display()
        )
    })?;
    if PgMajor::from_page_magic(header.magic) != Some(version) {
        bail!(
            "{} has WAL page magic {:#06X}, which is not PostgreSQL {version}'s: the data directory is inconsistent",
            segment_path.display(),
            header.magic
        );
    }
    if long.system_id != control.system_id {
        bail!(
            "{} names system identifier {}, but pg_control says {}: the data directory is inconsistent",
            segment_path.display(),
            long.system_id,
            control.system_id
        );
    }
    let segment_size = SegmentSize::new(u64::from(long.segment_size))?;
    Ok(DataDirIdentity {
        system_id: control.system_id,
        version,
        segment_size,
    })
}
