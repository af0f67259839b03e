//! The issuer's registry inside the source of truth: per-list credential records, the indices
//! ever handed out, and the index from a credential id to its place.
//!
//! The store keeps records as opaque bytes; what they mean (kinds, holds, the audit trail) is
//! [`crate::issuer`]'s business, written once for every store. What the store guarantees is the
//! concurrency contract that logic relies on, identical for the embedded store and Redis:
//!
//! * A list's records, its allocated indices and its entries change only together, in one
//!   [`Registry::commit`]: a compare-and-set on the list's `version` (read with the records)
//!   that claims new indices, writes records and applies status changes atomically, or does
//!   nothing and reports [`StoreError::Conflict`]. Every commit bumps the version, so replicas
//!   see it like any other change.
//! * A claimed index stays allocated for good, even when its credential is revoked or its
//!   registration is abandoned: an index is never handed out twice.
//! * A retired list ([`super::retire`]) takes no commit ([`StoreError::Retired`]); retiring
//!   bumps the version, so a commit planned before it fails as a conflict and is planned again.
//! * [`Registry::bind`] maps a credential id to its place once (set-if-absent) after the commit
//!   that created its record; a registration whose bind loses a race leaves a record nothing
//!   points to, which costs one index and nothing else.

use super::{Change, Extends, ListMeta, Store, StoreError};
use roaring::RoaringBitmap;
use std::fmt;
use std::future::Future;

/// Longest credential id accepted.
pub const MAX_CREDENTIAL_ID_LEN: usize = 200;

/// Where a credential's status lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub list: String,
    pub idx: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.list, self.idx)
    }
}

impl Location {
    /// Parses `<list>/<idx>` as [`Location`]'s `Display` writes it.
    pub fn parse(s: &str) -> Option<Location> {
        let (list, idx) = s.rsplit_once('/')?;
        super::check_id(list).ok()?;
        if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) || idx.len() > 10 {
            return None;
        }
        Some(Location {
            list: list.to_owned(),
            idx: idx.parse().ok()?,
        })
    }
}

/// Checks a credential id: 1 to 200 visible ASCII characters (no spaces), so it is safe in
/// URLs, Redis keys and logs that must never confuse one id with another.
pub fn check_credential_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CREDENTIAL_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A list's version and the records read at it (`None` where there is none).
pub type Records = (u64, Vec<Option<Vec<u8>>>);

/// A list's metadata (its `version` among it) and the records read with it, at that version.
pub type MetaRecords = (ListMeta, Vec<Option<Vec<u8>>>);

/// One compare-and-set commit to one list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    /// The version the records were read at; the commit fails with
    /// [`StoreError::Conflict`] if the list has moved on.
    pub expect_version: u64,
    /// Indices to allocate; each must be within the list and never allocated before.
    pub claim: Vec<u32>,
    /// Records to write (insert or replace), by index.
    pub records: Vec<(u32, Vec<u8>)>,
    /// Status changes, under the same rules as [`Store::apply`].
    pub changes: Vec<Change>,
    /// What the credentials registered at the claimed indices do to the list's
    /// [`Lifetime::expires_max`](super::Lifetime::expires_max), applied in the same step.
    pub extends: Extends,
}

/// The registry operations of a store.
pub trait Registry: Store {
    /// The list's version and every index ever allocated in it.
    fn allocated(
        &self,
        list: &str,
    ) -> impl Future<Output = Result<(u64, RoaringBitmap), StoreError>> + Send;

    /// The list's version and the records at `idxs` (`None` where there is none), read
    /// together.
    fn records(
        &self,
        list: &str,
        idxs: &[u32],
    ) -> impl Future<Output = Result<Records, StoreError>> + Send;

    /// The list's metadata and the records at `idxs` (`None` where there is none), read
    /// together in one round trip: what planning a single operation needs of its list.
    fn list_records(
        &self,
        list: &str,
        idxs: &[u32],
    ) -> impl Future<Output = Result<MetaRecords, StoreError>> + Send;

    /// The allocated indices this store holds in memory for `list`, if any, read without a
    /// round trip. It may lag behind the store (allocations only ever add indices, so it is a
    /// subset of the truth), which [`Registry::commit`] makes safe: a claim of an index taken
    /// meanwhile is refused as a conflict and the cache is dropped.
    fn allocated_cached(&self, _list: &str) -> Option<RoaringBitmap> {
        None
    }

    /// Commits `txn` to `list` atomically, returning the new version (see the module docs).
    fn commit(&self, list: &str, txn: &Txn)
        -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Where each credential id is bound, in order.
    fn locate(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Option<Location>>, StoreError>> + Send;

    /// Binds each credential id to its location unless it is bound already; returns the
    /// bindings in force afterwards, in order (equal to the one given where this call bound it).
    fn bind(
        &self,
        binds: &[(String, Location)],
    ) -> impl Future<Output = Result<Vec<Location>, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_round_trip_and_reject_junk() {
        let l = Location {
            list: "cards-7".into(),
            idx: 4_000_000_000,
        };
        assert_eq!(Location::parse(&l.to_string()), Some(l));
        for bad in [
            "",
            "a",
            "a/",
            "/1",
            "a/b/1x",
            "a/-1",
            "a/99999999999",
            "a b/1",
        ] {
            assert_eq!(Location::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn credential_ids() {
        assert!(check_credential_id("urn:uuid:0f0e-11"));
        assert!(check_credential_id(&"x".repeat(200)));
        for bad in ["", "a b", "tab\t", "é", &"x".repeat(201)] {
            assert!(!check_credential_id(bad), "{bad}");
        }
    }
}
