//! Where, as whom and how safely to connect: a libpq connection string (`host=… port=… user=…`
//! or a `postgresql://` URI, read by `parse`), completed as libpq would from `PGHOST`,
//! `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`,
//! `PGCHANNELBINDING`, `~/.postgresql/` and the password file (`PGPASSFILE`, else `~/.pgpass`).

mod parse;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::channel_binding::ChannelBindingMode;
use super::tls::{ClientCert, RootCerts, SslMode, TlsSettings};

/// How to reach the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp {
        host: String,
        port: u16,
    },
    /// A Unix socket: `<dir>/.s.PGSQL.<port>`.
    Unix {
        dir: PathBuf,
        port: u16,
    },
}

impl Endpoint {
    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Tcp { port, .. } | Endpoint::Unix { port, .. } => *port,
        }
    }

    /// The host as libpq's password file names it: the socket directory counts as `localhost`.
    fn pgpass_host(&self) -> &str {
        match self {
            Endpoint::Tcp { host, .. } => host,
            Endpoint::Unix { .. } => "localhost",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix { dir, port } => write!(f, "{}/.s.PGSQL.{port}", dir.display()),
        }
    }
}

/// A password; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

/// Everything needed to open a connection.
#[derive(Clone, Debug)]
pub struct ConnectTarget {
    pub endpoint: Endpoint,
    pub user: String,
    pub dbname: Option<String>,
    pub password: Option<Password>,
    /// Ignored on a Unix socket, where PostgreSQL never does SSL (as libpq ignores it).
    pub tls: TlsSettings,
    pub channel_binding: ChannelBindingMode,
}

/// libpq keywords read here.
const HONOURED: &[&str] = &[
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslsni",
    "channel_binding",
];

/// libpq keywords accepted and ignored: they tune what Tidemark already bounds itself, or
/// name a mechanism Tidemark never uses, so dropping them weakens nothing.
const IGNORED: &[&str] = &[
    "application_name",
    "fallback_application_name",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "client_encoding",
    "sslcompression",
];

/// libpq keywords whose request Tidemark cannot honour: refused rather than silently dropped.
const UNSUPPORTED: &[&str] = &[
    "hostaddr",
    "passfile",
    "options",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
    "sslcrl",
    "sslcrldir",
    "sslcertmode",
    "sslnegotiation",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requiressl",
    "requirepeer",
    "require_auth",
    "gssencmode",
    "gsslib",
    "gssdelegation",
    "krbsrvname",
    "replication",
];

/// The keywords of a connection string, checked against what Tidemark understands; a repeated
/// keyword's last value wins, as in libpq.
fn read_keywords(conninfo: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let pairs = parse::parse(conninfo)
        .map_err(|e| anyhow::anyhow!("conninfo is not a valid connection string: {e}"))?;
    let mut keywords = BTreeMap::new();
    for (key, value) in pairs {
        if key == "sslpassword" {
            bail!(
                "conninfo gives sslpassword, but Tidemark does not read encrypted private keys: store the key decrypted, mode 0600, and drop sslpassword"
            );
        }
        if UNSUPPORTED.contains(&key.as_str()) {
            bail!("conninfo option {key} is not supported by Tidemark: remove it");
        }
        if !HONOURED.contains(&key.as_str()) && !IGNORED.contains(&key.as_str()) {
            bail!(
                "conninfo is not a valid connection string: unknown option \"{}\"",
                key.escape_default()
            );
        }
        keywords.insert(key, value);
    }
    Ok(keywords)
}

impl ConnectTarget {
    /// Parses `conninfo` and fills what it leaves out from the environment and the password file.
    pub fn from_conninfo(conninfo: &str) -> anyhow::Result<ConnectTarget> {
        let keywords = read_keywords(conninfo)?;
        let get = |key: &str| keywords.get(key).filter(|v| !v.is_empty()).cloned();
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let host = get("host");
        if host.as_deref().is_some_and(|h| h.contains(',')) {
            bail!("conninfo names several hosts; give the one to back up");
        }
        let port =
            match get("port").or_else(|| env("PGPORT")) {
                Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).with_context(|| {
                    format!("port \"{}\" is not a port number", p.escape_default())
                })?,
                None => 5432,
            };
        let endpoint = match host.or_else(|| env("PGHOST")) {
            Some(host) if host.starts_with('/') || host.starts_with('@') => Endpoint::Unix {
                dir: PathBuf::from(host),
                port,
            },
            Some(host) => Endpoint::Tcp { host, port },
            // Debian's libpq default socket directory, else the upstream one.
            None => Endpoint::Unix {
                dir: if Path::new("/var/run/postgresql").is_dir() {
                    PathBuf::from("/var/run/postgresql")
                } else {
                    PathBuf::from("/tmp")
                },
                port,
            },
        };
        let user = match get("user").or_else(|| env("PGUSER")) {
            Some(user) => user,
            None => current_os_user()?,
        };
        let dbname = get("dbname");
        let password = match get("password") {
            Some(password) => Some(Password(password.into_bytes())),
            None => match env("PGPASSWORD") {
                Some(password) => Some(Password(password.into_bytes())),
                None => password_from_file(
                    &endpoint,
                    dbname.as_deref().unwrap_or("replication"),
                    &user,
                )?,
            },
        };
        let tls = tls_settings(&|key| {
            get(key).or_else(|| env(&format!("PG{}", key.to_ascii_uppercase())))
        })?;
        let channel_binding = match get("channel_binding").or_else(|| env("PGCHANNELBINDING")) {
            Some(mode) => ChannelBindingMode::parse(&mode)?,
            None => ChannelBindingMode::Prefer,
        };
        Ok(ConnectTarget {
            endpoint,
            user,
            dbname,
            password,
            tls,
            channel_binding,
        })
    }
}

