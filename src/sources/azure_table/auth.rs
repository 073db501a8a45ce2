//! Who a Table storage request is from: the account's shared key, signing each request
//! (SharedKey, or SharedKeyLite, as the Table service defines them), or a SAS token appended to
//! its query. Read from `key_file` (mode 0600, the secret-file rule) or `AZURE_STORAGE_KEY`;
//! a file holding `sig=` is a SAS token, anything else a base64 account key.

use std::path::Path;

use anyhow::bail;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::config::TableSigning;
use crate::repo::keys::read_secret_file;

/// The environment variable a shared key may come from, when no `key_file` is set.
pub const KEY_ENV: &str = "AZURE_STORAGE_KEY";

/// A key or token file is a line of text: a few KiB at most.
const KEY_FILE_LIMIT: usize = 8 << 10;

/// How requests prove who they are from.
pub enum Credentials {
    /// The account key, decoded from base64: each request is signed with `scheme`.
    SharedKey {
        key: Zeroizing<Vec<u8>>,
        scheme: TableSigning,
    },
    /// A SAS token (`sv=…&sig=…`, without `?`), appended to each request's query.
    Sas { token: Zeroizing<String> },
}

impl Credentials {
    /// From `key_file` when set, else from `AZURE_STORAGE_KEY`, a key signing with `signing`
    /// (a written `signing` and a SAS token are refused together: a token is not signed);
    /// `section` names the config section in errors.
    pub fn load(
        key_file: Option<&Path>,
        signing: Option<TableSigning>,
        section: &str,
    ) -> anyhow::Result<Credentials> {
        let credentials = Credentials::read(key_file, section)?;
        match (credentials, signing) {
            (Credentials::Sas { .. }, Some(_)) => bail!(
                "{section}.signing is set, but its key is a SAS token, which is not signed: remove signing, or give the account key"
            ),
            (Credentials::SharedKey { key, .. }, Some(scheme)) => {
                Ok(Credentials::SharedKey { key, scheme })
            }
            (credentials, None) => Ok(credentials),
        }
    }

    /// The key or token itself, from `key_file` when set, else from `AZURE_STORAGE_KEY`.
    fn read(key_file: Option<&Path>, section: &str) -> anyhow::Result<Credentials> {
        if let Some(path) = key_file {
            let bytes = read_secret_file(path, "key_file", KEY_FILE_LIMIT)?;
            let Ok(text) = std::str::from_utf8(&bytes) else {
                bail!(
                    "key_file {} is not text: write the account's base64 key or a SAS token in it",
                    path.display()
                );
            };
            return Credentials::parse(text.trim(), &format!("key_file {}", path.display()));
        }
        match std::env::var(KEY_ENV) {
            Ok(value) if !value.trim().is_empty() => Credentials::parse(value.trim(), KEY_ENV),
            _ => bail!(
                "{section} has no key: set key_file = \"PATH\" (a file of mode 0600 holding the account key or a SAS token), or {KEY_ENV}"
            ),
        }
    }

    /// A SAS token (it holds `sig=`) or a base64 account key; `what` names where it came from.
    pub fn parse(text: &str, what: &str) -> anyhow::Result<Credentials> {
        if text.is_empty() {
            bail!("{what} is empty: write the account's base64 key or a SAS token in it");
        }
        if text.contains("sig=") {
            let token = text.strip_prefix('?').unwrap_or(text);
            return Ok(Credentials::Sas {
                token: Zeroizing::new(token.to_owned()),
            });
        }
        match STANDARD.decode(text) {
            Ok(key) if !key.is_empty() => Ok(Credentials::SharedKey {
                key: Zeroizing::new(key),
                scheme: TableSigning::SharedKey,
            }),
            _ => bail!(
                "{what} is neither a base64 account key nor a SAS token (one holding sig=): copy the key from the storage account's access keys"
            ),
        }
    }
}

/// The Table service's canonicalized resource: `/ACCOUNT` and the request's encoded path, with
/// `?comp=…` when the query names one (Azurite's path-style URLs hold the account once more:
/// `/devstoreaccount1/devstoreaccount1/Tables`).
pub fn canonicalized_resource(account: &str, encoded_path: &str, comp: Option<&str>) -> String {
    let mut resource = format!("/{account}{encoded_path}");
    if let Some(comp) = comp {
        resource.push_str("?comp=");
        resource.push_str(comp);
    }
    resource
}

