//! Work-ahead archiving (`[archive] async = true`) when something is wrong, on a real PostgreSQL
//! 15 whose WAL piles up as `.ready` files (archive_mode on, no archive_command), archived by
//! calls of `tidemark-archive` made as PostgreSQL makes them: as its user, in the data
//! directory, with `pg_wal/<name>`. The worker only ever saves time, so whatever keeps a call
//! from using it, the call archives its file itself and says why in one warning line; no call
//! waits without a bound, no worker loops, and no `.ok` vouches for a file to a repository it was
//! not pushed to.
//!
//! Failures are real: a spool under a regular file, a spool directory PostgreSQL's user may not
//! write, a `worker.log` that cannot be opened, a repository it may not write; `flock` failing
//! with ENOLCK (as on NFS without lockd) and slow fsyncs are injected into the real binaries by
//! `strace`, which these tests need.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{PATIENCE, Ran, has_flag, processes};
use testkit::Lab;
use testkit::{ThrowawayCluster, give_to_owner};

/// The flag a work-ahead worker runs with.
const WORKER_FLAG: &str = "--work-ahead-worker";

/// A running cluster with a backlog of `.ready` WAL files, and a configuration with work-ahead on.
struct Backlog {
    /// Declared before `lab` so it is dropped (stopped) before the lab's directory goes.
    cluster: ThrowawayCluster,
    lab: Lab,
    pg_wal: PathBuf,
    /// The cluster owner's uid and gid, which calls run as.
    owner: (u32, u32),
}

impl Backlog {
    /// A cluster that archives nothing itself: every call is the test's.
    fn new(prefix: &str, archive_settings: &str) -> Backlog {
        Backlog::start(prefix, archive_settings, false, |_| {})
    }

    /// A cluster with `archive_settings` in `[archive]` (beside `async = true`), `prepare` run on
    /// its `pg_wal` before it starts; archiving through `tidemark-archive` when `archiving`,
    /// else not at all (`.ready` files pile up for the test's own calls).
    fn start(
        prefix: &str,
        archive_settings: &str,
        archiving: bool,
        prepare: impl FnOnce(&Path),
    ) -> Backlog {
        let lab = Lab::new(prefix, &common::binaries()).unwrap();
        let mut cluster = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
        lab.write_config(cluster.data_dir(), "").unwrap();
        let mut config = fs::read_to_string(&lab.config_path).unwrap();
        config.push_str(&format!("\n[archive]\nasync = true\n{archive_settings}\n"));
        fs::write(&lab.config_path, config).unwrap();
        let archive_command = if archiving {
            lab.archive_command()
        } else {
            String::new()
        };
        cluster
            .configure(&[
                ("archive_mode", "on"),
                ("archive_command", &archive_command),
            ])
            .unwrap();
        let pg_wal = cluster.data_dir().join("pg_wal");
        prepare(&pg_wal);
        cluster.start().unwrap();
        lab.tidemark(&["stanza-create"]).unwrap();
        cluster.query("CREATE TABLE filler (id int)").unwrap();
        let meta = fs::metadata(cluster.data_dir()).unwrap();
        Backlog {
            owner: (meta.uid(), meta.gid()),
            cluster,
            lab,
            pg_wal,
        }
    }

    /// Writes WAL and switches segments `count` times; returns the names of the segments
    /// finished, each already marked `.ready` (or `.done`, when the cluster archives).
    fn make_segments(&self, count: usize) -> Vec<String> {
        (0..count)
            .map(|_| {
                let name = self
                    .cluster
                    .execute_each(&[
                        "INSERT INTO filler SELECT g FROM generate_series(1, 1000) g",
                        "SELECT pg_walfile_name(pg_switch_wal())",
                    ])
                    .unwrap();
                let status = self.pg_wal.join("archive_status");
                wait_until("PostgreSQL to mark {name} ready", || {
                    status.join(format!("{name}.ready")).exists()
                        || status.join(format!("{name}.done")).exists()
                });
                name
            })
            .collect()
    }

    /// The WAL files marked `.ready`, oldest first.
    fn ready(&self) -> Vec<String> {
        let mut names: Vec<String> = list(&self.pg_wal.join("archive_status"))
            .into_iter()
            .filter_map(|n| n.strip_suffix(".ready").map(str::to_owned))
            .filter(|n| common::is_segment_name(n))
            .collect();
        names.sort();
        names
    }

