//! `tidemark verify` against repositories made by a real PostgreSQL 15 cluster (a workload, a
//! backup, WAL archived after it), on a local directory and on `s3s-fs`. Each kind of damage is
//! done to the stored files, verified, and undone: a flipped byte in a WAL object and in a
//! backup chunk, a missing chunk, a missing segment in the middle of the timeline, a truncated
//! object, an orphan chunk; each is named in one line (exit 1; the orphan: exit 0, it is no
//! failure). A clean repository exits 0; `--backup` naming no backup is one line, exit 1;
//! `--fast` finds a missing chunk and a missing segment without reading. Damage to a bucket is
//! done through the S3 API.
//!
//! Every case runs even when an earlier one fails, and the test names each failed case.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::Ran;
use common::backups::{read_object, take_backup};
use common::s3::{S3Server, repo_section, start_server, test_bucket};
use testkit::Lab;
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::workload;
use tidemark::repo::compress::Compression;
use tidemark::repo::object;
use tidemark::storage::{ObjectKey, S3Storage, Storage};

/// A repository made by a real cluster, and where its stanza's objects lie on disk.
struct Repo {
    lab: Lab,
    /// `<objects>/main/...`: the lab's directory, or the bucket's in the s3s-fs directory.
    objects: PathBuf,
    label: String,
    /// The bucket through the S3 API, when the repository is in one.
    bucket: Option<S3Storage>,
    /// Dropped last, after the lab.
    _server: Option<S3Server>,
}

/// Where the repository is kept.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Local,
    S3,
}

impl Repo {
    /// A cluster archives into a new repository, is backed up, writes WAL over several
    /// segments after the backup, and is stopped.
    fn new(backend: Backend) -> Repo {
        let server = matches!(backend, Backend::S3).then(start_server);
        let lab = Lab::new("tm-verify-", &common::binaries()).unwrap();
        let options = match &server {
            Some(server) => {
                PrimaryOptions::default().repo_section(repo_section(&server.endpoint, "prod"))
            }
            None => PrimaryOptions::default(),
        };
        let mut primary = archiving_primary(&lab, &options).unwrap();
        workload::create_table(&primary).unwrap();
        workload::insert_rows(&primary, 50, Duration::ZERO, "before").unwrap();
        let label = take_backup(&lab);
        for round in 0..4 {
            workload::insert_rows(&primary, 50, Duration::ZERO, &format!("after {round}")).unwrap();
            testkit::switch_and_wait_for_archive(&primary).unwrap();
        }
        primary.stop().unwrap();
        let objects = match &server {
            Some(server) => server.data_dir().join(common::s3::BUCKET).join("prod"),
            None => lab.repo_path.clone(),
        };
        Repo {
            lab,
            objects,
            label,
            bucket: server.as_ref().map(|s| test_bucket(s, "prod")),
            _server: server,
        }
    }

    /// `tidemark verify <args>` as the cluster owner.
    fn verify(&self, args: &[&str]) -> Ran {
        let mut full = vec!["--config", self.lab.config_path.to_str().unwrap(), "verify"];
        full.extend_from_slice(args);
        common::run(&self.lab, "tidemark", &full)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.objects.join(key)
    }

    /// The backup's record.
    fn record(&self) -> serde_json::Value {
        let key = format!("main/backup/{}/backup.json", self.label);
        serde_json::from_slice(&read_object(&self.path(&key))).unwrap()
    }

    /// The key of a chunk of the backup's largest file.
    fn a_chunk(&self) -> String {
        let record = self.record();
        let entries = record["entries"].as_array().unwrap();
        let largest = entries
            .iter()
            .filter(|e| e["chunks"].as_array().is_some_and(|c| !c.is_empty()))
            .max_by_key(|e| e["size"].as_u64().unwrap())
            .unwrap();
        let sha256 = largest["chunks"][0]["sha256"].as_str().unwrap();
        format!("main/blob/{}/{sha256}", &sha256[..2])
    }

    /// The key of an archived segment after the backup's last one, with one after it still:
    /// a segment in the middle of the timeline that restores from the backup replay.
    fn a_middle_segment(&self) -> String {
        let wal_stop = self.record()["wal_stop"].as_str().unwrap().to_owned();
        let directory = &wal_stop[..16];
        let dir = self.path(&format!("main/wal/{directory}"));
        let segments = common::segment_names_in(&dir);
        let after: Vec<&String> = segments.iter().filter(|s| **s > wal_stop).collect();
        assert!(
            after.len() >= 2,
            "too few segments after {wal_stop}: {segments:?}"
        );
        format!("main/wal/{directory}/{}", after[0])
    }
}

/// A change to one stored object, undone when dropped.
struct Damage<'r> {
    repo: &'r Repo,
    key: String,
    /// What the object held; `None`: there was none.
    original: Option<Vec<u8>>,
}

impl Drop for Damage<'_> {
    fn drop(&mut self) {
        match self.original.take() {
            Some(bytes) => self.repo.replace(&self.key, &bytes),
            None => self.repo.remove(&self.key),
        }
    }
}

