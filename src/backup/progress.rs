//! How a backup shows it is getting on: a bar on a terminal, a log line every 10 s otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Shows progress: a bar on a terminal, a log line every 10 s otherwise.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    total: u64,
}

impl Progress {
    pub(super) fn new() -> Progress {
        Progress {
            bar: None,
            last_line: Instant::now(),
            total: 0,
        }
    }

    pub(super) fn set_total(&mut self, total: u64) {
        self.total = total;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
    }

    pub(super) fn update(&mut self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_line.elapsed() >= Duration::from_secs(10) => {
                self.last_line = Instant::now();
                tracing::info!(
                    "backup: {} of about {} received",
                    crate::units::bytes(done),
                    crate::units::bytes(self.total)
                );
            }
            None => {}
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
