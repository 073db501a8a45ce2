//! Reads records off consecutive WAL pages as PostgreSQL's `XLogReadRecord` (`xlogreader.c`)
//! does: a record is gathered from as many pages as it spans (its header may be split too);
//! each page it continues on must say so (`XLP_FIRST_IS_CONTRECORD` and `xlp_rem_len`); its
//! length, resource manager and prev-link must be sound and its CRC-32C right. Where any of that
//! fails, valid WAL ends there; whether that is a defect is the caller's judgement.
//!
//! Page headers themselves are validated by [`crate::pg::segment_check`]; the reader uses only
//! what reading records needs from them: the continuation flags and `xlp_rem_len`, and whether a
//! page belongs to this WAL at all (magic and address), since that is where a `.partial`
//! segment's WAL may stop.

use super::block_headers::MAX_HEADERS_LEN;
use super::defect::WalRecordDefect;
use super::record::{
    MAX_RECORD_LEN, RECORD_HEADER_LEN, RecordHeader, maxalign, record_crc, total_len_at,
};
use super::rmgr::xlog::is_switch;
use super::rmgr::{body_is_read, rmgr_is_valid};
use crate::pg::lsn::Lsn;
use crate::pg::page::{
    LONG_HEADER_LEN, PageHeader, SHORT_HEADER_LEN, XLP_FIRST_IS_CONTRECORD,
    XLP_FIRST_IS_OVERWRITE_CONTRECORD, XLP_LONG_HEADER,
};
use crate::pg::version::PgMajor;

/// Where reading stands between two pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start, which may be the middle of a record begun in earlier WAL; after a page
    /// that record's rest covered whole, the bytes of it the next page must say are still to
    /// come.
    SkippingContinuation { still_to_come: Option<u32> },
    /// The next record starts at this LSN.
    Between { next: u64 },
    /// Gathering the record in `RecordReader::record`.
    InRecord,
    /// After an `XLOG_SWITCH`: the rest is padding, not read.
    Switched,
    /// Valid WAL ended, or the caller refused a record (`RecordReader::stop` says why): nothing
    /// more is read. The reason is kept apart so that the state stays a plain value, cheap to
    /// set at every record.
    Stopped,
}

/// A whole record whose CRC is right, as the reader hands it to its caller.
pub(super) struct Record<'a> {
    pub lsn: Lsn,
    pub header: RecordHeader,
    /// Its first bytes, header included: all of them when its resource manager's bodies are
    /// read ([`body_is_read`]), at least its block and data headers otherwise.
    pub kept: &'a [u8],
}

/// How the WAL read ended, after the last page.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReadEnd {
    /// An `XLOG_SWITCH` ended it.
    Switch,
    /// Valid WAL ended before the last page, for this reason.
    Stopped(WalRecordDefect),
    /// With a whole record.
    BetweenRecords,
    /// A record starting at `lsn` continues past the last page; `kept` holds its first bytes
    /// (none if not even its header was read).
    Spilling { lsn: Lsn, kept: Vec<u8> },
    /// One record covers every page read.
    InsideRecord,
}

/// The record being gathered, its pieces taken from consecutive pages.
#[derive(Debug, Default)]
struct Assembly {
    lsn: u64,
    total: u32,
    gathered: u32,
    header: [u8; RECORD_HEADER_LEN],
    /// CRC-32C of the bytes after the header gathered so far.
    crc: u32,
    /// How many of the record's first bytes `bytes` keeps.
    keep: usize,
    /// The record's first `keep` bytes, header included; reused from record to record.
    bytes: Vec<u8>,
}

impl Assembly {
    fn begin(&mut self, lsn: u64, total: u32) {
        self.lsn = lsn;
        self.total = total;
        self.gathered = 0;
        self.crc = 0;
        self.keep = 0;
        self.bytes.clear();
    }

