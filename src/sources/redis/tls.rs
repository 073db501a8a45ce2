//! TLS to Redis (`rediss://`): the rustls client configuration both kinds of connection use —
//! the `redis` crate's for ordinary commands, and ours for the replication stream — trusting
//! the roots in `tls_ca_file`, or the system's.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// The largest CA file read (a bundle is a few hundred KiB).
const MAX_CA_FILE: u64 = 16 * 1024 * 1024;

/// The roots a `rediss://` connection trusts, read once when the source is resolved.
#[derive(Clone)]
pub struct TlsRoots {
    /// The PEM text of `tls_ca_file`, when given (the `redis` crate takes it as PEM).
    pub ca_pem: Option<Vec<u8>>,
    pub config: Arc<ClientConfig>,
}

impl TlsRoots {
    /// Reads `ca_file`'s certificates, or the system's when there is none.
    pub fn load(ca_file: Option<&Path>) -> anyhow::Result<TlsRoots> {
        let mut store = RootCertStore::empty();
        let ca_pem = match ca_file {
            Some(path) => {
                let pem = read_ca_file(path)?;
                for certificate in CertificateDer::pem_slice_iter(&pem) {
                    let certificate = certificate.with_context(|| {
                        format!("read tls_ca_file {}: not valid PEM", path.display())
                    })?;
                    store.add(certificate).with_context(|| {
                        format!(
                            "read tls_ca_file {}: a certificate in it is not a usable CA",
                            path.display()
                        )
                    })?;
                }
                if store.is_empty() {
                    bail!(
                        "tls_ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----): name the CA that signed the server's certificate",
                        path.display()
                    );
                }
                Some(pem)
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    bail!(
                        "rediss:// with no tls_ca_file trusts the system's roots, and none were found: install ca-certificates or set tls_ca_file"
                    );
                }
                None
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("set up TLS")?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(TlsRoots {
            ca_pem,
            config: Arc::new(config),
        })
    }
}

fn read_ca_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("read tls_ca_file {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("read tls_ca_file {}", path.display()))?;
    if bytes.len() as u64 > MAX_CA_FILE {
        bail!(
            "tls_ca_file {} is larger than {} MiB, not a CA file: name the right file",
            path.display(),
            MAX_CA_FILE >> 20
        );
    }
    Ok(bytes)
}
