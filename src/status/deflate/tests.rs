//! Round trips against three decoders, spec vectors, precise inflate errors and bombs.

use super::checksum::adler32;
use super::huffman::limited_lengths;
use super::inflate::gzip_header_len;
use super::tables::*;
use super::*;
use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};

fn dense(len: usize, items: &[(usize, u8)]) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for &(off, b) in items {
        v[off] = b;
    }
    v
}

fn sparse(data: &[u8]) -> Vec<(usize, u8)> {
    data.iter()
        .enumerate()
        .filter(|(_, &b)| b != 0)
        .map(|(i, &b)| (i, b))
        .collect()
}

/// Decodes with flate2's own readers (system zlib, its own GZIP header parser).
fn flate2_zlib(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ZlibDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

fn flate2_gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

fn zlib9(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Round trip of one array through both formats and three decoders each.
fn check(len: usize, items: &[(usize, u8)]) {
    let want = dense(len, items);
    let z = zlib_sparse(len, items.iter().copied());
    assert_eq!(&z[..2], &[0x78, 0xda]);
    assert_eq!(flate2_zlib(&z), want, "zlib, len {len}");
    assert_eq!(inflate_zlib(&z, len).unwrap(), want);
    let g = gzip_sparse(len, items.iter().copied());
    assert_eq!(&g[..3], &[0x1f, 0x8b, 0x08]);
    assert_eq!(flate2_gzip(&g), want, "gzip, len {len}");
    assert_eq!(inflate_gzip(&g, len).unwrap(), want);
    // The checksums of the sparse path against the dense reference.
    assert_eq!(adler32_sparse(len, items), adler32(&want));
    assert_eq!(crc32_sparse(len, items), crc32fast::hash(&want));
}

fn random_items(rng: &mut StdRng, len: usize, density: f64) -> Vec<(usize, u8)> {
    let mut items = Vec::new();
    for i in 0..len {
        if rng.gen_bool(density) {
            items.push((i, rng.gen_range(1..=255)));
        }
    }
    items
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The target workload: `entries` 2-bit entries, ~1 % INVALID (1) and ~0.2 % SUSPENDED (2),
/// packed LSB-first.
fn status_workload(entries: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bytes = vec![0u8; entries / 4];
    for i in 0..entries {
        let r: f64 = rng.gen();
        let v = if r < 0.01 {
            1
        } else if r < 0.012 {
            2
        } else {
            continue;
        };
        bytes[i / 4] |= v << ((i % 4) * 2);
    }
    bytes
}

#[test]
fn edge_cases_round_trip() {
    check(0, &[]);
    check(1, &[]);
    check(1, &[(0, 7)]);
    check(2, &[(1, 7)]);
    for len in [
        2, 3, 4, 5, 6, 257, 258, 259, 260, 261, 515, 516, 517, 518, 1000, 65536,
    ] {
        check(len, &[]);
        check(len, &[(0, 1)]);
        check(len, &[(len - 1, 0xff)]);
        check(len, &[(0, 3), (len - 1, 0x80)]);
        check(len, &sparse(&vec![0xa5; len]));
    }
    // Runs of exactly 1, 2, 3, 4 and around 258 and 516 between non-zero bytes.
    for run in [
        1, 2, 3, 4, 257, 258, 259, 260, 261, 514, 515, 516, 517, 518, 775, 1033,
    ] {
        let len = 2 * run + 3;
        check(len, &[(0, 1), (run + 1, 2), (2 * run + 2, 3)]);
        check(len, &[(run, 9), (2 * run + 1, 9)]);
    }
}

#[test]
fn random_densities_and_lengths_round_trip() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for len in [0, 1, 7, 258, 259, 65536, 262144, 1 << 21] {
        for density in [0.0, 0.0001, 0.01, 0.05, 0.5, 1.0] {
            let items = random_items(&mut rng, len, density);
            check(len, &items);
        }
    }
}

#[test]
fn long_zero_runs_use_the_logarithmic_crc_path() {
    let len = 10_000_000;
    let items = [(5_000, 1), (4_000_000, 0x40), (len - 1, 2)];
    check(len, &items);
    assert_eq!(crc32_sparse(len, &[]), crc32fast::hash(&vec![0; len]));
}

#[test]
fn size_within_five_percent_of_zlib_9_on_target_workload() {
    let bytes = status_workload(1 << 20, 42);
    let ours = zlib_sparse(bytes.len(), sparse(&bytes));
    let theirs = zlib9(&bytes);
    assert_eq!(inflate_zlib(&ours, bytes.len()).unwrap(), bytes);
    assert!(
        ours.len() as f64 <= 1.05 * theirs.len() as f64,
        "ours {} bytes, zlib -9 {} bytes",
        ours.len(),
        theirs.len()
    );
    let g = gzip_sparse(bytes.len(), sparse(&bytes));
    assert_eq!(flate2_gzip(&g), bytes);
}

#[test]
fn distance_codes_match_the_rfc_table() {
    for d in 1..=WINDOW {
        let c = dist_code(d);
        let lo = usize::from(DIST_BASE[c]);
        assert!(
            lo <= d && d < lo + (1 << DIST_EXTRA[c]),
            "distance {d} code {c}"
        );
    }
    for (m, &code) in LEN_CODE.iter().enumerate().skip(MIN_MATCH) {
        let c = code as usize;
        let lo = usize::from(LEN_BASE[c]);
        assert!(
            lo <= m && (m < lo + (1 << LEN_EXTRA[c]) || m == MAX_MATCH),
            "length {m}"
        );
    }
}

#[test]
fn repeated_patterns_use_far_matches_within_the_window() {
    // A 12-item pattern every 3000 bytes, and lone bytes 40000 apart (beyond the window).
    let pattern = [0usize, 5, 9, 40, 41, 100, 180, 181, 182, 600, 900, 2000];
    let mut items = Vec::new();
    for rep in 0..40 {
        for (k, at) in pattern.iter().enumerate() {
            items.push((rep * 3000 + at, 1 + (k % 3) as u8));
        }
    }
    for k in 0..8 {
        items.push((130_000 + k * 40_000, 7));
    }
    let len = 450_000;
    check(len, &items);
    let plan = Plan::new(&Sparse { len, items: &items });
    assert!(
        plan.fars.len() > 100,
        "only {} far matches",
        plan.fars.len()
    );
    assert!(plan
        .fars
        .iter()
        .all(|f| usize::from(f.dist) <= WINDOW && f.dist > 1));
    assert!(
        plan.fars.iter().any(|f| f.last > f.first),
        "no match spans several items"
    );
}

#[test]
fn package_merge_respects_the_limit_and_is_complete() {
    // Fibonacci weights force a 30-deep unlimited tree.
    let mut freqs = [0u64; 30];
    let (mut a, mut b) = (1u64, 1u64);
    for f in &mut freqs {
        *f = a;
        (a, b) = (b, a + b);
    }
    for max in [5, 7, 15] {
        let mut lens = [0u8; 30];
        limited_lengths(&freqs, max, &mut lens);
        assert!(lens.iter().all(|&l| l >= 1 && l as usize <= max));
        let kraft: f64 = lens.iter().map(|&l| 0.5f64.powi(i32::from(l))).sum();
        assert!((kraft - 1.0).abs() < 1e-12, "kraft {kraft} for max {max}");
    }
}

#[test]
fn spec_vectors() {
    assert_eq!(
        inflate_zlib(&hex("78dadbb918000217015d"), 100).unwrap(),
        [0xb9, 0xa3]
    );
    assert_eq!(
        inflate_zlib(&hex("78da3be9f2130003df0207"), 100).unwrap(),
        [0xc9, 0x44, 0xf9]
    );
    use base64::Engine;
    let gz = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode("H4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA")
        .unwrap();
    assert_eq!(inflate_gzip(&gz, 1 << 20).unwrap(), vec![0u8; 16384]);
    // And our encodings of the same arrays decode to the same bytes.
    check(2, &[(0, 0xb9), (1, 0xa3)]);
    check(16384, &[]);
}

#[test]
fn inflate_reports_each_error_precisely() {
    let z = zlib_sparse(1000, [(10, 1), (500, 2)]);
    let g = gzip_sparse(1000, [(10, 1), (500, 2)]);
    assert_eq!(inflate_zlib(&g, 1 << 20), Err(InflateError::GzipNotZlib));
    assert_eq!(inflate_gzip(&z, 1 << 20), Err(InflateError::ZlibNotGzip));
    let zlib_bad = Err(InflateError::BadHeader { expected: "ZLIB" });
    let gzip_bad = Err(InflateError::BadHeader { expected: "GZIP" });
    assert_eq!(inflate_zlib(b"hello world", 100), zlib_bad);
    assert_eq!(inflate_gzip(b"hello world", 100), gzip_bad);
    // CM 8 but a window larger than 32 KiB; FCHECK wrong.
    assert_eq!(inflate_zlib(&[0x88, 0x1c, 0, 0], 100), zlib_bad);
    assert_eq!(inflate_zlib(&[0x78, 0xdb, 0, 0], 100), zlib_bad);
    assert_eq!(
        inflate_zlib(&[0x78, 0xbb, 0, 0, 0, 1], 100),
        Err(InflateError::PresetDictionary)
    );
    // GZIP with a method other than deflate, or reserved flags.
    let mut g2 = g.clone();
    g2[2] = 7;
    assert_eq!(inflate_gzip(&g2, 1 << 20), gzip_bad);
    let mut g3 = g.clone();
    g3[3] = 0x20;
    assert_eq!(inflate_gzip(&g3, 1 << 20), gzip_bad);
    assert_eq!(inflate_zlib(&[], 100), Err(InflateError::Truncated));
    assert_eq!(inflate_gzip(&[], 100), Err(InflateError::Truncated));
    assert_eq!(
        inflate_zlib(&z[..z.len() - 1], 1 << 20),
        Err(InflateError::Truncated)
    );
    assert_eq!(
        inflate_gzip(&g[..g.len() - 1], 1 << 20),
        Err(InflateError::Truncated)
    );
    // Checksums.
    let mut z2 = z.clone();
    *z2.last_mut().unwrap() ^= 1;
    assert!(
        matches!(inflate_zlib(&z2, 1 << 20), Err(InflateError::Corrupt(m)) if m.contains("Adler-32"))
    );
    let mut g4 = g.clone();
    let n = g4.len();
    g4[n - 8] ^= 1;
    assert!(
        matches!(inflate_gzip(&g4, 1 << 20), Err(InflateError::Corrupt(m)) if m.contains("CRC-32"))
    );
    let mut g5 = g.clone();
    g5[n - 1] ^= 1;
    assert!(
        matches!(inflate_gzip(&g5, 1 << 20), Err(InflateError::Corrupt(m)) if m.contains("ISIZE"))
    );
    // Invalid DEFLATE data: a final block of the reserved type 11.
    assert!(matches!(
        inflate_zlib(&[0x78, 0xda, 0xff, 0, 0, 0, 0], 100),
        Err(InflateError::Corrupt(m)) if m.contains("DEFLATE")
    ));
    // Trailing data, and a second GZIP member.
    let mut z3 = z.clone();
    z3.extend_from_slice(b"abc");
    assert_eq!(
        inflate_zlib(&z3, 1 << 20),
        Err(InflateError::TrailingData(3))
    );
    let mut g6 = g.clone();
    g6.extend_from_slice(&g);
    assert_eq!(
        inflate_gzip(&g6, 1 << 20),
        Err(InflateError::TrailingData(g.len()))
    );
    // Exactly at the limit is fine; one byte over is not.
    assert_eq!(inflate_zlib(&z, 1000).unwrap().len(), 1000);
    assert_eq!(
        inflate_zlib(&z, 999),
        Err(InflateError::TooLarge { limit: 999 })
    );
    assert_eq!(
        inflate_gzip(&g, 999),
        Err(InflateError::TooLarge { limit: 999 })
    );
    assert_eq!(
        inflate_zlib(&z, 0),
        Err(InflateError::TooLarge { limit: 0 })
    );
    assert_eq!(inflate_zlib(&zlib_sparse(0, []), 0), Ok(vec![]));
    assert_eq!(inflate_gzip(&gzip_sparse(0, []), 0), Ok(vec![]));
}

#[test]
fn gzip_optional_header_fields_are_parsed() {
    let data = b"status list status list status list";
    let mut e = flate2::GzBuilder::new()
        .filename("list.bin")
        .comment("a comment")
        .extra(vec![1, 2, 3, 4])
        .mtime(12345)
        .write(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    let g = e.finish().unwrap();
    assert_eq!(inflate_gzip(&g, 100).unwrap(), data);
    for cut in 0..g.len() {
        assert_eq!(
            inflate_gzip(&g[..cut], 100),
            Err(InflateError::Truncated),
            "cut {cut}"
        );
    }
    // FHCRC: header CRC-16 checked.
    let body = &g[gzip_header_len(&g).unwrap()..];
    let mut h = vec![0x1f, 0x8b, 8, 0x02, 0, 0, 0, 0, 0, 255];
    let crc = crc32fast::hash(&h) as u16;
    h.extend_from_slice(&crc.to_le_bytes());
    let mut with_hcrc = h.clone();
    with_hcrc.extend_from_slice(body);
    assert_eq!(inflate_gzip(&with_hcrc, 100).unwrap(), data);
    with_hcrc[10] ^= 1;
    assert_eq!(
        inflate_gzip(&with_hcrc, 100),
        Err(InflateError::BadHeader { expected: "GZIP" })
    );
}

#[test]
fn bombs_are_stopped_at_the_limit() {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::best());
    e.write_all(&vec![0u8; 10 << 20]).unwrap();
    let bomb = e.finish().unwrap();
    assert_eq!(
        inflate_zlib(&bomb, 1 << 20),
        Err(InflateError::TooLarge { limit: 1 << 20 })
    );
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(&vec![0u8; 10 << 20]).unwrap();
    let bomb = e.finish().unwrap();
    assert_eq!(
        inflate_gzip(&bomb, 1 << 20),
        Err(InflateError::TooLarge { limit: 1 << 20 })
    );
    // Our own writer's output of a huge array is just as much a bomb.
    let bomb = zlib_sparse(1 << 30, [(12345, 1)]);
    assert!(bomb.len() < 1 << 20);
    assert_eq!(
        inflate_zlib(&bomb, 1 << 20),
        Err(InflateError::TooLarge { limit: 1 << 20 })
    );
}

#[test]
fn every_truncation_is_an_error() {
    let mut rng = StdRng::seed_from_u64(7);
    let items = random_items(&mut rng, 3000, 0.02);
    let z = zlib_sparse(3000, items.iter().copied());
    let g = gzip_sparse(3000, items.iter().copied());
    for cut in 0..z.len() {
        assert_eq!(
            inflate_zlib(&z[..cut], 1 << 20),
            Err(InflateError::Truncated),
            "cut {cut}"
        );
    }
    for cut in 0..g.len() {
        assert_eq!(
            inflate_gzip(&g[..cut], 1 << 20),
            Err(InflateError::Truncated),
            "cut {cut}"
        );
    }
}

#[test]
fn garbage_and_bit_flips_never_panic() {
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..2000 {
        let n = rng.gen_range(0..64);
        let junk: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
        let _ = inflate_zlib(&junk, 1 << 16);
        let _ = inflate_gzip(&junk, 1 << 16);
        // Valid headers in front of garbage reach the inflater itself.
        let _ = inflate_zlib(&[&ZLIB_HEADER[..], &junk].concat(), 1 << 16);
        let _ = inflate_gzip(&[&GZIP_HEADER[..], &junk].concat(), 1 << 16);
    }
    let items = random_items(&mut rng, 5000, 0.05);
    let z = zlib_sparse(5000, items.iter().copied());
    let g = gzip_sparse(5000, items.iter().copied());
    for i in 0..z.len() * 8 {
        let mut bad = z.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let _ = inflate_zlib(&bad, 1 << 16);
    }
    for i in 0..g.len() * 8 {
        let mut bad = g.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let _ = inflate_gzip(&bad, 1 << 16);
    }
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "not above the previous")]
fn debug_builds_assert_the_input_contract() {
    zlib_sparse(10, [(5, 1), (3, 1)]);
}

#[cfg(not(debug_assertions))]
#[test]
fn release_builds_skip_pairs_breaking_the_contract() {
    let pairs = [(5, 1), (3, 1), (5, 2), (6, 0), (7, 9), (99, 1)];
    let want = dense(10, &[(5, 1), (7, 9)]);
    assert_eq!(flate2_zlib(&zlib_sparse(10, pairs)), want);
    assert_eq!(flate2_gzip(&gzip_sparse(10, pairs)), want);
}

/// Arrays as (zero gap, byte) pairs plus a trailing gap, so offsets are increasing by
/// construction and shrinking keeps them valid; gaps mix adjacent bytes, short runs, runs
/// around the 258/516 boundaries and long runs.
fn arrays() -> impl Strategy<Value = (usize, Vec<(usize, u8)>)> {
    let gap = prop_oneof![0usize..5, 0usize..300, 250usize..800, 0usize..5000];
    // Few distinct bytes, as in status lists, so that far matches find sources.
    let byte = prop_oneof![1u8..=3, 1u8..=255];
    (proptest::collection::vec((gap.clone(), byte), 0..200), gap).prop_map(|(pairs, tail)| {
        let mut pos = 0;
        let items = pairs
            .into_iter()
            .map(|(g, b)| {
                let off = pos + g;
                pos = off + 1;
                (off, b)
            })
            .collect();
        (pos + tail, items)
    })
}

/// One parse for an array and its relabelled copy: the ZLIB stream is [`zlib_sparse`]'s, the
/// GZIP member decodes to the relabelled array, and a map that is not a permutation keeping
/// zero (or a tiny array) still gets a correct member, compressed on its own.
#[test]
fn relabelled_gzip_shares_the_parse() {
    let reverse: [u8; 256] = std::array::from_fn(|b| (b as u8).reverse_bits());
    let mut not_permutation = reverse;
    not_permutation[3] = 0x80;
    let mut moves_zero = [0u8; 256];
    for (b, m) in moves_zero.iter_mut().enumerate() {
        *m = (b as u8).wrapping_add(1);
    }
    let mut rng = StdRng::seed_from_u64(0xab);
    for len in [0, 1, 300, 65536, 262144] {
        for density in [0.0, 0.001, 0.01, 0.3] {
            let items = random_items(&mut rng, len, density);
            for map in [&reverse, &not_permutation, &moves_zero] {
                let (z, g) = zlib_and_relabelled_gzip(len, items.iter().copied(), map);
                assert_eq!(z, zlib_sparse(len, items.iter().copied()));
                let want: Vec<u8> = dense(len, &items)
                    .iter()
                    .map(|&b| if b == 0 { 0 } else { map[b as usize] })
                    .collect();
                assert_eq!(flate2_gzip(&g), want, "len {len} density {density}");
                assert_eq!(inflate_gzip(&g, len).unwrap(), want);
                if map == &reverse && len >= 65536 && density > 0.0 {
                    let alone = gzip_sparse(len, items.iter().map(|&(o, b)| (o, map[b as usize])));
                    // The same parse under a relabelled code: the data costs the same bits.
                    assert!(
                        g.len().abs_diff(alone.len()) <= 8,
                        "{} vs {}",
                        g.len(),
                        alone.len()
                    );
                }
            }
        }
    }
}

/// The literal-only member of `data`, checked against flate2 and our own inflater.
fn check_literals(data: &[u8]) -> Vec<u8> {
    let g = gzip_literals(data);
    assert_eq!(&g[..3], &[0x1f, 0x8b, 0x08]);
    assert_eq!(flate2_gzip(&g), data, "{} bytes", data.len());
    assert_eq!(inflate_gzip(&g, data.len()).unwrap(), data);
    g
}

#[test]
fn literal_only_members_round_trip() {
    check_literals(b"");
    check_literals(b"a");
    check_literals(b"aaaaaaaaaaaaaaaa");
    check_literals(&(0..=255).collect::<Vec<u8>>());
    let mut rng = StdRng::seed_from_u64(0x11);
    for len in [2, 100, 4096, 70_000, 300_000] {
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        check_literals(&bytes);
        // Skewed counts: codes as long as the limit of 15 bits.
        let skewed: Vec<u8> = (0..len)
            .map(|_| (rng.gen::<f64>().powi(12) * 256.0) as u8)
            .collect();
        check_literals(&skewed);
    }
}

/// Issue 16: the gzip copies of the published text bodies are literal-only. On base64url text
/// (what a JWS or an `encodedList` is made of) they are no larger than zlib's default level.
#[test]
fn literal_only_members_match_zlib_on_base64_text() {
    use base64::Engine as _;
    let mut rng = StdRng::seed_from_u64(0x64);
    let raw: Vec<u8> = (0..24_000).map(|_| rng.gen()).collect();
    let text = format!(
        "{{\"lst\":\"{}\"}}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let ours = check_literals(text.as_bytes());
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    let zlib = e.finish().unwrap();
    assert!(
        ours.len() <= zlib.len(),
        "literal-only {} B, zlib default {} B",
        ours.len(),
        zlib.len()
    );
}

proptest! {
    #[test]
    fn dense_text_round_trips(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let g = gzip_literals(&data);
        prop_assert_eq!(flate2_gzip(&g), data);
    }

    #[test]
    fn sparse_arrays_round_trip((len, items) in arrays()) {
        let want = dense(len, &items);
        let z = zlib_sparse(len, items.iter().copied());
        prop_assert_eq!(flate2_zlib(&z), want.clone());
        let g = gzip_sparse(len, items.iter().copied());
        prop_assert_eq!(flate2_gzip(&g), want);
    }
}

/// Timings and sizes against zlib level 9 (not a pass/fail test: run with
/// `cargo test --release --lib status::deflate -- --ignored --nocapture`).
#[test]
#[ignore]
fn measure_against_zlib_9() {
    use std::time::Instant;
    for (log2, reps) in [(20, 20), (24, 3), (26, 1)] {
        let bytes = status_workload(1 << log2, 42);
        let items = sparse(&bytes);
        let t = Instant::now();
        let theirs = zlib9(&bytes);
        let t_zlib = t.elapsed();
        let mut t_ours = std::time::Duration::MAX;
        let mut ours = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            ours = zlib_sparse(bytes.len(), items.iter().copied());
            t_ours = t_ours.min(t.elapsed());
        }
        let t = Instant::now();
        let g = gzip_sparse(bytes.len(), items.iter().copied());
        let t_gzip = t.elapsed();
        let t = Instant::now();
        let back = inflate_zlib(&ours, bytes.len()).unwrap();
        let t_inflate = t.elapsed();
        assert_eq!(back, bytes);
        assert_eq!(flate2_gzip(&g), bytes);
        println!(
            "2^{log2} entries x 2 bits = {} bytes, {} non-zero: zlib-9 {} B in {:.2?}; \
             zlib_sparse {} B ({:.3}x) in {:.2?} ({:.1}x faster); gzip_sparse {} B in {:.2?}; \
             inflate_zlib {:.2?}",
            bytes.len(),
            items.len(),
            theirs.len(),
            t_zlib,
            ours.len(),
            ours.len() as f64 / theirs.len() as f64,
            t_ours,
            t_zlib.as_secs_f64() / t_ours.as_secs_f64(),
            g.len(),
            t_gzip,
            t_inflate,
        );
    }
}
