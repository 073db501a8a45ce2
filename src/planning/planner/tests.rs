//! The planner against a made-up archive: PostgreSQL's stopping rules, which segments it
//! reads, the recoverable windows, and why a target cannot be reached.

use super::*;
use crate::pg::wal::XactEndKind;
use crate::planning::target::TimelineChoice;

const MIB: u64 = 1 << 20;

fn segment(
    segno: u64,
    commits: &[(u64, u32, i64)],
    spills: bool,
) -> (IndexedSegment, Vec<XactEnd>) {
    let xact_ends: Vec<XactEnd> = commits
        .iter()
        .map(|&(offset, xid, time)| XactEnd {
            lsn: Lsn(segno * MIB + offset),
            kind: XactEndKind::Commit,
            xid,
            time,
        })
        .collect();
    let indexed = IndexedSegment {
        bytes: MIB,
        summary: SegmentSummary {
            first_record: Some(Lsn(segno * MIB + 40)),
            last_record: xact_ends.last().map(|x| x.lsn),
            end_of_wal: Lsn((segno + 1) * MIB),
            ends_with_switch: false,
            continues_into_next: spills,
            xact_count: xact_ends.len() as u32,
            last_xact: xact_ends.last().cloned(),
            min_time: xact_ends.iter().map(|x| x.time).min(),
            max_time: xact_ends.iter().map(|x| x.time).max(),
            spill_undecoded: false,
            restore_points: vec![],
            checkpoints: vec![],
            backup_ends: vec![],
            end_of_recovery: vec![],
            min_xid: xact_ends.iter().map(|x| x.xid).min(),
            max_xid: xact_ends.iter().map(|x| x.xid).max(),
        },
    };
    (indexed, xact_ends)
}

/// Segment events from memory, counting which segments the planner reads.
#[derive(Default)]
struct Events {
    details: BTreeMap<SegmentName, SegmentDetail>,
    /// Where each segment's records start.
    starts: BTreeMap<SegmentName, Vec<Lsn>>,
    read: std::cell::RefCell<Vec<SegmentName>>,
}

impl SegmentEvents for Events {
    fn segment_events(
        &self,
        segment: SegmentName,
        _next: Option<SegmentName>,
    ) -> Result<SegmentDetail, String> {
        self.read.borrow_mut().push(segment);
        self.details
            .get(&segment)
            .cloned()
            .ok_or_else(|| format!("{segment} is not archived"))
    }

    fn first_record_from(&self, segment: SegmentName, from: Lsn) -> Result<Option<Lsn>, String> {
        self.read.borrow_mut().push(segment);
        let starts = self
            .starts
            .get(&segment)
            .ok_or_else(|| format!("{segment} is not archived"))?;
        Ok(starts.iter().copied().find(|&start| start >= from))
    }
}

/// Indexes `segment` under (timeline, segno) and keeps its events.
fn add(
    segments: &mut SegmentIndex,
    events: &mut Events,
    timeline: u32,
    segno: u64,
    (indexed, xact_ends): (IndexedSegment, Vec<XactEnd>),
) {
    let timeline = TimelineId(timeline);
    let name = SegmentName::from_segment_number(timeline, segno, SegmentSize::new(MIB).unwrap());
    let summary = &indexed.summary;
    let mut starts: Vec<Lsn> = summary.first_record.into_iter().collect();
    starts.extend(xact_ends.iter().map(|x| x.lsn));
    starts.extend(summary.restore_points.iter().map(|r| r.lsn));
    starts.sort();
    starts.dedup();
    events.starts.insert(name, starts);
    events.details.insert(
        name,
        SegmentDetail {
            xact_ends,
            restore_points: indexed.summary.restore_points.clone(),
        },
    );
    segments.insert((timeline, segno), indexed);
}

