//! Recovering a copy of a base backup to a target through `tidemark-restore`, the way a DBA
//! would: copy, write `recovery.signal` and the recovery settings, start, wait for promotion.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::lab::Lab;
use crate::owner::{give_to_owner, run_as_owner};
use crate::servers::postgres::ThrowawayCluster;

/// Where recovery should stop, and what the recovered cluster does afterwards.
#[derive(Clone, Debug, Default)]
pub struct RecoveryTarget {
    /// `recovery_target_time`; `None` recovers to the end of the archive.
    pub time: Option<String>,
    /// `recovery_target_inclusive`, when set.
    pub inclusive: Option<bool>,
    /// `recovery_target_timeline`, when set (PostgreSQL's default is `latest`).
    pub timeline: Option<String>,
    /// Archive the new timeline's WAL through the lab's `archive_command` after promotion.
    pub archive_after: bool,
}

/// Copies `base_backup` to `<lab>/<name>`, recovers it to `target` and returns it promoted
/// and running.
pub fn recover_copy(
    lab: &Lab,
    base_backup: &Path,
    name: &str,
    target: &RecoveryTarget,
) -> anyhow::Result<ThrowawayCluster> {
    let data_dir = lab.tmp.path().join(name);
    run_as_owner(
        Path::new("cp"),
        &[
            OsStr::new("-a"),
            base_backup.as_os_str(),
            data_dir.as_os_str(),
        ],
        lab.tmp.path(),
    )?;
    let mut cluster = ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), name, data_dir)?;
    let restore_command = lab.restore_command();
    let archive_command = lab.archive_command();
    let mut settings: Vec<(&str, &str)> = vec![
        ("restore_command", &restore_command),
        ("recovery_target_action", "promote"),
    ];
    if let Some(time) = &target.time {
        settings.push(("recovery_target_time", time));
    }
    if let Some(inclusive) = target.inclusive {
        settings.push((
            "recovery_target_inclusive",
            if inclusive { "on" } else { "off" },
        ));
    }
    if let Some(timeline) = &target.timeline {
        settings.push(("recovery_target_timeline", timeline));
    }
    if target.archive_after {
        settings.push(("archive_mode", "on"));
        settings.push(("archive_command", &archive_command));
    } else {
        settings.push(("archive_mode", "off"));
    }
    cluster.configure(&settings)?;
    let signal = cluster.data_dir().join("recovery.signal");
    fs::write(&signal, b"").with_context(|| format!("write {}", signal.display()))?;
    give_to_owner(&signal)?;
    cluster.start()?;
    cluster.wait_for_promotion(Duration::from_secs(180))?;
    Ok(cluster)
}
