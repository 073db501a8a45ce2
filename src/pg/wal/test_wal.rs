//! Test WAL: segments laid out as PostgreSQL lays them out, written record by record, and the
//! walks the tests of the reader, the walker and the decoders make over them.

use super::block_headers::{XLR_BLOCK_ID_DATA_LONG, XLR_BLOCK_ID_DATA_SHORT};
use super::defect::WalRecordDefect;
use super::facts::WalkedSegment;
use super::record::{RECORD_HEADER_LEN, maxalign, record_crc};
use super::rmgr::xact::{XACT_XINFO_HAS_SUBXACTS, XLOG_XACT_COMMIT, XLOG_XACT_HAS_INFO};
use super::rmgr::xlog::XLOG_SWITCH;
use super::rmgr::{RM_XACT_ID, RM_XLOG_ID};
use super::walker::RecordWalker;
use crate::pg::file_name::{SegmentName, SegmentSize};
use crate::pg::lsn::TimelineId;
use crate::pg::page::{
    LONG_HEADER_LEN, SHORT_HEADER_LEN, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER,
};
use crate::pg::segment_check::CHUNK_ALIGNMENT;
use crate::pg::version::PgMajor;

pub(crate) const PAGE: usize = 8192;
pub(crate) const MIB: u64 = 1 << 20;
pub(crate) const RM_HEAP_ID: u8 = 10;

pub(crate) fn pg(major: u32) -> PgMajor {
    PgMajor::new(major).unwrap()
}

/// A whole record: header with `prev` and the CRC over `body`, then `body`.
pub(crate) fn build_record(rmid: u8, info: u8, xid: u32, prev: u64, body: &[u8]) -> Vec<u8> {
    let total = (RECORD_HEADER_LEN + body.len()) as u32;
    let mut record = Vec::with_capacity(total as usize);
    record.extend_from_slice(&total.to_le_bytes());
    record.extend_from_slice(&xid.to_le_bytes());
    record.extend_from_slice(&prev.to_le_bytes());
    record.extend_from_slice(&[info, rmid, 0, 0]);
    let crc = record_crc(crc32c::crc32c(body), &record);
    record.extend_from_slice(&crc.to_le_bytes());
    record.extend_from_slice(body);
    record
}

/// A body holding only main data.
pub(crate) fn main_data_body(main: &[u8]) -> Vec<u8> {
    let mut body = if main.len() < 256 {
        vec![XLR_BLOCK_ID_DATA_SHORT, main.len() as u8]
    } else {
        let mut header = vec![XLR_BLOCK_ID_DATA_LONG];
        header.extend_from_slice(&(main.len() as u32).to_le_bytes());
        header
    };
    body.extend_from_slice(main);
    body
}

/// Writes WAL the way PostgreSQL lays it out over consecutive segments: MAXALIGNed records,
/// a page header at every page boundary (continuation flag and `xlp_rem_len` when a record
/// goes on), a long header at every segment start, a prev-link chain and CRCs.
pub(crate) struct WalWriter {
    pub(crate) bytes: Vec<u8>,
    pub(crate) first_segment: u64,
    pub(crate) base: u64,
    pub(crate) segment_size: u64,
    pub(crate) version: PgMajor,
    pub(crate) pos: u64,
    pub(crate) prev: u64,
    /// Extra `xlp_info` bits for the next page header written.
    pub(crate) next_page_flags: u16,
    pub(crate) lsns: Vec<u64>,
    /// Where the last record written ends, before alignment.
    pub(crate) end: u64,
}

impl WalWriter {
    pub(crate) fn new(
        first_segment: u64,
        segments: usize,
        segment_size: u64,
        version: PgMajor,
    ) -> Self {
        let base = first_segment * segment_size;
        WalWriter {
            bytes: vec![0; segments * segment_size as usize],
            first_segment,
            base,
            segment_size,
            version,
            pos: base,
            prev: base.saturating_sub(0x58),
            next_page_flags: 0,
            lsns: Vec::new(),
            end: base,
        }
    }

    pub(crate) fn mib(first_segment: u64, segments: usize) -> Self {
        WalWriter::new(first_segment, segments, MIB, pg(15))
    }

    pub(crate) fn header_len(&self, page_lsn: u64) -> u64 {
        if page_lsn.is_multiple_of(self.segment_size) {
            LONG_HEADER_LEN as u64
        } else {
            SHORT_HEADER_LEN as u64
        }
    }

