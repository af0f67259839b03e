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
//! Tokens: each non-zero byte is a literal. A run of zeros is a literal `0` (a distance-1 match
//! right after a non-zero byte would copy that byte) followed by distance-1 matches repeating
//! it. How a run is split between matches of 3..=258 bytes and literal zeros is a shortest-path
//! problem over the actual code lengths, solved once per round for every remainder below 516
//! (longer runs take whole 258-byte matches first), so e.g. 259 zeros become `0` + 258 rather
//! than a short, expensive match.
//!
//! Far matches: copying an earlier *zero run* from a distance above 1 never pays, since every
//! match stops at 258 bytes whatever its distance, distance 1 costs about one bit and any other
//! distance costs a code plus extra bits, more than the one literal `0` it could save. What does
//! pay, and is how zlib -9 beats a plain zero-run coder, is a match that copies zeros *and* a
//! non-zero byte (sometimes several) from an earlier spot with the same pattern: one length and
//! one distance replace a literal, a literal `0` and a distance-1 match. For each non-zero byte
//! the last 8 earlier bytes with the same value are tried as sources (`CANDIDATES`), nearest
//! first; a match is taken when its exact cost, zero runs on both sides included, beats the
//! plain tokens. The search is O(non-zero bytes × CANDIDATES) per round.
//!
//! Rounds and codes: round 0 is the plain zero-run parse with guessed costs; round 1 adds far
//! matches priced from round 0's counts; when they pay, round 2 re-parses with round 1's real
//! code. Each round builds one dynamic block (BTYPE=10) from its own counts, with
//! length-limited codes from package-merge (optimal under the limits of 15 and 7 bits), and the
//! smallest round wins; a fixed-code block (BTYPE=01) replaces it when smaller, which only
//! happens for tiny arrays. The far matches a round chose are recorded and replayed when
//! writing, and the exact size is known first, so the output is allocated once. Trees are always
//! complete (a dummy symbol is added where only one is used) because some decoders reject
//! incomplete trees even where RFC 1951 allows them.
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
    let arr = Sparse { len, items: &items };
    let plan = Plan::new(&arr);
    let size = ZLIB_HEADER.len() + plan.byte_len() + 4;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&ZLIB_HEADER);
    plan.write(&arr, &mut out);
    out.extend_from_slice(&adler32_sparse(len, &items).to_be_bytes());
    debug_assert_eq!(out.len(), size, "the plan sized the output exactly");
    out
}

/// GZIP member (MTIME 0) of the same sparse array; same contract as [`zlib_sparse`].
pub fn gzip_sparse(len: usize, nonzero: impl IntoIterator<Item = (usize, u8)>) -> Vec<u8> {
    let items = collect_nonzero(len, nonzero);
    let arr = Sparse { len, items: &items };
    let plan = Plan::new(&arr);
    let size = GZIP_HEADER.len() + plan.byte_len() + 8;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&GZIP_HEADER);
    plan.write(&arr, &mut out);
    out.extend_from_slice(&crc32_sparse(len, &items).to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1), hence the deliberate truncation.
    out.extend_from_slice(&(len as u32).to_le_bytes());
    debug_assert_eq!(out.len(), size, "the plan sized the output exactly");
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
/// Longest distance DEFLATE allows.
const WINDOW: usize = 32768;
/// Zero-run remainders below this are split by the dynamic-programming table; longer ones first
/// take whole 258-byte matches down to `[258, 516)`, where the table chooses the tail.
const TAIL: usize = 2 * MAX_MATCH;
const END_OF_BLOCK: usize = 256;
/// Literal/length symbols that can occur (286 and 287 are reserved).
const LITLEN: usize = 286;
/// Distance symbols that can occur (30 and 31 are reserved).
const DIST: usize = 30;
const CODELEN: usize = 19;
const MAX_BITS: usize = 15;
const MAX_CODELEN_BITS: usize = 7;

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; DIST] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; DIST] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
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
fn symbol_extra(sym: usize) -> u32 {
    if sym > END_OF_BLOCK {
        u32::from(LEN_EXTRA[sym - 257])
    } else {
        0
    }
}

