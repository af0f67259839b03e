//! [`Lists`]: the published lists by id, kept in parts that snapshots share.
//!
//! A write to one list publishes a new snapshot that differs from the last in that list only.
//! A flat map would be copied whole for it (every id allocated again, every list's reference
//! count touched) and its sums (non-VALID entries, earliest `exp`) taken again over every
//! list: at 256 lists that was most of a replica's CPU per write (issue 16). Here the lists are
//! spread over [`PARTS`] maps behind `Arc`s: a copy shares every part, a change copies the one
//! part it touches, and each part's sums are computed once and shared with it. A lookup hashes
//! its id twice (the part, then the entry), a few nanoseconds with [`IdHasher`].
//!
//! This module must stay free of I/O and locks: the request path reads it.

use super::{Aging, IdHasher, ListSnapshot};
use std::collections::HashMap;
use std::hash::{BuildHasher as _, BuildHasherDefault};
use std::sync::{Arc, OnceLock};

/// Parts the lists are spread over: a change to one list copies about `len / PARTS` entries.
pub const PARTS: usize = 32;

type Map = HashMap<Box<str>, Arc<ListSnapshot>, BuildHasherDefault<IdHasher>>;

/// One part: its lists and, computed on first use, their sums.
#[derive(Clone, Debug, Default)]
struct Part {
    map: Map,
    summary: OnceLock<Summary>,
}

impl Part {
    fn summary(&self) -> Summary {
        *self.summary.get_or_init(|| {
            self.map.values().fold(Summary::default(), |s, l| {
                let a = &l.artefacts;
                Summary {
                    non_valid: s.non_valid + l.non_valid,
                    // A list never signed (new while signing is paused) has no `exp`.
                    earliest_exp: match (s.earliest_exp, a.exp) {
                        (e, 0) => e,
                        (None, exp) => Some(exp),
                        (Some(e), exp) => Some(e.min(exp)),
                    },
                    aged: s.aged || a.aging != Aging::Fresh,
                }
            })
        })
    }
}

/// Sums over the published lists, for metrics and the refresher's loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Non-VALID entries of every list.
    pub non_valid: u64,
    /// The earliest `exp` of any list's signed artefacts (`None`: no list is signed).
    pub earliest_exp: Option<u64>,
    /// Whether any list serves artefacts aged during a pause in signing.
    pub aged: bool,
}

/// The published lists by id: what every lookup and list request finds its list in.
///
/// Hashed with [`IdHasher`] rather than std's SipHash, which cost ~250 instructions of a
/// ~10,000-instruction lookup (issue #18's profile). SipHash's resistance to hash flooding buys
/// nothing here: the keys in the table are list ids the operator creates, never chosen by the
/// clients, and a request's id (which a client does choose) is only looked up, so colliding
/// ids in requests cannot grow a probe sequence.
///
/// Cloning shares every part; [`Lists::insert`] copies the part it changes, if shared.
#[derive(Clone)]
pub struct Lists {
    parts: [Arc<Part>; PARTS],
    len: usize,
}

impl Default for Lists {
    fn default() -> Self {
        // One empty part, shared: an empty map costs no allocation per part.
        static EMPTY: OnceLock<Arc<Part>> = OnceLock::new();
        let empty = EMPTY.get_or_init(Arc::default);
        Lists {
            parts: std::array::from_fn(|_| empty.clone()),
            len: 0,
        }
    }
}

impl std::fmt::Debug for Lists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The part list `id` lives in: bits the parts' own tables do not index by (they take the low
/// bits for the bucket and the top seven as the tag).
fn part_of(id: &str) -> usize {
    let hash = BuildHasherDefault::<IdHasher>::default().hash_one(id);
    (hash >> 32) as usize % PARTS
}

