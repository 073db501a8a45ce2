//! The `tidemark` command; see `tidemark --help`.

fn main() -> std::process::ExitCode {
    tidemark::cli::tidemark_main()
}