/// Distance code of a distance in `1..=WINDOW`.
fn dist_code(d: usize) -> usize {
    let d = d - 1;
    if d < 4 {
        d
    } else {
        let log = (usize::BITS - 1 - d.leading_zeros()) as usize;
        2 * log + ((d >> (log - 1)) & 1)
    }
}

/// The fixed literal/length code lengths of BTYPE=01 (RFC 1951 §3.2.6).
fn fixed_lens() -> [u8; LITLEN] {
    let mut lens = [8u8; LITLEN];
    lens[144..256].fill(9);
    lens[256..280].fill(7);
    lens
}
const FIXED_DIST_LENS: [u8; DIST] = [5; DIST];

// ---------------------------------------------------------------------------------------------
// Costs and parsing

/// What each token costs in bits (symbol plus extra bits) under some code.
struct Costs {
    lit: [u32; 256],
    /// Length symbol plus its extra bits, per match length.
    len: [u32; MAX_MATCH + 1],
    /// Distance symbol plus its extra bits, per distance code.
    dist: [u32; DIST],
}

/// The price of a symbol a code lacks: high enough never to be chosen, low enough that sums of
/// a few hundred cannot overflow.
const UNUSABLE: u32 = 1 << 20;

impl Costs {
    /// A guess for the first round, shaped like sparse lists: literal zeros are frequent (one per
    /// zero run), 258 is the commonest length of long runs, only distance 1 is used.
    fn initial() -> Self {
        let mut c = Costs {
            lit: [6; 256],
            len: [UNUSABLE; MAX_MATCH + 1],
            dist: [UNUSABLE; DIST],
        };
        c.lit[0] = 2;
        for m in MIN_MATCH..=MAX_MATCH {
            c.len[m] = if m == MAX_MATCH { 2 } else { 6 } + symbol_extra(len_symbol(m));
        }
        c.dist[0] = 1;
        c
    }

    /// Exact costs under a code. Symbols without a code are unusable, so a parse priced this
    /// way only uses symbols that code had (the tree written is rebuilt from the parse's own
    /// counts, so that is about quality, not validity).
    fn from_lens(lit: &[u8; LITLEN], dist: &[u8; DIST]) -> Self {
        let bits = |l: u8, extra: u32| {
            if l == 0 {
                UNUSABLE
            } else {
                u32::from(l) + extra
            }
        };
        let mut c = Costs {
            lit: [UNUSABLE; 256],
            len: [UNUSABLE; MAX_MATCH + 1],
            dist: [UNUSABLE; DIST],
        };
        for (cost, &l) in c.lit.iter_mut().zip(lit) {
            *cost = bits(l, 0);
        }
        for m in MIN_MATCH..=MAX_MATCH {
            let sym = len_symbol(m);
            c.len[m] = bits(lit[sym], symbol_extra(sym));
        }
        for (code, cost) in c.dist.iter_mut().enumerate() {
            *cost = bits(dist[code], u32::from(DIST_EXTRA[code]));
        }
        c
    }

    /// Ideal code lengths from an earlier parse's counts. Unseen symbols get a plausible price
    /// instead of being unusable, so the next round can start using them (the first rounds only
    /// know distance 1).
    fn estimate(freqs: &Freqs) -> Self {
        fn ideal(f: u64, total: u64) -> u32 {
            let p = if f == 0 { 0.25 } else { f as f64 } / total.max(1) as f64;
            (-p.log2()).round().clamp(1.0, MAX_BITS as f64) as u32
        }
        let total: u64 = freqs.lit.iter().sum();
        let mut c = Costs {
            lit: [0; 256],
            len: [0; MAX_MATCH + 1],
            dist: [0; DIST],
        };
        for (cost, &f) in c.lit.iter_mut().zip(&freqs.lit) {
            *cost = ideal(f, total);
        }
        for m in MIN_MATCH..=MAX_MATCH {
            let sym = len_symbol(m);
            c.len[m] = ideal(freqs.lit[sym], total) + symbol_extra(sym);
        }
        // Round 0 only counted distance 1; price every other distance code as if it were used
        // by an eighth of the matches, so far matches get a fair first try.
        let matches: u64 = freqs.dist.iter().sum();
        for (code, cost) in c.dist.iter_mut().enumerate() {
            let f = freqs.dist[code].max(matches / 8);
            *cost = ideal(f, matches + matches / 8 * DIST as u64) + u32::from(DIST_EXTRA[code]);
        }
        c
    }
}

