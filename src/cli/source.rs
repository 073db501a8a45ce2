//! `tidemark source backup|list|check|restore NAME`: snapshots of the deployment's other
//! stateful parts (`[source.NAME]` in the configuration), in the same repository.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tidemark::config::{Config, ConfigChoice};
use tidemark::program::{self, Finished};
use tidemark::repo::Repository;
use tidemark::repo::source_catalog::SnapshotRecord;
use tidemark::sources::azure_table::batch::WriteMode;
use tidemark::sources::azure_table::restore::TableTarget;
use tidemark::sources::bucket::restore::BucketTarget;
use tidemark::sources::{self, RestoreTarget};
use tidemark::units;

use super::info::OutputFormat;

#[derive(Debug, clap::Subcommand)]
pub enum SourceCommand {
    /// Take a snapshot of a source into the repository
    ///
    /// Redis: the server's RDB snapshot over the replication handshake, as `redis-cli --rdb`
    /// takes it (a fork-time image of every database), streamed into the repository as it
    /// arrives and checked as it goes (header, version, end marker, CRC-64); a snapshot that
    /// fails a check is not recorded and the command exits 1. Content already stored by an
    /// earlier snapshot is not stored again. The ACL user needs +sync +replconf +info.
    ///
    /// Azure Table: every configured table (or every table, tables = "*") read page by page,
    /// `concurrency` tables at once, into a stream of JSON lines per table, each property with
    /// its EDM type. A scan is not a point-in-time image: the record keeps each table's entity
    /// and partition counts and when its scan began and ended.
    #[command(verbatim_doc_comment)]
    Backup {
        /// The source: a [source.NAME] section of the configuration
        name: String,
    },
    /// List the snapshots in the repository, of one source or of all
    List {
        /// Only this source's snapshots
        name: Option<String>,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Check that a snapshot of a source can be taken, short of taking one
    ///
    /// Redis: connects and authenticates, reads the server's version and role, and checks that
    /// the user may run SYNC, REPLCONF and INFO (ACL DRYRUN, where the user may ask).
    ///
    /// Azure Table: reads the key (key_file, mode 0600, or AZURE_STORAGE_KEY), lists the
    /// account's tables and checks that every configured one exists.
    #[command(verbatim_doc_comment)]
    Check {
        /// The source: a [source.NAME] section of the configuration
        name: String,
    },
    /// Restore a snapshot of a source
    ///
    /// Redis, two ways:
    ///   --to DIR     writes DIR/dump.rdb (a temporary file, checked against the snapshot's
    ///                length and CRC-64, fsynced, then renamed) for a stopped server to load;
    ///                refused if DIR/dump.rdb exists (unless --force), while --pid lives or
    ///                something answers on --port, or when --check-against's server loads only
    ///                older RDB versions.
    ///   --into URL   loads it into a running server without file access: Tidemark serves the
    ///                snapshot as a replication primary, the server (REPLICAOF) loads it, then
    ///                becomes a primary again. Refused for a replica, for a server holding keys
    ///                (unless --flush), and for an RDB version newer than it loads. The server
    ///                must reach Tidemark's listen address (--listen, --advertise); its ACL user
    ///                needs +replicaof +info. Its password comes from the URL or REDISCLI_AUTH.
    ///
    /// Bucket, two ways:
    ///   --to-bucket NAME   writes every object of the snapshot (or only --key's) into bucket
    ///                      NAME on the source's server, with its content type, headers, user
    ///                      metadata and tags; --prefix P puts them under P instead of the
    ///                      source's prefix. Objects already there with the same content and
    ///                      headers are left as they are; objects the snapshot lacks are left
    ///                      alone unless --delete-extra. --dry-run prints what would change.
    ///                      The source bucket itself only with --in-place.
    ///   --key K --to-file PATH   one object as a new local file (fsynced, never over a file).
    ///
    /// Azure Table:
    ///   --table T    writes table T of the snapshot into the account, as T or --as T2 (created
    ///                when missing); only --partition PK, only one entity (--partition PK
    ///                --row RK), or only the entities an OData --filter matches (comparisons
    ///                eq ne gt ge lt le, and/or/not, parentheses; literals 'text', 42, 42L,
    ///                4.2, true, datetime'…', guid'…', X'…'; evaluated over the snapshot).
    ///                --mode insert (the default) writes nothing if any wanted entity exists
    ///                in the target and lists every one; merge and replace upsert. Written in
    ///                transactions of one partition, at most 100 entities and 4 MiB each.
    ///                --dry-run prints the entities per partition (and an insert's
    ///                conflicts) and writes nothing.
    ///
    /// Which snapshot: --snapshot ID (default latest), or --at TIME: the newest that started
    /// at or before TIME ('YYYY-MM-DD HH:MM:SS+00' or RFC 3339).
    #[command(verbatim_doc_comment)]
    Restore(Box<RestoreArgs>),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "into", "to_bucket", "to_file", "table"])))]
