//! Buckets as the bucket-source tests see them, through an `aws-sdk-s3` client of the test's
//! own (not Tidemark's): filling a bucket with objects of every kind, changing some, and reading
//! back everything a bucket holds — every key's bytes, content type and user metadata — to
//! compare a restored bucket with what the source held at a snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use super::s3::{ACCESS_KEY, SECRET_KEY};

/// What a copy source's key escapes: all but unreserved characters and its slashes.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Requests in flight at once.
const PARALLEL: usize = 16;

/// One object as a bucket holds it: its content's SHA-256 and size, content type and metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// An object to put.
#[derive(Clone, Debug)]
pub struct NewObject {
    pub key: String,
    pub content: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// The test's own client of an S3 server.
#[derive(Clone)]
pub struct TestClient {
    client: Client,
    runtime: Arc<Runtime>,
}

impl TestClient {
    pub fn new(endpoint: &str) -> TestClient {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        TestClient {
            client: Client::from_conf(config),
            runtime: Arc::new(runtime),
        }
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.runtime
            .block_on(self.client.create_bucket().bucket(bucket).send())
            .unwrap();
    }

    /// Turns versioning on: every put after it makes a new version, every delete a marker.
    pub fn enable_versioning(&self, bucket: &str) {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        let enabled = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        self.runtime
            .block_on(
                self.client
                    .put_bucket_versioning()
                    .bucket(bucket)
                    .versioning_configuration(enabled)
                    .send(),
            )
            .unwrap();
    }

    /// Puts every object, `PARALLEL` at a time.
    pub fn put_all(&self, bucket: &str, objects: Vec<NewObject>) {
        let client = self.client.clone();
        let bucket = bucket.to_owned();
        self.runtime.block_on(async move {
            let mut running = JoinSet::new();
            for object in objects {
                if running.len() >= PARALLEL {
                    running.join_next().await.unwrap().unwrap();
                }
                let (client, bucket) = (client.clone(), bucket.clone());
                running.spawn(async move { put(&client, &bucket, object).await });
            }
            while let Some(done) = running.join_next().await {
                done.unwrap();
            }
        });
    }

    pub fn copy(&self, bucket: &str, from: &str, to: &str) {
        let source = format!(
            "{bucket}/{}",
            percent_encoding::utf8_percent_encode(from, COPY_SOURCE)
        );
        self.runtime
            .block_on(
                self.client
                    .copy_object()
                    .bucket(bucket)
                    .key(to)
                    .copy_source(source)
                    .send(),
            )
            .unwrap();
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        self.runtime
            .block_on(self.client.delete_object().bucket(bucket).key(key).send())
            .unwrap();
    }

    /// Every key of the bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .runtime
                .block_on(
                    self.client
                        .list_objects_v2()
                        .bucket(bucket)
                        .set_continuation_token(token)
                        .send(),
                )
                .unwrap();
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        keys
    }

    /// Everything the bucket holds, by key: read whole, `PARALLEL` objects at a time.
    pub fn held(&self, bucket: &str) -> BTreeMap<String, Held> {
        let keys = self.keys(bucket);
        let client = self.client.clone();
        let bucket = bucket.to_owned();
        self.runtime.block_on(async move {
            let mut running = JoinSet::new();
            let mut held = BTreeMap::new();
            for key in keys {
                if running.len() >= PARALLEL {
                    let (key, object) = running.join_next().await.unwrap().unwrap();
                    held.insert(key, object);
                }
                let (client, bucket) = (client.clone(), bucket.clone());
                running.spawn(async move {
                    let object = get(&client, &bucket, &key).await;
                    (key, object)
                });
            }
            while let Some(done) = running.join_next().await {
                let (key, object) = done.unwrap();
                held.insert(key, object);
            }
            held
        })
    }
}

async fn put(client: &Client, bucket: &str, object: NewObject) {
    let metadata: HashMap<String, String> = object.metadata.into_iter().collect();
    client
        .put_object()
        .bucket(bucket)
        .key(&object.key)
        .body(ByteStream::from(object.content))
        .set_content_type(object.content_type)
        .set_metadata((!metadata.is_empty()).then_some(metadata))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {:?}: {e:?}", object.key));
}

async fn get(client: &Client, bucket: &str, key: &str) -> Held {
    let answer = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key:?}: {e:?}"));
    let content_type = answer.content_type().map(str::to_owned);
    let metadata = answer
        .metadata()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let bytes = answer.body.collect().await.unwrap().into_bytes();
    Held {
        sha256: format!("{:x}", Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        content_type,
        metadata,
    }
}

/// Bytes that do not repeat, from a seed.
pub fn noise(length: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0u8; length];
    rng.fill(&mut bytes);
    bytes
}

/// `count` objects of every kind: sizes from 0 bytes up (mostly small, a few of several MiB,
/// and `largest` once), nested keys with spaces and non-ASCII letters, user metadata on some,
/// several content types (and none).
pub fn varied_objects(count: usize, largest: usize, seed: u64) -> Vec<NewObject> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let types = [
        Some("text/plain"),
        Some("application/json"),
        Some("image/png"),
        None,
    ];
    (0..count)
        .map(|i| {
            let size = match i {
                0 => 0,
                1 => largest,
                2 => 6 << 20,
                _ if i % 500 == 3 => rng.usize(1 << 20..3 << 20),
                _ if i % 10 == 0 => rng.usize(4096..64 << 10),
                _ => rng.usize(0..2048),
            };
            let mut metadata = BTreeMap::new();
            if i % 3 == 0 {
                metadata.insert("owner".to_owned(), format!("team-{}", i % 5));
                metadata.insert("batch".to_owned(), format!("{}", i / 100));
            }
            NewObject {
                key: format!("tenant {}/dir-{}/ünïcode {i}.dat", i % 7, i % 13),
                content: noise(size, seed ^ (i as u64) << 8),
                content_type: types[i % types.len()].map(str::to_owned),
                metadata,
            }
        })
        .collect()
}
