//! The stanza report as text for people, one fact a line, sizes as people write them.

use super::report::{BackupInfo, StanzaInfo, TimelineInfo};
use crate::units;

/// The report as `tidemark info` prints it.
pub fn render_text(info: &StanzaInfo) -> String {
    let mut out = String::new();
    cluster_lines(&mut out, info);
    backup_lines(&mut out, &info.backups);
    wal_lines(&mut out, &info.timelines);
    archive_lag_line(&mut out, info);
    file_lines(&mut out, info);
    out
}

/// Which stanza, where, and for which cluster.
fn cluster_lines(out: &mut String, info: &StanzaInfo) {
    line(out, format!("stanza: {}", info.stanza));
    line(out, format!("    repository: {}", info.repository));
    line(
        out,
        format!(
            "    cluster: system identifier {}, PostgreSQL {}, {} MiB WAL segments",
            info.system_id,
            info.pg_version,
            info.segment_size >> 20
        ),
    );
}

/// The complete backups, two lines each.
fn backup_lines(out: &mut String, backups: &[BackupInfo]) {
    heading(out, "backups", backups.is_empty().then_some("none"));
    for b in backups {
        line(
            out,
            format!(
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
            ),
        );
        line(
            out,
            format!(
                "            {} files, {} original, {} stored, {} new",
                b.sizes.files,
                units::bytes(b.sizes.original),
                units::bytes(b.sizes.stored),
                units::bytes(b.sizes.new)
            ),
        );
    }
}

/// The archived WAL per timeline, with the windows restores along it can reach.
fn wal_lines(out: &mut String, timelines: &[TimelineInfo]) {
    heading(out, "wal archive", timelines.is_empty().then_some("empty"));
    for t in timelines {
        let missing = if t.missing_segments == 0 {
            "none missing".to_owned()
        } else {
            format!("{} MISSING", t.missing_segments)
        };
        line(
            out,
            format!(
                "        timeline {}: {} .. {}, {} segments ({missing}), {} original, {} stored ({})",
                t.timeline,
                t.first_segment,
                t.last_segment,
                t.segments,
                units::bytes(t.original_bytes),
                units::bytes(t.stored_bytes),
                units::ratio(t.stored_bytes, t.original_bytes)
            ),
        );
        recoverable_lines(out, t);
    }
}

