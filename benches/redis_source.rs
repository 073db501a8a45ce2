//! The Redis source's speed: `tidemark source backup` against `redis-cli --rdb` on the same
//! server in the same run, and `tidemark source restore --into` against a plain `REPLICAOF` full
//! sync from a real primary holding the same data.
//!
//! Starts a throwaway `redis-server` (testkit's: loopback, persistence off) and fills db 0 with
//! `testkit::redis_workload::fill_random` until at least 1 GiB of values is in it: strings of
//! 100 B to 16 KiB and hashes, lists, sets and sorted sets of 20 elements, every value random
//! letters and digits (LZF in the RDB barely shrinks them; zstd's entropy coding takes about a
//! quarter off). The table reports the RDB's size and what Tidemark stored of it.
//!
//! **Snapshots**, for each transfer form (`repl-diskless-sync yes`, the `$EOF:` form, and `no`,
//! the `$<len>` form after a BGSAVE to the server's directory; `repl-diskless-sync-delay 0`):
//! each round runs `redis-cli --rdb FILE` and a Tidemark pair, the order alternating by round.
//! `redis-cli --rdb /dev/null` fails on Redis 7.0 in the diskless form (it truncates the file to
//! drop the EOF mark, and /dev/null cannot be truncated), so FILE is on /dev/shm, a tmpfs, and
//! removed after each run: the nearest to a sink that costs nothing. The Tidemark pair is the
//! release `tidemark source backup` into a fresh local repository (everything new: chunked,
//! zstd level 1, fsynced) and then a second one of the unchanged server into the same repository
//! (everything deduplicated). Reported per tool: median wall time, MB/s (10^6 bytes of RDB per
//! second), CPU seconds of the command (the child's rusage, from /proc/self/stat's cutime and
//! cstime) and of the server (redis-server and the fork it reaped), in the disk form the part
//! of the run until the server's log says its BGSAVE ended (the rest is the file's transfer),
//! and Tidemark's MB/s over `redis-cli`'s (the target: at least 0.90).
//!
//! **Restores** into a second, empty, running server: `REPLICAOF` the first server (diskless,
//! delay 0), timed from the command until the target's INFO says `master_link_status:up` and
//! `loading:0` (polled every 20 ms), then `REPLICAOF NO ONE`; and `tidemark source restore
//! --into` the target with the last snapshot taken above, timed for the command's whole run
//! (which ends after it has made the target a primary again). The target is flushed, untimed,
//! before each run and its key count checked after. The ratio is Tidemark's median time over
//! `REPLICAOF`'s (the target: at most 1.5).
//!
//! Prints a table, writes `target/bench-results/redis_source.json`. Run: `cargo bench --bench
//! redis_source` (about 7 minutes on 2 cores; 4 GiB free memory, 3 GiB free in /tmp or
//! `TIDEMARK_BENCH_DIR`); `TIDEMARK_BENCH_ROUNDS=5` for more rounds, `TIDEMARK_BENCH_FORMS=diskless`
//! for one transfer form.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::cpu::{children_cpu, machine_cpu, server_cpu};
use common::{in_rotation, median, remove_if_present, run_timed, succeeded, sync_all};
use testkit::{RedisOptions, RedisServer};

/// Timed rounds, unless `TIDEMARK_BENCH_ROUNDS` says otherwise.
const ROUNDS: usize = 3;

/// Bytes of values `fill_random` writes: the issue asks for at least 1 GiB.
const DATASET_BYTES: u64 = 1 << 30;

/// The dataset's seed (logged with the results).
const SEED: u64 = 17;

/// The source's name in the configuration.
const SOURCE: &str = "cache";

/// The targets.
const SNAPSHOT_TARGET: f64 = 0.90;
const RESTORE_TARGET: f64 = 1.5;

/// How often the target's INFO is read while a `REPLICAOF` sync runs.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// How long a `REPLICAOF` sync of the dataset may take before the bench gives up.
const SYNC_LIMIT: Duration = Duration::from_secs(600);

/// The two RDB transfer forms a primary offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Diskless,
    Disk,
}

impl Form {
    fn key(self) -> &'static str {
        match self {
            Form::Diskless => "diskless",
            Form::Disk => "disk",
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Form::Diskless => "yes",
            Form::Disk => "no",
        }
    }
}

/// What one snapshot round runs: `redis-cli --rdb`, or Tidemark's first and second snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SnapshotTool {
    RedisCli,
    TidemarkPair,
}

