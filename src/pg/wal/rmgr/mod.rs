//! The resource managers (`rmgrlist.h`) and the decoders of the record bodies that matter to
//! planning a recovery, one file per resource manager as in PostgreSQL's `rmgrdesc/`: XACT's
//! transaction ends ([`xact`]) and XLOG's checkpoints, restore points, backup ends, end of
//! recovery and switches ([`xlog`]). Other resource managers' bodies are not read.

pub(super) mod xact;
pub(super) mod xlog;

use super::block_headers::main_data_len;
use super::facts::RecordFact;
use super::record::{RECORD_HEADER_LEN, RecordHeader};
use crate::pg::fields::{i64_at, u32_at};
use crate::pg::lsn::Lsn;
use crate::pg::version::PgMajor;

/// Resource manager IDs (`rmgrlist.h`).
pub(super) const RM_XLOG_ID: u8 = 0;
pub(super) const RM_XACT_ID: u8 = 1;
const RM_MAX_BUILTIN_ID: u8 = 21;
/// PostgreSQL 15 added custom resource managers 128..=255 (`RmgrIdIsValid`, `rmgr.h`).
const RM_MIN_CUSTOM_ID: u8 = 128;

/// Whether PostgreSQL `version` has resource manager `rmid`.
#[inline]
pub(super) fn rmgr_is_valid(rmid: u8, version: PgMajor) -> bool {
    rmid <= RM_MAX_BUILTIN_ID || (version.number() >= 15 && rmid >= RM_MIN_CUSTOM_ID)
}

/// Whether the bodies of `rmid`'s records are read here, so that a record must be kept whole.
#[inline]
pub(super) fn body_is_read(rmid: u8) -> bool {
    matches!(rmid, RM_XLOG_ID | RM_XACT_ID)
}

/// What a whole record with a valid CRC says, if it matters to planning; `main` is its main data.
/// An error says why its body does not decode.
pub(super) fn describe(
    header: &RecordHeader,
    lsn: Lsn,
    main: &[u8],
    version: PgMajor,
) -> Result<Option<RecordFact>, String> {
    match header.rmid {
        RM_XACT_ID => {
            Ok(xact::xact_end(lsn, header.info, header.xid, main, version)?
                .map(RecordFact::XactEnd))
        }
        RM_XLOG_ID => xlog::describe(lsn, header.info, main),
        _ => Ok(None),
    }
}

/// What the first part of a record says, the rest of which is in the next segment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FirstPart {
    /// Nothing that matters to planning.
    Nothing,
    Fact(RecordFact),
    /// It may matter to planning, but too little of it is here to tell.
    Undecoded,
}

/// Reads what it can of a record that continues into the next segment from its first bytes
/// (`kept`, possibly none): a transaction end needs only its header and the first 8 bytes of its
/// body for its XID and time, an XLOG record its whole main data. Its CRC can only be checked
/// with the next segment.
pub(super) fn describe_first_part(kept: &[u8], lsn: Lsn, version: PgMajor) -> FirstPart {
    if kept.len() < RECORD_HEADER_LEN {
        // Not even the header is here: it could be anything.
        return FirstPart::Undecoded;
    }
    let header = RecordHeader::decode(kept);
    let total = header.total_len as usize;
    let main = main_data_len(kept, total, version)
        .ok()
        .map(|main_len| kept.get(total - main_len..).unwrap_or(&[]));
    match header.rmid {
        RM_XACT_ID => xact::describe_first_part(&header, lsn, main, version),
        RM_XLOG_ID => xlog::describe_first_part(header.info, lsn, main),
        _ => FirstPart::Nothing,
    }
}

