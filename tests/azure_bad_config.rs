//! A repository on Azure Blob Storage (Azurite here) that is configured wrong is refused with one
//! line that says what is wrong and what to check, exit 1, and nothing is written: a wrong
//! account key (the 403 explained), a container that does not exist (and is not made), an
//! account key file others can read, an endpoint where nothing listens; and, through the
//! store itself, an endpoint that takes connections and never answers, in bounded time.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::azure::{ACCOUNT_KEY, AzureConfigLab, CONTAINER, keys_under, write_key_file};
use testkit::Lab;
use tidemark::storage::{AzureStorage, ObjectKey, Storage};

/// Writes the lab's configuration for an Azure repository: `repo` lines after the account.
fn configure(lab: &Lab, pgdata: &std::path::Path, repo: &str) {
    common::write_config_file(
        &lab.config_path,
        &format!(
            "[repo]\ntype = \"azure\"\naccount = \"devstoreaccount1\"\n{repo}\n[stanza.main]\npgdata = \"{}\"\n",
            pgdata.display()
        ),
        0o600,
    );
}

#[test]
fn each_wrong_azure_setting_is_one_line_exit_1_and_writes_nothing() {
    let azure = AzureConfigLab::new(|| Lab::new("tm-azbad-", &common::binaries()).unwrap());
    let (lab, endpoint, nowhere) = (&azure.lab, &azure.server.blob_endpoint, &azure.nowhere);
    let pgdata = azure.cluster.data_dir().to_owned();
    let right_key = lab.tmp.path().join("azure.key");
    write_key_file(&right_key, ACCOUNT_KEY, 0o600);
    let wrong_key = lab.tmp.path().join("wrong.key");
    // A key of the right form, not the account's.
    write_key_file(&wrong_key, &ACCOUNT_KEY.replace('E', "F"), 0o600);
    let exposed_key = lab.tmp.path().join("exposed.key");
    write_key_file(&exposed_key, ACCOUNT_KEY, 0o644);
    let repo = |container: &str, endpoint: &str, key: &std::path::Path| {
        format!(
            "container = \"{container}\"\nendpoint = \"{endpoint}\"\naccount_key_file = \"{}\"\n",
            key.display()
        )
    };
    let config_path = lab.config_path.display().to_string();
    let cases = [
        (
            repo(CONTAINER, endpoint, &wrong_key),
            // Azure's code is AuthenticationFailed, Azurite's AuthorizationFailure; the message
            // is the same.
            "Server failed to authenticate the request. Make sure the value of the Authorization header is formed correctly including the signature.); check [repo] account and its key (account_key_file or AZURE_STORAGE_KEY)",
        ),
        (
            repo("no-such-container", endpoint, &right_key),
            "no container 'no-such-container' at",
        ),
        (
            repo(CONTAINER, endpoint, &exposed_key),
            "exposed.key is readable by others (mode 0644): chmod 600 it",
        ),
        (
            repo(CONTAINER, nowhere, &right_key),
            "cannot reach the endpoint",
        ),
    ];
    for (repo, expected) in cases {
        configure(lab, &pgdata, &repo);
        let ran = common::run(
            lab,
            "tidemark",
            &["--config", &config_path, "stanza-create"],
        );
        assert_eq!(ran.code, Some(1), "{repo}: {ran:?}");
        let line = ran.only_line_after_retries();
        assert!(line.contains(expected), "{repo}: {line}");
        assert!(
            keys_under(&azure.server, "main").is_empty(),
            "{repo}: nothing is written"
        );
    }
    // The missing container was not made by the attempt.
    let mut settings = common::azure::test_settings(endpoint, "");
    settings.container = "no-such-container".to_owned();
    let missing = AzureStorage::new(settings).unwrap();
    let err = missing.check_reachable().unwrap_err();
    assert!(err.to_string().contains("no container"), "{err}");
    // With everything right, the same command works, and writes the stanza.
    configure(lab, &pgdata, &repo(CONTAINER, endpoint, &right_key));
    let ran = common::run(
        lab,
        "tidemark",
        &["--config", &config_path, "stanza-create"],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(!keys_under(&azure.server, "main").is_empty());
}

#[test]
fn an_endpoint_that_never_answers_fails_in_bounded_time() {
    // Takes connections and reads what comes, never answering.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut sink = [0; 4096];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    let mut settings =
        common::azure::test_settings(&format!("http://127.0.0.1:{port}/devstoreaccount1"), "");
    settings.request_timeout = Duration::from_secs(1);
    let store = AzureStorage::new(settings).unwrap();
    let started = Instant::now();
    let err = store
        .put_if_absent(&ObjectKey::new("a/b").unwrap(), &[b"x"])
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("cannot reach the endpoint (no answer within 1 s)"),
        "{err}"
    );
    // Five attempts of 1 s, and backoff between them of at most 0.2 + 0.4 + 0.8 + 1.6 s.
    assert!(took >= Duration::from_secs(5), "{took:?}");
    assert!(took < Duration::from_secs(12), "{took:?}");
}
