//! Where a Redis source is and how to log in to it: the `redis://` URL, the password's three
//! sources (the URL's user part, `password_file`, `REDISCLI_AUTH`, in that order; never argv),
//! and connections with every wait bounded, over TLS for `rediss://` (`tls.rs`) — through the
//! `redis` crate for ordinary commands, and a plain stream for the replication handshake
//! (`sync.rs`).

#[cfg(test)]
mod tests;
mod url;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

use super::tls::TlsRoots;
use crate::repo::keys::read_secret_file;
use url::{ParsedUrl, percent_encode};

/// How long one ordinary command (INFO, ACL, CONFIG GET) may take to be sent or answered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest password file read: Redis passwords are short; a longer file is the wrong one.
const PASSWORD_FILE_LIMIT: usize = 4096;
/// The environment variable redis-cli reads its password from.
const PASSWORD_ENV: &str = "REDISCLI_AUTH";

/// A Redis server to snapshot, resolved from the configuration: address, user and password.
pub struct RedisEndpoint {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<Zeroizing<String>>,
    /// Where the password came from ("the URL", "password_file /x", "REDISCLI_AUTH"), for errors.
    password_source: Option<String>,
    connect_timeout: Duration,
    /// Present for `rediss://`.
    tls: Option<TlsRoots>,
}

/// A connection the replication stream runs over: plain TCP, or TLS over it.
pub trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

/// Shows what `display` shows: never the password.
impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("server", &self.display())
            .field("password_source", &self.password_source)
            .finish_non_exhaustive()
    }
}

impl RedisEndpoint {
    /// Reads `url` (`redis[s]://[user[:password]@]host[:port][/db]`) and finds the password. A
    /// `/db` is ignored with a warning: a snapshot holds every db. `rediss://` trusts the roots
    /// in `tls_ca_file`, else the system's; `tls_ca_file` is only for it.
    pub fn resolve(
        url: &str,
        password_file: Option<&Path>,
        tls_ca_file: Option<&Path>,
        connect_timeout: Duration,
    ) -> anyhow::Result<RedisEndpoint> {
        let from_env = std::env::var(PASSWORD_ENV).ok().map(Zeroizing::new);
        Self::resolve_with_env(url, password_file, tls_ca_file, connect_timeout, from_env)
    }

    /// [`RedisEndpoint::resolve`], with `REDISCLI_AUTH`'s value given.
    pub(super) fn resolve_with_env(
        url: &str,
        password_file: Option<&Path>,
        tls_ca_file: Option<&Path>,
        connect_timeout: Duration,
        from_env: Option<Zeroizing<String>>,
    ) -> anyhow::Result<RedisEndpoint> {
        let mut parsed = ParsedUrl::parse(url)?;
        let tls = match (parsed.tls, tls_ca_file) {
            (true, ca_file) => Some(TlsRoots::load(ca_file)?),
            (false, Some(ca)) => bail!(
                "tls_ca_file {} is set but the URL {} is not TLS: write rediss:// or remove tls_ca_file",
                ca.display(),
                parsed.display()
            ),
            (false, None) => None,
        };
        if let Some(db) = &parsed.db {
            tracing::warn!(
                "Redis URL {} names db {db}, which is ignored: a snapshot holds every db",
                parsed.display()
            );
        }
        let shown = parsed.display();
        let (password, password_source) =
            find_password(parsed.password.take(), password_file, from_env, &shown)?;
        Ok(RedisEndpoint {
            host: parsed.host,
            port: parsed.port,
            user: parsed.user,
            password,
            password_source,
            connect_timeout,
            tls,
        })
    }

