//! `tidemark info`: what a stanza holds, for a person (text) or a script (`--output json`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::run::{self, Finished};
use super::target::Target;
use crate::pg::{SegmentSize, WalFileName};
use crate::repo::Stanza;
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
}

/// Reads what `stanza` holds.
pub fn collect(stanza: &Stanza<'_>) -> anyhow::Result<StanzaInfo> {
    let identity = stanza.identity();
    let size = stanza.expected_cluster().segment_size;
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
        backups: stanza
            .list_backups()?
            .into_iter()
            .map(|b| BackupInfo {
                label: b.label,
                kind: b.kind,
                timeline: b.timeline,
                start_time: b.start_time,
                stop_time: b.stop_time,
                start_lsn: b.start_lsn,
                stop_lsn: b.stop_lsn,
                wal_start: b.wal_start,
                wal_stop: b.wal_stop,
                wal_included: b.wal_included,
                sizes: b.sizes,
                duration_ms: b.duration_ms,
            })
            .collect(),
    };
    let mut by_timeline: BTreeMap<u32, Vec<(WalFileName, u64, u64)>> = BTreeMap::new();
    for (name, object) in stanza.list_wal()? {
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
    for (timeline, mut segments) in by_timeline {
        segments.sort_by_key(|(name, _, _)| name.segment());
        let number = |name: &WalFileName| segment_number(*name, size);
        let (first, last) = (segments[0].0, segments[segments.len() - 1].0);
        let count = segments.len() as u64;
        info.timelines.push(TimelineInfo {
            timeline,
            first_segment: first.to_string(),
            last_segment: last.to_string(),
            segments: count,
            missing_segments: (number(&last) - number(&first) + 1).saturating_sub(count),
            original_bytes: segments.iter().map(|s| s.1).sum(),
            stored_bytes: segments.iter().map(|s| s.2).sum(),
        });
    }
    Ok(info)
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

pub fn info(target: &Target, format: OutputFormat) -> anyhow::Result<Finished> {
    let selected = target.select()?;
    let repo = selected.config.open_repository();
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let info = collect(&stanza)?;
    match format {
        OutputFormat::Text => run::print_stdout(&render_text(&info))?,
        OutputFormat::Json => {
            run::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&info)?))?
        }
    }
    Ok(Finished::Success)
}
