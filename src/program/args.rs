//! Command-line parsing for every Tidemark program: clap's usage errors become one line and exit
//! 1, as every other failure does.

use std::io::Write;
use std::process::ExitCode;

use super::one_line;

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

/// Runs this process as the helper whose hidden `flag` its arguments hold (`tidemark-archive
/// --work-ahead-worker`, `tidemark-restore --prefetcher`: the program started by itself, not by
/// PostgreSQL), parsing them as `H`; `None` when they do not hold it.
pub fn run_as_helper<H: clap::Parser>(
    program: &str,
    flag: &str,
    helper: impl FnOnce(H) -> anyhow::Result<()>,
) -> Option<ExitCode> {
    if !std::env::args_os().any(|arg| arg == flag) {
        return None;
    }
    Some(match parse_args::<H>(program) {
        Ok(args) => super::run(program, || helper(args).map(|()| super::Finished::Success)),
        Err(code) => code,
    })
}
