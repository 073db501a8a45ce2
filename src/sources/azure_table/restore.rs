//! Restoring a table of a snapshot, or part of it, into a table of the account: the entities
//! wanted (one table; of it one partition, one entity, or a filter's) are read from the
//! snapshot's stream, counted per partition — all `--dry-run` does, with the conflicts an
//! insert would meet — then written in entity group transactions of one partition each,
//! `concurrency` at once, into the same table or `--as` another (created when missing).
//!
//! Modes: `insert` writes only when no wanted entity exists in the target: the target's keys
//! are read first and every conflict is reported, nothing written (an entity written by
//! someone else between that check and the write fails its transaction, which is reported
//! and stops the restore). `merge` upserts, keeping properties the snapshot's entity lacks;
//! `replace` upserts, making each entity exactly the snapshot's. Entities of the target that
//! the snapshot lacks are never touched.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow, bail};

use super::batch::{Batch, BatchOutcome, Batcher, WriteMode};
use super::client::{NoSuchTable, TableClient};
use super::entity::Entity;
use super::export::{AzureTableSnapshotMeta, TableExport};
use super::filter::Filter;
use super::url_text::odata_string;
use crate::config::is_table_name;
use crate::repo::Repository;
use crate::repo::source_catalog::SnapshotRecord;
use crate::sources::reader::StreamReader;

/// What `source restore --table` was asked.
#[derive(Clone, Debug)]
pub struct TableTarget {
    /// The snapshot's table.
    pub table: String,
    /// The account's table written into; `None`: the same name.
    pub as_table: Option<String>,
    pub partition: Option<String>,
    /// Only with `partition`.
    pub row: Option<String>,
    /// An OData filter over the snapshot's entities (see `filter`).
    pub filter: Option<String>,
    pub mode: WriteMode,
    pub dry_run: bool,
}

/// Which of a table's entities are wanted.
struct Selection {
    partition: Option<String>,
    row: Option<String>,
    filter: Option<Filter>,
}

impl Selection {
    fn wants(&self, entity: &Entity) -> bool {
        self.partition
            .as_ref()
            .is_none_or(|p| *p == entity.partition_key)
            && self.row.as_ref().is_none_or(|r| *r == entity.row_key)
            && self.filter.as_ref().is_none_or(|f| f.matches(entity))
    }

    /// The service's filter for the target's entities that could conflict.
    fn target_filter(&self) -> Option<String> {
        let partition = self.partition.as_deref()?;
        let mut filter = format!("PartitionKey eq {}", odata_string(partition));
        if let Some(row) = &self.row {
            let _ = write!(filter, " and RowKey eq {}", odata_string(row));
        }
        Some(filter)
    }
}

/// The wanted entities, counted: per partition, and (for an insert) their keys.
#[derive(Default)]
struct Counted {
    partitions: BTreeMap<String, u64>,
    keys: HashSet<(String, String)>,
    total: u64,
}

