//! The expiry report as text for people: one line per backup with the rules that keep it, the
//! WAL removed per timeline, and the sweep.

use std::fmt::Write;

use super::{ExpiryReport, SweepOutcome};
use crate::repo::retention::KeepRule;
use crate::units;

/// The report as `tidemark expire` prints it.
pub fn render_text(report: &ExpiryReport) -> String {
    let mut out = String::new();
    let (done, removed) = if report.dry_run {
        (" (dry run: nothing was deleted)", "would remove")
    } else {
        ("", "removed")
    };
    let _ = writeln!(out, "stanza {}: expire{done}", report.stanza);
    for backup in &report.backups {
        let _ = writeln!(
            out,
            "  backup {}  stopped {}  {}",
            backup.label,
            backup.stop_time,
            verdict(backup.expired, &backup.kept_by)
        );
    }
    render_wal(&mut out, report, removed);
    match &report.sweep {
        SweepOutcome::Swept(sweep) | SweepOutcome::WouldSweep(sweep) => {
            let _ = writeln!(
                out,
                "  chunks: {removed} {} ({}) that no kept backup refers to",
                sweep.chunks,
                units::bytes(sweep.chunk_bytes)
            );
            if !sweep.unrecorded_backups.is_empty() {
                let _ = writeln!(
                    out,
                    "  {removed} the leftovers of backups without a record: {}",
                    sweep.unrecorded_backups.join(", ")
                );
            }
        }
        SweepOutcome::Skipped { reason } => {
            let _ = writeln!(out, "  chunks: not swept: {reason}");
        }
    }
    out
}

/// "expired", or "kept by" the rules that keep it.
pub(super) fn verdict(expired: bool, kept_by: &[KeepRule]) -> String {
    if expired {
        return "expired".to_owned();
    }
    let rules: Vec<String> = kept_by.iter().map(|r| r.to_string()).collect();
    format!("kept by {}", rules.join(", "))
}

fn render_wal(out: &mut String, report: &ExpiryReport, removed: &str) {
    let Some(keep_from) = &report.wal.keep_from else {
        let _ = writeln!(out, "  WAL: all kept");
        return;
    };
    let _ = writeln!(
        out,
        "  WAL: kept from {keep_from}, the first segment a kept backup needs"
    );
    if report.wal.removed.is_empty() {
        let _ = writeln!(out, "  WAL: nothing older to remove");
    }
    for range in &report.wal.removed {
        let _ = writeln!(
            out,
            "  WAL: {removed} on timeline {}: {} to {} ({} files, {})",
            range.timeline,
            range.first,
            range.last,
            range.files,
            units::bytes(range.stored_bytes)
        );
    }
}
