//! The Table storage client against Azurite (started per test on free loopback ports): tables
//! created and listed, entities of every EDM type written in transactions and read back page
//! by page exactly as written — Int64 beyond JSON's safe integers, whole Doubles, NaN and the
//! infinities, DateTimes to the tick, Guids, Binary, keys in any script and with quotes.

use std::collections::BTreeMap;
use std::time::Duration;

use testkit::servers::azurite::{ACCOUNT, ACCOUNT_KEY, start_azurite};
use tidemark::sources::azure_table::auth::Credentials;
use tidemark::sources::azure_table::batch::{BatchOutcome, Batcher, WriteMode};
use tidemark::sources::azure_table::client::{NoSuchTable, TableClient, TableEndpoint};
use tidemark::sources::azure_table::entity::{Entity, Property};

fn client(url: &str, key: &str) -> TableClient {
    TableClient::new(
        TableEndpoint {
            url: url.to_owned(),
            account: ACCOUNT.to_owned(),
            section: "source.test".to_owned(),
            timeout: Duration::from_secs(20),
        },
        Credentials::parse(key, "test key").unwrap(),
    )
    .unwrap()
}

/// An entity with a property of every type, its values chosen by `n`.
fn typed_entity(partition: &str, n: i64) -> Entity {
    let properties = BTreeMap::from([
        (
            "Text".to_owned(),
            Property::String(format!("naïve {n} ☃ 'q'")),
        ),
        ("Small".to_owned(), Property::Int32(-(n as i32))),
        ("Big".to_owned(), Property::Int64(i64::MAX - n)),
        ("Whole".to_owned(), Property::Double(n as f64)),
        ("Fraction".to_owned(), Property::Double(n as f64 / 7.0)),
        ("Flag".to_owned(), Property::Boolean(n % 2 == 0)),
        (
            "When".to_owned(),
            Property::DateTime(format!("2024-02-29T23:59:{:02}.1234567Z", n % 60)),
        ),
        (
            "Id".to_owned(),
            Property::Guid(format!("c9da6455-213d-42c9-9a79-{n:012}")),
        ),
        ("Bytes".to_owned(), Property::Binary("AAECA/8=".to_owned())),
    ]);
    Entity {
        partition_key: partition.to_owned(),
        row_key: format!("row {n:05} – ü's"),
        timestamp: None,
        properties,
    }
}

fn read_all(client: &TableClient, table: &str, filter: Option<&str>) -> Vec<Entity> {
    let mut entities = Vec::new();
    client
        .block_on(client.query_entities(table, filter, None, |page| {
            for object in page {
                entities.push(Entity::from_service(&object)?);
            }
            Ok(())
        }))
        .unwrap();
    entities
}

fn write(client: &TableClient, table: &str, mode: WriteMode, entities: &[Entity]) {
    let mut batcher = Batcher::new(mode, client.url(), table);
    let mut batches = Vec::new();
    for entity in entities {
        batches.extend(batcher.add(entity).unwrap());
    }
    batches.extend(batcher.finish());
    for batch in batches {
        let outcome = client.block_on(client.submit_batch(table, &batch)).unwrap();
        assert_eq!(outcome, BatchOutcome::Applied);
    }
}

#[test]
fn entities_of_every_type_are_written_and_read_back_exactly() {
    let azurite = start_azurite();
    let client = client(&azurite.table_endpoint, ACCOUNT_KEY);
    assert!(client.block_on(client.create_table("Typed")).unwrap());
    assert!(!client.block_on(client.create_table("Typed")).unwrap());
    assert!(client.block_on(client.create_table("Other")).unwrap());
    let mut tables = client.block_on(client.list_tables()).unwrap();
    tables.sort();
    assert_eq!(tables, ["Other", "Typed"]);

    // 1,500 entities in three partitions: more than one page.
    let mut written: Vec<Entity> = (0..1500)
        .map(|n| typed_entity(&format!("p-{}-日本", n % 3), n))
        .collect();
    let specials = BTreeMap::from([
        ("NaN".to_owned(), Property::Double(f64::NAN)),
        ("Inf".to_owned(), Property::Double(f64::INFINITY)),
        ("NegInf".to_owned(), Property::Double(f64::NEG_INFINITY)),
        ("Tiny".to_owned(), Property::Double(5e-324)),
        ("Huge".to_owned(), Property::Double(1.7976931348623157e308)),
        ("One".to_owned(), Property::Double(1.0)),
        ("Min".to_owned(), Property::Int64(i64::MIN)),
        ("Empty".to_owned(), Property::String(String::new())),
    ]);
    written.push(Entity {
        partition_key: "it's".to_owned(),
        row_key: "o'clock".to_owned(),
        timestamp: None,
        properties: specials,
    });
    write(&client, "Typed", WriteMode::Insert, &written);

    let mut read = read_all(&client, "Typed", None);
    assert_eq!(read.len(), written.len());
    for entity in &mut read {
        assert!(entity.timestamp.take().is_some());
    }
    let key = |e: &Entity| (e.partition_key.clone(), e.row_key.clone());
    written.sort_by_key(key);
    read.sort_by_key(key);
    for (read, written) in read.iter().zip(&written) {
        let (mut read, mut written) = (read.clone(), written.clone());
        // NaN is not equal to itself: compared by type first, then taken out.
        for entity in [&mut read, &mut written] {
            if let Some(nan) = entity.properties.remove("NaN") {
                assert!(matches!(nan, Property::Double(d) if d.is_nan()), "{nan:?}");
            }
        }
        assert_eq!(read, written);
    }

    let filtered = read_all(&client, "Typed", Some("PartitionKey eq 'it''s'"));
    assert_eq!(filtered.len(), 1);

    let error = client
        .block_on(client.query_entities("Missing", None, None, |_| Ok(())))
        .unwrap_err();
    assert!(error.downcast_ref::<NoSuchTable>().is_some(), "{error:#}");
}

