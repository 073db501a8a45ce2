//! The retention decision, table by table: each rule alone, unions, calendar boundaries, ISO
//! weeks across a year end, time zones and DST days, the time window's edges, equal stop times,
//! and the errors.

use std::time::{Duration, SystemTime};

use super::*;

/// A policy with no rule: only the newest backup is kept.
fn no_rules() -> RetentionPolicy {
    RetentionPolicy {
        full: None,
        time: None,
        gfs: Gfs::default(),
        archive: ArchiveRetention::Window,
        time_zone: "UTC".to_owned(),
    }
}

fn in_zone(time_zone: &str, policy: RetentionPolicy) -> RetentionPolicy {
    RetentionPolicy {
        time_zone: time_zone.to_owned(),
        ..policy
    }
}

fn gfs(
    daily: Option<u32>,
    weekly: Option<u32>,
    monthly: Option<u32>,
    yearly: Option<u32>,
) -> RetentionPolicy {
    RetentionPolicy {
        gfs: Gfs {
            daily,
            weekly,
            monthly,
            yearly,
        },
        ..no_rules()
    }
}

const DAY: Duration = Duration::from_secs(86_400);

fn instant(rfc3339: &str) -> SystemTime {
    SystemTime::try_from(rfc3339.parse::<Timestamp>().unwrap()).unwrap()
}

/// One table row: a policy, the time it is applied at, and each backup's stop time (oldest
/// first) with the rules that must keep it, comma-separated ("" when it must be expired).
struct Case {
    name: &'static str,
    policy: RetentionPolicy,
    now: &'static str,
    backups: Vec<(&'static str, &'static str)>,
}

impl Case {
    fn check(&self) {
        let labels: Vec<String> = (0..self.backups.len()).map(|i| format!("b{i}")).collect();
        let backups: Vec<BackupToDecide<'_>> = self
            .backups
            .iter()
            .zip(&labels)
            .map(|((stop_time, _), label)| BackupToDecide { label, stop_time })
            .collect();
        let decisions = decide(&self.policy, &backups, instant(self.now)).unwrap();
        let got: Vec<String> = decisions.iter().map(rules_text).collect();
        let expected: Vec<&str> = self.backups.iter().map(|(_, rules)| *rules).collect();
        assert_eq!(got, expected, "case {:?}", self.name);
        assert_eq!(
            decisions
                .iter()
                .map(|d| d.label.as_str())
                .collect::<Vec<_>>(),
            labels,
            "case {:?}: one decision per backup, in order",
            self.name
        );
    }
}

fn rules_text(decision: &Decision) -> String {
    let names: Vec<&str> = decision.kept_by.iter().map(|rule| rule.name()).collect();
    assert_eq!(decision.expired(), names.is_empty());
    names.join(",")
}

const NOW: &str = "2026-03-10T12:00:00Z";

