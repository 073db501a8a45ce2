//! A decoder of the plain ustar headers PostgreSQL's BASE_BACKUP sends, without I/O.
//!
//! PostgreSQL writes only ustar members of type file, directory and symbolic link, with names of
//! at most 99 bytes (pg_basebackup refuses longer ones, src/port/tar.c). GNU long-name and
//! long-link members and pax extended headers are refused rather than read: a general tar
//! reader keeps their whole content in memory, at whatever size their header claims, so a
//! hostile stream could make it allocate without bound. Everything a header yields is bounded
//! by its 512 bytes.

/// The size of a header and the unit member contents are padded to.
pub const BLOCK_LEN: usize = 512;

/// What a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    File,
    Directory,
    Symlink,
}

/// One member's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberHeader {
    /// As written: the ustar prefix, a `/` and the name when there is a prefix.
    pub path: String,
    pub kind: MemberKind,
    pub mode: u32,
    pub mtime: u64,
    /// Content bytes after the header (0 for anything but a file), before padding.
    pub size: u64,
    /// A symbolic link's target.
    pub link: Option<String>,
}

/// Why a header block cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UstarError {
    #[error("a tar header is not a ustar header (magic {0:?})")]
    NotUstar(Vec<u8>),
    #[error("a tar header is damaged: its checksum is {actual}, the header says {expected}")]
    Checksum { actual: u64, expected: u64 },
    #[error("a tar header has an unreadable {field} field {bytes:?}")]
    BadNumber { field: &'static str, bytes: Vec<u8> },
    #[error(
        "the tar stream has {path} of type {kind:?}, which PostgreSQL never sends (GNU long names and pax headers are refused)"
    )]
    UnexpectedType { path: String, kind: char },
}

/// Decodes one header block; `None` for a zero block, which ends the archive.
pub fn decode_header(block: &[u8; BLOCK_LEN]) -> Result<Option<MemberHeader>, UstarError> {
    if block.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    // POSIX writes "ustar\0" "00", GNU tar "ustar " " \0".
    if &block[257..262] != b"ustar" {
        return Err(UstarError::NotUstar(block[257..265].to_vec()));
    }
    let expected = number(block, "checksum", 148..156)?;
    // The checksum is of the header with its own field read as spaces.
    let actual: u64 = block
        .iter()
        .enumerate()
        .map(|(at, &b)| u64::from(if (148..156).contains(&at) { b' ' } else { b }))
        .sum();
    if actual != expected {
        return Err(UstarError::Checksum { actual, expected });
    }
    let name = text(&block[0..100]);
    let prefix = text(&block[345..500]);
    let path = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    let kind = match block[156] {
        b'0' | 0 | b'7' => MemberKind::File,
        b'5' => MemberKind::Directory,
        b'2' => MemberKind::Symlink,
        other => {
            return Err(UstarError::UnexpectedType {
                path,
                kind: char::from(other),
            });
        }
    };
    let mode = number(block, "mode", 100..108)?;
    let mode = u32::try_from(mode).map_err(|_| bad_number(block, "mode", 100..108))?;
    Ok(Some(MemberHeader {
        kind,
        mode,
        mtime: number(block, "mtime", 136..148)?,
        size: match kind {
            MemberKind::File => number(block, "size", 124..136)?,
            MemberKind::Directory | MemberKind::Symlink => 0,
        },
        link: (kind == MemberKind::Symlink).then(|| text(&block[157..257])),
        path,
    }))
}

/// The bytes of padding after `size` bytes of content.
pub fn padding_after(size: u64) -> usize {
    (size.wrapping_neg() % BLOCK_LEN as u64) as usize
}

/// A NUL-terminated (or full) text field.
fn text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn bad_number(block: &[u8], field: &'static str, range: std::ops::Range<usize>) -> UstarError {
    UstarError::BadNumber {
        field,
        bytes: block[range].to_vec(),
    }
}

