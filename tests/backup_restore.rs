//! `tidemark backup` and `tidemark restore` against a real PostgreSQL 15 whose replication user
//! logs in with SCRAM-SHA-256: restore to a recorded instant gives exactly the rows committed by
//! then (pg_verifybackup and pg_amcheck agree nothing is damaged), tablespaces survive and can
//! move, a second backup of a barely changed database stores little, and every failure —
//! wrong password, another cluster, no WAL senders, a killed backup, a lost connection, a target
//! before the first backup, a non-empty data directory — is one clear line and leaves nothing
//! that looks like a usable backup.

mod common;
mod socket_relay;

use std::fs;
use std::time::Duration;

use common::backups::verify_backup_with_its_wal;
use socket_relay::SocketRelay;

use testkit::Lab;
use testkit::ThrowawayCluster;
use testkit::run_as_owner;
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::steps::{check_rows, start_restored};
use testkit::workload;

/// A running cluster archiving through the lab's tidemark-archive, with a stanza, a
/// replication user `backup` (SCRAM-SHA-256) and a configuration whose conninfo uses it.
fn backed_up_cluster(lab: &Lab) -> ThrowawayCluster {
    let options = PrimaryOptions::default()
        .commit_timestamps()
        .replication_user("backup", "backup secret");
    archiving_primary(lab, &options).unwrap()
}

/// A lab (its directory named from `prefix`) and its [`backed_up_cluster`], with `sql` run in
/// it. Bound as `let (lab, cluster)`, the cluster stops before the lab's directory goes.
fn lab_and_cluster_with(prefix: &str, sql: &str) -> (Lab, ThrowawayCluster) {
    let lab = Lab::new(prefix, &common::binaries()).unwrap();
    let cluster = backed_up_cluster(&lab);
    cluster.query(sql).unwrap();
    (lab, cluster)
}

/// The figures of a `backup complete` line: (files, label).
fn parse_complete_line(line: &str) -> (u64, String) {
    assert!(
        line.starts_with("backup ") && line.contains(" complete: "),
        "{line}"
    );
    let label = line.split_whitespace().nth(1).unwrap().to_owned();
    let files = leading_number(line.split("complete: ").nth(1).unwrap());
    (files, label)
}

/// The number `text` starts with (`984 files, ...`).
fn leading_number(text: &str) -> u64 {
    let word = text.split_whitespace().next().unwrap_or_default();
    word.parse()
        .unwrap_or_else(|e| panic!("{text:?} does not start with a number: {e}"))
}

#[test]
fn backup_stores_every_file_and_a_second_backup_reuses_unchanged_content() {
    let (lab, cluster) = lab_and_cluster_with(
        "tm-backup-",
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 200000) g",
    );
    // Settle hint bits and the visibility map, so that only real changes differ next time.
    cluster.query("VACUUM (FREEZE, ANALYZE)").unwrap();
    cluster.query("CHECKPOINT").unwrap();
    let first = lab.tidemark(&["backup"]).unwrap();
    let (files, first_label) = parse_complete_line(first.trim());
    assert!(files > 900, "{first}");
    cluster
        .query("CREATE TABLE small (id int); INSERT INTO small VALUES (1)")
        .unwrap();
    common::backups::wait_for_the_next_second();
    let second = lab.tidemark(&["backup"]).unwrap();
    let (_, second_label) = parse_complete_line(second.trim());
    assert_ne!(first_label, second_label);

    // Each backup's record exists; the second stored far fewer new bytes than the first.
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    let backups = info["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{info:#}");
    let new = |i: usize| backups[i]["sizes"]["new"].as_u64().unwrap();
    let original = |i: usize| backups[i]["sizes"]["original"].as_u64().unwrap();
    println!(
        "first backup: {} original, {} new; second: {} original, {} new",
        original(0),
        new(0),
        original(1),
        new(1)
    );
    assert!(
        new(1) * 4 < new(0),
        "the second backup stored {} new bytes, the first {}",
        new(1),
        new(0)
    );
}

