//! `tidemark verify` next to reading the same bytes with `cat > /dev/null` and next to
//! `pgbackrest verify`, from a cold page cache, on repositories of at least 2 GiB made by both
//! tools from the same cluster.
//!
//! A throwaway PostgreSQL 15 cluster (16 MiB segments) archives every segment through
//! `tidemark-archive` and then `pgbackrest archive-push` (one `archive_command`, both
//! repositories), is loaded with `pgbench -i -s 200`, and then, round after round, is backed up
//! by `tidemark backup` and `pgbackrest backup --type=full` and runs pgbench for a while, until
//! Tidemark's repository holds at least 2 GiB (zstd level 1, the default; pgBackRest: lz4, 2
//! processes). Then, three times in rotation, each after `sync; echo 3 >
//! /proc/sys/vm/drop_caches`: `cat` of every file of Tidemark's repository to /dev/null,
//! `tidemark verify`, `pgbackrest verify`. Prints per tool the median wall time and CPU seconds
//! (user + system of the process and its children) and the rate over its repository's bytes, the
//! ratios `tidemark rate / cat rate` (target at least 0.8) and `pgbackrest wall / tidemark wall`
//! (target above 1), and writes `target/bench-results/verify.json`. If the kernel refuses to drop caches, it
//! says so and measures warm.
//!
//! Everything large (the cluster, both repositories) goes under `TIDEMARK_BENCH_DIR` (default
//! /tmp), in a directory removed at the end. Needs root (to drop caches and run PostgreSQL as
//! `postgres`), the PostgreSQL 15 server programs and pgBackRest (installed with apt-get if
//! missing). Run: `TIDEMARK_BENCH_DIR=/somewhere/big cargo bench --bench verify` (about 20
//! minutes on 2 cores; 10 GiB free there); `TIDEMARK_BENCH_ROUNDS=5` for more rounds;
//! `TIDEMARK_KEEP_TMP=1` keeps the cluster and both repositories there, to profile.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::{gib, in_rotation, median, pgbackrest_program, tree_bytes};
use testkit::{Lab, ThrowawayCluster, give_to_owner, owner_command};

/// pgbench scale: 200 makes a database of about 3 GiB.
const SCALE: &str = "200";

/// Tidemark's repository must hold at least this much before timing starts.
const MIN_REPOSITORY_BYTES: u64 = 2 << 30;

/// Backup rounds at most, should the repository grow slower than expected.
const MAX_BACKUP_ROUNDS: usize = 12;

/// pgbench transactions per client between two rounds of backups.
const TRANSACTIONS_PER_ROUND: &str = "40000";

/// How long archiving may take to catch up with the last round's WAL.
const ARCHIVE_CATCH_UP: Duration = Duration::from_secs(30 * 60);

/// The kernel reports CPU times in /proc in units of USER_HZ, which is 100 on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Cat,
    Tidemark,
    TidemarkDeep,
    PgBackRest,
}

const TOOLS: [Tool; 4] = [
    Tool::Cat,
    Tool::Tidemark,
    Tool::TidemarkDeep,
    Tool::PgBackRest,
];

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::Cat => "cat > /dev/null (tidemark's repo)",
            Tool::Tidemark => "tidemark verify",
            Tool::TidemarkDeep => "tidemark verify --deep",
            Tool::PgBackRest => "pgbackrest verify (2 proc)",
        }
    }
}

/// One timed run: wall seconds and CPU seconds of the command and its children.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall_s: f64,
    cpu_s: f64,
}

