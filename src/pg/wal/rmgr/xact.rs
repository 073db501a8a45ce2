//! RM_XACT: the transaction end records (commit and abort, also of prepared transactions), read
//! as `ParseCommitRecord`/`ParseAbortRecord` (`xactdesc.c`) read them, for their XID and time.

use super::{BodyReader, FirstPart};
use crate::pg::fields::i64_at;
use crate::pg::lsn::Lsn;
use crate::pg::version::PgMajor;
use crate::pg::wal::block_headers::RELFILENODE_LEN;
use crate::pg::wal::facts::{RecordFact, XactEnd, XactEndKind};
use crate::pg::wal::record::RecordHeader;

/// RM_XACT opcodes (`src/include/access/xact.h`): `xl_info & XLOG_XACT_OPMASK`.
const XLOG_XACT_OPMASK: u8 = 0x70;
pub(in crate::pg::wal) const XLOG_XACT_COMMIT: u8 = 0x00;
pub(in crate::pg::wal) const XLOG_XACT_ABORT: u8 = 0x20;
pub(in crate::pg::wal) const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
pub(in crate::pg::wal) const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
/// `xl_info`: an `xinfo` word follows `xact_time`.
pub(in crate::pg::wal) const XLOG_XACT_HAS_INFO: u8 = 0x80;

/// `xinfo` flags, in the order their payloads follow one another.
pub(in crate::pg::wal) const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
pub(in crate::pg::wal) const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
pub(in crate::pg::wal) const XACT_XINFO_HAS_RELFILENODES: u32 = 1 << 2;
pub(in crate::pg::wal) const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
pub(in crate::pg::wal) const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
/// PostgreSQL 15+.
pub(in crate::pg::wal) const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;
/// `sizeof(SharedInvalidationMessage)`.
const INVAL_MSG_LEN: usize = 16;

/// `sizeof(xl_xact_stats_item)`: `{kind, dboid, objoid}` in 15–17; 18 widened the object id to
/// 64 bits (`objid_lo`, `objid_hi`), so 16 bytes.
fn stats_item_len(version: PgMajor) -> usize {
    if version.number() >= 18 { 16 } else { 12 }
}

/// Reads a transaction end record's main data (`ParseCommitRecord`/`ParseAbortRecord`,
/// `xactdesc.c`); `None` for the other XACT records.
pub(super) fn xact_end(
    lsn: Lsn,
    info: u8,
    xl_xid: u32,
    main: &[u8],
    version: PgMajor,
) -> Result<Option<XactEnd>, String> {
    let Some(kind) = xact_end_kind(info) else {
        return Ok(None);
    };
    let is_commit = matches!(kind, XactEndKind::Commit | XactEndKind::CommitPrepared);
    let mut body = BodyReader::new(main, "transaction end");
    let time = body.i64()?;
    let xinfo = if info & XLOG_XACT_HAS_INFO != 0 {
        body.u32()?
    } else {
        0
    };
    if xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        body.skip(8)?;
    }
    if xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        body.skip_array(4)?;
    }
    if xinfo & XACT_XINFO_HAS_RELFILENODES != 0 {
        body.skip_array(RELFILENODE_LEN)?;
    }
    if version.number() >= 15 && xinfo & XACT_XINFO_HAS_DROPPED_STATS != 0 {
        body.skip_array(stats_item_len(version))?;
    }
    // Abort records never carry invalidation messages; PostgreSQL does not look for them there.
    if is_commit && xinfo & XACT_XINFO_HAS_INVALS != 0 {
        body.skip_array(INVAL_MSG_LEN)?;
    }
    let twophase_xid = if xinfo & XACT_XINFO_HAS_TWOPHASE != 0 {
        Some(body.u32()?)
    } else {
        None
    };
    let xid = match kind {
        XactEndKind::Commit | XactEndKind::Abort => xl_xid,
        XactEndKind::CommitPrepared | XactEndKind::AbortPrepared => twophase_xid
            .ok_or_else(|| "a prepared transaction's end names no prepared XID".to_owned())?,
    };
    Ok(Some(XactEnd {
        lsn,
        kind,
        xid,
        time,
    }))
}

