//! Table tests of `tidemark::pg` on REAL WAL written by a real PostgreSQL 15 server started by the
//! test (never hand-made bytes): every archived segment's long header agrees with
//! `pg_controldata` and its name, and the segment checker accepts it; real segments damaged in
//! real ways (renamed, truncated, from another cluster, a stale page, data after the zero tail)
//! are refused with the exact defect; `pg_control` decodes as `pg_controldata` reads it; a real
//! timeline switch gives a history file that parses and a first new-timeline segment, with the
//! parent's pages, that passes; and a 16 MiB-segment cluster passes only against its own size.
//!
//! A missing PostgreSQL fails these tests: nothing is skipped.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use common::{PATIENCE, WalLab};
use tidemark::demo::cluster::{
    PgBinaries, SharedTempDir, ThrowawayCluster, give_to_owner, owner_command,
};
use tidemark::pg::control::ControlFileIdentity;
use tidemark::pg::history::TimelineHistory;
use tidemark::pg::page::{PageHeader, SHORT_HEADER_LEN, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER};
use tidemark::pg::segment_check::{
    CHUNK_ALIGNMENT, ExpectedCluster, SegmentChecker, SegmentDefect, SegmentKind,
};
use tidemark::pg::{Lsn, PgMajor, SegmentName, SegmentSize, TimelineId, WalFileName};

const MIB: u32 = 1 << 20;
/// PostgreSQL's default (and the lab's) WAL page size, `XLOG_BLCKSZ`.
const PAGE: usize = 8192;
/// Size of a long page header, after which a segment's first record may start.
const LONG_HEADER: u64 = 40;

fn pg15() -> PgMajor {
    PgMajor::new(15).unwrap()
}

fn size(bytes: u32) -> SegmentSize {
    SegmentSize::new(u64::from(bytes)).unwrap()
}

fn expected_cluster(system_id: u64, segment_bytes: u32) -> ExpectedCluster {
    ExpectedCluster {
        system_id,
        version: pg15(),
        segment_size: size(segment_bytes),
    }
}