/// Everything the runs share. The cluster is dropped (stopped) before the directories go.
struct Bench {
    cluster: ThrowawayCluster,
    lab: Lab,
    pgbackrest: PathBuf,
    tidemark_config: PathBuf,
    tidemark_repo: PathBuf,
    pgbackrest_config: PathBuf,
    pgbackrest_repo: PathBuf,
    cold: bool,
    _big: tempfile::TempDir,
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut bench = Bench::set_up()?;
    bench.fill_repositories()?;
    bench.cluster.stop()?;
    let tidemark_bytes = tree_bytes(&bench.tidemark_repo)?;
    let pgbackrest_bytes = tree_bytes(&bench.pgbackrest_repo)?;
    println!(
        "repositories: tidemark {:.2} GiB, pgbackrest {:.2} GiB; page cache {}",
        gib(tidemark_bytes),
        gib(pgbackrest_bytes),
        if bench.cold {
            "dropped before each run (cold)"
        } else {
            "NOT dropped: the kernel refused, so every run is warm"
        }
    );
    let samples = bench.time_tools(common::rounds(3))?;
    let bytes = [
        tidemark_bytes,
        tidemark_bytes,
        tidemark_bytes,
        pgbackrest_bytes,
    ];
    print_table(&samples, &bytes);
    write_json(&bench, &samples, &bytes, started)?;
    if std::env::var_os("TIDEMARK_KEEP_TMP").is_some() {
        let kept = bench._big.keep();
        println!("kept {} (TIDEMARK_KEEP_TMP)", kept.display());
    }
    Ok(())
}

impl Bench {
    /// The cluster, both configurations and both stanzas, archiving into both repositories.
    fn set_up() -> anyhow::Result<Bench> {
        let pgbackrest = pgbackrest_program()?;
        let lab = common::lab("tm-bverify-")?;
        let root = std::env::var_os("TIDEMARK_BENCH_DIR").map_or("/tmp".into(), PathBuf::from);
        let big = tempfile::Builder::new()
            .prefix("tm-bverify-")
            .tempdir_in(&root)
            .with_context(|| format!("create a directory in {}", root.display()))?;
        fs::set_permissions(big.path(), fs::Permissions::from_mode(0o755))?;
        give_to_owner(big.path())?;
        let cluster = ThrowawayCluster::init(&lab.pg, big.path(), "primary", 16)?;
        let tidemark_repo = big.path().join("tidemark-repo");
        let pgbackrest_repo = big.path().join("pgbackrest-repo");
        let tidemark_config = lab.tmp.path().join("verify.toml");
        fs::write(
            &tidemark_config,
            format!(
                "[repo]\npath = \"{}\"\n[stanza.main]\npgdata = \"{}\"\nconninfo = \"{}\"\n",
                tidemark_repo.display(),
                cluster.data_dir().display(),
                cluster.conninfo()
            ),
        )?;
        give_to_owner(&tidemark_config)?;
        let pgbackrest_config = lab.tmp.path().join("pgbackrest.conf");
        let pgbackrest_dir = lab.tmp.subdir("pgbackrest")?;
        let global = format!(
            "repo1-path={}\nstart-fast=y\nrepo1-retention-full=99\n",
            pgbackrest_repo.display()
        );
        let conf = common::pgbackrest_conf(
            &global,
            &pgbackrest_dir,
            cluster.data_dir(),
            cluster.socket_dir(),
        );
        fs::write(&pgbackrest_config, conf)?;
        give_to_owner(&pgbackrest_config)?;
        let mut bench = Bench {
            cluster,
            lab,
            pgbackrest,
            tidemark_config,
            tidemark_repo,
            pgbackrest_config,
            pgbackrest_repo,
            cold: drop_caches(),
            _big: big,
        };
        bench.start_archiving()?;
        Ok(bench)
    }

    /// Starts the cluster archiving into both repositories, their stanzas created.
    fn start_archiving(&mut self) -> anyhow::Result<()> {
        let archive_command = format!(
            "{} --config {} --stanza main %p && {} archive-push %p",
            self.lab.bin_dir.join("tidemark-archive").display(),
            self.tidemark_config.display(),
            self.pgbackrest_line()
        );
        self.cluster.configure(&[
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
            ("max_wal_size", "4GB"),
        ])?;
        self.cluster.start()?;
        self.tidemark(&["stanza-create"])?;
        self.pgbackrest_run("stanza-create")?;
        Ok(())
    }

