//! Azure Table sources in tests: a repository and a configuration naming source `audit` (an
//! Azurite account's tables, its key in a 0600 file), and the test's own client of the account
//! (Tidemark's library client) to fill tables with varied entities and read them back.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use testkit::servers::azurite::{ACCOUNT, ACCOUNT_KEY};
use tidemark::sources::azure_table::batch::{BatchOutcome, Batcher, WriteMode};
use tidemark::sources::azure_table::client::TableClient;
use tidemark::sources::azure_table::entity::{Entity, Property};

pub use super::azurite_tables::base64_of;
use super::azurite_tables::{KEY_SCRIPTS, account_client, entities_by_key};
use super::configured::Configured;

/// A repository and a configuration naming source `audit` on `endpoint`.
pub struct TableSetup {
    pub dir: tempfile::TempDir,
    tidemark: Configured,
}

impl std::ops::Deref for TableSetup {
    type Target = Configured;

    fn deref(&self) -> &Configured {
        &self.tidemark
    }
}

impl TableSetup {
    /// `tables` as the config writes it (`["A", "B"]` or `"*"`); `extra` lines follow.
    pub fn new(endpoint: &str, tables: &str, extra: &str) -> TableSetup {
        let dir = tempfile::Builder::new()
            .prefix("tm-aztable-")
            .tempdir()
            .unwrap();
        let key_file = dir.path().join("azure.key");
        fs::write(&key_file, format!("{ACCOUNT_KEY}\n")).unwrap();
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
        let config = dir.path().join("tidemark.toml");
        let text = format!(
            "[repo]\npath = \"{}\"\n\n[source.audit]\ntype = \"azure-table\"\naccount = \"{ACCOUNT}\"\nendpoint = \"{endpoint}\"\ntables = {tables}\nkey_file = \"{}\"\n{extra}",
            dir.path().join("repo").display(),
            key_file.display()
        );
        fs::write(&config, text).unwrap();
        TableSetup {
            dir,
            tidemark: Configured { config },
        }
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("azure.key")
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The source's snapshots, as `source list --output json` shows them.
    pub fn snapshots(&self) -> Vec<Value> {
        let listed = self.json(&["source", "list", "audit", "--output", "json"]);
        listed.as_array().unwrap().clone()
    }

    /// Restores with `args` after `source restore audit`.
    pub fn restore(&self, args: &[&str]) -> String {
        let mut all = vec!["source", "restore", "audit"];
        all.extend_from_slice(args);
        self.ok(&all)
    }
}

/// The test's own client of Azurite's account.
pub struct TestTables {
    pub client: TableClient,
}

impl TestTables {
    pub fn new(endpoint: &str) -> TestTables {
        let client = account_client(endpoint, "test", Duration::from_secs(60)).unwrap();
        TestTables { client }
    }

    pub fn create(&self, table: &str) {
        self.client
            .block_on(self.client.create_table(table))
            .unwrap();
    }

    /// Writes `entities` (any order of partitions) in transactions, as `mode` says.
    pub fn write(&self, table: &str, mode: WriteMode, entities: &[Entity]) {
        let mut sorted: Vec<&Entity> = entities.iter().collect();
        sorted.sort_by(|a, b| a.partition_key.cmp(&b.partition_key));
        let mut batcher = Batcher::new(mode, self.client.url(), table);
        let mut batches = Vec::new();
        for entity in sorted {
            batches.extend(batcher.add(entity).unwrap());
        }
        batches.extend(batcher.finish());
        std::thread::scope(|scope| {
            for group in batches.chunks(batches.len().div_ceil(8).max(1)) {
                scope.spawn(move || {
                    for batch in group {
                        let outcome = self
                            .client
                            .block_on(self.client.submit_batch(table, batch))
                            .unwrap();
                        assert_eq!(outcome, BatchOutcome::Applied);
                    }
                });
            }
        });
    }

    /// Every entity of `table`, without its Timestamp, as a snapshot line (so NaN equals
    /// NaN), by keys.
    pub fn held(&self, table: &str) -> BTreeMap<(String, String), String> {
        entities_by_key(&self.client, table).unwrap()
    }

    pub fn tables(&self) -> Vec<String> {
        let mut tables = self.client.block_on(self.client.list_tables()).unwrap();
        tables.sort();
        tables
    }
}

/// Entity `n` of `partitions` partitions: every EDM type, its schema growing with `n` (later
/// entities have properties earlier ones lack, and some lose ones), keys in several scripts.
pub fn varied_entity(n: usize, partitions: usize) -> Entity {
    let scripts = KEY_SCRIPTS;
    let p = n % partitions;
    let partition_key = format!("{} {p:03}", scripts[p % scripts.len()]);
    let row_key = format!("{n:06}-{}", scripts[n % scripts.len()]);
    let mut properties = BTreeMap::new();
    let mut add = |name: &str, property: Property| {
        properties.insert(name.to_owned(), property);
    };
    add("Text", Property::String(format!("entry {n} ✓")));
    if !n.is_multiple_of(5) {
        add(
            "Count",
            Property::Int32((n as i32).wrapping_mul(7919) - 1_000_000),
        );
    }
    add("Big", Property::Int64(i64::MAX - (n as i64) * 1_000_003));
    add("Ratio", Property::Double(n as f64 / 3.0));
    add("Whole", Property::Double((n % 100) as f64));
    add("Flag", Property::Boolean(n.is_multiple_of(3)));
    add(
        "When",
        Property::DateTime(format!(
            "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
            n % 30,
            n % 12 + 1,
            n % 28 + 1,
            n % 24,
            n % 60,
            (n * 7) % 60,
            n % 10_000_000
        )),
    );
    add(
        "Id",
        Property::Guid(format!("{:08x}-1234-5678-9abc-{:012x}", n, n * 31)),
    );
    // Added later in the table's life: only the newer entities have them.
    if n > 5_000 {
        add(
            "Region",
            Property::String(["eu", "us", "ap"][n % 3].to_owned()),
        );
        add("Raw", Property::Binary(base64_of(&[(n % 256) as u8; 12])));
    }
    if n > 15_000 {
        add("Score", Property::Double(-(n as f64) * 1.5e-3));
        add("Audited", Property::Boolean(true));
    }
    if n.is_multiple_of(997) {
        add("Odd", Property::Double(f64::NAN));
        add("Up", Property::Double(f64::INFINITY));
        add("Down", Property::Double(f64::NEG_INFINITY));
    }
    Entity {
        partition_key,
        row_key,
        timestamp: None,
        properties,
    }
}

/// An entity near Table storage's 1 MiB limit: 15 Binary properties of 64 KiB each.
pub fn large_entity(partition: &str, n: usize) -> Entity {
    let properties = (0..15)
        .map(|i| {
            let bytes: Vec<u8> = (0..65_536)
                .map(|j| ((i * 31 + j + n) % 251) as u8)
                .collect();
            (format!("Part{i:02}"), Property::Binary(base64_of(&bytes)))
        })
        .collect();
    Entity {
        partition_key: partition.to_owned(),
        row_key: format!("large {n}"),
        timestamp: None,
        properties,
    }
}
