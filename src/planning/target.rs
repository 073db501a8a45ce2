//! Recovery targets as PostgreSQL takes them.

use anyhow::Context;
use chrono::{DateTime, FixedOffset};

use crate::pg::Lsn;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_without_an_offset_is_refused() {
        let error = RecoveryTarget::time("2026-11-21 11:00:00")
            .unwrap_err()
            .to_string();
        assert!(error.contains("with a numeric UTC offset"), "{error}");
        assert!(RecoveryTarget::time("2026-11-21 11:00:00.123456+05:30").is_ok());
    }
}
