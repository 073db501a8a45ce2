//! Azurite's development account through Tidemark's own Table client, as the Azure Table tests
//! and the `azure_table` bench both reach it: a client, and every entity of a table by keys.

use std::collections::BTreeMap;
use std::time::Duration;

use testkit::servers::azurite::{ACCOUNT, ACCOUNT_KEY};
use tidemark::sources::azure_table::auth::Credentials;
use tidemark::sources::azure_table::client::{TableClient, TableEndpoint};
use tidemark::sources::azure_table::entity::Entity;

/// Prefixes of the partition keys the tests and the bench write: several scripts, an emoji,
/// and a quote (which OData string literals must double).
pub const KEY_SCRIPTS: [&str; 6] = [
    "tenant",
    "mandant-ü",
    "租户",
    "арендатор",
    "😀-emoji",
    "it's",
];

/// A client of the account's Table service at `endpoint`, signed with its key; `section`
/// names it in errors, `timeout` bounds each attempt of a request.
pub fn account_client(
    endpoint: &str,
    section: &str,
    timeout: Duration,
) -> anyhow::Result<TableClient> {
    TableClient::new(
        TableEndpoint {
            url: endpoint.to_owned(),
            account: ACCOUNT.to_owned(),
            section: section.to_owned(),
            timeout,
        },
        Credentials::parse(ACCOUNT_KEY, "the development account's key")?,
    )
}

/// Every entity of `table`, without its Timestamp, as a snapshot line (so NaN equals NaN), by
/// keys.
pub fn entities_by_key(
    client: &TableClient,
    table: &str,
) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let mut held = BTreeMap::new();
    client.block_on(client.query_entities(table, None, None, |page| {
        for object in page {
            let mut entity = Entity::from_service(&object)?;
            entity.timestamp = None;
            let keys = (entity.partition_key.clone(), entity.row_key.clone());
            held.insert(keys, serde_json::to_string(&entity)?);
        }
        Ok(())
    }))?;
    Ok(held)
}

/// `bytes` in standard base64, as an `Edm.Binary` property holds them.
pub fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
