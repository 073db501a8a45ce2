//! Planned parallel prefetch for `tidemark-restore`: while PostgreSQL replays one segment, a
//! background fetcher fetches, verifies and decompresses the next ones into a spool beside
//! `pg_wal`, so that the calls that follow only rename a file.
//!
//! The calls and the fetcher meet in `pg_wal/.tidemark/restore/<stanza>/`:
//! * `position` names the last segment PostgreSQL asked for; the fetcher keeps the segments
//!   after it ready, and removes every other;
//! * `plan` lists the segments `tidemark restore` planned, in the order recovery reads them,
//!   timeline switches included; without it (or past its end) the fetcher takes the next names
//!   on the timeline of `position`;
//! * `<segment>` is a verified, decompressed segment and `<segment>.sum` its length and the
//!   CRC-32C the repository recorded for it, written after it. A call claims the segment by
//!   renaming it, checks it against the sum once more, and only then renames it to `%p`: a
//!   segment damaged on disk, cut short by a crash, or left from another cluster is never handed
//!   over;
//! * `<segment>.fetching` marks a fetch under way, so a call waits for it rather than fetching
//!   the same segment again;
//! * `fetcher.lock` is held (`flock`) by the one fetcher of the spool while it runs.
//!
//! The spool is bounded: it never holds more than `[restore] prefetch` segments, those being
//! fetched counted, plus the one a call is handing over; and a segment is fetched only while
//! the file system keeps a reserve free after it (see `space`). The fetcher runs as long as
//! the recovery: when PostgreSQL asks for nothing new for a while (a replay pause,
//! `recovery_min_apply_delay`, a standby streaming) it stops fetching but keeps what it
//! fetched for the calls to come; once recovery is over or the server has stopped, it removes
//! the spool's segments and exits.
//!
//! Everything here is a cache: losing any file only means a segment is fetched directly.

mod space;
mod wake;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::get::{GetOutcome, get_wal_file};
use super::helper_process::{ConfigSnapshot, HelperLock, reason_to_leave, spool_dirs};
use super::recovery_mode::RecoveryMode;
use crate::pg::{SegmentName, SegmentSize, WalFileName};
use crate::repo::Stanza;
use crate::storage::durable;
use crate::units;

/// How long the fetcher keeps fetching once PostgreSQL stops asking for new segments.
const FETCHER_LINGER: Duration = Duration::from_secs(5);
/// How long the fetcher sleeps at most between looks at the recovery, its configuration and the
/// spool; a call noting a new position wakes it at once (`wake`). Also how long a fetch thread
/// with nothing to do waits before it looks again at free space and names the archive lacked.
const FETCHER_RECHECK: Duration = Duration::from_millis(50);
/// How long a segment the archive does not hold is left alone before it is asked for again.
const MISSING_RETRY: Duration = Duration::from_secs(1);
/// How often a call waiting for the fetcher looks for its segment.
const WAIT_POLL: Duration = Duration::from_millis(1);
/// How long a call waits for a fetch under way before it fetches the segment itself.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// The restore spool of one stanza in one data directory.
#[derive(Clone, Debug)]
pub struct RestoreSpool {
    dir: PathBuf,
}

impl RestoreSpool {
    /// The spool in `pg_wal` (which base backups leave out), on the file system `%p` is on, so a
    /// hand-over is a rename.
    pub fn locate(pg_wal: &Path, stanza: &str) -> RestoreSpool {
        RestoreSpool {
            dir: pg_wal.join(".tidemark").join("restore").join(stanza),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn create(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("create spool directory {}", self.dir.display()))
    }

    fn segment_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn sum_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sum"))
    }

