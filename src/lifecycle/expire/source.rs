//! `tidemark expire --source NAME`: a source's snapshots under the same retention rules as a
//! stanza's backups (there is no WAL): records of the expired snapshots first, then — when no
//! snapshot is running — the chunks no listed snapshot refers to.

use std::fmt::Write;
use std::time::SystemTime;

use serde::Serialize;

use super::SweepOutcome;
use super::sweep::sweep_chunks;
use super::text::verdict;
use crate::repo::retention::{self, BackupToDecide, KeepRule, RetentionPolicy};
use crate::repo::source_catalog::{SnapshotRecord, SourceArea};
use crate::sources::referenced_chunks;
use crate::units;

/// What `expire --source` decided and did.
#[derive(Debug, Serialize)]
pub struct SourceExpiryReport {
    pub source: String,
    pub dry_run: bool,
    /// Every snapshot, oldest first, with the rules that keep it (none: expired).
    pub snapshots: Vec<SnapshotVerdict>,
    pub sweep: SweepOutcome,
}

/// One snapshot's fate.
#[derive(Debug, Serialize)]
pub struct SnapshotVerdict {
    pub id: String,
    pub stop_time: String,
    pub kept_by: Vec<KeepRule>,
    pub expired: bool,
}

/// Applies `policy` to the snapshots of `area` at `now`; with `dry_run`, only says what it
/// would do.
pub fn expire_source(
    area: &SourceArea<'_>,
    policy: &RetentionPolicy,
    now: SystemTime,
    dry_run: bool,
) -> anyhow::Result<SourceExpiryReport> {
    // Held to the end: no other expire runs, and no snapshot starts reusing chunks meanwhile.
    let _lock = if dry_run {
        None
    } else {
        Some(area.locks().lock_for_expire()?)
    };
    let snapshots = area.list_snapshots()?;
    let verdicts = decide(policy, &snapshots, now)?;
    let expired: Vec<String> = verdicts
        .iter()
        .filter(|v| v.expired)
        .map(|v| v.id.clone())
        .collect();
    let kept: Vec<SnapshotRecord> = snapshots
        .into_iter()
        .filter(|s| !expired.contains(&s.id))
        .collect();
    if !dry_run {
        area.remove_snapshots(&expired)?;
    }
    let sweep = sweep_unless_running(area, &kept, dry_run)?;
    Ok(SourceExpiryReport {
        source: area.name().to_owned(),
        dry_run,
        snapshots: verdicts,
        sweep,
    })
}

fn decide(
    policy: &RetentionPolicy,
    snapshots: &[SnapshotRecord],
    now: SystemTime,
) -> anyhow::Result<Vec<SnapshotVerdict>> {
    let to_decide: Vec<BackupToDecide<'_>> = snapshots
        .iter()
        .map(|s| BackupToDecide {
            label: &s.id,
            stop_time: &s.stop_time,
        })
        .collect();
    Ok(retention::decide(policy, &to_decide, now)?
        .into_iter()
        .zip(snapshots)
        .map(|(decision, snapshot)| SnapshotVerdict {
            expired: decision.expired(),
            id: decision.label,
            stop_time: snapshot.stop_time.clone(),
            kept_by: decision.kept_by,
        })
        .collect())
}

/// Sweeps the chunks no snapshot of `kept` refers to (or counts them, dry), unless a snapshot
/// is running: its chunks are referenced only once its record is stored.
fn sweep_unless_running(
    area: &SourceArea<'_>,
    kept: &[SnapshotRecord],
    dry_run: bool,
) -> anyhow::Result<SweepOutcome> {
    if let Some(running) = area.locks().running_backups()?.first() {
        return Ok(SweepOutcome::Skipped {
            reason: format!(
                "a snapshot is running ({}): its chunks are not referenced until it ends; the next expire sweeps",
                running.holder()
            ),
        });
    }
    let report = sweep_chunks(
        &area.blobs(),
        &referenced_chunks(area.repository(), kept)?,
        dry_run,
    )?;
    Ok(if dry_run {
        SweepOutcome::WouldSweep(report)
    } else {
        SweepOutcome::Swept(report)
    })
}

/// The report as `tidemark expire --source` prints it.
pub fn render_source_text(report: &SourceExpiryReport) -> String {
    let mut out = String::new();
    let (done, removed) = if report.dry_run {
        (" (dry run: nothing was deleted)", "would remove")
    } else {
        ("", "removed")
    };
    let _ = writeln!(out, "source {}: expire{done}", report.source);
    for snapshot in &report.snapshots {
        let _ = writeln!(
            out,
            "  snapshot {}  stopped {}  {}",
            snapshot.id,
            snapshot.stop_time,
            verdict(snapshot.expired, &snapshot.kept_by)
        );
    }
    match &report.sweep {
        SweepOutcome::Swept(sweep) | SweepOutcome::WouldSweep(sweep) => {
            let _ = writeln!(
                out,
                "  chunks: {removed} {} ({}) that no kept snapshot refers to",
                sweep.chunks,
                units::bytes(sweep.chunk_bytes)
            );
        }
        SweepOutcome::Skipped { reason } => {
            let _ = writeln!(out, "  chunks: not swept: {reason}");
        }
    }
    out
}
