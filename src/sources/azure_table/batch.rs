//! Entity group transactions: writes of one partition's entities, at most [`MAX_OPERATIONS`]
//! and [`MAX_BYTES`] a transaction, sent as one `multipart/mixed` `$batch` request that the
//! service applies whole or not at all. The service refuses a transaction that spans two
//! partitions, but Azurite does not (Azurite #1215), so the rule is kept here: a [`Batch`]
//! takes only entities of its own partition and checks every operation again before it is
//! sent, and the [`Batcher`] cuts a stream of entities into batches that keep all three limits.

use std::fmt::Write as _;

use anyhow::{bail, ensure};

use super::entity::Entity;
use super::url_text::{encode, odata_string};

/// Operations in one transaction, at most (the service's limit).
pub const MAX_OPERATIONS: usize = 100;

/// Bytes of one transaction's request body, at most (the service's limit is 4 MiB).
pub const MAX_BYTES: usize = 4 << 20;

/// Room left in [`MAX_BYTES`] for the framing around the operations.
const FRAMING: usize = 512;

/// How each entity is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Insert Entity: an entity that exists fails the transaction (409).
    Insert,
    /// Insert Or Merge Entity: properties not in the snapshot's entity are kept.
    Merge,
    /// Insert Or Replace Entity: the entity becomes exactly the snapshot's.
    Replace,
}

impl WriteMode {
    pub fn name(self) -> &'static str {
        match self {
            WriteMode::Insert => "insert",
            WriteMode::Merge => "merge",
            WriteMode::Replace => "replace",
        }
    }
}

/// One operation of a batch, framed as its part of the request body.
struct Operation {
    partition_key: String,
    row_key: String,
    part: Vec<u8>,
}

/// Writes of one partition of one table, each framed when added.
pub struct Batch {
    mode: WriteMode,
    partition_key: String,
    /// `ENDPOINT/TABLE`: each operation's URL starts with it.
    table_url: String,
    operations: Vec<Operation>,
    bytes: usize,
}

impl Batch {
    pub fn new(mode: WriteMode, table_url: &str, partition_key: &str) -> Batch {
        Batch {
            mode,
            partition_key: partition_key.to_owned(),
            table_url: table_url.to_owned(),
            operations: Vec::new(),
            bytes: FRAMING,
        }
    }

    pub fn partition_key(&self) -> &str {
        &self.partition_key
    }

