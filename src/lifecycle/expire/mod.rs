//! `tidemark expire`: applies the retention policy. It decides which backups the policy keeps
//! and why, refuses a decision that would leave nothing restorable, and then deletes in an
//! order a crash at any moment leaves safe: the expired backups' records (they are unlisted),
//! then their other objects, then the WAL no kept backup needs, then — when no backup is
//! running — the chunks no listed backup refers to. A run killed anywhere is finished by the
//! next one. Locking against backups and other expiries is `repo::lock`'s.
//!
//! * `wal.rs` — which WAL files and index objects no kept backup needs;
//! * `sweep.rs` — removing expired backups' objects, and the sweep of unreferenced chunks;
//! * `source.rs` — the same rules over a source's snapshots (`expire --source`);
//! * `text.rs` — the report for people.

pub mod source;
pub mod sweep;
pub mod text;
pub mod wal;

use std::collections::BTreeSet;
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::pg::TimelineId;
use crate::planning::inputs::StanzaPlanner;
use crate::repo::Stanza;
use crate::repo::catalog::BackupRecord;
use crate::repo::retention::{self, ArchiveRetention, BackupToDecide, KeepRule, RetentionPolicy};
use sweep::SweepReport;
use wal::WalExpiry;

/// What `expire` decided and did.
#[derive(Debug, Serialize)]
pub struct ExpiryReport {
    pub stanza: String,
    pub dry_run: bool,
    /// Every backup, oldest first, with the rules that keep it (none: expired).
    pub backups: Vec<BackupVerdict>,
    pub wal: WalExpiry,
    pub sweep: SweepOutcome,
}

/// One backup's fate.
#[derive(Debug, Serialize)]
pub struct BackupVerdict {
    pub label: String,
    pub stop_time: String,
    pub kept_by: Vec<KeepRule>,
    pub expired: bool,
}

/// Whether chunks were swept.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SweepOutcome {
    Swept(SweepReport),
    /// `--dry-run`: what a sweep would remove now.
    WouldSweep(SweepReport),
    /// A backup was running: its chunks look unreferenced until its record is stored.
    Skipped {
        reason: String,
    },
}

/// What `policy` decides for a stanza now, before anything is deleted.
pub struct ExpiryPlan {
    /// Every backup, oldest first, with the rules that keep it (none: expired).
    pub backups: Vec<BackupVerdict>,
    /// The WAL no kept backup needs.
    pub wal: WalExpiry,
    kept: Vec<BackupRecord>,
}

/// Decides what `policy` keeps at `now` and which WAL that leaves unneeded, reading only;
/// refuses a decision after which nothing kept could be restored.
pub fn plan(
    stanza: &Stanza<'_>,
    policy: &RetentionPolicy,
    now: SystemTime,
) -> anyhow::Result<ExpiryPlan> {
    let backups = stanza.list_backups()?;
    let verdicts = decide(policy, &backups, now)?;
    let kept: Vec<BackupRecord> = backups
        .iter()
        .zip(&verdicts)
        .filter(|(_, verdict)| !verdict.expired)
        .map(|(backup, _)| backup.clone())
        .collect();
    check_still_recoverable(stanza, &backups, &kept)?;
    let wal = wal_to_remove(stanza, policy, &kept)?;
    Ok(ExpiryPlan {
        backups: verdicts,
        wal,
        kept,
    })
}

/// Applies `policy` to `stanza` at `now`; with `dry_run`, only says what it would do.
pub fn expire(
    stanza: &Stanza<'_>,
    policy: &RetentionPolicy,
    now: SystemTime,
    dry_run: bool,
) -> anyhow::Result<ExpiryReport> {
    // Held to the end: no other expire runs, and no backup starts reusing chunks meanwhile.
    let _lock = if dry_run {
        None
    } else {
        Some(stanza.locks().lock_for_expire()?)
    };
    let plan = plan(stanza, policy, now)?;
    if !dry_run {
        let expired: Vec<String> = plan
            .backups
            .iter()
            .filter(|v| v.expired)
            .map(|v| v.label.clone())
            .collect();
        sweep::remove_backups(stanza, &expired)?;
        let storage = stanza.repository().storage();
        storage.delete_all(&plan.wal.files)?;
        storage.delete_all(&plan.wal.index)?;
    }
    let sweep = sweep_unless_backing_up(stanza, &plan.kept, dry_run)?;
    Ok(ExpiryReport {
        stanza: stanza.name().to_owned(),
        dry_run,
        backups: plan.backups,
        wal: plan.wal,
        sweep,
    })
}