/// One timed run.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    wall: Duration,
    /// User + system CPU of the command (and whatever it waited for).
    client_cpu_s: f64,
    /// CPU of the server(s) involved meanwhile, their reaped forks included.
    server_cpu_s: f64,
    /// CPU of the whole machine meanwhile, less the two above: writeback and other work.
    rest_cpu_s: f64,
    /// Bytes of RDB moved.
    bytes: u64,
    /// Tidemark: stored bytes the snapshot added to the repository.
    new_bytes: u64,
    /// The disk form: seconds from the start until the server's log says its BGSAVE ended,
    /// after which the rest of the run is the transfer of the file.
    bgsave_s: Option<f64>,
}

impl Sample {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall.as_secs_f64()
    }
}

/// CPU counters read before a run.
struct CpuBefore {
    client: f64,
    servers: f64,
    machine: f64,
}

fn cpu_before(servers: &[u32]) -> anyhow::Result<CpuBefore> {
    Ok(CpuBefore {
        client: children_cpu()?,
        servers: servers_cpu(servers)?,
        machine: machine_cpu()?.0,
    })
}

fn servers_cpu(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|pid| server_cpu(&pid.to_string())).sum()
}

/// A sample of `wall` from the CPU counters now and `before`; waits a moment first so that a
/// server reaps the fork that served the run (Redis does so in its 100 ms cron).
fn sample_since(before: &CpuBefore, servers: &[u32], wall: Duration) -> anyhow::Result<Sample> {
    std::thread::sleep(Duration::from_millis(300));
    let client_cpu_s = children_cpu()? - before.client;
    let server_cpu_s = servers_cpu(servers)? - before.servers;
    let machine = machine_cpu()?.0 - before.machine;
    Ok(Sample {
        wall,
        client_cpu_s,
        server_cpu_s,
        rest_cpu_s: (machine - client_cpu_s - server_cpu_s).max(0.0),
        bytes: 0,
        new_bytes: 0,
        bgsave_s: None,
    })
}

/// Runs `command` to completion, failing with its output unless it succeeds; returns its
/// sample (without bytes) and stdout.
fn time_command(mut command: Command, servers: &[u32]) -> anyhow::Result<(Sample, String)> {
    let shown = format!("{command:?}");
    let before = cpu_before(servers)?;
    let (output, wall) = run_timed(&mut command)?;
    succeeded(&shown, &output)?;
    let sample = sample_since(&before, servers, wall)?;
    Ok((sample, String::from_utf8_lossy(&output.stdout).into_owned()))
}

/// The bench's files: a configuration naming the source, the repository, the RDB file.
struct Bench {
    source: RedisServer,
    config: PathBuf,
    repo: PathBuf,
    rdb_file: PathBuf,
}

impl Bench {
    fn tidemark(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        command
            .env_remove("REDISCLI_AUTH")
            .env_remove("TIDEMARK_CONFIG")
            .arg("--config")
            .arg(&self.config)
            .args(args);
        command
    }

    /// The newest snapshot record of the source.
    fn last_snapshot(&self) -> anyhow::Result<serde_json::Value> {
        let (_, stdout) = time_command(
            self.tidemark(&["source", "list", SOURCE, "--output", "json"]),
            &[],
        )?;
        let list: serde_json::Value = serde_json::from_str(&stdout)
            .with_context(|| format!("source list --output json: {stdout}"))?;
        list.as_array()
            .and_then(|a| a.last())
            .cloned()
            .context("source list shows no snapshot")
    }

    fn set_form(&self, form: Form) -> anyhow::Result<()> {
        let mut conn = self.source.client();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync")
            .arg(form.setting())
            .arg("repl-diskless-sync-delay")
            .arg(0)
            .query::<()>(&mut conn)
            .context("CONFIG SET repl-diskless-sync")
    }

    fn redis_cli(&self) -> anyhow::Result<Sample> {
        let _ = fs::remove_file(&self.rdb_file);
        sync_all()?;
        let mut command = Command::new("redis-cli");
        command
            .args(["-h", "127.0.0.1", "-p", &self.source.port.to_string()])
            .arg("--rdb")
            .arg(&self.rdb_file);
        let mark = LogMark::now(&self.source);
        let (mut sample, _) = time_command(command, &[self.source.pid()])?;
        sample.bgsave_s = mark.bgsave_seconds(&self.source);
        sample.bytes = fs::metadata(&self.rdb_file)
            .with_context(|| format!("inspect {}", self.rdb_file.display()))?
            .len();
        fs::remove_file(&self.rdb_file)?;
        Ok(sample)
    }