/// The kind of transaction end an XACT record's `xl_info` names, if it is one.
fn xact_end_kind(info: u8) -> Option<XactEndKind> {
    match info & XLOG_XACT_OPMASK {
        XLOG_XACT_COMMIT => Some(XactEndKind::Commit),
        XLOG_XACT_ABORT => Some(XactEndKind::Abort),
        XLOG_XACT_COMMIT_PREPARED => Some(XactEndKind::CommitPrepared),
        XLOG_XACT_ABORT_PREPARED => Some(XactEndKind::AbortPrepared),
        _ => None,
    }
}

/// Reads a transaction end from the first part of its record (`main`: what is here of its main
/// data, `None` when its headers are not all here). Its XID is in its header and its time in
/// the first 8 bytes of its main data, except that a prepared transaction's XID lies further on.
pub(super) fn describe_first_part(
    header: &RecordHeader,
    lsn: Lsn,
    main: Option<&[u8]>,
    version: PgMajor,
) -> FirstPart {
    let Some(kind) = xact_end_kind(header.info) else {
        return FirstPart::Nothing;
    };
    let end = main.and_then(
        |main| match xact_end(lsn, header.info, header.xid, main, version) {
            Ok(end) => end,
            // The prepared transaction's XID lies beyond the part that is here.
            Err(_)
                if matches!(
                    kind,
                    XactEndKind::CommitPrepared | XactEndKind::AbortPrepared
                ) =>
            {
                None
            }
            Err(_) => (main.len() >= 8).then(|| XactEnd {
                lsn,
                kind,
                xid: header.xid,
                time: i64_at(main, 0),
            }),
        },
    );
    match end {
        Some(end) => FirstPart::Fact(RecordFact::XactEnd(end)),
        None => FirstPart::Undecoded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main data of a COMMIT PREPARED of xid 754 that dropped one table, as 17 and 18 write
    /// it: time, xinfo, database, one relation, one dropped-stats item of the version's size, 24
    /// invalidation messages, the prepared XID. (18.4 wrote 444 bytes for the same plain COMMIT,
    /// which has no XID at the end.)
    fn commit_prepared_dropping_a_table(stats_item: &[u8]) -> Vec<u8> {
        let xinfo = XACT_XINFO_HAS_DBINFO
            | XACT_XINFO_HAS_RELFILENODES
            | XACT_XINFO_HAS_INVALS
            | XACT_XINFO_HAS_TWOPHASE
            | XACT_XINFO_HAS_DROPPED_STATS;
        let mut main = 820_000_000_000_000i64.to_le_bytes().to_vec();
        main.extend_from_slice(&xinfo.to_le_bytes());
        main.extend_from_slice(&[0x7F, 0x06, 0, 0, 0x05, 0, 0, 0]);
        main.extend_from_slice(&1u32.to_le_bytes());
        main.extend_from_slice(&[0x11; RELFILENODE_LEN]);
        main.extend_from_slice(&1u32.to_le_bytes());
        main.extend_from_slice(stats_item);
        main.extend_from_slice(&24u32.to_le_bytes());
        main.extend_from_slice(&[0x22; 24 * INVAL_MSG_LEN]);
        main.extend_from_slice(&754u32.to_le_bytes());
        main
    }

    fn prepared_xid(main: &[u8], major: u32) -> Result<u32, String> {
        let info = XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_HAS_INFO;
        let end = xact_end(
            Lsn(0x0301_8E10),
            info,
            0,
            main,
            PgMajor::new(major).unwrap(),
        )?;
        Ok(end.expect("a transaction end").xid)
    }

    #[test]
    fn a_dropped_stats_item_is_12_bytes_before_18_and_16_bytes_from_18() {
        // kind 2 (relation), database 5, object 16384: 18 splits the object id into two halves.
        let item_17 = [2u32, 5, 16384].map(u32::to_le_bytes).concat();
        let item_18 = [2u32, 5, 16384, 0].map(u32::to_le_bytes).concat();
        let body_17 = commit_prepared_dropping_a_table(&item_17);
        let body_18 = commit_prepared_dropping_a_table(&item_18);
        assert_eq!(body_18.len(), 444 + 4);
        for major in [15, 16, 17] {
            assert_eq!(prepared_xid(&body_17, major), Ok(754), "PostgreSQL {major}");
        }
        assert_eq!(prepared_xid(&body_18, 18), Ok(754));
        // Read with the other version's item size, the XID would come from the wrong bytes.
        assert_ne!(prepared_xid(&body_18, 17), Ok(754));
        assert_ne!(prepared_xid(&body_17, 18), Ok(754));
    }
}
