//! `tidemark-archive`: PostgreSQL's archive_command. Exit 0 only when the WAL file is durable.

mod command;

fn main() -> std::process::ExitCode {
    command::main()
}
