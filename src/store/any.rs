//! [`AnyStore`]: the configured source of truth, as one closed enum so the rest of statusd is
//! written once against [`Store`] and dispatch stays static.

use super::embedded::EmbeddedStore;
use super::redis::{RedisStore, POLL};
use super::registry::{Binding, Location, MetaRecords, MetasOf, Records, Registry, Txn};
use super::retire::Retire;
use super::{Applied, Change, Feed, Hint, ListMeta, NewList, Store, StoreError};
use crate::status::{Status, StatusList};
use roaring::RoaringBitmap;
use std::time::Duration;

/// The store statusd runs on.
#[derive(Clone)]
pub enum AnyStore {
    Embedded(EmbeddedStore),
    Redis(RedisStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Embedded($s) => $e,
            AnyStore::Redis($s) => $e,
        }
    };
}

impl AnyStore {
    /// How long the refresher waits at most between two version checks on this store.
    pub fn poll_interval(&self) -> Duration {
        match self {
            // Commits wake the refresher at once; the tick only bounds re-signing latency.
            AnyStore::Embedded(_) => Duration::from_secs(1),
            // Versions are polled this often; a pub/sub message wakes the refresher sooner.
            AnyStore::Redis(_) => POLL,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyStore::Embedded(_) => "embedded",
            AnyStore::Redis(r) if r.is_cluster() => "redis-cluster",
            AnyStore::Redis(_) => "redis",
        }
    }
}

impl Store for AnyStore {
    async fn lists(&self) -> Result<Vec<ListMeta>, StoreError> {
        dispatch!(self, s => s.lists().await)
    }

    async fn meta(&self, id: &str) -> Result<Option<ListMeta>, StoreError> {
        dispatch!(self, s => s.meta(id).await)
    }

    async fn metas(&self, ids: &[String]) -> Result<Vec<Option<ListMeta>>, StoreError> {
        dispatch!(self, s => s.metas(ids).await)
    }

    async fn load(&self, id: &str) -> Result<(ListMeta, StatusList), StoreError> {
        dispatch!(self, s => s.load(id).await)
    }

    async fn create_list(&self, new: NewList) -> Result<ListMeta, StoreError> {
        dispatch!(self, s => s.create_list(new).await)
    }

    async fn apply(&self, id: &str, changes: &[Change]) -> Result<Applied, StoreError> {
        dispatch!(self, s => s.apply(id, changes).await)
    }

    async fn changes_since(
        &self,
        id: &str,
        version: u64,
    ) -> Result<Option<(u64, Vec<Change>)>, StoreError> {
        dispatch!(self, s => s.changes_since(id, version).await)
    }

    async fn meta_and_changes_since(
        &self,
        id: &str,
        version: u64,
    ) -> Result<Option<(ListMeta, Feed)>, StoreError> {
        dispatch!(self, s => s.meta_and_changes_since(id, version).await)
    }

    async fn entries(&self, id: &str, idxs: &[u32]) -> Result<(u64, Vec<Status>), StoreError> {
        dispatch!(self, s => s.entries(id, idxs).await)
    }

    async fn changed(&self, timeout: Duration) -> Hint {
        dispatch!(self, s => s.changed(timeout).await)
    }

    fn hints_complete(&self) -> bool {
        dispatch!(self, s => s.hints_complete())
    }
}

impl Registry for AnyStore {
    async fn allocated(&self, list: &str) -> Result<(u64, RoaringBitmap), StoreError> {
        dispatch!(self, s => s.allocated(list).await)
    }

    async fn records(&self, list: &str, idxs: &[u32]) -> Result<Records, StoreError> {
        dispatch!(self, s => s.records(list, idxs).await)
    }

    async fn list_records(&self, list: &str, idxs: &[u32]) -> Result<MetaRecords, StoreError> {
        dispatch!(self, s => s.list_records(list, idxs).await)
    }

    async fn list_records_following(
        &self,
        list: &str,
        idxs: &[u32],
    ) -> Result<Vec<(String, MetaRecords)>, StoreError> {
        dispatch!(self, s => s.list_records_following(list, idxs).await)
    }

    fn allocated_cached(&self, list: &str) -> Option<RoaringBitmap> {
        dispatch!(self, s => s.allocated_cached(list))
    }

    async fn commit(&self, list: &str, txn: &Txn) -> Result<u64, StoreError> {
        dispatch!(self, s => s.commit(list, txn).await)
    }

    fn commits_jointly(&self) -> bool {
        dispatch!(self, s => s.commits_jointly())
    }

    async fn commit_joint(
        &self,
        txns: &[(String, Txn)],
        binds: &[(String, Location)],
    ) -> Result<Vec<u64>, StoreError> {
        dispatch!(self, s => s.commit_joint(txns, binds).await)
    }

    async fn locate(&self, ids: &[String]) -> Result<Vec<Option<Location>>, StoreError> {
        dispatch!(self, s => s.locate(ids).await)
    }

    async fn locate_with_metas(
        &self,
        ids: &[String],
        metas: MetasOf<'_>,
    ) -> Result<(Vec<ListMeta>, Vec<Option<Binding>>), StoreError> {
        dispatch!(self, s => s.locate_with_metas(ids, metas).await)
    }

    async fn locate_bindings(&self, ids: &[String]) -> Result<Vec<Option<Binding>>, StoreError> {
        dispatch!(self, s => s.locate_bindings(ids).await)
    }

    async fn hint_children(
        &self,
        hints: &[(String, Location, Location)],
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.hint_children(hints).await)
    }

    async fn bind(&self, binds: &[(String, Binding)]) -> Result<Vec<Location>, StoreError> {
        dispatch!(self, s => s.bind(binds).await)
    }

    async fn mark_reissues(
        &self,
        list: &str,
        marks: &[(u32, String)],
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self, s => s.mark_reissues(list, marks).await)
    }

    async fn unmark_reissues(&self, list: &str, marks: &[(u32, String)]) -> Result<(), StoreError> {
        dispatch!(self, s => s.unmark_reissues(list, marks).await)
    }

    async fn rebind(
        &self,
        id: &str,
        stale: &Location,
        at: &Binding,
    ) -> Result<Location, StoreError> {
        dispatch!(self, s => s.rebind(id, stale, at).await)
    }
}

impl Retire for AnyStore {
    async fn retire(&self, id: &str, expect_version: u64, at: u64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.retire(id, expect_version, at).await)
    }

    async fn purge(&self, id: &str, at: u64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.purge(id, at).await)
    }
}
