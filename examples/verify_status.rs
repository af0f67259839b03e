//! A relying party's status check in a dozen lines: the library call behind `statusd verify`.
//!
//! ```text
//! cargo run --example verify_status -- CREDENTIAL_FILE [CACHE_DIR]
//! ```
//!
//! Verify the credential's own signature first (draft §8.3 step 1); this checks its status
//! only. The process exits 0 VALID, 10 INVALID, 11 SUSPENDED, 12 any other status and 1 when
//! no statement can be made, as `statusd verify` does.

use statusd::verifier::{Cache, Options, Verifier, EXIT_CHECK_FAILED};
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: verify_status CREDENTIAL_FILE [CACHE_DIR]");
        return ExitCode::from(EXIT_CHECK_FAILED);
    };
    let credential = match std::fs::read(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(EXIT_CHECK_FAILED);
        }
    };
    let opts = Options {
        // Keep lists across runs: within a list's ttl no request is made at all.
        cache: Some(Cache::new(
            args.next().map_or_else(Cache::default_dir, Into::into),
        )),
        ..Options::default()
    };
    match Verifier::new(opts).verify(&credential).await {
        Ok(report) => {
            for r in &report.references {
                println!(
                    "{} -> {} (list from {:?}, {} s old)",
                    r.reference.url(),
                    r.status,
                    r.list.source,
                    r.list.age_seconds
                );
            }
            ExitCode::from(report.exit_code)
        }
        Err(e) => {
            eprintln!("no statement can be made: {e}");
            ExitCode::from(EXIT_CHECK_FAILED)
        }
    }
}
