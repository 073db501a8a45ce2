//! Wall time of a full base backup: `tidemark backup` next to `pg_basebackup -Ft` with client-side
//! lz4 and pgBackRest (`process-max=2`, lz4), on the same database of at least 1 GiB.
//!
//! Makes a throwaway PostgreSQL 15 cluster (16 MiB segments) archiving through the lab's
//! `tidemark-archive`, loads it with `pgbench -i -s 70`, then takes three backups with each tool,
//! the order rotating each round: Tidemark (lz4) into a fresh repository every time, so nothing
//! is deduplicated; `pg_basebackup -Ft -Z client-lz4 -X none -c fast` into a fresh directory;
//! pgBackRest `backup --type=full` into a fresh repository. All three make the data durable
//! before they finish and checksum every file (Tidemark BLAKE3 chunk names plus PostgreSQL's CRC-32C
//! manifest, pg_basebackup the CRC-32C manifest, pgBackRest SHA-1). Reports per tool the median
//! wall time, the CPU time of the client processes and of the server's, the stored bytes,
//! and the ratios `tidemark / pg_basebackup` and `tidemark / pgbackrest` (below 1: Tidemark is
//! faster). Beside them, in the same rotation, Tidemark into a fresh encrypted repository
//! (`cipher = "aes-256-gcm"` with a key file, otherwise the same): the ratio encrypted /
//! unencrypted of wall time and of the client's CPU seconds (the target is 1.15). Then,
//! labelled apart, a second Tidemark backup of the unchanged database into the
//! same repository (everything deduplicated), and `cp -a` of the stopped data directory as a
//! floor. Prints a table, writes `target/bench-results/backup.json`.
//!
//! The cluster's `archive_command` pushes every segment into both Tidemark repositories (a
//! backup needs its WAL in its own stanza), so the server's CPU counts two pushes per segment
//! for every tool alike.
//!
//! `pg_basebackup -X none` asks the server to wait until the backup's last WAL segment is
//! archived (PostgreSQL checks once a second); Tidemark asks it not to (`WAIT false`) and looks
//! for the segment in its own repository every 200 ms; pgBackRest, whose own archiving is not
//! set up here, runs with `archive-check=n` and does not wait.
//!
//! Needs the PostgreSQL 15 server programs and pgBackRest; run as root it installs pgBackRest
//! with apt-get if missing. Run: `cargo bench --bench backup` (about a minute after the build on
//! 2 cores, 5 GiB free in /tmp); `TIDEMARK_BENCH_ROUNDS=5` for more rounds.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::cpu::{children_cpu, machine_cpu, server_cpu};
use common::{
    gib, in_rotation, pgbackrest_program, remove_if_present, run_timed, succeeded, sync_all,
    tree_bytes,
};
use testkit::Lab;
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::{ThrowawayCluster, give_to_owner, owner_command};

/// Timed rounds, unless `TIDEMARK_BENCH_ROUNDS` says otherwise; each runs every tool once.
const ROUNDS: usize = 3;

/// pgbench scale: 70 makes a database of about 1.05 GiB.
const SCALE: &str = "70";

/// The issue asks for a database of at least this size.
const MIN_DATABASE_BYTES: u64 = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Tidemark,
    PgBasebackup,
    PgBackRest,
    TidemarkEncrypted,
}

/// Tidemark first: the ratios are Tidemark's time over the others'.
const TOOLS: [Tool; 4] = [
    Tool::Tidemark,
    Tool::PgBasebackup,
    Tool::PgBackRest,
    Tool::TidemarkEncrypted,
];

/// The index of [`Tool::TidemarkEncrypted`] in [`TOOLS`].
const ENCRYPTED: usize = 3;

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::Tidemark => "tidemark backup (lz4)",
            Tool::PgBasebackup => "pg_basebackup -Ft lz4",
            Tool::PgBackRest => "pgbackrest (2 proc, lz4)",
            Tool::TidemarkEncrypted => "tidemark (lz4, encrypted)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Tool::Tidemark => "tidemark",
            Tool::PgBasebackup => "pg_basebackup",
            Tool::PgBackRest => "pgbackrest",
            Tool::TidemarkEncrypted => "tidemark_encrypted",
        }
    }
}

