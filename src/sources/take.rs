//! Taking one snapshot into the repository: the source's backup lock (so no expire sweeps the
//! chunks it reuses), the source's bytes through the sink, and the record last (with the
//! source's identity, on its first), only when every check passed and every chunk is durable.

use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{SecondsFormat, Utc};

use super::Source;
use super::sink::take_snapshot;
use crate::repo::source_catalog::{SOURCE_FORMAT, SnapshotRecord, source_locks, source_pool};
use crate::repo::{Repository, layout};

/// Takes a snapshot of `source`, configured as `name` of kind `kind`, into `repo`; returns
/// its record once stored.
pub fn snapshot_into(
    repo: &Repository,
    name: &str,
    kind: &str,
    source: &dyn Source,
) -> anyhow::Result<SnapshotRecord> {
    // Checks the name too.
    repo.check_source_kind(name, kind)?;
    if let Some(keys) = repo.codec().keys() {
        // The first object of a repository no stanza was created in creates its keyring.
        keys.open_or_create_keyring()?;
    }
    // Before anything is written: a source that cannot be reached as configured (a URL
    // without a host, a password file others can read) is refused with nothing changed.
    source.ready()?;
    let lock = source_locks(repo, name).lock_for_backup()?;
    let (started, id) = free_id(repo, name, source.id_letter())?;
    let clock = Instant::now();
    let area = repo.open_source(name)?;
    let previous = match &area {
        Some(area) => area.latest_snapshot()?,
        None => None,
    };
    // The chunks' directories are fsynced once each, after the last chunk and before the
    // record, not once per chunk.
    let pool = source_pool(repo, name, area.as_ref()).deferring_syncs();
    let (meta, streams, sizes) =
        take_snapshot(&pool, |sink| source.snapshot(sink, previous.as_ref()))
            .and_then(|taken| pool.sync_deferred().map(|()| taken))
            .with_context(|| format!("snapshot of source '{name}' failed; nothing was recorded"))?;
    let record = SnapshotRecord {
        format: SOURCE_FORMAT,
        source: name.to_owned(),
        kind: kind.to_owned(),
        id,
        start_time: started.to_rfc3339_opts(SecondsFormat::Secs, true),
        stop_time: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        duration_ms: clock.elapsed().as_millis() as u64,
        sizes,
        streams,
        meta,
    };
    // An expire that took the lock for stale may have swept chunks this snapshot reuses.
    if !lock.still_held()? {
        bail!(
            "the snapshot's lock {} was deleted while it ran (an expire on another host took it for stale, and may have removed chunks this snapshot uses), so the snapshot was not recorded: check that the hosts' clocks agree, then take it again",
            lock.key()
        );
    }
    // The source is recorded with its first complete snapshot: a refused one leaves no trace.
    repo.open_or_create_source(name, kind)?
        .put_snapshot_record(&record)?;
    Ok(record)
}

/// The start time and id of a new snapshot: `YYYYMMDD-HHMMSS` and the kind's letter. A
/// snapshot taken in the same second as the last waits for the next second, so ids stay
/// unique and in time order.
fn free_id(
    repo: &Repository,
    name: &str,
    letter: char,
) -> anyhow::Result<(chrono::DateTime<Utc>, String)> {
    loop {
        let now = Utc::now();
        let id = format!("{}{letter}", now.format("%Y%m%d-%H%M%S"));
        if repo
            .storage()
            .head(&layout::snapshot_record(name, &id))?
            .is_none()
        {
            return Ok((now, id));
        }
        let into_second = u64::from(now.timestamp_subsec_millis());
        std::thread::sleep(std::time::Duration::from_millis(
            1000 - into_second.min(999),
        ));
    }
}
