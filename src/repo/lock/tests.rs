//! The lock protocol over the in-memory store and a local directory: stale locks are deleted,
//! ties between expires have one winner, a backup waits for an expire, renewals never leave a
//! moment without an object.

use std::io::Read;
use std::sync::{Arc, Mutex};

use super::*;
use crate::repo::{Repository, test_repository};
use crate::storage::{
    ByteRange, ListedObject, LocalDirectory, MemoryStorage, ObjectMeta, PutBody, PutOutcome,
    Storage, StorageError,
};

fn in_memory() -> Repository {
    test_repository(Box::new(MemoryStorage::new()))
}

/// A repository in a local directory, kept alive by the returned guard.
fn in_a_directory() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let repo = test_repository(Box::new(LocalDirectory::new(dir.path())));
    (dir, repo)
}

/// The keys of every lock object of stanza `main`.
fn lock_keys(repo: &Repository) -> Vec<String> {
    repo.storage()
        .list(&layout::lock_root("main"), &Cancel::never())
        .unwrap()
        .into_iter()
        .map(|o| o.key.as_str().to_owned())
        .collect()
}

/// A lock record of this process taken `offset_ns` nanoseconds after a fixed instant.
fn record_at(kind: LockKind, offset_ns: u32) -> LockRecord {
    let taken = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, offset_ns);
    LockRecord::for_process(kind, std::process::id(), taken).unwrap()
}

/// A lock of this process taken `offset_ns` into the same instant, renewed as usual.
fn take_at(stanza: &Stanza<'_>, kind: LockKind, offset_ns: u32) -> HeldLock {
    stanza
        .locks()
        .take_lock_as(record_at(kind, offset_ns), RENEW_EVERY)
        .unwrap()
}

/// A reaped child's process ID: no process has it now.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

const QUICK: Waits = Waits {
    poll: Duration::from_millis(20),
    max: Duration::from_millis(200),
};

#[test]
fn a_lock_is_stored_under_lock_and_deleted_when_dropped() {
    for (_dir, repo) in [(None, in_memory()), {
        let (dir, repo) = in_a_directory();
        (Some(dir), repo)
    }] {
        let stanza = repo.open_stanza("main").unwrap();
        let held = stanza.locks().lock_for_backup().unwrap();
        let keys = lock_keys(&repo);
        assert_eq!(keys, vec![held.key().as_str().to_owned()]);
        assert!(keys[0].starts_with(&format!("main/lock/backup-{}-", held.record().host)));
        assert!(keys[0].ends_with(".0"), "{keys:?}");
        assert!(held.still_held().unwrap());
        let running = stanza.locks().running_backups().unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].record, held.record());
        drop(held);
        assert_eq!(lock_keys(&repo), Vec::<String>::new());
        assert!(stanza.locks().running_backups().unwrap().is_empty());
    }
}

#[test]
fn a_lock_of_a_dead_process_is_deleted_by_whoever_finds_it() {
    let (_dir, repo) = in_a_directory();
    let stanza = repo.open_stanza("main").unwrap();
    let mut dead = record_at(LockKind::Backup, 0);
    dead.pid = dead_pid();
    let stale = stanza.locks().take_lock_as(dead, RENEW_EVERY).unwrap();
    // The renewal thread stops; the object stays, as a killed process would leave it.
    std::mem::forget(stale);
    let live = take_at(&stanza, LockKind::Backup, 1);

    let running = stanza.locks().running_backups().unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].key, live.key());
    assert_eq!(lock_keys(&repo), vec![live.key().as_str().to_owned()]);
}

#[test]
fn of_two_expires_taken_at_once_exactly_one_wins_and_the_loser_withdraws() {
    let repo = in_memory();
    let stanza = repo.open_stanza("main").unwrap();
    // Both are stored before either lists: each sees the other.
    let first = take_at(&stanza, LockKind::Expire, 5);
    let second = take_at(&stanza, LockKind::Expire, 9);
    let first_name = first.name().to_owned();
    let waits = Waits {
        poll: Duration::from_millis(10),
        max: Duration::from_secs(60),
    };
    let (won, lost) = std::thread::scope(|scope| {
        let a = scope.spawn(|| stanza.locks().settle_expire(first, waits));
        let b = scope.spawn(|| stanza.locks().settle_expire(second, waits));
        (a.join().unwrap(), b.join().unwrap())
    });
    let won = won.unwrap();
    assert_eq!(won.name(), first_name);
    let error = format!("{:#}", lost.err().unwrap());
    assert!(
        error.starts_with("another expire of stanza 'main' is running (host ")
            && error.ends_with("): wait for it to end"),
        "{error}"
    );
    assert_eq!(lock_keys(&repo), vec![won.key().as_str().to_owned()]);
}

#[test]
fn an_expire_that_stays_is_running_even_when_its_lock_looks_later() {
    let repo = in_memory();
    let stanza = repo.open_stanza("main").unwrap();
    let running = stanza.locks().lock_for_expire().unwrap();
    // A second expire whose clock is behind: its lock looks earlier, but the first one stays.
    let behind = take_at(&stanza, LockKind::Expire, 0);
    let behind_key = behind.key();
    let error = format!(
        "{:#}",
        stanza.locks().settle_expire(behind, QUICK).err().unwrap()
    );
    assert!(error.contains(&running.record().holder()), "{error}");
    assert_eq!(lock_keys(&repo), vec![running.key().as_str().to_owned()]);
    assert_ne!(running.key(), behind_key);
}