    /// Takes the next `piece` of the record; returns true when it completed the header.
    fn take(&mut self, mut piece: &[u8]) -> bool {
        let mut completed_header = false;
        let have = self.gathered as usize;
        if have < RECORD_HEADER_LEN {
            let n = piece.len().min(RECORD_HEADER_LEN - have);
            self.header[have..have + n].copy_from_slice(&piece[..n]);
            self.gathered += n as u32;
            piece = &piece[n..];
            if self.gathered as usize == RECORD_HEADER_LEN {
                completed_header = true;
                self.keep = self.kept_length();
                self.bytes.extend_from_slice(&self.header);
            }
        }
        if !piece.is_empty() {
            self.crc = crc32c::crc32c_append(self.crc, piece);
            let room = self.keep.saturating_sub(self.bytes.len());
            self.bytes
                .extend_from_slice(&piece[..room.min(piece.len())]);
            self.gathered += piece.len() as u32;
        }
        completed_header
    }

    /// The whole record for the resource managers whose bodies are read; the headers only for
    /// the others.
    fn kept_length(&self) -> usize {
        let total = self.total as usize;
        if body_is_read(RecordHeader::decode(&self.header).rmid) {
            total
        } else {
            total.min(RECORD_HEADER_LEN + MAX_HEADERS_LEN)
        }
    }
}

/// Reads the records of consecutive whole pages, handing each whole record with a valid CRC to
/// the caller.
#[derive(Debug)]
pub(super) struct RecordReader {
    version: PgMajor,
    page_size: usize,
    state: State,
    record: Assembly,
    /// The last whole record, which the next record's `xl_prev` must name.
    previous: Option<u64>,
    /// The end of the last whole record (or of the continuation the WAL starts with).
    valid_end: u64,
    /// Whole records read.
    records: u64,
    /// Why reading stopped: set together with `State::Stopped`.
    stop: Option<WalRecordDefect>,
}

impl RecordReader {
    /// A reader of the WAL from `start` (a segment start), in pages of `page_size` bytes.
    pub fn new(start: Lsn, version: PgMajor, page_size: usize) -> RecordReader {
        RecordReader {
            version,
            page_size,
            state: State::SkippingContinuation {
                still_to_come: None,
            },
            record: Assembly::default(),
            previous: None,
            valid_end: start.0,
            records: 0,
            stop: None,
        }
    }

    /// Records starting in the pages read so far, including one still being gathered.
    pub fn record_count(&self) -> u64 {
        self.records + u64::from(self.state == State::InRecord)
    }

    /// Reads the whole page at `page_lsn`, handing each record it completes to `on_record`. An
    /// error of `on_record` says why the record's body does not decode: that ends the reading,
    /// and is returned as a defect.
    pub fn read_page(
        &mut self,
        page: &[u8],
        page_lsn: u64,
        on_record: &mut impl FnMut(Record) -> Result<(), String>,
    ) -> Result<(), WalRecordDefect> {
        if matches!(self.state, State::Switched | State::Stopped) {
            return Ok(());
        }
        let header = PageHeader::decode(page).expect("a page is longer than its header");
        let header_len = if header.info & XLP_LONG_HEADER != 0 {
            LONG_HEADER_LEN
        } else {
            SHORT_HEADER_LEN
        };
        // Where a `.partial` segment's WAL ends, the next page is zeroed or recycled from an older
        // segment; either way it cannot continue this WAL.
        let ours = header.magic == self.version.page_magic() && header.page_address.0 == page_lsn;
        let offset = match self.state {
            State::SkippingContinuation { still_to_come } => {
                if ours && !self.continues_skipped(&header, page_lsn, still_to_come) {
                    return Ok(());
                }
                match self.skip_continuation(&header, header_len, page_lsn, ours) {
                    Some(offset) => offset,
                    None => return Ok(()),
                }
            }
            State::Between { next } => {
                if next == page_lsn {
                    if !self.starts_records(&header, page_lsn, ours) {
                        return Ok(());
                    }
                    self.state = State::Between {
                        next: page_lsn + header_len as u64,
                    };
                }
                0
            }
            State::InRecord => {
                if !self.continues_record(&header, header_len, page_lsn, ours) {
                    return Ok(());
                }
                header_len
            }
            State::Switched | State::Stopped => return Ok(()),
        };
        self.read_records(page, page_lsn, offset, on_record)
    }

