//! The Azure Table source's speed on Azurite: `tidemark source backup` (default settings)
//! against a single-threaded paged scan of the same tables in the same run, and `tidemark
//! source restore --table T --as T2` into new tables, in entities per second.
//!
//! A fresh Azurite (testkit's: loopback, kernel-chosen ports, its own workspace) gets four
//! tables of different sizes, 100,000 entities in all over 996 partitions, written untimed in
//! entity group transactions (8 at once) by Tidemark's own client: audit-log-like entities of
//! 9 to 14 properties of every EDM type (String, Int32, Int64, Double, Boolean, DateTime, Guid,
//! and on one entity in 8 a 96- to 480-byte Binary), later entities carrying properties earlier
//! ones lack, keys in several scripts. The largest table holds half the entities.
//!
//! **Exports**, the order rotating by round: (a) `serial scan`: this process, the source's
//! own client, one query stream per table and the tables one after another (`$top=1000`,
//! following continuations), each entity parsed and written as its snapshot line into a sink:
//! what an export costs without the repository; (b) the release `tidemark source backup` with
//! `concurrency = 1` (one table at a time, one stream each) into a fresh local repository; (c)
//! the same with the default settings. Each backup's record must count every entity.
//!
//! **Restores**: the four tables of the last default snapshot, `tidemark source restore audit
//! --table T --as R<round>T` each (default mode insert into a new table; the default 8
//! transactions at once), one after another; a round is the four together. The restored
//! tables of the last round are read back and must equal the source's entity for entity
//! (properties and their types; Timestamp aside); each round's tables are deleted after it.
//!
//! Reported per run: median wall time, entities/s, CPU seconds of the client (this process's
//! own for the scan; the command's, from /proc/self/stat's cutime and cstime, for Tidemark)
//! and of Azurite's node process (utime + stime from /proc), the ratio of the default backup's
//! entities/s to the serial scan's, and the target (20,000 entities/s); of the default
//! backup also how long only its last table was still being scanned (from the record's scan
//! times: the part of the run that one stream per table leaves to a single stream). Prints a
//! table, writes `target/bench-results/azure_table.json`. Run: `cargo bench --bench
//! azure_table` (about 3 minutes on 2 cores once built); `TIDEMARK_BENCH_ROUNDS=5` for more
//! rounds. Needs Azurite (`.ci/fetch-azurite`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::azurite_tables::{KEY_SCRIPTS, account_client, base64_of, entities_by_key};
use common::cpu::{children_cpu, own_cpu, server_cpu};
use common::{in_rotation, remove_if_present, run_timed, succeeded, sync_all};
use testkit::servers::azurite::{ACCOUNT, ACCOUNT_KEY, AzuriteServer, start_azurite};

use tidemark::sources::azure_table::batch::{Batch, BatchOutcome, Batcher, WriteMode};
use tidemark::sources::azure_table::client::TableClient;
use tidemark::sources::azure_table::entity::{Entity, Property};

/// Timed rounds, unless `TIDEMARK_BENCH_ROUNDS` says otherwise.
const ROUNDS: usize = 3;

/// The contents' seed (logged with the results).
const SEED: u64 = 19;

/// The tables: name, entities, partitions.
const TABLES: [(&str, usize, usize); 4] = [
    ("AuditLog", 50_000, 500),
    ("Orders", 25_000, 250),
    ("Tenants", 15_000, 150),
    ("Devices", 10_000, 96),
];

/// The issue asks for at least this many entities, and this export speed.
const MIN_ENTITIES: usize = 100_000;
const TARGET_ENTITIES_PER_S: f64 = 20_000.0;

/// Transactions the fill sends at once.
const FILL_THREADS: usize = 8;

/// The configured sources: the default settings, and one table at a time.
const SOURCE: &str = "audit";
const SERIAL_SOURCE: &str = "audit1";

