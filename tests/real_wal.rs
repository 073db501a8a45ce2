//! `tidemark::pg` on REAL WAL written by a real PostgreSQL 15 server started by the test (never
//! hand-made bytes).
//!
//! Pages: every archived segment's long header agrees with `pg_controldata` and its name, and the
//! segment checker accepts it; real segments damaged in real ways (renamed, truncated, from
//! another cluster, a stale page, data after the zero tail) are refused with the exact defect;
//! `pg_control` decodes as `pg_controldata` reads it; a real timeline switch gives a history file
//! that parses and a first new-timeline segment, with the parent's pages, that passes; and a
//! 16 MiB-segment cluster passes only against its own size.
//!
//! Records: the record walker (`tidemark::pg::wal`) on a workload of commits, aborts, two-phase
//! commits and rollbacks, subtransactions, a restore point, checkpoints, a base backup and
//! switches, archived by `cp`: every archived segment is walked and compared with what
//! `pg_waldump` prints for it (records starting in the segment, first and last record, every
//! transaction end with its XID and timestamp, restore points, checkpoint redo LSNs, backup ends,
//! switches, spills into the next segment). A real segment with one byte flipped inside a record
//! is a defect naming exactly that record, and the live segment left in `pg_wal` ends where
//! `pg_waldump` says its WAL ends.
//!
//! A missing PostgreSQL fails these tests: nothing is skipped.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::DateTime;
use common::wal::{PAGE, segment_name, zero_tail_page};
use common::{PATIENCE, WalLab};
use testkit::{Lab, PgBinaries, SharedTempDir, ThrowawayCluster, give_to_owner, owner_command};
use tidemark::pg::control::ControlFileIdentity;
use tidemark::pg::history::TimelineHistory;
use tidemark::pg::page::{PageHeader, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER};
use tidemark::pg::segment_check::{
    CHUNK_ALIGNMENT, ExpectedCluster, SegmentChecker, SegmentDefect, SegmentKind,
};
use tidemark::pg::wal::{RecordWalker, WalRecordDefect, WalkedSegment, XactEnd, XactEndKind};
use tidemark::pg::{Lsn, PgMajor, SegmentName, SegmentSize, TimelineId, WalFileName};

const MIB: u32 = 1 << 20;
/// Size of a long page header, after which a segment's first record may start.
const LONG_HEADER: u64 = 40;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

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

