//! Tampering with an encrypted repository is refused, naming the object, and nothing reaches
//! PostgreSQL. A real PostgreSQL 15 cluster archives into a local repository encrypted with a key
//! file, is backed up, writes WAL over many segments, and stops; its backup is restored. Then,
//! on five segments recovery needs: one bit of the stored object flipped; the object cut at a
//! boundary of its encrypted chunks; both again with the header's length and checksums redone
//! (as anyone who can write to the bucket can), so that only authentication can catch them;
//! another segment's valid object copied over its name. Each is refused by `tidemark-restore`
//! called by hand (exit 1, one line naming the object key and saying each thing once, nothing
//! written at `%p`), and as PostgreSQL's `restore_command` during archive recovery, where the
//! exit code must be 128 (fatal: recovery stops there, neither taking the segment for "not
//! archived", exit 1, nor promoting); fixed, recovery resumes and reaches exactly the primary's
//! content. Apart, a backup chunk's object replaced by another chunk's: `tidemark restore` fails
//! naming that chunk and leaves the data directory incomplete and unstartable. And, for
//! comparison, the swap in an unencrypted repository, where no cipher binds an object to its
//! name but the segment's page headers name it.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::encryption::{with_key_file, write_key_file};
use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::{Lab, ThrowawayCluster, run_as_owner};

/// What pgbench leaves in the database, compared between primary and restored copy.
const CONTENT: &str = "SELECT (SELECT count(*) || '/' || sum(abalance) FROM pgbench_accounts) || ' ' || \
     (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history)";

/// The encrypted frame's header, and each encrypted chunk's plaintext and tag
/// (docs/repository-format.md).
const HEADER_LEN: usize = 96;
const SEALED_CHUNK_LEN: usize = 64 * 1024 + 16;

/// What archive recovery's one error line ends with when `tidemark-restore` stops it.
const STOPS_RECOVERY: &str = "; archive recovery stops here (exit code 128) rather than take this for the end of the archive and promote: fix the cause and start the server again, and recovery resumes where it stopped";

/// One way of damaging a segment's stored object.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// One bit of the encrypted body flipped, as storage could.
    Flip,
    /// Cut after a whole number of encrypted chunks, before the last, as storage could.
    Truncate,
    /// [`Damage::Flip`] with what the header checks without a key redone, as anyone who can
    /// write to the repository could: only authentication can catch it.
    FlipForged,
    /// [`Damage::Truncate`] with the header's length and checksums redone: only authentication
    /// can catch it (the length is authenticated with every chunk, and STREAM marks the last).
    TruncateForged,
    /// Another segment's valid object under this segment's name.
    Swap,
}

/// Redoes what an encrypted object's header checks without a key: the stored length, the
/// CRC-32C of the stored bytes and the header's own CRC-32C.
fn with_checksums_redone(mut object: Vec<u8>) -> Vec<u8> {
    let stored = (object.len() - HEADER_LEN) as u64;
    object[24..32].copy_from_slice(&stored.to_le_bytes());
    let stored_crc = crc32c::crc32c(&object[HEADER_LEN..]);
    object[36..40].copy_from_slice(&stored_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&object[..92]);
    object[92..96].copy_from_slice(&header_crc.to_le_bytes());
    object
}

/// A damaged object and how to undo the damage.
struct Damaged {
    segment: String,
    key: String,
    path: PathBuf,
    good: Vec<u8>,
}

impl Damaged {
    /// Damages the object of `segment` in the lab's repository; `other` is the segment whose
    /// object a swap copies over it.
    fn new(lab: &Lab, damage: Damage, segment: &str, other: &str) -> Damaged {
        let key = segment_key(segment);
        let path = lab.repo_path.join(&key);
        let good = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            good.len() > HEADER_LEN + SEALED_CHUNK_LEN,
            "{key} has one chunk"
        );
        let flipped = || {
            let mut bad = good.clone();
            let at = HEADER_LEN + fastrand::usize(..good.len() - HEADER_LEN);
            bad[at] ^= 1 << fastrand::u8(..8);
            bad
        };
        let truncated = || {
            let chunks = (good.len() - HEADER_LEN).div_ceil(SEALED_CHUNK_LEN);
            good[..HEADER_LEN + SEALED_CHUNK_LEN * (chunks / 2).max(1)].to_vec()
        };
        let bad = match damage {
            Damage::Flip => flipped(),
            Damage::Truncate => truncated(),
            Damage::FlipForged => with_checksums_redone(flipped()),
            Damage::TruncateForged => with_checksums_redone(truncated()),
            Damage::Swap => fs::read(lab.repo_path.join(segment_key(other))).unwrap(),
        };
        println!(
            "{damage:?}: {key} ({} bytes, now {})",
            good.len(),
            bad.len()
        );
        fs::write(&path, &bad).unwrap();
        Damaged {
            segment: segment.to_owned(),
            key,
            path,
            good,
        }
    }

    fn undo(&self) {
        fs::write(&self.path, &self.good).unwrap();
    }
}

