//! `tidemark-restore` follows PostgreSQL's exit-code contract on real PostgreSQL 15 recoveries:
//! exit 1 means only "not archived". A real failure (a repository that refuses or does not
//! answer, a damaged object) during an archive recovery exits 128, which PostgreSQL treats as
//! fatal: recovery stops where it is, never ends early and promotes, and resumes once the cause
//! is fixed. On a standby the same failure exits 1, and the standby keeps asking. By hand it
//! exits 1 with its one error line.

mod common;
#[path = "restore_gate/mod.rs"]
mod restore_gate;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::s3::{repo_section, start_server};
use restore_gate::Gate;
use testkit::Lab;
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::{ThrowawayCluster, give_to_owner, run_as_owner};

/// What pgbench leaves in the database, compared between primary and restored copy.
const CONTENT: &str = "SELECT (SELECT count(*) || '/' || sum(abalance) FROM pgbench_accounts) || ' ' || \
     (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history)";

/// A primary with 1 MiB segments archiving into the lab's stanza through `tidemark-archive`,
/// with pgbench tables and a backup. `config_extra` goes into the configuration file after
/// the `[repo]` lines.
fn primary_with_backup(lab: &Lab, config_extra: &str) -> ThrowawayCluster {
    let primary =
        archiving_primary(lab, &PrimaryOptions::default().repo_extra(config_extra)).unwrap();
    common::wait_ok(common::pgbench(&primary, &["-i", "-q", "-s", "2"]));
    let report = lab.tidemark(&["backup"]).unwrap();
    assert!(report.starts_with("backup "), "{report}");
    primary
}

/// Runs `transactions` pgbench transactions per client (2 clients), makes sure everything is
/// archived, and stops the primary; returns the database content.
fn write_archive_and_stop(mut primary: ThrowawayCluster, transactions: u32) -> String {
    let transactions = transactions.to_string();
    common::wait_ok(common::pgbench(
        &primary,
        &["-n", "-c", "2", "-t", &transactions],
    ));
    testkit::switch_and_wait_for_archive(&primary).unwrap();
    let content = primary.query(CONTENT).unwrap();
    primary.stop().unwrap();
    content
}

/// A primary with a backup and 1500 pgbench transactions archived after it, stopped, and its
/// backup restored into `name`: the content recovery must reach, the data directory, and the
/// segments the plan lists.
fn restored_after_workload(lab: &Lab, name: &str) -> (String, PathBuf, Vec<String>) {
    let primary = primary_with_backup(lab, "");
    let expected = write_archive_and_stop(primary, 1500);
    let (pgdata, plan) = restore(lab, name);
    (expected, pgdata, plan)
}

/// `tidemark restore` of the newest backup to the end of the archive into `<lab>/<name>`;
/// returns the data directory and the segments planned, in order.
fn restore(lab: &Lab, name: &str) -> (PathBuf, Vec<String>) {
    let pgdata = lab.tmp.path().join(name);
    lab.tidemark(&["restore", "--pgdata", pgdata.to_str().unwrap()])
        .unwrap();
    let plan = fs::read_to_string(pgdata.join("pg_wal/.tidemark/restore/main/plan"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(
        plan.len() >= 8,
        "the plan is too short for this test: {plan:?}"
    );
    (pgdata, plan)
}

/// The file holding the archived object of `name` in the lab's local repository.
fn object_path(lab: &Lab, name: &str) -> PathBuf {
    let mut pending = vec![lab.repo_path.join("main/wal")];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                return path;
            }
        }
    }
    panic!("{name} is not archived in {}", lab.repo_path.display());
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The server log from byte `from` on.
fn log_since(cluster: &ThrowawayCluster, from: u64) -> String {
    let bytes = fs::read(cluster.log_file()).unwrap_or_default();
    String::from_utf8_lossy(&bytes[(from as usize).min(bytes.len())..]).into_owned()
}

fn log_len(cluster: &ThrowawayCluster) -> u64 {
    fs::metadata(cluster.log_file()).map_or(0, |m| m.len())
}