    /// The default spool directory of the stanza.
    fn spool(&self) -> PathBuf {
        self.pg_wal.join(".tidemark/archive").join(&self.lab.stanza)
    }

    /// `program` run as the cluster owner in the data directory, as PostgreSQL runs
    /// archive_command; started directly (not through `runuser`) so that it can be killed.
    fn as_owner(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .uid(self.owner.0)
            .gid(self.owner.1)
            .current_dir(self.cluster.data_dir())
            .env_remove("TIDEMARK_CONFIG")
            .env_remove("TIDEMARK_STANZA")
            .stdin(Stdio::null());
        command
    }

    /// The archive_command arguments for the WAL file `name`.
    fn archive_args(&self, name: &str) -> Vec<String> {
        vec![
            "--config".to_owned(),
            self.lab.config_path.display().to_string(),
            "--stanza".to_owned(),
            self.lab.stanza.clone(),
            format!("pg_wal/{name}"),
        ]
    }

    fn archive_program(&self) -> PathBuf {
        self.lab.bin_dir.join("tidemark-archive")
    }

    /// Archives `name` as PostgreSQL would.
    fn call(&self, name: &str) -> Ran {
        let mut command = self.as_owner(self.archive_program());
        command.args(self.archive_args(name));
        self.run_bounded(command)
    }

    /// Archives `name` as PostgreSQL would, under `strace` with `strace_args`.
    fn call_under_strace(&self, strace_args: &[&str], name: &str) -> Ran {
        let mut command = self.as_owner(strace());
        command
            .args(["-f", "-qq", "-o", "/dev/null"])
            .args(strace_args)
            .arg(self.archive_program())
            .args(self.archive_args(name));
        self.run_bounded(command)
    }

    /// Runs `command` to its end, or fails the test after [`PATIENCE`] (a call that hangs),
    /// killing it and every process of this test's configuration first.
    fn run_bounded(&self, mut command: Command) -> Ran {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the call");
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut text = String::new();
            stdout.read_to_string(&mut text).map(|_| text)
        });
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).map(|_| text)
        });
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                self.kill_everything();
                let _ = child.wait();
                let stderr = err.join().unwrap().unwrap_or_default();
                panic!(
                    "the call did not finish within {PATIENCE:?} (killed); its stderr: {stderr:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ran {
            code: status.code(),
            stdout: out.join().unwrap().expect("read the call's stdout"),
            stderr: err.join().unwrap().expect("read the call's stderr"),
        }
    }

    /// Kills every process whose arguments name this test's configuration file or `pg_wal`:
    /// calls and workers of this test only.
    fn kill_everything(&self) {
        let config = self.lab.config_path.as_os_str().as_encoded_bytes().to_vec();
        let pg_wal = self.pg_wal.as_os_str().as_encoded_bytes().to_vec();
        for (pid, args) in processes() {
            if args.iter().any(|a| *a == config || *a == pg_wal) {
                kill(pid, rustix::process::Signal::KILL);
            }
        }
    }

    /// The work-ahead workers of this test's `pg_wal` that run (not `strace` running one).
    fn workers(&self) -> Vec<i32> {
        processes()
            .into_iter()
            .filter(|(pid, args)| {
                args.first().is_some_and(|a| !a.ends_with(b"strace"))
                    && has_flag(args, WORKER_FLAG, &self.pg_wal)
                    && is_running(*pid)
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    fn wait_for_no_worker(&self) {
        wait_until("the work-ahead worker to exit", || {
            self.workers().is_empty()
        });
    }
}

/// Where the repository at `repo` keeps segment `name`.
fn archived(repo: &Path, name: &str) -> bool {
    repo.join("main/wal").join(&name[..16]).join(name).is_file()
}

/// The names in `dir`; a directory that cannot be read fails the test.
fn list(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
                .file_name()
                .into_string()
                .unwrap()
        })
        .collect()
}

/// Whether process `pid` exists and is not a zombie waiting to be reaped.
fn is_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name in parentheses, which may hold anything.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

fn kill(pid: i32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid).expect("a process ID");
    let _ = rustix::process::kill_process(pid, signal);
}

/// Polls `done` until it holds; fails the test after [`PATIENCE`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `strace`, which these tests need to inject failures: its absence fails them.
fn strace() -> &'static str {
    let found = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "strace is not installed: these tests inject failures with it (apt-get install strace)"
    );
    "strace"
}

