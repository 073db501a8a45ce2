//! Which backups a retention policy keeps: the decision alone, over labels and stop times, with
//! no I/O. `config` builds the policy from `[retention]`; `lifecycle::expire` acts on the
//! decision.
//!
//! The rules combine as a union: a backup is kept when any rule keeps it, and the newest backup
//! is always kept. "Newest" means last in the order the backups are given in (the catalog's, by
//! stop LSN), so two backups with the same stop time are still told apart; stop times only place
//! a backup in the time window and in calendar periods.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use jiff::civil::Date;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// What a stanza's retention settings keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the newest N backups (N >= 1).
    pub full: Option<u32>,
    /// Keep every backup needed to restore to any instant in the last `time`.
    pub time: Option<Duration>,
    /// Keep the newest backup of each of the newest N calendar periods.
    pub gfs: Gfs,
    /// Which WAL `expire` keeps.
    pub archive: ArchiveRetention,
    /// IANA name of the time zone calendar periods are counted in, e.g. "UTC", "Europe/Berlin".
    pub time_zone: String,
}

/// Grandfather-father-son counts: how many of the newest days, ISO weeks, months and years that
/// hold a backup keep their newest one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gfs {
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
}

impl Gfs {
    /// The names of the periods, as the configuration writes them, in [`KeepRule`] order.
    pub const PERIOD_NAMES: [&str; 4] = ["daily", "weekly", "monthly", "yearly"];

    /// Each period's rule, kind and count, in [`KeepRule`] order.
    fn rules(&self) -> [(KeepRule, Period, Option<u32>); 4] {
        [
            (KeepRule::Daily, Period::Day, self.daily),
            (KeepRule::Weekly, Period::Week, self.weekly),
            (KeepRule::Monthly, Period::Month, self.monthly),
            (KeepRule::Yearly, Period::Year, self.yearly),
        ]
    }
}

/// A kind of calendar period, in the policy's time zone.
#[derive(Clone, Copy, Debug)]
enum Period {
    Day,
    /// An ISO week: weeks start on Monday, and a year's first week is the one with its first
    /// Thursday, so the days around New Year may belong to the other year's week.
    Week,
    Month,
    Year,
}

impl Period {
    /// The period of this kind that `date` falls in, as a key that orders periods in time.
    fn of(self, date: Date) -> (i16, i8, i8) {
        match self {
            Period::Day => (date.year(), date.month(), date.day()),
            Period::Week => {
                let week = date.iso_week_date();
                (week.year(), week.week(), 0)
            }
            Period::Month => (date.year(), date.month(), 0),
            Period::Year => (date.year(), 0, 0),
        }
    }
}

/// Which WAL `expire` keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveRetention {
    /// Only what the kept backups and the time window need.
    #[default]
    Window,
    /// Every WAL file, whatever backups are expired.
    All,
}

impl ArchiveRetention {
    /// Every value, in the order the configuration's errors list them.
    pub const ALL: [ArchiveRetention; 2] = [ArchiveRetention::Window, ArchiveRetention::All];

    /// The value as the configuration writes it.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveRetention::Window => "window",
            ArchiveRetention::All => "all",
        }
    }
}

/// A rule that keeps a backup. The order is the order a backup's rules are listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepRule {
    Newest,
    Full,
    Time,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl KeepRule {
    pub fn name(self) -> &'static str {
        match self {
            KeepRule::Newest => "newest",
            KeepRule::Full => "full",
            KeepRule::Time => "time",
            KeepRule::Daily => "daily",
            KeepRule::Weekly => "weekly",
            KeepRule::Monthly => "monthly",
            KeepRule::Yearly => "yearly",
        }
    }
}

impl fmt::Display for KeepRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the decision needs of a backup.
#[derive(Clone, Copy, Debug)]
pub struct BackupToDecide<'a> {
    pub label: &'a str,
    /// RFC 3339, as in `backup.json`.
    pub stop_time: &'a str,
}

/// What the policy does with one backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub label: String,
    /// Every rule that keeps it, in [`KeepRule`] order; empty when it is expired.
    pub kept_by: Vec<KeepRule>,
}

impl Decision {
    pub fn expired(&self) -> bool {
        self.kept_by.is_empty()
    }
}

