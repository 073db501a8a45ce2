//! The record walker (`tidemark::pg::wal`) on REAL WAL written by a real PostgreSQL 15
//! server started by the test: a workload of commits, aborts, two-phase commits and rollbacks,
//! subtransactions, a restore point, checkpoints, a base backup and switches, archived by `cp`;
//! every archived segment is walked and compared with what `pg_waldump` prints for it (records
//! starting in the segment, first and last record, every transaction end with its XID and
//! timestamp, restore points, checkpoint redo LSNs, backup ends, switches, spills into the next
//! segment). A real segment with one byte flipped inside a record is a defect naming exactly that
//! record, and the live segment left in `pg_wal` ends where `pg_waldump` says its WAL ends.
//!
//! A missing PostgreSQL fails these tests: nothing is skipped.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::time::Instant;

use chrono::DateTime;
use common::WalLab;
use tidemark::demo::cluster::{PgBinaries, SharedTempDir, ThrowawayCluster, owner_command};
use tidemark::pg::page::{PageHeader, XLP_FIRST_IS_CONTRECORD};
use tidemark::pg::segment_check::CHUNK_ALIGNMENT;
use tidemark::pg::wal::{RecordWalker, WalRecordDefect, WalkedSegment, XactEnd, XactEndKind};
use tidemark::pg::{Lsn, PgMajor, SegmentName, SegmentSize, WalFileName};

const MIB: u64 = 1 << 20;
/// PostgreSQL's default (and the lab's) WAL page size, `XLOG_BLCKSZ`.
const PAGE: usize = 8192;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

fn pg15() -> PgMajor {
    PgMajor::new(15).unwrap()
}

fn size(bytes: u64) -> SegmentSize {
    SegmentSize::new(bytes).unwrap()
}

fn segment_name(file_name: &str) -> SegmentName {
    match WalFileName::parse(file_name) {
        Ok(WalFileName::Segment(name)) => name,
        other => panic!("{file_name} should parse as a segment, got {other:?}"),
    }
}

/// Walks `bytes` as segment `name` in chunks of `chunk`: the summary and the record count.
fn walk(
    name: SegmentName,
    segment_bytes: u64,
    bytes: &[u8],
    complete: bool,
    chunk: usize,
) -> Result<(WalkedSegment, u64), WalRecordDefect> {
    let mut walker = RecordWalker::new(name, size(segment_bytes), pg15(), PAGE as u32);
    for piece in bytes.chunks(chunk) {
        walker.feed(piece)?;
    }
    let count = walker.record_count();
    walker.finish(complete).map(|summary| (summary, count))
}

/// One line of `pg_waldump` output.
#[derive(Clone, Debug)]
struct Dumped {
    rmgr: String,
    total: u64,
    xid: u32,
    lsn: Lsn,
    desc: String,
}

/// The text between `start` and the next `end` in `line`, trimmed.
fn field<'a>(line: &'a str, start: &str, end: &str) -> &'a str {
    let rest = &line[line
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in {line:?}"))
        + start.len()..];
    rest[..rest.find(end).unwrap_or(rest.len())].trim()
}

/// Parses `pg_waldump` lines such as `rmgr: Transaction len (rec/tot):  34/  34, tx:  726,
/// lsn: 0/02000130, prev 0/02000108, desc: COMMIT 2026-11-21 13:45:32.543707 UTC`.
fn parse_waldump(output: &str) -> Vec<Dumped> {
    output
        .lines()
        .filter(|line| line.starts_with("rmgr: "))
        .map(|line| Dumped {
            rmgr: field(line, "rmgr: ", " len").to_owned(),
            total: field(field(line, "len (rec/tot):", ","), "/", ",")
                .parse()
                .unwrap(),
            xid: field(line, "tx:", ",").parse().unwrap(),
            lsn: field(line, "lsn: ", ",").parse().unwrap(),
            desc: field(line, "desc: ", "\n").to_owned(),
        })
        .collect()
}