/// libpq's TLS choices from the `ssl*` keywords (`lookup` falls back to `PGSSL…`): the mode
/// (default `prefer`), the root file (`sslrootcert`, else `~/.postgresql/root.crt` if it
/// exists, which turns `require` into `verify-ca`), and the client certificate.
fn tls_settings(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<TlsSettings> {
    let home_file = |name: &str| {
        std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(".postgresql").join(name))
            .unwrap_or_else(|| PathBuf::from("~/.postgresql").join(name))
    };
    let default_roots = home_file("root.crt");
    let explicit_mode = lookup("sslmode").map(|m| SslMode::parse(&m)).transpose()?;
    let roots = match lookup("sslrootcert") {
        Some(root) if root == "system" => Some(RootCerts::System),
        Some(root) => Some(RootCerts::File(PathBuf::from(root))),
        None => default_roots
            .is_file()
            .then(|| RootCerts::File(default_roots.clone())),
    };
    let mode = match (explicit_mode, &roots) {
        // PostgreSQL 16's rule: the system's roots only with the host name checked.
        (None, Some(RootCerts::System)) => SslMode::VerifyFull,
        (Some(mode), Some(RootCerts::System)) if mode != SslMode::VerifyFull => bail!(
            "sslrootcert=system needs sslmode=verify-full (the system's CAs sign certificates for anyone's names), not sslmode={mode}"
        ),
        (Some(SslMode::Require), Some(_)) => SslMode::VerifyCa,
        (mode, _) => mode.unwrap_or(SslMode::Prefer),
    };
    let client = match lookup("sslcert") {
        Some(cert) => Some(PathBuf::from(cert)),
        None => Some(home_file("postgresql.crt")).filter(|c| c.is_file()),
    }
    .map(|cert| ClientCert {
        cert,
        key: lookup("sslkey")
            .map(PathBuf::from)
            .unwrap_or_else(|| home_file("postgresql.key")),
    });
    let sni = match lookup("sslsni").as_deref() {
        None | Some("1") => true,
        Some("0") => false,
        Some(other) => bail!("sslsni \"{}\" is not 0 or 1", other.escape_default()),
    };
    Ok(TlsSettings {
        mode,
        roots,
        default_roots,
        client,
        sni,
    })
}

fn current_os_user() -> anyhow::Result<String> {
    let uid = rustix::process::geteuid().as_raw();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
        })
        .context("conninfo names no user and the OS user is unknown: add user=… to conninfo")
}

/// The password for this connection from the password file, as libpq looks it up: the first
/// line whose `host:port:database:user` fields match, `*` matching anything.
fn password_from_file(
    endpoint: &Endpoint,
    database: &str,
    user: &str,
) -> anyhow::Result<Option<Password>> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(path) => PathBuf::from(path),
        None => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".pgpass"),
            None => return Ok(None),
        },
    };
    let Ok(metadata) = std::fs::metadata(&path) else {
        return Ok(None);
    };
    // As libpq: a password file others can read is not trusted.
    use std::os::unix::fs::PermissionsExt;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access and is ignored; make it u=rw (chmod 0600)",
            path.display()
        );
        return Ok(None);
    }
    let Ok(content) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    Ok(find_in_pgpass(
        &content,
        endpoint.pgpass_host(),
        &endpoint.port().to_string(),
        database,
        user,
    )
    .map(Password))
}

/// Splits a password-file line at unescaped colons, undoing `\:` and `\\`.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

