//! The test container of an Azurite server ([`testkit::servers::azurite`]) as Tidemark sees it:
//! the `[repo]` lines that reach it, its settings, and a client of the test's own.

use std::path::Path;
use std::time::Duration;

use tidemark::storage::azure::MIN_BLOCK_SIZE;
use tidemark::storage::{
    AzureCredentials, AzureSettings, AzureStorage, Cancel, ObjectKey, Storage,
};

// Re-exported: the tests reach the server through here; each uses its own subset.
#[allow(unused_imports)]
pub use testkit::servers::azurite::{ACCOUNT, ACCOUNT_KEY, AzuriteServer, start_azurite};

/// The container the tests use.
pub const CONTAINER: &str = "pg-archive";

/// Writes the development account's key to `path`, mode `mode`, for `account_key_file`.
pub fn write_key_file(path: &Path, key: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
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
