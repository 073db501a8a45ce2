//! Percent-decoding of a URL's parts, strictly: every `%` starts a two-hex-digit escape, and the
//! decoded bytes are UTF-8. Callers say which URL and part was wrong.

use std::borrow::Cow;

/// Why a URL part could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` not followed by two hex digits (`%` itself is written `%25`).
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

/// `text` with each `%XX` replaced by the byte it stands for.
pub fn percent_decode(text: &str) -> Result<String, PercentError> {
    let bytes = text.as_bytes();
    let is_escape = |at: usize| {
        bytes
            .get(at + 1..at + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    };
    // The crate passes a lone `%` through as it is; a URL with one is a mistake to report.
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == b'%') {
        at += offset;
        if !is_escape(at) {
            return Err(PercentError::BadEscape);
        }
        at += 3;
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| PercentError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::{PercentError, percent_decode};

    #[test]
    fn escapes_decode_and_plain_text_stays() {
        assert_eq!(percent_decode("p%40ss%25w%C3%B6rd").unwrap(), "p@ss%wörd");
        assert_eq!(percent_decode("plain").unwrap(), "plain");
        assert_eq!(percent_decode("").unwrap(), "");
    }

    #[test]
    fn a_percent_that_starts_no_escape_is_refused() {
        for text in ["%", "a%4", "%zz", "%%41", "50%"] {
            assert_eq!(percent_decode(text), Err(PercentError::BadEscape), "{text}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        assert_eq!(percent_decode("%ff%fe"), Err(PercentError::NotUtf8));
    }
}
