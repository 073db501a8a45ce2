//! Walks the records of one WAL segment while it is read, in chunks as they come: the
//! [reader](super::reader) checks every record (length, resource manager, prev-link, CRC-32C,
//! continuation pages), the [resource managers' decoders](super::rmgr) read what planning a
//! recovery needs, and the walker keeps the segment's summary: where its records start, where
//! its valid WAL ends, the transaction ends with their timestamps, restore points, checkpoints,
//! backup ends, end-of-recovery records and whether an `XLOG_SWITCH` ends the segment.
//!
//! It also judges what the reader could not read: in a complete segment, WAL that ends before
//! the switch or the segment end is a defect; in a `.partial` segment it is where its WAL ends.

use super::block_headers::main_data_len;
use super::defect::WalRecordDefect;
use super::facts::{RecordFact, SegmentSummary, WalkedSegment, XactEnd};
use super::reader::{ReadEnd, Record, RecordReader};
use super::rmgr::{FirstPart, body_is_read, describe, describe_first_part};
use crate::pg::file_name::{SegmentName, SegmentSize};
use crate::pg::lsn::Lsn;
use crate::pg::version::PgMajor;

/// What the walk found so far.
#[derive(Debug)]
struct Findings {
    version: PgMajor,
    summary: SegmentSummary,
    xact_ends: Vec<XactEnd>,
    /// Records starting at or past this LSN are watched for; the first is kept.
    watch_from: Option<Lsn>,
    first_record_from: Option<Lsn>,
}

impl Findings {
    /// Decodes a whole record's block and data headers and reads the bodies that matter; an
    /// error says why they do not decode.
    fn note_record(&mut self, record: Record) -> Result<(), String> {
        let Record { lsn, header, kept } = record;
        let total = header.total_len as usize;
        let main_len = main_data_len(kept, total, self.version)?;
        // Only the records whose bodies are read are kept whole.
        if body_is_read(header.rmid) {
            let main = &kept[total - main_len..total];
            if let Some(fact) = describe(&header, lsn, main, self.version)? {
                self.note_fact(fact);
            }
        }
        self.note_start(lsn);
        Ok(())
    }

    /// Notes what a record says in the summary; a transaction end, which the summary only
    /// counts, is listed too. Always inlined into the walk of every record, as
    /// [`SegmentSummary::note_xact_end`] is: left to itself the compiler calls both.
    #[inline(always)]
    fn note_fact(&mut self, fact: RecordFact) {
        let summary = &mut self.summary;
        match fact {
            RecordFact::XactEnd(end) => {
                summary.note_xact_end(&end);
                self.xact_ends.push(end);
            }
            RecordFact::RestorePoint(point) => summary.restore_points.push(point),
            RecordFact::Checkpoint(checkpoint) => summary.checkpoints.push(checkpoint),
            RecordFact::BackupEnd(end) => summary.backup_ends.push(end),
            RecordFact::EndOfRecovery(end) => summary.end_of_recovery.push(end),
        }
    }

    /// Notes that a record starts at `lsn`, in the summary and for [`RecordWalker::watch_from`].
    fn note_start(&mut self, lsn: Lsn) {
        self.summary.note_start(lsn);
        if self.first_record_from.is_none() && self.watch_from.is_some_and(|from| lsn >= from) {
            self.first_record_from = Some(lsn);
        }
    }

    /// Notes the record at `lsn` that continues into the next segment, of which `kept` holds the
    /// first bytes: what can be read of it, or that too little of it is here to tell.
    fn note_spilling(&mut self, lsn: Lsn, kept: &[u8]) {
        self.note_start(lsn);
        self.summary.continues_into_next = true;
        match describe_first_part(kept, lsn, self.version) {
            FirstPart::Nothing => {}
            FirstPart::Fact(fact) => self.note_fact(fact),
            FirstPart::Undecoded => self.summary.spill_undecoded = true,
        }
    }
}