impl Repo {
    /// The stored bytes of `key`.
    fn read(&self, key: &str) -> Vec<u8> {
        match &self.bucket {
            Some(bucket) => bucket.get(&object_key(key)).unwrap(),
            None => fs::read(self.path(key)).unwrap(),
        }
    }

    /// Stores `bytes` under `key` in place of what is there. In a bucket through the S3 API
    /// (s3s-fs keeps checksums of its own beside the files, so a file changed under it is
    /// refused by the server, not by Tidemark).
    fn replace(&self, key: &str, bytes: &[u8]) {
        match &self.bucket {
            Some(bucket) => {
                bucket.delete(&object_key(key)).unwrap();
                bucket.put_if_absent(&object_key(key), &[bytes]).unwrap();
            }
            None => {
                let path = self.path(key);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, bytes).unwrap();
                testkit::give_to_owner(&path).unwrap();
            }
        }
    }

    fn remove(&self, key: &str) {
        match &self.bucket {
            Some(bucket) => bucket.delete(&object_key(key)).unwrap(),
            None => fs::remove_file(self.path(key)).unwrap(),
        }
    }

    /// Changes the object under `key` with `change`, until the damage is dropped.
    fn damage(&self, key: &str, change: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Damage<'_> {
        let original = self.read(key);
        self.replace(key, &change(original.clone()));
        Damage {
            repo: self,
            key: key.to_owned(),
            original: Some(original),
        }
    }
}

fn object_key(key: &str) -> ObjectKey {
    ObjectKey::new(key).unwrap()
}

fn flip_a_byte(mut bytes: Vec<u8>) -> Vec<u8> {
    let at = object::HEADER_LEN + (bytes.len() - object::HEADER_LEN) / 2;
    bytes[at] ^= 0x40;
    bytes
}

fn cut_the_end(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - 100);
    bytes
}

fn remove<'r>(repo: &'r Repo, key: &str) -> Damage<'r> {
    let original = repo.read(key);
    repo.remove(key);
    Damage {
        repo,
        key: key.to_owned(),
        original: Some(original),
    }
}

/// A valid chunk no backup refers to, as an interrupted backup leaves one.
fn add_orphan(repo: &Repo) -> (String, Damage<'_>) {
    let content = b"a chunk of a backup that was interrupted".repeat(10);
    // A new stanza names its chunks by their BLAKE3.
    let name = blake3::hash(&content).to_hex();
    let key = format!("main/blob/{}/{name}", &name[..2]);
    let encoded = object::encode(Compression::Zstd, 1, &content).unwrap();
    repo.replace(&key, &[&encoded.header_bytes()[..], &encoded.body].concat());
    let damage = Damage {
        repo,
        key: key.clone(),
        original: None,
    };
    (key, damage)
}

type Outcome = Result<(), String>;

fn ensure(condition: bool, what: impl FnOnce() -> String) -> Outcome {
    if condition { Ok(()) } else { Err(what()) }
}

/// Verify exited 1 with exactly one problem line, for `key`, saying `what`, and the summary.
fn one_problem(ran: &Ran, key: &str, what: &str) -> Outcome {
    ensure(ran.code == Some(1), || {
        format!("exit {:?}, not 1: {ran:?}", ran.code)
    })?;
    let lines: Vec<&str> = ran.stdout.lines().collect();
    ensure(lines.len() == 2, || {
        format!("not one problem and the summary: {ran:?}")
    })?;
    let prefix = format!("{key}: ");
    ensure(
        lines[0].starts_with(&prefix) && lines[0].contains(what),
        || format!("the line does not name {key} and '{what}': {}", lines[0]),
    )?;
    ensure(ran.only_line().contains("found 1 problem(s)"), || {
        format!("stderr: {}", ran.stderr)
    })
}

fn clean(repo: &Repo) -> Outcome {
    let ran = repo.verify(&[]);
    ensure(ran.code == Some(0), || {
        format!("a clean repository failed: {ran:?}")
    })?;
    let lines: Vec<&str> = ran.stdout.lines().collect();
    ensure(lines.len() == 1 && lines[0].contains(": clean; "), || {
        format!("not the one summary line: {ran:?}")
    })?;
    let fast = repo.verify(&["--fast"]);
    ensure(fast.code == Some(0), || format!("--fast: {fast:?}"))?;
    let deep = repo.verify(&["--deep"]);
    ensure(deep.code == Some(0), || format!("--deep: {deep:?}"))
}

fn flipped_byte_in_a_wal_object(repo: &Repo) -> Outcome {
    let key = repo.a_middle_segment();
    let _damage = repo.damage(&key, flip_a_byte);
    one_problem(&repo.verify(&[]), &key, "its stored bytes are damaged")
}

fn flipped_byte_in_a_backup_chunk(repo: &Repo) -> Outcome {
    let key = repo.a_chunk();
    let _damage = repo.damage(&key, flip_a_byte);
    let ran = repo.verify(&[]);
    one_problem(&ran, &key, "its stored bytes are damaged")?;
    let label = &repo.label;
    ensure(
        ran.stdout.contains(&format!("in backup(s) {label}, ")),
        || format!("the backup is not named: {ran:?}"),
    )
}

