//! Crash safety of `tidemark-archive`: a push killed with SIGKILL at a random moment leaves
//! under the final name either no object or a complete one that `tidemark-restore` turns back
//! into exactly the segment's bytes, never a partial one (at worst a temporary file whose name
//! starts with `.`), and retrying the push succeeds: it stores the segment, or confirms the
//! identical copy and leaves it untouched, the segment then restores byte for byte, and no
//! temporary file of the killed push is left.
//!
//! Real 1 MiB WAL segments are pushed 80 times, each time into a fresh repository, by the
//! binary itself (not through `runuser`, so the signal reaches Tidemark). Half of the kills come
//! at a uniformly random time from the spawn to 1.5 times a typical push, covering start-up,
//! reading and compressing; the other half, seen by polling the target directory, at a uniformly
//! random time from the temporary file's appearance to twice the typical time until the rename,
//! covering the write, the fsync, the rename, the directory's fsync and the exit: a window of
//! well under a millisecond to a few, which kills timed from the spawn would rarely hit.

mod common;

use common::direct::{DirectRepo, describe};

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// Kills; at least 50, half from the spawn and half from the temporary file's appearance.
const ITERATIONS: usize = 80;
/// More kills allowed if the window was not hit on every side (see the final assertions).
const EXTRA_ITERATIONS: usize = 80;
/// Uncontended pushes timed first, of each kind.
const CALIBRATION_PUSHES: usize = 5;
/// The signal `Child::kill` sends (9 on every Linux architecture).
const SIGKILL: i32 = 9;

/// What a watched push was doing when first seen: it has exited, its object exists, or its
/// temporary file exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Exited,
    Object,
    Temp,
}

/// Polls (as fast as it can) until the push has a temporary file or an object in `dir`, or
/// has exited.
fn watch(child: &mut Child, dir: &Path) -> Seen {
    loop {
        let first = fs::read_dir(dir)
            .ok()
            .and_then(|mut entries| entries.find_map(Result::ok));
        if let Some(entry) = first {
            return if entry.file_name().to_string_lossy().starts_with('.') {
                Seen::Temp
            } else {
                Seen::Object
            };
        }
        if child.try_wait().unwrap().is_some() {
            return Seen::Exited;
        }
    }
}

fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

#[derive(Default)]
struct Counts {
    /// Killed with no object and no temporary file left.
    before_write: usize,
    /// Killed with no object but a temporary file left.
    mid_write: usize,
    /// Killed when the object was already complete under its name.
    after_rename: usize,
    /// The push exited 0 before the kill.
    finished: usize,
    temps_left: usize,
}

fn total(by_kind: &[Counts]) -> Counts {
    let mut sum = Counts::default();
    for counts in by_kind {
        sum.before_write += counts.before_write;
        sum.mid_write += counts.mid_write;
        sum.after_rename += counts.after_rename;
        sum.finished += counts.finished;
        sum.temps_left += counts.temps_left;
    }
    sum
}

#[test]
fn a_push_killed_at_any_moment_leaves_no_object_or_a_complete_one_and_the_retry_succeeds() {
    let started = Instant::now();
    let wal = common::WalLab::new("tm-crash-");
    let pushes = Pushes::new(&wal);
    let windows = pushes.calibrate();
    let seed = common::seed_randomness();
    let mut rng = fastrand::Rng::with_seed(seed);
    println!(
        "uncontended pushes took {:?}, renamed their object into place {:?} \
         after their temporary file appeared; killing at 0..{:?} after the spawn or 0..{:?} after the \
         temporary file (seed {seed}); {} segments",
        windows.totals,
        windows.writes,
        windows.from_spawn,
        windows.from_temp,
        pushes.segments.len()
    );

    // Kills timed from the spawn, and from the temporary file's appearance.
    let mut by_kind = [Counts::default(), Counts::default()];
    let mut iteration = 0;
    loop {
        let counts = total(&by_kind);
        let window_hit = counts.before_write > 0
            && counts.mid_write > 0
            && counts.after_rename + counts.finished > 0;
        if iteration >= ITERATIONS + EXTRA_ITERATIONS || (iteration >= ITERATIONS && window_hit) {
            break;
        }
        let from_temp_file = iteration % 2 == 1;
        let kill = pushes.kill_one(iteration, from_temp_file, &windows, &mut rng);
        let counts = &mut by_kind[usize::from(from_temp_file)];
        kill.count_into(counts);
        kill.the_retry_succeeds(&pushes);
        iteration += 1;
    }
    report_and_check_counts(&by_kind, iteration, started);
}

/// The lab's archived segments, pushed into fresh repositories under `work`.
struct Pushes {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    /// (name, path, bytes) of each archived segment.
    segments: Vec<(String, PathBuf, Vec<u8>)>,
    work: PathBuf,
}

