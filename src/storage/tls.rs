//! TLS for the object stores' HTTP clients (S3, Azure Blob): rustls on aws-lc-rs, trusting the
//! system's root certificates, or none for an `http://` endpoint, which needs none.

use std::sync::Arc;

/// A client configuration trusting the system's roots when `tls`; with none loaded when not.
/// The error, when the system has no roots to trust, says what to install.
pub fn client_config(tls: bool) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    if tls {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if roots.is_empty() {
            return Err(
                "no trusted root certificates on this system: install the ca-certificates package"
                    .to_owned(),
            );
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
