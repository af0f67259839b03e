//! Sparse ZLIB (RFC 1950) and GZIP (RFC 1952) writing, and bounded inflation of untrusted input.
//!
//! This module owns two things:
//!
//! * **Writing** ([`zlib_sparse`], [`gzip_sparse`], and both at once for arrays whose bytes
//!   differ only by a relabelling, [`zlib_and_relabelled_gzip`]): a status list's packed byte array is almost
//!   all zeros, so it is given only by its non-zero bytes and compressed straight from its zero
//!   runs. The dense array is never materialised: the DEFLATE work is O(non-zero bytes + zero
//!   runs), plus the output itself (a zero run costs one 258-byte match per 258 bytes, which any
//!   DEFLATE stream must spend).
//! * **Writing text** ([`gzip_literals`]): the precompressed `Content-Encoding: gzip` copies of
//!   the published text bodies. Those are base64url of compressed or signed bytes, where LZ77
//!   finds almost nothing to copy: one Huffman-coded block of literals is as small as zlib's
//!   default level (smaller, measured on tokens) at a fraction of its cost, which every
//!   re-encoding of every list paid (issue 16: a fifth of a cold start).
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
//!
//! Layout: `tables` holds RFC 1951's fixed tables; `parse` turns a sparse array into tokens and
//! counts them; `huffman` builds the codes; `emit` plans a block and writes the bits; `checksum`
//! computes Adler-32 and CRC-32 of sparse arrays; `inflate` reads untrusted input; this file is
//! the public writer API.

mod checksum;
mod emit;
mod huffman;
mod inflate;
mod parse;
mod tables;
#[cfg(test)]
mod tests;

use checksum::{adler32_sparse, crc32_sparse};
use emit::{Literals, Plan};
use parse::Sparse;

pub use inflate::{inflate_gzip, inflate_zlib, InflateError};

/// CMF 0x78 (deflate, 32 KiB window), FLG 0xda (FLEVEL 3 "maximum compression", no dictionary).
const ZLIB_HEADER: [u8; 2] = [0x78, 0xda];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// CM 8, FLG 0, MTIME 0 (reproducible output), XFL 2 (maximum compression), OS 255 (unknown).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];
/// [`GZIP_HEADER`] with XFL 4 (fastest algorithm), for [`gzip_literals`].
const GZIP_FAST_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

/// ZLIB stream of a `len`-byte array given by its non-zero bytes `(offset, byte)` in strictly
/// increasing offset order; every other byte is zero.
///
/// The contract is debug-asserted. In release builds, pairs that break it (zero byte, offset out
/// of range, offset not above the previous one) are skipped, so the output is always a valid
/// stream of the array the remaining pairs describe.
pub fn zlib_sparse(len: usize, nonzero: impl IntoIterator<Item = (usize, u8)>) -> Vec<u8> {
    let items = collect_nonzero(len, nonzero);
    let arr = Sparse { len, items: &items };
    zlib_from_plan(&arr, &Plan::new(&arr))
}

/// GZIP member (MTIME 0) of the same sparse array; same contract as [`zlib_sparse`].
pub fn gzip_sparse(len: usize, nonzero: impl IntoIterator<Item = (usize, u8)>) -> Vec<u8> {
    let items = collect_nonzero(len, nonzero);
    let arr = Sparse { len, items: &items };
    gzip_from_plan(&arr, &Plan::new(&arr))
}

fn zlib_from_plan(arr: &Sparse<'_>, plan: &Plan) -> Vec<u8> {
    let size = ZLIB_HEADER.len() + plan.byte_len() + 4;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&ZLIB_HEADER);
    plan.write(arr, &mut out);
    out.extend_from_slice(&adler32_sparse(arr.len, arr.items).to_be_bytes());
    debug_assert_eq!(out.len(), size, "the plan sized the output exactly");
    out
}

fn gzip_from_plan(arr: &Sparse<'_>, plan: &Plan) -> Vec<u8> {
    let size = GZIP_HEADER.len() + plan.byte_len() + 8;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&GZIP_HEADER);
    plan.write(arr, &mut out);
    gzip_trailer(arr, &mut out);
    debug_assert_eq!(out.len(), size, "the plan sized the output exactly");
    out
}

/// CRC-32 and ISIZE.
fn gzip_trailer(arr: &Sparse<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&crc32_sparse(arr.len, arr.items).to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1), hence the deliberate truncation.
    out.extend_from_slice(&(arr.len as u32).to_le_bytes());
}

/// [`zlib_sparse`] of an array and [`gzip_sparse`] of the same array with every non-zero byte
/// `b` replaced by `map[b]`, from one parse: how the IETF form and the W3C `message` view of a
/// list relate (the same entries, packed in opposite bit orders: each byte's entries in
/// reverse). The parse, the search for far matches included, is most of the work, and it does
/// not depend on which non-zero value a byte holds, only on which bytes are equal; so the
/// second stream costs its writing alone. `map` must be a permutation of the byte values that
/// keeps zero; when it is not (or for arrays so small that a fixed-code block wins), the second
/// stream is compressed on its own. Same input contract as [`zlib_sparse`].
pub fn zlib_and_relabelled_gzip(
    len: usize,
    nonzero: impl IntoIterator<Item = (usize, u8)>,
    map: &[u8; 256],
) -> (Vec<u8>, Vec<u8>) {
    let items = collect_nonzero(len, nonzero);
    let arr = Sparse { len, items: &items };
    let plan = Plan::new(&arr);
    let zlib = zlib_from_plan(&arr, &plan);
    let mapped: Vec<(usize, u8)> = items
        .iter()
        .map(|&(o, b)| (o, map[b as usize]))
        .filter(|&(_, b)| b != 0)
        .collect();
    let mapped_arr = Sparse {
        len,
        items: &mapped,
    };
    let relabelled = is_permutation_keeping_zero(map)
        .then(|| plan.relabelled(map))
        .flatten();
    let gzip = match relabelled {
        Some(r) => {
            let size = GZIP_HEADER.len() + r.byte_len() + 8;
            let mut out = Vec::with_capacity(size);
            out.extend_from_slice(&GZIP_HEADER);
            r.write(&mapped_arr, &mut out);
            gzip_trailer(&mapped_arr, &mut out);
            debug_assert_eq!(out.len(), size, "the plan sized the output exactly");
            out
        }
        None => gzip_from_plan(&mapped_arr, &Plan::new(&mapped_arr)),
    };
    (zlib, gzip)
}

fn is_permutation_keeping_zero(map: &[u8; 256]) -> bool {
    let mut seen = [false; 256];
    for &m in map {
        seen[m as usize] = true;
    }
    map[0] == 0 && seen.iter().all(|&s| s)
}

/// GZIP member (MTIME 0) of dense `bytes`, coded as literals only under the Huffman code of
/// their own byte counts: one dynamic block, no LZ77 search. Meant for text whose repeats are
/// rare (base64url of compressed or signed data); anything else is still a valid, if larger,
/// stream.
pub fn gzip_literals(bytes: &[u8]) -> Vec<u8> {
    let block = Literals::new(bytes);
    let size = GZIP_FAST_HEADER.len() + block.byte_len() + 8;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&GZIP_FAST_HEADER);
    block.write(bytes, &mut out);
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1), hence the deliberate truncation.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    debug_assert_eq!(out.len(), size, "the block was sized exactly");
    out
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
