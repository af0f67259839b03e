//! The `statusd` binary: parse the command line, run, and report errors with their causes.
//! Everything else lives in the library so tests and benches call the same code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = <statusd::cli::Cli as clap::Parser>::parse();
    match statusd::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Walk the chain so the operator sees the root cause, not just the outermost context.
            let mut msg = format!("statusd: {err}");
            for cause in err.chain().skip(1) {
                msg.push_str(&format!("\n  caused by: {cause}"));
            }
            eprintln!("{msg}");
            ExitCode::from(statusd::cli::EXIT_FAILURE)
        }
    }
}
