//! The checker and the AUX reader against RDBs built here byte by byte, fed whole, split at
//! every point, and byte by byte.

use super::*;

/// An RDB string with a 6-bit length.
fn string(text: &[u8]) -> Vec<u8> {
    assert!(text.len() < 64);
    let mut out = vec![text.len() as u8];
    out.extend_from_slice(text);
    out
}

fn aux(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFA];
    out.extend(string(name));
    out.extend_from_slice(value);
    out
}

/// A small RDB as Redis 7.0 writes one: AUX fields (plain, int-encoded, 14-bit length, LZF),
/// one key in db 0, EOF, and the CRC-64 trailer (`trailer` overrides it when given).
fn rdb(version: &str, trailer: Option<u64>) -> Vec<u8> {
    let mut body = format!("REDIS{version}").into_bytes();
    body.extend(aux(b"redis-ver", &string(b"7.0.15")));
    // ctime as a 32-bit integer (0xC2), little-endian.
    body.extend(aux(
        b"ctime",
        &[&[0xC2][..], &1_765_000_000i32.to_le_bytes()].concat(),
    ));
    // repl-offset as an 8-bit integer (0xC0).
    body.extend(aux(b"repl-offset", &[0xC0, 42]));
    // aof-base as a 16-bit integer (0xC1).
    body.extend(aux(b"aof-base", &[0xC1, 0, 0]));
    // repl-id with a 14-bit length (0x40 | high bits, low byte).
    let id = b"0123456789abcdef0123456789abcdef01234567";
    body.extend(aux(b"repl-id", &[&[0x40, id.len() as u8][..], id].concat()));
    // An LZF-compressed value (0xC3): "abcabcabc" is literal "abc" and a 6-byte back reference.
    body.extend(aux(b"lzf", &[0xC3, 6, 9, 2, b'a', b'b', b'c', 0x80, 0x02]));
    body.extend([0xFE, 0x00, 0x00]);
    body.extend(string(b"key"));
    body.extend(string(b"value"));
    body.push(0xFF);
    let crc = trailer.unwrap_or_else(|| crc64(&body));
    body.extend(crc.to_le_bytes());
    body
}

fn check(pieces: &[&[u8]]) -> anyhow::Result<RdbSummary> {
    let mut checker = RdbChecker::new();
    for piece in pieces {
        checker.update(piece)?;
    }
    checker.finish()
}

