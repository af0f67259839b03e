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
//! * A retired list ([`super::retire`]) takes no commit ([`StoreError::Retired`], in a joint
//!   commit for any of its lists); retiring bumps the version, so a commit planned before it
//!   fails as a conflict and is planned again.
//! * A store that can ([`Registry::commits_jointly`]: the embedded store, a standalone Redis)
//!   commits several lists and the credential ids that now point into them in one atomic step
//!   ([`Registry::commit_joint`]): the binding is set-if-absent, checked with the versions, and
//!   an id bound meanwhile fails the whole step as a conflict, so nothing is half-applied and no
//!   index is spent on a registration that lost.
//! * Elsewhere (a Redis Cluster, whose credential-id keys live in other slots than the lists)
//!   [`Registry::bind`] maps a credential id to its place once (set-if-absent), sent beside the
//!   commit that creates its record (one round trip), so a binding may point where its record is
//!   not (yet): the issuer takes such an id as not registered until a registration completes it
//!   there, or, once that index holds another credential, replaces it ([`Registry::rebind`]).
//!   A registration whose bind loses a race leaves a record nothing points to, which costs one
//!   index and nothing else. A reissue marks its old card first ([`Registry::mark_reissues`]).
//! * Records are opaque bytes, except for the links a family read follows
//!   ([`Registry::list_records`], [`family_links`]): the issuer's JSON records name their derived
//!   cards (`children`, indices) and their parent (`parent.idx`) in the same list. Links into
//!   other lists (`children_elsewhere`, and `parent` with a `list`: a derived pool,
//!   [`links_elsewhere`]) are followed one step by [`Registry::list_records_following`] where
//!   the store reads several lists in one step; otherwise the issuer reads those lists itself,
//!   early where a credential id's binding hints at them ([`Binding`], [`Registry::hint_children`]:
//!   a Redis Cluster).

use super::{Change, Extends, ListMeta, Store, StoreError};
use roaring::RoaringBitmap;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

/// Longest credential id accepted.
pub const MAX_CREDENTIAL_ID_LEN: usize = 200;

/// Where a credential's status lives (in a record, as JSON `{"list":…,"idx":…}`: a link to a
/// derived card in another list).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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

/// Most derived cards' places a parent's binding remembers ([`Binding::children`]); a card
/// with more is read the way one without hints is (one round trip more on a Redis Cluster).
pub const MAX_CHILD_HINTS: usize = 8;

/// A credential id's binding: its place, and where a Redis Cluster remembers its family in
/// other lists to be, so that planning reads those lists with the card's own (issue #22).
///
/// Written `<list>/<idx>`, then ` p:<list>/<idx>` for a derived card's parent elsewhere (set
/// with the binding, at registration: a card's place never changes) and ` c:<list>/<idx>` for
/// each derived card elsewhere (added when it is linked, at most [`MAX_CHILD_HINTS`]). The
/// hints are never the truth: the records' links are, checked by every commit's
/// compare-and-set. A hint missing, stale or wrong costs the read the records' links then
/// need, never a wrong write. A binding without hints (the format before them, or any store
/// but a cluster) is the place alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub at: Location,
    /// The parent's place, if elsewhere.
    pub parent: Option<Location>,
    /// Derived cards' places elsewhere.
    pub children: Vec<Location>,
}

impl From<Location> for Binding {
    fn from(at: Location) -> Binding {
        Binding {
            at,
            parent: None,
            children: Vec::new(),
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.at)?;
        if let Some(p) = &self.parent {
            write!(f, " p:{p}")?;
        }
        for c in &self.children {
            write!(f, " c:{c}")?;
        }
        Ok(())
    }
}

impl Binding {
    /// Parses a binding as [`Binding`]'s `Display` writes it (or the place alone); `None` if
    /// the place does not parse. A hint that does not parse is left out: it only ever saves a
    /// read.
    pub fn parse(s: &str) -> Option<Binding> {
        let mut words = s.split(' ');
        let mut b = Binding::from(Location::parse(words.next()?)?);
        for w in words {
            match w.split_once(':') {
                Some(("p", at)) => b.parent = Location::parse(at).or(b.parent),
                Some(("c", at)) => b.children.extend(Location::parse(at)),
                _ => {}
            }
        }
        Some(b)
    }
}

