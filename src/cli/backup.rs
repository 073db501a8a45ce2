//! `tidemark backup`: connect with the stanza's conninfo and take a base backup.

use std::time::Duration;

use anyhow::Context;

use tidemark::backup::{BackupOptions, take_backup};
use tidemark::config::ConfigChoice;
use tidemark::program::{self, Finished};
use tidemark::protocol::ConnectTarget;
use tidemark::units;

/// How the server checkpoints at the start of the backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Checkpoint {
    Fast,
    Spread,
}

pub fn backup(
    choice: &ConfigChoice,
    checkpoint: Checkpoint,
    include_wal: bool,
    archive_timeout: u64,
) -> anyhow::Result<Finished> {
    let selected = choice.select()?;
    let name = &selected.stanza_name;
    let conninfo = selected.required("conninfo", "\"host=… user=…\"", |s| {
        s.conninfo.as_deref()
    })?;
    let connect =
        ConnectTarget::from_conninfo(conninfo).with_context(|| format!("stanza '{name}'"))?;
    let repo = selected.config.open_repository()?;
    let stanza = repo.open_stanza(name)?;
    let options = BackupOptions {
        fast_checkpoint: checkpoint == Checkpoint::Fast,
        include_wal,
        archive_timeout: Duration::from_secs(archive_timeout),
    };
    let record = take_backup(&stanza, &connect, &options).context("backup")?;
    let sizes = record.sizes;
    program::print_stdout(&format!(
        "backup {} complete: {} files, {} original, {} stored ({} new, {} chunks reused), WAL {} .. {}{}, {:.1} s\n",
        record.label,
        sizes.files,
        units::bytes(sizes.original),
        units::bytes(sizes.stored),
        units::bytes(sizes.new),
        sizes.reused_chunks,
        record.wal_start,
        record.wal_stop,
        if record.wal_included {
            " (included)"
        } else {
            ""
        },
        record.duration_ms as f64 / 1000.0
    ))?;
    Ok(Finished::Success)
}
