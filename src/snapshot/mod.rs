//! Published state: one immutable [`Snapshot`] behind one `ArcSwap`, replaced whole.
//!
//! A snapshot holds, per list, every representation a verifier can ask for, already encoded,
//! compressed, signed and hashed into an ETag ([`ListSnapshot`]), plus the bitmaps for
//! per-credential lookups. Requests do one [`SnapshotStore::load`] and clone `Bytes` and
//! `HeaderValue`s out of it. Lists are shared between snapshots by `Arc`, so publishing a change
//! to one list rebuilds only that list. Building ([`build`]) is CPU work (compression, signing,
//! hashing) and runs on the blocking pool, never on a request.

pub mod build;
pub mod delta;
mod lists;
pub mod persist;
pub mod readiness;

pub use lists::{Lists, Summary as ListsSummary};
pub use readiness::{Readiness, SyncState};

use crate::status::w3c::Purpose;
use crate::status::StatusList;
use crate::store::ListMeta;
use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use std::collections::HashSet;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::SystemTime;

/// A fast, non-cryptographic hasher for list ids (the multiply-rotate step of rustc's FxHash,
/// eight bytes at a time); see [`Lists`] for why it need not resist flooding.
#[derive(Clone, Copy, Default)]
pub struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        // The last 1–7 bytes as one word, read without a copy loop: two overlapping u32 reads
        // for 4 or more, else the first, middle and last byte. Lengths are mixed in too.
        let word = match rest.len() {
            0 => return,
            n @ 4.. => {
                let lo = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
                let hi = u32::from_le_bytes(rest[n - 4..].try_into().expect("4 bytes"));
                u64::from(lo) | (u64::from(hi) << 32)
            }
            n => {
                u64::from(rest[0]) | (u64::from(rest[n / 2]) << 8) | (u64::from(rest[n - 1]) << 16)
            }
        };
        self.add(word ^ ((rest.len() as u64) << 56));
    }

    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.add(b.into());
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The product's entropy is in its high bits; the table indexes by the low ones.
        self.0.rotate_left(26)
    }
}

/// One encoded body and what the HTTP layer needs to serve it.
#[derive(Clone, Debug)]
pub struct Representation {
    pub content_type: HeaderValue,
    pub body: Bytes,
    /// Strong ETag of `body`.
    pub etag: HeaderValue,
    /// The body precompressed with gzip, with its own ETag, when that is worth offering.
    pub gzip: Option<(Bytes, HeaderValue)>,
    /// The response heads it is served with, built on first use by the HTTP layer.
    pub heads: Heads,
}

/// A representation's response heads (200 and 304, identity and gzip), built on first use
/// ([`Heads::get_or_build`]) and then cloned per response: a clone of a prebuilt header map
/// costs about a third of inserting its fields one by one, each insert hashing its name (issue
/// #18's profile). A head holds fields of the [`Artefacts`] around the representation
/// (`Cache-Control`, `Last-Modified`, ...), which never change in place: a changed field means
/// new artefacts, cloned from the old (ageing), and a clone of `Heads` starts empty.
#[derive(Default)]
pub struct Heads([std::sync::OnceLock<HeaderMap>; 4]);

impl Heads {
    /// The head in `slot` (0–3, the HTTP layer's numbering), built by `build` on first use.
    #[inline]
    pub fn get_or_build(&self, slot: usize, build: impl FnOnce() -> HeaderMap) -> &HeaderMap {
        self.0[slot].get_or_init(build)
    }
}

impl Clone for Heads {
    /// Empty: a representation is cloned into new artefacts, whose fields may differ.
    fn clone(&self) -> Self {
        Heads::default()
    }
}

impl std::fmt::Debug for Heads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self.0.iter().filter(|h| h.get().is_some()).count();
        write!(f, "Heads({built} built)")
    }
}

