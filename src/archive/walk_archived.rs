//! Reads archived segments back and walks their records, checked as a restore checks them: for
//! `tidemark index rebuild`, and for the planner (`planning::segment_events`), which needs every
//! transaction end of the segment where recovery stops (the WAL index keeps only their ranges),
//! and for an LSN target where the first record at or past it starts.
//!
//! May import: `pg/` and `repo/`; it knows nothing of planning.

use anyhow::Context;

use crate::pg::page::PageHeader;
use crate::pg::segment_check::{CHUNK_ALIGNMENT, SegmentChecker, SegmentKind};
use crate::pg::wal::{RecordWalker, WalkedSegment};
use crate::pg::{Lsn, SegmentName, WalFileName};
use crate::repo::Stanza;
use crate::repo::object::{self, ObjectHeader};

/// An archived segment's original bytes, checked page by page, with its object header.
fn read_checked(
    stanza: &Stanza<'_>,
    name: WalFileName,
    segment: SegmentName,
    kind: SegmentKind,
) -> anyhow::Result<(ObjectHeader, Vec<u8>)> {
    let stored = stanza
        .get_wal(name)?
        .with_context(|| format!("{name} is not in the repository"))?;
    let mut content = Vec::new();
    let header = object::decode_into(&stored, &mut content)
        .with_context(|| format!("archived object {} is damaged", stanza.wal_key(name)))?;
    let mut checker = SegmentChecker::new(stanza.expected_cluster(), segment, kind)?;
    checker.check_length(content.len() as u64)?;
    for chunk in content.chunks(16 * CHUNK_ALIGNMENT) {
        checker
            .feed(chunk)
            .with_context(|| format!("archived {name}"))?;
    }
    checker.finish()?;
    Ok((header, content))
}

/// The page size a checked segment's long header names.
fn page_size(content: &[u8]) -> u32 {
    PageHeader::decode(content)
        .and_then(|header| header.page_size())
        .expect("checked: a long header")
}

/// Walks an archived segment or `.partial`.
pub fn walk_archived(
    stanza: &Stanza<'_>,
    name: WalFileName,
) -> anyhow::Result<(ObjectHeader, WalkedSegment)> {
    walk_watching(stanza, name, None)
}

/// Walks an archived segment or `.partial`, noting the first record at or past `watch`.
pub fn walk_watching(
    stanza: &Stanza<'_>,
    name: WalFileName,
    watch: Option<Lsn>,
) -> anyhow::Result<(ObjectHeader, WalkedSegment)> {
    let (segment, kind) = match name {
        WalFileName::Segment(segment) => (segment, SegmentKind::Complete),
        WalFileName::Partial(segment) => (segment, SegmentKind::Partial),
        _ => anyhow::bail!("{name} is not a segment"),
    };
    let (header, content) = read_checked(stanza, name, segment, kind)?;
    let expected = stanza.expected_cluster();
    let mut walker = RecordWalker::new(
        segment,
        expected.segment_size,
        expected.version,
        page_size(&content),
    );
    if let Some(lsn) = watch {
        walker.watch_from(lsn);
    }
    walker
        .feed(&content)
        .with_context(|| format!("archived {name}"))?;
    let walked = walker
        .finish(kind == SegmentKind::Complete)
        .with_context(|| format!("archived {name}"))?;
    Ok((header, walked))
}

/// Walks complete archived segments `segment` and `next` as one stretch of WAL, so that the
/// record that spills from the one into the other is decoded whole.
pub fn walk_spanning(
    stanza: &Stanza<'_>,
    segment: SegmentName,
    next: SegmentName,
) -> anyhow::Result<WalkedSegment> {
    let expected = stanza.expected_cluster();
    let read = |segment| {
        read_checked(
            stanza,
            WalFileName::Segment(segment),
            segment,
            SegmentKind::Complete,
        )
        .map(|(_, content)| content)
    };
    let (first, second) = (read(segment)?, read(next)?);
    let mut walker = RecordWalker::spanning(
        segment,
        expected.segment_size,
        expected.version,
        page_size(&first),
    )?;
    walker.feed(&first)?;
    walker.feed(&second)?;
    walker
        .finish(true)
        .with_context(|| format!("archived {segment} and {next}"))
}
