//! TLS to a real PostgreSQL 15 with `ssl = on` on a loopback port, with a CA made here by
//! rcgen: each `sslmode` checks what libpq's checks (verify-full the chain and the host name,
//! verify-ca the chain only, require and prefer nothing), a certificate from another CA or for
//! another host is refused, a server without SSL is refused by `require` and used in plaintext
//! by `prefer`, a client certificate logs in through a `hostssl … cert` line while a
//! group-readable key is refused, `tidemark backup` runs end to end over verify-full, plaintext
//! injected after the server's `S` breaks the handshake (CVE-2021-23214), and a 4 GiB message
//! length is refused. The servers reject plaintext TCP (`hostnossl … reject`) and `pg_stat_ssl`
//! is read while the walsender is connected, so a connection that silently went without TLS
//! cannot pass.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use testkit::owner::write_owned_file;
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::{Lab, PgBinaries, SharedTempDir, ThrowawayCluster};
use tidemark::protocol::{ConnectTarget, ReplicationConnection};

/// A PEM certificate and its PEM private key.
struct Issued {
    cert: String,
    key: String,
}

/// A CA that signs server and client certificates.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `common_name` with `names` as subject alternative names (an IP
    /// address string becomes an IP SAN).
    fn issue(&self, common_name: &str, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Writes `text` to `dir/name` with `mode`, owned by this process's user (who reads it in the
/// in-process tests; the key-file rule looks at the owner).
fn file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Like [`file`], owned by the cluster owner, who runs the binaries and the server.
fn owner_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    write_owned_file(&path, text, mode).unwrap();
    path
}

/// A running cluster serving TLS on a loopback port with `server`'s certificate, trusting
/// `client_ca` for client certificates; plaintext TCP is rejected by the server, and role
/// `certuser` may replicate only with a client certificate.
fn tls_cluster(
    tmp: &SharedTempDir,
    name: &str,
    server: &Issued,
    client_ca: &TestCa,
) -> ThrowawayCluster {
    let pg = PgBinaries::locate().unwrap();
    let mut cluster = ThrowawayCluster::init(&pg, tmp.path(), name, 1).unwrap();
    cluster
        .serve_tls_on_loopback(&server.cert, &server.key)
        .unwrap();
    owner_file(cluster.data_dir(), "client_ca.crt", &client_ca.pem(), 0o600);
    cluster
        .configure(&[("ssl_ca_file", "client_ca.crt")])
        .unwrap();
    // First match wins: the last line put first is checked first.
    reject_plaintext_tcp(&cluster);
    cluster
        .allow_first("hostssl replication certuser 127.0.0.1/32 cert")
        .unwrap();
    cluster
        .allow_first("hostssl replication scram 127.0.0.1/32 scram-sha-256")
        .unwrap();
    cluster.start().unwrap();
    cluster
        .query("CREATE ROLE certuser LOGIN REPLICATION")
        .unwrap();
    cluster
        .query("SET password_encryption = 'scram-sha-256'; CREATE ROLE scram LOGIN REPLICATION PASSWORD 'scram secret'")
        .unwrap();
    cluster
}

/// Makes the server refuse every TCP connection without TLS (`all` in the database column
/// does not cover replication connections, hence two lines).
fn reject_plaintext_tcp(cluster: &ThrowawayCluster) {
    for database in ["all", "replication"] {
        cluster
            .allow_first(&format!("hostnossl {database} all 0.0.0.0/0 reject"))
            .unwrap();
    }
}