/// What restores along one timeline can reach, a line a window (and one for the hole after it).
fn recoverable_lines(out: &mut String, t: &TimelineInfo) {
    if let Some(error) = &t.recoverable_error {
        line(out, format!("            recoverable: unknown: {error}"));
    } else if t.recoverable.is_empty() {
        line(
            out,
            "            recoverable: nothing (no backup is consistent with this WAL)".to_owned(),
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
        line(
            out,
            format!(
                "            recoverable: {} (end of backup {}, {}) .. {to}",
                w.from_time, w.from_backup, w.from_lsn
            ),
        );
        if let Some(gap) = &w.gap {
            line(
                out,
                format!(
                    "            gap: {gap} is missing; WAL after it is reachable only from a later backup"
                ),
            );
        }
    }
}

/// What archiving still owes, or why that is unknown.
fn archive_lag_line(out: &mut String, info: &StanzaInfo) {
    match (&info.archive_lag, &info.archive_lag_error) {
        (Some(lag), _) if lag.waiting == 0 => line(
            out,
            format!(
                "    archive lag: none (every WAL file {} marks ready is archived)",
                lag.pg_wal
            ),
        ),
        (Some(lag), _) => line(
            out,
            format!(
                "    archive lag: {} WAL files ({}) ready in {} and not archived yet, the oldest {}{}",
                lag.waiting,
                units::bytes(lag.bytes),
                lag.pg_wal,
                lag.oldest.as_deref().unwrap_or_default(),
                lag.oldest_age_seconds
                    .map(|age| format!(" (written {age} s ago)"))
                    .unwrap_or_default()
            ),
        ),
        (None, Some(error)) => line(out, format!("    archive lag: unknown: {error}")),
        (None, None) => {}
    }
}

/// The archived files that are not segments, by kind.
fn file_lines(out: &mut String, info: &StanzaInfo) {
    for (label, files) in [
        ("history files", &info.history_files),
        ("partial segments", &info.partial_files),
        ("backup history files", &info.backup_history_files),
    ] {
        if !files.is_empty() {
            line(out, format!("    {label}: {}", files.join(", ")));
        }
    }
}

/// A part's first line: its title, and what it says when it has nothing to list.
fn heading(out: &mut String, title: &str, when_empty: Option<&str>) {
    match when_empty {
        Some(nothing) => line(out, format!("    {title}: {nothing}")),
        None => line(out, format!("    {title}:")),
    }
}

/// Adds `text` to `out` as one line.
fn line(out: &mut String, text: String) {
    out.push_str(&text);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::report::{ArchiveLag, WindowInfo};
    use crate::repo::catalog::BackupSizes;

    fn backup(label: &str, wal_included: bool) -> BackupInfo {
        BackupInfo {
            label: label.to_owned(),
            kind: "full".to_owned(),
            timeline: 1,
            start_time: "2026-01-02T03:04:05Z".to_owned(),
            stop_time: "2026-01-02T03:04:09Z".to_owned(),
            start_lsn: "0/2000028".to_owned(),
            stop_lsn: "0/2000100".to_owned(),
            wal_start: "000000010000000000000002".to_owned(),
            wal_stop: "000000010000000000000002".to_owned(),
            wal_included,
            sizes: BackupSizes {
                original: 3 << 20,
                stored: 1 << 20,
                new: 512 << 10,
                files: 971,
                reused_chunks: 4,
            },
            duration_ms: 4000,
        }
    }

    fn timeline(timeline: u32, missing_segments: u64) -> TimelineInfo {
        TimelineInfo {
            timeline,
            first_segment: format!("{timeline:08X}0000000000000001"),
            last_segment: format!("{timeline:08X}0000000000000009"),
            segments: 9 - missing_segments,
            missing_segments,
            original_bytes: (9 - missing_segments) << 20,
            stored_bytes: (9 - missing_segments) << 18,
            recoverable: Vec::new(),
            recoverable_error: None,
        }
    }

    fn report() -> StanzaInfo {
        let mut with_windows = timeline(1, 2);
        with_windows.recoverable = vec![
            WindowInfo {
                from_backup: "20260102-030405F".to_owned(),
                from_lsn: "0/2000100".to_owned(),
                from_time: "2026-01-02 03:04:09.000000+00".to_owned(),
                to_time: Some("2026-01-02 03:10:00.123456+00".to_owned()),
                to_commit_lsn: Some("0/4000060".to_owned()),
                to_lsn: "0/5000000".to_owned(),
                gap: Some("000000010000000000000005".to_owned()),
            },
            WindowInfo {
                from_backup: "20260102-040000F".to_owned(),
                from_lsn: "0/7000100".to_owned(),
                from_time: "2026-01-02 04:00:04.000000+00".to_owned(),
                to_time: None,
                to_commit_lsn: None,
                to_lsn: "0/A000000".to_owned(),
                gap: None,
            },
        ];
        let mut unknown = timeline(2, 0);
        unknown.recoverable_error = Some("no history file for timeline 2".to_owned());
        StanzaInfo {
            stanza: "main".to_owned(),
            repository: "/var/lib/tidemark".to_owned(),
            system_id: 7_000_000_000_000_000_001,
            pg_version: 150_004,
            segment_size: 16 << 20,
            timelines: vec![with_windows, unknown, timeline(3, 0)],
            history_files: vec!["00000002.history".to_owned(), "00000003.history".to_owned()],
            partial_files: vec!["000000010000000000000009.partial".to_owned()],
            backup_history_files: Vec::new(),
            backups: vec![
                backup("20260102-030405F", false),
                backup("20260102-040000F", true),
            ],
            archive_lag: Some(ArchiveLag {
                pg_wal: "/data/pg_wal".to_owned(),
                waiting: 2,
                bytes: 32 << 20,
                oldest: Some("00000003000000000000000A".to_owned()),
                oldest_age_seconds: Some(42),
            }),
            archive_lag_error: None,
        }
    }

    /// Every line the text can hold, each kind once: what `tidemark info` prints, byte for byte.
    #[test]
    fn the_text_says_every_part_of_the_report() {
        assert_eq!(render_text(&report()), EXPECTED);
    }

    /// The lines that stand for what is not there: no backups, no WAL, no lag, lag unknown.
    #[test]
    fn the_text_says_what_is_not_there() {
        let mut empty = report();
        empty.backups.clear();
        empty.timelines.clear();
        empty.history_files.clear();
        empty.partial_files.clear();
        empty.archive_lag.as_mut().unwrap().waiting = 0;
        assert_eq!(
            render_text(&empty),
            "\
stanza: main
    repository: /var/lib/tidemark
    cluster: system identifier 7000000000000000001, PostgreSQL 150004, 16 MiB WAL segments
    backups: none
    wal archive: empty
    archive lag: none (every WAL file /data/pg_wal marks ready is archived)
"
        );
        empty.archive_lag = None;
        empty.archive_lag_error = Some("set pgdata in [stanza.main] to see it".to_owned());
        assert!(
            render_text(&empty)
                .ends_with("\n    archive lag: unknown: set pgdata in [stanza.main] to see it\n")
        );
    }

    const EXPECTED: &str = "\
stanza: main
    repository: /var/lib/tidemark
    cluster: system identifier 7000000000000000001, PostgreSQL 150004, 16 MiB WAL segments
    backups:
        20260102-030405F (full): 2026-01-02T03:04:05Z .. 2026-01-02T03:04:09Z, LSN 0/2000028 .. 0/2000100 on timeline 1, needs WAL 000000010000000000000002 .. 000000010000000000000002
            971 files, 3.0 MiB original, 1.0 MiB stored, 512.0 KiB new
        20260102-040000F (full): 2026-01-02T03:04:05Z .. 2026-01-02T03:04:09Z, LSN 0/2000028 .. 0/2000100 on timeline 1, needs WAL 000000010000000000000002 .. 000000010000000000000002 (included)
            971 files, 3.0 MiB original, 1.0 MiB stored, 512.0 KiB new
    wal archive:
        timeline 1: 000000010000000000000001 .. 000000010000000000000009, 7 segments (2 MISSING), 7.0 MiB original, 1.8 MiB stored (25.0%)
            recoverable: 2026-01-02 03:04:09.000000+00 (end of backup 20260102-030405F, 0/2000100) .. 2026-01-02 03:10:00.123456+00 (last archived commit or abort, 0/4000060)
            gap: 000000010000000000000005 is missing; WAL after it is reachable only from a later backup
            recoverable: 2026-01-02 04:00:04.000000+00 (end of backup 20260102-040000F, 0/7000100) .. 0/A000000 (no commit or abort archived after the backup)
        timeline 2: 000000020000000000000001 .. 000000020000000000000009, 9 segments (none missing), 9.0 MiB original, 2.2 MiB stored (25.0%)
            recoverable: unknown: no history file for timeline 2
        timeline 3: 000000030000000000000001 .. 000000030000000000000009, 9 segments (none missing), 9.0 MiB original, 2.2 MiB stored (25.0%)
            recoverable: nothing (no backup is consistent with this WAL)
    archive lag: 2 WAL files (32.0 MiB) ready in /data/pg_wal and not archived yet, the oldest 00000003000000000000000A (written 42 s ago)
    history files: 00000002.history, 00000003.history
    partial segments: 000000010000000000000009.partial
";
}