/// How long uncontended pushes took, and the windows the kills are timed in from them.
struct KillWindows {
    totals: Vec<Duration>,
    writes: Vec<Duration>,
    from_spawn: Duration,
    from_temp: Duration,
}

/// What one killed push left: its repository and object, whether it was killed (or had
/// exited 0), the object's bytes if there was one, and the temporary files.
struct Killed {
    moment: String,
    segment: usize,
    repo: DirectRepo,
    object: PathBuf,
    was_killed: bool,
    stored: Option<Vec<u8>>,
    temps: Vec<PathBuf>,
}

impl Pushes {
    fn new(wal: &common::WalLab) -> Self {
        let segments: Vec<(String, PathBuf, Vec<u8>)> = wal
            .segments()
            .into_iter()
            .map(|name| {
                let path = wal.raw.join(&name);
                let bytes = fs::read(&path).unwrap();
                (name, path, bytes)
            })
            .collect();
        assert!(!segments.is_empty(), "the lab archived no segment");
        let work = wal.lab.tmp.path().join("crash");
        fs::create_dir(&work).unwrap();
        Pushes {
            bin_dir: wal.lab.bin_dir.clone(),
            pgdata: wal.cluster.data_dir().to_path_buf(),
            segments,
            work,
        }
    }

    /// How long an uncontended push takes from its spawn, and, while being watched, from its
    /// temporary file's appearance to its object's.
    fn calibrate(&self) -> KillWindows {
        let bin_dir = &self.bin_dir;
        let (mut totals, mut writes) = (Vec::new(), Vec::new());
        for i in 0..2 * CALIBRATION_PUSHES {
            let (name, path, bytes) = &self.segments[i % self.segments.len()];
            let repo = DirectRepo::create(
                bin_dir,
                &self.pgdata,
                self.work.join(format!("calibrate-{i}")),
            );
            let spawned = Instant::now();
            let mut child = repo.push(bin_dir, path).spawn().unwrap();
            if i % 2 == 1 {
                let object = repo.object_path(name);
                if watch(&mut child, object.parent().unwrap()) == Seen::Temp {
                    let seen = Instant::now();
                    while !object.exists() && child.try_wait().unwrap().is_none() {}
                    writes.push(seen.elapsed());
                }
            }
            let output = child.wait_with_output().unwrap();
            if i % 2 == 0 {
                totals.push(spawned.elapsed());
            }
            assert!(
                output.status.success(),
                "push {name}: {}",
                describe(&output)
            );
            assert_eq!(&repo.restore(bin_dir, name, "calibrate").unwrap(), bytes);
        }
        let from_spawn = median(totals.clone()) * 3 / 2;
        // Twice the write: half the kills before the rename, half after it (fsync of the
        // directory, exit, or already exited).
        let from_temp = if writes.is_empty() {
            Duration::from_millis(2)
        } else {
            median(writes.clone()) * 2
        };
        KillWindows {
            totals,
            writes,
            from_spawn,
            from_temp,
        }
    }

    /// Pushes a segment into a fresh repository and kills it at a random moment timed from
    /// the spawn or from the temporary file's appearance; checks that under a final name
    /// there is nothing but a complete object of this segment.
    fn kill_one(
        &self,
        iteration: usize,
        from_temp_file: bool,
        windows: &KillWindows,
        rng: &mut fastrand::Rng,
    ) -> Killed {
        let bin_dir = &self.bin_dir;
        let segment = iteration % self.segments.len();
        let (name, path, _) = &self.segments[segment];
        let repo = DirectRepo::create(
            bin_dir,
            &self.pgdata,
            self.work.join(format!("kill-{iteration}")),
        );
        let object = repo.object_path(name);
        let mut child = repo.push(bin_dir, path).spawn().unwrap();
        let delay = if from_temp_file {
            match watch(&mut child, object.parent().unwrap()) {
                Seen::Temp => windows.from_temp.mul_f64(rng.f64()),
                Seen::Object | Seen::Exited => Duration::ZERO,
            }
        } else {
            windows.from_spawn.mul_f64(rng.f64())
        };
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        child.kill().unwrap();
        let killed = child.wait_with_output().unwrap();
        let moment = format!(
            "iteration {iteration} ({name}, killed {delay:?} after {})",
            if from_temp_file {
                "its temporary file appeared"
            } else {
                "its spawn"
            }
        );
        let was_killed = killed.status.signal() == Some(SIGKILL);
        assert!(
            was_killed || killed.status.success(),
            "{moment}: a push that was not killed failed: {}",
            describe(&killed)
        );
        let (stored, temps) = self.check_what_the_kill_left(&repo, segment, &moment, &killed);
        Killed {
            moment,
            segment,
            repo,
            object,
            was_killed,
            stored,
            temps,
        }
    }

