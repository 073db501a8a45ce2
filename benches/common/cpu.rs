//! CPU time as the benches count it, from /proc: this process's waited-for children, a
//! PostgreSQL server's processes (the postmaster, its children, and what they reaped: the tool
//! calls of archive_command and restore_command), Tidemark's detached helpers (which no server
//! process reaps, so they are sampled while they live), and the whole machine.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};

/// The kernel reports CPU times in /proc in units of USER_HZ, which is 100 on Linux.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Cumulative CPU of this process's waited-for children, in seconds.
pub fn children_cpu() -> anyhow::Result<f64> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    // Fields after "(comm)": state is field 3, so cutime and cstime (16, 17) are at 13 and 14.
    let rest = stat
        .rsplit_once(')')
        .context("parse /proc/self/stat")?
        .1
        .split_whitespace()
        .collect::<Vec<_>>();
    let cutime: f64 = rest.get(13).context("cutime")?.parse()?;
    let cstime: f64 = rest.get(14).context("cstime")?.parse()?;
    Ok((cutime + cstime) / TICKS_PER_SECOND)
}

/// CPU seconds of every child this process has waited for, to the microsecond
/// (`getrusage(RUSAGE_CHILDREN)`; /proc counts in ticks of 10 ms, too coarse for one call).
pub fn reaped_children_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Runs `command` to success; its wall and CPU milliseconds (the CPU of it and of whatever it
/// waited for, not of helpers it left running).
pub fn timed_call(command: &mut std::process::Command) -> anyhow::Result<(f64, f64)> {
    let cpu_before = reaped_children_cpu();
    let started = std::time::Instant::now();
    let output = command.output()?;
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    let cpu = (reaped_children_cpu() - cpu_before) * 1000.0;
    ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((wall, cpu))
}

/// Fields 14 to 17 of `/proc/<pid>/stat` (utime, stime, cutime, cstime) and field 4 (ppid).
pub fn proc_times(pid: &str) -> Option<([f64; 4], String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let mut times = [0.0; 4];
    for (i, time) in times.iter_mut().enumerate() {
        *time = rest.get(11 + i)?.parse().ok()?;
    }
    Some((times, rest.get(1)?.to_string()))
}

/// CPU seconds used so far by the cluster's server processes: the postmaster, its live
/// children and every child it has reaped (a walsender or backend that has exited).
pub fn server_cpu(postmaster: &str) -> anyhow::Result<f64> {
    let (own, _) = proc_times(postmaster).context("read the postmaster's /proc stat")?;
    let mut ticks: f64 = own.iter().sum();
    for entry in fs::read_dir("/proc")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some((times, ppid)) = proc_times(&name)
            && ppid == postmaster
        {
            ticks += times.iter().sum::<f64>();
        }
    }
    Ok(ticks / TICKS_PER_SECOND)
}

/// The postmaster's pid, from the first line of `<data_dir>/postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("postmaster.pid");
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(text
        .lines()
        .next()
        .context("empty postmaster.pid")?
        .trim()
        .to_owned())
}

/// (busy, iowait) seconds of all cores since boot.
pub fn machine_cpu() -> anyhow::Result<(f64, f64)> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse())
        .collect::<Result<_, _>>()?;
    ensure!(ticks.len() >= 8, "unexpected /proc/stat line {line:?}");
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7];
    Ok((busy / TICKS_PER_SECOND, ticks[4] / TICKS_PER_SECOND))
}

/// The CPU of Tidemark's detached helpers of one `pg_wal` (work-ahead workers, prefetchers):
/// they leave their process group and are reaped by no server process, so their time is read
/// while they live. Call [`HelperCpu::sample`] often during a run and once at its end, before
/// the server stops (the helpers leave soon after); the time a helper spends between the last
/// sample and its exit is not counted.
pub struct HelperCpu {
    pg_wal: PathBuf,
    /// pgBackRest's detached processes whose command line names a path under this directory
    /// (its configuration file) are helpers too, when set.
    pgbackrest_under: Option<PathBuf>,
    /// The last CPU seconds seen of each helper, by pid.
    seen: BTreeMap<i32, f64>,
}

impl HelperCpu {
    pub fn new(pg_wal: &Path) -> HelperCpu {
        HelperCpu {
            pg_wal: pg_wal.to_owned(),
            pgbackrest_under: None,
            seen: BTreeMap::new(),
        }
    }

    /// Also counts pgBackRest's asynchronous processes (`archive-push:async`,
    /// `archive-get:async`) and the local workers they start (`…:local`), when their command
    /// line names a path under `dir`: like Tidemark's helpers they leave the server's process
    /// tree, so the server's CPU does not hold them.
    pub fn with_pgbackrest_under(mut self, dir: &Path) -> HelperCpu {
        self.pgbackrest_under = Some(dir.to_owned());
        self
    }

    /// Reads the CPU of every helper of the `pg_wal` that runs now.
    pub fn sample(&mut self) {
        use testkit::processes::{PREFETCHER, WORK_AHEAD_WORKER, has_flag, processes};
        for (pid, args) in processes() {
            let tidemark = [WORK_AHEAD_WORKER, PREFETCHER]
                .iter()
                .any(|flag| has_flag(&args, flag, &self.pg_wal));
            let pgbackrest = !tidemark && self.is_pgbackrest_helper(&args);
            if !tidemark && !pgbackrest {
                continue;
            }
            if let Some((times, _)) = proc_times(&pid.to_string()) {
                // A pgBackRest async process reaps its local workers, which are sampled
                // themselves: its own time only, or theirs would count twice.
                let ticks = if pgbackrest {
                    times[0] + times[1]
                } else {
                    times.iter().sum::<f64>()
                };
                self.seen.insert(pid, ticks / TICKS_PER_SECOND);
            }
        }
    }

    fn is_pgbackrest_helper(&self, args: &[Vec<u8>]) -> bool {
        let Some(dir) = &self.pgbackrest_under else {
            return false;
        };
        let dir = dir.as_os_str().as_encoded_bytes();
        let detached = args
            .iter()
            .any(|a| a.ends_with(b":async") || a.ends_with(b":local"));
        let ours = args.iter().any(|a| a.windows(dir.len()).any(|w| w == dir));
        detached && ours
    }

    /// CPU seconds of every helper seen, at its last sample.
    pub fn total(&self) -> f64 {
        self.seen.values().sum()
    }
}

/// CPU seconds this process has used so far, all its threads (user + system).
pub fn own_cpu() -> anyhow::Result<f64> {
    let (times, _) = proc_times("self").context("read /proc/self/stat")?;
    Ok((times[0] + times[1]) / TICKS_PER_SECOND)
}
