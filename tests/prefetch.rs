//! Planned parallel prefetch (`[restore] prefetch`, on by default) on real PostgreSQL 15
//! recoveries: segments damaged in the spool before their hand-over are refused and fetched again;
//! recovery is exact while the fetcher is killed with SIGKILL again and again; recovery follows a
//! timeline switch with segments handed over from the spool; a long pause in replay keeps the
//! spool, and the next call clears what a killed hand-over left in `pg_wal`; and on a small
//! `pg_wal` the fetcher leaves its reserve free instead of filling the file system. Each
//! segment is written back (fsynced) by the fetcher before it is offered, so the fsync
//! PostgreSQL makes of every restored file does not hold up replay (on the system calls of the
//! whole server under `strace -f`).
//!
//! Tests that must act at a given point of a recovery hold PostgreSQL there with the
//! `restore_command` gate of `restore_gate/` rather than race it.

mod common;
#[path = "restore_gate/mod.rs"]
mod restore_gate;
#[path = "tmpfs/mod.rs"]
mod tmpfs;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::strace;
use restore_gate::{Arrival, Gate};
use testkit::Lab;
use testkit::steps::start_restored;
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::{ThrowawayCluster, give_to_owner};
use tmpfs::Tmpfs;

/// Kills of the fetcher the test insists on.
const MIN_KILLS: usize = 20;

/// How long a gate-driven test waits for the next call before it looks whether recovery ended.
const GATE_POLL: Duration = Duration::from_millis(200);

/// What pgbench leaves in the database, compared between primary and restored copy.
const CONTENT: &str = "SELECT (SELECT count(*) || '/' || sum(abalance) FROM pgbench_accounts) || ' ' || \
     (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history)";

/// A primary with 1 MiB segments archiving into the lab's stanza through `tidemark-archive`,
/// with pgbench tables and a backup.
fn primary_with_backup(lab: &Lab) -> ThrowawayCluster {
    let options = PrimaryOptions::default().setting("max_wal_size", "64MB");
    let primary = archiving_primary(lab, &options).unwrap();
    common::wait_ok(common::pgbench(&primary, &["-i", "-q", "-s", "2"]));
    let report = lab.tidemark(&["backup"]).unwrap();
    assert!(report.starts_with("backup "), "{report}");
    primary
}

/// Runs `transactions` pgbench transactions per client (2 clients) on `cluster`, then makes sure
/// everything is archived; returns the database content.
fn write_and_archive(cluster: &ThrowawayCluster, transactions: u32) -> String {
    let transactions = transactions.to_string();
    common::wait_ok(common::pgbench(
        cluster,
        &["-n", "-c", "2", "-t", &transactions],
    ));
    testkit::switch_and_wait_for_archive(cluster).unwrap();
    cluster.query(CONTENT).unwrap()
}

/// Runs `transactions` pgbench transactions per client on a [`primary_with_backup`], archives
/// everything and stops it; returns the database content.
fn archived_workload(lab: &Lab, transactions: u32) -> String {
    let mut primary = primary_with_backup(lab);
    let content = write_and_archive(&primary, transactions);
    primary.stop().unwrap();
    content
}

/// `tidemark restore` of the newest backup to the end of the archive into a new directory, its
/// `pg_wal` on a tmpfs of `wal_bytes` (kept until the returned `Tmpfs` drops, after the cluster).
/// The fetcher keeps a twentieth of `pg_wal`'s file system free: on the host's disk, whether it
/// fetched at all would depend on how full that disk happens to be.
fn restore(lab: &Lab, name: &str, wal_bytes: u64) -> (PathBuf, Tmpfs) {
    let pgdata = lab.tmp.path().join(name);
    lab.tidemark(&["restore", "--pgdata", pgdata.to_str().unwrap()])
        .unwrap();
    let walfs = Tmpfs::mount(&lab.tmp.path().join(format!("{name}-wal")), wal_bytes);
    let pg_wal = pgdata.join("pg_wal");
    move_contents(&pg_wal, walfs.path());
    fs::remove_dir(&pg_wal).unwrap();
    std::os::unix::fs::symlink(walfs.path(), &pg_wal).unwrap();
    (pgdata, walfs)
}

