//! `tidemark info`: what a stanza holds, for a person (text) or a script (`--output json`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::Context;

use serde::Serialize;

use crate::archive::work_ahead::ready_files;
use crate::config::ConfigChoice;
use crate::pg::time;
use crate::pg::{SegmentSize, TimelineId, WalFileName};
use crate::planning::inputs::StanzaPlanner;
use crate::planning::planner::RecoverableWindow;
use crate::program::{self, Finished};
use crate::repo::Stanza;
use crate::repo::catalog::BackupRecord;
use crate::units;

/// Output format of reporting commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

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

/// Reads what `stanza` holds.
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
        backups: backups
            .iter()
            .map(|b| BackupInfo {
                label: b.label.clone(),
                kind: b.kind.clone(),
                timeline: b.timeline,
                start_time: b.start_time.clone(),
                stop_time: b.stop_time.clone(),
                start_lsn: b.start_lsn.to_string(),
                stop_lsn: b.stop_lsn.to_string(),
                wal_start: b.wal_start.clone(),
                wal_stop: b.wal_stop.clone(),
                wal_included: b.wal_included,
                sizes: b.sizes,
                duration_ms: b.duration_ms,
            })
            .collect(),
        archive_lag: None,
        archive_lag_error: None,
    };
    let mut archived = HashSet::new();
    let mut by_timeline: BTreeMap<u32, Vec<(WalFileName, u64, u64)>> = BTreeMap::new();
    for (name, object) in stanza.list_wal()? {
        archived.insert(name.to_string());
        match name {
            WalFileName::Segment(segment) => {
                let header = stanza.object_header(&object.key)?;
                by_timeline.entry(segment.timeline.0).or_default().push((
                    name,
                    header.original_len,
                    header.stored_len,
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
    for (timeline, mut segments) in by_timeline {
        segments.sort_by_key(|(name, _, _)| name.segment());
        let number = |name: &WalFileName| segment_number(*name, size);
        let (first, last) = (segments[0].0, segments[segments.len() - 1].0);
        let count = segments.len() as u64;
        let (recoverable, recoverable_error) = match windows(timeline) {
            Ok(windows) => (windows, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        info.timelines.push(TimelineInfo {
            timeline,
            first_segment: first.to_string(),
            last_segment: last.to_string(),
            segments: count,
            missing_segments: (number(&last) - number(&first) + 1).saturating_sub(count),
            original_bytes: segments.iter().map(|s| s.1).sum(),
            stored_bytes: segments.iter().map(|s| s.2).sum(),
            recoverable,
            recoverable_error,
        });
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

pub fn render_text(info: &StanzaInfo) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("stanza: {}", info.stanza));
    line(format!("    repository: {}", info.repository));
    line(format!(
        "    cluster: system identifier {}, PostgreSQL {}, {} MiB WAL segments",
        info.system_id,
        info.pg_version,
        info.segment_size >> 20
    ));
    if info.backups.is_empty() {
        line("    backups: none".to_owned());
    } else {
        line("    backups:".to_owned());
    }
    for b in &info.backups {
        line(format!(
            "        {} ({}): {} .. {}, LSN {} .. {} on timeline {}, needs WAL {} .. {}{}",
            b.label,
            b.kind,
            b.start_time,
            b.stop_time,
            b.start_lsn,
            b.stop_lsn,
            b.timeline,
            b.wal_start,
            b.wal_stop,
            if b.wal_included { " (included)" } else { "" }
        ));
        line(format!(
            "            {} files, {} original, {} stored, {} new",
            b.sizes.files,
            units::bytes(b.sizes.original),
            units::bytes(b.sizes.stored),
            units::bytes(b.sizes.new)
        ));
    }
    if info.timelines.is_empty() {
        line("    wal archive: empty".to_owned());
    } else {
        line("    wal archive:".to_owned());
    }
    for t in &info.timelines {
        let missing = if t.missing_segments == 0 {
            "none missing".to_owned()
        } else {
            format!("{} MISSING", t.missing_segments)
        };
        line(format!(
            "        timeline {}: {} .. {}, {} segments ({missing}), {} original, {} stored ({})",
            t.timeline,
            t.first_segment,
            t.last_segment,
            t.segments,
            units::bytes(t.original_bytes),
            units::bytes(t.stored_bytes),
            units::ratio(t.stored_bytes, t.original_bytes)
        ));
        if let Some(error) = &t.recoverable_error {
            line(format!("            recoverable: unknown: {error}"));
        } else if t.recoverable.is_empty() {
            line(
                "            recoverable: nothing (no backup is consistent with this WAL)"
                    .to_owned(),
            );
        }
        for w in &t.recoverable {
            let to = match (&w.to_time, &w.to_commit_lsn) {
                (Some(time), Some(lsn)) => format!("{time} (last archived commit or abort, {lsn})"),
                _ => format!(
                    "{} (no commit or abort archived after the backup)",
                    w.to_lsn
                ),
            };
            line(format!(
                "            recoverable: {} (end of backup {}, {}) .. {to}",
                w.from_time, w.from_backup, w.from_lsn
            ));
            if let Some(gap) = &w.gap {
                line(format!(
                    "            gap: {gap} is missing; WAL after it is reachable only from a later backup"
                ));
            }
        }
    }
    match (&info.archive_lag, &info.archive_lag_error) {
        (Some(lag), _) if lag.waiting == 0 => line(format!(
            "    archive lag: none (every WAL file {} marks ready is archived)",
            lag.pg_wal
        )),
        (Some(lag), _) => line(format!(
            "    archive lag: {} WAL files ({}) ready in {} and not archived yet, the oldest {}{}",
            lag.waiting,
            units::bytes(lag.bytes),
            lag.pg_wal,
            lag.oldest.as_deref().unwrap_or_default(),
            lag.oldest_age_seconds
                .map(|age| format!(" (written {age} s ago)"))
                .unwrap_or_default()
        )),
        (None, Some(error)) => line(format!("    archive lag: unknown: {error}")),
        (None, None) => {}
    }
    for (label, files) in [
        ("history files", &info.history_files),
        ("partial segments", &info.partial_files),
        ("backup history files", &info.backup_history_files),
    ] {
        if !files.is_empty() {
            line(format!("    {label}: {}", files.join(", ")));
        }
    }
    out
}

pub fn info(choice: &ConfigChoice, format: OutputFormat) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let info = collect(&stanza, selected.stanza.pgdata.as_deref())?;
    match format {
        OutputFormat::Text => program::print_stdout(&render_text(&info))?,
        OutputFormat::Json => {
            program::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&info)?))?
        }
    }
    Ok(Finished::Success)
}
