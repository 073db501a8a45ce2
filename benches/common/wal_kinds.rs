//! The two kinds of WAL the WAL benches measure: pgbench's, whose segments are mostly full-page
//! images that zstd shrinks to a tenth, and small rows', short INSERT and UPDATE records (about
//! 200,000 per segment) with no page images after the first checkpoint, which compress to about
//! a third. A figure taken on pgbench's WAL alone flatters every compressor.

use anyhow::ensure;
use testkit::ThrowawayCluster;

/// Which workload wrote the WAL a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalKind {
    Pgbench,
    SmallRows,
}

/// Both kinds, in the order the benches run them.
pub const WAL_KINDS: [WalKind; 2] = [WalKind::Pgbench, WalKind::SmallRows];

impl WalKind {
    /// The kinds `TIDEMARK_BENCH_WAL` names (`pgbench`, `small_rows`, or both, comma-separated);
    /// both when it is unset.
    pub fn chosen() -> anyhow::Result<Vec<WalKind>> {
        super::chosen_from_env(
            "TIDEMARK_BENCH_WAL",
            "kind of WAL",
            &WAL_KINDS,
            WalKind::key,
        )
    }

    /// Its name in `TIDEMARK_BENCH_WAL` and in result files.
    pub fn key(self) -> &'static str {
        match self {
            WalKind::Pgbench => "pgbench",
            WalKind::SmallRows => "small_rows",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            WalKind::Pgbench => "pgbench WAL",
            WalKind::SmallRows => "small-row WAL",
        }
    }
}

/// Rows inserted per statement of the small-row workload (about 100 MiB of WAL with the
/// update that follows it).
const SMALL_ROWS_BATCH: u64 = 500_000;

/// What the small-row workload leaves, compared between the original and a recovered copy.
pub const SMALL_ROWS_CONTENT: &str =
    "SELECT count(*) || '/' || sum(b) || '/' || sum(hashtext(a)) FROM small_rows";

/// Writes at least `bytes` of small-row WAL on `cluster` (running): a table `(g int primary
/// key, a text, b int)` made and checkpointed, then batches of `insert … select g, md5(g::text),
/// g % 7 from generate_series(…)`, each followed by an update of a third of its rows. A table
/// made after the checkpoint takes new pages, and every page is touched again only after it
/// was first written since that checkpoint: no full-page images, as long as no other
/// checkpoint comes (the caller's `max_wal_size` and `checkpoint_timeout` see to that).
/// Returns the rows inserted.
pub fn write_small_rows(cluster: &ThrowawayCluster, bytes: u64) -> anyhow::Result<u64> {
    cluster.execute_each(&[
        "CREATE TABLE small_rows (g int PRIMARY KEY, a text, b int)",
        "CHECKPOINT",
    ])?;
    let position = || cluster.query_value::<u64>("SELECT (pg_current_wal_lsn() - '0/0')::bigint");
    let images = || cluster.query_value::<u64>("SELECT wal_fpi FROM pg_stat_wal");
    let (start, images_before) = (position()?, images()?);
    let mut rows = 0;
    while position()? - start < bytes {
        let (first, last) = (rows + 1, rows + SMALL_ROWS_BATCH);
        cluster.query(&format!(
            "INSERT INTO small_rows SELECT g, md5(g::text), g % 7 FROM generate_series({first}, {last}) g"
        ))?;
        cluster.query(&format!(
            "UPDATE small_rows SET b = b + 1 WHERE g BETWEEN {first} AND {last} AND g % 3 = 0"
        ))?;
        rows = last;
    }
    let images = images()? - images_before;
    ensure!(
        images < 1_000,
        "the small-row workload wrote {images} full-page images: a checkpoint came during it"
    );
    Ok(rows)
}