/// A chunk replaced by a sound object of other content (a bug or a mistake, not storage
/// damage): its stored checksums hold, so only what the records say catches it, and `--deep`
/// names the SHA-256 it is not.
fn a_chunk_holding_other_content(repo: &Repo) -> Outcome {
    let key = repo.a_chunk();
    let _damage = repo.damage(&key, |stored| {
        let mut content = Vec::new();
        object::decode_into(&stored, &mut content).unwrap();
        content[0] ^= 0x40;
        let encoded = object::encode(Compression::None, 0, &content).unwrap();
        let mut bytes = encoded.header_bytes().to_vec();
        bytes.extend_from_slice(&encoded.body);
        bytes
    });
    let ran = repo.verify(&[]);
    ensure(
        ran.code == Some(1) && ran.stdout.contains("its chunks hold "),
        || format!("the file whose chunk changed is not named: {ran:?}"),
    )?;
    one_problem(
        &repo.verify(&["--deep"]),
        &key,
        "not the name it is stored under",
    )
}

fn missing_chunk(repo: &Repo) -> Outcome {
    let key = repo.a_chunk();
    let _damage = remove(repo, &key);
    one_problem(&repo.verify(&[]), &key, "missing; a chunk of ")?;
    one_problem(&repo.verify(&["--fast"]), &key, "missing; a chunk of ")
}

fn missing_segment_in_the_middle(repo: &Repo) -> Outcome {
    let key = repo.a_middle_segment();
    let _damage = remove(repo, &key);
    let what = format!(
        "missing segment of timeline 1: restores from backup(s) {} cannot replay past it",
        repo.label
    );
    one_problem(&repo.verify(&[]), &key, &what)?;
    one_problem(&repo.verify(&["--fast"]), &key, &what)
}

fn truncated_object(repo: &Repo) -> Outcome {
    let key = repo.a_middle_segment();
    let _damage = repo.damage(&key, cut_the_end);
    one_problem(&repo.verify(&[]), &key, "truncated")
}

fn orphan(repo: &Repo) -> Outcome {
    let (key, _damage) = add_orphan(repo);
    let ran = repo.verify(&[]);
    ensure(ran.code == Some(0), || {
        format!("an orphan is no failure: {ran:?}")
    })?;
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let expected = format!("{key}: a chunk referenced by nothing: `tidemark expire` removes it");
    ensure(lines.len() == 2 && lines[0].starts_with(&expected), || {
        format!("not the orphan's line and the summary: {ran:?}")
    })
}

fn no_such_backup(repo: &Repo) -> Outcome {
    let ran = repo.verify(&["--backup", "20000101-000000F"]);
    ensure(ran.code == Some(1), || {
        format!("exit {:?}: {ran:?}", ran.code)
    })?;
    ensure(ran.stdout.is_empty(), || format!("stdout: {ran:?}"))?;
    let line = ran.only_line();
    ensure(
        line.contains("backup 20000101-000000F does not exist in stanza 'main'"),
        || format!("the line: {line}"),
    )?;
    let ran = repo.verify(&["--backup", &repo.label]);
    ensure(ran.code == Some(0), || {
        format!("--backup of the backup: {ran:?}")
    })
}

fn json_names_the_problem(repo: &Repo) -> Outcome {
    let key = repo.a_chunk();
    let _damage = remove(repo, &key);
    let ran = repo.verify(&["--output", "json"]);
    ensure(ran.code == Some(1), || format!("exit {:?}", ran.code))?;
    let report: serde_json::Value =
        serde_json::from_str(&ran.stdout).map_err(|e| format!("{e}: {}", ran.stdout))?;
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    ensure(
        problems.len() == 1 && problems[0]["object"] == key.as_str(),
        || format!("{report:#}"),
    )
}

/// A case: its damage, verify, and what it must say.
type Case = fn(&Repo) -> Outcome;

const CASES: &[(&str, Case)] = &[
    ("clean", clean),
    ("flipped byte in a WAL object", flipped_byte_in_a_wal_object),
    (
        "flipped byte in a backup chunk",
        flipped_byte_in_a_backup_chunk,
    ),
    ("missing chunk", missing_chunk),
    (
        "a chunk holding other content",
        a_chunk_holding_other_content,
    ),
    (
        "missing segment in the middle",
        missing_segment_in_the_middle,
    ),
    ("truncated object", truncated_object),
    ("orphan", orphan),
    ("--backup naming no backup", no_such_backup),
    ("--output json", json_names_the_problem),
];

/// Runs every case on one repository, each undoing its damage, and names those that failed.
fn every_case(backend: Backend) {
    let repo = Repo::new(backend);
    let failed: Vec<String> = CASES
        .iter()
        .filter_map(|(name, case)| case(&repo).err().map(|why| format!("{name}: {why}")))
        .collect();
    assert!(
        failed.is_empty(),
        "{backend:?}: {} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn verify_names_each_kind_of_damage_in_a_local_directory() {
    every_case(Backend::Local);
}

#[test]
fn verify_names_each_kind_of_damage_in_a_bucket() {
    every_case(Backend::S3);
}