#[test]
fn each_rule_alone_keeps_what_it_says() {
    let cases = [
        Case {
            name: "no rule: the newest only",
            policy: no_rules(),
            now: NOW,
            backups: vec![
                ("2026-03-01T00:00:00Z", ""),
                ("2026-03-02T00:00:00Z", ""),
                ("2026-03-03T00:00:00Z", "newest"),
            ],
        },
        Case {
            name: "full = 2 of 4",
            policy: RetentionPolicy {
                full: Some(2),
                ..no_rules()
            },
            now: NOW,
            backups: vec![
                ("2026-03-01T00:00:00Z", ""),
                ("2026-03-02T00:00:00Z", ""),
                ("2026-03-03T00:00:00Z", "full"),
                ("2026-03-04T00:00:00Z", "newest,full"),
            ],
        },
        Case {
            name: "full = 10 of 2",
            policy: RetentionPolicy {
                full: Some(10),
                ..no_rules()
            },
            now: NOW,
            backups: vec![
                ("2026-03-01T00:00:00Z", "full"),
                ("2026-03-02T00:00:00Z", "newest,full"),
            ],
        },
        Case {
            name: "daily = 3: two backups on one day count one day, its newest kept",
            policy: gfs(Some(3), None, None, None),
            now: NOW,
            backups: vec![
                ("2026-03-01T10:00:00Z", ""),
                ("2026-03-02T01:00:00Z", ""),
                ("2026-03-02T23:00:00Z", "daily"),
                ("2026-03-04T05:00:00Z", "daily"),
                ("2026-03-05T00:00:00Z", "newest,daily"),
            ],
        },
        Case {
            name: "weekly = 2",
            policy: gfs(None, Some(2), None, None),
            now: NOW,
            backups: vec![
                ("2026-02-20T00:00:00Z", ""),
                ("2026-02-23T00:00:00Z", ""),
                ("2026-03-01T23:59:59Z", "weekly"),
                ("2026-03-02T00:00:00Z", "newest,weekly"),
            ],
        },
        Case {
            name: "monthly = 2, across a month boundary to the second",
            policy: gfs(None, None, Some(2), None),
            now: NOW,
            backups: vec![
                ("2026-01-31T23:59:59Z", ""),
                ("2026-02-01T00:00:00Z", ""),
                ("2026-02-15T00:00:00Z", "monthly"),
                ("2026-03-01T00:00:00Z", "newest,monthly"),
            ],
        },
        Case {
            name: "yearly = 2, across a year boundary to the second",
            policy: gfs(None, None, None, Some(2)),
            now: NOW,
            backups: vec![
                ("2024-06-01T00:00:00Z", ""),
                ("2025-12-31T23:59:59Z", "yearly"),
                ("2026-01-01T00:00:00Z", ""),
                ("2026-03-01T00:00:00Z", "newest,yearly"),
            ],
        },
        Case {
            name: "gfs counts only periods that hold a backup",
            policy: gfs(Some(2), None, Some(3), None),
            now: NOW,
            backups: vec![
                ("2025-09-15T00:00:00Z", ""),
                ("2025-10-15T00:00:00Z", "monthly"),
                ("2026-01-20T00:00:00Z", "daily,monthly"),
                ("2026-03-09T00:00:00Z", "newest,daily,monthly"),
            ],
        },
    ];
    cases.iter().for_each(Case::check);
}

#[test]
fn the_time_window_keeps_what_restores_to_any_instant_in_it() {
    let one_day = RetentionPolicy {
        time: Some(DAY),
        ..no_rules()
    };
    let cases = [
        Case {
            name: "backups on both sides of the boundary (2026-03-09T12:00:00Z)",
            policy: one_day.clone(),
            now: NOW,
            backups: vec![
                ("2026-03-08T12:00:00Z", ""),
                ("2026-03-09T06:00:00Z", "time"),
                ("2026-03-09T12:00:00Z", "time"),
                ("2026-03-10T01:00:00Z", "newest,time"),
            ],
        },
        Case {
            name: "just before the boundary is the one restores just after it start from",
            policy: one_day.clone(),
            now: NOW,
            backups: vec![
                ("2026-03-09T11:59:58Z", ""),
                ("2026-03-09T11:59:59Z", "time"),
                ("2026-03-10T00:00:00Z", "newest,time"),
            ],
        },
        Case {
            name: "every backup before the window: the newest still restores into it",
            policy: one_day.clone(),
            now: NOW,
            backups: vec![
                ("2026-03-01T00:00:00Z", ""),
                ("2026-03-02T00:00:00Z", "newest,time"),
            ],
        },
        Case {
            name: "every backup in the window",
            policy: one_day,
            now: NOW,
            backups: vec![
                ("2026-03-09T13:00:00Z", "time"),
                ("2026-03-10T11:00:00Z", "newest,time"),
            ],
        },
        Case {
            name: "a window longer than time itself keeps everything",
            policy: RetentionPolicy {
                time: Some(Duration::from_secs(u64::MAX)),
                ..no_rules()
            },
            now: NOW,
            backups: vec![
                ("2000-01-01T00:00:00Z", "time"),
                ("2026-03-10T00:00:00Z", "newest,time"),
            ],
        },
    ];
    cases.iter().for_each(Case::check);
}

