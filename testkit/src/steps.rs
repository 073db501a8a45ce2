//! The steps the end-to-end tests (and the demo) share: start a primary that archives through
//! the lab's `tidemark-archive` into a created stanza, make sure its WAL is archived, and restore
//! with `tidemark restore` to a target and compare the rows with what was committed by then.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::lab::Lab;
use crate::servers::postgres::ThrowawayCluster;
use crate::workload::{self, CommittedRow};

/// Generous bound for waits on a loaded 2-core machine; never asserted as a speed.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// How an archiving primary differs from the plain one ([`PrimaryOptions::default`]: 1 MiB
/// WAL segments, so a short workload spans several; `archive_command` the lab's
/// `tidemark-archive`; the lab's local repository; a conninfo that reaches it as `postgres`).
#[derive(Clone, Debug)]
pub struct PrimaryOptions {
    name: String,
    segment_mb: u32,
    settings: Vec<(String, String)>,
    archive_command: Option<String>,
    repo_extra: String,
    repo_section: Option<String>,
    replication_user: Option<(String, String)>,
}

impl Default for PrimaryOptions {
    fn default() -> PrimaryOptions {
        PrimaryOptions {
            name: "primary".to_owned(),
            segment_mb: 1,
            settings: Vec::new(),
            archive_command: None,
            repo_extra: String::new(),
            repo_section: None,
            replication_user: None,
        }
    }
}

impl PrimaryOptions {
    /// The cluster's name: its data directory is `<lab>/<name>` (default `primary`).
    pub fn name(mut self, name: &str) -> PrimaryOptions {
        self.name = name.to_owned();
        self
    }

    /// WAL segments of `mb` MiB.
    pub fn segment_mb(mut self, mb: u32) -> PrimaryOptions {
        self.segment_mb = mb;
        self
    }

    /// One more postgresql.conf setting.
    pub fn setting(mut self, key: &str, value: &str) -> PrimaryOptions {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `track_commit_timestamp = on`, which the [`workload`] needs to know commit times.
    pub fn commit_timestamps(self) -> PrimaryOptions {
        self.setting("track_commit_timestamp", "on")
    }

    /// An `archive_command` of the test's own (e.g. wrapping the lab's).
    pub fn archive_command(mut self, command: String) -> PrimaryOptions {
        self.archive_command = Some(command);
        self
    }

    /// Lines appended to the configuration after the local repository's `path`.
    pub fn repo_extra(mut self, lines: &str) -> PrimaryOptions {
        self.repo_extra = lines.to_owned();
        self
    }

    /// The whole `[repo]` section's lines instead of the local repository (e.g. a bucket's,
    /// holding keys: the file is then made readable by its owner only).
    pub fn repo_section(mut self, lines: String) -> PrimaryOptions {
        self.repo_section = Some(lines);
        self
    }

    /// Backups connect as replication user `name` with `password` (SCRAM-SHA-256), created on
    /// the primary and allowed replication over its socket, instead of as `postgres`.
    pub fn replication_user(mut self, name: &str, password: &str) -> PrimaryOptions {
        self.replication_user = Some((name.to_owned(), password.to_owned()));
        self
    }
}

/// Starts a PostgreSQL primary (`<lab>/<name>`) that archives through the lab's
/// `tidemark-archive`, with the lab's configuration written for it and the stanza created.
pub fn archiving_primary(lab: &Lab, options: &PrimaryOptions) -> anyhow::Result<ThrowawayCluster> {
    let mut primary =
        ThrowawayCluster::init(&lab.pg, lab.tmp.path(), &options.name, options.segment_mb)?;
    if let Some((name, _)) = &options.replication_user {
        primary.allow_first(&format!("local replication {name} scram-sha-256"))?;
    }
    let archive_command = options
        .archive_command
        .clone()
        .unwrap_or_else(|| lab.archive_command());
    let mut settings = vec![
        ("archive_mode", "on"),
        ("archive_command", &archive_command),
    ];
    if options.replication_user.is_some() {
        settings.push(("password_encryption", "scram-sha-256"));
    }
    settings.extend(
        options
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    primary.configure(&settings)?;
    primary.start()?;
    let conninfo = match &options.replication_user {
        Some((name, password)) => {
            primary.query(&format!(
                "CREATE ROLE {name} LOGIN REPLICATION PASSWORD '{password}'"
            ))?;
            format!(
                "host={} port={} user={name} password='{password}'",
                primary.socket_dir().display(),
                primary.port()
            )
        }
        None => primary.conninfo(),
    };
    match &options.repo_section {
        Some(section) => {
            lab.write_config_with_repo_section(primary.data_dir(), section, &conninfo)?
        }
        None => lab.write_config_with_conninfo(
            primary.data_dir(),
            &options.repo_extra,
            Some(&conninfo),
        )?,
    }
    lab.tidemark(&["stanza-create"])?;
    Ok(primary)
}

/// Waits until PostgreSQL reports the segment holding the latest WAL as archived, after
/// forcing a switch so that segment is complete; returns its name.
pub fn switch_and_wait_for_archive(cluster: &ThrowawayCluster) -> anyhow::Result<String> {
    let segment = cluster.query("SELECT pg_walfile_name(pg_switch_wal())")?;
    cluster
        .wait_for(
            &format!(
                "SELECT coalesce(last_archived_wal >= '{segment}', false) FROM pg_stat_archiver"
            ),
            "t",
            PATIENCE,
        )
        .with_context(|| {
            format!(
                "wait for {segment} to be archived; server log: {}",
                cluster.log_tail(10)
            )
        })?;
    Ok(segment)
}

/// A cluster restored by `tidemark restore`, recovered and promoted.
pub struct Restored {
    /// What `tidemark restore` printed.
    pub report: String,
    /// Running.
    pub cluster: ThrowawayCluster,
}

/// `tidemark restore --pgdata <lab>/<name> <target>`, then a start of the restored cluster with
/// `settings` added (e.g. `archive_mode = off`), waiting until recovery has promoted it.
pub fn restore_to(
    lab: &Lab,
    name: &str,
    target: &[&str],
    settings: &[(&str, &str)],
) -> anyhow::Result<Restored> {
    let pgdata = lab.tmp.path().join(name);
    let mut args = vec![
        "restore",
        "--pgdata",
        pgdata.to_str().context("pgdata path")?,
    ];
    args.extend(target);
    let report = lab.tidemark(&args)?;
    let cluster = start_restored(lab, name, settings)?;
    Ok(Restored { report, cluster })
}

/// Starts the cluster `tidemark restore` wrote into `<lab>/<name>`, with `settings` added (e.g.
/// `archive_mode = off`), and waits until its recovery has promoted it.
pub fn start_restored(
    lab: &Lab,
    name: &str,
    settings: &[(&str, &str)],
) -> anyhow::Result<ThrowawayCluster> {
    let pgdata = lab.tmp.path().join(name);
    let mut cluster = ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), name, pgdata)?;
    if !settings.is_empty() {
        cluster.configure(settings)?;
    }
    cluster.start()?;
    cluster.wait_for_promotion(Duration::from_secs(180))?;
    Ok(cluster)
}

