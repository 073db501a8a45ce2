//! `tidemark restore`: choose a backup for the target, lay it out, write the recovery settings.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use tidemark::config::ConfigChoice;
use tidemark::program::{self, Finished};
use tidemark::restore::{ExistingData, RestoreOptions, restore, settings};
use tidemark::units;

use super::target_args::RecoveryTargetArgs;

/// The restore options of the command line.
#[derive(Clone, Debug, clap::Args)]
pub struct RestoreArgs {
    /// Data directory to restore into; must be empty or absent (see --delta, --force)
    #[arg(long, value_name = "DIR")]
    pub pgdata: PathBuf,
    #[command(flatten)]
    pub recovery: RecoveryTargetArgs,
    /// What the server does at the target
    #[arg(long, value_enum, default_value = "promote")]
    pub target_action: TargetAction,
    /// Restore this backup instead of the one chosen for the target
    #[arg(long, value_name = "LABEL")]
    pub backup: Option<String>,
    /// Restore tablespace OID into DIR instead of its original location (repeatable)
    #[arg(long, value_name = "OID=DIR")]
    pub tablespace_map: Vec<String>,
    /// Restore into a non-empty directory, or finish a restore that failed: keep files that match
    /// the backup, remove the others
    #[arg(long, conflicts_with = "force")]
    pub delta: bool,
    /// Restore into a non-empty directory, removing everything in it first
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetAction {
    Promote,
    Pause,
    Shutdown,
}

/// The restore_command for the recovered server: `tidemark-restore` beside this program, by
/// absolute path, else this program's `archive-get`, with the same configuration and stanza.
fn restore_command(config: &Path, stanza: &str) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("find this program's path")?;
    let sibling = exe.with_file_name("tidemark-restore");
    let config = config
        .canonicalize()
        .with_context(|| format!("find {}", config.display()))?;
    let (program, subcommand) = if sibling.is_file() {
        (sibling, None)
    } else {
        (exe, Some(OsStr::new("archive-get")))
    };
    let mut words = vec![
        program.as_os_str(),
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--stanza"),
        OsStr::new(stanza),
    ];
    words.extend(subcommand);
    settings::restore_command(&words).context("write restore_command")
}

pub fn run_restore(choice: &ConfigChoice, args: &RestoreArgs) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let recovery_target = args.recovery.target()?;
    let mut tablespace_map = BTreeMap::new();
    for mapping in &args.tablespace_map {
        let (oid, dir) = mapping
            .split_once('=')
            .with_context(|| format!("--tablespace-map '{mapping}' is not OID=DIR"))?;
        let oid: u32 = oid.parse().with_context(|| {
            format!("--tablespace-map '{mapping}': '{oid}' is not a tablespace OID")
        })?;
        if !Path::new(dir).is_absolute() {
            bail!("--tablespace-map '{mapping}': the directory must be an absolute path");
        }
        tablespace_map.insert(oid, PathBuf::from(dir));
    }
    let pgdata = std::path::absolute(&args.pgdata).context("--pgdata")?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(&selected.stanza_name)?;
    let options = RestoreOptions {
        pgdata: pgdata.clone(),
        target: recovery_target.clone(),
        target_action: format!("{:?}", args.target_action).to_lowercase(),
        target_timeline: args.recovery.target_timeline.clone(),
        exclusive: args.recovery.target_exclusive,
        backup_label: args.backup.clone(),
        tablespace_map,
        existing: if args.delta {
            ExistingData::Delta
        } else if args.force {
            ExistingData::Force
        } else {
            ExistingData::Refuse
        },
        restore_command: restore_command(&selected.config_path, &selected.stanza_name)?,
    };
    let report = restore(&stanza, &options).context("restore")?;
    let kept = if report.files_kept > 0 || report.removed > 0 {
        format!(
            " ({} files kept as they were, {} removed)",
            report.files_kept, report.removed
        )
    } else {
        String::new()
    };
    let switch_lines: String = report
        .switch_copies
        .iter()
        .map(|copy| super::plan::describe_switch_copy(copy, true) + "\n")
        .collect();
    program::print_stdout(&format!(
        "restored backup {} into {}: {}\n{} files, {} written{kept}, in {:.1} s\n{switch_lines}recovery settings written: start the server (pg_ctl -D {} start); it recovers through tidemark-restore to {} and then does '{}'\n",
        report.label,
        pgdata.display(),
        format_args!("chosen because {}", report.why),
        report.files_written,
        units::bytes(report.bytes_written),
        report.elapsed.as_secs_f64(),
        pgdata.display(),
        recovery_target.describe(),
        options.target_action
    ))?;
    Ok(Finished::Success)
}
