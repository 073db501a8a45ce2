//! The planner's reader of segment events over a stanza: the transaction ends and restore
//! points of the archived segment where recovery stops, and where the first record at or past an
//! LSN starts, each segment read back and checked as a restore checks it.
//!
//! May import: `archive::walk_archived` (the checked walk), `repo/`, `pg/`, and the planner's
//! [`SegmentEvents`] it implements.

use crate::archive::walk_archived::{walk_archived, walk_spanning, walk_watching};
use crate::pg::{Lsn, SegmentName, WalFileName};
use crate::planning::planner::{SegmentDetail, SegmentEvents};
use crate::repo::Stanza;

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
    let walked = walk_spanning(stanza, segment, next)?;
    // Only what starts in `segment`: the rest is `next`'s own.
    let next_start = next.start_lsn(stanza.expected_cluster().segment_size)?;
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