/// The policy's verdict on every backup, oldest first.
fn decide(
    policy: &RetentionPolicy,
    backups: &[BackupRecord],
    now: SystemTime,
) -> anyhow::Result<Vec<BackupVerdict>> {
    let to_decide: Vec<BackupToDecide<'_>> = backups
        .iter()
        .map(|b| BackupToDecide {
            label: &b.label,
            stop_time: &b.stop_time,
        })
        .collect();
    let decisions = retention::decide(policy, &to_decide, now)?;
    Ok(backups
        .iter()
        .zip(decisions)
        .map(|(backup, decision)| BackupVerdict {
            expired: decision.expired(),
            label: decision.label,
            stop_time: backup.stop_time.clone(),
            kept_by: decision.kept_by,
        })
        .collect())
}

/// The WAL no `kept` backup needs, under `policy`'s `archive` setting.
fn wal_to_remove(
    stanza: &Stanza<'_>,
    policy: &RetentionPolicy,
    kept: &[BackupRecord],
) -> anyhow::Result<WalExpiry> {
    if policy.archive == ArchiveRetention::All {
        return Ok(WalExpiry::default());
    }
    let size = stanza.expected_cluster().segment_size;
    match wal::cutoff(kept, size)? {
        Some((cutoff, first_kept)) => {
            let mut expiry = wal::below_cutoff(stanza, cutoff)?;
            expiry.keep_from = Some(first_kept);
            Ok(expiry)
        }
        None => Ok(WalExpiry::default()),
    }
}

/// Refuses a decision after which no backup it keeps can be restored, when one it expires
/// could: the policy must never turn a recoverable repository into one that is not.
fn check_still_recoverable(
    stanza: &Stanza<'_>,
    all: &[BackupRecord],
    kept: &[BackupRecord],
) -> anyhow::Result<()> {
    if kept.len() == all.len() {
        return Ok(());
    }
    // Every archived timeline and every backup's: where a kept backup could be restored along.
    let timelines: BTreeSet<TimelineId> = stanza
        .list_wal()?
        .into_iter()
        .map(|(name, _)| name.timeline())
        .chain(all.iter().map(|b| b.timeline))
        .collect();
    if has_recoverable_instant(stanza, kept, &timelines)?
        || !has_recoverable_instant(stanza, all, &timelines)?
    {
        return Ok(());
    }
    let labels: Vec<&str> = kept.iter().map(|b| b.label.as_str()).collect();
    bail!(
        "the retention policy would leave no recoverable instant: the backups it keeps ({}) cannot be restored from the archived WAL, only backups it would expire can; nothing was deleted: run 'tidemark verify' to find what is missing, or keep more backups",
        labels.join(", ")
    )
}

/// Whether a restore from one of `backups` reaches consistency along one of `timelines`.
fn has_recoverable_instant(
    stanza: &Stanza<'_>,
    backups: &[BackupRecord],
    timelines: &BTreeSet<TimelineId>,
) -> anyhow::Result<bool> {
    let context = "check that what expire keeps stays recoverable";
    let planner = StanzaPlanner::load(stanza, backups).context(context)?;
    Ok(timelines.iter().any(|&timeline| {
        planner
            .recoverable_windows(timeline)
            .is_ok_and(|windows| !windows.is_empty())
    }))
}

/// Sweeps unreferenced chunks — or with `dry_run` counts what would go once the expired
/// backups are gone, marking from `kept` — unless a backup is running.
fn sweep_unless_backing_up(
    stanza: &Stanza<'_>,
    kept: &[BackupRecord],
    dry_run: bool,
) -> anyhow::Result<SweepOutcome> {
    if let Some(running) = stanza.locks().running_backups()?.first() {
        return Ok(SweepOutcome::Skipped {
            reason: format!(
                "a backup is running ({}): its chunks are not referenced until it ends; the next expire sweeps",
                running.holder()
            ),
        });
    }
    if dry_run {
        return Ok(SweepOutcome::WouldSweep(sweep::sweep(stanza, kept, true)?));
    }
    // Marked from the records listed now, after the expired ones went.
    let listed = stanza.list_backups()?;
    Ok(SweepOutcome::Swept(sweep::sweep(stanza, &listed, false)?))
}

/// The policy as `expire` needs it for `kind` (`stanza` or `source`) `name`, or the error
/// that says how to set one.
pub fn require_policy(
    policy: Option<RetentionPolicy>,
    kind: &str,
    name: &str,
) -> anyhow::Result<RetentionPolicy> {
    policy.with_context(|| {
        format!(
            "no retention rule is set for {kind} '{name}': add full, time or gfs to [retention] or [{kind}.{name}.retention]; nothing was deleted"
        )
    })
}