    fn fetching_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.fetching"))
    }

    fn position_path(&self) -> PathBuf {
        self.dir.join("position")
    }

    fn plan_path(&self) -> PathBuf {
        self.dir.join("plan")
    }

    pub fn lock(&self) -> HelperLock {
        HelperLock::new(self.dir.join("fetcher.lock"))
    }

    /// The spools of every stanza under a `pg_wal` directory.
    pub fn all_in(pg_wal: &Path) -> Vec<RestoreSpool> {
        spool_dirs(pg_wal, "restore")
            .into_iter()
            .map(|dir| RestoreSpool { dir })
            .collect()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("fetcher.log")
    }

    /// Records that PostgreSQL asked for segment `name`.
    pub fn note_position(&self, name: SegmentName) -> anyhow::Result<()> {
        let text = format!("{name}\n");
        // Not fsynced, like everything in the spool: it is checked before use.
        match durable::write_whole(&self.position_path(), text.as_bytes()) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.create()?;
                durable::write_whole(&self.position_path(), text.as_bytes())
            }
            written => written,
        }
        .with_context(|| format!("write {}", self.position_path().display()))
    }

    fn position(&self) -> Option<SegmentName> {
        let text = fs::read_to_string(self.position_path()).ok()?;
        segment_named(text.trim())
    }

    /// Records the segments a planned recovery reads, in order.
    pub fn write_plan(&self, segments: &[SegmentName]) -> anyhow::Result<()> {
        self.create()?;
        let text: String = segments.iter().map(|s| format!("{s}\n")).collect();
        durable::write_whole(&self.plan_path(), text.as_bytes())
            .with_context(|| format!("write {}", self.plan_path().display()))
    }

    /// The planned segments; none when there is no plan, or a line is not a segment name.
    fn plan(&self) -> Vec<SegmentName> {
        let Ok(text) = fs::read_to_string(self.plan_path()) else {
            return Vec::new();
        };
        text.lines()
            .map(segment_named)
            .collect::<Option<_>>()
            .unwrap_or_default()
    }

    /// Whether a fetch of `name` is under way.
    pub fn is_fetching(&self, name: &str) -> bool {
        self.fetching_path(name).exists() && self.lock().is_held()
    }
}

/// The segment `text` names, if it names one.
fn segment_named(text: &str) -> Option<SegmentName> {
    match WalFileName::parse(text) {
        Ok(WalFileName::Segment(segment)) => Some(segment),
        _ => None,
    }
}

/// A spooled segment's length and the CRC-32C of its original bytes, as the repository
/// recorded them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SpooledSum {
    len: u64,
    crc: u32,
}

impl SpooledSum {
    fn to_line(self) -> String {
        format!("{} {:08x}\n", self.len, self.crc)
    }

    fn parse(text: &str) -> Option<SpooledSum> {
        let (len, crc) = text.trim().split_once(' ')?;
        Some(SpooledSum {
            len: len.parse().ok()?,
            crc: u32::from_str_radix(crc, 16).ok()?,
        })
    }
}

/// What a hand-over from the spool did.
#[derive(Debug, PartialEq, Eq)]
pub enum Handover {
    /// The verified segment is at the destination.
    HandedOver { bytes: u64 },
    /// The spool does not hold it.
    Miss,
    /// The spool held it, but it failed its check and was removed; the message says how.
    Rejected(String),
}

/// The CRC-32C and length of the file at `path`. Mapped rather than read: the check is on the
/// hit path, and copying 16 MiB out of the page cache costs more than the CRC itself.
fn crc_of(path: &Path) -> std::io::Result<(u64, u32)> {
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((0, 0));
    }
    // Two halves on two threads, each mapping its own: a caller waits for this.
    let half = (len / 2).next_multiple_of(1 << 16).min(len);
    let crc_of_part = |offset: u64, part_len: u64| -> std::io::Result<u32> {
        if part_len == 0 {
            return Ok(0);
        }
        // SAFETY: the file was renamed out of the spool into a name only this process knows,
        // so nothing else writes or truncates it while it is mapped.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(part_len as usize)
                .populate()
                .map(&file)?
        };
        Ok(crc32c::crc32c(&map))
    };
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| crc_of_part(half, len - half));
        let first = crc_of_part(0, half);
        (first, second.join().expect("a CRC does not panic"))
    });
    Ok((
        len,
        crc32c::crc32c_combine(first?, second?, (len - half) as usize),
    ))
}

