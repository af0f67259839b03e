//! CLI tests (written with the CLI).
