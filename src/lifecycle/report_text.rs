//! The stanza report as text for people, one fact a line, sizes as people write them.

use super::report::StanzaInfo;
use crate::units;

/// The report as `tidemark info` prints it.
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
