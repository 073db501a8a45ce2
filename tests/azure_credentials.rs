//! The other sources of Azure access, end to end: a SAS token (made here with the development
//! account's key, as `az storage account generate-sas` would) works on Azurite, and one that
//! has expired or may not write is refused with the 403 explained; a managed identity's token,
//! from a stand-in instance metadata service on loopback, is what the requests carry, and a
//! service that does not answer fails the store's start in bounded time with one line.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::azure::{ACCOUNT, account_sas, start_azurite, test_container, test_settings};
use tidemark::storage::{AzureCredentials, AzureStorage, Cancel, ObjectKey, PutOutcome, Storage};

fn key(text: &str) -> ObjectKey {
    ObjectKey::new(text).unwrap()
}

fn sas_store(server: &common::azure::AzuriteServer, token: &str) -> AzureStorage {
    let mut settings = test_settings(&server.blob_endpoint, "sas");
    settings.credentials = AzureCredentials::sas(token).unwrap();
    AzureStorage::new(settings).unwrap()
}

#[test]
fn a_sas_token_works_and_an_expired_or_read_only_one_is_refused() {
    let server = start_azurite();
    test_container(&server, "");
    let store = sas_store(&server, &account_sas("b", "racwdl", "2099-01-01T00:00:00Z"));
    store.check_reachable().unwrap();
    let big = vec![7u8; 3 << 20];
    for (name, bytes) in [("a/small", &b"small"[..]), ("a/big", &big[..])] {
        assert_eq!(
            store.put_if_absent(&key(name), &[bytes]).unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            store.put_if_absent(&key(name), &[bytes]).unwrap(),
            PutOutcome::AlreadyExists
        );
        assert!(store.get(&key(name)).unwrap() == bytes);
    }
    assert_eq!(store.list(&key("a"), &Cancel::never()).unwrap().len(), 2);
    store.delete_all(&[key("a/small"), key("a/big")]).unwrap();
    assert!(store.list(&key("a"), &Cancel::never()).unwrap().is_empty());

    let expired = sas_store(&server, &account_sas("b", "racwdl", "2001-01-01T00:00:00Z"));
    let err = expired.put_if_absent(&key("a/x"), &[b"x"]).unwrap_err();
    assert!(err.is_permission_denied() && !err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .ends_with("or that the SAS token in sas_token_file is whole and not expired"),
        "{err}"
    );
    let read_only = sas_store(&server, &account_sas("b", "rl", "2099-01-01T00:00:00Z"));
    read_only.check_reachable().unwrap();
    let err = read_only.put_if_absent(&key("a/x"), &[b"x"]).unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    assert!(
        err.to_string().contains("must be allowed to read, add, create, write, delete and list blobs in container 'pg-archive'"),
        "{err}"
    );
    assert_eq!(
        test_container(&server, "sas").head(&key("a/x")).unwrap(),
        None
    );
}

/// A one-request-per-connection HTTP server on loopback that records each request's head and
/// answers it with `answer(head)`.
fn stand_in(
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&heads);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let reply = answer(&head);
            recorded.lock().unwrap().push(head);
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (port, heads)
}

#[test]
fn a_managed_identitys_token_is_asked_for_and_sent_and_a_silent_service_fails_in_time() {
    // The instance metadata service's stand-in gives a token valid for an hour.
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let (imds, imds_heads) = stand_in(move |_| {
        let body = format!(
            r#"{{"access_token":"the-token","expires_on":"{expires}","token_type":"Bearer"}}"#
        );
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    });
    // The blob service's stand-in: no such blob.
    let (blobs, blob_heads) = stand_in(|_| {
        "HTTP/1.1 404 The specified blob does not exist.\r\nx-ms-error-code: BlobNotFound\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
    });
    // SAFETY: this test file's only other test does not read the environment.
    unsafe {
        std::env::set_var(
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
            format!("http://127.0.0.1:{imds}"),
        )
    };
    let mut settings = test_settings(&format!("http://127.0.0.1:{blobs}/{ACCOUNT}"), "");
    settings.credentials = AzureCredentials::ManagedIdentity {
        client_id: Some("the-client".into()),
    };
    let store = AzureStorage::new(settings.clone()).unwrap();
    assert_eq!(store.head(&key("a/b")).unwrap(), None);
    let asked = imds_heads.lock().unwrap().clone();
    assert_eq!(
        asked.len(),
        1,
        "one token for the start and the request: {asked:?}"
    );
    assert!(asked[0].starts_with("GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com%2F&client_id=the-client HTTP/1.1"), "{}", asked[0]);
    assert!(
        asked[0].to_ascii_lowercase().contains("metadata: true"),
        "{}",
        asked[0]
    );
    let sent = blob_heads.lock().unwrap().clone();
    assert!(
        sent[0].starts_with(&format!("HEAD /{ACCOUNT}/pg-archive/a/b HTTP/1.1")),
        "{}",
        sent[0]
    );
    assert!(
        sent[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer the-token"),
        "{}",
        sent[0]
    );

    // A service that takes the connection and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut sink = [0; 1024];
            let _ = stream.read(&mut sink);
            held.push(stream);
        }
    });
    // SAFETY: as above.
    unsafe {
        std::env::set_var(
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
            format!("http://127.0.0.1:{silent_port}"),
        )
    };
    let started = Instant::now();
    let err = AzureStorage::new(settings).err().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        err.to_string(),
        format!(
            "get an Azure Storage token from the instance metadata service at http://127.0.0.1:{silent_port}: no answer within 5 s; use_managed_identity = true needs an Azure machine with a managed identity allowed to use the container (elsewhere give account_key_file or sas_token_file)"
        )
    );
    let _ = TcpStream::connect(("127.0.0.1", silent_port));
}