#[test]
fn rules_combine_as_a_union_listed_in_rule_order() {
    let policy = RetentionPolicy {
        full: Some(2),
        time: Some(2 * DAY),
        gfs: Gfs {
            daily: Some(3),
            weekly: Some(3),
            monthly: Some(2),
            yearly: Some(2),
        },
        ..no_rules()
    };
    // The window starts at 2026-03-08T12:00:00Z; ISO weeks 9, 10 and 11 of 2026 start on
    // 02-23, 03-02 and 03-09.
    Case {
        name: "full, time and every gfs period",
        policy,
        now: NOW,
        backups: vec![
            ("2025-06-01T00:00:00Z", "yearly"),
            ("2026-01-10T00:00:00Z", ""),
            ("2026-02-27T00:00:00Z", "monthly"),
            ("2026-03-01T00:00:00Z", "weekly"),
            ("2026-03-07T00:00:00Z", "time,daily,weekly"),
            ("2026-03-09T00:00:00Z", "time"),
            ("2026-03-09T18:00:00Z", "full,time,daily"),
            (
                "2026-03-10T06:00:00Z",
                "newest,full,time,daily,weekly,monthly,yearly",
            ),
        ],
    }
    .check();
}

#[test]
fn iso_weeks_run_across_the_year_end() {
    let cases = [
        Case {
            // 2027-01-01 to 03 are in week 53 of 2026; 2027-01-04 starts week 1 of 2027.
            name: "early January in the old year's week 53",
            policy: gfs(None, Some(3), None, None),
            now: "2027-01-05T00:00:00Z",
            backups: vec![
                ("2026-12-27T12:00:00Z", "weekly"),
                ("2026-12-28T12:00:00Z", ""),
                ("2027-01-03T12:00:00Z", "weekly"),
                ("2027-01-04T12:00:00Z", "newest,weekly"),
            ],
        },
        Case {
            // 2025-12-29 is the Monday of week 1 of 2026: three weeks hold backups, not four.
            name: "late December in the new year's week 1",
            policy: gfs(None, Some(4), None, None),
            now: "2026-01-05T00:00:00Z",
            backups: vec![
                ("2025-12-21T12:00:00Z", "weekly"),
                ("2025-12-28T12:00:00Z", "weekly"),
                ("2025-12-29T12:00:00Z", ""),
                ("2026-01-04T12:00:00Z", "newest,weekly"),
            ],
        },
    ];
    cases.iter().for_each(Case::check);
}

#[test]
fn periods_are_counted_in_the_configured_time_zone() {
    // 2026-12-31T23:30:00Z is 2027-01-01 00:30 in Berlin: another day, month and year, but the
    // same ISO week (2026-W53).
    let backups = |new_year: &'static str| {
        vec![
            ("2026-12-31T22:30:00Z", new_year),
            ("2026-12-31T23:30:00Z", "newest,daily,weekly,monthly,yearly"),
        ]
    };
    let every_period = gfs(Some(2), Some(2), Some(2), Some(2));
    let cases = [
        Case {
            name: "UTC: one day, one month, one year",
            policy: every_period.clone(),
            now: "2027-01-02T00:00:00Z",
            backups: backups(""),
        },
        Case {
            name: "Europe/Berlin: the second backup is in 2027",
            policy: in_zone("Europe/Berlin", every_period.clone()),
            now: "2027-01-02T00:00:00Z",
            backups: backups("daily,monthly,yearly"),
        },
        Case {
            name: "a stop time written with an offset is the same instant",
            policy: in_zone("Europe/Berlin", every_period),
            now: "2027-01-02T00:00:00Z",
            backups: vec![
                ("2026-12-31T23:30:00+01:00", "daily,monthly,yearly"),
                (
                    "2027-01-01T00:30:00.000001+01:00",
                    "newest,daily,weekly,monthly,yearly",
                ),
            ],
        },
    ];
    cases.iter().for_each(Case::check);
}

