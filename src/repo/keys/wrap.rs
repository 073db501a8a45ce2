//! Keys wrapping keys: a 32-byte key sealed under another with AES-256-GCM (a random 96-bit
//! nonce; the repository, the wrapped key's role and id as associated data, so a wrapped key
//! cannot be moved to another place in the keyring or another keyring), written as hex; and the
//! random bytes every key, salt and nonce is made of.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::Zeroizing;

/// What a wrapped key is for: part of its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The key-encryption key, wrapped by a slot key.
    Kek,
    /// A data key, wrapped by the key-encryption key.
    Data,
    /// The chunk-name key, wrapped by the key-encryption key.
    Name,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Kek => b"kek",
            Role::Data => b"data",
            Role::Name => b"name",
        }
    }
}

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Hex digits of a wrapped key: nonce, key, tag.
pub const WRAPPED_HEX_LEN: usize = 2 * (NONCE_LEN + 32 + TAG_LEN);

/// `N` bytes from the kernel's random number generator, wiped when dropped.
pub fn random<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut bytes = Zeroizing::new([0u8; N]);
    let mut filled = 0;
    while filled < N {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            // getrandom(2) fails only on bad arguments or before the kernel's pool exists,
            // where no key could be made safely anyway.
            Err(error) => panic!("getrandom failed: {error}"),
        }
    }
    bytes
}

fn associated_data(repository: &str, role: Role, id: u32) -> Vec<u8> {
    let mut aad = b"tidemark keyring v1\0".to_vec();
    aad.extend_from_slice(repository.as_bytes());
    aad.push(0);
    aad.extend_from_slice(role.label());
    aad.extend_from_slice(&id.to_le_bytes());
    aad
}

/// `secret` sealed under `key` for (`repository`, `role`, `id`), as hex.
pub fn wrap(key: &[u8; 32], repository: &str, role: Role, id: u32, secret: &[u8; 32]) -> String {
    let nonce = random::<NONCE_LEN>();
    let mut sealed = Zeroizing::new(*secret);
    let tag = Aes256Gcm::new(key.into())
        .encrypt_in_place_detached(
            Nonce::from_slice(&*nonce),
            &associated_data(repository, role, id),
            &mut *sealed,
        )
        .expect("32 bytes are far below AES-GCM's limit");
    let mut bytes = Vec::with_capacity(NONCE_LEN + 32 + TAG_LEN);
    bytes.extend_from_slice(&*nonce);
    bytes.extend_from_slice(&*sealed);
    bytes.extend_from_slice(&tag);
    to_hex(&bytes)
}

/// The key `wrapped` holds, if `key` opens it for (`repository`, `role`, `id`); `None` when it
/// does not (another key, or altered) or is not a wrapped key at all.
pub fn unwrap(
    key: &[u8; 32],
    repository: &str,
    role: Role,
    id: u32,
    wrapped: &str,
) -> Option<Zeroizing<[u8; 32]>> {
    if wrapped.len() != WRAPPED_HEX_LEN {
        return None;
    }
    let bytes = from_hex(wrapped)?;
    let (nonce, rest) = bytes.split_at(NONCE_LEN);
    let (sealed, tag) = rest.split_at(32);
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(sealed);
    Aes256Gcm::new(key.into())
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            &associated_data(repository, role, id),
            &mut *secret,
            Tag::from_slice(tag),
        )
        .ok()?;
    Some(secret)
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 15)] as char);
    }
    text
}

/// The bytes of lower- or upper-case hex; `None` for anything else.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let digit = |d: u8| (d as char).to_digit(16);
            Some((digit(pair[0])? << 4 | digit(pair[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_with_its_key_in_its_place() {
        let kek = random::<32>();
        let secret = random::<32>();
        let wrapped = wrap(&kek, "r1", Role::Data, 2, &secret);
        assert_eq!(wrapped.len(), WRAPPED_HEX_LEN);
        assert_eq!(
            *unwrap(&kek, "r1", Role::Data, 2, &wrapped).unwrap(),
            *secret
        );
        // Each wrapping has its own nonce.
        assert_ne!(wrap(&kek, "r1", Role::Data, 2, &secret), wrapped);
        let other = random::<32>();
        assert!(unwrap(&other, "r1", Role::Data, 2, &wrapped).is_none());
        assert!(unwrap(&kek, "r2", Role::Data, 2, &wrapped).is_none());
        assert!(unwrap(&kek, "r1", Role::Name, 2, &wrapped).is_none());
        assert!(unwrap(&kek, "r1", Role::Data, 3, &wrapped).is_none());
        let mut flipped = wrapped.clone().into_bytes();
        flipped[40] = if flipped[40] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(unwrap(&kek, "r1", Role::Data, 2, &flipped).is_none());
        assert!(unwrap(&kek, "r1", Role::Data, 2, &wrapped[2..]).is_none());
        assert!(unwrap(&kek, "r1", Role::Data, 2, &"zz".repeat(60)).is_none());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(to_hex(&[0x00, 0x9f, 0xff]), "009fff");
        assert_eq!(from_hex("009fFF").unwrap(), vec![0x00, 0x9f, 0xff]);
        assert!(from_hex("0").is_none());
        assert!(from_hex("0g").is_none());
        assert!(from_hex("+1").is_none());
    }
}
