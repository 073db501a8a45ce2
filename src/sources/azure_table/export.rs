//! Taking a snapshot of an account's tables: each table scanned page by page (1,000 entities a
//! request, following continuations) into its own stream of JSON lines, one entity a line with
//! every property's type (`entity`), `concurrency` tables at once. What the record keeps of
//! each table: its stream, entity and partition counts, and when its scan began and ended.
//!
//! A scan is not a point-in-time image: Table storage has no snapshot of a table, so an entity
//! written while its table is scanned is in the snapshot if the scan had not passed its key
//! yet, and one deleted, if it had. Each entity is whole as it was at one instant; the table is
//! exactly as it was only if nothing wrote to it between the recorded start and end.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::client::TableClient;
use super::entity::Entity;
use crate::sources::sink::SnapshotSink;
use crate::units;

/// What the record of an Azure Table snapshot says of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AzureTableSnapshotMeta {
    pub account: String,
    pub endpoint: String,
    /// By name.
    pub tables: Vec<TableExport>,
}

/// One table of a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableExport {
    pub name: String,
    /// The snapshot's stream that holds its entities.
    pub stream: String,
    pub entities: u64,
    pub partitions: u64,
    /// Bytes of its stream.
    pub bytes: u64,
    /// When its scan sent its first request and had its last answer (RFC 3339, UTC).
    pub scan_started: String,
    pub scan_finished: String,
}

impl AzureTableSnapshotMeta {
    /// In a few words: tables, entities, partitions and size.
    pub fn describe(&self) -> String {
        let entities: u64 = self.tables.iter().map(|t| t.entities).sum();
        let partitions: u64 = self.tables.iter().map(|t| t.partitions).sum();
        let bytes: u64 = self.tables.iter().map(|t| t.bytes).sum();
        format!(
            "{} tables of account {}, {entities} entities in {partitions} partitions ({})",
            self.tables.len(),
            self.account,
            units::bytes(bytes)
        )
    }

    /// Table `name`'s part of the snapshot.
    pub fn table(&self, name: &str) -> Option<&TableExport> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// The stream a table's entities are stored in.
pub fn stream_name(table: &str) -> String {
    format!("tables/{table}.jsonl")
}

/// Exports `tables` into `sink`, `concurrency` at once; the first failure stops the rest.
pub fn export_tables(
    client: &TableClient,
    sink: &SnapshotSink<'_>,
    tables: &[String],
    concurrency: usize,
) -> anyhow::Result<Vec<TableExport>> {
    let queue = Mutex::new(tables.iter());
    let failed = AtomicBool::new(false);
    let results: Vec<anyhow::Result<Vec<TableExport>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency.min(tables.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let Some(table) = queue.lock().expect("no worker panics holding it").next()
                        else {
                            break;
                        };
                        match export_table(client, sink, table, &failed) {
                            Ok(export) => done.push(export),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("an export worker does not panic"))
            .collect()
    });
    let mut exports = Vec::new();
    for result in results {
        exports.extend(result?);
    }
    exports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(exports)
}

/// Scans one table into its stream; stops early (with an error) when another table failed.
fn export_table(
    client: &TableClient,
    sink: &SnapshotSink<'_>,
    table: &str,
    failed: &AtomicBool,
) -> anyhow::Result<TableExport> {
    let stream = stream_name(table);
    let mut writer = BufWriter::with_capacity(1 << 20, sink.stream(&stream));
    let mut entities = 0u64;
    let mut partitions: HashSet<String> = HashSet::new();
    let scan_started = now();
    client
        .block_on(client.query_entities(table, None, None, |page| {
            if failed.load(Ordering::Relaxed) {
                bail!("stopped: another table's export failed");
            }
            for object in page {
                let entity = Entity::from_service(&object)?;
                if !partitions.contains(&entity.partition_key) {
                    partitions.insert(entity.partition_key.clone());
                }
                serde_json::to_writer(&mut writer, &entity)?;
                writer.write_all(b"\n")?;
                entities += 1;
            }
            Ok(())
        }))
        .with_context(|| format!("export table {table}"))?;
    let scan_finished = now();
    let bytes = writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .finish()
        .with_context(|| format!("store table {table}"))?;
    tracing::info!(
        "exported table {table}: {entities} entities in {} partitions",
        partitions.len()
    );
    Ok(TableExport {
        name: table.to_owned(),
        stream,
        entities,
        partitions: partitions.len() as u64,
        bytes,
        scan_started,
        scan_finished,
    })
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
