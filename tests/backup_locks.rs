//! `tidemark backup` against a real PostgreSQL 15 beside the expire locks the GC protocol puts
//! under `<stanza>/lock/`: a live expire lock (held for a `sleep` process of the test's own
//! making) makes the backup wait, saying so, and the backup finishes and restores once the lock
//! is removed; a stale one (its process reaped) is deleted and not waited for; and a backup
//! whose own lock was deleted while it ran (as an expire on another host does with a lock it
//! takes for stale) is not recorded.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use testkit::steps::{PrimaryOptions, archiving_primary, check_rows, restore_to};
use testkit::{Lab, give_to_owner, owner_command, workload};
use tidemark::repo::compress::Compression;
use tidemark::repo::layout;
use tidemark::repo::lock::{LockKind, LockRecord};
use tidemark::repo::object;

/// How long the test waits for a step of the backup before failing: a bound, not a measure.
const PATIENCE: Duration = Duration::from_secs(300);

#[test]
fn a_backup_waits_for_a_live_expire_skips_a_stale_one_and_is_not_recorded_without_its_lock() {
    let lab = Lab::new("tm-locks-", &common::binaries()).unwrap();
    let cluster = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    workload::create_table(&cluster).unwrap();
    workload::insert_rows(&cluster, 10, Duration::ZERO, "before the backups").unwrap();
    let expected = workload::present_ids(&cluster).unwrap();

    a_stale_expire_lock_is_deleted_and_not_waited_for(&lab);
    let label = a_live_expire_lock_is_waited_for_until_it_is_removed(&lab);
    a_backup_whose_lock_was_deleted_is_not_recorded(&lab);
    assert_eq!(lock_files(&lab), Vec::<String>::new());

    let restored = restore_to(
        &lab,
        "restored",
        &["--backup", &label, "--target", "immediate"],
        &[("archive_mode", "off")],
    )
    .unwrap();
    check_rows(&restored.cluster, &expected).unwrap();
}

fn a_stale_expire_lock_is_deleted_and_not_waited_for(lab: &Lab) {
    let mut reaped = Command::new("true").spawn().unwrap();
    let dead = reaped.id();
    reaped.wait().unwrap();
    let stale = store_expire_lock(lab, dead);
    let ran = common::run(
        lab,
        "tidemark",
        &["--config", lab.config_path.to_str().unwrap(), "backup"],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!(
            "tidemark: INFO: deleted the stale expire lock {stale} of stanza 'main' (host "
        )) && ran
            .stderr
            .contains(&format!("process {dead} of this host no longer runs")),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("waits"), "{}", ran.stderr);
    assert_eq!(lock_files(lab), Vec::<String>::new());
    assert_eq!(backup_labels(lab).len(), 1);
}

/// Returns the label of the backup that waited.
fn a_live_expire_lock_is_waited_for_until_it_is_removed(lab: &Lab) -> String {
    let mut expire = Sleeper::start();
    let lock = store_expire_lock(lab, expire.0.id());
    let mut backup = BackupRun::start(lab);
    let waiting = backup.line_containing("the backup waits for it to end");
    assert!(
        waiting.starts_with("tidemark: INFO: an expire of stanza 'main' is running (host ")
            && waiting.contains(&format!(", pid {}, since ", expire.0.id()))
            && waiting.ends_with("; the backup waits for it to end (at most 30 min)"),
        "{waiting}"
    );
    // Waiting: the backup has stored its own lock and no record.
    assert_eq!(backup_labels(lab).len(), 1);
    assert!(
        lock_files(lab).iter().any(|f| f.starts_with("backup-")),
        "{:?}",
        lock_files(lab)
    );
    // What the expire does when it ends.
    fs::remove_file(lab.repo_path.join(lock.as_str())).unwrap();
    let (code, stdout, stderr) = backup.finish();
    assert_eq!(code, Some(0), "{stderr}");
    expire.stop();
    assert_eq!(backup_labels(lab).len(), 2);
    stdout
        .strip_prefix("backup ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not a backup line: {stdout}"))
        .to_owned()
}

