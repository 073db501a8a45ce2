//! Every bad input to the hot-path binaries gets exit code 1, exactly one error line that says
//! what is wrong and what to do, and leaves the repository exactly as it was; the cases that are
//! not errors (a byte-identical duplicate, a file that is not archived) behave as PostgreSQL needs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Ran, WalLab, first_record, run, snapshot};
use tidemark::repo::object::HEADER_LEN;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The uid the binaries run as: PostgreSQL's user when the tests run as root.
fn runner_uid() -> u32 {
    if rustix::process::geteuid().is_root() {
        let out = std::process::Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    } else {
        rustix::process::geteuid().as_raw()
    }
}

/// Runs `tidemark-archive path` with the lab's configuration, as archive_command does.
fn archive(wal: &WalLab, path: &Path) -> Ran {
    let args = ["--config", wal.config(), s(path)];
    run(&wal.lab, "tidemark-archive", &args)
}

/// Runs `tidemark-restore name destination` with the lab's configuration, as restore_command
/// does.
fn restore(wal: &WalLab, name: &str, destination: &Path) -> Ran {
    let args = ["--config", wal.config(), name, s(destination)];
    run(&wal.lab, "tidemark-restore", &args)
}

/// [`common::refused`] for `tidemark-archive path`, whose error line names the file and then `why`.
fn archive_refused(wal: &WalLab, path: &Path, why: &str) {
    let args = ["--config", wal.config(), s(path)];
    let expected = format!("tidemark-archive: ERROR: archive {}: {why}", path.display());
    common::refused(&wal.lab, "tidemark-archive", &args, &expected);
}

#[test]
fn wrong_arguments_and_configuration_are_refused() {
    let wal = WalLab::new("tm-args-");
    let config = wal.config();
    let segment = wal.segment_path(0);
    let segment = s(&segment);
    let restore_extra = [
        "--config",
        config,
        "000000010000000000000001",
        "pg_wal/RECOVERYXLOG",
        "extra",
    ];
    for (program, args, expected) in [
        (
            "tidemark-archive",
            &[][..],
            "tidemark-archive: ERROR: the following required arguments were not provided: <WAL_PATH>; run 'tidemark-archive --help' for usage",
        ),
        (
            "tidemark-archive",
            &["--config", config, segment, "extra"],
            "tidemark-archive: ERROR: unexpected argument 'extra' found; run 'tidemark-archive --help' for usage",
        ),
        (
            "tidemark-restore",
            &["--config", config, "000000010000000000000001"],
            "tidemark-restore: ERROR: the following required arguments were not provided: <DESTINATION>; run 'tidemark-restore --help' for usage",
        ),
        (
            "tidemark-restore",
            &restore_extra,
            "tidemark-restore: ERROR: unexpected argument 'extra' found; run 'tidemark-restore --help' for usage",
        ),
        (
            "tidemark-archive",
            &["--config", "/nonexistent/tidemark.toml", segment],
            "tidemark-archive: ERROR: cannot read config file /nonexistent/tidemark.toml: No such file or directory (os error 2); pass --config FILE or set TIDEMARK_CONFIG",
        ),
    ] {
        common::refused(&wal.lab, program, args, expected);
    }

    let bad_config = wal.lab.tmp.path().join("bad.toml");
    let good_text = fs::read_to_string(&wal.lab.config_path).unwrap();
    fs::write(
        &bad_config,
        good_text.replace("[repo]\n", "[repo]\ncompresss = \"zstd\"\n"),
    )
    .unwrap();
    common::refused(
        &wal.lab,
        "tidemark-archive",
        &["--config", s(&bad_config), segment],
        &format!(
            "tidemark-archive: ERROR: config file {}: line 2: unknown key `compresss`, expected one of `type`, `path`, `bucket`, `prefix`, `endpoint`, `region`, `path_style`, `access_key_id`, `secret_access_key`, `profile`, `credentials`, `storage_class`, `sse`, `multipart_part_size`, `account`, `container`, `account_key_file`, `sas_token_file`, `use_managed_identity`, `managed_identity_client_id`, `compress`, `compress_level`, `cipher`, `passphrase_file`, `passphrase_command`, `key_file`",
            bad_config.display()
        ),
    );
    common::refused(
        &wal.lab,
        "tidemark-archive",
        &["--config", config, "--stanza", "mian", segment],
        &format!(
            "tidemark-archive: ERROR: config file {config}: stanza 'mian' is not in the config file (it has: main): fix --stanza or add a [stanza.mian] section"
        ),
    );

    let empty_repo_config = wal.lab.tmp.path().join("empty-repo.toml");
    let empty_repo = wal.lab.tmp.path().join("empty-repo");
    fs::write(
        &empty_repo_config,
        good_text.replace(s(&wal.lab.repo_path), s(&empty_repo)),
    )
    .unwrap();
    common::refused(
        &wal.lab,
        "tidemark-archive",
        &["--config", s(&empty_repo_config), segment],
        &format!(
            "tidemark-archive: ERROR: stanza 'main' does not exist in repository {}: run 'tidemark stanza-create' for it first",
            empty_repo.display()
        ),
    );
    assert!(!empty_repo.exists(), "a failed push created the repository");
}

