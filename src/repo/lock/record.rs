//! What a lock object says — its kind, its holder (host, process ID and that process's start
//! time), when it was taken and last renewed — how its key is named, and whether its holder is
//! still alive.

use std::fmt;
use std::io;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the lock object format.
pub const LOCK_FORMAT: u32 = 1;

/// How often a holder stores a renewed lock object.
pub const RENEW_EVERY: Duration = Duration::from_secs(60);

/// How long a lock of another host stays live without being renewed: ten renewals missed.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// What a lock is held for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// A backup is writing (and reusing) chunks its record does not list yet.
    Backup,
    /// An expire is deleting backups, WAL and chunks.
    Expire,
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockKind::Backup => "backup",
            LockKind::Expire => "expire",
        })
    }
}

/// The content of a lock object (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub format: u32,
    pub kind: LockKind,
    /// The holder's host, as `storage::durable::host_name` gives it.
    pub host: String,
    pub pid: u32,
    /// When the holder process started, in clock ticks after boot (field 22 of
    /// `/proc/<pid>/stat`): a process that later gets the same ID has another start time.
    pub pid_start: u64,
    /// RFC 3339.
    pub taken: String,
    /// RFC 3339; the time the holder stored this renewal.
    pub renewed: String,
}

impl LockRecord {
    /// A new lock of `kind` for the process `pid` of this host, taken and renewed `now`.
    pub fn for_process(kind: LockKind, pid: u32, now: SystemTime) -> anyhow::Result<LockRecord> {
        let pid_start = process_start_time(pid)
            .with_context(|| format!("read the start time of process {pid}"))?
            .with_context(|| format!("read the start time of process {pid}: it does not run"))?;
        let now = rfc3339(now);
        Ok(LockRecord {
            format: LOCK_FORMAT,
            kind,
            host: crate::storage::durable::host_name().to_owned(),
            pid,
            pid_start,
            taken: now.clone(),
            renewed: now,
        })
    }

    /// The lock's name, which every renewal's key shares: `<kind>-<host>-<pid>-<nanos>`, with
    /// the instant it was taken in nanoseconds since 1970, so that two locks never share one.
    pub fn name(&self) -> anyhow::Result<String> {
        let taken = parse_time(&self.taken)?;
        let nanos = taken.timestamp_nanos_opt().unwrap_or_default();
        Ok(format!("{}-{}-{}-{nanos}", self.kind, self.host, self.pid))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a lock record serializes")
    }

    pub fn from_json(bytes: &[u8]) -> anyhow::Result<LockRecord> {
        let record: LockRecord = serde_json::from_slice(bytes)?;
        if record.format != LOCK_FORMAT {
            anyhow::bail!(
                "lock format {} is not known to this version of Tidemark (it writes {LOCK_FORMAT})",
                record.format
            );
        }
        parse_time(&record.taken)?;
        parse_time(&record.renewed)?;
        Ok(record)
    }

    /// The holder and since when, for messages: "host db1, pid 4242, since 2026-…".
    pub fn holder(&self) -> String {
        format!("host {}, pid {}, since {}", self.host, self.pid, self.taken)
    }
}

/// A time as lock objects write it: RFC 3339, UTC, to the nanosecond.
pub fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A time a lock object wrote.
pub fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("'{text}' is not an RFC 3339 time"))?
        .with_timezone(&Utc))
}

/// Splits a lock object's file name `<name>.<seq>` into the lock's name and the renewal's
/// sequence number; `None` for a name that is not a lock's.
pub fn split_file_name(file_name: &str) -> Option<(&str, u64)> {
    let (name, seq) = file_name.rsplit_once('.')?;
    let kind_known = name.starts_with("backup-") || name.starts_with("expire-");
    let seq = seq
        .parse()
        .ok()
        .filter(|_| seq.bytes().all(|b| b.is_ascii_digit()))?;
    kind_known.then_some((name, seq))
}

/// Whether a lock's holder is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Live,
    /// The holder is gone; why we know.
    Stale(String),
}

