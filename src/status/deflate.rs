//! Sparse ZLIB (RFC 1950) and GZIP (RFC 1952) writing, and bounded inflation of untrusted input.
//!
//! This module owns two things:
//!
//! * **Writing** ([`zlib_sparse`], [`gzip_sparse`]): a status list's packed byte array is almost
//!   all zeros, so it is given only by its non-zero bytes and compressed straight from its zero
//!   runs. The dense array is never materialised: the DEFLATE work is O(non-zero bytes + zero
//!   runs), plus the output itself (a zero run costs one 258-byte match per 258 bytes, which any
//!   DEFLATE stream must spend).
//! * **Reading** ([`inflate_zlib`], [`inflate_gzip`]): decoding untrusted input with system zlib
//!   (through `flate2`) under a hard output cap, with an error that says what is wrong.
//!
//! It must never panic, whatever the compressed input or (in release builds) a caller breaking
//! the sparse-input contract, and never allocate more than `limit + 1` bytes of output while
//! inflating, whatever the input claims.
//!
//! # How the writer compresses
//!
//! Tokens: each non-zero byte is a literal. A run of `g` zeros is a literal `0` (a distance-1
//! match right after a non-zero byte would copy that byte) followed by distance-1 matches that
//! repeat it. How the rest of the run is split between matches of 3..=258 bytes and literal
//! zeros is chosen by a small dynamic programme over the actual code lengths, so e.g. 259 zeros
//! become `0` + 258 rather than a short, expensive match. Referencing an earlier zero run with a
//! distance > 1 never pays here: DEFLATE caps every match at 258 bytes whatever its distance, a
//! distance-1 code costs a single bit, and a longer distance costs a distance code plus extra
//! bits, more than the one literal `0` it could save.
//!
//! Huffman: one dynamic block (BTYPE=10) with length-limited codes from package-merge (optimal
//! for the limits of 15 and 7 bits), chosen after two parse/count rounds; a fixed-code block
//! (BTYPE=01) is written instead when it is smaller, which only happens for tiny arrays. Both
//! trees are always complete (a dummy symbol is added if only one is used, and the distance
//! tree is always codes 0 and 1 of one bit each) because some decoders reject incomplete trees
//! even where RFC 1951 allows them. The exact output size is known before writing, so the output
//! is allocated once.
//!
//! Checksums: Adler-32 over a zero run is O(1) (`a` is unchanged, `b += run * a`). CRC-32 feeds
//! short zero runs and the non-zero bytes to `crc32fast` through a small buffer, and extends the
//! CRC over long zero runs in O(log run) by multiplying with x^(8 run) modulo the CRC polynomial
//! (as zlib's `crc32_combine` does), so even the checksum never touches every byte of a sparse
//! array.

use flate2::{Decompress, FlushDecompress, Status};

