//! Snapshots and probes of real `redis-server`s (testkit): both transfer forms, keep-alives, a
//! password and ACL users, a replica cut off midway; what `out` received is checked by
//! `redis-check-rdb`, against the server's own file, and against `redis-cli --rdb`.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::servers::redis::{RedisOptions, RedisServer};

use super::*;
use crate::sources::redis::probe::probe;
use crate::sources::redis::rdb::{AuxReader, RdbChecker};

fn endpoint(server: &RedisServer, user_part: &str) -> RedisEndpoint {
    RedisEndpoint::resolve_with_env(
        &format!("redis://{user_part}127.0.0.1:{}/", server.port),
        None,
        None,
        Duration::from_secs(10),
        None,
    )
    .unwrap()
}

/// Keys of several types in dbs 0, 3 and 9, some with a TTL far away.
fn populate(server: &RedisServer, count: u32) {
    let mut conn = server.client();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(count)
        .arg("key")
        .arg(64)
        .query(&mut conn)
        .unwrap();
    for db in [3, 9] {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut conn).unwrap();
        for i in 0..100 {
            let _: () = redis::pipe()
                .cmd("HSET")
                .arg(format!("h{i}"))
                .arg("f")
                .arg(i)
                .ignore()
                .cmd("RPUSH")
                .arg(format!("l{i}"))
                .arg("a")
                .arg("b")
                .ignore()
                .cmd("ZADD")
                .arg(format!("z{i}"))
                .arg(i)
                .arg("m")
                .ignore()
                .cmd("SADD")
                .arg(format!("s{i}"))
                .arg("x")
                .ignore()
                .cmd("XADD")
                .arg(format!("x{i}"))
                .arg("*")
                .arg("f")
                .arg("v")
                .ignore()
                .cmd("SET")
                .arg(format!("t{i}"))
                .arg("v")
                .arg("PXAT")
                .arg(4_102_444_800_000u64)
                .ignore()
                .query(&mut conn)
                .unwrap();
        }
    }
}

/// Waits (bounded) until no db's hash table is being rehashed: an RDB lists keys in table
/// order, which an incremental rehash in progress changes between two snapshots of the same
/// data.
fn wait_until_not_rehashing(server: &RedisServer) {
    let mut conn = server.client();
    for _ in 0..1500 {
        let rehashing = [0, 3, 9].iter().any(|db| {
            let stats: String = redis::cmd("DEBUG")
                .arg("HTSTATS")
                .arg(*db)
                .query(&mut conn)
                .unwrap();
            stats.contains("Hash table 1")
        });
        if !rehashing {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "redis-server on port {} still rehashing after 30 s",
        server.port
    );
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program} (install redis-tools): {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{program} {args:?} failed: {text}");
    text
}

/// An RDB's version, CRC, AUX fields and the bytes after them, as this module reads them.
fn parsed(
    rdb: &[u8],
) -> (
    u32,
    Option<u64>,
    crate::sources::redis::rdb::AuxFields,
    Vec<u8>,
) {
    let mut checker = RdbChecker::new();
    checker.update(rdb).unwrap();
    let summary = checker.finish().unwrap();
    let mut aux = AuxReader::new();
    aux.update(rdb);
    let end = aux.aux_end().expect("the AUX fields end");
    let (fields, problem) = aux.finish();
    assert_eq!(problem, None);
    (
        summary.version,
        summary.crc64,
        fields,
        rdb[end..rdb.len() - 8].to_vec(),
    )
}

fn dbsizes(server: &RedisServer) -> BTreeMap<u32, u64> {
    let mut conn = server.client();
    let mut sizes = BTreeMap::new();
    for db in 0..16u32 {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut conn).unwrap();
        let size: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
        if size > 0 {
            sizes.insert(db, size);
        }
    }
    sizes
}

