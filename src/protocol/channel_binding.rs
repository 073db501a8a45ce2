//! SCRAM channel binding (`channel_binding` in conninfo, as libpq): SCRAM-SHA-256-PLUS over TLS
//! with RFC 5929's `tls-server-end-point` data, the hash of the server's certificate, which ties
//! the password proof to this TLS session so a man in the middle cannot relay it.

use anyhow::bail;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, SCRAM_SHA_256_PLUS};
use sha2::Digest;

/// libpq's `channel_binding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBindingMode {
    Disable,
    /// The default: bind when both sides can.
    Prefer,
    /// Refuse a login that was not bound (including one without SCRAM at all).
    Require,
}

impl ChannelBindingMode {
    pub fn parse(value: &str) -> anyhow::Result<ChannelBindingMode> {
        Ok(match value {
            "disable" => ChannelBindingMode::Disable,
            "prefer" => ChannelBindingMode::Prefer,
            "require" => ChannelBindingMode::Require,
            other => bail!(
                "channel_binding \"{}\" is not one of disable, prefer, require",
                other.escape_default()
            ),
        })
    }
}

/// What this connection can bind SCRAM to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingData {
    /// No TLS: nothing to bind to.
    Plaintext,
    /// TLS, with the end-point data when the certificate's signature names one hash.
    Tls(Option<Vec<u8>>),
}

/// The SASL mechanism and binding for a login, given what the server offers; `Ok(None)` when
/// it offers no SCRAM-SHA-256 at all.
pub fn choose(
    mode: ChannelBindingMode,
    data: &BindingData,
    offered: &[String],
) -> anyhow::Result<Option<(&'static str, ChannelBinding)>> {
    let offers = |name: &str| offered.iter().any(|m| m == name);
    let chosen = match (mode, data) {
        (ChannelBindingMode::Disable, _) => {
            offers(SCRAM_SHA_256).then(|| (SCRAM_SHA_256, ChannelBinding::unsupported()))
        }
        (_, BindingData::Tls(Some(end_point))) if offers(SCRAM_SHA_256_PLUS) => Some((
            SCRAM_SHA_256_PLUS,
            ChannelBinding::tls_server_end_point(end_point.clone()),
        )),
        (ChannelBindingMode::Require, _) => bail!(
            "channel_binding=require, but {}: connect with TLS (sslmode=verify-full) to a server offering SCRAM-SHA-256-PLUS",
            match data {
                BindingData::Plaintext => "the connection is not TLS",
                BindingData::Tls(None) =>
                    "the server's certificate is signed with an algorithm that names no hash (Ed25519, RSA-PSS)",
                BindingData::Tls(Some(_)) => "the server does not offer SCRAM-SHA-256-PLUS",
            }
        ),
        // "y": we could bind, the server did not offer it (a downgrade the server detects).
        (ChannelBindingMode::Prefer, BindingData::Tls(Some(_))) => {
            offers(SCRAM_SHA_256).then(|| (SCRAM_SHA_256, ChannelBinding::unrequested()))
        }
        (ChannelBindingMode::Prefer, _) => {
            offers(SCRAM_SHA_256).then(|| (SCRAM_SHA_256, ChannelBinding::unsupported()))
        }
    };
    Ok(chosen)
}

/// RFC 5929 `tls-server-end-point`: the certificate hashed with its signature's hash (SHA-256
/// for MD5 and SHA-1), as PostgreSQL computes it; `None` for a signature that names no single
/// hash (RSA-PSS, Ed25519), which PostgreSQL cannot bind either.
pub fn server_end_point(certificate_der: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_algorithm_oid(certificate_der)?;
    // The OIDs' last arcs: RSA 1.2.840.113549.1.1.x, ECDSA 1.2.840.10045.4.3.x / 4.1.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    enum Hash {
        Sha224,
        Sha256,
        Sha384,
        Sha512,
    }
    let hash = if oid == ECDSA_SHA1 {
        Hash::Sha256
    } else if let Some(arc) = oid.strip_prefix(RSA) {
        match arc {
            [0x04] | [0x05] | [0x0b] => Hash::Sha256,
            [0x0c] => Hash::Sha384,
            [0x0d] => Hash::Sha512,
            [0x0e] => Hash::Sha224,
            _ => return None,
        }
    } else if let Some(arc) = oid.strip_prefix(ECDSA_SHA2) {
        match arc {
            [0x01] => Hash::Sha224,
            [0x02] => Hash::Sha256,
            [0x03] => Hash::Sha384,
            [0x04] => Hash::Sha512,
            _ => return None,
        }
    } else {
        return None;
    };
    Some(match hash {
        Hash::Sha224 => sha2::Sha224::digest(certificate_der).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(certificate_der).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(certificate_der).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(certificate_der).to_vec(),
    })
}

/// The OID of `Certificate.signatureAlgorithm` (the SEQUENCE after `tbsCertificate`).
fn signature_algorithm_oid(der: &[u8]) -> Option<&[u8]> {
    let (0x30, certificate, _) = der_element(der)? else {
        return None;
    };
    let (0x30, _, after_tbs) = der_element(certificate)? else {
        return None;
    };
    let (0x30, algorithm, _) = der_element(after_tbs)? else {
        return None;
    };
    match der_element(algorithm)? {
        (0x06, oid, _) => Some(oid),
        _ => None,
    }
}

/// One DER element: its tag, its contents and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = input.get(2..2 + count)?;
        (
            bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)),
            2 + count,
        )
    };
    let end = header.checked_add(length)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn binds_when_both_sides_can_and_require_refuses_otherwise() {
        let both = offered(&[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]);
        let plain = offered(&[SCRAM_SHA_256]);
        let tls = BindingData::Tls(Some(vec![1; 32]));
        let pick = |mode, data: &BindingData, offered: &[String]| {
            choose(mode, data, offered).unwrap().map(|(m, _)| m)
        };
        assert_eq!(
            pick(ChannelBindingMode::Prefer, &tls, &both),
            Some(SCRAM_SHA_256_PLUS)
        );
        assert_eq!(
            pick(ChannelBindingMode::Prefer, &tls, &plain),
            Some(SCRAM_SHA_256)
        );
        assert_eq!(
            pick(ChannelBindingMode::Disable, &tls, &both),
            Some(SCRAM_SHA_256)
        );
        assert_eq!(
            pick(ChannelBindingMode::Prefer, &BindingData::Plaintext, &both),
            Some(SCRAM_SHA_256)
        );
        assert_eq!(
            pick(ChannelBindingMode::Prefer, &tls, &offered(&["X"])),
            None
        );
        let error = choose(ChannelBindingMode::Require, &BindingData::Plaintext, &both)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with("channel_binding=require, but the connection is not TLS"),
            "{error}"
        );
        assert!(choose(ChannelBindingMode::Require, &tls, &plain).is_err());
    }

    #[test]
    fn der_elements_are_bounded_by_their_input() {
        assert_eq!(
            der_element(&[0x30, 0x01, 0xff]),
            Some((0x30, &[0xff][..], &[][..]))
        );
        assert_eq!(der_element(&[0x30, 0x02, 0xff]), None);
        assert_eq!(der_element(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(server_end_point(&[0x30, 0x00]), None);
        assert_eq!(server_end_point(b""), None);
    }
}
