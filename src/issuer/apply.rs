//! Applying a batch, the flow of [`Issuer::execute`]: check every item, plan them all
//! ([`super::plan`]), then commit the plan, a compare-and-set per list (the lists an item ties
//! together, with the new ids' bindings, in one step where the store can); a list that changed
//! meanwhile is planned again, for the items not done yet.

use super::plan::{Actor, Bind, ListPlan, Plan, PlanAbort};
use super::record::Record;
use super::{
    now_ms, Issuer, IssuerError, ItemError, ItemProblem, Operation, Outcome, Registration,
    MAX_BATCH,
};
use crate::store::registry::{Binding, Location, Registry, Txn};
use crate::store::StoreError;
use std::collections::{BTreeMap, BTreeSet};

/// How often a batch is planned again after losing a race on a list. Retries on one replica
/// queue in the retry lane (`Coordination::retry_lane`), so this only bounds races with other
/// replicas, each of which makes progress.
const MAX_ATTEMPTS: usize = 64;

/// A random pause before retrying a batch that keeps losing races (to other replicas, once it
/// holds the retry lane): up to 1, 2, 4, … 32 ms.
async fn backoff(retry: usize) {
    use rand::Rng;
    let cap = 1u64 << retry.min(5);
    let ms = rand::rngs::OsRng.gen_range(0..=cap);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

impl Issuer {
    /// Runs a batch for caller `by`: all items are checked and planned before anything is
    /// written; returns one outcome per item, in order.
    pub async fn execute(
        &self,
        by: &str,
        ops: &[Operation],
    ) -> Result<Vec<Result<Outcome, ItemProblem>>, IssuerError> {
        self.execute_as(by, None, ops).await
    }

    /// [`Issuer::execute`] for a caller that also presented a TLS client certificate, whose
    /// subject the audit trail records beside the token name.
    pub async fn execute_as(
        &self,
        by: &str,
        client_subject: Option<&str>,
        ops: &[Operation],
    ) -> Result<Vec<Result<Outcome, ItemProblem>>, IssuerError> {
        if ops.len() > MAX_BATCH {
            return Err(IssuerError::TooLarge);
        }
        let invalid: Vec<(usize, ItemProblem)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| {
                op.check()
                    .and_then(|()| self.settings.kinds.check(op))
                    .err()
                    .map(|e| (i, e))
            })
            .collect();
        if !invalid.is_empty() {
            return Err(IssuerError::Invalid(invalid));
        }
        // Registrations of one id on this replica run one after the other (see Coordination).
        let ids = ops
            .iter()
            .filter_map(|op| match op {
                Operation::Register(r) => Some(r.credential_id.clone()),
                Operation::Reissue(r) => Some(r.new_credential_id.clone()),
                _ => None,
            })
            .collect();
        let _registering = self.coord.registering(ids).await;
        let actor = Actor {
            by,
            client_subject,
            at: now_ms(),
            token: {
                use rand::Rng;
                rand::rngs::OsRng.gen()
            },
        };
        let mut results: Vec<Option<Result<Outcome, ItemProblem>>> = vec![None; ops.len()];
        let mut pending: Vec<usize> = (0..ops.len()).collect();
        // Until a plan is complete nothing is written, and a failing item fails the batch.
        let mut first_plan = true;
        let mut lane = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                match lane {
                    None => lane = Some(self.coord.retry_lane.lock().await),
                    Some(_) => backoff(attempt).await,
                }
            }
            let todo: Vec<&Operation> = pending.iter().map(|&i| &ops[i]).collect();
            let plan = match self.plan(&actor, &todo).await {
                Ok(plan) => plan,
                Err(PlanAbort::Moved) => continue,
                Err(PlanAbort::Store(e)) if first_plan => return Err(e.into()),
                Err(PlanAbort::Store(e)) => {
                    let p = ItemProblem::from(e);
                    for &i in &pending {
                        results[i] = Some(Err(p.clone()));
                    }
                    pending.clear();
                    break;
                }
            };
            if first_plan {
                let invalid: Vec<(usize, ItemProblem)> = plan
                    .items
                    .iter()
                    .enumerate()
                    .filter_map(|(k, (r, _))| r.as_ref().err().map(|e| (pending[k], e.clone())))
                    .collect();
                if !invalid.is_empty() {
                    return Err(IssuerError::Invalid(invalid));
                }
                first_plan = false;
            }
            let (done, failed, elsewhere) = self.commit(plan, &pending, &mut results).await;
            // Registrations whose id another request bound first: the idempotent answer, once
            // that request's commit is there (until then the item is planned again, and
            // completes the registration where the id is bound).
            let mut again = Vec::new();
            for (i, bound) in elsewhere {
                if let Operation::Register(r) = &ops[i] {
                    match self.registered_elsewhere(r, &bound).await {
                        Some(answer) => results[i] = Some(answer),
                        None => again.push(i),
                    }
                }
            }
            pending.retain(|i| !done.contains(i) || again.contains(i));
            if let Some(e) = failed {
                let p = ItemProblem::from(e);
                for &i in &pending {
                    results[i] = Some(Err(p.clone()));
                }
                pending.clear();
            }
            if pending.is_empty() {
                break;
            }
        }
        drop(lane);
        for &i in &pending {
            results[i] = Some(Err(ItemProblem::from(StoreError::Conflict(String::new()))));
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every item has a result"))
            .collect())
    }

    /// The answer to registration `r` whose id is bound to `at` by another request: `exists`
    /// if that registration has the same parameters, `registration-conflict` if not; `None`
    /// while that request's record is not at `at` (not committed yet, or never to be: the
    /// binding is settled by planning `r` again).
    async fn registered_elsewhere(
        &self,
        r: &Registration,
        at: &Location,
    ) -> Option<Result<Outcome, ItemProblem>> {
        let (_, mut recs) = match self.store.records(&at.list, &[at.idx]).await {
            Ok(read) => read,
            Err(e) => return Some(Err(e.into())),
        };
        let rec = match Record::from_bytes(&recs.pop().flatten()?) {
            Ok(rec) => rec,
            Err(e) => {
                return Some(Err(ItemProblem::new(
                    ItemError::Corrupt,
                    format!(
                        "{:?} is bound to {at}, whose record is unreadable: {e}",
                        r.credential_id
                    ),
                )))
            }
        };
        if rec.credential_id != r.credential_id {
            return None;
        }
        let size = match self.meta(&at.list).await {
            Ok(m) => m.map_or(0, |m| m.size),
            Err(e) => return Some(Err(e.into())),
        };
        Some(self.existing_outcome(r, at, &rec, size))
    }

    /// Commits a plan; returns the positions (in `ops`) of the items now done, the error that
    /// stopped it, if any (a conflict is not one: the caller plans again), and the
    /// registrations done whose id another request bound first, with that binding.
    ///
    /// Where the store commits jointly ([`Registry::commits_jointly`]), each group of lists that
    /// items tie together (a reissue whose new card lands in another list) is one atomic step
    /// with the bindings of its new ids: one round trip, nothing half-applied. Elsewhere (a
    /// Redis Cluster) each list on its own, all sent together with the bindings beside them
    /// ([`Issuer::commit_in_steps`]).
    async fn commit(
        &self,
        plan: Plan,
        pending: &[usize],
        results: &mut [Option<Result<Outcome, ItemProblem>>],
    ) -> (BTreeSet<usize>, Option<StoreError>, Vec<(usize, Location)>) {
        if !self.store.commits_jointly() {
            return self.commit_in_steps(plan, pending, results).await;
        }
        let Plan {
            lists,
            items,
            binds,
            ..
        } = plan;
        let groups = groups(&lists, &items);
        let mut committed: BTreeSet<String> = BTreeSet::new();
        let mut stop = None;
        for members in &groups {
            let txns: Vec<(String, Txn)> = members
                .iter()
                .filter(|l| lists[**l].work.is_dirty())
                .map(|l| ((*l).to_owned(), txn_of(&lists[*l])))
                .collect();
            let pairs: Vec<(String, Location)> = binds
                .iter()
                .filter(|b| members.contains(&b.at.list.as_str()))
                .map(|b| (b.credential_id.clone(), b.at.clone()))
                .collect();
            if !txns.is_empty() {
                match self.store.commit_joint(&txns, &pairs).await {
                    Ok(_) => {}
                    // Its items are planned again; the other groups go on.
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => {
                        stop = Some(e);
                        break;
                    }
                }
            }
            committed.extend(members.iter().map(|l| (*l).to_owned()));
        }
        let done = settle(
            items,
            &committed,
            BTreeMap::new(),
            BTreeMap::new(),
            pending,
            results,
        )
        .0;
        (done, stop, Vec::new())
    }

    /// [`Issuer::commit`] each list on its own, for a store that cannot commit lists and
    /// bindings together (a Redis Cluster: the credential-id keys live in other slots than the lists).
    ///
    /// Two steps, each one round trip: every list's commit, each with the bindings of the ids
    /// it registers, sent together; then, once all of them are in and each reissue's new id is
    /// bound to its new card, the lists that revoke the old cards of reissues whose new card is
    /// elsewhere (`Plan::later`). The parents' bindings learn their new derived cards' places
    /// beside the first step ([`Registry::hint_children`]). A derived registration is three
    /// round trips (the locate, the first read, the commits), a cascade across lists three (the
    /// card's binding names its derived cards' lists, read with the card's; four without that
    /// hint), a reissue across lists four (the old card's revocation waits for the new card),
    /// four for a phone change in a derived pool too (the old card's binding names its parent's
    /// list, read with the old card's; five without that hint). Of concurrent reissues of one
    /// card, the losers were stopped by the old card's mark, taken with the first read
    /// ([`Registry::mark_reissues`]), before anything was written.
    ///
    /// What each point of failure leaves (docs/redis.md has the tables): the lists of one step
    /// land independently, each a compare-and-set on its version; an item some of whose lists
    /// did not commit is planned again, and its idempotent cascade or link finishes it. A
    /// binding whose commit failed or never ran is *pending* (no record at its place): the
    /// next plan takes the id as not registered and a registration of it completes it at that
    /// very index, which its claim admits once, however the two commits interleave; a binding
    /// whose index went to another credential is stale and replaced ([`Registry::rebind`]). A
    /// commit whose binding lost to another request's answers with that request's place once
    /// its record is there (its own index stays allocated, unused). A reissue's new card is
    /// never followed by the old card's revocation unless its binding is the new card's: the
    /// old card is revoked only for its true replacement.
    ///
    /// [`Registry::mark_reissues`]: crate::store::registry::Registry::mark_reissues
    /// [`Registry::hint_children`]: crate::store::registry::Registry::hint_children
    /// [`Registry::rebind`]: crate::store::registry::Registry::rebind
    async fn commit_in_steps(
        &self,
        plan: Plan,
        pending: &[usize],
        results: &mut [Option<Result<Outcome, ItemProblem>>],
    ) -> (BTreeSet<usize>, Option<StoreError>, Vec<(usize, Location)>) {
        let Plan {
            lists,
            items,
            binds,
            first,
            later,
            hints,
        } = plan;
        let mut done = Steps::default();
        for (n, step) in steps(lists.keys(), &first, &later).into_iter().enumerate() {
            // The parents' bindings learn where their new derived cards are beside the first
            // step (the links' commits): a hint is never the truth, so one written for a link
            // that did not commit, or one not written, costs a read later, nothing else.
            let hinting = async {
                if n > 0 || hints.is_empty() {
                    return;
                }
                if let Err(e) = self.store.hint_children(&hints).await {
                    tracing::debug!(error = %e, "family hints not written; planning reads without");
                }
            };
            let (go_on, ()) =
                crate::store::together(self.commit_step(&lists, &binds, &step, &mut done), hinting)
                    .await;
            if !go_on {
                break;
            }
        }
        let Steps {
            committed,
            mut lost,
            elsewhere,
            stop,
            unconfirmed,
        } = done;
        if let Some(p) = unconfirmed {
            // Every item committed answers that it is not confirmed by replicas yet.
            for k in 0..items.len() {
                lost.entry(k).or_insert_with(|| p.clone());
            }
        }
        let (done, moved) = settle(items, &committed, lost, elsewhere, pending, results);
        (done, stop, moved)
    }

    /// Commits the lists `step` of a step-wise commit concurrently, each with the bindings of
    /// the ids it registers (one round trip), noting what happened in `done`; returns whether
    /// the next step may go (every list committed, every reissue's new id bound to its card).
    async fn commit_step(
        &self,
        lists: &BTreeMap<String, ListPlan>,
        binds: &[Bind],
        step: &[&String],
        done: &mut Steps,
    ) -> bool {
        let sent = step.iter().map(|list| {
            let lp = &lists[*list];
            let mine: Vec<&Bind> = binds.iter().filter(|b| b.at.list == **list).collect();
            async move {
                let commit = async {
                    if !lp.work.is_dirty() {
                        return Ok(0);
                    }
                    self.store.commit(list, &txn_of(lp)).await
                };
                // The bindings go with the commit, not after it. One set while the commit
                // fails is pending (see `Planner::unsettled`), and settled by the next plan.
                let (committing, binding) =
                    crate::store::together(commit, self.bind_all(&mine)).await;
                (list, mine, committing, binding)
            }
        });
        let mut go_on = true;
        for (list, mine, committing, binding) in crate::store::all_together(sent.collect()).await {
            match committing {
                Ok(_) => {}
                // Its items are planned again; the lists committed beside it stay committed.
                Err(StoreError::Conflict(_)) => {
                    go_on = false;
                    continue;
                }
                // Applied on the primary (the bindings went with it): the operation is whole
                // and a retry finds it done.
                Err(e @ StoreError::NotReplicated { .. }) => {
                    done.unconfirmed.get_or_insert(ItemProblem::from(e));
                }
                Err(e) => {
                    done.stop.get_or_insert(e);
                    go_on = false;
                    continue;
                }
            }
            done.committed.insert((*list).clone());
            // A reissue whose new id another request registered meanwhile must not revoke its
            // old card for that id: the later lists wait for the next plan.
            match binding {
                Ok(bound) => {
                    for (b, bound) in mine.into_iter().zip(bound) {
                        if bound == b.at {
                            continue;
                        }
                        // Another request registered the id first (on another replica: on
                        // this one, registrations of one id do not overlap). This one's index
                        // stays allocated, unused.
                        if b.reissue {
                            go_on = false;
                            done.lost.insert(
                                b.item,
                                ItemProblem::new(
                                    ItemError::RegisteredConcurrently,
                                    format!(
                                        "{:?} was registered concurrently by another request",
                                        b.credential_id
                                    ),
                                ),
                            );
                        } else {
                            done.elsewhere.insert(b.item, bound);
                        }
                    }
                }
                Err(e) => {
                    let p = ItemProblem::from(e);
                    for b in mine {
                        go_on &= !b.reissue;
                        done.lost.insert(b.item, p.clone());
                    }
                }
            }
        }
        go_on
    }

    /// Sets the bindings `binds` (replacing the stale ones they name) all at once; returns the
    /// bindings in force afterwards, in order.
    async fn bind_all(&self, binds: &[&Bind]) -> Result<Vec<Location>, StoreError> {
        let binding = |b: &Bind| Binding {
            at: b.at.clone(),
            parent: b.parent.clone(),
            children: Vec::new(),
        };
        let fresh: Vec<(String, Binding)> = binds
            .iter()
            .filter(|b| b.stale.is_none())
            .map(|b| (b.credential_id.clone(), binding(b)))
            .collect();
        let rebinds = binds.iter().filter_map(|b| {
            let stale = b.stale.as_ref()?;
            let at = binding(b);
            Some(async move { self.store.rebind(&b.credential_id, stale, &at).await })
        });
        let (fresh, rebound) = crate::store::together(
            async {
                if fresh.is_empty() {
                    return Ok(Vec::new());
                }
                self.store.bind(&fresh).await
            },
            crate::store::all_together(rebinds.collect()),
        )
        .await;
        let (mut fresh, mut rebound) = (fresh?.into_iter(), rebound.into_iter());
        binds
            .iter()
            .map(|b| match b.stale {
                None => Ok(fresh.next().expect("one per fresh binding")),
                Some(_) => rebound.next().expect("one per rebinding"),
            })
            .collect()
    }
}

