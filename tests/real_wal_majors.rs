//! `tidemark::pg` on REAL WAL of every supported major, 12 to 18: a server of that major, started
//! by the test with 1 MiB segments and archiving by `cp`, runs commits, aborts, subtransactions,
//! a prepared transaction that drops a table (COMMIT PREPARED) and one that creates one
//! (ROLLBACK PREPARED), a restore point, a checkpoint and switches. Then:
//!
//! * every page header of every archived segment decodes, and its magic is that major's
//!   (`PgMajor::from_page_magic`); the segment checker accepts every segment;
//! * the record walker walks every record with its CRC checked (a record spilling into the next
//!   segment is walked whole, over both) and finds no defect;
//! * what it reads equals what the server reports: each commit's time is
//!   `pg_xact_commit_timestamp` of its XID to the microsecond, each transaction end's kind is
//!   what the server says of its XID (committed or aborted), COMMIT PREPARED and ROLLBACK
//!   PREPARED carry the prepared transaction's XID (`pg_prepared_xacts.transaction`), the
//!   workload's aborts appear with their XIDs, the restore point has its name and ends exactly
//!   at the LSN `pg_create_restore_point` returned, and the checkpoint is the one
//!   `pg_control_checkpoint()` names.
//!
//! The matrix packages carry no `pg_waldump` of their own major, so the server itself is the
//! reference. A missing server package fails these tests: nothing is skipped.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chrono::DateTime;
use common::wal::{PAGE, segment_name, zero_tail_page};
use testkit::{PgBinaries, SharedTempDir, ThrowawayCluster, switch_and_wait_for_archive};
use tidemark::pg::page::{LONG_HEADER_LEN, PageHeader, SHORT_HEADER_LEN};
use tidemark::pg::segment_check::{CHUNK_ALIGNMENT, ExpectedCluster, SegmentChecker, SegmentKind};
use tidemark::pg::wal::{
    CheckpointRecord, RecordWalker, RestorePoint, WalkedSegment, XactEnd, XactEndKind,
};
use tidemark::pg::{Lsn, PgMajor, SegmentName, SegmentSize, TimelineId};

const MIB: u32 = 1 << 20;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_UNIX_US: i64 = 946_684_800_000_000;
/// `FirstNormalTransactionId`: the XIDs below are special, never a transaction's.
const FIRST_NORMAL_XID: u32 = 3;

#[test]
fn on_postgres_12() {
    walks_real_wal_of(12);
}

#[test]
fn on_postgres_13() {
    walks_real_wal_of(13);
}

#[test]
fn on_postgres_14() {
    walks_real_wal_of(14);
}

#[test]
fn on_postgres_15() {
    walks_real_wal_of(15);
}

#[test]
fn on_postgres_16() {
    walks_real_wal_of(16);
}

#[test]
fn on_postgres_17() {
    walks_real_wal_of(17);
}

#[test]
fn on_postgres_18() {
    walks_real_wal_of(18);
}

/// The shared body: a cluster of `major`, its workload, its archive walked and compared with
/// what the server says.
fn walks_real_wal_of(major: u32) {
    let pg = PgBinaries::for_major(major).unwrap_or_else(|e| panic!("PostgreSQL {major}: {e:#}"));
    // Declared before the cluster, so the cluster is stopped before its directory goes.
    let tmp = SharedTempDir::new(&format!("tm-wal{major}-")).unwrap();
    let raw = tmp.subdir("raw").unwrap();
    let mut cluster = archiving_cluster(&pg, &tmp, &raw);
    // What initdb wrote before is older than the server may remember the status of.
    let started: Lsn = cluster
        .query_value("SELECT pg_current_wal_insert_lsn()")
        .unwrap();

    let told = run_workload(&cluster, major);
    switch_and_wait_for_archive(&cluster).unwrap();
    let system_id = cluster.system_identifier().unwrap();
    let version = PgMajor::new(major).unwrap_or_else(|e| panic!("{e}"));
    let expected = ExpectedCluster {
        system_id,
        version,
        segment_size: size(),
    };
    let walked = walk_the_archive(&raw, expected);
    let status = server_status_of(&cluster, major, &walked.ends);
    cluster.stop().unwrap();

    the_workload_ends_are_there(&walked.ends, &told, &status);
    let told_of = every_end_is_what_the_server_says(&walked.ends, &status, started);
    the_restore_point_ends_where_the_server_said(&walked, &told);
    let checkpoint = walked.checkpoints.get(&told.checkpoint.lsn);
    assert_eq!(
        checkpoint,
        Some(&told.checkpoint),
        "the checkpoint pg_control_checkpoint() names, among {:?}",
        walked.checkpoints
    );
    println!(
        "PostgreSQL {major}: {} segments, {} records walked with their CRCs checked, {} spilling \
         into the next segment, {} ending with a switch, {} transaction ends ({told_of} whose \
         status the server told, {} with a commit timestamp compared)",
        walked.segments.len(),
        walked.records,
        walked.spilling,
        walked.switched,
        walked.ends.len(),
        status.values().filter(|s| s.commit_time.is_some()).count(),
    );
    assert!(
        walked.spilling >= 1,
        "the workload spills records across segments"
    );
    assert!(walked.switched >= 3, "the workload switches segments");
}