impl Lists {
    pub fn get(&self, id: &str) -> Option<&Arc<ListSnapshot>> {
        self.parts[part_of(id)].map.get(id)
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.parts[part_of(id)].map.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Publishes `ls` as list `id`, returning the list it replaces. Putting back the list that
    /// is there (the same `Arc`) copies nothing.
    pub fn insert(&mut self, id: Box<str>, ls: Arc<ListSnapshot>) -> Option<Arc<ListSnapshot>> {
        let part = &mut self.parts[part_of(&id)];
        if part.map.get(&*id).is_some_and(|old| Arc::ptr_eq(old, &ls)) {
            return Some(ls);
        }
        let part = Arc::make_mut(part);
        part.summary = OnceLock::new();
        let old = part.map.insert(id, ls);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes list `id`, returning it.
    pub fn remove(&mut self, id: &str) -> Option<Arc<ListSnapshot>> {
        let part = &mut self.parts[part_of(id)];
        if !part.map.contains_key(id) {
            return None;
        }
        let part = Arc::make_mut(part);
        part.summary = OnceLock::new();
        let old = part.map.remove(id);
        self.len -= 1;
        old
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Box<str>, &Arc<ListSnapshot>)> {
        self.parts.iter().flat_map(|p| p.map.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &Box<str>> {
        self.parts.iter().flat_map(|p| p.map.keys())
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<ListSnapshot>> {
        self.parts.iter().flat_map(|p| p.map.values())
    }

    /// Sums over every list; each part's are computed once and shared with it, so after a
    /// change to one list this costs that list's part.
    pub fn summary(&self) -> Summary {
        self.parts.iter().fold(Summary::default(), |s, p| {
            let p = p.summary();
            Summary {
                non_valid: s.non_valid + p.non_valid,
                earliest_exp: match (s.earliest_exp, p.earliest_exp) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                aged: s.aged || p.aged,
            }
        })
    }

    /// Whether `self` and `other` hold the same ids; costs the parts they do not share.
    pub fn same_ids(&self, other: &Lists) -> bool {
        self.len == other.len
            && self.parts.iter().zip(&other.parts).all(|(a, b)| {
                Arc::ptr_eq(a, b)
                    || (a.map.len() == b.map.len() && a.map.keys().all(|id| b.map.contains_key(id)))
            })
    }

    /// The lists of `self` that may differ from `other`'s: those of the parts they do not
    /// share (a superset of the lists that changed, found without looking at the others).
    pub fn not_shared_with<'a>(
        &'a self,
        other: &'a Lists,
    ) -> impl Iterator<Item = &'a Arc<ListSnapshot>> {
        self.parts
            .iter()
            .zip(&other.parts)
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .flat_map(|(a, _)| a.map.values())
    }
}

impl std::ops::Index<&str> for Lists {
    type Output = Arc<ListSnapshot>;

    /// The list `id`; panics if there is none (tests, and ids just read from the map).
    fn index(&self, id: &str) -> &Arc<ListSnapshot> {
        self.get(id).expect("no list with this id")
    }
}

impl Extend<(Box<str>, Arc<ListSnapshot>)> for Lists {
    fn extend<I: IntoIterator<Item = (Box<str>, Arc<ListSnapshot>)>>(&mut self, iter: I) {
        for (id, ls) in iter {
            self.insert(id, ls);
        }
    }
}

impl FromIterator<(Box<str>, Arc<ListSnapshot>)> for Lists {
    fn from_iter<I: IntoIterator<Item = (Box<str>, Arc<ListSnapshot>)>>(iter: I) -> Self {
        let mut lists = Lists::default();
        lists.extend(iter);
        lists
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::build;
    use crate::status::{Bits, Status, StatusList};
    use crate::store::ListMeta;
    use std::collections::{BTreeMap, BTreeSet};

    /// List `id` with `invalid` INVALID entries, its artefacts unsigned (no `exp`) unless
    /// `exp` is given.
    fn list(id: &str, invalid: u32, exp: Option<u64>) -> Arc<ListSnapshot> {
        let list = StatusList::from_entries(
            Bits::Two,
            1024,
            (0..u64::from(invalid)).map(|i| (i, Status::INVALID)),
        )
        .unwrap();
        let meta = ListMeta {
            id: id.into(),
            bits: 2,
            size: 1024,
            version: 1,
            ..Default::default()
        };
        let mut ls = build::unsigned(meta, list, "k");
        if let Some(exp) = exp {
            let mut a = (*ls.artefacts).clone();
            a.exp = exp;
            a.aging = Aging::Fresh;
            ls.artefacts = Arc::new(a);
        }
        Arc::new(ls)
    }

    #[test]
    fn behaves_as_a_map() {
        let mut lists = Lists::default();
        let mut model = BTreeMap::new();
        for n in 0..300u32 {
            let id = format!("list-{n}");
            let ls = list(&id, n % 7, None);
            assert!(lists.insert(id.as_str().into(), ls.clone()).is_none());
            model.insert(id, ls);
        }
        // Replacing, and removing every third.
        for n in (0..300u32).step_by(3) {
            let id = format!("list-{n}");
            assert!(lists.remove(&id).is_some());
            assert!(lists.remove(&id).is_none());
            model.remove(&id);
        }
        let replaced = list("list-1", 3, None);
        let old = lists.insert("list-1".into(), replaced.clone()).unwrap();
        assert!(Arc::ptr_eq(&old, &model["list-1"]));
        model.insert("list-1".into(), replaced);

        assert_eq!(lists.len(), model.len());
        let ids: BTreeSet<&str> = lists.keys().map(|id| &**id).collect();
        assert_eq!(ids, model.keys().map(String::as_str).collect());
        for (id, ls) in &model {
            assert!(Arc::ptr_eq(&lists[id.as_str()], ls));
            assert!(lists.contains_key(id));
        }
        assert!(lists.get("list-0").is_none());
        assert_eq!(lists.values().count(), model.len());
        assert_eq!(
            lists.summary().non_valid,
            model.values().map(|l| l.non_valid).sum::<u64>()
        );
        let collected: Lists = lists.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert!(collected.same_ids(&lists));
    }

    #[test]
    fn a_change_copies_one_part_and_the_sums_follow() {
        let lists: Lists = (0..256)
            .map(|n| {
                let id = format!("{n}");
                let exp = 10_000 + n;
                (id.as_str().into(), list(&id, 1, Some(exp)))
            })
            .collect();
        assert_eq!(
            lists.summary(),
            Summary {
                non_valid: 256,
                earliest_exp: Some(10_000),
                aged: false
            }
        );
        let mut next = lists.clone();
        assert!(next.same_ids(&lists));
        assert_eq!(next.not_shared_with(&lists).count(), 0);
        // Putting back the same list copies nothing.
        next.insert("7".into(), lists["7"].clone());
        assert_eq!(next.not_shared_with(&lists).count(), 0);

        next.insert("0".into(), list("0", 5, Some(20_000)));
        let changed: Vec<_> = next.not_shared_with(&lists).collect();
        assert!(changed.len() < 256 / 4, "{} lists copied", changed.len());
        assert!(changed.iter().any(|l| l.meta.id == "0"));
        assert!(next.same_ids(&lists));
        assert_eq!(
            next.summary(),
            Summary {
                non_valid: 260,
                earliest_exp: Some(10_001),
                aged: false
            }
        );
        // The earlier snapshot's lists are untouched.
        assert_eq!(lists["0"].non_valid, 1);

        // An unsigned list has no `exp` and counts as aged (withheld).
        next.insert("new".into(), list("new", 0, None));
        assert!(!next.same_ids(&lists));
        assert!(next.summary().aged);
        assert_eq!(next.summary().earliest_exp, Some(10_001));
    }
}
