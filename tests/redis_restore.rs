//! Restoring a real Redis snapshot (a `dump.rdb` a populated server saved): to a directory a
//! fresh server then starts from, and into a running server through the replication primary,
//! each giving the same `DEBUG DIGEST`; and every refusal, which changes nothing.

mod common;

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use testkit::redis_workload::{
    KeyspaceState, Writer, committed_seq, expected_state, keyspace_state, populate,
};
use testkit::{RedisOptions, RedisServer};
use tidemark::sources::redis::endpoint::RedisEndpoint;
use tidemark::sources::redis::restore_dir::{DUMP_NAME, DirRestore, restore_to_dir};
use tidemark::sources::redis::restore_into::{IntoRestore, restore_into};
use tidemark::sources::redis::snapshot::take_snapshot;

const SEED: u64 = 1717;
const KEYS: u64 = 6_000;

/// A saved snapshot of a populated server, and that server's state when it saved.
struct Snapshot {
    rdb: Vec<u8>,
    version: u32,
    crc: Option<u64>,
    state: KeyspaceState,
}

impl Snapshot {
    /// Populates a server with `seed`, saves, and takes its `dump.rdb`.
    fn taken(seed: u64) -> Snapshot {
        let source = RedisServer::start(&RedisOptions::default());
        let mut conn = source.client();
        populate(&mut conn, seed, KEYS);
        let () = redis::cmd("SAVE").query(&mut conn).unwrap();
        let rdb = fs::read(source.dir().join(DUMP_NAME)).unwrap();
        let version = std::str::from_utf8(&rdb[5..9]).unwrap().parse().unwrap();
        let trailer = u64::from_le_bytes(rdb[rdb.len() - 8..].try_into().unwrap());
        Snapshot {
            crc: (trailer != 0).then_some(trailer),
            version,
            state: keyspace_state(&mut conn),
            rdb,
        }
    }

    fn len(&self) -> u64 {
        self.rdb.len() as u64
    }

    fn to_dir(&self, opts: DirRestore) -> anyhow::Result<std::path::PathBuf> {
        restore_to_dir(&mut &self.rdb[..], self.len(), self.crc, self.version, opts)
    }

    fn restore_into(&self, target: &RedisServer, flush: bool) -> anyhow::Result<()> {
        let rdb = Box::new(io::Cursor::new(self.rdb.clone()));
        into_with(target, rdb, self.len(), self.version, flush)
    }
}

fn into_with(
    target: &RedisServer,
    rdb: Box<dyn Read + Send>,
    len: u64,
    version: u32,
    flush: bool,
) -> anyhow::Result<()> {
    let opts = IntoRestore {
        flush,
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        timeout: Duration::from_secs(60),
    };
    let display = target.url();
    let outcome = restore_into(&mut target.client(), &display, rdb, len, version, 0, &opts)?;
    let state = keyspace_state(&mut target.client());
    let reported: std::collections::BTreeMap<u32, (u64, u64)> = outcome
        .keys
        .iter()
        .map(|(db, n)| (*db, (n.keys, n.expires)))
        .collect();
    let counted: std::collections::BTreeMap<u32, (u64, u64)> = state
        .dbs
        .iter()
        .map(|(db, n)| (*db, (n.keys, n.expires)))
        .collect();
    assert_eq!(reported, counted);
    Ok(())
}

fn dir_opts(dir: &Path) -> DirRestore<'_> {
    DirRestore {
        dir,
        force: false,
        pid: None,
        port: None,
        check_against: None,
    }
}

/// The first line of `ROLE`'s answer: `master` or `slave`.
fn role(server: &RedisServer) -> String {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut server.client()).unwrap();
    redis::from_redis_value(role[0].clone()).unwrap()
}

/// A reader that counts what is read from it.
struct Counted(io::Cursor<Vec<u8>>, Arc<AtomicU64>);

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn a_dump_restored_to_a_directory_starts_a_server_with_the_same_keyspace() {
    let snapshot = Snapshot::taken(SEED);
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot.to_dir(dir_opts(dir.path())).unwrap();
    assert_eq!(path, dir.path().join(DUMP_NAME));
    assert_eq!(fs::read(&path).unwrap(), snapshot.rdb);
    let restored = RedisServer::start_in(dir.path(), &RedisOptions::default());
    assert_eq!(keyspace_state(&mut restored.client()), snapshot.state);
}

