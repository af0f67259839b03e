//! The decoder interop matrix (issue 15 item 5): statusd's own DEFLATE writer, as published
//! (the IETF `lst`, ZLIB; the W3C `encodedList`, GZIP), read by independent decoders:
//! miniz_oxide and zlib-rs (Rust, in process), C zlib through Python's `zlib`/`gzip`, Node's
//! `zlib`, pako and fflate (npm, `tests/interop/package.json`), and Java's `java.util.zip`.
//! Go is not in the matrix: no Go toolchain is on the CI image, and Debian's `golang-go` (plus
//! a compile per run) costs more CI time than the one more zlib-compatible reader adds.
//!
//! Cases: every bit width; 2^10 to 2^24 entries; empty, sparse, dense and all-set lists; and
//! runs (of zeros and of non-zero bytes) whose lengths straddle the writer's internal limits:
//! the 258-byte match, the 516-byte dynamic-programming tail, the 4,096-byte checksum buffer,
//! Adler-32's 5,552-byte block and the 32 KiB window. Every decoder must return exactly the
//! bytes statusd packed; the expected bytes come from the naive packer, not the writer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::{Rng as _, SeedableRng as _};
use sha2::{Digest as _, Sha256};
use statusd::status::ietf::IetfList;
use statusd::status::{w3c, Bits, Status, StatusList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::TempDir;

/// One compressed artefact and the bytes it must decode to.
struct Case {
    id: String,
    kind: &'static str,
    compressed: Vec<u8>,
    expected: Vec<u8>,
}

fn bits_all() -> [Bits; 4] {
    [Bits::One, Bits::Two, Bits::Four, Bits::Eight]
}

/// Entries of a list of `size` entries of width `bits` at `density` (0.0 empty, 1.0 all set to
/// the largest value, between: random indices with random non-zero values).
fn entries(bits: Bits, size: u32, density: f64, seed: u64) -> Vec<(u64, Status)> {
    let max = bits.max_value();
    if density >= 1.0 {
        return (0..u64::from(size)).map(|i| (i, Status(max))).collect();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = (f64::from(size) * density) as u64;
    (0..n)
        .map(|_| {
            (
                rng.gen_range(0..u64::from(size)),
                Status(rng.gen_range(1..=max)),
            )
        })
        .collect()
}

/// Runs straddling the writer's limits, in a list of 8-bit entries: a zero run of each length
/// between single non-zero bytes, then non-zero runs of each length (repeating pattern, so far
/// matches are tried).
fn run_entries(size: u32) -> Vec<(u64, Status)> {
    const LIMITS: [u64; 6] = [258, 516, 4096, 5552, 32768, 65536];
    let mut out = Vec::new();
    let mut at = 0u64;
    for l in LIMITS {
        for len in [l - 1, l, l + 1] {
            at += len;
            out.push((at, Status(0x5a)));
            at += 1;
        }
    }
    for l in LIMITS {
        for len in [l - 1, l, l + 1] {
            for i in 0..len {
                if at + i >= u64::from(size) {
                    return out;
                }
                out.push((at + i, Status(1 + (i % 7) as u8)));
            }
            at += len + 3;
        }
    }
    out
}

/// The packed array by the draft's formula (§4.1; the W3C order mirrors it), written here
/// from the entries so the expected bytes do not come from the code under test.
fn naive_pack(bits: Bits, size: u32, entries: &BTreeMap<u64, u8>, lsb_first: bool) -> Vec<u8> {
    let b = u64::from(bits.get());
    let per = 8 / b;
    let mut out = vec![0u8; (u64::from(size) * b).div_ceil(8) as usize];
    for (&i, &v) in entries {
        let slot = (i % per) * b;
        let shift = if lsb_first { slot } else { 8 - b - slot };
        out[(i / per) as usize] |= v << shift;
    }
    out
}

/// The IETF (ZLIB) and, for lists the W3C allows, the W3C (GZIP) artefact of a list, each
/// produced by the encoder statusd publishes with.
fn cases_for(id: &str, bits: Bits, size: u32, entries: Vec<(u64, Status)>) -> Vec<Case> {
    let list =
        StatusList::from_entries(bits, size, entries.iter().copied()).expect("valid entries");
    let last: BTreeMap<u64, u8> = entries.into_iter().map(|(i, s)| (i, s.0)).collect();
    let mut out = Vec::new();
    let lst = IetfList::encode(&list, None).to_json()["lst"]
        .as_str()
        .expect("lst is a string")
        .to_owned();
    out.push(Case {
        id: format!("{id}-zlib"),
        kind: "zlib",
        compressed: URL_SAFE_NO_PAD.decode(lst).expect("lst is base64url"),
        expected: naive_pack(bits, size, &last, true),
    });
    if size >= w3c::MIN_ENTRIES {
        let encoded = w3c::encode_list(bits, size, list.iter_nonzero().map(|(i, s)| (i, s.0)))
            .expect("a W3C-sized list encodes");
        out.push(Case {
            id: format!("{id}-gzip"),
            kind: "gzip",
            compressed: URL_SAFE_NO_PAD
                .decode(encoded.strip_prefix('u').expect("multibase u"))
                .expect("encodedList is base64url"),
            expected: naive_pack(bits, size, &last, false),
        });
    }
    out
}

/// The matrix. Every width meets every density up to 2^17 entries; the larger sizes keep to
/// the shapes that stay quick in a debug build (CI budget: about a minute).
fn all_cases() -> Vec<Case> {
    let mut shapes: Vec<(Bits, u32, f64)> = Vec::new();
    for bits in bits_all() {
        for log2 in [10, 14, 17] {
            for density in [0.0, 0.0001, 0.01, 0.5, 1.0] {
                shapes.push((bits, log2, density));
            }
        }
        for density in [0.0, 0.0001, 0.01] {
            shapes.push((bits, 20, density));
        }
    }
    shapes.extend([
        (Bits::One, 20, 0.5),
        (Bits::One, 20, 1.0),
        (Bits::Eight, 20, 1.0),
        (Bits::One, 24, 0.0),
        (Bits::One, 24, 0.0001),
        (Bits::Two, 24, 0.00001),
        (Bits::Eight, 24, 0.0),
        (Bits::Eight, 24, 0.00001),
    ]);
    let mut out = Vec::new();
    for (seed, (bits, log2, density)) in shapes.into_iter().enumerate() {
        let size = 1u32 << log2;
        let id = format!("b{}-2^{log2}-d{density}", bits.get());
        out.extend(cases_for(
            &id,
            bits,
            size,
            entries(bits, size, density, seed as u64),
        ));
    }
    let size = 1 << 20;
    out.extend(cases_for(
        "b8-2^20-runs",
        Bits::Eight,
        size,
        run_entries(size),
    ));
    out
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn rust_decoders(c: &Case) -> Vec<(&'static str, Result<Vec<u8>, String>)> {
    let miniz = match c.kind {
        "zlib" => miniz_oxide::inflate::decompress_to_vec_zlib(&c.compressed)
            .map_err(|e| format!("{e:?}")),
        // miniz_oxide reads raw DEFLATE: statusd's GZIP header is the fixed 10 bytes (no
        // FEXTRA/FNAME/FCOMMENT), and the trailer is checked here.
        _ => miniz_oxide::inflate::decompress_to_vec(&c.compressed[10..])
            .map_err(|e| format!("{e:?}"))
            .and_then(|out| {
                let t = &c.compressed[c.compressed.len() - 8..];
                let crc = u32::from_le_bytes(t[..4].try_into().unwrap());
                let isize = u32::from_le_bytes(t[4..].try_into().unwrap());
                if crc != crc32fast::hash(&out) || isize != out.len() as u32 {
                    Err("CRC-32 or ISIZE mismatch".to_owned())
                } else {
                    Ok(out)
                }
            }),
    };
    let zlib_rs = {
        let mut buf = vec![0u8; c.expected.len() + 1];
        let window_bits = if c.kind == "zlib" { 15 } else { 16 + 15 };
        let (out, rc) = zlib_rs::decompress_slice(
            &mut buf,
            &c.compressed,
            zlib_rs::InflateConfig { window_bits },
        );
        if rc == zlib_rs::ReturnCode::Ok {
            Ok(out.to_vec())
        } else {
            Err(format!("{rc:?}"))
        }
    };
    vec![("miniz_oxide", miniz), ("zlib-rs", zlib_rs)]
}

pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs tests/interop's npm packages (pako, fflate, Digital Bazaar's vc-status-list, vc and
/// Data Integrity cryptosuites) from the lock file into tests/interop/node_modules when any is
/// missing.
pub fn npm_install() {
    let dir = interop_dir();
    let have = |p: &str| dir.join("node_modules").join(p).is_dir();
    if have("pako")
        && have("fflate")
        && have("@digitalbazaar/vc-status-list")
        && have("@digitalbazaar/vc")
        && have("@digitalbazaar/eddsa-rdfc-2022-cryptosuite")
        && have("did-context")
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&dir)
        .output()
        .expect("run npm (Node.js and npm are required; scripts/test installs them)");
    assert!(
        out.status.success(),
        "npm ci in tests/interop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `node` with `args` in tests/interop (its packages installed first), off the async
/// workers; the JSON it prints. Panics with its standard error if it fails.
pub async fn node_json(args: Vec<std::ffi::OsString>) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || {
        npm_install();
        Command::new("node")
            .args(&args)
            .current_dir(interop_dir())
            .output()
            .expect("run node (scripts/test installs it)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON result")
}

/// Runs an external decoder over the manifest; its TSV lines keyed by (decoder, id).
fn external(cmd: &str, args: &[&str]) -> BTreeMap<(String, String), String> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(interop_dir())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let (d, id, rest) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap_or(""));
            ((d.to_owned(), id.to_owned()), rest.to_owned())
        })
        .collect()
}