    /// One `tidemark source backup`, timed, with the record's sizes.
    fn tidemark_backup(&self) -> anyhow::Result<Sample> {
        sync_all()?;
        let mark = LogMark::now(&self.source);
        let (mut sample, _) = time_command(
            self.tidemark(&["source", "backup", SOURCE]),
            &[self.source.pid()],
        )?;
        sample.bgsave_s = mark.bgsave_seconds(&self.source);
        let record = self.last_snapshot()?;
        sample.bytes = record["sizes"]["raw"].as_u64().context("sizes.raw")?;
        sample.new_bytes = record["sizes"]["new"].as_u64().context("sizes.new")?;
        Ok(sample)
    }

    /// The first snapshot into an empty repository, then a second of the unchanged server.
    fn tidemark_pair(&self) -> anyhow::Result<(Sample, Sample, u64)> {
        remove_if_present(&self.repo)?;
        let first = self.tidemark_backup()?;
        let stored = self.last_snapshot()?["sizes"]["stored"]
            .as_u64()
            .context("sizes.stored")?;
        let second = self.tidemark_backup()?;
        Ok((first, second, stored))
    }
}

/// Where a server's log stood when a run started, to find what the server logged during it.
struct LogMark {
    offset: usize,
    started: chrono::DateTime<chrono::Local>,
}

impl LogMark {
    fn now(server: &RedisServer) -> LogMark {
        LogMark {
            offset: server.log().len(),
            started: chrono::Local::now(),
        }
    }

    /// Seconds from the mark until the server logged the end of a BGSAVE, if it did.
    fn bgsave_seconds(&self, server: &RedisServer) -> Option<f64> {
        let log = server.log();
        let line = log
            .get(self.offset..)?
            .lines()
            .find(|line| line.ends_with("Background saving terminated with success"))?;
        let ended = log_time(line)?;
        Some((ended - self.started).as_seconds_f64())
    }
}

/// The time of a Redis log line, `PID:R 06 Dec 2026 20:26:06.597 * message`, which Redis
/// writes in local time.
fn log_time(line: &str) -> Option<chrono::DateTime<chrono::Local>> {
    use chrono::TimeZone;
    let (_, rest) = line.split_once(' ')?;
    let stamp: Vec<&str> = rest.split(' ').take(4).collect();
    let naive =
        chrono::NaiveDateTime::parse_from_str(&stamp.join(" "), "%d %b %Y %H:%M:%S%.3f").ok()?;
    chrono::Local.from_local_datetime(&naive).single()
}

/// The snapshot samples of one transfer form.
#[derive(Default)]
struct FormSamples {
    redis_cli: Vec<Sample>,
    first: Vec<Sample>,
    second: Vec<Sample>,
    /// Stored bytes of a first snapshot (compressed chunks).
    stored: u64,
}

impl FormSamples {
    /// Tidemark's first snapshot's median MB/s over `redis-cli`'s.
    fn ratio(&self) -> f64 {
        common::median_by(&self.first, Sample::mb_per_s)
            / common::median_by(&self.redis_cli, Sample::mb_per_s)
    }
}

fn time_snapshots(bench: &Bench, form: Form, rounds: usize) -> anyhow::Result<FormSamples> {
    bench.set_form(form)?;
    let mut samples = FormSamples::default();
    let tools = [SnapshotTool::RedisCli, SnapshotTool::TidemarkPair];
    in_rotation(rounds, &tools, |round, _, tool| {
        match tool {
            SnapshotTool::RedisCli => {
                let sample = bench.redis_cli()?;
                println!(
                    "  {} round {round}: redis-cli --rdb {:.2} s",
                    form.key(),
                    sample.wall.as_secs_f64()
                );
                samples.redis_cli.push(sample);
            }
            SnapshotTool::TidemarkPair => {
                let (first, second, stored) = bench.tidemark_pair()?;
                println!(
                    "  {} round {round}: tidemark first {:.2} s, second {:.2} s",
                    form.key(),
                    first.wall.as_secs_f64(),
                    second.wall.as_secs_f64()
                );
                samples.first.push(first);
                samples.second.push(second);
                samples.stored = stored;
            }
        }
        Ok(())
    })?;
    Ok(samples)
}

/// What a server's INFO says, field by field.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

fn info(conn: &mut redis::Connection) -> anyhow::Result<String> {
    redis::cmd("INFO").query(conn).context("INFO")
}