/// Makes two segments and archives each with `call`, which must archive it directly for `why`
/// (see [`assert_archived_directly`]); returns what each call printed.
fn two_calls_archive_directly(
    backlog: &Backlog,
    why: &str,
    call: impl Fn(&str) -> Ran,
) -> Vec<Ran> {
    let segments = backlog.make_segments(2);
    segments
        .iter()
        .map(|name| {
            let ran = call(name);
            assert_archived_directly(&ran, name, why);
            assert!(archived(&backlog.lab.repo_path, name), "{name}");
            ran
        })
        .collect()
}

/// The call's stderr is one warning saying why the worker was not used, then the line of a
/// direct push.
fn assert_archived_directly(ran: &Ran, name: &str, why: &str) {
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one warning, one INFO line: {ran:?}");
    assert!(
        lines[0].starts_with("tidemark-archive: WARN: work-ahead: ")
            && lines[0].contains(why)
            && lines[0].ends_with(&format!("; archiving {name} without the worker")),
        "{ran:?}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "tidemark-archive: INFO: archived {name} to stanza 'main' ("
        )) && !lines[1].contains("work-ahead"),
        "{ran:?}"
    );
}

/// Creates `dir` and its missing parents, each given to the cluster owner.
fn create_owned_dirs(dir: &Path) {
    let mut missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    missing.reverse();
    for d in missing {
        fs::create_dir(d).unwrap();
        give_to_owner(d).unwrap();
    }
}

#[test]
fn a_spool_under_a_regular_file_leaves_every_call_archiving_directly() {
    let backlog = Backlog::new("tm-wa-spoolfile-", "");
    let blocker = backlog.lab.tmp.path().join("blocker");
    fs::write(&blocker, b"a file, not a directory").unwrap();
    let mut config = fs::read_to_string(&backlog.lab.config_path).unwrap();
    config.push_str(&format!("spool_path = \"{}/spool\"\n", blocker.display()));
    fs::write(&backlog.lab.config_path, config).unwrap();
    two_calls_archive_directly(&backlog, "Not a directory", |name| backlog.call(name));
    assert!(backlog.workers().is_empty(), "no worker could start");
}

#[test]
fn a_spool_it_may_not_write_leaves_the_call_archiving_directly_without_a_loop() {
    let backlog = Backlog::new("tm-wa-readonly-", "workers = 1");
    let spool = backlog.spool();
    create_owned_dirs(spool.parent().unwrap());
    // The directory is root's (PostgreSQL's user may not create files in it); the log and the
    // lock are there and its own, so a worker starts, and finds it cannot record anything.
    fs::create_dir(&spool).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o755)).unwrap();
    for file in ["worker.log", "worker.lock"] {
        fs::write(spool.join(file), b"").unwrap();
        fs::set_permissions(spool.join(file), fs::Permissions::from_mode(0o600)).unwrap();
        give_to_owner(&spool.join(file)).unwrap();
    }
    let calls =
        two_calls_archive_directly(&backlog, "Permission denied", |name| backlog.call(name));
    for ran in &calls {
        assert!(
            ran.stderr.contains("work-ahead: the worker failed"),
            "{ran:?}"
        );
    }
    backlog.wait_for_no_worker();
    // Each call started one worker, which wrote its start line and its error, and stopped.
    let log = fs::read_to_string(spool.join("worker.log")).unwrap();
    assert_eq!(log.lines().count(), 2 * calls.len(), "worker.log: {log}");
    assert!(
        log.lines()
            .filter(|l| !l.starts_with("-- "))
            .all(|l| l.contains("ERROR: work-ahead worker: write to spool directory")),
        "worker.log: {log}"
    );
    let left: BTreeSet<String> = list(&spool).into_iter().collect();
    assert_eq!(
        left,
        BTreeSet::from(["worker.lock".to_owned(), "worker.log".to_owned()]),
        "nothing else, no temporary file, is in the spool"
    );
}

#[test]
fn a_file_system_that_cannot_lock_makes_the_call_archive_directly() {
    let backlog = Backlog::new("tm-wa-enolck-", "");
    // Every flock of the call fails as on NFS without lockd; it must not take that for a
    // worker holding the lock and wait for it forever.
    two_calls_archive_directly(&backlog, "No locks available", |name| {
        backlog.call_under_strace(&["-e", "inject=flock:error=ENOLCK"], name)
    });
    assert!(backlog.workers().is_empty(), "no worker was started");
}

