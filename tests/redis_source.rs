//! The Redis source end to end (issue 17), against real `redis-server`s on free loopback ports:
//! a snapshot taken while a writer keeps writing restores — to a directory a fresh server starts
//! from, or into a running server — to exactly the keyspace of the step the snapshot holds
//! (`testkit::redis_workload`'s ground truth); both transfer forms, a password, ACL users; a
//! refused or broken transfer lists nothing; a second snapshot of an unchanged server stores
//! almost nothing new; bad input is refused in one line and changes nothing.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::direct::{describe, direct};
use serde_json::Value;
use testkit::redis_relay::CorruptingRelay;
use testkit::redis_workload::{
    GroundTruth, Writer, committed_seq, expected_state, fill_random, keyspace_state, populate,
};
use testkit::{RedisOptions, RedisServer};

/// The workload's seed: every population and writer step derives from it.
const SEED: u64 = 1717;

/// The size for the snapshots taken under writes.
const MANY_KEYS: u64 = 200_000;

/// Enough keys for every type and encoding, for the tests about access and failures.
const FEW_KEYS: u64 = 3_000;

/// The source every test configures.
const SOURCE: &str = "cache";

/// How long a Tidemark run that is expected to end may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// A repository and a configuration of their own in a temporary directory, the configuration
/// naming one Redis source; runs `tidemark` directly (no PostgreSQL is involved).
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    repo: PathBuf,
}

impl Setup {
    /// A setup whose source `cache` reads `url`.
    fn new(url: &str) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("tm-redis-")
            .tempdir()
            .unwrap();
        let setup = Setup {
            config: dir.path().join("tidemark.toml"),
            repo: dir.path().join("repo"),
            dir,
        };
        setup.write_config("tidemark.toml", &source_section(url, ""));
        setup
    }

    /// Makes the source read `url` with the password in a 0600 `password_file` holding `secret`.
    fn use_password_file(&self, url: &str, secret: &str) {
        let file = self.secret_file("redis.pass", secret, 0o600);
        self.write_config(
            "tidemark.toml",
            &source_section(url, &password_file_line(&file)),
        );
    }

    /// Writes configuration `name` beside the repository: its `[repo]` and `sources`.
    fn write_config(&self, name: &str, sources: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let text = format!("[repo]\npath = \"{}\"\n\n{sources}", self.repo.display());
        fs::write(&path, text).unwrap();
        path
    }

    /// A file holding `secret`, with `mode`.
    fn secret_file(&self, name: &str, secret: &str, mode: u32) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, secret).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// A new empty directory beside the repository.
    fn empty_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir(&path).unwrap();
        path
    }

    /// `tidemark --config <config> args`, with no password in the environment.
    fn command(&self, config: &Path, args: &[&str]) -> Command {
        let bin = common::binaries().tidemark;
        let mut command = direct(bin.parent().unwrap(), "tidemark");
        command
            .env_remove("REDISCLI_AUTH")
            .arg("--config")
            .arg(config)
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(&self.config, args).output().unwrap()
    }

    /// Runs `args`, which must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    fn backup(&self) {
        self.ok(&["source", "backup", SOURCE]);
    }

    /// The source's snapshot records, oldest first.
    fn snapshots(&self) -> Vec<Value> {
        let text = self.ok(&["source", "list", SOURCE, "--output", "json"]);
        let list: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("source list --output json is not JSON ({e}): {text}"));
        list.as_array()
            .unwrap_or_else(|| panic!("source list --output json is not an array: {list:#}"))
            .clone()
    }

    /// The only snapshot's id.
    fn only_snapshot_id(&self) -> String {
        let snapshots = self.snapshots();
        assert_eq!(snapshots.len(), 1, "{snapshots:#?}");
        snapshots[0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a snapshot record without an id: {:#}", snapshots[0]))
            .to_owned()
    }

    /// Runs `args` with `config`, which must exit 1 with one line on stderr, nothing on stdout,
    /// and no change in the repository; returns the line.
    fn refused_with(&self, config: &Path, args: &[&str]) -> String {
        let before = common::snapshot(&self.repo);
        let output = self.command(config, args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            describe(&output)
        );
        assert!(output.stdout.is_empty(), "{args:?}: {}", describe(&output));
        let stderr = String::from_utf8(output.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr:?}");
        assert!(
            common::snapshot(&self.repo) == before,
            "{args:?} changed the repository"
        );
        lines[0].to_owned()
    }

    fn refused(&self, args: &[&str]) -> String {
        self.refused_with(&self.config, args)
    }
}

/// A `[source.cache]` section reading `url`, with `more` lines.
fn source_section(url: &str, more: &str) -> String {
    format!("[source.{SOURCE}]\ntype = \"redis\"\nurl = \"{url}\"\n{more}")
}

/// `password_file = "<path>"`.
fn password_file_line(path: &Path) -> String {
    format!("password_file = \"{}\"\n", path.display())
}

/// Starts a fresh server on `dir`'s `dump.rdb` and returns it.
fn server_on(dir: &Path) -> RedisServer {
    assert!(
        dir.join("dump.rdb").is_file(),
        "{} holds no dump.rdb",
        dir.display()
    );
    RedisServer::start_in(dir, &RedisOptions::default())
}

/// The transfer form the server's log says it used for its only SYNC.
fn transfer_target(server: &RedisServer) -> String {
    let log = server.log();
    let targets: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split("Starting BGSAVE for SYNC with target: ").nth(1))
        .collect();
    assert_eq!(targets.len(), 1, "not one SYNC in the log:\n{log}");
    targets[0].trim().to_owned()
}