    /// After the last page: how the WAL read ends, and where its valid part ends (`wal_end`,
    /// the end of the last page, when a record continues past it).
    pub fn finish(self, wal_end: Lsn) -> (ReadEnd, Lsn) {
        let valid_end = Lsn(self.valid_end);
        match self.state {
            State::Switched => (ReadEnd::Switch, valid_end),
            State::Stopped => {
                let why = self.stop.expect("end_here says why reading stops");
                (ReadEnd::Stopped(why), valid_end)
            }
            State::Between { .. } => (ReadEnd::BetweenRecords, valid_end),
            State::InRecord => {
                let spilling = ReadEnd::Spilling {
                    lsn: Lsn(self.record.lsn),
                    kept: self.record.bytes,
                };
                (spilling, wal_end)
            }
            State::SkippingContinuation { .. } => (ReadEnd::InsideRecord, wal_end),
        }
    }

    /// Stops reading where valid WAL ends.
    fn end_here(&mut self, why: WalRecordDefect) {
        self.stop = Some(why);
        self.state = State::Stopped;
    }

    /// At the start, skips the rest of a record begun in earlier WAL as `XLogFindNextRecord`
    /// does, trusting each page's `xlp_rem_len`. Returns where the first record starts on this
    /// page, if it does.
    fn skip_continuation(
        &mut self,
        header: &PageHeader,
        header_len: usize,
        page_lsn: u64,
        ours: bool,
    ) -> Option<usize> {
        if !ours {
            self.end_here(WalRecordDefect::EndsEarly {
                end: Lsn(self.valid_end),
                reason: format!("the page at {} is not WAL of this segment", Lsn(page_lsn)),
            });
            return None;
        }
        if header.info & XLP_FIRST_IS_CONTRECORD == 0 {
            self.state = State::Between {
                next: page_lsn + header_len as u64,
            };
            return Some(0);
        }
        let remaining = u64::from(header.remaining_length);
        let room = (self.page_size - header_len) as u64;
        if maxalign(remaining) >= room {
            // The continuation covers this page; the next page's header says how much is left,
            // which must be the rest of what this one says (or none, where only its alignment
            // padding spilled over). Else a damaged length here would skip whole pages of
            // records unread.
            self.valid_end = page_lsn + header_len as u64 + remaining.min(room);
            let rest = remaining.saturating_sub(room) as u32;
            self.state = State::SkippingContinuation {
                still_to_come: Some(rest),
            };
            return None;
        }
        self.valid_end = page_lsn + header_len as u64 + remaining;
        self.state = State::Between {
            next: page_lsn + header_len as u64 + maxalign(remaining),
        };
        Some(0)
    }

    /// Checks that a page after one the skipped record's rest covered whole goes on with that
    /// rest as the page before said: `still_to_come` bytes of it, under the continuation flag
    /// (none: a page where records start). A page that overwrites a lost continuation is taken
    /// as [`RecordReader::continues_record`] takes it; a page that is not this WAL's is the
    /// end of it, said by [`RecordReader::skip_continuation`].
    fn continues_skipped(
        &mut self,
        header: &PageHeader,
        page_lsn: u64,
        still_to_come: Option<u32>,
    ) -> bool {
        let Some(expected) = still_to_come else {
            return true;
        };
        let continues = header.info & XLP_FIRST_IS_CONTRECORD != 0;
        let overwrites = header.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0;
        let agrees = if expected == 0 {
            !continues
        } else {
            overwrites || (continues && header.remaining_length == expected)
        };
        if !agrees {
            self.end_here(WalRecordDefect::SkippedContinuationMismatch {
                page: Lsn(page_lsn),
                info: header.info,
                expected,
                found: header.remaining_length,
            });
        }
        agrees
    }

    /// Checks a page on which a new record must start right after the header.
    fn starts_records(&mut self, header: &PageHeader, page_lsn: u64, ours: bool) -> bool {
        let end = Lsn(self.valid_end);
        if !ours {
            self.end_here(WalRecordDefect::EndsEarly {
                end,
                reason: format!(
                    "the page at {}, where the next record starts, is not WAL of this segment (zeroed, or left from an older segment)",
                    Lsn(page_lsn)
                ),
            });
            return false;
        }
        if header.info & XLP_FIRST_IS_CONTRECORD != 0 {
            self.end_here(WalRecordDefect::UnexpectedContinuation {
                page: Lsn(page_lsn),
                info: header.info,
                end,
            });
            return false;
        }
        true
    }