#[test]
fn every_refusal_to_a_directory_writes_nothing() {
    let snapshot = Snapshot::taken(SEED);
    // A server running in its directory, its dump.rdb there.
    let running = RedisServer::start(&RedisOptions::default());
    let dir = running.dir().to_path_buf();
    fs::write(dir.join(DUMP_NAME), b"the server's own").unwrap();
    let before = common::snapshot(&dir);
    let refusal = |opts: DirRestore| format!("{:#}", snapshot.to_dir(opts).unwrap_err());

    assert!(refusal(dir_opts(&dir)).contains("give --force"));
    let mut by_pid = dir_opts(&dir);
    (by_pid.force, by_pid.pid) = (true, Some(running.pid()));
    assert!(refusal(by_pid).contains("is running"));
    let mut by_port = dir_opts(&dir);
    (by_port.force, by_port.port) = (true, Some(running.port));
    let port_refusal = refusal(by_port);
    assert!(
        port_refusal.contains("a Redis server answers"),
        "{port_refusal}"
    );
    // Redis 7.0 loads RDB 10 at most: a snapshot that says 11 is refused before it is read.
    let mut conn = running.client();
    let mut checked = dir_opts(&dir);
    (checked.force, checked.check_against) = (true, Some(&mut conn));
    let newer = restore_to_dir(&mut io::empty(), snapshot.len(), snapshot.crc, 11, checked);
    let newer = format!("{:#}", newer.unwrap_err());
    assert!(newer.contains("loads RDB versions up to 10"), "{newer}");
    for line in [&port_refusal, &newer] {
        assert_eq!(line.lines().count(), 1, "{line}");
    }
    assert_eq!(common::snapshot(&dir), before);
}

#[test]
fn a_corrupted_byte_is_refused_and_leaves_no_dump() {
    let snapshot = Snapshot::taken(SEED);
    let dir = tempfile::tempdir().unwrap();
    let mut damaged = snapshot.rdb.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    let refused = restore_to_dir(
        &mut &damaged[..],
        snapshot.len(),
        snapshot.crc,
        snapshot.version,
        dir_opts(dir.path()),
    );
    let refused = format!("{:#}", refused.unwrap_err());
    assert!(refused.contains("damaged"), "{refused}");
    assert!(common::snapshot(dir.path()).is_empty(), "{refused}");
}

#[test]
fn a_dump_restored_into_an_empty_server_leaves_it_a_primary_with_the_same_keyspace() {
    let snapshot = Snapshot::taken(SEED);
    let target = RedisServer::start(&RedisOptions::default());
    snapshot.restore_into(&target, false).unwrap();
    assert_eq!(keyspace_state(&mut target.client()), snapshot.state);
    assert_eq!(role(&target), "master");
}

#[test]
fn flush_lets_a_restore_replace_the_keys_a_server_holds() {
    let snapshot = Snapshot::taken(SEED);
    let target = RedisServer::start(&RedisOptions::default());
    populate(&mut target.client(), SEED + 1, KEYS / 2);
    let own = keyspace_state(&mut target.client());

    let refusal = format!("{:#}", snapshot.restore_into(&target, false).unwrap_err());
    assert!(refusal.contains("give --flush"), "{refusal}");
    assert_eq!(refusal.lines().count(), 1, "{refusal}");
    assert_eq!(keyspace_state(&mut target.client()), own);

    snapshot.restore_into(&target, true).unwrap();
    assert_eq!(keyspace_state(&mut target.client()), snapshot.state);
    assert_eq!(role(&target), "master");
}

