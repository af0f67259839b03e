//! The status model: a status list as a set of roaring bitmaps, independent of any wire format.
//!
//! A [`StatusList`] holds `bits` bit-planes; plane `k` contains every index whose status value
//! has bit `k` set. Memory and work therefore scale with the number of non-VALID entries, not
//! with the list size, and an update touches at most `bits` bitmaps. Every encoding in the
//! submodules is derived from the same [`StatusList`]; none of them keeps state of its own.
//!
//! This module never does I/O and never panics on caller input: every fallible operation returns
//! a [`StatusError`].

pub mod deflate;
pub mod ietf;
pub mod packing;
pub mod sl2021;
pub mod sparse;
pub mod w3c;

use roaring::RoaringBitmap;
use std::fmt;

/// The largest list statusd creates or decodes, in entries. It bounds decompression of
/// untrusted input (a 2^26-entry, 8-bit list inflates to 64 MiB) as well as the lists we build.
pub const MAX_ENTRIES: u32 = 1 << 26;

/// The default list size: 2^20 entries, as in the IETF test vectors.
pub const DEFAULT_ENTRIES: u32 = 1 << 20;

/// Entry width of an IETF Token Status List (`bits`), or `statusSize` of a W3C list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Bits {
    One = 1,
    /// Two bits: VALID, INVALID, SUSPENDED and one application-specific value.
    #[default]
    Two = 2,
    Four = 4,
    Eight = 8,
}

impl Bits {
    /// Accepts exactly the widths the IETF draft allows: 1, 2, 4 and 8.
    pub fn new(bits: u64) -> Result<Self, StatusError> {
        match bits {
            1 => Ok(Bits::One),
            2 => Ok(Bits::Two),
            4 => Ok(Bits::Four),
            8 => Ok(Bits::Eight),
            other => Err(StatusError::InvalidBits(other)),
        }
    }

    /// The width in bits.
    pub const fn get(self) -> u8 {
        self as u8
    }

    /// The largest status value an entry of this width can hold.
    pub const fn max_value(self) -> u8 {
        ((1u16 << self as u16) - 1) as u8
    }

    /// Entries per byte of the packed array.
    pub const fn per_byte(self) -> u32 {
        8 / self as u32
    }
}

impl fmt::Display for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// A status value from the IETF "OAuth Status Types" registry (draft §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Status(pub u8);

impl Status {
    pub const VALID: Status = Status(0x00);
    pub const INVALID: Status = Status(0x01);
    pub const SUSPENDED: Status = Status(0x02);

    /// The registered name, as lookups and `statusd inspect` print it.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0x00 => "VALID",
            0x01 => "INVALID",
            0x02 => "SUSPENDED",
            0x03 | 0x0C..=0x0F => "APPLICATION_SPECIFIC",
            _ => "RESERVED",
        }
    }

    /// Parses a registered name (case-insensitive, as the registry template says).
    pub fn from_name(name: &str) -> Option<Status> {
        [Status::VALID, Status::INVALID, Status::SUSPENDED]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong building or reading a status list.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum StatusError {
    #[error("bits must be 1, 2, 4 or 8, got {0}")]
    InvalidBits(u64),
    #[error("list size must be positive, fill whole bytes (size x bits a multiple of 8) and be at most {max}, got {0}", max = MAX_ENTRIES)]
    InvalidSize(u64),
    #[error("index {idx} is out of range for a list of {size} entries")]
    IndexOutOfRange { idx: u64, size: u32 },
    #[error("status value {value:#04x} does not fit in {bits} bit(s)")]
    ValueTooWide { value: u8, bits: u8 },
}

/// One status list: its width, its size and the value of every entry.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusList {
    bits: Bits,
    size: u32,
    /// `planes[k]` holds every index whose value has bit `k` set; `planes.len() == bits`.
    planes: Vec<RoaringBitmap>,
    /// Which blocks of [`BLOCK`] entries hold a non-VALID entry, derived from `planes` by
    /// every method that changes them.
    blocks: Blocks,
}