fn dbsize(server: &RedisServer) -> anyhow::Result<u64> {
    redis::cmd("DBSIZE")
        .query(&mut server.client())
        .context("DBSIZE")
}

fn flush(server: &RedisServer) -> anyhow::Result<()> {
    redis::cmd("FLUSHALL")
        .arg("SYNC")
        .query::<()>(&mut server.client())
        .context("FLUSHALL")
}

/// `REPLICAOF` the source on `target`, timed until the full sync has loaded; then `REPLICAOF
/// NO ONE`.
fn replicaof(bench: &Bench, target: &RedisServer) -> anyhow::Result<Sample> {
    let mut conn = target.client();
    let servers = [bench.source.pid(), target.pid()];
    let before = cpu_before(&servers)?;
    let started = Instant::now();
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(bench.source.port)
        .query::<()>(&mut conn)
        .context("REPLICAOF")?;
    loop {
        let text = info(&mut conn)?;
        let up = info_field(&text, "master_link_status").as_deref() == Some("up");
        let loaded = info_field(&text, "loading").as_deref() == Some("0");
        if up && loaded {
            break;
        }
        if started.elapsed() > SYNC_LIMIT {
            bail!("REPLICAOF did not finish its full sync within {SYNC_LIMIT:?}");
        }
        std::thread::sleep(POLL_EVERY);
    }
    let wall = started.elapsed();
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query::<()>(&mut conn)
        .context("REPLICAOF NO ONE")?;
    sample_since(&before, &servers, wall)
}

fn tidemark_into(bench: &Bench, target: &RedisServer) -> anyhow::Result<Sample> {
    let url = target.url();
    let (sample, _) = time_command(
        bench.tidemark(&["source", "restore", SOURCE, "--into", &url, "--flush"]),
        &[target.pid()],
    )?;
    let role = info_field(&info(&mut target.client())?, "role");
    ensure!(
        role.as_deref() == Some("master"),
        "after tidemark source restore --into, the target's role is {role:?}"
    );
    Ok(sample)
}

/// The restore samples: `REPLICAOF` and Tidemark `--into`, in rotation.
struct RestoreSamples {
    replicaof: Vec<Sample>,
    tidemark: Vec<Sample>,
}

impl RestoreSamples {
    fn ratio(&self) -> f64 {
        median_wall(&self.tidemark) / median_wall(&self.replicaof)
    }
}

#[derive(Clone, Copy, Debug)]
enum RestoreTool {
    Replicaof,
    Tidemark,
}

fn time_restores(bench: &Bench, rounds: usize, keys: u64) -> anyhow::Result<RestoreSamples> {
    bench.set_form(Form::Diskless)?;
    let target = RedisServer::start(&RedisOptions::default());
    let mut samples = RestoreSamples {
        replicaof: Vec::new(),
        tidemark: Vec::new(),
    };
    let tools = [RestoreTool::Replicaof, RestoreTool::Tidemark];
    in_rotation(rounds, &tools, |round, _, tool| {
        flush(&target)?;
        sync_all()?;
        let mut sample = match tool {
            RestoreTool::Replicaof => replicaof(bench, &target)?,
            RestoreTool::Tidemark => tidemark_into(bench, &target)?,
        };
        let loaded = dbsize(&target)?;
        ensure!(
            loaded == keys,
            "{tool:?} left {loaded} keys in the target, the source holds {keys}"
        );
        sample.bytes = bench.last_snapshot()?["sizes"]["raw"]
            .as_u64()
            .context("sizes.raw")?;
        println!(
            "  restore round {round}: {tool:?} {:.2} s",
            sample.wall.as_secs_f64()
        );
        match tool {
            RestoreTool::Replicaof => samples.replicaof.push(sample),
            RestoreTool::Tidemark => samples.tidemark.push(sample),
        }
        Ok(())
    })?;
    Ok(samples)
}

fn median_wall(samples: &[Sample]) -> f64 {
    common::median_by(samples, |s| s.wall.as_secs_f64())
}

/// The dataset as the source server holds it.
struct Dataset {
    keys: u64,
    used_memory: u64,
    fill_seconds: f64,
}

fn fill(server: &RedisServer) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    testkit::redis_workload::fill_random(&mut server.client(), DATASET_BYTES, SEED);
    let fill_seconds = started.elapsed().as_secs_f64();
    let text = info(&mut server.client())?;
    Ok(Dataset {
        keys: dbsize(server)?,
        used_memory: info_field(&text, "used_memory")
            .and_then(|v| v.parse().ok())
            .context("INFO used_memory")?,
        fill_seconds,
    })
}

