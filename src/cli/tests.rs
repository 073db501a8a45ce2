//! The `tidemark` binary's own tests: what ties its parts to the library.

use std::iter;
use std::path::{Path, PathBuf};

use clap::Parser;
use tidemark::archive::get_command::{PREFETCHER_FLAG, RESTORE_PROGRAM};
use tidemark::archive::helper_process::HelperCommand;
use tidemark::archive::push_command::{ARCHIVE_PROGRAM, WORKER_FLAG};
use tidemark::config::{Config, Selected};

use super::archive_command::WorkAheadWorkerArgs;
use super::restore_command::PrefetcherArgs;

/// `archive::` builds the command line that starts a helper; the hot-path programs' own clap
/// structs parse it. They live in different crates, so this holds them together.
#[test]
fn helpers_parse_the_command_lines_they_are_started_with() {
    let config = Config::parse("[repo]\npath = \"/r\"\n\n[stanza.main]\n").unwrap();
    let (stanza_name, stanza) = config.select_stanza(None).unwrap();
    let selected = Selected {
        config,
        config_path: PathBuf::from("tidemark.toml"),
        stanza_name,
        stanza,
    };
    let pg_wal = Path::new("/data/pg_wal");
    let command_line = |program: &str, flag: &str| {
        let command = HelperCommand::this_program(&selected, program, flag, pg_wal).unwrap();
        assert_eq!(command.arg0, program);
        iter::once(command.arg0.into()).chain(command.args)
    };
    let config_path = Some(std::path::absolute("tidemark.toml").unwrap());

    let worker: WorkAheadWorkerArgs = parse(command_line(ARCHIVE_PROGRAM, WORKER_FLAG));
    assert_eq!(worker.work_ahead_worker, pg_wal);
    assert_eq!(worker.choice.config, config_path);
    assert_eq!(worker.choice.stanza.as_deref(), Some("main"));

    let prefetcher: PrefetcherArgs = parse(command_line(RESTORE_PROGRAM, PREFETCHER_FLAG));
    assert_eq!(prefetcher.prefetcher, pg_wal);
    assert_eq!(prefetcher.choice.config, config_path);
    assert_eq!(prefetcher.choice.stanza.as_deref(), Some("main"));
}

/// `P` parsed from `args`, failing the test with clap's own message.
fn parse<P: Parser>(args: impl IntoIterator<Item = std::ffi::OsString>) -> P {
    P::try_parse_from(args).unwrap_or_else(|error| panic!("{error}"))
}
