//! ZLIB (RFC 1950) and GZIP (RFC 1952) for sparse byte arrays, and bounded inflation.
//! (Skeleton: the helper implementing this module replaces this text.)

/// Errors from [`inflate_zlib`] and [`inflate_gzip`].
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum InflateError {
    #[error("expected ZLIB (RFC 1950) data but found GZIP (RFC 1952)")]
    GzipNotZlib,
    #[error("expected GZIP (RFC 1952) data but found ZLIB (RFC 1950)")]
    ZlibNotGzip,
    #[error("not {expected} data: bad header")]
    BadHeader { expected: &'static str },
    #[error("compressed data is truncated")]
    Truncated,
    #[error("compressed data is corrupt: {0}")]
    Corrupt(String),
    #[error("decompressed data exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0} bytes of trailing data after the compressed stream")]
    TrailingData(usize),
}

/// ZLIB stream of a `len`-byte array given by its non-zero bytes `(offset, byte)` in strictly
/// increasing offset order; every other byte is zero.
pub fn zlib_sparse(_len: usize, _nonzero: impl IntoIterator<Item = (usize, u8)>) -> Vec<u8> {
    todo!()
}

/// GZIP member (MTIME 0) of the same sparse array.
pub fn gzip_sparse(_len: usize, _nonzero: impl IntoIterator<Item = (usize, u8)>) -> Vec<u8> {
    todo!()
}

/// Inflates a complete ZLIB stream, refusing output longer than `limit` bytes.
pub fn inflate_zlib(_data: &[u8], _limit: usize) -> Result<Vec<u8>, InflateError> {
    todo!()
}

/// Inflates one complete GZIP member, refusing output longer than `limit` bytes.
pub fn inflate_gzip(_data: &[u8], _limit: usize) -> Result<Vec<u8>, InflateError> {
    todo!()
}
