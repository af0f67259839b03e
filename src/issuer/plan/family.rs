//! Families across lists: derived cards in a pool of their own (`STATUSD_DERIVED_POOL`), linked
//! to their parent by record (`children_elsewhere` in the parent's, `parent.list` in the
//! card's). This part of planning reads the lists those links lead to, carries a parent's
//! hold, reinstatement and revocation (a reissue's too) to its derived cards there, writes
//! both sides of the link when a derived card is placed in its pool, and mends a link a
//! step-wise commit left half-written.
//!
//! The lists one item ties together this way are committed as one group: jointly where the
//! store can ([`Registry::commits_jointly`]), so nothing is ever half-applied; on a Redis
//! Cluster each list on its own, all sent together (a reissue's old card waits for its new
//! card: `Plan::later`), so any of them may land without the others. Every cascade here is
//! idempotent and runs again whole on a retry, so a step-wise commit that landed in part is
//! finished by the retry of the same operation (the same request plans again at once after a
//! conflict):
//!
//! * a parent's list committed, a derived card's not: the retry reads the parent (held,
//!   reinstated or revoked already) and still carries the change to every linked card that
//!   lacks it, reporting `changed`, never `unchanged` with a card left behind;
//! * a derived card's list committed, its parent's not: the retry changes the parent and finds
//!   the card changed already (a hold, a revocation `via` the parent are each put once);
//! * a derived card committed (and bound) without its parent's link: the retry of the
//!   registration (or reissue) finds the card, sees the parent does not link to it, writes the
//!   link and brings the card in line with the parent's holds ([`ListWork::follow`]) in the
//!   same commit;
//! * a link whose card does not link back (its registration lost the race for the id on
//!   another replica, or the card's commit never happened while the link's did) is ignored
//!   ([`Record::derives_from`]).
//!
//! What is not closed on a Redis Cluster: a loss report on the parent planned before a new
//! card's link landed does not reach that card; the registration's link commit then fails its
//! compare-and-set, and the planned-again registration mends it as above. Only a replica that
//! dies in that window, with a client that never retries, leaves the card unlinked
//! (docs/redis.md).
//!
//! [`Registry::commits_jointly`]: crate::store::registry::Registry::commits_jointly
//! [`ListWork::follow`]: crate::issuer::record::ListWork::follow
//! [`Record::derives_from`]: crate::issuer::record::Record::derives_from

use super::{ListPlan, PlanAbort, Planner, Step};
use crate::issuer::record::{Record, Stamp};
use crate::issuer::{Affected, Operation};
use crate::store::registry::{Location, Registry};
use crate::store::StoreError;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