/// A loopback relay to the server on `server_port`: the client's bytes pass as they are; into
/// the first connection's server stream `injected` goes after the server's first `after` bytes,
/// as a man in the middle would put it; later connections pass untouched. Returns its port.
fn relay_injecting(server_port: u16, after: usize, injected: &[u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let injected = injected.to_vec();
    thread::spawn(move || {
        for (index, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            let injected = if index == 0 {
                Some(injected.clone())
            } else {
                None
            };
            thread::spawn(move || relay_one(client, server_port, after, injected));
        }
    });
    port
}

fn relay_one(client: TcpStream, server_port: u16, after: usize, injected: Option<Vec<u8>>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
        return;
    };
    let (mut from_client, mut to_server) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Both);
    });
    let (mut from_server, mut to_client) = (server, client);
    if let Some(injected) = injected {
        let mut head = vec![0; after];
        if from_server.read_exact(&mut head).is_err() {
            let _ = to_client.shutdown(Shutdown::Both);
            return;
        }
        // One write, so the injected bytes arrive with what precedes them.
        head.extend_from_slice(&injected);
        if to_client.write_all(&head).is_err() {
            return;
        }
    }
    let _ = std::io::copy(&mut from_server, &mut to_client);
    let _ = to_client.shutdown(Shutdown::Both);
}

fn target(cluster: &ThrowawayCluster, user: &str, tls: &str) -> ConnectTarget {
    let conninfo = format!("host=127.0.0.1 port={} user={user} {tls}", cluster.port());
    ConnectTarget::from_conninfo(&conninfo).unwrap()
}

/// Connects with `tls` (conninfo keywords) as `user`, checks the system, and returns what
/// `pg_stat_ssl` says of the walsender while connected: `true|TLSv1.3` or `false|`.
async fn connect_and_read_ssl(cluster: &ThrowawayCluster, user: &str, tls: &str) -> String {
    let mut connection = ReplicationConnection::connect(&target(cluster, user, tls))
        .await
        .unwrap_or_else(|e| panic!("{tls}: {e:#}"));
    let identity = connection.identify_system().await.unwrap();
    assert_eq!(identity.system_id, cluster.system_identifier().unwrap());
    let ssl = cluster
        .query(
            "SELECT s.ssl || '|' || coalesce(s.version, '') FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'walsender'",
        )
        .unwrap();
    connection.close().await;
    ssl
}

