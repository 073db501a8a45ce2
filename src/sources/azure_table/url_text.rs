//! How names, keys and filters are written into Table storage URLs: percent-encoding of path
//! and query parts, and OData string literals.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What percent-encoding leaves as it is: RFC 3986's unreserved characters.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` percent-encoded for a URL's path or query.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, ENCODED).to_string()
}

/// `text` as an OData string literal: in single quotes, each one in it doubled.
pub fn odata_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_filters_are_encoded_as_the_service_reads_them() {
        assert_eq!(odata_string("it's"), "'it''s'");
        assert_eq!(
            encode("PartitionKey eq 'ü/1'"),
            "PartitionKey%20eq%20%27%C3%BC%2F1%27"
        );
    }
}