/// A tokeniser priced by one set of [`Costs`]. Counting and writing run the same parser, so
/// the tree built from the counts has a code for every token written.
struct Parser {
    costs: Costs,
    /// Whether to look for matches at distances above 1 (see [`Parser::far_match`]).
    far: bool,
    /// `zero_step[t]`: how to start covering `t < TAIL` zeros that follow a zero: 0 for one
    /// literal zero, else the length of one distance-1 match.
    zero_step: [u16; TAIL],
    /// And what that cheapest cover costs.
    zero_cost: [u32; TAIL],
    /// The cheapest length symbol with its extra bits, bounding what any match can cost.
    cheapest_len: u32,
}

impl Parser {
    fn new(costs: Costs, far: bool) -> Self {
        // The cheapest cover of t zeros is a shortest-path problem over t = 0..TAIL: one step
        // is a literal zero or a distance-1 match of 3..=258. Lengths sharing a length symbol
        // cost the same, so each symbol only needs the minimum over its window of earlier
        // costs, which `window[l]` (minimum of the 2^l entries ending at an index) gives in
        // O(1); indices are offset by `PAD` so windows reaching below 0 read as unreachable.
        const PAD: usize = MAX_MATCH;
        const UNREACHABLE: u32 = u32::MAX / 4;
        let mut window = [[UNREACHABLE; PAD + TAIL]; 6];
        let range_min = |window: &[[u32; PAD + TAIL]; 6], lo: usize, hi: usize| {
            let l = (usize::BITS - 1 - (hi - lo + 1).leading_zeros()) as usize;
            window[l][hi].min(window[l][lo + (1 << l) - 1])
        };
        let symbols: [(usize, usize, u32); 29] = std::array::from_fn(|c| {
            let lo = usize::from(LEN_BASE[c]);
            let hi = (lo + (1 << LEN_EXTRA[c]) - 1).min(if lo == MAX_MATCH {
                MAX_MATCH
            } else {
                MAX_MATCH - 1
            });
            (lo, hi, costs.len[lo] + costs.dist[0])
        });
        let mut zero_cost = [0u32; TAIL];
        let mut zero_step = [0u16; TAIL];
        for level in &mut window {
            level[PAD] = 0;
        }
        for t in 1..TAIL {
            let mut cost = zero_cost[t - 1] + costs.lit[0];
            let mut pick = None;
            for &(lo, hi, c) in symbols.iter().take_while(|&&(lo, _, _)| lo <= t) {
                let m = c + range_min(&window, PAD + t - hi, PAD + t - lo);
                if m < cost {
                    cost = m;
                    pick = Some((lo, hi, c));
                }
            }
            let step = pick.map_or(0, |(lo, hi, c)| {
                (lo..=hi.min(t))
                    .find(|&m| zero_cost[t - m] + c == cost)
                    .unwrap_or(0)
            });
            zero_cost[t] = cost;
            zero_step[t] = step as u16;
            let x = PAD + t;
            window[0][x] = cost;
            for l in 1..6 {
                window[l][x] = window[l - 1][x].min(window[l - 1][x - (1 << (l - 1))]);
            }
        }
        Parser {
            cheapest_len: costs.len[MIN_MATCH..]
                .iter()
                .copied()
                .min()
                .unwrap_or(UNUSABLE),
            costs,
            far,
            zero_step,
            zero_cost,
        }
    }