/// A started cluster of `pg`'s major, with 1 MiB segments, commit timestamps, prepared
/// transactions, and archiving by `cp` into `raw`.
fn archiving_cluster(pg: &PgBinaries, tmp: &SharedTempDir, raw: &Path) -> ThrowawayCluster {
    let mut cluster = ThrowawayCluster::init(pg, tmp.path(), "primary", 1).unwrap();
    let archive_command = format!("cp %p {}/%f", raw.display());
    cluster
        .configure(&[
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
            ("track_commit_timestamp", "on"),
            ("max_prepared_transactions", "10"),
        ])
        .unwrap();
    cluster.start().unwrap();
    let version: u32 = cluster.query_value("SHOW server_version_num").unwrap();
    assert_eq!(version / 10000, pg.major, "the cluster runs {version}");
    cluster
}

fn size() -> SegmentSize {
    SegmentSize::new(u64::from(MIB)).unwrap()
}

/// What the server reported while the workload ran.
struct ServerSays {
    /// XIDs of the top-level transactions that committed.
    committed: Vec<u32>,
    /// XIDs of the transaction and the subtransaction that rolled back.
    aborted: Vec<u32>,
    /// `pg_prepared_xacts.transaction` of the transaction COMMIT PREPARED ended.
    commit_prepared: u32,
    /// `pg_prepared_xacts.transaction` of the transaction ROLLBACK PREPARED ended.
    rollback_prepared: u32,
    restore_point: String,
    /// What `pg_create_restore_point` returned.
    restore_point_lsn: Lsn,
    /// The checkpoint `pg_control_checkpoint()` named after `CHECKPOINT`.
    checkpoint: CheckpointRecord,
}

