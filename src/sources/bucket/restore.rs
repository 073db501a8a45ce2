//! Restoring a bucket snapshot into a bucket: what would change is worked out first (objects to
//! add, to replace, already there as they were, and extras the snapshot lacks), printed and
//! left at that for `--dry-run`; otherwise the objects are written by `concurrency` threads at
//! once with their headers, metadata and tags, and extras deleted only with `--delete-extra`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use super::client::{BucketClient, Listed};
use super::manifest::ObjectEntry;
use crate::repo::blob_pool::BlobPool;
use crate::units;

/// Objects up to this size go up in one PUT; larger ones in parts of this size.
const PART_SIZE: usize = 16 << 20;

/// What `source restore --to-bucket` was asked.
#[derive(Clone, Debug)]
pub struct BucketTarget {
    pub bucket: String,
    /// Replaces the source's prefix in every key; `None` keeps the keys as they were.
    pub prefix: Option<String>,
    pub dry_run: bool,
    pub delete_extra: bool,
    /// Only this object.
    pub key: Option<String>,
}

/// What happens to one key of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Add,
    Replace,
    /// Listed with the snapshot's size and ETag: its headers decide, looked at when written.
    MaybeSame,
}

/// One object to write: where, from which entry.
struct Job<'e> {
    target_key: String,
    entry: &'e ObjectEntry,
    change: Change,
}

/// The keys the target bucket will hold, and what is there now.
struct Changes<'e> {
    jobs: Vec<Job<'e>>,
    extras: Vec<String>,
}

/// Restores `entries` (one snapshot's objects, whose source prefix was `source_prefix`) into
/// `client`'s bucket as `target` says; returns the summary to print.
pub fn restore_into_bucket(
    client: &BucketClient,
    pool: &BlobPool<'_>,
    entries: &[ObjectEntry],
    source_prefix: &str,
    target: &BucketTarget,
    concurrency: usize,
) -> anyhow::Result<String> {
    let renamed = |key: &str| match &target.prefix {
        Some(prefix) => format!("{prefix}{}", key.strip_prefix(source_prefix).unwrap_or(key)),
        None => key.to_owned(),
    };
    let under = match (&target.key, &target.prefix) {
        (Some(key), _) => renamed(key),
        (None, Some(prefix)) => prefix.clone(),
        (None, None) => source_prefix.to_owned(),
    };
    let there: BTreeMap<String, Listed> = client
        .list(&under)?
        .into_iter()
        .map(|listed| (listed.key.clone(), listed))
        .collect();
    let changes = changes(entries, &there, renamed, target.key.is_some());
    let mut report = describe(&changes, target);
    if target.dry_run {
        report.push_str("dry run: nothing was written\n");
        return Ok(report);
    }
    let written = write_all(client, pool, &changes.jobs, concurrency)?;
    if target.delete_extra && !changes.extras.is_empty() {
        client.delete(&changes.extras)?;
    }
    let _ = writeln!(
        report,
        "restored {} objects ({}) into {}: {} written, {} already as they were{}",
        changes.jobs.len(),
        units::bytes(changes.jobs.iter().map(|j| j.entry.size).sum()),
        client.location(),
        written,
        changes.jobs.len() as u64 - written,
        if target.delete_extra {
            format!(", {} extra objects deleted", changes.extras.len())
        } else {
            String::new()
        }
    );
    Ok(report)
}