#[test]
fn restore_to_a_recorded_instant_gives_exactly_the_rows_committed_by_then() {
    let lab = Lab::new("tm-restore-", &common::binaries()).unwrap();
    let history = write_rows_around_a_backup(&lab);
    let pgdata = lab.tmp.path().join("restored");
    let target_time = workload::format_instant(history.instant);
    let plan = plan_then_restore(&lab, &pgdata, &target_time);
    let (wal_start, wal_stop) = check_the_recoverable_window(&lab, &history.rows);
    let pg_verifybackup = lab.pg.path("pg_verifybackup");
    verify_backup_with_its_wal(&lab, &pg_verifybackup, &pgdata, &wal_start, &wal_stop);

    let recovered = start_restored(&lab, "restored", &[]).unwrap();
    check_rows(&recovered, &history.expected)
        .unwrap_or_else(|e| panic!("recovery to {target_time} (seed {}): {e:#}", history.seed));
    assert_eq!(common::tidemark_errors(&recovered), Vec::<String>::new());
    check_recovery_followed_the_plan(&recovered, &plan);
    amcheck_finds_no_damage(&lab, &recovered);
}

/// The rows a restore test writes around its backup, and the instant it restores to.
struct RowHistory {
    rows: Vec<workload::CommittedRow>,
    seed: u64,
    instant: i64,
    expected: Vec<i64>,
}

/// Writes 20 rows, takes a backup, writes 80 more, picks an instant among the later ones
/// (seed printed), archives the last segment and stops the cluster.
fn write_rows_around_a_backup(lab: &Lab) -> RowHistory {
    let mut cluster = backed_up_cluster(lab);
    workload::create_table(&cluster).unwrap();
    cluster
        .query("CREATE INDEX ON tidemark_ledger (written)")
        .unwrap();
    workload::insert_rows(&cluster, 20, Duration::from_millis(10), "before the backup").unwrap();
    let backup = lab.tidemark(&["backup"]).unwrap();
    assert!(backup.starts_with("backup "), "{backup}");
    workload::insert_rows(&cluster, 80, Duration::from_millis(30), "after the backup").unwrap();
    let rows = workload::committed_rows(&cluster).unwrap();
    let seed = fastrand::u64(..);
    println!("the target instant is chosen with seed {seed}");
    let pick = fastrand::Rng::with_seed(seed).usize(5..70);
    let instant = workload::instant_between(&rows, 20 + pick).unwrap();
    let expected = workload::ids_committed_by(&rows, instant);
    testkit::switch_and_wait_for_archive(&cluster).unwrap();
    cluster.stop().unwrap();
    RowHistory {
        rows,
        seed,
        instant,
        expected,
    }
}

