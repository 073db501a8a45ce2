//! `tidemark verify`: reads every object of a stanza (or of one backup and the WAL it needs) on
//! a bounded pool of threads and checks it, then checks what the objects say together: each
//! backup's chunks are all there and add up to its files, the WAL is continuous from every
//! backup's start to the end of the archive, and the history files agree with the segments.
//! Chunks and backup directories nothing refers to are reported as findings, not failures.
//! `--fast` reads nothing but the backup records: presence, continuity and listed sizes.
//!
//! * `catalog.rs` — the backup records, each read on its own so one bad record is one problem;
//! * `objects.rs` — reading one object and checking all it carries;
//! * `pool.rs` — the bounded pool of readers;
//! * `backups.rs` — chunk sets and file sizes and CRCs per backup;
//! * `wal.rs` — WAL continuity and history files;
//! * `findings.rs` — the report: problems, findings, what was read, and its text;
//! * `source.rs` — a source's snapshots (`verify --source`): every chunk read and checked.

mod backups;
mod catalog;
mod findings;
mod objects;
mod pool;
pub mod source;
mod wal;

pub use findings::{Finding, FindingKind, Problem, VerifyReport, render_text};

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime};

use anyhow::bail;

use backups::ChunkState;
use catalog::{CATALOG_OBJECT_LIMIT, Catalog};
use objects::{Content, KeyCounts, Length, ReadJob, ReadResult};
use wal::{Reach, WalCheck, WalInventory, WalNeed};

use crate::lifecycle::expire;
use crate::pg::history::TimelineHistory;
use crate::pg::{TimelineId, WalFileName};
use crate::repo::catalog::{BackupRecord, MAX_CHUNK};
use crate::repo::gc::{StoredBlob, referenced_blobs, unreferenced_blobs};
use crate::repo::retention::RetentionPolicy;
use crate::repo::{Stanza, layout};
use crate::storage::{Cancel, ListedObject, ObjectKey};

/// The largest history or backup history file (archive-push refuses larger ones).
const HISTORY_FILE_LIMIT: u64 = 16 << 20;

/// The largest WAL index entry or pack verify reads: a pack of a WAL directory's 4096 entries
/// (1 MiB segments) is a few MiB.
const INDEX_OBJECT_LIMIT: u64 = 64 << 20;

/// What to verify, and how.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Only this backup and the WAL it needs to become consistent.
    pub backup: Option<String>,
    /// Listings and sizes only: nothing is read but the backup records.
    pub fast: bool,
    /// Decompress every object and check its original bytes' CRC-32C, and every chunk's
    /// SHA-256; without it only stored bytes are checked where the content is not needed.
    pub deep: bool,
    /// Objects read at once (threads of the pool).
    pub readers: usize,
    /// The stanza's retention policy, if one is set: what `expire` would remove under it is
    /// reported as findings.
    pub retention: Option<RetentionPolicy>,
}

/// Verifies `stanza` as `options` say.
pub fn verify(stanza: &Stanza<'_>, options: &VerifyOptions) -> anyhow::Result<VerifyReport> {
    let started = Instant::now();
    let catalog = catalog::read_catalog(stanza, options.readers)?;
    let scope = Scope::of(&catalog, options, stanza.name())?;
    let mut run = Run {
        stanza,
        options,
        scope: &scope,
        jobs: Vec::new(),
        purposes: Vec::new(),
        chunks: BTreeMap::new(),
        inventory: WalInventory::default(),
        problems: scope.record_problems.clone(),
        objects: catalog.objects,
        bytes: catalog.bytes,
        keys: catalog.keys.clone(),
    };
    let stored_blobs = stanza.blobs().list()?;
    run.plan_chunks(&stored_blobs);
    run.plan_wal()?;
    if scope.whole_stanza {
        run.plan_index()?;
    }
    run.plan_manifests(&catalog);
    run.read_everything();
    let mut problems = std::mem::take(&mut run.problems);
    problems.extend(backups::backup_problems(
        stanza.name(),
        &scope.records,
        &run.chunks,
    ));
    problems.extend(run.damaged_orphans());
    problems.extend(run.wal_problems());
    let mut findings = Vec::new();
    if scope.whole_stanza {
        findings.extend(orphans(stanza, &catalog, &stored_blobs, &run.chunks)?);
        if let Some(policy) = &options.retention {
            findings.extend(what_expire_would_remove(stanza, policy));
        }
    }
    Ok(VerifyReport {
        stanza: stanza.name().to_owned(),
        repository: stanza.repository().storage().location(),
        mode: match (options.fast, options.deep) {
            (true, _) => "fast",
            (false, false) => "full",
            (false, true) => "deep",
        },
        backup: options.backup.clone(),
        objects: run.objects,
        bytes: run.bytes,
        objects_by_key: run.keys.by_key,
        unencrypted_objects: run.keys.unencrypted,
        seconds: started.elapsed().as_secs_f64(),
        problems,
        findings,
    })
}