/// A numeric field: octal digits, optionally led by spaces and ended by a space or NUL, or
/// (for values too large for the digits, as PostgreSQL writes a file of 8 GiB or more) base-256
/// big-endian with the top bit of the first byte set.
fn number(
    block: &[u8],
    field: &'static str,
    range: std::ops::Range<usize>,
) -> Result<u64, UstarError> {
    let bytes = &block[range.clone()];
    let bad = || bad_number(block, field, range.clone());
    if bytes[0] & 0x80 != 0 {
        // Negative numbers (0xff first) mean nothing here; more than 64 bits cannot be a size.
        let rest = &bytes[1..];
        let (high, low) = rest.split_at(rest.len().saturating_sub(8));
        if bytes[0] != 0x80 || high.iter().any(|&b| b != 0) {
            return Err(bad());
        }
        return Ok(low
            .iter()
            .fold(0u64, |value, &b| (value << 8) | u64::from(b)));
    }
    let start = bytes.iter().position(|&b| b != b' ').ok_or_else(bad)?;
    let digits = &bytes[start..];
    let end = digits
        .iter()
        .position(|&b| b == b' ' || b == 0)
        .unwrap_or(digits.len());
    if end == 0 || digits[end..].iter().any(|&b| b != b' ' && b != 0) {
        return Err(bad());
    }
    digits[..end].iter().try_fold(0u64, |value, &digit| {
        if !(b'0'..=b'7').contains(&digit) {
            return Err(bad());
        }
        // At most 12 digits fit a field: 36 bits, no overflow.
        Ok(value * 8 + u64::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as PostgreSQL's tarCreateHeader writes it.
    fn header(name: &str, kind: u8, size: u64, link: &str) -> [u8; BLOCK_LEN] {
        let mut block = [0u8; BLOCK_LEN];
        block[..name.len()].copy_from_slice(name.as_bytes());
        block[100..108].copy_from_slice(b"0000600 ");
        block[108..116].copy_from_slice(b"0000764 ");
        block[116..124].copy_from_slice(b"0000764 ");
        block[124..136].copy_from_slice(format!("{size:011o} ").as_bytes());
        block[136..148].copy_from_slice(b"14712345670 ");
        block[156] = kind;
        block[157..157 + link.len()].copy_from_slice(link.as_bytes());
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        seal(&mut block);
        block
    }

    fn seal(block: &mut [u8; BLOCK_LEN]) {
        block[148..156].copy_from_slice(b"        ");
        let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn reads_what_postgresql_writes() {
        let file = decode_header(&header("base/1/1259", b'0', 8192, ""))
            .unwrap()
            .unwrap();
        assert_eq!(
            file,
            MemberHeader {
                path: "base/1/1259".into(),
                kind: MemberKind::File,
                mode: 0o600,
                mtime: 0o14712345670,
                size: 8192,
                link: None,
            }
        );
        let link = decode_header(&header("pg_tblspc/16385", b'2', 0, "/srv/ts1"))
            .unwrap()
            .unwrap();
        assert_eq!(link.link.as_deref(), Some("/srv/ts1"));
        let directory = decode_header(&header("base", b'5', 0, ""))
            .unwrap()
            .unwrap();
        assert_eq!(directory.kind, MemberKind::Directory);
        assert_eq!(decode_header(&[0; BLOCK_LEN]), Ok(None));
    }

    #[test]
    fn a_size_past_eleven_octal_digits_is_read_in_base_256() {
        let mut block = header("base/1/16384", b'0', 0, "");
        block[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
        seal(&mut block);
        assert_eq!(decode_header(&block).unwrap().unwrap().size, 8 << 30);
        block[124] = 0xff;
        seal(&mut block);
        assert!(matches!(
            decode_header(&block),
            Err(UstarError::BadNumber { field: "size", .. })
        ));
    }

    /// The members a general tar reader would keep whole in memory are refused by their header.
    #[test]
    fn gnu_long_names_and_pax_headers_are_refused() {
        for kind in [b'L', b'K', b'x', b'g', b'S'] {
            let mut block = header("././@LongLink", kind, u64::from(u32::MAX), "");
            block[124..136].copy_from_slice(&[
                0x80, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ]);
            seal(&mut block);
            assert_eq!(
                decode_header(&block),
                Err(UstarError::UnexpectedType {
                    path: "././@LongLink".into(),
                    kind: char::from(kind)
                })
            );
        }
    }

    #[test]
    fn damaged_headers_are_refused() {
        let mut flipped = header("base/1/1259", b'0', 1, "");
        flipped[3] ^= 1;
        assert!(matches!(
            decode_header(&flipped),
            Err(UstarError::Checksum { .. })
        ));
        let mut not_ustar = header("base/1/1259", b'0', 1, "");
        not_ustar[257..265].fill(0);
        seal(&mut not_ustar);
        assert!(matches!(
            decode_header(&not_ustar),
            Err(UstarError::NotUstar(_))
        ));
        let mut bad_digit = header("base/1/1259", b'0', 1, "");
        bad_digit[130] = b'9';
        seal(&mut bad_digit);
        assert!(matches!(
            decode_header(&bad_digit),
            Err(UstarError::BadNumber { field: "size", .. })
        ));
    }

    #[test]
    fn padding_fills_the_last_block() {
        assert_eq!(padding_after(0), 0);
        assert_eq!(padding_after(1), 511);
        assert_eq!(padding_after(512), 0);
        assert_eq!(padding_after(u64::MAX), 1);
    }
}