/// The transactions whose ends are compared, a restore point, a checkpoint, and WAL enough to
/// spill records across segments, with switches in between.
fn run_workload(cluster: &ThrowawayCluster, major: u32) -> ServerSays {
    // pg_current_xact_id() is 13+; txid_current() is all 12 has.
    let current_xid = if major >= 13 {
        "SELECT pg_current_xact_id()"
    } else {
        "SELECT txid_current()"
    };
    let xid = |output: String| -> u32 {
        let full: u64 = output
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{output:?}: {e}"));
        u32::try_from(full).expect("a fresh cluster's XIDs have epoch 0")
    };
    cluster
        .query("CREATE TABLE rec (id int, note text); CREATE TABLE doomed (id int)")
        .unwrap();
    let mut committed: Vec<u32> = (0..3)
        .map(|i| {
            let statements = [
                "BEGIN",
                &format!("INSERT INTO rec VALUES ({i}, 'committed')"),
                current_xid,
                "COMMIT",
            ];
            xid(cluster.execute_each(&statements).unwrap())
        })
        .collect();
    let aborted = xid(cluster
        .execute_each(&[
            "BEGIN",
            "INSERT INTO rec VALUES (100, 'aborted')",
            current_xid,
            "ROLLBACK",
        ])
        .unwrap());
    // A released subtransaction commits with its parent; one rolled back to its savepoint writes
    // its own abort record, under its own XID (the row's xmin).
    let subtransactions = cluster
        .execute_each(&[
            "BEGIN",
            "INSERT INTO rec VALUES (300, 'top')",
            "SAVEPOINT kept",
            "INSERT INTO rec VALUES (301, 'released')",
            "RELEASE kept",
            "SAVEPOINT undone",
            "INSERT INTO rec VALUES (302, 'rolled back')",
            "SELECT xmin FROM rec WHERE id = 302",
            "ROLLBACK TO undone",
            current_xid,
            "COMMIT",
        ])
        .unwrap();
    let (sub, top) = subtransactions
        .split_once('\n')
        .unwrap_or_else(|| panic!("two XIDs, got {subtransactions:?}"));
    committed.push(xid(top.to_owned()));
    let aborted = vec![aborted, xid(sub.to_owned())];
    cluster.query("SELECT pg_switch_wal()").unwrap();

    // Dropping a table and creating one leave dropped-stats items in the ends (15+), which on
    // 18 are 16 bytes; the prepared XID comes after them in the record.
    let commit_prepared = prepare(
        cluster,
        "tm_drop",
        &[
            "DROP TABLE doomed",
            "INSERT INTO rec VALUES (200, 'prepared')",
        ],
    );
    cluster.query("COMMIT PREPARED 'tm_drop'").unwrap();
    let rollback_prepared = prepare(
        cluster,
        "tm_create",
        &[
            "CREATE TABLE fleeting (id int)",
            "INSERT INTO fleeting VALUES (1)",
            "INSERT INTO rec VALUES (201, 'prepared')",
        ],
    );
    cluster.query("ROLLBACK PREPARED 'tm_create'").unwrap();

    let restore_point = format!("tm_rp_{major}");
    let restore_point_lsn: Lsn = cluster
        .query_value(&format!(
            "SELECT pg_create_restore_point('{restore_point}')"
        ))
        .unwrap();
    let checkpoint = checkpoint_now(cluster);
    // Over 2 MiB of WAL, so records cross segment boundaries.
    cluster
        .query("INSERT INTO rec SELECT g, repeat(md5(g::text), 12) FROM generate_series(1, 5000) g")
        .unwrap();
    cluster.query("SELECT pg_switch_wal()").unwrap();
    cluster
        .query("UPDATE rec SET note = note || 'x' WHERE id % 3 = 0")
        .unwrap();
    ServerSays {
        committed,
        aborted,
        commit_prepared,
        rollback_prepared,
        restore_point,
        restore_point_lsn,
        checkpoint,
    }
}

/// Runs `statements` in a transaction prepared as `gid`; returns its XID as `pg_prepared_xacts`
/// shows it.
fn prepare(cluster: &ThrowawayCluster, gid: &str, statements: &[&str]) -> u32 {
    let prepare = format!("PREPARE TRANSACTION '{gid}'");
    let mut all = vec!["BEGIN"];
    all.extend_from_slice(statements);
    all.push(&prepare);
    cluster.execute_each(&all).unwrap();
    cluster
        .query_value(&format!(
            "SELECT transaction FROM pg_prepared_xacts WHERE gid = '{gid}'"
        ))
        .unwrap()
}

/// Runs `CHECKPOINT` and returns the record `pg_control_checkpoint()` then names.
fn checkpoint_now(cluster: &ThrowawayCluster) -> CheckpointRecord {
    let row = cluster
        .execute_each(&[
            "CHECKPOINT",
            "SELECT checkpoint_lsn, redo_lsn, timeline_id, \
             extract(epoch FROM checkpoint_time)::bigint FROM pg_control_checkpoint()",
        ])
        .unwrap();
    let fields: Vec<&str> = row.split('|').collect();
    let [lsn, redo, timeline, time] = fields[..] else {
        panic!("pg_control_checkpoint() returned {row:?}");
    };
    CheckpointRecord {
        lsn: lsn.parse().unwrap(),
        redo: redo.parse().unwrap(),
        time_unix: time.parse().unwrap(),
        online: true,
        timeline: timeline.parse().unwrap(),
    }
}

/// What walking every archived segment found.
struct Walked {
    segments: Vec<SegmentName>,
    records: u64,
    spilling: usize,
    switched: usize,
    /// Every transaction end, by LSN.
    ends: BTreeMap<Lsn, XactEnd>,
    restore_points: BTreeMap<Lsn, RestorePoint>,
    checkpoints: BTreeMap<Lsn, CheckpointRecord>,
    bytes: BTreeMap<SegmentName, Vec<u8>>,
}

