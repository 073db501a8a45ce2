//! The options naming where recovery stops, which `plan` and `restore` share.

use anyhow::{Context, bail};

use tidemark::pg::Lsn;
use tidemark::planning::target::RecoveryTarget;

/// Where recovery stops: the options `restore` and `plan` share.
#[derive(Clone, Debug, clap::Args)]
pub struct RecoveryTargetArgs {
    /// Recover to this time: 'YYYY-MM-DD HH:MM:SS[.ffffff]+HH' (a numeric UTC offset is required)
    #[arg(long, value_name = "TIME", group = "recovery_target")]
    pub target_time: Option<String>,
    /// Recover to this LSN (X/Y)
    #[arg(long, value_name = "LSN", group = "recovery_target")]
    pub target_lsn: Option<String>,
    /// Recover to this transaction ID
    #[arg(long, value_name = "XID", group = "recovery_target")]
    pub target_xid: Option<String>,
    /// Recover to this restore point (pg_create_restore_point)
    #[arg(long, value_name = "NAME", group = "recovery_target")]
    pub target_name: Option<String>,
    /// 'immediate': stop as soon as the backup is consistent
    #[arg(long, value_name = "immediate", group = "recovery_target")]
    pub target: Option<String>,
    /// Timeline to recover along: a number, 'current' or 'latest' [PostgreSQL's default: latest]
    #[arg(long, value_name = "TIMELINE")]
    pub target_timeline: Option<String>,
    /// Stop just before the target instead of just after it (recovery_target_inclusive = off)
    #[arg(long)]
    pub target_exclusive: bool,
}

impl RecoveryTargetArgs {
    /// The target these options name.
    pub fn target(&self) -> anyhow::Result<RecoveryTarget> {
        let args = self;
        Ok(if let Some(time) = &args.target_time {
            RecoveryTarget::time(time)?
        } else if let Some(lsn) = &args.target_lsn {
            RecoveryTarget::Lsn(lsn.parse::<Lsn>().context("--target-lsn")?)
        } else if let Some(xid) = &args.target_xid {
            RecoveryTarget::xid(xid)?
        } else if let Some(name) = &args.target_name {
            RecoveryTarget::Name(name.clone())
        } else if let Some(target) = &args.target {
            if target != "immediate" {
                bail!("--target '{target}' is not known: the only value is 'immediate'");
            }
            RecoveryTarget::Immediate
        } else {
            RecoveryTarget::EndOfArchive
        })
    }
}