/// A server of `MANY_KEYS` keys (`options` says how it transfers), snapshotted while a writer
/// kept writing, with the reference server for its ground truth populated meanwhile.
struct UnderWrites {
    setup: Setup,
    server: RedisServer,
    truth: GroundTruth,
    /// The last step committed before the backup began: the snapshot holds it or a later one.
    written_before: u64,
    /// The last step the writer committed, after the backup ended.
    written_after: u64,
}

fn snapshot_under_writes(options: &RedisOptions) -> UnderWrites {
    let server = RedisServer::start(options);
    populate(&mut server.client(), SEED, MANY_KEYS);
    let truth = std::thread::spawn(|| GroundTruth::prepare(SEED, MANY_KEYS));
    let setup = Setup::new(&server.url());
    let writer = Writer::start(&server.url(), None, SEED);
    writer.wait_for(100, Duration::from_secs(60));
    let written_before = writer.committed();
    setup.backup();
    let written_after = writer.stop();
    UnderWrites {
        setup,
        server,
        truth: truth.join().expect("populate the reference server"),
        written_before,
        written_after,
    }
}

impl UnderWrites {
    /// Checks `restored` holds a step the writer committed while the backup ran, and exactly
    /// the keyspace of that step.
    fn assert_restored(self, restored: &mut redis::Connection) {
        let n = committed_seq(restored);
        assert!(
            (self.written_before..=self.written_after).contains(&n),
            "the snapshot holds step {n}, not one written during the backup ({}..={})",
            self.written_before,
            self.written_after
        );
        assert_eq!(
            keyspace_state(restored),
            self.truth.state_at(n),
            "the restored keyspace is not the one of step {n}"
        );
    }
}

#[test]
fn a_diskless_snapshot_under_writes_restores_to_a_directory_a_fresh_server_starts_from() {
    let under = snapshot_under_writes(&RedisOptions::default());
    assert_eq!(transfer_target(&under.server), "replicas sockets");
    let id = under.setup.only_snapshot_id();
    let dir = under.setup.empty_dir("restored");
    let dir_arg = dir.to_str().unwrap();
    under.setup.ok(&[
        "source",
        "restore",
        SOURCE,
        "--snapshot",
        &id,
        "--to",
        dir_arg,
    ]);
    let restored = server_on(&dir);
    under.assert_restored(&mut restored.client());
}

#[test]
fn a_disk_snapshot_under_writes_restores_into_a_running_server_left_a_primary() {
    let under = snapshot_under_writes(&RedisOptions {
        diskless_sync: false,
        ..RedisOptions::default()
    });
    assert_eq!(transfer_target(&under.server), "disk");
    let target = RedisServer::start(&RedisOptions::default());
    under.setup.ok(&[
        "source",
        "restore",
        SOURCE,
        "--snapshot",
        "latest",
        "--into",
        &target.url(),
    ]);
    let mut conn = target.client();
    assert_eq!(
        role(&mut conn),
        "master",
        "the target is not a primary after the restore"
    );
    under.assert_restored(&mut conn);
}

