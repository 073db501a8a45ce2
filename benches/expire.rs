//! How long `tidemark expire` takes on a local directory: 10,000 archived segments of 16 MiB
//! (stand-ins of a few bytes, each with its index entry, every complete WAL directory packed)
//! and 20 backups spread over them, each with chunks of its own and chunks shared with the
//! next; the policy keeps the newest 2. Each run starts from a fresh copy of that stanza (`cp
//! -a`, not timed) and times the whole `tidemark expire` process: deciding, checking that what
//! stays is recoverable, deleting 18 backups, about 9,000 segments with their index entries
//! and packs, and sweeping their chunks. The issue asks for under 5 s.
//! Run: `cargo build --release --bin tidemark && cargo bench --bench expire`.

#[path = "common/synthetic_archive.rs"]
mod synthetic_archive;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tidemark::repo::catalog::{BackupEntry, ChunkRef, EntryKind};
use tidemark::repo::test_repository;
use tidemark::storage::LocalDirectory;

const SEGMENTS: u64 = 10_000;
const BACKUPS: u64 = 20;
/// Chunks each backup adds; it also refers to the chunks of the backup before it.
const CHUNKS_PER_BACKUP: u64 = 50;
const RUNS: usize = 5;

fn build(root: &Path) -> anyhow::Result<()> {
    synthetic_archive::write_segments(root, SEGMENTS)?;
    let packs = synthetic_archive::pack_all(root, SEGMENTS)?;
    let repo = test_repository(Box::new(LocalDirectory::new(root)));
    let stanza = repo.open_stanza("main")?;
    for n in 0..BACKUPS {
        let first = n * (SEGMENTS / BACKUPS);
        let mut record = synthetic_archive::backup_at(&stanza, &format!("2026112{n:02}F"), first)?;
        record.entries = (n.saturating_sub(1)..=n)
            .flat_map(|owner| (0..CHUNKS_PER_BACKUP).map(move |c| (owner, c)))
            .map(|(owner, c)| chunk_entry(&stanza, owner, c))
            .collect::<anyhow::Result<_>>()?;
        stanza.put_backup_record(&record)?;
    }
    println!("built {SEGMENTS} segments ({packs} packs) and {BACKUPS} backups");
    Ok(())
}

/// A one-chunk file whose chunk (stored if new) is the `c`th of backup `owner`.
fn chunk_entry(
    stanza: &tidemark::repo::Stanza<'_>,
    owner: u64,
    c: u64,
) -> anyhow::Result<BackupEntry> {
    let content = format!("chunk {c} of backup {owner}").repeat(100);
    let name = stanza.blobs().store(content.as_bytes())?.name;
    Ok(BackupEntry {
        path: format!("base/1/{owner}_{c}"),
        kind: EntryKind::File,
        mode: 0o600,
        mtime: 0,
        size: content.len() as u64,
        crc32c: Some(crc32c::crc32c(content.as_bytes())),
        chunks: vec![ChunkRef {
            name,
            size: content.len() as u64,
        }],
        link: None,
    })
}

fn files_under(dir: &Path) -> u64 {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => files_under(&e.path()),
                _ => 1,
            })
            .sum()
    })
}

fn main() -> anyhow::Result<()> {
    let tidemark = synthetic_archive::release_tidemark()?;
    let dir = tempfile::tempdir()?;
    let template = dir.path().join("template");
    build(&template)?;
    let root = dir.path().join("repo");
    let config = dir.path().join("tidemark.toml");
    fs::write(
        &config,
        format!(
            "[repo]\npath = \"{}\"\n\n[retention]\nfull = 2\n\n[stanza.main]\n",
            root.display()
        ),
    )?;
    let mut samples = Vec::new();
    for run in 0..RUNS {
        let _ = fs::remove_dir_all(&root);
        anyhow::ensure!(
            Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(&root)
                .status()?
                .success()
        );
        Command::new("sync").status()?;
        let before = files_under(&root);
        let started = Instant::now();
        let output = Command::new(&tidemark)
            .arg("--config")
            .arg(&config)
            .args(["expire", "--output", "json"])
            .output()?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            output.status.success(),
            "tidemark expire: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let after = files_under(&root);
        println!(
            "run {run}: {:.2} s, {before} objects before, {after} after",
            elapsed.as_secs_f64()
        );
        samples.push(elapsed);
    }
    samples.sort();
    let median: Duration = samples[samples.len() / 2];
    println!(
        "\n`tidemark expire` of {SEGMENTS} segments and {BACKUPS} backups (keeping 2), median of {RUNS}: {:.2} s",
        median.as_secs_f64()
    );
    Ok(())
}
