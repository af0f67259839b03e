//! Signed deltas on the serving side ([`crate::delta`] defines the format): each list's recent
//! changes as this replica saw them ([`History`], kept by the refresher), and the deltas
//! prebuilt and signed from them with every re-encoding of the list ([`Deltas`], part of its
//! artefacts), so that a request for a delta is one binary search and a refcount bump.
//!
//! The history records each state change the refresher applied as (from, to, changed indices):
//! the XOR of the two states, so it does not depend on how the store's feed grouped the writes.
//! A delta built from the boundary `b` (every index that differs between two consecutive states
//! held after `b`, with its value now) applies to every state this replica held from `b` on: a
//! request for version `v` gets the delta of the newest signed boundary at or before `v`, if
//! this replica held `v`. A version it never held (it picked up several at once; another
//! replica may have held it) is answered unavailable: an entry changed and changed back within
//! the versions it skipped would be missing from the delta. History is bounded ([`MAX_TRANSITIONS`], [`MAX_INDICES`]); older versions,
//! versions ahead of this replica, and deltas whose compressed changes would not be smaller than
//! the list's own `lst` are answered "unavailable" ([`Unavailable`]), and the verifier fetches
//! the list.

use super::build::{self, BuildParams};
use super::Representation;
use crate::delta::{self, Delta, DeltaClaims};
use crate::routes;
use crate::status::StatusList;
use crate::token::{SignError, TokenSigner};
use bytes::Bytes;
use hyper::header::HeaderValue;
use roaring::RoaringBitmap;
use std::collections::VecDeque;

/// Most state changes a list's history keeps.
pub const MAX_TRANSITIONS: usize = 32;
/// Which boundaries, counted from the newest (1), are signed: every one of the last four, then
/// fewer and fewer, so a re-encoding signs at most 11 deltas (with the empty one) whatever the
/// history holds.
const SIGNED_BOUNDARIES: [usize; 10] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32];
/// Most changed indices a list's history keeps in all (2 bytes each in a roaring array: at most
/// 32 KiB per list, 8 MiB for 256 lists). A delta naming this many entries is already about as
/// large as a 2^20-entry list with 1 % revoked (≈ 23 kB), so more would rarely be served.
pub const MAX_INDICES: u64 = 1 << 14;

/// One applied state change.
#[derive(Clone, Debug, PartialEq)]
struct Transition {
    from: u64,
    to: u64,
    changed: RoaringBitmap,
}

/// A list's recent state changes, oldest first, each starting where the previous one ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    transitions: VecDeque<Transition>,
    /// Sum of the transitions' changed indices.
    indices: u64,
}

impl History {
    /// Records the change from version `from` (state `before`) to `to` (state `after`). A change
    /// that does not continue the history (a gap, a version going back, a new width or size)
    /// starts it afresh.
    pub fn record(&mut self, from: u64, before: &StatusList, to: u64, after: &StatusList) {
        if self.transitions.back().is_some_and(|t| t.to != from) {
            *self = History::default();
        }
        let Some(changed) = before.changed_indices(after).filter(|_| from < to) else {
            *self = History::default();
            return;
        };
        self.indices += changed.len();
        self.transitions.push_back(Transition { from, to, changed });
        while self.transitions.len() > MAX_TRANSITIONS || self.indices > MAX_INDICES {
            let Some(t) = self.transitions.pop_front() else {
                break;
            };
            self.indices -= t.changed.len();
        }
    }

    /// The version the history ends at (`None` while empty).
    pub fn latest(&self) -> Option<u64> {
        self.transitions.back().map(|t| t.to)
    }
}

/// Why no delta is served from a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The version is ahead of the list this replica serves.
    Ahead,
    /// The version lies within the history, but this replica never held it (it picked up
    /// several versions at once): its deltas are built from the states it held, and one from
    /// an earlier state could miss an entry changed and changed back in between.
    Unknown,
    /// The version is older than this replica's history of the list.
    TooOld,
    /// The delta would not be smaller than the list.
    TooLarge,
}

impl Unavailable {
    /// The `reason` member of the problem answer.
    pub const fn slug(self) -> &'static str {
        match self {
            Unavailable::Ahead => "ahead",
            Unavailable::Unknown => "unknown-version",
            Unavailable::TooOld => "too-old",
            Unavailable::TooLarge => "too-large",
        }
    }
}

/// One prebuilt delta: both signed forms, or the note that it would be too large.
#[derive(Clone, Debug)]
enum Prebuilt {
    Signed(Box<[Representation; 2]>),
    TooLarge,
}

