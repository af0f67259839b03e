//! Replays the fuzz corpus without a fuzzer: every committed seed (`fuzz/corpus/<target>/seed-*`)
//! and every input that once crashed a target (`tests/data/fuzz-regressions/<target>/*`) runs
//! through the same body the libFuzzer target runs ([`TARGETS`]), so a fixed crash stays fixed
//! and the property checks run in CI. `scripts/fuzz` fills both directories.

use crate::TARGETS;
use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `fuzz/`).
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The files of one target's directory under `base`, sorted; none if it does not exist.
fn inputs(base: &str, target: &str, seeds_only: bool) -> Vec<PathBuf> {
    let dir = Path::new(ROOT).join(base).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !seeds_only
                || p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .collect();
    files.sort();
    files
}

fn replay(base: &str, seeds_only: bool) -> usize {
    let mut n = 0;
    for (target, body) in TARGETS {
        for file in inputs(base, target, seeds_only) {
            let data = std::fs::read(&file).expect("readable input");
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", file.display());
            n += 1;
        }
    }
    n
}

#[test]
fn seed_corpus_passes_every_target() {
    let n = replay("fuzz/corpus", true);
    assert!(
        n >= TARGETS.len(),
        "every target has seeds (found {n} inputs)"
    );
}

#[test]
fn crash_inputs_stay_fixed() {
    replay("tests/data/fuzz-regressions", false);
}

#[test]
fn every_directory_names_a_target() {
    for base in ["fuzz/corpus", "tests/data/fuzz-regressions"] {
        let Ok(dirs) = std::fs::read_dir(Path::new(ROOT).join(base)) else {
            continue;
        };
        for d in dirs {
            let name = d.expect("readable directory").file_name();
            let name = name.to_string_lossy();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "{base}/{name} is not a fuzz target"
            );
        }
    }
}