/// What the steps of a step-wise commit did so far.
#[derive(Default)]
struct Steps {
    /// The lists committed.
    committed: BTreeSet<String>,
    /// Items whose commit went in but that answer a problem (their binding failed or lost).
    lost: BTreeMap<usize, ItemProblem>,
    /// Registrations whose id another request bound first, with that binding.
    elsewhere: BTreeMap<usize, Location>,
    /// The error that stopped the commit (not a conflict: the items are planned again).
    stop: Option<StoreError>,
    /// The first commit applied on the primary but not confirmed by its replicas.
    unconfirmed: Option<ItemProblem>,
}

/// The steps of a step-wise commit of `lists`: every list not `later` together, then the
/// `later` ones together, unless one of them holds a reissue's new card too (`first`: two
/// reissues of one batch, each card's replacement in the other's list), then one by one, those
/// first. No step is empty.
fn steps<'a>(
    lists: impl Iterator<Item = &'a String>,
    first: &'a BTreeSet<String>,
    later: &'a BTreeSet<String>,
) -> Vec<Vec<&'a String>> {
    let now: Vec<&String> = lists.filter(|l| !later.contains(*l)).collect();
    let mut steps = vec![now];
    if first.is_disjoint(later) {
        steps.push(later.iter().collect());
    } else {
        steps.extend(later.iter().filter(|l| first.contains(*l)).map(|l| vec![l]));
        steps.extend(
            later
                .iter()
                .filter(|l| !first.contains(*l))
                .map(|l| vec![l]),
        );
    }
    steps.retain(|s| !s.is_empty());
    steps
}