/// Restores part of `snapshot`'s table into `client`'s account; returns what to print.
pub fn restore_table(
    client: &TableClient,
    repo: &Arc<Repository>,
    snapshot: &SnapshotRecord,
    meta: &AzureTableSnapshotMeta,
    target: &TableTarget,
    concurrency: usize,
) -> anyhow::Result<String> {
    let export = meta.table(&target.table).with_context(|| {
        let names: Vec<&str> = meta.tables.iter().map(|t| t.name.as_str()).collect();
        format!(
            "snapshot {} of source '{}' has no table {} (it has: {}): name one of them with --table",
            snapshot.id,
            snapshot.source,
            target.table,
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        )
    })?;
    let into = target
        .as_table
        .clone()
        .unwrap_or_else(|| target.table.clone());
    if !is_table_name(&into) {
        bail!("--as {into:?} is no table's name: a letter, then 2 to 62 letters and digits");
    }
    if target.row.is_some() && target.partition.is_none() {
        bail!("--row names an entity only within a partition: give --partition too");
    }
    let selection = Selection {
        partition: target.partition.clone(),
        row: target.row.clone(),
        filter: target.filter.as_deref().map(Filter::parse).transpose()?,
    };
    let counted = count(repo, snapshot, export, &selection, target.mode)?;
    refuse_when_missing(snapshot, target, &counted)?;
    let conflicts = if target.mode == WriteMode::Insert {
        conflicts(client, &into, &selection, &counted.keys)?
    } else {
        Vec::new()
    };
    let what = format!(
        "of table {} of snapshot {} of source '{}' into table {into} of {} (mode {})",
        target.table,
        snapshot.id,
        snapshot.source,
        client.location(),
        target.mode.name()
    );
    if target.dry_run {
        return Ok(dry_run_report(&what, &counted, &conflicts));
    }
    if !conflicts.is_empty() {
        let mut lines = String::new();
        for (partition, row) in &conflicts {
            let _ = writeln!(
                lines,
                "conflict: PartitionKey {partition:?} RowKey {row:?} exists in table {into}"
            );
        }
        crate::program::print_stdout(&lines)?;
        bail!(
            "{} of the {} entities to insert exist in table {into} already (listed above), so nothing was written: restore them with --mode merge or --mode replace, or into another table with --as",
            conflicts.len(),
            counted.total
        );
    }
    if counted.total == 0 {
        return Ok(format!("nothing to restore: no entity {what} is wanted"));
    }
    client.block_on(client.create_table(&into))?;
    let written = write(
        client,
        repo,
        snapshot,
        export,
        &selection,
        target,
        &into,
        concurrency,
    )?;
    Ok(format!(
        "restored {written} entities in {} partitions {what}",
        counted.partitions.len()
    ))
}

/// A partition or entity named but not in the snapshot is an error, not a restore of nothing.
fn refuse_when_missing(
    snapshot: &SnapshotRecord,
    target: &TableTarget,
    counted: &Counted,
) -> anyhow::Result<()> {
    if counted.total > 0 || target.filter.is_some() {
        return Ok(());
    }
    match (&target.partition, &target.row) {
        (Some(partition), Some(row)) => bail!(
            "table {} of snapshot {} has no entity with PartitionKey {partition:?} and RowKey {row:?}",
            target.table,
            snapshot.id
        ),
        (Some(partition), None) => bail!(
            "table {} of snapshot {} has no partition {partition:?}",
            target.table,
            snapshot.id
        ),
        _ => Ok(()),
    }
}

/// Reads the table's stream, handing each wanted entity to `each`.
fn for_each_wanted(
    repo: &Arc<Repository>,
    snapshot: &SnapshotRecord,
    export: &TableExport,
    selection: &Selection,
    mut each: impl FnMut(Entity) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let stream = snapshot
        .streams
        .iter()
        .find(|s| s.name == export.stream)
        .with_context(|| {
            format!(
                "snapshot {} records table {} but holds no stream {}",
                snapshot.id, export.name, export.stream
            )
        })?;
    let reader = std::io::BufReader::with_capacity(
        1 << 20,
        StreamReader::open(Arc::clone(repo), &snapshot.source, stream),
    );
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        let entity: Entity = serde_json::from_str(&line).with_context(|| {
            format!(
                "read line {} of {} of snapshot {}",
                number + 1,
                stream.name,
                snapshot.id
            )
        })?;
        if selection.wants(&entity) && !each(entity)? {
            break;
        }
    }
    Ok(())
}

fn count(
    repo: &Arc<Repository>,
    snapshot: &SnapshotRecord,
    export: &TableExport,
    selection: &Selection,
    mode: WriteMode,
) -> anyhow::Result<Counted> {
    let mut counted = Counted::default();
    for_each_wanted(repo, snapshot, export, selection, |entity| {
        counted.total += 1;
        *counted
            .partitions
            .entry(entity.partition_key.clone())
            .or_default() += 1;
        if mode == WriteMode::Insert {
            counted.keys.insert((entity.partition_key, entity.row_key));
        }
        Ok(true)
    })?;
    Ok(counted)
}