impl Walked {
    /// Notes what one walk found; a record found by two walks (a spilling record, read in part
    /// alone and whole with the next segment) must be read the same by both.
    fn note(&mut self, walk: &WalkedSegment) {
        fn merge<T: Clone + PartialEq + std::fmt::Debug>(
            into: &mut BTreeMap<Lsn, T>,
            found: impl IntoIterator<Item = (Lsn, T)>,
        ) {
            for (lsn, fact) in found {
                if let Some(before) = into.insert(lsn, fact.clone()) {
                    assert_eq!(
                        before, fact,
                        "two walks read the record at {lsn} differently"
                    );
                }
            }
        }
        merge(
            &mut self.ends,
            walk.xact_ends.iter().map(|e| (e.lsn, e.clone())),
        );
        let summary = &walk.summary;
        merge(
            &mut self.restore_points,
            summary.restore_points.iter().map(|r| (r.lsn, r.clone())),
        );
        merge(
            &mut self.checkpoints,
            summary.checkpoints.iter().map(|c| (c.lsn, c.clone())),
        );
    }
}

/// Checks the pages of every archived segment and walks its records: each segment alone, and
/// each whose last record spills over together with the next, so that record's CRC is checked.
fn walk_the_archive(raw: &Path, expected: ExpectedCluster) -> Walked {
    let names = common::segment_names_in(raw);
    let segments: Vec<(SegmentName, Vec<u8>)> = names
        .iter()
        .map(|file| (segment_name(file), fs::read(raw.join(file)).unwrap()))
        .collect();
    assert!(segments.len() >= 4, "archived: {names:?}");
    let mut walked = Walked {
        segments: segments.iter().map(|(name, _)| *name).collect(),
        records: 0,
        spilling: 0,
        switched: 0,
        ends: BTreeMap::new(),
        restore_points: BTreeMap::new(),
        checkpoints: BTreeMap::new(),
        bytes: BTreeMap::new(),
    };
    for (index, (name, bytes)) in segments.iter().enumerate() {
        if let Some((previous, _)) = index.checked_sub(1).map(|i| &segments[i]) {
            let number = |n: &SegmentName| n.segment_number(size()).unwrap();
            assert_eq!(number(name), number(previous) + 1, "{previous} then {name}");
        }
        pages_are_this_clusters(expected, *name, bytes);
        let mut checker = SegmentChecker::new(expected, *name, SegmentKind::Complete).unwrap();
        checker.check_length(bytes.len() as u64).unwrap();
        for piece in bytes.chunks(CHUNK_ALIGNMENT) {
            checker
                .feed(piece)
                .unwrap_or_else(|d| panic!("{name}: {d}"));
        }
        checker.finish().unwrap_or_else(|d| panic!("{name}: {d}"));

        let walker = RecordWalker::new(*name, size(), expected.version, PAGE as u32);
        let (walk, records) = walk_through(walker, [bytes.as_slice()], *name);
        walked.records += records;
        walked.switched += usize::from(walk.summary.ends_with_switch);
        if walk.summary.continues_into_next {
            let (next, next_bytes) = segments
                .get(index + 1)
                .unwrap_or_else(|| panic!("{name} spills into a segment never archived"));
            let spanning =
                RecordWalker::spanning(*name, size(), expected.version, PAGE as u32).unwrap();
            let (whole, _) = walk_through(spanning, [bytes.as_slice(), next_bytes], *name);
            assert_eq!(
                whole.summary.first_record, walk.summary.first_record,
                "{name} walked with {next}"
            );
            walked.note(&whole);
            walked.spilling += 1;
        }
        walked.note(&walk);
        walked.bytes.insert(*name, bytes.clone());
    }
    walked
}

/// Feeds `parts` to `walker` in the archive's chunks and finishes it as a complete segment:
/// every record read must pass its checks (CRC included). Also returns how many records started.
fn walk_through<const N: usize>(
    mut walker: RecordWalker,
    parts: [&[u8]; N],
    name: SegmentName,
) -> (WalkedSegment, u64) {
    for part in parts {
        for piece in part.chunks(CHUNK_ALIGNMENT) {
            walker.feed(piece).unwrap_or_else(|d| panic!("{name}: {d}"));
        }
    }
    let records = walker.record_count();
    let walk = walker
        .finish(true)
        .unwrap_or_else(|d| panic!("{name}: {d}"));
    (walk, records)
}

