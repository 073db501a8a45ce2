//! The WAL index's JSON, byte for byte as `docs/repository-format.md` describes it: an entry
//! ([`IndexEntry`]), the pack of a WAL directory's entries ([`IndexPack`]), and the stored form
//! of a segment's summary and of the records it lists.
//!
//! The summary and the records are `pg::wal`'s plain facts; how they are written is decided here
//! alone. Each `Stored*` definition below is the field list of one of those types with its
//! serde attributes (serde's remote derive): the compiler checks that it names every field of
//! the type and nothing else, and [`stored_as!`] makes the type serialize through it. Fields that
//! are empty, absent or false are left out of a summary: an index of 100,000 entries is read in
//! one go.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pg::Lsn;
use crate::pg::lsn::{lsn_text, optional_lsn_text};
use crate::pg::wal::{
    BackupEnd, CheckpointRecord, EndOfRecovery, RestorePoint, SegmentSummary, XactEnd, XactEndKind,
};

/// Version of the index entry and pack format.
pub const INDEX_FORMAT: u32 = 2;

/// One segment's index entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub format: u32,
    pub segment: String,
    /// CRC-32C of the segment's original bytes, as its object header records it.
    pub segment_crc32c: u32,
    pub summary: SegmentSummary,
}

/// The entries of one WAL directory in one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPack {
    pub format: u32,
    pub directory: String,
    /// In segment name order.
    pub entries: Vec<IndexEntry>,
}

/// Makes `$fact` serialize and deserialize as its stored form `$stored` (a remote derive) says.
macro_rules! stored_as {
    ($fact:ty => $stored:ty) => {
        impl Serialize for $fact {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$stored>::serialize(self, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $fact {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$fact, D::Error> {
                <$stored>::deserialize(deserializer)
            }
        }
    };
}

stored_as!(SegmentSummary => StoredSummary);
stored_as!(XactEndKind => StoredXactEndKind);
stored_as!(XactEnd => StoredXactEnd);
stored_as!(RestorePoint => StoredRestorePoint);
stored_as!(CheckpointRecord => StoredCheckpoint);
stored_as!(BackupEnd => StoredBackupEnd);
stored_as!(EndOfRecovery => StoredEndOfRecovery);

#[derive(Serialize, Deserialize)]
#[serde(remote = "SegmentSummary", deny_unknown_fields)]
struct StoredSummary {
    #[serde(with = "optional_lsn_text")]
    first_record: Option<Lsn>,
    #[serde(with = "optional_lsn_text")]
    last_record: Option<Lsn>,
    #[serde(with = "lsn_text")]
    end_of_wal: Lsn,
    #[serde(default, skip_serializing_if = "is_false")]
    ends_with_switch: bool,
    continues_into_next: bool,
    xact_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_xact: Option<XactEnd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_time: Option<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    spill_undecoded: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    restore_points: Vec<RestorePoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    checkpoints: Vec<CheckpointRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    backup_ends: Vec<BackupEnd>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    end_of_recovery: Vec<EndOfRecovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_xid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_xid: Option<u32>,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// Written by variant name: `"Commit"`.
#[derive(Serialize, Deserialize)]
#[serde(remote = "XactEndKind")]
enum StoredXactEndKind {
    Commit,
    Abort,
    CommitPrepared,
    AbortPrepared,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "XactEnd")]
struct StoredXactEnd {
    #[serde(with = "lsn_text")]
    lsn: Lsn,
    kind: XactEndKind,
    xid: u32,
    time: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "RestorePoint")]
struct StoredRestorePoint {
    #[serde(with = "lsn_text")]
    lsn: Lsn,
    name: String,
    time: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "CheckpointRecord")]
struct StoredCheckpoint {
    #[serde(with = "lsn_text")]
    lsn: Lsn,
    #[serde(with = "lsn_text")]
    redo: Lsn,
    time_unix: i64,
    online: bool,
    timeline: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "BackupEnd")]
struct StoredBackupEnd {
    #[serde(with = "lsn_text")]
    lsn: Lsn,
    #[serde(with = "lsn_text")]
    backup_start: Lsn,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "EndOfRecovery")]
struct StoredEndOfRecovery {
    #[serde(with = "lsn_text")]
    lsn: Lsn,
    time: i64,
    timeline: u32,
    prev_timeline: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::wal::test_wal::split_records;

