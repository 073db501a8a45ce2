//! `tidemark demo`: the whole cycle on a throwaway cluster — archive through `tidemark-archive`
//! while a workload runs, take a base backup with `tidemark backup`, restore it with `tidemark
//! restore` to an instant in the middle (recovery fetching WAL through `tidemark-restore`), and
//! show that the restored data is exactly what was committed then.
//! The pieces are shared with the end-to-end tests.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::lab::{Lab, TidemarkBinaries};
use crate::steps::{
    PrimaryOptions, archiving_primary, check_rows, restore_to, switch_and_wait_for_archive,
};
use crate::workload;

fn step(number: usize, text: &str) {
    println!("[{number}/7] {text}");
}

/// Runs the demo; fails if the restored data differs from what was committed at the instant.
pub fn run_demo() -> anyhow::Result<()> {
    let started = Instant::now();
    let lab = Lab::new("tm-demo-", &TidemarkBinaries::current_exe()?)?;
    step(
        1,
        &format!(
            "creating a throwaway PostgreSQL cluster in {}",
            lab.tmp.path().display()
        ),
    );
    let options = PrimaryOptions::default()
        .segment_mb(16)
        .commit_timestamps()
        .repo_extra("compress = \"zstd\"");
    let mut primary = archiving_primary(&lab, &options)?;
    println!("      archive_command = '{}'", lab.archive_command());

    step(2, "the stanza is created (tidemark stanza-create)");

    step(
        3,
        "loading pgbench data and taking a base backup (tidemark backup)",
    );
    primary.run_pgbench(&["-i", "-q", "-s", "5"])?;
    workload::create_table(&primary)?;
    print!("      {}", lab.tidemark(&["backup"])?);

    step(
        4,
        "running pgbench and 60 recorded single-row commits at the same time",
    );
    let mut noise = primary
        .pgbench_command(&["-T", "6", "-c", "2", "-n"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("start pgbench")?;
    workload::insert_rows(&primary, 60, Duration::from_millis(80), "demo")?;
    let noise_status = noise.wait().context("wait for pgbench")?;
    if !noise_status.success() {
        bail!(
            "pgbench failed ({noise_status}); server log: {}",
            primary.log_tail(10)
        );
    }
    let rows = workload::committed_rows(&primary)?;
    let instant = workload::instant_between(&rows, rows.len() / 2)?;
    let target_time = workload::format_instant(instant);
    let expected = workload::ids_committed_by(&rows, instant);
    let last = switch_and_wait_for_archive(&primary)?;
    println!(
        "      {} rows committed; instant chosen: {target_time} ({} rows committed by then); archived up to {last}",
        rows.len(),
        expected.len()
    );
    for line in lab.tidemark(&["info"])?.lines() {
        println!("      {line}");
    }
    primary.stop()?;

    step(
        5,
        &format!(
            "restoring to {target_time} (tidemark restore, then recovery through tidemark-restore)"
        ),
    );
    let restored = restore_to(&lab, "restored", &["--target-time", &target_time], &[])?;
    for line in restored.report.lines() {
        println!("      {line}");
    }

    step(
        6,
        "comparing the restored rows with the rows committed at that instant",
    );
    check_rows(&restored.cluster, &expected)
        .with_context(|| format!("compare the cluster restored to {target_time}"))?;
    let got = &expected;
    println!(
        "      identical: the restored cluster holds exactly the {} rows committed by {target_time} (ids {}..={})",
        got.len(),
        got.first().copied().unwrap_or(0),
        got.last().copied().unwrap_or(0)
    );
    drop(restored);
    drop(primary);
    let cleanup = if std::env::var_os("TIDEMARK_KEEP_TMP").is_some() {
        format!(
            "kept in {} (TIDEMARK_KEEP_TMP is set)",
            lab.tmp.path().display()
        )
    } else {
        "the throwaway cluster and repository are removed".to_owned()
    };
    step(
        7,
        &format!(
            "done in {:.1} s; {cleanup}",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}
