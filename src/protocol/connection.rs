//! One replication connection over TCP (TLS as `sslmode` asks) or a Unix socket: startup with
//! `replication=true`, authentication, simple queries, and reading the messages of a running
//! command, each at most [`MAX_MESSAGE_LEN`] long.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{SCRAM_SHA_256_PLUS, ScramSha256};
use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::channel_binding::{self, BindingData, ChannelBindingMode};
use super::conninfo::{ConnectTarget, Endpoint};
use super::server_error::ServerError;
use super::tls::{self, Negotiated, SslMode};

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How long to wait for the server to accept a connection (and finish the TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the login may take once connected (authentication, parameter reports).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest server message accepted. PostgreSQL sends rows and COPY data in pieces far
/// smaller; a longer length field is a broken or hostile server, refused before any memory is
/// reserved for it.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024 * 1024;

/// A result set of a simple query, every value as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// An authenticated replication connection.
pub struct ReplicationConnection {
    stream: Box<dyn Stream>,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    /// `server_version_num` from the startup's parameter reports, e.g. 150018.
    pub server_version_num: u32,
}

/// Values of one DataRow as text (NULL as `None`).
pub fn row_values(row: &DataRowBody) -> anyhow::Result<Vec<Option<String>>> {
    let buffer = row.buffer();
    let mut values = Vec::new();
    let mut ranges = row.ranges();
    while let Some(range) = ranges.next().context("decode a data row")? {
        values.push(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned()));
    }
    Ok(values)
}

