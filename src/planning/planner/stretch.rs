//! Stretches of archived WAL: the segments from a backup's start along a timeline path, how
//! far they reach unbroken, and the first one missing.

use super::timelines::{TimelineSpan, timeline_of_segment};
use super::{Archive, BackupPoint, PlanError};
use crate::pg::{Lsn, SegmentName};

/// What the archive holds from a backup's start on along `path`.
pub(super) struct Stretch {
    pub segments: Vec<SegmentName>,
    pub bytes: u64,
    pub end: Lsn,
    /// The last transaction end in it (WAL order): LSN and time.
    pub last_xact: Option<(Lsn, i64)>,
    /// The first segment missing before `last` (or, open-ended, before the archive's end on
    /// `path`), and whether archived WAL follows it.
    pub missing: Option<SegmentName>,
    archive_continues: bool,
}

/// The archived segments from the one holding `backup.start` through segment `last` (or as far
/// as the archive goes), up to the first one missing.
pub(super) fn stretch_from(
    archive: &Archive<'_>,
    path: &[TimelineSpan],
    backup: &BackupPoint,
    last: Option<u64>,
) -> Stretch {
    let size = archive.segment_size;
    let segment_bytes = u64::from(size.bytes());
    let archived_end = archive
        .segments
        .keys()
        .filter(|(timeline, segno)| *timeline == timeline_of_segment(path, *segno, size))
        .map(|(_, segno)| *segno)
        .max();
    let mut stretch = Stretch {
        segments: Vec::new(),
        bytes: 0,
        end: backup.start,
        last_xact: None,
        missing: None,
        archive_continues: false,
    };
    let mut segno = backup.start.0 / segment_bytes;
    while last.is_none_or(|last| segno <= last) {
        let timeline = timeline_of_segment(path, segno, size);
        let name = SegmentName::from_segment_number(timeline, segno, size);
        let Some(indexed) = archive.segments.get(&(timeline, segno)) else {
            stretch.archive_continues = archived_end.is_some_and(|end| segno < end);
            if last.is_some() || stretch.archive_continues {
                stretch.missing = Some(name);
            } else if segno * segment_bytes < backup.stop.0 {
                // The archive ends before the backup is consistent.
                stretch.missing = Some(name);
            }
            break;
        };
        stretch.segments.push(name);
        stretch.bytes += indexed.bytes;
        stretch.end = indexed.summary.end_of_wal;
        if let Some(x) = indexed
            .summary
            .last_xact
            .as_ref()
            .filter(|x| x.lsn >= backup.start)
        {
            stretch.last_xact = Some((x.lsn, x.time));
        }
        segno += 1;
    }
    stretch
}

/// The segments from the one holding `backup.start` through `last` (or as far as the archive
/// goes), failing on the first one missing before that.
pub(super) fn unbroken_stretch(
    archive: &Archive<'_>,
    path: &[TimelineSpan],
    backup: &BackupPoint,
    last: Option<u64>,
) -> Result<Stretch, PlanError> {
    let stretch = stretch_from(archive, path, backup, last);
    match stretch.missing {
        Some(missing) => Err(PlanError::Gap {
            missing,
            label: backup.label.clone(),
        }),
        None => Ok(stretch),
    }
}