/// The first word of `ROLE`: `master` or `slave`.
fn role(conn: &mut redis::Connection) -> String {
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query(conn).unwrap();
    redis::from_redis_value_ref(&reply[0]).unwrap()
}

/// Snapshots the source of `setup` (a server populated with `FEW_KEYS`), restores it to a
/// directory and checks the restored keyspace is the population's.
fn assert_snapshot_restores_the_population(setup: &Setup) {
    setup.backup();
    let dir = setup.empty_dir("restored");
    setup.ok(&["source", "restore", SOURCE, "--to", dir.to_str().unwrap()]);
    let restored = server_on(&dir);
    assert_eq!(
        keyspace_state(&mut restored.client()),
        expected_state(SEED, FEW_KEYS, 0)
    );
}

fn populated(options: &RedisOptions) -> RedisServer {
    let server = RedisServer::start(options);
    populate(&mut server.client(), SEED, FEW_KEYS);
    server
}

#[test]
fn a_server_with_requirepass_is_read_with_the_password_file() {
    let server = populated(&RedisOptions {
        requirepass: Some("cache pass".to_string()),
        ..RedisOptions::default()
    });
    let setup = Setup::new(&server.url());
    setup.use_password_file(&server.url(), "cache pass\n");
    assert_snapshot_restores_the_population(&setup);
}

#[test]
fn rediscli_auth_gives_the_password_when_no_file_does() {
    let server = populated(&RedisOptions {
        requirepass: Some("from-the-environment".to_string()),
        ..RedisOptions::default()
    });
    let setup = Setup::new(&server.url());
    let output = setup
        .command(&setup.config, &["source", "backup", SOURCE])
        .env("REDISCLI_AUTH", "from-the-environment")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(setup.snapshots().len(), 1);
}

#[test]
fn an_acl_user_with_every_command_takes_a_snapshot() {
    // The default user's password is another, so only the ACL user's can succeed.
    let server = populated(&RedisOptions {
        requirepass: Some("not-the-backup-users".to_string()),
        acl_users: vec!["backup on >backup-pw ~* &* +@all".to_string()],
        ..RedisOptions::default()
    });
    let url = format!("redis://backup@127.0.0.1:{}/", server.port);
    let setup = Setup::new(&url);
    setup.use_password_file(&url, "backup-pw");
    assert_snapshot_restores_the_population(&setup);
}

#[test]
fn an_acl_user_without_sync_is_refused_with_the_acl_advice() {
    let server = populated(&RedisOptions {
        acl_users: vec!["limited on >limited-pw ~* &* +@all -sync".to_string()],
        ..RedisOptions::default()
    });
    let url = format!("redis://limited@127.0.0.1:{}/", server.port);
    let setup = Setup::new(&url);
    setup.use_password_file(&url, "limited-pw");
    let output = setup.run(&["source", "backup", SOURCE]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.contains("+sync"), "no ACL advice: {stderr:?}");
    assert_eq!(setup.snapshots(), Vec::<Value>::new());
}

/// The bytes the server sent its replicas so far (`total_net_repl_output_bytes`).
fn repl_bytes_sent(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(conn).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_net_repl_output_bytes:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO stats without total_net_repl_output_bytes:\n{info}"))
}