    /// A summary with every field set, as a segment with every kind of record gives one.
    fn full_summary() -> SegmentSummary {
        use crate::pg::wal::{
            BackupEnd, CheckpointRecord, EndOfRecovery, RestorePoint, XactEnd, XactEndKind,
        };
        SegmentSummary {
            first_record: Some(Lsn(0x0300_0028)),
            last_record: Some(Lsn(0x0300_1AE8)),
            end_of_wal: Lsn(0x0300_1B00),
            ends_with_switch: true,
            continues_into_next: false,
            xact_count: 4,
            last_xact: Some(XactEnd {
                lsn: Lsn(0x0300_0130),
                kind: XactEndKind::AbortPrepared,
                xid: 742,
                time: 848_583_932_543_707,
            }),
            min_time: Some(-5),
            max_time: Some(848_583_932_543_707),
            spill_undecoded: true,
            restore_points: vec![RestorePoint {
                lsn: Lsn(0x1_0300_0200),
                name: "before \"the\" upgrade".into(),
                time: 848_583_900_000_000,
            }],
            checkpoints: vec![
                CheckpointRecord {
                    lsn: Lsn(0x0300_0300),
                    redo: Lsn(0x0300_0028),
                    time_unix: 1_795_000_000,
                    online: true,
                    timeline: 3,
                },
                CheckpointRecord {
                    lsn: Lsn(0x0300_0400),
                    redo: Lsn(0x0300_0400),
                    time_unix: 1_795_000_001,
                    online: false,
                    timeline: 3,
                },
            ],
            backup_ends: vec![BackupEnd {
                lsn: Lsn(0x0300_0500),
                backup_start: Lsn(0x0200_0028),
            }],
            end_of_recovery: vec![EndOfRecovery {
                lsn: Lsn(0x0300_0600),
                time: 848_583_932_000_000,
                timeline: 3,
                prev_timeline: 2,
            }],
            min_xid: Some(739),
            max_xid: Some(u32::MAX),
        }
    }

    /// The bytes of the repository's index entries do not change: readers of older repositories
    /// and other tools depend on them. Every field set, then every field that can be left out
    /// left out.
    #[test]
    fn index_entries_are_written_in_the_repository_format() {
        let entry = |summary| IndexEntry {
            format: INDEX_FORMAT,
            segment: "000000030000000000000003".into(),
            segment_crc32c: 0xDEAD_BEEF,
            summary,
        };
        let full = entry(full_summary());
        let full_json = concat!(
            r#"{"format":2,"segment":"000000030000000000000003","segment_crc32c":3735928559,"#,
            r#""summary":{"first_record":"0/3000028","last_record":"0/3001AE8","#,
            r#""end_of_wal":"0/3001B00","ends_with_switch":true,"continues_into_next":false,"#,
            r#""xact_count":4,"last_xact":{"lsn":"0/3000130","kind":"AbortPrepared","xid":742,"#,
            r#""time":848583932543707},"min_time":-5,"max_time":848583932543707,"#,
            r#""spill_undecoded":true,"restore_points":[{"lsn":"1/3000200","#,
            r#""name":"before \"the\" upgrade","time":848583900000000}],"#,
            r#""checkpoints":[{"lsn":"0/3000300","redo":"0/3000028","time_unix":1795000000,"#,
            r#""online":true,"timeline":3},{"lsn":"0/3000400","redo":"0/3000400","#,
            r#""time_unix":1795000001,"online":false,"timeline":3}],"#,
            r#""backup_ends":[{"lsn":"0/3000500","backup_start":"0/2000028"}],"#,
            r#""end_of_recovery":[{"lsn":"0/3000600","time":848583932000000,"timeline":3,"#,
            r#""prev_timeline":2}],"min_xid":739,"max_xid":4294967295}}"#
        );
        assert_eq!(serde_json::to_string(&full).unwrap(), full_json);
        assert_eq!(serde_json::from_str::<IndexEntry>(full_json).unwrap(), full);

        let sparse = entry(SegmentSummary {
            continues_into_next: true,
            ..SegmentSummary::empty(Lsn(0x0400_0000))
        });
        let sparse_json = concat!(
            r#"{"format":2,"segment":"000000030000000000000003","segment_crc32c":3735928559,"#,
            r#""summary":{"first_record":null,"last_record":null,"end_of_wal":"0/4000000","#,
            r#""continues_into_next":true,"xact_count":0}}"#
        );
        assert_eq!(serde_json::to_string(&sparse).unwrap(), sparse_json);
        assert_eq!(
            serde_json::from_str::<IndexEntry>(sparse_json).unwrap(),
            sparse
        );

        let pack = IndexPack {
            format: INDEX_FORMAT,
            directory: "0000000300000000".into(),
            entries: vec![full, sparse],
        };
        let pack_json = format!(
            r#"{{"format":2,"directory":"0000000300000000","entries":[{full_json},{sparse_json}]}}"#
        );
        assert_eq!(serde_json::to_string(&pack).unwrap(), pack_json);
        assert_eq!(serde_json::from_str::<IndexPack>(&pack_json).unwrap(), pack);
    }

    #[test]
    fn summaries_serialize_with_lsns_written_as_postgresql_writes_them() {
        let (wal, _) = split_records();
        let (walked, _) = wal.walk(0, true).unwrap();
        let summary = walked.summary;
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["first_record"], "0/300028");
        assert_eq!(json["last_xact"]["kind"], "Commit");
        assert_eq!(
            json["last_xact"]["lsn"],
            walked.xact_ends.last().unwrap().lsn.to_string()
        );
        let back: SegmentSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, summary);
        let empty = SegmentSummary {
            first_record: None,
            ..summary
        };
        let json = serde_json::to_string(&empty).unwrap();
        assert!(json.contains("\"first_record\":null"), "{json}");
        assert_eq!(
            serde_json::from_str::<SegmentSummary>(&json).unwrap(),
            empty
        );
    }
}