/// Timeline 1: segments 1-6. Commits: seg 1 xid 99 @800, before backup A is consistent; seg 2 xid 100 @1000 and 101 @2000; seg 3 102 @3000
/// (at 0/3000200, after backup B is consistent); seg 4 103 @4000, the last record, spilling
/// into seg 5; seg 5 104 @5000 and a restore point; seg 6 105 @6000.
/// Timeline 2 forks at 0/4000100 (after 102, before 103): its segments 4-5 hold 200 @4500.
fn archive_fixture() -> (Vec<BackupPoint>, SegmentIndex, Histories, Events) {
    let backups = vec![
        BackupPoint {
            label: "A".into(),
            timeline: TimelineId(1),
            start: Lsn(MIB + 0x28),
            stop: Lsn(MIB + 0x100),
        },
        BackupPoint {
            label: "B".into(),
            timeline: TimelineId(1),
            start: Lsn(3 * MIB + 0x28),
            stop: Lsn(3 * MIB + 0x100),
        },
    ];
    let mut segments = BTreeMap::new();
    let mut events = Events::default();
    // Commit 99 lies before backup A is consistent (at 0/100100).
    add(
        &mut segments,
        &mut events,
        1,
        1,
        segment(1, &[(0x50, 99, 800)], false),
    );
    add(
        &mut segments,
        &mut events,
        1,
        2,
        segment(2, &[(0x300, 100, 1000), (0x400, 101, 2000)], false),
    );
    add(
        &mut segments,
        &mut events,
        1,
        3,
        segment(3, &[(0x200, 102, 3000)], false),
    );
    add(
        &mut segments,
        &mut events,
        1,
        4,
        segment(4, &[(0x500, 103, 4000)], true),
    );
    let mut fifth = segment(5, &[(0x300, 104, 5000)], false);
    fifth.0.summary.restore_points.push(RestorePoint {
        lsn: Lsn(5 * MIB + 0x400),
        name: "before upgrade".into(),
        time: 5100,
    });
    add(&mut segments, &mut events, 1, 5, fifth);
    add(
        &mut segments,
        &mut events,
        1,
        6,
        segment(6, &[(0x100, 105, 6000)], false),
    );
    add(
        &mut segments,
        &mut events,
        2,
        4,
        segment(4, &[(0x800, 200, 4500)], false),
    );
    add(&mut segments, &mut events, 2, 5, segment(5, &[], false));
    let mut histories = BTreeMap::new();
    histories.insert(
        TimelineId(2),
        TimelineHistory::parse(
            TimelineId(2),
            b"1\t0/400100\tbefore 2026-11-21 10:00:00+00\n",
        )
        .unwrap(),
    );
    (backups, segments, histories, events)
}

fn at_time(at: i64) -> RecoveryTarget {
    RecoveryTarget::Time {
        text: format!("PostgreSQL time {at}"),
        at,
    }
}

fn xid(xid: u64) -> RecoveryTarget {
    RecoveryTarget::Xid {
        text: xid.to_string(),
        xid,
    }
}

static NO_PARTIALS: PartialSegments = PartialSegments::new();

/// The archive of `backups` and `segments`, in segments of 1 MiB.
fn archive_over<'a>(
    backups: &'a [BackupPoint],
    segments: &'a SegmentIndex,
    histories: &'a Histories,
    events: &'a Events,
) -> Archive<'a> {
    Archive {
        segment_size: SegmentSize::new(MIB).unwrap(),
        backups,
        segments,
        partials: &NO_PARTIALS,
        histories,
        events,
    }
}

/// Stops before the end of transaction `xid` at `lsn`, committed at `time`.
fn before(lsn: Lsn, xid: u32, time: i64) -> StopPoint {
    StopPoint::BeforeTransaction { lsn, xid, time }
}

fn request(target: RecoveryTarget, inclusive: bool, timeline: TimelineChoice) -> PlanRequest {
    PlanRequest {
        target,
        inclusive,
        timeline,
    }
}

fn names(plan: &RecoveryPlan) -> Vec<String> {
    plan.segments
        .iter()
        .map(|s| s.to_string()[14..].to_owned())
        .collect()
}

/// A request, the backup its plan restores, the plan's segments as "TTLLLLLLLLSS" tails, and
/// where recovery stops.
type Case = (PlanRequest, &'static str, Vec<&'static str>, StopPoint);

