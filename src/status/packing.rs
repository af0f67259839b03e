//! Bit packing: how entries sit in the byte array each standard compresses.
//!
//! * IETF (draft §4.1): entry `i` occupies `bits` bits starting at the **least** significant
//!   end of byte `i / (8/bits)`: `shift = (i % per_byte) * bits`.
//! * W3C (REC §2.2): index 0 is the **left-most** (most significant) bit; an entry of
//!   `statusSize` s starts at bit `i * s`, most significant bit of the value first.
//!
//! The sparse forms yield only the non-zero bytes, in increasing offset order, straight from the
//! bitmaps, so encoding costs O(non-VALID entries); the dense forms exist for decoding and as the
//! naive reference the tests compare against.

use super::{Bits, StatusError, StatusList, MAX_ENTRIES};

/// Length in bytes of the packed array of `size` entries of width `bits`.
pub const fn packed_len(bits: Bits, size: u32) -> usize {
    (size as usize * bits as usize).div_ceil(8)
}

/// Bit order within a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// IETF: first entry in the least significant bits.
    LsbFirst,
    /// W3C: first entry in the most significant bits.
    MsbFirst,
}

impl Order {
    /// Shift of the entry at position `slot` (0-based within its byte) of width `bits`.
    #[inline]
    const fn shift(self, bits: Bits, slot: u32) -> u32 {
        match self {
            Order::LsbFirst => slot * bits as u32,
            Order::MsbFirst => 8 - bits as u32 - slot * bits as u32,
        }
    }
}

/// Groups `(index, value)` pairs (increasing index, non-zero values) into the non-zero bytes of
/// the packed array.
pub struct PackBytes<I: Iterator<Item = (u32, u8)>> {
    entries: std::iter::Peekable<I>,
    bits: Bits,
    order: Order,
}

impl<I: Iterator<Item = (u32, u8)>> Iterator for PackBytes<I> {
    type Item = (usize, u8);

    #[inline]
    fn next(&mut self) -> Option<(usize, u8)> {
        let per = self.bits.per_byte();
        let (idx, value) = self.entries.next()?;
        let offset = idx / per;
        let mut byte = value << self.order.shift(self.bits, idx % per);
        while let Some(&(next, v)) = self.entries.peek() {
            if next / per != offset {
                break;
            }
            byte |= v << self.order.shift(self.bits, next % per);
            self.entries.next();
        }
        Some((offset as usize, byte))
    }
}

/// Packs sorted `(index, value)` entries of width `bits` in the given bit order.
pub fn pack_sparse<I: Iterator<Item = (u32, u8)>>(
    bits: Bits,
    order: Order,
    entries: I,
) -> PackBytes<I> {
    PackBytes {
        entries: entries.peekable(),
        bits,
        order,
    }
}

/// The non-zero bytes of the IETF packed array of `list`.
pub fn ietf_nonzero_bytes(list: &StatusList) -> impl Iterator<Item = (usize, u8)> + '_ {
    pack_sparse(
        list.bits(),
        Order::LsbFirst,
        list.iter_nonzero().map(|(i, s)| (i, s.0)),
    )
}

/// `map[b]`: the W3C (MSB-first) byte holding the entries that the IETF (LSB-first) byte `b`
/// holds, slot for slot: each byte's entries in reverse order, each value's bits kept. A
/// permutation of the byte values that keeps zero (the identity for 8-bit entries), so the two
/// packed arrays of a list differ only by a relabelling of their bytes.
pub fn ietf_to_w3c_bytes(bits: Bits) -> [u8; 256] {
    let mask = bits.max_value();
    let mut map = [0u8; 256];
    for (b, m) in map.iter_mut().enumerate() {
        for slot in 0..bits.per_byte() {
            let v = (b as u8 >> Order::LsbFirst.shift(bits, slot)) & mask;
            *m |= v << Order::MsbFirst.shift(bits, slot);
        }
    }
    map
}

/// Unpacks a decompressed byte array into a list of `len * 8 / bits` entries.
pub fn unpack(bits: Bits, order: Order, bytes: &[u8]) -> Result<StatusList, StatusError> {
    let size = u32::try_from(bytes.len() as u64 * 8 / u64::from(bits.get()))
        .ok()
        .filter(|&s| s <= MAX_ENTRIES && !bytes.is_empty())
        .ok_or(StatusError::InvalidSize(
            bytes.len() as u64 * 8 / u64::from(bits.get()),
        ))?;
    let per = bits.per_byte();
    let mask = bits.max_value();
    let entries =
        bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b != 0)
            .flat_map(move |(offset, &b)| {
                (0..per).filter_map(move |slot| {
                    let v = (b >> order.shift(bits, slot)) & mask;
                    (v != 0).then_some((offset as u32 * per + slot, v))
                })
            });
    StatusList::from_sorted_nonzero(bits, size, entries)
}