#[test]
fn a_replica_and_a_too_old_server_are_refused_before_anything_changes() {
    let snapshot = Snapshot::taken(SEED);
    let primary = RedisServer::start(&RedisOptions::default());
    let replica = RedisServer::start(&RedisOptions::default());
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query(&mut replica.client())
        .unwrap();
    let refusal = format!("{:#}", snapshot.restore_into(&replica, true).unwrap_err());
    let expected = format!("is a replica of 127.0.0.1:{}", primary.port);
    assert!(refusal.contains(&expected), "{refusal}");
    assert_eq!(role(&replica), "slave");

    // The header digits of a copy say 11 (Redis 7.2), nothing else changed: a 7.0 target is
    // refused before a byte of it is read, so before any CRC work.
    let mut newer = snapshot.rdb.clone();
    newer[5..9].copy_from_slice(b"0011");
    let target = RedisServer::start(&RedisOptions::default());
    let read = Arc::new(AtomicU64::new(0));
    let rdb = Box::new(Counted(io::Cursor::new(newer), Arc::clone(&read)));
    let refusal = format!(
        "{:#}",
        into_with(&target, rdb, snapshot.len(), 11, true).unwrap_err()
    );
    assert!(refusal.contains("loads RDB versions up to 10"), "{refusal}");
    assert_eq!(refusal.lines().count(), 1, "{refusal}");
    assert_eq!(read.load(Ordering::Relaxed), 0);
    assert_eq!(role(&target), "master");
    assert_eq!(keyspace_state(&mut target.client()).dbs.len(), 0);
}

#[test]
fn a_damaged_snapshot_served_to_a_running_server_is_never_loaded_and_it_stays_up() {
    let snapshot = Snapshot::taken(SEED);
    let target = RedisServer::start(&RedisOptions::default());
    let mut damaged = snapshot.rdb.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    let rdb = Box::new(io::Cursor::new(damaged));
    let refusal = into_with(&target, rdb, snapshot.len(), snapshot.version, false).unwrap_err();
    let refusal = format!("{refusal:#}");
    assert!(refusal.contains("damaged"), "{refusal}");
    assert!(
        refusal.contains("may be empty or partly loaded"),
        "{refusal}"
    );
    assert_eq!(refusal.lines().count(), 1, "{refusal}");
    // Alive (a failed load would have made it exit), a primary, and it never tried a load.
    assert_eq!(role(&target), "master");
    assert!(!target.log().contains("RDB"), "{}", target.log());
}

#[test]
fn a_server_loading_from_the_socket_with_a_masterauth_takes_the_same_keyspace() {
    let snapshot = Snapshot::taken(SEED);
    let target = RedisServer::start(&RedisOptions {
        extra: vec![
            ("repl-diskless-load".to_owned(), "swapdb".to_owned()),
            ("masterauth".to_owned(), "any password".to_owned()),
        ],
        ..RedisOptions::default()
    });
    snapshot.restore_into(&target, false).unwrap();
    assert_eq!(keyspace_state(&mut target.client()), snapshot.state);
    assert_eq!(role(&target), "master");
}

#[test]
fn a_user_without_replicaof_is_refused_with_the_rules_it_needs_and_nothing_changes() {
    let snapshot = Snapshot::taken(SEED);
    let target = RedisServer::start(&RedisOptions {
        acl_users: vec!["restorer on >restorer-secret ~* +@all -replicaof".to_owned()],
        ..RedisOptions::default()
    });
    let opts = IntoRestore {
        flush: false,
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        timeout: Duration::from_secs(60),
    };
    let mut as_restorer = target.client_as(Some("restorer"), "restorer-secret");
    let rdb = Box::new(io::Cursor::new(snapshot.rdb.clone()));
    let refused = restore_into(
        &mut as_restorer,
        &target.url(),
        rdb,
        snapshot.len(),
        snapshot.version,
        0,
        &opts,
    );
    let refused = format!("{:#}", refused.unwrap_err());
    assert!(refused.contains("+replicaof"), "{refused}");
    assert!(refused.contains("it is unchanged"), "{refused}");
    assert_eq!(refused.lines().count(), 1, "{refused}");
    assert_eq!(role(&target), "master");
    assert_eq!(keyspace_state(&mut target.client()).dbs.len(), 0);
}

