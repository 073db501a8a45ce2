//! The S3 keys from a named profile of the AWS shared files, against a real S3-compatible server
//! (`s3s-fs`). Each mistake is one line and exit 1.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use common::Ran;
use common::s3::{ACCESS_KEY, BUCKET, SECRET_KEY, start_server};
use tidemark::demo::cluster::{ThrowawayCluster, give_to_owner, owner_command};
use tidemark::demo::lab::Lab;

/// Runs `tidemark --config CONFIG args` as the cluster owner with only the AWS variables in
/// `env` (none of the caller's).
fn tidemark(lab: &Lab, env: &[(&str, &str)], args: &[&str]) -> Ran {
    let mut command = owner_command(&lab.bin_dir.join("tidemark"), lab.tmp.path());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    let output = command
        .envs(env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))))
        .arg("--config")
        .arg(&lab.config_path)
        .args(args)
        .env_remove("TIDEMARK_CONFIG")
        .env_remove("TIDEMARK_STANZA")
        .output()
        .expect("run tidemark");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Writes the lab's configuration: a bucket on `endpoint`, keys from `source`. It holds no
/// secret, so it may be readable by others.
fn configure(lab: &Lab, endpoint: &str, source: &str, pgdata: &Path) {
    fs::write(
        &lab.config_path,
        format!(
            "[repo]\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\npath_style = true\n{source}\n\n[stanza.main]\npgdata = \"{}\"\n",
            pgdata.display()
        ),
    )
    .unwrap();
    give_to_owner(&lab.config_path).unwrap();
}

/// A file the cluster owner can read.
fn write_owned(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    give_to_owner(path).unwrap();
}

#[test]
fn a_profile_gives_the_keys_and_each_mistake_in_it_is_one_line() {
    let server = start_server();
    let lab = Lab::new("tm-s3creds-", &common::binaries()).unwrap();
    let cluster = ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
    configure(
        &lab,
        &server.endpoint,
        "profile = \"archiver\"",
        cluster.data_dir(),
    );
    let credentials = lab.tmp.path().join("aws-credentials");
    let config = lab.tmp.path().join("aws-config");
    let env = [
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
    ];
    let profile = |name: &str, secret: &str| {
        format!(
            "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n[{name}]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {secret}\n"
        )
    };
    let (credentials_shown, config_shown) = (credentials.display(), config.display());
    let cases = [
        (
            None,
            format!(
                "[repo] profile = \"archiver\", but neither {credentials_shown} nor {config_shown} exists: write the profile's keys to the first, or set AWS_SHARED_CREDENTIALS_FILE to the file that has them"
            ),
        ),
        (
            Some(profile("archiver", "not-the-secret")),
            "access denied: no message (SignatureDoesNotMatch); check the keys and the bucket's policy".to_owned(),
        ),
        (
            Some(profile("other", SECRET_KEY)),
            format!(
                "profile 'archiver' is in neither {credentials_shown} nor {config_shown} (they have: default, other): add a [archiver] section with its keys to the first, or fix [repo] profile"
            ),
        ),
        (
            Some("[archiver]\nregion = us-east-1\n".to_owned()),
            format!(
                "profile 'archiver' in {credentials_shown} has no aws_access_key_id and aws_secret_access_key: add both"
            ),
        ),
    ];
    for (file, expected) in cases {
        let _ = fs::remove_file(&credentials);
        if let Some(text) = &file {
            write_owned(&credentials, text);
        }
        let ran = tidemark(&lab, &env, &["stanza-create"]);
        assert_eq!(ran.code, Some(1), "{file:?}: {ran:?}");
        let line = ran.only_line();
        assert!(line.ends_with(&expected), "{file:?}: {line}");
    }

    // The profile may also be a `[profile NAME]` section of the config file.
    fs::remove_file(&credentials).unwrap();
    write_owned(
        &config,
        &format!(
            "[profile archiver]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    );
    let created = tidemark(&lab, &env, &["stanza-create"]);
    assert_eq!(created.code, Some(0), "{created:?}");
    assert!(created.stdout.starts_with("stanza 'main' created in s3://"));
    let info = tidemark(&lab, &env, &["info"]);
    assert_eq!(info.code, Some(0), "{info:?}");
    assert!(info.stdout.contains("stanza: main"), "{info:?}");
}