/// The commit of what `lp`'s plan changed: at the version it was read at, claiming the indices
/// it allocated.
fn txn_of(lp: &ListPlan) -> Txn {
    let (records, changes) = lp.work.writes();
    Txn {
        expect_version: lp.version,
        claim: lp.work.claims.iter().collect(),
        records,
        changes,
        extends: lp.work.extends(),
    }
}

/// The lists of a plan in groups that items tie together (a reissue whose new card lands in
/// another list), each group's lists in order.
fn groups<'a>(
    lists: &'a BTreeMap<String, ListPlan>,
    items: &[(Result<Outcome, ItemProblem>, BTreeSet<String>)],
) -> Vec<Vec<&'a str>> {
    // Union-find over the lists: each points to another of its group, a group's root to itself.
    let mut up: BTreeMap<&str, &str> = lists.keys().map(|l| (l.as_str(), l.as_str())).collect();
    fn root<'a>(up: &BTreeMap<&'a str, &'a str>, mut l: &'a str) -> &'a str {
        while up[l] != l {
            l = up[l];
        }
        l
    }
    for (_, touched) in items {
        let mut roots: Vec<&str> = touched.iter().map(|l| root(&up, l)).collect();
        roots.sort_unstable();
        roots.dedup();
        if let Some((&first, rest)) = roots.split_first() {
            for &r in rest {
                up.insert(r, first);
            }
        }
    }
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for l in lists.keys() {
        groups.entry(root(&up, l)).or_default().push(l);
    }
    groups.into_values().collect()
}