impl ReplicationConnection {
    /// Connects (with TLS as `target.tls` asks, over TCP) and authenticates as a physical
    /// replication client.
    pub async fn connect(target: &ConnectTarget) -> anyhow::Result<ReplicationConnection> {
        let (stream, binding) = tokio::time::timeout(CONNECT_TIMEOUT, open_stream(target))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "connect to {}: no answer in {} s",
                    target.endpoint,
                    CONNECT_TIMEOUT.as_secs()
                )
            })?
            .with_context(|| format!("connect to {}", target.endpoint))?;
        let mut connection = ReplicationConnection {
            stream,
            read_buffer: BytesMut::with_capacity(256 * 1024),
            write_buffer: BytesMut::new(),
            server_version_num: 0,
        };
        // A server (or whatever answers in its place) that stops talking mid-login must not
        // hold the backup for ever.
        tokio::time::timeout(LOGIN_TIMEOUT, connection.start_up(target, &binding))
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "no answer in {} s",
                    LOGIN_TIMEOUT.as_secs()
                ))
            })
            .with_context(|| format!("log in to {} as {}", target.endpoint, target.user))?;
        Ok(connection)
    }

    async fn send(&mut self) -> anyhow::Result<()> {
        self.stream
            .write_all(&self.write_buffer)
            .await
            .context("send to the server")?;
        self.stream.flush().await.context("send to the server")?;
        self.write_buffer.clear();
        Ok(())
    }

    /// The next message from the server. An ErrorResponse becomes a [`ServerError`]; notices
    /// are logged and skipped.
    pub async fn next_message(&mut self) -> anyhow::Result<Message> {
        loop {
            check_message_length(&self.read_buffer)?;
            if let Some(message) =
                Message::parse(&mut self.read_buffer).context("decode a server message")?
            {
                match message {
                    Message::ErrorResponse(body) => {
                        return Err(ServerError::from_fields(body.fields()).into());
                    }
                    Message::NoticeResponse(body) => {
                        let notice = ServerError::from_fields(body.fields());
                        // WARNING matters to a DBA; NOTICE ("all required WAL segments have
                        // been archived") and the like do not.
                        if notice.severity == "WARNING" {
                            tracing::warn!(
                                "server says: {} (SQLSTATE {})",
                                notice.message,
                                notice.code
                            );
                        } else {
                            tracing::debug!(
                                "server says: {} (SQLSTATE {})",
                                notice.message,
                                notice.code
                            );
                        }
                    }
                    Message::ParameterStatus(body) => {
                        if body.name().ok() == Some("server_version") {
                            self.server_version_num =
                                parse_server_version(body.value().unwrap_or(""));
                        }
                    }
                    message => return Ok(message),
                }
                continue;
            }
            if self.read_buffer.capacity() - self.read_buffer.len() < 64 * 1024 {
                self.read_buffer.reserve(256 * 1024);
            }
            let read = self
                .stream
                .read_buf(&mut self.read_buffer)
                .await
                .context("read from the server")?;
            if read == 0 {
                bail!("the server closed the connection");
            }
        }
    }

    async fn start_up(
        &mut self,
        target: &ConnectTarget,
        binding: &BindingData,
    ) -> anyhow::Result<()> {
        let mut parameters = vec![
            ("user", target.user.as_str()),
            ("replication", "true"),
            ("application_name", "tidemark"),
        ];
        if let Some(dbname) = &target.dbname {
            parameters.push(("database", dbname));
        }
        frontend::startup_message(parameters, &mut self.write_buffer)?;
        self.send().await?;
        let password = || {
            target
                .password
                .as_ref()
                .map(|p| p.bytes().to_vec())
                .context("the server asks for a password: put it in ~/.pgpass (or PGPASSWORD), not in argv")
        };
        let mut scram: Option<ScramSha256> = None;
        // Whether the password proof is tied to this TLS session (SCRAM-SHA-256-PLUS).
        let mut bound = false;
        loop {
            match self.next_message().await? {
                Message::AuthenticationOk => {
                    if target.channel_binding == ChannelBindingMode::Require && !bound {
                        bail!(
                            "channel_binding=require, but the server logged in without SCRAM-SHA-256-PLUS (pg_hba.conf method trust, cert, password or md5): use scram-sha-256 there"
                        );
                    }
                }
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(&password()?, &mut self.write_buffer)?;
                    self.send().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hashed = md5_hash(target.user.as_bytes(), &password()?, body.salt());
                    frontend::password_message(hashed.as_bytes(), &mut self.write_buffer)?;
                    self.send().await?;
                }
                Message::AuthenticationSasl(body) => {
                    let mechanisms: Vec<String> =
                        body.mechanisms().map(|m| Ok(m.to_owned())).collect()?;
                    let Some((mechanism, binding)) =
                        channel_binding::choose(target.channel_binding, binding, &mechanisms)?
                    else {
                        bail!(
                            "the server offers SASL mechanisms {mechanisms:?}; Tidemark speaks SCRAM-SHA-256 and SCRAM-SHA-256-PLUS"
                        );
                    };
                    bound = mechanism == SCRAM_SHA_256_PLUS;
                    let client = ScramSha256::new(&password()?, binding);
                    frontend::sasl_initial_response(
                        mechanism,
                        client.message(),
                        &mut self.write_buffer,
                    )?;
                    self.send().await?;
                    scram = Some(client);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let client = scram
                        .as_mut()
                        .context("the server continued a SASL exchange that never started")?;
                    client.update(body.data()).context("SCRAM exchange")?;
                    frontend::sasl_response(client.message(), &mut self.write_buffer)?;
                    self.send().await?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    scram
                        .as_mut()
                        .context("the server finished a SASL exchange that never started")?
                        .finish(body.data())
                        .context(
                            "the server's SCRAM signature is wrong: it does not know the password",
                        )?;
                }
                Message::BackendKeyData(_) => {}
                Message::ReadyForQuery(_) => return Ok(()),
                Message::AuthenticationGss
                | Message::AuthenticationSspi
                | Message::AuthenticationKerberosV5 => {
                    bail!(
                        "the server asks for GSSAPI/SSPI/Kerberos authentication, which Tidemark does not speak: use scram-sha-256 or md5 in pg_hba.conf"
                    )
                }
                _ => bail!("unexpected message during login"),
            }
        }
    }

    /// Runs a simple query and returns its result sets.
    pub async fn simple_query(&mut self, sql: &str) -> anyhow::Result<Vec<ResultSet>> {
        frontend::query(sql, &mut self.write_buffer)?;
        self.send().await?;
        let mut sets = Vec::new();
        let mut current: Option<ResultSet> = None;
        let mut failure: Option<anyhow::Error> = None;
        loop {
            let message = match self.next_message().await {
                Ok(message) => message,
                // The server still ends the exchange with ReadyForQuery; wait for it so the
                // connection stays usable.
                Err(e) if e.downcast_ref::<ServerError>().is_some() => {
                    failure = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match message {
                Message::RowDescription(body) => {
                    let columns = body.fields().map(|f| Ok(f.name().to_owned())).collect()?;
                    current = Some(ResultSet {
                        columns,
                        rows: Vec::new(),
                    });
                }
                Message::DataRow(body) => current
                    .as_mut()
                    .context("a data row came before its row description")?
                    .rows
                    .push(row_values(&body)?),
                Message::CommandComplete(_) => sets.extend(current.take()),
                Message::EmptyQueryResponse => {}
                Message::ReadyForQuery(_) => break,
                _ => bail!("unexpected message in the answer to {sql}"),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(sets),
        }
    }

    /// Sends a query without waiting for its answer; the caller reads it with `next_message`.
    pub async fn start_query(&mut self, sql: &str) -> anyhow::Result<()> {
        frontend::query(sql, &mut self.write_buffer)?;
        self.send().await
    }

    /// Says goodbye.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.write_buffer);
        let _ = self.send().await;
    }
}

/// Refuses a message whose header (type byte, then a big-endian length that counts itself)
/// announces more than [`MAX_MESSAGE_LEN`] bytes.
fn check_message_length(buffer: &[u8]) -> anyhow::Result<()> {
    if let Some(header) = buffer.get(..5) {
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if length > MAX_MESSAGE_LEN {
            bail!(
                "the server sent a message (type {:?}) of {length} bytes, more than the {} MiB a server message may have",
                char::from(header[0]),
                MAX_MESSAGE_LEN >> 20
            );
        }
    }
    Ok(())
}

/// The byte stream to the server: a Unix socket as is (PostgreSQL never does SSL there, so
/// libpq ignores sslmode), a TCP socket after the SSL negotiation `sslmode` asks for.
async fn open_stream(target: &ConnectTarget) -> anyhow::Result<(Box<dyn Stream>, BindingData)> {
    let (host, port) = match &target.endpoint {
        Endpoint::Unix { dir, port } => {
            if target.tls.mode > SslMode::Prefer {
                tracing::debug!(
                    "sslmode={} does not apply to the Unix socket in {}",
                    target.tls.mode,
                    dir.display()
                );
            }
            let path = dir.join(format!(".s.PGSQL.{port}"));
            let stream = tokio::net::UnixStream::connect(path).await?;
            return Ok((Box::new(stream), BindingData::Plaintext));
        }
        Endpoint::Tcp { host, port } => (host.as_str(), *port),
    };
    if target.tls.mode == SslMode::Disable {
        return Ok((
            Box::new(tcp_connect(host, port).await?),
            BindingData::Plaintext,
        ));
    }
    // Files first: a bad root or key file is a configuration error, found before any packet.
    let config = target.tls.client_config()?;
    let stream = tcp_connect(host, port).await?;
    match tls::negotiate(stream, host, &target.tls, config).await {
        Ok(Negotiated::Tls(tls)) => {
            let end_point = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|certificate| channel_binding::server_end_point(certificate));
            Ok((tls, BindingData::Tls(end_point)))
        }
        Ok(Negotiated::Refused(stream)) if target.tls.mode == SslMode::Prefer => {
            tracing::debug!("the server does not do SSL; sslmode=prefer goes on in plaintext");
            Ok((Box::new(stream), BindingData::Plaintext))
        }
        Ok(Negotiated::Refused(_)) => bail!(
            "the server does not accept SSL connections (ssl = off in its postgresql.conf?), and sslmode={} requires it",
            target.tls.mode
        ),
        // libpq's prefer: a failed handshake is retried on a new connection without SSL.
        Err(e) if target.tls.mode == SslMode::Prefer => {
            tracing::debug!("TLS failed ({e:#}); sslmode=prefer retries in plaintext");
            let stream = tcp_connect(host, port).await?;
            Ok((Box::new(stream), BindingData::Plaintext))
        }
        Err(e) => Err(e),
    }
}