    fn pgbackrest_line(&self) -> String {
        format!(
            "{} --config={} --stanza=bench",
            self.pgbackrest.display(),
            self.pgbackrest_config.display()
        )
    }

    fn tidemark(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = owner_command(&self.lab.bin_dir.join("tidemark"), self.lab.tmp.path())
            .arg("--config")
            .arg(&self.tidemark_config)
            .args(args)
            .status()?;
        ensure!(
            status.success(),
            "tidemark {} failed ({status})",
            args.join(" ")
        );
        Ok(())
    }

    fn pgbackrest_run(&self, command: &str) -> anyhow::Result<()> {
        let status = self.pgbackrest_command(command).status()?;
        ensure!(status.success(), "pgbackrest {command} failed ({status})");
        Ok(())
    }

    fn pgbackrest_command(&self, command: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", "sh", "-c"])
            .arg(format!("{} {command}", self.pgbackrest_line()))
            .current_dir(self.lab.tmp.path());
        cmd
    }

    /// pgbench's tables, then backups by both tools and pgbench in rounds until Tidemark's
    /// repository is large enough.
    fn fill_repositories(&self) -> anyhow::Result<()> {
        self.pgbench(&["-i", "-q", "-s", SCALE])?;
        for round in 1..=MAX_BACKUP_ROUNDS {
            self.tidemark(&["backup"])?;
            self.pgbackrest_run("--type=full backup")?;
            let bytes = tree_bytes(&self.tidemark_repo)?;
            let archiver = self.cluster.query(
                "SELECT archived_count || ' archived, ' || failed_count || ' failures, last ' || coalesce(last_archived_wal, '-') FROM pg_stat_archiver",
            )?;
            println!(
                "round {round}: tidemark's repository holds {:.2} GiB; archiver: {archiver}",
                gib(bytes)
            );
            if bytes >= MIN_REPOSITORY_BYTES && round >= 3 {
                break;
            }
            self.pgbench(&["-n", "-c", "2", "-t", TRANSACTIONS_PER_ROUND])?;
        }
        // A record first: a switch right after the last backup's own would switch nothing.
        self.cluster.query("SELECT txid_current()")?;
        let segment = self
            .cluster
            .query("SELECT pg_walfile_name(pg_switch_wal())")?;
        self.cluster
            .wait_for(
                &format!(
                    "SELECT coalesce(last_archived_wal >= '{segment}', false) FROM pg_stat_archiver"
                ),
                "t",
                ARCHIVE_CATCH_UP,
            )
            .with_context(|| {
                format!(
                    "wait for {segment} to be archived; server log: {}",
                    self.cluster.log_tail(20)
                )
            })
    }

    fn pgbench(&self, args: &[&str]) -> anyhow::Result<()> {
        self.cluster.run_pgbench(args)?;
        Ok(())
    }

    /// Every tool `rounds` times in rotation, each from a cold cache when the kernel allows.
    fn time_tools(&self, rounds: usize) -> anyhow::Result<Vec<Vec<Sample>>> {
        let mut samples = vec![Vec::new(); TOOLS.len()];
        in_rotation(rounds, &TOOLS, |round, index, tool| {
            if self.cold {
                ensure!(drop_caches(), "the kernel stopped letting us drop caches");
            }
            let sample = time_command(self.command(tool))?;
            println!(
                "round {}: {:<36} {:>7.2} s wall {:>7.2} s CPU",
                round + 1,
                tool.label(),
                sample.wall_s,
                sample.cpu_s
            );
            samples[index].push(sample);
            Ok(())
        })?;
        Ok(samples)
    }

    fn command(&self, tool: Tool) -> Command {
        match tool {
            Tool::Cat => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(format!(
                    "find '{}' -type f -exec cat {{}} + > /dev/null",
                    self.tidemark_repo.display()
                ));
                cmd
            }
            Tool::Tidemark | Tool::TidemarkDeep => {
                let mut cmd =
                    owner_command(&self.lab.bin_dir.join("tidemark"), self.lab.tmp.path());
                cmd.arg("--config").arg(&self.tidemark_config).arg("verify");
                if tool == Tool::TidemarkDeep {
                    cmd.arg("--deep");
                }
                cmd
            }
            Tool::PgBackRest => self.pgbackrest_command("verify"),
        }
    }
}

