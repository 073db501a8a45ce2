//! WAL page headers (`XLogPageHeaderData`, `XLogLongPageHeaderData` in `xlog_internal.h`).
//!
//! Every WAL page starts with a 24-byte header; the first page of each segment has a 40-byte long
//! header that also names the cluster (system identifier), the segment size and the page size.

use super::fields::{u16_at, u32_at, u64_at};
use super::lsn::{Lsn, TimelineId};

/// Size of a short page header (`SizeOfXLogShortPHD`, MAXALIGNed).
pub const SHORT_HEADER_LEN: usize = 24;
/// Size of a long page header (`SizeOfXLogLongPHD`).
pub const LONG_HEADER_LEN: usize = 40;

/// `xlp_info`: the page starts with the continuation of a record from the previous page.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `xlp_info`: this page has a long header (first page of a segment only).
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `xlp_info`: the record that was continuing onto this page was lost in a crash and the page was
/// rewritten with new WAL (12.9+/13.5+/14.1+); a reader drops the partial record.
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// `xlp_info`: every flag any supported version defines (12.9+/13.5+/14.1+ added 0x0008).
pub const XLP_ALL_FLAGS: u16 = 0x000F;

/// The fields of a page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    pub magic: u16,
    pub info: u16,
    pub timeline: TimelineId,
    /// LSN of the page's first byte; a recycled or stale page gives itself away here.
    pub page_address: Lsn,
    /// Bytes of a record continued from the previous page still to come.
    pub remaining_length: u32,
    pub long: Option<LongHeaderFields>,
}

/// The extra fields of a long page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongHeaderFields {
    pub system_id: u64,
    pub segment_size: u32,
    pub page_size: u32,
}

impl PageHeader {
    /// Decodes the header at the start of `page`. Returns `None` if `page` is too short to hold
    /// the header its flags announce.
    pub fn decode(page: &[u8]) -> Option<PageHeader> {
        if page.len() < SHORT_HEADER_LEN {
            return None;
        }
        let info = u16_at(page, 2);
        let long = if info & XLP_LONG_HEADER != 0 {
            if page.len() < LONG_HEADER_LEN {
                return None;
            }
            Some(LongHeaderFields {
                system_id: u64_at(page, 24),
                segment_size: u32_at(page, 32),
                page_size: u32_at(page, 36),
            })
        } else {
            None
        };
        Some(PageHeader {
            magic: u16_at(page, 0),
            info,
            timeline: TimelineId(u32_at(page, 4)),
            page_address: Lsn(u64_at(page, 8)),
            remaining_length: u32_at(page, 16),
            long,
        })
    }

    /// The WAL page size (`xlp_xlog_blcksz`), which only a long header states.
    pub fn page_size(&self) -> Option<u32> {
        self.long.map(|long| long.page_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_first_page_of_a_real_postgresql_15_segment() {
        // `xxd -l 48 000000010000000000000002` from a PostgreSQL 15.18 cluster.
        let bytes: [u8; 48] = [
            0x10, 0xd1, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0xd5, 0x43, 0xcd,
            0x75, 0xa0, 0x01, 0x6b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00, 0x00, 0x3d, 0x00,
            0x00, 0x00, 0xd5, 0x02, 0x00, 0x00,
        ];
        let header = PageHeader::decode(&bytes).unwrap();
        assert_eq!(header.magic, 0xD110);
        assert_eq!(header.info, 0x0006);
        assert_eq!(header.timeline, TimelineId(1));
        assert_eq!(header.page_address, Lsn(0x0200_0000));
        assert_eq!(header.remaining_length, 0);
        let long = header.long.unwrap();
        assert_eq!(long.system_id, 7710620464850392560);
        assert_eq!(long.segment_size, 16 << 20);
        assert_eq!(long.page_size, 8192);
        assert_eq!(header.page_size(), Some(8192));
    }

    #[test]
    fn only_a_long_header_states_the_page_size() {
        let mut page = [0u8; LONG_HEADER_LEN];
        page[36..40].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(PageHeader::decode(&page).unwrap().page_size(), None);
        page[2] = XLP_LONG_HEADER as u8;
        assert_eq!(PageHeader::decode(&page).unwrap().page_size(), Some(4096));
    }

    #[test]
    fn short_input_is_not_a_header() {
        assert!(PageHeader::decode(&[0u8; 23]).is_none());
        let mut long_flag_only = [0u8; 30];
        long_flag_only[2] = 0x02;
        assert!(PageHeader::decode(&long_flag_only).is_none());
    }
}
