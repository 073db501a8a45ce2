//! `tidemark check` against real stores: each thing it checks, broken on purpose, is one line
//! naming what to fix and exit 1, and with everything right it passes and leaves no probe.
//! S3 runs on s3s-fs; the local cases run as the cluster's owner, as PostgreSQL would.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::Ran;
use common::s3::{ACCESS_KEY, BUCKET, S3ConfigLab, SECRET_KEY};
use testkit::Lab;
use testkit::ThrowawayCluster;
use tidemark::storage::{Cancel, ObjectKey, Storage};

/// Writes the lab's configuration with `repo` as the `[repo]` section, with the file's `mode`.
fn configure(lab: &Lab, pgdata: &Path, repo: &str, mode: u32) {
    common::write_config_file(
        &lab.config_path,
        &format!(
            "[repo]\n{repo}\n[stanza.{}]\npgdata = \"{}\"\n",
            lab.stanza,
            pgdata.display()
        ),
        mode,
    );
}

fn tidemark(lab: &Lab, command: &str) -> Ran {
    let config = lab.config_path.display().to_string();
    common::run(lab, "tidemark", &["--config", &config, command])
}

/// Asserts `check` failed with one line containing `expected`.
fn assert_refused(ran: &Ran, expected: &str, case: &str) {
    assert_eq!(ran.code, Some(1), "{case}: {ran:?}");
    let line = ran.only_line_after_retries();
    assert!(line.contains(expected), "{case}: {line}");
}

#[test]
fn check_names_each_broken_s3_setting_and_passes_when_all_is_right() {
    let s3 = S3ConfigLab::new(|| Lab::new("tm-check-s3-", &common::binaries()).unwrap());
    let (lab, endpoint, nowhere) = (&s3.lab, &s3.server.endpoint, &s3.nowhere);
    let pgdata = s3.cluster.data_dir().to_owned();
    let repo = |bucket: &str, endpoint: &str, secret: &str| {
        format!(
            "type = \"s3\"\nregion = \"us-east-1\"\npath_style = true\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{secret}\"\n"
        )
    };
    let cases = [
        (
            repo(BUCKET, endpoint, "not-the-secret"),
            0o600,
            "access denied",
        ),
        (
            repo("no-such-bucket", endpoint, SECRET_KEY),
            0o600,
            "no bucket 'no-such-bucket'",
        ),
        (
            repo(BUCKET, nowhere, SECRET_KEY),
            0o600,
            "cannot reach the endpoint",
        ),
        (
            repo(BUCKET, endpoint, SECRET_KEY),
            0o644,
            "readable by others (mode 0644): chmod 600 it",
        ),
    ];
    for (section, mode, expected) in &cases {
        configure(lab, &pgdata, section, *mode);
        assert_refused(&tidemark(lab, "check"), expected, section);
    }

    configure(lab, &pgdata, &repo(BUCKET, endpoint, SECRET_KEY), 0o600);
    let before_stanza = tidemark(lab, "check");
    assert_refused(
        &before_stanza,
        "run 'tidemark stanza-create' for it first",
        "no stanza yet",
    );
    assert_eq!(before_stanza.stdout.lines().count(), 2, "{before_stanza:?}");

    let created = tidemark(lab, "stanza-create");
    assert_eq!(created.code, Some(0), "{created:?}");
    let passed = tidemark(lab, "check");
    assert_eq!(passed.code, Some(0), "{passed:?}");
    assert!(passed.stderr.is_empty(), "{passed:?}");
    let lines: Vec<&str> = passed.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{passed:?}");
    assert!(
        lines.iter().all(|line| line.starts_with("ok: ")),
        "{lines:?}"
    );
    assert!(lines[1].contains("create-only"), "{lines:?}");

    // The probes were all deleted, the missing bucket was not created, and only the stanza
    // identity is in the bucket.
    let bucket = common::s3::test_bucket(&s3.server, "");
    let probes = bucket
        .list(&ObjectKey::new("_check").unwrap(), &Cancel::never())
        .unwrap();
    assert!(probes.is_empty(), "probes left behind: {probes:?}");
    let stanza = bucket
        .list(&ObjectKey::new(&lab.stanza).unwrap(), &Cancel::never())
        .unwrap();
    assert_eq!(stanza.len(), 1, "{stanza:?}");
}

