//! Reads archived segments back and walks their records, checked as a restore checks them: for
//! `tidemark index rebuild`, and for the planner, which needs every transaction end of the
//! segment where recovery stops (the WAL index keeps only their ranges), and for an LSN target
//! where the first record at or past it starts.

use anyhow::Context;

use crate::pg::page::PageHeader;
use crate::pg::segment_check::{CHUNK_ALIGNMENT, SegmentChecker, SegmentKind};
use crate::pg::wal::{RecordWalker, WalkedSegment};
use crate::pg::{Lsn, SegmentName, WalFileName};
use crate::plan::{SegmentDetail, SegmentEvents};
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
fn walk_watching(
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

/// The events of `segment`, reading the record that spills into `next` from both.
fn events_of(
    stanza: &Stanza<'_>,
    segment: SegmentName,
    next: Option<SegmentName>,
) -> anyhow::Result<SegmentDetail> {
    let Some(next) = next else {
        let (_, walked) = walk_archived(stanza, WalFileName::Segment(segment))?;
        return Ok(SegmentDetail {
            xact_ends: walked.xact_ends,
            restore_points: walked.summary.restore_points,
        });
    };
    let expected = stanza.expected_cluster();
    let (_, first) = read_checked(
        stanza,
        WalFileName::Segment(segment),
        segment,
        SegmentKind::Complete,
    )?;
    let (_, second) = read_checked(
        stanza,
        WalFileName::Segment(next),
        next,
        SegmentKind::Complete,
    )?;
    let mut walker = RecordWalker::spanning(
        segment,
        expected.segment_size,
        expected.version,
        page_size(&first),
    )?;
    walker.feed(&first)?;
    walker.feed(&second)?;
    let walked = walker
        .finish(true)
        .with_context(|| format!("archived {segment} and {next}"))?;
    let next_start = next.start_lsn(expected.segment_size)?;
    Ok(SegmentDetail {
        xact_ends: walked
            .xact_ends
            .into_iter()
            .filter(|x| x.lsn < next_start)
            .collect(),
        restore_points: walked
            .summary
            .restore_points
            .into_iter()
            .filter(|r| r.lsn < next_start)
            .collect(),
    })
}

/// The planner's reader of segment events, over a stanza.
pub struct ArchivedEvents<'s, 'r> {
    pub stanza: &'s Stanza<'r>,
}

impl SegmentEvents for ArchivedEvents<'_, '_> {
    fn segment_events(
        &self,
        segment: SegmentName,
        next: Option<SegmentName>,
    ) -> Result<SegmentDetail, String> {
        events_of(self.stanza, segment, next).map_err(|e| format!("{e:#}"))
    }

    fn first_record_from(&self, segment: SegmentName, from: Lsn) -> Result<Option<Lsn>, String> {
        walk_watching(self.stanza, WalFileName::Segment(segment), Some(from))
            .map(|(_, walked)| walked.first_record_from)
            .map_err(|e| format!("{e:#}"))
    }
}