/// Everything published for one list: its current state, for lookups, and the signed artefacts
/// built from a recent state.
///
/// The two are deliberately separate. A change is visible to lookups as soon as the refresher
/// has it (one bitmap update), while re-encoding and re-signing every representation (the
/// costly part) is coalesced per list; [`Artefacts::version`] says which state they encode.
/// Each part is internally consistent; a token may lag the lookups by at most the re-encode
/// interval, far below the `ttl` verifiers cache tokens for.
#[derive(Debug)]
pub struct ListSnapshot {
    /// The state's metadata (its `version` is the latest the refresher applied).
    pub meta: ListMeta,
    /// The list itself, for lookups.
    pub list: StatusList,
    /// Number of non-VALID entries (for metrics and fill levels).
    pub non_valid: u64,
    /// The signed representations, shared between snapshots until re-encoded.
    pub artefacts: Arc<Artefacts>,
}

/// The encoded, signed and hashed representations of one state of a list. Cloning shares the
/// bodies (`Bytes`).
#[derive(Clone, Debug)]
pub struct Artefacts {
    /// The list version these representations encode.
    pub version: u64,
    /// IETF Status List Token, JWT form (`application/statuslist+jwt`).
    pub jwt: Representation,
    /// IETF Status List Token, CWT form (`application/statuslist+cwt`).
    pub cwt: Representation,
    /// Roaring form (`application/vnd.statusd.roaring`).
    pub roaring: Representation,
    /// W3C credentials secured as `vc+jwt`, indexed like [`Purpose::PUBLISHED`].
    pub w3c: [Representation; 3],
    /// `iat` and `exp` of every signed artefact above (Unix seconds).
    pub iat: u64,
    pub exp: u64,
    /// `kid` of the key that signed them.
    pub kid: String,
    pub last_modified: HeaderValue,
    /// `Cache-Control` for the list representations (aligned with `ttl`, bounded by `exp`).
    pub cache_control: HeaderValue,
    /// Whether signing paused since these were signed, and what that means for serving them.
    pub aging: Aging,
    /// Status List 2021 credentials (VC-JWT 1.1), indexed like
    /// [`crate::status::sl2021::PURPOSES`]; empty bodies for lists under 131,072 entries.
    pub sl2021: [Representation; 2],
    /// The W3C credentials of [`Self::w3c`] with a Data Integrity proof (`application/vc`);
    /// empty bodies where there is no view, or the signing key has no cryptosuite
    /// ([`crate::w3c_proof`]).
    pub w3c_di: [Representation; 3],
    /// The Status List 2021 credentials with a Data Integrity proof
    /// (`application/vc+ld+json`), like [`Self::w3c_di`].
    pub sl2021_di: [Representation; 2],
    /// `Surrogate-Key` / `Cache-Tag`: `list-{id}`, for targeted CDN purges.
    pub surrogate_key: HeaderValue,
    /// The signed deltas to [`Self::version`] (statusd's extension, [`crate::delta`]).
    pub deltas: Arc<delta::Deltas>,
}

/// What a pause in signing (see [`crate::keyfile`]) has done to a list's artefacts. The
/// refresher sets it; the request path only reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aging {
    /// Served with the `Cache-Control` they were built with.
    Fresh,
    /// Signing is paused: served with cache windows shortened to end before `exp`.
    Shortened,
    /// Signing is paused and `exp` is too close: the signed routes answer 503 instead (or the
    /// list is new and was never signed).
    Withheld,
}

impl Artefacts {
    /// The W3C representation of `purpose`, if statusd publishes it.
    pub fn w3c(&self, purpose: Purpose) -> Option<&Representation> {
        Purpose::PUBLISHED
            .iter()
            .position(|p| *p == purpose)
            .map(|i| &self.w3c[i])
    }

    /// The Status List 2021 representation of `purpose`, if statusd publishes it.
    pub fn sl2021(&self, purpose: Purpose) -> Option<&Representation> {
        crate::status::sl2021::PURPOSES
            .iter()
            .position(|p| *p == purpose)
            .map(|i| &self.sl2021[i])
    }

    /// The Data Integrity form of [`Self::w3c`].
    pub fn w3c_di(&self, purpose: Purpose) -> Option<&Representation> {
        Purpose::PUBLISHED
            .iter()
            .position(|p| *p == purpose)
            .map(|i| &self.w3c_di[i])
    }

