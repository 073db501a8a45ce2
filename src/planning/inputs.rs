//! Gathers what the pure planner needs from a stanza: its backups, the index entry of every
//! archived segment and its timeline history files.

use anyhow::Context;

use crate::pg::history::TimelineHistory;
use crate::pg::{TimelineId, WalFileName};
use crate::planning::planner::{
    Archive, BackupPoint, Histories, IndexedSegment, RecoveryPlan, SegmentIndex,
};
use crate::planning::segment_events::ArchivedEvents;
use crate::planning::target::PlanRequest;
use crate::repo::Stanza;
use crate::repo::catalog::BackupRecord;
use crate::repo::object;

/// The planner's view of a stanza.
pub struct PlannerInputs {
    pub backups: Vec<BackupPoint>,
    pub segments: SegmentIndex,
    pub histories: Histories,
}

/// Reads the planner's inputs; `backups` are the stanza's, as `list_backups` gives them. A segment without an index entry is an error that says how to
/// write the missing entries: planning around it would be guessing.
pub fn load(stanza: &Stanza<'_>, backups: &[BackupRecord]) -> anyhow::Result<PlannerInputs> {
    let backups = backups
        .iter()
        .map(|b| BackupPoint {
            start: b.start_lsn,
            stop: b.stop_lsn,
            timeline: TimelineId(b.timeline),
            label: b.label.clone(),
        })
        .collect();
    let size = stanza.expected_cluster().segment_size;
    let mut segments = SegmentIndex::new();
    let mut histories = Histories::new();
    // Reading the packs is CPU work, listing the archive is system calls: side by side.
    let (packed, listed) = std::thread::scope(|scope| {
        let packing = scope.spawn(|| stanza.packed_wal_index());
        let listed = stanza.list_wal();
        (
            packing.join().expect("reading the packs does not panic"),
            listed,
        )
    });
    let mut packed = packed?;
    for (name, listed) in listed? {
        match name {
            WalFileName::Segment(segment) => {
                let entry = match packed.remove(&name.to_string()) {
                    Some(entry) => entry,
                    None => stanza.get_wal_index(name)?.with_context(|| {
                        format!("archived segment {name} has no WAL index entry: run 'tidemark index rebuild'")
                    })?,
                };
                segments.insert(
                    (segment.timeline, segment.segment_number(size)?),
                    IndexedSegment {
                        bytes: listed.size,
                        summary: entry.summary,
                    },
                );
            }
            WalFileName::History(timeline) => {
                let stored = stanza
                    .get_wal(name)?
                    .with_context(|| format!("{name} vanished"))?;
                let mut content = Vec::new();
                object::decode_into(&stored, &mut content).with_context(|| {
                    format!("archived object {} is damaged", stanza.wal_key(name))
                })?;
                histories.insert(
                    timeline,
                    TimelineHistory::parse(timeline, &content)
                        .with_context(|| format!("archived {name}"))?,
                );
            }
            WalFileName::Partial(_) | WalFileName::BackupHistory { .. } => {}
        }
    }
    Ok(PlannerInputs {
        backups,
        segments,
        histories,
    })
}

/// Plans `request` over what `stanza` holds.
pub fn plan_for(
    stanza: &Stanza<'_>,
    backups: &[BackupRecord],
    request: &PlanRequest,
) -> anyhow::Result<RecoveryPlan> {
    let inputs = load(stanza, backups)?;
    let events = ArchivedEvents { stanza };
    let archive = Archive {
        segment_size: stanza.expected_cluster().segment_size,
        backups: &inputs.backups,
        segments: &inputs.segments,
        histories: &inputs.histories,
        events: &events,
    };
    Ok(crate::planning::planner::plan(&archive, request)?)
}