/// Runs `pg_waldump args` as the cluster owner in UTC and the C locale, so timestamps and
/// messages are the text parsed here; returns stdout and stderr whatever the exit status (it
/// reports the end of WAL as an error).
fn pg_waldump(pg: &PgBinaries, cwd: &Path, args: &[&OsStr]) -> (String, String) {
    let output = owner_command(&pg.path("pg_waldump"), cwd)
        .args(args)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .output()
        .expect("spawn pg_waldump");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A TimestampTz as pg_waldump prints it in UTC: `2026-11-21 13:45:32.543707 UTC`.
fn waldump_time(timestamptz: i64) -> String {
    DateTime::from_timestamp_micros(timestamptz + POSTGRES_EPOCH_UNIX_US)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.6f UTC")
        .to_string()
}

/// The transaction end pg_waldump printed on `line`, as the walker should report it.
fn dumped_xact_end(line: &Dumped) -> Option<(XactEndKind, u32, &str)> {
    if line.rmgr != "Transaction" {
        return None;
    }
    let (word, rest) = line.desc.split_once(' ')?;
    let kind = match word {
        "COMMIT" => XactEndKind::Commit,
        "ABORT" => XactEndKind::Abort,
        "COMMIT_PREPARED" => XactEndKind::CommitPrepared,
        "ABORT_PREPARED" => XactEndKind::AbortPrepared,
        _ => return None,
    };
    match kind {
        XactEndKind::Commit | XactEndKind::Abort => Some((kind, line.xid, rest)),
        // "COMMIT_PREPARED 728: 2026-11-21 ..." names the prepared transaction; tx is 0.
        _ => {
            let (xid, time) = rest.split_once(": ")?;
            Some((kind, xid.parse().ok()?, time))
        }
    }
}

/// Runs the workload on the lab's cluster, archives it and stops the cluster.
fn run_workload(wal: &mut WalLab) {
    let cluster = &mut wal.cluster;
    cluster
        .configure(&[("max_prepared_transactions", "5")])
        .unwrap();
    cluster.start().unwrap();
    cluster
        .query("CREATE TABLE rec (id int, note text)")
        .unwrap();
    for i in 0..3 {
        cluster
            .query(&format!("INSERT INTO rec VALUES ({i}, 'committed')"))
            .unwrap();
    }
    cluster
        .execute_each(&[
            "BEGIN",
            "INSERT INTO rec VALUES (100, 'aborted')",
            "ROLLBACK",
        ])
        .unwrap();
    cluster
        .execute_each(&[
            "BEGIN",
            "INSERT INTO rec VALUES (200, 'prepared')",
            "PREPARE TRANSACTION 'tm_p1'",
        ])
        .unwrap();
    cluster.query("COMMIT PREPARED 'tm_p1'").unwrap();
    cluster
        .execute_each(&[
            "BEGIN",
            "INSERT INTO rec VALUES (201, 'prepared')",
            "PREPARE TRANSACTION 'tm_p2'",
        ])
        .unwrap();
    cluster.query("ROLLBACK PREPARED 'tm_p2'").unwrap();
    cluster
        .execute_each(&[
            "BEGIN",
            "INSERT INTO rec VALUES (300, 'top')",
            "SAVEPOINT s",
            "INSERT INTO rec VALUES (301, 'sub')",
            "RELEASE s",
            "COMMIT",
        ])
        .unwrap();
    cluster
        .query("SELECT pg_create_restore_point('rp_one')")
        .unwrap();
    cluster.query("CHECKPOINT").unwrap();
    let backup = wal.lab.tmp.path().join("base");
    cluster.base_backup(&backup).unwrap();
    // Enough WAL (full-page images after the checkpoint, rows over many pages) for records to
    // cross pages and segments.
    cluster
        .query("INSERT INTO rec SELECT g, repeat(md5(g::text), 40) FROM generate_series(1, 6000) g")
        .unwrap();
    cluster
        .query("UPDATE filler SET note = note || 'x' WHERE id % 7 = 0")
        .unwrap();
    cluster
        .query("INSERT INTO rec VALUES (400, 'last')")
        .unwrap();
    tidemark::demo::switch_and_wait_for_archive(cluster).unwrap();
    cluster
        .query("INSERT INTO rec VALUES (500, 'after the last switch')")
        .unwrap();
    // With archiving on, a shutdown switches to a new segment (archived before the server
    // exits) and writes its checkpoint there.
    cluster.stop().unwrap();
}

/// What pg_waldump says about the records starting in one segment, compared with the walker.
fn compare_with_waldump(
    file: &str,
    walked: &WalkedSegment,
    count: u64,
    dumped: &[&Dumped],
    next_first_page: Option<&[u8]>,
) {
    let summary = &walked.summary;
    assert_eq!(count, dumped.len() as u64, "{file}: records starting in it");
    assert_eq!(
        summary.first_record,
        dumped.first().map(|d| d.lsn),
        "{file}: first record"
    );
    assert_eq!(
        summary.last_record,
        dumped.last().map(|d| d.lsn),
        "{file}: last record"
    );

    let expected_ends: Vec<(Lsn, XactEndKind, u32, &str)> = dumped
        .iter()
        .filter_map(|d| dumped_xact_end(d).map(|(kind, xid, rest)| (d.lsn, kind, xid, rest)))
        .collect();
    assert_eq!(
        walked.xact_ends.len(),
        expected_ends.len(),
        "{file}: transaction ends {:?}",
        walked.xact_ends
    );
    for (end, (lsn, kind, xid, rest)) in walked.xact_ends.iter().zip(&expected_ends) {
        let XactEnd {
            lsn: got_lsn,
            kind: got_kind,
            xid: got_xid,
            time,
        } = end;
        assert_eq!((got_lsn, got_kind, got_xid), (lsn, kind, xid), "{file}");
        let printed = waldump_time(*time);
        assert!(
            rest.starts_with(&printed),
            "{file}: {kind:?} at {lsn}: pg_waldump printed {rest:?}, the walker read {printed}"
        );
    }
    // The summary's ranges are those of the transaction ends.
    let xids = walked.xact_ends.iter().map(|e| e.xid);
    assert_eq!(summary.min_xid, xids.clone().min(), "{file}");
    assert_eq!(summary.max_xid, xids.max(), "{file}");
    let times = walked.xact_ends.iter().map(|e| e.time);
    assert_eq!(summary.min_time, times.clone().min(), "{file}");
    assert_eq!(summary.max_time, times.max(), "{file}");
    assert_eq!(
        summary.xact_count as usize,
        walked.xact_ends.len(),
        "{file}"
    );
    assert_eq!(
        summary.last_xact.as_ref(),
        walked.xact_ends.last(),
        "{file}"
    );

    let xlog = |prefix: &str| -> Vec<&Dumped> {
        dumped
            .iter()
            .copied()
            .filter(|d| d.rmgr == "XLOG" && d.desc.starts_with(prefix))
            .collect()
    };
    let restore_points: Vec<(Lsn, String)> = xlog("RESTORE_POINT ")
        .iter()
        .map(|d| (d.lsn, d.desc["RESTORE_POINT ".len()..].trim().to_owned()))
        .collect();
    let walked: Vec<(Lsn, String)> = summary
        .restore_points
        .iter()
        .map(|rp| (rp.lsn, rp.name.clone()))
        .collect();
    assert_eq!(walked, restore_points, "{file}: restore points");

    // "CHECKPOINT_ONLINE redo 0/1000028; tli 1; prev tli 1; ..."
    let checkpoints: Vec<(Lsn, Lsn, bool, u32)> = xlog("CHECKPOINT_")
        .iter()
        .map(|d| {
            (
                d.lsn,
                field(&d.desc, "redo ", ";").parse().unwrap(),
                d.desc.starts_with("CHECKPOINT_ONLINE"),
                field(&d.desc, "; tli ", ";").parse().unwrap(),
            )
        })
        .collect();
    let walked: Vec<(Lsn, Lsn, bool, u32)> = summary
        .checkpoints
        .iter()
        .map(|c| (c.lsn, c.redo, c.online, c.timeline))
        .collect();
    assert_eq!(walked, checkpoints, "{file}: checkpoints");

    // "BACKUP_END 0/3000028"
    let backup_ends: Vec<(Lsn, Lsn)> = xlog("BACKUP_END ")
        .iter()
        .map(|d| (d.lsn, d.desc["BACKUP_END ".len()..].trim().parse().unwrap()))
        .collect();
    let walked: Vec<(Lsn, Lsn)> = summary
        .backup_ends
        .iter()
        .map(|b| (b.lsn, b.backup_start))
        .collect();
    assert_eq!(walked, backup_ends, "{file}: backup ends");

    let switch = xlog("SWITCH");
    assert_eq!(summary.ends_with_switch, !switch.is_empty(), "{file}");
    if let Some(switch) = switch.first() {
        assert_eq!(summary.last_record, Some(switch.lsn), "{file}");
        assert_eq!(summary.end_of_wal, Lsn(switch.lsn.0 + 24), "{file}");
    }
    // The walker says the last record spills over exactly when the next segment starts with
    // the rest of a record.
    if let Some(page) = next_first_page {
        let header = PageHeader::decode(page).unwrap();
        assert_eq!(
            summary.continues_into_next,
            header.info & XLP_FIRST_IS_CONTRECORD != 0,
            "{file}: next segment's first page has xlp_info {:#06X}",
            header.info
        );
    }
}

#[test]
fn every_archived_segment_agrees_with_pg_waldump() {
    let mut wal = WalLab::new("tm-rec-");
    run_workload(&mut wal);
    let files = wal.segments();
    assert!(files.len() >= 8, "only {} segments archived", files.len());
    let segments: Vec<(String, SegmentName, Vec<u8>)> = files
        .iter()
        .map(|f| {
            (
                f.clone(),
                segment_name(f),
                fs::read(wal.raw.join(f)).unwrap(),
            )
        })
        .collect();

    let first = files.first().unwrap();
    let last = files.last().unwrap();
    let (stdout, stderr) = pg_waldump(
        &wal.lab.pg,
        wal.lab.tmp.path(),
        &[
            "--path".as_ref(),
            wal.raw.as_os_str(),
            first.as_ref(),
            last.as_ref(),
        ],
    );
    let dumped = parse_waldump(&stdout);
    assert!(
        dumped.len() > 1000,
        "pg_waldump printed {} records; stderr: {stderr}",
        dumped.len()
    );

    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, (file, name, bytes)) in segments.iter().enumerate() {
        let start = name.start_lsn(size(MIB)).unwrap();
        let end = Lsn(start.0 + MIB);
        let (summary, count) = walk(*name, MIB, bytes, true, CHUNK_ALIGNMENT)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            walk(*name, MIB, bytes, true, bytes.len()).unwrap(),
            (summary.clone(), count),
            "{file}: walked whole"
        );
        let in_segment: Vec<&Dumped> = dumped
            .iter()
            .filter(|d| start <= d.lsn && d.lsn < end)
            .collect();
        let next_first_page = segments.get(index + 1).map(|(_, _, b)| &b[..PAGE]);
        compare_with_waldump(file, &summary, count, &in_segment, next_first_page);

        *totals.entry("records").or_default() += count as usize;
        *totals.entry("transaction ends").or_default() += summary.xact_ends.len();
        for end in &summary.xact_ends {
            *totals.entry(kind_name(end.kind)).or_default() += 1;
        }
        *totals.entry("restore points").or_default() += summary.summary.restore_points.len();
        *totals.entry("checkpoints").or_default() += summary.summary.checkpoints.len();
        *totals.entry("backup ends").or_default() += summary.summary.backup_ends.len();
        *totals.entry("switches").or_default() += usize::from(summary.summary.ends_with_switch);
        *totals.entry("spilling").or_default() += usize::from(summary.summary.continues_into_next);
        *totals.entry("starting mid-record").or_default() += usize::from(
            summary
                .summary
                .first_record
                .is_none_or(|first| first.0 > start.0 + 40),
        );
        if summary
            .summary
            .restore_points
            .iter()
            .any(|rp| rp.name == "rp_one")
        {
            *totals.entry("rp_one").or_default() += 1;
        }
    }
    println!("walked {} segments: {totals:?}", segments.len());
    assert_eq!(
        totals["records"],
        dumped.len(),
        "every record pg_waldump printed"
    );
    for (what, at_least) in [
        ("COMMIT", 5),
        ("ABORT", 1),
        ("COMMIT_PREPARED", 1),
        ("ABORT_PREPARED", 1),
        ("rp_one", 1),
        ("checkpoints", 2),
        ("backup ends", 1),
        ("switches", 2),
        ("spilling", 2),
        ("starting mid-record", 2),
    ] {
        let found = totals.get(what).copied().unwrap_or(0);
        assert!(
            found >= at_least,
            "the workload should leave at least {at_least} {what} in the archive: {totals:?}"
        );
    }

    // The segment after the last archived one holds the shutdown checkpoint, in `pg_wal` only.
    let (_, last_name, _) = segments.last().unwrap();
    let current = SegmentName::from_segment_number(
        last_name.timeline,
        last_name.segment_number(size(MIB)).unwrap() + 1,
        size(MIB),
    );
    the_live_segment_ends_where_pg_waldump_says(&wal, &current.to_string());
}