/// [`restore_to`], then [`check_rows`]: the workload's rows in the restored cluster must be
/// `expected`, the ids committed by the target.
pub fn restore_and_check(
    lab: &Lab,
    name: &str,
    target: &[&str],
    settings: &[(&str, &str)],
    expected: &[i64],
) -> anyhow::Result<Restored> {
    let restored = restore_to(lab, name, target, settings)?;
    check_rows(&restored.cluster, expected)
        .with_context(|| format!("check the rows of the cluster restored to {target:?}"))?;
    Ok(restored)
}

/// [`restore_and_check`] to `instant` (`--target-time`), where the rows must be those of `rows`
/// committed by then.
pub fn restore_to_instant(
    lab: &Lab,
    name: &str,
    rows: &[CommittedRow],
    instant: i64,
    settings: &[(&str, &str)],
) -> anyhow::Result<Restored> {
    let target = workload::format_instant(instant);
    let expected = workload::ids_committed_by(rows, instant);
    restore_and_check(lab, name, &["--target-time", &target], settings, &expected)
        .with_context(|| format!("recovery to {target}"))
}

/// Fails unless the workload's rows in `cluster` are exactly `expected` (ids in order), naming
/// the missing and the extra ones.
pub fn check_rows(cluster: &ThrowawayCluster, expected: &[i64]) -> anyhow::Result<()> {
    let present = workload::present_ids(cluster)?;
    match rows_differ(&present, expected) {
        Some(difference) => bail!("{difference}"),
        None => Ok(()),
    }
}

/// How `present` differs from `expected` (ids in order), if it does.
pub fn rows_differ(present: &[i64], expected: &[i64]) -> Option<String> {
    if present == expected {
        return None;
    }
    let missing: Vec<&i64> = expected.iter().filter(|i| !present.contains(i)).collect();
    let extra: Vec<&i64> = present.iter().filter(|i| !expected.contains(i)).collect();
    Some(format!(
        "the cluster has {} rows where {} were committed by then: missing {missing:?}, extra {extra:?}",
        present.len(),
        expected.len()
    ))
}