/// Time and transaction targets along timeline 1.
fn transaction_cases() -> Vec<Case> {
    let on_one = TimelineChoice::Exact(TimelineId(1));
    vec![
        // Between commits: stop before the first commit past the target.
        (
            request(at_time(3500), true, on_one),
            "B",
            vec!["0000000003", "0000000004", "0000000005"],
            before(Lsn(4 * MIB + 0x500), 103, 4000),
        ),
        // Commit 102 comes after B is consistent, so B serves.
        (
            request(at_time(2500), true, on_one),
            "B",
            vec!["0000000003"],
            before(Lsn(3 * MIB + 0x200), 102, 3000),
        ),
        // A commit before B's consistency point is past the target: B is too new, A serves.
        (
            request(at_time(1500), true, on_one),
            "A",
            vec!["0000000001", "0000000002"],
            before(Lsn(2 * MIB + 0x400), 101, 2000),
        ),
        // Exactly at a commit time: inclusive keeps it, exclusive does not.
        (
            request(at_time(2000), true, on_one),
            "B",
            vec!["0000000003"],
            before(Lsn(3 * MIB + 0x200), 102, 3000),
        ),
        (
            request(at_time(2000), false, on_one),
            "A",
            vec!["0000000001", "0000000002"],
            before(Lsn(2 * MIB + 0x400), 101, 2000),
        ),
        // Xid: after it when inclusive, before it when not.
        (
            request(xid(104), true, on_one),
            "B",
            vec!["0000000003", "0000000004", "0000000005"],
            StopPoint::AfterTransaction {
                lsn: Lsn(5 * MIB + 0x300),
                xid: 104,
                time: 5000,
            },
        ),
        (
            request(xid(101), false, on_one),
            "A",
            vec!["0000000001", "0000000002"],
            before(Lsn(2 * MIB + 0x400), 101, 2000),
        ),
    ]
}

/// Restore point, consistency, LSN and end-of-archive targets along timeline 1, and a time
/// along timeline 2.
fn other_cases() -> Vec<Case> {
    let on_one = TimelineChoice::Exact(TimelineId(1));
    vec![
        (
            request(RecoveryTarget::Name("before upgrade".into()), true, on_one),
            "B",
            vec!["0000000003", "0000000004", "0000000005"],
            StopPoint::AfterRestorePoint {
                lsn: Lsn(5 * MIB + 0x400),
                name: "before upgrade".into(),
            },
        ),
        (
            request(RecoveryTarget::Immediate, true, on_one),
            "B",
            vec!["0000000003"],
            StopPoint::Consistency(Lsn(3 * MIB + 0x100)),
        ),
        (
            request(RecoveryTarget::Lsn(Lsn(2 * MIB + 5)), true, on_one),
            "A",
            vec!["0000000001", "0000000002"],
            StopPoint::AtLsn(Lsn(2 * MIB + 5)),
        ),
        // Past the last record start of its segment (as after a switch): the stop record is
        // the first of the next segment.
        (
            request(RecoveryTarget::Lsn(Lsn(3 * MIB + 0x300)), false, on_one),
            "B",
            vec!["0000000003", "0000000004"],
            StopPoint::AtLsn(Lsn(3 * MIB + 0x300)),
        ),
        // The first record at or past it is the one spilling into the next segment.
        (
            request(RecoveryTarget::Lsn(Lsn(4 * MIB + 0x400)), true, on_one),
            "B",
            vec!["0000000003", "0000000004", "0000000005"],
            StopPoint::AtLsn(Lsn(4 * MIB + 0x400)),
        ),
        // A record before the spilling one is at or past it.
        (
            request(RecoveryTarget::Lsn(Lsn(4 * MIB + 0x20)), true, on_one),
            "B",
            vec!["0000000003", "0000000004"],
            StopPoint::AtLsn(Lsn(4 * MIB + 0x20)),
        ),
        (
            request(RecoveryTarget::EndOfArchive, true, on_one),
            "B",
            vec!["0000000003", "0000000004", "0000000005", "0000000006"],
            StopPoint::EndOfArchive(Lsn(7 * MIB)),
        ),
        // Along timeline 2 (latest): segment 4 comes from timeline 2, which forked in it.
        (
            request(at_time(4400), true, TimelineChoice::Latest),
            "B",
            vec!["0000000003", "0000000004"],
            before(Lsn(4 * MIB + 0x800), 200, 4500),
        ),
    ]
}

