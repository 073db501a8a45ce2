//! TLS to PostgreSQL with libpq's `sslmode` semantics, on rustls with the aws-lc-rs provider:
//! the SSLRequest and its one-byte answer, the server certificate check each mode asks for
//! (none, chain only, chain and host name), and the client certificate for `cert` logins.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// libpq's `sslmode`, less `allow` (refused when read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// Reads a `sslmode` value; `allow` (plaintext first, TLS only if the server insists) is
    /// refused, since a connection Tidemark makes should never be weaker than asked.
    pub fn parse(value: &str) -> anyhow::Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => bail!(
                "sslmode=allow is not supported: use prefer (TLS when the server offers it) or require"
            ),
            other => bail!(
                "sslmode \"{}\" is not one of disable, prefer, require, verify-ca, verify-full",
                other.escape_default()
            ),
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// The CAs a server certificate must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file (`sslrootcert`, else `~/.postgresql/root.crt`).
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trusted roots.
    System,
}

impl fmt::Display for RootCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCerts::File(path) => write!(f, "sslrootcert {}", path.display()),
            RootCerts::System => f.write_str("the system's trusted roots (sslrootcert=system)"),
        }
    }
}

/// A client certificate and its private key (`sslcert`, `sslkey`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What the conninfo asks of TLS, resolved as libpq resolves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The mode in force: `require` with a root file already became `verify-ca`.
    pub mode: SslMode,
    /// Present for verify-ca and verify-full; those fail to connect without it.
    pub roots: Option<RootCerts>,
    /// Where libpq would look for the root file when none is configured (for the error).
    pub default_roots: PathBuf,
    pub client: Option<ClientCert>,
    /// `sslsni`: send the host name in the handshake (never for IP addresses).
    pub sni: bool,
}

/// The largest certificate or key file read (they are a few KiB; a CA bundle a few hundred).
const MAX_PEM_FILE: u64 = 16 * 1024 * 1024;

/// The provider every TLS connection uses, named so the process-wide default never decides.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsSettings {
    /// The rustls configuration these settings ask for: reads the root and client files,
    /// so every problem with them is found before anything is sent.
    pub fn client_config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("set up TLS")?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => {
                Arc::new(AnyCertificate(provider.signature_verification_algorithms))
            }
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let Some(roots) = &self.roots else {
                    bail!(
                        "sslmode={} needs a root certificate, and {} does not exist: give sslrootcert=FILE (or sslrootcert=system), or use sslmode=require",
                        self.mode,
                        self.default_roots.display()
                    );
                };
                let webpki = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(load_roots(roots)?),
                    provider,
                )
                .build()
                .context("set up TLS certificate verification")?;
                if self.mode == SslMode::VerifyCa {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client {
            Some(client) => {
                let (chain, key) = load_client_cert(client)?;
                builder.with_client_auth_cert(chain, key).with_context(|| {
                    format!(
                        "use client certificate {} with key {}",
                        client.cert.display(),
                        client.key.display()
                    )
                })?
            }
            None => builder.with_no_client_auth(),
        };
        config.enable_sni = self.sni;
        // As libpq 17+: PostgreSQL's ALPN name.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Arc::new(config))
    }
}

/// What the server answered to SSLRequest.
pub enum Negotiated {
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// It does not do SSL (`N`); the same socket goes on in plaintext.
    Refused(TcpStream),
}

/// Sends SSLRequest on `stream` and, if the server agrees, does the TLS handshake for `host`.
pub async fn negotiate(
    mut stream: TcpStream,
    host: &str,
    settings: &TlsSettings,
    config: Arc<ClientConfig>,
) -> anyhow::Result<Negotiated> {
    let mut request = bytes::BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut request);
    stream
        .write_all(&request)
        .await
        .context("send the SSL request")?;
    // Exactly one byte, unbuffered: anything the server (or a man in the middle) sends after
    // it must go through the handshake, not be taken as plaintext (CVE-2021-23214).
    let answer = stream
        .read_u8()
        .await
        .context("read the answer to the SSL request")?;
    match answer {
        b'S' => {}
        b'N' => return Ok(Negotiated::Refused(stream)),
        b'E' => bail!("the server answered the SSL request with an error"),
        other => bail!("the server answered the SSL request with byte 0x{other:02x}, not S or N"),
    }
    let name = ServerName::try_from(host.to_owned())
        .with_context(|| format!("\"{}\" is not a host name for TLS", host.escape_default()))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map(|tls| Negotiated::Tls(Box::new(tls)))
        .map_err(|e| handshake_error(e, host, settings))
}