#[command(group(clap::ArgGroup::new("writes_into_account").args(["to_bucket", "table"])))]
pub struct RestoreArgs {
    /// The source: a [source.NAME] section of the configuration
    name: String,
    /// The snapshot to restore: its id, or latest
    #[arg(long, value_name = "ID", conflicts_with = "at")]
    snapshot: Option<String>,
    /// Restore the newest snapshot taken at or before TIME
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Write the snapshot as DIR/dump.rdb
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// Replace an existing DIR/dump.rdb
    #[arg(long, requires = "to")]
    force: bool,
    /// The process id of the server that uses DIR: refused while it runs
    #[arg(long, value_name = "PID", requires = "to")]
    pid: Option<u32>,
    /// The port of the server that uses DIR: refused while anything answers there
    #[arg(long, value_name = "PORT", requires = "to")]
    port: Option<u16>,
    /// The server that will load DIR/dump.rdb: refused if it cannot load the snapshot's RDB version
    #[arg(long, value_name = "URL", requires = "to")]
    check_against: Option<String>,
    /// Load the snapshot into this running server (redis://HOST:PORT)
    #[arg(long, value_name = "URL")]
    into: Option<String>,
    /// Replace the keys the server holds
    #[arg(long, requires = "into")]
    flush: bool,
    /// Where Tidemark listens for the server's replication connection
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:0",
        requires = "into"
    )]
    listen: SocketAddr,
    /// The host the server connects to, when not the --listen address (required for 0.0.0.0)
    #[arg(long, value_name = "HOST", requires = "into")]
    advertise: Option<String>,
    /// Write the bucket snapshot's objects into this bucket, on the source's server
    #[arg(long, value_name = "NAME")]
    to_bucket: Option<String>,
    /// Put the objects under this prefix instead of the source's
    #[arg(long, value_name = "PREFIX", requires = "to_bucket")]
    prefix: Option<String>,
    /// Print what would change in the bucket (or the entities per partition), and change nothing
    #[arg(long, requires = "writes_into_account")]
    dry_run: bool,
    /// Delete objects of the bucket (under the prefix) that the snapshot lacks
    #[arg(long, requires = "to_bucket", conflicts_with = "key")]
    delete_extra: bool,
    /// Allow --to-bucket to name the source bucket itself
    #[arg(long, requires = "to_bucket")]
    in_place: bool,
    /// Only this object of the bucket snapshot (its key as the bucket held it)
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Write the object --key names to this new local file
    #[arg(long, value_name = "PATH", requires = "key")]
    to_file: Option<PathBuf>,
    /// Restore this table of the Azure Table snapshot
    #[arg(long, value_name = "T")]
    table: Option<String>,
    /// Into this table of the account instead (created when missing)
    #[arg(long = "as", value_name = "T2", requires = "table")]
    as_table: Option<String>,
    /// Only this partition of the table
    #[arg(long, value_name = "PK", requires = "table")]
    partition: Option<String>,
    /// Only this entity of --partition's
    #[arg(long, value_name = "RK", requires = "partition")]
    row: Option<String>,
    /// Only the entities this OData filter matches (evaluated over the snapshot)
    #[arg(long, value_name = "ODATA", requires = "table")]
    filter: Option<String>,
    /// How entities are written: insert (never over one that exists), merge or replace
    #[arg(long, value_enum, default_value = "insert", requires = "table")]
    mode: RestoreMode,
}

/// `--mode` of an Azure Table restore.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RestoreMode {
    Insert,
    Merge,
    Replace,
}

pub fn run_source(choice: &ConfigChoice, command: SourceCommand) -> anyhow::Result<Finished> {
    let config = Config::load(&choice.config_path())?;
    match command {
        SourceCommand::Backup { name } => backup(&config, &name),
        SourceCommand::List { name, output } => list(&config, name.as_deref(), output),
        SourceCommand::Check { name } => check(&config, &name),
        SourceCommand::Restore(args) => restore(&config, &args),
    }
}

fn backup(config: &Config, name: &str) -> anyhow::Result<Finished> {
    let settings = config.source(name)?;
    let source = sources::open(&settings);
    let repo = config.open_repository()?;
    let record = sources::take::snapshot_into(&repo, name, settings.kind.name(), source.as_ref())?;
    program::print_stdout(&format!(
        "snapshot {} of source '{name}': {}; stored {} new of {} ({} of {} chunks already stored)\n",
        record.id,
        sources::describe(&record),
        units::bytes(record.sizes.new),
        units::bytes(record.sizes.stored),
        record.sizes.reused_chunks,
        record.sizes.chunks
    ))?;
    Ok(Finished::Success)
}