/// Waits (bounded) for `child` to end and returns its output.
fn output_within(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "tidemark did not end within {limit:?}: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_transfer_the_server_cuts_off_midway_fails_and_lists_nothing() {
    // 5 ms per key: the transfer of FEW_KEYS keys lasts 15 s, so it is surely not over when
    // its replica connection is killed.
    let server = populated(&RedisOptions {
        extra: vec![("rdb-key-save-delay".to_string(), "5000".to_string())],
        ..RedisOptions::default()
    });
    let setup = Setup::new(&server.url());
    let mut backup = setup
        .command(&setup.config, &["source", "backup", SOURCE])
        .spawn()
        .unwrap();
    // Cut off once the header and some of the payload were sent: midway, not before.
    let mut conn = server.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while repl_bytes_sent(&mut conn) < 8192 {
        if backup.try_wait().unwrap().is_some() {
            panic!(
                "the backup ended before its transfer: {:?}",
                backup.wait_with_output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no transfer began: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut conn)
        .unwrap();
    assert_eq!(killed, 1);
    let output = output_within(backup, RUN_LIMIT);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert_eq!(setup.snapshots(), Vec::<Value>::new());
}

#[test]
fn a_snapshot_whose_crc_does_not_match_fails_and_lists_nothing() {
    // The disk form gives the RDB's length up front, so the relay knows its last byte.
    let server = populated(&RedisOptions {
        diskless_sync: false,
        ..RedisOptions::default()
    });
    let relay = CorruptingRelay::start(server.port);
    let setup = Setup::new(&format!("redis://127.0.0.1:{}/", relay.port()));
    let output = setup.run(&["source", "backup", SOURCE]);
    assert!(
        relay.corrupted(),
        "the relay saw no RDB to corrupt: {}",
        describe(&output)
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert_eq!(setup.snapshots(), Vec::<Value>::new());
}

/// A byte count of a snapshot record's `sizes`.
fn size(record: &Value, name: &str) -> u64 {
    record["sizes"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("a snapshot record without sizes.{name}: {record:#}"))
}

#[test]
fn a_second_snapshot_of_an_unchanged_server_stores_almost_nothing_new() {
    // Large enough that the chunks the header and the trailer fall in (4 MiB on average) are
    // a small part of it.
    let server = RedisServer::start(&RedisOptions::default());
    fill_random(&mut server.client(), 256 << 20, SEED);
    let setup = Setup::new(&server.url());
    setup.backup();
    setup.backup();
    let snapshots = setup.snapshots();
    assert_eq!(snapshots.len(), 2, "{snapshots:#?}");
    let (first, second) = (&snapshots[0], &snapshots[1]);
    assert!(
        size(first, "new") > size(first, "raw") / 2,
        "the first snapshot stored little new: {first:#}"
    );
    assert!(
        size(second, "new") < size(second, "raw") / 20,
        "the second snapshot stored 5% new or more: {second:#}"
    );
}

/// A setup whose source holds one snapshot, for the refusals to leave unchanged.
fn setup_with_a_snapshot() -> (Setup, RedisServer) {
    let server = RedisServer::start(&RedisOptions::default());
    populate(&mut server.client(), SEED, 300);
    let setup = Setup::new(&server.url());
    setup.backup();
    (setup, server)
}

#[test]
fn an_unknown_source_name_is_refused() {
    let (setup, _server) = setup_with_a_snapshot();
    let line = setup.refused(&["source", "backup", "nosuch"]);
    assert!(line.contains("nosuch"), "{line}");
}

#[test]
fn an_unknown_source_type_is_refused() {
    let (setup, server) = setup_with_a_snapshot();
    let config = setup.write_config(
        "memcached.toml",
        &format!(
            "[source.{SOURCE}]\ntype = \"memcached\"\nurl = \"{}\"\n",
            server.url()
        ),
    );
    let line = setup.refused_with(&config, &["source", "backup", SOURCE]);
    assert!(line.contains("memcached"), "{line}");
}

#[test]
fn a_url_without_a_host_is_refused() {
    let (setup, _server) = setup_with_a_snapshot();
    let config = setup.write_config("no-host.toml", &source_section("redis://:6379/", ""));
    let line = setup.refused_with(&config, &["source", "backup", SOURCE]);
    assert!(line.contains("host"), "{line}");
}

#[test]
fn a_password_file_others_can_read_is_refused() {
    let (setup, server) = setup_with_a_snapshot();
    let file = setup.secret_file("open.pass", "secret", 0o644);
    let config = setup.write_config(
        "open-pass.toml",
        &source_section(&server.url(), &password_file_line(&file)),
    );
    let line = setup.refused_with(&config, &["source", "backup", SOURCE]);
    assert!(line.contains(file.to_str().unwrap()), "{line}");
    assert!(!line.contains("secret"), "the password was shown: {line}");
}

#[test]
fn a_snapshot_id_naming_none_is_refused() {
    let (setup, _server) = setup_with_a_snapshot();
    let dir = setup.empty_dir("target");
    let line = setup.refused(&[
        "source",
        "restore",
        SOURCE,
        "--snapshot",
        "20000101-000000R",
        "--to",
        dir.to_str().unwrap(),
    ]);
    assert!(line.contains("20000101-000000R"), "{line}");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "the target changed");
}
