//! The block references and data headers that follow a record's fixed header, checked as
//! `DecodeXLogRecord` (`xlogreader.c`) checks them: they say where the record's main data is,
//! which the resource managers' decoders read.

use super::record::RECORD_HEADER_LEN;
use crate::pg::fields::{u16_at, u32_at};
use crate::pg::version::PgMajor;

/// An upper bound on the block and data headers that follow the record header: 33 block headers of
/// at most 27 bytes, an origin, a top-level XID and a main-data header take 904 bytes. Records of
/// resource managers whose bodies are not read are only kept this far, so a 1 GiB logical message
/// costs no memory.
pub(super) const MAX_HEADERS_LEN: usize = 1024;

/// Block reference IDs and the special IDs after them (`xlogrecord.h`).
const XLR_MAX_BLOCK_ID: u8 = 32;
pub(super) const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
pub(super) const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
/// PostgreSQL 14+.
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
/// `fork_flags` bits of a block header.
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
/// `bimg_info` bits: the hole bit is the same in every version, compression is not.
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
const BKPIMAGE_IS_COMPRESSED_BEFORE_15: u8 = 0x02;
/// PGLZ, LZ4 and ZSTD in PostgreSQL 15+.
const BKPIMAGE_COMPRESSED_SINCE_15: u8 = 0x04 | 0x08 | 0x10;
/// `sizeof(RelFileNode)` / `sizeof(RelFileLocator)`.
pub(super) const RELFILENODE_LEN: usize = 12;

/// Reads the block and data headers after the record header, checking them as
/// `DecodeXLogRecord` does, and returns the length of the main data, which ends the record.
/// `kept` holds the record's first bytes (at least its headers), `total` is `xl_tot_len`.
pub(super) fn main_data_len(kept: &[u8], total: usize, version: PgMajor) -> Result<usize, String> {
    let mut headers = HeaderReader {
        kept,
        at: RECORD_HEADER_LEN,
        remaining: total - RECORD_HEADER_LEN,
    };
    let compressed_bits = if version.number() >= 15 {
        BKPIMAGE_COMPRESSED_SINCE_15
    } else {
        BKPIMAGE_IS_COMPRESSED_BEFORE_15
    };
    // Bytes of block images, block data and main data that follow the headers.
    let mut data_total = 0usize;
    let mut main_len = 0usize;
    let mut last_block: Option<u8> = None;
    let mut have_relation = false;
    while headers.remaining > data_total {
        let id = headers.u8()?;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(headers.u8()?);
                data_total += main_len;
                // By convention the main data header is always the last one.
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = headers.u32()? as usize;
                data_total += main_len;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => headers.skip(2)?,
            XLR_BLOCK_ID_TOPLEVEL_XID if version.number() >= 14 => headers.skip(4)?,
            0..=XLR_MAX_BLOCK_ID => {
                if let Some(last) = last_block
                    && id <= last
                {
                    return Err(format!("block {id} follows block {last}"));
                }
                last_block = Some(id);
                data_total += block_header(&mut headers, id, compressed_bits, &mut have_relation)?;
            }
            _ => return Err(format!("invalid block id {id}")),
        }
    }
    if headers.remaining != data_total {
        return Err(format!(
            "its headers announce {data_total} bytes of data, but {} bytes follow them",
            headers.remaining
        ));
    }
    Ok(main_len)
}

/// Reads one block header (after its id) and returns the bytes of image and data it announces.
fn block_header(
    headers: &mut HeaderReader,
    id: u8,
    compressed_bits: u8,
    have_relation: &mut bool,
) -> Result<usize, String> {
    let fork_flags = headers.u8()?;
    let data_len = usize::from(headers.u16()?);
    let has_data = fork_flags & BKPBLOCK_HAS_DATA != 0;
    if has_data != (data_len != 0) {
        return Err(format!(
            "block {id} has data length {data_len}, but its has-data flag is {has_data}"
        ));
    }
    let mut announced = data_len;
    if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
        let image_len = usize::from(headers.u16()?);
        let hole_offset = headers.u16()?;
        let image_info = headers.u8()?;
        let has_hole = image_info & BKPIMAGE_HAS_HOLE != 0;
        // An uncompressed image's hole length follows from its length; a compressed one's is
        // stored.
        let hole_len = if has_hole && image_info & compressed_bits != 0 {
            headers.u16()?
        } else {
            0
        };
        if has_hole && (hole_offset == 0 || (image_info & compressed_bits != 0 && hole_len == 0)) {
            return Err(format!(
                "block {id}'s image has a hole at offset {hole_offset} of length {hole_len}"
            ));
        }
        if !has_hole && hole_offset != 0 {
            return Err(format!(
                "block {id}'s image has no hole, but a hole offset of {hole_offset}"
            ));
        }
        announced += image_len;
    }
    if fork_flags & BKPBLOCK_SAME_REL == 0 {
        headers.skip(RELFILENODE_LEN)?;
        *have_relation = true;
    } else if !*have_relation {
        return Err(format!(
            "block {id} refers to the previous block's relation, but there is none"
        ));
    }
    headers.skip(4)?; // BlockNumber
    Ok(announced)
}

/// Reads the headers after the record header, never past the record's end (`remaining`) nor past
/// what was kept of it.
struct HeaderReader<'a> {
    kept: &'a [u8],
    at: usize,
    remaining: usize,
}