    pub fn len(&self) -> usize {
        self.operations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The RowKey of the `index`th operation.
    pub fn row_key(&self, index: usize) -> Option<&str> {
        self.operations.get(index).map(|op| op.row_key.as_str())
    }

    /// Adds `entity`'s write; `Ok(false)` (and nothing added) when it would break the batch's
    /// operation or byte limit. An entity of another partition is an error: a batch never
    /// spans two.
    pub fn push(&mut self, entity: &Entity) -> anyhow::Result<bool> {
        ensure!(
            entity.partition_key == self.partition_key,
            "a batch of partition {:?} was given an entity of partition {:?}: a transaction never spans two partitions",
            self.partition_key,
            entity.partition_key
        );
        if self.operations.len() == MAX_OPERATIONS {
            return Ok(false);
        }
        let part = self.frame(entity);
        if !self.operations.is_empty() && self.bytes + part.len() > MAX_BYTES {
            return Ok(false);
        }
        self.bytes += part.len();
        self.operations.push(Operation {
            partition_key: entity.partition_key.clone(),
            row_key: entity.row_key.clone(),
            part,
        });
        Ok(true)
    }

    /// One write framed as a part of the changeset (its boundary written by [`Batch::body`]).
    fn frame(&self, entity: &Entity) -> Vec<u8> {
        let json = entity.to_service_json();
        let (verb, url) = match self.mode {
            WriteMode::Insert => ("POST", self.table_url.clone()),
            WriteMode::Merge | WriteMode::Replace => (
                if self.mode == WriteMode::Merge {
                    "MERGE"
                } else {
                    "PUT"
                },
                format!(
                    "{}(PartitionKey={},RowKey={})",
                    self.table_url,
                    encode(&odata_string(&entity.partition_key)),
                    encode(&odata_string(&entity.row_key))
                ),
            ),
        };
        let mut part = String::with_capacity(json.len() + 400);
        let _ = write!(
            part,
            "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n{verb} {url} HTTP/1.1\r\nContent-Type: application/json\r\nAccept: application/json;odata=minimalmetadata\r\nPrefer: return-no-content\r\nDataServiceVersion: 3.0;\r\nContent-Length: {}\r\n\r\n",
            json.len()
        );
        let mut part = part.into_bytes();
        part.extend_from_slice(&json);
        part.extend_from_slice(b"\r\n");
        part
    }

    /// The request body and its content type, after checking once more that every operation
    /// is of the batch's partition and within the limits.
    pub fn body(&self, endpoint: &str, table: &str) -> anyhow::Result<(String, Vec<u8>)> {
        let table_url = format!("{endpoint}/{}", encode(table));
        ensure!(
            table_url == self.table_url,
            "a batch for {} cannot be sent to {table_url}",
            self.table_url
        );
        ensure!(!self.operations.is_empty(), "an empty batch is never sent");
        ensure!(
            self.operations.len() <= MAX_OPERATIONS
                && self.bytes <= MAX_BYTES.max(self.bytes_of_one()),
            "a batch of {} operations and {} bytes is beyond the service's limits ({MAX_OPERATIONS}, {MAX_BYTES})",
            self.operations.len(),
            self.bytes
        );
        if let Some(other) = self
            .operations
            .iter()
            .find(|op| op.partition_key != self.partition_key)
        {
            bail!(
                "a batch of partition {:?} holds an entity of partition {:?}: a transaction never spans two partitions",
                self.partition_key,
                other.partition_key
            );
        }
        let (batch, changeset) = (boundary("batch"), boundary("changeset"));
        let mut body = Vec::with_capacity(self.bytes);
        let _ = write!(
            Writer(&mut body),
            "--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
        );
        for operation in &self.operations {
            let _ = write!(Writer(&mut body), "--{changeset}\r\n");
            body.extend_from_slice(&operation.part);
        }
        let _ = write!(Writer(&mut body), "--{changeset}--\r\n--{batch}--\r\n");
        Ok((format!("multipart/mixed; boundary={batch}"), body))
    }

    /// A batch of one operation may be as large as that operation is.
    fn bytes_of_one(&self) -> usize {
        if self.operations.len() == 1 {
            self.bytes
        } else {
            0
        }
    }
}

/// `fmt::Write` into a byte vector.
struct Writer<'v>(&'v mut Vec<u8>);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A multipart boundary no entity's JSON holds: random hex after the kind.
fn boundary(kind: &str) -> String {
    format!(
        "{kind}_{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

/// Cuts entities, in any order of partitions, into batches of one partition each: a batch is
/// handed out when it is full or the next entity is of another partition.
pub struct Batcher {
    mode: WriteMode,
    table_url: String,
    open: Option<Batch>,
}

impl Batcher {
    pub fn new(mode: WriteMode, endpoint: &str, table: &str) -> Batcher {
        Batcher {
            mode,
            table_url: format!("{endpoint}/{}", encode(table)),
            open: None,
        }
    }

    /// Adds `entity`; returns the batch it closed, if any.
    pub fn add(&mut self, entity: &Entity) -> anyhow::Result<Option<Batch>> {
        let mut closed = None;
        if let Some(open) = &mut self.open {
            if open.partition_key == entity.partition_key && open.push(entity)? {
                return Ok(None);
            }
            closed = self.open.take();
        }
        let mut batch = Batch::new(self.mode, &self.table_url, &entity.partition_key);
        let added = batch.push(entity)?;
        debug_assert!(added, "a first operation always fits");
        self.open = Some(batch);
        Ok(closed)
    }

    /// The last batch, if it holds anything.
    pub fn finish(self) -> Option<Batch> {
        self.open.filter(|batch| !batch.is_empty())
    }
}

/// What the service answered a transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every operation was applied.
    Applied,
    /// None was: the failing operation's status, code and message, and its index in the
    /// batch when the message says it.
    Failed {
        status: u16,
        code: String,
        message: String,
        index: Option<usize>,
    },
}

impl BatchOutcome {
    /// Reads a `$batch` answer's body: the status line of each operation's answer (a failed
    /// transaction answers only the operation that failed).
    pub fn parse(body: &[u8]) -> anyhow::Result<BatchOutcome> {
        let text = String::from_utf8_lossy(body);
        let mut statuses = 0;
        for (at, line) in line_starts(&text) {
            let Some(rest) = line.strip_prefix("HTTP/1.1 ") else {
                continue;
            };
            statuses += 1;
            let status: u16 = rest
                .get(..3)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("an operation's status line reads {line:?}"))?;
            if (200..300).contains(&status) {
                continue;
            }
            let (code, message) = error_after(&text[at..]);
            let index = message
                .split_once(':')
                .and_then(|(index, _)| index.trim().parse().ok());
            return Ok(BatchOutcome::Failed {
                status,
                code,
                message,
                index,
            });
        }
        ensure!(statuses > 0, "it holds no operation's answer");
        Ok(BatchOutcome::Applied)
    }
}

/// Each line of `text` with the offset it starts at.
fn line_starts(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut at = 0;
    text.split('\n').map(move |line| {
        let start = at;
        at += line.len() + 1;
        (start, line.trim_end_matches('\r'))
    })
}