/// Moves segment `name` from the spool to `destination` once it has passed its check again.
pub fn hand_over(spool: &RestoreSpool, name: &str, destination: &Path) -> anyhow::Result<Handover> {
    let sum_path = spool.sum_path(name);
    let recorded = match fs::read_to_string(&sum_path) {
        Ok(text) => SpooledSum::parse(&text),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Handover::Miss),
        Err(e) => return Err(e).with_context(|| format!("read {}", sum_path.display())),
    };
    let dest_dir = match destination.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dest_name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_owned());
    // Renamed away first, the segment is this call's alone: the fetcher's clean-up cannot
    // remove it between the check and the hand-over.
    let claimed = durable::temp_path(dest_dir, &dest_name);
    match fs::rename(spool.segment_path(name), &claimed) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let _ = fs::remove_file(&sum_path);
            return Ok(Handover::Miss);
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "move {} to {}",
                    spool.segment_path(name).display(),
                    claimed.display()
                )
            });
        }
    }
    let _ = fs::remove_file(&sum_path);
    let found = crc_of(&claimed);
    let problem = match (recorded, &found) {
        (None, _) => Some("its .sum record is damaged".to_owned()),
        (Some(_), Err(e)) => Some(format!("cannot read it: {e}")),
        (Some(sum), Ok((len, _))) if *len != sum.len => Some(format!(
            "it is {len} bytes long, the repository says {}",
            sum.len
        )),
        (Some(sum), Ok((_, crc))) if *crc != sum.crc => Some(format!(
            "its CRC-32C is {crc:08x}, the repository says {:08x}",
            sum.crc
        )),
        _ => None,
    };
    if let Some(problem) = problem {
        let _ = fs::remove_file(&claimed);
        return Ok(Handover::Rejected(format!(
            "the prefetched copy of {name} failed its check ({problem}) and was removed"
        )));
    }
    if let Err(e) = fs::rename(&claimed, destination) {
        let _ = fs::remove_file(&claimed);
        return Err(e)
            .with_context(|| format!("rename {} to {}", claimed.display(), destination.display()));
    }
    Ok(Handover::HandedOver {
        bytes: found.map(|(len, _)| len).unwrap_or_default(),
    })
}

/// Waits while the fetcher fetches `name` (at most a minute).
pub fn wait_for_fetch(spool: &RestoreSpool, name: &str) {
    let started = Instant::now();
    while spool.is_fetching(name) && started.elapsed() < WAIT_LIMIT {
        std::thread::sleep(WAIT_POLL);
    }
}

/// Whether the server whose WAL directory is `pg_wal` is running a recovery: it has a
/// `postmaster.pid` and a `recovery.signal` or `standby.signal`, which PostgreSQL removes when
/// recovery ends. Only then does prefetching make sense (a call by hand gets its file and no
/// helper), and a fetcher stops as soon as it is over.
pub fn in_recovery(pg_wal: &Path) -> bool {
    RecoveryMode::of_pg_wal(pg_wal).is_recovery()
}

/// How the fetcher is set up.
#[derive(Clone, Debug)]
pub struct FetcherSettings {
    /// The recovering server's WAL directory.
    pub pg_wal: PathBuf,
    pub spool: RestoreSpool,
    /// Segments kept ready after the last one PostgreSQL asked for.
    pub ahead: usize,
    /// Fetches at once.
    pub parallel: usize,
    /// The configuration file as the fetcher read it.
    pub config: ConfigSnapshot,
}

