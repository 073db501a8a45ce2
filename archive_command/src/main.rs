//! `tidemark-archive`: PostgreSQL's archive_command. Exit 0 only when the WAL file is durable.

fn main() -> std::process::ExitCode {
    tidemark::cli::hot_path::archive_command_main()
}