/// The error code and message of the JSON error that follows a failed operation's status.
fn error_after(text: &str) -> (String, String) {
    let Some(start) = text.find('{') else {
        return (String::new(), String::new());
    };
    let end = text[start..]
        .find("\r\n--")
        .or_else(|| text[start..].find("\n--"))
        .map_or(text.len(), |e| start + e);
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text[start..end].trim()) else {
        return (String::new(), String::new());
    };
    let error = &value["odata.error"];
    let code = error["code"].as_str().unwrap_or_default().to_owned();
    let message = error["message"]["value"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (code, message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sources::azure_table::entity::Property;

    fn entity(partition: &str, row: usize, bytes: usize) -> Entity {
        let mut properties = BTreeMap::new();
        if bytes > 0 {
            properties.insert("Blob".to_owned(), Property::Binary("A".repeat(bytes)));
        }
        Entity {
            partition_key: partition.to_owned(),
            row_key: format!("{row:05}"),
            timestamp: None,
            properties,
        }
    }

    #[test]
    fn a_batch_refuses_an_entity_of_another_partition() {
        let mut batch = Batch::new(WriteMode::Insert, "http://h/a/T", "p1");
        assert!(batch.push(&entity("p1", 1, 0)).unwrap());
        let error = batch.push(&entity("p2", 2, 0)).unwrap_err().to_string();
        assert_eq!(
            error,
            "a batch of partition \"p1\" was given an entity of partition \"p2\": a transaction never spans two partitions"
        );
        assert_eq!(batch.len(), 1);
        // And one that came in another way is refused before it is sent.
        batch.operations.push(Operation {
            partition_key: "p2".into(),
            row_key: "r".into(),
            part: Vec::new(),
        });
        let error = batch.body("http://h/a", "T").unwrap_err().to_string();
        assert!(
            error.contains("holds an entity of partition \"p2\""),
            "{error}"
        );
    }

    #[test]
    fn batches_hold_one_partition_and_keep_the_limits() {
        let mut batcher = Batcher::new(WriteMode::Replace, "http://h/a", "T");
        let mut batches = Vec::new();
        let mut given = 0;
        // Partitions interleaved and revisited; entities small and near 1 MiB.
        for round in 0..3 {
            for (p, count) in [("a", 250), ("b", 7), ("a", 1), ("c", 0), ("d", 120)] {
                for i in 0..count {
                    let size = if p == "d" && i % 10 == 0 {
                        1_000_000
                    } else {
                        10
                    };
                    batches.extend(batcher.add(&entity(p, round * 1000 + i, size)).unwrap());
                    given += 1;
                }
            }
        }
        batches.extend(batcher.finish());
        let mut sent = 0;
        for batch in &batches {
            assert!(batch.len() <= MAX_OPERATIONS);
            let (content_type, body) = batch.body("http://h/a", "T").unwrap();
            assert!(body.len() <= MAX_BYTES, "{} bytes", body.len());
            assert!(content_type.starts_with("multipart/mixed; boundary=batch_"));
            let text = String::from_utf8_lossy(&body);
            let wanted = format!("(PartitionKey=%27{}%27,", batch.partition_key());
            let urls: Vec<&str> = text.lines().filter(|l| l.starts_with("PUT ")).collect();
            assert_eq!(urls.len(), batch.len());
            for url in urls {
                assert!(url.contains(&wanted), "{url}");
            }
            sent += batch.len();
        }
        assert_eq!(sent, given);
        // 250 entities of "a" make three batches, and the big ones of "d" at most four a batch.
        assert_eq!(
            batches.iter().filter(|b| b.partition_key() == "a").count(),
            3 * 4
        );
    }

    #[test]
    fn answers_say_which_operation_failed() {
        let applied = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n--changesetresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n--changesetresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n--changesetresponse_1--\r\n--batchresponse_1--\r\n";
        assert_eq!(
            BatchOutcome::parse(applied.as_bytes()).unwrap(),
            BatchOutcome::Applied
        );
        let failed = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n--changesetresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n\r\n{\"odata.error\":{\"code\":\"EntityAlreadyExists\",\"message\":{\"lang\":\"en-US\",\"value\":\"3:The specified entity already exists.\\nRequestId:x\"}}}\r\n--changesetresponse_1--\r\n--batchresponse_1--\r\n";
        assert_eq!(
            BatchOutcome::parse(failed.as_bytes()).unwrap(),
            BatchOutcome::Failed {
                status: 409,
                code: "EntityAlreadyExists".into(),
                message: "3:The specified entity already exists.".into(),
                index: Some(3),
            }
        );
        assert!(BatchOutcome::parse(b"garbage").is_err());
    }
}
