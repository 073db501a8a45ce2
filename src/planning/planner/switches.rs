//! Timeline switches inside a segment that recovery crosses, and where the older timeline's
//! copy of that segment comes from.
//!
//! PostgreSQL replays such a segment from the newer timeline's copy (it holds the older
//! timeline's WAL up to the switch, too). But a transaction prepared before the switch and
//! still prepared is read back from WAL — at a restartpoint, at the replay of the newer
//! timeline's first checkpoint, at the end-of-recovery checkpoint — through `pg_wal` only
//! (never `restore_command`), by the name of the timeline the PREPARE was written on. Without
//! the older copy there, recovery stops with "requested WAL segment … has already been
//! removed"; so a restore puts it there.

use super::Archive;
use super::timelines::TimelineSpan;
use crate::pg::{Lsn, SegmentName, TimelineId};

/// Where the older timeline's copy of a switch segment comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopySource {
    /// The whole segment is archived.
    Archived,
    /// Only the `.partial` file a promoted standby archives is (PostgreSQL archives none when
    /// that segment came from the archive): it holds the older timeline's WAL up to the
    /// switch, which is all that is read from it.
    Partial,
    /// Neither is archived.
    Missing,
}

/// A timeline switch inside a segment that recovery crosses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchSegment {
    /// The older timeline's copy of the segment holding the switch, under its own name.
    pub segment: SegmentName,
    /// Where the newer timeline begins.
    pub switch: Lsn,
    /// The newer timeline.
    pub next: TimelineId,
    pub source: CopySource,
}

/// The switches on `path` inside a segment that recovery reaching segment `last` replays from
/// a newer timeline's copy. Which of them a restore needs depends on its backup: see
/// [`RecoveryPlan::copies_to_place`](super::RecoveryPlan::copies_to_place).
pub(super) fn switch_segments(
    archive: &Archive<'_>,
    path: &[TimelineSpan],
    last: Option<u64>,
) -> Vec<SwitchSegment> {
    let segment_bytes = u64::from(archive.segment_size.bytes());
    path.windows(2)
        .filter_map(|pair| Some((pair[0].timeline, pair[0].ends?, pair[1].timeline)))
        .filter(|(_, switch, _)| switch.0 % segment_bytes != 0)
        .filter(|(_, switch, _)| last.is_some_and(|last| switch.0 / segment_bytes <= last))
        .map(|(timeline, switch, next)| {
            let segno = switch.0 / segment_bytes;
            SwitchSegment {
                segment: SegmentName::from_segment_number(timeline, segno, archive.segment_size),
                switch,
                next,
                source: source_of(archive, timeline, segno),
            }
        })
        .collect()
}

fn source_of(archive: &Archive<'_>, timeline: TimelineId, segno: u64) -> CopySource {
    if archive.segments.contains_key(&(timeline, segno)) {
        CopySource::Archived
    } else if archive.partials.contains(&(timeline, segno)) {
        CopySource::Partial
    } else {
        CopySource::Missing
    }
}