/// Partition keys' prefixes, in several scripts (one in six partitions each).
const SCRIPTS: [&str; 6] = KEY_SCRIPTS;

const ACTIONS: [&str; 8] = [
    "login", "logout", "read", "write", "delete", "grant", "revoke", "export",
];

/// Entity `n` (of partition `p`) of table `table`: an audit record of mixed EDM types.
fn entity(table: usize, p: usize, n: usize, rng: &mut fastrand::Rng) -> Entity {
    let partition_key = format!("{} {table}-{p:04}", SCRIPTS[p % SCRIPTS.len()]);
    let row_key = format!("{:010}-{}", 9_999_999_999 - n as u64 * 7919, rng.u32(..));
    let mut properties = BTreeMap::new();
    let mut add = |name: &str, property: Property| {
        properties.insert(name.to_owned(), property);
    };
    let action = ACTIONS[rng.usize(..ACTIONS.len())];
    add("Action", Property::String(action.to_owned()));
    add(
        "Actor",
        Property::String(format!("user{}@example.com", rng.u32(..5_000))),
    );
    let words = rng.usize(4..20);
    let message: Vec<&str> = (0..words)
        .map(|_| ACTIONS[rng.usize(..ACTIONS.len())])
        .collect();
    add("Message", Property::String(message.join(" ")));
    add(
        "Status",
        Property::Int32([200, 201, 204, 403, 404, 500][n % 6]),
    );
    add("Bytes", Property::Int64(rng.i64(..1 << 40)));
    add("LatencyMs", Property::Double(rng.f64() * 250.0));
    add("Success", Property::Boolean(n % 6 < 3));
    add(
        "At",
        Property::DateTime(format!(
            "2024-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
            n % 12 + 1,
            n % 28 + 1,
            rng.u32(..24),
            rng.u32(..60),
            rng.u32(..60),
            rng.u32(..10_000_000)
        )),
    );
    add(
        "RequestId",
        Property::Guid(format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            rng.u32(..),
            rng.u16(..),
            rng.u16(..0x1000),
            rng.u16(..0x1000),
            rng.u64(..1 << 48)
        )),
    );
    // Added later in the tables' lives: only the newer entities have them.
    if n % 10 >= 4 {
        add(
            "Region",
            Property::String(["eu", "us", "ap"][n % 3].to_owned()),
        );
        add("Retries", Property::Int32(rng.i32(0..4)));
    }
    if n % 10 >= 7 {
        add("Score", Property::Double(-rng.f64()));
        add("Reviewed", Property::Boolean(rng.bool()));
    }
    if n.is_multiple_of(8) {
        let bytes: Vec<u8> = (0..rng.usize(96..=480)).map(|_| rng.u8(..)).collect();
        add("Payload", Property::Binary(base64_of(&bytes)));
    }
    Entity {
        partition_key,
        row_key,
        timestamp: None,
        properties,
    }
}

/// Azurite's account, through Tidemark's own client.
fn client(endpoint: &str) -> anyhow::Result<TableClient> {
    account_client(endpoint, "bench", Duration::from_secs(120))
}

/// Table `index` of [`TABLES`], its entities in transactions of one partition each.
fn table_batches(index: usize, endpoint: &str) -> anyhow::Result<Vec<Batch>> {
    let (name, entities, partitions) = TABLES[index];
    let mut rng = fastrand::Rng::with_seed(SEED ^ ((index as u64) << 32));
    let mut batcher = Batcher::new(WriteMode::Insert, endpoint, name);
    let mut batches = Vec::new();
    for p in 0..partitions {
        let in_partition = entities / partitions + usize::from(p < entities % partitions);
        for i in 0..in_partition {
            let n = i * partitions + p;
            batches.extend(batcher.add(&entity(index, p, n, &mut rng))?);
        }
    }
    batches.extend(batcher.finish());
    Ok(batches)
}