/// What a parent's operation does to its derived cards in other lists.
#[derive(Clone, Copy)]
pub(super) enum Cascade<'h> {
    /// Hold `h` on the parent: `parent:h` on each card.
    Hold(&'h str),
    /// Hold `h` lifted from the parent: `parent:h` lifted from each card.
    Lift(&'h str),
    /// The parent revoked (or reissued): each card revoked.
    Revoke,
}

/// What one list's read brought: its first read (metadata and records), or records read by
/// index at a version.
enum Read {
    First(crate::store::registry::MetaRecords),
    More(u64, Vec<(u32, Vec<u8>)>),
}

type Reading<'s> = Pin<Box<dyn Future<Output = Result<(String, Read), StoreError>> + Send + 's>>;

impl Planner<'_> {
    /// The locations the record at `at` links to in other lists: its derived cards there, then
    /// its parent if that is elsewhere.
    pub(super) fn links_elsewhere(&self, at: &Location) -> Vec<Location> {
        let Some(rec) = self.lists.get(&at.list).and_then(|lp| lp.work.get(at.idx)) else {
            return Vec::new();
        };
        let parent = rec.parent.as_ref().and_then(|p| {
            p.list.as_ref().map(|list| Location {
                list: list.clone(),
                idx: p.idx,
            })
        });
        rec.children_elsewhere
            .iter()
            .cloned()
            .chain(parent)
            .collect()
    }

    /// The place of the parent of the card at `at`, if in another list.
    pub(super) fn parent_elsewhere(&self, at: &Location) -> Option<Location> {
        let rec = self.lists.get(&at.list)?.work.get(at.idx)?;
        let p = rec.parent.as_ref()?;
        Some(Location {
            list: p.list.clone()?,
            idx: p.idx,
        })
    }

    /// Reads, in one round trip however many lists they are in, the records at `locations`
    /// that this plan has not read yet: a list not read yet with its metadata (and the families
    /// of the records, as any first read), a list read already by index at the version it was
    /// read at (else the plan starts again).
    pub(super) async fn load_elsewhere(&mut self, locations: &[Location]) -> Result<(), PlanAbort> {
        let mut want: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for at in locations {
            let held = self
                .lists
                .get(&at.list)
                .is_some_and(|lp| lp.work.get(at.idx).is_some() || lp.work.claims.contains(at.idx));
            if !held {
                want.entry(at.list.clone()).or_default().insert(at.idx);
            }
        }
        if want.is_empty() {
            return Ok(());
        }
        let store = &self.issuer.store;
        let reads: Vec<Reading<'_>> = want
            .into_iter()
            .map(|(list, idxs)| {
                let idxs: Vec<u32> = idxs.into_iter().collect();
                let first = !self.lists.contains_key(&list);
                Box::pin(async move {
                    if first {
                        let read = store.list_records(&list, &idxs).await?;
                        Ok((list, Read::First(read)))
                    } else {
                        let (version, recs) = store.records(&list, &idxs).await?;
                        let found = idxs
                            .into_iter()
                            .zip(recs)
                            .filter_map(|(i, r)| Some((i, r?)))
                            .collect();
                        Ok((list, Read::More(version, found)))
                    }
                }) as Reading<'_>
            })
            .collect();
        for read in crate::store::all_together(reads).await {
            match read? {
                (list, Read::First(read)) => {
                    let linked = self.first_read(&list, read)?;
                    self.load(&list, &linked).await?;
                }
                (list, Read::More(version, found)) => {
                    let lp = self.lists.get_mut(&list).expect("read before");
                    if version != lp.version {
                        return Err(PlanAbort::Moved);
                    }
                    add_records(lp, &list, found)?;
                }
            }
        }
        Ok(())
    }

    /// Carries `cascade` from the parent at `at` (changed already in its own list) to its
    /// derived cards in other lists that link back to it, adding their lists to `touched`.
    /// Returns whether any card changed, and those whose status did. Cards in a retired list
    /// (every credential there expired) are left as they are.
    pub(super) async fn cascade(
        &mut self,
        at: &Location,
        cascade: Cascade<'_>,
        stamp: &Stamp,
        touched: &mut BTreeSet<String>,
    ) -> Result<(bool, Vec<Affected>), Step> {
        let parent = self.lists[&at.list].work.get(at.idx).expect("loaded");
        let (id, links) = (
            parent.credential_id.clone(),
            parent.children_elsewhere.clone(),
        );
        if links.is_empty() {
            return Ok((false, Vec::new()));
        }
        self.load_elsewhere(&links).await?;
        let (mut changed, mut affected) = (false, Vec::new());
        for child in &links {
            let lp = self.lists.get_mut(&child.list).expect("loaded above");
            if lp.meta.life.is_retired() {
                continue;
            }
            let Some(rec) = lp.work.get(child.idx) else {
                continue;
            };
            if !rec.derives_from(&id, at) {
                continue;
            }
            let before = rec.status();
            let moved = match cascade {
                Cascade::Hold(h) => lp
                    .work
                    .inherit(child.idx, h, &id, stamp)
                    .map_err(crate::issuer::ItemProblem::from)?,
                Cascade::Lift(h) => lp.work.lift(child.idx, h, &id, stamp),
                Cascade::Revoke => lp.work.revoke_via(child.idx, &id, stamp),
            };
            if moved {
                changed = true;
                touched.insert(child.list.clone());
                let rec = lp.work.get(child.idx).expect("loaded");
                if rec.status() != before {
                    affected.push(Affected {
                        credential_id: rec.credential_id.clone(),
                        status: rec.status().name(),
                    });
                }
            }
        }
        Ok((changed, affected))
    }

    /// Writes the parent's side of the link to the derived card at `child` (placed in another
    /// list, or found there by a retry), and brings the card in line with its parent if the
    /// link was missing (a retry after a step-wise commit landed in part).
    pub(super) async fn link(
        &mut self,
        child: &Location,
        stamp: &Stamp,
        touched: &mut BTreeSet<String>,
    ) -> Result<(), Step> {
        let parent_at = self.lists[&child.list]
            .work
            .get(child.idx)
            .and_then(|r| r.parent.as_ref())
            .and_then(|p| {
                Some(Location {
                    list: p.list.clone()?,
                    idx: p.idx,
                })
            });
        let Some(parent_at) = parent_at else {
            return Ok(());
        };
        self.load_elsewhere(std::slice::from_ref(&parent_at))
            .await?;
        let plp = self.lists.get_mut(&parent_at.list).expect("loaded above");
        if plp.meta.life.is_retired() || plp.work.get(parent_at.idx).is_none() {
            return Ok(());
        }
        if !plp.work.link_elsewhere(parent_at.idx, child) {
            return Ok(());
        }
        touched.insert(parent_at.list.clone());
        let parent: Record = plp.work.get(parent_at.idx).expect("loaded").clone();
        if !self.issuer.store.commits_jointly() {
            self.hints.push((
                parent.credential_id.clone(),
                parent_at.clone(),
                child.clone(),
            ));
        }
        let clp = self.lists.get_mut(&child.list).expect("loaded");
        if !clp.work.claims.contains(child.idx) {
            // Found, not placed by this plan: the link was missing.
            let mut mend = stamp.clone();
            mend.op = "link";
            mend.hold = None;
            clp.work.follow(child.idx, &parent, &mend);
        }
        touched.insert(child.list.clone());
        Ok(())
    }

    /// The derived cards elsewhere (and the parent elsewhere) of every credential `ops` operate
    /// on, read together after the first reads: one more round trip when there are any that the
    /// first reads did not bring already (they bring them where the store follows links into
    /// other lists, [`Registry::list_records_following`], and on a Redis Cluster where the
    /// bindings' hints named them, [`crate::store::registry::Binding`]), none otherwise.
    pub(super) async fn prefetch(&mut self, ops: &[&Operation]) -> Result<(), PlanAbort> {
        let mut want = Vec::new();
        for op in ops {
            let cascades = matches!(
                op,
                Operation::Suspend(_)
                    | Operation::Reinstate(_)
                    | Operation::Revoke(_)
                    | Operation::Reissue(_)
            );
            if !cascades {
                continue;
            }
            let Some(at) = self.located.get(op.credential_id()) else {
                continue;
            };
            // A reissue needs the parent too (its new card links to it); a hold or revocation
            // only what it cascades to.
            let parent_too = matches!(op, Operation::Reissue(_));
            let own = self.lists.get(&at.list).and_then(|lp| lp.work.get(at.idx));
            let children = own.map_or(0, |r| r.children_elsewhere.len());
            want.extend(
                self.links_elsewhere(at)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| parent_too || *i < children)
                    .map(|(_, l)| l),
            );
        }
        self.load_elsewhere(&want).await
    }
}