#[test]
fn a_worker_that_cannot_start_leaves_the_call_archiving_directly() {
    let backlog = Backlog::new("tm-wa-nospawn-", "");
    let spool = backlog.spool();
    // A worker's log that cannot be opened: no worker can be started.
    create_owned_dirs(&spool.join("worker.log"));
    two_calls_archive_directly(&backlog, "worker.log: Is a directory", |name| {
        backlog.call(name)
    });
    assert!(backlog.workers().is_empty(), "no worker could start");
}

#[test]
fn an_error_from_before_an_outage_ended_does_not_fail_the_call_after_it() {
    let backlog = Backlog::new("tm-wa-stale-", "workers = 1");
    let segments = backlog.make_segments(4);
    let stanza_dir = backlog.lab.repo_path.join("main");
    // The outage: the repository cannot be written.
    fs::set_permissions(&stanza_dir, fs::Permissions::from_mode(0o555)).unwrap();
    let ran = backlog.call(&segments[0]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.only_line()
            .starts_with("tidemark-archive: ERROR: archive "),
        "{ran:?}"
    );
    assert!(ran.stderr.contains("permission denied"), "{ran:?}");
    // The worker tried, and failed, every file of the backlog.
    let spool = backlog.spool();
    wait_until("the worker to fail every other file", || {
        segments[1..]
            .iter()
            .all(|name| spool.join(format!("{name}.error")).exists())
    });
    fs::set_permissions(&stanza_dir, fs::Permissions::from_mode(0o755)).unwrap();
    // The outage is over: each file's next call archives it.
    for name in &segments {
        let ran = backlog.call(name);
        assert_eq!(ran.code, Some(0), "{name}: {ran:?}");
        assert!(
            ran.only_line()
                .starts_with(&format!("tidemark-archive: INFO: archived {name} ")),
            "{ran:?}"
        );
        assert!(archived(&backlog.lab.repo_path, name), "{name}");
    }
}

#[test]
fn the_worker_leaves_a_stopped_server_between_pushes_and_keeps_no_directory_busy() {
    let mut backlog = Backlog::new("tm-wa-stop-", "workers = 1");
    backlog.make_segments(12);
    let ready = backlog.ready();
    let log_path = backlog.lab.tmp.path().join("worker-stderr.log");
    let log = fs::File::create(&log_path).unwrap();
    // The worker started as a call starts it, in the data directory, with every fsync slowed
    // down so that the backlog takes far longer to push than the server takes to stop.
    let mut worker = backlog.as_owner(strace());
    worker
        .args(["-f", "-qq", "-o", "/dev/null"])
        .args(["-e", "inject=fsync,fdatasync:delay_enter=300ms"])
        .arg(backlog.archive_program())
        .args(["--config", backlog.lab.config_path.to_str().unwrap()])
        .args(["--stanza", "main", WORKER_FLAG])
        .arg(&backlog.pg_wal)
        .stdout(Stdio::null())
        .stderr(log);
    let mut worker = worker.spawn().unwrap();
    wait_until("the worker to push a segment", || {
        ready.iter().any(|n| archived(&backlog.lab.repo_path, n))
    });
    let pids = backlog.workers();
    assert_eq!(pids.len(), 1, "one worker runs: {pids:?}");
    let cwd = fs::read_link(format!("/proc/{}/cwd", pids[0])).unwrap();
    assert_eq!(cwd, Path::new("/"), "the worker's working directory");
    let before = ready
        .iter()
        .filter(|n| archived(&backlog.lab.repo_path, n))
        .count();
    backlog.cluster.stop().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            backlog.kill_everything();
            panic!("the worker did not exit within {PATIENCE:?} of the server's stop");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let after = ready
        .iter()
        .filter(|n| archived(&backlog.lab.repo_path, n))
        .count();
    println!(
        "{} segments ready, {before} pushed when the server was stopped, {after} when the worker exited",
        ready.len()
    );
    assert!(status.success(), "the worker: {status}");
    assert!(
        after < ready.len(),
        "the worker pushed the whole backlog ({after} of {}) for a server that had stopped",
        ready.len()
    );
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("work-ahead worker leaves: the server stopped"),
        "the worker's log: {log}"
    );
}

