//! The block plan (dynamic or fixed code, chosen by exact size) and the LSB-first bit writer
//! that replays the parse into the output; and the literal-only block of dense text
//! ([`Literals`]).

use super::huffman::*;
use super::parse::*;
use super::tables::*;

enum Kind {
    Fixed,
    Dynamic(Box<Dynamic>),
}

/// Everything decided before writing: the parse, the codes and the exact size in bits.
pub(super) struct Plan {
    parser: Parser,
    pub(super) fars: Vec<Far>,
    kind: Kind,
    bits: u64,
}

/// Below this many bits a fixed-code block is also tried: only tiny arrays are small enough for
/// the dynamic header (some 60 bytes) to matter.
const TRY_FIXED_BELOW: u64 = 8 * 2048;

impl Plan {
    pub(super) fn new(arr: &Sparse<'_>) -> Self {
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

    pub(super) fn byte_len(&self) -> usize {
        self.bits.div_ceil(8) as usize
    }

    pub(super) fn write(&self, arr: &Sparse<'_>, out: &mut Vec<u8>) {
        self.write_as(&self.kind, arr, out);
    }

    /// The same parse for the array with every byte value `b` replaced by `map[b]`, a
    /// permutation of the byte values that keeps zero: the zero runs are where they were and
    /// far matches still copy equal bytes, so only the literal code is relabelled, and the
    /// data costs exactly the bits it did. `None` for a fixed-code block (tiny arrays), whose
    /// literal code cannot be relabelled.
    pub(super) fn relabelled(&self, map: &[u8; 256]) -> Option<Relabelled<'_>> {
        let Kind::Dynamic(d) = &self.kind else {
            return None;
        };
        let mut lit = d.lit;
        for (b, &len) in d.lit[..256].iter().enumerate() {
            lit[map[b] as usize] = len;
        }
        let code = Dynamic::from_lens(lit, d.dist);
        let bits = self.bits - d.header_bits + code.header_bits;
        Some(Relabelled {
            plan: self,
            kind: Kind::Dynamic(Box::new(code)),
            bits,
        })
    }

    fn write_as(&self, kind: &Kind, arr: &Sparse<'_>, out: &mut Vec<u8>) {
        let mut w = BitWriter::new(out);
        let mut lit_codes = [0u16; LITLEN];
        let mut dist_codes = [0u16; DIST];
        let (lit, dist) = match kind {
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
                put_dynamic_header(&mut w, d, &mut lit_codes, &mut dist_codes);
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

/// A [`Plan`] for a relabelled array ([`Plan::relabelled`]).
pub(super) struct Relabelled<'p> {
    plan: &'p Plan,
    kind: Kind,
    bits: u64,
}

impl Relabelled<'_> {
    pub(super) fn byte_len(&self) -> usize {
        self.bits.div_ceil(8) as usize
    }

    /// Writes the relabelled array `arr` (the plan's array with its bytes mapped).
    pub(super) fn write(&self, arr: &Sparse<'_>, out: &mut Vec<u8>) {
        self.plan.write_as(&self.kind, arr, out);
    }
}

/// Writes a final dynamic block's header (BFINAL=1, BTYPE=10, the code-length code and the
/// run-length coded lengths) and numbers its codes.
fn put_dynamic_header(
    w: &mut BitWriter<'_>,
    d: &Dynamic,
    lit_codes: &mut [u16; LITLEN],
    dist_codes: &mut [u16; DIST],
) {
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
    canonical_codes(&d.lit, lit_codes);
    canonical_codes(&d.dist, dist_codes);
}

/// One final dynamic block coding `bytes` as literals only, with the Huffman code of their
/// own counts: the exact size in bytes, and the writer.
pub(super) struct Literals {
    code: Dynamic,
    bits: u64,
}

impl Literals {
    pub(super) fn new(bytes: &[u8]) -> Self {
        let mut freqs = Freqs {
            lit: [0; LITLEN],
            dist: [0; DIST],
        };
        for &b in bytes {
            freqs.lit[b as usize] += 1;
        }
        freqs.lit[END_OF_BLOCK] = 1;
        let code = Dynamic::new(&freqs);
        let bits = code.header_bits + freqs.data_bits(&code.lit, &code.dist);
        Literals { code, bits }
    }

    pub(super) fn byte_len(&self) -> usize {
        self.bits.div_ceil(8) as usize
    }

    pub(super) fn write(&self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut w = BitWriter::new(out);
        let (mut lit_codes, mut dist_codes) = ([0u16; LITLEN], [0u16; DIST]);
        put_dynamic_header(&mut w, &self.code, &mut lit_codes, &mut dist_codes);
        let lit = &self.code.lit;
        for &b in bytes {
            let b = b as usize;
            w.put(u32::from(lit_codes[b]), u32::from(lit[b]));
        }
        w.put(
            u32::from(lit_codes[END_OF_BLOCK]),
            u32::from(lit[END_OF_BLOCK]),
        );
        w.finish();
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