    /// Bits for `n` zeros; after a non-zero byte (or at the start) the first must be a literal,
    /// as a distance-1 match would copy the non-zero byte.
    fn zeros_cost(&self, n: usize, after_zero: bool) -> u64 {
        if n == 0 {
            return 0;
        }
        let (lead, n) = if after_zero {
            (0, n)
        } else {
            (u64::from(self.costs.lit[0]), n - 1)
        };
        if n < TAIL {
            lead + u64::from(self.zero_cost[n])
        } else {
            let whole = n / MAX_MATCH - 1;
            let whole_cost = u64::from(self.costs.len[MAX_MATCH] + self.costs.dist[0]);
            lead + whole as u64 * whole_cost + u64::from(self.zero_cost[n - whole * MAX_MATCH])
        }
    }

    fn zeros(&self, n: usize, after_zero: bool, sink: &mut impl Sink) {
        if n == 0 {
            return;
        }
        let mut rest = n;
        if !after_zero {
            sink.literal(0);
            rest -= 1;
        }
        if rest >= TAIL {
            let whole = rest / MAX_MATCH - 1;
            sink.matches(MAX_MATCH, whole as u64);
            rest -= whole * MAX_MATCH;
        }
        while rest > 0 {
            match self.zero_step[rest] as usize {
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

    /// Walks the array, writing its tokens to `sink`; `decide` chooses at each item (given the
    /// zeros before it not yet written and whether the last byte written is a zero) whether a
    /// far match starts there.
    fn walk(
        &self,
        arr: &Sparse<'_>,
        sink: &mut impl Sink,
        mut decide: impl FnMut(usize, usize, bool) -> Option<Far>,
    ) {
        let items = arr.items;
        let (mut pos, mut after_zero, mut i) = (0, false, 0);
        while i < items.len() {
            let (off, byte) = items[i];
            let run = off - pos;
            match decide(i, run, after_zero) {
                Some(far) => {
                    self.zeros(run - usize::from(far.before), after_zero, sink);
                    sink.far(usize::from(far.len), usize::from(far.dist));
                    pos = items[far.last].0 + 1 + usize::from(far.after);
                    after_zero = far.after > 0;
                    i = far.last + 1;
                }
                None => {
                    self.zeros(run, after_zero, sink);
                    sink.literal(byte);
                    pos = off + 1;
                    after_zero = false;
                    i += 1;
                }
            }
        }
        self.zeros(arr.len - pos, after_zero, sink);
    }

    /// Parses the array: its symbol counts, and the far matches chosen (replayed when writing,
    /// so the search runs once per round).
    fn parse(&self, arr: &Sparse<'_>) -> (Freqs, Vec<Far>) {
        let mut freqs = Freqs {
            lit: [0; LITLEN],
            dist: [0; DIST],
        };
        let mut fars = Vec::new();
        if self.far {
            let mut sources = Sources::new();
            let mut seen = 0;
            self.walk(arr, &mut freqs, |i, run, after_zero| {
                // Every item before this one, whether written plainly or inside a match, can
                // be a source now.
                for k in seen..i {
                    sources.push(arr.items[k].1, k);
                }
                seen = i;
                let far = self.far_match(arr, i, run, after_zero, &sources);
                fars.extend(far);
                far
            });
        } else {
            self.walk(arr, &mut freqs, |_, _, _| None);
        }
        freqs.lit[END_OF_BLOCK] = 1;
        (freqs, fars)
    }

    /// The most profitable match at a distance above 1 that covers item `i` (preceded by `run`
    /// zeros not yet written), if any beats writing it the plain way.
    ///
    /// A source is an earlier item with the same byte. The match copies zeros ahead of the
    /// byte, the byte, and zeros after it, through following items as long as gaps and bytes
    /// agree. Written plainly, a byte and the zeros after it cost a literal, a literal zero and
    /// a distance-1 match; a far match replaces them with one length and one distance, which
    /// pays when runs are long or patterns repeat. The comparison spans up to the next item,
    /// since a match that ends inside a zero run also spares that run's leading literal zero.
    fn far_match(
        &self,
        arr: &Sparse<'_>,
        i: usize,
        run: usize,
        after_zero: bool,
        sources: &Sources,
    ) -> Option<Far> {
        let items = arr.items;
        let (off, byte) = items[i];
        let lit = |b: u8| u64::from(self.costs.lit[b as usize]);
        let gap = arr.gap_after(i);
        let plain_one = self.zeros_cost(run, after_zero) + lit(byte) + self.zeros_cost(gap, false);
        let (run_rest, gap_rest) = (run % MAX_MATCH, gap % MAX_MATCH);
        let mut best: Option<Far> = None;
        let mut best_gain = 0;
        for j in sources.candidates(byte) {
            let dist = off - items[j].0;
            if dist > WINDOW {
                break;
            }
            let (mut k, mut src) = (i, j);
            let (mut end_gap, mut src_gap) = (gap, arr.gap_after(j));
            let mut plain = plain_one;
            while end_gap == src_gap
                && k + 1 < items.len()
                && items[k + 1].1 == items[src + 1].1
                && items[k + 1].0 - off < MAX_MATCH
            {
                k += 1;
                src += 1;
                (end_gap, src_gap) = (arr.gap_after(k), arr.gap_after(src));
                plain += lit(items[k].1) + self.zeros_cost(end_gap, false);
            }
            let span = items[k].0 + 1 - off;
            let room = MAX_MATCH - span;
            let (most_before, most_after) = (run.min(arr.gap_before(j)), end_gap.min(src_gap));
            let dist_cost = self.costs.dist[dist_code(dist)];
            if plain <= u64::from(dist_cost + self.cheapest_len) + best_gain {
                continue;
            }
            // How many zeros to copy on either side: as many as fit, or as many as leave the
            // rest of the run a multiple of 258, so that it costs only whole cheap matches (the
            // match itself is then often 258 long, the cheapest length too).
            let befores = [most_before.min(room), run_rest];
            for (n, &before) in befores.iter().enumerate() {
                if before > most_before.min(room) || (n > 0 && before == befores[0]) {
                    continue;
                }
                let fit = most_after.min(room - before);
                let afters = [
                    fit,
                    if k == i {
                        gap_rest
                    } else {
                        end_gap % MAX_MATCH
                    },
                ];
                for (m, &after) in afters.iter().enumerate() {
                    if after > fit || (m > 0 && after == fit) {
                        continue;
                    }
                    let len = before + span + after;
                    if len < MIN_MATCH {
                        continue;
                    }
                    let far = self.zeros_cost(run - before, after_zero)
                        + u64::from(self.costs.len[len] + dist_cost)
                        + self.zeros_cost(end_gap - after, after > 0);
                    if far < plain && plain - far > best_gain {
                        best_gain = plain - far;
                        // All fit in u16: lengths are at most 258, distances at most 32768.
                        best = Some(Far {
                            first: i,
                            last: k,
                            before: before as u16,
                            after: after as u16,
                            len: len as u16,
                            dist: dist as u16,
                        });
                    }
                }
            }
            // Farther sources have dearer distances (more extra bits); one covering more zeros
            // or further items might still win, but once this one covers every zero it could,
            // stop: spans of several items are rare, and the search time is the encoder's.
            if k == i && most_before >= run.min(room) && most_after >= gap.min(room) {
                break;
            }
        }
        best
    }
}

/// A far match chosen by [`Parser::far_match`], covering items `first..=last`.
#[derive(Clone, Copy)]
struct Far {
    first: usize,
    last: usize,
    /// Zeros copied ahead of the first item.
    before: u16,
    /// Zeros copied after the last item.
    after: u16,
    len: u16,
    dist: u16,
}

/// The sparse array, with the zero gaps around each item.
struct Sparse<'a> {
    len: usize,
    items: &'a [(usize, u8)],
}

impl Sparse<'_> {
    fn gap_before(&self, i: usize) -> usize {
        match i {
            0 => self.items[0].0,
            _ => self.items[i].0 - self.items[i - 1].0 - 1,
        }
    }

    fn gap_after(&self, i: usize) -> usize {
        let next = self.items.get(i + 1).map_or(self.len, |&(off, _)| off);
        next - self.items[i].0 - 1
    }
}

/// How many earlier items with the same byte are tried as far-match sources, nearest first
/// since nearer distances are cheaper. More buys little and costs time linearly.
const CANDIDATES: usize = 8;

/// Where far matches may copy from: the last [`CANDIDATES`] items of each byte value.
struct Sources {
    slots: Vec<usize>,
    head: [u8; 256],
}

impl Sources {
    fn new() -> Self {
        Sources {
            slots: vec![usize::MAX; 256 * CANDIDATES],
            head: [0; 256],
        }
    }

