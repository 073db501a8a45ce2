//! The `tidemark` command; see `tidemark --help`. Its command line is its own (`cli/`), over the
//! library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::tidemark_main()
}