#[test]
fn replace_overwrites_merge_keeps_and_insert_conflicts() {
    let azurite = start_azurite();
    let client = client(&azurite.table_endpoint, ACCOUNT_KEY);
    client.block_on(client.create_table("Modes")).unwrap();
    let first = typed_entity("p", 1);
    write(
        &client,
        "Modes",
        WriteMode::Insert,
        std::slice::from_ref(&first),
    );

    let mut narrow = first.clone();
    narrow.properties = BTreeMap::from([("Text".to_owned(), Property::String("merged".into()))]);
    write(
        &client,
        "Modes",
        WriteMode::Merge,
        std::slice::from_ref(&narrow),
    );
    let merged = &read_all(&client, "Modes", None)[0];
    assert_eq!(merged.properties.len(), first.properties.len());
    assert_eq!(merged.properties["Text"], Property::String("merged".into()));

    write(
        &client,
        "Modes",
        WriteMode::Replace,
        std::slice::from_ref(&narrow),
    );
    let replaced = &read_all(&client, "Modes", None)[0];
    assert_eq!(replaced.properties, narrow.properties);

    // An insert of an entity that exists fails the whole transaction: the new one beside it
    // is not written either.
    let mut batcher = Batcher::new(WriteMode::Insert, client.url(), "Modes");
    assert!(batcher.add(&typed_entity("p", 0)).unwrap().is_none());
    assert!(batcher.add(&first).unwrap().is_none());
    let batch = batcher.finish().unwrap();
    let outcome = client
        .block_on(client.submit_batch("Modes", &batch))
        .unwrap();
    let BatchOutcome::Failed { status, code, .. } = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        (*status, code.as_str()),
        (409, "EntityAlreadyExists"),
        "{outcome:?}"
    );
    assert_eq!(read_all(&client, "Modes", None).len(), 1);
}

#[test]
fn a_wrong_key_is_refused_and_explained() {
    let azurite = start_azurite();
    let wrong =
        "AAAAAdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let client = client(&azurite.table_endpoint, wrong);
    let error = format!("{:#}", client.block_on(client.list_tables()).unwrap_err());
    assert!(
        error.starts_with("list the tables: http://127.0.0.1:")
            && error.contains("refused the request (403"),
        "{error}"
    );
}

#[test]
fn a_deleted_table_is_gone_with_its_entities_and_only_it() {
    let azurite = start_azurite();
    let client = client(&azurite.table_endpoint, ACCOUNT_KEY);
    for table in ["Kept", "Doomed"] {
        assert!(client.block_on(client.create_table(table)).unwrap());
        write(&client, table, WriteMode::Insert, &[typed_entity("p", 1)]);
    }
    assert!(client.block_on(client.delete_table("Doomed")).unwrap());
    assert_eq!(client.block_on(client.list_tables()).unwrap(), ["Kept"]);
    assert_eq!(read_all(&client, "Kept", None).len(), 1);
    // Gone, not merely emptied; and deleting it again says so.
    let error = client
        .block_on(client.query_entities("Doomed", None, None, |_| Ok(())))
        .unwrap_err();
    assert!(error.downcast_ref::<NoSuchTable>().is_some(), "{error:#}");
    assert!(!client.block_on(client.delete_table("Doomed")).unwrap());
}
