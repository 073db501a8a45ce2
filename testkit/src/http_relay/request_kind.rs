//! What a path-style S3 request is, from its method and target: a read of an object's bytes
//! (with the key it names), a listing, a HEAD, or anything else.

/// The kinds of request the relay counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RequestKind {
    /// `GET /bucket/key` without a sub-resource: GetObject, the only kind faults strike.
    ObjectGet {
        key: String,
    },
    /// A GET of the bucket itself (ListObjectsV2 and the like) or of the service.
    List,
    Head,
    /// Puts, posts, deletes, and GETs of an object's sub-resources (its tags, its parts).
    Other,
}

/// Query parameters that make a GET of `/bucket/key` read something other than the object's
/// bytes.
const SUB_RESOURCES: &[&str] = &[
    "tagging",
    "uploads",
    "uploadId",
    "versions",
    "location",
    "acl",
    "attributes",
    "retention",
    "legal-hold",
    "torrent",
];

/// The kind of a request with `method` and `target` (`/bucket/key?query`).
pub(super) fn classify(method: &str, target: &str) -> RequestKind {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match method {
        "HEAD" => RequestKind::Head,
        "GET" => {
            let key = path
                .trim_start_matches('/')
                .split_once('/')
                .map_or("", |(_bucket, key)| key);
            let names: Vec<&str> = query
                .split('&')
                .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
                .collect();
            if key.is_empty() || names.contains(&"list-type") {
                RequestKind::List
            } else if names.iter().any(|name| SUB_RESOURCES.contains(name)) {
                RequestKind::Other
            } else {
                RequestKind::ObjectGet {
                    key: percent_decoded(key),
                }
            }
        }
        _ => RequestKind::Other,
    }
}

/// `text` with each `%XY` made the byte it stands for; a `%` not followed by two hex digits
/// stays as it is, and bytes that are not UTF-8 become U+FFFD.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object_get(key: &str) -> RequestKind {
        RequestKind::ObjectGet { key: key.into() }
    }

    #[test]
    fn gets_of_objects_are_told_from_listings_and_sub_resources() {
        let kinds = [
            ("GET", "/archive/a/b?x-id=GetObject", object_get("a/b")),
            ("GET", "/archive/a/b", object_get("a/b")),
            ("GET", "/archive/k?versionId=3", object_get("k")),
            ("GET", "/archive?list-type=2&prefix=a%2F", RequestKind::List),
            ("GET", "/archive/?list-type=2", RequestKind::List),
            ("GET", "/archive/", RequestKind::List),
            ("GET", "/archive", RequestKind::List),
            ("GET", "/archive?location", RequestKind::List),
            ("GET", "/", RequestKind::List),
            ("GET", "/archive/k?tagging", RequestKind::Other),
            (
                "GET",
                "/archive/k?uploadId=7&x-id=ListParts",
                RequestKind::Other,
            ),
            ("HEAD", "/archive/k", RequestKind::Head),
            ("PUT", "/archive/k?x-id=PutObject", RequestKind::Other),
            ("POST", "/archive/k?uploads", RequestKind::Other),
            ("DELETE", "/archive/k?x-id=DeleteObject", RequestKind::Other),
        ];
        for (method, target, kind) in kinds {
            assert_eq!(classify(method, target), kind, "{method} {target}");
        }
    }

    #[test]
    fn keys_are_percent_decoded() {
        let kind = classify(
            "GET",
            "/archive/a%20b/%C3%A9t%C3%A9%2Fx%zz%4?x-id=GetObject",
        );
        assert_eq!(kind, object_get("a b/été/x%zz%4"));
    }
}