    /// Checks a page onto which the record being gathered continues. A page marked as overwriting
    /// a lost continuation drops that record: reading restarts after the page header, and the
    /// next record's prev-link names the record before the lost one.
    fn continues_record(
        &mut self,
        header: &PageHeader,
        header_len: usize,
        page_lsn: u64,
        ours: bool,
    ) -> bool {
        let lsn = Lsn(self.record.lsn);
        if !ours {
            self.end_here(WalRecordDefect::ContinuationLost {
                lsn,
                page: Lsn(page_lsn),
            });
            return false;
        }
        if header.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 {
            self.state = State::Between {
                next: page_lsn + header_len as u64,
            };
            return true;
        }
        let missing = self.record.total - self.record.gathered;
        if header.info & XLP_FIRST_IS_CONTRECORD == 0 || header.remaining_length != missing {
            self.end_here(WalRecordDefect::ContinuationMismatch {
                lsn,
                page: Lsn(page_lsn),
                info: header.info,
                expected: missing,
                found: header.remaining_length,
            });
            return false;
        }
        true
    }

    /// Reads the records on `page` from `offset` (where a continued record resumes; a new record
    /// starts where `State::Between` says).
    fn read_records(
        &mut self,
        page: &[u8],
        page_lsn: u64,
        mut offset: usize,
        on_record: &mut impl FnMut(Record) -> Result<(), String>,
    ) -> Result<(), WalRecordDefect> {
        loop {
            match self.state {
                State::Between { next } => {
                    offset = (next - page_lsn) as usize;
                    // Records start MAXALIGNed, so `xl_tot_len` is always on the record's first
                    // page; past the page end the record starts on the next page.
                    if offset + 4 > page.len() {
                        return Ok(());
                    }
                    let lsn = page_lsn + offset as u64;
                    let total = total_len_at(page, offset);
                    if !self.plausible_length(lsn, total) {
                        return Ok(());
                    }
                    let end = offset + total as usize;
                    if end <= page.len() {
                        // Most records lie within one page: read them in place.
                        let record = &page[offset..end];
                        if self.check_record_header(lsn, record) {
                            let body_crc = crc32c::crc32c(&record[RECORD_HEADER_LEN..]);
                            let end = page_lsn + end as u64;
                            self.complete_record(lsn, record, body_crc, end, on_record)?;
                        }
                    } else {
                        self.record.begin(lsn, total);
                        self.state = State::InRecord;
                    }
                }
                State::InRecord => {
                    let wanted = (self.record.total - self.record.gathered) as usize;
                    let n = wanted.min(page.len() - offset);
                    if self.record.take(&page[offset..offset + n]) {
                        let header = self.record.header;
                        self.check_record_header(self.record.lsn, &header);
                    }
                    offset += n;
                    if !matches!(self.state, State::InRecord)
                        || self.record.gathered < self.record.total
                    {
                        return Ok(());
                    }
                    self.complete_gathered_record(page_lsn + offset as u64, on_record)?;
                }
                State::SkippingContinuation { .. } | State::Switched | State::Stopped => {
                    return Ok(());
                }
            }
        }
    }

    /// Whether `total` can be the length of the record at `lsn`; if not, valid WAL ends there.
    fn plausible_length(&mut self, lsn: u64, total: u32) -> bool {
        if total == 0 {
            self.end_here(WalRecordDefect::EndsEarly {
                end: Lsn(self.valid_end),
                reason: format!(
                    "the record header at {} is zeros, where the next record should start",
                    Lsn(lsn)
                ),
            });
            return false;
        }
        if (total as usize) < RECORD_HEADER_LEN || total > MAX_RECORD_LEN {
            self.end_here(WalRecordDefect::BadTotalLength {
                lsn: Lsn(lsn),
                length: total,
            });
            return false;
        }
        true
    }

