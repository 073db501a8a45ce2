//! A workload whose committed state at any instant is known exactly: single-row transactions
//! into one table, each row's commit time read back with `pg_xact_commit_timestamp`
//! (`track_commit_timestamp = on`). A restore to an instant must give back exactly the rows
//! whose commit time is at or before it.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use crate::servers::postgres::ThrowawayCluster;

/// The table the workload writes.
pub const TABLE: &str = "tidemark_ledger";

/// One committed row: its id and commit time in microseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommittedRow {
    pub id: i64,
    pub commit_micros: i64,
}

/// Creates the table.
pub fn create_table(cluster: &ThrowawayCluster) -> anyhow::Result<()> {
    cluster.query(&format!(
        "CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, note text NOT NULL, written timestamptz NOT NULL DEFAULT clock_timestamp())"
    ))?;
    Ok(())
}

/// Inserts `count` rows, each in its own transaction, `pause` apart, tagged `tag`.
pub fn insert_rows(
    cluster: &ThrowawayCluster,
    count: usize,
    pause: Duration,
    tag: &str,
) -> anyhow::Result<()> {
    let sleep = format!("SELECT pg_sleep({})", pause.as_secs_f64());
    let inserts: Vec<String> = (0..count)
        .map(|i| format!("INSERT INTO {TABLE} (note) VALUES ('{tag} {i}')"))
        .collect();
    let mut statements: Vec<&str> = Vec::with_capacity(2 * count);
    for insert in &inserts {
        statements.push(insert);
        statements.push(&sleep);
    }
    // One psql session, each statement its own transaction, so commits spread evenly.
    cluster.execute_each(&statements)?;
    Ok(())
}

/// Every row with its commit time, in commit order.
pub fn committed_rows(cluster: &ThrowawayCluster) -> anyhow::Result<Vec<CommittedRow>> {
    let text = cluster.query(&format!(
        "SELECT id, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint FROM {TABLE} ORDER BY 2, 1"
    ))?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (id, micros) = line
                .split_once('|')
                .with_context(|| format!("unexpected row {line:?}"))?;
            Ok(CommittedRow {
                id: id.parse()?,
                commit_micros: micros.parse().with_context(|| {
                    format!("row {id} has no commit timestamp: is track_commit_timestamp on?")
                })?,
            })
        })
        .collect()
}

/// The ids of the rows present, in id order.
pub fn present_ids(cluster: &ThrowawayCluster) -> anyhow::Result<Vec<i64>> {
    let text = cluster.query(&format!("SELECT id FROM {TABLE} ORDER BY id"))?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| Ok(line.parse()?))
        .collect()
}

/// The instant halfway between the commits of rows `index` and `index + 1` (in commit order),
/// strictly between them, so no commit happens exactly at it.
pub fn instant_between(rows: &[CommittedRow], index: usize) -> anyhow::Result<i64> {
    let (before, after) = (rows[index].commit_micros, rows[index + 1].commit_micros);
    if after - before < 2 {
        bail!(
            "rows {} and {} committed less than 2 µs apart",
            rows[index].id,
            rows[index + 1].id
        );
    }
    Ok(before + (after - before) / 2)
}

/// The ids of the rows committed at or before `instant`.
pub fn ids_committed_by(rows: &[CommittedRow], instant: i64) -> Vec<i64> {
    let mut ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.commit_micros <= instant)
        .map(|r| r.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// `instant` as PostgreSQL reads a `recovery_target_time`: UTC with a numeric offset.
pub fn format_instant(instant: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(instant)
        .expect("commit times are within chrono's range")
        .format("%Y-%m-%d %H:%M:%S%.6f+00")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_fall_strictly_between_commits_and_select_rows_by_commit_time() {
        let rows = [
            CommittedRow {
                id: 1,
                commit_micros: 1_000,
            },
            CommittedRow {
                id: 3,
                commit_micros: 2_000,
            },
            CommittedRow {
                id: 2,
                commit_micros: 5_000,
            },
        ];
        let instant = instant_between(&rows, 1).unwrap();
        assert_eq!(instant, 3_500);
        assert_eq!(ids_committed_by(&rows, instant), [1, 3]);
        assert_eq!(
            format_instant(1_763_733_127_123_456),
            "2025-11-21 13:52:07.123456+00"
        );
    }
}