fn kind_name(kind: XactEndKind) -> &'static str {
    match kind {
        XactEndKind::Commit => "COMMIT",
        XactEndKind::Abort => "ABORT",
        XactEndKind::CommitPrepared => "COMMIT_PREPARED",
        XactEndKind::AbortPrepared => "ABORT_PREPARED",
    }
}

/// The segment still in `pg_wal` was never completed (a recycled file, its first page rewritten):
/// as a `.partial` its WAL ends where pg_waldump stops ("invalid record length at X: wanted 24,
/// got 0", X the next record's aligned start); as a complete segment it is a defect.
fn the_live_segment_ends_where_pg_waldump_says(wal: &WalLab, current: &str) {
    let path = wal.cluster.data_dir().join("pg_wal").join(current);
    let bytes = fs::read(&path).unwrap_or_else(|e| {
        let listing: Vec<_> = fs::read_dir(path.parent().unwrap())
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        panic!("read {}: {e}; pg_wal holds {listing:?}", path.display())
    });
    let name = segment_name(current);
    let (summary, count) = walk(name, MIB, &bytes, false, CHUNK_ALIGNMENT).unwrap();
    let (stdout, stderr) = pg_waldump(
        &wal.lab.pg,
        wal.lab.tmp.path(),
        &[
            "--path".as_ref(),
            path.parent().unwrap().as_os_str(),
            current.as_ref(),
        ],
    );
    let dumped = parse_waldump(&stdout);
    assert_eq!(count, dumped.len() as u64, "{current}: {stderr}");
    assert_eq!(summary.summary.last_record, dumped.last().map(|d| d.lsn));
    assert!(!summary.summary.ends_with_switch && !summary.summary.continues_into_next);
    let stop: Lsn = field(&stderr, "invalid record length at ", ":")
        .parse()
        .unwrap();
    assert_eq!((summary.summary.end_of_wal.0 + 7) & !7, stop.0, "{stderr}");
    // The shutdown checkpoint is its last record.
    let last = summary
        .summary
        .checkpoints
        .last()
        .expect("a shutdown checkpoint");
    assert!(!last.online);
    assert_eq!(Some(last.lsn), summary.summary.last_record);

    match walk(name, MIB, &bytes, true, CHUNK_ALIGNMENT) {
        Err(WalRecordDefect::EndsEarly { end, reason }) => {
            assert_eq!(end, summary.summary.end_of_wal);
            assert!(reason.contains(&stop.to_string()), "{reason}");
        }
        other => panic!("{current} as a complete segment: {other:?}"),
    }
}