/// Unpacks an IETF (LSB-first) array.
pub fn ietf_unpack(bits: Bits, bytes: &[u8]) -> Result<StatusList, StatusError> {
    unpack(bits, Order::LsbFirst, bytes)
}

/// Naive reference: the whole packed array, written entry by entry with the draft's formula.
pub fn pack_dense(list: &StatusList, order: Order) -> Vec<u8> {
    let bits = list.bits();
    let per = bits.per_byte();
    let mut out = vec![0u8; packed_len(bits, list.size())];
    for i in 0..list.size() {
        let v = list.get_unchecked(i).0;
        out[(i / per) as usize] |= v << order.shift(bits, i % per);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    /// draft §4.1 worked example: 16 one-bit entries pack to b9 a3.
    #[test]
    fn ietf_one_bit_example() {
        let v = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
        let l = StatusList::from_entries(
            Bits::One,
            16,
            v.iter().enumerate().map(|(i, &s)| (i as u64, Status(s))),
        )
        .unwrap();
        assert_eq!(pack_dense(&l, Order::LsbFirst), [0xb9, 0xa3]);
        assert_eq!(
            ietf_nonzero_bytes(&l).collect::<Vec<_>>(),
            vec![(0, 0xb9), (1, 0xa3)]
        );
        // The same entries in W3C order (derived in the shared spec, §1.2).
        assert_eq!(pack_dense(&l, Order::MsbFirst), [0x9d, 0xc5]);
        assert_eq!(ietf_unpack(Bits::One, &[0xb9, 0xa3]).unwrap(), l);
    }

    /// draft §4.1 worked example: 12 two-bit entries pack to c9 44 f9.
    #[test]
    fn ietf_two_bit_example() {
        let v = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        let mut l = StatusList::new(Bits::Two, 16).unwrap();
        for (i, &s) in v.iter().enumerate() {
            l.set(i as u64, Status(s)).unwrap();
        }
        assert_eq!(&pack_dense(&l, Order::LsbFirst)[..3], [0xc9, 0x44, 0xf9]);
        let back = ietf_unpack(Bits::Two, &[0xc9, 0x44, 0xf9]).unwrap();
        assert_eq!(back.size(), 12);
        for (i, &s) in v.iter().enumerate() {
            assert_eq!(back.get(i as u64).unwrap(), Status(s));
        }
    }

    /// W3C: index 94567 is byte 11820 mask 0x01; index 23452 is byte 2931 mask 0x08.
    #[test]
    fn w3c_msb_first_positions() {
        let l = StatusList::from_entries(
            Bits::One,
            131_072,
            [(94_567, Status(1)), (23_452, Status(1))],
        )
        .unwrap();
        let bytes: Vec<_> = pack_sparse(
            Bits::One,
            Order::MsbFirst,
            l.iter_nonzero().map(|(i, s)| (i, s.0)),
        )
        .collect();
        assert_eq!(bytes, vec![(2931, 0x08), (11820, 0x01)]);
    }

    #[test]
    fn w3c_multi_bit_entries_put_the_high_bit_first() {
        // statusSize 2: entry 0 holds 0b10 in bits 7..6, entry 3 holds 0b01 in bits 1..0.
        let bytes: Vec<_> = pack_sparse(
            Bits::Two,
            Order::MsbFirst,
            [(0, 0b10), (3, 0b01)].into_iter(),
        )
        .collect();
        assert_eq!(bytes, vec![(0, 0b1000_0001)]);
        let l = unpack(Bits::Two, Order::MsbFirst, &[0b1000_0001]).unwrap();
        assert_eq!(l.get(0).unwrap(), Status(2));
        assert_eq!(l.get(3).unwrap(), Status(1));
    }

    /// The byte map turns the IETF packed array of any list into its W3C packed array, and is
    /// a permutation keeping zero.
    #[test]
    fn ietf_bytes_map_onto_w3c_bytes() {
        for bits in [Bits::One, Bits::Two, Bits::Four, Bits::Eight] {
            let max = bits.max_value();
            let entries = (0..64u32).map(|i| (i, (i * 7 % u32::from(max) + 1) as u8));
            let list = StatusList::from_sorted_nonzero(bits, 64, entries).unwrap();
            let map = ietf_to_w3c_bytes(bits);
            let mapped: Vec<u8> = pack_dense(&list, Order::LsbFirst)
                .iter()
                .map(|&b| map[b as usize])
                .collect();
            assert_eq!(mapped, pack_dense(&list, Order::MsbFirst), "{bits:?}");
            let mut sorted = map.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..=255).collect::<Vec<u8>>(), "{bits:?}");
            assert_eq!(map[0], 0);
        }
        assert_eq!(ietf_to_w3c_bytes(Bits::Two)[0b00_00_10_01], 0b01_10_00_00);
    }

    #[test]
    fn unpack_rejects_empty_arrays() {
        assert!(ietf_unpack(Bits::One, &[]).is_err());
    }
}