/// Asks the planner first (and checks a target before every backup is refused), then
/// restores to `target_time`: the backup restored is the plan's, for the plan's reason.
fn plan_then_restore(lab: &Lab, pgdata: &std::path::Path, target_time: &str) -> serde_json::Value {
    let plan: serde_json::Value = serde_json::from_str(
        &lab.tidemark(&["plan", "--target-time", target_time, "--output", "json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(plan["stop"]["kind"], "before_transaction", "{plan:#}");
    let (code, error) = tidemark_fails(
        lab,
        &lab.config_path,
        &["plan", "--target-time", "2000-01-01 00:00:00+00"],
    );
    assert_eq!(code, Some(1));
    assert!(
        error.starts_with("tidemark: ERROR: plan: no backup ends before the target: the earliest point a restore can reach is the end of backup "),
        "{error}"
    );
    let restored = lab
        .tidemark(&[
            "restore",
            "--pgdata",
            pgdata.to_str().unwrap(),
            "--target-time",
            target_time,
        ])
        .unwrap();
    assert!(
        restored.contains(&format!(
            "restored backup {} into ",
            plan["backup"].as_str().unwrap()
        )) && restored.contains(&format!("chosen because {}", plan["why"].as_str().unwrap())),
        "{restored}"
    );
    assert!(pgdata.join("recovery.signal").exists());
    plan
}

/// `info` shows one window: from the end of the backup to the last archived commit, at or
/// after the last row's (autovacuum may commit after it), with no gap. Returns the backup's
/// first and last WAL segment.
fn check_the_recoverable_window(lab: &Lab, rows: &[workload::CommittedRow]) -> (String, String) {
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    let (wal_start, wal_stop) = (
        info["backups"][0]["wal_start"].as_str().unwrap().to_owned(),
        info["backups"][0]["wal_stop"].as_str().unwrap().to_owned(),
    );
    let windows = info["timelines"][0]["recoverable"].as_array().unwrap();
    assert_eq!(windows.len(), 1, "{info:#}");
    let window = &windows[0];
    assert_eq!(
        window["from_backup"], info["backups"][0]["label"],
        "{info:#}"
    );
    assert_eq!(
        window["from_lsn"], info["backups"][0]["stop_lsn"],
        "{info:#}"
    );
    assert!(window["gap"].is_null(), "{info:#}");
    let last_row = workload::format_instant(rows.last().unwrap().commit_micros);
    let reached = window["to_time"].as_str().unwrap();
    let as_micros = |text: &str| {
        chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .timestamp_micros()
    };
    assert!(
        as_micros(reached) >= as_micros(&last_row),
        "the window ends at {reached}, before the last row's commit at {last_row}"
    );
    let text = lab.tidemark(&["info"]).unwrap();
    assert!(
        text.contains(&format!(
            "recoverable: {} (end of backup {}, {}) .. {reached} (last archived commit or abort, ",
            window["from_time"].as_str().unwrap(),
            window["from_backup"].as_str().unwrap(),
            window["from_lsn"].as_str().unwrap()
        )),
        "{text}"
    );
    (wal_start, wal_stop)
}

/// PostgreSQL stopped where the plan said, having read the segments the plan listed (and,
/// with its read-ahead, at most the one after them).
fn check_recovery_followed_the_plan(recovered: &ThrowawayCluster, plan: &serde_json::Value) {
    let log = fs::read_to_string(recovered.log_file()).unwrap();
    assert!(
        log.contains(&format!(
            "recovery stopping before commit of transaction {}",
            plan["stop"]["xid"]
        )),
        "the plan predicted a stop before transaction {}; the server log says:\n{}",
        plan["stop"]["xid"],
        log.lines()
            .filter(|l| l.contains("recovery stopping"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let planned: Vec<String> = common::planned_segments(plan);
    let mut fetched = common::fetched_segments(&log);
    fetched.sort();
    fetched.dedup();
    let after_last = {
        let last = planned.last().unwrap();
        format!(
            "{}{:08X}",
            &last[..16],
            u32::from_str_radix(&last[16..], 16).unwrap() + 1
        )
    };
    let extra: Vec<&String> = fetched.iter().filter(|f| !planned.contains(f)).collect();
    assert!(
        planned.iter().all(|p| fetched.contains(p)) && extra.iter().all(|e| **e == after_last),
        "planned {planned:?}, PostgreSQL fetched {fetched:?}"
    );
}

/// pg_amcheck checks every heap and index of the restored cluster.
fn amcheck_finds_no_damage(lab: &Lab, recovered: &ThrowawayCluster) {
    let port = recovered.port().to_string();
    run_as_owner(
        &lab.pg.path("pg_amcheck"),
        &[
            "-h".as_ref(),
            recovered.socket_dir().as_os_str(),
            "-p".as_ref(),
            port.as_ref(),
            "-U".as_ref(),
            "postgres".as_ref(),
            "--install-missing".as_ref(),
            "--heapallindexed".as_ref(),
            "postgres".as_ref(),
        ],
        lab.tmp.path(),
    )
    .expect("amcheck finds no damage");
}

/// Runs `tidemark <args>` as the cluster owner; returns (exit code, stderr).
/// Runs `tidemark backup` with `config`: it must fail with exit 1 and exactly the line
/// `expected`, which is returned.
fn backup_refused(lab: &Lab, config: &std::path::Path, expected: &str) -> String {
    let (code, error) = tidemark_fails(lab, config, &["backup"]);
    assert_eq!((code, error.as_str()), (Some(1), expected));
    error
}

fn tidemark_fails(lab: &Lab, config: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut full = vec!["--config", config.to_str().unwrap()];
    full.extend_from_slice(args);
    let ran = common::run(lab, "tidemark", &full);
    (ran.code, ran.stderr.trim_end().to_owned())
}

/// How many chunks the stanza holds (temporary files of unfinished writes left out).
fn stored_blobs(lab: &Lab) -> usize {
    let Ok(fans) = fs::read_dir(lab.repo_path.join("main/blob")) else {
        return 0;
    };
    fans.flat_map(|fan| fs::read_dir(fan.unwrap().path()).unwrap())
        .filter(|blob| {
            !blob
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count()
}

fn backup_count(lab: &Lab) -> usize {
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    info["backups"].as_array().unwrap().len()
}

#[test]
fn a_tablespace_outside_the_data_directory_survives_backup_and_restore() {
    let lab = Lab::new("tm-tblspc-", &common::binaries()).unwrap();
    let mut cluster = backed_up_cluster(&lab);
    let location = lab.tmp.subdir("tablespace").unwrap();
    let oid = cluster.create_tablespace("outside", &location).unwrap();
    cluster
        .query("CREATE TABLE far (id int PRIMARY KEY, note text) TABLESPACE outside")
        .unwrap();
    cluster
        .query("INSERT INTO far SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
        .unwrap();
    let checksum = cluster
        .query("SELECT md5(string_agg(note, ',' ORDER BY id)) FROM far")
        .unwrap();
    common::backups::back_up_and_stop(&lab, &mut cluster);

    // Its original location is not empty (the cluster still uses it): restoring there is
    // refused, and not even --force clears a location it was not given.
    let pgdata = lab.tmp.path().join("restored");
    let expected = format!(
        "tidemark: ERROR: restore: tablespace {oid}'s location {0} is not empty, and restore never clears a location it was not given: restore it elsewhere with --tablespace-map {oid}=DIR, or in place with --tablespace-map {oid}={0} and --delta or --force",
        location.display()
    );
    for extra in [None, Some("--force"), Some("--delta")] {
        let mut args = vec!["restore", "--pgdata", pgdata.to_str().unwrap()];
        args.extend(extra);
        let (code, error) = tidemark_fails(&lab, &lab.config_path, &args);
        assert_eq!(
            (code, error.as_str()),
            (Some(1), expected.as_str()),
            "{extra:?}"
        );
    }
    assert!(
        fs::read_dir(&location).unwrap().next().is_some(),
        "the live tablespace was touched"
    );
    assert!(
        !pgdata.exists(),
        "a refused restore created {}",
        pgdata.display()
    );

    let moved = lab.tmp.path().join("tablespace-moved");
    let mapping = format!("{oid}={}", moved.display());
    lab.tidemark(&[
        "restore",
        "--pgdata",
        pgdata.to_str().unwrap(),
        "--tablespace-map",
        &mapping,
    ])
    .unwrap();
    testkit::give_to_owner(&moved).unwrap();
    let restored = start_restored(&lab, "restored", &[]).unwrap();
    assert_eq!(
        restored
            .query("SELECT md5(string_agg(note, ',' ORDER BY id)) FROM far")
            .unwrap(),
        checksum
    );
    assert_eq!(
        restored
            .query(&format!("SELECT pg_tablespace_location({oid})"))
            .unwrap(),
        moved.to_str().unwrap()
    );
}

#[test]
fn failed_or_interrupted_backups_and_refused_restores_leave_nothing_usable_behind() {
    let lab = Lab::new("tm-bfail-", &common::binaries()).unwrap();
    let cluster = backed_up_cluster(&lab);
    let configs = ConfigVariants::new(&lab);
    a_wrong_password_is_refused(&lab, &configs, &cluster);
    another_cluster_is_refused(&lab, &configs, &cluster);
    assert_eq!(backup_count(&lab), 0);

    let stalled = StalledBackups::new(&lab, &configs, &cluster);
    let pgdata = lab.tmp.path().join("restored");
    a_killed_backup_leaves_nothing(&lab, &stalled, &pgdata);
    a_lost_connection_leaves_nothing(&lab, &stalled, &cluster);

    // Now a backup that completes; it reuses what the interrupted ones stored.
    let done = lab.tidemark(&["backup"]).unwrap();
    assert!(!done.contains(" 0 chunks reused"), "{done}");
    assert_eq!(backup_count(&lab), 1);
    refused_restores_change_nothing(&lab, &pgdata);
}

/// Writes variants of the lab's configuration next to it.
struct ConfigVariants<'a> {
    lab: &'a Lab,
    text: String,
}

impl<'a> ConfigVariants<'a> {
    fn new(lab: &'a Lab) -> Self {
        let text = fs::read_to_string(&lab.config_path).unwrap();
        ConfigVariants { lab, text }
    }

    /// Writes the configuration with `from` replaced by `to` to `name`; returns its path.
    fn write(&self, name: &str, edits: &[(&str, &str)]) -> std::path::PathBuf {
        let text = edits
            .iter()
            .fold(self.text.clone(), |text, (from, to)| text.replace(from, to));
        let path = self.lab.tmp.path().join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

/// The socket path of `cluster`, as tidemark names it in errors.
fn endpoint_of(cluster: &ThrowawayCluster) -> String {
    format!(
        "{}/.s.PGSQL.{}",
        cluster.socket_dir().display(),
        cluster.port()
    )
}

fn a_wrong_password_is_refused(lab: &Lab, configs: &ConfigVariants, cluster: &ThrowawayCluster) {
    let wrong_password = configs.write("wrong.toml", &[("backup secret", "wrong secret")]);
    let error = backup_refused(
        lab,
        &wrong_password,
        &format!(
            "tidemark: ERROR: backup: log in to {} as backup: server says: password authentication failed for user \"backup\" (SQLSTATE 28P01)",
            endpoint_of(cluster)
        ),
    );
    assert!(!error.contains("wrong secret"));
}

/// Another cluster: first without WAL senders, then with them but the wrong identity.
fn another_cluster_is_refused(lab: &Lab, configs: &ConfigVariants, cluster: &ThrowawayCluster) {
    let mut other = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "other", 1).unwrap();
    other.configure(&[("max_wal_senders", "0")]).unwrap();
    other.start().unwrap();
    let other_endpoint = endpoint_of(&other);
    let other_config = configs.write(
        "other.toml",
        &[
            (
                &format!("host={}", cluster.socket_dir().display()),
                &format!("host={}", other.socket_dir().display()),
            ),
            (
                &format!("port={}", cluster.port()),
                &format!("port={}", other.port()),
            ),
            ("user=backup password='backup secret'", "user=postgres"),
        ],
    );
    backup_refused(
        lab,
        &other_config,
        &format!(
            "tidemark: ERROR: backup: log in to {other_endpoint} as postgres: server says: number of requested standby connections exceeds max_wal_senders (currently 0) (SQLSTATE 53300)"
        ),
    );
    other.stop().unwrap();
    other.configure(&[("max_wal_senders", "4")]).unwrap();
    other.start().unwrap();
    let other_id = other.system_identifier().unwrap();
    let own_id = cluster.system_identifier().unwrap();
    backup_refused(
        lab,
        &other_config,
        &format!(
            "tidemark: ERROR: backup: the server at {other_endpoint} has system identifier {other_id}, but stanza 'main' is bound to {own_id}: check conninfo for this stanza"
        ),
    );
}

/// The relay passes a backup the first 8 MiB of the server's stream (the whole is over
/// 20 MiB) and then stalls it: each is stopped at a known point, and cannot end before the
/// test acts.
const STALL_AFTER: u64 = 8 << 20;

/// Starts backups that go through a stalling relay.
struct StalledBackups<'a> {
    lab: &'a Lab,
    endpoint: String,
    port: u16,
    relay_dir: std::path::PathBuf,
    relayed_config: std::path::PathBuf,
}

impl<'a> StalledBackups<'a> {
    fn new(lab: &'a Lab, configs: &ConfigVariants, cluster: &ThrowawayCluster) -> Self {
        let relay_dir = lab.tmp.subdir("relay").unwrap();
        let relayed_config = configs.write(
            "relayed.toml",
            &[(
                &format!("host={}", cluster.socket_dir().display()),
                &format!("host={}", relay_dir.display()),
            )],
        );
        StalledBackups {
            lab,
            endpoint: endpoint_of(cluster),
            port: cluster.port(),
            relay_dir,
            relayed_config,
        }
    }

    /// A backup in its own process group, stalled after its first 8 MiB.
    fn start(&self, stdio: fn() -> std::process::Stdio) -> (SocketRelay, std::process::Child) {
        use std::os::unix::process::CommandExt;
        let relay = SocketRelay::start(
            std::path::Path::new(&self.endpoint),
            &self.relay_dir,
            self.port,
            STALL_AFTER,
        );
        let mut backup =
            testkit::owner_command(&self.lab.bin_dir.join("tidemark"), self.lab.tmp.path());
        backup
            .args(["--config", self.relayed_config.to_str().unwrap(), "backup"])
            .stdout(stdio())
            .stderr(stdio())
            .process_group(0);
        let child = backup.spawn().unwrap();
        assert!(
            relay.wait_until_limit(common::PATIENCE),
            "the backup never received its first 8 MiB"
        );
        (relay, child)
    }
}

/// A backup killed while it stores (SIGKILL to its whole process group), once it has
/// stored a chunk, is not listed, and a restore finds no backup.
fn a_killed_backup_leaves_nothing(lab: &Lab, stalled: &StalledBackups, pgdata: &std::path::Path) {
    let (relay, mut child) = stalled.start(std::process::Stdio::null);
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while stored_blobs(lab) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled backup stored no chunk of its first 8 MiB"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the stalled backup ended"
    );
    let group = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
    drop(relay);
    assert_eq!(backup_count(lab), 0, "a killed backup must not be listed");
    let (code, error) = tidemark_fails(
        lab,
        &lab.config_path,
        &["restore", "--pgdata", pgdata.to_str().unwrap()],
    );
    assert_eq!(
        (code, error.as_str()),
        (
            Some(1),
            "tidemark: ERROR: restore: the stanza has no backup yet: take one with 'tidemark backup'"
        )
    );
}

/// A connection lost mid-stream: the server terminates the WAL sender of a stalled backup,
/// which fails with one line and is not listed.
fn a_lost_connection_leaves_nothing(
    lab: &Lab,
    stalled: &StalledBackups,
    cluster: &ThrowawayCluster,
) {
    // First let the killed backup's WAL sender go, so that it is the new backup's that goes.
    cluster
        .wait_for(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'",
            "0",
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    let (relay, child) = stalled.start(std::process::Stdio::piped);
    assert_eq!(
        cluster
            .query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'walsender'")
            .unwrap(),
        "1"
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("the lost backup said: {stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("tidemark: ERROR: backup: BASE_BACKUP: "),
        "{stderr}"
    );
    assert_eq!(backup_count(lab), 0, "a failed backup must not be listed");
    drop(relay);
}

/// A target before the first backup, and a non-empty --pgdata, are refused, and the
/// directory's file is kept.
fn refused_restores_change_nothing(lab: &Lab, pgdata: &std::path::Path) {
    let (code, error) = tidemark_fails(
        lab,
        &lab.config_path,
        &[
            "restore",
            "--pgdata",
            pgdata.to_str().unwrap(),
            "--target-time",
            "2000-01-01 00:00:00+00",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        error.starts_with("tidemark: ERROR: restore: no backup ends before the target: the earliest point a restore can reach is the end of backup "),
        "{error}"
    );
    assert!(!pgdata.exists());
    fs::create_dir(pgdata).unwrap();
    fs::write(pgdata.join("precious"), b"keep me").unwrap();
    testkit::give_to_owner(pgdata).unwrap();
    let (code, error) = tidemark_fails(
        lab,
        &lab.config_path,
        &["restore", "--pgdata", pgdata.to_str().unwrap()],
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        error,
        format!(
            "tidemark: ERROR: restore: {} is not empty: restore into an empty directory, or use --delta to keep the files that match the backup, or --force to overwrite it",
            pgdata.display()
        )
    );
    assert_eq!(fs::read(pgdata.join("precious")).unwrap(), b"keep me");
}

#[test]
fn include_wal_and_delta_keeps_matching_files_rewrites_changed_ones_and_removes_strays() {
    // The cluster runs to the end of the test.
    let (lab, _cluster) = lab_and_cluster_with(
        "tm-delta-",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    // With --include-wal the backup carries the WAL it needs to reach consistency.
    let report = lab.tidemark(&["backup", "--include-wal"]).unwrap();
    assert!(report.contains(" (included), "), "{report}");
    let info: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["info", "--output", "json"]).unwrap()).unwrap();
    let backup = &info["backups"][0];
    assert_eq!(backup["wal_included"], true);
    let wal_start = backup["wal_start"].as_str().unwrap().to_owned();
    let pgdata = lab.tmp.path().join("restored");
    let pgdata_arg = pgdata.to_str().unwrap();
    lab.tidemark(&["restore", "--pgdata", pgdata_arg]).unwrap();
    let pg_version = fs::read(pgdata.join("PG_VERSION")).unwrap();
    assert_eq!(
        fs::metadata(pgdata.join("pg_wal").join(&wal_start))
            .unwrap()
            .len(),
        1 << 20,
        "the included segment {wal_start} is restored into pg_wal"
    );

    // Damage one file, add a stray one: --delta puts the first right and removes the second.
    fs::write(pgdata.join("PG_VERSION"), b"99\n").unwrap();
    fs::write(pgdata.join("base/stray"), b"not from the backup").unwrap();
    let report = lab
        .tidemark(&["restore", "--pgdata", pgdata_arg, "--delta"])
        .unwrap();
    assert!(report.contains("files kept as they were, "), "{report}");
    let written = leading_number(report.lines().nth(1).unwrap());
    assert!(written < 10, "--delta rewrote {written} files: {report}");
    assert_eq!(fs::read(pgdata.join("PG_VERSION")).unwrap(), pg_version);
    assert!(!pgdata.join("base/stray").exists());
    let settings = fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap();
    assert_eq!(
        settings.matches("restore_command").count(),
        1,
        "settings written once:\n{settings}"
    );

    // --force starts from nothing.
    fs::write(pgdata.join("base/stray"), b"again").unwrap();
    let report = lab
        .tidemark(&["restore", "--pgdata", pgdata_arg, "--force"])
        .unwrap();
    assert!(!report.contains("kept as they were"), "{report}");
    assert!(!pgdata.join("base/stray").exists());
    assert!(pgdata.join("recovery.signal").exists());
}
