//! RM_XLOG: the records of the WAL itself that matter to planning a recovery (`xlogdesc.c`):
//! checkpoints, restore points, backup ends, end of recovery, and the switch that ends a segment.

use super::FirstPart;
use super::RM_XLOG_ID;
use crate::pg::fields::{i64_at, u32_at, u64_at};
use crate::pg::lsn::Lsn;
use crate::pg::wal::facts::{BackupEnd, CheckpointRecord, EndOfRecovery, RecordFact, RestorePoint};

/// The bits of `xl_info` that belong to the resource manager; the low bits are generic flags
/// (`wal_consistency_checking` sets 0x02), so opcodes are always compared after masking.
const XLR_RMGR_INFO_MASK: u8 = 0xF0;

/// RM_XLOG opcodes (`src/include/catalog/pg_control.h`).
pub(in crate::pg::wal) const XLOG_CHECKPOINT_SHUTDOWN: u8 = 0x00;
pub(in crate::pg::wal) const XLOG_CHECKPOINT_ONLINE: u8 = 0x10;
pub(in crate::pg::wal) const XLOG_SWITCH: u8 = 0x40;
pub(in crate::pg::wal) const XLOG_BACKUP_END: u8 = 0x50;
pub(in crate::pg::wal) const XLOG_RESTORE_POINT: u8 = 0x70;
pub(in crate::pg::wal) const XLOG_END_OF_RECOVERY: u8 = 0x90;

/// `sizeof(CheckPoint)` in 12–18. Its fields read here keep their offsets in every supported
/// version: PostgreSQL 17 put `wal_level` at 20, in what was padding before `nextXid` at 24.
pub(in crate::pg::wal) const CHECKPOINT_LEN: usize = 88;
const CHECKPOINT_REDO_AT: usize = 0;
const CHECKPOINT_TIMELINE_AT: usize = 8;
/// `pg_time_t`: Unix seconds, unlike every other timestamp in WAL.
const CHECKPOINT_TIME_AT: usize = 64;
/// `xl_restore_point`: `TimestampTz rp_time`, then `char rp_name[MAXFNAMELEN = 64]`.
const RESTORE_POINT_LEN: usize = 72;
const RESTORE_POINT_NAME_AT: usize = 8;
/// `xl_end_of_recovery`: `TimestampTz end_time`, `TimeLineID ThisTimeLineID, PrevTimeLineID`.
const END_OF_RECOVERY_LEN: usize = 16;

/// Whether a record is an `XLOG_SWITCH`, after which the rest of the segment is padding.
#[inline]
pub(in crate::pg::wal) fn is_switch(rmid: u8, info: u8) -> bool {
    rmid == RM_XLOG_ID && info & XLR_RMGR_INFO_MASK == XLOG_SWITCH
}

/// Whether an RM_XLOG record is one [`describe`] reads.
fn is_planned_xlog_record(info: u8) -> bool {
    matches!(
        info & XLR_RMGR_INFO_MASK,
        XLOG_CHECKPOINT_SHUTDOWN
            | XLOG_CHECKPOINT_ONLINE
            | XLOG_BACKUP_END
            | XLOG_RESTORE_POINT
            | XLOG_END_OF_RECOVERY
    )
}

/// Reads the RM_XLOG records that matter to planning from their main data.
pub(super) fn describe(lsn: Lsn, info: u8, main: &[u8]) -> Result<Option<RecordFact>, String> {
    let need = |len: usize, what: &str| {
        if main.len() < len {
            Err(format!(
                "its {what} main data is {} bytes, expected {len}",
                main.len()
            ))
        } else {
            Ok(())
        }
    };
    let fact = match info & XLR_RMGR_INFO_MASK {
        opcode @ (XLOG_CHECKPOINT_SHUTDOWN | XLOG_CHECKPOINT_ONLINE) => {
            need(CHECKPOINT_LEN, "checkpoint")?;
            RecordFact::Checkpoint(CheckpointRecord {
                lsn,
                redo: Lsn(u64_at(main, CHECKPOINT_REDO_AT)),
                time_unix: i64_at(main, CHECKPOINT_TIME_AT),
                online: opcode == XLOG_CHECKPOINT_ONLINE,
                timeline: u32_at(main, CHECKPOINT_TIMELINE_AT),
            })
        }
        XLOG_BACKUP_END => {
            need(8, "backup end")?;
            RecordFact::BackupEnd(BackupEnd {
                lsn,
                backup_start: Lsn(u64_at(main, 0)),
            })
        }
        XLOG_RESTORE_POINT => {
            need(RESTORE_POINT_LEN, "restore point")?;
            RecordFact::RestorePoint(RestorePoint {
                lsn,
                name: restore_point_name(&main[RESTORE_POINT_NAME_AT..RESTORE_POINT_LEN]),
                time: i64_at(main, 0),
            })
        }
        XLOG_END_OF_RECOVERY => {
            need(END_OF_RECOVERY_LEN, "end-of-recovery")?;
            RecordFact::EndOfRecovery(EndOfRecovery {
                lsn,
                time: i64_at(main, 0),
                timeline: u32_at(main, 8),
                prev_timeline: u32_at(main, 12),
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(fact))
}

/// Reads an RM_XLOG record that matters to planning from the first part of its record: only
/// when its whole main data is here (`main`, `None` when its headers are not all here).
pub(super) fn describe_first_part(info: u8, lsn: Lsn, main: Option<&[u8]>) -> FirstPart {
    if !is_planned_xlog_record(info) {
        return FirstPart::Nothing;
    }
    match main.map(|main| describe(lsn, info, main)) {
        Some(Ok(Some(fact))) => FirstPart::Fact(fact),
        _ => FirstPart::Undecoded,
    }
}

/// The name up to its NUL: the bytes after it are uninitialised memory, not part of the name.
fn restore_point_name(field: &[u8]) -> String {
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..len]).into_owned()
}
