//! The corrupting relay damages exactly the RDB's checksum: `redis-cli --rdb` through it gets
//! a file `redis-check-rdb` refuses for its checksum, and the same without it one it accepts.

use std::path::Path;
use std::process::Command;

use testkit::redis_relay::CorruptingRelay;
use testkit::redis_workload::populate;
use testkit::{RedisOptions, RedisServer};

/// `redis-cli -p PORT --rdb FILE`, which must succeed.
fn fetch_rdb(port: u16, file: &Path) {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--rdb"])
        .arg(file)
        .output()
        .expect("run redis-cli (install redis-tools; .ci/run does)");
    assert!(output.status.success(), "redis-cli --rdb: {output:?}");
}

/// `redis-check-rdb FILE`: whether it passed, and what it said.
fn check_rdb(file: &Path) -> (bool, String) {
    let output = Command::new("redis-check-rdb")
        .arg(file)
        .output()
        .expect("run redis-check-rdb (install redis-server; .ci/run does)");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

#[test]
fn an_rdb_through_the_relay_fails_its_checksum_and_one_without_it_does_not() {
    let server = RedisServer::start(&RedisOptions {
        diskless_sync: false,
        ..RedisOptions::default()
    });
    populate(&mut server.client(), 5, 1_000);
    let dir = tempfile::tempdir().unwrap();

    let direct = dir.path().join("direct.rdb");
    fetch_rdb(server.port, &direct);
    let (passed, said) = check_rdb(&direct);
    assert!(passed, "the server's own RDB failed the check: {said}");

    let relay = CorruptingRelay::start(server.port);
    let relayed = dir.path().join("relayed.rdb");
    fetch_rdb(relay.port(), &relayed);
    assert!(relay.corrupted());
    let (passed, said) = check_rdb(&relayed);
    assert!(!passed, "the relayed RDB passed the check: {said}");
    assert!(said.contains("RDB CRC error"), "{said}");
}