/// Records the result of every item whose lists are all `committed` (the problem in `lost`
/// instead, where there is one); returns their positions in `ops`, and those of the
/// registrations bound `elsewhere` with that binding.
fn settle(
    items: Vec<(Result<Outcome, ItemProblem>, BTreeSet<String>)>,
    committed: &BTreeSet<String>,
    mut lost: BTreeMap<usize, ItemProblem>,
    mut elsewhere: BTreeMap<usize, Location>,
    pending: &[usize],
    results: &mut [Option<Result<Outcome, ItemProblem>>],
) -> (BTreeSet<usize>, Vec<(usize, Location)>) {
    let mut done = BTreeSet::new();
    let mut moved = Vec::new();
    for (k, (result, touched)) in items.into_iter().enumerate() {
        if touched.iter().all(|l| committed.contains(l)) {
            let i = pending[k];
            results[i] = Some(match lost.remove(&k) {
                Some(p) => Err(p),
                None => result,
            });
            if let Some(at) = elsewhere.remove(&k) {
                moved.push((i, at));
            }
            done.insert(i);
        }
    }
    (done, moved)
}

#[cfg(test)]
mod tests {
    use super::steps;
    use std::collections::BTreeSet;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// A cascade commits every list at once; a reissue across lists revokes its old card (in
    /// its list and the lists it cascades to) only after the rest; two reissues crosswise in one
    /// batch go one list at a time, the new cards' lists first.
    #[test]
    fn a_step_wise_commit_revokes_old_cards_last() {
        let lists = set(&["default-1", "mobile-1", "mobile-2"]);
        let run = |first: &[&str], later: &[&str]| {
            let (first, later) = (set(first), set(later));
            steps(lists.iter(), &first, &later)
                .into_iter()
                .map(|s| {
                    s.into_iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&[], &[]), ["default-1 mobile-1 mobile-2"]);
        assert_eq!(
            run(&["mobile-2"], &["mobile-1"]),
            ["default-1 mobile-2", "mobile-1"]
        );
        assert_eq!(
            run(&["default-1"], &["mobile-1", "mobile-2"]),
            ["default-1", "mobile-1 mobile-2"]
        );
        assert_eq!(
            run(&["mobile-1", "mobile-2"], &["mobile-1", "mobile-2"]),
            ["default-1", "mobile-1", "mobile-2"]
        );
        assert_eq!(
            run(&["mobile-1"], &["mobile-1", "mobile-2"]),
            ["default-1", "mobile-1", "mobile-2"]
        );
    }
}
