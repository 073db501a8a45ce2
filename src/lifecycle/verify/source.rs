//! `tidemark verify --source NAME`: every chunk a snapshot of the source names read once and
//! checked (its object checksums, that its content has its name, its length), every record's
//! sizes added up, and the chunks no snapshot refers to counted (the next `expire --source`
//! sweeps them).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::findings::Problem;
use super::pool::run_all;
use crate::repo::catalog::ChunkRef;
use crate::repo::layout;
use crate::repo::source_catalog::{SnapshotRecord, SourceArea};
use crate::units;

/// What one `verify --source` found.
#[derive(Debug, Serialize)]
pub struct SourceVerifyReport {
    pub source: String,
    pub repository: String,
    pub snapshots: u64,
    /// Chunks read and checked, and their content's bytes.
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub problems: Vec<Problem>,
    /// Chunks stored that no snapshot refers to, and their stored bytes.
    pub orphan_chunks: u64,
    pub orphan_bytes: u64,
}

impl SourceVerifyReport {
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A chunk some snapshot names: its length, and the first snapshot naming it.
struct Needed {
    size: u64,
    snapshot: String,
}

/// Verifies every snapshot of `area`, reading with `readers` threads.
pub fn verify_source(area: &SourceArea<'_>, readers: usize) -> anyhow::Result<SourceVerifyReport> {
    let snapshots = area.list_snapshots()?;
    let mut problems: Vec<Problem> = snapshots
        .iter()
        .filter_map(|s| record_problem(area, s))
        .collect();
    let mut needed: BTreeMap<String, Needed> = BTreeMap::new();
    for snapshot in &snapshots {
        // A bucket snapshot's objects are listed in one of its streams: a list that cannot be
        // read is a problem of that snapshot, and its objects' chunks go unchecked.
        let chunks = match crate::sources::snapshot_chunks(area.repository(), snapshot) {
            Ok(chunks) => chunks,
            Err(e) => {
                problems.push(Problem {
                    object: layout::snapshot_record(area.name(), &snapshot.id).to_string(),
                    problem: format!("lists objects that cannot be read: {e:#}"),
                    action: "take a new snapshot and expire this one".into(),
                });
                snapshot
                    .streams
                    .iter()
                    .flat_map(|s| s.chunks.clone())
                    .collect()
            }
        };
        for chunk in chunks {
            needed.entry(chunk.name).or_insert(Needed {
                size: chunk.size,
                snapshot: snapshot.id.clone(),
            });
        }
    }
    let blobs = area.blobs();
    let stored = blobs.list()?;
    let jobs: Vec<(&String, &Needed)> = needed.iter().collect();
    let results = run_all(&jobs, readers, |(name, need)| {
        let key = layout::blob(&layout::source_owner(area.name()), name).to_string();
        if !stored.contains_key(*name) {
            return Some(Problem {
                object: key,
                problem: format!("is missing; snapshot {} needs it", need.snapshot),
                action: "restore the object from a copy of the repository, or expire the snapshots that need it".into(),
            });
        }
        let mut content = Vec::new();
        let chunk = ChunkRef {
            name: (*name).clone(),
            size: need.size,
        };
        let checked = blobs.get_chunk(&chunk, &mut content);
        checked.err().map(|e| Problem {
            object: key,
            problem: format!("{e:#}"),
            action: format!("snapshot {} cannot be restored: take a new snapshot, and restore the object from a copy of the repository", need.snapshot),
        })
    });
    problems.extend(results.into_iter().flatten());
    let orphans: Vec<u64> = stored
        .iter()
        .filter(|(name, _)| !needed.contains_key(*name))
        .map(|(_, blob)| blob.size)
        .collect();
    Ok(SourceVerifyReport {
        source: area.name().to_owned(),
        repository: area.repository().storage().location(),
        snapshots: snapshots.len() as u64,
        chunks: needed.len() as u64,
        chunk_bytes: needed.values().map(|n| n.size).sum(),
        problems,
        orphan_chunks: orphans.len() as u64,
        orphan_bytes: orphans.iter().sum(),
    })
}

/// A record whose streams do not add up to what it says it holds.
fn record_problem(area: &SourceArea<'_>, snapshot: &SnapshotRecord) -> Option<Problem> {
    let chunked: u64 = snapshot
        .streams
        .iter()
        .flat_map(|s| &s.chunks)
        .map(|c| c.size)
        .sum();
    let streams: u64 = snapshot.streams.iter().map(|s| s.size).sum();
    (chunked != streams || streams != snapshot.sizes.raw).then(|| Problem {
        object: layout::snapshot_record(area.name(), &snapshot.id).to_string(),
        problem: format!(
            "says it holds {} bytes, in streams of {streams} bytes made of chunks of {chunked}",
            snapshot.sizes.raw
        ),
        action: "the record was tampered with: take a new snapshot and expire this one".into(),
    })
}

/// The report as `tidemark verify --source` prints it.
pub fn render_source_text(report: &SourceVerifyReport) -> String {
    let mut out = String::new();
    for problem in &report.problems {
        let _ = writeln!(
            out,
            "problem: {} {}: {}",
            problem.object, problem.problem, problem.action
        );
    }
    if report.orphan_chunks > 0 {
        let _ = writeln!(
            out,
            "finding: {} chunks ({}) no snapshot refers to: 'tidemark expire --source {}' removes them",
            report.orphan_chunks,
            units::bytes(report.orphan_bytes),
            report.source
        );
    }
    let _ = writeln!(
        out,
        "source {} in {}: {} snapshots, {} chunks ({}) read and checked, {} problems",
        report.source,
        report.repository,
        report.snapshots,
        report.chunks,
        units::bytes(report.chunk_bytes),
        report.problems.len()
    );
    out
}