fn sample_json(s: &Sample) -> serde_json::Value {
    serde_json::json!({
        "wall_s": s.wall.as_secs_f64(),
        "mb_per_s": s.mb_per_s(),
        "client_cpu_s": s.client_cpu_s,
        "server_cpu_s": s.server_cpu_s,
        "rest_of_machine_cpu_s": s.rest_cpu_s,
        "bytes": s.bytes,
        "new_bytes": s.new_bytes,
        "bgsave_s": s.bgsave_s,
    })
}

fn tool_json(label: &str, samples: &[Sample]) -> serde_json::Value {
    serde_json::json!({
        "label": label,
        "median_wall_s": median_wall(samples),
        "median_mb_per_s": common::median_by(samples, Sample::mb_per_s),
        "median_client_cpu_s": common::median_by(samples, |s| s.client_cpu_s),
        "median_server_cpu_s": common::median_by(samples, |s| s.server_cpu_s),
        "median_rest_of_machine_cpu_s": common::median_by(samples, |s| s.rest_cpu_s),
        "median_bgsave_s": median_bgsave(samples),
        "runs": samples.iter().map(sample_json).collect::<Vec<_>>(),
    })
}

/// The median BGSAVE part of runs in the disk form; `None` for the others.
fn median_bgsave(samples: &[Sample]) -> Option<f64> {
    let parts: Option<Vec<f64>> = samples.iter().map(|s| s.bgsave_s).collect();
    parts.filter(|p| !p.is_empty()).map(|p| median(&p))
}

fn print_row(label: &str, samples: &[Sample]) {
    let walls: Vec<f64> = samples.iter().map(|s| s.wall.as_secs_f64()).collect();
    let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
    let max = walls.iter().copied().fold(0.0, f64::max);
    let bgsave = median_bgsave(samples).map_or("-".to_owned(), |s| format!("{s:.2}"));
    println!(
        "{:<34} {:>7.2} {:>13} {:>7.0} {:>12.2} {:>12.2} {:>10.2} {:>9}",
        label,
        median_wall(samples),
        format!("{min:.2}-{max:.2}"),
        common::median_by(samples, Sample::mb_per_s),
        common::median_by(samples, |s| s.client_cpu_s),
        common::median_by(samples, |s| s.server_cpu_s),
        common::median_by(samples, |s| s.rest_cpu_s),
        bgsave,
    );
}

fn print_header() {
    println!(
        "{:<34} {:>7} {:>13} {:>7} {:>12} {:>12} {:>10} {:>9}",
        "run",
        "wall s",
        "min-max s",
        "MB/s",
        "client CPU s",
        "server CPU s",
        "rest CPU s",
        "BGSAVE s"
    );
}