#[test]
fn both_forms_give_the_file_redis_check_rdb_and_redis_cli_agree_on() {
    for (diskless, delay) in [(true, 0), (false, 0), (true, 5)] {
        let opts = RedisOptions {
            diskless_sync: diskless,
            diskless_sync_delay: delay,
            ..RedisOptions::default()
        };
        let server = RedisServer::start(&opts);
        populate(&server, 5_000);
        wait_until_not_rehashing(&server);
        let mut out = Vec::new();
        let meta = take_snapshot(&endpoint(&server, ""), &mut out)
            .unwrap_or_else(|e| panic!("diskless {diskless} delay {delay}: {e:#}"));
        let case = format!("diskless {diskless} delay {delay}");
        assert_eq!(
            meta.form,
            if diskless { "diskless" } else { "disk" },
            "{case}"
        );
        assert_eq!(meta.bytes, out.len() as u64, "{case}");
        assert_eq!(meta.rdb_version, 10, "{case}: Redis 7.0 writes RDB 10");
        assert!(meta.redis_version.starts_with("7."), "{case}");
        assert_eq!(meta.role, "master");
        assert_eq!(meta.server, format!("redis://127.0.0.1:{}", server.port));
        let trailer = u64::from_le_bytes(out[out.len() - 8..].try_into().unwrap());
        assert_eq!(meta.crc64, Some(format!("{trailer:016x}")), "{case}");
        assert_eq!(
            trailer,
            crate::sources::redis::rdb::crc64(&out[..out.len() - 8])
        );
        let sizes: BTreeMap<u32, u64> = meta.keys.iter().map(|(db, k)| (*db, k.keys)).collect();
        assert_eq!(sizes, dbsizes(&server), "{case}");
        assert_eq!(meta.keys[&3].expires, 100, "{case}");
        assert!(
            meta.ctime.is_some() && meta.repl_id.is_some() && meta.repl_offset.is_some(),
            "{case}: {meta:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours.rdb");
        std::fs::write(&ours, &out).unwrap();
        let said = run("redis-check-rdb", &[ours.to_str().unwrap()]);
        assert!(said.contains("RDB looks OK"), "{case}: {said}");
        if !diskless {
            // The disk form sends the file BGSAVE wrote: byte for byte what `out` received.
            let file = std::fs::read(server.dir().join("dump.rdb")).unwrap();
            assert_eq!(file, out, "{case}");
        }
        let cli = dir.path().join("cli.rdb");
        run(
            "redis-cli",
            &[
                "-p",
                &server.port.to_string(),
                "--rdb",
                cli.to_str().unwrap(),
            ],
        );
        let theirs = std::fs::read(&cli).unwrap();
        let (our_version, our_crc, mut our_aux, our_data) = parsed(&out);
        let (their_version, _, mut their_aux, their_data) = parsed(&theirs);
        assert_eq!(our_version, their_version, "{case}");
        assert_eq!(our_crc.map(|c| format!("{c:016x}")), meta.crc64);
        // Only the moment differs: when it was written, the memory and the replication offset
        // then (the primary's pings to replicas advance it between the two).
        for aux in [&mut our_aux, &mut their_aux] {
            aux.fields.remove("ctime");
            aux.fields.remove("used-mem");
            aux.fields.remove("repl-offset");
        }
        assert_eq!(our_aux, their_aux, "{case}");
        assert!(
            our_data == their_data,
            "{case}: the data after the AUX fields differs from redis-cli's"
        );
    }
}

#[test]
fn a_password_and_acl_users_log_in_and_a_user_without_sync_is_told_what_it_needs() {
    let opts = RedisOptions {
        requirepass: Some("pw-default".to_owned()),
        acl_users: vec![
            "backup on >pw-backup +sync +replconf +info".to_owned(),
            "nosync on >pw-nosync ~* &* +@all -sync".to_owned(),
            "noreplconf on >pw-noreplconf +sync +info".to_owned(),
        ],
        ..RedisOptions::default()
    };
    let server = RedisServer::start(&opts);
    populate(&server, 100);
    let mut out = Vec::new();
    let default = endpoint(&server, ":pw-default@");
    take_snapshot(&default, &mut out).unwrap();
    let lines = probe(&default).unwrap();
    assert!(
        lines.iter().any(|l| l
            .found
            .contains("ACL DRYRUN says user default may run SYNC")),
        "{lines:?}"
    );

    // Exactly the rules the advice names are enough; without +acl, SYNC cannot be probed.
    let backup = endpoint(&server, "backup:pw-backup@");
    let mut minimal = Vec::new();
    let meta = take_snapshot(&backup, &mut minimal).unwrap();
    assert_eq!(meta.bytes, minimal.len() as u64);
    let lines = probe(&backup).unwrap();
    assert!(
        lines.iter().any(|l| l.found.contains("SYNC not checked")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.found.starts_with("Redis 7.")),
        "{lines:?}"
    );

    let nosync = endpoint(&server, "nosync:pw-nosync@");
    let mut refused = Vec::new();
    let error = format!("{:#}", take_snapshot(&nosync, &mut refused).unwrap_err());
    assert!(error.contains("refused SYNC to ACL user nosync"), "{error}");
    assert!(
        error.contains("ACL SETUSER nosync +sync +replconf +info"),
        "{error}"
    );
    let error = format!("{:#}", probe(&nosync).unwrap_err());
    assert!(
        error.contains("may not run what a snapshot needs (sync:"),
        "{error}"
    );
    assert!(error.contains("ACL SETUSER nosync +sync"), "{error}");

    // Without +acl, the probe learns REPLCONF is refused by running it.
    let noreplconf = endpoint(&server, "noreplconf:pw-noreplconf@");
    let error = format!("{:#}", probe(&noreplconf).unwrap_err());
    assert!(
        error.contains("refused REPLCONF to ACL user noreplconf"),
        "{error}"
    );
    assert!(
        error.contains("ACL SETUSER noreplconf +sync +replconf +info"),
        "{error}"
    );
    let error = format!(
        "{:#}",
        take_snapshot(&noreplconf, &mut Vec::new()).unwrap_err()
    );
    assert!(
        error.contains("refused REPLCONF to ACL user noreplconf"),
        "{error}"
    );

    let wrong = endpoint(&server, "backup:wrong@");
    let error = format!("{:#}", take_snapshot(&wrong, &mut Vec::new()).unwrap_err());
    assert!(
        error.contains("refused the password (from the URL)"),
        "{error}"
    );
    let none = endpoint(&server, "");
    let error = format!("{:#}", take_snapshot(&none, &mut Vec::new()).unwrap_err());
    assert!(
        error.contains("requires a password and none was given"),
        "{error}"
    );
}