/// Empties the page cache; false if the kernel refuses.
fn drop_caches() -> bool {
    Command::new("sync").status().is_ok_and(|s| s.success())
        && fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Runs `command` to success, timing its wall and CPU (its own and its children's).
fn time_command(mut command: Command) -> anyhow::Result<Sample> {
    let cpu_before = children_cpu()?;
    let started = Instant::now();
    let output = command.output().context("run a timed command")?;
    let wall_s = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(Sample {
        wall_s,
        cpu_s: children_cpu()? - cpu_before,
    })
}

/// CPU seconds of this process's waited-for children and their descendants.
fn children_cpu() -> anyhow::Result<f64> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    // Fields after "(comm)": state is field 3, so cutime and cstime (16, 17) are at 13 and 14.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .context("parse /proc/self/stat")?
        .1
        .split_whitespace()
        .collect();
    let cutime: f64 = rest.get(13).context("cutime")?.parse()?;
    let cstime: f64 = rest.get(14).context("cstime")?.parse()?;
    Ok((cutime + cstime) / TICKS_PER_SECOND)
}

fn medians(runs: &[Sample]) -> (f64, f64) {
    let wall: Vec<f64> = runs.iter().map(|s| s.wall_s).collect();
    let cpu: Vec<f64> = runs.iter().map(|s| s.cpu_s).collect();
    (median(&wall), median(&cpu))
}

fn print_table(samples: &[Vec<Sample>], bytes: &[u64]) {
    println!(
        "\n{:<36} {:>10} {:>10} {:>10} {:>12}",
        "tool", "GiB read", "wall s", "CPU s", "MiB/s"
    );
    for ((tool, runs), &bytes) in TOOLS.iter().zip(samples).zip(bytes) {
        let (wall, cpu) = medians(runs);
        let rate = bytes as f64 / (1 << 20) as f64 / wall;
        println!(
            "{:<36} {:>10.2} {:>10.2} {:>10.2} {:>12.1}",
            tool.label(),
            gib(bytes),
            wall,
            cpu,
            rate
        );
    }
    let wall = |tool: Tool| {
        let at = TOOLS
            .iter()
            .position(|t| *t == tool)
            .expect("every tool is timed");
        medians(&samples[at]).0
    };
    let (cat, pgbackrest) = (wall(Tool::Cat), wall(Tool::PgBackRest));
    for tool in [Tool::Tidemark, Tool::TidemarkDeep] {
        println!(
            "{}: rate / cat rate {:.2} (target >= 0.80); pgbackrest verify wall / its wall {:.2} (target > 1)",
            tool.label(),
            cat / wall(tool),
            pgbackrest / wall(tool)
        );
    }
}

fn write_json(
    bench: &Bench,
    samples: &[Vec<Sample>],
    bytes: &[u64],
    started: Instant,
) -> anyhow::Result<()> {
    let tools: Vec<serde_json::Value> = TOOLS
        .iter()
        .zip(samples)
        .zip(bytes)
        .map(|((tool, runs), bytes)| {
            let (wall, cpu) = medians(runs);
            serde_json::json!({
                "tool": tool.label(),
                "bytes": bytes,
                "median_wall_s": wall,
                "median_cpu_s": cpu,
                "runs": runs.iter().map(|s| serde_json::json!({"wall_s": s.wall_s, "cpu_s": s.cpu_s})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let json = serde_json::json!({
        "cold_cache": bench.cold,
        "pgbackrest": common::pgbackrest_version(&bench.pgbackrest),
        "scale": SCALE,
        "tools": tools,
        "seconds_in_all": started.elapsed().as_secs_f64(),
    });
    let out = common::write_results("verify", &json)?;
    println!("wrote {}", out.display());
    Ok(())
}