/// Errors from [`inflate_zlib`] and [`inflate_gzip`].
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum InflateError {
    #[error("expected ZLIB (RFC 1950) data but found GZIP (RFC 1952)")]
    GzipNotZlib,
    #[error("expected GZIP (RFC 1952) data but found ZLIB (RFC 1950)")]
    ZlibNotGzip,
    #[error("not {expected} data: bad header")]
    BadHeader { expected: &'static str },
    #[error("ZLIB data needs a preset dictionary (FDICT), which is not supported")]
    PresetDictionary,
    #[error("compressed data is truncated")]
    Truncated,
    #[error("compressed data is corrupt: {0}")]
    Corrupt(String),
    #[error("decompressed data exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0} bytes of trailing data after the compressed stream")]
    TrailingData(usize),
}

/// CMF 0x78 (deflate, 32 KiB window), FLG 0xda (FLEVEL 3 "maximum compression", no dictionary).
const ZLIB_HEADER: [u8; 2] = [0x78, 0xda];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// CM 8, FLG 0, MTIME 0 (reproducible output), XFL 2 (maximum compression), OS 255 (unknown).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];

/// ZLIB stream of a `len`-byte array given by its non-zero bytes `(offset, byte)` in strictly
/// increasing offset order; every other byte is zero.
///
/// The contract is debug-asserted. In release builds, pairs that break it (zero byte, offset out
/// of range, offset not above the previous one) are skipped, so the output is always a valid
/// stream of the array the remaining pairs describe.
pub fn zlib_sparse(len: usize, nonzero: impl IntoIterator<Item = (usize, u8)>) -> Vec<u8> {
    let items = collect_nonzero(len, nonzero);
    let plan = Plan::new(len, &items);
    let mut out = Vec::with_capacity(ZLIB_HEADER.len() + plan.byte_len() + 4);
    out.extend_from_slice(&ZLIB_HEADER);
    plan.write(&items, &mut out);
    out.extend_from_slice(&adler32_sparse(len, &items).to_be_bytes());
    out
}

/// GZIP member (MTIME 0) of the same sparse array; same contract as [`zlib_sparse`].
pub fn gzip_sparse(len: usize, nonzero: impl IntoIterator<Item = (usize, u8)>) -> Vec<u8> {
    let items = collect_nonzero(len, nonzero);
    let plan = Plan::new(len, &items);
    let mut out = Vec::with_capacity(GZIP_HEADER.len() + plan.byte_len() + 8);
    out.extend_from_slice(&GZIP_HEADER);
    plan.write(&items, &mut out);
    out.extend_from_slice(&crc32_sparse(len, &items).to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1), hence the deliberate truncation.
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

/// Inflates a complete ZLIB stream, refusing output longer than `limit` bytes.
pub fn inflate_zlib(data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    check_zlib_header(data)?;
    let body = &data[ZLIB_HEADER.len()..];
    let (out, used) = inflate_raw(body, limit)?;
    let trailer = &body[used..];
    let [a, b, c, d, ..] = *trailer else {
        return Err(InflateError::Truncated);
    };
    let stored = u32::from_be_bytes([a, b, c, d]);
    let actual = adler32(&out);
    if stored != actual {
        return Err(InflateError::Corrupt(format!(
            "Adler-32 mismatch: trailer says {stored:08x}, data gives {actual:08x}"
        )));
    }
    match trailer.len() - 4 {
        0 => Ok(out),
        n => Err(InflateError::TrailingData(n)),
    }
}

/// Inflates one complete GZIP member, refusing output longer than `limit` bytes. A second
/// member is trailing data: a status list is one member.
pub fn inflate_gzip(data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let body = &data[gzip_header_len(data)?..];
    let (out, used) = inflate_raw(body, limit)?;
    let trailer = &body[used..];
    let [c0, c1, c2, c3, s0, s1, s2, s3, ..] = *trailer else {
        return Err(InflateError::Truncated);
    };
    let stored = u32::from_le_bytes([c0, c1, c2, c3]);
    let actual = crc32fast::hash(&out);
    if stored != actual {
        return Err(InflateError::Corrupt(format!(
            "CRC-32 mismatch: trailer says {stored:08x}, data gives {actual:08x}"
        )));
    }
    let isize = u32::from_le_bytes([s0, s1, s2, s3]);
    if isize != out.len() as u32 {
        return Err(InflateError::Corrupt(format!(
            "ISIZE mismatch: trailer says {isize}, data has {} bytes",
            out.len()
        )));
    }
    match trailer.len() - 8 {
        0 => Ok(out),
        n => Err(InflateError::TrailingData(n)),
    }
}

// ---------------------------------------------------------------------------------------------
// Input contract

/// Buffers the pairs (the Huffman codes depend on all of them before the first bit is written)
/// and drops those breaking the contract, so a careless caller gets a valid stream, not a
/// corrupt one.
fn collect_nonzero(len: usize, nonzero: impl IntoIterator<Item = (usize, u8)>) -> Vec<(usize, u8)> {
    let iter = nonzero.into_iter();
    let mut items = Vec::with_capacity(iter.size_hint().0.min(len));
    let mut next = 0usize;
    for (off, byte) in iter {
        debug_assert!(off < len, "offset {off} out of range for length {len}");
        debug_assert!(byte != 0, "byte at offset {off} is zero");
        debug_assert!(off >= next, "offset {off} is not above the previous one");
        if byte != 0 && off < len && off >= next {
            items.push((off, byte));
            next = off + 1;
        }
    }
    items
}

// ---------------------------------------------------------------------------------------------
// DEFLATE tables (RFC 1951 §3.2.5)

const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
/// Zero-run remainders below this are split by the [`ZeroParse`] table; longer ones first take
/// whole 258-byte matches down to `[258, 516)`, where the table chooses the tail.
const TAIL: usize = 2 * MAX_MATCH;
const END_OF_BLOCK: usize = 256;
/// Literal/length symbols that can occur (286 and 287 are reserved).
const LITLEN: usize = 286;
const CODELEN: usize = 19;
const MAX_BITS: usize = 15;
const MAX_CODELEN_BITS: usize = 7;
/// Every dynamic block declares distance codes 0 and 1 with one bit each; only code 0
/// (distance 1) is used, code 1 just keeps the tree complete.
const DIST_LENS: [u8; 2] = [1, 1];

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Length code index (symbol - 257) of every match length; entries below 3 are unused.
const LEN_CODE: [u8; MAX_MATCH + 1] = len_codes();
/// Order in which the code-length code lengths are sent.
const CODELEN_ORDER: [usize; CODELEN] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

const fn len_codes() -> [u8; MAX_MATCH + 1] {
    let mut table = [0u8; MAX_MATCH + 1];
    let mut code = 0;
    let mut m = MIN_MATCH;
    while m <= MAX_MATCH {
        while code + 1 < LEN_BASE.len() && LEN_BASE[code + 1] as usize <= m {
            code += 1;
        }
        table[m] = code as u8;
        m += 1;
    }
    table
}

fn len_symbol(m: usize) -> usize {
    257 + LEN_CODE[m] as usize
}

/// Extra bits after a literal/length symbol (0 for literals and end-of-block).
fn symbol_extra(sym: usize) -> u64 {
    if sym > END_OF_BLOCK {
        u64::from(LEN_EXTRA[sym - 257])
    } else {
        0
    }
}

/// The fixed literal/length code lengths of BTYPE=01 (RFC 1951 §3.2.6).
fn fixed_lens() -> [u8; LITLEN] {
    let mut lens = [8u8; LITLEN];
    lens[144..256].fill(9);
    lens[256..280].fill(7);
    lens
}
const FIXED_DIST_BITS: u32 = 5;

// ---------------------------------------------------------------------------------------------
// Parsing zero runs

/// What one literal zero and one distance-1 match of each length cost, in bits, under some
/// code; `UNUSABLE` for symbols the code lacks.
struct Costs {
    zero: u32,
    matches: [u32; MAX_MATCH + 1],
}

const UNUSABLE: u32 = 1 << 20;

impl Costs {
    /// A guess for the first round, shaped like typical sparse lists: literal zeros are frequent
    /// (one per run), 258 is the commonest length of long runs.
    fn initial() -> Self {
        let mut matches = [UNUSABLE; MAX_MATCH + 1];
        for (m, cost) in matches.iter_mut().enumerate().skip(MIN_MATCH) {
            let code = if m == MAX_MATCH { 2 } else { 6 };
            *cost = code + 1 + u32::from(LEN_EXTRA[LEN_CODE[m] as usize]);
        }
        Costs { zero: 2, matches }
    }

    fn from_lens(lit: &[u8; LITLEN], dist_bits: u32) -> Self {
        let cost = |bits: u8| {
            if bits == 0 {
                UNUSABLE
            } else {
                u32::from(bits)
            }
        };
        let mut matches = [UNUSABLE; MAX_MATCH + 1];
        for (m, c) in matches.iter_mut().enumerate().skip(MIN_MATCH) {
            let sym = len_symbol(m);
            *c = cost(lit[sym]).saturating_add(symbol_extra(sym) as u32 + dist_bits);
        }
        Costs {
            zero: cost(lit[0]),
            matches,
        }
    }
}

/// The cheapest split of `t < TAIL` zeros (after a run's leading literal zero) into literal zeros
/// and distance-1 matches: `step[t]` is 0 for a literal, else the length of one match.
struct ZeroParse {
    step: [u16; TAIL],
}

impl ZeroParse {
    fn new(costs: &Costs) -> Self {
        let mut best = [0u32; TAIL];
        let mut step = [0u16; TAIL];
        for t in 1..TAIL {
            let mut cost = best[t - 1].saturating_add(costs.zero);
            let mut choice = 0;
            for m in MIN_MATCH..=t.min(MAX_MATCH) {
                let c = best[t - m].saturating_add(costs.matches[m]);
                if c < cost {
                    cost = c;
                    choice = m as u16;
                }
            }
            best[t] = cost;
            step[t] = choice;
        }
        ZeroParse { step }
    }
}

/// Receives the token stream of an array; counting and writing are the two sinks.
trait Sink {
    fn literal(&mut self, byte: u8);
    /// `count` distance-1 matches of length `len`.
    fn matches(&mut self, len: usize, count: u64);
}

/// Feeds `sink` the tokens of the array: the pairs in `items` over zeros up to `len`.
fn tokens(len: usize, items: &[(usize, u8)], parse: &ZeroParse, sink: &mut impl Sink) {
    let mut pos = 0;
    for &(off, byte) in items {
        zero_run(off - pos, parse, sink);
        sink.literal(byte);
        pos = off + 1;
    }
    zero_run(len - pos, parse, sink);
}

fn zero_run(run: usize, parse: &ZeroParse, sink: &mut impl Sink) {
    if run == 0 {
        return;
    }
    sink.literal(0);
    let mut rest = run - 1;
    if rest >= TAIL {
        let whole = rest / MAX_MATCH - 1;
        sink.matches(MAX_MATCH, whole as u64);
        rest -= whole * MAX_MATCH;
    }
    while rest > 0 {
        match parse.step[rest] as usize {
            0 => {
                sink.literal(0);
                rest -= 1;
            }
            m => {
                sink.matches(m, 1);
                rest -= m;
            }
        }
    }
}

/// Symbol frequencies of one parse.
struct Freqs {
    lit: [u64; LITLEN],
    dist: u64,
}

impl Freqs {
    fn count(len: usize, items: &[(usize, u8)], parse: &ZeroParse) -> Self {
        let mut f = Freqs {
            lit: [0; LITLEN],
            dist: 0,
        };
        tokens(len, items, parse, &mut f);
        f.lit[END_OF_BLOCK] = 1;
        f
    }

    /// Bits of the block body (symbols, extra bits and distance codes) under the given code.
    fn data_bits(&self, lit: &[u8; LITLEN], dist_bits: u32) -> u64 {
        let symbols: u64 = self
            .lit
            .iter()
            .zip(lit)
            .enumerate()
            .map(|(sym, (&f, &bits))| f * (u64::from(bits) + symbol_extra(sym)))
            .sum();
        symbols + self.dist * u64::from(dist_bits)
    }
}

impl Sink for Freqs {
    fn literal(&mut self, byte: u8) {
        self.lit[byte as usize] += 1;
    }

    fn matches(&mut self, len: usize, count: u64) {
        self.lit[len_symbol(len)] += count;
        self.dist += count;
    }
}

// ---------------------------------------------------------------------------------------------
// Huffman codes

/// Optimal code lengths of at most `max_bits` for `freqs` by package-merge (the "coin
/// collector" formulation). Needs at least two used symbols and at most `2^max_bits`, which
/// every caller guarantees; the resulting code is complete.
fn limited_lengths(freqs: &[u64], max_bits: usize, lens: &mut [u8]) {
    const PACKAGE: u16 = u16::MAX;
    lens.fill(0);
    let mut leaves: Vec<(u64, u16)> = freqs
        .iter()
        .enumerate()
        .filter(|(_, &f)| f > 0)
        .map(|(sym, &f)| (f, sym as u16))
        .collect();
    leaves.sort_unstable();
    let n = leaves.len();
    debug_assert!(n >= 2 && n <= 1 << max_bits);
    // Every level's list has fewer than 2n items (n leaves plus half the deeper list), so the
    // whole structure is preallocated: item kinds for every level, weights for two levels.
    let width = 2 * n;
    let mut kinds = vec![PACKAGE; width * max_bits];
    let mut level_len = vec![0usize; max_bits];
    let mut deeper: Vec<u64> = Vec::with_capacity(width);
    let mut current: Vec<u64> = Vec::with_capacity(width);
    // Level index 0 is depth `max_bits` (leaves only), level `max_bits - 1` is depth 1.
    for (i, &(w, sym)) in leaves.iter().enumerate() {
        deeper.push(w);
        kinds[i] = sym;
    }
    level_len[0] = n;
    for level in 1..max_bits {
        current.clear();
        let kinds_row = &mut kinds[level * width..(level + 1) * width];
        let (mut leaf, mut pkg) = (0, 0);
        let packages = deeper.len() / 2;
        while leaf < n || pkg < packages {
            let pkg_weight = if pkg < packages {
                deeper[2 * pkg] + deeper[2 * pkg + 1]
            } else {
                u64::MAX
            };
            if leaf < n && leaves[leaf].0 <= pkg_weight {
                kinds_row[current.len()] = leaves[leaf].1;
                current.push(leaves[leaf].0);
                leaf += 1;
            } else {
                kinds_row[current.len()] = PACKAGE;
                current.push(pkg_weight);
                pkg += 1;
            }
        }
        level_len[level] = current.len();
        std::mem::swap(&mut deeper, &mut current);
    }
    // Select the 2n - 2 cheapest items at depth 1; a selected package selects the two items it
    // was made of one level deeper, and packages are made in order, so a prefix selects a prefix.
    let mut take = 2 * n - 2;
    for level in (0..max_bits).rev() {
        let row = &kinds[level * width..level * width + level_len[level]];
        let mut packages = 0;
        for &kind in &row[..take.min(row.len())] {
            if kind == PACKAGE {
                packages += 1;
            } else {
                lens[kind as usize] += 1;
            }
        }
        take = 2 * packages;
    }
}

/// Lengths for `freqs`, with one or two dummy symbols so there are at least two codes: a lone
/// code would make an incomplete tree, which some decoders refuse.
fn complete_lengths(freqs: &[u64], max_bits: usize, lens: &mut [u8]) {
    let mut padded = [0u64; LITLEN];
    let padded = &mut padded[..freqs.len()];
    padded.copy_from_slice(freqs);
    for sym in 0..2 {
        if padded.iter().filter(|&&f| f > 0).count() >= 2 {
            break;
        }
        if padded[sym] == 0 {
            padded[sym] = 1;
        }
    }
    limited_lengths(padded, max_bits, lens);
}

/// Canonical codes (RFC 1951 §3.2.2), bit-reversed because DEFLATE sends Huffman codes
/// most-significant bit first into an LSB-first bit stream.
fn canonical_codes(lens: &[u8], codes: &mut [u16]) {
    let mut count = [0u16; MAX_BITS + 1];
    for &l in lens {
        count[l as usize] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; MAX_BITS + 1];
    let mut code = 0u16;
    for bits in 1..=MAX_BITS {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    for (&l, c) in lens.iter().zip(codes.iter_mut()) {
        if l > 0 {
            let v = next[l as usize];
            next[l as usize] += 1;
            *c = v.reverse_bits() >> (16 - u32::from(l));
        }
    }
}

/// Run-length coding of the code-length sequence with symbols 16/17/18; `(symbol, extra)`.
fn rle_lengths(seq: &[u8], out: &mut Vec<(u8, u8)>) {
    let mut i = 0;
    while i < seq.len() {
        let l = seq[i];
        let mut run = seq[i..].iter().take_while(|&&x| x == l).count();
        i += run;
        if l == 0 {
            while run >= 11 {
                let k = run.min(138);
                out.push((18, (k - 11) as u8));
                run -= k;
            }
            if run >= 3 {
                out.push((17, (run - 3) as u8));
                run = 0;
            }
        } else {
            out.push((l, 0));
            run -= 1;
            while run >= 3 {
                let k = run.min(6);
                out.push((16, (k - 3) as u8));
                run -= k;
            }
        }
        out.extend(std::iter::repeat_n((l, 0), run));
    }
}

fn codelen_extra(sym: u8) -> u32 {
    match sym {
        16 => 2,
        17 => 3,
        18 => 7,
        _ => 0,
    }
}

/// A dynamic block's codes and its header, ready to write.
struct Dynamic {
    lit: [u8; LITLEN],
    hlit: usize,
    cl: [u8; CODELEN],
    hclen: usize,
    rle: Vec<(u8, u8)>,
    header_bits: u64,
}

impl Dynamic {
    fn new(freqs: &Freqs) -> Self {
        let mut lit = [0u8; LITLEN];
        complete_lengths(&freqs.lit, MAX_BITS, &mut lit);
        let hlit = lit
            .iter()
            .rposition(|&l| l > 0)
            .map_or(0, |p| p + 1)
            .max(257);
        let mut seq = [0u8; LITLEN + DIST_LENS.len()];
        seq[..hlit].copy_from_slice(&lit[..hlit]);
        seq[hlit..hlit + DIST_LENS.len()].copy_from_slice(&DIST_LENS);
        let mut rle = Vec::with_capacity(hlit + DIST_LENS.len());
        rle_lengths(&seq[..hlit + DIST_LENS.len()], &mut rle);
        let mut cl_freqs = [0u64; CODELEN];
        for &(sym, _) in &rle {
            cl_freqs[sym as usize] += 1;
        }
        let mut cl = [0u8; CODELEN];
        complete_lengths(&cl_freqs, MAX_CODELEN_BITS, &mut cl);
        let hclen = CODELEN_ORDER
            .iter()
            .rposition(|&s| cl[s] > 0)
            .map_or(0, |p| p + 1)
            .max(4);
        let header_bits = 3
            + 14
            + 3 * hclen as u64
            + rle
                .iter()
                .map(|&(sym, _)| u64::from(u32::from(cl[sym as usize]) + codelen_extra(sym)))
                .sum::<u64>();
        Dynamic {
            lit,
            hlit,
            cl,
            hclen,
            rle,
            header_bits,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The block plan and the writer

enum Kind {
    Fixed,
    Dynamic(Box<Dynamic>),
}

/// Everything decided before writing: the parse, the codes and the exact size in bits.
struct Plan {
    len: usize,
    parse: ZeroParse,
    kind: Kind,
    bits: u64,
}

impl Plan {
    fn new(len: usize, items: &[(usize, u8)]) -> Self {
        // Two rounds: parse with guessed costs, build codes, re-parse with those codes' real
        // costs, build again. The second round only ever uses symbols the first one had, and
        // the better of the two is kept, so the result is never worse than the guess.
        let mut best: Option<Plan> = None;
        let mut costs = Costs::initial();
        for _ in 0..2 {
            let parse = ZeroParse::new(&costs);
            let freqs = Freqs::count(len, items, &parse);
            let dynamic = Dynamic::new(&freqs);
            let bits = dynamic.header_bits + freqs.data_bits(&dynamic.lit, 1);
            costs = Costs::from_lens(&dynamic.lit, 1);
            if best.as_ref().is_none_or(|b| bits < b.bits) {
                best = Some(Plan {
                    len,
                    parse,
                    kind: Kind::Dynamic(Box::new(dynamic)),
                    bits,
                });
            }
        }
        // Small arrays do better without a code table in the header.
        let fixed = fixed_lens();
        let parse = ZeroParse::new(&Costs::from_lens(&fixed, FIXED_DIST_BITS));
        let freqs = Freqs::count(len, items, &parse);
        let bits = 3 + freqs.data_bits(&fixed, FIXED_DIST_BITS);
        match best {
            Some(b) if b.bits <= bits => b,
            _ => Plan {
                len,
                parse,
                kind: Kind::Fixed,
                bits,
            },
        }
    }

    fn byte_len(&self) -> usize {
        self.bits.div_ceil(8) as usize
    }

    fn write(&self, items: &[(usize, u8)], out: &mut Vec<u8>) {
        let mut w = BitWriter::new(out);
        let (lit, dist_bits) = match &self.kind {
            Kind::Fixed => {
                // BFINAL=1, BTYPE=01.
                w.put(0b011, 3);
                (fixed_lens(), FIXED_DIST_BITS)
            }
            Kind::Dynamic(d) => {
                // BFINAL=1, BTYPE=10.
                w.put(0b101, 3);
                w.put((d.hlit - 257) as u32, 5);
                w.put((DIST_LENS.len() - 1) as u32, 5);
                w.put((d.hclen - 4) as u32, 4);
                for &sym in &CODELEN_ORDER[..d.hclen] {
                    w.put(u32::from(d.cl[sym]), 3);
                }
                let mut cl_codes = [0u16; CODELEN];
                canonical_codes(&d.cl, &mut cl_codes);
                for &(sym, extra) in &d.rle {
                    let s = sym as usize;
                    w.put(u32::from(cl_codes[s]), u32::from(d.cl[s]));
                    w.put(u32::from(extra), codelen_extra(sym));
                }
                (d.lit, 1)
            }
        };
        let mut codes = [0u16; LITLEN];
        match self.kind {
            Kind::Fixed => {
                // The reserved symbols 286 and 287 take part in the fixed code's canonical
                // numbering (they precede the 9-bit codes), so number all 288.
                let mut all_lens = [8u8; LITLEN + 2];
                all_lens[..LITLEN].copy_from_slice(&lit);
                let mut all = [0u16; LITLEN + 2];
                canonical_codes(&all_lens, &mut all);
                codes.copy_from_slice(&all[..LITLEN]);
            }
            Kind::Dynamic(_) => canonical_codes(&lit, &mut codes),
        }
        // Distance code 0 is all-zero bits in both the fixed and our dynamic distance tree, so
        // it only contributes its length. Each match is one write of at most 15 + 5 + 5 bits.
        let mut matches = [(0u32, 0u32); MAX_MATCH + 1];
        for (m, slot) in matches.iter_mut().enumerate().skip(MIN_MATCH) {
            let sym = len_symbol(m);
            let (code, bits) = (u32::from(codes[sym]), u32::from(lit[sym]));
            let extra = (m - LEN_BASE[LEN_CODE[m] as usize] as usize) as u32;
            *slot = (
                code | (extra << bits),
                bits + symbol_extra(sym) as u32 + dist_bits,
            );
        }
        let mut emit = Emit {
            w,
            lit: &lit,
            codes: &codes,
            matches: &matches,
        };
        tokens(self.len, items, &self.parse, &mut emit);
        emit.w
            .put(u32::from(codes[END_OF_BLOCK]), u32::from(lit[END_OF_BLOCK]));
        emit.w.finish();
    }
}

struct Emit<'a, 'o> {
    w: BitWriter<'o>,
    lit: &'a [u8; LITLEN],
    codes: &'a [u16; LITLEN],
    matches: &'a [(u32, u32); MAX_MATCH + 1],
}

impl Sink for Emit<'_, '_> {
    fn literal(&mut self, byte: u8) {
        let b = byte as usize;
        self.w.put(u32::from(self.codes[b]), u32::from(self.lit[b]));
    }

    fn matches(&mut self, len: usize, count: u64) {
        let (code, bits) = self.matches[len];
        for _ in 0..count {
            self.w.put(code, bits);
        }
    }
}

/// LSB-first bit packer (RFC 1951 §3.1.1) writing whole 32-bit words.
struct BitWriter<'o> {
    out: &'o mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl<'o> BitWriter<'o> {
    fn new(out: &'o mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, n: 0 }
    }

    /// Appends the low `bits` (at most 32) bits of `value`.
    #[inline]
    fn put(&mut self, value: u32, bits: u32) {
        debug_assert!(bits <= 32 && (bits == 32 || value >> bits == 0));
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        if self.n >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.n -= 32;
        }
    }

    fn finish(self) {
        let bytes = self.n.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
    }
}

// ---------------------------------------------------------------------------------------------
// Checksums of sparse arrays

const ADLER_MOD: u64 = 65521;

fn adler32_sparse(len: usize, items: &[(usize, u8)]) -> u32 {
    let (mut a, mut b) = (1u64, 0u64);
    let mut pos = 0;
    for &(off, byte) in items {
        b = (b + (off - pos) as u64 % ADLER_MOD * a) % ADLER_MOD;
        a = (a + u64::from(byte)) % ADLER_MOD;
        b = (b + a) % ADLER_MOD;
        pos = off + 1;
    }
    b = (b + (len - pos) as u64 % ADLER_MOD * a) % ADLER_MOD;
    (b << 16 | a) as u32
}

/// Adler-32 of dense data, for checking inflated ZLIB streams.
fn adler32(data: &[u8]) -> u32 {
    // 5552 is the most bytes that can be summed before `b` could overflow 32 bits.
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= ADLER_MOD as u32;
        b %= ADLER_MOD as u32;
    }
    b << 16 | a
}

/// The reflected CRC-32 polynomial (RFC 1952 §8).
const CRC_POLY: u32 = 0xedb8_8320;

/// `a * b` modulo the CRC polynomial, in the reflected representation (bit 31 is x^0).
const fn crc_mul(a: u32, mut b: u32) -> u32 {
    let mut p = 0;
    let mut i = 0;
    while i < 32 {
        if a & (1 << (31 - i)) != 0 {
            p ^= b;
        }
        b = if b & 1 != 0 {
            (b >> 1) ^ CRC_POLY
        } else {
            b >> 1
        };
        i += 1;
    }
    p
}

/// `X2N[k]` = x^(2^k) modulo the CRC polynomial, for every k a 64-bit bit count can need.
const X2N: [u32; 67] = {
    let mut t = [0u32; 67];
    t[0] = 1 << 30;
    let mut k = 1;
    while k < t.len() {
        t[k] = crc_mul(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
};

/// x^(8n) modulo the CRC polynomial: the operator that appends `n` zero bytes to a CRC register.
fn crc_zeros_operator(mut n: u64) -> u32 {
    let mut p = 1 << 31;
    let mut k = 3;
    while n != 0 {
        if n & 1 != 0 {
            p = crc_mul(X2N[k], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// Zero runs up to this long are fed to `crc32fast` (SIMD, cheaper than the polynomial
/// arithmetic at this size); longer ones are applied in O(log run).
const CRC_BUF: usize = 4096;

struct SparseCrc {
    crc: u32,
    buf: [u8; CRC_BUF],
    n: usize,
}

impl SparseCrc {
    fn flush(&mut self) {
        let mut h = crc32fast::Hasher::new_with_initial(self.crc);
        h.update(&self.buf[..self.n]);
        self.crc = h.finalize();
        self.n = 0;
    }

    fn byte(&mut self, b: u8) {
        self.buf[self.n] = b;
        self.n += 1;
        if self.n == CRC_BUF {
            self.flush();
        }
    }

    fn zeros(&mut self, mut run: usize) {
        if run > CRC_BUF {
            self.flush();
            // The register is the complement of the CRC; appending zeros multiplies it by x^8n.
            self.crc = !crc_mul(crc_zeros_operator(run as u64), !self.crc);
            return;
        }
        while run > 0 {
            let k = run.min(CRC_BUF - self.n);
            self.buf[self.n..self.n + k].fill(0);
            self.n += k;
            run -= k;
            if self.n == CRC_BUF {
                self.flush();
            }
        }
    }
}

fn crc32_sparse(len: usize, items: &[(usize, u8)]) -> u32 {
    let mut c = SparseCrc {
        crc: 0,
        buf: [0; CRC_BUF],
        n: 0,
    };
    let mut pos = 0;
    for &(off, byte) in items {
        c.zeros(off - pos);
        c.byte(byte);
        pos = off + 1;
    }
    c.zeros(len - pos);
    c.flush();
    c.crc
}

// ---------------------------------------------------------------------------------------------
// Bounded inflation

fn is_zlib_header(data: &[u8]) -> bool {
    match *data {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0,
        _ => false,
    }
}

fn check_zlib_header(data: &[u8]) -> Result<(), InflateError> {
    let bad = InflateError::BadHeader { expected: "ZLIB" };
    // CM 8 (deflate) and CINFO <= 7 (window at most 32 KiB) are the only valid CMF values.
    let cmf_ok = |cmf: u8| cmf & 0x0f == 8 && cmf >> 4 <= 7;
    match *data {
        [] => Err(InflateError::Truncated),
        [cmf] if cmf_ok(cmf) => Err(InflateError::Truncated),
        [_] => Err(bad),
        [0x1f, 0x8b, ..] => Err(InflateError::GzipNotZlib),
        [cmf, _, ..] if !cmf_ok(cmf) || !is_zlib_header(data) => Err(bad),
        [_, flg, ..] if flg & 0x20 != 0 => Err(InflateError::PresetDictionary),
        _ => Ok(()),
    }
}

/// Length of the GZIP member header at the start of `data`, optional fields included.
fn gzip_header_len(data: &[u8]) -> Result<usize, InflateError> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    const RESERVED: u8 = 0xe0;
    let bad = InflateError::BadHeader { expected: "GZIP" };
    match *data {
        [] | [0x1f] => return Err(InflateError::Truncated),
        [_] => return Err(bad),
        [a, b, ..] if [a, b] != GZIP_MAGIC => {
            return Err(if is_zlib_header(data) {
                InflateError::ZlibNotGzip
            } else {
                bad
            })
        }
        _ => {}
    }
    match data.get(2) {
        None => return Err(InflateError::Truncated),
        Some(&cm) if cm != 8 => return Err(bad),
        _ => {}
    }
    let flg = match data.get(3) {
        None => return Err(InflateError::Truncated),
        Some(&flg) if flg & RESERVED != 0 => return Err(bad),
        Some(&flg) => flg,
    };
    let mut pos = GZIP_HEADER.len();
    if data.len() < pos {
        return Err(InflateError::Truncated);
    }
    if flg & FEXTRA != 0 {
        let [x0, x1] = *data.get(pos..pos + 2).ok_or(InflateError::Truncated)? else {
            return Err(InflateError::Truncated);
        };
        pos += 2 + usize::from(u16::from_le_bytes([x0, x1]));
        if data.len() < pos {
            return Err(InflateError::Truncated);
        }
    }
    for flag in [FNAME, FCOMMENT] {
        if flg & flag != 0 {
            let nul = data[pos..]
                .iter()
                .position(|&b| b == 0)
                .ok_or(InflateError::Truncated)?;
            pos += nul + 1;
        }
    }
    if flg & FHCRC != 0 {
        let [h0, h1] = *data.get(pos..pos + 2).ok_or(InflateError::Truncated)? else {
            return Err(InflateError::Truncated);
        };
        if u16::from_le_bytes([h0, h1]) != crc32fast::hash(&data[..pos]) as u16 {
            return Err(bad);
        }
        pos += 2;
    }
    Ok(pos)
}

/// Inflates the raw DEFLATE stream at the start of `input`; returns the output and how many
/// input bytes the stream used. The output buffer grows by doubling but never past `limit + 1`
/// bytes: one byte past the limit is enough to know the data is too large.
fn inflate_raw(input: &[u8], limit: usize) -> Result<(Vec<u8>, usize), InflateError> {
    let cap = limit.saturating_add(1);
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).max(4096).min(cap));
    let mut inflater = Decompress::new(false);
    let used = |d: &Decompress| usize::try_from(d.total_in()).unwrap_or(usize::MAX);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= cap {
                return Err(InflateError::TooLarge { limit });
            }
            let target = out.capacity().saturating_mul(2).min(cap);
            out.reserve_exact(target - out.len());
        }
        let (in_before, out_before) = (used(&inflater), out.len());
        let rest = input.get(in_before..).unwrap_or_default();
        let status = inflater
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .map_err(|e| {
                InflateError::Corrupt(format!(
                    "invalid DEFLATE data: {}",
                    e.message().unwrap_or("rejected by zlib")
                ))
            })?;
        if out.len() > limit {
            return Err(InflateError::TooLarge { limit });
        }
        let in_after = used(&inflater);
        match status {
            Status::StreamEnd => return Ok((out, in_after.min(input.len()))),
            Status::Ok | Status::BufError => {
                // With room left for output, zlib only stops early for want of input.
                let stalled = in_after == in_before && out.len() == out_before;
                if out.len() < out.capacity() && (in_after >= input.len() || stalled) {
                    return Err(InflateError::Truncated);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        (
            proptest::collection::vec((gap.clone(), 1u8..=255), 0..200),
            gap,
        )
            .prop_map(|(pairs, tail)| {
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

    proptest! {
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
}
