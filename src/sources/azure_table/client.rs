//! The Table service's REST API, as much as a source needs: list tables, create one, query a
//! table's entities page by page, and submit entity group transactions (`batch`). Every request
//! carries `x-ms-date`, API version 2019-02-02 and JSON with minimal metadata, and is signed
//! (SharedKey) or carries the SAS token. Each attempt is bounded by the source's `timeout`;
//! transport failures, timeouts and 408/429/5xx answers are retried with backoff, at most
//! [`MAX_ATTEMPTS`] times, each retry logged. Answers that refuse are explained in one line.

use std::time::Duration;

use super::url_text::encode;
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

use super::auth::{self, Credentials};
use super::batch::{Batch, BatchOutcome};
use super::paging::{EntityContinuation, Page, for_each_page};
use crate::config::TableSigning;

/// Attempts of one request, the first included, before its failure is the caller's.
pub const MAX_ATTEMPTS: u32 = 5;

/// The wait before the second attempt; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The REST API version requests ask for (JSON payloads, as every version since 2015-12-11).
const API_VERSION: &str = "2019-02-02";

/// Entities (or tables) one page asks for: the service's most.
pub const PAGE_SIZE: u32 = 1000;

/// A table the account does not have, as an error callers can tell from others.
#[derive(Debug, thiserror::Error)]
#[error("table {table} does not exist in {location}")]
pub struct NoSuchTable {
    pub table: String,
    pub location: String,
}

/// Where the service is and who asks.
pub struct TableEndpoint {
    /// `https://ACCOUNT.table.core.windows.net`, or an emulator's `http://HOST:PORT/ACCOUNT`;
    /// no trailing slash.
    pub url: String,
    pub account: String,
    /// `source.NAME`, named in errors.
    pub section: String,
    /// One attempt of one request, connecting included.
    pub timeout: Duration,
}

/// A client of one account's Table service, with its own runtime: its methods block, and any
/// number of threads may call them at once.
pub struct TableClient {
    runtime: tokio::runtime::Runtime,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: TableEndpoint,
    /// The endpoint URL's path (`/devstoreaccount1` on an emulator, else empty), which the
    /// signed resource includes.
    base_path: String,
    credentials: Credentials,
}

/// One request, before it is dated, signed and sent.
struct Call {
    method: Method,
    /// Below the endpoint, encoded: `Tables`, `AuditLog()`, `$batch`.
    path: String,
    query: Vec<(&'static str, String)>,
    content_type: Option<String>,
    body: Bytes,
    /// What the request does, for errors and logs: "list the tables".
    what: String,
}

/// An answer, its body read.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The service's error code and message, from its JSON or XML error body, else its
    /// `x-ms-error-code` header.
    pub fn error_code_and_message(&self) -> (String, String) {
        let text = String::from_utf8_lossy(&self.body);
        if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(&text)
            && let Some(error) = object.get("odata.error")
        {
            let code = error["code"].as_str().unwrap_or_default().to_owned();
            let message = error["message"]["value"]
                .as_str()
                .or_else(|| error["message"].as_str())
                .unwrap_or_default();
            return (code, first_line(message));
        }
        let between = |open: &str, close: &str| {
            let start = text.find(open)? + open.len();
            let end = text[start..].find(close)? + start;
            Some(text[start..end].to_owned())
        };
        let code = between("<Code>", "</Code>")
            .or_else(|| self.header("x-ms-error-code").map(str::to_owned))
            .unwrap_or_default();
        let message = between("<Message>", "</Message>").unwrap_or_default();
        (code, first_line(&message))
    }
}

/// The first line of a service message (the next ones are a request id and a time).
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().trim().to_owned()
}

