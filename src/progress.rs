//! How a long transfer shows it is getting on — `tidemark backup` receiving, `tidemark restore`
//! writing: a bar on stderr when it is a terminal (bytes, rate, time left), otherwise a log line
//! every 10 s with the same figures.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a line is logged when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// The progress of one transfer. Workers on several threads may report to it at once.
pub struct Progress {
    /// The command, first on each line: "backup", "restore".
    what: &'static str,
    /// What happens to the bytes: "received", "written".
    verb: &'static str,
    total: u64,
    /// Whether `total` is an estimate (the server's, for a backup).
    estimated: bool,
    done: AtomicU64,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
    last_line: Mutex<Instant>,
}

impl Progress {
    /// Progress of nothing yet; `set_total` says how much there is.
    pub fn new(what: &'static str, verb: &'static str) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            verb,
            total: 0,
            estimated: false,
            done: AtomicU64::new(0),
            started: now,
            bar: None,
            last_line: Mutex::new(now),
        }
    }

    /// How many bytes there are (`estimated`: about that many), and, on a terminal, the bar.
    pub fn set_total(&mut self, total: u64, estimated: bool) {
        self.total = total;
        self.estimated = estimated;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_position(self.done.load(Ordering::Relaxed));
            self.bar = Some(bar);
        }
    }

    /// `done` bytes are through so far.
    pub fn set_done(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.show(done);
    }

    /// `bytes` more are through.
    pub fn add_done(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.show(done);
    }

    /// Clears the bar (also done on drop, so that an error line is not printed over it).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn show(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.line_due(Instant::now()) => {
                tracing::info!("{}", self.line(done, self.started.elapsed()));
            }
            None => {}
        }
    }

    /// Whether a line is due at `now`, [`LINE_EVERY`] after the last (or the start); if so,
    /// `now` becomes the last. Of threads reporting at once, one logs.
    fn line_due(&self, now: Instant) -> bool {
        let Ok(mut last) = self.last_line.try_lock() else {
            return false;
        };
        if now.saturating_duration_since(*last) < LINE_EVERY {
            return false;
        }
        *last = now;
        true
    }

    /// "restore: 1.2 GiB of 5.0 GiB written, 40.0 MiB/s, about 1 min 40 s left".
    fn line(&self, done: u64, elapsed: Duration) -> String {
        let about = if self.estimated { "about " } else { "" };
        let mut line = format!(
            "{}: {} of {about}{} {}",
            self.what,
            crate::units::bytes(done),
            crate::units::bytes(self.total),
            self.verb
        );
        let seconds = elapsed.as_secs_f64();
        if done > 0 && seconds > 0.0 {
            let rate = done as f64 / seconds;
            line.push_str(&format!(", {}/s", crate::units::bytes(rate as u64)));
            let left = self.total.saturating_sub(done) as f64 / rate;
            line.push_str(&format!(", about {} left", duration(left as u64)));
        }
        line
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// "45 s", "3 min 20 s", "2 h 5 min".
fn duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_due_every_ten_seconds() {
        let progress = Progress::new("restore", "written");
        let start = *progress.last_line.lock().unwrap();
        assert!(!progress.line_due(start + Duration::from_secs(9)));
        assert!(progress.line_due(start + Duration::from_secs(10)));
        assert!(!progress.line_due(start + Duration::from_secs(19)));
        assert!(progress.line_due(start + Duration::from_secs(21)));
        assert!(!progress.line_due(start + Duration::from_secs(30)));
    }

    #[test]
    fn a_line_says_how_much_how_fast_and_how_long_still() {
        let mut restore = Progress::new("restore", "written");
        restore.set_total(5 << 30, false);
        assert_eq!(
            restore.line(1 << 30, Duration::from_secs(10)),
            "restore: 1.0 GiB of 5.0 GiB written, 102.4 MiB/s, about 40 s left"
        );
        let mut backup = Progress::new("backup", "received");
        backup.set_total(5 << 30, true);
        assert_eq!(
            backup.line(0, Duration::ZERO),
            "backup: 0 B of about 5.0 GiB received"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(200), "3 min 20 s");
        assert_eq!(duration(7500), "2 h 5 min");
    }
}