/// What each snapshot object does to the target, and the extras (left out for one object).
fn changes<'e>(
    entries: &'e [ObjectEntry],
    there: &BTreeMap<String, Listed>,
    renamed: impl Fn(&str) -> String,
    one_object: bool,
) -> Changes<'e> {
    let jobs: Vec<Job<'e>> = entries
        .iter()
        .map(|entry| {
            let target_key = renamed(&entry.key);
            let change = match there.get(&target_key) {
                None => Change::Add,
                Some(listed)
                    if listed.size == entry.size
                        && listed.etag.is_some()
                        && listed.etag == entry.etag =>
                {
                    Change::MaybeSame
                }
                Some(_) => Change::Replace,
            };
            Job {
                target_key,
                entry,
                change,
            }
        })
        .collect();
    let wanted: std::collections::BTreeSet<&str> =
        jobs.iter().map(|j| j.target_key.as_str()).collect();
    let extras = if one_object {
        Vec::new()
    } else {
        there
            .keys()
            .filter(|key| !wanted.contains(key.as_str()))
            .cloned()
            .collect()
    };
    Changes { jobs, extras }
}

/// A line per change, then the counts.
fn describe(changes: &Changes<'_>, target: &BucketTarget) -> String {
    let mut out = String::new();
    let mut counts = [0u64; 3];
    for job in &changes.jobs {
        let (word, slot) = match job.change {
            Change::Add => ("add", 0),
            Change::Replace => ("replace", 1),
            Change::MaybeSame => ("same content", 2),
        };
        counts[slot] += 1;
        if target.dry_run {
            let _ = writeln!(
                out,
                "{word} {:?} ({})",
                job.target_key,
                units::bytes(job.entry.size)
            );
        }
    }
    let extra_word = if target.delete_extra {
        "delete"
    } else {
        "leave"
    };
    if target.dry_run {
        for key in &changes.extras {
            let _ = writeln!(out, "{extra_word} {key:?} (not in the snapshot)");
        }
    }
    let _ = writeln!(
        out,
        "{} objects to add, {} to replace, {} with the same content (rewritten if their headers differ), {} extra objects to {extra_word}",
        counts[0],
        counts[1],
        counts[2],
        changes.extras.len()
    );
    out
}

/// Writes every job with `concurrency` threads; returns how many were written (not found as
/// they were). Stops at the first failure.
fn write_all(
    client: &BucketClient,
    pool: &BlobPool<'_>,
    jobs: &[Job<'_>],
    concurrency: usize,
) -> anyhow::Result<u64> {
    let queue = Mutex::new(jobs.iter());
    let failed = AtomicBool::new(false);
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| {
                    let mut written = 0;
                    while !failed.load(Ordering::Relaxed) {
                        let Some(job) = queue.lock().expect("no worker panics holding it").next()
                        else {
                            break;
                        };
                        match write_one(client, pool, job) {
                            Ok(wrote) => written += u64::from(wrote),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(written)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a restore worker does not panic"))
            .collect()
    });
    results.into_iter().sum()
}

/// Writes one object unless it is there as it was; returns whether it wrote.
fn write_one(client: &BucketClient, pool: &BlobPool<'_>, job: &Job<'_>) -> anyhow::Result<bool> {
    let entry = job.entry;
    if job.change == Change::MaybeSame && entry.headers.tags.is_empty() {
        let there = client.head(&job.target_key, None)?;
        if there.is_some_and(|(etag, headers, _)| etag == entry.etag && headers == entry.headers) {
            return Ok(false);
        }
    }
    let context = || format!("restore {:?} to {:?}", entry.key, job.target_key);
    let mut chunks = entry.chunks.iter();
    let mut next_part = |part: &mut Vec<u8>| -> anyhow::Result<()> {
        let mut chunk = Vec::new();
        while part.len() < PART_SIZE {
            let Some(reference) = chunks.next() else {
                break;
            };
            pool.get_chunk(reference, &mut chunk)?;
            part.extend_from_slice(&chunk);
        }
        Ok(())
    };
    if entry.size as usize <= PART_SIZE {
        let mut content = Vec::with_capacity(entry.size as usize);
        next_part(&mut content).with_context(context)?;
        client
            .put(&job.target_key, content, &entry.headers)
            .with_context(context)?;
    } else {
        client
            .put_in_parts(&job.target_key, &entry.headers, next_part)
            .with_context(context)?;
    }
    Ok(true)
}
