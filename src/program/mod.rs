//! How a Tidemark program runs and ends, for all three binaries: logging to stderr, the panic
//! hook, every error printed once as one line, and the exit codes PostgreSQL reads. Exit 0 on
//! success, 1 on "not found" and on any failure; never a death by a panic's abort.
//! PostgreSQL treats codes above 125 and signals from archive_command and restore_command as
//! fatal, so a failure exits above 1 only where that is the point: `tidemark-restore` during an
//! archive recovery, where exit 1 would read as "the archive ends here" (see
//! `archive::recovery_mode`).
//!
//! * `logging.rs` — log lines on stderr, one per event;
//! * `args.rs` — command-line parsing whose usage errors end as one line and exit 1.

mod args;
mod logging;

pub use args::{parse_args, run_as_helper};

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

/// How a command ended when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    Success,
    /// The thing asked for does not exist; exit 1 without an error line.
    NotFound,
}

/// The program name as invoked (`tidemark-archive`, `tidemark`, …).
pub fn program_name(default: &str) -> String {
    std::env::args_os()
        .next()
        .and_then(|arg| {
            std::path::Path::new(&arg)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| default.to_owned())
}

/// How a failed command ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What that exit code does, said after the error on its line.
    pub consequence: Option<&'static str>,
}

impl Failure {
    /// Exit 1, nothing more to say: every command but `restore_command` in archive recovery.
    pub const PLAIN: Failure = Failure {
        code: 1,
        consequence: None,
    };
}

/// Runs `command` with logging set up, and maps its result to an exit code: 1 on failure.
pub fn run(program: &str, command: impl FnOnce() -> anyhow::Result<Finished>) -> ExitCode {
    run_failing_as(program, Failure::PLAIN, command)
}

/// Like [`run`], a failure (an error or a panic) ending as `failure` says.
pub fn run_failing_as(
    program: &str,
    failure: Failure,
    command: impl FnOnce() -> anyhow::Result<Finished>,
) -> ExitCode {
    logging::init(program);
    keep_secrets_out_of_core_files();
    let name = program.to_owned();
    panic::set_hook(Box::new(move |info| {
        let message = info.to_string().replace('\n', " ");
        // Never eprintln! here: a failed write would panic inside the hook and abort.
        let _ = writeln!(
            std::io::stderr(),
            "{name}: ERROR: internal error, please report it: {message}"
        );
    }));
    match panic::catch_unwind(AssertUnwindSafe(command)) {
        Ok(Ok(Finished::Success)) => ExitCode::SUCCESS,
        Ok(Ok(Finished::NotFound)) => ExitCode::from(1),
        Ok(Err(error)) => {
            let mut line = error_with_causes(&error);
            if let Some(consequence) = failure.consequence {
                line.push_str("; ");
                line.push_str(consequence);
            }
            tracing::error!("{}", one_line(&line));
            ExitCode::from(failure.code)
        }
        Err(_) => ExitCode::from(failure.code),
    }
}

/// Marks this process not dumpable: no core file, and no `ptrace` or reading of its memory and
/// environment by other processes of the same user. Every Tidemark program may hold a secret
/// (a passphrase or key of an encrypted repository, `TIDEMARK_PASSPHRASE`, S3 keys, a
/// PostgreSQL password), and the configuration that says which is read only later, by each
/// command, so it is done always. Other processes can still read `/proc/<pid>/stat` and
/// `cmdline`, which is all that lock liveness and the helpers' discovery look at.
fn keep_secrets_out_of_core_files() {
    use rustix::process::{DumpableBehavior, set_dumpable_behavior};
    if let Err(error) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!("cannot keep secrets out of core files (prctl PR_SET_DUMPABLE): {error}");
    }
}

/// Writes a command's result to stdout. Unlike `print!`, a closed pipe (`tidemark info | head`)
/// is an ordinary error, not a panic.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// An error and its causes, `: `-separated, leaving out a cause whose text the message already
/// holds (an error that shows its source in its own text would otherwise say it twice).
pub fn error_with_causes(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let line = cause.to_string();
        if text.contains(&line) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&line);
    }
    text
}

/// Joins the lines of a message so every error is exactly one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("read x: {source}")]
    struct ShowsItsSource {
        source: std::io::Error,
    }

    #[test]
    fn the_process_is_made_not_dumpable() {
        use rustix::process::{DumpableBehavior, dumpable_behavior};
        keep_secrets_out_of_core_files();
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let error = anyhow::Error::new(ShowsItsSource {
            source: std::io::Error::other("disk on fire"),
        })
        .context("push 000000010000000000000001");
        assert_eq!(
            error_with_causes(&error),
            "push 000000010000000000000001: read x: disk on fire"
        );
    }
}
