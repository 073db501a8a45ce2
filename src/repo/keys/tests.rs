//! The keyring over real storage code: the in-memory backend, and the fault-injecting wrapper
//! for failed and raced puts. Passphrase slots use a cheap Argon2 cost (stored in the slot).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use zeroize::Zeroizing;

use super::kdf::tests::CHEAP;
use super::*;
use crate::repo::crypto::{DataKey, open_in_place, seal_in_place};
use crate::storage::{FaultPlan, FaultyStorage, MemoryStorage, ObjectKey, Storage};

fn command_source(passphrase: &str) -> KeySource {
    KeySource::PassphraseCommand(format!("printf %s '{passphrase}'"))
}

fn keys(storage: &Arc<dyn Storage>, passphrase: &str) -> RepoKeys {
    RepoKeys::new(Arc::clone(storage), command_source(passphrase)).with_kdf_cost(CHEAP)
}

fn memory() -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new())
}

fn secret(passphrase: &str) -> Secret {
    Secret::Passphrase(Zeroizing::new(passphrase.as_bytes().to_vec()))
}

fn stored_generations(storage: &dyn Storage) -> Vec<u64> {
    store::generations(storage).unwrap()
}

/// Whether `opener` opens what `sealer` sealed: the same data key.
fn same_key(sealer: &DataKey, opener: &DataKey) -> bool {
    let salt = [7u8; 32];
    let mut buffer = b"marker row".to_vec();
    seal_in_place(sealer, &salt, b"main/wal/x", &mut buffer, 0);
    open_in_place(opener, &salt, b"main/wal/x", &mut buffer, 0).is_ok()
}

#[test]
fn nothing_is_read_before_first_use_and_a_repository_is_created_once() {
    let storage = memory();
    // A source that would fail if read: constructing reads nothing.
    let lazy = RepoKeys::new(
        Arc::clone(&storage),
        KeySource::PassphraseCommand("exit 9".into()),
    );
    drop(lazy);
    assert!(!keyring_exists(storage.as_ref()).unwrap());
    let first = keys(&storage, "one").create_or_open().unwrap();
    assert_eq!(first.generation(), 1);
    assert_eq!(first.repository_id().len(), 32);
    assert_eq!(first.current().id(), 1);
    assert!(keyring_exists(storage.as_ref()).unwrap());
    assert_eq!(stored_generations(storage.as_ref()), vec![1]);
    // Another process with the same passphrase opens the same keys; creating again creates
    // nothing.
    let again = keys(&storage, "one").create_or_open().unwrap();
    assert_eq!(again.repository_id(), first.repository_id());
    assert_eq!(again.chunk_name_key(), first.chunk_name_key());
    assert!(same_key(first.current(), again.current()));
    assert_eq!(stored_generations(storage.as_ref()), vec![1]);
    let reader = keys(&storage, "one").for_reading(1).unwrap();
    assert!(same_key(first.current(), reader.data_key(1).unwrap()));
}