/// What a PostgreSQL program run as the cluster owner ended with (stdout, stderr, success).
struct PgRun {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs PostgreSQL program `program` as the cluster owner in the C locale, so its output is the
/// English text parsed here whatever the machine's locale.
fn pg_run(pg: &PgBinaries, cwd: &Path, program: &str, args: &[&OsStr]) -> PgRun {
    let output = owner_command(&pg.path(program), cwd)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    PgRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `pg_controldata` of `data_dir`, as a map from its labels to their values.
fn controldata(pg: &PgBinaries, cwd: &Path, data_dir: &Path) -> BTreeMap<String, String> {
    let run = pg_run(
        pg,
        cwd,
        "pg_controldata",
        &["-D".as_ref(), data_dir.as_os_str()],
    );
    assert!(run.success, "pg_controldata failed: {}", run.stderr);
    run.stdout
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(label, value)| (label.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

fn controldata_field<T: std::str::FromStr>(fields: &BTreeMap<String, String>, label: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let text = fields
        .get(label)
        .unwrap_or_else(|| panic!("pg_controldata printed no {label:?}: {fields:#?}"));
    text.parse()
        .unwrap_or_else(|e| panic!("pg_controldata's {label:?} is {text:?}: {e:?}"))
}

/// The LSNs of the records `pg_waldump` printed ("lsn: 0/01000028, prev ...").
fn waldump_lsns(output: &str) -> Vec<Lsn> {
    output
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(", lsn: ")? + ", lsn: ".len()..];
            let text = &rest[..rest.find(',')?];
            Some(
                text.parse()
                    .unwrap_or_else(|e| panic!("pg_waldump line {line:?}: {e}")),
            )
        })
        .collect()
}

fn segment_name(file_name: &str) -> SegmentName {
    match WalFileName::parse(file_name) {
        Ok(WalFileName::Segment(name)) => name,
        other => panic!("{file_name} should parse as a segment, got {other:?}"),
    }
}

fn start_of(name: SegmentName, segment_bytes: u32) -> Lsn {
    name.start_lsn(size(segment_bytes)).unwrap()
}

/// Checks `bytes` as the archive does: length first, then chunks of `chunk` bytes, then the end.
fn check(
    expected: ExpectedCluster,
    name: SegmentName,
    kind: SegmentKind,
    bytes: &[u8],
    chunk: usize,
) -> Result<(), SegmentDefect> {
    let checker = SegmentChecker::new(expected, name, kind)?;
    checker.check_length(bytes.len() as u64)?;
    feed_all(checker, bytes, chunk)
}

/// Feeds `bytes` without checking the length first, so the content is what is judged.
fn feed_all(mut checker: SegmentChecker, bytes: &[u8], chunk: usize) -> Result<(), SegmentDefect> {
    for piece in bytes.chunks(chunk) {
        checker.feed(piece)?;
    }
    checker.finish()
}

fn check_complete(
    expected: ExpectedCluster,
    name: SegmentName,
    bytes: &[u8],
) -> Result<(), SegmentDefect> {
    check(
        expected,
        name,
        SegmentKind::Complete,
        bytes,
        CHUNK_ALIGNMENT,
    )
}

/// Index of the first page after the first whose header is all zeros: where the zero tail that
/// follows an `XLOG_SWITCH` starts. `None` for a segment filled to its end.
fn zero_tail_page(bytes: &[u8]) -> Option<usize> {
    (1..bytes.len() / PAGE).find(|&page| {
        bytes[page * PAGE..page * PAGE + SHORT_HEADER_LEN]
            .iter()
            .all(|&b| b == 0)
    })
}

/// The decoded header of every page before the zero tail.
fn page_headers(bytes: &[u8]) -> Vec<PageHeader> {
    let end = zero_tail_page(bytes).unwrap_or(bytes.len() / PAGE);
    (0..end)
        .map(|page| PageHeader::decode(&bytes[page * PAGE..(page + 1) * PAGE]).unwrap())
        .collect()
}

/// The archived segments of `lab` with their names and bytes, asserting they are consecutive
/// (archiving was on from the first start, so none is missing).
fn archived_segments(wal: &WalLab) -> Vec<(SegmentName, Vec<u8>)> {
    let segments: Vec<(SegmentName, Vec<u8>)> = wal
        .segments()
        .iter()
        .map(|file| (segment_name(file), fs::read(wal.raw.join(file)).unwrap()))
        .collect();
    assert!(
        segments.len() >= 4,
        "the lab archives at least four segments: {:?}",
        wal.segments()
    );
    for pair in segments.windows(2) {
        let (a, b) = (pair[0].0, pair[1].0);
        assert_eq!(
            b.segment_number(size(MIB)).unwrap(),
            a.segment_number(size(MIB)).unwrap() + 1,
            "{a} and {b} are not consecutive"
        );
    }
    segments
}

#[test]
fn every_archived_segment_agrees_with_pg_controldata_and_passes_the_checker() {
    let wal = WalLab::new("tm-fmt-");
    let pg = &wal.lab.pg;
    let cwd = wal.lab.tmp.path();
    let control = controldata(pg, cwd, wal.cluster.data_dir());
    let controldata_id: u64 = controldata_field(&control, "Database system identifier");
    assert_eq!(controldata_id, wal.system_id);
    assert_eq!(
        controldata_field::<u32>(&control, "Bytes per WAL segment"),
        MIB
    );
    assert_eq!(
        controldata_field::<u32>(&control, "WAL block size"),
        PAGE as u32
    );
    let expected = expected_cluster(controldata_id, MIB);

    let segments = archived_segments(&wal);
    let mut switched = 0;
    for (name, bytes) in &segments {
        let start = start_of(*name, MIB);
        assert_eq!(bytes.len(), MIB as usize, "{name}");
        assert_eq!(name.timeline, TimelineId(1), "{name}");
        let header = PageHeader::decode(bytes).unwrap();
        assert_eq!(header.magic, pg15().page_magic(), "{name}");
        assert_eq!(header.magic, 0xD110, "{name}");
        assert_ne!(header.info & XLP_LONG_HEADER, 0, "{name}: {header:?}");
        assert_eq!(header.timeline, TimelineId(1), "{name}");
        assert_eq!(header.page_address, start, "{name}");
        let long = header
            .long
            .expect("a segment's first page has a long header");
        assert_eq!(long.system_id, controldata_id, "{name}");
        assert_eq!(long.segment_size, MIB, "{name}");
        assert_eq!(long.page_size, PAGE as u32, "{name}");

        // Every page before the zero tail is on timeline 1 at its own address.
        let headers = page_headers(bytes);
        for (index, page) in headers.iter().enumerate() {
            assert_eq!(page.magic, 0xD110, "{name} page {index}");
            assert_eq!(page.timeline, TimelineId(1), "{name} page {index}");
            assert_eq!(
                page.page_address,
                Lsn(start.0 + (index * PAGE) as u64),
                "{name} page {index}"
            );
            assert_eq!(page.long.is_some(), index == 0, "{name} page {index}");
        }
        if let Some(tail) = zero_tail_page(bytes) {
            switched += 1;
            assert!(
                bytes[tail * PAGE..].iter().all(|&b| b == 0),
                "{name}: after the XLOG_SWITCH every byte is zero"
            );
        }

        for chunk in [CHUNK_ALIGNMENT, 4 * CHUNK_ALIGNMENT, bytes.len()] {
            assert_eq!(
                check(expected, *name, SegmentKind::Complete, bytes, chunk),
                Ok(()),
                "{name} (chunks of {chunk})"
            );
            assert_eq!(
                check(expected, *name, SegmentKind::Partial, bytes, chunk),
                Ok(()),
                "{name} as .partial (chunks of {chunk})"
            );
        }

        // pg_waldump finds the segment's first record inside the segment; when the segment does
        // not start inside a record, right after the long header.
        let path = wal.raw.join(name.to_string());
        let run = pg_run(
            pg,
            cwd,
            "pg_waldump",
            &["-n".as_ref(), "1".as_ref(), path.as_os_str()],
        );
        assert!(run.success, "pg_waldump {name}: {}", run.stderr);
        let lsns = waldump_lsns(&run.stdout);
        assert_eq!(lsns.len(), 1, "pg_waldump -n 1 {name}: {}", run.stdout);
        let first = lsns[0];
        assert!(
            start <= first && first.0 < start.0 + u64::from(MIB),
            "{name} holds {start} to +1 MiB, pg_waldump's first record is at {first}"
        );
        let continued = u64::from(header.remaining_length).next_multiple_of(8);
        if header.info & XLP_FIRST_IS_CONTRECORD == 0 {
            assert_eq!(first, Lsn(start.0 + LONG_HEADER), "{name}");
        } else if LONG_HEADER + continued < PAGE as u64 {
            assert_eq!(first, Lsn(start.0 + LONG_HEADER + continued), "{name}");
        }
    }
    assert!(
        switched >= 3,
        "the lab's pg_switch_wal() calls end at least three segments early"
    );
}

#[test]
fn real_segments_damaged_in_real_ways_are_refused_with_the_exact_defect() {
    let wal = WalLab::new("tm-fmt-");
    let expected = expected_cluster(wal.system_id, MIB);
    let segments = archived_segments(&wal);
    for (name, bytes) in &segments {
        assert_eq!(check_complete(expected, *name, bytes), Ok(()), "{name}");
    }
    let page_lsn = |name: SegmentName, offset: usize| Lsn(start_of(name, MIB).0 + offset as u64);

    // A second, separately initdb'd cluster: its first segment, straight from its pg_wal.
    let other = ThrowawayCluster::init(&wal.lab.pg, wal.lab.tmp.path(), "other", 1).unwrap();
    let other_control = controldata(&wal.lab.pg, wal.lab.tmp.path(), other.data_dir());
    let other_id: u64 = controldata_field(&other_control, "Database system identifier");
    assert_ne!(
        other_id, wal.system_id,
        "two initdb runs gave one system id"
    );
    // The segment in use, not one of the recycled ones pg_wal also holds (whose first page still
    // names the older segment they were).
    let other_file: String = controldata_field(&other_control, "Latest checkpoint's REDO WAL file");
    let other_file = other_file.as_str();
    let other_bytes = fs::read(other.data_dir().join("pg_wal").join(other_file)).unwrap();
    assert_eq!(
        check(
            expected_cluster(other_id, MIB),
            segment_name(other_file),
            SegmentKind::Partial,
            &other_bytes,
            CHUNK_ALIGNMENT
        ),
        Ok(()),
        "the other cluster's segment is sound for the other cluster"
    );

    // pg_wal also holds segments recycled for future use, their pages still those of the older
    // segment they were: archiving one (a script copying pg_wal/*) is refused on its first page.
    let redo_segment = segment_name(other_file);
    let recycled: Vec<(SegmentName, Lsn)> = fs::read_dir(other.data_dir().join("pg_wal"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = match WalFileName::parse(path.file_name()?.to_str()?) {
                Ok(WalFileName::Segment(name)) if name > redo_segment => name,
                _ => return None,
            };
            let bytes = fs::read(&path).unwrap();
            let found = PageHeader::decode(&bytes)?.page_address;
            (found != start_of(name, MIB)).then_some((name, found))
        })
        .collect();
    assert!(
        !recycled.is_empty(),
        "initdb with 1 MiB segments leaves recycled segments in pg_wal"
    );
    for (name, found) in recycled {
        assert!(found < start_of(name, MIB) && found.0 % u64::from(MIB) == 0);
        let bytes = fs::read(other.data_dir().join("pg_wal").join(name.to_string())).unwrap();
        for kind in [SegmentKind::Complete, SegmentKind::Partial] {
            assert_eq!(
                check(
                    expected_cluster(other_id, MIB),
                    name,
                    kind,
                    &bytes,
                    CHUNK_ALIGNMENT
                ),
                Err(SegmentDefect::WrongAddress {
                    lsn: start_of(name, MIB),
                    found,
                    name
                }),
                "recycled {name} as {kind:?}"
            );
        }
    }

    // Two consecutive segments, both with WAL on several pages, for the stale page.
    let (a, b, page) = segments
        .windows(2)
        .find_map(|pair| {
            let pages = |bytes: &[u8]| zero_tail_page(bytes).unwrap_or(bytes.len() / PAGE);
            let common = pages(&pair[0].1).min(pages(&pair[1].1));
            (common >= 4).then_some((&pair[0], &pair[1], common / 2))
        })
        .expect("two consecutive segments with at least four pages of WAL");
    let mut stale = b.1.clone();
    stale[page * PAGE..(page + 1) * PAGE].copy_from_slice(&a.1[page * PAGE..(page + 1) * PAGE]);

    // A segment ended by pg_switch_wal(): WAL, then zeros to the end.
    let (switched, tail) = segments
        .iter()
        .find_map(|s| zero_tail_page(&s.1).map(|tail| (s, tail)))
        .expect("a segment ended by pg_switch_wal() with a zero tail");
    assert!(switched.1[tail * PAGE..].iter().all(|&b| b == 0));
    let mut last_byte_set = switched.1.clone();
    *last_byte_set.last_mut().unwrap() = 0x01;
    let mut middle_of_tail_set = switched.1.clone();
    middle_of_tail_set[tail * PAGE + PAGE / 2] = 0x5A;

    let first = &segments[0];
    let renamed_to = b.0;
    let mut truncated_in_a_page = first.1.clone();
    truncated_in_a_page.truncate(MIB as usize - 100);

    let cases: Vec<(&str, SegmentName, Vec<u8>, SegmentDefect)> = vec![
        (
            "a segment copied under the next segment's name",
            renamed_to,
            a.1.clone(),
            SegmentDefect::WrongAddress {
                lsn: start_of(renamed_to, MIB),
                found: start_of(a.0, MIB),
                name: renamed_to,
            },
        ),
        (
            "truncated to half",
            first.0,
            first.1[..MIB as usize / 2].to_vec(),
            SegmentDefect::WrongSize {
                actual: u64::from(MIB / 2),
                expected: u64::from(MIB),
            },
        ),
        (
            "truncated inside a page",
            first.0,
            truncated_in_a_page,
            SegmentDefect::WrongSize {
                actual: u64::from(MIB) - 100,
                expected: u64::from(MIB),
            },
        ),
        (
            "a segment of another cluster",
            segment_name(other_file),
            other_bytes.clone(),
            SegmentDefect::OtherCluster {
                found: other_id,
                expected: wal.system_id,
            },
        ),
        (
            "a page of the previous segment in the middle",
            b.0,
            stale,
            SegmentDefect::WrongAddress {
                lsn: page_lsn(b.0, page * PAGE),
                found: page_lsn(a.0, page * PAGE),
                name: b.0,
            },
        ),
        (
            "a non-zero last byte after the zero tail",
            switched.0,
            last_byte_set,
            SegmentDefect::DataAfterEnd {
                lsn: page_lsn(switched.0, MIB as usize - 1),
                end: page_lsn(switched.0, tail * PAGE),
            },
        ),
        (
            "a non-zero byte inside the first zero page",
            switched.0,
            middle_of_tail_set,
            SegmentDefect::DataAfterEnd {
                lsn: page_lsn(switched.0, tail * PAGE + PAGE / 2),
                end: page_lsn(switched.0, tail * PAGE),
            },
        ),
    ];
    for (what, name, bytes, defect) in cases {
        for chunk in [CHUNK_ALIGNMENT, bytes.len()] {
            assert_eq!(
                check(expected, name, SegmentKind::Complete, &bytes, chunk)
                    .err()
                    .as_ref(),
                Some(&defect),
                "{what} (chunks of {chunk})"
            );
        }
    }

    // The length alone is enough to refuse a truncated segment, and a checker fed the
    // truncated content still refuses it at the end.
    let checker = SegmentChecker::new(expected, first.0, SegmentKind::Complete).unwrap();
    assert_eq!(
        feed_all(checker, &first.1[..MIB as usize / 2], CHUNK_ALIGNMENT),
        Err(SegmentDefect::WrongSize {
            actual: u64::from(MIB / 2),
            expected: u64::from(MIB),
        })
    );
    // A renamed segment is refused as a .partial too: its first page is already wrong.
    assert_eq!(
        check(
            expected,
            renamed_to,
            SegmentKind::Partial,
            &a.1,
            CHUNK_ALIGNMENT
        ),
        Err(SegmentDefect::WrongAddress {
            lsn: start_of(renamed_to, MIB),
            found: start_of(a.0, MIB),
            name: renamed_to,
        })
    );
    drop(other);
}

#[test]
fn pg_control_decodes_as_pg_controldata_reads_it() {
    let wal = WalLab::new("tm-fmt-");
    let data_dir = wal.cluster.data_dir();
    let control = controldata(&wal.lab.pg, wal.lab.tmp.path(), data_dir);
    let controldata_id: u64 = controldata_field(&control, "Database system identifier");
    let controldata_version: u32 = controldata_field(&control, "pg_control version number");
    assert_eq!(controldata_version, 1300);

    let bytes = fs::read(data_dir.join("global/pg_control")).unwrap();
    let identity = ControlFileIdentity::decode(&bytes).unwrap();
    assert_eq!(identity.system_id, controldata_id);
    assert_eq!(identity.system_id, wal.system_id);
    assert_eq!(identity.pg_control_version, controldata_version);

    let datadir = tidemark::datadir::read_identity(data_dir).unwrap();
    assert_eq!(datadir.system_id, controldata_id);
    assert_eq!(datadir.version, pg15());
    assert_eq!(datadir.version.number(), 15);
    assert_eq!(datadir.segment_size, size(MIB));
}

#[test]
fn a_real_timeline_switch_gives_a_history_file_and_a_first_segment_that_pass() {
    // Kept whole, not destructured: WalLab drops its cluster before its directory, even when an
    // assertion fails.
    let mut wal = WalLab::new("tm-fmt-");
    let expected = expected_cluster(wal.system_id, MIB);
    let raw = wal.raw.clone();
    let cluster = &mut wal.cluster;
    cluster.start().unwrap();
    let base = wal.lab.tmp.path().join("base");
    cluster.base_backup(&base).unwrap();

    // After a switch, a small record then one of 1.5 MiB: the big one starts near the beginning
    // of segment N and ends inside N+1. N is complete and archived; N+1 never is, so recovery
    // from the archive ends inside N, after the small record, and timeline 2 starts there. (Were
    // the switch record the last complete one, timeline 2 would start at the segment boundary.)
    cluster.query("SELECT pg_switch_wal()").unwrap();
    let before: Lsn = cluster
        .query("SELECT pg_current_wal_insert_lsn()")
        .unwrap()
        .parse()
        .unwrap();
    let small_end: Lsn = cluster
        .query("SELECT pg_logical_emit_message(false, 'tidemark', 'small')")
        .unwrap()
        .parse()
        .unwrap();
    let after: Lsn = cluster
        .query("SELECT pg_logical_emit_message(false, 'tidemark', repeat('x', 1572864))")
        .unwrap()
        .parse()
        .unwrap();
    let n = before.0 / u64::from(MIB);
    assert_eq!(
        after.0 / u64::from(MIB),
        n + 1,
        "the message from {before} to {after} should end in the segment after its first"
    );
    let last_tl1 = SegmentName::from_segment_number(TimelineId(1), n, size(MIB));
    let next_tl1 = SegmentName::from_segment_number(TimelineId(1), n + 1, size(MIB));
    cluster
        .wait_for(
            &format!(
                "SELECT coalesce(last_archived_wal >= '{last_tl1}', false) FROM pg_stat_archiver"
            ),
            "t",
            PATIENCE,
        )
        .unwrap();
    // An immediate stop: a clean one would switch and archive N+1 too. (The cluster still thinks
    // it runs, so its drop tries an immediate stop again, which fails quietly.)
    let stop = pg_run(
        &wal.lab.pg,
        wal.lab.tmp.path(),
        "pg_ctl",
        &[
            "-D".as_ref(),
            wal.cluster.data_dir().as_os_str(),
            "-w".as_ref(),
            "-m".as_ref(),
            "immediate".as_ref(),
            "stop".as_ref(),
        ],
    );
    assert!(stop.success, "pg_ctl stop -m immediate: {}", stop.stderr);
    let lab = &wal.lab;
    assert!(raw.join(last_tl1.to_string()).is_file());
    assert!(!raw.join(next_tl1.to_string()).exists());

    let mut restored = ThrowawayCluster::adopt(&lab.pg, lab.tmp.path(), "restored", base).unwrap();
    let restore_command = format!("cp {}/%f %p", raw.display());
    let archive_command = format!("cp %p {}/%f", raw.display());
    restored
        .configure(&[
            ("restore_command", &restore_command),
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
        ])
        .unwrap();
    let signal = restored.data_dir().join("recovery.signal");
    fs::write(&signal, b"").unwrap();
    give_to_owner(&signal).unwrap();
    restored.start().unwrap();
    restored.wait_for_promotion(PATIENCE).unwrap();
    // A few pages of WAL on timeline 2 before the segment is switched and archived.
    restored
        .query("SELECT pg_logical_emit_message(false, 'tidemark', repeat('y', 32768))")
        .unwrap();
    let switched = tidemark::demo::switch_and_wait_for_archive(&restored).unwrap();
    let first_tl2 = SegmentName::from_segment_number(TimelineId(2), n, size(MIB));
    assert_eq!(switched, first_tl2.to_string());
    assert_eq!(
        restored
            .query("SELECT timeline_id FROM pg_control_checkpoint()")
            .unwrap(),
        "2"
    );
    let redo: Lsn = restored
        .query("SELECT redo_lsn FROM pg_control_checkpoint()")
        .unwrap()
        .parse()
        .unwrap();
    restored.stop().unwrap();

    // The history file PostgreSQL archived.
    assert_eq!(
        WalFileName::parse("00000002.history"),
        Ok(WalFileName::History(TimelineId(2)))
    );
    let history_bytes = fs::read(raw.join("00000002.history")).expect("00000002.history archived");
    let history = TimelineHistory::parse(TimelineId(2), &history_bytes).unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}",
            String::from_utf8_lossy(&history_bytes).into_owned()
        )
    });
    assert_eq!(history.timeline, TimelineId(2));
    assert_eq!(history.entries.len(), 1, "{history:?}");
    let entry = &history.entries[0];
    assert_eq!(entry.parent, TimelineId(1));
    assert_eq!(entry.reason, "no recovery target specified");
    let switch_point = entry.switch_point;
    let tl1_names: Vec<SegmentName> = fs::read_dir(&raw)
        .unwrap()
        .filter_map(
            |e| match WalFileName::parse(e.unwrap().file_name().to_str()?) {
                Ok(WalFileName::Segment(name)) if name.timeline == TimelineId(1) => Some(name),
                _ => None,
            },
        )
        .collect();
    assert_eq!(tl1_names.iter().max(), Some(&last_tl1));
    let n_start = start_of(last_tl1, MIB);
    assert!(
        n_start.0 < switch_point.0 && switch_point.0 < n_start.0 + u64::from(MIB),
        "switch point {switch_point} is not inside {last_tl1}, the last timeline 1 segment archived"
    );
    assert!(
        before < switch_point && small_end <= switch_point && switch_point < after,
        "switch point {switch_point} is not where the unfinished record starts \
         (small record {before} to {small_end}, big one ends at {after})"
    );
    // pg_waldump reads timeline 1's last segment up to exactly there: its last complete record
    // ends at the switch point (the unfinished one after it ends in a segment never archived).
    let tl1_path = raw.join(last_tl1.to_string());
    let run = pg_run(
        &lab.pg,
        lab.tmp.path(),
        "pg_waldump",
        &[tl1_path.as_os_str()],
    );
    assert!(run.success, "pg_waldump {last_tl1}: {}", run.stderr);
    let last_line = run
        .stdout
        .lines()
        .last()
        .expect("pg_waldump printed records");
    let last_record = *waldump_lsns(last_line).last().unwrap();
    let total: u64 = last_line
        .split_once("len (rec/tot):")
        .and_then(|(_, rest)| rest.split(',').next()?.split_once('/'))
        .and_then(|(_, total)| total.trim().parse().ok())
        .unwrap_or_else(|| panic!("no record length in {last_line:?}"));
    let last_end = Lsn(last_record.0 + total.next_multiple_of(8));
    assert_eq!(
        last_record.0 / PAGE as u64,
        last_end.0 / PAGE as u64,
        "the last record {last_line:?} should not cross a page"
    );
    assert_eq!(
        last_end, switch_point,
        "timeline 1's last complete record {last_line:?} ends at {last_end}"
    );
    assert!(
        redo >= switch_point,
        "the new timeline's checkpoint {redo} is before the switch point {switch_point}"
    );

    // The first segment of timeline 2: the parent's bytes up to the switch point, its pages
    // still on timeline 1, then pages of timeline 2.
    let tl2_path = raw.join(first_tl2.to_string());
    let tl2 = fs::read(&tl2_path).unwrap();
    let tl1 = fs::read(raw.join(last_tl1.to_string())).unwrap();
    let copied = (switch_point.0 - n_start.0) as usize;
    assert!(
        tl2[..copied] == tl1[..copied],
        "timeline 2's first segment starts with a copy of timeline 1's up to the switch point"
    );
    let headers = page_headers(&tl2);
    assert!(
        headers.len() >= 2,
        "{first_tl2} has {} pages of WAL",
        headers.len()
    );
    for (index, page) in headers.iter().enumerate() {
        let page_start = n_start.0 + (index * PAGE) as u64;
        let timeline = if page_start < switch_point.0 { 1 } else { 2 };
        assert_eq!(
            page.timeline,
            TimelineId(timeline),
            "{first_tl2} page {index} at {}",
            Lsn(page_start)
        );
        assert_eq!(page.page_address, Lsn(page_start));
    }
    assert_eq!(headers[0].timeline, TimelineId(1));
    assert_eq!(headers.last().unwrap().timeline, TimelineId(2));
    assert_eq!(segment_name(&first_tl2.to_string()), first_tl2);
    assert_eq!(check_complete(expected, first_tl2, &tl2), Ok(()));
    // The same pages under a timeline 1 name are from a later timeline than the name.
    let as_tl1 = check_complete(expected, last_tl1, &tl2);
    assert!(
        matches!(
            as_tl1,
            Err(SegmentDefect::TimelineAhead {
                found: TimelineId(2),
                file: TimelineId(1),
                ..
            })
        ),
        "{as_tl1:?}"
    );

    // pg_waldump reads timeline 2 on from a record that starts exactly at the switch point.
    let run = pg_run(
        &lab.pg,
        lab.tmp.path(),
        "pg_waldump",
        &[tl2_path.as_os_str()],
    );
    assert!(run.success, "pg_waldump {first_tl2}: {}", run.stderr);
    let lsns = waldump_lsns(&run.stdout);
    assert!(
        lsns.contains(&switch_point),
        "pg_waldump shows no record at the switch point {switch_point}:\n{}",
        run.stdout
    );

    // Every segment in the archive, of either timeline, passes.
    let mut checked = 0;
    for entry in fs::read_dir(&raw).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        match WalFileName::parse(&file) {
            Ok(WalFileName::Segment(name)) => {
                let bytes = fs::read(raw.join(&file)).unwrap();
                assert_eq!(check_complete(expected, name, &bytes), Ok(()), "{file}");
                checked += 1;
            }
            Ok(WalFileName::Partial(name)) => {
                let bytes = fs::read(raw.join(&file)).unwrap();
                let result = check(
                    expected,
                    name,
                    SegmentKind::Partial,
                    &bytes,
                    CHUNK_ALIGNMENT,
                );
                assert_eq!(result, Ok(()), "{file}");
            }
            _ => {}
        }
    }
    assert!(checked >= 6, "only {checked} segments archived");
    drop(restored);
}

