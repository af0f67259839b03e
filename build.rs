//! Link-time layout of the `statusd` binary.
//!
//! A small answer runs through ~50 KiB of code, more than a core's L1 instruction cache, and in
//! a 10 MiB `.text` that code lay spread over ~80 pages of 4 KiB (issue 18, `loadtest/profile`'s
//! code pages). In release builds of the `statusd` binary, lld places the functions listed in
//! `src/hot-text.order` (those the request path runs, hottest first) together at the start of
//! `.text` (`--symbol-ordering-file`): the same instructions, on far fewer pages and in fewer
//! instruction TLB entries, next to each other for the prefetcher.
//!
//! The list is generated, never edited by hand: `loadtest/profile --hot-text` writes it from
//! the callgrind profile of the three small-answer scenarios. Names it lists that a build does not
//! have (a dependency upgraded, a function renamed, or the crate built from another directory:
//! statusd's own functions and its instances of generic code carry a hash of the crate's
//! metadata, which includes its path) are skipped by the linker, silently; so a stale list costs
//! layout, never a build, and `loadtest/profile` reports how much of it the binary still
//! matches.
//!
//! Only where lld is the linker: the default of Rust ≥ 1.90 on x86_64 Linux, unless a linker is
//! configured (`RUSTC_LINKER`) or the flags pick another one. Elsewhere, or with
//! `STATUSD_NO_HOT_TEXT` set (to any value) in the build's environment, the binary is linked as
//! before.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/hot-text.order");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    println!("cargo:rerun-if-env-changed=STATUSD_NO_HOT_TEXT");
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let default_lld = env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && env::var_os("RUSTC_LINKER").is_none()
        && !env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("link"));
    if !release || !default_lld || env::var_os("STATUSD_NO_HOT_TEXT").is_some() {
        return;
    }
    let order = format!(
        "{}/src/hot-text.order",
        env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
    );
    if std::path::Path::new(&order).is_file() {
        println!("cargo:rustc-link-arg-bin=statusd=-Wl,--symbol-ordering-file={order}");
        println!("cargo:rustc-link-arg-bin=statusd=-Wl,--no-warn-symbol-ordering");
    }
}