#[test]
fn a_byte_flipped_inside_a_real_record_is_a_defect_naming_that_record() {
    let wal = WalLab::new("tm-rec-flip-");
    let files = wal.segments();
    let (stdout, stderr) = pg_waldump(
        &wal.lab.pg,
        wal.lab.tmp.path(),
        &[
            "--path".as_ref(),
            wal.raw.as_os_str(),
            files.first().unwrap().as_ref(),
            files.last().unwrap().as_ref(),
        ],
    );
    let all = parse_waldump(&stdout);
    let starts = |file: &String| segment_name(file).start_lsn(size(MIB)).unwrap();
    let in_file = |file: &String| -> Vec<Dumped> {
        let start = starts(file);
        all.iter()
            .filter(|d| start <= d.lsn && d.lsn.0 < start.0 + MIB)
            .cloned()
            .collect()
    };
    // The segment holding the most records: one the lab's inserts filled.
    let file = files.iter().max_by_key(|file| in_file(file).len()).unwrap();
    let name = segment_name(file);
    let bytes = fs::read(wal.raw.join(file)).unwrap();
    let start = starts(file);
    let dumped = in_file(file);
    assert!(dumped.len() > 1000, "{file}: {stderr}");
    let (clean, _) = walk(name, MIB, &bytes, true, CHUNK_ALIGNMENT).unwrap();
    assert_eq!(clean.summary.first_record, Some(dumped[0].lsn));

    // A record in the middle of the segment that lies within one page.
    let (index, victim) = dumped
        .iter()
        .enumerate()
        .find(|(i, d)| {
            let offset = (d.lsn.0 - start.0) as usize;
            *i >= dumped.len() / 2 && offset % PAGE + d.total as usize <= PAGE && d.total > 30
        })
        .unwrap_or_else(|| panic!("{file}: no record in the middle within one page"));
    let previous = &dumped[index - 1];
    let mut flipped = bytes.clone();
    let at = (victim.lsn.0 - start.0 + victim.total - 1) as usize;
    flipped[at] ^= 0x20;

    match walk(name, MIB, &flipped, true, CHUNK_ALIGNMENT) {
        Err(defect @ WalRecordDefect::CrcMismatch { lsn, .. }) => {
            assert_eq!(lsn, victim.lsn, "{defect}");
            assert!(defect.to_string().contains(&victim.lsn.to_string()));
            println!("flipped byte at {}: {defect}", Lsn(start.0 + at as u64));
        }
        other => panic!(
            "{file} with a byte flipped in the record at {}: {other:?}",
            victim.lsn
        ),
    }
    // As a .partial the flipped record simply ends the WAL after the one before it.
    let (partial, count) = walk(name, MIB, &flipped, false, CHUNK_ALIGNMENT).unwrap();
    assert_eq!(partial.summary.last_record, Some(previous.lsn));
    assert_eq!(count, index as u64);
    assert!(previous.lsn < partial.summary.end_of_wal && partial.summary.end_of_wal <= victim.lsn);
    assert!(!partial.summary.ends_with_switch && !partial.summary.continues_into_next);
}