/// Entries per bit of [`Blocks`].
const BLOCK: u32 = 16;

/// One bit per [`BLOCK`] entries of a list, set exactly when one of them is non-VALID: a
/// lookup in a block whose bit is clear answers VALID from one load, without the binary
/// searches of every plane's containers (issue #18: the status read was the largest piece of
/// statusd's own work on a lookup, about 190 ns under load). Most credentials are VALID, and
/// at 1 % non-VALID entries about 85 % of the blocks are clear. A 2^20-entry list's blocks take
/// 8 KiB.
#[derive(Clone, PartialEq)]
struct Blocks(Box<[u64]>);

impl Blocks {
    fn new(size: u32) -> Self {
        Blocks(vec![0; (size.div_ceil(BLOCK) as usize).div_ceil(64)].into_boxed_slice())
    }

    /// Whether the block of `idx` may hold a non-VALID entry (false past the list's end).
    #[inline]
    fn any(&self, idx: u32) -> bool {
        let b = (idx / BLOCK) as usize;
        self.0.get(b / 64).is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    fn put(&mut self, idx: u32, nonzero: bool) {
        let b = (idx / BLOCK) as usize;
        let bit = 1u64 << (b % 64);
        if nonzero {
            self.0[b / 64] |= bit;
        } else {
            self.0[b / 64] &= !bit;
        }
    }

    /// Recomputed from `planes`: one step per block holding a non-VALID entry, not per entry.
    fn rebuild(&mut self, planes: &[RoaringBitmap]) {
        self.0.fill(0);
        for plane in planes {
            let mut members = plane.iter();
            while let Some(idx) = members.next() {
                self.put(idx, true);
                match (idx / BLOCK + 1).checked_mul(BLOCK) {
                    Some(next) => members.advance_to(next),
                    None => break,
                }
            }
        }
    }
}

impl fmt::Debug for Blocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        write!(f, "Blocks({set} of {} non-VALID)", self.0.len() * 64)
    }
}

impl StatusList {
    /// An all-VALID list. `size` must be positive, at most [`MAX_ENTRIES`], and fill whole
    /// bytes (`size x bits` a multiple of 8, as the IETF draft recommends), so that every
    /// decoder sees exactly `size` entries.
    pub fn new(bits: Bits, size: u32) -> Result<Self, StatusError> {
        if size == 0 || !size.is_multiple_of(bits.per_byte()) || size > MAX_ENTRIES {
            return Err(StatusError::InvalidSize(size.into()));
        }
        Ok(StatusList {
            bits,
            size,
            planes: vec![RoaringBitmap::new(); bits.get() as usize],
            blocks: Blocks::new(size),
        })
    }

    pub fn bits(&self) -> Bits {
        self.bits
    }

    /// Number of entries.
    pub fn size(&self) -> u32 {
        self.size
    }

    fn check_index(&self, idx: u64) -> Result<u32, StatusError> {
        if idx < u64::from(self.size) {
            Ok(idx as u32)
        } else {
            Err(StatusError::IndexOutOfRange {
                idx,
                size: self.size,
            })
        }
    }

    /// The status at `idx`.
    pub fn get(&self, idx: u64) -> Result<Status, StatusError> {
        let idx = self.check_index(idx)?;
        Ok(self.get_unchecked(idx))
    }

    /// The status at an index already known to be in range (out of range reads as VALID).
    #[inline]
    pub fn get_unchecked(&self, idx: u32) -> Status {
        if !self.blocks.any(idx) {
            return Status::VALID;
        }
        self.read_planes(idx)
    }

    /// The status at `idx` read from the planes alone.
    fn read_planes(&self, idx: u32) -> Status {
        let mut v = 0u8;
        for (k, plane) in self.planes.iter().enumerate() {
            if plane.contains(idx) {
                v |= 1 << k;
            }
        }
        Status(v)
    }

