//! Shared helpers for the integration tests: test vectors and small decoders.

use serde_json::Value;
use std::sync::OnceLock;

/// `tests/data/vectors.json`, extracted verbatim from the shared spec by
/// `scripts/extract-vectors.py`.
pub fn vectors() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vectors.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors.json"))
            .expect("vectors.json is JSON")
    })
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}
