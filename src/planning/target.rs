//! What recovery is asked to do, one type from the command line through the planner to the
//! recovery settings: the target (where recovery stops, as PostgreSQL's `recovery_target*`
//! settings name it), whether recovery stops after it or before it, and which timeline it
//! follows.
//!
//! May import: `pg/` only. No I/O.

use anyhow::{Context, bail};
use chrono::DateTime;

use crate::pg::{Lsn, TimelineId, time};

/// Where recovery stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay all archived WAL (no target setting).
    EndOfArchive,
    /// `recovery_target = 'immediate'`: stop once consistent.
    Immediate,
    /// `recovery_target_time`: the text PostgreSQL is given, and the instant it names in
    /// PostgreSQL time (microseconds since 2000-01-01 UTC).
    Time {
        text: String,
        at: i64,
    },
    Lsn(Lsn),
    /// `recovery_target_xid`: the text PostgreSQL is given, and the number it names (PostgreSQL
    /// reads up to 64 bits; the planner matches 32, see [`PlanRequest::new`]).
    Xid {
        text: String,
        xid: u64,
    },
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
        Ok(RecoveryTarget::Time {
            text: text.to_owned(),
            at: time::from_unix_micros(parsed.timestamp_micros()),
        })
    }

    /// Parses a `--target-xid` value: a number, as PostgreSQL reads it.
    pub fn xid(text: &str) -> anyhow::Result<RecoveryTarget> {
        let Ok(xid) = text.parse::<u64>() else {
            bail!("--target-xid '{text}' is not a transaction ID (a number)");
        };
        Ok(RecoveryTarget::Xid {
            text: text.to_owned(),
            xid,
        })
    }

    /// The `postgresql.conf` lines that set this target.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            RecoveryTarget::EndOfArchive => vec![],
            RecoveryTarget::Immediate => vec![("recovery_target", "immediate".to_owned())],
            RecoveryTarget::Time { text, .. } => vec![("recovery_target_time", text.clone())],
            RecoveryTarget::Lsn(lsn) => vec![("recovery_target_lsn", lsn.to_string())],
            RecoveryTarget::Xid { text, .. } => vec![("recovery_target_xid", text.clone())],
            RecoveryTarget::Name(name) => vec![("recovery_target_name", name.clone())],
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RecoveryTarget::EndOfArchive => "the end of the archived WAL".to_owned(),
            RecoveryTarget::Immediate => "the end of the backup (consistency)".to_owned(),
            RecoveryTarget::Time { text, .. } => format!("time {text}"),
            RecoveryTarget::Lsn(lsn) => format!("LSN {lsn}"),
            RecoveryTarget::Xid { text, .. } => format!("transaction {text}"),
            RecoveryTarget::Name(name) => format!("restore point '{name}'"),
        }
    }
}

/// Which timeline to recover along (`recovery_target_timeline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineChoice {
    Latest,
    Current,
    Exact(TimelineId),
}

impl TimelineChoice {
    /// Reads a `--target-timeline` value; PostgreSQL's default, `latest`, when there is none.
    pub fn parse(text: Option<&str>) -> anyhow::Result<TimelineChoice> {
        Ok(match text {
            None | Some("latest") => TimelineChoice::Latest,
            Some("current") => TimelineChoice::Current,
            Some(number) => TimelineChoice::Exact(TimelineId(number.parse().with_context(|| {
                format!("--target-timeline '{number}' is not a timeline: use a number, 'current' or 'latest'")
            })?)),
        })
    }
}

/// What recovery is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRequest {
    pub target: RecoveryTarget,
    /// `recovery_target_inclusive` (PostgreSQL's default: on).
    pub inclusive: bool,
    pub timeline: TimelineChoice,
}

impl PlanRequest {
    /// The request for `target`, `--target-exclusive` and `--target-timeline`. A transaction
    /// ID beyond 32 bits is refused: the WAL holds 32-bit ones, and which of them an
    /// epoch-qualified ID means is not known here.
    pub fn new(
        target: &RecoveryTarget,
        exclusive: bool,
        timeline: Option<&str>,
    ) -> anyhow::Result<PlanRequest> {
        if let RecoveryTarget::Xid { text, .. } = target {
            text.parse::<u32>()
                .with_context(|| format!("--target-xid '{text}' is not a 32-bit transaction ID"))?;
        }
        Ok(PlanRequest {
            target: target.clone(),
            inclusive: !exclusive,
            timeline: TimelineChoice::parse(timeline)?,
        })
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

    #[test]
    fn an_xid_is_a_number_and_is_planned_for_only_within_32_bits() {
        let refused = |text: &str| format!("{:#}", RecoveryTarget::xid(text).unwrap_err());
        assert_eq!(
            refused("12a"),
            "--target-xid '12a' is not a transaction ID (a number)"
        );
        let epoch_qualified = RecoveryTarget::xid("5000000000").unwrap();
        assert_eq!(
            epoch_qualified.settings(),
            [("recovery_target_xid", "5000000000".to_owned())]
        );
        assert_eq!(
            format!(
                "{:#}",
                PlanRequest::new(&epoch_qualified, false, None).unwrap_err()
            ),
            "--target-xid '5000000000' is not a 32-bit transaction ID: number too large to fit in target type"
        );
        let request =
            PlanRequest::new(&RecoveryTarget::xid("+7").unwrap(), true, Some("3")).unwrap();
        assert_eq!(
            request,
            PlanRequest {
                target: RecoveryTarget::Xid {
                    text: "+7".into(),
                    xid: 7
                },
                inclusive: false,
                timeline: TimelineChoice::Exact(TimelineId(3)),
            }
        );
        assert_eq!(
            format!(
                "{:#}",
                PlanRequest::new(&RecoveryTarget::Immediate, false, Some("next")).unwrap_err()
            ),
            "--target-timeline 'next' is not a timeline: use a number, 'current' or 'latest': invalid digit found in string"
        );
    }
}
