use super::*;
use crate::repo::{Repository, test_repository};
use crate::storage::memory::MemoryStorage;

fn settings() -> WriteSettings {
    WriteSettings {
        compression: Compression::Zstd,
        zstd_level: 1,
    }
}

fn fixed(current: u32) -> Arc<FixedKeys> {
    Arc::new(FixedKeys {
        keys: vec![DataKey::new(1, [1; 32]), DataKey::new(2, [2; 32])],
        current,
        name_key: [7; 32],
    })
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(name).unwrap()
}

fn decoded(frame: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    object::decode_into(frame, &mut content).unwrap();
    content
}

fn whole(stored: &StoredObject) -> Vec<u8> {
    stored.parts().concat()
}

#[test]
fn an_encrypted_codec_seals_with_the_current_key_and_opens_with_the_one_named() {
    let name = key("main/backup/x/backup.json");
    let old = Codec::encrypted(settings(), fixed(1));
    let new = Codec::encrypted(settings(), fixed(2));
    let sealed_by_old = whole(&old.encode(&name, b"content").unwrap());
    let opened = new.open(&name, sealed_by_old).unwrap();
    assert_eq!(opened.key_id, Some(1));
    assert_eq!(decoded(&opened.frame), b"content");
    let sealed_by_new = whole(&new.encode(&name, b"content").unwrap());
    assert_eq!(new.open(&name, sealed_by_new).unwrap().key_id, Some(2));
}

#[test]
fn the_configuration_decides_whether_objects_must_be_sealed() {
    let name = key("main/backup/x/backup.json");
    let plain = Codec::plain(settings());
    let encrypted = Codec::encrypted(settings(), fixed(1));
    let plain_object = whole(&plain.encode(&name, b"content").unwrap());
    let sealed_object = whole(&encrypted.encode(&name, b"content").unwrap());
    assert!(matches!(
        encrypted.open(&name, plain_object.clone()),
        Err(OpenFailure::NotEncrypted)
    ));
    assert!(matches!(
        plain.open(&name, sealed_object),
        Err(OpenFailure::Encrypted)
    ));
    let opened = plain.open(&name, plain_object).unwrap();
    assert_eq!(
        (decoded(&opened.frame), opened.key_id),
        (b"content".to_vec(), None)
    );
    // A damaged plain header is damage, whatever the configuration.
    assert!(matches!(
        encrypted.open(&name, b"TIDEMARK\x01\x00garbage".to_vec()),
        Err(OpenFailure::Damaged(_))
    ));
}

#[test]
fn a_data_key_the_keyring_lacks_is_named() {
    let name = key("main/backup/x/backup.json");
    let sealed = whole(
        &Codec::encrypted(settings(), fixed(2))
            .encode(&name, b"x")
            .unwrap(),
    );
    let only_one = Arc::new(FixedKeys {
        keys: vec![DataKey::new(1, [1; 32])],
        current: 1,
        name_key: [7; 32],
    });
    let error = Codec::encrypted(settings(), only_one)
        .open(&name, sealed)
        .unwrap_err();
    assert_eq!(error.to_string(), "no data key 2");
}

#[test]
fn chunk_names_are_the_owners_hash_in_the_clear_and_keyed_when_encrypted() {
    use sha2::Digest;
    let plain = Codec::plain(settings());
    let sha256: String = sha2::Sha256::digest(b"chunk")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        plain.chunk_name(b"chunk", ChunkHash::Sha256).unwrap(),
        sha256
    );
    assert_eq!(
        plain.chunk_name(b"chunk", ChunkHash::Blake3).unwrap(),
        blake3::hash(b"chunk").to_hex().as_str()
    );
    let keyed = Codec::encrypted(settings(), fixed(1))
        .chunk_name(b"chunk", ChunkHash::Sha256)
        .unwrap();
    assert_eq!(
        keyed,
        blake3::keyed_hash(&[7; 32], b"chunk").to_hex().as_str()
    );
    // The name key, not the data key, names chunks: a rotation keeps equal content together;
    // and an encrypted repository's names are keyed whatever its owners' identities say.
    assert_eq!(
        Codec::encrypted(settings(), fixed(2))
            .chunk_name(b"chunk", ChunkHash::Blake3)
            .unwrap(),
        keyed
    );
}

#[test]
fn an_identity_names_its_chunk_hash_or_none_for_sha256() {
    assert_eq!(ChunkHash::from_identity(None), Ok(ChunkHash::Sha256));
    for hash in [ChunkHash::Sha256, ChunkHash::Blake3] {
        assert_eq!(
            ChunkHash::from_identity(hash.identity_field().as_deref()),
            Ok(hash)
        );
    }
    assert_eq!(ChunkHash::NEW, ChunkHash::Blake3);
    assert_eq!(
        ChunkHash::from_identity(Some("md5")).unwrap_err(),
        "chunk_hash \"md5\", which this Tidemark does not know; upgrade Tidemark"
    );
}

#[test]
fn an_encrypted_stanza_round_trips_its_objects_and_refuses_a_plain_configuration() {
    let storage: Arc<dyn crate::storage::Storage> = Arc::new(MemoryStorage::new());
    let plain_repo = test_repository(Box::new(MemoryStorage::new()));
    let mut identity = plain_repo.open_stanza("main").unwrap().identity().clone();
    let encrypted = Repository::with_codec(
        Box::new(Arc::clone(&storage)),
        Codec::encrypted(settings(), fixed(1)),
    );
    encrypted.create_stanza(&identity).unwrap();
    let stanza = encrypted.open_stanza("main").unwrap();
    assert_eq!(stanza.identity().cipher.as_deref(), Some("aes-256-gcm"));
    let name = key("main/walindex/x");
    stanza.put_new_object(&name, b"entry").unwrap();
    assert_eq!(
        stanza.get_checked_object(&name, 1 << 20).unwrap().unwrap(),
        b"entry"
    );
    assert_eq!(
        stanza.put_once(&name, b"entry").unwrap(),
        crate::repo::PutOnce::Identical
    );
    assert_eq!(
        stanza.put_once(&name, b"other").unwrap(),
        crate::repo::PutOnce::Different
    );

    let plain = Repository::with_codec(Box::new(Arc::clone(&storage)), Codec::plain(settings()));
    let error = plain.open_stanza("main").err().unwrap().to_string();
    assert!(error.ends_with("is encrypted: set [repo] cipher = \"aes-256-gcm\" and passphrase_file, passphrase_command or key_file"), "{error}");
    // And a plain stanza refuses an encrypted configuration, writing nothing.
    identity.stanza = "other".into();
    plain.create_stanza(&identity).unwrap();
    let error = encrypted.create_stanza(&identity).unwrap_err().to_string();
    assert!(
        error.contains("is not encrypted; encryption cannot be turned on for an existing stanza"),
        "{error}"
    );
}

#[test]
fn damage_is_said_once_in_an_error_chain() {
    let name = key("main/backup/x/backup.json");
    let encrypted = Codec::encrypted(settings(), fixed(1));
    let mut sealed = whole(&encrypted.encode(&name, b"content").unwrap());
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    let chain = format!(
        "{:#}",
        anyhow::Error::from(encrypted.open(&name, sealed).unwrap_err())
    );
    assert_eq!(
        chain.matches("its stored bytes are damaged").count(),
        1,
        "{chain}"
    );
}