/// Which backups (and so which WAL) are verified.
struct Scope<'c> {
    records: Vec<&'c BackupRecord>,
    /// No `--backup`: everything, to the end of the archive.
    whole_stanza: bool,
    /// The problems of the records in scope that could not be read.
    record_problems: Vec<Problem>,
}

impl<'c> Scope<'c> {
    fn of(
        catalog: &'c Catalog,
        options: &VerifyOptions,
        stanza: &str,
    ) -> anyhow::Result<Scope<'c>> {
        let Some(label) = &options.backup else {
            return Ok(Scope {
                records: catalog.records.iter().collect(),
                whole_stanza: true,
                record_problems: catalog.problems.clone(),
            });
        };
        let records: Vec<&BackupRecord> = catalog
            .records
            .iter()
            .filter(|r| &r.label == label)
            .collect();
        if records.is_empty() && !catalog.unreadable.contains(label) {
            bail!(
                "backup {label} does not exist in stanza '{stanza}': `tidemark info` lists its backups"
            );
        }
        let key = layout::backup_record(stanza, label).to_string();
        Ok(Scope {
            records,
            whole_stanza: false,
            record_problems: catalog
                .problems
                .iter()
                .filter(|p| p.object == key)
                .cloned()
                .collect(),
        })
    }
}

/// What a read is for.
enum Purpose {
    Chunk(String),
    Segment,
    History(TimelineId),
    OtherWal,
    Index,
    Manifest,
}

/// One verify run: what to read, and what was found.
struct Run<'a, 'r> {
    stanza: &'a Stanza<'r>,
    options: &'a VerifyOptions,
    scope: &'a Scope<'a>,
    jobs: Vec<ReadJob>,
    purposes: Vec<Purpose>,
    chunks: BTreeMap<String, ChunkState>,
    inventory: WalInventory,
    problems: Vec<Problem>,
    objects: u64,
    bytes: u64,
    keys: KeyCounts,
}

impl Run<'_, '_> {
    /// Reads `listed` as `length` says (or, `--fast`, checks its listed size only).
    fn plan(&mut self, listed: &ListedObject, length: Length, content: Content, purpose: Purpose) {
        if !self.options.fast {
            let content = match content {
                Content::Discard | Content::ChunkName(..) if !self.options.deep => {
                    Content::StoredOnly
                }
                content => content,
            };
            self.jobs.push(ReadJob {
                key: listed.key.clone(),
                length,
                content,
            });
            self.purposes.push(purpose);
            return;
        }
        self.objects += 1;
        self.bytes += listed.size;
        let impossible = length.impossible_size(listed.size);
        match (purpose, impossible) {
            (Purpose::Chunk(sha256), Some(why)) => {
                self.chunks.insert(sha256, ChunkState::Damaged(why));
            }
            (Purpose::Chunk(sha256), None) => {
                self.chunks.insert(sha256, ChunkState::Listed);
            }
            (purpose, Some(why)) => self.problems.push(damaged(&listed.key, &purpose, why)),
            (_, None) => {}
        }
    }