/// Whether the holder of `record` is alive, seen from host `this_host` at `now`: on its own
/// host, when its process still runs (same ID, same start time); on another host, when it
/// renewed the lock less than [`STALE_AFTER`] ago.
pub fn liveness(record: &LockRecord, this_host: &str, now: SystemTime) -> anyhow::Result<Liveness> {
    if record.host == this_host {
        let pid = record.pid;
        return Ok(match process_start_time(pid) {
            Ok(Some(start)) if start == record.pid_start => Liveness::Live,
            Ok(Some(_)) => Liveness::Stale(format!(
                "process {pid} of this host is another process than the one that took it"
            )),
            Ok(None) => Liveness::Stale(format!("process {pid} of this host no longer runs")),
            // Unreadable but present: the holder may well run, so the lock is kept.
            Err(_) => Liveness::Live,
        });
    }
    let renewed = parse_time(&record.renewed)?;
    let age = DateTime::<Utc>::from(now)
        .signed_duration_since(renewed)
        .to_std()
        .unwrap_or(Duration::ZERO);
    Ok(if age < STALE_AFTER {
        Liveness::Live
    } else {
        Liveness::Stale(format!(
            "host {} has not renewed it for {} min",
            record.host,
            age.as_secs() / 60
        ))
    })
}

/// When process `pid` of this host started, in clock ticks after boot; `None` if it does not
/// run.
pub fn process_start_time(pid: u32) -> io::Result<Option<u64>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so fields are counted
    // after its last ')'. The start time is field 22; the state, field 3, is the first there.
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let start = after_comm
        .split_whitespace()
        .nth(22 - 3)
        .and_then(|field| field.parse().ok());
    match start {
        Some(start) => Ok(Some(start)),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has no start time: {stat:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, pid: u32, pid_start: u64, renewed: SystemTime) -> LockRecord {
        LockRecord {
            format: LOCK_FORMAT,
            kind: LockKind::Expire,
            host: host.to_owned(),
            pid,
            pid_start,
            taken: rfc3339(renewed),
            renewed: rfc3339(renewed),
        }
    }

    use crate::storage::durable::tests::pid_of_an_exited_process as dead_pid;

    #[test]
    fn a_lock_of_this_host_is_live_while_its_process_runs() {
        let host = crate::storage::durable::host_name();
        let now = SystemTime::now();
        let me = LockRecord::for_process(LockKind::Backup, std::process::id(), now).unwrap();
        assert_eq!(liveness(&me, host, now).unwrap(), Liveness::Live);

        let dead = dead_pid();
        let gone = record(host, dead, me.pid_start, now);
        assert_eq!(
            liveness(&gone, host, now).unwrap(),
            Liveness::Stale(format!("process {dead} of this host no longer runs"))
        );
    }

    #[test]
    fn a_reused_process_id_does_not_keep_a_lock_live() {
        let host = crate::storage::durable::host_name();
        let now = SystemTime::now();
        let me = LockRecord::for_process(LockKind::Backup, std::process::id(), now).unwrap();
        let reused = LockRecord {
            pid_start: me.pid_start + 1,
            ..me
        };
        assert!(matches!(
            liveness(&reused, host, now).unwrap(),
            Liveness::Stale(why) if why.contains("another process")
        ));
    }

    #[test]
    fn a_lock_of_another_host_is_live_until_ten_minutes_without_renewal() {
        let renewed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // The process ID is ours: on another host it says nothing.
        let other = record("elsewhere", std::process::id(), 1, renewed);
        let at = |secs| renewed + Duration::from_secs(secs);
        assert_eq!(liveness(&other, "here", at(0)).unwrap(), Liveness::Live);
        assert_eq!(liveness(&other, "here", at(599)).unwrap(), Liveness::Live);
        assert_eq!(
            liveness(&other, "here", at(600)).unwrap(),
            Liveness::Stale("host elsewhere has not renewed it for 10 min".into())
        );
        // A clock behind the holder's sees a renewal from the future: live.
        let before = renewed - Duration::from_secs(30);
        assert_eq!(liveness(&other, "here", before).unwrap(), Liveness::Live);
    }

    #[test]
    fn names_carry_kind_holder_and_instant_and_split_from_their_sequence() {
        let taken = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 5);
        let lock = record("db-1", 42, 7, taken);
        let name = lock.name().unwrap();
        assert_eq!(name, "expire-db-1-42-1800000000000000005");
        let file = format!("{name}.12");
        assert_eq!(split_file_name(&file), Some((name.as_str(), 12)));
        for bad in [
            "expire-x",
            "other-a-1-2.0",
            "backup-a-1-2.x",
            "backup-a-1-2.+1",
        ] {
            assert_eq!(split_file_name(bad), None, "{bad}");
        }
        assert_eq!(LockRecord::from_json(&lock.to_json()).unwrap(), lock);
    }

    #[test]
    fn the_start_time_of_a_process_comes_from_proc() {
        let mine = process_start_time(std::process::id()).unwrap().unwrap();
        assert!(mine > 0);
        assert_eq!(process_start_time(dead_pid()).unwrap(), None);
    }
}