/// The segments to keep ready after `position`: the plan's next ones when it lists `position`,
/// then the next names on the timeline the plan (or `position`) ends on.
fn window(
    position: SegmentName,
    plan: &[SegmentName],
    planned_at: &HashMap<SegmentName, usize>,
    ahead: usize,
    size: SegmentSize,
) -> Vec<SegmentName> {
    let mut names: Vec<SegmentName> = match planned_at.get(&position) {
        Some(&at) => plan[at + 1..].iter().take(ahead).copied().collect(),
        None => Vec::new(),
    };
    let last = names.last().copied().unwrap_or(position);
    if let Ok(segno) = last.segment_number(size) {
        let missing = ahead - names.len();
        names.extend(
            (1..=missing as u64)
                .map(|step| SegmentName::from_segment_number(last.timeline, segno + step, size)),
        );
    }
    names
}

/// What the fetcher's threads share.
#[derive(Default)]
struct Shared {
    /// The segments to keep ready, in the order to fetch them; none while idle.
    wanted: Mutex<Wanted>,
    /// Signalled when `wanted` changes or the fetcher ends.
    wanted_changed: Condvar,
    state: Mutex<FetchState>,
    /// Set when the fetcher ends.
    stop: AtomicBool,
    /// Fetches under way.
    busy: AtomicUsize,
}

/// The segments to keep ready, and how many times the list was set: a fetch thread that found
/// nothing to do sleeps only if the list is still the one it looked at.
#[derive(Default)]
struct Wanted {
    names: Vec<SegmentName>,
    generation: u64,
}

impl Shared {
    /// Sets the segments to keep ready and wakes the fetch threads.
    fn set_wanted(&self, names: Vec<SegmentName>) {
        let mut wanted = self.wanted.lock().expect("not poisoned");
        if wanted.names != names {
            wanted.names = names;
            wanted.generation += 1;
            self.wanted_changed.notify_all();
        }
    }

    /// The segments to keep ready, and the generation of that list.
    fn wanted(&self) -> (Vec<SegmentName>, u64) {
        let wanted = self.wanted.lock().expect("not poisoned");
        (wanted.names.clone(), wanted.generation)
    }

    /// Sleeps until the wanted list is set anew after `generation`, the fetcher ends, or
    /// `timeout` passes.
    fn wait_for_change(&self, generation: u64, timeout: Duration) {
        let wanted = self.wanted.lock().expect("not poisoned");
        if wanted.generation != generation || self.stop.load(Ordering::SeqCst) {
            return;
        }
        let _ = self
            .wanted_changed
            .wait_timeout(wanted, timeout)
            .expect("not poisoned");
    }

    /// Tells the fetch threads to end, and wakes them.
    fn stop(&self) {
        let _wanted = self.wanted.lock().expect("not poisoned");
        self.stop.store(true, Ordering::SeqCst);
        self.wanted_changed.notify_all();
    }
}

/// The bookkeeping of the fetches.
#[derive(Default)]
struct FetchState {
    /// Names a thread is fetching.
    in_progress: HashSet<SegmentName>,
    /// Segments in the spool: as last listed, and those fetched since.
    spooled: HashSet<SegmentName>,
    /// Names the archive did not hold (or that failed), and when that was found.
    missing: HashMap<SegmentName, Instant>,
    /// Whether fetching is held back for lack of free space.
    short_of_space: bool,
    /// Whether that was said: once per fetcher, since it comes and goes with every
    /// restartpoint on a file system that is tight.
    said_short_of_space: bool,
}

impl FetchState {
    /// Whether the spool holds fewer than `ahead` segments, counting those being fetched (a
    /// segment just fetched may be counted twice for a moment, never left out).
    fn has_free_slot(&self, ahead: usize) -> bool {
        self.spooled.len() + self.in_progress.len() < ahead
    }