impl TableClient {
    /// A client of `endpoint`; nothing is sent until a request is made.
    pub fn new(endpoint: TableEndpoint, credentials: Credentials) -> anyhow::Result<TableClient> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("azure-table")
            .build()
            .context("start the Table storage client's runtime")?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(endpoint.timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&endpoint)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let url = endpoint.url.trim_end_matches('/').to_owned();
        let base_path = base_path(&url).with_context(|| {
            format!(
                "{}.endpoint \"{url}\" is not a URL: write http://HOST:PORT/ACCOUNT or https://HOST",
                endpoint.section
            )
        })?;
        Ok(TableClient {
            runtime,
            http: client,
            endpoint: TableEndpoint { url, ..endpoint },
            base_path,
            credentials,
        })
    }

    /// Where the service is, for messages: `account A at URL`.
    pub fn location(&self) -> String {
        format!("account {} at {}", self.endpoint.account, self.endpoint.url)
    }

    /// The endpoint URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.endpoint.url
    }

    /// Runs one of the client's requests to its end on its runtime.
    pub fn block_on<F: std::future::Future>(&self, request: F) -> F::Output {
        self.runtime.block_on(request)
    }

    /// Every table of the account, by name, in the service's order.
    pub async fn list_tables(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for_each_page(
            |after: Option<String>| self.tables_page(after),
            |page| {
                names.extend(page);
                Ok(())
            },
        )
        .await?;
        Ok(names)
    }

    async fn tables_page(&self, after: Option<String>) -> anyhow::Result<Page<String, String>> {
        let mut query = vec![("$top", PAGE_SIZE.to_string())];
        if let Some(after) = after {
            query.push(("NextTableName", after));
        }
        let answer = self
            .call(Call {
                method: Method::GET,
                path: "Tables".into(),
                query,
                content_type: None,
                body: Bytes::new(),
                what: "list the tables".into(),
            })
            .await?;
        let answer = self.expect_success(answer, "list the tables")?;
        let names = values(&answer.body, "list the tables")?
            .into_iter()
            .map(|table| match table.get("TableName") {
                Some(Value::String(name)) => Ok(name.clone()),
                _ => bail!("list the tables: the answer holds a table without TableName"),
            })
            .collect::<anyhow::Result<Vec<String>>>()?;
        let next = answer
            .header("x-ms-continuation-NextTableName")
            .map(str::to_owned);
        Ok(Page { items: names, next })
    }

    /// Creates table `name`; `false` when it exists already.
    pub async fn create_table(&self, name: &str) -> anyhow::Result<bool> {
        let what = format!("create table {name}");
        let body = serde_json::to_vec(&serde_json::json!({ "TableName": name }))?;
        let answer = self
            .call(Call {
                method: Method::POST,
                path: "Tables".into(),
                query: Vec::new(),
                content_type: Some("application/json".into()),
                body: body.into(),
                what: what.clone(),
            })
            .await?;
        if answer.status == StatusCode::CONFLICT {
            return Ok(false);
        }
        self.expect_success(answer, &what)?;
        Ok(true)
    }

    /// Deletes table `name` with its entities; `false` when it does not exist. (No command
    /// deletes a table; tests and benches clear what they restored with it.)
    pub async fn delete_table(&self, name: &str) -> anyhow::Result<bool> {
        let what = format!("delete table {name}");
        let answer = self
            .call(Call {
                method: Method::DELETE,
                path: format!("Tables('{}')", encode(name)),
                query: Vec::new(),
                content_type: None,
                body: Bytes::new(),
                what: what.clone(),
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.expect_success(answer, &what)?;
        Ok(true)
    }

    /// Every entity of `table` matching `filter` (all without one), with only `select`'s
    /// properties when given, handed to `each` a page at a time. A missing table is a
    /// [`NoSuchTable`] error.
    pub async fn query_entities(
        &self,
        table: &str,
        filter: Option<&str>,
        select: Option<&str>,
        each: impl FnMut(Vec<Map<String, Value>>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        for_each_page(
            |after: Option<EntityContinuation>| self.entities_page(table, filter, select, after),
            each,
        )
        .await
    }

    async fn entities_page(
        &self,
        table: &str,
        filter: Option<&str>,
        select: Option<&str>,
        after: Option<EntityContinuation>,
    ) -> anyhow::Result<Page<Map<String, Value>, EntityContinuation>> {
        let mut query = vec![("$top", PAGE_SIZE.to_string())];
        if let Some(filter) = filter {
            query.push(("$filter", filter.to_owned()));
        }
        if let Some(select) = select {
            query.push(("$select", select.to_owned()));
        }
        if let Some(after) = &after {
            query.extend(after.query());
        }
        let what = format!("read the entities of table {table}");
        let answer = self
            .call(Call {
                method: Method::GET,
                path: format!("{}()", encode(table)),
                query,
                content_type: None,
                body: Bytes::new(),
                what: what.clone(),
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            let (code, _) = answer.error_code_and_message();
            if code == "TableNotFound" || code == "ResourceNotFound" {
                return Err(NoSuchTable {
                    table: table.to_owned(),
                    location: self.location(),
                }
                .into());
            }
        }
        let answer = self.expect_success(answer, &what)?;
        let items = values(&answer.body, &what)?;
        let next = EntityContinuation::from_headers(|name| answer.header(name));
        Ok(Page { items, next })
    }

    /// Submits `batch` (one partition of `table`) as an entity group transaction.
    pub async fn submit_batch(&self, table: &str, batch: &Batch) -> anyhow::Result<BatchOutcome> {
        let (content_type, body) = batch.body(&self.endpoint.url, table)?;
        let what = format!(
            "write {} entities of partition {:?} of table {table}",
            batch.len(),
            batch.partition_key()
        );
        let answer = self
            .call(Call {
                method: Method::POST,
                path: "$batch".into(),
                query: Vec::new(),
                content_type: Some(content_type),
                body: body.into(),
                what: what.clone(),
            })
            .await?;
        let answer = self.expect_success(answer, &what)?;
        BatchOutcome::parse(&answer.body).with_context(|| format!("{what}: read the answer"))
    }

    /// `answer` when it succeeded (2xx), else its failure explained.
    fn expect_success(&self, answer: Answer, what: &str) -> anyhow::Result<Answer> {
        if answer.status.is_success() {
            return Ok(answer);
        }
        let (code, message) = answer.error_code_and_message();
        let status = answer.status.as_u16();
        let said = match (code.is_empty(), message.is_empty()) {
            (false, false) => format!("{status} {code}: {message}"),
            (false, true) => format!("{status} {code}"),
            _ => format!("{status}"),
        };
        Err(match answer.status {
            StatusCode::FORBIDDEN => anyhow!(
                "{what}: {} refused the request ({said}): the key or SAS token is not one of account {} (check key_file or {}, and {}.account), the SAS token lacks a permission or has expired, or this host's clock is off by more than 15 minutes",
                self.endpoint.url,
                self.endpoint.account,
                auth::KEY_ENV,
                self.endpoint.section
            ),
            _ => anyhow!("{what}: {} answered {said}", self.endpoint.url),
        })
    }

    /// Sends `call` until it is answered other than by a retryable failure, at most
    /// [`MAX_ATTEMPTS`] times; each attempt is dated and signed anew.
    async fn call(&self, call: Call) -> anyhow::Result<Answer> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let failure =
                match tokio::time::timeout(self.endpoint.timeout, self.attempt(&call)).await {
                    Ok(Ok(answer)) if !retryable(answer.status) => return Ok(answer),
                    Ok(Ok(answer)) => {
                        let (code, _) = answer.error_code_and_message();
                        format!("answered {} {code}", answer.status.as_u16())
                    }
                    Ok(Err(error)) => format!("{error:#}"),
                    Err(_) => format!("no answer within {:?}", self.endpoint.timeout),
                };
            if attempt == MAX_ATTEMPTS {
                bail!(
                    "{}: {} {failure} ({MAX_ATTEMPTS} attempts): check that {}.endpoint is the account's Table service and that it is up",
                    call.what,
                    self.endpoint.url,
                    self.endpoint.section
                );
            }
            tracing::warn!(
                "{}: attempt {attempt} of {MAX_ATTEMPTS}: {} {failure}; retrying in {} ms",
                call.what,
                self.endpoint.url,
                backoff.as_millis()
            );
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    /// One attempt of `call`, its body read.
    async fn attempt(&self, call: &Call) -> anyhow::Result<Answer> {
        let request = self.request(call)?;
        let response = self.http.request(request).await.map_err(|e| {
            // The connector's error says why (refused, reset, TLS): keep its chain.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            anyhow!(text)
        })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("read the answer's body")?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `call` as an HTTP request: its URL, headers, and signature or SAS token.
    fn request(&self, call: &Call) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut query: Vec<String> = call
            .query
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect();
        if let Credentials::Sas { token } = &self.credentials {
            query.push(token.to_string());
        }
        let mut url = format!("{}/{}", self.endpoint.url, call.path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let date = auth::request_date(chrono::Utc::now());
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(&url)
            .header("x-ms-date", &date)
            .header("x-ms-version", API_VERSION)
            .header("DataServiceVersion", "3.0;NetFx")
            .header("MaxDataServiceVersion", "3.0;NetFx")
            .header("Accept", "application/json;odata=minimalmetadata")
            .header("Content-Length", call.body.len());
        let content_type = call.content_type.as_deref().unwrap_or_default();
        if !content_type.is_empty() {
            builder = builder.header("Content-Type", content_type);
        }
        if call.method == Method::POST && call.path == "Tables" {
            // Create Table: no need for the new table's description back.
            builder = builder.header("Prefer", "return-no-content");
        }
        if let Credentials::SharedKey { key, scheme } = &self.credentials {
            let resource = auth::canonicalized_resource(
                &self.endpoint.account,
                &format!("{}/{}", self.base_path, call.path),
                None,
            );
            let (name, signed) = match scheme {
                TableSigning::SharedKey => (
                    "SharedKey",
                    auth::shared_key_string_to_sign(
                        call.method.as_str(),
                        "",
                        content_type,
                        &date,
                        &resource,
                    ),
                ),
                TableSigning::SharedKeyLite => (
                    "SharedKeyLite",
                    auth::shared_key_lite_string_to_sign(&date, &resource),
                ),
            };
            let value = format!(
                "{name} {}:{}",
                self.endpoint.account,
                auth::signature(key, &signed)
            );
            let mut value = HeaderValue::from_str(&value)?;
            value.set_sensitive(true);
            builder = builder.header("Authorization", value);
        }
        builder
            .body(Full::new(call.body.clone()))
            .with_context(|| format!("{}: build the request", call.what))
    }
}

/// Whether an answer with `status` is worth another attempt.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The path of an endpoint URL (`http://h:p/devstoreaccount1` → `/devstoreaccount1`).
fn base_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host_end = rest.find('/').unwrap_or(rest.len());
    if host_end == 0 {
        return None;
    }
    Some(rest[host_end..].to_owned())
}

/// TLS for an `https://` endpoint, trusting the system's roots (none are loaded for `http://`).
fn tls_config(endpoint: &TableEndpoint) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if endpoint.url.starts_with("https://") {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            bail!(
                "{} reaches {} over https, trusting the system's roots, and none were found: install ca-certificates",
                endpoint.section,
                endpoint.url
            );
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The `value` array of a JSON answer.
fn values(body: &[u8], what: &str) -> anyhow::Result<Vec<Map<String, Value>>> {
    #[derive(serde::Deserialize)]
    struct Values {
        value: Vec<Map<String, Value>>,
    }
    let parsed: Values = serde_json::from_slice(body)
        .with_context(|| format!("{what}: the answer is not the JSON a query answers"))?;
    Ok(parsed.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_give_the_path_requests_are_signed_under() {
        assert_eq!(
            base_path("http://127.0.0.1:1/devstoreaccount1").unwrap(),
            "/devstoreaccount1"
        );
        assert_eq!(base_path("https://a.table.core.windows.net").unwrap(), "");
        assert_eq!(base_path("ftp://x"), None);
    }

    /// The Authorization header of a GET of `Tables` signed with `scheme`, and its date.
    fn authorization(scheme: TableSigning) -> (String, String) {
        let key = vec![7u8; 64];
        let credentials = Credentials::SharedKey {
            key: zeroize::Zeroizing::new(key),
            scheme,
        };
        let endpoint = TableEndpoint {
            url: "http://127.0.0.1:1/devstoreaccount1".into(),
            account: "devstoreaccount1".into(),
            section: "source.t".into(),
            timeout: Duration::from_secs(1),
        };
        let client = TableClient::new(endpoint, credentials).unwrap();
        let call = Call {
            method: Method::GET,
            path: "Tables".into(),
            query: Vec::new(),
            content_type: None,
            body: Bytes::new(),
            what: "list the tables".into(),
        };
        let request = client.request(&call).unwrap();
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
        (header("Authorization"), header("x-ms-date"))
    }

    #[test]
    fn each_scheme_signs_what_it_names_and_says_so() {
        let resource = "/devstoreaccount1/devstoreaccount1/Tables";
        let (lite, date) = authorization(TableSigning::SharedKeyLite);
        let signed = auth::shared_key_lite_string_to_sign(&date, resource);
        assert_eq!(
            lite,
            format!(
                "SharedKeyLite devstoreaccount1:{}",
                auth::signature(&[7u8; 64], &signed)
            )
        );
        let (full, date) = authorization(TableSigning::SharedKey);
        let signed = auth::shared_key_string_to_sign("GET", "", "", &date, resource);
        assert_eq!(
            full,
            format!(
                "SharedKey devstoreaccount1:{}",
                auth::signature(&[7u8; 64], &signed)
            )
        );
    }

    #[test]
    fn error_bodies_in_json_or_xml_are_read() {
        let answer = |body: &str| Answer {
            status: StatusCode::FORBIDDEN,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        };
        let json = answer(
            r#"{"odata.error":{"code":"AuthorizationFailure","message":{"lang":"en-US","value":"Server failed to authenticate the request.\nRequestId:1"}}}"#,
        );
        assert_eq!(
            json.error_code_and_message(),
            (
                "AuthorizationFailure".to_owned(),
                "Server failed to authenticate the request.".to_owned()
            )
        );
        let xml = answer(
            "<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Bad sig\nRequestId:2</Message></Error>",
        );
        assert_eq!(
            xml.error_code_and_message(),
            ("AuthenticationFailed".to_owned(), "Bad sig".to_owned())
        );
    }
}