    /// Sets the status at `idx` and returns the previous one.
    pub fn set(&mut self, idx: u64, status: Status) -> Result<Status, StatusError> {
        let idx = self.check_index(idx)?;
        if status.0 > self.bits.max_value() {
            return Err(StatusError::ValueTooWide {
                value: status.0,
                bits: self.bits.get(),
            });
        }
        let old = self.get_unchecked(idx);
        for (k, plane) in self.planes.iter_mut().enumerate() {
            if status.0 & (1 << k) != 0 {
                plane.insert(idx);
            } else {
                plane.remove(idx);
            }
        }
        let nonzero = status != Status::VALID || {
            let start = idx - idx % BLOCK;
            let end = start.saturating_add(BLOCK - 1);
            self.planes
                .iter()
                .any(|p| p.range_cardinality(start..=end) > 0)
        };
        self.blocks.put(idx, nonzero);
        Ok(old)
    }

    /// Recomputes [`Self::blocks`] after the planes were changed wholesale.
    fn planes_changed(&mut self) {
        self.blocks.rebuild(&self.planes);
    }

    /// Every non-VALID entry as `(index, status)`, in increasing index order.
    pub fn iter_nonzero(&self) -> NonZero<'_> {
        NonZero {
            heads: self
                .planes
                .iter()
                .map(|p| {
                    let mut it = p.iter();
                    let head = it.next();
                    (it, head)
                })
                .collect(),
        }
    }

    /// `n` non-VALID entries drawn at random (with replacement; none if every entry is VALID),
    /// each in a few steps of the planes' rank index rather than a walk over every non-VALID
    /// entry. An entry with k bits set is k times as likely as one with one bit set.
    pub fn sample_nonzero(&self, rng: &mut impl rand::Rng, n: usize) -> Vec<u32> {
        let lens: Vec<u64> = self.planes.iter().map(RoaringBitmap::len).collect();
        let total: u64 = lens.iter().sum();
        if total == 0 {
            return Vec::new();
        }
        (0..n)
            .filter_map(|_| {
                let mut rank = rng.gen_range(0..total);
                for (plane, &len) in self.planes.iter().zip(&lens) {
                    if rank < len {
                        return plane.select(u32::try_from(rank).ok()?);
                    }
                    rank -= len;
                }
                None
            })
            .collect()
    }

    /// Number of non-VALID entries.
    pub fn count_nonzero(&self) -> u64 {
        match self.planes.as_slice() {
            [one] => one.len(),
            // The common 2-bit case without building the union.
            [a, b] => a.union_len(b),
            planes => planes
                .iter()
                .fold(RoaringBitmap::new(), |acc, p| acc | p)
                .len(),
        }
    }

    /// The indices whose status is exactly `status`: the source of a W3C 1-bit view.
    pub fn indices_with(&self, status: Status) -> RoaringBitmap {
        if status == Status::VALID || status.0 > self.bits.max_value() {
            return RoaringBitmap::new();
        }
        let mut set: Option<RoaringBitmap> = None;
        let mut clear = RoaringBitmap::new();
        for (k, plane) in self.planes.iter().enumerate() {
            if status.0 & (1 << k) != 0 {
                set = Some(match set {
                    None => plane.clone(),
                    Some(s) => s & plane,
                });
            } else {
                clear |= plane;
            }
        }
        set.unwrap_or_default() - clear
    }

    /// Builds a list from `(index, status)` pairs; later pairs win.
    pub fn from_entries(
        bits: Bits,
        size: u32,
        entries: impl IntoIterator<Item = (u64, Status)>,
    ) -> Result<Self, StatusError> {
        let mut list = StatusList::new(bits, size)?;
        for (idx, status) in entries {
            list.set(idx, status)?;
        }
        Ok(list)
    }

    /// Builds a list from entries in increasing index order (the order every decoder sees
    /// them in), buffering each bit-plane and adding the buffer to its bitmap in one sorted
    /// append per [`PLANE_CHUNK`] entries. Appending index by index with `try_push` would rescan
    /// a dense container on every push; buffering a whole plane would cost 4 bytes per entry
    /// (2 GiB for a full 2^26-entry, 8-bit list that a 64 KiB ZLIB stream describes).
    pub(crate) fn from_sorted_nonzero(
        bits: Bits,
        size: u32,
        entries: impl IntoIterator<Item = (u32, u8)>,
    ) -> Result<Self, StatusError> {
        let mut list = StatusList::new(bits, size)?;
        let mut planes: Vec<Vec<u32>> = vec![Vec::new(); bits.get() as usize];
        for (idx, value) in entries {
            if idx >= size {
                return Err(StatusError::IndexOutOfRange {
                    idx: idx.into(),
                    size,
                });
            }
            if value > bits.max_value() {
                return Err(StatusError::ValueTooWide {
                    value,
                    bits: bits.get(),
                });
            }
            for (k, (plane, bitmap)) in planes.iter_mut().zip(&mut list.planes).enumerate() {
                if value & (1 << k) != 0 {
                    plane.push(idx);
                    if plane.len() == PLANE_CHUNK {
                        append_plane(bitmap, plane);
                    }
                }
            }
        }
        for (plane, bitmap) in planes.iter_mut().zip(&mut list.planes) {
            append_plane(bitmap, plane);
        }
        list.planes_changed();
        Ok(list)
    }

    /// The indices whose status differs between `self` and `other` (one XOR per bit-plane:
    /// O(containers), not O(entries)); `None` when width or size differ. Signed deltas
    /// (`crate::delta`) are built from these sets.
    pub fn changed_indices(&self, other: &StatusList) -> Option<RoaringBitmap> {
        if self.bits != other.bits || self.size != other.size {
            return None;
        }
        Some(
            self.planes
                .iter()
                .zip(&other.planes)
                .fold(RoaringBitmap::new(), |acc, (a, b)| acc | (a ^ b)),
        )
    }

    /// Shrinks the bitmaps' containers (run-length containers where they are smaller).
    pub fn optimize(&mut self) {
        for plane in &mut self.planes {
            plane.optimize();
        }
    }
}

