//! The sources part of `tidemark info`: each source with snapshots in the repository (and each
//! configured one without), its kind, how many snapshots, the oldest and newest, and the bytes
//! its snapshots added to the repository.

use std::fmt::Write;

use serde::Serialize;

use crate::repo::Repository;
use crate::repo::source_catalog::SnapshotRecord;
use crate::units;

/// One source, as `info` shows it.
#[derive(Debug, Serialize)]
pub struct SourceInfo {
    pub source: String,
    /// `redis`; `None` for a configured source with no snapshot yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether the configuration has a `[source.NAME]` section for it.
    pub configured: bool,
    pub snapshots: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<SnapshotSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<SnapshotSummary>,
    /// Stored bytes the listed snapshots added (their chunks, each counted once).
    pub stored_bytes: u64,
}

/// A snapshot, in brief.
#[derive(Debug, Serialize)]
pub struct SnapshotSummary {
    pub id: String,
    pub stop_time: String,
    /// Bytes the source sent.
    pub raw_bytes: u64,
    /// What it holds, in a few words (`sources::describe`).
    pub holds: String,
}

/// Every source in the repository and every one of `configured`, by name.
pub fn collect_sources(
    repo: &Repository,
    configured: &[String],
) -> anyhow::Result<Vec<SourceInfo>> {
    let mut names = repo.list_sources()?;
    names.extend(configured.iter().cloned());
    names.sort();
    names.dedup();
    let mut infos = Vec::with_capacity(names.len());
    for name in names {
        let (kind, snapshots) = match repo.open_source(&name)? {
            Some(area) => (Some(area.kind().to_owned()), area.list_snapshots()?),
            None => (None, Vec::new()),
        };
        infos.push(SourceInfo {
            configured: configured.contains(&name),
            source: name,
            kind,
            snapshots: snapshots.len() as u64,
            oldest: snapshots.first().map(summary),
            newest: snapshots.last().map(summary),
            stored_bytes: snapshots.iter().map(|s| s.sizes.new).sum(),
        });
    }
    Ok(infos)
}

fn summary(record: &SnapshotRecord) -> SnapshotSummary {
    SnapshotSummary {
        id: record.id.clone(),
        stop_time: record.stop_time.clone(),
        raw_bytes: record.sizes.raw,
        holds: crate::sources::describe(record),
    }
}

/// The sources as `tidemark info` prints them, after the stanza.
pub fn render_sources_text(sources: &[SourceInfo]) -> String {
    let mut out = String::from("sources:");
    if sources.is_empty() {
        out.push_str(" none\n");
        return out;
    }
    out.push('\n');
    for source in sources {
        let kind = source.kind.as_deref().unwrap_or("no snapshot yet");
        let unconfigured = if source.configured {
            ""
        } else {
            ", not in this configuration"
        };
        let _ = writeln!(
            out,
            "    {} ({kind}{unconfigured}): {} snapshots, {} stored",
            source.source,
            source.snapshots,
            units::bytes(source.stored_bytes)
        );
        for (which, snapshot) in [("oldest", &source.oldest), ("newest", &source.newest)] {
            if let Some(snapshot) = snapshot {
                let _ = writeln!(
                    out,
                    "        {which}: {} at {}, {}",
                    snapshot.id, snapshot.stop_time, snapshot.holds
                );
            }
        }
    }
    out
}
