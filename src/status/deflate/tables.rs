//! The fixed DEFLATE tables (RFC 1951 §3.2.5): match lengths and distances, their codes and
//! extra bits, and the fixed code of BTYPE=01 blocks.

pub(super) const MIN_MATCH: usize = 3;
pub(super) const MAX_MATCH: usize = 258;
/// Longest distance DEFLATE allows.
pub(super) const WINDOW: usize = 32768;
/// Zero-run remainders below this are split by the dynamic-programming table; longer ones first
/// take whole 258-byte matches down to `[258, 516)`, where the table chooses the tail.
pub(super) const TAIL: usize = 2 * MAX_MATCH;
pub(super) const END_OF_BLOCK: usize = 256;
/// Literal/length symbols that can occur (286 and 287 are reserved).
pub(super) const LITLEN: usize = 286;
/// Distance symbols that can occur (30 and 31 are reserved).
pub(super) const DIST: usize = 30;
pub(super) const CODELEN: usize = 19;
pub(super) const MAX_BITS: usize = 15;
pub(super) const MAX_CODELEN_BITS: usize = 7;

pub(super) const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
pub(super) const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
pub(super) const DIST_BASE: [u16; DIST] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
pub(super) const DIST_EXTRA: [u8; DIST] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// Length code index (symbol - 257) of every match length; entries below 3 are unused.
pub(super) const LEN_CODE: [u8; MAX_MATCH + 1] = len_codes();
/// Order in which the code-length code lengths are sent.
pub(super) const CODELEN_ORDER: [usize; CODELEN] = [
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

pub(super) fn len_symbol(m: usize) -> usize {
    257 + LEN_CODE[m] as usize
}

/// Extra bits after a literal/length symbol (0 for literals and end-of-block).
pub(super) fn symbol_extra(sym: usize) -> u32 {
    if sym > END_OF_BLOCK {
        u32::from(LEN_EXTRA[sym - 257])
    } else {
        0
    }
}

/// Distance code of a distance in `1..=WINDOW`.
pub(super) fn dist_code(d: usize) -> usize {
    let d = d - 1;
    if d < 4 {
        d
    } else {
        let log = (usize::BITS - 1 - d.leading_zeros()) as usize;
        2 * log + ((d >> (log - 1)) & 1)
    }
}

/// The fixed literal/length code lengths of BTYPE=01 (RFC 1951 §3.2.6).
pub(super) fn fixed_lens() -> [u8; LITLEN] {
    let mut lens = [8u8; LITLEN];
    lens[144..256].fill(9);
    lens[256..280].fill(7);
    lens
}
pub(super) const FIXED_DIST_LENS: [u8; DIST] = [5; DIST];