/// Entries of one bit-plane that [`StatusList::from_sorted_nonzero`] buffers before adding them
/// to the plane's bitmap (256 KiB per plane).
const PLANE_CHUNK: usize = 1 << 16;

/// Moves the buffered indices into `bitmap`: one sorted append when they are strictly increasing
/// and above what it holds (every decoder's case); otherwise one by one, since out-of-order or
/// repeated input is tolerated, not trusted.
fn append_plane(bitmap: &mut RoaringBitmap, buf: &mut Vec<u32>) {
    let above = match (buf.first(), bitmap.max()) {
        (Some(&first), Some(max)) => first > max,
        _ => true,
    };
    if above && buf.is_sorted_by(|a, b| a < b) {
        bitmap
            .append(buf.drain(..))
            .expect("indices are strictly increasing and above the bitmap's");
    } else {
        bitmap.extend(buf.drain(..));
    }
}

/// Iterator over the non-VALID entries of a [`StatusList`], merging its bit-planes in order.
pub struct NonZero<'a> {
    heads: Vec<(roaring::bitmap::Iter<'a>, Option<u32>)>,
}

impl Iterator for NonZero<'_> {
    type Item = (u32, Status);

    fn next(&mut self) -> Option<Self::Item> {
        let idx = self.heads.iter().filter_map(|(_, h)| *h).min()?;
        let mut value = 0u8;
        for (k, (it, head)) in self.heads.iter_mut().enumerate() {
            if *head == Some(idx) {
                value |= 1 << k;
                *head = it.next();
            }
        }
        Some((idx, Status(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_accepts_only_registered_widths() {
        for b in [1, 2, 4, 8] {
            assert_eq!(Bits::new(b).unwrap().get() as u64, b);
        }
        for b in [0, 3, 5, 16, 255] {
            assert_eq!(Bits::new(b), Err(StatusError::InvalidBits(b)));
        }
        assert_eq!(Bits::Two.max_value(), 3);
        assert_eq!(Bits::Eight.max_value(), 255);
    }

    #[test]
    fn set_get_and_reject_bad_input() {
        let mut l = StatusList::new(Bits::Two, 16).unwrap();
        assert_eq!(l.set(3, Status::SUSPENDED), Ok(Status::VALID));
        assert_eq!(l.set(3, Status::INVALID), Ok(Status::SUSPENDED));
        assert_eq!(l.get(3), Ok(Status::INVALID));
        assert_eq!(l.get(4), Ok(Status::VALID));
        assert_eq!(
            l.get(16),
            Err(StatusError::IndexOutOfRange { idx: 16, size: 16 })
        );
        assert_eq!(
            l.set(0, Status(4)),
            Err(StatusError::ValueTooWide { value: 4, bits: 2 })
        );
        assert!(StatusList::new(Bits::One, 12).is_err());
        assert!(StatusList::new(Bits::Two, 12).is_ok());
        assert!(StatusList::new(Bits::Eight, 1).is_ok());
        assert!(StatusList::new(Bits::Four, 3).is_err());
        assert!(StatusList::new(Bits::One, 0).is_err());
        assert!(StatusList::new(Bits::One, MAX_ENTRIES + 8).is_err());
    }

    #[test]
    fn nonzero_iteration_merges_planes_in_order() {
        let l = StatusList::from_entries(
            Bits::Four,
            64,
            [(9, Status(0b1010)), (2, Status(1)), (40, Status(0b1000))],
        )
        .unwrap();
        let got: Vec<_> = l.iter_nonzero().collect();
        assert_eq!(
            got,
            vec![(2, Status(1)), (9, Status(0b1010)), (40, Status(0b1000))]
        );
        assert_eq!(l.count_nonzero(), 3);
        assert_eq!(
            l.indices_with(Status(0b1000)).iter().collect::<Vec<_>>(),
            vec![40]
        );
        assert_eq!(
            l.indices_with(Status(1)).iter().collect::<Vec<_>>(),
            vec![2]
        );
    }

    /// Found by fuzzing (`ietf_list`): a 64 KiB ZLIB stream of a full 2^26-entry, 8-bit list
    /// made the unpacker buffer 2 GiB of indices. Buffers are now bounded per plane; this
    /// checks that chunked appends keep the entries exact, in order and out of order.
    /// Fixed in 0a8480d (two decoder amplifications found with the fuzz targets).
    #[test]
    fn regression_unpacking_buffered_every_index_of_a_plane() {
        let n = PLANE_CHUNK as u32 * 2 + 5;
        let sorted =
            StatusList::from_sorted_nonzero(Bits::Two, n + 3, (0..n).map(|i| (i, 3))).unwrap();
        assert_eq!(sorted.count_nonzero(), u64::from(n));
        assert_eq!(sorted.get(u64::from(n - 1)), Ok(Status(3)));
        assert_eq!(sorted.get(u64::from(n)), Ok(Status::VALID));
        let shuffled = (0..n).rev().map(|i| (i, 3)).chain([(7, 3)]);
        assert_eq!(
            StatusList::from_sorted_nonzero(Bits::Two, n + 3, shuffled).unwrap(),
            sorted
        );
    }

    #[test]
    fn setting_valid_clears_every_plane() {
        let mut l = StatusList::new(Bits::Eight, 8).unwrap();
        l.set(5, Status(0xff)).unwrap();
        l.set(5, Status::VALID).unwrap();
        assert_eq!(l.count_nonzero(), 0);
        assert_eq!(l, StatusList::new(Bits::Eight, 8).unwrap());
    }

    #[test]
    fn samples_of_non_valid_entries_are_non_valid_and_reach_every_plane() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut l = StatusList::new(Bits::Two, 1 << 16).unwrap();
        assert!(
            l.sample_nonzero(&mut rng, 8).is_empty(),
            "all VALID: nothing to draw"
        );
        for (i, v) in [(3u64, 1u8), (700, 2), (65_535, 3), (9_000, 1)] {
            l.set(i, Status(v)).unwrap();
        }
        let drawn = l.sample_nonzero(&mut rng, 400);
        assert_eq!(drawn.len(), 400);
        assert!(drawn.iter().all(|&i| l.get_unchecked(i) != Status::VALID));
        for i in [3, 700, 65_535, 9_000] {
            assert!(drawn.contains(&i), "{i} never drawn");
        }
    }

    /// The blocks as their definition reads: a block's bit is set exactly when one of its
    /// entries is non-VALID by the planes.
    fn assert_blocks_exact(l: &StatusList) {
        for i in 0..l.size() {
            assert_eq!(l.get_unchecked(i), l.read_planes(i), "entry {i}");
        }
        for block in 0..l.size().div_ceil(BLOCK) {
            let start = block * BLOCK;
            let end = (start + BLOCK).min(l.size());
            let any = (start..end).any(|i| l.read_planes(i) != Status::VALID);
            assert_eq!(l.blocks.any(start), any, "block {block} of {l:?}");
        }
        assert_eq!(
            l.get_unchecked(l.size() + BLOCK),
            Status::VALID,
            "past the end"
        );
    }

    #[test]
    fn blocks_follow_every_change_and_every_constructor() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(18);
        for bits in [Bits::One, Bits::Two, Bits::Four, Bits::Eight] {
            for size in [8, 24, 64, 200, 1 << 10] {
                let size = size - size % bits.per_byte();
                if size == 0 {
                    continue;
                }
                let mut l = StatusList::new(bits, size).unwrap();
                assert_blocks_exact(&l);
                let mut entries = Vec::new();
                for _ in 0..300 {
                    let idx = rng.gen_range(0..size);
                    // Half the writes set VALID again, so blocks empty out as well as fill.
                    let v = if rng.gen_bool(0.5) {
                        0
                    } else {
                        rng.gen_range(1..=bits.max_value())
                    };
                    l.set(idx.into(), Status(v)).unwrap();
                    entries.push((u64::from(idx), Status(v)));
                    assert_blocks_exact(&l);
                }
                let rebuilt = StatusList::from_entries(bits, size, entries).unwrap();
                assert_eq!(rebuilt, l, "from_entries");
                let sorted: Vec<(u32, u8)> = l.iter_nonzero().map(|(i, s)| (i, s.0)).collect();
                let decoded = StatusList::from_sorted_nonzero(bits, size, sorted).unwrap();
                assert_blocks_exact(&decoded);
                assert_eq!(decoded, l, "from_sorted_nonzero");
                let sparse = sparse::decode(&sparse::encode(&l)).unwrap();
                assert_blocks_exact(&sparse);
                assert_eq!(sparse, l, "sparse round trip");
            }
        }
    }

    #[test]
    fn a_revoked_entry_is_never_read_as_valid_whatever_its_neighbours_do() {
        let mut l = StatusList::new(Bits::Two, 1 << 10).unwrap();
        l.set(17, Status::INVALID).unwrap();
        // Every neighbour in its block set and cleared again.
        for i in 16..32 {
            if i != 17 {
                l.set(i, Status::SUSPENDED).unwrap();
                l.set(i, Status::VALID).unwrap();
            }
        }
        assert_eq!(l.get(17), Ok(Status::INVALID));
        l.set(17, Status::VALID).unwrap();
        assert_eq!(l.get(17), Ok(Status::VALID));
        assert!(
            !l.blocks.any(17),
            "the block empties with its last non-VALID entry"
        );
    }
}
