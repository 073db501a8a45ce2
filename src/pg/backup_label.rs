//! The `backup_label` file a base backup starts with (`build_backup_content`): where WAL
//! replay must start and what the backup is called.

use super::lsn::{Lsn, TimelineId};

/// The fields of a `backup_label` Tidemark uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupLabel {
    pub start_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    pub start_time: String,
    pub label: String,
    pub start_timeline: TimelineId,
}

/// Why a file is not a usable `backup_label`.
#[derive(Debug, thiserror::Error)]
#[error("backup_label is not valid: {0}")]
pub struct BackupLabelError(String);

impl BackupLabel {
    pub fn parse(text: &str) -> Result<BackupLabel, BackupLabelError> {
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .map(str::trim)
                .ok_or_else(|| BackupLabelError(format!("no '{key}' line")))
        };
        let lsn_of = |key: &str| -> Result<Lsn, BackupLabelError> {
            let value = field(key)?;
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| BackupLabelError(format!("'{key}' has no LSN: {value}")))
        };
        Ok(BackupLabel {
            start_lsn: lsn_of("START WAL LOCATION:")?,
            checkpoint_lsn: lsn_of("CHECKPOINT LOCATION:")?,
            start_time: field("START TIME:")?.to_owned(),
            label: field("LABEL:")?.to_owned(),
            start_timeline: TimelineId(
                field("START TIMELINE:")?
                    .parse()
                    .map_err(|_| BackupLabelError("START TIMELINE is not a number".into()))?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_postgresql_15_writes() {
        let text = "START WAL LOCATION: 0/7000028 (file 000000010000000000000007)\nCHECKPOINT LOCATION: 0/7000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-21 13:46:24 UTC\nLABEL: my label\nSTART TIMELINE: 1\n";
        assert_eq!(
            BackupLabel::parse(text).unwrap(),
            BackupLabel {
                start_lsn: Lsn(0x7000028),
                checkpoint_lsn: Lsn(0x7000060),
                start_time: "2026-11-21 13:46:24 UTC".into(),
                label: "my label".into(),
                start_timeline: TimelineId(1),
            }
        );
        assert!(BackupLabel::parse("LABEL: x\n").is_err());
    }
}