    /// The Data Integrity form of [`Self::sl2021`].
    pub fn sl2021_di(&self, purpose: Purpose) -> Option<&Representation> {
        crate::status::sl2021::PURPOSES
            .iter()
            .position(|p| *p == purpose)
            .map(|i| &self.sl2021_di[i])
    }
}

/// The whole published state at one instant.
#[derive(Debug)]
pub struct Snapshot {
    /// 0 for the empty snapshot served before the first publication; then 1, 2, …
    pub generation: u64,
    pub published_at: SystemTime,
    pub lists: Lists,
    /// Ids of the retired lists ([`crate::retire`]): not published, answered 410 Gone.
    pub retired: Arc<HashSet<Box<str>>>,
    /// The Status List Aggregation document (`application/json`).
    pub aggregation: Representation,
    /// The JWKS verifiers use (`application/jwk-set+json`).
    pub jwks: Representation,
    /// The issuer's controller document (`application/ld+json`): the published keys as the
    /// verification methods of the Data Integrity proofs.
    pub controller: Representation,
}

impl Snapshot {
    /// What is served before the first publication: nothing, and not ready.
    pub fn empty() -> Snapshot {
        let empty = build::json_representation(b"{}".to_vec().into(), crate::routes::JSON);
        Snapshot {
            generation: 0,
            published_at: SystemTime::UNIX_EPOCH,
            lists: Lists::default(),
            retired: Arc::default(),
            aggregation: empty.clone(),
            jwks: empty.clone(),
            controller: empty,
        }
    }

    pub fn list(&self, id: &str) -> Option<&Arc<ListSnapshot>> {
        self.lists.get(id)
    }
}

/// The one `ArcSwap` every request reads from and the refresher writes to.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
}

impl Default for SnapshotStore {
    fn default() -> Self {
        SnapshotStore {
            current: ArcSwap::from_pointee(Snapshot::empty()),
        }
    }
}

impl SnapshotStore {
    /// The current snapshot. Hold the guard only within one synchronous request handler.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, for work that outlives a handler.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes `next`, which must be newer than the current snapshot.
    pub fn publish(&self, next: Snapshot) {
        debug_assert!(next.generation > self.current.load().generation);
        self.current.store(Arc::new(next));
    }

    /// Ready once a first snapshot has been published.
    pub fn is_ready(&self) -> bool {
        self.current.load().generation > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn heads_are_built_once_and_a_clone_starts_empty() {
        let heads = Heads::default();
        let mut builds = 0;
        for _ in 0..3 {
            let h = heads.get_or_build(1, || {
                builds += 1;
                let mut h = HeaderMap::new();
                h.insert("cache-control", HeaderValue::from_static("max-age=1"));
                h
            });
            assert_eq!(h["cache-control"], "max-age=1");
        }
        assert_eq!(builds, 1);
        assert_eq!(format!("{heads:?}"), "Heads(1 built)");
        // Cloned into new artefacts (ageing): the fields a head holds may differ there.
        assert_eq!(format!("{:?}", heads.clone()), "Heads(0 built)");
    }

    #[test]
    fn list_ids_hash_apart() {
        // Ids as operators name them: short decimal ids, and longer names of every length.
        let mut ids: Vec<String> = (0..5000).map(|n| n.to_string()).collect();
        ids.extend((1..=64).map(|n| "list-".repeat(13)[..n].to_owned()));
        ids.extend((1..=64).map(|n| "x".repeat(n)));
        let hasher = BuildHasherDefault::<IdHasher>::default();
        let hashes: HashSet<u64> = ids.iter().map(|id| hasher.hash_one(id.as_str())).collect();
        assert_eq!(hashes.len(), ids.len(), "no two of these ids share a hash");
        // Bucket indexes come from the low bits: 5,000 small ids spread over 8,192 buckets.
        let low: HashSet<u64> = ids[..5000]
            .iter()
            .map(|id| hasher.hash_one(id.as_str()) & 8191)
            .collect();
        assert!(low.len() > 3000, "{} distinct bucket indexes", low.len());
    }
}