#[test]
fn the_crc_is_redis_crc64_jones() {
    // The check value of CRC-64/REDIS (redis crc64.c's own test: "123456789").
    assert_eq!(crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
}

#[test]
fn a_whole_rdb_passes_however_it_is_split() {
    let file = rdb("0011", None);
    let expected = RdbSummary {
        version: 11,
        bytes: file.len() as u64,
        crc64: Some(crc64(&file[..file.len() - 8])),
    };
    assert_eq!(check(&[&file]).unwrap(), expected);
    for split in 0..=file.len() {
        let (a, b) = file.split_at(split);
        assert_eq!(check(&[a, b]).unwrap(), expected, "split at {split}");
    }
    let bytes: Vec<&[u8]> = file.chunks(1).collect();
    assert_eq!(check(&bytes).unwrap(), expected);
    let threes: Vec<&[u8]> = file.chunks(3).collect();
    assert_eq!(check(&threes).unwrap(), expected);
}

#[test]
fn any_flipped_byte_is_refused() {
    let file = rdb("0010", None);
    for at in 0..file.len() {
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        let error = check(&[&bad]).expect_err(&format!("flip at {at} accepted"));
        let text = format!("{error:#}");
        assert!(
            text.contains("CRC-64") || text.contains("header") || text.contains("EOF opcode"),
            "flip at {at}: {text}"
        );
    }
}

#[test]
fn a_wrong_magic_is_refused_as_soon_as_the_header_is_seen() {
    let mut file = rdb("0010", None);
    file[..5].copy_from_slice(b"REDIZ");
    let mut checker = RdbChecker::new();
    checker.update(&file[..8]).unwrap();
    let error = checker.update(&file[8..9]).unwrap_err();
    assert!(
        format!("{error}").contains("does not start with an RDB header"),
        "{error}"
    );
    let mut file = rdb("0010", None);
    file[7] = b'x';
    assert!(check(&[&file]).is_err());
    let file = rdb("0000", None);
    assert!(format!("{}", check(&[&file]).unwrap_err()).contains("version 0"));
}

#[test]
fn a_newer_version_is_recorded_not_refused() {
    let file = rdb("0013", None);
    assert_eq!(check(&[&file]).unwrap().version, 13);
    const { assert!(13 > NEWEST_KNOWN_RDB_VERSION) };
}

#[test]
fn a_zero_trailer_means_no_checksum() {
    let file = rdb("0010", Some(0));
    assert_eq!(check(&[&file]).unwrap().crc64, None);
}

#[test]
fn a_stream_cut_short_is_refused() {
    let file = rdb("0010", None);
    for cut in [0, 5, 9, 17, file.len() - 9, file.len() - 1] {
        let error = check(&[&file[..cut]]).expect_err(&format!("cut at {cut} accepted"));
        let text = format!("{error}");
        assert!(
            text.contains("shorter than")
                || text.contains("too short")
                || text.contains("EOF opcode")
                || text.contains("CRC-64"),
            "cut at {cut}: {text}"
        );
    }
}

#[test]
fn the_aux_fields_are_read_however_the_stream_is_split() {
    let file = rdb("0010", None);
    let mut expected = AuxFields::default();
    for (name, value) in [
        ("redis-ver", "7.0.15"),
        ("ctime", "1765000000"),
        ("repl-offset", "42"),
        ("aof-base", "0"),
        ("repl-id", "0123456789abcdef0123456789abcdef01234567"),
        ("lzf", "abcabcabc"),
    ] {
        expected.fields.insert(name.to_owned(), value.to_owned());
    }
    for split in 0..=file.len() {
        let mut reader = AuxReader::new();
        reader.update(&file[..split]);
        reader.update(&file[split..]);
        assert_eq!(
            reader.finish(),
            (expected.clone(), None),
            "split at {split}"
        );
    }
    let mut reader = AuxReader::new();
    for byte in file.chunks(1) {
        reader.update(byte);
    }
    let (fields, problem) = reader.finish();
    assert_eq!(problem, None);
    assert_eq!(fields.redis_version(), Some("7.0.15"));
    assert_eq!(fields.ctime(), Some(1_765_000_000));
    assert_eq!(fields.repl_offset(), Some(42));
    assert_eq!(fields.aof_base(), Some(false));
    assert_eq!(
        fields.repl_id(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
}

#[test]
fn aux_fields_cut_short_or_malformed_are_said_not_fatal() {
    let file = rdb("0010", None);
    let mut reader = AuxReader::new();
    reader.update(&file[..20]);
    let (_, problem) = reader.finish();
    assert!(problem.unwrap().contains("ended inside"));
    let mut bad = file[..9].to_vec();
    bad.extend([0xFA, 0xC3, 6, 9, 2, b'a', b'b', b'c', 0x80, 0x09]);
    let mut reader = AuxReader::new();
    reader.update(&bad);
    let (_, problem) = reader.finish();
    assert!(problem.unwrap().contains("LZF"));
}

#[test]
fn lzf_back_references_may_overlap() {
    // "a" then a back reference of distance 1, length 8: "aaaaaaaaa".
    assert_eq!(
        lzf::decompress(&[0, b'a', 0xC0, 0], 9).unwrap(),
        b"aaaaaaaaa"
    );
    assert!(lzf::decompress(&[0, b'a', 0xC0, 0], 8).is_err());
    assert!(lzf::decompress(&[0x20, 5], 3).is_err());
}
