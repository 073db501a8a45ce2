//! Runs a command the way every Tidemark binary must end: exit 0 on success, 1 on any failure or
//! "not found", the error printed once as one line. Never a higher code, never a death by a
//! panic's abort: PostgreSQL treats codes above 125 and signals from archive_command and
//! restore_command as fatal.

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

use super::logging;

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

/// Runs `command` with logging set up, and maps its result to an exit code.
pub fn run(program: &str, command: impl FnOnce() -> anyhow::Result<Finished>) -> ExitCode {
    logging::init(program);
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
            tracing::error!("{}", error_line(&error));
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(1),
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

/// An error and its causes on one line. A cause the text already ends with is not repeated:
/// an error that shows its source in its own message (`"{doing}: {source}"`) still reports it
/// as its source.
fn error_line(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    one_line(&text)
}

/// Joins the lines of a message so every error is exactly one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses arguments with clap, turning a usage error into one line and exit code 1 (clap's own
/// code for it is 2, which PostgreSQL would also take as failure, but we promise 0 or 1).
pub fn parse_args<P: clap::Parser>(program: &str) -> Result<P, ExitCode> {
    match P::try_parse() {
        Ok(parsed) => Ok(parsed),
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = error.print();
                return Err(
                    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    },
                );
            }
            let rendered = error.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .filter(|line| {
                    !line.is_empty()
                        && !line.starts_with("Usage:")
                        && !line.starts_with("For more information")
                })
                .collect();
            let message = one_line(&message.join(" "));
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            let _ = writeln!(
                std::io::stderr(),
                "{program}: ERROR: {message}; run '{program} --help' for usage"
            );
            Err(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let storage = crate::storage::StorageError::Io {
            doing: "read s3://b/k".to_owned(),
            source: std::io::Error::other("access denied"),
        };
        let error = anyhow::Error::new(storage).context("open the repository");
        assert_eq!(
            error_line(&error),
            "open the repository: read s3://b/k: access denied"
        );
        let plain = anyhow::anyhow!("line 2:\n  unknown key").context("config file x");
        assert_eq!(error_line(&plain), "config file x: line 2: unknown key");
    }
}