/// Runs PostgreSQL program `program` as the cluster owner in UTC and the C locale, so its output
/// (messages, `pg_waldump`'s timestamps) is the text parsed here whatever the machine's settings.
/// Whatever its exit status: `pg_waldump` reports the end of WAL as an error.
fn pg_run(pg: &PgBinaries, cwd: &Path, program: &str, args: &[&OsStr]) -> PgRun {
    let output = owner_command(&pg.path(program), cwd)
        .args(args)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
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

/// The records `pg_waldump args` prints, which must read its WAL to the end without an error.
fn waldump_all(pg: &PgBinaries, cwd: &Path, args: &[&OsStr]) -> Vec<Dumped> {
    let run = pg_run(pg, cwd, "pg_waldump", args);
    assert!(run.success, "pg_waldump {args:?}: {}", run.stderr);
    parse_waldump(&run.stdout)
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
        let dumped = waldump_all(pg, cwd, &["-n".as_ref(), "1".as_ref(), path.as_os_str()]);
        assert_eq!(dumped.len(), 1, "pg_waldump -n 1 {name}: {dumped:?}");
        let first = dumped[0].lsn;
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
    let other = OtherCluster::new(&wal);
    other.recycled_segments_are_refused();
    let damaged = DamagedSegments::new(&segments);
    for (what, name, bytes, defect) in damaged.cases(&other, wal.system_id) {
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
    let first = &segments[0];
    let checker = SegmentChecker::new(expected, first.0, SegmentKind::Complete).unwrap();
    assert_eq!(
        feed_all(checker, &first.1[..MIB as usize / 2], CHUNK_ALIGNMENT),
        Err(SegmentDefect::WrongSize {
            actual: u64::from(MIB / 2),
            expected: u64::from(MIB),
        })
    );
    // A renamed segment is refused as a .partial too: its first page is already wrong.
    let (a, renamed_to) = (damaged.a, damaged.b.0);
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
}

/// The LSN of `offset` bytes into segment `name`.
fn page_lsn(name: SegmentName, offset: usize) -> Lsn {
    Lsn(start_of(name, MIB).0 + offset as u64)
}

/// A second, separately initdb'd cluster, and the segment in use in its pg_wal.
struct OtherCluster {
    cluster: ThrowawayCluster,
    id: u64,
    file: String,
    bytes: Vec<u8>,
}

impl OtherCluster {
    /// Initializes it; its segment in use is sound for itself.
    fn new(wal: &WalLab) -> Self {
        let cluster = ThrowawayCluster::init(&wal.lab.pg, wal.lab.tmp.path(), "other", 1).unwrap();
        let control = controldata(&wal.lab.pg, wal.lab.tmp.path(), cluster.data_dir());
        let id: u64 = controldata_field(&control, "Database system identifier");
        assert_ne!(id, wal.system_id, "two initdb runs gave one system id");
        // The segment in use, not one of the recycled ones pg_wal also holds (whose first page
        // still names the older segment they were).
        let file: String = controldata_field(&control, "Latest checkpoint's REDO WAL file");
        let bytes = fs::read(cluster.data_dir().join("pg_wal").join(&file)).unwrap();
        assert_eq!(
            check(
                expected_cluster(id, MIB),
                segment_name(&file),
                SegmentKind::Partial,
                &bytes,
                CHUNK_ALIGNMENT
            ),
            Ok(()),
            "the other cluster's segment is sound for the other cluster"
        );
        OtherCluster {
            cluster,
            id,
            file,
            bytes,
        }
    }

    /// pg_wal also holds segments recycled for future use, their pages still those of the older
    /// segment they were: archiving one (a script copying pg_wal/*) is refused on its first page.
    fn recycled_segments_are_refused(&self) {
        let pg_wal = self.cluster.data_dir().join("pg_wal");
        let redo_segment = segment_name(&self.file);
        let recycled: Vec<(SegmentName, Lsn)> = fs::read_dir(&pg_wal)
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
            let bytes = fs::read(pg_wal.join(name.to_string())).unwrap();
            for kind in [SegmentKind::Complete, SegmentKind::Partial] {
                assert_eq!(
                    check(
                        expected_cluster(self.id, MIB),
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
    }
}

/// The archived segments that damaged copies are made from.
struct DamagedSegments<'a> {
    first: &'a (SegmentName, Vec<u8>),
    /// Two consecutive segments, both with WAL on several pages, for the stale page.
    a: &'a (SegmentName, Vec<u8>),
    b: &'a (SegmentName, Vec<u8>),
    page: usize,
    /// A segment ended by pg_switch_wal(): WAL, then zeros to the end from page `tail`.
    switched: &'a (SegmentName, Vec<u8>),
    tail: usize,
}

impl<'a> DamagedSegments<'a> {
    fn new(segments: &'a [(SegmentName, Vec<u8>)]) -> Self {
        let (a, b, page) = segments
            .windows(2)
            .find_map(|pair| {
                let pages = |bytes: &[u8]| zero_tail_page(bytes).unwrap_or(bytes.len() / PAGE);
                let common = pages(&pair[0].1).min(pages(&pair[1].1));
                (common >= 4).then_some((&pair[0], &pair[1], common / 2))
            })
            .expect("two consecutive segments with at least four pages of WAL");
        let (switched, tail) = segments
            .iter()
            .find_map(|s| zero_tail_page(&s.1).map(|tail| (s, tail)))
            .expect("a segment ended by pg_switch_wal() with a zero tail");
        assert!(switched.1[tail * PAGE..].iter().all(|&b| b == 0));
        DamagedSegments {
            first: &segments[0],
            a,
            b,
            page,
            switched,
            tail,
        }
    }

    /// Each damage: what it is, the name it is checked under, its bytes, and the defect found.
    fn cases(
        &self,
        other: &OtherCluster,
        system_id: u64,
    ) -> Vec<(&'static str, SegmentName, Vec<u8>, SegmentDefect)> {
        let (a, b, page, first) = (self.a, self.b, self.page, self.first);
        let (switched, tail) = (self.switched, self.tail);
        let mut stale = b.1.clone();
        stale[page * PAGE..(page + 1) * PAGE].copy_from_slice(&a.1[page * PAGE..(page + 1) * PAGE]);
        let mut last_byte_set = switched.1.clone();
        *last_byte_set.last_mut().unwrap() = 0x01;
        let mut middle_of_tail_set = switched.1.clone();
        middle_of_tail_set[tail * PAGE + PAGE / 2] = 0x5A;
        let renamed_to = b.0;
        let mut truncated_in_a_page = first.1.clone();
        truncated_in_a_page.truncate(MIB as usize - 100);
        vec![
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
                segment_name(&other.file),
                other.bytes.clone(),
                SegmentDefect::OtherCluster {
                    found: other.id,
                    expected: system_id,
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
        ]
    }
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
    wal.cluster.start().unwrap();
    let base = wal.lab.tmp.path().join("base");
    wal.cluster.base_backup(&base).unwrap();
    let end = end_timeline_one_inside_a_record(&mut wal);
    let lab = &wal.lab;
    let first_tl2 = SegmentName::from_segment_number(TimelineId(2), end.n, size(MIB));
    let (restored, redo) = promote_from_the_archive(lab, &raw, base, first_tl2);
    let switch_point = check_the_history_file(&raw, &end);
    check_timeline_one_ends_at_the_switch_point(lab, &raw, &end, switch_point);
    assert!(
        redo >= switch_point,
        "the new timeline's checkpoint {redo} is before the switch point {switch_point}"
    );
    check_timeline_two_starts_at_the_switch_point(
        lab,
        expected,
        &raw,
        &end,
        first_tl2,
        switch_point,
    );
    every_archived_segment_passes(expected, &raw);
    drop(restored);
}

/// Where timeline 1 ends: a small record from `before` to `small_end`, then a big one that
/// ends at `after` in segment `n + 1`, which is never archived; `last_tl1` is segment `n`.
struct TimelineOneEnd {
    before: Lsn,
    small_end: Lsn,
    after: Lsn,
    n: u64,
    last_tl1: SegmentName,
}

/// After a switch, a small record then one of 1.5 MiB: the big one starts near the beginning
/// of segment N and ends inside N+1. N is complete and archived; N+1 never is, so recovery
/// from the archive ends inside N, after the small record, and timeline 2 starts there. (Were
/// the switch record the last complete one, timeline 2 would start at the segment boundary.)
fn end_timeline_one_inside_a_record(wal: &mut WalLab) -> TimelineOneEnd {
    let cluster = &mut wal.cluster;
    cluster.query("SELECT pg_switch_wal()").unwrap();
    let before: Lsn = cluster
        .query_value("SELECT pg_current_wal_insert_lsn()")
        .unwrap();
    let small_end: Lsn = cluster
        .query_value("SELECT pg_logical_emit_message(false, 'tidemark', 'small')")
        .unwrap();
    let after: Lsn = cluster
        .query_value("SELECT pg_logical_emit_message(false, 'tidemark', repeat('x', 1572864))")
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
    assert!(wal.raw.join(last_tl1.to_string()).is_file());
    assert!(!wal.raw.join(next_tl1.to_string()).exists());
    TimelineOneEnd {
        before,
        small_end,
        after,
        n,
        last_tl1,
    }
}

/// Recovers `base` from the archive `raw` until it runs out, which promotes it onto timeline 2;
/// writes a few pages there and archives the segment, `first_tl2`. Returns the stopped cluster and the redo
/// point of its checkpoint.
fn promote_from_the_archive(
    lab: &Lab,
    raw: &Path,
    base: PathBuf,
    first_tl2: SegmentName,
) -> (ThrowawayCluster, Lsn) {
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
    let switched = testkit::switch_and_wait_for_archive(&restored).unwrap();
    assert_eq!(switched, first_tl2.to_string());
    assert_eq!(restored.checkpoint_timeline().unwrap(), "2");
    let redo: Lsn = restored
        .query_value("SELECT redo_lsn FROM pg_control_checkpoint()")
        .unwrap();
    restored.stop().unwrap();
    (restored, redo)
}

/// The history file PostgreSQL archived names timeline 1 as the parent, and a switch point
/// inside its last archived segment, where the unfinished record starts. Returns that point.
fn check_the_history_file(raw: &Path, end: &TimelineOneEnd) -> Lsn {
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
    let tl1_names: Vec<SegmentName> = fs::read_dir(raw)
        .unwrap()
        .filter_map(
            |e| match WalFileName::parse(e.unwrap().file_name().to_str()?) {
                Ok(WalFileName::Segment(name)) if name.timeline == TimelineId(1) => Some(name),
                _ => None,
            },
        )
        .collect();
    let last_tl1 = end.last_tl1;
    assert_eq!(tl1_names.iter().max(), Some(&last_tl1));
    let n_start = start_of(last_tl1, MIB);
    assert!(
        n_start.0 < switch_point.0 && switch_point.0 < n_start.0 + u64::from(MIB),
        "switch point {switch_point} is not inside {last_tl1}, the last timeline 1 segment archived"
    );
    let (before, small_end, after) = (end.before, end.small_end, end.after);
    assert!(
        before < switch_point && small_end <= switch_point && switch_point < after,
        "switch point {switch_point} is not where the unfinished record starts \
         (small record {before} to {small_end}, big one ends at {after})"
    );
    switch_point
}

/// pg_waldump reads timeline 1's last segment up to exactly the switch point: its last complete
/// record ends there (the unfinished one after it ends in a segment never archived).
fn check_timeline_one_ends_at_the_switch_point(
    lab: &Lab,
    raw: &Path,
    end: &TimelineOneEnd,
    switch_point: Lsn,
) {
    let tl1_path = raw.join(end.last_tl1.to_string());
    let dumped = waldump_all(&lab.pg, lab.tmp.path(), &[tl1_path.as_os_str()]);
    let last = dumped.last().expect("pg_waldump printed records");
    let last_end = Lsn(last.lsn.0 + last.total.next_multiple_of(8));
    assert_eq!(
        last.lsn.0 / PAGE as u64,
        last_end.0 / PAGE as u64,
        "the last record {last:?} should not cross a page"
    );
    assert_eq!(
        last_end, switch_point,
        "timeline 1's last complete record {last:?} ends at {last_end}"
    );
}

/// The first segment of timeline 2: the parent's bytes up to the switch point, its pages
/// still on timeline 1, then pages of timeline 2; it passes under its own name, is refused
/// under timeline 1's, and pg_waldump reads on from a record at the switch point.
fn check_timeline_two_starts_at_the_switch_point(
    lab: &Lab,
    expected: ExpectedCluster,
    raw: &Path,
    end: &TimelineOneEnd,
    first_tl2: SegmentName,
    switch_point: Lsn,
) {
    let last_tl1 = end.last_tl1;
    let n_start = start_of(last_tl1, MIB);
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
    let dumped = waldump_all(&lab.pg, lab.tmp.path(), &[tl2_path.as_os_str()]);
    assert!(
        dumped.iter().any(|d| d.lsn == switch_point),
        "pg_waldump shows no record at the switch point {switch_point}:\n{dumped:#?}"
    );
}

/// Every segment in the archive, of either timeline, passes.
fn every_archived_segment_passes(expected: ExpectedCluster, raw: &Path) {
    let mut checked = 0;
    for entry in fs::read_dir(raw).unwrap() {
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
}

/// A started cluster of 16 MiB segments in a fresh directory, archiving with `cp` into `raw`.
struct SixteenMib {
    /// Declared first, so that it is stopped before the directory it lives in goes.
    cluster: ThrowawayCluster,
    pg: PgBinaries,
    raw: PathBuf,
    tmp: SharedTempDir,
}

impl SixteenMib {
    /// Starts one in a directory named from `prefix`, with `settings` besides archiving.
    fn start(prefix: &str, settings: &[(&str, &str)]) -> SixteenMib {
        let pg = PgBinaries::locate().expect("PostgreSQL 15 server programs are required");
        let tmp = SharedTempDir::new(prefix).unwrap();
        let raw = tmp.subdir("raw").unwrap();
        let mut cluster = ThrowawayCluster::init(&pg, tmp.path(), "big", 16).unwrap();
        let archive_command = format!("cp %p {}/%f", raw.display());
        let mut all = vec![
            ("archive_mode", "on"),
            ("archive_command", archive_command.as_str()),
        ];
        all.extend_from_slice(settings);
        cluster.configure(&all).unwrap();
        cluster.start().unwrap();
        SixteenMib {
            cluster,
            pg,
            raw,
            tmp,
        }
    }
}

#[test]
fn a_16_mib_segment_passes_only_against_its_own_segment_size() {
    let mut lab = SixteenMib::start("tm-fmt16-", &[]);
    let big = &mut lab.cluster;
    big.query("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        .unwrap();
    let file = testkit::switch_and_wait_for_archive(big).unwrap();
    let system_id: u64 = big.system_identifier().unwrap();
    big.stop().unwrap();

    let sixteen = 16 * MIB;
    let control = controldata(&lab.pg, lab.tmp.path(), lab.cluster.data_dir());
    assert_eq!(
        controldata_field::<u64>(&control, "Database system identifier"),
        system_id
    );
    assert_eq!(
        controldata_field::<u32>(&control, "Bytes per WAL segment"),
        sixteen
    );
    let identity = tidemark::datadir::read_identity(lab.cluster.data_dir()).unwrap();
    assert_eq!(identity.segment_size, size(sixteen));
    assert_eq!(identity.system_id, system_id);

    let name = segment_name(&file);
    let bytes = fs::read(lab.raw.join(&file)).unwrap();
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
}

/// Walks `bytes` as segment `name` in chunks of `chunk`: the summary and the record count.
fn walk(
    name: SegmentName,
    segment_bytes: u32,
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

/// What `pg_waldump` prints for the whole archive of `wal`, its first segment to its last: the
/// records, and its stderr.
fn waldump_archive(wal: &WalLab) -> (Vec<Dumped>, String) {
    let files = wal.segments();
    let run = pg_run(
        &wal.lab.pg,
        wal.lab.tmp.path(),
        "pg_waldump",
        &[
            "--path".as_ref(),
            wal.raw.as_os_str(),
            files.first().expect("archived segments").as_ref(),
            files.last().unwrap().as_ref(),
        ],
    );
    (parse_waldump(&run.stdout), run.stderr)
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
    testkit::switch_and_wait_for_archive(cluster).unwrap();
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
    compare_xact_ends(file, walked, dumped);
    compare_xlog_records(file, walked, dumped);
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

/// The walker's transaction ends are pg_waldump's commits and aborts, and the summary's
/// ranges are theirs.
fn compare_xact_ends(file: &str, walked: &WalkedSegment, dumped: &[&Dumped]) {
    let summary = &walked.summary;
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
}

/// The summary's restore points, checkpoints, backup ends and switch are pg_waldump's XLOG
/// records of those kinds.
fn compare_xlog_records(file: &str, walked: &WalkedSegment, dumped: &[&Dumped]) {
    let summary = &walked.summary;
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
}

#[test]
fn every_archived_segment_agrees_with_pg_waldump() {
    let mut wal = WalLab::new("tm-rec-");
    run_workload(&mut wal);
    let segments = archived_segments(&wal);
    assert!(
        segments.len() >= 8,
        "only {} segments archived",
        segments.len()
    );
    let (dumped, stderr) = waldump_archive(&wal);
    assert!(
        dumped.len() > 1000,
        "pg_waldump printed {} records; stderr: {stderr}",
        dumped.len()
    );

    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, (name, bytes)) in segments.iter().enumerate() {
        let file = &name.to_string();
        let start = name.start_lsn(size(MIB)).unwrap();
        let end = Lsn(start.0 + u64::from(MIB));
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
        let next_first_page = segments.get(index + 1).map(|(_, b)| &b[..PAGE]);
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
    let (last_name, _) = segments.last().unwrap();
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
    let PgRun { stdout, stderr, .. } = pg_run(
        &wal.lab.pg,
        wal.lab.tmp.path(),
        "pg_waldump",
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
    let (all, stderr) = waldump_archive(&wal);
    let starts = |file: &String| segment_name(file).start_lsn(size(MIB)).unwrap();
    let in_file = |file: &String| -> Vec<Dumped> {
        let start = starts(file);
        all.iter()
            .filter(|d| start <= d.lsn && d.lsn.0 < start.0 + u64::from(MIB))
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
/// built (run it with `cargo test --release --test real_wal -- --ignored --nocapture`).
/// Prints the figure; never asserts a speed.
#[test]
#[ignore = "a measurement: run explicitly, in release mode"]
fn measure_decoding_16_mib_segments() {
    // Only the WAL matters here, not its durability.
    let mut lab = SixteenMib::start(
        "tm-rec16-",
        &[("synchronous_commit", "off"), ("fsync", "off")],
    );
    lab.cluster.run_pgbench(&["-i", "-s", "10", "-q"]).unwrap();
    lab.cluster
        .run_pgbench(&["-c", "8", "-j", "2", "-t", "6000"])
        .unwrap();
    testkit::switch_and_wait_for_archive(&lab.cluster).unwrap();
    lab.cluster.stop().unwrap();

    let files = common::segment_names_in(&lab.raw);
    let mut rows = Vec::new();
    for file in &files {
        let bytes = fs::read(lab.raw.join(file)).unwrap();
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