/// Walks the records of one segment, fed in order in page-aligned chunks (the same chunks
/// `SegmentChecker::feed` gets: whole multiples of `segment_check::CHUNK_ALIGNMENT` except the
/// last). Chunks that split a page are accepted too; the split page is walked once complete.
#[derive(Debug)]
pub struct RecordWalker {
    page_size: usize,
    segment_bytes: u64,
    /// LSN of the segment's first byte.
    start: u64,
    /// Whole pages walked so far.
    walked: u64,
    /// The start of a page split by the chunks fed so far.
    split_page: Vec<u8>,
    reader: RecordReader,
    findings: Findings,
    /// A defect in any segment; every later call returns it.
    failed: Option<WalRecordDefect>,
}

impl RecordWalker {
    pub fn new(
        name: SegmentName,
        segment_size: SegmentSize,
        version: PgMajor,
        page_size: u32,
    ) -> RecordWalker {
        let segment_bytes = segment_size.bytes();
        match name.start_lsn(segment_size) {
            Ok(start) => RecordWalker::over(start, u64::from(segment_bytes), version, page_size),
            Err(_) => {
                let mut walker =
                    RecordWalker::over(Lsn(0), u64::from(segment_bytes), version, page_size);
                walker.failed = Some(WalRecordDefect::NameOutOfRange {
                    name,
                    size: segment_bytes >> 20,
                });
                walker
            }
        }
    }

    /// Walks `name` and the segment after it as one stream, so that a record spilling from the
    /// first into the second is read whole (and its CRC checked). Every record starting in either
    /// is noted; callers keep those that start in the first.
    pub fn spanning(
        name: SegmentName,
        segment_size: SegmentSize,
        version: PgMajor,
        page_size: u32,
    ) -> Result<RecordWalker, WalRecordDefect> {
        let start = name
            .start_lsn(segment_size)
            .map_err(|_| WalRecordDefect::NameOutOfRange {
                name,
                size: segment_size.bytes() >> 20,
            })?;
        Ok(RecordWalker::over(
            start,
            2 * u64::from(segment_size.bytes()),
            version,
            page_size,
        ))
    }

    /// A walker over `length` bytes of WAL from `start`.
    fn over(start: Lsn, length: u64, version: PgMajor, page_size: u32) -> RecordWalker {
        let segment_bytes = length;
        let page_size_defect = (!page_size.is_power_of_two()
            || !(1024..=65536).contains(&page_size)
            || !segment_bytes.is_multiple_of(u64::from(page_size)))
        .then_some(WalRecordDefect::UnusablePageSize {
            page_size,
            segment_bytes: segment_bytes as u32,
        });
        RecordWalker {
            page_size: page_size as usize,
            segment_bytes,
            start: start.0,
            walked: 0,
            split_page: Vec::new(),
            reader: RecordReader::new(start, version, page_size as usize),
            findings: Findings {
                version,
                summary: SegmentSummary::empty(start),
                xact_ends: Vec::new(),
                watch_from: None,
                first_record_from: None,
            },
            failed: page_size_defect,
        }
    }

    /// Keeps the first record that starts at or past `lsn` (as
    /// [`WalkedSegment::first_record_from`]).
    pub fn watch_from(&mut self, lsn: Lsn) {
        self.findings.watch_from = Some(lsn);
    }