/// Checks a credential id: 1 to 200 visible ASCII characters (no spaces), so it is safe in
/// URLs, Redis keys and logs that must never confuse one id with another.
pub fn check_credential_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CREDENTIAL_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A list's version and the records read at it (`None` where there is none).
pub type Records = (u64, Vec<Option<Vec<u8>>>);

/// A list's metadata (its `version` among it) and the records read with it, at that version,
/// by index (only those that exist).
pub type MetaRecords = (ListMeta, BTreeMap<u32, Vec<u8>>);

/// The indices a record links to in its list: its derived cards (`children`) and its parent
/// (`parent.idx`, unless `parent.list` names another list), as
/// [`crate::issuer::record::Record`] writes them; none if the record is not such JSON (whoever
/// parses it in full reports that). `redis_read.lua` follows the same two fields.
pub fn family_links(record: &[u8]) -> Vec<u32> {
    #[derive(serde::Deserialize)]
    struct Links {
        #[serde(default)]
        children: Vec<u32>,
        #[serde(default)]
        parent: Option<ParentIdx>,
    }
    #[derive(serde::Deserialize)]
    struct ParentIdx {
        idx: u32,
        #[serde(default)]
        list: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Links>(record) {
        Ok(l) => l
            .children
            .into_iter()
            .chain(l.parent.filter(|p| p.list.is_none()).map(|p| p.idx))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The places in other lists than `list` a record links to: its derived cards there
/// (`children_elsewhere`) and its parent there (`parent.list`, `parent.idx`), as
/// [`crate::issuer::record::Record`] writes them, keeping only valid list ids ([`super::check_id`]);
/// none if the record is not such JSON. `redis_read.lua` follows the same fields.
pub fn links_elsewhere(list: &str, record: &[u8]) -> Vec<Location> {
    #[derive(serde::Deserialize)]
    struct Links {
        #[serde(default)]
        children_elsewhere: Vec<Location>,
        #[serde(default)]
        parent: Option<Parent>,
    }
    #[derive(serde::Deserialize)]
    struct Parent {
        idx: u32,
        #[serde(default)]
        list: Option<String>,
    }
    match serde_json::from_slice::<Links>(record) {
        Ok(l) => l
            .children_elsewhere
            .into_iter()
            .chain(l.parent.and_then(|p| {
                Some(Location {
                    list: p.list?,
                    idx: p.idx,
                })
            }))
            .filter(|at| at.list != list && super::check_id(&at.list).is_ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

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

/// Which lists' metadata [`Registry::locate_with_metas`] reads.
#[derive(Clone, Copy, Debug)]
pub enum MetasOf<'a> {
    /// These lists' (those that exist).
    These(&'a [String]),
    /// Every list's ([`Store::lists`]).
    Every,
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

    /// The list's metadata and the records at `idxs` with every record their families link to
    /// ([`family_links`], transitively), read together at one version in one round trip: what
    /// planning an operation needs of its list (a loss report on a card cascades to its derived
    /// cards; a derived card's parent and siblings share its holds).
    fn list_records(
        &self,
        list: &str,
        idxs: &[u32],
    ) -> impl Future<Output = Result<MetaRecords, StoreError>> + Send;

    /// [`Registry::list_records`] of `list` first, then, where the store can read several
    /// lists in one step (the embedded store, a standalone Redis), the same read of each other
    /// list the records read link to (`children_elsewhere`, a `parent.list`: a derived pool),
    /// one step only: its metadata and the records linked to, with their families. A linked
    /// list that does not exist, or cannot be read as a list, is left out (whoever reads it
    /// later reports that). One round trip. The default (a Redis Cluster, whose lists live in
    /// other slots) reads `list` alone.
    fn list_records_following(
        &self,
        list: &str,
        idxs: &[u32],
    ) -> impl Future<Output = Result<Vec<(String, MetaRecords)>, StoreError>> + Send {
        let read = self.list_records(list, idxs);
        let list = list.to_owned();
        async move { Ok(vec![(list, read.await?)]) }
    }

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

    /// Whether [`Registry::commit_joint`] takes several lists and bindings: true where every
    /// key can join one atomic step (the embedded store, a standalone Redis); false on a Redis
    /// Cluster, where it takes one list and no binding.
    fn commits_jointly(&self) -> bool;

    /// Commits every `(list, txn)` and binds every credential id to its location (none bound
    /// before), atomically: all of it, or nothing and [`StoreError::Conflict`] (a list moved
    /// on, an index to claim was taken, an id is bound already: read again and retry). Returns
    /// each list's new version, in order. A list appears at most once.
    fn commit_joint(
        &self,
        txns: &[(String, Txn)],
        binds: &[(String, Location)],
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;

    /// Where each credential id is bound, in order.
    fn locate(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Option<Location>>, StoreError>> + Send;

    /// [`Registry::locate`] with the hints each binding carries ([`Binding`]: a Redis
    /// Cluster's); the default carries none.
    fn locate_bindings(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Option<Binding>>, StoreError>> + Send {
        let found = self.locate(ids);
        async move {
            Ok(found
                .await?
                .into_iter()
                .map(|l| l.map(Binding::from))
                .collect())
        }
    }

    /// Adds to the binding of each parent id, bound at the parent's place given, the hint of
    /// its derived card's place `(parent id, parent's place, card's place)` ([`Binding`]):
    /// once (a retry adds nothing twice), up to [`MAX_CHILD_HINTS`], and only to a binding at
    /// that place. Hints are never the truth, so this waits for no replica. One round trip;
    /// the default (a store that reads every list a record links to in one step) does nothing.
    fn hint_children(
        &self,
        hints: &[(String, Location, Location)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = hints;
        async { Ok(()) }
    }

    /// [`Registry::locate`] with the metadata of the lists `metas` names (those that exist;
    /// every list's: [`Store::lists`]), read together: what a plan that chooses a list for a
    /// new card starts with. The default sends the two reads together (one round trip); the
    /// embedded store reads both in one transaction.
    fn locate_with_metas(
        &self,
        ids: &[String],
        metas: MetasOf<'_>,
    ) -> impl Future<Output = Result<(Vec<ListMeta>, Vec<Option<Binding>>), StoreError>> + Send
    {
        async move {
            let read = async {
                match metas {
                    MetasOf::These(lists) => {
                        Ok(self.metas(lists).await?.into_iter().flatten().collect())
                    }
                    MetasOf::Every => self.lists().await,
                }
            };
            let (read, found) = super::together(read, self.locate_bindings(ids)).await;
            Ok((read?, found?))
        }
    }

    /// Binds each credential id to its location (with its hints, where the store keeps them)
    /// unless it is bound already; returns the places bound afterwards, in order (equal to the
    /// one given where this call bound it).
    fn bind(
        &self,
        binds: &[(String, Binding)],
    ) -> impl Future<Output = Result<Vec<Location>, StoreError>> + Send;

    /// Marks each credential at `(idx, new id)` of `list` as being replaced by that new id,
    /// unless it is marked already; returns the mark in force for each, in order (the new id
    /// given where this call marked it). One round trip, on the list's keys only. Marks are
    /// never removed: of the reissues of one credential, one only ever gets past its mark.
    /// Only where commits are not joint ([`Registry::commits_jointly`]) does a reissue take a
    /// mark (it commits its new card before its old one); the default refuses.
    fn mark_reissues(
        &self,
        list: &str,
        marks: &[(u32, String)],
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        let _ = marks;
        let list = list.to_owned();
        async move {
            Err(StoreError::Backend(format!(
                "this store marks no reissue (list {list:?}): it commits them jointly"
            )))
        }
    }

    /// Removes each mark `(idx, mark)` of `list` that still reads exactly `mark` (a reissue
    /// that took it and then failed its checks gives it back). One round trip.
    fn unmark_reissues(
        &self,
        list: &str,
        marks: &[(u32, String)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = marks;
        let list = list.to_owned();
        async move {
            Err(StoreError::Backend(format!(
                "this store marks no reissue (list {list:?}): it commits them jointly"
            )))
        }
    }

    /// Binds credential id `id` to `at` (with its hints, where the store keeps them) if it is
    /// bound to `stale`, a place that can never hold its record (the index went to another
    /// credential), or not bound at all; returns the place bound afterwards (`at`'s where this
    /// call bound it). One round trip.
    fn rebind(
        &self,
        id: &str,
        stale: &Location,
        at: &Binding,
    ) -> impl Future<Output = Result<Location, StoreError>> + Send;
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

    /// A binding written before hints existed is its place alone and still parses; hints
    /// round-trip, and one that does not parse is dropped, never the binding.
    #[test]
    fn bindings_parse_with_and_without_hints() {
        let at = |list: &str, idx| Location {
            list: list.into(),
            idx,
        };
        assert_eq!(
            Binding::parse("default-1/7"),
            Some(Binding::from(at("default-1", 7)))
        );
        let b = Binding {
            at: at("default-1", 7),
            parent: None,
            children: vec![at("mobile-1", 3), at("mobile-2", 0)],
        };
        assert_eq!(b.to_string(), "default-1/7 c:mobile-1/3 c:mobile-2/0");
        assert_eq!(Binding::parse(&b.to_string()), Some(b.clone()));
        let d = Binding {
            at: at("mobile-1", 3),
            parent: Some(at("default-1", 7)),
            children: Vec::new(),
        };
        assert_eq!(d.to_string(), "mobile-1/3 p:default-1/7");
        assert_eq!(Binding::parse(&d.to_string()), Some(d));
        assert_eq!(
            Binding::parse("default-1/7 c:mobile-1/x q:what c:mobile-1/3"),
            Some(Binding {
                children: vec![at("mobile-1", 3)],
                ..Binding::from(at("default-1", 7))
            })
        );
        assert_eq!(Binding::parse("default-1 c:mobile-1/3"), None);
        assert_eq!(Binding::parse(""), None);
    }

    #[test]
    fn a_family_links_children_and_parent() {
        assert_eq!(
            family_links(br#"{"credential_id":"P","children":[4,9],"history":[]}"#),
            [4, 9]
        );
        assert_eq!(
            family_links(br#"{"parent":{"credential_id":"P","idx":3},"history":[]}"#),
            [3]
        );
        assert!(family_links(br#"{"credential_id":"S","history":[]}"#).is_empty());
        // Links into other lists (a derived pool) are the issuer's to follow, not the store's.
        assert_eq!(
            family_links(
                br#"{"children":[4],"children_elsewhere":[{"list":"mobile-1","idx":7}],"history":[]}"#
            ),
            [4]
        );
        assert!(family_links(
            br#"{"parent":{"credential_id":"P","idx":3,"list":"default-1"},"history":[]}"#
        )
        .is_empty());
        assert!(family_links(b"not json").is_empty());
    }

    #[test]
    fn links_elsewhere_name_other_lists_only() {
        let at = |list: &str, idx| Location {
            list: list.into(),
            idx,
        };
        assert_eq!(
            links_elsewhere(
                "default-1",
                br#"{"children":[4],"children_elsewhere":[{"list":"mobile-1","idx":7},{"list":"default-1","idx":2},{"list":"a b","idx":1}],"history":[]}"#
            ),
            [at("mobile-1", 7)]
        );
        assert_eq!(
            links_elsewhere(
                "mobile-1",
                br#"{"parent":{"credential_id":"P","idx":3,"list":"default-1"},"history":[]}"#
            ),
            [at("default-1", 3)]
        );
        assert!(links_elsewhere(
            "default-1",
            br#"{"parent":{"credential_id":"P","idx":3},"history":[]}"#
        )
        .is_empty());
        assert!(links_elsewhere("default-1", b"not json").is_empty());
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
