//! The fixed header every WAL record starts with (`XLogRecord`, `xlogrecord.h`), the CRC-32C
//! that covers a record, and the alignment records start at.

use crate::pg::fields::{u32_at, u64_at};
use crate::pg::lsn::Lsn;

/// `SizeOfXLogRecord`: the fixed header every record starts with.
pub(super) const RECORD_HEADER_LEN: usize = 24;
/// Offset of `xl_crc`; the CRC covers the header only up to here, after the rest of the record.
const CRC_OFFSET: usize = 20;
/// The longest record PostgreSQL's reader accepts (`AllocSizeIsValid` in `allocate_recordbuf`,
/// `xlogreader.c`); a longer `xl_tot_len` is garbage.
pub(super) const MAX_RECORD_LEN: u32 = 0x3FFF_FFFF;

/// The fields of a record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RecordHeader {
    /// `xl_tot_len`: the whole record, header included.
    pub total_len: u32,
    /// `xl_xid`: the transaction that wrote it (0 for many records).
    pub xid: u32,
    /// `xl_prev`: where the record before it starts.
    pub prev: Lsn,
    /// `xl_info`: the resource manager's opcode in the high bits, generic flags in the low ones.
    pub info: u8,
    /// `xl_rmid`: the resource manager.
    pub rmid: u8,
    /// `xl_crc`.
    pub crc: u32,
}

impl RecordHeader {
    /// Decodes the header at the start of `record`, which holds at least [`RECORD_HEADER_LEN`]
    /// bytes.
    #[inline]
    pub fn decode(record: &[u8]) -> RecordHeader {
        // One length check for every field, so that a caller reading one field pays for one.
        let header: &[u8; RECORD_HEADER_LEN] = record[..RECORD_HEADER_LEN]
            .try_into()
            .expect("a record header's worth of bytes");
        RecordHeader {
            total_len: u32_at(header, 0),
            xid: u32_at(header, 4),
            prev: Lsn(u64_at(header, 8)),
            info: header[16],
            rmid: header[17],
            crc: u32_at(header, CRC_OFFSET),
        }
    }
}

/// `xl_tot_len` of the record starting at `offset` of `page`: its first field, which is on the
/// record's first page even when the rest of the header is not, since records start MAXALIGNed.
#[inline]
pub(super) fn total_len_at(page: &[u8], offset: usize) -> u32 {
    u32_at(page, offset)
}

/// The CRC PostgreSQL stores in `xl_crc`: CRC-32C over the bytes after the header (`body_crc`),
/// continued over the header up to the CRC field.
#[inline]
pub(super) fn record_crc(body_crc: u32, header: &[u8]) -> u32 {
    crc32c::crc32c_append(body_crc, &header[..CRC_OFFSET])
}

/// `MAXALIGN`: records start on 8-byte boundaries.
#[inline]
pub(super) fn maxalign(x: u64) -> u64 {
    (x + 7) & !7
}