fn list(config: &Config, name: Option<&str>, output: OutputFormat) -> anyhow::Result<Finished> {
    let repo = config.open_repository()?;
    let names = match name {
        Some(name) => vec![name.to_owned()],
        None => repo.list_sources()?,
    };
    let mut snapshots: Vec<SnapshotRecord> = Vec::new();
    for name in &names {
        if let Some(area) = repo.open_source(name)? {
            snapshots.extend(area.list_snapshots()?);
        }
    }
    let text = match output {
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&snapshots)?),
        OutputFormat::Text => list_text(&names, &snapshots),
    };
    program::print_stdout(&text)?;
    Ok(Finished::Success)
}

/// Each source's snapshots, oldest first, one line each.
fn list_text(names: &[String], snapshots: &[SnapshotRecord]) -> String {
    let mut text = String::new();
    if names.is_empty() {
        text.push_str("no source has a snapshot in the repository\n");
    }
    for name in names {
        let own: Vec<&SnapshotRecord> = snapshots.iter().filter(|s| &s.source == name).collect();
        let kind = own
            .first()
            .map(|s| s.kind.as_str())
            .unwrap_or("no snapshot");
        text.push_str(&format!(
            "source '{name}' ({kind}): {} snapshots\n",
            own.len()
        ));
        for snapshot in own {
            text.push_str(&format!(
                "  {}  {}  {}; stored {} new\n",
                snapshot.id,
                snapshot.start_time,
                sources::describe(snapshot),
                units::bytes(snapshot.sizes.new)
            ));
        }
    }
    text
}

fn check(config: &Config, name: &str) -> anyhow::Result<Finished> {
    let settings = config.source(name)?;
    let source = sources::open(&settings);
    for line in source.check()? {
        program::print_stdout(&format!("ok: {line}\n"))?;
    }
    let repo = config.open_repository()?;
    repo.check_source_kind(name, settings.kind.name())?;
    program::print_stdout(&format!(
        "ok: repository {} can hold snapshots of source '{name}'\n",
        repo.storage().location()
    ))?;
    Ok(Finished::Success)
}

fn restore(config: &Config, args: &RestoreArgs) -> anyhow::Result<Finished> {
    let settings = config.source(&args.name)?;
    let source = sources::open(&settings);
    let target = restore_target(args)?;
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let repo = Arc::new(config.open_repository()?);
    let record = find_snapshot(&repo, &args.name, args.snapshot.as_deref(), at)?;
    let said = source.restore(Arc::clone(&repo), &record, &target)?;
    program::print_stdout(&format!("{said}\n"))?;
    Ok(Finished::Success)
}

/// Where the arguments say to restore.
fn restore_target(args: &RestoreArgs) -> anyhow::Result<RestoreTarget> {
    Ok(if let Some(dir) = &args.to {
        RestoreTarget::RedisDir {
            dir: dir.clone(),
            force: args.force,
            pid: args.pid,
            port: args.port,
            check_against: args.check_against.clone(),
        }
    } else if let Some(url) = &args.into {
        RestoreTarget::RedisInto {
            url: url.clone(),
            flush: args.flush,
            listen: args.listen,
            advertise: args.advertise.clone(),
        }
    } else if let Some(bucket) = &args.to_bucket {
        RestoreTarget::Bucket {
            target: BucketTarget {
                bucket: bucket.clone(),
                prefix: args.prefix.clone(),
                dry_run: args.dry_run,
                delete_extra: args.delete_extra,
                key: args.key.clone(),
            },
            in_place: args.in_place,
        }
    } else if let Some(table) = &args.table {
        RestoreTarget::AzureTable(TableTarget {
            table: table.clone(),
            as_table: args.as_table.clone(),
            partition: args.partition.clone(),
            row: args.row.clone(),
            filter: args.filter.clone(),
            mode: match args.mode {
                RestoreMode::Insert => WriteMode::Insert,
                RestoreMode::Merge => WriteMode::Merge,
                RestoreMode::Replace => WriteMode::Replace,
            },
            dry_run: args.dry_run,
        })
    } else if let (Some(path), Some(key)) = (&args.to_file, &args.key) {
        RestoreTarget::File {
            key: key.clone(),
            path: path.clone(),
        }
    } else {
        unreachable!("clap requires one target, and --key with --to-file")
    })
}

/// `--at TIME`: RFC 3339, or PostgreSQL's `YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM]`.
fn parse_at(text: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%#z"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            anyhow::anyhow!(
                "cannot read --at '{text}': write it as 'YYYY-MM-DD HH:MM:SS+00' (a numeric UTC offset) or RFC 3339"
            )
        })
}

/// The snapshot `wanted` (an id or `latest`) of source `name`, or the newest at or before `at`.
fn find_snapshot(
    repo: &Repository,
    name: &str,
    wanted: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> anyhow::Result<SnapshotRecord> {
    let area = repo.open_source(name)?.with_context(|| {
        format!(
            "source '{name}' has no snapshot in {}: take one with 'tidemark source backup {name}'",
            repo.storage().location()
        )
    })?;
    match at {
        Some(at) => area.snapshot_at(at),
        None => area.find_snapshot(Some(wanted.unwrap_or("latest"))),
    }
}
