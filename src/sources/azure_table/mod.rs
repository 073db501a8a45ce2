//! Azure Table storage as a source: the account's tables exported with every property's EDM
//! type (`export`), and restored — a table, a partition, an entity or an OData filter's
//! entities (`filter`) — in entity group transactions of one partition each (`restore`). A
//! small REST client of our own (`client`, signed by `auth`, paged by `paging`), entities as
//! the service and a snapshot hold them (`entity`), and transactions (`batch`).

pub mod auth;
pub mod batch;
pub mod client;
pub mod entity;
pub mod export;
pub mod filter;
pub mod paging;
pub mod restore;
pub mod url_text;

use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail};

use super::sink::SnapshotSink;
use super::{RestoreTarget, Source};
use crate::config::{AzureTableSettings, TableChoice};
use crate::repo::Repository;
use crate::repo::source_catalog::SnapshotRecord;
use auth::Credentials;
use client::{TableClient, TableEndpoint};
use export::AzureTableSnapshotMeta;

/// A configured account's tables.
pub struct AzureTableSource {
    name: String,
    settings: AzureTableSettings,
    /// Made when first needed, with its credentials read.
    client: OnceLock<TableClient>,
}

impl AzureTableSource {
    pub fn new(name: &str, settings: &AzureTableSettings) -> AzureTableSource {
        AzureTableSource {
            name: name.to_owned(),
            settings: settings.clone(),
            client: OnceLock::new(),
        }
    }

    fn section(&self) -> String {
        format!("source.{}", self.name)
    }

    /// The account's client: its key or token read (the secret-file rule), nothing sent.
    fn client(&self) -> anyhow::Result<&TableClient> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let section = self.section();
        let credentials = Credentials::load(
            self.settings.key_file.as_deref(),
            self.settings.signing,
            &section,
        )?;
        let client = TableClient::new(
            TableEndpoint {
                url: self.settings.endpoint.clone(),
                account: self.settings.account.clone(),
                section,
                timeout: self.settings.timeout,
            },
            credentials,
        )?;
        Ok(self.client.get_or_init(|| client))
    }

    /// The tables a snapshot exports: those named (each must exist), or every one.
    fn tables_to_export(&self, client: &TableClient) -> anyhow::Result<(Vec<String>, usize)> {
        let mut existing = client.block_on(client.list_tables())?;
        existing.sort();
        let chosen = match &self.settings.tables {
            TableChoice::All => existing.clone(),
            TableChoice::Named(names) => {
                let missing: Vec<&String> =
                    names.iter().filter(|n| !existing.contains(n)).collect();
                if !missing.is_empty() {
                    let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                    bail!(
                        "{} has no table {} (it has: {}): fix {}.tables",
                        client.location(),
                        missing.join(", "),
                        if existing.is_empty() {
                            "none".to_owned()
                        } else {
                            existing.join(", ")
                        },
                        self.section()
                    );
                }
                names.clone()
            }
        };
        Ok((chosen, existing.len()))
    }
}

impl Source for AzureTableSource {
    fn id_letter(&self) -> char {
        'T'
    }

    fn ready(&self) -> anyhow::Result<()> {
        self.client().map(|_| ())
    }

    fn check(&self) -> anyhow::Result<Vec<String>> {
        let client = self.client()?;
        let (tables, existing) = self.tables_to_export(client)?;
        Ok(vec![format!(
            "{}: {existing} tables; a snapshot exports {}: {}",
            client.location(),
            tables.len(),
            tables.join(", ")
        )])
    }

    fn snapshot(
        &self,
        sink: &mut SnapshotSink<'_>,
        _previous: Option<&SnapshotRecord>,
    ) -> anyhow::Result<serde_json::Value> {
        let client = self.client()?;
        // Every named table is found before any stream is begun.
        let (tables, _) = self.tables_to_export(client)?;
        let tables = export::export_tables(client, sink, &tables, self.settings.concurrency)?;
        let meta = AzureTableSnapshotMeta {
            account: self.settings.account.clone(),
            endpoint: self.settings.endpoint.clone(),
            tables,
        };
        Ok(serde_json::to_value(meta)?)
    }

    fn restore(
        &self,
        repo: Arc<Repository>,
        snapshot: &SnapshotRecord,
        target: &RestoreTarget,
    ) -> anyhow::Result<String> {
        let RestoreTarget::AzureTable(target) = target else {
            bail!(
                "source '{}' is Azure Table storage: restore it with --table NAME (and --as, --partition, --row, --filter, --mode)",
                self.name
            );
        };
        let meta = table_meta(snapshot)?;
        let client = self.client()?;
        restore::restore_table(
            client,
            &repo,
            snapshot,
            &meta,
            target,
            self.settings.concurrency,
        )
    }
}

/// What an Azure Table snapshot's record says of it.
pub fn table_meta(record: &SnapshotRecord) -> anyhow::Result<AzureTableSnapshotMeta> {
    serde_json::from_value(record.meta.clone()).with_context(|| {
        format!(
            "snapshot {} of source '{}' does not record an Azure Table snapshot's tables",
            record.id, record.source
        )
    })
}