/// One timed run.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: Duration,
    /// User + system CPU of the command and every process it waited for (client side only:
    /// the server's walsender or backend is not in it).
    client_cpu_s: f64,
    /// CPU of the cluster's server processes meanwhile (walsender, backends, checkpointer,
    /// archiver and the `tidemark-archive` calls it makes).
    server_cpu_s: f64,
    /// CPU busy time of the whole machine meanwhile (all cores, kernel included, and anything
    /// else running on the machine: only a sanity check on a shared machine).
    machine_cpu_s: f64,
    /// Time the machine's cores spent idle waiting for I/O meanwhile.
    iowait_s: f64,
    /// Bytes of the result (apparent sizes of every file it wrote).
    stored: u64,
}

impl Sample {
    /// CPU the machine spent on anything but the measured client and server: kernel threads
    /// (writeback) and whatever else runs on the machine. Large values mean noisy times.
    fn rest_of_machine_cpu_s(&self) -> f64 {
        (self.machine_cpu_s - self.client_cpu_s - self.server_cpu_s).max(0.0)
    }
}

/// Runs `command` to completion, failing with its output unless it succeeds; returns the
/// sample (without `stored`) and its stdout. `postmaster` is the pid of the server whose CPU is
/// counted, if it runs.
fn time_command(
    mut command: Command,
    postmaster: Option<&str>,
) -> anyhow::Result<(Sample, String)> {
    let shown = format!("{command:?}");
    let server_before = postmaster.map(server_cpu).transpose()?;
    let cpu_before = children_cpu()?;
    let (busy_before, iowait_before) = machine_cpu()?;
    let (output, wall) = run_timed(&mut command)?;
    let (busy_after, iowait_after) = machine_cpu()?;
    let cpu_after = children_cpu()?;
    let server_cpu_s = match (postmaster, server_before) {
        (Some(pid), Some(before)) => {
            // Let the postmaster reap the walsender or backend that served the command.
            std::thread::sleep(Duration::from_millis(300));
            server_cpu(pid)? - before
        }
        _ => 0.0,
    };
    succeeded(&shown, &output)?;
    Ok((
        Sample {
            wall,
            client_cpu_s: cpu_after - cpu_before,
            server_cpu_s,
            machine_cpu_s: busy_after - busy_before,
            iowait_s: iowait_after - iowait_before,
            stored: 0,
        },
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

fn median_wall(samples: &[Sample]) -> f64 {
    common::median_by(samples, |s| s.wall.as_secs_f64())
}

/// Waits until PostgreSQL's archiver has nothing left to push (no `.ready` files), so that a
/// repository can be replaced without a push failing half way.
fn wait_for_idle_archiver(cluster: &ThrowawayCluster) -> anyhow::Result<()> {
    let status_dir = cluster.data_dir().join("pg_wal/archive_status");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pending = fs::read_dir(&status_dir)
            .with_context(|| format!("list {}", status_dir.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
            .count();
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{pending} WAL files still wait for archiving after 180 s; server log: {}",
                cluster.log_tail(10)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Everything the timed runs need.
struct Bench<'a> {
    lab: &'a Lab,
    cluster: &'a ThrowawayCluster,
    /// The server's pid, whose CPU (and its children's) is counted.
    postmaster: String,
    pgbackrest: PathBuf,
    pgbackrest_config: PathBuf,
    pgbackrest_repo: PathBuf,
    basebackup_dir: PathBuf,
    encrypted: EncryptedRepo,
}

/// The encrypted Tidemark repository: its configuration and directory.
struct EncryptedRepo {
    config: PathBuf,
    repo: PathBuf,
}

impl EncryptedRepo {
    /// A configuration like the lab's (lz4, the cluster as stanza `main`) for a repository
    /// `<lab>/encrypted-repo` encrypted with a fresh key file, both the cluster owner's, and the
    /// stanza created in it (so archiving into both repositories succeeds from now on).
    fn new(lab: &Lab, cluster: &ThrowawayCluster) -> anyhow::Result<EncryptedRepo> {
        let key_file = common::owner_key_file(lab, "repo.key")?;
        let repo = lab.tmp.path().join("encrypted-repo");
        let config = Self::config_path(lab);
        testkit::owner::write_owned_file(
            &config,
            &format!(
                "[repo]\npath = \"{}\"\ncompress = \"lz4\"\ncipher = \"aes-256-gcm\"\nkey_file = \"{}\"\n\n[stanza.main]\npgdata = \"{}\"\nconninfo = \"{}\"\n",
                repo.display(),
                key_file.display(),
                cluster.data_dir().display(),
                cluster.conninfo()
            ),
            0o600,
        )?;
        let mut command = owner_command(&lab.bin_dir.join("tidemark"), lab.tmp.path());
        command.arg("--config").arg(&config).arg("stanza-create");
        time_command(command, None).context("tidemark stanza-create (encrypted)")?;
        Ok(EncryptedRepo { config, repo })
    }

    fn config_path(lab: &Lab) -> PathBuf {
        lab.tmp.path().join("encrypted.toml")
    }

    /// `archive_command` pushing into this repository too, after the lab's.
    fn archive_command(lab: &Lab) -> String {
        format!(
            "{} && {} --config {} --stanza main %p",
            lab.archive_command(),
            lab.bin_dir.join("tidemark-archive").display(),
            Self::config_path(lab).display()
        )
    }
}

impl Bench<'_> {
    /// One `tidemark backup` with `config` into `repo`, timed.
    fn tidemark_backup(&self, config: &Path, repo: &Path) -> anyhow::Result<(Sample, String)> {
        let mut command = owner_command(&self.lab.bin_dir.join("tidemark"), self.lab.tmp.path());
        command
            .arg("--config")
            .arg(config)
            .arg("backup")
            .env_remove("TIDEMARK_CONFIG")
            .env_remove("TIDEMARK_STANZA");
        let (mut sample, stdout) = time_command(command, Some(&self.postmaster))?;
        sample.stored = tree_bytes(repo)?;
        Ok((sample, stdout.trim().to_owned()))
    }

    /// Empties `repo` once the archiver is idle and creates the stanza in it with `config`.
    fn fresh_tidemark_repo(&self, config: &Path, repo: &Path) -> anyhow::Result<()> {
        wait_for_idle_archiver(self.cluster)?;
        remove_if_present(repo)?;
        let mut command = owner_command(&self.lab.bin_dir.join("tidemark"), self.lab.tmp.path());
        command.arg("--config").arg(config).arg("stanza-create");
        time_command(command, None).context("tidemark stanza-create")?;
        sync_all()
    }

    fn pgbackrest(&self, args: &[&str]) -> Command {
        let mut command = owner_command(&self.pgbackrest, self.lab.tmp.path());
        command
            .arg(format!("--config={}", self.pgbackrest_config.display()))
            .arg(format!("--repo1-path={}", self.pgbackrest_repo.display()))
            .arg("--stanza=bench")
            .args(args);
        command
    }

    /// Sets up a fresh target for `tool` (untimed), then times one backup with it.
    fn run(&self, tool: Tool) -> anyhow::Result<Sample> {
        let sample = match tool {
            Tool::Tidemark => {
                let (config, repo) = (&self.lab.config_path, &self.lab.repo_path);
                self.fresh_tidemark_repo(config, repo)?;
                self.tidemark_backup(config, repo)?.0
            }
            Tool::TidemarkEncrypted => {
                let (config, repo) = (&self.encrypted.config, &self.encrypted.repo);
                self.fresh_tidemark_repo(config, repo)?;
                self.tidemark_backup(config, repo)?.0
            }
            Tool::PgBasebackup => {
                let target = self.basebackup_dir.join("backup");
                remove_if_present(&target)?;
                sync_all()?;
                let port = self.cluster.port().to_string();
                let mut command =
                    owner_command(&self.lab.pg.path("pg_basebackup"), self.lab.tmp.path());
                command
                    .arg("-D")
                    .arg(&target)
                    .args(["-Ft", "-Z", "client-lz4", "-X", "none", "-c", "fast", "-w"])
                    .arg("-h")
                    .arg(self.cluster.socket_dir())
                    .args(["-p", &port, "-U", "postgres"]);
                let (mut sample, _) = time_command(command, Some(&self.postmaster))?;
                sample.stored = tree_bytes(&target)?;
                sample
            }
            Tool::PgBackRest => {
                remove_if_present(&self.pgbackrest_repo)?;
                fs::create_dir(&self.pgbackrest_repo)?;
                give_to_owner(&self.pgbackrest_repo)?;
                time_command(self.pgbackrest(&["stanza-create"]), None)
                    .context("pgbackrest stanza-create")?;
                sync_all()?;
                let (mut sample, _) = time_command(
                    self.pgbackrest(&["--type=full", "backup"]),
                    Some(&self.postmaster),
                )?;
                sample.stored = tree_bytes(&self.pgbackrest_repo)?;
                sample
            }
        };
        Ok(sample)
    }
}

fn sample_json(s: &Sample) -> serde_json::Value {
    serde_json::json!({
        "wall_s": s.wall.as_secs_f64(),
        "client_cpu_s": s.client_cpu_s,
        "server_cpu_s": s.server_cpu_s,
        "machine_cpu_s": s.machine_cpu_s,
        "rest_of_machine_cpu_s": s.rest_of_machine_cpu_s(),
        "iowait_s": s.iowait_s,
        "stored_bytes": s.stored,
    })
}

fn print_row(label: &str, samples: &[Sample], database: u64) {
    let wall = median_wall(samples);
    let min = samples
        .iter()
        .map(|s| s.wall.as_secs_f64())
        .fold(f64::INFINITY, f64::min);
    let max = samples
        .iter()
        .map(|s| s.wall.as_secs_f64())
        .fold(0.0, f64::max);
    println!(
        "{:<26} {:>7.2} {:>13} {:>6.0} {:>12.1} {:>12.1} {:>10.1} {:>9.3}",
        label,
        wall,
        format!("{min:.2}-{max:.2}"),
        database as f64 / (1 << 20) as f64 / wall,
        common::median_by(samples, |s| s.client_cpu_s),
        common::median_by(samples, |s| s.server_cpu_s),
        common::median_by(samples, Sample::rest_of_machine_cpu_s),
        gib(common::median_by(samples, |s| s.stored as f64) as u64),
    );
}

fn main() -> anyhow::Result<()> {
    let bench_started = Instant::now();
    let rounds = common::rounds(ROUNDS);
    let pgbackrest = pgbackrest_program()?;
    let pgbackrest_version = common::pgbackrest_version(&pgbackrest);

    let lab = common::lab("tm-bbench-")?;
    let options = PrimaryOptions::default()
        .name("bench")
        .segment_mb(16)
        .repo_extra("compress = \"lz4\"")
        .archive_command(EncryptedRepo::archive_command(&lab))
        .setting("max_wal_size", "4GB");
    let mut cluster = archiving_primary(&lab, &options)?;
    let postmaster = common::cpu::postmaster_pid(cluster.data_dir())?;
    let encrypted = EncryptedRepo::new(&lab, &cluster)?;
    let (database, data_dir_bytes) = load_database(&cluster)?;
    let (pgbackrest_config, pgbackrest_dir) = write_pgbackrest_config(&lab, &cluster)?;
    let bench = Bench {
        lab: &lab,
        cluster: &cluster,
        postmaster,
        pgbackrest,
        pgbackrest_config,
        pgbackrest_repo: pgbackrest_dir.join("repo"),
        basebackup_dir: lab.tmp.subdir("basebackup")?,
        encrypted,
    };
    let samples = time_tools(&bench, rounds)?;
    let second = SecondBackup::time(&bench)?;
    cluster.stop()?;
    let results = Results {
        database,
        data_dir_bytes,
        rounds,
        samples,
        floors: time_copy_floors(&lab, &cluster, rounds)?,
        second,
    };
    results.print();
    results.write_json(&pgbackrest_version, bench_started)
}

/// Loads the pgbench database, checkpoints and archives; returns the database's size and
/// the data directory's, in bytes.
fn load_database(cluster: &ThrowawayCluster) -> anyhow::Result<(u64, u64)> {
    let load_started = Instant::now();
    cluster.run_pgbench(&["-i", "-q", "-s", SCALE])?;
    cluster.query("CHECKPOINT")?;
    testkit::switch_and_wait_for_archive(cluster)?;
    wait_for_idle_archiver(cluster)?;
    let database: u64 = cluster
        .query("SELECT pg_database_size('postgres')")?
        .parse()?;
    let data_dir_bytes = tree_bytes(cluster.data_dir())?;
    println!(
        "pgbench -i -s {SCALE}: database 'postgres' is {} bytes ({:.2} GiB), data directory {:.2} GiB, loaded in {:.0} s",
        database,
        gib(database),
        gib(data_dir_bytes),
        load_started.elapsed().as_secs_f64()
    );
    ensure!(
        database >= MIN_DATABASE_BYTES,
        "the database is only {database} bytes; the bench wants at least 1 GiB"
    );
    Ok((database, data_dir_bytes))
}

/// pgBackRest's own archiving is not set up (Tidemark's archive_command stays), so it must
/// not check the archive; its log file and lock go in the lab. Returns the configuration's
/// path and pgBackRest's directory.
fn write_pgbackrest_config(
    lab: &Lab,
    cluster: &ThrowawayCluster,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let pgbackrest_config = lab.tmp.path().join("pgbackrest.conf");
    let pgbackrest_dir = lab.tmp.subdir("pgbackrest")?;
    fs::write(
        &pgbackrest_config,
        common::pgbackrest_conf(
            "start-fast=y\narchive-check=n\nrepo1-retention-full=2\n",
            &pgbackrest_dir,
            cluster.data_dir(),
            cluster.socket_dir(),
        ),
    )?;
    give_to_owner(&pgbackrest_config)?;
    Ok((pgbackrest_config, pgbackrest_dir))
}

/// Full backups by each tool in rotation, by [`TOOLS`] index; prints each run.
fn time_tools(bench: &Bench, rounds: usize) -> anyhow::Result<Vec<Vec<Sample>>> {
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); TOOLS.len()];
    in_rotation(rounds, &TOOLS, |round, index, tool| {
        let sample = bench
            .run(tool)
            .with_context(|| format!("round {}: {}", round + 1, tool.label()))?;
        println!(
            "round {}: {:<26} {:>6.2} s  CPU client {:>4.1} s server {:>4.1} s machine {:>4.1} s  iowait {:>4.1} s  kept {:.3} GiB",
            round + 1,
            tool.label(),
            sample.wall.as_secs_f64(),
            sample.client_cpu_s,
            sample.server_cpu_s,
            sample.machine_cpu_s,
            sample.iowait_s,
            gib(sample.stored)
        );
        samples[index].push(sample);
        Ok(())
    })?;
    Ok(samples)
}

/// A second Tidemark backup of the unchanged database: its sample (`stored` is what it
/// added), its report line, and the bytes it added.
struct SecondBackup {
    sample: Sample,
    line: String,
    new_bytes: u64,
}

impl SecondBackup {
    /// The repository holds the last round's Tidemark backup: a second one of the unchanged
    /// database stores (almost) nothing new.
    fn time(bench: &Bench) -> anyhow::Result<SecondBackup> {
        wait_for_idle_archiver(bench.cluster)?;
        sync_all()?;
        let before = tree_bytes(&bench.lab.repo_path)?;
        let (mut sample, line) =
            bench.tidemark_backup(&bench.lab.config_path, &bench.lab.repo_path)?;
        let new_bytes = sample.stored - before;
        sample.stored = new_bytes;
        println!("second tidemark backup, unchanged database: {line}");
        Ok(SecondBackup {
            sample,
            line,
            new_bytes,
        })
    }
}

/// Floor: copying the stopped data directory, with and without making it durable. pg_wal is
/// left out, as the backups leave out its contents: it holds more than a GiB of old WAL.
fn time_copy_floors(
    lab: &Lab,
    cluster: &ThrowawayCluster,
    rounds: usize,
) -> anyhow::Result<Vec<(&'static str, Vec<Sample>)>> {
    let mut floors: Vec<(&str, Vec<Sample>)> = Vec::new();
    let copy = lab.tmp.path().join("copy");
    for (label, then) in [
        ("cp -a (stopped, no sync)", ""),
        ("cp -a + sync (stopped)", " && sync -f \"$1\""),
    ] {
        let script = format!(
            "mkdir \"$1\" && for f in \"$0\"/* ; do [ \"${{f##*/}}\" = pg_wal ] || cp -a \"$f\" \"$1\"/ || exit 1; done{then}"
        );
        let mut runs = Vec::new();
        for _ in 0..rounds {
            remove_if_present(&copy)?;
            sync_all()?;
            let mut command = Command::new("sh");
            command
                .args(["-c", &script])
                .arg(cluster.data_dir())
                .arg(&copy);
            let (mut sample, _) = time_command(command, None)?;
            sample.stored = tree_bytes(&copy)?;
            runs.push(sample);
        }
        floors.push((label, runs));
    }
    remove_if_present(&copy)?;
    Ok(floors)
}

/// What the bench measured.
struct Results {
    database: u64,
    data_dir_bytes: u64,
    rounds: usize,
    /// By [`TOOLS`] index.
    samples: Vec<Vec<Sample>>,
    floors: Vec<(&'static str, Vec<Sample>)>,
    second: SecondBackup,
}

impl Results {
    /// Tidemark's median wall time over `other`'s.
    fn ratio(&self, other: usize) -> f64 {
        median_wall(&self.samples[0]) / median_wall(&self.samples[other])
    }

    /// The same ratio within each round (the tools ran back to back), then its median.
    fn round_ratio(&self, other: usize) -> f64 {
        let samples = &self.samples;
        let mut ratios: Vec<f64> = (0..self.rounds)
            .map(|r| samples[0][r].wall.as_secs_f64() / samples[other][r].wall.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    }

    /// Encrypted over unencrypted Tidemark: median wall time, median of per-round wall ratios,
    /// and median client CPU seconds.
    fn encryption_ratios(&self) -> (f64, f64, f64) {
        let (plain, encrypted) = (&self.samples[0], &self.samples[ENCRYPTED]);
        let mut per_round: Vec<f64> = (0..self.rounds)
            .map(|r| encrypted[r].wall.as_secs_f64() / plain[r].wall.as_secs_f64())
            .collect();
        per_round.sort_by(f64::total_cmp);
        (
            median_wall(encrypted) / median_wall(plain),
            per_round[per_round.len() / 2],
            common::median_by(encrypted, |s| s.client_cpu_s)
                / common::median_by(plain, |s| s.client_cpu_s),
        )
    }

    fn print(&self) {
        let database = self.database;
        println!();
        println!(
            "full backup of a {:.2} GiB database ({} MiB data directory), {} runs each, {} cores; medians:",
            gib(database),
            self.data_dir_bytes >> 20,
            self.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "{:<26} {:>7} {:>13} {:>6} {:>12} {:>12} {:>10} {:>9}",
            "tool",
            "wall s",
            "min-max s",
            "MiB/s",
            "client CPU s",
            "server CPU s",
            "rest CPU s",
            "GiB kept"
        );
        for (tool, runs) in TOOLS.iter().zip(&self.samples) {
            print_row(tool.label(), runs, database);
        }
        for (label, runs) in &self.floors {
            print_row(label, runs, database);
        }
        println!(
            "{:<26} {:>7.2} (stored {} KiB new; everything else reused)",
            "tidemark 2nd, unchanged db",
            self.second.sample.wall.as_secs_f64(),
            self.second.new_bytes >> 10
        );
        println!(
            "ratio tidemark / pg_basebackup: {:.2} (median of per-round ratios {:.2})",
            self.ratio(1),
            self.round_ratio(1)
        );
        println!(
            "ratio tidemark / pgbackrest:    {:.2} (median of per-round ratios {:.2})",
            self.ratio(2),
            self.round_ratio(2)
        );
        let (wall, per_round, cpu) = self.encryption_ratios();
        println!(
            "ratio tidemark encrypted / unencrypted: {wall:.2} wall (median of per-round ratios {per_round:.2}; target <= 1.15), {cpu:.2} client CPU"
        );
    }

    /// Writes target/bench-results/backup.json.
    fn write_json(&self, pgbackrest_version: &str, bench_started: Instant) -> anyhow::Result<()> {
        let tools_json: Vec<serde_json::Value> = TOOLS
            .iter()
            .zip(&self.samples)
            .map(|(tool, runs)| {
                serde_json::json!({
                    "tool": tool.key(),
                    "label": tool.label(),
                    "median_wall_s": median_wall(runs),
                    "median_client_cpu_s": common::median_by(runs, |s| s.client_cpu_s),
                    "median_server_cpu_s": common::median_by(runs, |s| s.server_cpu_s),
                    "median_stored_bytes": common::median_by(runs, |s| s.stored as f64) as u64,
                    "runs": runs.iter().map(sample_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let floors_json: Vec<serde_json::Value> = self
            .floors
            .iter()
            .map(|(label, runs)| {
                serde_json::json!({
                    "label": label,
                    "median_wall_s": median_wall(runs),
                    "runs": runs.iter().map(sample_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let elapsed = bench_started.elapsed().as_secs_f64();
        let second = &self.second;
        let json = serde_json::json!({
            "database_bytes": self.database,
            "data_directory_bytes": self.data_dir_bytes,
            "pgbench_scale": SCALE.parse::<u32>()?,
            "rounds": self.rounds,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "pgbackrest_version": pgbackrest_version,
            "tools": tools_json,
            "ratios": {
                "tidemark_over_pg_basebackup": self.ratio(1),
                "tidemark_over_pgbackrest": self.ratio(2),
                "tidemark_over_pg_basebackup_per_round_median": self.round_ratio(1),
                "tidemark_over_pgbackrest_per_round_median": self.round_ratio(2),
                "tidemark_encrypted_over_tidemark": self.encryption_ratios().0,
                "tidemark_encrypted_over_tidemark_per_round_median": self.encryption_ratios().1,
                "tidemark_encrypted_over_tidemark_client_cpu": self.encryption_ratios().2,
            },
            "tidemark_second_backup_unchanged": {
                "wall_s": second.sample.wall.as_secs_f64(),
                "client_cpu_s": second.sample.client_cpu_s,
                "new_bytes": second.new_bytes,
                "line": second.line,
            },
            "floors": floors_json,
            "bench_seconds": elapsed,
        });
        let out = common::write_results("backup", &json)?;
        println!("wrote {} ({:.0} s in all)", out.display(), elapsed);
        Ok(())
    }
}