/// What SharedKey signs for the Table service: verb, Content-MD5, Content-Type, date (the
/// `x-ms-date` sent) and the canonicalized resource, one per line.
pub fn shared_key_string_to_sign(
    verb: &str,
    content_md5: &str,
    content_type: &str,
    date: &str,
    resource: &str,
) -> String {
    format!("{verb}\n{content_md5}\n{content_type}\n{date}\n{resource}")
}

/// What SharedKeyLite signs for the Table service: the date and the canonicalized resource.
pub fn shared_key_lite_string_to_sign(date: &str, resource: &str) -> String {
    format!("{date}\n{resource}")
}

/// The signature of `string_to_sign`: base64 of its HMAC-SHA256 under the account key.
pub fn signature(key: &[u8], string_to_sign: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    STANDARD.encode(aws_lc_rs::hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

/// `x-ms-date`'s format (RFC 1123, always GMT).
pub fn request_date(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AZURITE_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    /// The expected signatures were computed apart from this code, with openssl:
    ///   printf 'GET\n\n\nTue, 02 Jan 2024 03:04:05 GMT\n/devstoreaccount1/devstoreaccount1/Tables' \
    ///     | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(echo KEY | base64 -d | xxd -p -c 256) -binary \
    ///     | base64
    /// (and the same with the other strings below).
    #[test]
    fn shared_key_signatures_match_ones_computed_by_openssl() {
        let Credentials::SharedKey { key, .. } = Credentials::parse(AZURITE_KEY, "test").unwrap()
        else {
            panic!("a base64 key is a shared key");
        };
        let date = request_date(
            chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
                .unwrap()
                .into(),
        );
        assert_eq!(date, "Tue, 02 Jan 2024 03:04:05 GMT");
        let resource = canonicalized_resource("devstoreaccount1", "/devstoreaccount1/Tables", None);
        assert_eq!(resource, "/devstoreaccount1/devstoreaccount1/Tables");
        let get = shared_key_string_to_sign("GET", "", "", &date, &resource);
        assert_eq!(
            get,
            "GET\n\n\nTue, 02 Jan 2024 03:04:05 GMT\n/devstoreaccount1/devstoreaccount1/Tables"
        );
        assert_eq!(
            signature(&key, &get),
            "wNIdAyWAWKTl2vRJFozy2+UUG6RzN5MLFOifqeuxX4o="
        );
        let post = shared_key_string_to_sign(
            "POST",
            "",
            "application/json",
            &date,
            "/devstoreaccount1/devstoreaccount1/$batch",
        );
        assert_eq!(
            signature(&key, &post),
            "aF4Ge5QIITUU1BiEvDS4ro8ttvmHJm4ceHENqbH71xw="
        );
        let lite = shared_key_lite_string_to_sign(&date, &resource);
        assert_eq!(
            signature(&key, &lite),
            "vqH9cAkS8xJlO5MTje1QvTgbpxIibsQNqN4+xo6qZpI="
        );
        let comp = canonicalized_resource("acct", "/Tables", Some("properties"));
        assert_eq!(comp, "/acct/Tables?comp=properties");
    }

    #[test]
    fn a_token_with_sig_is_sas_and_anything_else_must_be_base64() {
        let Credentials::Sas { token } =
            Credentials::parse("?sv=2019-02-02&tn=T&sig=abc%3D", "key_file k").unwrap()
        else {
            panic!("a token with sig= is SAS");
        };
        assert_eq!(token.as_str(), "sv=2019-02-02&tn=T&sig=abc%3D");
        let error = Credentials::parse("not base64!", "key_file k")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            error,
            "key_file k is neither a base64 account key nor a SAS token (one holding sig=): copy the key from the storage account's access keys"
        );
        let error = Credentials::parse("", "AZURE_STORAGE_KEY")
            .err()
            .unwrap()
            .to_string();
        assert!(error.starts_with("AZURE_STORAGE_KEY is empty"), "{error}");
    }
}