    /// Consumes the next chunk. Errors on corruption found before the end of valid WAL that is
    /// a defect whatever kind the segment is (a record with a valid CRC whose body does not decode,
    /// more bytes than a segment); whatever may just be the end of a `.partial` segment's WAL is
    /// judged by [`RecordWalker::finish`].
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), WalRecordDefect> {
        if let Some(defect) = &self.failed {
            return Err(defect.clone());
        }
        let fed = self.walked + (self.split_page.len() + chunk.len()) as u64;
        if fed > self.segment_bytes {
            return Err(self.fail(WalRecordDefect::Overlong {
                end: Lsn(self.start + self.segment_bytes),
                expected: self.segment_bytes,
            }));
        }
        let walked = self.walk_pages(chunk);
        walked.map_err(|defect| self.fail(defect))
    }

    /// Records starting in this segment walked so far, including one still being gathered when
    /// the bytes fed end (after the whole segment: the one continuing into the next segment).
    pub fn record_count(&self) -> u64 {
        self.reader.record_count()
    }

    /// After the whole segment: what it holds. `complete` = a segment PostgreSQL handed to
    /// archive_command as complete (filled, or ended by XLOG_SWITCH): then valid WAL must run to
    /// the switch or to the end of the segment (a record may continue into the next segment), and
    /// anything invalid before that is a defect. For a `.partial` (complete = false) the first
    /// invalid record simply ends the WAL.
    pub fn finish(self, complete: bool) -> Result<WalkedSegment, WalRecordDefect> {
        if let Some(defect) = self.failed {
            return Err(defect);
        }
        let fed = self.walked + self.split_page.len() as u64;
        if fed != self.segment_bytes {
            return Err(WalRecordDefect::Truncated {
                end: Lsn(self.start + fed),
                fed,
                expected: self.segment_bytes,
            });
        }
        let mut findings = self.findings;
        let (end, end_of_wal) = self.reader.finish(Lsn(self.start + self.segment_bytes));
        match end {
            ReadEnd::Switch => findings.summary.ends_with_switch = true,
            ReadEnd::Stopped(why) if complete => return Err(why),
            ReadEnd::Stopped(_) | ReadEnd::BetweenRecords => {}
            // It spills into the next segment, where its CRC is checked.
            ReadEnd::Spilling { lsn, kept } => findings.note_spilling(lsn, &kept),
            ReadEnd::InsideRecord => findings.summary.continues_into_next = true,
        }
        findings.summary.end_of_wal = end_of_wal;
        Ok(WalkedSegment {
            summary: findings.summary,
            xact_ends: findings.xact_ends,
            first_record_from: findings.first_record_from,
        })
    }

    fn fail(&mut self, defect: WalRecordDefect) -> WalRecordDefect {
        self.failed = Some(defect.clone());
        defect
    }

    /// Walks the whole pages of `chunk`, completing a page split by the chunk before it and
    /// keeping the start of one it splits.
    fn walk_pages(&mut self, chunk: &[u8]) -> Result<(), WalRecordDefect> {
        let mut rest = chunk;
        if !self.split_page.is_empty() {
            let n = rest.len().min(self.page_size - self.split_page.len());
            self.split_page.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.split_page.len() == self.page_size {
                let page = std::mem::take(&mut self.split_page);
                let walked = self.walk_page(&page);
                self.split_page = page;
                self.split_page.clear();
                walked?;
            }
        }
        let mut pages = rest.chunks_exact(self.page_size);
        for page in pages.by_ref() {
            self.walk_page(page)?;
        }
        self.split_page.extend_from_slice(pages.remainder());
        Ok(())
    }

    /// Walks one whole page.
    fn walk_page(&mut self, page: &[u8]) -> Result<(), WalRecordDefect> {
        let page_lsn = self.start + self.walked;
        self.walked += page.len() as u64;
        let findings = &mut self.findings;
        self.reader
            .read_page(page, page_lsn, &mut |record| findings.note_record(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::lsn::TimelineId;
    use crate::pg::page::LONG_HEADER_LEN;
    use crate::pg::segment_check::CHUNK_ALIGNMENT;
    use crate::pg::wal::test_wal::*;

    #[test]
    fn the_summary_does_not_depend_on_how_the_segment_is_chunked() {
        let (wal, _) = split_records();
        let expected = wal.walk(0, true).unwrap();
        for chunk in [PAGE, 1000, 4 * CHUNK_ALIGNMENT, MIB as usize] {
            let walked = walk_bytes(wal.segment(0), 3, MIB, pg(15), true, chunk);
            assert_eq!(walked, Ok(expected.clone()), "chunks of {chunk}");
        }
    }

    #[test]
    fn a_record_spilling_into_the_next_segment_belongs_to_the_one_it_starts_in() {
        let mut wal = WalWriter::mib(3, 2);
        let seg4 = wal.base + MIB;
        wal.commit(800, 10);
        wal.fill_until(seg4 - 1000);
        // 29 000 bytes: the next segment starts with three pages of its continuation.
        let big = wal.filler(30_000);
        let after = wal.commit(801, 20);
        wal.switch();

        let (first, count) = wal.walk(0, true).unwrap();
        assert_eq!(first.summary.last_record, Some(Lsn(big)));
        assert!(first.summary.continues_into_next);
        assert!(!first.summary.ends_with_switch);
        assert_eq!(first.summary.end_of_wal, Lsn(seg4));
        assert_eq!(count, wal.lsns.iter().filter(|&&l| l < seg4).count() as u64);

        let (second, count) = wal.walk(1, true).unwrap();
        assert_eq!(second.summary.first_record, Some(Lsn(after)));
        assert!(after > seg4 + 3 * PAGE as u64);
        assert_eq!(second.xact_ends.len(), 1);
        assert_eq!(second.xact_ends[0].lsn, Lsn(after));
        assert!(second.summary.ends_with_switch);
        assert_eq!(count, 2);
    }

    #[test]
    fn a_record_header_split_by_the_segment_end_continues_into_the_next() {
        let mut wal = WalWriter::mib(3, 2);
        let seg4 = wal.base + MIB;
        wal.fill_until(seg4 - 8);
        let split = wal.commit(900, 30);
        let after = wal.commit(901, 40);
        wal.switch();
        let (first, _) = wal.walk(0, true).unwrap();
        assert_eq!(first.summary.last_record, Some(Lsn(split)));
        assert!(first.summary.continues_into_next);
        assert!(first.xact_ends.is_empty());
        // Nothing of the commit but 8 bytes of its header is here: the summary says so.
        assert!(first.summary.spill_undecoded);
        let (second, count) = wal.walk(1, true).unwrap();
        assert_eq!(second.summary.first_record, Some(Lsn(after)));
        assert_eq!(second.xact_ends[0].xid, 901);
        assert_eq!(count, 2);
        // Walked with the next segment, the commit is read whole.
        let both = wal.walk_spanning(0).unwrap();
        let ends: Vec<(Lsn, u32, i64)> = both
            .xact_ends
            .iter()
            .map(|x| (x.lsn, x.xid, x.time))
            .collect();
        assert!(ends.contains(&(Lsn(split), 900, 30)), "{ends:?}");
        assert!(!both.summary.spill_undecoded);
    }

    #[test]
    fn a_transaction_end_spilling_into_the_next_segment_is_read_from_its_first_part() {
        let mut wal = WalWriter::mib(3, 2);
        let seg4 = wal.base + MIB;
        wal.commit(800, 10);
        // Header, data header and commit time fit in the 40 bytes left; the subtransactions
        // spill over.
        wal.fill_until(seg4 - 40);
        let split = wal.commit_with_subxacts(920, 70, &[921, 922, 923, 924, 925, 926, 927]);
        wal.commit(930, 60);
        wal.switch();
        let (first, _) = wal.walk(0, true).unwrap();
        assert_eq!(first.summary.last_record, Some(Lsn(split)));
        assert!(first.summary.continues_into_next && !first.summary.spill_undecoded);
        assert_eq!(
            first.xact_ends.last().map(|x| (x.lsn, x.xid, x.time)),
            Some((Lsn(split), 920, 70))
        );
        assert_eq!(first.summary.xact_count, 2);
        assert_eq!(
            (first.summary.min_time, first.summary.max_time),
            (Some(10), Some(70))
        );
        assert_eq!(first.summary.max_xid, Some(920));
        // The next segment does not count it again.
        let (second, _) = wal.walk(1, true).unwrap();
        assert_eq!(
            second.xact_ends.iter().map(|x| x.xid).collect::<Vec<_>>(),
            [930]
        );
        assert_eq!(second.summary.min_time, Some(60));
    }

    #[test]
    fn a_record_longer_than_the_segment_covers_it_all() {
        let mut wal = WalWriter::mib(3, 3);
        wal.commit(1, 1);
        let big = wal.filler(2 * MIB as usize + MIB as usize / 2);
        let after = wal.commit(2, 2);
        wal.switch();
        let (middle, count) = wal.walk(1, true).unwrap();
        assert_eq!(count, 0);
        assert_eq!(middle.summary.first_record, None);
        assert_eq!(middle.summary.last_record, None);
        assert!(middle.summary.continues_into_next);
        assert_eq!(middle.summary.end_of_wal, Lsn(wal.base + 2 * MIB));
        let (first, _) = wal.walk(0, true).unwrap();
        assert_eq!(first.summary.last_record, Some(Lsn(big)));
        let (last, count) = wal.walk(2, true).unwrap();
        assert_eq!(last.summary.first_record, Some(Lsn(after)));
        assert_eq!(count, 2);
    }

    #[test]
    fn a_filled_segment_ends_at_its_end() {
        // The last record ends exactly at the segment end: the next starts in the next segment.
        let mut wal = WalWriter::mib(3, 2);
        let end = wal.base + MIB;
        wal.commit(5, 5);
        wal.fill_until(end - 104);
        let last = wal.filler(104);
        wal.commit(6, 6);
        wal.switch();
        let (summary, count) = wal.walk(0, true).unwrap();
        assert_eq!(summary.summary.last_record, Some(Lsn(last)));
        assert_eq!(summary.summary.end_of_wal, Lsn(end));
        assert!(!summary.summary.continues_into_next && !summary.summary.ends_with_switch);
        assert_eq!(count, wal.lsns.iter().filter(|&&l| l < end).count() as u64);
        let (next, count) = wal.walk(1, true).unwrap();
        assert_eq!(
            next.summary.first_record,
            Some(Lsn(end + LONG_HEADER_LEN as u64))
        );
        assert_eq!(count, 2);
    }

    #[test]
    fn wrong_lengths_and_names_are_refused() {
        let (wal, _) = three_commits();
        let truncated = walk_bytes(
            &wal.segment(0)[..MIB as usize - PAGE - 100],
            3,
            MIB,
            pg(15),
            false,
            CHUNK_ALIGNMENT,
        );
        assert!(matches!(
            truncated,
            Err(WalRecordDefect::Truncated { fed, .. }) if fed == MIB - PAGE as u64 - 100
        ));
        let size = SegmentSize::new(MIB).unwrap();
        let name = SegmentName::from_segment_number(TimelineId(1), 3, size);
        let mut walker = RecordWalker::new(name, size, pg(15), PAGE as u32);
        walker.feed(wal.segment(0)).unwrap();
        assert!(matches!(
            walker.feed(&[0; PAGE]),
            Err(WalRecordDefect::Overlong { .. })
        ));
        let beyond = SegmentName {
            timeline: TimelineId(1),
            log: 0,
            seg: 0x1000,
        };
        let mut walker = RecordWalker::new(beyond, size, pg(15), PAGE as u32);
        assert!(matches!(
            walker.feed(wal.segment(0)),
            Err(WalRecordDefect::NameOutOfRange { .. })
        ));
        let mut walker = RecordWalker::new(name, size, pg(15), 1000);
        assert!(matches!(
            walker.feed(wal.segment(0)),
            Err(WalRecordDefect::UnusablePageSize { .. })
        ));
    }
}
