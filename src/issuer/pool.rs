//! Pools: where a new top-level card goes. A pool is the lists `<purpose>-<n>` of one purpose;
//! it comes to be when an admin creates its first list (`POST /v1/lists`; the configured default
//! pool excepted), and keeps [`min_open_lists`] lists under the fill threshold by
//! creating lists ahead of demand, never beyond [`max_lists`] lists in the store. A
//! new top-level card goes to a random open list of its pool; so does a derived card when the
//! configuration gives derived cards a pool ([`derived_pool`]: a configured pool, grown like the
//! default one), and otherwise it lives in its parent's list and never comes here. A replica remembers the open lists it last chose among
//! per pool, and reads only their metadata while enough of them have room (every list's
//! otherwise: a write must not cost a read of hundreds of lists).
//!
//! [`min_open_lists`]: super::Settings::min_open_lists
//! [`max_lists`]: super::Settings::max_lists
//! [`derived_pool`]: super::Settings::derived_pool

use super::plan::Step;
use super::{Issuer, ItemError, ItemProblem, ListView};
use crate::store::{ListMeta, NewList, Store, StoreError};
use std::collections::BTreeSet;

impl Issuer {
    /// Creates an issuer-managed list in pool `purpose` (`POST /v1/lists`, `admin` scope: the
    /// only way a new pool comes to be), unless the store holds [`max_lists`](super::Settings::max_lists) lists.
    pub async fn create_list(&self, new: NewList) -> Result<ListView, StoreError> {
        let _creating = self.coord.creating.lock().await;
        if live(&self.store.lists().await?) >= self.settings.max_lists {
            return Err(StoreError::ListLimit {
                limit: self.settings.max_lists,
            });
        }
        let meta = self.store.create_list(new).await?;
        Ok(self.list_view(&meta))
    }

    /// A random open list of pool `purpose`, counting `claims(list)`, the indices the batch
    /// being planned has claimed in a list; creates lists when the pool runs low. `metas` is
    /// every list's metadata as planning read it; the lists created are added to it.
    pub(super) async fn choose_list(
        &self,
        purpose: &str,
        claims: impl Fn(&str) -> u64,
        metas: &mut Vec<ListMeta>,
    ) -> Result<String, Step> {
        let threshold = self.settings.fill_threshold;
        // A pool exists once it has a list: an admin creates it (`POST /v1/lists`), except the
        // default pool and the derived pools, which the configuration names. A `write` token
        // only grows pools.
        if !self.settings.is_configured_pool(purpose)
            && !metas.iter().any(|m| m.purpose.as_deref() == Some(purpose))
        {
            return Err(Step::Item(ItemProblem::new(
                ItemError::UnknownPool,
                format!(
                    "pool {purpose:?} does not exist: pools are created by an admin, with their \
                     first list (POST /v1/lists with this purpose)"
                ),
            )));
        }
        let mut candidates = open_lists(metas, purpose, &claims, threshold);
        let mut bounded = false;
        if candidates.len() < self.settings.min_open_lists {
            let missing = self.settings.min_open_lists - candidates.len();
            bounded = self
                .grow_pool(purpose, missing, metas)
                .await
                .map_err(|e| Step::Abort(e.into()))?;
            candidates = open_lists(metas, purpose, &claims, threshold);
        }
        if candidates.is_empty() {
            return Err(Step::Item(if bounded {
                ItemProblem::new(
                    ItemError::ListLimit,
                    format!(
                        "pool {purpose:?} has no list with room, and none can be created: {}",
                        StoreError::ListLimit {
                            limit: self.settings.max_lists
                        }
                    ),
                )
            } else {
                ItemProblem::new(
                    ItemError::ListFull,
                    format!("pool {purpose:?} has no list with room, and none could be created"),
                )
            }));
        }
        let chosen = pick(&candidates);
        self.coord
            .pool_lists
            .lock()
            .expect("not poisoned")
            .insert(purpose.to_owned(), candidates);
        Ok(chosen)
    }

    /// The lists of pools `purposes` a new top-level card was last chosen among on this
    /// replica ([`Self::choose_list`]), if every one of the pools has some: a plan reads only
    /// their metadata then, not every list's.
    pub(super) fn remembered_pool_lists(&self, purposes: &BTreeSet<&str>) -> Option<Vec<String>> {
        let remembered = self.coord.pool_lists.lock().expect("not poisoned");
        let mut ids = Vec::new();
        for purpose in purposes {
            ids.extend(remembered.get(*purpose)?.iter().cloned());
        }
        Some(ids)
    }

    /// A random open list of pool `purpose` among `read`, the metadata of its remembered lists
    /// ([`Self::remembered_pool_lists`]), counting `claims(list)`; `None` when fewer than
    /// [`min_open_lists`] of them have room (every list's metadata is read then, and the pool
    /// grown: [`Self::choose_list`]).
    ///
    /// [`min_open_lists`]: super::Settings::min_open_lists
    pub(super) fn choose_remembered(
        &self,
        purpose: &str,
        claims: impl Fn(&str) -> u64,
        read: &[ListMeta],
    ) -> Option<String> {
        let candidates = open_lists(read, purpose, claims, self.settings.fill_threshold);
        (!candidates.is_empty() && candidates.len() >= self.settings.min_open_lists)
            .then(|| pick(&candidates))
    }

