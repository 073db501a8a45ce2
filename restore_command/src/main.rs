//! `tidemark-restore`: PostgreSQL's restore_command. Exit 0 with the verified file in place, 1 if
//! it is not archived or cannot be restored.

mod command;

fn main() -> std::process::ExitCode {
    command::main()
}