/// Every page before the zero tail has a header of this cluster's major (by its magic), on
/// timeline 1 at its own address, long on the first page only, and the long header names this
/// cluster, its segment size and page size; after the tail every byte is zero.
fn pages_are_this_clusters(expected: ExpectedCluster, name: SegmentName, bytes: &[u8]) {
    assert_eq!(bytes.len(), MIB as usize, "{name}");
    let start = name.start_lsn(size()).unwrap();
    let end = zero_tail_page(bytes).unwrap_or(bytes.len() / PAGE);
    for index in 0..end {
        let page = &bytes[index * PAGE..(index + 1) * PAGE];
        let header = PageHeader::decode(page).unwrap();
        let at = format!("{name} page {index}: {header:?}");
        assert_eq!(
            PgMajor::from_page_magic(header.magic),
            Some(expected.version),
            "{at}"
        );
        assert_eq!(header.timeline, TimelineId(1), "{at}");
        assert_eq!(
            header.page_address,
            Lsn(start.0 + (index * PAGE) as u64),
            "{at}"
        );
        match header.long {
            Some(long) => {
                assert_eq!(index, 0, "{at}");
                assert_eq!(long.system_id, expected.system_id, "{at}");
                assert_eq!(long.segment_size, MIB, "{at}");
                assert_eq!(long.page_size, PAGE as u32, "{at}");
            }
            None => assert_ne!(index, 0, "{at}"),
        }
    }
    assert!(
        bytes[end * PAGE..].iter().all(|&b| b == 0),
        "{name}: every byte after the XLOG_SWITCH is zero"
    );
}

/// What the server says of one XID.
#[derive(Debug)]
struct XidStatus {
    /// `pg_xact_status` (`txid_status` on 12): "committed", "aborted", "in progress".
    status: String,
    /// `pg_xact_commit_timestamp` in UTC to the microsecond, if the server kept one.
    commit_time: Option<String>,
}

/// What the running server says of the XID of every end in `ends`.
fn server_status_of(
    cluster: &ThrowawayCluster,
    major: u32,
    ends: &BTreeMap<Lsn, XactEnd>,
) -> BTreeMap<u32, XidStatus> {
    // Only normal XIDs: the server refuses to look up the special ones below 3, and no
    // transaction end carries one (the comparison then finds no status for it).
    let xids: Vec<String> = ends
        .values()
        .filter(|e| e.xid >= FIRST_NORMAL_XID)
        .map(|e| e.xid.to_string())
        .collect();
    // A fresh cluster's XIDs have epoch 0, so the 32-bit XID is the 64-bit one.
    let status = if major >= 13 {
        "pg_xact_status(x::text::xid8)"
    } else {
        "txid_status(x::text::bigint)"
    };
    let rows = cluster
        .query(&format!(
            "SELECT x, {status}, \
             to_char(pg_xact_commit_timestamp(x) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
             FROM unnest('{{{}}}'::xid[]) AS x",
            xids.join(",")
        ))
        .unwrap();
    rows.lines()
        .map(|row| {
            let fields: Vec<&str> = row.split('|').collect();
            let [xid, status, time] = fields[..] else {
                panic!("unexpected row {row:?}");
            };
            let status = XidStatus {
                status: status.to_owned(),
                commit_time: (!time.is_empty()).then(|| time.to_owned()),
            };
            (xid.parse().unwrap(), status)
        })
        .collect()
}