/// Reads a record's main data field by field, naming the structure when it is too short.
struct BodyReader<'a> {
    main: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> BodyReader<'a> {
    fn new(main: &'a [u8], what: &'static str) -> BodyReader<'a> {
        BodyReader { main, at: 0, what }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let bytes = self
            .at
            .checked_add(n)
            .and_then(|end| self.main.get(self.at..end))
            .ok_or_else(|| {
                format!(
                    "its {} main data is {} bytes, shorter than the {} bytes its flags announce",
                    self.what,
                    self.main.len(),
                    self.at.saturating_add(n)
                )
            })?;
        self.at += n;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.bytes(n).map(|_| ())
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32_at(self.bytes(4)?, 0))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64_at(self.bytes(8)?, 0))
    }

    /// Skips an `int count` followed by `count` items of `item_len` bytes.
    fn skip_array(&mut self, item_len: usize) -> Result<(), String> {
        let count = self.u32()? as i32;
        let count = usize::try_from(count)
            .map_err(|_| format!("its {} main data has a count of {count}", self.what))?;
        self.skip(count.saturating_mul(item_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::file_name::{SegmentName, SegmentSize};
    use crate::pg::lsn::TimelineId;
    use crate::pg::wal::rmgr::xact::*;
    use crate::pg::wal::rmgr::xlog::*;
    use crate::pg::wal::test_wal::*;
    use crate::pg::wal::{
        BackupEnd, CheckpointRecord, EndOfRecovery, RecordWalker, RestorePoint, WalRecordDefect,
        XactEnd, XactEndKind,
    };

    const XLOG_XACT_PREPARE: u8 = 0x10;

    /// `xl_info` of a transaction end record carrying an `xinfo` word.
    fn with_xinfo(opcode: u8) -> u8 {
        opcode | XLOG_XACT_HAS_INFO
    }

    fn commit_body(xid_info: u32, parts: &[&[u8]]) -> Vec<u8> {
        let mut main = 123_456_789i64.to_le_bytes().to_vec();
        main.extend_from_slice(&xid_info.to_le_bytes());
        for part in parts {
            main.extend_from_slice(part);
        }
        main
    }

    fn array(count: u32, item_len: usize) -> Vec<u8> {
        let mut bytes = count.to_le_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(0x5A, count as usize * item_len));
        bytes
    }

    #[test]
    fn transaction_ends_and_xlog_records_are_read_from_their_bodies() {
        let mut wal = WalWriter::mib(3, 1);
        wal.fill_until(wal.base + 200);
        let dbinfo = [1u8, 0, 0, 0, 0x7F, 0x06, 0, 0];
        // COMMIT with database, subtransactions, relations and invalidations; the consistency
        // checking bit set in the low nibble.
        let commit = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_COMMIT) | 0x02,
            740,
            &commit_body(
                XACT_XINFO_HAS_DBINFO
                    | XACT_XINFO_HAS_SUBXACTS
                    | XACT_XINFO_HAS_RELFILENODES
                    | XACT_XINFO_HAS_INVALS,
                &[&dbinfo, &array(2, 4), &array(1, 12), &array(3, 16)],
            ),
        );
        let abort = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_ABORT),
            741,
            &commit_body(XACT_XINFO_HAS_SUBXACTS, &[&array(1, 4)]),
        );
        // PREPARE is not an end.
        wal.main_data(RM_XACT_ID, XLOG_XACT_PREPARE, 742, &[0; 80]);
        // COMMIT PREPARED: xl_xid is 0, the prepared XID follows dropped stats; a GID and an
        // origin after it.
        let mut gid_and_origin = b"gid-1\0".to_vec();
        gid_and_origin.extend_from_slice(&[0x11; 16]);
        let commit_prepared = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_COMMIT_PREPARED),
            0,
            &commit_body(
                XACT_XINFO_HAS_DBINFO
                    | XACT_XINFO_HAS_DROPPED_STATS
                    | XACT_XINFO_HAS_INVALS
                    | XACT_XINFO_HAS_TWOPHASE
                    | (1 << 7)
                    | (1 << 5),
                &[
                    &dbinfo,
                    &array(2, 12),
                    &array(1, 16),
                    &742u32.to_le_bytes(),
                    &gid_and_origin,
                ],
            ),
        );
        let abort_prepared = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_ABORT_PREPARED),
            0,
            &commit_body(XACT_XINFO_HAS_TWOPHASE, &[&739u32.to_le_bytes()]),
        );
        let mut restore_point = 777i64.to_le_bytes().to_vec();
        let mut name = [0xCCu8; 64];
        name[..6].copy_from_slice(b"rp_one");
        name[6] = 0;
        restore_point.extend_from_slice(&name);
        let rp = wal.main_data(RM_XLOG_ID, XLOG_RESTORE_POINT, 0, &restore_point);
        let mut checkpoint = [0u8; CHECKPOINT_LEN];
        checkpoint[0..8].copy_from_slice(&(wal.base + 0x28).to_le_bytes());
        checkpoint[8..12].copy_from_slice(&3u32.to_le_bytes());
        checkpoint[12..16].copy_from_slice(&2u32.to_le_bytes());
        checkpoint[64..72].copy_from_slice(&1_790_000_000i64.to_le_bytes());
        let online = wal.main_data(RM_XLOG_ID, XLOG_CHECKPOINT_ONLINE, 0, &checkpoint);
        let shutdown = wal.main_data(RM_XLOG_ID, XLOG_CHECKPOINT_SHUTDOWN, 0, &checkpoint);
        let backup_end = wal.main_data(
            RM_XLOG_ID,
            XLOG_BACKUP_END,
            0,
            &0x0300_0060u64.to_le_bytes(),
        );
        let mut end_of_recovery = 888i64.to_le_bytes().to_vec();
        end_of_recovery.extend_from_slice(&3u32.to_le_bytes());
        end_of_recovery.extend_from_slice(&2u32.to_le_bytes());
        let eor = wal.main_data(RM_XLOG_ID, XLOG_END_OF_RECOVERY, 0, &end_of_recovery);
        wal.switch();

        let (summary, _) = wal.walk(0, true).unwrap();
        let time = 123_456_789;
        let end = |lsn, kind, xid| XactEnd {
            lsn: Lsn(lsn),
            kind,
            xid,
            time,
        };
        assert_eq!(
            summary.xact_ends,
            vec![
                end(commit, XactEndKind::Commit, 740),
                end(abort, XactEndKind::Abort, 741),
                end(commit_prepared, XactEndKind::CommitPrepared, 742),
                end(abort_prepared, XactEndKind::AbortPrepared, 739),
            ]
        );
        assert_eq!(
            (summary.summary.min_xid, summary.summary.max_xid),
            (Some(739), Some(742))
        );
        assert_eq!(
            summary.summary.restore_points,
            vec![RestorePoint {
                lsn: Lsn(rp),
                name: "rp_one".into(),
                time: 777
            }]
        );
        let checkpoint = |lsn, online| CheckpointRecord {
            lsn: Lsn(lsn),
            redo: Lsn(wal.base + 0x28),
            time_unix: 1_790_000_000,
            online,
            timeline: 3,
        };
        assert_eq!(
            summary.summary.checkpoints,
            vec![checkpoint(online, true), checkpoint(shutdown, false)]
        );
        assert_eq!(
            summary.summary.backup_ends,
            vec![BackupEnd {
                lsn: Lsn(backup_end),
                backup_start: Lsn(0x0300_0060)
            }]
        );
        assert_eq!(
            summary.summary.end_of_recovery,
            vec![EndOfRecovery {
                lsn: Lsn(eor),
                time: 888,
                timeline: 3,
                prev_timeline: 2
            }]
        );
    }

    #[test]
    fn a_body_too_short_for_its_flags_is_refused_by_feed_in_any_segment() {
        let mut wal = WalWriter::mib(3, 1);
        let commit = wal.main_data(
            RM_XACT_ID,
            with_xinfo(XLOG_XACT_COMMIT_PREPARED),
            0,
            &commit_body(XACT_XINFO_HAS_SUBXACTS, &[&array(1, 4)]),
        );
        wal.switch();
        for complete in [true, false] {
            assert!(matches!(
                wal.walk(0, complete),
                Err(WalRecordDefect::BadBody { lsn, .. }) if lsn == Lsn(commit)
            ));
        }
        let mut wal = WalWriter::mib(3, 1);
        let checkpoint = wal.main_data(RM_XLOG_ID, XLOG_CHECKPOINT_ONLINE, 0, &[0; 40]);
        wal.switch();
        let size = SegmentSize::new(MIB).unwrap();
        let name = SegmentName::from_segment_number(TimelineId(1), 3, size);
        let mut walker = RecordWalker::new(name, size, pg(15), PAGE as u32);
        let defect = walker.feed(wal.segment(0)).unwrap_err();
        assert_eq!(
            defect.to_string(),
            format!(
                "the record at {} has a valid CRC but does not decode: its checkpoint main data is 40 bytes, expected 88",
                Lsn(checkpoint)
            )
        );
        assert_eq!(walker.feed(&[]), Err(defect.clone()));
        assert_eq!(walker.finish(false), Err(defect));
    }
}
