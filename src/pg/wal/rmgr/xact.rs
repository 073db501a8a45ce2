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
/// `sizeof(xl_xact_stats_item)` (12–17; 16 bytes in 18) and `sizeof(SharedInvalidationMessage)`.
const STATS_ITEM_LEN: usize = 12;
const INVAL_MSG_LEN: usize = 16;

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
        body.skip_array(STATS_ITEM_LEN)?;
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
