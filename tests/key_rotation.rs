//! The keys of an encrypted repository change while it is in use. On a real PostgreSQL 15
//! cluster archiving through `tidemark-archive` into a local repository encrypted with a
//! passphrase file: `tidemark key rotate` while pgbench commits and segments are archived;
//! archiving goes on with no failure, new segments name data key 2, and `verify --output json`
//! counts objects under both keys. Every archived segment comes back with `archive-get`, and a
//! restore of the backup taken before the rotation recovers to the end of the archive, through
//! segments of both keys, to exactly the primary's content. `key retire 1` is refused while key
//! 1 still encrypts objects (one line, exit 1, nothing changed), as is retiring the current key.
//! `key change-passphrase --new-passphrase-file` makes the old passphrase fail with one line,
//! exit 1 and nothing written, and the new one open the repository.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::encryption::{
    data_key_id, random_passphrase, with_passphrase_file, write_passphrase_file,
};
use testkit::steps::{PrimaryOptions, archiving_primary, start_restored};
use testkit::{Lab, ThrowawayCluster};

/// What pgbench leaves in the database, compared between primary and restored copy.
const CONTENT: &str = "SELECT (SELECT count(*) || '/' || sum(abalance) FROM pgbench_accounts) || ' ' || \
     (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history)";

/// The file holding the stored object of segment or history file `name` in the lab's stanza.
fn wal_object(lab: &Lab, name: &str) -> PathBuf {
    let dir = if name.ends_with(".history") {
        "history"
    } else {
        &name[..16]
    };
    lab.repo_path.join("main/wal").join(dir).join(name)
}

/// The data key the stored object of `segment` is sealed with.
fn key_of_segment(lab: &Lab, segment: &str) -> u32 {
    let path = wal_object(lab, segment);
    let object = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    data_key_id(&object).unwrap_or_else(|| panic!("{} is not encrypted", path.display()))
}

