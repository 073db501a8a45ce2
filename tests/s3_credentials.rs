//! The S3 keys' other sources against a real S3-compatible server (`s3s-fs`): a named profile of
//! the AWS shared credentials file, and `credentials = "instance"` with a stand-in for the EC2
//! instance metadata service on loopback (pointed at by `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
//! Each mistake is one line and exit 1; no metadata service means a quick failure, not a hang.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::Ran;
use common::s3::{ACCESS_KEY, BUCKET, SECRET_KEY, start_server, unused_port};
use testkit::Lab;
use testkit::{ThrowawayCluster, give_to_owner, owner_command};

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
fn a_profile_or_the_instance_role_gives_the_keys_and_each_profile_mistake_is_one_line() {
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
            "access denied: SignatureDoesNotMatch; check the keys and the bucket's policy"
                .to_owned(),
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

    // The instance's role, from a metadata service that hands out the same keys.
    let metadata = MetadataService::start();
    configure(
        &lab,
        &server.endpoint,
        "credentials = \"instance\"",
        cluster.data_dir(),
    );
    let info = tidemark(
        &lab,
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &metadata.endpoint)],
        &["info"],
    );
    assert_eq!(info.code, Some(0), "{info:?}");
    assert!(info.stdout.contains("stanza: main"), "{info:?}");
}

#[test]
fn without_a_metadata_service_instance_credentials_fail_at_once_in_one_line() {
    let lab = Lab::new("tm-s3imds-", &common::binaries()).unwrap();
    let nowhere = format!("http://127.0.0.1:{}", unused_port());
    // The bucket's endpoint is closed too: the keys are needed before it is asked anything.
    configure(
        &lab,
        &format!("http://127.0.0.1:{}", unused_port()),
        "credentials = \"instance\"",
        &lab.tmp.path().join("no-cluster"),
    );
    let started = Instant::now();
    let ran = tidemark(
        &lab,
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &nowhere)],
        &["info"],
    );
    let took = started.elapsed();
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let line = ran.only_line();
    assert!(
        line.starts_with(&format!(
            "tidemark: ERROR: get S3 credentials from the EC2 instance metadata service at {nowhere}: "
        )),
        "{line}"
    );
    assert!(
        line.ends_with(
            "credentials = \"instance\" needs an EC2 instance with an IAM role (elsewhere give keys or a profile)"
        ),
        "{line}"
    );
    // The fetch gives up after 5 s at most; the rest is slack for a loaded machine.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// A stand-in for the EC2 instance metadata service (IMDSv2): a session token for a PUT, then
/// the role's name and its keys (those of the test server) for GETs that carry the token.
struct MetadataService {
    endpoint: String,
}

impl MetadataService {
    const TOKEN: &str = "test-token";
    const ROLE: &str = "tidemark-role";

    fn start() -> MetadataService {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        // Lives as long as the test process; each connection is one request.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let _ = MetadataService::answer(stream.unwrap());
            }
        });
        MetadataService { endpoint }
    }

    fn answer(mut stream: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let mut token = None;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("x-aws-ec2-metadata-token")
            {
                token = Some(value.trim().to_owned());
            }
        }
        let mut words = request_line.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let role_path = format!("/latest/meta-data/iam/security-credentials/{}", Self::ROLE);
        let keys = format!(
            r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{ACCESS_KEY}","SecretAccessKey":"{SECRET_KEY}","Token":"session","Expiration":"2099-01-01T00:00:00Z"}}"#
        );
        let authorized = token.as_deref() == Some(Self::TOKEN);
        let (status, extra, body) = match (method, path) {
            ("PUT", "/latest/api/token") => (
                "200 OK",
                "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n",
                Self::TOKEN.to_owned(),
            ),
            ("GET", "/latest/meta-data/iam/security-credentials/") if authorized => {
                ("200 OK", "", Self::ROLE.to_owned())
            }
            ("GET", path) if authorized && path == role_path => ("200 OK", "", keys),
            ("GET", _) if !authorized => ("401 Unauthorized", "", String::new()),
            _ => ("404 Not Found", "", String::new()),
        };
        write!(
            stream,
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}