#[test]
fn plans_follow_postgresql_stopping_rules() {
    let (backups, segments, histories, events) = archive_fixture();
    let archive = archive_over(&backups, &segments, &histories, &events);
    let cases = transaction_cases().into_iter().chain(other_cases());
    for (request, backup, expected, stop) in cases {
        let planned = plan(&archive, &request).unwrap_or_else(|e| panic!("{request:?}: {e}"));
        assert_eq!(planned.backup, backup, "{request:?}");
        let tails: Vec<String> = names(&planned);
        let expected: Vec<String> = expected.iter().map(|e| e.to_string()).collect();
        assert_eq!(tails, expected, "{request:?}");
        assert_eq!(planned.stop, stop, "{request:?}");
    }
    let along_two = plan(
        &archive,
        &request(at_time(4400), true, TimelineChoice::Latest),
    )
    .unwrap();
    assert_eq!(along_two.timeline, TimelineId(2));
    assert_eq!(
        along_two
            .segments
            .iter()
            .map(|s| s.timeline.0)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn only_the_segments_where_recovery_may_stop_are_read() {
    let (backups, mut segments, histories, events) = archive_fixture();
    let size = SegmentSize::new(MIB).unwrap();
    let name = |segno| SegmentName::from_segment_number(TimelineId(1), segno, size);
    let time_3500 = request(at_time(3500), true, TimelineChoice::Exact(TimelineId(1)));
    {
        let archive = archive_over(&backups, &segments, &histories, &events);
        plan(&archive, &time_3500).unwrap();
        assert_eq!(*events.read.borrow(), [name(4)]);
        events.read.borrow_mut().clear();
        // A restore point target reads no segment: the summaries hold every restore point.
        plan(
            &archive,
            &request(
                RecoveryTarget::Name("nope".into()),
                true,
                TimelineChoice::Exact(TimelineId(1)),
            ),
        )
        .unwrap_err();
        plan(
            &archive,
            &request(
                RecoveryTarget::Name("before upgrade".into()),
                true,
                TimelineChoice::Exact(TimelineId(1)),
            ),
        )
        .unwrap();
        assert_eq!(*events.read.borrow(), []);
    }
    // A segment whose spilling record could not be read from it is read when passed.
    segments
        .get_mut(&(TimelineId(1), 2))
        .unwrap()
        .summary
        .spill_undecoded = true;
    let archive = archive_over(&backups, &segments, &histories, &events);
    plan(&archive, &time_3500).unwrap();
    assert_eq!(*events.read.borrow(), [name(2), name(4)]);
}

#[test]
fn recoverable_windows_run_from_each_backup_to_the_end_of_its_wal() {
    let (backups, mut segments, histories, events) = archive_fixture();
    let size = SegmentSize::new(MIB).unwrap();
    let windows = |segments: &SegmentIndex, timeline| {
        let archive = archive_over(&backups, segments, &histories, &events);
        recoverable_windows(&archive, timeline).unwrap()
    };
    // Timeline 1: A's and B's windows overlap into one, to the end of segment 6.
    assert_eq!(
        windows(&segments, TimelineId(1)),
        [RecoverableWindow {
            backup: "A".into(),
            from: Lsn(MIB + 0x100),
            to: Lsn(7 * MIB),
            last_xact: Some((Lsn(6 * MIB + 0x100), 6000)),
            gap: None,
        }]
    );
    // Timeline 2 follows timeline 1 to the fork, then its own segments 4 and 5.
    let along_two = windows(&segments, TimelineId(2));
    assert_eq!(along_two.len(), 1);
    assert_eq!(along_two[0].to, Lsn(6 * MIB));
    assert_eq!(along_two[0].last_xact, Some((Lsn(4 * MIB + 0x800), 4500)));
    // A hole between A and B: A's window ends at it, B's starts after it.
    segments.remove(&(TimelineId(1), 2));
    assert_eq!(
        windows(&segments, TimelineId(1)),
        [
            RecoverableWindow {
                backup: "A".into(),
                from: Lsn(MIB + 0x100),
                to: Lsn(2 * MIB),
                last_xact: Some((Lsn(MIB + 0x50), 800)),
                gap: Some(SegmentName::from_segment_number(TimelineId(1), 2, size)),
            },
            RecoverableWindow {
                backup: "B".into(),
                from: Lsn(3 * MIB + 0x100),
                to: Lsn(7 * MIB),
                last_xact: Some((Lsn(6 * MIB + 0x100), 6000)),
                gap: None,
            }
        ]
    );
    segments.insert((TimelineId(1), 2), segment(2, &[], false).0);
    segments.remove(&(TimelineId(1), 5));
    let split = windows(&segments, TimelineId(1));
    assert_eq!(split.len(), 1, "{split:?}");
    assert_eq!(
        (split[0].to, split[0].gap.map(|g| g.to_string())),
        (Lsn(5 * MIB), Some("000000010000000000000005".to_owned()))
    );
}

#[test]
fn unreachable_targets_say_why() {
    let (backups, mut segments, histories, events) = archive_fixture();
    let on_one = TimelineChoice::Exact(TimelineId(1));
    {
        let archive = archive_over(&backups, &segments, &histories, &events);
        // Before the first backup is consistent.
        assert_eq!(
            plan(&archive, &request(at_time(500), true, on_one))
                .unwrap_err()
                .to_string(),
            "no backup ends before the target: the earliest point a restore can reach is the end of backup A at 0/100100"
        );
        // Past the last archived commit.
        assert_eq!(
            plan(&archive, &request(at_time(9000), true, on_one))
                .unwrap_err()
                .to_string(),
            "the archived WAL along timeline 1 does not reach the target: no commit or abort after 2000-01-01 00:00:00.009000+00 is archived yet, so PostgreSQL would stop with \"recovery ended before configured recovery target was reached\"; today a restore can reach the last archived commit or abort, at 2000-01-01 00:00:00.006000+00"
        );
        // No record starts at or past it in the archived WAL yet.
        assert_eq!(
            plan(
                &archive,
                &request(RecoveryTarget::Lsn(Lsn(6 * MIB + 0x200)), true, on_one)
            )
            .unwrap_err(),
            PlanError::NotReached {
                timeline: TimelineId(1),
                what: "no record starting at or past 0/600200".into(),
                today: "today a restore can reach LSN 0/700000".into()
            }
        );
        assert_eq!(
            plan(&archive, &request(RecoveryTarget::Name("nope".into()), true, on_one)).unwrap_err(),
            PlanError::NotReached {
                timeline: TimelineId(1),
                what: "no restore point 'nope'".into(),
                today: "today a restore can reach the last archived commit or abort, at 2000-01-01 00:00:00.006000+00".into()
            }
        );
        assert_eq!(
            plan(
                &archive,
                &request(
                    RecoveryTarget::EndOfArchive,
                    true,
                    TimelineChoice::Exact(TimelineId(3))
                )
            )
            .unwrap_err(),
            PlanError::UnknownTimeline(TimelineId(3))
        );
        let none = archive_over(&[], &segments, &histories, &events);
        assert_eq!(
            plan(&none, &request(RecoveryTarget::EndOfArchive, true, on_one)).unwrap_err(),
            PlanError::NoBackup
        );
    }
    // A hole in the archive.
    segments.remove(&(TimelineId(1), 4));
    let archive = archive_over(&backups, &segments, &histories, &events);
    assert_eq!(
        plan(&archive, &request(at_time(4500), true, on_one))
            .unwrap_err()
            .to_string(),
        "WAL segment 000000010000000000000004 is not in the archive: recovery from backup B cannot get past it"
    );
    assert_eq!(
        plan(
            &archive,
            &request(RecoveryTarget::EndOfArchive, true, on_one)
        )
        .unwrap_err()
        .to_string(),
        "WAL segment 000000010000000000000004 is not in the archive: recovery from backup B cannot get past it"
    );
    // The segment after the target's, where its stop record is, is missing.
    for target in [Lsn(3 * MIB + 0x300), Lsn(4 * MIB + 0x10)] {
        assert_eq!(
            plan(
                &archive,
                &request(RecoveryTarget::Lsn(target), true, on_one)
            )
            .unwrap_err()
            .to_string(),
            "WAL segment 000000010000000000000004 is not in the archive: recovery from backup B cannot get past it",
            "{target}"
        );
    }
}

#[test]
fn a_time_before_what_the_archive_shows_of_the_oldest_backup_is_refused_not_guessed() {
    // Expire removed backup A and segments 1-2: commits 100 (@1000) and 101 (@2000) are gone.
    let (backups, mut segments, histories, events) = archive_fixture();
    segments.remove(&(TimelineId(1), 1));
    segments.remove(&(TimelineId(1), 2));
    let kept = &backups[1..];
    let archive = archive_over(kept, &segments, &histories, &events);
    let on_one = TimelineChoice::Exact(TimelineId(1));
    // At 1500 commit 101 (@2000) is not yet made, but backup B's state holds it: recovering
    // from B would stop before 102 (@3000) and hand back 101. Refused, naming where the
    // window starts.
    assert_eq!(
        plan(&archive, &request(at_time(1500), true, on_one))
            .unwrap_err()
            .to_string(),
        "no backup ends before the target: the earliest point a restore can reach is the end of backup B at 0/300100"
    );
    // From the first commit the archive shows after the missing WAL on, it plans as before.
    let plan = plan(&archive, &request(at_time(3500), true, on_one)).unwrap();
    assert_eq!(plan.backup, "B");
    // With every segment back to the first, the same target is the older backup's to serve.
    let every_segment = archive_fixture().1;
    let all = archive_over(&backups, &every_segment, &histories, &events);
    assert_eq!(
        super::plan(&all, &request(at_time(1500), true, on_one))
            .unwrap()
            .backup,
        "A"
    );
}

#[test]
fn a_switch_inside_a_segment_names_the_older_timelines_copy_and_where_it_comes_from() {
    let (backups, mut segments, mut histories, events) = archive_fixture();
    let size = SegmentSize::new(MIB).unwrap();
    let along_two = request(at_time(4400), true, TimelineChoice::Latest);
    let switches = |segments: &SegmentIndex, partials: &PartialSegments, histories: &Histories| {
        let mut archive = archive_over(&backups, segments, histories, &events);
        archive.partials = partials;
        let planned = plan(&archive, &along_two).unwrap();
        let start = backups
            .iter()
            .find(|b| b.label == planned.backup)
            .unwrap()
            .start;
        planned
            .copies_to_place(start)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    let older = SwitchSegment {
        segment: SegmentName::from_segment_number(TimelineId(1), 4, size),
        switch: Lsn(4 * MIB + 0x100),
        next: TimelineId(2),
        source: CopySource::Archived,
    };
    assert_eq!(switches(&segments, &NO_PARTIALS, &histories), [older]);
    // Along timeline 1 nothing switches.
    let archive = archive_over(&backups, &segments, &histories, &events);
    let on_one = request(at_time(4400), true, TimelineChoice::Exact(TimelineId(1)));
    assert_eq!(plan(&archive, &on_one).unwrap().switch_segments, []);
    // Nor does a restore that stops before the switch segment.
    let before_the_switch = request(at_time(2500), true, TimelineChoice::Latest);
    assert_eq!(
        plan(&archive, &before_the_switch).unwrap().switch_segments,
        []
    );
    // Without the whole copy, the .partial serves; without either, the plan says so.
    segments.remove(&(TimelineId(1), 4));
    let partial = PartialSegments::from([(TimelineId(1), 4)]);
    let source = |partials| switches(&segments, partials, &histories)[0].source;
    assert_eq!(source(&partial), CopySource::Partial);
    assert_eq!(source(&NO_PARTIALS), CopySource::Missing);
    // A switch at a segment boundary leaves nothing of the older timeline in the segment.
    histories.insert(
        TimelineId(2),
        TimelineHistory::parse(TimelineId(2), b"1\t0/400000\tat a boundary\n").unwrap(),
    );
    assert_eq!(switches(&segments, &partial, &histories), []);
}

#[test]
fn a_backup_taken_after_the_switch_needs_no_older_copy() {
    let (mut backups, segments, histories, events) = archive_fixture();
    // Consistent on timeline 2 after its switch, in the switch segment itself.
    backups.push(BackupPoint {
        label: "C".into(),
        timeline: TimelineId(2),
        start: Lsn(4 * MIB + 0x200),
        stop: Lsn(4 * MIB + 0x300),
    });
    let archive = archive_over(&backups, &segments, &histories, &events);
    let planned = plan(
        &archive,
        &request(at_time(4400), true, TimelineChoice::Latest),
    )
    .unwrap();
    assert_eq!(planned.backup, "C");
    assert_eq!(
        planned.copies_to_place(Lsn(4 * MIB + 0x200)),
        Vec::<&SwitchSegment>::new()
    );
    // The older backup B, named with --backup, starts before the switch and needs the copy.
    assert_eq!(planned.copies_to_place(Lsn(3 * MIB + 0x28)).len(), 1);
}
