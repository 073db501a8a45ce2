//! `tidemark plan`: what a restore to a target would take, before anything is touched.

use anyhow::Context;
use serde_json::json;

use super::info::OutputFormat;
use super::target_args::RecoveryTargetArgs;
use tidemark::config::ConfigChoice;
use tidemark::pg::time;
use tidemark::planning::inputs::plan_for;
use tidemark::planning::planner::{CopySource, StopPoint, SwitchSegment};
use tidemark::planning::target::PlanRequest;
use tidemark::program::{self, Finished};
use tidemark::units;

fn describe_stop(stop: &StopPoint) -> (String, serde_json::Value) {
    match stop {
        StopPoint::BeforeTransaction { lsn, xid, time } => (
            format!(
                "stops before the end of transaction {xid} at {lsn} ({}), which is not applied",
                time::format_utc(*time)
            ),
            json!({"kind": "before_transaction", "lsn": lsn.to_string(), "xid": xid, "time": time::format_utc(*time)}),
        ),
        StopPoint::AfterTransaction { lsn, xid, time } => (
            format!(
                "stops after the end of transaction {xid} at {lsn} ({}), which is applied",
                time::format_utc(*time)
            ),
            json!({"kind": "after_transaction", "lsn": lsn.to_string(), "xid": xid, "time": time::format_utc(*time)}),
        ),
        StopPoint::AfterRestorePoint { lsn, name } => (
            format!("stops after restore point '{name}' at {lsn}"),
            json!({"kind": "after_restore_point", "lsn": lsn.to_string(), "name": name}),
        ),
        StopPoint::Consistency(lsn) => (
            format!("stops as soon as the backup is consistent, at {lsn}"),
            json!({"kind": "consistency", "lsn": lsn.to_string()}),
        ),
        StopPoint::AtLsn(lsn) => (
            format!("stops at the first record at or past {lsn}"),
            json!({"kind": "lsn", "lsn": lsn.to_string()}),
        ),
        StopPoint::EndOfArchive(lsn) => (
            format!("replays all archived WAL, to {lsn}"),
            json!({"kind": "end_of_archive", "lsn": lsn.to_string()}),
        ),
    }
}

/// One line on the older timeline's copy of a switch segment that a restore puts in `pg_wal`:
/// `plan` says it goes there, `restore` (`done`) that it went.
pub fn describe_switch_copy(copy: &SwitchSegment, done: bool) -> String {
    let goes = if done { "went" } else { "goes" };
    let why = format!(
        "timeline {}'s copy of the segment where timeline {} begins at {}: PostgreSQL reads transactions prepared before the switch from pg_wal only",
        copy.segment.timeline, copy.next, copy.switch
    );
    match copy.source {
        CopySource::Archived => format!("{} {goes} into pg_wal ({why})", copy.segment),
        CopySource::Partial => format!(
            "{} {goes} into pg_wal, from the archived {0}.partial ({why})",
            copy.segment
        ),
        CopySource::Missing => format!(
            "warning: {} is not archived, whole or as .partial, so it cannot go into pg_wal ({why}); if a transaction prepared before {} is still prepared at the target, recovery stops with \"requested WAL segment pg_wal/{0} has already been removed\": copy that segment into pg_wal by hand if you have it",
            copy.segment, copy.switch
        ),
    }
}

fn source_name(source: CopySource) -> &'static str {
    match source {
        CopySource::Archived => "archived",
        CopySource::Partial => "partial",
        CopySource::Missing => "missing",
    }
}

pub fn run_plan(
    choice: &ConfigChoice,
    recovery: &RecoveryTargetArgs,
    output: OutputFormat,
) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let request = PlanRequest::new(
        &recovery.target()?,
        recovery.target_exclusive,
        recovery.target_timeline.as_deref(),
    )?;
    let backups = stanza.list_backups()?;
    let plan = plan_for(&stanza, &backups, &request).map_err(|e| e.context("plan"))?;
    let backup_start = backups
        .iter()
        .find(|b| b.label == plan.backup)
        .context("the plan names a backup that is not listed")?
        .start_lsn;
    let switch_copies = plan.copies_to_place(backup_start);
    let switch_lines: String = switch_copies
        .iter()
        .map(|copy| describe_switch_copy(copy, false) + "\n")
        .collect();
    let (stop_text, stop_json) = describe_stop(&plan.stop);
    let path: Vec<String> = plan
        .path
        .iter()
        .map(|span| match span.ends {
            Some(end) => format!("timeline {} until {end}", span.timeline),
            None => format!("timeline {}", span.timeline),
        })
        .collect();
    let first = plan
        .segments
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let last = plan
        .segments
        .last()
        .map(ToString::to_string)
        .unwrap_or_default();
    match output {
        OutputFormat::Text => program::print_stdout(&format!(
            "restore backup {}: {}\nrecover along {}\nreading {} segments, {} .. {} ({} to fetch)\n{switch_lines}recovery {stop_text}\n",
            plan.backup,
            plan.why,
            path.join(", then "),
            plan.segments.len(),
            first,
            last,
            units::bytes(plan.bytes)
        ))?,
        OutputFormat::Json => program::print_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({
                "backup": plan.backup,
                "why": plan.why,
                "timeline": plan.timeline.0,
                "path": plan.path.iter().map(|s| json!({"timeline": s.timeline.0, "begins": s.begins.to_string(), "ends": s.ends.map(|e| e.to_string())})).collect::<Vec<_>>(),
                "segments": plan.segments.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "bytes": plan.bytes,
                "stop": stop_json,
                "switch_segments": switch_copies.iter().map(|c| json!({"segment": c.segment.to_string(), "switch": c.switch.to_string(), "next_timeline": c.next.0, "source": source_name(c.source)})).collect::<Vec<_>>(),
            }))?
        ))?,
    }
    Ok(Finished::Success)
}