#[test]
fn files_that_are_not_this_clusters_wal_are_refused() {
    let wal = WalLab::new("tm-files-");
    let segments = wal.segments();
    let real = fs::read(wal.raw.join(&segments[1])).unwrap();

    let missing = wal.lab.tmp.path().join("pg_wal/000000010000000000000042");
    archive_refused(
        &wal,
        &missing,
        "it does not exist: archive_command must pass %p, the path PostgreSQL gives relative to its data directory",
    );

    let truncated = wal.file_named(&segments[1], &real[..real.len() / 2]);
    archive_refused(
        &wal,
        &truncated,
        "it is 524288 bytes long, but this cluster's WAL segments are 1048576 bytes: the file is truncated or not a WAL segment",
    );

    let mut rng = fastrand::Rng::with_seed(7);
    let random: Vec<u8> = (0..real.len()).map(|_| rng.u8(..)).collect();
    let random_file = wal.file_named(&segments[1], &random);
    archive_refused(
        &wal,
        &random_file,
        &format!(
            "it is not a WAL segment: its first page starts with {:#06X}, PostgreSQL 15 pages start with 0xD110",
            u16::from_le_bytes([random[0], random[1]])
        ),
    );

    let next_name = wal.file_named(&segments[2], &real);
    let expected_lsn = |name: &str| {
        let segno = u64::from_str_radix(&name[8..16], 16).unwrap() * 4096
            + u64::from_str_radix(&name[16..24], 16).unwrap();
        let lsn = segno << 20;
        format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
    };
    archive_refused(
        &wal,
        &next_name,
        &format!(
            "the page at {} says it is at {}: the file does not hold segment {} (renamed, recycled or copied over)",
            expected_lsn(&segments[2]),
            expected_lsn(&segments[1]),
            segments[2]
        ),
    );

    let lower = segments[1]
        .to_ascii_lowercase()
        .replace(&segments[1][..8], "0000000a");
    let lowercase = wal.file_named(&lower, &real);
    archive_refused(
        &wal,
        &lowercase,
        &format!(
            "'{lower}' is not a WAL file name: PostgreSQL writes its hexadecimal digits in upper case ('{}')",
            lower.to_ascii_uppercase()
        ),
    );
    for malformed in [
        "RECOVERYXLOG",
        "000000010000000000000001.gz",
        "0000000100000000000000012",
        "00000001000000000000000G",
    ] {
        let path = wal.file_named(malformed, &real);
        archive_refused(
            &wal,
            &path,
            &format!(
                "'{malformed}' is not a WAL file name: expected a 24-digit segment name, NNNNNNNN.history, <segment>.partial or <segment>.NNNNNNNN.backup"
            ),
        );
    }

    let bad_history = wal.file_named("00000002.history", b"garbage\n");
    archive_refused(
        &wal,
        &bad_history,
        "it is not a valid timeline history file: line 1 is not 'timeline<TAB>LSN<TAB>reason': \"garbage\"",
    );

    // A segment of another cluster: initdb writes its first segment.
    let other =
        testkit::ThrowawayCluster::init(&wal.lab.pg, wal.lab.tmp.path(), "other", 1).unwrap();
    let other_name = fs::read_dir(other.data_dir().join("pg_wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.len() == 24)
        .expect("initdb leaves a segment in pg_wal");
    let other_segment = fs::read(other.data_dir().join("pg_wal").join(&other_name)).unwrap();
    let other_id = u64::from_le_bytes(other_segment[24..32].try_into().unwrap());
    assert_ne!(other_id, wal.system_id);
    let foreign = wal.file_named(&other_name, &other_segment);
    archive_refused(
        &wal,
        &foreign,
        &format!(
            "it belongs to another cluster: its system identifier is {other_id}, the stanza is bound to {}; check --stanza and --config in archive_command",
            wal.system_id
        ),
    );
}

#[test]
fn damaged_wal_is_refused_with_the_lsn_named() {
    let wal = WalLab::new("tm-damaged-");
    let name = &wal.segments()[1];
    let real = fs::read(wal.raw.join(name)).unwrap();
    let segment_start = {
        let segno = u64::from_str_radix(&name[8..16], 16).unwrap() * 4096
            + u64::from_str_radix(&name[16..24], 16).unwrap();
        segno << 20
    };
    let lsn = |offset: usize| {
        let at = segment_start + offset as u64;
        format!("{:X}/{:X}", at >> 32, at & 0xFFFF_FFFF)
    };

    // One byte flipped inside a record: its CRC no longer matches.
    let (record, _) = first_record(&real);
    let mut flipped = real.clone();
    flipped[record + 24] ^= 0x01;
    let path = wal.file_named(name, &flipped);
    let before = snapshot(&wal.lab.repo_path);
    let ran = archive(&wal, &path);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let line = ran.only_line();
    assert!(
        line.starts_with(&format!(
            "tidemark-archive: ERROR: archive {}: the record at {} fails its CRC",
            path.display(),
            lsn(record)
        )),
        "{line}"
    );
    assert!(
        snapshot(&wal.lab.repo_path) == before,
        "a refused push changed the repository"
    );

    // A page in the middle zeroed: WAL after it cannot belong there.
    let mut zeroed = real.clone();
    zeroed[64 * 8192..65 * 8192].fill(0);
    if zeroed[65 * 8192..].iter().all(|&b| b == 0) {
        panic!("the test segment must have WAL after page 64");
    }
    let first_nonzero = 65 * 8192 + zeroed[65 * 8192..].iter().position(|&b| b != 0).unwrap();
    let path = wal.file_named(name, &zeroed);
    archive_refused(
        &wal,
        &path,
        &format!(
            "it has non-zero bytes at {}, after the zero-filled end of its WAL at {}",
            lsn(first_nonzero),
            lsn(64 * 8192)
        ),
    );
}

#[test]
fn duplicates_succeed_only_with_identical_content() {
    let wal = WalLab::new("tm-dup-");
    let config = wal.config();
    let name = &wal.segments()[1];
    let original = wal.raw.join(name);
    let pushed = archive(&wal, &original);
    assert_eq!(pushed.code, Some(0), "{pushed:?}");

    let before = snapshot(&wal.lab.repo_path);
    // `tidemark archive-push` is the same code.
    for (program, args) in [
        ("tidemark-archive", &["--config", config, s(&original)][..]),
        (
            "tidemark",
            &["--config", config, "archive-push", s(&original)],
        ),
    ] {
        let again = run(&wal.lab, program, args);
        assert_eq!(again.code, Some(0), "{again:?}");
        assert_eq!(
            again.only_line(),
            format!(
                "{program}: WARN: {name} was already archived in stanza 'main' with identical content; nothing was written"
            )
        );
        assert!(snapshot(&wal.lab.repo_path) == before);
    }

    // Same cluster, valid WAL, other content.
    let original_bytes = fs::read(&original).unwrap();
    let original_crc = crc32c::crc32c(&original_bytes);
    let changed = common::with_other_content(&original_bytes);
    let changed_path = wal.file_named(name, &changed);
    archive_refused(
        &wal,
        &changed_path,
        &format!(
            "it is already archived with different content: archived copy CRC-32C {original_crc:08x} (1048576 bytes), this file CRC-32C {:08x} (1048576 bytes); the archived copy is kept. Two clusters may be archiving to one stanza, or this file was damaged",
            crc32c::crc32c(&changed)
        ),
    );

    // History files follow the same rule.
    let history = wal.file_named(
        "00000002.history",
        b"1\t0/3000000\tno recovery target specified\n",
    );
    assert_eq!(archive(&wal, &history).code, Some(0));
    assert_eq!(archive(&wal, &history).code, Some(0));
    let other_history = wal.file_named(
        "00000002.history",
        b"1\t0/3000001\tno recovery target specified\n",
    );
    let ran = archive(&wal, &other_history);
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.only_line()
            .contains("it is already archived with different content"),
        "{ran:?}"
    );
}

#[test]
fn an_unwritable_repository_is_named() {
    let wal = WalLab::new("tm-ro-");
    let segment = wal.segment_path(1);
    let stanza_dir = wal.lab.repo_path.join("main");
    fs::set_permissions(&stanza_dir, fs::Permissions::from_mode(0o555)).unwrap();
    archive_refused(
        &wal,
        &segment,
        &format!(
            "store it in the repository: create directory {}/wal/{}: permission denied; the repository must be readable and writable by the user running this command (uid {})",
            stanza_dir.display(),
            &wal.segments()[1][..16],
            runner_uid()
        ),
    );
    fs::set_permissions(&stanza_dir, fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(archive(&wal, &segment).code, Some(0));
}

#[test]
fn restore_hands_over_only_verified_files() {
    let wal = WalLab::new("tm-get-");
    let config = wal.config();
    let name = &wal.segments()[1];
    let original = fs::read(wal.raw.join(name)).unwrap();
    assert_eq!(archive(&wal, &wal.raw.join(name)).code, Some(0));
    let pg_wal = wal.lab.tmp.subdir("pg_wal").unwrap();
    let destination = pg_wal.join("RECOVERYXLOG");

    // `tidemark archive-get` is the same code.
    for (program, args) in [
        (
            "tidemark-restore",
            &["--config", config, name, s(&destination)][..],
        ),
        (
            "tidemark",
            &["--config", config, "archive-get", name, s(&destination)],
        ),
    ] {
        let ran = run(&wal.lab, program, args);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        assert_eq!(fs::read(&destination).unwrap(), original);
        fs::remove_file(&destination).unwrap();
    }

    // Not archived: exit 1, an INFO line, no ERROR, nothing written.
    let ran = restore(&wal, "00000002.history", &destination);
    assert_eq!(ran.code, Some(1));
    assert_eq!(
        ran.only_line(),
        "tidemark-restore: INFO: 00000002.history is not in the archive of stanza 'main'"
    );
    assert!(!destination.exists());

    // A damaged object: exit 1, the object named, %p never created.
    let key = format!("main/wal/{}/{name}", &name[..16]);
    let object_path = wal.lab.repo_path.join(&key);
    let mut object = fs::read(&object_path).unwrap();
    let stored_crc = u32::from_le_bytes(object[36..40].try_into().unwrap());
    object[HEADER_LEN + 10] ^= 0x01;
    fs::write(&object_path, &object).unwrap();
    common::refused(
        &wal.lab,
        "tidemark-restore",
        &["--config", config, name, s(&destination)],
        &format!(
            "tidemark-restore: ERROR: restore {name}: archived object {key} in {} is damaged; nothing was written to {}: its stored bytes are damaged: CRC-32C {:08x}, the header says {stored_crc:08x}",
            wal.lab.repo_path.display(),
            destination.display(),
            crc32c::crc32c(&object[HEADER_LEN..])
        ),
    );
    assert!(!destination.exists());
    let leftovers: Vec<_> = fs::read_dir(&pg_wal).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left in pg_wal: {leftovers:?}"
    );

    // A damaged header is caught too.
    object[HEADER_LEN + 10] ^= 0x01;
    object[20] ^= 0x01;
    fs::write(&object_path, &object).unwrap();
    let ran = restore(&wal, name, &destination);
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.only_line()
            .ends_with("its header is damaged (header checksum mismatch)"),
        "{ran:?}"
    );
    assert!(!destination.exists());

    common::refused(
        &wal.lab,
        "tidemark-restore",
        &["--config", config, "RECOVERYXLOG", s(&destination)],
        "tidemark-restore: ERROR: restore RECOVERYXLOG: 'RECOVERYXLOG' is not a WAL file name: expected a 24-digit segment name, NNNNNNNN.history, <segment>.partial or <segment>.NNNNNNNN.backup",
    );
}
