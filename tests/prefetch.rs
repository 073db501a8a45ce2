//! Planned parallel prefetch (`[restore] prefetch`, on by default) on real PostgreSQL 15
//! recoveries: segments damaged in the spool before their hand-over are refused and fetched again;
//! recovery is exact while the fetcher is killed with SIGKILL again and again; and recovery
//! follows a timeline switch with segments handed over from the spool.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tidemark::demo::cluster::{ThrowawayCluster, give_to_owner};
use tidemark::demo::lab::Lab;

/// Kills of the fetcher the test insists on.
const MIN_KILLS: usize = 20;

/// What pgbench leaves in the database, compared between primary and restored copy.
const CONTENT: &str = "SELECT (SELECT count(*) || '/' || sum(abalance) FROM pgbench_accounts) || ' ' || \
     (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history)";

/// A primary with 1 MiB segments archiving into the lab's stanza through `tidemark-archive`,
/// with pgbench tables and a backup.
fn primary_with_backup(lab: &Lab) -> ThrowawayCluster {
    let mut primary = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
    let archive_command = lab.archive_command();
    primary
        .configure(&[
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
            ("max_wal_size", "64MB"),
        ])
        .unwrap();
    primary.start().unwrap();
    lab.write_config_with_conninfo(primary.data_dir(), "", Some(&primary.conninfo()))
        .unwrap();
    lab.tidemark(&["stanza-create"]).unwrap();
    common::wait_ok(common::pgbench(lab, &primary, &["-i", "-q", "-s", "2"]));
    let report = lab.tidemark(&["backup"]).unwrap();
    assert!(report.starts_with("backup "), "{report}");
    primary
}

/// Runs `transactions` pgbench transactions per client (2 clients) on `cluster`, then makes sure
/// everything is archived; returns the database content.
fn write_and_archive(lab: &Lab, cluster: &ThrowawayCluster, transactions: u32) -> String {
    let transactions = transactions.to_string();
    common::wait_ok(common::pgbench(
        lab,
        cluster,
        &["-n", "-c", "2", "-t", &transactions],
    ));
    tidemark::demo::switch_and_wait_for_archive(cluster).unwrap();
    cluster.query(CONTENT).unwrap()
}

/// `tidemark restore` of the newest backup to the end of the archive into a new directory.
fn restore(lab: &Lab, name: &str) -> PathBuf {
    let pgdata = lab.tmp.path().join(name);
    lab.tidemark(&["restore", "--pgdata", pgdata.to_str().unwrap()])
        .unwrap();
    pgdata
}

/// Starts a restored data directory and waits until it has recovered and promoted.
fn recover(lab: &Lab, name: &str, pgdata: PathBuf) -> ThrowawayCluster {
    let mut cluster = ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), name, pgdata).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_promotion(common::PATIENCE).unwrap();
    cluster
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
    let lab = Lab::new("tm-prefetch-damage-", &common::binaries()).unwrap();
    let mut primary = primary_with_backup(&lab);
    let expected = write_and_archive(&lab, &primary, 2000);
    primary.stop().unwrap();

    let pgdata = restore(&lab, "restored");
    let spool = spool(&pgdata);
    let plan: Vec<String> = fs::read_to_string(spool.join("plan"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
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

    let restored = recover(&lab, "restored", pgdata);
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

#[test]
fn recovery_is_exact_while_the_fetcher_is_killed_again_and_again() {
    let lab = Lab::new("tm-prefetch-kill-", &common::binaries()).unwrap();
    let mut primary = primary_with_backup(&lab);
    let expected = write_and_archive(&lab, &primary, 30_000);
    primary.stop().unwrap();

    let pgdata = restore(&lab, "restored");
    let planned = fs::read_to_string(spool(&pgdata).join("plan"))
        .unwrap()
        .lines()
        .count();
    let pg_wal = pgdata.join("pg_wal");
    let mut restored =
        ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", pgdata).unwrap();
    restored.start().unwrap();
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(fastrand::u64(5..80));
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        let done = restored
            .query("SELECT NOT pg_is_in_recovery()")
            .is_ok_and(|promoted| promoted == "t");
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "recovery did not finish");
        if Instant::now() >= next_kill {
            if let Some(pid) = common::helper_pid("--prefetcher", &pg_wal) {
                let pid = rustix::process::Pid::from_raw(pid).unwrap();
                if rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok() {
                    kills += 1;
                }
            }
            next_kill = Instant::now() + Duration::from_millis(fastrand::u64(5..80));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(restored.query(CONTENT).unwrap(), expected);
    let log = server_log(&restored);
    assert_eq!(common::tidemark_errors(&restored), Vec::<String>::new());
    let handed_over = prefetched(&log).len();
    println!("{planned} planned segments, {handed_over} handed over from the spool, {kills} kills");
    assert!(
        kills >= MIN_KILLS,
        "the fetcher was killed only {kills} times during a recovery of {planned} segments"
    );
    assert!(handed_over > 0, "no segment came from the spool");
}

#[test]
fn recovery_follows_a_timeline_switch_with_prefetched_segments() {
    let lab = Lab::new("tm-prefetch-timeline-", &common::binaries()).unwrap();
    let mut primary = primary_with_backup(&lab);
    write_and_archive(&lab, &primary, 1000);
    primary.stop().unwrap();

    // A restore promotes to timeline 2 and keeps writing (and archiving into the stanza).
    let first = restore(&lab, "first");
    let mut promoted = recover(&lab, "first", first);
    let expected = write_and_archive(&lab, &promoted, 1500);
    let timeline = promoted
        .query("SELECT timeline_id FROM pg_control_checkpoint()")
        .unwrap();
    assert_eq!(timeline, "2");
    promoted.stop().unwrap();

    // From the same (timeline 1) backup, recovery follows timeline 1 into timeline 2.
    let second = restore(&lab, "second");
    let plan = fs::read_to_string(spool(&second).join("plan")).unwrap();
    assert!(
        plan.lines().any(|s| s.starts_with("00000001"))
            && plan.lines().any(|s| s.starts_with("00000002")),
        "the plan does not cross the switch:\n{plan}"
    );
    let recovered = recover(&lab, "second", second);
    assert_eq!(recovered.query(CONTENT).unwrap(), expected);
    let log = server_log(&recovered);
    assert_eq!(common::tidemark_errors(&recovered), Vec::<String>::new());
    let handed_over = prefetched(&log);
    assert!(
        handed_over.iter().any(|s| s.starts_with("00000002")),
        "no timeline 2 segment came from the spool: {handed_over:?}"
    );
}