#[test]
fn a_dst_change_day_is_one_day() {
    let daily = |days| in_zone("Europe/Berlin", gfs(Some(days), None, None, None));
    let cases = [
        Case {
            // Clocks go from 02:00 CET to 03:00 CEST: 2026-03-29 in Berlin is 23 hours long,
            // from 2026-03-28T23:00Z to 2026-03-29T22:00Z.
            name: "spring forward",
            policy: daily(2),
            now: "2026-03-31T00:00:00Z",
            backups: vec![
                ("2026-03-28T22:30:00Z", ""),
                ("2026-03-28T23:30:00Z", ""),
                ("2026-03-29T21:59:00Z", "daily"),
                ("2026-03-29T22:30:00Z", "newest,daily"),
            ],
        },
        Case {
            name: "spring forward, counted in UTC instead",
            policy: gfs(Some(2), None, None, None),
            now: "2026-03-31T00:00:00Z",
            backups: vec![
                ("2026-03-28T22:30:00Z", ""),
                ("2026-03-28T23:30:00Z", "daily"),
                ("2026-03-29T21:59:00Z", ""),
                ("2026-03-29T22:30:00Z", "newest,daily"),
            ],
        },
        Case {
            // Clocks go from 03:00 CEST back to 02:00 CET: 2026-10-25 in Berlin is 25 hours
            // long, from 2026-10-24T22:00Z to 2026-10-25T23:00Z.
            name: "fall back",
            policy: daily(3),
            now: "2026-10-27T00:00:00Z",
            backups: vec![
                ("2026-10-24T21:30:00Z", "daily"),
                ("2026-10-24T22:30:00Z", ""),
                ("2026-10-25T22:30:00Z", "daily"),
                ("2026-10-25T23:30:00Z", "newest,daily"),
            ],
        },
    ];
    cases.iter().for_each(Case::check);
}

#[test]
fn equal_stop_times_are_ordered_as_given() {
    let cases = [
        Case {
            name: "the last given is the newest",
            policy: RetentionPolicy {
                full: Some(2),
                ..gfs(Some(1), None, None, None)
            },
            now: NOW,
            backups: vec![
                ("2026-03-05T00:00:00Z", ""),
                ("2026-03-05T00:00:00Z", "full"),
                ("2026-03-05T00:00:00Z", "newest,full,daily"),
            ],
        },
        Case {
            name: "the newest before the window is the last given",
            policy: RetentionPolicy {
                time: Some(DAY),
                ..no_rules()
            },
            now: NOW,
            backups: vec![
                ("2026-03-05T00:00:00Z", ""),
                ("2026-03-05T00:00:00Z", "time"),
                ("2026-03-10T00:00:00Z", "newest,time"),
            ],
        },
    ];
    cases.iter().for_each(Case::check);
}

#[test]
fn no_backups_no_decisions() {
    let decisions = decide(&gfs(Some(7), None, None, None), &[], instant(NOW)).unwrap();
    assert!(decisions.is_empty());
}

#[test]
fn a_stop_time_that_does_not_parse_names_the_backup() {
    let backups = [
        BackupToDecide {
            label: "20260301T000000",
            stop_time: "2026-03-01T00:00:00Z",
        },
        BackupToDecide {
            label: "20260302T000000",
            stop_time: "2026-03-02 00:00",
        },
    ];
    let error = decide(&no_rules(), &backups, instant(NOW)).unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        "backup 20260302T000000 has stop_time \"2026-03-02 00:00\", which is not an RFC 3339 time such as \"2026-01-02T03:04:05Z\": its backup.json is damaged; repair or remove that record"
    );
}

#[test]
fn an_unknown_time_zone_is_refused() {
    let policy = in_zone("Mars/Olympus_Mons", no_rules());
    let error = decide(&policy, &[], instant(NOW)).unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        "retention time_zone: \"Mars/Olympus_Mons\" is not a known IANA time zone: write a name such as \"UTC\" or \"Europe/Berlin\""
    );
}

#[test]
fn time_zone_names_are_found_in_any_case_and_given_canonically() {
    assert_eq!(
        known_time_zone_name("europe/berlin").unwrap(),
        "Europe/Berlin"
    );
    assert_eq!(known_time_zone_name("UTC").unwrap(), "UTC");
    time_zone("America/New_York").unwrap();
    known_time_zone_name("Mars/Olympus_Mons").unwrap_err();
}

#[test]
fn rules_and_decisions_read_as_lowercase_names() {
    assert_eq!(KeepRule::Weekly.to_string(), "weekly");
    let decision = Decision {
        label: "b".to_owned(),
        kept_by: vec![KeepRule::Newest, KeepRule::Full],
    };
    assert_eq!(
        serde_json::to_string(&decision).unwrap(),
        r#"{"label":"b","kept_by":["newest","full"]}"#
    );
    assert_eq!(
        serde_json::to_string(&ArchiveRetention::All).unwrap(),
        "\"all\""
    );
}