/// The deltas to one state of a list, by the version they start from.
#[derive(Clone, Debug)]
pub struct Deltas {
    /// The version they bring a list to: the artefacts' version.
    to: u64,
    /// `to` as a header value (`Statusd-List-Version` of the list's responses).
    pub version_header: HeaderValue,
    /// Boundaries in increasing order; the delta of boundary `i` serves the versions held
    /// from `entries[i].0` up to the next boundary. The last is always `to` itself (no changes).
    entries: Vec<(u64, Prebuilt)>,
    /// Every version this replica held in the history, increasing (up to `to`): the versions
    /// a delta is served from.
    held: Vec<u64>,
}

impl Deltas {
    /// No deltas (a list never signed): every request is answered unavailable.
    pub fn none(version: u64) -> Self {
        Deltas {
            to: version,
            version_header: HeaderValue::from(version),
            entries: Vec::new(),
            held: Vec::new(),
        }
    }

    /// The version these deltas bring a list to.
    pub fn to(&self) -> u64 {
        self.to
    }

    /// The JWT and CWT delta for a list held at version `from`.
    pub fn find(&self, from: u64) -> Result<(&Representation, &Representation), Unavailable> {
        if from > self.to || self.entries.is_empty() {
            return Err(Unavailable::Ahead);
        }
        match self.held.binary_search(&from) {
            Ok(_) => {}
            Err(0) => return Err(Unavailable::TooOld),
            Err(_) => return Err(Unavailable::Unknown),
        }
        let at = self.entries.partition_point(|(b, _)| *b <= from);
        match at.checked_sub(1).map(|i| &self.entries[i].1) {
            None => Err(Unavailable::TooOld),
            Some(Prebuilt::TooLarge) => Err(Unavailable::TooLarge),
            Some(Prebuilt::Signed(reps)) => Ok((&reps[0], &reps[1])),
        }
    }

    /// The versions a delta is served from, oldest first (for tests and `statusd inspect`).
    pub fn boundaries(&self) -> impl Iterator<Item = (u64, bool)> + '_ {
        self.entries
            .iter()
            .map(|(b, p)| (*b, matches!(p, Prebuilt::Signed(_))))
    }
}

/// The `ETag` of a delta to version `to` signed at `iat`: the same for every starting version,
/// so a verifier that has reached `to` by any delta revalidates `/deltas/{to}` with it and gets
/// a 304 until the list changes or is re-signed. Weak, as the bodies differ by starting version.
fn etag(to: u64, iat: u64, form: char) -> HeaderValue {
    HeaderValue::try_from(format!("W/\"d{to}-{iat}-{form}\""))
        .expect("generated header values are visible ASCII")
}

