//! The Shared Key signature of a Blob service request: the request's method, standard headers,
//! `x-ms-*` headers and resource, each in its canonical form, signed with HMAC-SHA256 under the
//! account key (learn.microsoft.com, "Authorize with Shared Key", version 2009-09-19 and later).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, Method};

/// The standard headers the signature covers, in the order it lists them. `Date` stays empty:
/// every request carries `x-ms-date`, which is among the `x-ms-*` headers.
const STANDARD_HEADERS: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// What a request is, as far as its signature goes.
pub(super) struct SignedParts<'a> {
    pub method: &'a Method,
    /// The URL's path as sent (`/devstoreaccount1/container/blob` on Azurite).
    pub path: &'a str,
    /// The query's names and values, not percent-encoded.
    pub query: &'a [(&'a str, String)],
    pub headers: &'a HeaderMap,
}

/// The `Authorization` header's value for `parts`, signed with `key` for `account`.
pub(super) fn authorization(account: &str, key: &[u8], parts: &SignedParts<'_>) -> String {
    let text = string_to_sign(account, parts);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let signature = aws_lc_rs::hmac::sign(&key, text.as_bytes());
    format!(
        "SharedKey {account}:{}",
        STANDARD.encode(signature.as_ref())
    )
}

fn string_to_sign(account: &str, parts: &SignedParts<'_>) -> String {
    let mut text = format!("{}\n", parts.method.as_str());
    for name in STANDARD_HEADERS {
        let value = header(parts.headers, name);
        // A zero Content-Length is signed as an empty line (version 2015-02-21 and later).
        if !(name == "content-length" && value == "0") {
            text.push_str(value);
        }
        text.push('\n');
    }
    let mut ms_headers: Vec<(String, &str)> = parts
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-ms-"))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("").trim(),
            )
        })
        .collect();
    ms_headers.sort();
    for (name, value) in ms_headers {
        text.push_str(&format!("{name}:{value}\n"));
    }
    text.push_str(&format!("/{account}{}", parts.path));
    let mut query: Vec<(String, &str)> = parts
        .query
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_str()))
        .collect();
    query.sort();
    for (name, value) in query {
        text.push_str(&format!("\n{name}:{value}"));
    }
    text
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_to_sign_lists_each_part_in_its_canonical_form() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ms-version", "2021-08-06".parse().unwrap());
        headers.insert(
            "x-ms-date",
            "Sun, 11 Oct 2009 21:49:13 GMT".parse().unwrap(),
        );
        headers.insert("x-ms-blob-type", "BlockBlob".parse().unwrap());
        headers.insert("content-length", "3".parse().unwrap());
        headers.insert("if-none-match", "*".parse().unwrap());
        let query = [("comp", "block".to_owned()), ("blockid", "AAA=".to_owned())];
        let parts = SignedParts {
            method: &Method::PUT,
            path: "/acct/c/a/b",
            query: &query,
            headers: &headers,
        };
        assert_eq!(
            string_to_sign("acct", &parts),
            "PUT\n\n\n3\n\n\n\n\n\n*\n\n\n\
             x-ms-blob-type:BlockBlob\nx-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\nx-ms-version:2021-08-06\n\
             /acct/acct/c/a/b\nblockid:AAA=\ncomp:block"
        );
        // HMAC-SHA256 under the key, in base64: what `openssl dgst -sha256 -hmac` gives.
        let signed = authorization("acct", b"key", &parts);
        assert!(signed.starts_with("SharedKey acct:"), "{signed}");
        assert_eq!(signed.len(), "SharedKey acct:".len() + 44);
    }
}
