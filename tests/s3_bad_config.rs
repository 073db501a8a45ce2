//! A repository on S3 that is configured wrong is refused with one line that says what is wrong
//! and what to check, exit 1: a wrong secret, an endpoint where nothing listens, and a
//! configuration file with the secret that others can read. (A missing bucket is in
//! `tests/check_command.rs`: s3s-fs creates a bucket's directory on the first PutObject, where S3
//! and MinIO answer NoSuchBucket, so only `tidemark check`'s HeadBucket tells it.)

mod common;

use common::s3::{ACCESS_KEY, BUCKET, S3ConfigLab, SECRET_KEY};
use testkit::Lab;

/// Writes the lab's configuration for a bucket, with the file's `mode`.
fn configure(lab: &Lab, pgdata: &std::path::Path, repo: &str, mode: u32) {
    common::write_config_file(
        &lab.config_path,
        &format!(
            "[repo]\ntype = \"s3\"\nregion = \"us-east-1\"\npath_style = true\n{repo}\n[stanza.main]\npgdata = \"{}\"\n",
            pgdata.display()
        ),
        mode,
    );
}

#[test]
fn each_wrong_s3_setting_is_one_line_and_exit_1() {
    let s3 = S3ConfigLab::new(|| Lab::new("tm-s3bad-", &common::binaries()).unwrap());
    let (lab, endpoint, nowhere) = (&s3.lab, &s3.server.endpoint, &s3.nowhere);
    let pgdata = s3.cluster.data_dir().to_owned();
    let keys = |secret: &str| {
        format!("access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{secret}\"\n")
    };
    let config_path = lab.config_path.display().to_string();
    let cases = [
        (
            format!(
                "bucket = \"{BUCKET}\"\nendpoint = \"{endpoint}\"\n{}",
                keys("not-the-secret")
            ),
            0o600,
            "access denied",
        ),
        (
            format!(
                "bucket = \"{BUCKET}\"\nendpoint = \"{nowhere}\"\n{}",
                keys(SECRET_KEY)
            ),
            0o600,
            "cannot reach the endpoint",
        ),
        (
            format!(
                "bucket = \"{BUCKET}\"\nendpoint = \"{endpoint}\"\n{}",
                keys(SECRET_KEY)
            ),
            0o644,
            "but is readable by others (mode 0644): chmod 600 it",
        ),
    ];
    for (repo, mode, expected) in cases {
        configure(lab, &pgdata, &repo, mode);
        let ran = common::run(
            lab,
            "tidemark",
            &["--config", &config_path, "stanza-create"],
        );
        assert_eq!(ran.code, Some(1), "{repo}: {ran:?}");
        let line = ran.only_line_after_retries();
        assert!(line.contains(expected), "{repo}: {line}");
    }
    // With everything right, the same command works.
    configure(
        lab,
        &pgdata,
        &format!(
            "bucket = \"{BUCKET}\"\nendpoint = \"{endpoint}\"\n{}",
            keys(SECRET_KEY)
        ),
        0o600,
    );
    let ran = common::run(
        lab,
        "tidemark",
        &["--config", &config_path, "stanza-create"],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
}