async fn tcp_connect(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `server_version` ("15.18 (Debian 15.18-0+deb12u1)", "16beta1") as `server_version_num`.
fn parse_server_version(text: &str) -> u32 {
    let numeric: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    major * 10000 + minor
}

/// What IDENTIFY_SYSTEM says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemIdentity {
    pub system_id: u64,
    pub timeline: u32,
    pub flush_lsn: crate::pg::Lsn,
}

impl ReplicationConnection {
    /// IDENTIFY_SYSTEM.
    pub async fn identify_system(&mut self) -> anyhow::Result<SystemIdentity> {
        let sets = self
            .simple_query("IDENTIFY_SYSTEM")
            .await
            .context("IDENTIFY_SYSTEM")?;
        let row = sets
            .first()
            .and_then(|s| s.rows.first())
            .context("IDENTIFY_SYSTEM returned no row")?;
        let field = |i: usize| {
            row.get(i)
                .cloned()
                .flatten()
                .with_context(|| format!("IDENTIFY_SYSTEM column {i} is empty"))
        };
        Ok(SystemIdentity {
            system_id: field(0)?.parse().context("IDENTIFY_SYSTEM systemid")?,
            timeline: field(1)?.parse().context("IDENTIFY_SYSTEM timeline")?,
            flush_lsn: field(2)?.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_longer_than_the_cap_is_refused_before_it_is_read() {
        let mut header = vec![b'd'];
        header.extend_from_slice(&(super::MAX_MESSAGE_LEN as u32).to_be_bytes());
        super::check_message_length(&header).unwrap();
        let mut huge = vec![b'd'];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let error = super::check_message_length(&huge).unwrap_err().to_string();
        assert_eq!(
            error,
            "the server sent a message (type 'd') of 4294967295 bytes, more than the 64 MiB a server message may have"
        );
        super::check_message_length(b"d\xff\xff").unwrap();
    }

    #[test]
    fn server_versions_become_numbers() {
        assert_eq!(
            super::parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            150018
        );
        assert_eq!(super::parse_server_version("16beta1"), 160000);
        assert_eq!(super::parse_server_version("12.9"), 120009);
    }
}
