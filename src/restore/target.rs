//! Recovery targets as PostgreSQL takes them, and which backup can serve each.

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset, Utc};

use crate::pg::Lsn;
use crate::repo::catalog::BackupRecord;

/// Where recovery stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay all archived WAL (no target setting).
    EndOfArchive,
    /// `recovery_target = 'immediate'`: stop once consistent.
    Immediate,
    /// `recovery_target_time`, as given and as parsed.
    Time(String, DateTime<FixedOffset>),
    Lsn(Lsn),
    Xid(String),
    Name(String),
}

impl RecoveryTarget {
    /// Parses a `--target-time` value. A numeric UTC offset is required: without one PostgreSQL
    /// would read the time in the server's time zone, which Tidemark cannot know.
    pub fn time(text: &str) -> anyhow::Result<RecoveryTarget> {
        let parsed = DateTime::parse_from_rfc3339(text)
            .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z"))
            .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%#z"))
            .with_context(|| {
                format!("cannot read --target-time '{text}': write it as 'YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM]', with a numeric UTC offset")
            })?;
        Ok(RecoveryTarget::Time(text.to_owned(), parsed))
    }

    /// The `postgresql.conf` lines that set this target.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            RecoveryTarget::EndOfArchive => vec![],
            RecoveryTarget::Immediate => vec![("recovery_target", "immediate".to_owned())],
            RecoveryTarget::Time(text, _) => vec![("recovery_target_time", text.clone())],
            RecoveryTarget::Lsn(lsn) => vec![("recovery_target_lsn", lsn.to_string())],
            RecoveryTarget::Xid(xid) => vec![("recovery_target_xid", xid.clone())],
            RecoveryTarget::Name(name) => vec![("recovery_target_name", name.clone())],
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RecoveryTarget::EndOfArchive => "the end of the archived WAL".to_owned(),
            RecoveryTarget::Immediate => "the end of the backup (consistency)".to_owned(),
            RecoveryTarget::Time(text, _) => format!("time {text}"),
            RecoveryTarget::Lsn(lsn) => format!("LSN {lsn}"),
            RecoveryTarget::Xid(xid) => format!("transaction {xid}"),
            RecoveryTarget::Name(name) => format!("restore point '{name}'"),
        }
    }
}

fn stop_time(record: &BackupRecord) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(&record.stop_time)
        .with_context(|| format!("backup {} has an unreadable stop time", record.label))?
        .with_timezone(&Utc))
}

/// Picks the backup to restore for `target` from `backups` (oldest first), and says why.
pub fn choose_backup<'b>(
    backups: &'b [BackupRecord],
    target: &RecoveryTarget,
    label: Option<&str>,
) -> anyhow::Result<(&'b BackupRecord, String)> {
    if let Some(label) = label {
        let record = backups.iter().find(|b| b.label == label).with_context(|| {
            let known: Vec<&str> = backups.iter().map(|b| b.label.as_str()).collect();
            format!(
                "there is no backup labelled {label} (backups: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })?;
        return Ok((
            record,
            format!("backup {label} was asked for with --backup"),
        ));
    }
    let Some(newest) = backups.last() else {
        bail!("the stanza has no backup yet: take one with 'tidemark backup'");
    };
    match target {
        RecoveryTarget::Time(text, time) => {
            let mut chosen = None;
            for record in backups {
                if stop_time(record)? <= *time {
                    chosen = Some(record);
                }
            }
            match chosen {
                Some(record) => Ok((
                    record,
                    format!(
                        "it is the newest backup that ended ({}) before the target time {text}",
                        record.stop_time
                    ),
                )),
                None => bail!(
                    "no backup ends before {text}: the earliest point a restore can reach is the end of backup {} at {}",
                    backups[0].label,
                    backups[0].stop_time
                ),
            }
        }
        RecoveryTarget::Lsn(lsn) => {
            let chosen = backups.iter().rev().find(|r| r.stop_lsn_value() <= *lsn);
            match chosen {
                Some(record) => Ok((
                    record,
                    format!(
                        "it is the newest backup that ended (LSN {}) before the target LSN {lsn}",
                        record.stop_lsn
                    ),
                )),
                None => bail!(
                    "no backup ends before LSN {lsn}: the earliest point a restore can reach is the end of backup {} at LSN {}",
                    backups[0].label,
                    backups[0].stop_lsn
                ),
            }
        }
        RecoveryTarget::EndOfArchive | RecoveryTarget::Immediate => {
            Ok((newest, "it is the newest backup".to_owned()))
        }
        RecoveryTarget::Xid(_) | RecoveryTarget::Name(_) => Ok((
            newest,
            "it is the newest backup; choose an older one with --backup if the target is earlier"
                .to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::catalog::{BackupSizes, RECORD_FORMAT};

    fn record(label: &str, stop_time: &str, stop_lsn: &str) -> BackupRecord {
        BackupRecord {
            format: RECORD_FORMAT,
            label: label.into(),
            kind: "full".into(),
            system_id: 1,
            pg_version: 15,
            timeline: 1,
            start_lsn: "0/1000028".into(),
            stop_lsn: stop_lsn.into(),
            start_time: stop_time.into(),
            stop_time: stop_time.into(),
            duration_ms: 0,
            wal_start: String::new(),
            wal_stop: String::new(),
            wal_included: false,
            has_manifest: true,
            sizes: BackupSizes::default(),
            tablespaces: vec![],
            entries: vec![],
        }
    }

    #[test]
    fn the_newest_backup_ending_before_the_target_is_chosen() {
        let backups = [
            record("a", "2026-11-21T10:00:00Z", "0/3000000"),
            record("b", "2026-11-21T12:00:00Z", "0/5000000"),
        ];
        let at = |t: &str| RecoveryTarget::time(t).unwrap();
        assert_eq!(
            choose_backup(&backups, &at("2026-11-21 11:00:00+00"), None)
                .unwrap()
                .0
                .label,
            "a"
        );
        assert_eq!(
            choose_backup(&backups, &at("2026-11-21 14:00:00+02"), None)
                .unwrap()
                .0
                .label,
            "b"
        );
        assert_eq!(
            choose_backup(&backups, &at("2026-11-21T12:30:00Z"), None)
                .unwrap()
                .0
                .label,
            "b"
        );
        let error = choose_backup(&backups, &at("2026-11-21 09:00:00+00"), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "no backup ends before 2026-11-21 09:00:00+00: the earliest point a restore can reach is the end of backup a at 2026-11-21T10:00:00Z"
        );
        assert_eq!(
            choose_backup(&backups, &RecoveryTarget::Lsn(Lsn(0x4000000)), None)
                .unwrap()
                .0
                .label,
            "a"
        );
        assert_eq!(
            choose_backup(&backups, &RecoveryTarget::EndOfArchive, None)
                .unwrap()
                .0
                .label,
            "b"
        );
        assert_eq!(
            choose_backup(&backups, &RecoveryTarget::EndOfArchive, Some("a"))
                .unwrap()
                .0
                .label,
            "a"
        );
        assert!(choose_backup(&backups, &RecoveryTarget::EndOfArchive, Some("zz")).is_err());
        assert!(choose_backup(&[], &RecoveryTarget::EndOfArchive, None).is_err());
    }

    #[test]
    fn a_time_without_an_offset_is_refused() {
        let error = RecoveryTarget::time("2026-11-21 11:00:00")
            .unwrap_err()
            .to_string();
        assert!(error.contains("with a numeric UTC offset"), "{error}");
        assert!(RecoveryTarget::time("2026-11-21 11:00:00.123456+05:30").is_ok());
    }
}