impl HeaderReader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.remaining {
            return Err(format!(
                "its headers run past its end at offset {}",
                self.at
            ));
        }
        let Some(bytes) = self.kept.get(self.at..self.at + n) else {
            return Err(format!(
                "its headers run past {MAX_HEADERS_LEN} bytes, more than any valid record has"
            ));
        };
        self.at += n;
        self.remaining -= n;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.bytes(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16_at(self.bytes(2)?, 0))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32_at(self.bytes(4)?, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::wal::WalRecordDefect;
    use crate::pg::wal::rmgr::RM_XACT_ID;
    use crate::pg::wal::test_wal::*;

    /// A body with two block references (the first with an image) and main data, in the layout of
    /// `version`; the main data is a commit's `xact_time`.
    fn blocks_body(version: u32, extra_headers: &[u8], image_info: u8) -> Vec<u8> {
        let mut body = vec![0u8, BKPBLOCK_HAS_IMAGE | BKPBLOCK_HAS_DATA];
        body.extend_from_slice(&10u16.to_le_bytes()); // data_length
        body.extend_from_slice(&300u16.to_le_bytes()); // bimg_len
        body.extend_from_slice(&64u16.to_le_bytes()); // hole_offset
        body.push(image_info);
        let compressed = if version >= 15 { 0x1C } else { 0x02 };
        if image_info & BKPIMAGE_HAS_HOLE != 0 && image_info & compressed != 0 {
            body.extend_from_slice(&4000u16.to_le_bytes()); // hole_length
        }
        body.extend_from_slice(&[1; RELFILENODE_LEN]);
        body.extend_from_slice(&7u32.to_le_bytes());
        body.extend_from_slice(&[1, BKPBLOCK_HAS_DATA | BKPBLOCK_SAME_REL]);
        body.extend_from_slice(&5u16.to_le_bytes());
        body.extend_from_slice(&8u32.to_le_bytes());
        body.extend_from_slice(extra_headers);
        body.extend_from_slice(&[XLR_BLOCK_ID_DATA_SHORT, 8]);
        body.extend_from_slice(&[0x99; 300 + 10 + 5]);
        body.extend_from_slice(&4242i64.to_le_bytes());
        body
    }

    #[test]
    fn main_data_is_found_after_block_headers_of_every_version() {
        let origin_and_toplevel = [
            XLR_BLOCK_ID_ORIGIN,
            1,
            0,
            XLR_BLOCK_ID_TOPLEVEL_XID,
            9,
            0,
            0,
            0,
        ];
        // PostgreSQL 15+: LZ4-compressed image with a hole stores the hole length.
        let pg15 = blocks_body(15, &origin_and_toplevel, BKPIMAGE_HAS_HOLE | 0x08);
        assert_eq!(commit_time(walk_one_record(15, RM_XACT_ID, &pg15)), 4242);
        assert_eq!(commit_time(walk_one_record(17, RM_XACT_ID, &pg15)), 4242);
        // PostgreSQL 12-14: compressed is 0x02.
        let pg14 = blocks_body(14, &origin_and_toplevel, BKPIMAGE_HAS_HOLE | 0x02);
        assert_eq!(commit_time(walk_one_record(14, RM_XACT_ID, &pg14)), 4242);
        // In PostgreSQL 15 0x02 means "apply", so no hole length is stored: the headers misalign.
        assert!(matches!(
            walk_one_record(15, RM_XACT_ID, &pg14),
            Err(WalRecordDefect::BadBody { .. })
        ));
        // An uncompressed image with a hole stores no hole length in any version.
        let plain = blocks_body(13, &[XLR_BLOCK_ID_ORIGIN, 1, 0], BKPIMAGE_HAS_HOLE);
        assert_eq!(commit_time(walk_one_record(13, RM_XACT_ID, &plain)), 4242);
        assert_eq!(commit_time(walk_one_record(16, RM_XACT_ID, &plain)), 4242);
        // The top-level XID block id only exists from PostgreSQL 14.
        let with_toplevel = blocks_body(13, &origin_and_toplevel, BKPIMAGE_HAS_HOLE);
        assert!(matches!(
            walk_one_record(13, RM_XACT_ID, &with_toplevel),
            Err(WalRecordDefect::BadBody { reason, .. }) if reason.contains("252")
        ));
        // Other resource managers' records are checked the same way.
        assert!(walk_one_record(15, RM_HEAP_ID, &pg15).is_ok());
    }

    #[test]
    fn inconsistent_block_headers_are_refused() {
        let good = blocks_body(15, &[], BKPIMAGE_HAS_HOLE | 0x08);
        type Damage = fn(&mut Vec<u8>);
        let cases: [(&str, Damage, &str); 5] = [
            (
                "data flag without data",
                |b| b[2..4].fill(0),
                "data length 0",
            ),
            (
                "blocks out of order",
                |b| b[27] = 0,
                "block 0 follows block 0",
            ),
            (
                "same relation first",
                |b| b[1] |= BKPBLOCK_SAME_REL,
                "there is none",
            ),
            (
                "headers announce more than follows",
                |b| b[2] = 11,
                "announce",
            ),
            ("invalid block id", |b| b[27] = 100, "invalid block id 100"),
        ];
        for (what, damage, expected) in cases {
            let mut body = good.clone();
            damage(&mut body);
            match walk_one_record(15, RM_HEAP_ID, &body) {
                Err(WalRecordDefect::BadBody { reason, .. }) => {
                    assert!(reason.contains(expected), "{what}: {reason}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