/// The Tidemark error lines of a log (`tidemark-restore: ERROR: ...`, `tidemark: ERROR: ...`).
fn tidemark_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.starts_with("tidemark") && l.contains(": ERROR: "))
        .collect()
}

/// Starts `cluster` and waits until it has stopped again; fails at once if it promotes. A
/// server whose recovery fails before it is consistent makes `pg_ctl start` fail too, so its
/// result is not looked at: the log and the control file say what happened.
fn start_until_it_stops(cluster: &mut ThrowawayCluster) {
    let _ = cluster.start();
    wait_until_stopped(cluster);
}

fn wait_until_stopped(cluster: &ThrowawayCluster) {
    let deadline = Instant::now() + common::PATIENCE;
    let pid_file = cluster.data_dir().join("postmaster.pid");
    while pid_file.exists() {
        let log = fs::read_to_string(cluster.log_file()).unwrap_or_default();
        assert!(
            !log.contains("selected new timeline ID"),
            "the server promoted instead of stopping:\n{log}"
        );
        assert!(
            Instant::now() < deadline,
            "the server did not stop:\n{}",
            cluster.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `pg_controldata` of a data directory.
fn control_data(lab: &Lab, pgdata: &Path) -> String {
    run_as_owner(
        &lab.pg.path("pg_controldata"),
        &[pgdata.as_os_str()],
        lab.tmp.path(),
    )
    .unwrap()
}

/// Sets `restore_command`, starts `cluster` until recovery stops it, and returns what the
/// server logged meanwhile.
fn start_with_restore_command(cluster: &mut ThrowawayCluster, restore_command: &str) -> String {
    cluster
        .configure(&[("restore_command", restore_command)])
        .unwrap();
    let from = log_len(cluster);
    start_until_it_stops(cluster);
    log_since(cluster, from)
}

/// Checks that the server, whose log since its last start is `log`, stopped its archive
/// recovery at `file` with `program`'s one error line saying `cause`, without ending it.
fn assert_stopped_by(
    lab: &Lab,
    cluster: &ThrowawayCluster,
    log: &str,
    program: &str,
    file: &str,
    cause: &str,
) {
    assert!(
        log.contains(&format!(
            "FATAL:  could not restore file \"{file}\" from archive: child process exited with exit code 128"
        )),
        "PostgreSQL did not stop at {file}:\n{log}"
    );
    let errors = tidemark_errors(log);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = errors[0];
    assert!(
        error.starts_with(&format!("{program}: ERROR: restore {file}: "))
            && error.contains(cause)
            && error.ends_with(
                "; archive recovery stops here (exit code 128) rather than take this for the end of the archive and promote: fix the cause and start the server again, and recovery resumes where it stopped"
            ),
        "{error}"
    );
    for ending in ["archive recovery complete", "selected new timeline ID"] {
        assert!(!log.contains(ending), "recovery ended:\n{log}");
    }
    let control = control_data(lab, cluster.data_dir());
    assert!(
        control.contains("Database cluster state:               in archive recovery")
            && control.contains("Latest checkpoint's TimeLineID:       1"),
        "{control}"
    );
    assert!(cluster.data_dir().join("recovery.signal").exists());
}

#[test]
fn archive_recovery_stops_at_a_failure_instead_of_promoting_and_resumes_once_it_is_fixed() {
    let lab = Lab::new("tm-restore-failures-", &common::binaries()).unwrap();
    let (expected, pgdata, plan) = restored_after_workload(&lab, "restored");

    // One segment the server's user may not read, a later one damaged in the repository.
    let unreadable = &plan[plan.len() / 3];
    let unreadable_path = object_path(&lab, unreadable);
    let mode = fs::metadata(&unreadable_path).unwrap().permissions().mode();
    set_mode(&unreadable_path, 0o000);
    let damaged = &plan[2 * plan.len() / 3];
    let damaged_path = object_path(&lab, damaged);
    let good = fs::read(&damaged_path).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    fs::write(&damaged_path, &bad).unwrap();

    // By hand, outside any recovery, a failure is exit 1 and the error line alone.
    let scratch = lab.tmp.path().join("by-hand");
    let by_hand = common::run(
        &lab,
        "tidemark-restore",
        &[
            "--config",
            lab.config_path.to_str().unwrap(),
            "--stanza",
            "main",
            unreadable,
            scratch.to_str().unwrap(),
        ],
    );
    assert_eq!(by_hand.code, Some(1), "{by_hand:?}");
    let line = by_hand.only_line();
    assert!(
        line.starts_with(&format!("tidemark-restore: ERROR: restore {unreadable}: "))
            && line.contains("permission denied")
            && !line.contains("exit code"),
        "{line}"
    );
    assert!(!scratch.exists());

    let mut restored =
        ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", pgdata).unwrap();
    // A restore_command that cannot even be read (no %p) stops recovery at its first call.
    let restore_command = lab.restore_command();
    let without_destination = restore_command.strip_suffix(" %p").unwrap();
    let log = start_with_restore_command(&mut restored, without_destination);
    assert!(
        log.contains("FATAL:  could not restore file \"00000002.history\" from archive: child process exited with exit code 128"),
        "{log}"
    );
    assert!(
        log.contains("tidemark-restore: ERROR: the following required arguments were not provided: <DESTINATION>"),
        "{log}"
    );
    let log = start_with_restore_command(&mut restored, &restore_command);
    assert_stopped_by(
        &lab,
        &restored,
        &log,
        "tidemark-restore",
        unreadable,
        "permission denied",
    );

    // `tidemark archive-get`, which `tidemark restore` writes when no tidemark-restore is
    // beside it, keeps the same contract.
    set_mode(&unreadable_path, mode);
    let archive_get = format!(
        "{} --config {} --stanza main archive-get %f %p",
        lab.bin_dir.join("tidemark").display(),
        lab.config_path.display()
    );
    let log = start_with_restore_command(&mut restored, &archive_get);
    assert_stopped_by(
        &lab,
        &restored,
        &log,
        "tidemark",
        damaged,
        "is damaged; nothing was written to pg_wal/RECOVERYXLOG: its stored bytes are damaged",
    );

    fs::write(&damaged_path, &good).unwrap();
    let from = log_len(&restored);
    restored.start().unwrap();
    restored.wait_for_promotion(common::PATIENCE).unwrap();
    assert_eq!(restored.query(CONTENT).unwrap(), expected);
    let log = log_since(&restored, from);
    assert_eq!(tidemark_errors(&log), Vec::<&str>::new());
    assert!(log.contains(&format!("restored log file \"{damaged}\" from archive")));
}

#[test]
fn a_standby_keeps_asking_through_a_failure_without_promoting_and_catches_up_once_it_is_fixed() {
    let lab = Lab::new("tm-restore-standby-", &common::binaries()).unwrap();
    let (expected, pgdata, plan) = restored_after_workload(&lab, "standby");
    fs::remove_file(pgdata.join("recovery.signal")).unwrap();
    fs::write(pgdata.join("standby.signal"), b"").unwrap();
    give_to_owner(&pgdata.join("standby.signal")).unwrap();
    // Past the backup's end, so the standby is open for queries when it gets there.
    let unreadable = &plan[plan.len() / 2];
    let unreadable_path = object_path(&lab, unreadable);
    let mode = fs::metadata(&unreadable_path).unwrap().permissions().mode();
    set_mode(&unreadable_path, 0o000);

    let mut standby = ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "standby", pgdata).unwrap();
    standby
        .configure(&[("wal_retrieve_retry_interval", "100ms")])
        .unwrap();
    standby.start().unwrap();
    // It asks again and again, each time with the error line, and stays up in recovery.
    let error_start = format!("tidemark-restore: ERROR: restore {unreadable}: ");
    let deadline = Instant::now() + common::PATIENCE;
    let log = loop {
        let log = fs::read_to_string(standby.log_file()).unwrap();
        if log.lines().filter(|l| l.starts_with(&error_start)).count() >= 3 {
            break log;
        }
        assert!(Instant::now() < deadline, "no retries:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for error in tidemark_errors(&log) {
        assert!(
            error.starts_with(&error_start)
                && error.contains("permission denied")
                && error.ends_with(
                    "; the standby asks again after wal_retrieve_retry_interval (exit code 1)"
                ),
            "{error}"
        );
    }
    assert!(!log.contains("FATAL"), "{log}");
    assert_eq!(standby.query("SELECT pg_is_in_recovery()").unwrap(), "t");

    set_mode(&unreadable_path, mode);
    standby
        .wait_for(CONTENT, &expected, common::PATIENCE)
        .unwrap();
    assert_eq!(standby.query("SELECT pg_is_in_recovery()").unwrap(), "t");
    let log = fs::read_to_string(standby.log_file()).unwrap();
    assert!(log.contains(&format!("restored log file \"{unreadable}\" from archive")));
    assert!(!log.contains("selected new timeline ID"), "{log}");
}

#[test]
fn archive_recovery_stops_when_the_bucket_stops_answering_mid_recovery() {
    let mut server = start_server();
    let lab = Lab::new("tm-restore-s3-down-", &common::binaries()).unwrap();
    let mut primary = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
    let archive_command = lab.archive_command();
    primary
        .configure(&[
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
        ])
        .unwrap();
    primary.start().unwrap();
    // Prefetch off: the call after the stop goes to the bucket itself, at once.
    let stanza = format!(
        "[stanza.main]\npgdata = \"{}\"\nconninfo = \"{}\"\n",
        primary.data_dir().display(),
        primary.conninfo()
    );
    let write_config = |endpoint: &str| {
        common::write_config_file(
            &lab.config_path,
            &format!(
                "[repo]\n{}\n[restore]\nprefetch = 0\n{stanza}",
                repo_section(endpoint, "prod")
            ),
            0o600,
        )
    };
    write_config(&server.endpoint);
    lab.tidemark(&["stanza-create"]).unwrap();
    common::wait_ok(common::pgbench(&primary, &["-i", "-q", "-s", "2"]));
    lab.tidemark(&["backup"]).unwrap();
    let expected = write_archive_and_stop(primary, 1500);
    let (pgdata, plan) = restore(&lab, "restored");
    let stop_after = plan[plan.len() / 2].clone();
    let next = plan[plan.len() / 2 + 1].clone();

    let gate = Gate::new(&lab);
    let mut restored =
        ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", pgdata).unwrap();
    restored
        .configure(&[("restore_command", &gate.restore_command(&lab))])
        .unwrap();
    std::thread::scope(|scope| {
        let starting = scope.spawn(|| {
            let _ = restored.start();
        });
        // Replay goes on segment by segment until `stop_after` is restored; while PostgreSQL
        // waits at the gate after it, the bucket stops answering.
        loop {
            let arrival = gate
                .next_arrival(common::PATIENCE)
                .expect("recovery stalled before reaching the segment to stop after");
            let reached = arrival.file_name == stop_after;
            if reached {
                server.stop();
            }
            gate.release(&arrival);
            if reached {
                break;
            }
        }
        starting.join().unwrap();
    });
    wait_until_stopped(&restored);
    let log = fs::read_to_string(restored.log_file()).unwrap();
    assert_stopped_by(
        &lab,
        &restored,
        &log,
        "tidemark-restore",
        &next,
        "cannot reach the endpoint",
    );

    // The bucket answers again (from another port): recovery resumes and reaches the end.
    server.restart();
    write_config(&server.endpoint);
    restored
        .configure(&[("restore_command", &lab.restore_command())])
        .unwrap();
    let from = log_len(&restored);
    restored.start().unwrap();
    restored.wait_for_promotion(common::PATIENCE).unwrap();
    assert_eq!(restored.query(CONTENT).unwrap(), expected);
    assert_eq!(
        tidemark_errors(&log_since(&restored, from)),
        Vec::<&str>::new()
    );
}