    /// `ValidXLogRecordHeader`: the resource manager and the prev-link, checked as soon as the
    /// header is whole (it may be split across pages), before the body is gathered. False when
    /// valid WAL ends at this record.
    fn check_record_header(&mut self, lsn: u64, record: &[u8]) -> bool {
        let lsn = Lsn(lsn);
        let header = RecordHeader::decode(record);
        if !rmgr_is_valid(header.rmid, self.version) {
            self.end_here(WalRecordDefect::InvalidRmgr {
                lsn,
                rmid: header.rmid,
                version: self.version,
            });
            return false;
        }
        let found = header.prev;
        match self.previous {
            Some(expected) if found.0 != expected => {
                self.end_here(WalRecordDefect::PrevLinkMismatch {
                    lsn,
                    expected: Lsn(expected),
                    found,
                });
                false
            }
            // The first record follows one in earlier WAL, whose LSN is unknown here; PostgreSQL
            // checks only that the link points back.
            None if found >= lsn => {
                self.end_here(WalRecordDefect::PrevLinkForward { lsn, found });
                false
            }
            _ => true,
        }
    }

    fn complete_gathered_record(
        &mut self,
        end: u64,
        on_record: &mut impl FnMut(Record) -> Result<(), String>,
    ) -> Result<(), WalRecordDefect> {
        let kept = std::mem::take(&mut self.record.bytes);
        let completed =
            self.complete_record(self.record.lsn, &kept, self.record.crc, end, on_record);
        self.record.bytes = kept;
        completed
    }

