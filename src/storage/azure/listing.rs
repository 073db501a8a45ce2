//! List Blobs: the pages of blob names (and sizes) under a name prefix, or, grouped at `/`, the
//! names one level down; each page's XML read by `xml.rs`, continued by its `NextMarker` until a
//! page has none.

use std::io;
use std::time::Duration;

use http::Method;

use super::container::AzureStorage;
use super::http::Call;
use super::transport::read_body;
use super::xml;
use crate::storage::{Cancel, ObjectKey, StorageError};

/// Names a page holds at most (the service's own limit).
const PAGE_SIZE: &str = "5000";

/// How long a page's body may take once its head is in.
const PAGE_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// One page of a listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Page {
    /// Blob names with their sizes.
    pub blobs: Vec<(String, u64)>,
    /// With a delimiter: the names that group deeper blobs, each ending in `/`.
    pub prefixes: Vec<String>,
    /// Where the next page starts; `None` on the last.
    pub next_marker: Option<String>,
}

impl AzureStorage {
    /// Every page of List Blobs for the blob names starting with `under` (grouped at `/` when
    /// `grouped`), each handed to `each`: the listing of `prefix`.
    pub(super) fn list_pages(
        &self,
        prefix: &ObjectKey,
        under: &str,
        grouped: bool,
        cancel: &Cancel,
        mut each: impl FnMut(Page),
    ) -> Result<(), StorageError> {
        let doing = self.doing("list", prefix.as_str());
        let mut marker: Option<String> = None;
        loop {
            cancel.check(|| doing.clone())?;
            let mut call = Call::new(Method::GET, self.container_path(), &doing)
                .query("restype", "container")
                .query("comp", "list")
                .query("prefix", under)
                .query("maxresults", PAGE_SIZE);
            if grouped {
                call = call.query("delimiter", "/");
            }
            if let Some(marker) = marker.take() {
                call = call.query("marker", marker);
            }
            let page = self.page(&call)?;
            marker = page.next_marker.clone();
            each(page);
            if marker.is_none() {
                return Ok(());
            }
        }
    }

    /// Lists at most one blob of the container: whether it is there and the access allows
    /// listing it, without writing.
    pub(super) fn probe_container(&self, doing: &str) -> Result<(), StorageError> {
        let call = Call::new(Method::GET, self.container_path(), doing)
            .query("restype", "container")
            .query("comp", "list")
            .query("prefix", self.blob_name(""))
            .query("maxresults", "1");
        self.page(&call).map(|_| ())
    }

    fn page(&self, call: &Call<'_>) -> Result<Page, StorageError> {
        let doing = call.doing.to_owned();
        let answer = self.send(call).map_err(|f| self.failed(doing.clone(), f))?;
        let body = self
            .runtime
            .block_on(read_body(answer.body, PAGE_BODY_TIMEOUT))
            .map_err(|reason| StorageError::Transient {
                doing: doing.clone(),
                reason,
            })?;
        parse_page(&String::from_utf8_lossy(&body)).map_err(|reason| StorageError::Io {
            doing,
            source: io::Error::new(io::ErrorKind::InvalidData, reason),
        })
    }
}

/// Reads a List Blobs answer.
fn parse_page(text: &str) -> Result<Page, String> {
    if !text.contains("<EnumerationResults") {
        return Err("the answer is not a List Blobs result".to_owned());
    }
    let mut page = Page::default();
    for blob in xml::elements(text, "Blob") {
        let name = xml::element(&blob, "Name").ok_or("a listed blob has no name")?;
        let size = xml::element(&blob, "Content-Length")
            .and_then(|size| size.parse().ok())
            .ok_or_else(|| format!("listed blob {name} has no size"))?;
        page.blobs.push((name, size));
    }
    for prefix in xml::elements(text, "BlobPrefix") {
        page.prefixes
            .push(xml::element(&prefix, "Name").ok_or("a listed prefix has no name")?);
    }
    page.next_marker = xml::element(text, "NextMarker").filter(|m| !m.is_empty());
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_gives_names_sizes_prefixes_and_where_to_go_on() {
        let text = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:1/devstoreaccount1" ContainerName="c"><Prefix>p/</Prefix><MaxResults>5000</MaxResults><Delimiter>/</Delimiter><Blobs><Blob><Name>p/a</Name><Properties><Creation-Time>Mon, 01 Jan 2024 00:00:00 GMT</Creation-Time><Content-Length>3</Content-Length><Content-MD5>rL0Y20zC+Fzt72VPzMSk2A==</Content-MD5></Properties></Blob><BlobPrefix><Name>p/d/</Name></BlobPrefix></Blobs><NextMarker>2!72!MDAwMDE</NextMarker></EnumerationResults>"#;
        assert_eq!(
            parse_page(text).unwrap(),
            Page {
                blobs: vec![("p/a".to_owned(), 3)],
                prefixes: vec!["p/d/".to_owned()],
                next_marker: Some("2!72!MDAwMDE".to_owned()),
            }
        );
        let last = r#"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#;
        assert_eq!(parse_page(last).unwrap(), Page::default());
        assert!(parse_page("<html>proxy</html>").is_err());
    }
}