/// Creates and fills the tables, [`FILL_THREADS`] transactions at once; returns the seconds.
fn fill(client: &TableClient) -> anyhow::Result<f64> {
    let started = Instant::now();
    let total: usize = TABLES.iter().map(|t| t.1).sum();
    ensure!(
        total >= MIN_ENTITIES,
        "the tables hold only {total} entities"
    );
    for (index, (name, _, _)) in TABLES.iter().enumerate() {
        client.block_on(client.create_table(name))?;
        let batches = table_batches(index, client.url())?;
        let per_thread = batches.len().div_ceil(FILL_THREADS).max(1);
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let sent: Vec<_> = batches
                .chunks(per_thread)
                .map(|group| {
                    scope.spawn(move || -> anyhow::Result<()> {
                        for batch in group {
                            let outcome = client.block_on(client.submit_batch(name, batch))?;
                            ensure!(outcome == BatchOutcome::Applied, "{outcome:?}");
                        }
                        Ok(())
                    })
                })
                .collect();
            for thread in sent {
                thread.join().expect("a fill thread does not panic")?;
            }
            Ok(())
        })?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The baseline: each table scanned by one query stream, one table after another, each entity
/// parsed and written as its snapshot line into a sink. Returns the entities read.
fn serial_scan(client: &TableClient) -> anyhow::Result<u64> {
    let mut entities = 0u64;
    let mut sink = std::io::sink();
    for (name, _, _) in TABLES {
        client.block_on(client.query_entities(name, None, None, |page| {
            for object in page {
                let entity = Entity::from_service(&object)?;
                serde_json::to_writer(&mut sink, &entity)?;
                sink.write_all(b"\n")?;
                entities += 1;
            }
            Ok(())
        }))?;
    }
    Ok(entities)
}

/// One timed run.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: Duration,
    /// CPU of the client: this process for the scan, the command for Tidemark.
    client_cpu_s: f64,
    /// CPU of Azurite's node process meanwhile.
    server_cpu_s: f64,
    entities: u64,
    /// For a backup: seconds at its end when only one table was still being scanned (the
    /// last scan's end less the one before it, from the record's scan times).
    one_stream_tail_s: f64,
}

impl Sample {
    fn entities_per_s(&self) -> f64 {
        self.entities as f64 / self.wall.as_secs_f64()
    }

    /// Several runs taken as one (the restores of a round's tables).
    fn sum(samples: &[Sample]) -> Sample {
        Sample {
            wall: samples.iter().map(|s| s.wall).sum(),
            client_cpu_s: samples.iter().map(|s| s.client_cpu_s).sum(),
            server_cpu_s: samples.iter().map(|s| s.server_cpu_s).sum(),
            entities: samples.iter().map(|s| s.entities).sum(),
            one_stream_tail_s: samples.iter().map(|s| s.one_stream_tail_s).sum(),
        }
    }
}

/// The exports timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Export {
    SerialScan,
    SerialBackup,
    Backup,
}

/// Azurite, its tables, and the configuration naming them.
struct Bench {
    client: TableClient,
    server_pid: String,
    /// The configurations of [`SOURCE`] and [`SERIAL_SOURCE`], and their repositories.
    config: PathBuf,
    serial_config: PathBuf,
    /// The repositories of [`SOURCE`] and [`SERIAL_SOURCE`].
    repo: PathBuf,
    serial_repo: PathBuf,
    entities: u64,
    fill_seconds: f64,
    _work: tempfile::TempDir,
    _server: AzuriteServer,
}

impl Bench {
    fn start() -> anyhow::Result<Bench> {
        let server = start_azurite();
        let client = client(&server.table_endpoint)?;
        println!(
            "filling {} tables on Azurite {}",
            TABLES.len(),
            server.table_endpoint
        );
        let fill_seconds = fill(&client)?;
        let entities = TABLES.iter().map(|t| t.1 as u64).sum();
        println!("{entities} entities put in {fill_seconds:.0} s");
        let work = work_dir()?;
        let repo = work.path().join("repo");
        let serial_repo = work.path().join("repo-serial");
        let (config, serial_config) =
            write_configs(work.path(), &repo, &serial_repo, &server.table_endpoint)?;
        Ok(Bench {
            client,
            server_pid: azurite_pid(&server)?,
            config,
            serial_config,
            repo,
            serial_repo,
            entities,
            fill_seconds,
            _work: work,
            _server: server,
        })
    }

