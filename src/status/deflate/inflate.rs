//! Bounded inflation of untrusted ZLIB and GZIP input with system zlib (through `flate2`):
//! never more than `limit + 1` bytes of output, whatever the input claims, and an error that says
//! what is wrong.

use super::checksum::adler32;
use super::{GZIP_HEADER, GZIP_MAGIC, ZLIB_HEADER};
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
pub(super) fn gzip_header_len(data: &[u8]) -> Result<usize, InflateError> {
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
