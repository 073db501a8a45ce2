use aead::stream::EncryptorBE32;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{KeyInit, Payload};

use super::*;

const SECRET: [u8; 32] = [7; 32];
const SALT: [u8; SALT_LEN] = [9; SALT_LEN];
const NAME: &[u8] = b"main/wal/0000000100000000/000000010000000000000003";

/// Bytes that differ from chunk to chunk, so a moved chunk is another chunk.
fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / CHUNK_LEN) as u8).collect()
}

fn sealed(len: usize) -> Vec<u8> {
    let mut buffer = plaintext(len);
    seal_in_place(&DataKey::new(1, SECRET), &SALT, NAME, &mut buffer, 0);
    buffer
}

fn open(
    key: &DataKey,
    salt: &[u8; SALT_LEN],
    name: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, OpenError> {
    let mut buffer = sealed.to_vec();
    open_in_place(key, salt, name, &mut buffer, 0).map(|()| buffer)
}

const SIZES: [usize; 8] = [
    0,
    1,
    TAG_LEN,
    CHUNK_LEN - 1,
    CHUNK_LEN,
    CHUNK_LEN + 1,
    2 * CHUNK_LEN,
    3 * CHUNK_LEN + 5,
];

#[test]
fn what_is_sealed_opens_to_the_same_bytes_and_looks_nothing_like_them() {
    let key = DataKey::new(1, SECRET);
    for len in SIZES {
        let sealed = sealed(len);
        assert_eq!(sealed.len(), sealed_len(len), "{len}");
        assert_eq!(plain_len(sealed.len()), Some(len), "{len}");
        if len > 0 {
            assert_ne!(&sealed[..len.min(64)], &plaintext(len)[..len.min(64)]);
        }
        assert_eq!(
            open(&key, &SALT, NAME, &sealed),
            Ok(plaintext(len)),
            "{len}"
        );
    }
}

#[test]
fn only_lengths_sealing_can_give_are_taken() {
    for impossible in [
        0,
        TAG_LEN - 1,
        CHUNK_LEN + TAG_LEN + 1,
        CHUNK_LEN + TAG_LEN + TAG_LEN,
        2 * (CHUNK_LEN + TAG_LEN) + TAG_LEN,
    ] {
        assert_eq!(plain_len(impossible), None, "{impossible}");
        let mut buffer = vec![0; impossible];
        assert_eq!(
            open_in_place(&DataKey::new(1, SECRET), &SALT, NAME, &mut buffer, 0),
            Err(OpenError::ImpossibleLength(impossible))
        );
    }
}

#[test]
fn a_flipped_byte_anywhere_is_refused_naming_its_chunk() {
    let key = DataKey::new(1, SECRET);
    let good = sealed(3 * CHUNK_LEN + 5);
    let chunk = CHUNK_LEN + TAG_LEN;
    for (at, index) in [
        (0, 0),
        (CHUNK_LEN, 0),
        (chunk + 100, 1),
        (3 * chunk + 2, 3),
        (good.len() - 1, 3),
    ] {
        let mut damaged = good.clone();
        damaged[at] ^= 0x40;
        assert_eq!(
            open(&key, &SALT, NAME, &damaged),
            Err(OpenError::Unauthentic { index, count: 4 }),
            "byte {at}"
        );
    }
}

#[test]
fn cut_reordered_or_spliced_chunks_are_refused() {
    let key = DataKey::new(1, SECRET);
    let good = sealed(3 * CHUNK_LEN + 5);
    let chunk = CHUNK_LEN + TAG_LEN;
    // Cut after two whole chunks: the second was not sealed as the last.
    assert_eq!(
        open(&key, &SALT, NAME, &good[..2 * chunk]),
        Err(OpenError::Unauthentic { index: 1, count: 2 })
    );
    let mut swapped = good.clone();
    swapped[..chunk].copy_from_slice(&good[chunk..2 * chunk]);
    swapped[chunk..2 * chunk].copy_from_slice(&good[..chunk]);
    assert_eq!(
        open(&key, &SALT, NAME, &swapped),
        Err(OpenError::Unauthentic { index: 0, count: 4 })
    );
    // A chunk of another object under the same data key.
    let mut other = plaintext(3 * CHUNK_LEN + 5);
    seal_in_place(&key, &[8; SALT_LEN], NAME, &mut other, 0);
    let mut spliced = good.clone();
    spliced[chunk..2 * chunk].copy_from_slice(&other[chunk..2 * chunk]);
    assert_eq!(
        open(&key, &SALT, NAME, &spliced),
        Err(OpenError::Unauthentic { index: 1, count: 4 })
    );
}

#[test]
fn another_name_salt_or_key_does_not_open_it() {
    let good = sealed(CHUNK_LEN + 1);
    let refused = Err(OpenError::Unauthentic { index: 0, count: 2 });
    let key = DataKey::new(1, SECRET);
    let other_name = b"main/wal/0000000100000000/000000010000000000000004";
    assert_eq!(open(&key, &SALT, other_name, &good), refused);
    assert_eq!(open(&key, &[0; SALT_LEN], NAME, &good), refused);
    assert_eq!(open(&DataKey::new(2, SECRET), &SALT, NAME, &good), refused);
    assert_eq!(open(&DataKey::new(1, [8; 32]), &SALT, NAME, &good), refused);
    let mut buffer = good.clone();
    assert!(open_in_place(&key, &SALT, other_name, &mut buffer, 0).is_err());
    assert!(buffer.is_empty(), "a refused object leaves nothing to read");
}

/// The sealed bytes are exactly the reference STREAM (`aead::stream`, big-endian 32-bit counter,
/// last-block flag, zero prefix) under the object's derived key, computed by another AES-GCM
/// (RustCrypto's) than the one that seals (aws-lc's).
#[test]
fn sealing_is_the_stream_construction_of_the_aead_crate() {
    for len in SIZES {
        let mut material = SECRET.to_vec();
        material.extend_from_slice(&1u32.to_le_bytes());
        material.extend_from_slice(&SALT);
        let object_key = blake3::derive_key(OBJECT_KEY_CONTEXT, &material);
        let cipher = Aes256Gcm::new((&object_key).into());
        let mut stream = EncryptorBE32::from_aead(cipher, &[0u8; 7].into());
        let plain = plaintext(len);
        let mut chunks: Vec<&[u8]> = plain.chunks(CHUNK_LEN).collect();
        let last = chunks.pop().unwrap_or(&[]);
        let mut expected = Vec::new();
        for chunk in chunks {
            let payload = Payload {
                msg: chunk,
                aad: NAME,
            };
            expected.extend(stream.encrypt_next(payload).unwrap());
        }
        let payload = Payload {
            msg: last,
            aad: NAME,
        };
        expected.extend(stream.encrypt_last(payload).unwrap());
        assert_eq!(sealed(len), expected, "{len}");
    }
}

#[test]
fn a_data_key_never_prints_its_secret() {
    let printed = format!("{:?}", DataKey::new(3, [0xAB; 32]));
    assert_eq!(printed, "DataKey { id: 3, secret: <redacted> }");
}

#[test]
fn the_plaintext_length_of_a_sealed_length_is_the_only_one_that_seals_to_it() {
    for sealed in 0..3 * (CHUNK_LEN + TAG_LEN) + 2 * TAG_LEN {
        if let Some(plain) = plain_len(sealed) {
            assert_eq!(sealed_len(plain), sealed, "{sealed}");
        }
    }
    for plain in 0..3 * CHUNK_LEN + TAG_LEN {
        assert_eq!(plain_len(sealed_len(plain)), Some(plain), "{plain}");
    }
}

#[test]
fn bytes_after_a_header_seal_and_open_to_the_plaintext_alone() {
    let key = DataKey::new(1, SECRET);
    for len in SIZES {
        let mut buffer = vec![0xAA; 96];
        buffer.extend(plaintext(len));
        seal_in_place(&key, &SALT, NAME, &mut buffer, 96);
        assert_eq!(
            &buffer[..96],
            &[0xAA; 96][..],
            "the header room is left alone"
        );
        assert_eq!(&buffer[96..], &sealed(len)[..], "{len} bytes");
        open_in_place(&key, &SALT, NAME, &mut buffer, 96).unwrap();
        assert_eq!(buffer, plaintext(len), "{len} bytes");
    }
}