/// The handshake's failure in words a DBA acts on.
fn handshake_error(error: std::io::Error, host: &str, settings: &TlsSettings) -> anyhow::Error {
    let roots = settings
        .roots
        .as_ref()
        .map_or_else(|| "the root certificates".to_owned(), ToString::to_string);
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            anyhow::anyhow!(
                "TLS handshake: the server's certificate is not signed by a CA in {roots} (sslmode={})",
                settings.mode
            )
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        })) => anyhow::anyhow!(
            "TLS handshake: the server's certificate is for {}, not {host} (sslmode=verify-full; connect by one of those names, or use sslmode=verify-ca)",
            presented
                .iter()
                .map(|name| presented_name(name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)) => {
            anyhow::anyhow!(
                "TLS handshake: the server's certificate is not for {host} (sslmode=verify-full; connect by a name it names, or use sslmode=verify-ca)"
            )
        }
        _ => anyhow::anyhow!("TLS handshake: {error}"),
    }
}

/// A name webpki lists from a certificate (`DnsName("db.test")`, `IpAddress(10.0.0.5)`) as a
/// DBA writes it.
fn presented_name(debug: &str) -> &str {
    ["DnsName(", "IpAddress("]
        .iter()
        .find_map(|kind| debug.strip_prefix(kind)?.strip_suffix(')'))
        .map_or(debug, |inner| inner.trim_matches('"'))
}

/// Reads a PEM file of at most [`MAX_PEM_FILE`] bytes.
fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("read {what} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("read {what} {}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        bail!(
            "read {what} {}: larger than {} MiB, not a certificate file",
            path.display(),
            MAX_PEM_FILE >> 20
        );
    }
    Ok(bytes)
}

/// The certificates of one PEM file; none is an error.
fn read_certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(path, what)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("read {what} {}: not valid PEM", path.display()))?;
    if certificates.is_empty() {
        bail!(
            "read {what} {}: it holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certificates)
}

fn load_roots(roots: &RootCerts) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::File(path) => {
            for certificate in read_certificates(path, "root certificate file")? {
                store.add(certificate).with_context(|| {
                    format!(
                        "read root certificate file {}: a certificate in it is not a usable CA",
                        path.display()
                    )
                })?;
            }
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                bail!(
                    "sslrootcert=system: no trusted root certificate found on this system (install ca-certificates, or give sslrootcert=FILE)"
                );
            }
        }
    }
    Ok(store)
}

/// The client certificate chain and key, the key file held to libpq's permission rule.
fn load_client_cert(
    client: &ClientCert,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = read_certificates(&client.cert, "client certificate file")?;
    check_key_file_mode(&client.key)?;
    let pem = read_pem(&client.key, "private key file")?;
    if pem.windows(9).any(|w| w == b"ENCRYPTED") {
        bail!(
            "private key file {} is encrypted, which Tidemark does not support (no sslpassword): store it decrypted, mode 0600 (openssl pkey -in KEY -out KEY.plain)",
            client.key.display()
        );
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "read private key file {}: no PEM private key in it",
            client.key.display()
        )
    })?;
    Ok((chain, key))
}

/// libpq's rule: a key file owned by us must be u=rw at most (0600); one owned by root may also
/// be group-readable (0640), for keys a system group shares; libpq checks no other owner.
fn check_key_file_mode(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("read private key file {}", path.display()))?;
    if !metadata.is_file() {
        bail!("private key file {} is not a regular file", path.display());
    }
    let mode = metadata.mode() & 0o777;
    let euid = rustix::process::geteuid().as_raw();
    let too_open =
        (metadata.uid() == euid && mode & 0o077 != 0) || (metadata.uid() == 0 && mode & 0o037 != 0);
    if too_open {
        bail!(
            "private key file {} has mode {mode:04o}, readable by others: chmod 0600 it (or 0640 if owned by root)",
            path.display()
        );
    }
    Ok(())
}

/// `prefer` and `require` without a root file: any certificate, as libpq; the handshake's
/// signatures are still checked, so the session is with the holder of that certificate's key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must reach a trusted root; the name in the certificate is not
/// checked. webpki checks the chain before the name, so a name error means the chain held.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_values_as_libpq_names_them() {
        assert_eq!(SslMode::parse("verify-full").unwrap(), SslMode::VerifyFull);
        assert_eq!(SslMode::parse("prefer").unwrap(), SslMode::Prefer);
        let allow = SslMode::parse("allow").unwrap_err().to_string();
        assert!(
            allow.starts_with("sslmode=allow is not supported"),
            "{allow}"
        );
        let bad = SslMode::parse("on").unwrap_err().to_string();
        assert!(bad.contains("not one of"), "{bad}");
    }

    #[test]
    fn presented_names_read_as_written() {
        assert_eq!(presented_name("DnsName(\"db.test\")"), "db.test");
        assert_eq!(presented_name("IpAddress(10.0.0.5)"), "10.0.0.5");
        assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn key_file_mode_follows_libpq() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_key_file_mode(&key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = check_key_file_mode(&key).unwrap_err().to_string();
        assert!(
            error.contains("has mode 0644, readable by others"),
            "{error}"
        );
    }
}
