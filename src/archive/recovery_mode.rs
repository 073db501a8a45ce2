//! Which recovery a `restore_command` call serves, read from the data directory it writes into,
//! and the exit code a failure must end it with for that recovery.
//!
//! PostgreSQL reads the exit status of `restore_command` so (`RestoreArchivedFile` in
//! `xlogarchive.c`, PostgreSQL 12 and later): 0, the file is at `%p`; a death by a signal or an
//! exit code above 125 (`wait_result_is_any_signal(rc, true)`), FATAL: the startup process
//! exits and the server stops; any other code, "not in the archive". An archive recovery takes
//! "not in the archive" for the end of the archive: it ends there and promotes, and the new
//! timeline silently lacks everything archived after that point. So a failure (a repository that
//! does not answer after the storage layer's retries, a damaged object, a full disk, a broken
//! configuration) must never exit 1 then: it exits [`FATAL_EXIT_CODE`], and the DBA fixes the
//! cause and starts the server again, which resumes recovery where it stopped. This is the one
//! exception to "never exit above 125" (DESIGN.md §3).
//!
//! A standby is the opposite case: it retries `restore_command` every
//! `wal_retrieve_retry_interval` and streams meanwhile, and never promotes on its own, so a
//! failure exits 1 and the standby keeps trying; a FATAL would stop it.

use std::path::{Path, PathBuf};

/// The exit code of a failure during archive recovery. Above 125, so PostgreSQL stops recovery;
/// not 126 or 127, which PostgreSQL reports as "command not executable" and "command not
/// found"; not 128 + a signal number, which reads as a death by that signal (143, SIGTERM,
/// is even taken for a shutdown request). PostgreSQL logs it as
/// `could not restore file "…" from archive: child process exited with exit code 128`.
pub const FATAL_EXIT_CODE: u8 = 128;

/// The recovery a call serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Archive recovery: the server runs, and its data directory has `recovery.signal` and no
    /// `standby.signal`.
    ArchiveRecovery,
    /// Standby mode: the server runs and its data directory has `standby.signal` (which wins
    /// over `recovery.signal`, as in PostgreSQL).
    Standby,
    /// No recovery of a running server: a call by hand, or by `pg_rewind`, which stops on any
    /// failure itself.
    NoRecovery,
}

impl RecoveryMode {
    /// The mode of the server whose data directory is `data_dir`.
    pub fn of_data_dir(data_dir: &Path) -> RecoveryMode {
        if !data_dir.join("postmaster.pid").exists() {
            return RecoveryMode::NoRecovery;
        }
        if data_dir.join("standby.signal").exists() {
            RecoveryMode::Standby
        } else if data_dir.join("recovery.signal").exists() {
            RecoveryMode::ArchiveRecovery
        } else {
            RecoveryMode::NoRecovery
        }
    }

    /// The mode of the server whose WAL directory is `pg_wal`; a directory not named `pg_wal`
    /// belongs to no server.
    pub fn of_pg_wal(pg_wal: &Path) -> RecoveryMode {
        match pg_wal.parent() {
            Some(data_dir) if pg_wal.file_name().is_some_and(|name| name == "pg_wal") => {
                RecoveryMode::of_data_dir(data_dir)
            }
            _ => RecoveryMode::NoRecovery,
        }
    }

    /// The mode of the server a call writing `destination` (PostgreSQL's `%p`,
    /// `pg_wal/RECOVERYXLOG`, relative to the data directory the server runs the command in)
    /// serves.
    pub fn of_destination(destination: &Path) -> RecoveryMode {
        match pg_wal_of(destination) {
            Some(pg_wal) => RecoveryMode::of_pg_wal(&pg_wal),
            None => RecoveryMode::NoRecovery,
        }
    }

    /// The mode of the server running this process in its data directory, as PostgreSQL runs
    /// `restore_command`: what a call whose arguments cannot be read serves.
    pub fn of_working_directory() -> RecoveryMode {
        match std::env::current_dir() {
            Ok(dir) => RecoveryMode::of_data_dir(&dir),
            Err(_) => RecoveryMode::NoRecovery,
        }
    }

    /// Whether a server is recovering (archive recovery or standby).
    pub fn is_recovery(self) -> bool {
        self != RecoveryMode::NoRecovery
    }

    /// The exit code of a failed call.
    pub fn failure_exit_code(self) -> u8 {
        match self {
            RecoveryMode::ArchiveRecovery => FATAL_EXIT_CODE,
            RecoveryMode::Standby | RecoveryMode::NoRecovery => 1,
        }
    }

    /// What a failed call's exit code does, said after its error on the same line; nothing for
    /// a call by hand.
    pub fn failure_consequence(self) -> Option<&'static str> {
        match self {
            RecoveryMode::ArchiveRecovery => Some(
                "archive recovery stops here (exit code 128) rather than take this for the end of the archive and promote: fix the cause and start the server again, and recovery resumes where it stopped",
            ),
            RecoveryMode::Standby => {
                Some("the standby asks again after wal_retrieve_retry_interval (exit code 1)")
            }
            RecoveryMode::NoRecovery => None,
        }
    }
}

/// The absolute `pg_wal` directory holding `destination`, if that is where it is.
fn pg_wal_of(destination: &Path) -> Option<PathBuf> {
    let parent = match destination.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let pg_wal = std::path::absolute(parent).ok()?;
    pg_wal
        .file_name()
        .is_some_and(|name| name == "pg_wal")
        .then_some(pg_wal)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn the_signal_files_of_a_running_server_say_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path();
        fs::create_dir(data_dir.join("pg_wal")).unwrap();
        let mode = || RecoveryMode::of_destination(&data_dir.join("pg_wal/RECOVERYXLOG"));
        // Not running: whatever the signal files say, nobody recovers.
        fs::write(data_dir.join("recovery.signal"), b"").unwrap();
        assert_eq!(mode(), RecoveryMode::NoRecovery);
        fs::write(data_dir.join("postmaster.pid"), b"").unwrap();
        assert_eq!(mode(), RecoveryMode::ArchiveRecovery);
        fs::write(data_dir.join("standby.signal"), b"").unwrap();
        assert_eq!(mode(), RecoveryMode::Standby);
        fs::remove_file(data_dir.join("recovery.signal")).unwrap();
        assert_eq!(mode(), RecoveryMode::Standby);
        fs::remove_file(data_dir.join("standby.signal")).unwrap();
        assert_eq!(mode(), RecoveryMode::NoRecovery);
        // A destination outside pg_wal is a call by hand.
        fs::write(data_dir.join("recovery.signal"), b"").unwrap();
        assert_eq!(
            RecoveryMode::of_destination(&data_dir.join("RECOVERYXLOG")),
            RecoveryMode::NoRecovery
        );
    }

    #[test]
    fn only_archive_recovery_fails_fatally() {
        assert_eq!(RecoveryMode::ArchiveRecovery.failure_exit_code(), 128);
        assert!(
            RecoveryMode::ArchiveRecovery
                .failure_consequence()
                .unwrap()
                .contains("exit code 128")
        );
        assert_eq!(RecoveryMode::Standby.failure_exit_code(), 1);
        assert_eq!(RecoveryMode::NoRecovery.failure_exit_code(), 1);
        assert_eq!(RecoveryMode::NoRecovery.failure_consequence(), None);
    }
}
