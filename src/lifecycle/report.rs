//! The report on a stanza (what `tidemark info` shows): its cluster, its backups, its WAL per
//! timeline, the windows of time restores can reach, and what archiving still owes. Its JSON is
//! these types serialized; its text for people is in `report_text.rs`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::Context;

use serde::Serialize;

use crate::archive::work_ahead::ready_files;
use crate::pg::time;
use crate::pg::{SegmentSize, TimelineId, WalFileName};
use crate::planning::inputs::StanzaPlanner;
use crate::planning::planner::RecoverableWindow;
use crate::repo::Stanza;
use crate::repo::catalog::BackupRecord;

/// Everything `info` reports about one stanza.
#[derive(Debug, Serialize)]
pub struct StanzaInfo {
    pub stanza: String,
    pub repository: String,
    pub system_id: u64,
    pub pg_version: u32,
    pub segment_size: u32,
    pub timelines: Vec<TimelineInfo>,
    pub history_files: Vec<String>,
    pub partial_files: Vec<String>,
    pub backup_history_files: Vec<String>,
    /// Complete backups, oldest first.
    pub backups: Vec<BackupInfo>,
    /// WAL files PostgreSQL marked ready to archive that are not durable in the repository yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_lag: Option<ArchiveLag>,
    /// Why the lag could not be seen (no `pgdata` configured, `pg_wal` unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_lag_error: Option<String>,
}

/// What archiving still owes: the `.ready` WAL files not yet archived.
#[derive(Debug, Serialize)]
pub struct ArchiveLag {
    pub pg_wal: String,
    pub waiting: u64,
    pub bytes: u64,
    /// The oldest of them (history files first, as they are archived first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<String>,
    /// Seconds since PostgreSQL last wrote the oldest, roughly how long it has been waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_seconds: Option<u64>,
}

/// The archive lag of the cluster whose data directory is `pgdata`, given what is archived.
fn archive_lag(pgdata: &Path, archived: &HashSet<String>) -> anyhow::Result<ArchiveLag> {
    let pg_wal = pgdata.join("pg_wal");
    let waiting: Vec<String> = ready_files(&pg_wal)
        .with_context(|| format!("read {}/archive_status", pg_wal.display()))?
        .into_iter()
        .filter(|name| !archived.contains(name))
        .collect();
    let metadata = |name: &str| std::fs::metadata(pg_wal.join(name)).ok();
    let oldest_age_seconds = waiting
        .first()
        .and_then(|name| metadata(name)?.modified().ok())
        .map(|written| written.elapsed().map_or(0, |age| age.as_secs()));
    Ok(ArchiveLag {
        pg_wal: pg_wal.display().to_string(),
        waiting: waiting.len() as u64,
        bytes: waiting
            .iter()
            .filter_map(|name| metadata(name))
            .map(|m| m.len())
            .sum(),
        oldest: waiting.first().cloned(),
        oldest_age_seconds,
    })
}

/// One complete backup.
#[derive(Debug, Serialize)]
pub struct BackupInfo {
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub timeline: u32,
    pub start_time: String,
    pub stop_time: String,
    pub start_lsn: String,
    pub stop_lsn: String,
    /// The WAL segments recovery needs to reach consistency, first and last.
    pub wal_start: String,
    pub wal_stop: String,
    pub wal_included: bool,
    pub sizes: crate::repo::catalog::BackupSizes,
    pub duration_ms: u64,
}

/// The archived segments of one timeline.
#[derive(Debug, Serialize)]
pub struct TimelineInfo {
    pub timeline: u32,
    pub first_segment: String,
    pub last_segment: String,
    pub segments: u64,
    /// Segments between the first and the last that are not archived.
    pub missing_segments: u64,
    pub original_bytes: u64,
    pub stored_bytes: u64,
    /// What restores along this timeline can reach, oldest first; more than one when holes in
    /// the archive cut it.
    pub recoverable: Vec<WindowInfo>,
    /// Why the windows could not be worked out (no history file, no index entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recoverable_error: Option<String>,
}

/// A stretch of time restores can reach.
#[derive(Debug, Serialize)]
pub struct WindowInfo {
    /// The backup it starts with, where (and when) that backup is consistent.
    pub from_backup: String,
    pub from_lsn: String,
    pub from_time: String,
    /// The last archived commit or abort in it: the latest time a restore can reach.
    pub to_time: Option<String>,
    pub to_commit_lsn: Option<String>,
    /// Where its archived WAL ends.
    pub to_lsn: String,
    /// The first missing segment after it, when WAL is archived past the hole.
    pub gap: Option<String>,
}