fn main() -> anyhow::Result<()> {
    let bench_started = Instant::now();
    let rounds = common::rounds(ROUNDS);
    let load_before = common::load_average();
    let work = match std::env::var_os("TIDEMARK_BENCH_DIR") {
        Some(dir) => tempfile::Builder::new()
            .prefix("tm-redis-bench-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new()
            .prefix("tm-redis-bench-")
            .tempdir()?,
    };
    let shm = tempfile::Builder::new()
        .prefix("tm-redis-bench-")
        .tempdir_in("/dev/shm")
        .context("make a directory on /dev/shm for redis-cli's RDB file")?;
    let source = RedisServer::start(&RedisOptions::default());
    println!(
        "filling redis-server {} with {} MiB of values (seed {SEED})",
        source.url(),
        DATASET_BYTES >> 20
    );
    let dataset = fill(&source)?;
    let config = work.path().join("tidemark.toml");
    let repo = work.path().join("repo");
    fs::write(
        &config,
        format!(
            "[repo]\npath = \"{}\"\n\n[source.{SOURCE}]\ntype = \"redis\"\nurl = \"{}\"\n",
            repo.display(),
            source.url()
        ),
    )?;
    let bench = Bench {
        source,
        config,
        repo,
        rdb_file: shm.path().join("dump.rdb"),
    };
    let mut forms = Vec::new();
    for form in common::chosen_from_env(
        "TIDEMARK_BENCH_FORMS",
        "form",
        &[Form::Diskless, Form::Disk],
        |c| c.key(),
    )? {
        forms.push((form, time_snapshots(&bench, form, rounds)?));
    }
    let restores = time_restores(&bench, rounds, dataset.keys)?;
    let results = Results {
        rounds,
        dataset,
        forms,
        restores,
        load: (load_before, common::load_average()),
        redis_version: redis_version(&bench.source)?,
    };
    results.print();
    results.write_json(bench_started)
}

fn redis_version(server: &RedisServer) -> anyhow::Result<String> {
    info_field(&info(&mut server.client())?, "redis_version").context("INFO redis_version")
}

struct Results {
    rounds: usize,
    dataset: Dataset,
    forms: Vec<(Form, FormSamples)>,
    restores: RestoreSamples,
    /// Load averages before and after.
    load: (String, String),
    redis_version: String,
}

impl Results {
    fn rdb_bytes(&self) -> u64 {
        self.forms[0].1.redis_cli[0].bytes
    }

    fn print(&self) {
        let rdb = self.rdb_bytes();
        let stored = self.forms[0].1.stored;
        println!();
        println!(
            "Redis {}: {} keys (strings, hashes, lists, sets, sorted sets of random text), used_memory {:.2} GiB, RDB {:.2} GiB; tidemark stores it in {:.2} GiB ({:.0}%)",
            self.redis_version,
            self.dataset.keys,
            common::gib(self.dataset.used_memory),
            common::gib(rdb),
            common::gib(stored),
            100.0 * stored as f64 / rdb as f64
        );
        println!(
            "medians of {} rounds, {} cores, load average {} before and {} after",
            self.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.load.0,
            self.load.1
        );
        print_header();
        for (form, samples) in &self.forms {
            let f = form.key();
            print_row(&format!("redis-cli --rdb ({f})"), &samples.redis_cli);
            print_row(&format!("tidemark backup, first ({f})"), &samples.first);
            print_row(&format!("tidemark backup, second ({f})"), &samples.second);
        }
        print_row("REPLICAOF full sync (diskless)", &self.restores.replicaof);
        print_row("tidemark restore --into", &self.restores.tidemark);
        for (form, samples) in &self.forms {
            println!(
                "snapshot ({}): tidemark / redis-cli MB/s = {:.2} (target >= {SNAPSHOT_TARGET}); second snapshot stored {} KiB new",
                form.key(),
                samples.ratio(),
                common::median_by(&samples.second, |s| s.new_bytes as f64) as u64 >> 10
            );
        }
        println!(
            "restore: tidemark --into / REPLICAOF time = {:.2} (target <= {RESTORE_TARGET})",
            self.restores.ratio()
        );
    }

    fn write_json(&self, bench_started: Instant) -> anyhow::Result<()> {
        let forms: serde_json::Map<String, serde_json::Value> = self
            .forms
            .iter()
            .map(|(form, s)| {
                let json = serde_json::json!({
                    "redis_cli_rdb": tool_json("redis-cli --rdb FILE on /dev/shm", &s.redis_cli),
                    "tidemark_first": tool_json("tidemark source backup, empty repository", &s.first),
                    "tidemark_second": tool_json("tidemark source backup, unchanged server", &s.second),
                    "first_stored_bytes": s.stored,
                    "ratio_tidemark_over_redis_cli_mb_per_s": s.ratio(),
                    "target": SNAPSHOT_TARGET,
                });
                (form.key().to_owned(), json)
            })
            .collect();
        let elapsed = bench_started.elapsed().as_secs_f64();
        let json = serde_json::json!({
            "redis_version": self.redis_version,
            "dataset": {
                "generator": "testkit::redis_workload::fill_random",
                "seed": SEED,
                "value_bytes": DATASET_BYTES,
                "keys": self.dataset.keys,
                "used_memory": self.dataset.used_memory,
                "rdb_bytes": self.rdb_bytes(),
                "fill_seconds": self.dataset.fill_seconds,
            },
            "rounds": self.rounds,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "load_average_before": self.load.0,
            "load_average_after": self.load.1,
            "snapshot": forms,
            "restore": {
                "replicaof": tool_json("REPLICAOF full sync from the source (diskless)", &self.restores.replicaof),
                "tidemark_into": tool_json("tidemark source restore --into --flush", &self.restores.tidemark),
                "ratio_tidemark_over_replicaof_wall": self.restores.ratio(),
                "target": RESTORE_TARGET,
            },
            "bench_seconds": elapsed,
        });
        let out = common::write_results("redis_source", &json)?;
        println!("wrote {} ({:.0} s in all)", out.display(), elapsed);
        Ok(())
    }
}