    /// `tidemark` with the configuration of `source`, then `args`.
    fn tidemark(&self, source: &str, args: &[&str]) -> Command {
        let config = if source == SERIAL_SOURCE {
            &self.serial_config
        } else {
            &self.config
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        command
            .env_remove("TIDEMARK_CONFIG")
            .env_remove("AZURE_STORAGE_KEY")
            .arg("--config")
            .arg(config)
            .args(args);
        command
    }

    fn azurite_cpu(&self) -> anyhow::Result<f64> {
        server_cpu(&self.server_pid)
    }

    /// Runs `command` after a `sync`, failing with its output unless it succeeds: its sample
    /// (covering `entities`) and its standard output.
    fn time_command(
        &self,
        mut command: Command,
        entities: u64,
    ) -> anyhow::Result<(Sample, String)> {
        let shown = format!("{command:?}");
        sync_all()?;
        let client_before = children_cpu()?;
        let server_before = self.azurite_cpu()?;
        let (output, wall) = run_timed(&mut command)?;
        succeeded(&shown, &output)?;
        let sample = Sample {
            wall,
            client_cpu_s: children_cpu()? - client_before,
            server_cpu_s: self.azurite_cpu()? - server_before,
            entities,
            one_stream_tail_s: 0.0,
        };
        Ok((sample, String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    fn time_serial_scan(&self) -> anyhow::Result<Sample> {
        let client_before = own_cpu()?;
        let server_before = self.azurite_cpu()?;
        let started = Instant::now();
        let entities = serial_scan(&self.client)?;
        let wall = started.elapsed();
        ensure!(
            entities == self.entities,
            "the serial scan read {entities} entities, the tables hold {}",
            self.entities
        );
        Ok(Sample {
            wall,
            client_cpu_s: own_cpu()? - client_before,
            server_cpu_s: self.azurite_cpu()? - server_before,
            entities,
            one_stream_tail_s: 0.0,
        })
    }

    /// `tidemark source backup` of `source` into its fresh repository; checks the record
    /// counts every entity of every table.
    fn time_backup(&self, source: &str, repo: &Path) -> anyhow::Result<Sample> {
        remove_if_present(repo)?;
        let (mut sample, _) = self.time_command(
            self.tidemark(source, &["source", "backup", source]),
            self.entities,
        )?;
        let record = self.last_snapshot(source)?;
        sample.one_stream_tail_s = one_stream_tail(&record)?;
        let counted: BTreeMap<String, u64> = record["meta"]["tables"]
            .as_array()
            .context("the record's meta.tables")?
            .iter()
            .map(|t| {
                let name = t["name"].as_str().unwrap_or_default().to_owned();
                (name, t["entities"].as_u64().unwrap_or_default())
            })
            .collect();
        let expected: BTreeMap<String, u64> = TABLES
            .iter()
            .map(|&(name, entities, _)| (name.to_owned(), entities as u64))
            .collect();
        ensure!(
            counted == expected,
            "{source}'s snapshot counts {counted:?}, the tables hold {expected:?}"
        );
        Ok(sample)
    }

    fn time_export(&self, export: Export) -> anyhow::Result<Sample> {
        match export {
            Export::SerialScan => self.time_serial_scan(),
            Export::SerialBackup => self.time_backup(SERIAL_SOURCE, &self.serial_repo),
            Export::Backup => self.time_backup(SOURCE, &self.repo),
        }
    }

    /// The newest snapshot record of `source`.
    fn last_snapshot(&self, source: &str) -> anyhow::Result<serde_json::Value> {
        let output = self
            .tidemark(source, &["source", "list", source, "--output", "json"])
            .output()
            .context("run tidemark source list")?;
        succeeded("tidemark source list", &output)?;
        let list: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        list.as_array()
            .and_then(|a| a.last())
            .cloned()
            .context("source list shows no snapshot")
    }

    /// Restores every table of the last snapshot of [`SOURCE`] as `R<round><name>`, one after
    /// another; `check`: each restored table must equal its source table.
    fn time_restore_round(&self, round: usize, check: bool) -> anyhow::Result<Vec<Sample>> {
        let mut samples = Vec::new();
        for (name, entities, _) in TABLES {
            let into = format!("R{round}{name}");
            let args = ["source", "restore", SOURCE, "--table", name, "--as", &into];
            let (sample, said) =
                self.time_command(self.tidemark(SOURCE, &args), entities as u64)?;
            ensure!(
                said.starts_with(&format!("restored {entities} entities")),
                "restore of {name} said: {said}"
            );
            if check {
                let (restored, original) = (
                    entities_by_key(&self.client, &into)?,
                    entities_by_key(&self.client, name)?,
                );
                ensure!(
                    restored == original,
                    "table {into} holds {} entities that differ from {name}'s {}",
                    restored.len(),
                    original.len()
                );
            }
            ensure!(
                self.client.block_on(self.client.delete_table(&into))?,
                "table {into} was not there to delete"
            );
            samples.push(sample);
        }
        Ok(samples)
    }
}

/// Seconds between the last two ends of the record's table scans.
fn one_stream_tail(record: &serde_json::Value) -> anyhow::Result<f64> {
    let mut ends = Vec::new();
    for table in record["meta"]["tables"].as_array().context("meta.tables")? {
        let end = table["scan_finished"].as_str().context("scan_finished")?;
        ends.push(chrono::DateTime::parse_from_rfc3339(end)?);
    }
    ends.sort();
    Ok(match ends.as_slice() {
        [.., before, last] => (*last - *before).as_seconds_f64(),
        _ => 0.0,
    })
}

/// The pid of the node process serving `server`, found by its workspace among the machine's
/// processes (`azurite` is a node script: node runs with the script's arguments).
fn azurite_pid(server: &AzuriteServer) -> anyhow::Result<String> {
    testkit::processes::processes()
        .into_iter()
        .find(|(_, args)| testkit::processes::has_flag(args, "--location", server.workspace()))
        .map(|(pid, _)| pid.to_string())
        .context("find Azurite's process by its workspace")
}

fn work_dir() -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("tm-aztable-bench-");
    Ok(match std::env::var_os("TIDEMARK_BENCH_DIR") {
        Some(dir) => builder.tempdir_in(dir)?,
        None => builder.tempdir()?,
    })
}

/// Two configurations (mode 0600) naming the account's tables: [`SOURCE`] with the default
/// settings into `repo`, [`SERIAL_SOURCE`] with `concurrency = 1` into `serial_repo`. The
/// account's key is in a 0600 file beside them.
fn write_configs(
    dir: &Path,
    repo: &Path,
    serial_repo: &Path,
    endpoint: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key_file = dir.join("azure.key");
    fs::write(&key_file, format!("{ACCOUNT_KEY}\n"))?;
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600))?;
    let tables: Vec<String> = TABLES.iter().map(|t| format!("\"{}\"", t.0)).collect();
    let source = |name: &str, extra: &str| {
        format!(
            "[source.{name}]\ntype = \"azure-table\"\naccount = \"{ACCOUNT}\"\nendpoint = \"{endpoint}\"\ntables = [{}]\nkey_file = \"{}\"\n{extra}",
            tables.join(", "),
            key_file.display()
        )
    };
    let path = dir.join("tidemark.toml");
    let mut file = fs::File::create(&path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    write!(
        file,
        "[repo]\npath = \"{}\"\n\n{}\n",
        repo.display(),
        source(SOURCE, "")
    )?;
    // A second configuration for the serial source, which needs its own repository.
    let serial = dir.join("tidemark-serial.toml");
    fs::write(
        &serial,
        format!(
            "[repo]\npath = \"{}\"\n\n{}",
            serial_repo.display(),
            source(SERIAL_SOURCE, "concurrency = 1\n")
        ),
    )?;
    fs::set_permissions(&serial, fs::Permissions::from_mode(0o600))?;
    Ok((path, serial))
}

/// Everything measured.
#[derive(Default)]
struct Samples {
    serial_scan: Vec<Sample>,
    serial_backup: Vec<Sample>,
    backup: Vec<Sample>,
    /// Per round, the four tables' restores as one.
    restore: Vec<Sample>,
    /// Per table, every round's restore.
    restore_by_table: BTreeMap<&'static str, Vec<Sample>>,
}

fn main() -> anyhow::Result<()> {
    let bench_started = Instant::now();
    let rounds = common::rounds(ROUNDS);
    let load_before = common::load_average();
    let bench = Bench::start()?;
    let mut samples = Samples::default();
    let exports = [Export::SerialScan, Export::SerialBackup, Export::Backup];
    in_rotation(rounds, &exports, |round, _, export| {
        let sample = bench.time_export(export)?;
        println!(
            "  round {round}: {export:?} {:.2} s, {:.0} entities/s",
            sample.wall.as_secs_f64(),
            sample.entities_per_s()
        );
        match export {
            Export::SerialScan => samples.serial_scan.push(sample),
            Export::SerialBackup => samples.serial_backup.push(sample),
            Export::Backup => samples.backup.push(sample),
        }
        Ok(())
    })?;
    for round in 0..rounds {
        let tables = bench.time_restore_round(round, round + 1 == rounds)?;
        for (sample, (name, _, _)) in tables.iter().zip(TABLES) {
            samples
                .restore_by_table
                .entry(name)
                .or_default()
                .push(*sample);
        }
        let sample = Sample::sum(&tables);
        println!(
            "  round {round}: restore {:.2} s, {:.0} entities/s",
            sample.wall.as_secs_f64(),
            sample.entities_per_s()
        );
        samples.restore.push(sample);
    }
    let results = Results {
        rounds,
        samples,
        entities: bench.entities,
        fill_seconds: bench.fill_seconds,
        load: (load_before, common::load_average()),
    };
    drop(bench);
    results.print();
    results.write_json(bench_started)
}

struct Results {
    rounds: usize,
    samples: Samples,
    entities: u64,
    fill_seconds: f64,
    load: (String, String),
}

impl Results {
    /// The rows: label, JSON name, samples.
    fn rows(&self) -> Vec<(String, String, &[Sample])> {
        let s = &self.samples;
        let mut rows = vec![
            (
                "serial paged scan (1 stream, no repo)".to_owned(),
                "serial_scan".to_owned(),
                &s.serial_scan[..],
            ),
            (
                "tidemark backup, concurrency = 1".to_owned(),
                "tidemark_backup_concurrency_1".to_owned(),
                &s.serial_backup[..],
            ),
            (
                "tidemark backup, default".to_owned(),
                "tidemark_backup_default".to_owned(),
                &s.backup[..],
            ),
            (
                "tidemark restore, 4 tables".to_owned(),
                "tidemark_restore_all".to_owned(),
                &s.restore[..],
            ),
        ];
        for (name, runs) in &s.restore_by_table {
            rows.push((
                format!("  of it: restore {name}"),
                format!("tidemark_restore_{name}"),
                &runs[..],
            ));
        }
        rows
    }

    fn backup_over_scan(&self) -> f64 {
        median_rate(&self.samples.backup) / median_rate(&self.samples.serial_scan)
    }

    fn print(&self) {
        println!();
        println!(
            "Azurite, {} tables, {} entities; medians of {} rounds, {} cores; load average {} before, {} after",
            TABLES.len(),
            self.entities,
            self.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.load.0,
            self.load.1
        );
        println!(
            "{:<40} {:>8} {:>13} {:>11} {:>12} {:>14}",
            "run", "wall s", "min-max s", "entities/s", "client CPU s", "Azurite CPU s"
        );
        for (label, _, runs) in self.rows() {
            let walls: Vec<f64> = runs.iter().map(|s| s.wall.as_secs_f64()).collect();
            let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
            let max = walls.iter().copied().fold(0.0, f64::max);
            println!(
                "{:<40} {:>8.2} {:>13} {:>11.0} {:>12.2} {:>14.2}",
                label,
                common::median(&walls),
                format!("{min:.2}-{max:.2}"),
                median_rate(runs),
                common::median_by(runs, |s| s.client_cpu_s),
                common::median_by(runs, |s| s.server_cpu_s),
            );
        }
        println!(
            "default backup: only one table still scanned in its last {:.2} s (median)",
            common::median_by(&self.samples.backup, |s| s.one_stream_tail_s),
        );
        let backup = median_rate(&self.samples.backup);
        println!(
            "default backup / serial scan, entities/s: {:.2}; backup {backup:.0} entities/s (target >= {TARGET_ENTITIES_PER_S}): {}",
            self.backup_over_scan(),
            if backup >= TARGET_ENTITIES_PER_S {
                "met"
            } else {
                "MISSED"
            }
        );
    }

    fn write_json(&self, bench_started: Instant) -> anyhow::Result<()> {
        let runs: serde_json::Map<String, serde_json::Value> = self
            .rows()
            .into_iter()
            .map(|(label, name, runs)| (name, runs_json(&label, runs)))
            .collect();
        let tables: Vec<serde_json::Value> = TABLES
            .iter()
            .map(|&(name, entities, partitions)| {
                serde_json::json!({"name": name, "entities": entities, "partitions": partitions})
            })
            .collect();
        let backup = median_rate(&self.samples.backup);
        let elapsed = bench_started.elapsed().as_secs_f64();
        let json = serde_json::json!({
            "seed": SEED,
            "rounds": self.rounds,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "tables": tables,
            "entities": self.entities,
            "fill_seconds": self.fill_seconds,
            "load_average_before": self.load.0,
            "load_average_after": self.load.1,
            "runs": runs,
            "backup_over_serial_scan_entities_per_s": self.backup_over_scan(),
            "target_entities_per_s": TARGET_ENTITIES_PER_S,
            "target_met": backup >= TARGET_ENTITIES_PER_S,
            "bench_seconds": elapsed,
        });
        let out = common::write_results("azure_table", &json)?;
        println!("wrote {} ({elapsed:.0} s in all)", out.display());
        Ok(())
    }
}

fn median_rate(samples: &[Sample]) -> f64 {
    common::median_by(samples, Sample::entities_per_s)
}

fn runs_json(label: &str, samples: &[Sample]) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            serde_json::json!({
                "wall_s": s.wall.as_secs_f64(),
                "entities": s.entities,
                "entities_per_s": s.entities_per_s(),
                "client_cpu_s": s.client_cpu_s,
                "azurite_cpu_s": s.server_cpu_s,
                "one_stream_tail_s": s.one_stream_tail_s,
            })
        })
        .collect();
    serde_json::json!({
        "label": label,
        "median_wall_s": common::median_by(samples, |s| s.wall.as_secs_f64()),
        "median_entities_per_s": median_rate(samples),
        "median_client_cpu_s": common::median_by(samples, |s| s.client_cpu_s),
        "median_azurite_cpu_s": common::median_by(samples, |s| s.server_cpu_s),
        "runs": runs,
    })
}