    fn push(&mut self, byte: u8, item: usize) {
        let b = byte as usize;
        let h = (self.head[b] as usize + 1) % CANDIDATES;
        self.head[b] = h as u8;
        self.slots[b * CANDIDATES + h] = item;
    }

    /// Earlier items with this byte, newest first.
    fn candidates(&self, byte: u8) -> impl Iterator<Item = usize> + '_ {
        let b = byte as usize;
        let h = self.head[b] as usize;
        let row = &self.slots[b * CANDIDATES..(b + 1) * CANDIDATES];
        (0..CANDIDATES)
            .map(move |k| row[(h + CANDIDATES - k) % CANDIDATES])
            .take_while(|&item| item != usize::MAX)
    }
}

/// Receives the token stream of an array; counting and writing are the two sinks.
trait Sink {
    fn literal(&mut self, byte: u8);
    /// `count` distance-1 matches of length `len`.
    fn matches(&mut self, len: usize, count: u64);
    fn far(&mut self, len: usize, dist: usize);
}

/// Symbol frequencies of one parse.
struct Freqs {
    lit: [u64; LITLEN],
    dist: [u64; DIST],
}

impl Freqs {
    /// Bits of the block body (symbols and extra bits) under the given code.
    fn data_bits(&self, lit: &[u8; LITLEN], dist: &[u8; DIST]) -> u64 {
        let lits: u64 = self
            .lit
            .iter()
            .zip(lit)
            .enumerate()
            .map(|(sym, (&f, &l))| f * u64::from(u32::from(l) + symbol_extra(sym)))
            .sum();
        let dists: u64 = self
            .dist
            .iter()
            .zip(dist)
            .zip(DIST_EXTRA)
            .map(|((&f, &l), e)| f * u64::from(l + e))
            .sum();
        lits + dists
    }
}

