//! The throwaway Redis server: it answers, with the password and users it was given, and a
//! server started in a directory holding a `dump.rdb` serves what that file holds.

use testkit::{RedisOptions, RedisServer};

#[test]
fn a_server_with_a_password_and_a_user_answers_each() {
    let server = RedisServer::start(&RedisOptions {
        requirepass: Some("pass word".to_string()),
        acl_users: vec!["backup on >backup-secret ~* +@all".to_string()],
        ..RedisOptions::default()
    });
    let pong: String = redis::cmd("PING").query(&mut server.client()).unwrap();
    assert_eq!(pong, "PONG");
    let mut as_backup = server.client_as(Some("backup"), "backup-secret");
    let whoami: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query(&mut as_backup)
        .unwrap();
    assert_eq!(whoami, "backup");
    let unauthenticated = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .and_then(|mut conn| {
            redis::cmd("GET")
                .arg("k")
                .query::<Option<String>>(&mut conn)
        });
    assert!(
        unauthenticated.is_err(),
        "a server with requirepass served an unauthenticated GET"
    );
}

#[test]
fn a_server_started_in_a_directory_loads_its_dump() {
    let mut first = RedisServer::start(&RedisOptions::default());
    let mut conn = first.client();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let () = redis::cmd("SAVE").query(&mut conn).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(first.dir().join("dump.rdb"), dir.path().join("dump.rdb")).unwrap();
    first.stop();

    let second = RedisServer::start_in(dir.path(), &RedisOptions::default());
    let value: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut second.client())
        .unwrap();
    assert_eq!(value.as_deref(), Some("v"));
    assert!(
        second.log().contains("DB loaded from disk"),
        "{}",
        second.log()
    );
}

#[test]
fn stop_ends_the_process() {
    let mut server = RedisServer::start(&RedisOptions::default());
    let pid = server.pid();
    server.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "redis-server {pid} still runs after stop"
    );
}
