//! Where and as whom to connect: a libpq connection string (`host=… port=… user=…` or a
//! `postgresql://` URI, parsed by tokio-postgres), completed as libpq would from `PGHOST`,
//! `PGPORT`, `PGUSER`, `PGPASSWORD` and the password file (`PGPASSFILE`, else `~/.pgpass`).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

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
}

impl ConnectTarget {
    /// Parses `conninfo` and fills what it leaves out from the environment and the password file.
    pub fn from_conninfo(conninfo: &str) -> anyhow::Result<ConnectTarget> {
        // tokio-postgres's parser accepts both libpq forms; its error never echoes a password.
        let config: tokio_postgres::Config = conninfo
            .parse()
            .map_err(|e| anyhow::anyhow!("conninfo is not a valid connection string: {e}"))?;
        // No TLS yet: a connection that asks for it must not silently go without.
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            bail!(
                "conninfo asks for sslmode=require, but Tidemark does not speak TLS yet: connect over a Unix socket or a trusted network with sslmode=disable"
            );
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if config.get_hosts().len() > 1 {
            bail!("conninfo names several hosts; give the one to back up");
        }
        let port = match config.get_ports().first() {
            Some(port) => *port,
            None => env("PGPORT")
                .map(|p| {
                    p.parse::<u16>()
                        .with_context(|| format!("PGPORT '{p}' is not a port"))
                })
                .transpose()?
                .unwrap_or(5432),
        };
        let endpoint = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => Endpoint::Tcp {
                host: host.clone(),
                port,
            },
            Some(tokio_postgres::config::Host::Unix(dir)) => Endpoint::Unix {
                dir: dir.clone(),
                port,
            },
            None => match env("PGHOST") {
                Some(host) if host.starts_with('/') => Endpoint::Unix {
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
            },
        };
        let user = match config.get_user() {
            Some(user) => user.to_owned(),
            None => match env("PGUSER") {
                Some(user) => user,
                None => current_os_user()?,
            },
        };
        let dbname = config.get_dbname().map(str::to_owned);
        let password = match config.get_password() {
            Some(password) => Some(Password(password.to_vec())),
            None => match env("PGPASSWORD") {
                Some(password) => Some(Password(password.into_bytes())),
                None => password_from_file(
                    &endpoint,
                    dbname.as_deref().unwrap_or("replication"),
                    &user,
                )?,
            },
        };
        Ok(ConnectTarget {
            endpoint,
            user,
            dbname,
            password,
        })
    }
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

    #[test]
    fn sslmode_require_is_refused_not_ignored() {
        let error = ConnectTarget::from_conninfo("host=db sslmode=require user=x")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "conninfo asks for sslmode=require, but Tidemark does not speak TLS yet"
            ),
            "{error}"
        );
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