/// The wanted keys table `into` holds already, sorted; none when it does not exist.
fn conflicts(
    client: &TableClient,
    into: &str,
    selection: &Selection,
    wanted: &HashSet<(String, String)>,
) -> anyhow::Result<Vec<(String, String)>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    let filter = selection.target_filter();
    let scanned = client.block_on(client.query_entities(
        into,
        filter.as_deref(),
        Some("PartitionKey,RowKey"),
        |page| {
            for object in page {
                let key = |name: &str| {
                    object
                        .get(name)
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("an entity of table {into} has no {name}"))
                };
                let key = (key("PartitionKey")?, key("RowKey")?);
                if wanted.contains(&key) {
                    found.push(key);
                }
            }
            Ok(())
        },
    ));
    match scanned {
        Ok(()) => {}
        Err(e) if e.downcast_ref::<NoSuchTable>().is_some() => return Ok(Vec::new()),
        Err(e) => {
            return Err(e.context(format!("look for the entities table {into} holds already")));
        }
    }
    found.sort();
    Ok(found)
}

fn dry_run_report(what: &str, counted: &Counted, conflicts: &[(String, String)]) -> String {
    let mut report = format!(
        "would restore {} entities in {} partitions {what}\n",
        counted.total,
        counted.partitions.len()
    );
    for (partition, entities) in &counted.partitions {
        let _ = writeln!(report, "partition {partition:?}: {entities} entities");
    }
    for (partition, row) in conflicts {
        let _ = writeln!(
            report,
            "conflict: PartitionKey {partition:?} RowKey {row:?} exists already"
        );
    }
    if !conflicts.is_empty() {
        let _ = writeln!(
            report,
            "{} conflicts: an insert would write nothing; use --mode merge or --mode replace, or --as another table",
            conflicts.len()
        );
    }
    report.push_str("dry run: nothing was written");
    report
}

/// Writes the wanted entities: this thread reads and cuts them into batches, `concurrency`
/// threads send them; the first failure stops both. Returns the entities written.
#[allow(clippy::too_many_arguments)]
fn write(
    client: &TableClient,
    repo: &Arc<Repository>,
    snapshot: &SnapshotRecord,
    export: &TableExport,
    selection: &Selection,
    target: &TableTarget,
    into: &str,
    concurrency: usize,
) -> anyhow::Result<u64> {
    let written = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let (batches, queue) = sync_channel::<Batch>(concurrency * 2);
    let queue = Mutex::new(queue);
    // The lock is held only while waiting for a batch (a guard in `while let`'s condition
    // would be held through the loop's body, sending one batch at a time).
    let next_batch = || queue.lock().expect("no sender panics holding it").recv();
    let read = std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                while let Ok(batch) = next_batch() {
                    if failed.load(Ordering::Relaxed) {
                        continue;
                    }
                    match send(client, into, &batch) {
                        Ok(()) => {
                            written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            failure
                                .lock()
                                .expect("no sender panics holding it")
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
        let mut batcher = Batcher::new(target.mode, client.url(), into);
        let read = for_each_wanted(repo, snapshot, export, selection, |entity| {
            if let Some(batch) = batcher.add(&entity)? {
                batches
                    .send(batch)
                    .map_err(|_| anyhow!("every sender stopped"))?;
            }
            Ok(!failed.load(Ordering::Relaxed))
        })
        .and_then(|()| {
            if let Some(batch) = batcher.finish() {
                batches
                    .send(batch)
                    .map_err(|_| anyhow!("every sender stopped"))?;
            }
            Ok(())
        });
        drop(batches);
        read
    });
    let written = written.into_inner();
    if let Some(error) = failure.into_inner().expect("no sender panicked") {
        return Err(error.context(format!(
            "restore stopped after {written} entities were written into table {into} (each transaction whole or not at all)"
        )));
    }
    read?;
    Ok(written)
}

/// Sends one batch; a transaction the service refused is an error naming the entity.
fn send(client: &TableClient, into: &str, batch: &Batch) -> anyhow::Result<()> {
    match client.block_on(client.submit_batch(into, batch))? {
        BatchOutcome::Applied => Ok(()),
        BatchOutcome::Failed {
            status,
            code,
            message,
            index,
        } => {
            let entity = index
                .and_then(|i| batch.row_key(i))
                .map(|row| format!(" (RowKey {row:?})"))
                .unwrap_or_default();
            bail!(
                "a transaction of {} entities of partition {:?} of table {into} was refused, none of it written: {status} {code}{entity}: {message}",
                batch.len(),
                batch.partition_key()
            )
        }
    }
}
