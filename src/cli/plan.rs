//! `tidemark plan`: what a restore to a target would take, before anything is touched.

use serde_json::json;

use super::info::OutputFormat;
use super::restore::RecoveryTargetArgs;
use tidemark::config::ConfigChoice;
use tidemark::pg::time;
use tidemark::planning::inputs::plan_for;
use tidemark::planning::planner::StopPoint;
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
    let plan =
        plan_for(&stanza, &stanza.list_backups()?, &request).map_err(|e| e.context("plan"))?;
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
            "restore backup {}: {}\nrecover along {}\nreading {} segments, {} .. {} ({} to fetch)\nrecovery {stop_text}\n",
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
            }))?
        ))?,
    }
    Ok(Finished::Success)
}
