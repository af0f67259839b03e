//! Adler-32 and CRC-32 of sparse arrays without touching every zero byte, and Adler-32 of
//! dense data for checking inflated ZLIB streams.

const ADLER_MOD: u64 = 65521;

pub(super) fn adler32_sparse(len: usize, items: &[(usize, u8)]) -> u32 {
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
pub(super) fn adler32(data: &[u8]) -> u32 {
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

pub(super) fn crc32_sparse(len: usize, items: &[(usize, u8)]) -> u32 {
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