    /// The server as people may read it: `redis://user@host:port`, never the password.
    pub fn display(&self) -> String {
        let user = self
            .user
            .as_deref()
            .map(|user| format!("{}@", percent_encode(user)))
            .unwrap_or_default();
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{user}{}", self.host_port())
    }

    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The ACL user logged in as: the URL's, else `default`.
    pub fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("default")
    }

    /// A connection for ordinary commands, authenticated, with connect, read and write timeouts.
    pub fn connection(&self) -> anyhow::Result<redis::Connection> {
        let mut settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(user) = &self.user {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.as_str());
        }
        let address = match &self.tls {
            None => redis::ConnectionAddr::Tcp(self.host.clone(), self.port),
            Some(_) => redis::ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            },
        };
        let info = redis::IntoConnectionInfo::into_connection_info(address)
            .context("describe the Redis connection")?
            .set_redis_settings(settings);
        let client = match self.tls.as_ref().and_then(|tls| tls.ca_pem.clone()) {
            Some(root_cert) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            ),
            None => redis::Client::open(info),
        }
        .with_context(|| format!("connect to Redis at {}", self.display()))?;
        let connection = client
            .get_connection_with_timeout(self.connect_timeout)
            .map_err(|e| self.connect_error(&e.to_string()))?;
        connection.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        connection.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(connection)
    }

    /// A connection to Redis failed with `reason`: one line that says what to do about it.
    pub(super) fn connect_error(&self, reason: &str) -> anyhow::Error {
        let reason = reason.trim();
        let upper = reason.to_ascii_uppercase();
        if upper.contains("WRONGPASS")
            || upper.contains("INVALID PASSWORD")
            || upper.contains("AUTHENTICATION FAILED")
        {
            let from = self.password_source.as_deref().unwrap_or("nowhere");
            return anyhow::anyhow!(
                "log in to Redis at {} as user {}: the server refused the password (from {from}): {reason}; check the user and password",
                self.display(),
                self.user()
            );
        }
        if upper.contains("NOAUTH") {
            return anyhow::anyhow!(
                "log in to Redis at {}: the server requires a password and none was given: {reason}; put it in the URL, a password_file (mode 0600) or REDISCLI_AUTH",
                self.display()
            );
        }
        if upper.contains("AUTH") && upper.contains("WITHOUT ANY PASSWORD") {
            return anyhow::anyhow!(
                "log in to Redis at {}: a password was given (from {}) but the server has none configured: {reason}; remove it",
                self.display(),
                self.password_source.as_deref().unwrap_or("nowhere")
            );
        }
        anyhow::anyhow!(
            "connect to Redis at {}: {reason}; check that the server runs there and is reachable (connect_timeout {:?})",
            self.display(),
            self.connect_timeout
        )
    }

    /// A connection for the replication stream, TLS for `rediss://` (handshake done), with the
    /// connect timeout and the given read and write timeouts.
    pub(super) fn stream(
        &self,
        read_timeout: Duration,
        write_timeout: Duration,
    ) -> anyhow::Result<Box<dyn Duplex>> {
        let mut tcp = self.tcp()?;
        tcp.set_read_timeout(Some(read_timeout))?;
        tcp.set_write_timeout(Some(write_timeout))?;
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .with_context(|| format!("use {} as a TLS server name", self.host))?;
        let mut connection =
            rustls::ClientConnection::new(tls.config.clone(), name).context("set up TLS")?;
        while connection.is_handshaking() {
            connection
                .complete_io(&mut tcp)
                .map_err(|e| self.connect_error(&format!("TLS handshake: {e}")))?;
        }
        Ok(Box::new(rustls::StreamOwned::new(connection, tcp)))
    }

    /// A TCP connection, connect timeout applied.
    fn tcp(&self) -> anyhow::Result<TcpStream> {
        let addresses = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.connect_error(&format!("resolve {}: {e}", self.host)))?;
        let mut last = None;
        for address in addresses {
            match TcpStream::connect_timeout(&address, self.connect_timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        let reason = last.map_or_else(
            || format!("{} resolves to no address", self.host),
            |e| e.to_string(),
        );
        Err(self.connect_error(&reason))
    }

    /// Sends `AUTH [user] password` on a raw connection when there is a password (RESP2, as
    /// redis-cli does); the command's bytes are wiped afterwards.
    pub(super) fn write_auth(&self, stream: &mut dyn Write) -> anyhow::Result<bool> {
        let Some(password) = &self.password else {
            return Ok(false);
        };
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &self.user {
            args.push(user.as_bytes());
        }
        args.push(password.as_bytes());
        let command = Zeroizing::new(resp_command(&args));
        stream
            .write_all(&command)
            .and_then(|()| stream.flush())
            .with_context(|| format!("send AUTH to Redis at {}", self.display()))?;
        Ok(true)
    }
}

/// A command as a RESP array of bulk strings.
pub(super) fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The password and where it came from: the URL's, else `password_file`'s, else
/// `REDISCLI_AUTH`'s, else none.
fn find_password(
    in_url: Option<Zeroizing<String>>,
    password_file: Option<&Path>,
    from_env: Option<Zeroizing<String>>,
    shown: &str,
) -> anyhow::Result<(Option<Zeroizing<String>>, Option<String>)> {
    if let Some(password) = in_url {
        if password_file.is_some() {
            tracing::warn!("Redis URL {shown} holds a password, so password_file is not read");
        }
        return Ok((Some(password), Some("the URL".to_owned())));
    }
    if let Some(path) = password_file {
        let source = format!("password_file {}", path.display());
        return Ok((Some(read_password_file(path)?), Some(source)));
    }
    Ok(match from_env {
        Some(value) if !value.is_empty() => (Some(value), Some(PASSWORD_ENV.to_owned())),
        _ => (None, None),
    })
}

/// A password file: the secret-file rule (mode 0600 or stricter, ours or root's), one line.
fn read_password_file(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let bytes = read_secret_file(path, "password_file", PASSWORD_FILE_LIMIT)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        anyhow::anyhow!(
            "password_file {} is not UTF-8 text: write the password as text",
            path.display()
        )
    })?;
    let password = text.strip_suffix('\n').unwrap_or(text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!(
            "password_file {} is empty: write the Redis password in it",
            path.display()
        );
    }
    Ok(Zeroizing::new(password.to_owned()))
}