    /// Creates up to `missing` new lists `<purpose>-<n>` in pool `purpose` (ahead of demand),
    /// adding them to `metas`; a list another replica created meanwhile counts as created. None
    /// beyond [`max_lists`] lists in the store: returns whether that bound stopped it.
    async fn grow_pool(
        &self,
        purpose: &str,
        missing: usize,
        metas: &mut Vec<ListMeta>,
    ) -> Result<bool, StoreError> {
        let max = self.settings.max_lists;
        // `metas` is what the store held when planning began, and what this plan created: at
        // the bound already, as every registration of a batch at the bound would ask again.
        if live(metas) >= max {
            self.coord.log_list_limit(purpose, max);
            return Ok(true);
        }
        let _creating = self.coord.creating.lock().await;
        let room = max.saturating_sub(live(&self.store.lists().await?));
        let bounded = room < missing;
        if bounded {
            self.coord.log_list_limit(purpose, max);
        }
        let missing = missing.min(room);
        let mut next = last_number(purpose, metas.iter().map(|m| m.id.as_str()));
        let mut created = 0;
        let mut attempts = 0;
        while created < missing && attempts < 8 + missing {
            attempts += 1;
            next += 1;
            let id = format!("{purpose}-{next}");
            match self
                .store
                .create_list(NewList {
                    id: id.clone(),
                    bits: self.settings.list_bits,
                    size: self.settings.list_size,
                    purpose: Some(purpose.to_owned()),
                })
                .await
            {
                Ok(meta) => {
                    tracing::info!(list = %id, purpose, "created a list ahead of demand");
                    metas.push(meta);
                    created += 1;
                }
                Err(StoreError::ListExists(_)) => {
                    if let Some(m) = self.meta(&id).await? {
                        metas.retain(|x| x.id != id);
                        if is_open(&m, self.settings.fill_threshold)
                            && m.purpose.as_deref() == Some(purpose)
                        {
                            created += 1;
                        }
                        metas.push(m);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(bounded)
    }
}

/// One of `candidates` (not empty), at random (per top-level card: the thread's generator,
/// not a system call each).
fn pick(candidates: &[String]) -> String {
    use rand::seq::SliceRandom;
    candidates
        .choose(&mut rand::thread_rng())
        .expect("non-empty")
        .clone()
}

/// Whether list `m` takes new top-level cards: under `threshold` of its entries allocated, and
/// not retired.
pub(crate) fn is_open(m: &ListMeta, threshold: f64) -> bool {
    (m.allocated as f64) < threshold * f64::from(m.size) && !m.life.is_retired()
}

/// The lists that count against `--max-lists`: retired ones hold no memory on any replica.
fn live(metas: &[ListMeta]) -> usize {
    metas.iter().filter(|m| !m.life.is_retired()).count()
}

/// The lists of pool `purpose` among `metas` that take new top-level cards, counting the
/// indices a batch has claimed in each (`claims`).
fn open_lists(
    metas: &[ListMeta],
    purpose: &str,
    claims: impl Fn(&str) -> u64,
    threshold: f64,
) -> Vec<String> {
    metas
        .iter()
        .filter(|m| m.purpose.as_deref() == Some(purpose) && !m.life.is_retired())
        .filter(|m| ((m.allocated + claims(&m.id)) as f64) < threshold * f64::from(m.size))
        .map(|m| m.id.clone())
        .collect()
}

/// The highest `n` among list ids `<purpose>-<n>` (0 if none): a pool's next list is `n + 1`.
pub fn last_number<'a>(purpose: &str, ids: impl Iterator<Item = &'a str>) -> u32 {
    ids.filter_map(|id| {
        id.strip_prefix(purpose)?
            .strip_prefix('-')?
            .parse::<u32>()
            .ok()
    })
    .max()
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, purpose: Option<&str>, allocated: u64, size: u32) -> ListMeta {
        ListMeta {
            id: id.into(),
            bits: 2,
            size,
            version: 0,
            updated_at: 0,
            updated_ms: 0,
            purpose: purpose.map(Into::into),
            allocated,
            life: Default::default(),
        }
    }

    #[test]
    fn the_next_list_follows_the_highest_number_of_its_own_pool() {
        let ids = [
            "default-1",
            "default-7",
            "default-x",
            "defaults-9",
            "other-12",
            "default-",
        ];
        assert_eq!(last_number("default", ids.into_iter()), 7);
        assert_eq!(last_number("other", ids.into_iter()), 12);
        assert_eq!(last_number("new", ids.into_iter()), 0);
        // A pool whose name extends another's keeps its own numbering.
        assert_eq!(last_number("default", ["default-7-1"].into_iter()), 0);
        assert_eq!(last_number("default-7", ["default-7-1"].into_iter()), 1);
    }

    #[test]
    fn open_lists_count_the_claims_of_the_batch_being_planned() {
        let metas = [
            meta("default-1", Some("default"), 70, 100),
            meta("default-2", Some("default"), 74, 100),
            meta("default-3", Some("default"), 75, 100),
            meta("other-1", Some("other"), 0, 100),
            meta("demo", None, 0, 100),
        ];
        let none = |_: &str| 0;
        assert_eq!(
            open_lists(&metas, "default", none, 0.75),
            ["default-1", "default-2"]
        );
        let claims = |id: &str| if id == "default-1" { 5 } else { 0 };
        assert_eq!(open_lists(&metas, "default", claims, 0.75), ["default-2"]);
        assert_eq!(open_lists(&metas, "other", none, 0.75), ["other-1"]);
        assert!(open_lists(&metas, "nobody", none, 0.75).is_empty());
        assert!(is_open(&metas[1], 0.75) && !is_open(&metas[2], 0.75));
    }
}