/// A `pg_wal` with room for all the tests' WAL, far below which the reserve stays.
const ROOMY_WAL: u64 = 1 << 30;

/// A new lab (its directories named with `prefix`) whose archive holds an
/// [`archived_workload`] of `transactions`, restored into `<lab>/restored` with a roomy
/// `pg_wal`: the lab, the database content recovery must reproduce, the data directory and
/// the tmpfs of its `pg_wal` (listed last, so that it is unmounted before the lab goes).
fn restored_workload(prefix: &str, transactions: u32) -> (Lab, String, PathBuf, Tmpfs) {
    let lab = Lab::new(prefix, &common::binaries()).unwrap();
    let expected = archived_workload(&lab, transactions);
    let (pgdata, walfs) = restore(&lab, "restored", ROOMY_WAL);
    (lab, expected, pgdata, walfs)
}

/// Starts the data directory restored into `<lab>/<name>` and waits until it has recovered and
/// promoted.
fn recover(lab: &Lab, name: &str) -> ThrowawayCluster {
    start_restored(lab, name, &[]).unwrap()
}

fn server_log(cluster: &ThrowawayCluster) -> String {
    fs::read_to_string(cluster.log_file()).unwrap()
}

/// Segments handed over from the spool, by name.
fn prefetched(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(", prefetched) in "))
        .filter_map(|l| l.split("restored ").nth(1)?.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// The restore spool of a data directory.
fn spool(pgdata: &Path) -> PathBuf {
    pgdata.join("pg_wal/.tidemark/restore/main")
}

/// Puts `bytes` in the spool as segment `name`, with a `.sum` for `sum_of` (length and CRC-32C),
/// as the fetcher would have left them.
fn plant(spool: &Path, name: &str, bytes: &[u8], sum_of: &[u8]) {
    fs::write(spool.join(name), bytes).unwrap();
    fs::write(
        spool.join(format!("{name}.sum")),
        format!("{} {:08x}\n", sum_of.len(), crc32c::crc32c(sum_of)),
    )
    .unwrap();
}

#[test]
fn segments_damaged_in_the_spool_are_refetched_and_recovery_is_exact() {
    let (lab, expected, pgdata, _walfs) = restored_workload("tm-prefetch-damage-", 2000);
    let spool = spool(&pgdata);
    let plan = plan_of(&pgdata);
    assert!(
        plan.len() >= 6,
        "the plan is too short for this test: {plan:?}"
    );
    // Three segments right after the first, as if the fetcher had spooled them, each damaged
    // differently before PostgreSQL asks for it.
    let original = |name: &str| {
        let path = lab.tmp.path().join(format!("original-{name}"));
        lab.tidemark(&["archive-get", name, path.to_str().unwrap()])
            .unwrap();
        fs::read(&path).unwrap()
    };
    let flipped = &plan[1];
    let mut bytes = original(flipped);
    bytes[300_000] ^= 0x40;
    plant(&spool, flipped, &bytes, &original(flipped));
    let truncated = &plan[2];
    let bytes = original(truncated);
    plant(&spool, truncated, &bytes[..bytes.len() / 2], &bytes);
    let wrong_sum = &plan[3];
    let bytes = original(wrong_sum);
    plant(&spool, wrong_sum, &bytes, &vec![0u8; bytes.len()]);
    for entry in fs::read_dir(&spool).unwrap() {
        give_to_owner(&entry.unwrap().path()).unwrap();
    }

    let restored = recover(&lab, "restored");
    assert_eq!(restored.query(CONTENT).unwrap(), expected);
    let log = server_log(&restored);
    assert_eq!(common::tidemark_errors(&restored), Vec::<String>::new());
    for (name, problem) in [
        (flipped, "its CRC-32C is"),
        (
            truncated,
            "it is 524288 bytes long, the repository says 1048576",
        ),
        (wrong_sum, "its CRC-32C is"),
    ] {
        let refused = format!("the prefetched copy of {name} failed its check ({problem}");
        assert!(
            log.contains(&refused),
            "no refusal of {name} ({problem}) in the log:\n{log}"
        );
    }
    let handed_over = prefetched(&log);
    println!(
        "{} planned segments, {} handed over from the spool",
        plan.len(),
        handed_over.len()
    );
    assert!(
        !handed_over.is_empty(),
        "no segment came from the spool:\n{log}"
    );
}

/// PostgreSQL fsyncs every file `restore_command` hands it (`KeepFileRestoredFromArchive`), in
/// its startup process, while replay waits. The fetcher writes each spooled segment back before
/// offering it, so that fsync finds nothing left to write: checked on the system calls of the
/// whole server under `strace -f` from its first process (the `restore_command` calls and the
/// fetcher they start included): every `.sum` the fetcher writes comes after an fsync of its
/// segment in the spool.
#[test]
fn the_fetcher_writes_each_segment_back_before_it_offers_it() {
    let (lab, expected, pgdata, _walfs) = restored_workload("tm-prefetch-writeback-", 600);
    let mut cluster =
        ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", pgdata.clone()).unwrap();
    // strace runs as root and the server as its owner (`-u`): Tidemark's processes make
    // themselves undumpable, so only a tracer with CAP_SYS_PTRACE can read their paths.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test traces the server's processes and must run as root (CI does)"
    );
    let trace = lab.tmp.path().join("server.trace");
    let server_log = fs::File::create(cluster.log_file()).unwrap();
    let mut traced_server = Command::new(strace::STRACE)
        .current_dir(lab.tmp.path())
        .args(["-u", "postgres", "-f", "-y", "-qq", "--seccomp-bpf"])
        .args(["-e", "signal=none"])
        .args(["-e", "trace=%file,fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(lab.pg.path("postgres"))
        .arg("-D")
        .arg(&pgdata)
        .stderr(server_log)
        .spawn()
        .unwrap();
    cluster.started_elsewhere();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pgdata.join("postmaster.pid").exists() {
        if let Some(status) = traced_server.try_wait().unwrap() {
            panic!(
                "strace of the server exited ({status}): {}",
                cluster.log_tail(10)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the server did not start within a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster
        .wait_for_promotion(Duration::from_secs(180))
        .unwrap();
    assert_eq!(cluster.query(CONTENT).unwrap(), expected);
    cluster.stop().unwrap();
    // strace returns once the last process it follows is gone: the fetcher leaves when
    // recovery is over.
    let deadline = Instant::now() + Duration::from_secs(60);
    while traced_server.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "strace still runs a minute after the server stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let calls = strace::read(&fs::read_to_string(&trace).unwrap());
    // strace names a descriptor by its real path: `pg_wal` is a link to a tmpfs.
    let spooled = fs::canonicalize(spool(&pgdata)).unwrap();
    let in_spool = |path: &Path| {
        path.parent()
            .is_some_and(|dir| dir.ends_with("restore/main"))
    };
    let mut offered = Vec::new();
    for (at, call) in calls.iter().enumerate() {
        let Some((_, to)) = call.rename_paths().filter(|_| call.succeeded()) else {
            continue;
        };
        let Some(segment) = to
            .file_name()
            .and_then(|n| n.to_str()?.strip_suffix(".sum"))
        else {
            continue;
        };
        if !in_spool(&to) {
            continue;
        }
        let written_back = calls[..at]
            .iter()
            .any(|earlier| earlier.pid == call.pid && earlier.is_fsync_of(&spooled.join(segment)));
        assert!(
            written_back,
            "{segment} was offered in the spool before it was fsynced"
        );
        offered.push(segment.to_owned());
    }
    let handed_over = prefetched(&fs::read_to_string(cluster.log_file()).unwrap());
    println!(
        "{} segments offered in the spool, each written back first; {} handed over",
        offered.len(),
        handed_over.len()
    );
    assert!(!handed_over.is_empty(), "no segment came from the spool");
    for name in &handed_over {
        assert!(
            offered.contains(name),
            "{name} was handed over but never offered"
        );
    }
}

/// The planned segments of a restored data directory, in order.
fn plan_of(pgdata: &Path) -> Vec<String> {
    fs::read_to_string(spool(pgdata).join("plan"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Starts `cluster` with the gate as its restore_command and passes every call held at the gate
/// to `at_gate` until the server has promoted; returns once it has.
fn recover_through_gate(
    lab: &Lab,
    cluster: &mut ThrowawayCluster,
    gate: &Gate,
    mut at_gate: impl FnMut(&Arrival),
) {
    cluster
        .configure(&[("restore_command", &gate.restore_command(lab))])
        .unwrap();
    let log_file = cluster.log_file().to_owned();
    let deadline = Instant::now() + common::PATIENCE * 3;
    std::thread::scope(|scope| {
        // `pg_ctl start` returns once the server is consistent, which takes calls at the gate.
        let starting = scope.spawn(|| cluster.start());
        loop {
            match gate.next_arrival(GATE_POLL) {
                Some(arrival) => {
                    at_gate(&arrival);
                    gate.release(&arrival);
                }
                None => {
                    let log = fs::read_to_string(&log_file).unwrap_or_default();
                    if log.contains("database system is ready to accept connections") {
                        break;
                    }
                    assert!(Instant::now() < deadline, "recovery did not finish:\n{log}");
                }
            }
        }
        starting.join().unwrap().unwrap();
    });
    cluster.wait_for_promotion(common::PATIENCE).unwrap();
}

/// The fetcher of `pg_wal`, waiting for one to run (at most [`common::PATIENCE`]).
fn running_fetcher(pg_wal: &Path) -> i32 {
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        if let Some(pid) = common::helper_pid("--prefetcher", pg_wal) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no fetcher runs for {}",
            pg_wal.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Kills process `pid` with SIGKILL and waits until it is gone (its files, its lock, closed).
fn kill_and_wait(pid: i32) {
    let raw = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(raw, rustix::process::Signal::KILL).unwrap();
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let deadline = Instant::now() + common::PATIENCE;
    // Gone, or a zombie: either way it holds nothing any more.
    while fs::read_to_string(&stat).is_ok_and(|s| {
        s.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    }) {
        assert!(Instant::now() < deadline, "process {pid} does not die");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `path` exists (at most [`common::PATIENCE`]).
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + common::PATIENCE;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn recovery_is_exact_while_the_fetcher_is_killed_again_and_again() {
    let (lab, expected, pgdata, _walfs) = restored_workload("tm-prefetch-kill-", 10_000);
    let plan = plan_of(&pgdata);
    assert!(
        plan.len() >= 2 * MIN_KILLS,
        "the plan is too short for {MIN_KILLS} kills: {} segments",
        plan.len()
    );
    let planned_at: HashMap<&str, usize> = plan
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let pg_wal = pgdata.join("pg_wal");
    let spool = spool(&pgdata);
    let mut restored =
        ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", pgdata).unwrap();
    // While PostgreSQL waits at the gate after each planned segment, the fetcher is killed
    // after every other one; after the others the test waits until the fetcher has spooled
    // the next segment, which must then be handed over from the spool.
    let gate = Gate::new(&lab);
    let mut kills = 0;
    let mut to_hand_over = Vec::new();
    let mut passed = HashSet::new();
    recover_through_gate(&lab, &mut restored, &gate, |arrival| {
        let Some(&at) = planned_at.get(arrival.file_name.as_str()) else {
            return;
        };
        // PostgreSQL reads the last segment again at the end: once is enough.
        if !passed.insert(at) {
            return;
        }
        if at % 2 == 0 {
            kill_and_wait(running_fetcher(&pg_wal));
            kills += 1;
        } else if let Some(next) = plan.get(at + 1) {
            wait_for_file(&spool.join(format!("{next}.sum")));
            to_hand_over.push(next.clone());
        }
    });
    assert_eq!(restored.query(CONTENT).unwrap(), expected);
    let log = server_log(&restored);
    assert_eq!(common::tidemark_errors(&restored), Vec::<String>::new());
    let handed_over: HashSet<String> = prefetched(&log).into_iter().collect();
    println!(
        "{} planned segments, {} handed over from the spool, {kills} kills",
        plan.len(),
        handed_over.len()
    );
    assert!(
        kills >= MIN_KILLS,
        "the fetcher was killed only {kills} times during a recovery of {} segments",
        plan.len()
    );
    let missed: Vec<&String> = to_hand_over
        .iter()
        .filter(|s| !handed_over.contains(*s))
        .collect();
    assert!(missed.is_empty(), "spooled but not handed over: {missed:?}");
}

#[test]
fn a_long_pause_keeps_the_spool_and_the_next_call_clears_a_killed_hand_over() {
    let (lab, expected, pgdata, _walfs) = restored_workload("tm-prefetch-pause-", 2000);
    let plan = plan_of(&pgdata);
    assert!(plan.len() >= 6, "the plan is too short: {plan:?}");
    let hold_at = plan[plan.len() / 2].clone();
    let next = plan[plan.len() / 2 + 1].clone();
    let pg_wal = pgdata.join("pg_wal");
    let spool = spool(&pgdata);
    // What a call killed (SIGTERM at a fast shutdown) in the middle of a hand-over leaves: the
    // segment it claimed from the spool, under a hidden name of a process that is gone.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let host = tidemark::storage::durable::host_name();
    let abandoned = pg_wal.join(format!(".RECOVERYXLOG.{host}.{dead}.0.tmp"));
    let mut restored =
        ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", pgdata).unwrap();
    let gate = Gate::new(&lab);
    let mut held = false;
    let mut cleared = None;
    recover_through_gate(&lab, &mut restored, &gate, |arrival| {
        if arrival.file_name == hold_at && !held {
            held = true;
            // PostgreSQL asks for nothing while it waits here, as in a replay pause: the
            // fetcher stops fetching (or, before, left with the spool).
            let deadline = Instant::now() + common::PATIENCE;
            loop {
                let log = fs::read_to_string(spool.join("fetcher.log")).unwrap_or_default();
                if log.contains("PostgreSQL has asked for no new segment for 5 s")
                    || common::helper_pid("--prefetcher", &pg_wal).is_none()
                {
                    break;
                }
                assert!(Instant::now() < deadline, "the fetcher never went idle");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                spool.join(format!("{next}.sum")).exists() && spool.join(&next).exists(),
                "the pause threw the spooled {next} away"
            );
            let fetcher = common::helper_pid("--prefetcher", &pg_wal).expect("a fetcher runs");
            // It outlives the call that started it, so it must not hold the data directory.
            assert_eq!(
                fs::read_link(format!("/proc/{fetcher}/cwd")).unwrap(),
                Path::new("/"),
                "the fetcher works in a directory a failover may need to unmount"
            );
            fs::write(&abandoned, vec![0u8; 1 << 20]).unwrap();
            give_to_owner(&abandoned).unwrap();
        } else if arrival.file_name == next && cleared.is_none() {
            cleared = Some(!abandoned.exists());
            // The configuration changes (it may now name another repository): the fetcher
            // that read the old one leaves, and the next call starts one that reads it anew.
            let fetcher = common::helper_pid("--prefetcher", &pg_wal).expect("a fetcher runs");
            let mut config = fs::OpenOptions::new()
                .append(true)
                .open(&lab.config_path)
                .unwrap();
            std::io::Write::write_all(&mut config, b"\n# changed while recovering\n").unwrap();
            let deadline = Instant::now() + common::PATIENCE;
            while Path::new(&format!("/proc/{fetcher}")).exists() {
                assert!(
                    Instant::now() < deadline,
                    "the fetcher went on after its configuration file changed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let fetcher_log = fs::read_to_string(spool.join("fetcher.log")).unwrap_or_default();
    assert!(
        fetcher_log.contains("prefetcher leaves: the configuration file changed"),
        "{fetcher_log}"
    );
    assert_eq!(restored.query(CONTENT).unwrap(), expected);
    assert_eq!(common::tidemark_errors(&restored), Vec::<String>::new());
    let log = server_log(&restored);
    assert!(
        prefetched(&log).contains(&next),
        "{next} was not handed over from the spool after the pause"
    );
    assert_eq!(
        cleared,
        Some(true),
        "the call after the pause left {} in pg_wal",
        abandoned.display()
    );
}

#[test]
fn on_a_small_pg_wal_the_fetcher_leaves_its_reserve_free() {
    let lab = Lab::new("tm-prefetch-space-", &common::binaries()).unwrap();
    // Frequent checkpoints, so the recovering server has restartpoints and frees pg_wal often;
    // and far more prefetch than the file system of pg_wal can hold.
    let options = PrimaryOptions::default()
        .setting("max_wal_size", "8MB")
        .setting("min_wal_size", "2MB")
        .repo_extra("\n[restore]\nprefetch = 64\n");
    let mut primary = archiving_primary(&lab, &options).unwrap();
    let report = lab.tidemark(&["backup"]).unwrap();
    assert!(report.starts_with("backup "), "{report}");
    primary
        .query("CREATE TABLE filler AS SELECT g AS id, repeat(md5(g::text), 12) AS pad FROM generate_series(1, 150000) g")
        .unwrap();
    testkit::switch_and_wait_for_archive(&primary).unwrap();
    let content_query = "SELECT count(*) || '/' || sum(length(pad)) FROM filler";
    let expected = primary.query(content_query).unwrap();
    primary.stop().unwrap();

    // pg_wal on a file system of 40 MiB: the server needs a part, 64 segments do not fit.
    let (pgdata, _walfs) = restore(&lab, "restored", 40 << 20);
    let plan = plan_of(&pgdata);
    assert!(plan.len() >= 60, "too little WAL: {} segments", plan.len());
    let spool = spool(&pgdata);
    let mut restored =
        ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", pgdata).unwrap();
    restored
        .configure(&[("max_wal_size", "8MB"), ("min_wal_size", "2MB")])
        .unwrap();
    // Replay waits after the first segment until the fetcher has stopped for want of room
    // (or, before, ran out of it).
    let gate = Gate::new(&lab);
    let mut waited = false;
    recover_through_gate(&lab, &mut restored, &gate, |_| {
        if waited {
            return;
        }
        waited = true;
        let deadline = Instant::now() + common::PATIENCE;
        loop {
            let log = fs::read_to_string(spool.join("fetcher.log")).unwrap_or_default();
            if log.contains("prefetch holds back") || log.contains("No space left on device") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the fetcher never filled pg_wal:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert_eq!(restored.query(content_query).unwrap(), expected);
    let fetcher_log = fs::read_to_string(spool.join("fetcher.log")).unwrap();
    let server_log = server_log(&restored);
    for log in [&fetcher_log, &server_log] {
        assert!(!log.contains("No space left on device"), "{log}");
    }
    assert!(fetcher_log.contains("prefetch holds back"), "{fetcher_log}");
    assert_eq!(common::tidemark_errors(&restored), Vec::<String>::new());
    let handed_over = prefetched(&server_log).len();
    println!(
        "{} planned segments, {handed_over} handed over from the spool; the fetcher said:\n{fetcher_log}",
        plan.len()
    );
    assert!(handed_over > 0, "no segment came from the spool");
    restored.stop().unwrap();
}

/// Moves everything in directory `from` into directory `to`, keeping owners and modes.
fn move_contents(from: &Path, to: &Path) {
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(copied.success());
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fs::remove_dir_all(&path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn recovery_follows_a_timeline_switch_with_prefetched_segments() {
    let lab = Lab::new("tm-prefetch-timeline-", &common::binaries()).unwrap();
    archived_workload(&lab, 1000);

    // A restore promotes to timeline 2 and keeps writing (and archiving into the stanza).
    let (_first, _first_wal) = restore(&lab, "first", ROOMY_WAL);
    let mut promoted = recover(&lab, "first");
    let expected = write_and_archive(&promoted, 1500);
    let timeline = promoted.checkpoint_timeline().unwrap();
    assert_eq!(timeline, "2");
    promoted.stop().unwrap();

    // From the same (timeline 1) backup, recovery follows timeline 1 into timeline 2.
    let (second, _second_wal) = restore(&lab, "second", ROOMY_WAL);
    let plan = fs::read_to_string(spool(&second).join("plan")).unwrap();
    assert!(
        plan.lines().any(|s| s.starts_with("00000001"))
            && plan.lines().any(|s| s.starts_with("00000002")),
        "the plan does not cross the switch:\n{plan}"
    );
    let recovered = recover(&lab, "second");
    assert_eq!(recovered.query(CONTENT).unwrap(), expected);
    let log = server_log(&recovered);
    assert_eq!(common::tidemark_errors(&recovered), Vec::<String>::new());
    let handed_over = prefetched(&log);
    assert!(
        handed_over.iter().any(|s| s.starts_with("00000002")),
        "no timeline 2 segment came from the spool: {handed_over:?}"
    );
}
