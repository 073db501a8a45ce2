//! The test container of an Azurite server ([`testkit::servers::azurite`]) as Tidemark sees it:
//! the `[repo]` lines that reach it, its settings, and a client of the test's own.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::time::Duration;

use tidemark::storage::azure::MIN_BLOCK_SIZE;
use tidemark::storage::{
    AzureCredentials, AzureSettings, AzureStorage, Cancel, ObjectKey, Storage,
};

// Re-exported: the tests reach the server through here; each uses its own subset.
#[allow(unused_imports)]
pub use testkit::servers::azurite::{ACCOUNT, ACCOUNT_KEY, AzuriteServer, start_azurite};

/// An account SAS for `services` (`b` blob, `t` table) with permissions `permissions`,
/// expiring at `expiry` (version 2020-08-04's string to sign), made with the development
/// account's key as `az storage account generate-sas` would; with its leading `?`.
pub fn account_sas(services: &str, permissions: &str, expiry: &str) -> String {
    let version = "2020-08-04";
    let text = format!("{ACCOUNT}\n{permissions}\n{services}\nsco\n\n{expiry}\n\n\n{version}\n");
    let key = STANDARD.decode(ACCOUNT_KEY).unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let signature = STANDARD.encode(aws_lc_rs::hmac::sign(&key, text.as_bytes()).as_ref());
    let signature: String =
        percent_encoding::utf8_percent_encode(&signature, percent_encoding::NON_ALPHANUMERIC)
            .collect();
    format!("?sv={version}&ss={services}&srt=sco&sp={permissions}&se={expiry}&sig={signature}")
}

/// The container the tests use.
pub const CONTAINER: &str = "pg-archive";

/// Writes `key` to `path` for `account_key_file`, mode `mode`, owned by the cluster's owner
/// (who runs Tidemark in the tests, as PostgreSQL would).
pub fn write_key_file(path: &Path, key: &str, mode: u32) {
    testkit::owner::write_owned_file(path, &format!("{key}\n"), mode).unwrap();
}

/// The `[repo]` lines of a repository in the test container at `endpoint`, under `prefix` (none
/// when empty), its key read from `key_file`.
pub fn repo_section(endpoint: &str, prefix: &str, key_file: &Path) -> String {
    let prefix_line = if prefix.is_empty() {
        String::new()
    } else {
        format!("prefix = \"{prefix}\"\n")
    };
    format!(
        "type = \"azure\"\naccount = \"{ACCOUNT}\"\ncontainer = \"{CONTAINER}\"\n{prefix_line}endpoint = \"{endpoint}\"\naccount_key_file = \"{}\"\n",
        key_file.display()
    )
}

/// Settings for the test container at `endpoint`, its keys under `prefix`, with the smallest
/// blocks taken (so objects above 1 MiB go up in blocks).
pub fn test_settings(endpoint: &str, prefix: &str) -> AzureSettings {
    AzureSettings {
        account: ACCOUNT.to_owned(),
        container: CONTAINER.to_owned(),
        prefix: prefix.to_owned(),
        endpoint: Some(endpoint.to_owned()),
        credentials: AzureCredentials::account_key(ACCOUNT_KEY).unwrap(),
        block_size: MIN_BLOCK_SIZE,
        request_timeout: Duration::from_secs(30),
    }
}

/// The test container under `prefix`, through a client of the test's own; created if missing.
pub fn test_container(server: &AzuriteServer, prefix: &str) -> AzureStorage {
    let store = AzureStorage::new(test_settings(&server.blob_endpoint, prefix)).unwrap();
    store.create_container().unwrap();
    store
}

/// The keys in the test container under `prefix`.
pub fn keys_under(server: &AzuriteServer, prefix: &str) -> Vec<String> {
    test_container(server, "")
        .list(&ObjectKey::new(prefix).unwrap(), &Cancel::never())
        .unwrap()
        .into_iter()
        .map(|object| object.key.as_str().to_owned())
        .collect()
}

/// What a test of Azure configurations needs: a server with the test container, a lab, a
/// cluster (initialized, not started) whose data directory the configurations name, and an
/// endpoint where nothing listens. Fields drop in order: the cluster before the lab's
/// directory, the server last.
pub struct AzureConfigLab {
    pub cluster: testkit::ThrowawayCluster,
    pub lab: testkit::Lab,
    pub server: AzuriteServer,
    pub nowhere: String,
}

impl AzureConfigLab {
    /// Starts the server and makes the container first, then initializes the cluster in `lab`.
    pub fn new(lab: impl FnOnce() -> testkit::Lab) -> AzureConfigLab {
        let server = start_azurite();
        test_container(&server, "");
        let lab = lab();
        let cluster =
            testkit::ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
        AzureConfigLab {
            cluster,
            lab,
            server,
            nowhere: format!(
                "http://127.0.0.1:{}/{ACCOUNT}",
                testkit::servers::s3s_fs::unused_port()
            ),
        }
    }
}
