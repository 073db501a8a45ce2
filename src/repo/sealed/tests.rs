use super::*;
use crate::repo::Compression;
use crate::repo::object::{self, decode_into};

const SECRET: [u8; 32] = [3; 32];
const SALT: [u8; SALT_LEN] = [5; SALT_LEN];

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(name).unwrap()
}

fn segment_key() -> ObjectKey {
    key("main/wal/0000000100000000/000000010000000000000003")
}

/// Bytes with a marker repeated through them, compressible enough to be zstd's business.
fn original(len: usize) -> Vec<u8> {
    b"marker-row-7f3a "
        .iter()
        .cycle()
        .enumerate()
        .map(|(i, b)| if i % 1000 < 900 { *b } else { (i * 13) as u8 })
        .take(len)
        .collect()
}

fn sealed_object(content: &[u8]) -> Vec<u8> {
    sealed_with(Compression::Zstd, content)
}

fn sealed_with(compression: Compression, content: &[u8]) -> Vec<u8> {
    let object = object::encode(compression, 1, content).unwrap();
    seal(&segment_key(), &DataKey::new(4, SECRET), SALT, &object)
}

/// Opens `stored` as read from `name` and decodes the plain object inside.
fn open_and_decode(
    name: &ObjectKey,
    data_key: &DataKey,
    stored: &[u8],
) -> Result<Vec<u8>, ObjectError> {
    let header = check_stored(stored)?;
    let mut buffer = stored.to_vec();
    open(name, &header, data_key, &mut buffer)?;
    let mut content = Vec::new();
    decode_into(&buffer, &mut content)?;
    Ok(content)
}

#[test]
fn sealed_objects_open_to_their_content_at_every_size() {
    let data_key = DataKey::new(4, SECRET);
    for len in [0, 1, 65_000, 65_536 * 3 + 17, 1 << 20] {
        let content = original(len);
        let stored = sealed_object(&content);
        assert!(is_sealed(&stored));
        let header = SealedHeader::decode(&stored).unwrap();
        assert_eq!((header.key_id, header.salt), (4, SALT));
        assert_eq!(
            stored.len() as u64,
            SEALED_HEADER_LEN as u64 + header.stored_len
        );
        assert_eq!(
            open_and_decode(&segment_key(), &data_key, &stored).unwrap(),
            content
        );
        // The largest object a file can be stored as still bounds the sealed one.
        assert!(stored.len() as u64 <= object::max_stored_len(len as u64));
    }
}

#[test]
fn no_plaintext_shows_in_a_sealed_object() {
    let content = original(200_000);
    let stored = sealed_object(&content);
    let plain = object::encode(Compression::None, 1, &content).unwrap();
    let crc = plain.header.original_crc.to_le_bytes();
    for needle in [
        &b"marker-row"[..],
        &crc[..],
        &(content.len() as u64).to_le_bytes()[..],
    ] {
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle),
            "{needle:?} shows in the sealed object"
        );
    }
}

#[test]
fn storage_damage_is_named_before_any_key_is_used() {
    let stored = sealed_object(&original(100_000));
    let mut flipped = stored.clone();
    flipped[SEALED_HEADER_LEN + 500] ^= 1;
    assert!(matches!(
        check_stored(&flipped),
        Err(ObjectError::StoredChecksum { .. })
    ));
    assert!(matches!(
        check_stored(&stored[..stored.len() - 1]),
        Err(ObjectError::WrongLength { .. })
    ));
    for at in [0, 8, 11, 12, 24, 40, 50, 80, 93] {
        let mut bad = stored.clone();
        bad[at] ^= 0x20;
        assert!(check_stored(&bad).is_err(), "flip at {at} went unnoticed");
    }
}

/// Re-encodes the header of `stored` after `edit`, with correct CRCs: a forger's edit.
fn forged(stored: &[u8], edit: impl FnOnce(&mut SealedHeader, &mut Vec<u8>)) -> Vec<u8> {
    let mut header = SealedHeader::decode(stored).unwrap();
    let mut body = stored[SEALED_HEADER_LEN..].to_vec();
    edit(&mut header, &mut body);
    header.stored_len = body.len() as u64;
    header.stored_crc = crc32c::crc32c(&body);
    [&header.encode()[..], &body].concat()
}

#[test]
fn forged_objects_fail_authentication() {
    let data_key = DataKey::new(4, SECRET);
    // Stored uncompressed, so that it spans several chunks.
    let stored = sealed_with(Compression::None, &original(300_000));
    let chunk = CHUNK_LEN + crypto::TAG_LEN;
    let unauthentic = |bytes: &[u8], name: &ObjectKey, key: &DataKey| {
        matches!(
            open_and_decode(name, key, bytes),
            Err(ObjectError::Unauthentic(_))
        )
    };
    // A byte flipped with the CRC made to match.
    let flipped = forged(&stored, |_, body| body[70_000] ^= 1);
    assert!(unauthentic(&flipped, &segment_key(), &data_key));
    // Cut after a whole chunk: the chunk that is now last was not sealed as the last.
    let cut = forged(&stored, |_, body| body.truncate(chunk));
    assert!(unauthentic(&cut, &segment_key(), &data_key));
    // Two chunks swapped.
    let swapped = forged(&stored, |_, body| {
        let first = body[..chunk].to_vec();
        body.copy_within(chunk..2 * chunk, 0);
        body[chunk..2 * chunk].copy_from_slice(&first);
    });
    assert!(unauthentic(&swapped, &segment_key(), &data_key));
    // Another salt in the header.
    let resalted = forged(&stored, |header, _| header.salt[0] ^= 1);
    assert!(unauthentic(&resalted, &segment_key(), &data_key));
    // A valid object copied over another segment's name.
    let other = key("main/wal/0000000100000000/000000010000000000000004");
    assert!(unauthentic(&stored, &other, &data_key));
    // Another key with the same id.
    assert!(unauthentic(
        &stored,
        &segment_key(),
        &DataKey::new(4, [9; 32])
    ));
}

#[test]
fn a_plain_object_is_not_taken_for_a_sealed_one() {
    let plain = object::encode(Compression::Zstd, 1, b"hello").unwrap();
    let bytes = [&plain.header_bytes()[..], &plain.body].concat();
    assert!(!is_sealed(&bytes));
    assert!(SealedHeader::decode(&bytes).is_err());
}