    pub(crate) fn write_page_header(&mut self, page_lsn: u64, remaining: u32) {
        let at = (page_lsn - self.base) as usize;
        let long = page_lsn.is_multiple_of(self.segment_size);
        let mut info = std::mem::take(&mut self.next_page_flags);
        if long {
            info |= XLP_LONG_HEADER;
        }
        if remaining > 0 {
            info |= XLP_FIRST_IS_CONTRECORD;
        }
        let header = &mut self.bytes[at..at + LONG_HEADER_LEN];
        header[0..2].copy_from_slice(&self.version.page_magic().to_le_bytes());
        header[2..4].copy_from_slice(&info.to_le_bytes());
        header[4..8].copy_from_slice(&1u32.to_le_bytes());
        header[8..16].copy_from_slice(&page_lsn.to_le_bytes());
        header[16..20].copy_from_slice(&remaining.to_le_bytes());
        if long {
            header[24..32].copy_from_slice(&7_310_000_000_000_000_001u64.to_le_bytes());
            header[32..36].copy_from_slice(&(self.segment_size as u32).to_le_bytes());
            header[36..40].copy_from_slice(&(PAGE as u32).to_le_bytes());
        }
    }

    /// Writes a prepared record at the insert position; returns its LSN.
    pub(crate) fn put(&mut self, record: &[u8]) -> u64 {
        let mut lsn = None;
        let mut done = 0;
        while done < record.len() {
            if self.pos.is_multiple_of(PAGE as u64) {
                let remaining = if done > 0 { record.len() - done } else { 0 };
                self.write_page_header(self.pos, remaining as u32);
                self.pos += self.header_len(self.pos);
            }
            lsn.get_or_insert(self.pos);
            let n = (record.len() - done).min(PAGE - (self.pos % PAGE as u64) as usize);
            let at = (self.pos - self.base) as usize;
            self.bytes[at..at + n].copy_from_slice(&record[done..done + n]);
            done += n;
            self.pos += n as u64;
        }
        self.end = self.pos;
        self.pos = maxalign(self.pos);
        let lsn = lsn.unwrap();
        self.prev = lsn;
        self.lsns.push(lsn);
        lsn
    }

    pub(crate) fn record(&mut self, rmid: u8, info: u8, xid: u32, body: &[u8]) -> u64 {
        let record = build_record(rmid, info, xid, self.prev, body);
        self.put(&record)
    }

    pub(crate) fn main_data(&mut self, rmid: u8, info: u8, xid: u32, main: &[u8]) -> u64 {
        self.record(rmid, info, xid, &main_data_body(main))
    }

    /// A heap record of exactly `total` bytes (at least 26).
    pub(crate) fn filler(&mut self, total: usize) -> u64 {
        let len = total - RECORD_HEADER_LEN;
        let main_len = if len - 2 < 256 { len - 2 } else { len - 5 };
        self.main_data(RM_HEAP_ID, 0, 0, &vec![0xAB; main_len])
    }

    pub(crate) fn commit(&mut self, xid: u32, time: i64) -> u64 {
        self.main_data(RM_XACT_ID, XLOG_XACT_COMMIT, xid, &time.to_le_bytes())
    }

    /// A commit record listing `subxacts`: longer than a plain one.
    pub(crate) fn commit_with_subxacts(&mut self, xid: u32, time: i64, subxacts: &[u32]) -> u64 {
        let mut main = time.to_le_bytes().to_vec();
        main.extend_from_slice(&XACT_XINFO_HAS_SUBXACTS.to_le_bytes());
        main.extend_from_slice(&(subxacts.len() as u32).to_le_bytes());
        for sub in subxacts {
            main.extend_from_slice(&sub.to_le_bytes());
        }
        self.main_data(
            RM_XACT_ID,
            XLOG_XACT_COMMIT | XLOG_XACT_HAS_INFO,
            xid,
            &main,
        )
    }

    /// Segments `index` and `index + 1` walked as one stream.
    pub(crate) fn walk_spanning(&self, index: usize) -> Result<WalkedSegment, WalRecordDefect> {
        let name = SegmentName::from_segment_number(
            TimelineId(1),
            self.first_segment + index as u64,
            SegmentSize::new(self.segment_size).unwrap(),
        );
        let mut walker = RecordWalker::spanning(
            name,
            SegmentSize::new(self.segment_size).unwrap(),
            self.version,
            PAGE as u32,
        )?;
        walker.feed(self.segment(index))?;
        walker.feed(self.segment(index + 1))?;
        walker.finish(true)
    }