/// Switches WAL and waits until the segment it ended is archived, once a second, until one is
/// stored under data key `key`; returns how many segments that took.
fn archive_until_sealed_with(lab: &Lab, primary: &ThrowawayCluster, key: u32) -> usize {
    // Each archive_command call loads the keyring when it starts, or takes it from the key
    // cache, which looks for a newer keyring once a minute: allow a few of those.
    let deadline = Instant::now() + common::PATIENCE * 2;
    for switches in 1.. {
        let segment = testkit::switch_and_wait_for_archive(primary).unwrap();
        if key_of_segment(lab, &segment) == key {
            return switches;
        }
        assert!(
            Instant::now() < deadline,
            "{switches} segments archived since, none under data key {key}; the last, {segment}, is under {}",
            key_of_segment(lab, &segment)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    unreachable!()
}

/// `key rotate` while pgbench commits and WAL is archived; returns the line it printed.
fn rotate_while_archiving(lab: &Lab, primary: &ThrowawayCluster) -> String {
    let noise = || common::pgbench(primary, &["-n", "-c", "2", "-R", "200", "-T", "2"]);
    testkit::pgbench::throughout(primary, 2, noise, || {
        assert_eq!(archive_until_sealed_with(lab, primary, 1), 1);
        let rotated = lab.tidemark(&["key", "rotate"]).unwrap();
        let switches = archive_until_sealed_with(lab, primary, 2);
        println!(
            "{} then {switches} segments until one under key 2",
            rotated.trim()
        );
        archive_until_sealed_with(lab, primary, 2);
        rotated
    })
}

/// The stanza's archived segments, in order.
fn archived_segments(lab: &Lab) -> Vec<String> {
    let mut segments: Vec<String> = common::snapshot(&lab.repo_path.join("main/wal"))
        .into_keys()
        .filter(|path| path.is_file())
        .filter_map(|path| Some(path.file_name()?.to_str()?.to_owned()))
        .filter(|name| common::is_segment_name(name))
        .collect();
    segments.sort();
    segments
}

#[test]
fn rotation_during_archiving_keeps_every_segment_restorable_and_retire_and_passphrase_change_behave()
 {
    common::seed_randomness();
    let lab = Lab::new("tm-key-rotation-", &common::binaries()).unwrap();
    let passphrase = random_passphrase();
    let passphrase_file = write_passphrase_file(&lab, "repo.pass", &passphrase);
    let options = PrimaryOptions::default().repo_extra(&with_passphrase_file(&passphrase_file));
    let mut primary = archiving_primary(&lab, &options).unwrap();
    common::wait_ok(common::pgbench(&primary, &["-i", "-q", "-s", "2"]));
    let before_rotation = common::backups::take_backup(&lab);

    let rotated = rotate_while_archiving(&lab, &primary);
    assert!(
        rotated.starts_with("data key 2 is now current (keyring generation ")
            && rotated.trim_end().ends_with(')')
            && rotated.lines().count() == 1,
        "{rotated}"
    );
    common::backups::take_backup(&lab);
    testkit::switch_and_wait_for_archive(&primary).unwrap();
    assert_eq!(
        primary
            .query("SELECT failed_count FROM pg_stat_archiver")
            .unwrap(),
        "0",
        "archiving failed during the rotation: {}",
        primary.log_tail(10)
    );
    let expected = primary.query(CONTENT).unwrap();
    primary.stop().unwrap();

    let by_key = objects_by_key(&lab);
    every_segment_comes_back(&lab);
    restore_across_the_rotation(&lab, &before_rotation, &expected);
    retiring_a_key_in_use_is_refused(&lab, by_key);
    change_passphrase(&lab, &passphrase_file, &passphrase);
}

/// `verify --output json` counts objects under both data keys, and `key list` shows key 2
/// current and key 1 superseded. Returns the count under key 1.
fn objects_by_key(lab: &Lab) -> u64 {
    let verified: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["verify", "--output", "json"]).unwrap()).unwrap();
    let by_key = &verified["objects_by_key"];
    let count = |id: &str| by_key[id].as_u64().unwrap_or(0);
    assert!(count("1") > 0 && count("2") > 0, "{verified:#}");
    assert_eq!(verified["unencrypted_objects"], 0, "{verified:#}");
    println!("objects by data key: {by_key}");

    let keys: serde_json::Value =
        serde_json::from_str(&lab.tidemark(&["key", "list", "--output", "json"]).unwrap()).unwrap();
    assert_eq!(keys["current"], 2, "{keys:#}");
    let listed = keys["keys"].as_array().unwrap();
    let ids: Vec<u64> = listed.iter().map(|k| k["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2], "{keys:#}");
    assert!(listed[0]["superseded"].is_string(), "{keys:#}");
    assert!(listed[1]["superseded"].is_null(), "{keys:#}");
    count("1")
}

/// `archive-get` of every archived segment succeeds, under either key.
fn every_segment_comes_back(lab: &Lab) {
    let dir = lab.tmp.subdir("fetched").unwrap();
    let segments = archived_segments(lab);
    let keys: BTreeSet<u32> = segments.iter().map(|s| key_of_segment(lab, s)).collect();
    assert_eq!(keys, BTreeSet::from([1, 2]));
    for segment in &segments {
        let destination = dir.join(segment);
        lab.tidemark(&["archive-get", segment, destination.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(fs::metadata(&destination).unwrap().len(), 1 << 20);
    }
    println!("{} segments fetched", segments.len());
}

/// A restore of the backup taken before the rotation replays segments of both keys to the end
/// of the archive and has exactly the primary's content.
fn restore_across_the_rotation(lab: &Lab, label: &str, expected: &str) {
    let pgdata = lab.tmp.path().join("restored");
    lab.tidemark(&[
        "restore",
        "--pgdata",
        pgdata.to_str().unwrap(),
        "--backup",
        label,
    ])
    .unwrap_or_else(|e| panic!("{e:#}"));
    let restored = start_restored(lab, "restored", &[("archive_mode", "off")]).unwrap();
    assert_eq!(restored.query(CONTENT).unwrap(), expected);
    assert_eq!(common::tidemark_errors(&restored), Vec::<String>::new());
    let log = fs::read_to_string(restored.log_file()).unwrap();
    let keys: BTreeSet<u32> = common::fetched_segments(&log)
        .iter()
        .map(|s| key_of_segment(lab, s))
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([1, 2]),
        "keys of the segments replayed"
    );
    common::discard(restored);
}

/// `key retire 1` while key 1 seals `in_use` objects, and `key retire 2` while it is current:
/// one line each, exit 1, the repository (keyring included) unchanged. The objects still using
/// key 1 are the reason given (before the 10-minute grace after the rotation, which would pass
/// by itself), and their count must be the one verify gives.
fn retiring_a_key_in_use_is_refused(lab: &Lab, in_use: u64) {
    let config = lab.config_path.to_str().unwrap();
    let line = common::refusal_in(
        lab,
        &lab.repo_path,
        "tidemark",
        &["--config", config, "key", "retire", "1"],
    );
    let count = line
        .split_once("key 1 still encrypts ")
        .and_then(|(_, rest)| rest.split_once(" objects (first: main/"))
        .map(|(count, _)| count.replace(',', ""));
    let counted = line.ends_with("): expire them first; nothing changed")
        && count == Some(in_use.to_string());
    assert!(
        line.starts_with("tidemark: ERROR: ") && counted,
        "{line} (verify counts {in_use} objects under key 1)"
    );
    let line = common::refusal_in(
        lab,
        &lab.repo_path,
        "tidemark",
        &["--config", config, "key", "retire", "2"],
    );
    assert!(
        line.starts_with("tidemark: ERROR: ") && line.contains("current"),
        "{line}"
    );
}

/// After `key change-passphrase`, the old passphrase is refused by every command (one line,
/// exit 1, no passphrase in it, nothing written) and the new one works.
fn change_passphrase(lab: &Lab, passphrase_file: &Path, old: &str) {
    let new = random_passphrase();
    let new_file = write_passphrase_file(lab, "new.pass", &new);
    let changed = lab
        .tidemark(&[
            "key",
            "change-passphrase",
            "--new-passphrase-file",
            new_file.to_str().unwrap(),
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("change-passphrase: {}", changed.trim());

    let config = lab.config_path.to_str().unwrap();
    let segment = archived_segments(lab).pop().unwrap();
    let destination = lab.tmp.path().join("with-old-passphrase");
    let attempts: [&[&str]; 2] = [
        &["--config", config, "key", "list"],
        &[
            "--config",
            config,
            "archive-get",
            &segment,
            destination.to_str().unwrap(),
        ],
    ];
    for args in attempts {
        let line = common::refusal_in(lab, &lab.repo_path, "tidemark", args);
        assert!(
            line.starts_with("tidemark: ERROR: ")
                && line.contains("passphrase")
                && !line.contains(old)
                && !line.contains(&new),
            "{args:?}: {line}"
        );
    }
    assert!(!destination.exists());

    write_passphrase_file(
        lab,
        passphrase_file.file_name().unwrap().to_str().unwrap(),
        &new,
    );
    lab.tidemark(&["key", "list"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let destination = lab.tmp.path().join("with-new-passphrase");
    lab.tidemark(&["archive-get", &segment, destination.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(fs::metadata(&destination).unwrap().len(), 1 << 20);
}