fn a_backup_whose_lock_was_deleted_is_not_recorded(lab: &Lab) {
    let mut expire = Sleeper::start();
    let lock = store_expire_lock(lab, expire.0.id());
    let mut backup = BackupRun::start(lab);
    backup.line_containing("the backup waits for it to end");
    let own = lock_files(lab)
        .into_iter()
        .find(|f| f.starts_with("backup-"))
        .expect("the waiting backup's lock");
    // An expire on another host that took the backup's lock for stale deletes it, and ends.
    let lock_dir = lab.repo_path.join("main/lock");
    fs::remove_file(lock_dir.join(&own)).unwrap();
    fs::remove_file(lab.repo_path.join(lock.as_str())).unwrap();
    let (code, _, stderr) = backup.finish();
    expire.stop();
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "tidemark: ERROR: backup: the backup's lock main/lock/{own} was deleted while it ran ("
        )) && last.ends_with(
            "so the backup was not recorded: check that the hosts' clocks agree, then back up again"
        ),
        "{stderr}"
    );
    assert_eq!(backup_labels(lab).len(), 2);
}

/// Stores an expire lock for process `pid` of this host, as an expire would, owned by the
/// cluster owner (who runs the backups and deletes stale locks). Returns its key.
fn store_expire_lock(lab: &Lab, pid: u32) -> tidemark::storage::ObjectKey {
    let mut record =
        LockRecord::for_process(LockKind::Expire, std::process::id(), SystemTime::now()).unwrap();
    // Our own start time stands for the sleeper's unless it runs: then its own is taken.
    if let Ok(Some(start)) = tidemark::repo::lock::process_start_time(pid) {
        record.pid_start = start;
    }
    record.pid = pid;
    let key = layout::lock(&lab.stanza, &record.name().unwrap(), 0);
    let encoded = object::encode(Compression::None, 0, &record.to_json()).unwrap();
    let path = lab.repo_path.join(key.as_str());
    let dir = path.parent().unwrap().to_owned();
    fs::create_dir_all(&dir).unwrap();
    give_to_owner(&dir).unwrap();
    let mut bytes = encoded.header_bytes().to_vec();
    bytes.extend_from_slice(&encoded.body);
    fs::write(&path, bytes).unwrap();
    give_to_owner(&path).unwrap();
    key
}

/// The file names under the stanza's `lock/`.
fn lock_files(lab: &Lab) -> Vec<String> {
    let dir = lab.repo_path.join(&lab.stanza).join("lock");
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", dir.display()),
    };
    names.sort();
    names
}

/// The labels of the backups with a record.
fn backup_labels(lab: &Lab) -> Vec<String> {
    let dir = lab.repo_path.join(&lab.stanza).join("backup");
    let mut labels: Vec<String> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|path: &PathBuf| path.join("backup.json").exists())
                .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    labels
}

/// A process of the test's own making that stands for a running expire.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("3600").spawn().unwrap())
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tidemark backup` running as the cluster owner, its stderr read line by line as it comes.
struct BackupRun {
    /// Taken when it is waited for; killed on drop otherwise (a failing test).
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl BackupRun {
    fn start(lab: &Lab) -> BackupRun {
        let mut child = owner_command(&lab.bin_dir.join("tidemark"), lab.tmp.path())
            .args(["--config", lab.config_path.to_str().unwrap(), "backup"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        BackupRun {
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line containing `text`; fails if the backup ends first.
    fn line_containing(&mut self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) if line.contains(text) => {
                    self.seen.push(line.clone());
                    return line;
                }
                Ok(line) => self.seen.push(line),
                Err(e) => {
                    let status = self.child.as_mut().map(|c| c.try_wait());
                    panic!(
                        "no line containing {text:?} from the backup ({e}; status {status:?}); it said: {:?}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Waits for the backup to end: its exit code, stdout and whole stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        // Stderr ends when the process does; the channel then disconnects.
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => {
                    panic!("the backup did not end ({e}); it said: {:?}", self.seen);
                }
            }
        }
        let child = self.child.take().expect("waited for once");
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            self.seen.join("\n"),
        )
    }
}

impl Drop for BackupRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