/// A TimestampTz as the server's `to_char` above prints it.
fn utc_micros(timestamptz: i64) -> String {
    DateTime::from_timestamp_micros(timestamptz + POSTGRES_EPOCH_UNIX_US)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// Every commit's XID is one the server says committed, at the time the walker read wherever the
/// server kept one; every abort's XID is one the server says aborted, with no commit time. The
/// server tells the status of every XID that ended after it `started`; of initdb's, it may have
/// forgotten some (their status is too old to tell). Returns how many ends it told of.
fn every_end_is_what_the_server_says(
    ends: &BTreeMap<Lsn, XactEnd>,
    status: &BTreeMap<u32, XidStatus>,
    started: Lsn,
) -> usize {
    let mut told = 0;
    for end in ends.values() {
        let said = status
            .get(&end.xid)
            .unwrap_or_else(|| panic!("the server said nothing of {end:?}"));
        if said.status.is_empty() {
            assert!(end.lsn < started, "{end:?}: too old to tell, at {started}");
            continue;
        }
        told += 1;
        match end.kind {
            XactEndKind::Commit | XactEndKind::CommitPrepared => {
                assert_eq!(said.status, "committed", "{end:?}");
                if let Some(time) = &said.commit_time {
                    assert_eq!(
                        &utc_micros(end.time),
                        time,
                        "{end:?}: the walker's time, pg_xact_commit_timestamp's"
                    );
                }
            }
            XactEndKind::Abort | XactEndKind::AbortPrepared => {
                assert_eq!(said.status, "aborted", "{end:?}");
                assert_eq!(said.commit_time, None, "{end:?}");
            }
        }
    }
    told
}

/// The workload's own transactions end as the server said they did: its commits once each and
/// with a commit time, its aborts once each, and exactly one COMMIT PREPARED and one ROLLBACK
/// PREPARED, with the XIDs `pg_prepared_xacts` showed.
fn the_workload_ends_are_there(
    ends: &BTreeMap<Lsn, XactEnd>,
    told: &ServerSays,
    status: &BTreeMap<u32, XidStatus>,
) {
    let ends_of = |xid: u32| -> Vec<XactEndKind> {
        ends.values()
            .filter(|e| e.xid == xid)
            .map(|e| e.kind)
            .collect()
    };
    for &xid in &told.committed {
        assert_eq!(ends_of(xid), [XactEndKind::Commit], "committed XID {xid}");
        assert!(
            status[&xid].commit_time.is_some(),
            "{xid}: {:?}",
            status[&xid]
        );
    }
    for &xid in &told.aborted {
        assert_eq!(ends_of(xid), [XactEndKind::Abort], "aborted XID {xid}");
    }
    let prepared_ends = |kind: XactEndKind| -> Vec<u32> {
        ends.values()
            .filter(|e| e.kind == kind)
            .map(|e| e.xid)
            .collect()
    };
    assert_eq!(
        prepared_ends(XactEndKind::CommitPrepared),
        [told.commit_prepared],
        "COMMIT PREPARED"
    );
    let xid = told.commit_prepared;
    assert!(
        status[&xid].commit_time.is_some(),
        "{xid}: {:?}",
        status[&xid]
    );
    assert_eq!(
        prepared_ends(XactEndKind::AbortPrepared),
        [told.rollback_prepared],
        "ROLLBACK PREPARED"
    );
}

/// The restore point is in the WAL once, under its name, starting before the LSN
/// `pg_create_restore_point` returned. That LSN is `XLogInsert`'s result, the end of the record:
/// its byte position plus its MAXALIGNed length, shown as the page boundary when that is where
/// it ends. So the next record starts exactly there, or right after the page header there.
fn the_restore_point_ends_where_the_server_said(walked: &Walked, told: &ServerSays) {
    let named: Vec<&RestorePoint> = walked
        .restore_points
        .values()
        .filter(|rp| rp.name == told.restore_point)
        .collect();
    let [point] = named[..] else {
        panic!(
            "one restore point {:?}, found {:?}",
            told.restore_point, walked.restore_points
        );
    };
    let returned = told.restore_point_lsn;
    assert!(point.lsn < returned, "{point:?} starts before {returned}");

    let next = if returned.0.is_multiple_of(u64::from(MIB)) {
        Lsn(returned.0 + LONG_HEADER_LEN as u64)
    } else if returned.0.is_multiple_of(PAGE as u64) {
        Lsn(returned.0 + SHORT_HEADER_LEN as u64)
    } else {
        returned
    };
    let (name, bytes) = walked
        .bytes
        .iter()
        .find(|(name, _)| {
            let start = name.start_lsn(size()).unwrap();
            start <= next && next.0 < start.0 + u64::from(MIB)
        })
        .unwrap_or_else(|| panic!("no archived segment holds {next}"));
    let version = PgMajor::from_page_magic(PageHeader::decode(bytes).unwrap().magic).unwrap();
    let mut walker = RecordWalker::new(*name, size(), version, PAGE as u32);
    walker.watch_from(Lsn(point.lsn.0 + 1));
    let (walk, _) = walk_through(walker, [bytes.as_slice()], *name);
    assert_eq!(
        walk.first_record_from,
        Some(next),
        "the record after the restore point at {} (pg_create_restore_point returned {returned})",
        point.lsn
    );
}
