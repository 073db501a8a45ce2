//! URLs, password sources and what is shown of them.

use std::os::unix::fs::PermissionsExt;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

fn resolve(url: &str) -> anyhow::Result<RedisEndpoint> {
    RedisEndpoint::resolve_with_env(url, None, None, TIMEOUT, None)
}

#[test]
fn host_port_and_user_are_read_and_the_port_defaults() {
    let endpoint = resolve("redis://cache.example:6380/").unwrap();
    assert_eq!(
        (endpoint.host.as_str(), endpoint.port),
        ("cache.example", 6380)
    );
    assert_eq!(endpoint.user(), "default");
    assert!(endpoint.password.is_none());
    let endpoint = resolve("redis://10.0.0.1").unwrap();
    assert_eq!(endpoint.port, 6379);
    let endpoint = resolve("redis://[::1]:7000/").unwrap();
    assert_eq!((endpoint.host.as_str(), endpoint.port), ("::1", 7000));
    assert_eq!(endpoint.display(), "redis://[::1]:7000");
    let endpoint = resolve("redis://backup%40ops:p%3Ass%40w@h:1/3").unwrap();
    assert_eq!(endpoint.user(), "backup@ops");
    assert_eq!(
        endpoint.password.as_deref().map(String::as_str),
        Some("p:ss@w")
    );
    assert_eq!(endpoint.password_source.as_deref(), Some("the URL"));
    let endpoint = resolve("redis://:secret@h/").unwrap();
    assert_eq!(endpoint.user(), "default");
    assert_eq!(
        endpoint.password.as_deref().map(String::as_str),
        Some("secret")
    );
}

#[test]
fn the_password_is_never_shown() {
    let endpoint = resolve("redis://backup:hunter2@h:1/").unwrap();
    assert_eq!(endpoint.display(), "redis://backup@h:1");
    for bad in [
        "redis://u:hunter2@h:0/",
        "redis://u:hunter2@:1/",
        "redis://u:hunter2@h:1/?x=1",
    ] {
        let error = format!("{:#}", resolve(bad).unwrap_err());
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("u:***@"), "{error}");
    }
}

#[test]
fn bad_urls_are_one_line_saying_what_to_write() {
    for (url, says) in [
        ("redis:///", "has no host: write redis://HOST:PORT/"),
        ("redis://:6379/", "has no host"),
        (
            "http://h:1/",
            "does not start with redis:// (or rediss:// for TLS)",
        ),
        ("redis://h:99999/", "not a number from 1 to 65535"),
        ("redis://h:x/", "not a number"),
        ("redis://[::1/", "unclosed ["),
        ("redis://u%zz:p@h/", "%25"),
    ] {
        let error = format!("{:#}", resolve(url).unwrap_err());
        assert!(error.contains(says), "{url}: {error}");
        assert!(!error.contains('\n'), "{url}: {error}");
    }
    let error = RedisEndpoint::resolve_with_env(
        "redis://h/",
        None,
        Some(Path::new("/etc/ca.pem")),
        TIMEOUT,
        None,
    )
    .unwrap_err();
    assert!(
        format!("{error}").contains("is not TLS: write rediss:// or remove tls_ca_file"),
        "{error}"
    );
    let error = RedisEndpoint::resolve_with_env(
        "rediss://h/",
        None,
        Some(Path::new("/nonexistent/ca.pem")),
        TIMEOUT,
        None,
    )
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("read tls_ca_file /nonexistent/ca.pem"),
        "{error:#}"
    );
}

#[test]
fn the_password_comes_from_the_url_then_the_file_then_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis.pass");
    std::fs::write(&file, "from-file\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = || Some(Zeroizing::new("from-env".to_owned()));
    let password = |url: &str, file: Option<&Path>| {
        let endpoint = RedisEndpoint::resolve_with_env(url, file, None, TIMEOUT, env()).unwrap();
        (
            endpoint.password.as_deref().cloned(),
            endpoint.password_source.clone(),
        )
    };
    assert_eq!(
        password("redis://:from-url@h/", Some(&file)),
        (Some("from-url".to_owned()), Some("the URL".to_owned()))
    );
    assert_eq!(
        password("redis://u@h/", Some(&file)),
        (
            Some("from-file".to_owned()),
            Some(format!("password_file {}", file.display()))
        )
    );
    assert_eq!(
        password("redis://h/", None),
        (
            Some("from-env".to_owned()),
            Some("REDISCLI_AUTH".to_owned())
        )
    );
}

#[test]
fn a_password_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis.pass");
    std::fs::write(&file, "secret\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = RedisEndpoint::resolve_with_env("redis://h/", Some(&file), None, TIMEOUT, None)
        .err()
        .unwrap();
    let text = format!("{error:#}");
    assert!(
        text.contains("is readable by others (mode 0644): chmod 600 it"),
        "{text}"
    );
    assert!(text.starts_with("password_file "), "{text}");
    std::fs::write(&file, "\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let error = RedisEndpoint::resolve_with_env("redis://h/", Some(&file), None, TIMEOUT, None)
        .err()
        .unwrap();
    assert!(format!("{error}").contains("is empty"));
}

#[test]
fn auth_is_one_resp_array_with_the_user_when_there_is_one() {
    let endpoint = resolve("redis://backup:pw@h/").unwrap();
    let mut sent = Vec::new();
    assert!(endpoint.write_auth(&mut sent).unwrap());
    assert_eq!(sent, b"*3\r\n$4\r\nAUTH\r\n$6\r\nbackup\r\n$2\r\npw\r\n");
    let endpoint = resolve("redis://h/").unwrap();
    let mut sent = Vec::new();
    assert!(!endpoint.write_auth(&mut sent).unwrap());
    assert!(sent.is_empty());
}

#[test]
fn refusals_to_log_in_say_what_to_do() {
    let endpoint = resolve("redis://backup:pw@h/").unwrap();
    let text = format!(
        "{}",
        endpoint.connect_error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert!(
        text.contains("refused the password (from the URL)"),
        "{text}"
    );
    let text = format!(
        "{}",
        endpoint.connect_error("NOAUTH Authentication required.")
    );
    assert!(text.contains("REDISCLI_AUTH"), "{text}");
}
