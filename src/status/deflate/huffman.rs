//! Huffman codes for a dynamic block: length-limited code lengths by package-merge, canonical
//! codes, and the run-length coded block header.

use super::parse::Freqs;
use super::tables::*;

/// Optimal code lengths of at most `max_bits` for `freqs` by package-merge (the "coin
/// collector" formulation). Needs at least two used symbols and at most `2^max_bits`, which
/// every caller guarantees; the resulting code is complete.
pub(super) fn limited_lengths(freqs: &[u64], max_bits: usize, lens: &mut [u8]) {
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
pub(super) fn canonical_codes(lens: &[u8], codes: &mut [u16]) {
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

pub(super) fn codelen_extra(sym: u8) -> u32 {
    match sym {
        16 => 2,
        17 => 3,
        18 => 7,
        _ => 0,
    }
}

/// A dynamic block's codes and its header, ready to write.
pub(super) struct Dynamic {
    pub(super) lit: [u8; LITLEN],
    pub(super) dist: [u8; DIST],
    pub(super) hlit: usize,
    pub(super) hdist: usize,
    pub(super) cl: [u8; CODELEN],
    pub(super) hclen: usize,
    pub(super) rle: Vec<(u8, u8)>,
    pub(super) header_bits: u64,
}

impl Dynamic {
    pub(super) fn new(freqs: &Freqs) -> Self {
        let mut lit = [0u8; LITLEN];
        complete_lengths(&freqs.lit, MAX_BITS, &mut lit);
        // Without any match the distance tree gets two dummy one-bit codes, which is what the
        // RFC's "one distance code of zero bits" would save, but every decoder accepts it.
        let mut dist = [0u8; DIST];
        complete_lengths(&freqs.dist, MAX_BITS, &mut dist);
        Dynamic::from_lens(lit, dist)
    }

    /// The header of complete codes of these lengths.
    pub(super) fn from_lens(lit: [u8; LITLEN], dist: [u8; DIST]) -> Self {
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
