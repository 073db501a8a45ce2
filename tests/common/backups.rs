//! Backups in a lab's local repository: taking one with `tidemark backup`, checking a restored
//! one with `pg_verifybackup`, reading and rewriting its objects the way damage or a mistake
//! would, and what a restore that failed part way must leave.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testkit::{Lab, ThrowawayCluster, run_as_owner};
use tidemark::repo::compress::Compression;
use tidemark::repo::object;

/// Takes a backup and returns its label, from the `backup LABEL complete: ...` line. A label is
/// the second a backup starts in, and a backup in the same second as the one before is refused
/// ("start the next one a second later"): on a fast machine two backups in a row can be that
/// close, so that refusal, and only it, is followed by one more try in the next second.
pub fn take_backup(lab: &Lab) -> String {
    let output = match lab.tidemark(&["backup"]) {
        Err(e) if format!("{e:#}").contains("was started in this same second") => {
            wait_for_the_next_second();
            lab.tidemark(&["backup"])
        }
        result => result,
    }
    .unwrap();
    let label = output
        .strip_prefix("backup ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not a backup line: {output}"));
    assert!(output.contains(" complete: "), "{output}");
    label.to_owned()
}

/// Sleeps into the next whole second of the clock, so that a backup started after it cannot get
/// the label (the start second) of one started before.
pub fn wait_for_the_next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_second = Duration::from_nanos(u64::from(now.subsec_nanos()));
    std::thread::sleep(Duration::from_secs(1) - into_second + Duration::from_millis(10));
}

/// Takes a backup, waits until the WAL after it is archived and stops the cluster: a
/// repository ready to restore from. Returns the backup's label.
pub fn back_up_and_stop(lab: &Lab, cluster: &mut ThrowawayCluster) -> String {
    let label = take_backup(lab);
    testkit::switch_and_wait_for_archive(cluster).unwrap();
    cluster.stop().unwrap();
    label
}

/// Where an object of the lab's stanza lies in the repository directory.
pub fn object_path(lab: &Lab, key: &str) -> PathBuf {
    lab.repo_path.join(key)
}

/// The original bytes of a stored object, checked.
pub fn read_object(path: &Path) -> Vec<u8> {
    let stored = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut content = Vec::new();
    object::decode_into(&stored, &mut content).unwrap();
    content
}

/// Replaces a stored object with a valid one holding `content`: what a mistake, not damage,
/// would leave, so only Tidemark's own checks can catch it.
pub fn rewrite_object(path: &Path, content: &[u8]) {
    let encoded = object::encode(Compression::None, 0, content).unwrap();
    let mut bytes = encoded.header_bytes().to_vec();
    bytes.extend_from_slice(&encoded.body);
    fs::write(path, bytes).unwrap();
}

/// The record (`backup.json`) of backup `label`.
pub fn backup_record(lab: &Lab, label: &str) -> serde_json::Value {
    let path = object_path(lab, &format!("{}/backup/{label}/backup.json", lab.stanza));
    serde_json::from_slice(&read_object(&path)).unwrap()
}

/// The path of the blob holding the only chunk of the file `file` of backup `label`; panics
/// unless the file has exactly one chunk that no other file of the backup shares, so that
/// damaging the blob damages this file alone.
pub fn only_blob_of(lab: &Lab, label: &str, file: &str) -> PathBuf {
    let record = backup_record(lab, label);
    let entries = record["entries"].as_array().unwrap();
    let entry = entries
        .iter()
        .find(|e| e["path"] == file)
        .unwrap_or_else(|| panic!("backup {label} has no {file}"));
    let chunks = entry["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 1, "{file} has {} chunks", chunks.len());
    let sha256 = chunks[0]["sha256"].as_str().unwrap();
    let users = entries
        .iter()
        .filter(|e| {
            e["chunks"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["sha256"] == sha256))
        })
        .count();
    assert_eq!(users, 1, "the chunk of {file} is shared with other files");
    object_path(
        lab,
        &format!("{}/blob/{}/{sha256}", lab.stanza, &sha256[..2]),
    )
}

/// The data directory's path of a table's main fork, relative to the data directory
/// (`base/5/16384`).
pub fn relation_path(cluster: &ThrowawayCluster, table: &str) -> String {
    cluster
        .query(&format!("SELECT pg_relation_filepath('{table}')"))
        .unwrap()
}

/// `pg_verifybackup` (the program `tool`, of the backup's major) checks every file of the
/// restored directory `pgdata` against the manifest and parses the backup's WAL, `wal_start` to
/// `wal_stop`, fetched with archive-get.
pub fn verify_backup_with_its_wal(
    lab: &Lab,
    tool: &Path,
    pgdata: &Path,
    wal_start: &str,
    wal_stop: &str,
) {
    let wal_dir = lab.tmp.subdir("verify-wal").unwrap();
    let first = u64::from_str_radix(&wal_start[16..], 16).unwrap();
    let last = u64::from_str_radix(&wal_stop[16..], 16).unwrap();
    for seg in first..=last {
        let name = format!("{}{seg:08X}", &wal_start[..16]);
        let dest = wal_dir.join(&name);
        lab.tidemark(&["archive-get", &name, dest.to_str().unwrap()])
            .unwrap();
    }
    let verified = run_as_owner(
        tool,
        &["-w".as_ref(), wal_dir.as_os_str(), pgdata.as_os_str()],
        lab.tmp.path(),
    )
    .unwrap();
    assert!(
        verified.contains("backup successfully verified"),
        "{verified}"
    );
}

/// What a restore that failed while writing must leave: a directory PostgreSQL refuses to
/// start, with nothing that would make it recover.
pub fn assert_incomplete_and_unstartable(lab: &Lab, pgdata: &Path) {
    assert!(pgdata.is_dir(), "{} is gone", pgdata.display());
    assert!(
        !pgdata.join("global/pg_control").exists(),
        "a failed restore left global/pg_control, so the directory could be started"
    );
    assert!(!pgdata.join("recovery.signal").exists());
    let settings = fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap_or_default();
    assert!(
        !settings.contains("tidemark restore"),
        "recovery settings were written: {settings}"
    );
    let log = lab.tmp.path().join("incomplete.log");
    let started = run_as_owner(
        &lab.pg.path("pg_ctl"),
        &[
            "-D".as_ref(),
            pgdata.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
            "start".as_ref(),
        ],
        lab.tmp.path(),
    );
    if started.is_ok() {
        let _ = run_as_owner(
            &lab.pg.path("pg_ctl"),
            &[
                "-D".as_ref(),
                pgdata.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "stop".as_ref(),
            ],
            lab.tmp.path(),
        );
        panic!("PostgreSQL started on the incomplete {}", pgdata.display());
    }
}
