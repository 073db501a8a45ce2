//! `tidemark index rebuild`: writes the WAL index entries that are missing, from the archived
//! segments themselves (each read and checked like a restore). Entries already there are
//! checked to describe the archived content; none is replaced.

use anyhow::Context;

use crate::pg::WalFileName;
use crate::pg::segment_check::{CHUNK_ALIGNMENT, SegmentChecker, SegmentKind};
use crate::pg::wal_records::RecordWalker;
use crate::repo::Stanza;
use crate::repo::object;

/// What a rebuild did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub segments: u64,
    pub written: u64,
    pub already_there: u64,
}

/// Indexes every archived segment and `.partial` of `stanza` that has no index entry.
pub fn rebuild_index(stanza: &Stanza<'_>) -> anyhow::Result<RebuildReport> {
    let mut report = RebuildReport::default();
    let expected = stanza.expected_cluster();
    for (name, _) in stanza.list_wal()? {
        let (segment, kind) = match name {
            WalFileName::Segment(segment) => (segment, SegmentKind::Complete),
            WalFileName::Partial(segment) => (segment, SegmentKind::Partial),
            _ => continue,
        };
        report.segments += 1;
        if stanza.get_wal_index(name)?.is_some() {
            report.already_there += 1;
            continue;
        }
        let stored = stanza
            .get_wal(name)?
            .with_context(|| format!("{name} vanished from the repository"))?;
        let mut content = Vec::new();
        let header = object::decode_into(&stored, &mut content)
            .with_context(|| format!("archived object {} is damaged", stanza.wal_key(name)))?;
        let mut checker = SegmentChecker::new(expected, segment, kind)?;
        checker.check_length(content.len() as u64)?;
        let page_size = u32::from_le_bytes(
            content
                .get(36..40)
                .context("too short for a long header")?
                .try_into()?,
        );
        let mut walker =
            RecordWalker::new(segment, expected.segment_size, expected.version, page_size);
        for chunk in content.chunks(16 * CHUNK_ALIGNMENT) {
            checker
                .feed(chunk)
                .with_context(|| format!("archived {name}"))?;
            walker
                .feed(chunk)
                .with_context(|| format!("archived {name}"))?;
        }
        checker.finish()?;
        let summary = walker
            .finish(kind == SegmentKind::Complete)
            .with_context(|| format!("archived {name}"))?;
        stanza.put_wal_index(name, header.original_crc, summary)?;
        report.written += 1;
    }
    Ok(report)
}