    /// Whether one more fetch may start: the spool, fetches under way included, holds fewer
    /// than `ahead` segments, and the file system has room for it (see `space`).
    fn may_start_fetch(&mut self, ahead: usize, segment_bytes: u64, dir: &Path) -> bool {
        if !self.has_free_slot(ahead) {
            return false;
        }
        let in_flight = self.in_progress.len() as u64;
        let free = space::FreeSpace::of(dir);
        let room = free
            .as_ref()
            .is_ok_and(|free| space::room_for_one_more(*free, segment_bytes, in_flight));
        if !room && !self.short_of_space && !self.said_short_of_space {
            self.said_short_of_space = true;
            match free {
                Ok(free) => tracing::warn!(
                    "prefetch holds back: the file system of {} has {} free, and another segment would leave less than the {} kept free for PostgreSQL; calls fetch their own segments until there is room (said once)",
                    dir.display(),
                    units::bytes(free.available),
                    units::bytes(space::reserve(free.total, segment_bytes))
                ),
                Err(e) => tracing::warn!(
                    "prefetch holds back: cannot tell the free space of {} ({e}); calls fetch their own segments (said once)",
                    dir.display()
                ),
            }
        }
        self.short_of_space = !room;
        room
    }
}

/// Runs the fetcher of `settings.spool` until recovery is over or the server has stopped;
/// returns at once if another fetcher holds the lock. While PostgreSQL asks for nothing new it
/// fetches nothing and keeps what it fetched.
pub fn run_fetcher(stanza: &Stanza<'_>, settings: &FetcherSettings) -> anyhow::Result<()> {
    let spool = &settings.spool;
    spool.create()?;
    let Some(_lock) = spool.lock().try_take()? else {
        return Ok(());
    };
    remove_leftovers(spool);
    let size = stanza.expected_cluster().segment_size;
    let plan = spool.plan();
    let planned_at: HashMap<SegmentName, usize> =
        plan.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let shared = Shared::default();
    let watch = wake::SpoolWatch::new(spool.dir());
    std::thread::scope(|scope| {
        for _ in 0..settings.parallel.max(1) {
            scope.spawn(|| fetch_loop(stanza, settings, &shared));
        }
        let mut last_position = None;
        let mut moved_at = Instant::now();
        let mut idle = false;
        loop {
            let position = spool.position();
            if position != last_position {
                last_position = position;
                moved_at = Instant::now();
            }
            let was_idle = idle;
            idle = moved_at.elapsed() > FETCHER_LINGER && shared.busy.load(Ordering::SeqCst) == 0;
            if idle && !was_idle {
                tracing::info!(
                    "PostgreSQL has asked for no new segment for {} s: fetching stops until it does, and what is fetched stays ready",
                    FETCHER_LINGER.as_secs()
                );
            }
            if let Some(position) = position {
                let mut names = window(position, &plan, &planned_at, settings.ahead, size);
                // The segment asked for last may be being handed over right now.
                names.push(position);
                {
                    // Listed under the lock, so a fetch that ends meanwhile is counted.
                    let mut state = shared.state.lock().expect("not poisoned");
                    state.spooled = remove_passed(spool, &names);
                }
                names.pop();
                shared.set_wanted(if idle { Vec::new() } else { names });
            }
            let leave = if in_recovery(&settings.pg_wal) {
                reason_to_leave(&settings.config)
            } else {
                Some("recovery is over or the server stopped")
            };
            if let Some(reason) = leave {
                tracing::info!("prefetcher leaves: {reason}");
                shared.stop();
                break;
            }
            watch.wait(FETCHER_RECHECK);
        }
    });
    // Recovery is over, or the server stopped, or a fetcher reading the new configuration takes
    // over: what is spooled would only take space, or come from the repository no longer set.
    remove_passed(spool, &[]);
    Ok(())
}