#[test]
fn the_spool_and_the_logs_stay_bounded_while_the_worker_lives() {
    const SWITCHES: usize = 30;
    const FILLER: usize = 5 << 20;
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let host = tidemark::storage::durable::host_name();
    let leftover = format!(".000000010000000000000001.ok.{host}.{dead}.0.tmp");
    let backlog = Backlog::start("tm-wa-bounded-", "workers = 1", true, |pg_wal| {
        let spool = pg_wal.join(".tidemark/archive/main");
        create_owned_dirs(&spool);
        for (name, bytes) in [
            ("worker.log", vec![b'x'; FILLER]),
            (leftover.as_str(), vec![]),
        ] {
            fs::write(spool.join(name), bytes).unwrap();
            give_to_owner(&spool.join(name)).unwrap();
        }
    });
    let spool = backlog.spool();
    let status = backlog.pg_wal.join("archive_status");
    let mut most_stale = 0;
    let mut seen_alive = 0;
    for _ in 0..SWITCHES {
        backlog.make_segments(1);
        // `.ok` files of WAL files PostgreSQL no longer wants archived, while a worker lives.
        let alive = !backlog.workers().is_empty();
        let stale = list(&spool)
            .iter()
            .filter_map(|n| n.strip_suffix(".ok"))
            .filter(|name| !status.join(format!("{name}.ready")).exists())
            .count();
        if alive {
            seen_alive += 1;
            most_stale = most_stale.max(stale);
        }
    }
    testkit::switch_and_wait_for_archive(&backlog.cluster).unwrap();
    println!(
        "{seen_alive} of {SWITCHES} looks found a worker; at most {most_stale} stale .ok files"
    );
    assert!(seen_alive > 0, "no look found a worker alive");
    assert!(
        most_stale <= 5,
        "{most_stale} .ok files of WAL files already archived were left while the worker lived"
    );
    // The outgrown log was moved aside when the first worker started, and a killed writer's
    // temporary file removed.
    let log = fs::metadata(spool.join("worker.log")).unwrap().len();
    assert!(log < 1 << 20, "worker.log is {log} bytes");
    let old = fs::metadata(spool.join("worker.log.old")).unwrap().len();
    assert!(old >= FILLER as u64, "worker.log.old is {old} bytes");
    assert!(!spool.join(&leftover).exists(), "{leftover} is left");
}

#[test]
fn an_ok_from_the_repository_before_a_repoint_vouches_for_nothing_in_the_new_one() {
    let backlog = Backlog::new("tm-wa-repoint-", "workers = 1");
    let segments = backlog.make_segments(3);
    let old_repo = backlog.lab.repo_path.clone();
    let spool = backlog.spool();
    let ran = backlog.call(&segments[0]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    // The worker pushed the whole backlog to the old repository and vouched for it.
    wait_until("the worker to push the backlog", || {
        segments
            .iter()
            .all(|name| spool.join(format!("{name}.ok")).exists())
    });
    // It lingers 3 s for more work, time enough to find it and hold it still.
    let old_workers = backlog.workers();
    assert_eq!(old_workers.len(), 1, "the worker lingers: {old_workers:?}");
    let old_worker = old_workers[0];
    // Held still while the configuration changes under it and new WAL becomes ready.
    kill(old_worker, rustix::process::Signal::STOP);
    let new_repo = backlog.lab.tmp.path().join("new-repo");
    let config = fs::read_to_string(&backlog.lab.config_path).unwrap();
    let repointed = config.replace(
        &format!("path = \"{}\"", old_repo.display()),
        &format!("path = \"{}\"", new_repo.display()),
    );
    assert_ne!(config, repointed);
    fs::write(&backlog.lab.config_path, repointed).unwrap();
    backlog.lab.tidemark(&["stanza-create"]).unwrap();
    let later = backlog.make_segments(1);
    kill(old_worker, rustix::process::Signal::CONT);
    wait_until("the old worker to exit", || !is_running(old_worker));
    let log = fs::read_to_string(spool.join("worker.log")).unwrap();
    assert!(
        log.contains("work-ahead worker leaves: the configuration file changed"),
        "worker.log: {log}"
    );

    for name in segments.iter().chain(&later) {
        let ran = backlog.call(name);
        assert_eq!(ran.code, Some(0), "{name}: {ran:?}");
        assert!(
            archived(&new_repo, name),
            "{name} was reported archived, but the configured repository does not hold it"
        );
    }
    assert!(
        !archived(&old_repo, &later[0]),
        "the old worker pushed {} to the repository no longer configured",
        later[0]
    );
}