/// Adds records read by index to `lp` (planning may have changed it already).
fn add_records(lp: &mut ListPlan, list: &str, recs: Vec<(u32, Vec<u8>)>) -> Result<(), StoreError> {
    for (idx, bytes) in recs {
        let rec = Record::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
            list: list.to_owned(),
            reason: format!("record {idx}: {e}"),
        })?;
        lp.work.add_read(idx, rec);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::issuer::tests::{
        affected, card_with_phone, issuer_with, register, reinstate, reissue, revoke, run, status,
        suspend, Scratch,
    };
    use crate::issuer::{Issuer, Operation, Settings};
    use crate::status::Status;
    use crate::store::registry::{Registry, Txn};

    /// An issuer whose derived cards go to pool `mobile`.
    fn issuer() -> (Issuer, Scratch) {
        issuer_with(Settings {
            list_size: 1024,
            derived_pool: Some("mobile".into()),
            ..Settings::default()
        })
    }

    async fn list_of(issuer: &Issuer, id: &str) -> String {
        issuer.view(id).await.unwrap().unwrap().assignment.list_id
    }

    /// The mobile ID lifecycle with the mobile cards in a pool of their own: a physical card's
    /// loss report suspends its mobile cards in other lists, a mobile card's only itself, a
    /// reinstatement lifts only what the physical card put, a revocation reaches them all;
    /// each card's audit trail says what happened to it and via whom.
    #[tokio::test]
    async fn a_family_across_lists_follows_the_lifecycle_rules() {
        let (issuer, _dir) = card_with_phone(issuer()).await;
        run(&issuer, &[register("phone-2", "mobile", Some("card-1"))]).await;
        let card_list = list_of(&issuer, "card-1").await;
        assert!(card_list.starts_with("default-"), "{card_list}");
        for phone in ["phone-1", "phone-2"] {
            let list = list_of(&issuer, phone).await;
            assert!(list.starts_with("mobile-"), "{phone}: {list}");
        }
        let card = issuer.view("card-1").await.unwrap().unwrap();
        assert_eq!(card.children, ["phone-1", "phone-2"]);
        let phone = issuer.view("phone-1").await.unwrap().unwrap();
        assert_eq!(phone.parent.as_deref(), Some("card-1"));

        // A mobile card reported lost: only itself.
        let out = run(&issuer, &[suspend("phone-2", Some("fraud"))]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "SUSPENDED"));
        assert_eq!(status(&issuer, "card-1").await, "VALID");
        assert_eq!(status(&issuer, "phone-1").await, "VALID");
        // The physical card reported lost: it and its mobile cards.
        let out = run(&issuer, &[suspend("card-1", None)]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "SUSPENDED"));
        assert_eq!(affected(&out[0]), [("phone-1", "SUSPENDED")]);
        // Again: nothing left to do anywhere.
        let out = run(&issuer, &[suspend("card-1", None)]).await;
        assert_eq!(out[0].result, "unchanged");
        // A mobile card registered now inherits the open loss report.
        run(&issuer, &[register("phone-3", "mobile", Some("card-1"))]).await;
        assert_eq!(status(&issuer, "phone-3").await, "SUSPENDED");
        let out = run(&issuer, &[reinstate("card-1", None)]).await;
        assert_eq!(
            affected(&out[0]),
            [("phone-1", "VALID"), ("phone-3", "VALID")]
        );
        assert_eq!(
            status(&issuer, "phone-2").await,
            "SUSPENDED",
            "its own hold"
        );

        let out = run(&issuer, &[revoke("card-1")]).await;
        assert_eq!(
            affected(&out[0]),
            [
                ("phone-1", "INVALID"),
                ("phone-2", "INVALID"),
                ("phone-3", "INVALID")
            ]
        );
        let (_, phone) = issuer.credential("phone-1").await.unwrap().unwrap();
        let trail: Vec<_> = phone
            .history
            .iter()
            .map(|e| (e.op.as_str(), e.new.as_str(), e.via.as_deref()))
            .collect();
        assert_eq!(
            trail,
            [
                ("register", "VALID", None),
                ("suspend", "SUSPENDED", Some("card-1")),
                ("reinstate", "VALID", Some("card-1")),
                ("revoke", "INVALID", Some("card-1")),
            ]
        );
    }

    /// A reissued physical card revokes its mobile cards in other lists, as in one list; a
    /// phone change (a mobile card reissued, no parent named) puts the new card in the mobile
    /// pool under the same parent, which then reaches it.
    #[tokio::test]
    async fn reissues_across_lists_keep_the_family() {
        let (issuer, _dir) = card_with_phone(issuer()).await;
        let out = run(&issuer, &[reissue("phone-1", "phone-2", None)]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "INVALID"));
        let new = issuer.view("phone-2").await.unwrap().unwrap();
        assert_eq!(new.parent.as_deref(), Some("card-1"));
        assert!(new.assignment.list_id.starts_with("mobile-"));
        assert_eq!(
            issuer.view("card-1").await.unwrap().unwrap().children,
            ["phone-1", "phone-2"]
        );
        // The retry is answered the same way, and changes nothing.
        let retry = run(&issuer, &[reissue("phone-1", "phone-2", None)]).await;
        assert_eq!(retry[0].result, "unchanged");
        let out = run(&issuer, &[suspend("card-1", None)]).await;
        assert_eq!(affected(&out[0]), [("phone-2", "SUSPENDED")]);

        let out = run(&issuer, &[reissue("card-1", "card-2", None)]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "INVALID"));
        assert_eq!(affected(&out[0]), [("phone-2", "INVALID")]);
        let card = issuer.view("card-2").await.unwrap().unwrap();
        assert!(card.assignment.list_id.starts_with("default-"));
        assert_eq!(card.replaces.as_deref(), Some("card-1"));
    }

    /// Commits `card-1`'s record changed by `change` (and its status set to `status`) to its
    /// own list only: what a step-wise commit (Redis Cluster) that stopped there leaves.
    async fn commit_card_alone(
        issuer: &Issuer,
        change: impl FnOnce(&mut crate::issuer::record::Record),
        status: Option<Status>,
    ) {
        let (at, mut card) = issuer.credential("card-1").await.unwrap().unwrap();
        change(&mut card);
        let store = &issuer.store;
        let (version, _) = store.records(&at.list, &[at.idx]).await.unwrap();
        let txn = Txn {
            expect_version: version,
            records: vec![(at.idx, card.to_bytes())],
            changes: status
                .map(|status| crate::store::Change {
                    idx: at.idx,
                    status,
                })
                .into_iter()
                .collect(),
            ..Txn::default()
        };
        store.commit(&at.list, &txn).await.unwrap();
    }

    /// A commit that landed in part (a Redis Cluster commits each list on its own: the mobile
    /// card's list without its parent's link): the retry of the registration writes the
    /// missing link and brings the card in line with the parent's loss report.
    #[tokio::test]
    async fn a_retry_mends_a_link_a_step_wise_commit_left_out() {
        let (issuer, _dir) = card_with_phone(issuer()).await;
        // Undo the parent's side of the link, as if its commit never happened.
        commit_card_alone(&issuer, |card| card.children_elsewhere.clear(), None).await;
        // The loss report cannot reach the card it does not know.
        let out = run(&issuer, &[suspend("card-1", None)]).await;
        assert!(out[0].affected.is_empty());
        assert_eq!(status(&issuer, "phone-1").await, "VALID");
        // The retry of the registration mends it.
        let out = run(&issuer, &[register("phone-1", "mobile", Some("card-1"))]).await;
        assert_eq!((out[0].result, out[0].status), ("exists", "SUSPENDED"));
        assert_eq!(
            issuer.view("card-1").await.unwrap().unwrap().children,
            ["phone-1"]
        );
        let out = run(&issuer, &[reinstate("card-1", None)]).await;
        assert_eq!(affected(&out[0]), [("phone-1", "VALID")]);
        let (_, phone) = issuer.credential("phone-1").await.unwrap().unwrap();
        let e = &phone.history[1];
        assert_eq!(
            (e.op.as_str(), e.new.as_str(), e.via.as_deref()),
            ("link", "SUSPENDED", Some("card-1"))
        );
    }

    /// A step-wise commit (Redis Cluster) that stopped after the parent's list: the physical
    /// card is suspended, its mobile card in another list is not. The retry of the loss report
    /// is not `unchanged`: it finishes the cascade.
    #[tokio::test]
    async fn a_retry_finishes_a_cascade_a_step_wise_commit_left_half_done() {
        let (issuer, _dir) = card_with_phone(issuer()).await;
        // The parent's list committed alone.
        commit_card_alone(
            &issuer,
            |card| {
                card.holds.insert("loss".into());
            },
            Some(Status::SUSPENDED),
        )
        .await;
        assert_eq!(status(&issuer, "phone-1").await, "VALID");
        let out = run(&issuer, &[suspend("card-1", None)]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "SUSPENDED"));
        assert_eq!(affected(&out[0]), [("phone-1", "SUSPENDED")]);
        // And the same for a revocation.
        commit_card_alone(&issuer, |card| card.revoked = true, Some(Status::INVALID)).await;
        let out = run(&issuer, &[revoke("card-1")]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "INVALID"));
        assert_eq!(affected(&out[0]), [("phone-1", "INVALID")]);
    }

    /// Mobile cards registered in their parent's list before the setting (here with the
    /// parent's pool named) keep working once derived cards have a pool: a loss report reaches
    /// both kinds of link, and a phone change puts the new card in the mobile pool.
    #[tokio::test]
    async fn cards_from_before_the_setting_join_the_family() {
        let (old, dir) = crate::issuer::tests::issuer();
        let mut phone = register("phone-1", "mobile", Some("card-1"));
        if let Operation::Register(r) = &mut phone {
            r.purpose = Some("default".into());
        }
        run(&old, &[register("card-1", "physical", None), phone]).await;
        let issuer = Issuer::new(
            old.store.clone(),
            old.urls.clone(),
            Settings {
                derived_pool: Some("mobile".into()),
                ..old.settings.clone()
            },
        );
        run(&issuer, &[register("phone-2", "mobile", Some("card-1"))]).await;
        assert_eq!(
            list_of(&issuer, "phone-1").await,
            list_of(&issuer, "card-1").await
        );
        assert!(list_of(&issuer, "phone-2").await.starts_with("mobile-"));
        let out = run(&issuer, &[suspend("card-1", None)]).await;
        assert_eq!(
            affected(&out[0]),
            [("phone-1", "SUSPENDED"), ("phone-2", "SUSPENDED")]
        );
        let out = run(&issuer, &[reissue("phone-1", "phone-3", None)]).await;
        assert_eq!(out[0].status, "INVALID");
        assert!(list_of(&issuer, "phone-3").await.starts_with("mobile-"));
        assert_eq!(
            status(&issuer, "phone-3").await,
            "SUSPENDED",
            "inherits the loss"
        );
        assert_eq!(
            issuer.view("card-1").await.unwrap().unwrap().children,
            ["phone-1", "phone-2", "phone-3"]
        );
        drop(dir);
    }
}
