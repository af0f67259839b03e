//! Index allocation: unpredictable, uniform over the whole list, never the same index twice.
//!
//! An index that a verifier sees reveals nothing about when the credential was issued or who
//! holds its neighbours (herd privacy) only if every free index is equally likely. Indices come
//! from a CSPRNG seeded by the operating system (rand's `ThreadRng`: ChaCha12 per thread,
//! reseeded from the OS every 64 kB of output): a system call per index, as when they came
//! from the OS's generator directly, was 5 % of a bulk import's CPU (issue 16). The allocated
//! set is the store's (every index ever handed out, revoked or not).

use rand::Rng;
use roaring::RoaringBitmap;

/// Picks a uniformly random index in `0..size` that is in neither `taken` nor `also`;
/// `None` if there is none. The two sets are disjoint (`also` holds this batch's picks) and
/// hold indices below `size` only.
pub fn pick_free(size: u32, taken: &RoaringBitmap, also: &RoaringBitmap) -> Option<u32> {
    let used = taken.len() + also.len();
    let free = u64::from(size).checked_sub(used).filter(|&f| f > 0)?;
    let mut rng = rand::thread_rng();
    // Rejection sampling is uniform and, below ~95 % fill, needs a handful of draws.
    for _ in 0..64 {
        let i = rng.gen_range(0..size);
        if !taken.contains(i) && !also.contains(i) {
            return Some(i);
        }
    }
    // Nearly full: choose the k-th free index directly (still uniform).
    let k = rng.gen_range(0..free);
    kth_free(size, taken, also, k)
}

/// The `k`-th (0-based) index in `0..size` in neither set, by binary search on the number of
/// free indices below a bound.
fn kth_free(size: u32, taken: &RoaringBitmap, also: &RoaringBitmap, k: u64) -> Option<u32> {
    let union = taken | also;
    let free_below = |x: u32| u64::from(x) - if x == 0 { 0 } else { union.rank(x - 1) };
    // Smallest x with free_below(x + 1) > k.
    let (mut lo, mut hi) = (0u32, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if free_below(mid + 1) > k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (lo < size && !union.contains(lo)).then_some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_returns_a_taken_index_and_fills_completely() {
        let size = 300;
        let mut taken = RoaringBitmap::new();
        taken.insert_range(0..100);
        let mut also = RoaringBitmap::new();
        while let Some(i) = pick_free(size, &taken, &also) {
            assert!(i < size && !taken.contains(i));
            assert!(also.insert(i), "{i} handed out twice");
        }
        assert_eq!(also.len(), 200);
    }

    #[test]
    fn kth_free_counts_gaps() {
        let mut taken = RoaringBitmap::new();
        taken.insert_range(0..5);
        taken.insert(7);
        let also = RoaringBitmap::new();
        let all: Vec<u32> = (0..5)
            .filter_map(|k| kth_free(10, &taken, &also, k))
            .collect();
        assert_eq!(all, vec![5, 6, 8, 9]);
        assert_eq!(kth_free(10, &taken, &also, 4), None);
    }

    #[test]
    fn nearly_full_lists_use_the_exact_path() {
        let mut taken = RoaringBitmap::new();
        taken.insert_range(0..100_000);
        taken.remove(77_777);
        assert_eq!(
            pick_free(100_000, &taken, &RoaringBitmap::new()),
            Some(77_777)
        );
    }
}
