//! Recoverable windows: what restores along a timeline can reach, from each backup's
//! consistency point to where its archived WAL runs out (what `tidemark info` shows).

use super::stretch::stretch_from;
use super::timelines::{on_path, timeline_path};
use super::{Archive, BackupPoint, PlanError};
use crate::pg::{Lsn, SegmentName, TimelineId};

/// A stretch of WAL that restores can reach on one timeline's path: from where the earliest
/// backup that reaches it is consistent to the end of the archived WAL after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverableWindow {
    /// The earliest backup the window starts with, and where it is consistent.
    pub backup: String,
    pub from: Lsn,
    /// Where the archived WAL it reaches ends.
    pub to: Lsn,
    /// The last transaction end in it: what a time target can reach at most.
    pub last_xact: Option<(Lsn, i64)>,
    /// The first segment missing after it, when more WAL is archived past that hole.
    pub gap: Option<SegmentName>,
}

/// The windows a restore along `timeline` can reach, oldest first: from each backup's
/// consistency point to where its WAL runs out, overlapping windows merged. A backup whose WAL
/// has a hole before it is consistent reaches nothing.
pub fn recoverable_windows(
    archive: &Archive<'_>,
    timeline: TimelineId,
) -> Result<Vec<RecoverableWindow>, PlanError> {
    let path = timeline_path(timeline, archive.histories)?;
    let mut backups: Vec<&BackupPoint> = archive
        .backups
        .iter()
        .filter(|b| on_path(b, &path))
        .collect();
    backups.sort_by_key(|b| b.stop);
    let mut windows: Vec<RecoverableWindow> = Vec::new();
    for backup in backups {
        let stretch = stretch_from(archive, &path, backup, None);
        if stretch.end < backup.stop {
            continue;
        }
        let window = RecoverableWindow {
            backup: backup.label.clone(),
            from: backup.stop,
            to: stretch.end,
            last_xact: stretch.last_xact,
            gap: stretch.missing,
        };
        match windows.last_mut() {
            Some(open) if window.from <= open.to => {
                if window.to > open.to {
                    open.to = window.to;
                    open.last_xact = window.last_xact.or(open.last_xact);
                    open.gap = window.gap;
                }
            }
            _ => windows.push(window),
        }
    }
    Ok(windows)
}
