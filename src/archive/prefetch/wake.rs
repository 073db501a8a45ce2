//! Waking the fetcher when a call notes a new position: an inotify watch on the spool, so that
//! between calls the fetcher sleeps instead of looking at the spool every few milliseconds on
//! the core beside replay. Without inotify (no instance left for the user, say) it looks every
//! [`FALLBACK_POLL`], as it did before.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

/// How often a fetcher without inotify looks for a new position.
pub const FALLBACK_POLL: Duration = Duration::from_millis(2);

/// Wakes on files renamed into the spool: a call's `position` (which every call writes to a
/// temporary name and renames), and the fetcher's own segments and sums.
pub struct SpoolWatch {
    inotify: Option<OwnedFd>,
}

impl SpoolWatch {
    /// Watches `spool_dir`; a watch that cannot be set up falls back to polling.
    pub fn new(spool_dir: &Path) -> SpoolWatch {
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .and_then(|fd| {
                inotify::add_watch(&fd, spool_dir, inotify::WatchFlags::MOVED_TO)?;
                Ok(fd)
            });
        match inotify {
            Ok(fd) => SpoolWatch { inotify: Some(fd) },
            Err(e) => {
                tracing::debug!(
                    "no inotify watch on {} ({e}); looking every {} ms",
                    spool_dir.display(),
                    FALLBACK_POLL.as_millis()
                );
                SpoolWatch { inotify: None }
            }
        }
    }

    /// Returns when a file was renamed into the spool since the last call, or after at most
    /// `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let Some(fd) = &self.inotify else {
            std::thread::sleep(timeout.min(FALLBACK_POLL));
            return;
        };
        let limit = Timespec {
            tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        // A failed poll (EINTR: a signal) ends the wait as a timeout does: the caller looks
        // again either way.
        if rustix::event::poll(&mut fds, Some(&limit)).is_ok_and(|ready| ready > 0) {
            drain(fd);
        }
    }
}

/// Reads every queued event, so that the next wait sleeps until a new one.
fn drain(fd: &OwnedFd) {
    let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = inotify::Reader::new(fd, &mut buffer);
    while reader.next().is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_rename_into_the_directory_ends_the_wait_and_nothing_else_happening_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let watch = SpoolWatch::new(dir.path());
        assert!(watch.inotify.is_some(), "inotify is there on Linux");
        let started = Instant::now();
        watch.wait(Duration::from_millis(30));
        assert!(started.elapsed() >= Duration::from_millis(30));

        std::fs::write(dir.path().join(".position.tmp"), b"x").unwrap();
        std::fs::rename(
            dir.path().join(".position.tmp"),
            dir.path().join("position"),
        )
        .unwrap();
        let started = Instant::now();
        watch.wait(Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(60));
        // Drained: the next wait sleeps its whole time again.
        let started = Instant::now();
        watch.wait(Duration::from_millis(30));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
