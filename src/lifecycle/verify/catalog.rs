//! The backup catalog as `verify` reads it: every record that can be read, and a problem for
//! each that cannot (where `Stanza::list_backups` would stop at the first), with the manifests
//! listed beside them.

use std::collections::{BTreeMap, BTreeSet};

use super::findings::Problem;
use super::objects::{Content, KeyCounts, Length, ReadJob, read_and_check};
use super::pool;
use crate::repo::Stanza;
use crate::repo::catalog::{BackupRecord, RECORD_FORMAT};
use crate::repo::layout;
use crate::storage::{Cancel, ListedObject};

/// The largest record or manifest verify reads: far above any cluster's (a few hundred bytes
/// per file), and a bound known before reading.
pub const CATALOG_OBJECT_LIMIT: u64 = 1 << 30;

/// What the catalog holds.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Records that were read and parsed, oldest first.
    pub records: Vec<BackupRecord>,
    /// Labels whose record is there but cannot be read (each has a problem).
    pub unreadable: BTreeSet<String>,
    /// Each backup's listed manifest, by label.
    pub manifests: BTreeMap<String, ListedObject>,
    pub problems: Vec<Problem>,
    /// Records read and their stored bytes.
    pub objects: u64,
    pub bytes: u64,
    pub keys: KeyCounts,
}

/// Reads every backup record of `stanza` on `readers` threads.
pub fn read_catalog(stanza: &Stanza<'_>, readers: usize) -> anyhow::Result<Catalog> {
    let storage = stanza.repository().storage();
    let mut catalog = Catalog::default();
    let mut jobs = Vec::new();
    for listed in storage.list(&layout::backup_root(stanza.name()), &Cancel::never())? {
        match listed.key.file_name() {
            "backup.json" => jobs.push(ReadJob {
                key: listed.key,
                length: Length::AtMost(CATALOG_OBJECT_LIMIT),
                content: Content::Keep,
            }),
            "backup_manifest" => {
                let label = label_of(&listed.key);
                catalog.manifests.insert(label, listed);
            }
            _ => {}
        }
    }
    let results = pool::run_all(&jobs, readers, |job| read_and_check(stanza, job));
    for (job, result) in jobs.iter().zip(results) {
        catalog.objects += 1;
        catalog.bytes += result.bytes;
        let label = label_of(&job.key);
        if let Ok(checked) = &result.outcome {
            catalog.keys.count(checked.key_id);
        }
        let parsed = result
            .outcome
            .and_then(|checked| parse_record(&checked.content.expect("records are kept"), &label));
        match parsed {
            Ok(record) => catalog.records.push(record),
            Err(why) => {
                catalog.problems.push(Problem {
                    object: job.key.to_string(),
                    problem: format!("{why}: backup {label} cannot be listed or restored"),
                    action: format!(
                        "take a new backup, then move the directory of backup {label} out of the repository"
                    ),
                });
                catalog.unreadable.insert(label);
            }
        }
    }
    catalog
        .records
        .sort_by(|a, b| a.stop_lsn.cmp(&b.stop_lsn).then(a.label.cmp(&b.label)));
    Ok(catalog)
}

/// The label of the backup directory `<stanza>/backup/<label>/<file>` a key lies in.
fn label_of(key: &crate::storage::ObjectKey) -> String {
    let mut components = key.as_str().rsplit('/');
    components.nth(1).unwrap_or_default().to_owned()
}

fn parse_record(json: &[u8], label: &str) -> Result<BackupRecord, String> {
    let record: BackupRecord =
        serde_json::from_slice(json).map_err(|e| format!("it is not a valid record: {e}"))?;
    if record.format != RECORD_FORMAT {
        return Err(format!(
            "it has format {}, which this Tidemark does not know (upgrade Tidemark)",
            record.format
        ));
    }
    if record.label != label {
        return Err(format!("it records backup {}", record.label));
    }
    Ok(record)
}