#[test]
fn a_wrong_secret_is_one_line_naming_the_repository_and_the_source() {
    let storage = memory();
    let keyring = keys(&storage, "one").create_or_open().unwrap();
    let error = format!("{:#}", keys(&storage, "two").for_writing().unwrap_err());
    assert_eq!(
        error,
        format!(
            "the secret from passphrase_command does not open repository {}'s keyring (generation 1): check passphrase_command",
            keyring.repository_id()
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("repo.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let by_key = RepoKeys::new(Arc::clone(&storage), KeySource::KeyFile(key_file.clone()));
    let error = format!("{:#}", by_key.for_writing().unwrap_err());
    assert_eq!(
        error,
        format!(
            "repository {}'s keyring (generation 1) is opened by a passphrase (passphrase_file, passphrase_command or TIDEMARK_PASSPHRASE), which key_file {} is not: configure that kind of source",
            keyring.repository_id(),
            key_file.display()
        )
    );
    let failing = RepoKeys::new(
        Arc::clone(&storage),
        KeySource::PassphraseCommand("exit 3".into()),
    );
    assert_eq!(
        format!("{:#}", failing.for_writing().unwrap_err()),
        "passphrase_command exited with status 3: fix the command (its output is not shown, as it may hold the passphrase)"
    );
    let empty = memory();
    assert_eq!(
        format!("{:#}", keys(&empty, "one").for_reading(1).unwrap_err()),
        format!(
            "the repository in {} has no keyring (_keys/keyring.*): create it with `tidemark stanza-create`",
            empty.location()
        )
    );
}

#[test]
fn a_key_file_repository_needs_no_derivation_and_changes_to_a_new_key_file() {
    let storage = memory();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("repo.key");
    std::fs::write(&key_file, "cd".repeat(32)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let by_key = RepoKeys::new(Arc::clone(&storage), KeySource::KeyFile(key_file.clone()));
    let keyring = by_key.create_or_open().unwrap();
    assert_eq!(keyring.document().slots[0].kdf, SlotKdf::KeyFile);
    let new_key = Secret::Key(Zeroizing::new([9u8; 32]));
    let change = by_key.change_secret(&new_key).unwrap();
    assert_eq!(change.keyring.generation(), 2);
    let old = RepoKeys::new(Arc::clone(&storage), KeySource::KeyFile(key_file.clone()));
    assert!(
        format!("{:#}", old.for_writing().unwrap_err()).starts_with("the secret from key_file"),
    );
    std::fs::write(&key_file, "09".repeat(32)).unwrap();
    let new = RepoKeys::new(Arc::clone(&storage), KeySource::KeyFile(key_file));
    assert!(same_key(
        keyring.current(),
        new.for_writing().unwrap().current()
    ));
}

#[test]
fn rotation_reaches_writers_within_their_interval_and_readers_at_once() {
    let storage = memory();
    let admin = keys(&storage, "one");
    admin.create_or_open().unwrap();
    let patient_writer = keys(&storage, "one").with_refresh_interval(Duration::from_secs(3600));
    let eager_writer = keys(&storage, "one").with_refresh_interval(Duration::ZERO);
    let reader = keys(&storage, "one");
    assert_eq!(patient_writer.for_writing().unwrap().current().id(), 1);
    assert_eq!(eager_writer.for_writing().unwrap().current().id(), 1);
    assert_eq!(reader.for_reading(1).unwrap().generation(), 1);

    let change = admin.rotate().unwrap();
    assert!(change.warnings.is_empty(), "{:?}", change.warnings);
    let rotated = change.keyring;
    assert_eq!((rotated.generation(), rotated.current().id()), (2, 2));
    let entries = &rotated.document().keys;
    assert!(entries[0].superseded.is_some() && entries[1].superseded.is_none());
    // The old generation is deleted: the newest holds everything.
    assert_eq!(stored_generations(storage.as_ref()), vec![2]);

    assert_eq!(patient_writer.for_writing().unwrap().current().id(), 1);
    assert_eq!(eager_writer.for_writing().unwrap().current().id(), 2);
    let for_key_2 = reader.for_reading(2).unwrap();
    assert!(same_key(rotated.current(), for_key_2.data_key(2).unwrap()));
    assert!(same_key(
        for_key_2.data_key(1).unwrap(),
        rotated.data_key(1).unwrap()
    ));
    let error = format!("{:#}", reader.for_reading(7).unwrap_err());
    assert_eq!(
        error,
        format!(
            "repository {}'s keyring (generation 2) has no data key 7: the object was not sealed in this repository (planted, or copied from another one)",
            rotated.repository_id()
        )
    );
}

#[test]
fn a_changed_passphrase_opens_and_the_old_one_no_longer_does() {
    let storage = memory();
    let admin = keys(&storage, "one");
    let before = admin.create_or_open().unwrap();
    admin.rotate().unwrap();
    let change = admin.change_secret(&secret("two")).unwrap();
    assert!(change.warnings.is_empty());
    assert_eq!(change.keyring.generation(), 3);
    assert_eq!(change.keyring.document().operation, "change-passphrase");
    assert_eq!(change.keyring.document().slots.len(), 1);
    assert_eq!(stored_generations(storage.as_ref()), vec![3]);
    let error = format!("{:#}", keys(&storage, "one").for_writing().unwrap_err());
    assert_eq!(
        error,
        format!(
            "the secret from passphrase_command does not open repository {}'s keyring (generation 3): check passphrase_command",
            before.repository_id()
        )
    );
    let reopened = keys(&storage, "two").for_reading(1).unwrap();
    assert!(same_key(before.current(), reopened.data_key(1).unwrap()));
    assert_eq!(reopened.chunk_name_key(), before.chunk_name_key());
    // The process that changed it goes on without deriving again.
    assert_eq!(admin.open_newest().unwrap().generation(), 3);
}

#[test]
fn a_running_writer_follows_a_passphrase_change_without_the_new_passphrase() {
    let storage = memory();
    let admin = keys(&storage, "one");
    admin.create_or_open().unwrap();
    let writer = keys(&storage, "one").with_refresh_interval(Duration::ZERO);
    assert_eq!(writer.for_writing().unwrap().current().id(), 1);
    admin.change_secret(&secret("two")).unwrap();
    admin.rotate().unwrap();
    // Its source still gives "one", which no longer opens the keyring; the key-encryption key
    // it holds does.
    let followed = writer.for_writing().unwrap();
    assert_eq!((followed.generation(), followed.current().id()), (3, 2));
    assert!(keys(&storage, "one").for_writing().is_err());
}

#[test]
fn retire_refuses_the_current_a_recent_or_a_used_key_and_writes_nothing() {
    let storage = memory();
    let admin = keys(&storage, "one");
    admin.create_or_open().unwrap();
    let rotated = admin.rotate().unwrap().keyring;
    let superseded = chrono::DateTime::parse_from_rfc3339(
        rotated.document().keys[0].superseded.as_deref().unwrap(),
    )
    .unwrap()
    .with_timezone(&Utc);
    let later = superseded + chrono::Duration::minutes(11);
    let unused = |_: &Keyring| Ok(());
    let refused = |id, now| format!("{:#}", admin.retire(id, now, unused).unwrap_err());
    let repository = rotated.repository_id().to_owned();
    assert_eq!(
        refused(2, later),
        format!(
            "data key 2 is the current key of repository {repository}: run `tidemark key rotate` first, and retire it once nothing uses it; nothing changed"
        )
    );
    assert_eq!(
        refused(5, later),
        format!(
            "repository {repository} has no data key 5: `tidemark key list` shows its keys; nothing changed"
        )
    );
    assert_eq!(
        refused(1, superseded + chrono::Duration::minutes(9)),
        "data key 1 stopped being current less than 10 minutes ago: a running writer may still seal with it; retire it later; nothing changed"
    );
    let used = admin
        .retire(1, later, |_| {
            anyhow::bail!("key 1 still encrypts 3 objects")
        })
        .unwrap_err();
    assert_eq!(format!("{used:#}"), "key 1 still encrypts 3 objects");
    assert_eq!(stored_generations(storage.as_ref()), vec![2]);

    let reader = keys(&storage, "one");
    reader.for_reading(1).unwrap();
    let retired = admin.retire(1, later, unused).unwrap().keyring;
    assert_eq!(retired.generation(), 3);
    assert!(retired.data_key(1).is_none() && retired.is_retired(1));
    assert_eq!(retired.document().retired[0].id, 1);
    assert_eq!(
        refused(1, later),
        format!("data key 1 of repository {repository} is already retired; nothing changed")
    );
    // A reader that still holds generation 2 learns of the retirement when it reloads.
    reader.for_reading(2).unwrap();
    let fresh = keys(&storage, "one");
    assert!(
        format!("{:#}", fresh.for_reading(1).unwrap_err())
            .starts_with("data key 1 was retired from repository")
    );
}

#[test]
fn a_lost_create_race_opens_the_winners_keyring() {
    let storage = memory();
    let winner = keys(&storage, "one").create_or_open().unwrap();
    // The loser decided to create before the winner's put was visible.
    let loser = keys(&storage, "one");
    let opened = loser.create(&mut loser.state()).unwrap();
    assert_eq!(opened.repository_id(), winner.repository_id());
    assert_eq!(stored_generations(storage.as_ref()), vec![1]);
    // With another passphrase, the loser is told it does not open.
    let other = keys(&storage, "two");
    let error = format!("{:#}", other.create(&mut other.state()).unwrap_err());
    assert!(
        error.starts_with("the secret from passphrase_command does not open"),
        "{error}"
    );
}

#[test]
fn a_lost_rotation_race_writes_nothing() {
    let storage = memory();
    let first = keys(&storage, "one");
    let second = keys(&storage, "one");
    first.create_or_open().unwrap();
    let stale = second.open_newest().unwrap();
    first.rotate().unwrap();
    let error = second
        .commit(stale.rotated(Utc::now()), "rotating")
        .unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        "the keyring changed while rotating (generation 2 was written by another process); nothing written: run again"
    );
    let newest = keys(&storage, "one").open_newest().unwrap();
    assert_eq!((newest.generation(), newest.current().id()), (2, 2));
}

#[test]
fn a_failed_put_leaves_the_old_generation_in_force() {
    let faulty = Arc::new(FaultyStorage::new(MemoryStorage::new(), FaultPlan::none()));
    let storage: Arc<dyn Storage> = faulty.clone();
    let admin = keys(&storage, "one");
    let first = admin.create_or_open().unwrap();
    let next = first.rotated(Utc::now());
    faulty.set_plan(FaultPlan {
        after_effect: false,
        ..FaultPlan::failing(1.0, 16)
    });
    let error = format!("{:#}", admin.commit(next, "rotating").unwrap_err());
    assert!(
        error.contains("injected fault before the operation"),
        "{error}"
    );
    faulty.set_plan(FaultPlan::none());
    let newest = keys(&storage, "one").open_newest().unwrap();
    assert_eq!((newest.generation(), newest.current().id()), (1, 1));

    // A put whose answer is lost took effect: the new generation is in force, whole.
    let next = first.rotated(Utc::now());
    faulty.set_plan(FaultPlan {
        before_effect: false,
        ..FaultPlan::failing(1.0, 16)
    });
    assert!(admin.commit(next, "rotating").is_err());
    faulty.set_plan(FaultPlan::none());
    let newest = keys(&storage, "one").open_newest().unwrap();
    assert_eq!((newest.generation(), newest.current().id()), (2, 2));
    assert!(faulty.counts().failures() >= 2);
}

#[test]
fn an_altered_keyring_is_refused() {
    let storage = memory();
    let keyring = keys(&storage, "one").create_or_open().unwrap();
    keys(&storage, "one").rotate().unwrap();
    // Someone with write access but no key makes key 1 current again in a newer generation.
    let mut altered = keys(&storage, "one")
        .open_newest()
        .unwrap()
        .document()
        .clone();
    altered.generation = 3;
    altered.current = 1;
    storage
        .put_if_absent(&store::keyring_key(3), &[&altered.to_bytes()])
        .unwrap();
    let error = format!("{:#}", keys(&storage, "one").for_writing().unwrap_err());
    assert_eq!(
        error,
        format!(
            "repository {}'s keyring (generation 3) fails its MAC: it was altered after it was written; restore _keys/ from a copy",
            keyring.repository_id()
        )
    );
    let garbage = ObjectKey::new("_keys/keyring.0000000004").unwrap();
    storage.put_if_absent(&garbage, &[b"{}"]).unwrap();
    let error = format!("{:#}", keys(&storage, "one").for_writing().unwrap_err());
    let expected = format!(
        "read _keys/keyring.0000000004 from {}: keyring generation 4 is not a keyring",
        storage.location()
    );
    assert!(error.starts_with(&expected), "{error}");
}

#[test]
fn a_keyring_whose_mac_is_spelled_in_capitals_is_refused() {
    let written = memory();
    let keyring = keys(&written, "one").create_or_open().unwrap();
    // The same document with the same MAC bytes, spelled in capitals, stored in another place:
    // it is not the text its writer made, so it does not open.
    let mut altered = keyring.document().clone();
    altered.mac = altered.mac.to_uppercase();
    assert_ne!(altered.mac, keyring.document().mac);
    let copy = memory();
    copy.put_if_absent(&store::keyring_key(1), &[&altered.to_bytes()])
        .unwrap();
    let error = format!("{:#}", keys(&copy, "one").for_writing().unwrap_err());
    assert!(error.contains("(generation 1) fails its MAC"), "{error}");
    // The unaltered copy opens: the refusal is the spelling's.
    let faithful = memory();
    faithful
        .put_if_absent(&store::keyring_key(1), &[&keyring.document().to_bytes()])
        .unwrap();
    keys(&faithful, "one").for_writing().unwrap();
}

#[test]
fn stanzas_are_registered_once_each() {
    let storage = memory();
    let keys = keys(&storage, "one");
    assert!(keys.registered_stanzas().unwrap().is_empty());
    keys.register_stanza("main").unwrap();
    keys.register_stanza("main").unwrap();
    keys.register_stanza("replica-2").unwrap();
    assert_eq!(
        keys.registered_stanzas().unwrap(),
        vec!["main", "replica-2"]
    );
    assert!(keys.register_stanza("_keys").is_err());
    // Registrations are not keyrings.
    assert!(!keyring_exists(storage.as_ref()).unwrap());
}

#[test]
fn nothing_secret_is_printed() {
    let command = KeySource::PassphraseCommand("vault read -token=s.hunter2 x".to_owned());
    assert_eq!(format!("{command:?}"), "PassphraseCommand(<redacted>)");
    let storage = memory();
    let keyring = keys(&storage, "hunter2").create_or_open().unwrap();
    let shown = format!("{keyring:?} {:?}", secret("hunter2"));
    assert!(!shown.contains("hunter2"), "{shown}");
    let name_key_hex = super::wrap::to_hex(keyring.chunk_name_key());
    assert!(!shown.contains(&name_key_hex));
    let stored = String::from_utf8(keyring.document().to_bytes()).unwrap();
    assert!(!stored.contains(&name_key_hex) && !stored.contains("hunter2"));
}

#[test]
fn the_keys_can_be_shared_by_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<RepoKeys>();
    shared::<Keyring>();
}

#[test]
fn a_keyring_for_tests_answers_as_an_opened_one() {
    let keyring = Keyring::for_tests(
        &"ab".repeat(16),
        [3u8; 32],
        vec![DataKey::new(1, [1u8; 32]), DataKey::new(2, [2u8; 32])],
        2,
    );
    assert_eq!(keyring.current().id(), 2);
    assert_eq!(keyring.data_key(1).unwrap().id(), 1);
    assert!(keyring.data_key(3).is_none());
    assert_eq!(keyring.chunk_name_key(), &[3u8; 32]);
}