/// One fetch thread: takes the first wanted segment nobody has and fetches it into the spool,
/// when the spool has a free slot and the file system room for it.
fn fetch_loop(stanza: &Stanza<'_>, settings: &FetcherSettings, shared: &Shared) {
    let spool = &settings.spool;
    let segment_bytes = u64::from(stanza.expected_cluster().segment_size.bytes());
    while !shared.stop.load(Ordering::SeqCst) {
        let (names, generation) = shared.wanted();
        let next = {
            let mut state = shared.state.lock().expect("not poisoned");
            let now = Instant::now();
            state
                .missing
                .retain(|_, found| now.duration_since(*found) < MISSING_RETRY);
            let next = names.iter().copied().find(|name| {
                !state.in_progress.contains(name)
                    && !state.missing.contains_key(name)
                    && !spool.sum_path(&name.to_string()).exists()
            });
            match next {
                Some(name) if state.may_start_fetch(settings.ahead, segment_bytes, spool.dir()) => {
                    state.in_progress.insert(name);
                    shared.busy.fetch_add(1, Ordering::SeqCst);
                    // Marked before the fetch can be seen missing, so a call waits for it.
                    let _ = fs::write(spool.fetching_path(&name.to_string()), b"");
                    Some(name)
                }
                _ => None,
            }
        };
        let Some(name) = next else {
            shared.wait_for_change(generation, FETCHER_RECHECK);
            continue;
        };
        let fetched = fetch_one(stanza, spool, name);
        let mut state = shared.state.lock().expect("not poisoned");
        state.in_progress.remove(&name);
        match fetched {
            Ok(true) => {
                state.spooled.insert(name);
            }
            Ok(false) => {
                state.missing.insert(name, Instant::now());
            }
            Err(e) => {
                tracing::warn!("prefetch {name}: {e:#}");
                state.missing.insert(name, Instant::now());
            }
        }
        shared.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Fetches `name` into the spool, verified, and removes its `.fetching` marker; `false` when
/// the archive does not hold it.
fn fetch_one(stanza: &Stanza<'_>, spool: &RestoreSpool, name: SegmentName) -> anyhow::Result<bool> {
    let text = name.to_string();
    let marker = spool.fetching_path(&text);
    let segment = spool.segment_path(&text);
    let fetched = get_wal_file(stanza, &text, &segment).and_then(|outcome| match outcome {
        GetOutcome::Restored(header) => {
            // Not for durability (the spool is checked before use, never trusted): PostgreSQL
            // fsyncs every file restore_command gives it (`KeepFileRestoredFromArchive`), and
            // a segment written back here, ahead, leaves its startup process nothing to wait
            // for. Without its `.sum` a segment that could not be synced is never handed over.
            durable::fsync_file(&segment)
                .with_context(|| format!("fsync {}", segment.display()))?;
            let sum = SpooledSum {
                len: header.original_len,
                crc: header.original_crc,
            };
            durable::write_whole(&spool.sum_path(&text), sum.to_line().as_bytes())
                .with_context(|| format!("write {}", spool.sum_path(&text).display()))?;
            Ok(true)
        }
        GetOutcome::NotArchived => Ok(false),
    });
    let _ = fs::remove_file(&marker);
    fetched
}

/// Removes what dead fetchers left: half-written files and markers of fetches under way.
fn remove_leftovers(spool: &RestoreSpool) {
    let Ok(entries) = fs::read_dir(spool.dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name.ends_with(".fetching")
            || (file_name.starts_with('.') && file_name.ends_with(".tmp"))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes spooled segments (and their sums) that are not in `keep`; returns the segments
/// left in the spool.
fn remove_passed(spool: &RestoreSpool, keep: &[SegmentName]) -> HashSet<SegmentName> {
    let mut left = HashSet::new();
    let Ok(entries) = fs::read_dir(spool.dir()) else {
        return left;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let (segment, is_sum) = match file_name.strip_suffix(".sum") {
            Some(segment) => (segment, true),
            None => (&*file_name, false),
        };
        let Some(segment) = segment_named(segment) else {
            continue;
        };
        if !keep.contains(&segment) {
            let _ = fs::remove_file(entry.path());
        } else if !is_sum {
            left.insert(segment);
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::TimelineId;

    fn name(timeline: u32, segno: u64) -> SegmentName {
        SegmentName::from_segment_number(TimelineId(timeline), segno, size())
    }

    fn size() -> SegmentSize {
        SegmentSize::new(16 << 20).unwrap()
    }

    #[test]
    fn the_window_follows_the_plan_across_a_switch_then_the_last_timeline() {
        let plan = vec![name(1, 3), name(1, 4), name(2, 5), name(2, 6)];
        let planned_at: HashMap<SegmentName, usize> =
            plan.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        assert_eq!(
            window(name(1, 4), &plan, &planned_at, 4, size()),
            [name(2, 5), name(2, 6), name(2, 7), name(2, 8)]
        );
        assert_eq!(
            window(name(1, 3), &plan, &planned_at, 2, size()),
            [name(1, 4), name(2, 5)]
        );
        // Not in the plan: the next names on its own timeline.
        assert_eq!(
            window(name(3, 9), &plan, &planned_at, 2, size()),
            [name(3, 10), name(3, 11)]
        );
    }

    #[test]
    fn fetches_under_way_take_slots_of_the_spool_like_spooled_segments() {
        let mut state = FetchState::default();
        assert!(state.has_free_slot(2));
        state.spooled.insert(name(1, 3));
        assert!(state.has_free_slot(2));
        state.in_progress.insert(name(1, 4));
        assert!(!state.has_free_slot(2));
        // A passed segment still being fetched holds its slot until its fetch ends.
        state.spooled.clear();
        state.in_progress.insert(name(1, 2));
        assert!(!state.has_free_slot(2));
        assert!(!state.has_free_slot(0));
    }

    #[test]
    fn only_a_copy_that_matches_its_sum_is_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let spool = RestoreSpool::locate(dir.path(), "main");
        spool.create().unwrap();
        let segment = "000000010000000000000003";
        let bytes = vec![7u8; 4096];
        let sum = SpooledSum {
            len: bytes.len() as u64,
            crc: crc32c::crc32c(&bytes),
        };
        let destination = dir.path().join("RECOVERYXLOG");
        let put = |content: &[u8], sum: &str| {
            fs::write(spool.segment_path(segment), content).unwrap();
            fs::write(spool.sum_path(segment), sum).unwrap();
        };

        assert_eq!(
            hand_over(&spool, segment, &destination).unwrap(),
            Handover::Miss
        );
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        for (content, sum_text, problem) in [
            (&flipped[..], sum.to_line(), "its CRC-32C is"),
            (&bytes[..100], sum.to_line(), "it is 100 bytes long"),
            (
                &bytes[..],
                "garbage".to_owned(),
                "its .sum record is damaged",
            ),
        ] {
            put(content, &sum_text);
            match hand_over(&spool, segment, &destination).unwrap() {
                Handover::Rejected(why) => assert!(why.contains(problem), "{why}"),
                other => panic!("{other:?} for {problem}"),
            }
            assert!(!destination.exists());
            assert!(!spool.segment_path(segment).exists());
            assert!(!spool.sum_path(segment).exists());
        }
        // A sum without its segment (the fetcher was killed in between, or the clean-up won).
        fs::write(spool.sum_path(segment), sum.to_line()).unwrap();
        assert_eq!(
            hand_over(&spool, segment, &destination).unwrap(),
            Handover::Miss
        );
        put(&bytes, &sum.to_line());
        assert_eq!(
            hand_over(&spool, segment, &destination).unwrap(),
            Handover::HandedOver { bytes: 4096 }
        );
        assert_eq!(fs::read(&destination).unwrap(), bytes);
        // Nothing is left beside the destination or in the spool.
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".tidemark", "RECOVERYXLOG"]);
        assert_eq!(fs::read_dir(spool.dir()).unwrap().count(), 0);
    }
}