    /// Every stored chunk (with `--backup`: the backup's).
    fn plan_chunks(&mut self, stored: &BTreeMap<String, StoredBlob>) {
        let in_scope: Option<BTreeSet<String>> = (!self.scope.whole_stanza).then(|| {
            let records: Vec<BackupRecord> =
                self.scope.records.iter().map(|r| (*r).clone()).collect();
            referenced_blobs(&records)
        });
        let hash = self.stanza.chunk_hash();
        for (sha256, blob) in stored {
            if in_scope.as_ref().is_some_and(|s| !s.contains(sha256)) {
                continue;
            }
            let listed = ListedObject {
                key: blob.key.clone(),
                size: blob.size,
            };
            let content = Content::ChunkName(sha256.clone(), hash);
            self.plan(
                &listed,
                Length::AtMost(MAX_CHUNK),
                content,
                Purpose::Chunk(sha256.clone()),
            );
        }
    }

    /// Every archived WAL file (with `--backup`: the segments the backup needs, and the
    /// history files).
    fn plan_wal(&mut self) -> anyhow::Result<()> {
        let size = self.stanza.expected_cluster().segment_size;
        let segment = Length::Exactly(u64::from(size.bytes()));
        let needs = wal_needs(&self.scope.records, self.stanza, Reach::Consistency);
        for (name, listed) in self.stanza.list_wal()? {
            match name {
                WalFileName::Segment(s) => {
                    let number = s.segment_number(size)?;
                    let needed = needs
                        .iter()
                        .any(|n| n.timeline == s.timeline && (n.from..=n.to).contains(&number));
                    if self.scope.whole_stanza || needed {
                        self.inventory
                            .segments
                            .entry(s.timeline)
                            .or_default()
                            .insert(number);
                        self.plan(&listed, segment, Content::Discard, Purpose::Segment);
                    }
                }
                WalFileName::History(timeline) => {
                    self.inventory.histories.insert(timeline, None);
                    let limit = Length::AtMost(HISTORY_FILE_LIMIT);
                    self.plan(&listed, limit, Content::Keep, Purpose::History(timeline));
                }
                WalFileName::Partial(_) if self.scope.whole_stanza => {
                    self.plan(&listed, segment, Content::Discard, Purpose::OtherWal)
                }
                WalFileName::BackupHistory { .. } if self.scope.whole_stanza => {
                    let limit = Length::AtMost(HISTORY_FILE_LIMIT);
                    self.plan(&listed, limit, Content::Discard, Purpose::OtherWal)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every WAL index entry and pack.
    fn plan_index(&mut self) -> anyhow::Result<()> {
        let root = layout::wal_index_root(self.stanza.name());
        let storage = self.stanza.repository().storage();
        for listed in storage.list(&root, &Cancel::never())? {
            let limit = Length::AtMost(INDEX_OBJECT_LIMIT);
            self.plan(&listed, limit, Content::Discard, Purpose::Index);
        }
        Ok(())
    }

    /// The manifest of every backup in scope that has one; a missing one is a problem.
    fn plan_manifests(&mut self, catalog: &Catalog) {
        for record in self.scope.records.iter().filter(|r| r.has_manifest) {
            let Some(listed) = catalog.manifests.get(&record.label) else {
                self.problems.push(Problem {
                    object: layout::backup_manifest(self.stanza.name(), &record.label).to_string(),
                    problem: format!(
                        "missing: backup {} was checked against PostgreSQL's manifest, which restores check again",
                        record.label
                    ),
                    action: "take a new backup, and do not restore this one".to_owned(),
                });
                continue;
            };
            let limit = Length::AtMost(CATALOG_OBJECT_LIMIT);
            let purpose = Purpose::Manifest;
            self.plan(listed, limit, Content::Keep, purpose);
        }
    }

    /// Reads every planned object on the pool and takes in what each says.
    fn read_everything(&mut self) {
        let stanza = self.stanza;
        let results = pool::run_all(&self.jobs, self.options.readers, |job| {
            objects::read_and_check(stanza, job)
        });
        let jobs = std::mem::take(&mut self.jobs);
        let purposes = std::mem::take(&mut self.purposes);
        for ((job, purpose), result) in jobs.iter().zip(purposes).zip(results) {
            self.take_in(&job.key, purpose, result);
        }
    }

    fn take_in(&mut self, key: &ObjectKey, purpose: Purpose, result: ReadResult) {
        self.objects += 1;
        self.bytes += result.bytes;
        if let Ok(checked) = &result.outcome {
            self.keys.count(checked.key_id);
        }
        let checked = match (purpose, result.outcome) {
            (Purpose::Chunk(sha256), outcome) => {
                let state = match outcome {
                    Ok(c) => ChunkState::Sound {
                        len: c.header.original_len,
                        crc: c.header.original_crc,
                    },
                    Err(why) => ChunkState::Damaged(why),
                };
                self.chunks.insert(sha256, state);
                return;
            }
            (purpose, Err(why)) => return self.problems.push(damaged(key, &purpose, why)),
            (purpose, Ok(checked)) => (purpose, checked.content.unwrap_or_default()),
        };
        let parsed = match &checked.0 {
            Purpose::History(timeline) => TimelineHistory::parse(*timeline, &checked.1)
                .map(|h| {
                    self.inventory.histories.insert(*timeline, Some(h));
                })
                .map_err(|e| e.to_string()),
            Purpose::Manifest => crate::pg::backup_manifest::BackupManifest::parse(&checked.1)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ => Ok(()),
        };
        if let Err(why) = parsed {
            self.problems.push(damaged(key, &checked.0, why));
        }
    }

    /// Damaged chunks no backup in scope refers to: the next backup would reuse them as they
    /// are, so they fail verification too.
    fn damaged_orphans(&self) -> Vec<Problem> {
        let referenced: BTreeSet<&str> = self
            .scope
            .records
            .iter()
            .flat_map(|r| &r.entries)
            .flat_map(|e| &e.chunks)
            .map(|c| c.name.as_str())
            .collect();
        self.chunks
            .iter()
            .filter(|(sha256, _)| !referenced.contains(sha256.as_str()))
            .filter_map(|(sha256, state)| match state {
                ChunkState::Damaged(why) => Some(Problem {
                    object: layout::blob(self.stanza.name(), sha256).to_string(),
                    problem: format!("{why}; no backup refers to it, but the next backup would reuse it as it is"),
                    action: "move it out of the repository, so the next backup stores the content afresh".to_owned(),
                }),
                _ => None,
            })
            .collect()
    }

    fn wal_problems(&self) -> Vec<Problem> {
        let reach = if self.scope.whole_stanza {
            Reach::EndOfArchive
        } else {
            Reach::Consistency
        };
        let needs = wal_needs(&self.scope.records, self.stanza, reach);
        WalCheck {
            stanza: self.stanza.name(),
            size: self.stanza.expected_cluster().segment_size,
            inventory: &self.inventory,
            needs: &needs,
            reach,
        }
        .problems()
    }
}

/// The problem of an object other than a chunk that failed its checks.
fn damaged(key: &ObjectKey, purpose: &Purpose, why: String) -> Problem {
    let action = match purpose {
        Purpose::Segment | Purpose::History(_) | Purpose::OtherWal => {
            "if the cluster's pg_wal (or another copy) still has this file, move the object out of the repository and archive the file again with tidemark-archive; otherwise take a new backup, since restores cannot replay past it"
        }
        Purpose::Index => {
            "move it out of the repository and run `tidemark index rebuild`, which writes it again from the segment"
        }
        Purpose::Manifest => "take a new backup; restores of this backup refuse it",
        Purpose::Chunk(_) => "take a new backup now, and do not restore the backups that use it",
    };
    Problem {
        object: key.to_string(),
        problem: why,
        action: action.to_owned(),
    }
}

/// The WAL each of `records` needs, by segment number. A backup holding its own WAL needs
/// nothing to become consistent, and the archive only after its end.
fn wal_needs(records: &[&BackupRecord], stanza: &Stanza<'_>, reach: Reach) -> Vec<WalNeed> {
    let size = stanza.expected_cluster().segment_size;
    let number = |name: &str| {
        let segment = WalFileName::parse(name).ok()?.segment()?;
        Some((segment.timeline, segment.segment_number(size).ok()?))
    };
    records
        .iter()
        .filter(|r| !(r.wal_included && reach == Reach::Consistency))
        .filter_map(|r| {
            let (timeline, from) = number(&r.wal_start)?;
            let (_, to) = number(&r.wal_stop)?;
            let from = if r.wal_included { to + 1 } else { from };
            Some(WalNeed {
                label: r.label.clone(),
                timeline,
                from,
                to,
            })
        })
        .collect()
}

/// Chunks no listed backup refers to and backup directories without a record: findings, not
/// failures (an interrupted backup leaves them; `tidemark expire` removes them).
fn orphans(
    stanza: &Stanza<'_>,
    catalog: &Catalog,
    stored: &BTreeMap<String, StoredBlob>,
    chunks: &BTreeMap<String, ChunkState>,
) -> anyhow::Result<Vec<Finding>> {
    let referenced = referenced_blobs(&catalog.records);
    let mut findings: Vec<Finding> = unreferenced_blobs(stored, &referenced)
        .into_iter()
        .filter(|blob| {
            let sha256 = blob.key.file_name();
            !matches!(chunks.get(sha256), Some(ChunkState::Damaged(_)))
        })
        .map(|blob| Finding {
            kind: FindingKind::OrphanChunk,
            object: blob.key.to_string(),
            what: "a chunk referenced by nothing".to_owned(),
            action: "`tidemark expire` removes it (not a failure: an interrupted backup leaves such chunks)".to_owned(),
        })
        .collect();
    for label in stanza.unrecorded_backup_directories()? {
        findings.push(Finding {
            kind: FindingKind::UnrecordedBackup,
            object: format!("{}/", layout::backup_root(stanza.name()).join(&label)?),
            what: "a backup directory without a record (an interrupted backup, or one running now)"
                .to_owned(),
            action: "`tidemark expire` removes it once no backup is running (not a failure)"
                .to_owned(),
        });
    }
    Ok(findings)
}

/// What the next `expire` would remove under `policy` (its plan): each backup no rule keeps,
/// and the WAL no kept backup needs, per timeline; or why it would refuse.
fn what_expire_would_remove(stanza: &Stanza<'_>, policy: &RetentionPolicy) -> Vec<Finding> {
    let plan = match expire::plan(stanza, policy, SystemTime::now()) {
        Ok(plan) => plan,
        Err(e) => {
            return vec![Finding {
                kind: FindingKind::ExpireRefuses,
                object: format!("{}/", layout::backup_root(stanza.name())),
                what: format!("`tidemark expire` would refuse: {e:#}"),
                action: "fix the archive or the [retention] policy before the next expire".into(),
            }];
        }
    };
    let backups = plan.backups.iter().filter(|b| b.expired).map(|b| Finding {
        kind: FindingKind::ExpiringBackup,
        object: layout::backup_record(stanza.name(), &b.label).to_string(),
        what: format!("backup {} is kept by no retention rule", b.label),
        action: "`tidemark expire` removes it".into(),
    });
    let wal = plan.wal.removed.iter().map(|range| Finding {
        kind: FindingKind::ExpiringWal,
        object: range.first.clone(),
        what: format!(
            "{} WAL files of timeline {}, {} to {} ({}), are needed by no backup the retention policy keeps",
            range.files,
            range.timeline,
            range.first,
            range.last,
            crate::units::ByteSize(range.stored_bytes)
        ),
        action: "`tidemark expire` removes them".into(),
    });
    backups.chain(wal).collect()
}