    /// Checks a whole record's CRC and hands it to `on_record`. `kept` holds its first bytes
    /// (header included), `body_crc` the CRC-32C of the bytes after its header, `end` the LSN
    /// just after its last byte.
    fn complete_record(
        &mut self,
        lsn: u64,
        kept: &[u8],
        body_crc: u32,
        end: u64,
        on_record: &mut impl FnMut(Record) -> Result<(), String>,
    ) -> Result<(), WalRecordDefect> {
        let lsn = Lsn(lsn);
        let header = RecordHeader::decode(kept);
        let expected = record_crc(body_crc, kept);
        if expected != header.crc {
            self.end_here(WalRecordDefect::CrcMismatch {
                lsn,
                expected,
                found: header.crc,
            });
            return Ok(());
        }
        if let Err(reason) = on_record(Record { lsn, header, kept }) {
            // PostgreSQL wrote this record (its CRC is right), so a body that does not decode is
            // corruption or a version mismatch, never the end of WAL.
            let defect = WalRecordDefect::BadBody { lsn, reason };
            self.end_here(defect.clone());
            return Err(defect);
        }
        self.records += 1;
        self.previous = Some(lsn.0);
        self.valid_end = end;
        self.state = if is_switch(header.rmid, header.info) {
            // The rest of the segment is zeroed padding, page headers included.
            State::Switched
        } else {
            State::Between {
                next: maxalign(end),
            }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::fields::u32_at;
    use crate::pg::wal::rmgr::RM_XLOG_ID;
    use crate::pg::wal::test_wal::*;
    use crate::pg::wal::{XactEnd, XactEndKind};

    const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;

    #[test]
    fn crc_test_vectors_from_a_real_postgresql_15_segment() {
        // COMMIT @0/2000130 and SWITCH @0/2001AE8 (reference §2.5).
        let commit = hex("22000000d602000008010002000000000001000023ed6d06ff08db82dc57c8030300");
        let switch = hex("1800000000000000701a00020000000040000000cdb176aa");
        for (record, stored) in [(commit, 0x066D_ED23), (switch, 0xAA76_B1CD)] {
            assert_eq!(RecordHeader::decode(&record).crc, stored);
            // In place, as a record within one page is read.
            let body_crc = crc32c::crc32c(&record[RECORD_HEADER_LEN..]);
            assert_eq!(record_crc(body_crc, &record), stored);
            // Gathered in two pieces, the header split, as across a page boundary.
            let mut assembly = Assembly::default();
            assembly.begin(0, record.len() as u32);
            assembly.take(&record[..13]);
            assembly.take(&record[13..]);
            assert_eq!(record_crc(assembly.crc, &assembly.header), stored);
            assert_eq!(assembly.bytes, record);
        }
    }

    #[test]
    fn real_commit_and_switch_records_walk_where_postgresql_wrote_them() {
        // Segment 0/2000000 of 16 MiB segments, with the real records at their real LSNs and
        // fillers chained so that their prev-links (0/2000108 and 0/2001A70) hold.
        let commit = hex("22000000d602000008010002000000000001000023ed6d06ff08db82dc57c8030300");
        let switch = hex("1800000000000000701a00020000000040000000cdb176aa");
        let mut wal = WalWriter::new(2, 1, 16 * MIB, pg(15));
        wal.fill_until(0x0200_0108);
        wal.filler(0x28);
        assert_eq!(wal.put(&commit), 0x0200_0130);
        wal.fill_until(0x0200_1A70);
        wal.filler(0x78);
        assert_eq!(wal.put(&switch), 0x0200_1AE8);
        let (summary, count) = wal.walk(0, true).unwrap();
        assert_eq!(count, wal.lsns.len() as u64);
        assert_eq!(summary.summary.first_record, Some(Lsn(0x0200_0028)));
        assert_eq!(summary.summary.last_record, Some(Lsn(0x0200_1AE8)));
        assert_eq!(summary.summary.end_of_wal, Lsn(0x0200_1B00));
        assert!(summary.summary.ends_with_switch);
        assert!(!summary.summary.continues_into_next);
        // pg_waldump: "COMMIT 2026-11-21 13:45:32.543707 UTC" = 848583932543707 µs after 2000.
        assert_eq!(
            summary.xact_ends,
            vec![XactEnd {
                lsn: Lsn(0x0200_0130),
                kind: XactEndKind::Commit,
                xid: 726,
                time: 848_583_932_543_707,
            }]
        );
        assert_eq!(
            (summary.summary.min_xid, summary.summary.max_xid),
            (Some(726), Some(726))
        );
    }

    #[test]
    fn records_split_across_pages_headers_included_are_reassembled() {
        let (wal, commits) = split_records();
        let (summary, count) = wal.walk(0, true).unwrap();
        assert_eq!(count, wal.lsns.len() as u64);
        let found: Vec<(u64, u32, i64)> = summary
            .xact_ends
            .iter()
            .map(|end| (end.lsn.0, end.xid, end.time))
            .collect();
        assert_eq!(
            found,
            vec![
                (commits[0], 700, 1_000),
                (commits[1], 701, 2_000),
                (commits[2], 702, 3_000),
                (commits[3], 703, 4_000),
            ]
        );
        assert_eq!(commits[1] % PAGE as u64, PAGE as u64 - 8);
        assert_eq!(commits[2] % PAGE as u64, PAGE as u64 - 16);
        assert_eq!(
            (summary.summary.min_xid, summary.summary.max_xid),
            (Some(700), Some(703))
        );
        assert!(summary.summary.ends_with_switch);
        assert_eq!(
            summary.summary.last_record,
            wal.lsns.last().map(|&l| Lsn(l))
        );
        assert_eq!(
            summary.summary.end_of_wal,
            Lsn(wal.lsns.last().unwrap() + 24)
        );
    }

    #[test]
    fn after_a_switch_the_rest_of_the_segment_is_not_walked() {
        let (mut wal, _) = split_records();
        let end = wal.offset(*wal.lsns.last().unwrap()) + 24;
        // Not what PostgreSQL writes (the segment checker refuses it), but no record is there.
        wal.bytes[end..end + 64].fill(0xEE);
        wal.bytes[5 * PAGE..6 * PAGE].fill(0x77);
        let (summary, _) = wal.walk(0, true).unwrap();
        assert!(summary.summary.ends_with_switch);
        assert_eq!(summary.summary.end_of_wal.0, wal.base + end as u64);
    }

    #[test]
    fn a_corrupted_crc_is_a_defect_in_a_complete_segment_and_the_end_of_a_partial_one() {
        let (mut wal, [a, b, _]) = three_commits();
        let at = wal.offset(b) + 30;
        wal.bytes[at] ^= 0x01;
        match wal.walk(0, true) {
            Err(WalRecordDefect::CrcMismatch { lsn, .. }) => assert_eq!(lsn, Lsn(b)),
            other => panic!("expected a CRC mismatch at {}, got {other:?}", Lsn(b)),
        }
        let message = wal.walk(0, true).unwrap_err().to_string();
        assert!(message.contains(&Lsn(b).to_string()), "{message}");
        let (partial, _) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.last_record, Some(Lsn(a)));
        assert_eq!(partial.summary.end_of_wal, Lsn(a + 34));
        assert_eq!(partial.xact_ends.len(), 1);
        assert!(!partial.summary.ends_with_switch);
    }

    #[test]
    fn a_broken_prev_link_is_named_with_both_lsns() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + 5000);
        let a = wal.commit(10, 100);
        wal.prev = a - 0x100;
        let b = wal.commit(11, 200);
        wal.switch();
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::PrevLinkMismatch {
                lsn: Lsn(b),
                expected: Lsn(a),
                found: Lsn(a - 0x100),
            })
        );
        let (partial, _) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.last_record, Some(Lsn(a)));
    }

    #[test]
    fn the_first_record_may_not_point_forward() {
        let mut wal = WalWriter::mib(3, 1);
        wal.prev = wal.base + 0x1000;
        let first = wal.commit(10, 100);
        wal.switch();
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::PrevLinkForward {
                lsn: Lsn(first),
                found: Lsn(wal.base + 0x1000),
            })
        );
    }

    #[test]
    fn a_zeroed_record_ends_a_partial_segment_and_is_a_defect_in_a_complete_one() {
        let (mut wal, [a, b, _]) = three_commits();
        let at = wal.offset(b);
        wal.bytes[at..at + 40].fill(0);
        match wal.walk(0, true) {
            Err(WalRecordDefect::EndsEarly { end, reason }) => {
                assert_eq!(end, Lsn(a + 34));
                assert!(reason.contains(&Lsn(b).to_string()), "{reason}");
            }
            other => panic!("expected the WAL to end early, got {other:?}"),
        }
        let (partial, count) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.end_of_wal, Lsn(a + 34));
        assert_eq!(partial.summary.last_record, Some(Lsn(a)));
        assert_eq!(count, wal.lsns.iter().filter(|&&l| l <= a).count() as u64);
    }

    #[test]
    fn a_partial_segment_may_end_at_a_page_of_zeros_or_a_stale_page() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + 2 * PAGE as u64 + 24);
        let (last, last_end) = (*wal.lsns.last().unwrap(), wal.end);
        let page = 2 * PAGE;
        // A page recycled from an older segment: a valid header with the wrong address.
        let mut older = WalWriter::mib(1, 1);
        older.fill_until(older.base + 3 * PAGE as u64 + 104);
        let stale = older.bytes[page..page + PAGE].to_vec();
        for replacement in [stale, vec![0; PAGE]] {
            wal.bytes[page..page + PAGE].copy_from_slice(&replacement);
            let (summary, _) = wal.walk(0, false).unwrap();
            assert_eq!(summary.summary.last_record, Some(Lsn(last)));
            assert_eq!(summary.summary.end_of_wal, Lsn(last_end));
            assert!(matches!(
                wal.walk(0, true),
                Err(WalRecordDefect::EndsEarly { end, .. }) if end == Lsn(last_end)
            ));
        }
    }

    #[test]
    fn a_record_continuing_onto_a_page_of_zeros_is_lost() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + 2 * PAGE as u64 - 200);
        let (before, before_end) = (*wal.lsns.last().unwrap(), wal.end);
        let crossing = wal.filler(600);
        wal.switch();
        wal.bytes[2 * PAGE..].fill(0);
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::ContinuationLost {
                lsn: Lsn(crossing),
                page: Lsn(wal.base + 2 * PAGE as u64),
            })
        );
        let (partial, _) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.last_record, Some(Lsn(before)));
        assert_eq!(partial.summary.end_of_wal, Lsn(before_end));
    }

    #[test]
    fn a_continuation_page_must_say_how_much_is_left() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + PAGE as u64 - 200);
        let before = *wal.lsns.last().unwrap();
        let crossing = wal.filler(600);
        wal.switch();
        let page = PAGE;
        let right = u32_at(&wal.bytes, page + 16);
        wal.bytes[page + 16..page + 20].copy_from_slice(&(right + 8).to_le_bytes());
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::ContinuationMismatch {
                lsn: Lsn(crossing),
                page: Lsn(wal.base + page as u64),
                info: XLP_FIRST_IS_CONTRECORD,
                expected: right,
                found: right + 8,
            })
        );
        let (partial, _) = wal.walk(0, false).unwrap();
        assert_eq!(partial.summary.last_record, Some(Lsn(before)));

        // Without the flag the page does not continue the record either.
        wal.bytes[page + 16..page + 20].copy_from_slice(&right.to_le_bytes());
        wal.bytes[page + 2..page + 4].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(
            wal.walk(0, true),
            Err(WalRecordDefect::ContinuationMismatch { info: 0, .. })
        ));
    }

    #[test]
    fn a_page_claiming_a_continuation_where_a_record_must_start_is_refused() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + PAGE as u64 + 24);
        let next = wal.commit(1, 1);
        wal.switch();
        let page = PAGE;
        wal.bytes[page + 2..page + 4].copy_from_slice(&XLP_FIRST_IS_CONTRECORD.to_le_bytes());
        assert!(matches!(
            wal.walk(0, true),
            Err(WalRecordDefect::UnexpectedContinuation { page, .. }) if page == Lsn(next - 24)
        ));
    }

    #[test]
    fn an_overwritten_continuation_drops_the_lost_record() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + PAGE as u64 + 104);
        let kept = wal.commit(30, 1);
        let lost = wal.filler(3 * PAGE);
        // A crash lost the rest of `lost`; recovery rewrote WAL from the page it was missing on.
        let page = (lost / PAGE as u64 + 1) * PAGE as u64;
        let from = wal.offset(page);
        wal.bytes[from..].fill(0);
        wal.pos = page;
        wal.prev = kept;
        wal.lsns.retain(|&l| l != lost);
        wal.next_page_flags = XLP_FIRST_IS_OVERWRITE_CONTRECORD;
        let mut overwrite = lost.to_le_bytes().to_vec();
        overwrite.extend_from_slice(&5i64.to_le_bytes());
        let overwrite = wal.main_data(RM_XLOG_ID, XLOG_OVERWRITE_CONTRECORD, 0, &overwrite);
        let after = wal.commit(31, 2);
        wal.switch();
        let (summary, count) = wal.walk(0, true).unwrap();
        assert_eq!(count, wal.lsns.len() as u64);
        assert_eq!(overwrite, page + 24);
        let xids: Vec<(Lsn, u32)> = summary.xact_ends.iter().map(|e| (e.lsn, e.xid)).collect();
        assert_eq!(xids, vec![(Lsn(kept), 30), (Lsn(after), 31)]);
        assert!(summary.summary.ends_with_switch);
    }

    #[test]
    fn resource_manager_ids_are_checked_per_version() {
        let body = main_data_body(&[1, 2, 3]);
        for (version, rmid, valid) in [
            (14, 21, true),
            (14, 22, false),
            (14, 130, false),
            (15, 130, true),
            (15, 100, false),
        ] {
            let walked = walk_one_record(version, rmid, &body);
            if valid {
                assert!(walked.is_ok(), "PG{version} rmid {rmid}: {walked:?}");
            } else {
                assert!(
                    matches!(walked, Err(WalRecordDefect::InvalidRmgr { rmid: r, .. }) if r == rmid),
                    "PG{version} rmid {rmid}: {walked:?}"
                );
            }
        }
    }

    #[test]
    fn impossible_record_lengths_are_named() {
        let (mut wal, [_, b, _]) = three_commits();
        let at = wal.offset(b);
        wal.bytes[at..at + 4].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(
            wal.walk(0, true).map(|_| ()),
            Err(WalRecordDefect::BadTotalLength {
                lsn: Lsn(b),
                length: 10
            })
        );
    }
}