#[test]
fn check_names_each_broken_local_setting_and_passes_when_all_is_right() {
    let lab = Lab::new("tm-check-local-", &common::binaries()).unwrap();
    let cluster = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
    let other = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "other", 1).unwrap();
    let repo_path = |path: &Path| format!("path = \"{}\"\n", path.display());

    let a_file = lab.tmp.path().join("a-file");
    fs::write(&a_file, b"not a directory").unwrap();
    configure(
        &lab,
        cluster.data_dir(),
        &repo_path(&a_file.join("repo")),
        0o600,
    );
    assert_refused(
        &tidemark(&lab, "check"),
        "is not a directory",
        "repo under a file",
    );

    // A directory the cluster owner cannot write to: read-only for everyone, whoever owns it
    // (root, when the tests run as root and the owner is postgres; the owner itself otherwise).
    let locked = lab.tmp.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    configure(&lab, cluster.data_dir(), &repo_path(&locked), 0o600);
    assert_refused(
        &tidemark(&lab, "check"),
        "permission denied",
        "unwritable repo",
    );

    // Retention settings are checked when the file is loaded, so check names a mistake in them.
    let retention_mistake = format!("{}[retention]\ntime = \"35\"\n", repo_path(&lab.repo_path));
    configure(&lab, cluster.data_dir(), &retention_mistake, 0o600);
    let refused = tidemark(&lab, "check");
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert_eq!(
        refused.only_line(),
        format!(
            "tidemark: ERROR: config file {}: retention.time \"35\" has no unit: write a whole number and one of s, m, h, d, w, such as \"35d\"",
            lab.config_path.display()
        )
    );

    configure(&lab, cluster.data_dir(), &repo_path(&lab.repo_path), 0o600);
    assert_eq!(tidemark(&lab, "stanza-create").code, Some(0));
    let passed = tidemark(&lab, "check");
    assert_eq!(passed.code, Some(0), "{passed:?}");
    assert_eq!(passed.stdout.lines().count(), 4, "{passed:?}");
    assert!(
        fs::read_dir(lab.repo_path.join("_check"))
            .map(|entries| entries.count())
            .unwrap_or(0)
            == 0,
        "a probe was left in the repository"
    );

    // The stanza is the first cluster's; pointing pgdata at another cluster is caught.
    configure(&lab, other.data_dir(), &repo_path(&lab.repo_path), 0o600);
    assert_refused(
        &tidemark(&lab, "check"),
        "is not the one stanza 'main' serves",
        "another cluster",
    );
}

#[test]
fn check_opens_the_keyring_of_an_encrypted_repository() {
    let lab = Lab::new("tm-check-keys-", &common::binaries()).unwrap();
    let cluster = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
    let key_file = |name: &str, hex: &str| {
        let path = lab.tmp.path().join(name);
        common::write_config_file(&path, &format!("{hex}\n"), 0o600);
        path
    };
    let right = key_file("right.key", &"5a".repeat(32));
    let wrong = key_file("wrong.key", &"a5".repeat(32));
    let encrypted = |key: &Path| {
        format!(
            "path = \"{}\"\ncipher = \"aes-256-gcm\"\nkey_file = \"{}\"\n",
            lab.repo_path.display(),
            key.display()
        )
    };
    configure(&lab, cluster.data_dir(), &encrypted(&right), 0o600);
    assert_eq!(tidemark(&lab, "stanza-create").code, Some(0));
    let passed = tidemark(&lab, "check");
    assert_eq!(passed.code, Some(0), "{passed:?}");
    let opened = passed.stdout.lines().nth(3).unwrap_or_default();
    assert!(
        opened.starts_with("ok: the repository's key opens keyring ")
            && opened.ends_with("; new objects are sealed with data key 1"),
        "{passed:?}"
    );
    configure(&lab, cluster.data_dir(), &encrypted(&wrong), 0o600);
    assert_refused(
        &tidemark(&lab, "check"),
        "does not open repository",
        "the wrong key file",
    );
}