#[test]
fn every_decoder_reads_every_list_statusd_writes() {
    let started = std::time::Instant::now();
    let cases = all_cases();
    eprintln!(
        "interop: cases built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let dir = TempDir::new("interop");
    let mut manifest = String::new();
    for c in &cases {
        let path = dir.0.join(format!("{}.{}", c.id, c.kind));
        std::fs::write(&path, &c.compressed).unwrap();
        manifest.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            c.id,
            c.kind,
            path.display(),
            c.expected.len(),
            sha256_hex(&c.expected)
        ));
    }
    let manifest_path = dir.0.join("manifest.tsv");
    std::fs::write(&manifest_path, manifest).unwrap();
    let m = manifest_path.to_str().unwrap();

    npm_install();
    let t = std::time::Instant::now();
    let mut results = external("node", &["decode.mjs", m]);
    eprintln!("interop: node {:.1} s", t.elapsed().as_secs_f64());
    results.extend(external("python3", &["decode.py", m]));
    eprintln!("interop: +python {:.1} s", t.elapsed().as_secs_f64());
    results.extend(external("java", &["Decode.java", m]));
    eprintln!("interop: +java {:.1} s", t.elapsed().as_secs_f64());

    let mut failures = Vec::new();
    let mut checked = BTreeMap::<String, usize>::new();
    for c in &cases {
        for (decoder, got) in rust_decoders(c) {
            *checked.entry(decoder.into()).or_default() += 1;
            match got {
                Ok(b) if b == c.expected => {}
                Ok(b) => failures.push(format!("{decoder} {}: {} bytes differ", c.id, b.len())),
                Err(e) => failures.push(format!("{decoder} {}: {e}", c.id)),
            }
        }
        let want = format!("{}\t{}", c.expected.len(), sha256_hex(&c.expected));
        for decoder in [
            "node-zlib",
            "pako",
            "fflate",
            "python-zlib",
            "java-util-zip",
        ] {
            *checked.entry(decoder.into()).or_default() += 1;
            match results.get(&(decoder.to_owned(), c.id.clone())) {
                Some(got) if *got == want => {}
                Some(got) => failures.push(format!("{decoder} {}: {got}", c.id)),
                None => failures.push(format!("{decoder} {}: no result", c.id)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Seven independent decoders, each over every case (zlib and gzip both present).
    assert_eq!(checked.len(), 7);
    assert!(checked.values().all(|&n| n == cases.len()));
    assert!(cases.iter().any(|c| c.kind == "gzip") && cases.iter().any(|c| c.kind == "zlib"));
    eprintln!(
        "interop: {} artefacts x 7 decoders in {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
}