    /// Under a final name, nothing but this segment's object, which restores to its bytes;
    /// temporaries are allowed. Returns the object's bytes, if any, and the temporaries.
    fn check_what_the_kill_left(
        &self,
        repo: &DirectRepo,
        segment: usize,
        moment: &str,
        killed: &std::process::Output,
    ) -> (Option<Vec<u8>>, Vec<PathBuf>) {
        let (name, _, bytes) = &self.segments[segment];
        let object = repo.object_path(name);
        let (objects, temps) = repo.wal_files();
        assert!(
            objects.iter().all(|o| *o == object),
            "{moment}: unexpected files {objects:?} (expected at most {})",
            object.display()
        );
        let stored = object.exists().then(|| fs::read(&object).unwrap());
        match &stored {
            Some(stored) => match repo.restore(&self.bin_dir, name, "after-kill") {
                Ok(restored) => assert!(
                    restored == *bytes,
                    "{moment}: {} restores to {} bytes that differ from the segment",
                    object.display(),
                    restored.len()
                ),
                Err(failed) => panic!(
                    "{moment}: the kill ({}) left a damaged object under the final name {} \
                     ({} bytes): restore said {failed}",
                    killed.status,
                    object.display(),
                    stored.len()
                ),
            },
            None => {
                let restore = repo.restore(&self.bin_dir, name, "after-kill");
                assert!(
                    restore.is_err(),
                    "{moment}: restore found an object the directory does not show"
                );
            }
        }
        (stored, temps)
    }
}

impl Killed {
    /// Counts what the kill left, by the moment it landed.
    fn count_into(&self, counts: &mut Counts) {
        let (moment, temps) = (&self.moment, &self.temps);
        match (self.was_killed, self.stored.is_some(), temps.is_empty()) {
            (true, false, true) => counts.before_write += 1,
            (true, false, false) => counts.mid_write += 1,
            (true, true, _) => counts.after_rename += 1,
            (false, true, true) => counts.finished += 1,
            (false, false, _) => panic!("{moment}: the push exited 0 but stored nothing"),
            (false, true, false) => panic!("{moment}: a push that was not killed left {temps:?}"),
        }
        counts.temps_left += temps.len();
    }

    /// The retry succeeds, keeps an existing object as it is, the segment restores, and it
    /// clears what the killed push (now gone) left behind.
    fn the_retry_succeeds(&self, pushes: &Pushes) {
        let (name, path, bytes) = &pushes.segments[self.segment];
        let (moment, object, repo) = (&self.moment, &self.object, &self.repo);
        let retry = repo.push(&pushes.bin_dir, path).output().unwrap();
        assert!(
            retry.status.success(),
            "{moment}: the retry failed: {}",
            describe(&retry)
        );
        let said_already = String::from_utf8_lossy(&retry.stderr).contains("already archived");
        assert_eq!(
            said_already,
            self.stored.is_some(),
            "{moment}: the retry must store the segment exactly when the killed push had not: {}",
            describe(&retry)
        );
        if let Some(stored) = &self.stored {
            assert!(
                fs::read(object).unwrap() == *stored,
                "{moment}: the retry changed the archived object"
            );
        }
        match repo.restore(&pushes.bin_dir, name, "after-retry") {
            Ok(restored) => assert!(
                restored == *bytes,
                "{moment}: after the retry the segment restores to different bytes"
            ),
            Err(failed) => panic!("{moment}: restore after the retry: {failed}"),
        }
        let (objects, temps) = repo.wal_files();
        assert_eq!(objects, std::slice::from_ref(object), "{moment}");
        assert!(temps.is_empty(), "{moment}: the retry left {temps:?}");
    }
}

/// Prints the counts, in all and by kind, and checks the kills hit every side of the window.
fn report_and_check_counts(by_kind: &[Counts; 2], iteration: usize, started: Instant) {
    let counts = total(by_kind);
    println!("{iteration} kills:");
    for (kind, counts) in [
        ("all", &counts),
        ("after the spawn", &by_kind[0]),
        ("after the temporary file appeared", &by_kind[1]),
    ] {
        println!(
            "  {kind}: {} before anything was written, {} while the temporary file existed, {} \
             after the object was complete, {} after the push had exited; {} temporary files left",
            counts.before_write,
            counts.mid_write,
            counts.after_rename,
            counts.finished,
            counts.temps_left
        );
    }
    println!("took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        counts.before_write + counts.mid_write > 0,
        "no kill left the repository without the object: the kills missed the window"
    );
    assert!(
        counts.mid_write > 0,
        "no kill landed while the temporary file existed: the kills missed the window"
    );
    assert!(
        counts.after_rename + counts.finished > 0,
        "no iteration ended with a complete object after the kill: the kills missed the window"
    );
}
