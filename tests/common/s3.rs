//! The test bucket of an `s3s-fs` server ([`testkit::servers::s3s_fs`]) as Tidemark sees it:
//! the `[repo]` lines that reach it, its settings, and a client of the test's own.

use tidemark::storage::s3::MIN_PART_SIZE;
use tidemark::storage::{Cancel, ObjectKey, S3Credentials, S3Settings, S3Storage, Storage};

// Re-exported: the tests reach the server through here; each uses its own subset.
#[allow(unused_imports)]
pub use testkit::servers::s3s_fs::{
    ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, start_server, unused_port,
};

/// The `[repo]` lines of a repository in the test bucket at `endpoint`, under `prefix` (none
/// when empty), with the test keys. A file holding them must be mode 0600.
pub fn repo_section(endpoint: &str, prefix: &str) -> String {
    let prefix_line = if prefix.is_empty() {
        String::new()
    } else {
        format!("prefix = \"{prefix}\"\n")
    };
    format!(
        "type = \"s3\"\nbucket = \"{BUCKET}\"\n{prefix_line}endpoint = \"{endpoint}\"\nregion = \"us-east-1\"\npath_style = true\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n"
    )
}

/// Settings for the test bucket at `endpoint`, its keys under `prefix`, with the smallest
/// parts S3 takes (so objects above 5 MiB go up in multipart uploads).
pub fn test_settings(endpoint: &str, prefix: &str) -> S3Settings {
    S3Settings {
        bucket: BUCKET.to_owned(),
        prefix: prefix.to_owned(),
        endpoint: Some(endpoint.to_owned()),
        region: "us-east-1".to_owned(),
        path_style: true,
        credentials: S3Credentials::keys(
            ACCESS_KEY.to_owned(),
            SECRET_KEY.to_owned(),
            None,
            "test",
        ),
        storage_class: None,
        sse: None,
        multipart_part_size: MIN_PART_SIZE,
    }
}

/// The test bucket under `prefix`, through an S3 client of the test's own.
pub fn test_bucket(server: &S3Server, prefix: &str) -> S3Storage {
    S3Storage::new(test_settings(&server.endpoint, prefix)).unwrap()
}

/// The keys in the test bucket under `prefix`.
pub fn keys_under(server: &S3Server, prefix: &str) -> Vec<String> {
    test_bucket(server, "")
        .list(&ObjectKey::new(prefix).unwrap(), &Cancel::never())
        .unwrap()
        .into_iter()
        .map(|object| object.key.as_str().to_owned())
        .collect()
}

/// What a test of S3 configurations needs: a server, a lab, a cluster (initialized, not
/// started) whose data directory the configurations name, and an endpoint where nothing
/// listens. Fields drop in order: the cluster before the lab's directory, the server last.
pub struct S3ConfigLab {
    pub cluster: testkit::ThrowawayCluster,
    pub lab: testkit::Lab,
    pub server: S3Server,
    pub nowhere: String,
}

impl S3ConfigLab {
    /// Starts the server first, then initializes the cluster in `lab`.
    pub fn new(lab: impl FnOnce() -> testkit::Lab) -> S3ConfigLab {
        let server = start_server();
        let lab = lab();
        let cluster =
            testkit::ThrowawayCluster::init(&lab.pg, lab.tmp.path(), "primary", 1).unwrap();
        S3ConfigLab {
            cluster,
            lab,
            server,
            nowhere: format!("http://127.0.0.1:{}", unused_port()),
        }
    }
}