async fn connect_error(cluster: &ThrowawayCluster, user: &str, tls: &str) -> String {
    match ReplicationConnection::connect(&target(cluster, user, tls)).await {
        Ok(_) => panic!("{tls}: connected, but should have been refused"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn each_sslmode_checks_the_server_certificate_as_libpq_does() {
    let tmp = SharedTempDir::new("tm-tls-").unwrap();
    let (ca, other_ca) = (TestCa::new("Tidemark test CA"), TestCa::new("Another CA"));
    let ca_file = file(tmp.path(), "ca.crt", &ca.pem(), 0o644);
    let other_ca_file = file(tmp.path(), "other-ca.crt", &other_ca.pem(), 0o644);
    let server = ca.issue("db", &["localhost", "127.0.0.1"]);
    let cluster = tls_cluster(&tmp, "tls", &server, &ca);
    let endpoint = format!("127.0.0.1:{}", cluster.port());
    assert!(
        !Path::new(&std::env::var("HOME").unwrap_or_default())
            .join(".postgresql/root.crt")
            .exists(),
        "~/.postgresql/root.crt exists here; it would turn sslmode=require into verify-ca"
    );

    for tls in [
        format!("sslmode=verify-full sslrootcert={}", ca_file.display()),
        format!("sslmode=verify-ca sslrootcert={}", ca_file.display()),
        "sslmode=require".to_owned(),
        // The default, prefer, takes TLS when the server offers it.
        String::new(),
    ] {
        let ssl = connect_and_read_ssl(&cluster, "postgres", &tls).await;
        assert!(
            ssl.starts_with("true|TLSv1."),
            "{tls}: pg_stat_ssl says {ssl}"
        );
    }

    for mode in ["verify-ca", "verify-full", "require"] {
        let error = connect_error(
            &cluster,
            "postgres",
            &format!("sslmode={mode} sslrootcert={}", other_ca_file.display()),
        )
        .await;
        // require with a root file is verify-ca, as in libpq.
        let shown = if mode == "require" { "verify-ca" } else { mode };
        assert_eq!(
            error,
            format!(
                "connect to {endpoint}: TLS handshake: the server's certificate is not signed by a CA in sslrootcert {} (sslmode={shown})",
                other_ca_file.display()
            )
        );
    }

    // SCRAM inside TLS, plain and bound to the session (SCRAM-SHA-256-PLUS, whose
    // certificate hash the server checks: a wrong one fails the login).
    for binding in ["disable", "require"] {
        let ssl = connect_and_read_ssl(
            &cluster,
            "scram",
            &format!(
                "sslmode=verify-full sslrootcert={} password='scram secret' channel_binding={binding}",
                ca_file.display()
            ),
        )
        .await;
        assert!(ssl.starts_with("true|TLSv1."), "{binding}: {ssl}");
    }
    // A login the server grants without SCRAM (trust here) is not bound.
    let error = connect_error(
        &cluster,
        "postgres",
        "sslmode=require channel_binding=require",
    )
    .await;
    assert_eq!(
        error,
        format!(
            "log in to {endpoint} as postgres: channel_binding=require, but the server logged in without SCRAM-SHA-256-PLUS (pg_hba.conf method trust, cert, password or md5): use scram-sha-256 there"
        )
    );

    // The server itself refuses plaintext TCP: what passed above went over TLS.
    let error = connect_error(&cluster, "postgres", "sslmode=disable").await;
    assert!(
        error.contains("pg_hba.conf rejects replication connection")
            && error.contains("no encryption"),
        "{error}"
    );
}

/// CVE-2021-23214's attack: plaintext bytes put after the server's `S` must go into the
/// handshake (and break it), never be read as the server's first messages.
#[tokio::test]
async fn bytes_injected_after_the_ssl_answer_break_the_handshake() {
    let tmp = SharedTempDir::new("tm-tls-").unwrap();
    let ca = TestCa::new("Tidemark test CA");
    let cluster = tls_cluster(&tmp, "inject", &ca.issue("db", &["127.0.0.1"]), &ca);
    // AuthenticationOk, then ReadyForQuery: a login that never happened.
    let fake_login = b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I";
    let relay = relay_injecting(cluster.port(), 1, fake_login);
    let target = ConnectTarget::from_conninfo(&format!(
        "host=127.0.0.1 port={relay} user=postgres sslmode=require"
    ))
    .unwrap();
    let error = match ReplicationConnection::connect(&target).await {
        Ok(_) => panic!("connected through injected plaintext"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.starts_with(&format!("connect to 127.0.0.1:{relay}: TLS handshake: ")),
        "{error}"
    );

    // prefer, as libpq, retries a failed handshake without SSL: on a new connection, which this
    // server refuses because it is plaintext.
    let relay = relay_injecting(cluster.port(), 1, fake_login);
    let target = ConnectTarget::from_conninfo(&format!(
        "host=127.0.0.1 port={relay} user=postgres sslmode=prefer"
    ))
    .unwrap();
    let error = match ReplicationConnection::connect(&target).await {
        Ok(_) => panic!("sslmode=prefer: connected through injected plaintext"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.starts_with(&format!("log in to 127.0.0.1:{relay} as postgres: server says: pg_hba.conf rejects replication connection"))
            && error.contains("no encryption"),
        "{error}"
    );
}

/// A length field of 4 GiB in a server message is refused before anything is reserved for it.
#[tokio::test]
async fn a_server_message_longer_than_64_mib_is_refused() {
    let tmp = SharedTempDir::new("tm-tls-").unwrap();
    let pg = PgBinaries::locate().unwrap();
    let mut cluster = ThrowawayCluster::init(&pg, tmp.path(), "huge", 1).unwrap();
    cluster.listen_on_loopback().unwrap();
    cluster.start().unwrap();
    let relay = relay_injecting(cluster.port(), 0, b"R\xff\xff\xff\xff");
    let target = ConnectTarget::from_conninfo(&format!(
        "host=127.0.0.1 port={relay} user=postgres sslmode=disable"
    ))
    .unwrap();
    let error = match ReplicationConnection::connect(&target).await {
        Ok(_) => panic!("connected through a 4 GiB message"),
        Err(e) => format!("{e:#}"),
    };
    assert_eq!(
        error,
        format!(
            "log in to 127.0.0.1:{relay} as postgres: the server sent a message (type 'R') of 4294967295 bytes, more than the 64 MiB a server message may have"
        )
    );
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let tmp = SharedTempDir::new("tm-tls-").unwrap();
    let ca = TestCa::new("Tidemark test CA");
    let ca_file = file(tmp.path(), "ca.crt", &ca.pem(), 0o644);
    let server = ca.issue("db.test", &["db.test"]);
    let cluster = tls_cluster(&tmp, "named", &server, &ca);

    let error = connect_error(
        &cluster,
        "postgres",
        &format!("sslmode=verify-full sslrootcert={}", ca_file.display()),
    )
    .await;
    assert_eq!(
        error,
        format!(
            "connect to 127.0.0.1:{}: TLS handshake: the server's certificate is for db.test, not 127.0.0.1 (sslmode=verify-full; connect by one of those names, or use sslmode=verify-ca)",
            cluster.port()
        )
    );
    let ssl = connect_and_read_ssl(
        &cluster,
        "postgres",
        &format!("sslmode=verify-ca sslrootcert={}", ca_file.display()),
    )
    .await;
    assert!(ssl.starts_with("true|TLSv1."), "{ssl}");
}

#[tokio::test]
async fn require_refuses_a_server_without_ssl_and_prefer_goes_on_in_plaintext() {
    let tmp = SharedTempDir::new("tm-tls-").unwrap();
    let pg = PgBinaries::locate().unwrap();
    let mut cluster = ThrowawayCluster::init(&pg, tmp.path(), "plain", 1).unwrap();
    cluster.listen_on_loopback().unwrap();
    cluster.start().unwrap();
    assert_eq!(cluster.query("SHOW ssl").unwrap(), "off");

    let error = connect_error(&cluster, "postgres", "sslmode=require").await;
    assert_eq!(
        error,
        format!(
            "connect to 127.0.0.1:{}: the server does not accept SSL connections (ssl = off in its postgresql.conf?), and sslmode=require requires it",
            cluster.port()
        )
    );
    for tls in ["sslmode=prefer", "sslmode=disable"] {
        let ssl = connect_and_read_ssl(&cluster, "postgres", tls).await;
        assert_eq!(ssl, "false|", "{tls}");
    }
}

#[tokio::test]
async fn a_client_certificate_logs_in_and_a_readable_key_is_refused() {
    let tmp = SharedTempDir::new("tm-tls-").unwrap();
    let ca = TestCa::new("Tidemark test CA");
    let ca_file = file(tmp.path(), "ca.crt", &ca.pem(), 0o644);
    let cluster = tls_cluster(&tmp, "cert", &ca.issue("db", &["127.0.0.1"]), &ca);
    let client = ca.issue("certuser", &[]);
    let cert = file(tmp.path(), "client.crt", &client.cert, 0o644);
    let key = file(tmp.path(), "client.key", &client.key, 0o600);
    let tls = |key: &Path| {
        format!(
            "sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
            ca_file.display(),
            cert.display(),
            key.display()
        )
    };

    let ssl = connect_and_read_ssl(&cluster, "certuser", &tls(&key)).await;
    assert!(ssl.starts_with("true|TLSv1."), "{ssl}");
    // Without the certificate the `cert` line refuses the same role.
    let error = connect_error(
        &cluster,
        "certuser",
        &format!("sslmode=verify-full sslrootcert={}", ca_file.display()),
    )
    .await;
    assert!(
        error.contains("certificate authentication failed for user \"certuser\"")
            || error.contains("connection requires a valid client certificate"),
        "{error}"
    );

    let readable = file(tmp.path(), "readable.key", &client.key, 0o644);
    let error = connect_error(&cluster, "certuser", &tls(&readable)).await;
    assert_eq!(
        error,
        format!(
            "connect to 127.0.0.1:{}: private key file {} has mode 0644, readable by others: chmod 0600 it (or 0640 if owned by root)",
            cluster.port(),
            readable.display()
        )
    );
}

/// `tidemark backup` over verify-full: complete, on a server that refuses plaintext TCP; and
/// the TLS refusals of the command line, each one line, exit 1, the repository untouched.
#[test]
fn backup_runs_over_verify_full_and_tls_refusals_change_nothing() {
    let lab = Lab::new("tm-tls-backup-", &common::binaries()).unwrap();
    let mut cluster = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    let ca = TestCa::new("Tidemark test CA");
    let other_ca = TestCa::new("Another CA");
    let server = ca.issue("db", &["127.0.0.1"]);
    cluster.stop().unwrap();
    cluster
        .serve_tls_on_loopback(&server.cert, &server.key)
        .unwrap();
    reject_plaintext_tcp(&cluster);
    cluster.start().unwrap();
    let dir = lab.tmp.path();
    let ca_file = owner_file(dir, "ca.crt", &ca.pem(), 0o644);
    let other_ca_file = owner_file(dir, "other-ca.crt", &other_ca.pem(), 0o644);
    let client = ca.issue("postgres", &[]);
    let cert = owner_file(dir, "client.crt", &client.cert, 0o644);
    let readable_key = owner_file(dir, "client.key", &client.key, 0o644);
    let endpoint = format!("127.0.0.1:{}", cluster.port());
    let with_tls = |tls: &str| {
        lab.write_config_with_conninfo(
            cluster.data_dir(),
            "",
            Some(&format!("{} {tls}", cluster.tcp_conninfo())),
        )
        .unwrap();
    };

    let refusals = [
        (
            format!("sslmode=verify-full sslrootcert={}", other_ca_file.display()),
            format!(
                "tidemark: ERROR: backup: connect to {endpoint}: TLS handshake: the server's certificate is not signed by a CA in sslrootcert {} (sslmode=verify-full)",
                other_ca_file.display()
            ),
        ),
        (
            format!(
                "sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
                ca_file.display(),
                cert.display(),
                readable_key.display()
            ),
            format!(
                "tidemark: ERROR: backup: connect to {endpoint}: private key file {} has mode 0644, readable by others: chmod 0600 it (or 0640 if owned by root)",
                readable_key.display()
            ),
        ),
        (
            "sslmode=allow".to_owned(),
            "tidemark: ERROR: stanza 'main': sslmode=allow is not supported: use prefer (TLS when the server offers it) or require".to_owned(),
        ),
    ];
    let before = common::snapshot(&lab.repo_path);
    for (tls, expected) in &refusals {
        with_tls(tls);
        let ran = common::run(
            &lab,
            "tidemark",
            &["--config", lab.config_path.to_str().unwrap(), "backup"],
        );
        assert_eq!(ran.code, Some(1), "{tls}: {}", ran.stderr);
        assert_eq!(ran.only_line(), expected, "{tls}");
        assert!(ran.stdout.is_empty(), "{tls}: {}", ran.stdout);
        assert!(
            common::snapshot(&lab.repo_path) == before,
            "{tls} changed the repository"
        );
    }

    // The PGSSL… variables stand in for keywords conninfo leaves out, as in libpq.
    with_tls("");
    let output = testkit::owner_command(&lab.bin_dir.join("tidemark"), lab.tmp.path())
        .args(["--config", lab.config_path.to_str().unwrap(), "backup"])
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &other_ca_file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        refusals[0].1
    );
    assert!(
        common::snapshot(&lab.repo_path) == before,
        "PGSSLMODE changed the repository"
    );

    // The server refuses plaintext TCP: the backup below can only have gone over TLS.
    with_tls("sslmode=disable");
    let ran = common::run(
        &lab,
        "tidemark",
        &["--config", lab.config_path.to_str().unwrap(), "backup"],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.only_line().contains("no encryption"), "{}", ran.stderr);

    with_tls(&format!(
        "sslmode=verify-full sslrootcert={}",
        ca_file.display()
    ));
    let out = lab.tidemark(&["backup"]).unwrap();
    assert!(
        out.starts_with("backup ") && out.contains(" complete: "),
        "{out}"
    );
    let info = lab.tidemark(&["info"]).unwrap();
    assert!(
        info.contains(out.split_whitespace().nth(1).unwrap()),
        "{info}"
    );
}
