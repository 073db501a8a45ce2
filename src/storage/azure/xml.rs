//! Just enough XML to read the Blob service's answers — error bodies and List Blobs pages —
//! which are flat, known documents: the text of the elements with a given name, unescaped.

/// The text of each `<name>` element in `xml`, in order (attributes ignored; an empty element
/// `<name />` gives an empty text).
pub(super) fn elements<'a>(xml: &'a str, name: &'a str) -> impl Iterator<Item = String> + 'a {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find(&open)?;
            let after_name = &rest[start + open.len()..];
            // `<Name>` or `<Name attr="…">`, not `<NameOther>`.
            match after_name.chars().next() {
                Some('>') | Some(' ') | Some('/') => {}
                _ => {
                    rest = after_name;
                    continue;
                }
            }
            let tag_end = after_name.find('>')?;
            if after_name[..tag_end].ends_with('/') {
                rest = &after_name[tag_end + 1..];
                return Some(String::new());
            }
            let body = &after_name[tag_end + 1..];
            let end = body.find(&close)?;
            rest = &body[end + close.len()..];
            return Some(unescape(&body[..end]));
        }
    })
}

/// The text of the first `<name>` element in `xml`.
pub(super) fn element(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).next()
}

/// Resolves the five predefined entities and character references.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let entity = &rest[at..];
        let Some(end) = entity.find(';') else {
            out.push_str(entity);
            return out;
        };
        let name = &entity[1..end];
        let resolved = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match resolved {
            Some(c) => out.push(c),
            None => out.push_str(&entity[..=end]),
        }
        rest = &entity[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_found_by_their_whole_name_and_unescaped() {
        let xml = r#"<?xml version="1.0"?><R><Blobs><Blob><Name>a&amp;b&#x41;&#66;</Name><Properties><Content-Length>12</Content-Length></Properties></Blob><BlobPrefix><Name Encoded="false">p/</Name></BlobPrefix></Blobs><NextMarker /></R>"#;
        assert_eq!(elements(xml, "Name").collect::<Vec<_>>(), ["a&bAB", "p/"]);
        assert_eq!(element(xml, "Content-Length").as_deref(), Some("12"));
        assert_eq!(element(xml, "NextMarker").as_deref(), Some(""));
        assert_eq!(elements(xml, "Blob").count(), 1, "not BlobPrefix nor Blobs");
        assert_eq!(element(xml, "Missing"), None);
        assert_eq!(unescape("x &unknown; &"), "x &unknown; &");
    }
}
