//! A repository and a configuration naming the bucket source `uploads` (bucket `src` of the
//! test's `s3s-fs`), plain or encrypted, with Tidemark run on it; and a snapshot taken by the
//! library into a repository in memory, for tests that change the bucket between the listing
//! and the reads.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::Value;
use tidemark::config::{BucketListing, BucketSettings};
use tidemark::repo::source_catalog::source_blobs;
use tidemark::repo::{Compression, Repository, WriteSettings};
use tidemark::sources::bucket::client::{BucketClient, Listed};
use tidemark::sources::bucket::fetch::Fetched;
use tidemark::sources::bucket::{diff, fetch};
use tidemark::sources::sink::take_snapshot;
use tidemark::storage::{MemoryStorage, S3Credentials};

use super::bucket::{Held, TestClient};
use super::configured::Configured;
use super::s3::{ACCESS_KEY, SECRET_KEY};

/// A repository and a configuration naming source `uploads`: bucket `src` on `endpoint`.
pub struct BucketSetup {
    pub dir: tempfile::TempDir,
    tidemark: Configured,
}

impl std::ops::Deref for BucketSetup {
    type Target = Configured;

    fn deref(&self) -> &Configured {
        &self.tidemark
    }
}

impl BucketSetup {
    pub fn new(endpoint: &str, extra: &str) -> BucketSetup {
        let dir = tempfile::Builder::new()
            .prefix("tm-bucket-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("tidemark.toml");
        let text = format!(
            "[repo]\npath = \"{}\"\n\n[source.uploads]\ntype = \"bucket\"\nbucket = \"src\"\nendpoint = \"{endpoint}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n{extra}",
            dir.path().join("repo").display()
        );
        fs::write(&config, text).unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
        BucketSetup {
            dir,
            tidemark: Configured { config },
        }
    }

    /// An encrypted repository instead: `[repo]` with a key file.
    pub fn encrypted(endpoint: &str) -> BucketSetup {
        let setup = BucketSetup::new(endpoint, "");
        let key_path = setup.dir.path().join("repo.key");
        let key: String = (0..32u32)
            .map(|i| format!("{:02x}", (i * 53 + 7) % 256))
            .collect();
        fs::write(&key_path, format!("{key}\n")).unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
        let text = fs::read_to_string(&setup.config).unwrap().replacen(
            "\n\n[source.uploads]",
            &format!(
                "\ncipher = \"aes-256-gcm\"\nkey_file = \"{}\"\n\n[source.uploads]",
                key_path.display()
            ),
            1,
        );
        fs::write(&setup.config, text).unwrap();
        setup
    }

    /// The source's snapshots, as `source list --output json` shows them.
    pub fn snapshots(&self) -> Vec<Value> {
        let listed = self.json(&["source", "list", "uploads", "--output", "json"]);
        listed.as_array().unwrap().clone()
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Restores snapshot `id` into `bucket` (made empty first) and reads back what it holds.
    pub fn restored_into(
        &self,
        client: &TestClient,
        id: &str,
        bucket: &str,
    ) -> BTreeMap<String, Held> {
        client.create_bucket(bucket);
        self.ok(&[
            "source",
            "restore",
            "uploads",
            "--snapshot",
            id,
            "--to-bucket",
            bucket,
        ]);
        client.held(bucket)
    }
}

/// Source `uploads` as the library takes it: bucket `src` at `endpoint`, two objects at once.
pub fn source_settings(endpoint: &str, listing: BucketListing) -> BucketSettings {
    BucketSettings {
        bucket: "src".into(),
        prefix: String::new(),
        endpoint: Some(endpoint.to_owned()),
        region: "us-east-1".into(),
        path_style: true,
        credentials: S3Credentials::keys(ACCESS_KEY.into(), SECRET_KEY.into(), None, "test"),
        concurrency: 2,
        listing,
    }
}

/// A first snapshot of what `source` listed as `listed` (the bucket may have changed since),
/// into a repository in memory: what carrying out the plan gave, and each object's content as
/// read back from the repository, by key.
pub fn snapshot_in_memory(
    source: &BucketClient,
    listed: Vec<Listed>,
) -> (Fetched, BTreeMap<String, Vec<u8>>) {
    let repo = Repository::new(
        Box::new(MemoryStorage::new()),
        WriteSettings {
            compression: Compression::Zstd,
            zstd_level: 1,
        },
    );
    let pool = source_blobs(&repo, "uploads").unwrap();
    let plan = diff::plan(listed, Vec::new());
    let (fetched, _, _) =
        take_snapshot(&pool, |sink| fetch::carry_out(source, sink, plan.steps, 2)).unwrap();
    let mut contents = BTreeMap::new();
    let mut chunk = Vec::new();
    for (key, entry) in &fetched.entries {
        let mut content = Vec::new();
        for reference in &entry.chunks {
            pool.get_chunk(reference, &mut chunk).unwrap();
            content.extend_from_slice(&chunk);
        }
        contents.insert(key.clone(), content);
    }
    (fetched, contents)
}