    pub(crate) fn switch(&mut self) -> u64 {
        let lsn = self.record(RM_XLOG_ID, XLOG_SWITCH, 0, &[]);
        // PostgreSQL zeroes the rest of the segment, page headers included.
        self.pos = (lsn / self.segment_size + 1) * self.segment_size;
        lsn
    }

    /// Where a record written now would start.
    pub(crate) fn next_lsn(&self, pos: u64) -> u64 {
        if pos.is_multiple_of(PAGE as u64) {
            pos + self.header_len(pos)
        } else {
            pos
        }
    }

    /// The insert position after a record of `total` bytes written now.
    pub(crate) fn end_after(&self, total: usize) -> u64 {
        let mut pos = self.pos;
        let mut left = total as u64;
        while left > 0 {
            if pos.is_multiple_of(PAGE as u64) {
                pos += self.header_len(pos);
            }
            let n = left.min(PAGE as u64 - pos % PAGE as u64);
            pos += n;
            left -= n;
        }
        maxalign(pos)
    }

    /// Writes filler records until the next record starts at `target`.
    pub(crate) fn fill_until(&mut self, target: u64) {
        while target - self.pos > 8000 {
            self.filler(3000);
        }
        let reach = (target - self.pos) as usize + 64;
        let total = (26..reach)
            .find(|&total| self.next_lsn(self.end_after(total)) == target)
            .unwrap_or_else(|| panic!("cannot fill from {:X} to {target:X}", self.pos));
        self.filler(total);
        assert_eq!(self.next_lsn(self.pos), target);
    }

    pub(crate) fn segment(&self, index: usize) -> &[u8] {
        let size = self.segment_size as usize;
        &self.bytes[index * size..(index + 1) * size]
    }

    pub(crate) fn offset(&self, lsn: u64) -> usize {
        (lsn - self.base) as usize
    }

    pub(crate) fn walk(&self, index: usize, complete: bool) -> Walked {
        walk_bytes(
            self.segment(index),
            self.first_segment + index as u64,
            self.segment_size,
            self.version,
            complete,
            CHUNK_ALIGNMENT,
        )
    }
}

pub(crate) type Walked = Result<(WalkedSegment, u64), WalRecordDefect>;

/// Feeds `bytes` as segment `segno` in chunks of `chunk`; the summary and the record count.
pub(crate) fn walk_bytes(
    bytes: &[u8],
    segno: u64,
    segment_size: u64,
    version: PgMajor,
    complete: bool,
    chunk: usize,
) -> Walked {
    let size = SegmentSize::new(segment_size).unwrap();
    let name = SegmentName::from_segment_number(TimelineId(1), segno, size);
    let mut walker = RecordWalker::new(name, size, version, PAGE as u32);
    for piece in bytes.chunks(chunk) {
        walker.feed(piece)?;
    }
    let count = walker.record_count();
    walker.finish(complete).map(|summary| (summary, count))
}

pub(crate) fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Segment 3 of 1 MiB segments: commits, a record whose header is split 8/16 and one split
/// 16/8 across page boundaries, a record over three pages, and a switch.
pub(crate) fn split_records() -> (WalWriter, Vec<u64>) {
    let mut wal = WalWriter::mib(3, 1);
    let base = wal.base;
    let mut commits = vec![wal.commit(700, 1_000)];
    wal.fill_until(base + PAGE as u64 - 8);
    commits.push(wal.commit(701, 2_000));
    wal.fill_until(base + 2 * PAGE as u64 - 16);
    commits.push(wal.commit(702, 3_000));
    wal.filler(20_000);
    commits.push(wal.commit(703, 4_000));
    wal.switch();
    (wal, commits)
}

/// Three commits and a switch; returns the writer and the commits' LSNs.
pub(crate) fn three_commits() -> (WalWriter, [u64; 3]) {
    let mut wal = WalWriter::mib(3, 1);
    wal.fill_until(wal.base + 3 * PAGE as u64 + 200);
    let a = wal.commit(10, 100);
    let b = wal.commit(11, 200);
    let c = wal.commit(12, 300);
    wal.switch();
    (wal, [a, b, c])
}

pub(crate) fn walk_one_record(version: u32, rmid: u8, body: &[u8]) -> Walked {
    let mut wal = WalWriter::new(3, 1, MIB, pg(version));
    wal.fill_until(wal.base + PAGE as u64 - 104);
    wal.record(rmid, XLOG_XACT_COMMIT, 55, body);
    wal.switch();
    wal.walk(0, true)
}

pub(crate) fn commit_time(walked: Walked) -> i64 {
    walked.unwrap().0.xact_ends[0].time
}