/// A writer that, on its first write, has the server drop every replica (this one), and then
/// stops taking bytes in without error — so the stream ends early from the server's side.
struct KillsTheReplica {
    killer: Option<redis::Connection>,
    received: u64,
}

impl Write for KillsTheReplica {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(mut conn) = self.killer.take() {
            let killed: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("replica")
                .query(&mut conn)
                .unwrap();
            assert_eq!(killed, 1);
        }
        self.received += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_replica_cut_off_midway_is_told_which_setting_to_raise() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(certs.path());
    for (diskless, tls) in [(true, false), (false, false), (true, true)] {
        let case = format!("diskless {diskless} tls {tls}");
        let tls_port = testkit::servers::s3s_fs::unused_port();
        let mut extra = vec![("rdbcompression".to_owned(), "no".to_owned())];
        if tls {
            extra.extend(tls_settings(tls_port, &ca, &cert, &key));
        }
        let opts = RedisOptions {
            diskless_sync: diskless,
            extra,
            ..RedisOptions::default()
        };
        let server = RedisServer::start(&opts);
        // About 60 MB of RDB: far more than the socket buffers hold when the kill lands.
        let mut conn = server.client();
        let _: () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(300_000)
            .arg("key")
            .arg(200)
            .query(&mut conn)
            .unwrap();
        let mut out = KillsTheReplica {
            killer: Some(server.client()),
            received: 0,
        };
        let endpoint = if tls {
            let url = format!("rediss://127.0.0.1:{tls_port}/");
            RedisEndpoint::resolve_with_env(&url, None, Some(&ca), Duration::from_secs(10), None)
                .unwrap()
        } else {
            endpoint(&server, "")
        };
        let error = take_snapshot(&endpoint, &mut out).unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("the server closed the replication stream after"),
            "{case}: {text}"
        );
        assert!(
            text.contains(
                "raise `client-output-buffer-limit replica` (now: replica 268435456 67108864 60)"
            ),
            "{case}: {text}"
        );
        assert!(text.contains("repl-timeout"), "{case}: {text}");
        assert!(out.received < 60_000_000, "{case}: {}", out.received);
    }
}

/// The settings that make a server listen for TLS on `port` with `cert`, no client certificates.
fn tls_settings(port: u16, ca: &Path, cert: &Path, key: &Path) -> Vec<(String, String)> {
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    vec![
        ("tls-port".to_owned(), port.to_string()),
        ("tls-cert-file".to_owned(), path(cert)),
        ("tls-key-file".to_owned(), path(key)),
        ("tls-ca-cert-file".to_owned(), path(ca)),
        ("tls-auth-clients".to_owned(), "no".to_owned()),
    ]
}

/// A CA's PEM, and a certificate for 127.0.0.1 it signed with its key, as PEM.
fn tls_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "redis");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &*issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, issuer.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn rediss_snapshots_and_probes_over_tls_trusting_the_ca_file() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(certs.path());
    let other = certs.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (other_ca, _, _) = tls_files(&other);
    for diskless in [true, false] {
        let tls_port = testkit::servers::s3s_fs::unused_port();
        let opts = RedisOptions {
            diskless_sync: diskless,
            requirepass: Some("pw".to_owned()),
            extra: tls_settings(tls_port, &ca, &cert, &key),
            ..RedisOptions::default()
        };
        let server = RedisServer::start(&opts);
        populate(&server, 1_000);
        let url = format!("rediss://:pw@127.0.0.1:{tls_port}/");
        let endpoint = |ca: &Path| {
            RedisEndpoint::resolve_with_env(&url, None, Some(ca), Duration::from_secs(10), None)
                .unwrap()
        };
        let mut out = Vec::new();
        let meta = take_snapshot(&endpoint(&ca), &mut out)
            .unwrap_or_else(|e| panic!("diskless {diskless}: {e:#}"));
        assert_eq!(meta.server, format!("rediss://127.0.0.1:{tls_port}"));
        assert_eq!(meta.bytes, out.len() as u64);
        let file = certs.path().join("tls.rdb");
        std::fs::write(&file, &out).unwrap();
        assert!(run("redis-check-rdb", &[file.to_str().unwrap()]).contains("RDB looks OK"));
        let lines = probe(&endpoint(&ca)).unwrap();
        assert!(
            lines[0].found.starts_with("rediss://127.0.0.1"),
            "{lines:?}"
        );

        // A server whose certificate another CA signed is refused, before any password is sent.
        let error = format!(
            "{:#}",
            take_snapshot(&endpoint(&other_ca), &mut Vec::new()).unwrap_err()
        );
        assert!(error.to_lowercase().contains("certificate"), "{error}");
    }
}