impl Sink for Freqs {
    fn literal(&mut self, byte: u8) {
        self.lit[byte as usize] += 1;
    }

    fn matches(&mut self, len: usize, count: u64) {
        self.lit[len_symbol(len)] += count;
        self.dist[0] += count;
    }

    fn far(&mut self, len: usize, dist: usize) {
        self.lit[len_symbol(len)] += 1;
        self.dist[dist_code(dist)] += 1;
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
    // Level 0 is depth `max_bits` (leaves only), level `max_bits - 1` is depth 1.
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
/// code makes an incomplete tree, which some decoders refuse.
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
    dist: [u8; DIST],
    hlit: usize,
    hdist: usize,
    cl: [u8; CODELEN],
    hclen: usize,
    rle: Vec<(u8, u8)>,
    header_bits: u64,
}

impl Dynamic {
    fn new(freqs: &Freqs) -> Self {
        let mut lit = [0u8; LITLEN];
        complete_lengths(&freqs.lit, MAX_BITS, &mut lit);
        // Without any match the distance tree gets two dummy one-bit codes, which is what the
        // RFC's "one distance code of zero bits" would save, but every decoder accepts it.
        let mut dist = [0u8; DIST];
        complete_lengths(&freqs.dist, MAX_BITS, &mut dist);
        let used = |lens: &[u8]| lens.iter().rposition(|&l| l > 0).map_or(0, |p| p + 1);
        let hlit = used(&lit).max(257);
        let hdist = used(&dist).max(1);
        let mut seq = [0u8; LITLEN + DIST];
        seq[..hlit].copy_from_slice(&lit[..hlit]);
        seq[hlit..hlit + hdist].copy_from_slice(&dist[..hdist]);
        let mut rle = Vec::with_capacity(hlit + hdist);
        rle_lengths(&seq[..hlit + hdist], &mut rle);
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
            dist,
            hlit,
            hdist,
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
    parser: Parser,
    fars: Vec<Far>,
    kind: Kind,
    bits: u64,
}

/// Below this many bits a fixed-code block is also tried: only tiny arrays are small enough for
/// the dynamic header (some 60 bytes) to matter.
const TRY_FIXED_BELOW: u64 = 8 * 2048;

impl Plan {
    fn new(arr: &Sparse<'_>) -> Self {
        // Round 0 is the plain zero-run parse with guessed costs. Round 1 adds far matches,
        // priced from round 0's counts; if they pay, round 2 re-parses with round 1's actual
        // code. Each round's tree is built from that round's own counts, so any round can be
        // written; the smallest is kept.
        let (plain, freqs) = Plan::dynamic(arr, Parser::new(Costs::initial(), false));
        let (far, _) = Plan::dynamic(arr, Parser::new(Costs::estimate(&freqs), true));
        let mut best = if far.bits < plain.bits - plain.bits / 200 {
            let costs = match &far.kind {
                Kind::Dynamic(d) => Costs::from_lens(&d.lit, &d.dist),
                Kind::Fixed => Costs::from_lens(&fixed_lens(), &FIXED_DIST_LENS),
            };
            let (again, _) = Plan::dynamic(arr, Parser::new(costs, true));
            if again.bits < far.bits {
                again
            } else {
                far
            }
        } else if far.bits < plain.bits {
            far
        } else {
            plain
        };
        if best.bits < TRY_FIXED_BELOW {
            let fixed = fixed_lens();
            let parser = Parser::new(Costs::from_lens(&fixed, &FIXED_DIST_LENS), true);
            let (freqs, fars) = parser.parse(arr);
            let bits = 3 + freqs.data_bits(&fixed, &FIXED_DIST_LENS);
            if bits < best.bits {
                best = Plan {
                    parser,
                    fars,
                    kind: Kind::Fixed,
                    bits,
                };
            }
        }
        best
    }

