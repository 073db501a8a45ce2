//! Which backup a restore lays out: the one `--backup` names, else the one the plan starts
//! from. Which backup serves a target is the planner's choice; this only finds the one asked for.

use anyhow::Context;

use crate::planning::planner::RecoveryPlan;
use crate::repo::catalog::BackupRecord;

/// The backup to restore and why: the one `--backup` names, else the one the plan starts from.
pub(super) fn chosen_backup<'b>(
    backups: &'b [BackupRecord],
    plan: &RecoveryPlan,
    asked_for: Option<&str>,
) -> anyhow::Result<(&'b BackupRecord, String)> {
    Ok(match asked_for {
        Some(label) => (
            backup_labelled(backups, label)?,
            format!("backup {label} was asked for with --backup"),
        ),
        None => {
            let record = backups
                .iter()
                .find(|b| b.label == plan.backup)
                .context("the plan names a backup that is not listed")?;
            (record, plan.why.clone())
        }
    })
}

/// The backup labelled `label` (`--backup`).
fn backup_labelled<'b>(
    backups: &'b [BackupRecord],
    label: &str,
) -> anyhow::Result<&'b BackupRecord> {
    backups.iter().find(|b| b.label == label).with_context(|| {
        let known: Vec<&str> = backups.iter().map(|b| b.label.as_str()).collect();
        format!(
            "there is no backup labelled {label} (backups: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: &str, stop_time: &str, stop_lsn: &str) -> BackupRecord {
        BackupRecord::example(label, stop_time, stop_lsn.parse().unwrap())
    }

    #[test]
    fn a_backup_is_found_by_its_label_or_the_labels_are_listed() {
        let backups = [
            record("a", "2026-11-21T10:00:00Z", "0/3000000"),
            record("b", "2026-11-21T12:00:00Z", "0/5000000"),
        ];
        assert_eq!(backup_labelled(&backups, "a").unwrap().label, "a");
        assert_eq!(
            backup_labelled(&backups, "zz").unwrap_err().to_string(),
            "there is no backup labelled zz (backups: a, b)"
        );
        assert_eq!(
            backup_labelled(&[], "a").unwrap_err().to_string(),
            "there is no backup labelled a (backups: none)"
        );
    }
}