fn find_in_pgpass(
    content: &str,
    host: &str,
    port: &str,
    database: &str,
    user: &str,
) -> Option<Vec<u8>> {
    content.lines().find_map(|line| {
        if line.trim_start().starts_with('#') {
            return None;
        }
        let fields = pgpass_fields(line);
        if fields.len() < 5 {
            return None;
        }
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        (matches(&fields[0], host)
            && matches(&fields[1], port)
            && matches(&fields[2], database)
            && matches(&fields[3], user))
        .then(|| fields[4..].join(":").into_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_conninfo_forms() {
        let target = ConnectTarget::from_conninfo(
            "host=/var/run/postgresql port=5433 user=backup password=s3cret",
        )
        .unwrap();
        assert_eq!(
            target.endpoint,
            Endpoint::Unix {
                dir: PathBuf::from("/var/run/postgresql"),
                port: 5433
            }
        );
        assert_eq!(target.user, "backup");
        assert_eq!(target.password.as_ref().unwrap().bytes(), b"s3cret");
        assert!(
            !format!("{target:?}").contains("s3cret"),
            "a password never prints"
        );
        let target =
            ConnectTarget::from_conninfo("postgresql://rep@db.example:6543/postgres").unwrap();
        assert_eq!(
            target.endpoint,
            Endpoint::Tcp {
                host: "db.example".into(),
                port: 6543
            }
        );
        assert_eq!(target.user, "rep");
        assert_eq!(target.dbname.as_deref(), Some("postgres"));
    }

    /// Settings read with only what the closure gives, as the environment would.
    fn tls_from(pairs: &[(&str, &str)]) -> anyhow::Result<TlsSettings> {
        let owned: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tls_settings(&|key| owned.get(key).cloned())
    }

    #[test]
    fn sslmode_resolves_as_libpq_resolves_it() {
        // `~/.postgresql/root.crt` may exist here; `require` then means verify-ca.
        let none = tls_from(&[]).unwrap();
        assert_eq!(none.mode, SslMode::Prefer, "prefer is the default");
        assert_eq!(
            none.client.is_some(),
            none.client.as_ref().is_some_and(|c| c.cert.is_file())
        );
        let require = tls_from(&[("sslmode", "require")]).unwrap();
        let require_with_root =
            tls_from(&[("sslmode", "require"), ("sslrootcert", "/etc/ca.crt")]).unwrap();
        assert_eq!(
            require.mode,
            if none.roots.is_some() {
                SslMode::VerifyCa
            } else {
                SslMode::Require
            }
        );
        assert_eq!(require_with_root.mode, SslMode::VerifyCa);
        let system = tls_from(&[("sslrootcert", "system")]).unwrap();
        assert_eq!(system.mode, SslMode::VerifyFull);
        assert_eq!(system.roots, Some(RootCerts::System));
        let weak = tls_from(&[("sslrootcert", "system"), ("sslmode", "verify-ca")])
            .unwrap_err()
            .to_string();
        assert!(
            weak.starts_with("sslrootcert=system needs sslmode=verify-full"),
            "{weak}"
        );
        let client = tls_from(&[("sslcert", "/c.crt"), ("sslkey", "/c.key")]).unwrap();
        assert_eq!(
            client.client,
            Some(ClientCert {
                cert: "/c.crt".into(),
                key: "/c.key".into()
            })
        );
    }

    #[test]
    fn options_tidemark_cannot_honour_are_refused() {
        let allow = ConnectTarget::from_conninfo("host=db sslmode=allow user=x")
            .unwrap_err()
            .to_string();
        assert!(
            allow.starts_with("sslmode=allow is not supported"),
            "{allow}"
        );
        let password = ConnectTarget::from_conninfo("host=db sslpassword=hunter2 user=x")
            .unwrap_err()
            .to_string();
        assert!(
            password.starts_with("conninfo gives sslpassword"),
            "{password}"
        );
        assert!(!password.contains("hunter2"));
        let crl = ConnectTarget::from_conninfo("host=db sslcrl=/x user=x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            crl,
            "conninfo option sslcrl is not supported by Tidemark: remove it"
        );
        let unknown = ConnectTarget::from_conninfo("host=db sslmod=require user=x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            unknown,
            "conninfo is not a valid connection string: unknown option \"sslmod\""
        );
        let target =
            ConnectTarget::from_conninfo("host=db user=x sslmode=verify-full connect_timeout=5")
                .unwrap();
        assert_eq!(target.tls.mode, SslMode::VerifyFull);
    }

    #[test]
    fn password_file_lines_match_as_libpq_matches_them() {
        let file = "# comment\nother:5432:*:rep:wrong\nlocalhost:5433:*:rep:pa\\:ss\\\\word\n*:*:*:*:fallback\n";
        assert_eq!(
            find_in_pgpass(file, "localhost", "5433", "replication", "rep"),
            Some(b"pa:ss\\word".to_vec())
        );
        assert_eq!(
            find_in_pgpass(file, "db", "1", "x", "y"),
            Some(b"fallback".to_vec())
        );
        assert_eq!(find_in_pgpass("a:b:c\n", "a", "b", "c", "d"), None);
    }

    #[test]
    fn a_bad_conninfo_is_refused_without_echoing_it() {
        let error = format!(
            "{:#}",
            ConnectTarget::from_conninfo("host=x password=hunter2 bogus").unwrap_err()
        );
        assert!(
            error.starts_with("conninfo is not a valid connection string"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }
}