/// Measures the walker on real 16 MiB segments from pgbench, in whatever profile the test is
/// built (run it with `cargo test --release --test wal_records_real -- --ignored --nocapture`).
/// Prints the figure; never asserts a speed.
#[test]
#[ignore = "a measurement: run explicitly, in release mode"]
fn measure_decoding_16_mib_segments() {
    let pg = PgBinaries::locate().expect("PostgreSQL 15 server programs are required");
    let tmp = SharedTempDir::new("tm-rec16-").unwrap();
    let raw = tmp.subdir("raw").unwrap();
    let mut big = ThrowawayCluster::init(&pg, tmp.path(), "big", 16).unwrap();
    let archive_command = format!("cp %p {}/%f", raw.display());
    big.configure(&[
        ("archive_mode", "on"),
        ("archive_command", &archive_command),
        // Only the WAL matters here, not its durability.
        ("synchronous_commit", "off"),
        ("fsync", "off"),
    ])
    .unwrap();
    big.start().unwrap();
    let port = big.port().to_string();
    let pgbench = |args: &[&str]| {
        let mut all: Vec<&OsStr> = vec![
            "-h".as_ref(),
            big.socket_dir().as_os_str(),
            "-p".as_ref(),
            port.as_ref(),
            "-U".as_ref(),
            "postgres".as_ref(),
        ];
        all.extend(args.iter().map(OsStr::new));
        all.push("postgres".as_ref());
        tidemark::demo::cluster::run_as_owner(&pg.path("pgbench"), &all, tmp.path()).unwrap();
    };
    pgbench(&["-i", "-s", "10", "-q"]);
    pgbench(&["-c", "8", "-j", "2", "-t", "6000"]);
    tidemark::demo::switch_and_wait_for_archive(&big).unwrap();
    big.stop().unwrap();

    let mut files: Vec<String> = fs::read_dir(&raw)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for file in &files {
        let bytes = fs::read(raw.join(file)).unwrap();
        let name = segment_name(file);
        let mut best = f64::MAX;
        let mut walked = None;
        for _ in 0..5 {
            let started = Instant::now();
            let result = walk(name, 16 * MIB, &bytes, true, CHUNK_ALIGNMENT).unwrap();
            best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            walked = Some(result);
        }
        let (summary, count) = walked.unwrap();
        rows.push((best, count, summary.summary.ends_with_switch));
        println!(
            "{file}: {count} records, {} transaction ends, switch {}: best of 5 {best:.2} ms",
            summary.xact_ends.len(),
            summary.summary.ends_with_switch
        );
    }
    // Segments of pgbench transactions filled to the end are the figure that matters: many small
    // records (the initial load's segments hold fewer, larger ones).
    let full: Vec<f64> = rows
        .iter()
        .filter(|(_, count, switch)| *count > 50_000 && !switch)
        .map(|(ms, _, _)| *ms)
        .collect();
    if !full.is_empty() {
        println!(
            "decoding a full 16 MiB segment: {:.2} ms on average over {} segments ({})",
            full.iter().sum::<f64>() / full.len() as f64,
            full.len(),
            if cfg!(debug_assertions) {
                "debug build"
            } else {
                "release build"
            }
        );
    }
}