    /// One round: parse, then build the dynamic codes from the counts.
    fn dynamic(arr: &Sparse<'_>, parser: Parser) -> (Plan, Freqs) {
        let (freqs, fars) = parser.parse(arr);
        let dynamic = Dynamic::new(&freqs);
        let bits = dynamic.header_bits + freqs.data_bits(&dynamic.lit, &dynamic.dist);
        let plan = Plan {
            parser,
            fars,
            kind: Kind::Dynamic(Box::new(dynamic)),
            bits,
        };
        (plan, freqs)
    }

    fn byte_len(&self) -> usize {
        self.bits.div_ceil(8) as usize
    }

    fn write(&self, arr: &Sparse<'_>, out: &mut Vec<u8>) {
        let mut w = BitWriter::new(out);
        let mut lit_codes = [0u16; LITLEN];
        let mut dist_codes = [0u16; DIST];
        let (lit, dist) = match &self.kind {
            Kind::Fixed => {
                // BFINAL=1, BTYPE=01.
                w.put(0b011, 3);
                // The reserved symbols 286 and 287 take part in the fixed code's canonical
                // numbering (they precede the 9-bit codes), so number all 288.
                let lit = fixed_lens();
                let mut all_lens = [8u8; LITLEN + 2];
                all_lens[..LITLEN].copy_from_slice(&lit);
                let mut all = [0u16; LITLEN + 2];
                canonical_codes(&all_lens, &mut all);
                lit_codes.copy_from_slice(&all[..LITLEN]);
                canonical_codes(&FIXED_DIST_LENS, &mut dist_codes);
                (lit, FIXED_DIST_LENS)
            }
            Kind::Dynamic(d) => {
                // BFINAL=1, BTYPE=10.
                w.put(0b101, 3);
                w.put((d.hlit - 257) as u32, 5);
                w.put((d.hdist - 1) as u32, 5);
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
                canonical_codes(&d.lit, &mut lit_codes);
                canonical_codes(&d.dist, &mut dist_codes);
                (d.lit, d.dist)
            }
        };
        // Length symbol and extra bits per match length, and the whole distance-1 match, each
        // ready for a single write.
        let mut lengths = [(0u32, 0u32); MAX_MATCH + 1];
        let mut near = [(0u64, 0u32); MAX_MATCH + 1];
        for m in MIN_MATCH..=MAX_MATCH {
            let sym = len_symbol(m);
            let bits = u32::from(lit[sym]);
            let extra = (m - LEN_BASE[LEN_CODE[m] as usize] as usize) as u32;
            lengths[m] = (
                u32::from(lit_codes[sym]) | (extra << bits),
                bits + symbol_extra(sym),
            );
            let (code, n) = lengths[m];
            near[m] = (
                u64::from(code) | u64::from(dist_codes[0]) << n,
                n + u32::from(dist[0]),
            );
        }
        let mut emit = Emit {
            w,
            lit: &lit,
            lit_codes: &lit_codes,
            dist: &dist,
            dist_codes: &dist_codes,
            lengths: &lengths,
            near: &near,
        };
        let mut next = 0;
        self.parser
            .walk(arr, &mut emit, |i, _, _| match self.fars.get(next) {
                Some(&far) if far.first == i => {
                    next += 1;
                    Some(far)
                }
                _ => None,
            });
        emit.w.put(
            u32::from(lit_codes[END_OF_BLOCK]),
            u32::from(lit[END_OF_BLOCK]),
        );
        emit.w.finish();
    }
}

struct Emit<'a, 'o> {
    w: BitWriter<'o>,
    lit: &'a [u8; LITLEN],
    lit_codes: &'a [u16; LITLEN],
    dist: &'a [u8; DIST],
    dist_codes: &'a [u16; DIST],
    lengths: &'a [(u32, u32); MAX_MATCH + 1],
    near: &'a [(u64, u32); MAX_MATCH + 1],
}

impl Sink for Emit<'_, '_> {
    fn literal(&mut self, byte: u8) {
        let b = byte as usize;
        self.w
            .put(u32::from(self.lit_codes[b]), u32::from(self.lit[b]));
    }

    fn matches(&mut self, len: usize, count: u64) {
        let (code, bits) = self.near[len];
        for _ in 0..count {
            self.w.put_long(code, bits);
        }
    }

    fn far(&mut self, len: usize, dist: usize) {
        let (code, bits) = self.lengths[len];
        self.w.put(code, bits);
        let c = dist_code(dist);
        let extra = (dist - DIST_BASE[c] as usize) as u32;
        let bits = u32::from(self.dist[c]);
        self.w.put(
            u32::from(self.dist_codes[c]) | (extra << bits),
            bits + u32::from(DIST_EXTRA[c]),
        );
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

    /// Appends the low `bits` (at most 64) bits of `value`.
    #[inline]
    fn put_long(&mut self, value: u64, bits: u32) {
        if bits <= 32 {
            self.put(value as u32, bits);
        } else {
            self.put(value as u32, 32);
            self.put((value >> 32) as u32, bits - 32);
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
