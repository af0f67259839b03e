//! The `statusd` binary: parse the command line, run, and report errors with their causes.
//! Everything else lives in the library so tests and benches call the same code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = <statusd::cli::Cli as clap::Parser>::parse();
    match statusd::cli::run(cli) {
        Ok(code) => code,
        // The reader closed the pipe (`statusd … | head`): it has what it wanted.
        Err(err) if statusd::cli::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole chain, so the operator sees the root cause, not just the outermost
            // context.
            eprintln!("{}", statusd::cli::report(&err));
            ExitCode::from(statusd::cli::EXIT_FAILURE)
        }
    }
}