#[test]
fn a_backup_waits_for_a_live_expire_and_then_gives_up_naming_it() {
    let repo = in_memory();
    let stanza = repo.open_stanza("main").unwrap();
    let expire = stanza.locks().lock_for_expire().unwrap();
    let error = format!(
        "{:#}",
        stanza.locks().lock_for_backup_waiting(QUICK).err().unwrap()
    );
    assert!(
        error.starts_with(
            "take the backup lock of stanza 'main': an expire has held its lock for 0 min ("
        ) && error.contains(&expire.record().holder())
            && error.contains(&format!("delete {}", expire.key())),
        "{error}"
    );
    // The backup's own lock went with the failure.
    assert_eq!(lock_keys(&repo), vec![expire.key().as_str().to_owned()]);
    drop(expire);
    let backup = stanza.locks().lock_for_backup_waiting(QUICK).unwrap();
    assert!(backup.still_held().unwrap());
}

#[test]
fn a_backup_does_not_wait_for_a_stale_expire() {
    let repo = in_memory();
    let stanza = repo.open_stanza("main").unwrap();
    let mut dead = record_at(LockKind::Expire, 0);
    dead.pid = dead_pid();
    std::mem::forget(stanza.locks().take_lock_as(dead, RENEW_EVERY).unwrap());
    let waits = Waits {
        poll: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
    };
    let backup = stanza.locks().lock_for_backup_waiting(waits).unwrap();
    assert_eq!(lock_keys(&repo), vec![backup.key().as_str().to_owned()]);
}

/// A store that records every put and delete, in order.
struct Recording {
    inner: MemoryStorage,
    log: Mutex<Vec<String>>,
}

impl Storage for Recording {
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        self.inner.head(key)
    }

    fn get_reader(
        &self,
        key: &ObjectKey,
        range: ByteRange,
        cancel: &Cancel,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        self.inner.get_reader(key, range, cancel)
    }

    fn put_body_if_absent(
        &self,
        key: &ObjectKey,
        body: PutBody<'_>,
    ) -> Result<PutOutcome, StorageError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("put {}", key.file_name()));
        self.inner.put_body_if_absent(key, body)
    }

    fn list(&self, prefix: &ObjectKey, cancel: &Cancel) -> Result<Vec<ListedObject>, StorageError> {
        self.inner.list(prefix, cancel)
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("delete {}", key.file_name()));
        self.inner.delete(key)
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn check_reachable(&self) -> Result<(), StorageError> {
        self.inner.check_reachable()
    }
}

#[test]
fn a_renewal_stores_the_next_object_before_deleting_the_previous() {
    let storage = Arc::new(Recording {
        inner: MemoryStorage::new(),
        log: Mutex::new(Vec::new()),
    });
    let repo = test_repository(Box::new(Arc::clone(&storage)));
    let stanza = repo.open_stanza("main").unwrap();
    let held = stanza.locks().lock_for_backup().unwrap();
    let name = held.name().to_owned();
    storage.log.lock().unwrap().clear();
    let later = SystemTime::now() + Duration::from_secs(60);
    held.renew_now(later);
    held.renew_now(later + Duration::from_secs(60));
    assert_eq!(
        *storage.log.lock().unwrap(),
        [
            format!("put {name}.1"),
            format!("delete {name}.0"),
            format!("put {name}.2"),
            format!("delete {name}.1"),
        ]
    );
    assert_eq!(lock_keys(&repo), vec![format!("main/lock/{name}.2")]);
    let running = stanza.locks().running_backups().unwrap();
    assert_eq!(
        running[0].record.renewed,
        record::rfc3339(later + Duration::from_secs(60))
    );
    assert_eq!(running[0].record.taken, held.record().taken);
    assert!(held.still_held().unwrap());
}

#[test]
fn a_lock_deleted_by_another_process_is_no_longer_held_and_renewing_does_not_revive_it() {
    let repo = in_memory();
    let stanza = repo.open_stanza("main").unwrap();
    let held = stanza.locks().lock_for_backup().unwrap();
    // What an expire on another host does when it takes the lock for stale.
    repo.storage().delete(&held.key()).unwrap();
    assert!(!held.still_held().unwrap());
    held.renew_now(SystemTime::now());
    assert!(!held.still_held().unwrap());
    assert_eq!(lock_keys(&repo), Vec::<String>::new());
}

#[test]
fn an_object_that_is_no_lock_under_lock_is_an_error() {
    let repo = in_memory();
    let stanza = repo.open_stanza("main").unwrap();
    let stray = ObjectKey::new("main/lock/notes.txt").unwrap();
    repo.storage().put_if_absent(&stray, &[b"x"]).unwrap();
    let error = format!("{:#}", stanza.locks().running_backups().unwrap_err());
    assert!(
        error.starts_with("unexpected object main/lock/notes.txt in memory store ")
            && error.ends_with(": only lock objects belong under lock/; move it away"),
        "{error}"
    );
}