/// A one-line error says each thing once: none of its `: `-separated parts (of more than a few
/// words) comes twice.
fn says_each_thing_once(line: &str) {
    let parts: Vec<&str> = line.split(": ").filter(|part| part.len() > 24).collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "the error says {part:?} twice: {line}"
        );
    }
}

/// The key of a segment's object in the lab's stanza.
fn segment_key(segment: &str) -> String {
    format!("main/wal/{}/{segment}", &segment[..16])
}

/// A primary archiving into a repository encrypted with a key file, with pgbench's tables and
/// a backup.
fn encrypted_primary_with_backup(lab: &Lab) -> ThrowawayCluster {
    let key_file = write_key_file(lab, "repo.key");
    let options = PrimaryOptions::default().repo_extra(&with_key_file(&key_file));
    let primary = archiving_primary(lab, &options).unwrap();
    common::wait_ok(common::pgbench(&primary, &["-i", "-q", "-s", "2"]));
    common::backups::take_backup(lab);
    primary
}

/// [`encrypted_primary_with_backup`], 3000 pgbench transactions archived after the backup,
/// stopped; the backup restored into `<lab>/restored`. Returns the content recovery must reach,
/// the data directory and the segments of the plan, in order.
fn restored_after_workload(lab: &Lab) -> (String, PathBuf, Vec<String>) {
    let mut primary = encrypted_primary_with_backup(lab);
    common::wait_ok(common::pgbench(&primary, &["-n", "-c", "2", "-t", "1500"]));
    testkit::switch_and_wait_for_archive(&primary).unwrap();
    let content = primary.query(CONTENT).unwrap();
    primary.stop().unwrap();
    let pgdata = lab.tmp.path().join("restored");
    lab.tidemark(&["restore", "--pgdata", pgdata.to_str().unwrap()])
        .unwrap();
    let plan: Vec<String> = fs::read_to_string(pgdata.join("pg_wal/.tidemark/restore/main/plan"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        plan.len() >= 8,
        "the plan is too short for this test: {plan:?}"
    );
    (content, pgdata, plan)
}

/// `tidemark-restore` by hand, outside any recovery: exit 1 and one line naming the object,
/// and nothing in the destination's directory.
fn refused_by_hand(lab: &Lab, damaged: &Damaged) {
    let scratch = lab.tmp.path().join(format!("by-hand-{}", damaged.segment));
    fs::create_dir(&scratch).unwrap();
    testkit::give_to_owner(&scratch).unwrap();
    let destination = scratch.join("RECOVERYXLOG");
    let ran = common::run(
        lab,
        "tidemark-restore",
        &[
            "--config",
            lab.config_path.to_str().unwrap(),
            "--stanza",
            "main",
            &damaged.segment,
            destination.to_str().unwrap(),
        ],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let line = ran.only_line();
    println!("by hand: {line}");
    assert!(
        line.starts_with(&format!(
            "tidemark-restore: ERROR: restore {}: ",
            damaged.segment
        )) && line.contains(&damaged.key),
        "{line}"
    );
    says_each_thing_once(line);
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "a refused restore left files in {}",
        scratch.display()
    );
}

/// Starts `cluster` (recovering through `tidemark-restore`) and waits until it stops again,
/// failing at once if it promotes; returns what it logged meanwhile.
fn start_until_it_stops(cluster: &mut ThrowawayCluster) -> String {
    let from = fs::metadata(cluster.log_file()).map_or(0, |m| m.len()) as usize;
    // A recovery that fails before consistency makes `pg_ctl start` fail too: the log says why.
    let _ = cluster.start();
    let deadline = Instant::now() + common::PATIENCE;
    let pid_file = cluster.data_dir().join("postmaster.pid");
    loop {
        let log = fs::read(cluster.log_file()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log[from.min(log.len())..]).into_owned();
        assert!(
            !log.contains("selected new timeline ID"),
            "the server promoted instead of stopping:\n{log}"
        );
        if !pid_file.exists() {
            return log;
        }
        assert!(Instant::now() < deadline, "the server did not stop:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server's recovery stopped at the damaged segment with exit code 128 and one Tidemark
/// error naming the object, and nothing of that segment is in pg_wal.
fn assert_stopped_at(lab: &Lab, cluster: &ThrowawayCluster, log: &str, damaged: &Damaged) {
    let segment = &damaged.segment;
    assert!(
        log.contains(&format!(
            "FATAL:  could not restore file \"{segment}\" from archive: child process exited with exit code 128"
        )),
        "PostgreSQL did not stop at {segment}:\n{log}"
    );
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("tidemark") && l.contains(": ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!("tidemark-restore: ERROR: restore {segment}: "))
            && errors[0].contains(&damaged.key)
            && errors[0].ends_with(STOPS_RECOVERY),
        "{}",
        errors[0]
    );
    println!("in recovery: {}", errors[0]);
    says_each_thing_once(errors[0]);
    assert!(!log.contains("archive recovery complete"), "{log}");
    let pg_wal = cluster.data_dir().join("pg_wal");
    for name in [segment.as_str(), "RECOVERYXLOG"] {
        assert!(!pg_wal.join(name).exists(), "pg_wal/{name} was written");
    }
    let control = run_as_owner(
        &lab.pg.path("pg_controldata"),
        &[cluster.data_dir().as_os_str()],
        lab.tmp.path(),
    )
    .unwrap();
    assert!(
        control.contains("Database cluster state:               in archive recovery"),
        "{control}"
    );
}

#[test]
fn damaged_truncated_and_swapped_segments_stop_recovery_naming_the_object() {
    common::seed_randomness();
    let lab = Lab::new("tm-enc-tamper-", &common::binaries()).unwrap();
    let (expected, pgdata, plan) = restored_after_workload(&lab);

    // Five segments recovery needs, in plan order; the swap copies the last one over its own.
    let at = |sixth: usize| plan[sixth * plan.len() / 6].clone();
    let last = plan[plan.len() - 1].clone();
    let damaged = [
        Damaged::new(&lab, Damage::Flip, &at(1), ""),
        Damaged::new(&lab, Damage::Truncate, &at(2), ""),
        Damaged::new(&lab, Damage::FlipForged, &at(3), ""),
        Damaged::new(&lab, Damage::TruncateForged, &at(4), ""),
        Damaged::new(&lab, Damage::Swap, &at(5), &last),
    ];
    for one in &damaged {
        refused_by_hand(&lab, one);
    }

    let mut restored =
        ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", pgdata).unwrap();
    restored
        .configure(&[("restore_command", &lab.restore_command())])
        .unwrap();
    for one in &damaged {
        let log = start_until_it_stops(&mut restored);
        assert_stopped_at(&lab, &restored, &log, one);
        one.undo();
    }
    restored.start().unwrap();
    restored.wait_for_promotion(common::PATIENCE).unwrap();
    assert_eq!(restored.query(CONTENT).unwrap(), expected);
    assert_eq!(common::tidemark_errors(&restored).len(), damaged.len());
    restored.stop().unwrap();
}

/// A chunk's object replaced by another chunk's: `tidemark restore` names the chunk and
/// leaves the directory incomplete and unstartable.
#[test]
fn a_chunk_replaced_by_another_chunk_fails_restore_naming_it() {
    common::seed_randomness();
    let lab = Lab::new("tm-enc-chunk-", &common::binaries()).unwrap();
    let mut primary = encrypted_primary_with_backup(&lab);
    testkit::switch_and_wait_for_archive(&primary).unwrap();
    primary.stop().unwrap();
    let lab = &lab;
    let mut chunks: Vec<PathBuf> = common::snapshot(&lab.repo_path.join("main/blob"))
        .into_keys()
        .filter(|path| path.is_file())
        .collect();
    chunks.sort();
    assert!(chunks.len() > 10, "{chunks:?}");
    let replaced = &chunks[fastrand::usize(..chunks.len())];
    let other = chunks
        .iter()
        .find(|c| *c != replaced && fs::metadata(c).unwrap().len() > 0)
        .unwrap();
    fs::copy(other, replaced).unwrap();
    let key = replaced.strip_prefix(&lab.repo_path).unwrap();
    println!("chunk {} replaced by {}", key.display(), other.display());

    let pgdata = lab.tmp.path().join("restored-chunk");
    let ran = common::run_restore(lab, &lab.config_path, &pgdata, &[]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let line = ran.only_line();
    println!("restore: {line}");
    says_each_thing_once(line);
    assert!(
        line.starts_with("tidemark: ERROR: restore: write ")
            && line.contains(&format!("{} ", key.display()))
            && line.ends_with(&format!(
                "; {} is left incomplete and cannot be started (its global/pg_control is written last): restore again with --delta or --force once the cause is fixed",
                pgdata.display()
            )),
        "{line}"
    );
    common::backups::assert_incomplete_and_unstartable(lab, &pgdata);
}

// Without a cipher nothing binds an object to its name, but a segment names itself: every page
// header holds its address. A valid object of another segment under this one's name must still
// be refused (by hand: exit 1), never handed to PostgreSQL, whose archive recovery would take
// the wrong page addresses for the end of WAL and promote early (as it did before main's
// 876aa69: `tidemark-restore` exited 0, and a recovery through it logged "unexpected pageaddr",
// ended redo there and promoted onto timeline 2 without the rest of the archive).
#[test]
fn in_an_unencrypted_repository_a_segment_copied_over_another_is_refused_naming_the_object() {
    let wal = common::WalLab::new("tm-plain-swap-");
    let config = wal.config();
    let segments = wal.segments();
    let (source, target) = (&segments[1], &segments[2]);
    for segment in [source, target] {
        let pushed = common::run(
            &wal.lab,
            "tidemark-archive",
            &["--config", config, wal.raw.join(segment).to_str().unwrap()],
        );
        assert_eq!(pushed.code, Some(0), "{pushed:?}");
    }
    let damaged = Damaged {
        segment: target.clone(),
        key: segment_key(target),
        path: wal.lab.repo_path.join(segment_key(target)),
        good: fs::read(wal.lab.repo_path.join(segment_key(target))).unwrap(),
    };
    fs::copy(wal.lab.repo_path.join(segment_key(source)), &damaged.path).unwrap();
    refused_by_hand(&wal.lab, &damaged);
}
