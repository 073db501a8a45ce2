//! `[retention]` and `[stanza.NAME.retention]` checked: each key's value made a setting, or one
//! line naming the key (`retention.full`, `stanza.main.retention.time`) and what to write
//! instead; and a stanza's policy made of its own section over the repository-wide one, key by
//! key.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::schema::{RetentionConfig, WrittenDuration};
use crate::repo::retention::{ArchiveRetention, Gfs, RetentionPolicy, known_time_zone_name};

/// One section's settings, checked; `None` for each key it leaves out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RetentionSettings {
    full: Option<u32>,
    time: Option<Duration>,
    /// `gfs` is one key: a stanza's table replaces the default's whole.
    gfs: Option<Gfs>,
    archive: Option<ArchiveRetention>,
    time_zone: Option<String>,
}

impl RetentionConfig {
    /// This section's settings, or its first mistake; `section` is its dotted name (`retention`,
    /// `stanza.main.retention`), which every error starts with.
    pub(super) fn settings(&self, section: &str) -> anyhow::Result<RetentionSettings> {
        Ok(RetentionSettings {
            full: self
                .full
                .map(|full| count(&format!("{section}.full"), full, "full = 4"))
                .transpose()?,
            time: self
                .time
                .as_ref()
                .map(|time| window(section, time))
                .transpose()?,
            gfs: self
                .gfs
                .as_ref()
                .map(|periods| gfs(section, periods))
                .transpose()?,
            archive: self
                .archive
                .as_deref()
                .map(|archive| archive_retention(section, archive))
                .transpose()?,
            time_zone: self
                .time_zone
                .as_deref()
                .map(|name| {
                    known_time_zone_name(name).map_err(|e| anyhow!("{section}.time_zone {e}"))
                })
                .transpose()?,
        })
    }
}

impl RetentionSettings {
    /// These settings, with `default`'s for each key these leave out.
    pub(super) fn over(self, default: RetentionSettings) -> RetentionSettings {
        RetentionSettings {
            full: self.full.or(default.full),
            time: self.time.or(default.time),
            gfs: self.gfs.or(default.gfs),
            archive: self.archive.or(default.archive),
            time_zone: self.time_zone.or(default.time_zone),
        }
    }

    /// The policy these settings make, or `None` when they set no rule (`full`, `time`, `gfs`):
    /// `archive` and `time_zone` alone keep nothing.
    pub(super) fn policy(self) -> Option<RetentionPolicy> {
        if self.full.is_none() && self.time.is_none() && self.gfs.is_none() {
            return None;
        }
        Some(RetentionPolicy {
            full: self.full,
            time: self.time,
            gfs: self.gfs.unwrap_or_default(),
            archive: self.archive.unwrap_or_default(),
            time_zone: self.time_zone.unwrap_or_else(|| "UTC".to_owned()),
        })
    }
}

/// A count of backups or periods to keep: 1 or more.
fn count(key: &str, value: i64, example: &str) -> anyhow::Result<u32> {
    if value < 1 {
        bail!("{key} {value} is out of range: use 1 or more, e.g. {example}");
    }
    u32::try_from(value)
        .map_err(|_| anyhow!("{key} {value} is out of range: use at most {}", u32::MAX))
}

/// `gfs = { daily = 7, ... }`: a count for each period named, and no other name.
fn gfs(section: &str, periods: &BTreeMap<String, i64>) -> anyhow::Result<Gfs> {
    if periods.is_empty() {
        bail!(
            "{section}.gfs names no period: write e.g. gfs = {{ daily = 7, weekly = 4, monthly = 12, yearly = 3 }}, or remove gfs"
        );
    }
    let mut gfs = Gfs::default();
    for (name, value) in periods {
        let (slot, example) = match name.as_str() {
            "daily" => (&mut gfs.daily, "daily = 7"),
            "weekly" => (&mut gfs.weekly, "weekly = 4"),
            "monthly" => (&mut gfs.monthly, "monthly = 12"),
            "yearly" => (&mut gfs.yearly, "yearly = 3"),
            _ => bail!(
                "{section}.gfs.{name} is not a period: use {}",
                Gfs::PERIOD_NAMES.join(", ")
            ),
        };
        *slot = Some(count(&format!("{section}.gfs.{name}"), *value, example)?);
    }
    Ok(gfs)
}

fn archive_retention(section: &str, text: &str) -> anyhow::Result<ArchiveRetention> {
    ArchiveRetention::ALL
        .into_iter()
        .find(|archive| archive.name() == text)
        .ok_or_else(|| {
            anyhow!(
                "{section}.archive {text:?} is not one of \"window\", \"all\": write \"window\" to keep the WAL that kept backups need, or \"all\" to keep every WAL file"
            )
        })
}

fn window(section: &str, written: &WrittenDuration) -> anyhow::Result<Duration> {
    parse_duration(&written.0).map_err(|problem| {
        anyhow!(
            "{section}.time {:?} {problem}: write a whole number and one of s, m, h, d, w, such as \"35d\"",
            written.0
        )
    })
}

/// The units `time` may be written in, with their lengths in seconds. A day is 24 hours, even
/// across a change of daylight saving time; months and years, of varying length, are not units.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("s", 1),
    ("m", 60),
    ("h", 60 * 60),
    ("d", 24 * 60 * 60),
    ("w", 7 * 24 * 60 * 60),
];

/// `"35d"`: a whole number above zero and a unit; else what is wrong with it.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err("is negative".to_owned());
    }
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err("does not start with a number".to_owned());
    }
    if unit.starts_with(['.', ',']) {
        return Err("is not a whole number".to_owned());
    }
    if unit.is_empty() {
        return Err("has no unit".to_owned());
    }
    let (_, seconds) = DURATION_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(|| format!("has an unknown unit {unit:?}"))?;
    match number.parse::<u64>().ok().map(|n| n.checked_mul(*seconds)) {
        Some(Some(0)) => Err("is zero".to_owned()),
        Some(Some(total)) => Ok(Duration::from_secs(total)),
        _ => Err("is too long".to_owned()),
    }
}