/// What `stanza` holds; with `pgdata`, also what its cluster has not archived yet.
pub fn collect(stanza: &Stanza<'_>, pgdata: Option<&Path>) -> anyhow::Result<StanzaInfo> {
    let identity = stanza.identity();
    let size = stanza.expected_cluster().segment_size;
    let backups = stanza.list_backups()?;
    let mut info = StanzaInfo {
        stanza: identity.stanza.clone(),
        repository: stanza.repository().storage().location(),
        system_id: identity.system_id,
        pg_version: identity.pg_version,
        segment_size: identity.segment_size,
        timelines: Vec::new(),
        history_files: Vec::new(),
        partial_files: Vec::new(),
        backup_history_files: Vec::new(),
        backups: backups.iter().map(BackupInfo::of).collect(),
        archive_lag: None,
        archive_lag_error: None,
    };
    let mut archived = HashSet::new();
    let mut by_timeline: BTreeMap<u32, Vec<(WalFileName, u64, u64)>> = BTreeMap::new();
    for (name, object) in stanza.list_wal()? {
        archived.insert(name.to_string());
        match name {
            // From the listing: a segment is the stanza's segment size, and what it takes in the
            // repository is its object's size (`verify` checks both).
            WalFileName::Segment(segment) => {
                by_timeline.entry(segment.timeline.0).or_default().push((
                    name,
                    u64::from(identity.segment_size),
                    object.size,
                ));
            }
            WalFileName::History(_) => info.history_files.push(name.to_string()),
            WalFileName::Partial(_) => info.partial_files.push(name.to_string()),
            WalFileName::BackupHistory { .. } => info.backup_history_files.push(name.to_string()),
        }
    }
    // The planner's view of the stanza, read once for every timeline.
    let planner = StanzaPlanner::load(stanza, &backups);
    let windows = |timeline: u32| -> anyhow::Result<Vec<WindowInfo>> {
        let planner = planner.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(planner
            .recoverable_windows(TimelineId(timeline))?
            .into_iter()
            .map(|w| window_info(w, &backups))
            .collect())
    };
    for (timeline, segments) in by_timeline {
        info.timelines
            .push(timeline_info(timeline, segments, size, windows(timeline)));
    }
    match pgdata.map(|pgdata| archive_lag(pgdata, &archived)) {
        Some(Ok(lag)) => info.archive_lag = Some(lag),
        Some(Err(e)) => info.archive_lag_error = Some(format!("{e:#}")),
        None => {
            info.archive_lag_error = Some(format!(
                "set pgdata in [stanza.{}] to see it",
                identity.stanza
            ))
        }
    }
    Ok(info)
}

impl BackupInfo {
    /// A backup as the report shows it.
    fn of(b: &BackupRecord) -> BackupInfo {
        BackupInfo {
            label: b.label.clone(),
            kind: b.kind.clone(),
            timeline: b.timeline.0,
            start_time: b.start_time.clone(),
            stop_time: b.stop_time.clone(),
            start_lsn: b.start_lsn.to_string(),
            stop_lsn: b.stop_lsn.to_string(),
            wal_start: b.wal_start.clone(),
            wal_stop: b.wal_stop.clone(),
            wal_included: b.wal_included,
            sizes: b.sizes,
            duration_ms: b.duration_ms,
        }
    }
}

/// One timeline's archived `segments` (name, original and stored length; at least one), and
/// the windows restores along it reach, or why they are unknown.
fn timeline_info(
    timeline: u32,
    mut segments: Vec<(WalFileName, u64, u64)>,
    size: SegmentSize,
    windows: anyhow::Result<Vec<WindowInfo>>,
) -> TimelineInfo {
    segments.sort_by_key(|(name, _, _)| name.segment());
    let number = |name: &WalFileName| segment_number(*name, size);
    let (first, last) = (segments[0].0, segments[segments.len() - 1].0);
    let count = segments.len() as u64;
    let (recoverable, recoverable_error) = match windows {
        Ok(windows) => (windows, None),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    TimelineInfo {
        timeline,
        first_segment: first.to_string(),
        last_segment: last.to_string(),
        segments: count,
        missing_segments: (number(&last) - number(&first) + 1).saturating_sub(count),
        original_bytes: segments.iter().map(|s| s.1).sum(),
        stored_bytes: segments.iter().map(|s| s.2).sum(),
        recoverable,
        recoverable_error,
    }
}

/// A recoverable window as `info` shows it, with times as PostgreSQL prints them.
fn window_info(window: RecoverableWindow, backups: &[BackupRecord]) -> WindowInfo {
    // As PostgreSQL prints times, like the commit times beside it.
    let stop_time = |label: &str| {
        backups
            .iter()
            .find(|b| b.label == label)
            .map(|b| {
                chrono::DateTime::parse_from_rfc3339(&b.stop_time)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
                    .unwrap_or_else(|_| b.stop_time.clone())
            })
            .unwrap_or_default()
    };
    WindowInfo {
        from_time: stop_time(&window.backup),
        from_backup: window.backup,
        from_lsn: window.from.to_string(),
        to_time: window.last_xact.map(|(_, time)| time::format_utc(time)),
        to_commit_lsn: window.last_xact.map(|(lsn, _)| lsn.to_string()),
        to_lsn: window.to.to_string(),
        gap: window.gap.map(|g| g.to_string()),
    }
}

fn segment_number(name: WalFileName, size: SegmentSize) -> u64 {
    name.segment()
        .and_then(|segment| segment.segment_number(size).ok())
        .unwrap_or(0)
}