/// Signs the deltas to `list` at version `to` from every boundary of `history` (which must end
/// at `to`, or it is ignored) and from `to` itself. `lst_len` is the size of the list's
/// compressed `lst`: a delta whose compressed changes are not smaller is not signed.
#[allow(clippy::too_many_arguments)]
pub fn sign_deltas(
    sub: &str,
    list: &StatusList,
    to: u64,
    history: &History,
    lst_len: usize,
    key: &(impl TokenSigner + ?Sized),
    p: &BuildParams,
    iat: u64,
    exp: u64,
) -> Result<Deltas, SignError> {
    let transitions = if history.latest() == Some(to) {
        &history.transitions
    } else {
        &VecDeque::new()
    };
    let mut entries = Vec::with_capacity(transitions.len() + 1);
    let mut claims = DeltaClaims {
        sub: sub.to_owned(),
        // `sub` names the list; `iss` would add 40 bytes to every delta for nothing to check.
        iss: None,
        iat,
        exp: Some(exp),
        ttl: Some(p.ttl.as_secs()),
        delta: Delta::build(list, to, to, std::iter::empty()),
    };
    let sha256 = claims.delta.sha256;
    let sign = |claims: &DeltaClaims| -> Result<Prebuilt, SignError> {
        let jwt = delta::sign_jwt(claims, key)?;
        let cwt = delta::sign_cwt(claims, key)?;
        let rep = |body: Bytes, media, form| Representation {
            etag: etag(to, iat, form),
            ..build::json_representation(body, media)
        };
        Ok(Prebuilt::Signed(Box::new([
            rep(build::exact(jwt), routes::STATUSLIST_DELTA_JWT, 'j'),
            rep(build::exact(cwt), routes::STATUSLIST_DELTA_CWT, 'c'),
        ])))
    };
    entries.push((to, sign(&claims)?));
    // Newest boundary first: each adds its transition's indices to those after it, and once one
    // is too large every older one is too. Only the boundaries of [`SIGNED_BOUNDARIES`] (and the
    // oldest) are signed: a version between two of them gets the older one's delta, which
    // names a few more entries but applies all the same.
    let mut changed = RoaringBitmap::new();
    let mut too_large = false;
    let n = transitions.len();
    for (k, t) in (1..).zip(transitions.iter().rev()) {
        changed |= &t.changed;
        if !(SIGNED_BOUNDARIES.contains(&k) || k == n) {
            continue;
        }
        if too_large {
            entries.push((t.from, Prebuilt::TooLarge));
            continue;
        }
        let entries_now: Vec<(u32, u8)> = changed
            .iter()
            .map(|i| (i, list.get_unchecked(i).0))
            .collect();
        let changes = delta::encode_changes(list.bits(), &entries_now);
        if changes.len() >= lst_len {
            too_large = true;
            entries.push((t.from, Prebuilt::TooLarge));
            continue;
        }
        claims.delta = Delta {
            bits: list.bits(),
            from: t.from,
            to,
            changes,
            sha256,
        };
        entries.push((t.from, sign(&claims)?));
    }
    entries.reverse();
    let held = transitions
        .iter()
        .map(|t| t.from)
        .chain(std::iter::once(to))
        .collect();
    Ok(Deltas {
        to,
        version_header: HeaderValue::from(to),
        entries,
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::PublicUrls;
    use crate::status::{Bits, Status};
    use crate::token::keys::{Algorithm, KeySet, SigningKey};
    use std::time::Duration;

    fn params() -> BuildParams {
        BuildParams {
            urls: PublicUrls::new("https://status.example"),
            issuer: "https://issuer.example".into(),
            ttl: Duration::from_secs(300),
            lifetime: Duration::from_secs(86_400),
            tick: Duration::from_secs(1),
        }
    }

    /// Versions 0..=n of a list, version k with entry 10·k revoked on top of k-1.
    fn versions(n: u64) -> Vec<StatusList> {
        let mut l = StatusList::new(Bits::Two, 1 << 16).unwrap();
        let mut out = vec![l.clone()];
        for k in 1..=n {
            l.set(10 * k, Status::INVALID).unwrap();
            out.push(l.clone());
        }
        out
    }

    fn history(states: &[StatusList], steps: &[(u64, u64)]) -> History {
        let mut h = History::default();
        for &(a, b) in steps {
            h.record(a, &states[a as usize], b, &states[b as usize]);
        }
        h
    }

    #[test]
    fn history_is_contiguous_and_bounded() {
        let s = versions(40);
        let h = history(&s, &[(1, 3), (3, 4)]);
        assert_eq!(h.latest(), Some(4));
        assert_eq!(h.transitions.len(), 2);
        // A gap starts afresh.
        let mut gap = h.clone();
        gap.record(5, &s[5], 6, &s[6]);
        assert_eq!(gap.transitions.len(), 1);
        // So does a version going back.
        let mut back = h.clone();
        back.record(4, &s[4], 2, &s[2]);
        assert_eq!(back, History::default());
        let steps: Vec<(u64, u64)> = (0..40).map(|k| (k, k + 1)).collect();
        let long = history(&s, &steps);
        assert_eq!(long.transitions.len(), MAX_TRANSITIONS);
        assert_eq!(long.transitions[0].from, 40 - MAX_TRANSITIONS as u64);
    }

    #[test]
    fn every_version_held_in_the_window_gets_a_delta_that_reaches_the_current_state() {
        let key = SigningKey::generate(Algorithm::Es256);
        let keys = KeySet::new(vec![key.verifying_key()]);
        let s = versions(9);
        // This replica saw 2 -> 5 -> 6 -> 9 (another may have seen every version).
        let h = history(&s, &[(2, 5), (5, 6), (6, 9)]);
        let d = sign_deltas("sub", &s[9], 9, &h, 1 << 20, &key, &params(), 100, 200).unwrap();
        assert_eq!(
            d.boundaries().collect::<Vec<_>>(),
            [(2, true), (5, true), (6, true), (9, true)]
        );
        for held in [2, 5, 6, 9] {
            let (jwt, cwt) = d.find(held).unwrap();
            let from_jwt = delta::verify_jwt(std::str::from_utf8(&jwt.body).unwrap(), &keys)
                .unwrap()
                .delta;
            let from_cwt = delta::verify_cwt(&cwt.body, &keys).unwrap().delta;
            assert_eq!(from_jwt, from_cwt);
            assert_eq!(from_jwt.apply(&s[held as usize], held).unwrap(), s[9]);
            assert_eq!(jwt.etag, "W/\"d9-100-j\"");
        }
        // Versions this replica skipped (another replica may have held them).
        for skipped in [3, 4, 7, 8] {
            assert_eq!(d.find(skipped).unwrap_err(), Unavailable::Unknown);
        }
        assert_eq!(d.find(1).unwrap_err(), Unavailable::TooOld);
        assert_eq!(d.find(10).unwrap_err(), Unavailable::Ahead);
        // A history that does not end at the artefacts' version is not used.
        let d = sign_deltas(
            "sub",
            &s[9],
            9,
            &history(&s, &[(2, 5)]),
            1 << 20,
            &key,
            &params(),
            1,
            2,
        )
        .unwrap();
        assert_eq!(d.boundaries().collect::<Vec<_>>(), [(9, true)]);
        assert_eq!(d.find(5).unwrap_err(), Unavailable::TooOld);
    }

    #[test]
    fn a_long_history_signs_a_few_boundaries_that_serve_every_version() {
        let key = SigningKey::generate(Algorithm::Es256);
        let keys = KeySet::new(vec![key.verifying_key()]);
        let s = versions(21);
        let steps: Vec<(u64, u64)> = (1..21).map(|k| (k, k + 1)).collect();
        let h = history(&s, &steps);
        let d = sign_deltas("sub", &s[21], 21, &h, 1 << 20, &key, &params(), 1, 2).unwrap();
        let signed: Vec<u64> = d.boundaries().map(|(b, _)| b).collect();
        // From the newest: 1, 2, 3, 4, 6, 8, 12, 16 and the oldest (20 back).
        assert_eq!(signed, [1, 5, 9, 13, 15, 17, 18, 19, 20, 21]);
        for held in 1..=21u64 {
            let (jwt, _) = d.find(held).unwrap();
            let delta = delta::verify_jwt(std::str::from_utf8(&jwt.body).unwrap(), &keys)
                .unwrap()
                .delta;
            assert!(delta.from <= held);
            assert_eq!(
                delta.apply(&s[held as usize], held).unwrap(),
                s[21],
                "{held}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Whatever the changes and however this replica's view grouped the versions, every
        /// version it held from the oldest it keeps gets a delta that reaches the current state
        /// exactly, or an honest "too large"; a version it skipped gets none (found by this
        /// test: an entry changed and changed back within skipped versions was missing).
        #[test]
        fn every_served_delta_reaches_the_current_state(
            steps in proptest::collection::vec(
                proptest::collection::vec((0u64..1024, 0u8..4), 0..40), 1..40),
            seen in proptest::collection::vec(proptest::bool::ANY, 40),
            lst_len in proptest::prop_oneof![proptest::strategy::Just(1usize << 20), 20usize..200],
        ) {
            let key = SigningKey::generate(Algorithm::EdDsa);
            let keys = KeySet::new(vec![key.verifying_key()]);
            let mut l = StatusList::new(Bits::Two, 1024).unwrap();
            let mut states = vec![l.clone()];
            for step in &steps {
                for &(i, v) in step {
                    l.set(i, Status(v)).unwrap();
                }
                states.push(l.clone());
            }
            let last = states.len() as u64 - 1;
            // The versions this replica saw: the first, some in between, the last.
            let mut observed: Vec<u64> = (0..=last)
                .filter(|&v| v == 0 || v == last || seen[v as usize % seen.len()])
                .collect();
            observed.dedup();
            let mut h = History::default();
            for w in observed.windows(2) {
                h.record(w[0], &states[w[0] as usize], w[1], &states[w[1] as usize]);
            }
            let d = sign_deltas("sub", &states[last as usize], last, &h, lst_len, &key, &params(), 1, 2)
                .unwrap();
            let oldest = h.transitions.front().map_or(last, |t| t.from);
            for held in oldest..=last {
                if !observed.contains(&held) {
                    proptest::prop_assert_eq!(d.find(held).unwrap_err(), Unavailable::Unknown);
                    continue;
                }
                match d.find(held) {
                    Ok((jwt, _)) => {
                        let delta = delta::verify_jwt(std::str::from_utf8(&jwt.body).unwrap(), &keys)
                            .unwrap()
                            .delta;
                        proptest::prop_assert_eq!(
                            &delta.apply(&states[held as usize], held).unwrap(),
                            &states[last as usize]
                        );
                    }
                    Err(Unavailable::TooLarge) => proptest::prop_assert!(lst_len < 1 << 20),
                    Err(other) => proptest::prop_assert!(false, "{held}: {other:?}"),
                }
            }
            proptest::prop_assert_eq!(d.find(last + 1).unwrap_err(), Unavailable::Ahead);
        }
    }

    #[test]
    fn deltas_not_smaller_than_the_list_are_not_signed() {
        let key = SigningKey::generate(Algorithm::Es256);
        let s = versions(9);
        let h = history(&s, &[(2, 5), (5, 6), (6, 9)]);
        let small = delta::encode_changes(Bits::Two, &[(70, 1), (80, 1), (90, 1)]).len();
        let d = sign_deltas("sub", &s[9], 9, &h, small + 1, &key, &params(), 1, 2).unwrap();
        assert_eq!(
            d.boundaries().collect::<Vec<_>>(),
            [(2, false), (5, false), (6, true), (9, true)]
        );
        assert_eq!(d.find(5).unwrap_err(), Unavailable::TooLarge);
        assert!(d.find(6).is_ok());
        assert_eq!(Deltas::none(3).find(3).unwrap_err(), Unavailable::Ahead);
    }
}