#[test]
fn a_16_mib_segment_passes_only_against_its_own_segment_size() {
    let pg = PgBinaries::locate().expect("PostgreSQL 15 server programs are required");
    let tmp = SharedTempDir::new("tm-fmt16-").unwrap();
    let raw = tmp.subdir("raw").unwrap();
    let mut big = ThrowawayCluster::init(&pg, tmp.path(), "big", 16).unwrap();
    let archive_command = format!("cp %p {}/%f", raw.display());
    big.configure(&[
        ("archive_mode", "on"),
        ("archive_command", &archive_command),
    ])
    .unwrap();
    big.start().unwrap();
    big.query("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        .unwrap();
    let file = tidemark::demo::switch_and_wait_for_archive(&big).unwrap();
    let system_id: u64 = big
        .query("SELECT system_identifier FROM pg_control_system()")
        .unwrap()
        .parse()
        .unwrap();
    big.stop().unwrap();

    let sixteen = 16 * MIB;
    let control = controldata(&pg, tmp.path(), big.data_dir());
    assert_eq!(
        controldata_field::<u64>(&control, "Database system identifier"),
        system_id
    );
    assert_eq!(
        controldata_field::<u32>(&control, "Bytes per WAL segment"),
        sixteen
    );
    let identity = tidemark::datadir::read_identity(big.data_dir()).unwrap();
    assert_eq!(identity.segment_size, size(sixteen));
    assert_eq!(identity.system_id, system_id);

    let name = segment_name(&file);
    let bytes = fs::read(raw.join(&file)).unwrap();
    assert_eq!(bytes.len(), sixteen as usize);
    let header = PageHeader::decode(&bytes).unwrap();
    assert_eq!(header.page_address, start_of(name, sixteen));
    let long = header.long.unwrap();
    assert_eq!(long.segment_size, sixteen);
    assert_eq!(long.system_id, system_id);

    let own = expected_cluster(system_id, sixteen);
    for chunk in [CHUNK_ALIGNMENT, 16 * CHUNK_ALIGNMENT] {
        assert_eq!(
            check(own, name, SegmentKind::Complete, &bytes, chunk),
            Ok(()),
            "{file} (chunks of {chunk})"
        );
    }

    let one_mib = expected_cluster(system_id, MIB);
    let checker = SegmentChecker::new(one_mib, name, SegmentKind::Complete).unwrap();
    assert_eq!(
        feed_all(checker, &bytes, CHUNK_ALIGNMENT),
        Err(SegmentDefect::OtherSegmentSize {
            found: sixteen,
            expected: MIB,
        })
    );
    // The length is checked before any byte is read, so that is what the archive reports first.
    let checker = SegmentChecker::new(one_mib, name, SegmentKind::Complete).unwrap();
    assert_eq!(
        checker.check_length(bytes.len() as u64),
        Err(SegmentDefect::WrongSize {
            actual: u64::from(sixteen),
            expected: u64::from(MIB),
        })
    );
    drop(big);
    drop(tmp);
}