#[test]
fn a_snapshot_taken_over_sync_while_a_writer_runs_restores_both_ways_to_its_step() {
    let source = RedisServer::start(&RedisOptions::default());
    populate(&mut source.client(), SEED, KEYS);
    let writer = Writer::start(&source.url(), None, SEED);
    writer.wait_for(100, Duration::from_secs(60));
    let endpoint =
        RedisEndpoint::resolve(&source.url(), None, None, Duration::from_secs(10)).unwrap();
    let mut rdb = Vec::new();
    let meta = take_snapshot(&endpoint, &mut rdb).unwrap();
    let last = writer.stop();
    let crc = meta
        .crc64
        .as_deref()
        .map(|hex| u64::from_str_radix(hex, 16).unwrap());

    let dir = tempfile::tempdir().unwrap();
    restore_to_dir(
        &mut &rdb[..],
        meta.bytes,
        crc,
        meta.rdb_version,
        dir_opts(dir.path()),
    )
    .unwrap();
    let from_dir = RedisServer::start_in(dir.path(), &RedisOptions::default());
    let seq = committed_seq(&mut from_dir.client());
    println!("the snapshot holds writer step {seq} of {last}");
    let expected = expected_state(SEED, KEYS, seq);
    assert_eq!(keyspace_state(&mut from_dir.client()), expected);

    let target = RedisServer::start(&RedisOptions::default());
    let opts = IntoRestore {
        flush: false,
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        timeout: Duration::from_secs(60),
    };
    let offset = meta.repl_offset.unwrap_or(0);
    let served = Box::new(io::Cursor::new(rdb));
    restore_into(
        &mut target.client(),
        &target.url(),
        served,
        meta.bytes,
        meta.rdb_version,
        offset,
        &opts,
    )
    .unwrap();
    assert_eq!(keyspace_state(&mut target.client()), expected);
    assert_eq!(role(&target), "master");
}

/// The environment variable naming the directory the traced child restores into.
const TRACED_DIR: &str = "TIDEMARK_TEST_RESTORE_DIR";

#[test]
fn a_dump_restored_to_a_directory_is_fsynced_before_its_rename_and_its_directory_after() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let trace_dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--ignored", "--exact", "--test-threads=1"])
        .arg("restore_into_the_directory_the_environment_names")
        .env(TRACED_DIR, &dir);
    let traced = common::strace::run(&child, &[], &trace_dir.path().join("trace"));
    assert!(
        traced.output.status.success(),
        "{}",
        String::from_utf8_lossy(&traced.output.stdout)
    );
    let target = dir.join(DUMP_NAME);
    let renamed = (0..traced.calls.len())
        .find(|&i| {
            traced.calls[i]
                .rename_paths()
                .is_some_and(|(_, to)| to == target)
        })
        .unwrap_or_else(|| panic!("no rename to {}:\n{}", target.display(), traced.listing()));
    let (temp, _) = traced.calls[renamed].rename_paths().unwrap();
    assert_eq!(temp.parent(), Some(dir.as_path()));
    assert!(
        traced
            .find_before(renamed, |c| c.is_fsync_of(&temp))
            .is_some(),
        "{} was not fsynced before its rename:\n{}",
        temp.display(),
        traced.listing()
    );
    assert!(
        traced
            .find_after(renamed, |c| c.is_fsync_of(&dir))
            .is_some(),
        "{} was not fsynced after the rename:\n{}",
        dir.display(),
        traced.listing()
    );
    assert_eq!(fs::read(&target).unwrap(), small_rdb());
}

/// The traced child of the test above: restores a small RDB into the directory in
/// `TIDEMARK_TEST_RESTORE_DIR`. Run only by that test (it is ignored otherwise).
#[test]
#[ignore = "run by a_dump_restored_to_a_directory_is_fsynced_before_its_rename_and_its_directory_after"]
fn restore_into_the_directory_the_environment_names() {
    let dir = std::path::PathBuf::from(std::env::var_os(TRACED_DIR).expect("a directory"));
    let rdb = small_rdb();
    let crc = u64::from_le_bytes(rdb[rdb.len() - 8..].try_into().unwrap());
    restore_to_dir(
        &mut &rdb[..],
        rdb.len() as u64,
        Some(crc),
        10,
        dir_opts(&dir),
    )
    .unwrap();
}

/// An RDB with no keys, as Redis 7.0 frames one.
fn small_rdb() -> Vec<u8> {
    let mut rdb = b"REDIS0010\xff".to_vec();
    let crc = tidemark::sources::redis::rdb::crc64(&rdb);
    rdb.extend_from_slice(&crc.to_le_bytes());
    rdb
}
