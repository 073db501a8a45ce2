//! The `tidemark` binary's own module tree: its clap tree, one module per subcommand, each
//! parsing, calling the library, printing and ending with the exit code `tidemark::program`
//! gives. Not part of the library.
//!
//! The command lines of `tidemark-archive` and `tidemark-restore` are those crates' own
//! (`archive_command/src/command.rs`, `restore_command/src/command.rs`); this binary compiles
//! them in too, since it is those programs when called by their names: a link or copy of it
//! can serve all three roles, and the helpers that `tidemark archive-push` and `tidemark
//! archive-get` start are this binary under those names.

mod backup;
mod check;
mod expire;
mod info;
mod key;
mod plan;
mod restore;
mod source;
mod stanza_create;
mod target_args;
mod tty_prompt;
mod verify;

#[path = "../../archive_command/src/command.rs"]
mod archive_command;
#[path = "../../restore_command/src/command.rs"]
mod restore_command;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use info::OutputFormat;
use tidemark::archive::get_command::RESTORE_PROGRAM;
use tidemark::archive::push_command::ARCHIVE_PROGRAM;
use tidemark::config::ConfigChoice;
use tidemark::program::{self, Finished};

/// Tidemark: PostgreSQL WAL archiving and point-in-time recovery.
///
/// PostgreSQL runs tidemark-archive as archive_command and tidemark-restore as
/// restore_command; a DBA runs tidemark to create stanzas, inspect the repository and try it
/// all out with `tidemark demo`. Configuration: docs/configuration.md.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub choice: ConfigChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bind a stanza to the cluster in its pgdata (system identifier, version, segment size)
    StanzaCreate,
    /// Check that everything is in place to archive, changing nothing that stays
    ///
    /// In order, stopping at the first failure with one line that says what to fix: the
    /// configuration loads; the repository answers (for S3: the bucket exists, the keys are
    /// accepted, the endpoint is reachable); a probe object under _check/ can be written, is
    /// refused a second time (the store honours create-only puts, which "never overwrite"
    /// rests on), reads back exactly and is deleted; the stanza exists; and the data directory,
    /// when pgdata is set, holds the stanza's cluster. Run it after changing the configuration.
    #[command(verbatim_doc_comment)]
    Check,
    /// Take a base backup over the replication protocol (the stanza's conninfo) into the repository
    ///
    /// Streams BASE_BACKUP straight into the repository: files are split, checksummed,
    /// compressed and stored on all cores, content already stored by an earlier backup is not
    /// stored again, every file is checked against PostgreSQL's backup manifest, and the backup
    /// exists only once the WAL it needs is in the archive (or inside it, with --include-wal).
    /// It holds the stanza's backup lock (under lock/ in the repository) while it runs, and
    /// waits, at most 30 minutes, for a running expire to end before it starts.
    /// The connecting role needs the REPLICATION attribute; its password comes from conninfo,
    /// PGPASSWORD or ~/.pgpass.
    #[command(verbatim_doc_comment)]
    Backup {
        /// Checkpoint to start the backup with: fast (immediate) or spread (paced by the server)
        #[arg(long, value_enum, default_value = "fast")]
        checkpoint: backup::Checkpoint,
        /// Store the WAL the backup needs inside it, so it restores without the archive
        #[arg(long)]
        include_wal: bool,
        /// Seconds to wait for the WAL the backup needs to reach the archive
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        archive_timeout: u64,
    },
    /// Restore a backup into a data directory, ready to recover to a target
    ///
    /// Plans first (as `tidemark plan`): an unreachable target is refused before anything is
    /// written, and the backup is the newest whose state does not yet include the record where
    /// recovery stops (or --backup), with the reason printed. Then it writes
    /// its files in parallel with every chunk's checksums verified (showing a progress bar on a
    /// terminal, a log line every 10 s otherwise). When recovery crosses a timeline switch
    /// inside a segment, it also puts the older timeline's copy of that segment into pg_wal
    /// (verified): PostgreSQL reads transactions prepared before the switch from there only.
    /// Then it writes recovery.signal
    /// and the recovery settings (restore_command calling tidemark-restore by absolute path with
    /// this configuration and stanza, and the target) into postgresql.auto.conf, so that
    /// `pg_ctl start` recovers and finishes on its own. Run it as the user PostgreSQL runs as.
    #[command(verbatim_doc_comment)]
    Restore(restore::RestoreArgs),
    /// Say what a restore to a target would take, before anything is touched
    ///
    /// Reads the backups, the WAL index and the timeline histories, and prints which backup
    /// would be restored and why, the timelines recovery follows, exactly which segments it
    /// reads, the older timeline's copies of switch segments a restore puts into pg_wal, and
    /// the record where PostgreSQL will stop — or why the target cannot be reached
    /// (no backup before it, a segment missing from the archive, or WAL that does not reach it
    /// yet, with how far a restore can go today). Same target options as restore.
    #[command(verbatim_doc_comment)]
    Plan {
        #[command(flatten)]
        recovery: target_args::RecoveryTargetArgs,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// The WAL index the recovery planner reads (written by every push)
    #[command(subcommand)]
    Index(IndexCommand),
    /// Show what a stanza holds: its cluster, its backups, its WAL and what restores can reach
    ///
    /// Per timeline: the archived segments (and how many are missing between the first and the
    /// last), and the windows of time restores along it can reach: from the end of a backup to
    /// the last archived commit or abort, cut where a segment is missing.
    #[command(verbatim_doc_comment)]
    Info {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Apply the retention policy: delete the backups it no longer keeps, the WAL no kept backup needs, and unreferenced chunks
    ///
    /// Prints every backup with the rules that keep it ([retention] full, time, gfs; the newest
    /// backup is always kept) or "expired", and the WAL removed per timeline (with archive =
    /// "window", everything older than the first segment the oldest kept backup needs; history
    /// files stay). A policy that would leave no restorable backup is refused. Deletes expired
    /// backups' records first, then their files, then the WAL, then chunks no listed backup
    /// refers to — unless a backup is running, in which case the next expire sweeps them. Killed
    /// at any moment, it leaves every listed backup restorable, and the next run finishes the
    /// work. Only one expire runs at a time per stanza; a second one refuses. With --dry-run it
    /// only prints what it would do. With --source NAME it applies the source's retention
    /// ([source.NAME.retention] over [retention]) to its snapshots, and sweeps their chunks.
    #[command(verbatim_doc_comment)]
    Expire {
        /// Expire this source's snapshots instead of the stanza's backups
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// Print what would be deleted, delete nothing
        #[arg(long)]
        dry_run: bool,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Read every object of the stanza and check it; exit 1 with one line per problem
    ///
    /// Reads every object on all cores (for S3, 16 requests at once) and checks that it holds
    /// exactly the bytes stored: its header, its length and the CRC-32C of its stored bytes
    /// (with --deep also, decompressed, its original bytes' CRC-32C and each chunk's SHA-256);
    /// then checks that each backup's chunks are all stored and add up to each file's size and
    /// CRC-32C in its record,
    /// that its manifest and record are readable, that the WAL is continuous on every timeline
    /// from each backup's start to the end of the archive, and that history files agree with
    /// the segments. Each problem is one line (the object, what is wrong, what to do) and the
    /// exit code is 1; when there is none, a summary (objects, bytes, seconds, rate) and exit 0.
    /// Chunks and backup directories that nothing refers to are listed too, but are not
    /// failures: an interrupted backup leaves them, and `tidemark expire` removes them. What to
    /// do about each problem: "verify found a problem" in docs/runbooks.md.
    /// With --source NAME it verifies that source's snapshots instead: every chunk a snapshot
    /// names is read once and checked (checksums, its content's hash against its name, its
    /// length), and every record's sizes must add up.
    #[command(verbatim_doc_comment)]
    Verify {
        /// Verify this source's snapshots instead of the stanza
        #[arg(long, value_name = "NAME", conflicts_with_all = ["backup", "fast", "deep"])]
        source: Option<String>,
        /// Only this backup (its record, manifest and chunks) and the WAL it needs to become
        /// consistent; orphans are not looked for
        #[arg(long, value_name = "LABEL")]
        backup: Option<String>,
        /// Read nothing but the backup records: chunks and segments present, WAL continuous,
        /// history files present, and no object of a size its kind cannot have
        #[arg(long)]
        fast: bool,
        /// Also decompress every object and check its original bytes' CRC-32C, and every
        /// chunk's content against its SHA-256 (CPU-bound; as much work as restoring it all)
        #[arg(long, conflicts_with = "fast")]
        deep: bool,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// The keys of an encrypted repository ([repo] cipher = "aes-256-gcm"): list, rotate, change the passphrase, retire
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Snapshots of the deployment's other stateful parts (Redis, S3 buckets, Azure tables), in the same repository
    ///
    /// Each source is a [source.NAME] section of the configuration (docs/configuration.md);
    /// `tidemark expire --source NAME` and `tidemark verify --source NAME` cover its snapshots.
    #[command(subcommand, verbatim_doc_comment)]
    Source(source::SourceCommand),
    /// Push one WAL file into the repository (what tidemark-archive does)
    ArchivePush {
        /// The WAL file to archive (PostgreSQL's %p)
        #[arg(value_name = "WAL_PATH")]
        wal_path: PathBuf,
    },
    /// Fetch one WAL file from the repository (what tidemark-restore does); exit 1 if not archived
    ArchiveGet {
        /// The file name to fetch (PostgreSQL's %f)
        #[arg(value_name = "WAL_FILE_NAME")]
        wal_file_name: String,
        /// Where to write it (PostgreSQL's %p)
        #[arg(value_name = "DESTINATION")]
        destination: PathBuf,
    },
    /// Run the whole cycle on a throwaway cluster: archive, base backup, restore to an instant, compare
    ///
    /// Needs the PostgreSQL server programs (found with `pg_config --bindir`, or in
    /// TIDEMARK_PG_BINDIR). Everything happens in a temporary directory under /tmp, on a Unix
    /// socket only (no TCP port), and is removed at the end unless TIDEMARK_KEEP_TMP is set.
    /// Run as root, it runs PostgreSQL and the archive and restore commands as the postgres
    /// user. It writes its own configuration, so --config and --stanza do not apply. Exits 1 if
    /// the restored rows differ from those committed at the chosen instant.
    #[command(verbatim_doc_comment)]
    Demo,
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Write the index entries that are missing, from the archived segments themselves
    ///
    /// Every push writes its segment's entry; a crash between the segment and its entry, or a
    /// repository from before the index existed, leaves some missing. Each segment is read and
    /// checked as a restore would; existing entries are checked, never replaced. Then the
    /// entries of each WAL directory are gathered into a pack, which planning reads at once.
    #[command(verbatim_doc_comment)]
    Rebuild,
}

/// Main of the `tidemark` binary. Called as `tidemark-archive` or `tidemark-restore` (a link or
/// copy), it is that binary, so one file can serve all three roles.
pub fn tidemark_main() -> ExitCode {
    match program::program_name("tidemark").as_str() {
        ARCHIVE_PROGRAM => return archive_command::main(),
        RESTORE_PROGRAM => return restore_command::main(),
        _ => {}
    }
    let cli = match program::parse_args::<Cli>("tidemark") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // `tidemark archive-get %f %p` may be a restore_command: its failures exit as one must.
    if let Command::ArchiveGet {
        wal_file_name,
        destination,
    } = &cli.command
    {
        return restore_command::run_as_restore_command(
            "tidemark",
            &cli.choice,
            wal_file_name,
            destination,
        );
    }
    program::run("tidemark", || dispatch(cli))
}

fn dispatch(cli: Cli) -> anyhow::Result<Finished> {
    match cli.command {
        Command::StanzaCreate => stanza_create::stanza_create(&cli.choice),
        Command::Check => check::check(&cli.choice),
        Command::Backup {
            checkpoint,
            include_wal,
            archive_timeout,
        } => backup::backup(&cli.choice, checkpoint, include_wal, archive_timeout),
        Command::Restore(args) => restore::run_restore(&cli.choice, &args),
        Command::Plan { recovery, output } => plan::run_plan(&cli.choice, &recovery, output),
        Command::Index(IndexCommand::Rebuild) => {
            let selected = cli.choice.select()?;
            let repo = selected.config.open_repository()?;
            let stanza = repo.open_stanza(&selected.stanza_name)?;
            let report = tidemark::archive::index_rebuild::rebuild_index(&stanza)
                .context("index rebuild")?;
            program::print_stdout(&format!(
                "WAL index of stanza '{}': {} segments, {} entries written, {} already there, {} packs written\n",
                stanza.name(),
                report.segments,
                report.written,
                report.already_there,
                report.packs
            ))?;
            Ok(Finished::Success)
        }
        Command::Info { output } => info::info(&cli.choice, output),
        Command::Expire {
            source,
            dry_run,
            output,
        } => expire::run_expire(&cli.choice, source.as_deref(), dry_run, output),
        Command::Verify {
            source: Some(source),
            output,
            ..
        } => verify::run_verify_source(&cli.choice, &source, output),
        Command::Verify {
            source: None,
            backup,
            fast,
            deep,
            output,
        } => verify::run_verify(&cli.choice, backup, fast, deep, output),
        Command::Key(command) => key::run_key(&cli.choice, command),
        Command::Source(command) => source::run_source(&cli.choice, command),
        Command::ArchivePush { wal_path } => {
            tidemark::archive::push_command(&cli.choice, &wal_path).map(|()| Finished::Success)
        }
        Command::ArchiveGet {
            wal_file_name,
            destination,
        } => restore_command::archive_get(&cli.choice, &wal_file_name, &destination),
        Command::Demo => testkit::demo::run_demo().map(|()| Finished::Success),
    }
}