/// Decides, for each of `backups` (oldest first, as `list_backups` gives them), which rules of
/// `policy` keep it at `now`: one decision each, in the same order.
pub fn decide(
    policy: &RetentionPolicy,
    backups: &[BackupToDecide<'_>],
    now: SystemTime,
) -> anyhow::Result<Vec<Decision>> {
    let zone = time_zone(&policy.time_zone).context("retention time_zone")?;
    let stops = backups
        .iter()
        .map(stop_time)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = Timestamp::try_from(now).context("read the clock as a timestamp")?;
    let mut kept_by = vec![Vec::new(); backups.len()];
    for (rule, kept) in each_rule_keeps(policy, &stops, &zone, now) {
        for index in kept {
            kept_by[index].push(rule);
        }
    }
    Ok(backups
        .iter()
        .zip(kept_by)
        .map(|(backup, kept_by)| Decision {
            label: backup.label.to_owned(),
            kept_by,
        })
        .collect())
}

/// The time zone named `name` (IANA, any case): from the system's database (`TZDIR`, else
/// `/usr/share/zoneinfo`), else from the one built into Tidemark, so a machine without tzdata
/// decides the same. "UTC" needs neither.
pub fn time_zone(name: &str) -> anyhow::Result<TimeZone> {
    if name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    jiff::tz::db()
        .get(name)
        .or_else(|_| TimeZoneDatabase::bundled().get(name))
        .map_err(|_| unknown_time_zone(name))
}

/// The canonical name of the time zone `name` names, checked against the database built into
/// Tidemark only: no file is read, so loading a configuration stays cheap for `archive_command`.
/// Every name it accepts, [`time_zone`] finds.
pub fn known_time_zone_name(name: &str) -> anyhow::Result<String> {
    let zone = TimeZoneDatabase::bundled()
        .get(name)
        .map_err(|_| unknown_time_zone(name))?;
    Ok(zone.iana_name().unwrap_or(name).to_owned())
}

fn unknown_time_zone(name: &str) -> anyhow::Error {
    anyhow!(
        "{name:?} is not a known IANA time zone: write a name such as \"UTC\" or \"Europe/Berlin\""
    )
}

fn stop_time(backup: &BackupToDecide<'_>) -> anyhow::Result<Timestamp> {
    backup.stop_time.parse().map_err(|_| {
        anyhow!(
            "backup {} has stop_time {:?}, which is not an RFC 3339 time such as \"2026-01-02T03:04:05Z\": its backup.json is damaged; repair or remove that record",
            backup.label,
            backup.stop_time
        )
    })
}

/// Each rule the policy has, in [`KeepRule`] order, with the indices of the backups it keeps.
fn each_rule_keeps(
    policy: &RetentionPolicy,
    stops: &[Timestamp],
    zone: &TimeZone,
    now: Timestamp,
) -> Vec<(KeepRule, Vec<usize>)> {
    let count = stops.len();
    let mut rules = vec![(KeepRule::Newest, newest(count, 1))];
    if let Some(full) = policy.full {
        rules.push((KeepRule::Full, newest(count, full)));
    }
    if let Some(time) = policy.time {
        rules.push((KeepRule::Time, within_window(stops, now, time)));
    }
    let dates: Vec<Date> = stops.iter().map(|t| zone.to_datetime(*t).date()).collect();
    for (rule, period, count) in policy.gfs.rules() {
        if let Some(count) = count {
            rules.push((rule, newest_of_periods(&dates, period, count)));
        }
    }
    rules
}

/// The newest `keep` of `count` backups.
fn newest(count: usize, keep: u32) -> Vec<usize> {
    (count.saturating_sub(keep as usize)..count).collect()
}

/// Every backup that stopped at or after `now - window`, and the newest that stopped before it:
/// restoring to an instant just after the boundary starts from that one.
fn within_window(stops: &[Timestamp], now: Timestamp, window: Duration) -> Vec<usize> {
    // A window reaching before the earliest time there is keeps everything.
    let boundary = SignedDuration::try_from(window)
        .ok()
        .and_then(|window| now.checked_sub(window).ok())
        .unwrap_or(Timestamp::MIN);
    let before = stops.iter().rposition(|stop| *stop < boundary);
    (0..stops.len())
        .filter(|&i| stops[i] >= boundary || Some(i) == before)
        .collect()
}

/// The newest backup of each of the newest `count` periods of kind `period` that hold a backup,
/// as restic's `--keep-daily` and the like count them.
fn newest_of_periods(dates: &[Date], period: Period, count: u32) -> Vec<usize> {
    let mut newest_in = BTreeMap::new();
    for (index, date) in dates.iter().enumerate() {
        // Later in the list is newer, so the last one seen in a period is its newest.
        newest_in.insert(period.of(*date), index);
    }
    let mut kept: Vec<usize> = newest_in
        .values()
        .rev()
        .take(count as usize)
        .copied()
        .collect();
    kept.sort_unstable();
    kept
}

#[cfg(test)]
mod tests;
