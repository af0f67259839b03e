//! Planning a batch, the second of its three steps: locate every credential the batch names,
//! read what their lists hold (at one version per list; every list's first read together, each
//! with the whole families of the records named, so a single write costs one round trip to
//! locate and one to read: issue #22), then run the items in order against that state in
//! memory, allocating indices ([`alloc`]) and applying the lifecycle rules ([`record`]).
//! Nothing is written here: the result is a [`Plan`], which the apply flow commits.
//!
//! [`alloc`]: super::alloc
//! [`record`]: super::record

mod family;

use super::record::{ListWork, Record, RuleError, Stamp};
use super::{
    alloc, Affected, Issuer, ItemError, ItemProblem, Operation, Outcome, Registration, ReissueOp,
    DEFAULT_HOLD,
};
use crate::status::Status;
use crate::store::registry::{Binding, Location, MetaRecords, MetasOf, Registry};
use crate::store::{ListMeta, Store, StoreError};
use family::Cascade;
use roaring::RoaringBitmap;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Every list's metadata, read once per plan, and only when a top-level card needs a list
/// chosen; lists this plan creates are added.
type Metas = Option<Vec<ListMeta>>;

/// One list's state during planning.
pub(super) struct ListPlan {
    pub(super) meta: ListMeta,
    /// The version the list was read at: its commit expects it.
    pub(super) version: u64,
    pub(super) work: ListWork,
    /// The list's allocated indices, read when the plan allocates one there.
    allocated: Option<RoaringBitmap>,
}

impl ListPlan {
    /// A list as first read, at `meta`'s version, with no record taken yet.
    fn read_at(meta: ListMeta) -> Result<ListPlan, crate::status::StatusError> {
        Ok(ListPlan {
            work: ListWork::new(meta.bits()?, BTreeMap::new()),
            version: meta.version,
            meta,
            allocated: None,
        })
    }
}

/// A planned batch.
pub(super) struct Plan {
    pub(super) lists: BTreeMap<String, ListPlan>,
    /// Per item (by position among the planned items): its outcome or failure, and the lists
    /// it writes.
    pub(super) items: Vec<(Result<Outcome, ItemProblem>, BTreeSet<String>)>,
    /// New bindings, committed with their list (in the same step where the store can).
    pub(super) binds: Vec<Bind>,
    /// Lists holding the new card of a reissue whose old card is elsewhere.
    pub(super) first: BTreeSet<String>,
    /// Lists that revoke the old card of a reissue whose new card is elsewhere (its list and
    /// those its revocation cascades to): where commits are not joint, committed only once
    /// every other list is, the new card bound to its id (`Issuer::commit_in_steps`).
    pub(super) later: BTreeSet<String>,
    /// Where commits are not joint, the derived cards this plan links to a parent elsewhere:
    /// `(parent id, parent's place, card's place)`, remembered in the parent's binding
    /// ([`Registry::hint_children`]).
    pub(super) hints: Vec<(String, Location, Location)>,
}

/// A credential id to bind once its list is committed.
pub(super) struct Bind {
    pub(super) credential_id: String,
    pub(super) at: Location,
    /// The item (by position among the planned items).
    pub(super) item: usize,
    /// The new card of a reissue (not a registration).
    pub(super) reissue: bool,
    /// Where the id is bound already, a place that can never hold its record (the index went to
    /// another credential): that binding is replaced ([`Registry::rebind`]).
    pub(super) stale: Option<Location>,
    /// The card's parent's place, if in another list: a hint kept with the binding where the
    /// store keeps hints ([`crate::store::registry::Binding`]).
    pub(super) parent: Option<Location>,
}

/// Why planning stopped: a list moved between two reads (plan again), or the store failed.
pub(super) enum PlanAbort {
    Moved,
    Store(StoreError),
}

impl From<StoreError> for PlanAbort {
    fn from(e: StoreError) -> Self {
        PlanAbort::Store(e)
    }
}

/// Why planning one item stopped: the item fails (the plan goes on), or the plan does.
pub(super) enum Step {
    Item(ItemProblem),
    Abort(PlanAbort),
}

impl From<PlanAbort> for Step {
    fn from(a: PlanAbort) -> Self {
        Step::Abort(a)
    }
}

impl From<ItemProblem> for Step {
    fn from(p: ItemProblem) -> Self {
        Step::Item(p)
    }
}

/// Who runs a batch and when: what every item's audit stamp records.
pub(super) struct Actor<'a> {
    /// The admin token's name.
    pub(super) by: &'a str,
    /// The subject of the TLS client certificate presented with it, if any.
    pub(super) client_subject: Option<&'a str>,
    /// Unix milliseconds.
    pub(super) at: u64,
    /// Random, one per request: in the marks its reissues take
    /// ([`Registry::mark_reissues`]), so that a reissue that fails its checks gives back only
    /// the mark it took itself.
    pub(super) token: u64,
}

/// One planning pass: what the store held when it began, and what the items planned so far did
/// to it.
struct Planner<'a> {
    issuer: &'a Issuer,
    actor: &'a Actor<'a>,
    /// Where the credentials the batch names were bound when planning began.
    located: HashMap<String, Location>,
    /// Where the credentials this plan registers go.
    planned: HashMap<String, Location>,
    /// Ids bound where no record of theirs is (where bindings are set beside the commit, not in
    /// it: a Redis Cluster): a registration not committed yet, or one whose commit lost its
    /// index to another credential. Not registered, for every operation; a registration of the
    /// id completes it at that index, or replaces the binding once the index went to another.
    unsettled: HashMap<String, Location>,
    metas: Metas,
    /// The metadata of the lists remembered for the batch's pools, read instead of every list's
    /// ([`Issuer::remembered_pool_lists`]).
    pool_metas: Vec<ListMeta>,
    /// Every list read so far, with the plan's changes to it.
    lists: BTreeMap<String, ListPlan>,
    items: Vec<(Result<Outcome, ItemProblem>, BTreeSet<String>)>,
    binds: Vec<Bind>,
    first: BTreeSet<String>,
    later: BTreeSet<String>,
    hints: Vec<(String, Location, Location)>,
    /// Where commits are not joint (a Redis Cluster), the mark in force on each credential
    /// this batch reissues ([`Registry::mark_reissues`], taken with the first read): the new
    /// id the one reissue that may proceed replaces it with.
    marked: HashMap<Location, String>,
    /// The marks this request took (its own token in them), by the item that took each: given
    /// back if that item fails.
    taken: Vec<(usize, Location, String)>,
}

impl Issuer {
    /// Plans `ops` (checked already) in order against the store's current state.
    pub(super) async fn plan(
        &self,
        actor: &Actor<'_>,
        ops: &[&Operation],
    ) -> Result<Plan, PlanAbort> {
        let mut planner = Planner::read(self, actor, ops).await?;
        for (k, op) in ops.iter().enumerate() {
            planner.item(k, op).await?;
        }
        planner.give_back_marks().await?;
        Ok(planner.finish())
    }

    /// Registration `r` against the record `rec` its id is bound to, at `at` in a list of
    /// `size` entries: `exists`, or `registration-conflict` if the parameters differ.
    pub(super) fn existing_outcome(
        &self,
        r: &Registration,
        at: &Location,
        rec: &Record,
        size: u32,
    ) -> Result<Outcome, ItemProblem> {
        same_registration(r, rec)?;
        Ok(Outcome {
            credential_id: r.credential_id.clone(),
            result: "exists",
            status: rec.status().name(),
            assignment: Some(self.assignment(at, size)),
            affected: Vec::new(),
            new_credential: None,
        })
    }
}

/// Whether registration `r` repeats the one that wrote `rec` (a retry must repeat its kind and
/// parent, and its pool if it names one); if not, the `registration-conflict`.
fn same_registration(r: &Registration, rec: &Record) -> Result<(), ItemProblem> {
    let same = rec.kind == r.kind
        && rec.parent.as_ref().map(|p| &p.credential_id) == r.parent.as_ref()
        && (r.purpose.is_none() || rec.purpose == r.purpose)
        && r.expires_at
            .as_deref()
            .is_none_or(|e| super::operation::parse_expires_at(e).ok() == rec.expires_at);
    if same {
        return Ok(());
    }
    Err(ItemProblem::new(
        ItemError::RegistrationConflict,
        format!(
            "{:?} is already registered with different parameters: kind {:?}, {}{}; \
             a retry must repeat them, a new card needs a new id",
            r.credential_id,
            rec.kind,
            match &rec.parent {
                Some(p) => format!("parent {:?}", p.credential_id),
                None => "no parent".to_owned(),
            },
            match rec.expires_at {
                Some(t) => format!(
                    ", expires_at {}",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)
                    )
                ),
                None => ", no expires_at".to_owned(),
            }
        ),
    ))
}

/// The places in other lists the bindings of `ops`' credentials hint at, by list, that
/// planning them will read (a Redis Cluster's hints, [`Binding`]): the derived cards of a
/// card suspended, reinstated, revoked or reissued (a cascade), and the parent of a card
/// reissued (its new card links to it).
fn hinted_reads(
    ops: &[&Operation],
    bindings: &HashMap<String, Binding>,
) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for op in ops {
        let parent_too = match op {
            Operation::Suspend(_) | Operation::Reinstate(_) | Operation::Revoke(_) => false,
            Operation::Reissue(_) => true,
            _ => continue,
        };
        let Some(b) = bindings.get(op.credential_id()) else {
            continue;
        };
        let parent = b.parent.iter().filter(|_| parent_too);
        for at in b.children.iter().chain(parent) {
            out.entry(at.list.clone()).or_default().push(at.idx);
        }
    }
    for idxs in out.values_mut() {
        idxs.sort_unstable();
        idxs.dedup();
    }
    out
}

impl<'a> Planner<'a> {
    /// Locates everything the batch names and reads what planning it needs to start with.
    async fn read(
        issuer: &'a Issuer,
        actor: &'a Actor<'a>,
        ops: &[&Operation],
    ) -> Result<Planner<'a>, PlanAbort> {
        // Everything the batch names, located at once.
        let mut names: Vec<String> = Vec::new();
        for op in ops {
            names.push(op.credential_id().to_owned());
            match op {
                Operation::Register(r) => names.extend(r.parent.clone()),
                Operation::Reissue(r) => {
                    names.push(r.new_credential_id.clone());
                    names.extend(r.parent.clone());
                }
                _ => {}
            }
        }
        names.sort_unstable();
        names.dedup();
        // Lists' metadata is needed only to choose a list for a new top-level card: read
        // alongside the locations when the batch registers one (the requests share a round
        // trip): only the lists a pool's cards were last chosen among, when this replica
        // remembers them; every list's otherwise. A reissue that names no parent reads every
        // list's with the locate too (the old card may be top-level, and its pool is known only
        // once it is located; if it is derived, the read was spare but cost no round trip).
        let pools: BTreeSet<String> = ops
            .iter()
            .filter_map(|op| match op {
                Operation::Register(r) if r.parent.is_none() => Some(
                    r.purpose
                        .clone()
                        .unwrap_or_else(|| issuer.settings.default_purpose.clone()),
                ),
                Operation::Register(r) => issuer.settings.derived_pool_for(&r.kind),
                _ => None,
            })
            .collect();
        let pools: BTreeSet<&str> = pools.iter().map(String::as_str).collect();
        let unparented_reissue = ops
            .iter()
            .any(|op| matches!(op, Operation::Reissue(r) if r.parent.is_none()));
        let store = &issuer.store;
        let remembered = (!pools.is_empty() && !unparented_reissue)
            .then(|| issuer.remembered_pool_lists(&pools))
            .flatten();
        let (metas, pool_metas, found): (Metas, _, _) = match remembered {
            _ if pools.is_empty() && !unparented_reissue => {
                (None, Vec::new(), store.locate_bindings(&names).await?)
            }
            Some(ids) => {
                let (read, found) = store
                    .locate_with_metas(&names, MetasOf::These(&ids))
                    .await?;
                (None, read, found)
            }
            None => {
                let (all, found) = store.locate_with_metas(&names, MetasOf::Every).await?;
                (Some(all), Vec::new(), found)
            }
        };
        let bindings: HashMap<String, Binding> = names
            .into_iter()
            .zip(found)
            .filter_map(|(n, b)| Some((n, b?)))
            .collect();
        let hinted = if store.commits_jointly() {
            BTreeMap::new()
        } else {
            hinted_reads(ops, &bindings)
        };
        let located: HashMap<String, Location> =
            bindings.into_iter().map(|(n, b)| (n, b.at)).collect();
        let mut by_list: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for l in located.values() {
            by_list.entry(l.list.clone()).or_default().push(l.idx);
        }
        for idxs in by_list.values_mut() {
            idxs.sort_unstable();
            idxs.dedup();
        }
        let mut planner = Planner {
            issuer,
            actor,
            located,
            planned: HashMap::new(),
            unsettled: HashMap::new(),
            metas,
            pool_metas,
            lists: BTreeMap::new(),
            items: Vec::with_capacity(ops.len()),
            binds: Vec::new(),
            first: BTreeSet::new(),
            later: BTreeSet::new(),
            hints: Vec::new(),
            marked: HashMap::new(),
            taken: Vec::new(),
        };
        // Where a reissue commits its new card before revoking its old one (a store that does
        // not commit jointly), the old card is marked for its new one first, with the reads:
        // of concurrent reissues of one card, exactly one gets past its mark, before anything
        // is written. The first reissue of a card in the batch marks it.
        // A mark is `<new id> <token>`: ids hold no space.
        let mut marks: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
        let mut markers: HashMap<Location, usize> = HashMap::new();
        if !store.commits_jointly() {
            for (k, op) in ops.iter().enumerate() {
                if let Operation::Reissue(r) = op {
                    if let Some(at) = planner.located.get(&r.credential_id) {
                        if !markers.contains_key(at) {
                            markers.insert(at.clone(), k);
                            marks.entry(at.list.clone()).or_default().push((
                                at.idx,
                                format!("{} {:016x}", r.new_credential_id, actor.token),
                            ));
                        }
                    }
                }
            }
        }
        // Every list's first read at once, each with the families of the records named: one
        // round trip however many lists the batch names (two for a reissue across lists).
        // Where the store can, each read brings the other lists its records link to as well (a
        // derived pool's cards, their parents), so a cascade across lists reads nothing more.
        // On a Redis Cluster, the lists the bindings' hints name (a derived pool's cards, their
        // parents) are read beside them, each on its own: a hint that leads nowhere costs
        // nothing more, one that is missing or stale the read `prefetch` makes then.
        let hinted: BTreeMap<&String, &Vec<u32>> = hinted
            .iter()
            .filter(|(list, _)| !by_list.contains_key(*list))
            .collect();
        let ((reads, hinted_reads), marked) = crate::store::together(
            crate::store::together(
                crate::store::all_together(
                    by_list
                        .iter()
                        .map(|(list, idxs)| store.list_records_following(list, idxs))
                        .collect(),
                ),
                crate::store::all_together(
                    hinted
                        .iter()
                        .map(|(list, idxs)| store.list_records(list, idxs))
                        .collect(),
                ),
            ),
            crate::store::all_together(
                marks
                    .iter()
                    .map(|(list, m)| store.mark_reissues(list, m))
                    .collect(),
            ),
        )
        .await;
        for ((list, m), marked) in marks.iter().zip(marked) {
            for ((idx, mine), mark) in m.iter().zip(marked?) {
                let at = Location {
                    list: list.clone(),
                    idx: *idx,
                };
                if mark == *mine {
                    planner.taken.push((markers[&at], at.clone(), mark.clone()));
                }
                let new = mark.split_once(' ').map_or(mark.as_str(), |(id, _)| id);
                planner.marked.insert(at, new.to_owned());
            }
        }
        let mut followed = Vec::new();
        for (list, read) in by_list.keys().zip(reads) {
            let mut read = read?.into_iter();
            let (own, first) = read.next().ok_or_else(|| {
                StoreError::Backend(format!("the store read nothing of list {list:?}"))
            })?;
            debug_assert_eq!(own, *list);
            let linked = planner.first_read(list, first)?;
            planner.load(list, &linked).await?;
            followed.extend(read);
        }
        // The lists linked to or hinted at, as first read with the lists named, unless read
        // already. A hinted read that failed is left out, as if never made.
        let hinted = hinted
            .keys()
            .zip(hinted_reads)
            .filter_map(|(list, read)| Some(((*list).clone(), read.ok()?)));
        for (list, read) in followed.into_iter().chain(hinted) {
            if let Some(linked) = planner.first_read_followed(&list, read) {
                planner.load(&list, &linked).await?;
            }
        }
        if !store.commits_jointly() {
            let lists = &planner.lists;
            let unsettled: Vec<String> = planner
                .located
                .iter()
                .filter(|(id, at)| {
                    lists[&at.list]
                        .work
                        .get(at.idx)
                        .is_none_or(|r| r.credential_id != **id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in unsettled {
                let at = planner.located.remove(&id).expect("located");
                planner.unsettled.insert(id, at);
            }
        }
        // Families across lists (a derived pool): one more round trip, only when there are any
        // the first reads did not bring (a Redis Cluster whose bindings' hints missed them).
        planner.prefetch(ops).await?;
        Ok(planner)
    }

    /// Gives back the marks this request took for reissues that failed their checks (one round
    /// trip, only then), so that a reissue refused (an unknown parent, a new id taken) does not
    /// bind the old card to a new id that will never come.
    async fn give_back_marks(&self) -> Result<(), PlanAbort> {
        let mut back: BTreeMap<&str, Vec<(u32, String)>> = BTreeMap::new();
        for (k, at, mark) in &self.taken {
            if self.items[*k].0.is_err() {
                back.entry(&at.list)
                    .or_default()
                    .push((at.idx, mark.clone()));
            }
        }
        let store = &self.issuer.store;
        let done = crate::store::all_together(
            back.iter()
                .map(|(list, m)| store.unmark_reissues(list, m))
                .collect(),
        )
        .await;
        for d in done {
            d?;
        }
        Ok(())
    }

    /// The plan, once every item is planned.
    fn finish(self) -> Plan {
        Plan {
            lists: self.lists,
            items: self.items,
            binds: self.binds,
            first: self.first,
            later: self.later,
            hints: self.hints,
        }
    }

    /// Refuses an operation on a credential in a retired list (loaded): it takes no changes.
    fn alive(&self, at: &Location) -> Result<(), ItemProblem> {
        match self.lists[&at.list].meta.life.retired_at {
            None => Ok(()),
            Some(t) => Err(ItemProblem::new(
                ItemError::ListRetired,
                format!(
                    "list {:?} was retired at {} (every credential in it had expired): it is no \
                     longer published and takes no more changes",
                    at.list,
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)
                    )
                ),
            )),
        }
    }

    /// Where credential `id` is: bound when planning began, or placed by this plan.
    fn find(&self, id: &str) -> Option<Location> {
        self.located
            .get(id)
            .or_else(|| self.planned.get(id))
            .cloned()
    }

    /// Adds `list` to the plan's lists from its first read (its metadata and the records read
    /// with it: those wanted and their families); returns the indices those records link to.
    fn first_read(&mut self, list: &str, (meta, recs): MetaRecords) -> Result<Vec<u32>, PlanAbort> {
        let lp = ListPlan::read_at(meta).map_err(StoreError::from)?;
        let lp = self.lists.entry(list.to_owned()).or_insert(lp);
        Ok(take_records(lp, list, recs)?)
    }

    /// Adds `list` to the plan's lists from a read that followed a link into it (what
    /// [`Registry::list_records_following`] brings besides the list asked for), unless the plan
    /// holds it already; returns the indices those records link to. A read whose records do not
    /// decode is left out, as if it had not been made: planning reads the list again if it
    /// needs it, and reports that then.
    fn first_read_followed(&mut self, list: &str, (meta, recs): MetaRecords) -> Option<Vec<u32>> {
        if self.lists.contains_key(list) {
            return None;
        }
        let mut lp = ListPlan::read_at(meta).ok()?;
        let linked = take_records(&mut lp, list, recs).ok()?;
        self.lists.insert(list.to_owned(), lp);
        Some(linked)
    }

    /// Loads (once) the records at `idxs` of `list` and everything they link to, at one
    /// version. A list not loaded yet is read with its metadata and the families of the records
    /// wanted in one round trip (none when `metas` holds it and no record is wanted); records
    /// of a list loaded already, and any their links name that are missing, are read by index,
    /// one round trip per generation.
    async fn load(&mut self, list: &str, idxs: &[u32]) -> Result<(), PlanAbort> {
        let store = &self.issuer.store;
        let mut want: Vec<u32> = idxs.to_vec();
        want.sort_unstable();
        want.dedup();
        if !self.lists.contains_key(list) {
            let known = self
                .metas
                .iter()
                .flatten()
                .chain(&self.pool_metas)
                .find(|m| m.id == list);
            let read = match known {
                Some(meta) if want.is_empty() => (meta.clone(), BTreeMap::new()),
                _ => store.list_records(list, &want).await?,
            };
            want = self.first_read(list, read)?;
        }
        loop {
            let lp = self.lists.get_mut(list).expect("inserted above");
            want.retain(|i| !lp.work.records.contains_key(i));
            want.sort_unstable();
            want.dedup();
            if want.is_empty() {
                return Ok(());
            }
            let (version, recs) = store.records(list, &want).await?;
            if version != lp.version {
                return Err(PlanAbort::Moved);
            }
            let found = want.iter().copied().zip(recs);
            want = take_records(lp, list, found.filter_map(|(i, r)| Some((i, r?))))?;
        }
    }

    /// Makes sure `list` is loaded with its allocated indices: from this replica's cache of
    /// them when the store keeps one (no round trip), else read at the list's version.
    async fn ensure_allocated(&mut self, list: &str) -> Result<(), PlanAbort> {
        self.load(list, &[]).await?;
        let store = &self.issuer.store;
        let lp = self.lists.get_mut(list).expect("loaded");
        if lp.allocated.is_none() {
            if let Some(bitmap) = store.allocated_cached(list) {
                lp.allocated = Some(bitmap);
                return Ok(());
            }
            let (version, bitmap) = store.allocated(list).await?;
            if version != lp.version {
                return Err(PlanAbort::Moved);
            }
            lp.allocated = Some(bitmap);
        }
        Ok(())
    }

    /// Plans item `k`: its outcome or problem joins the plan; only a plan-wide abort stops it.
    async fn item(&mut self, k: usize, op: &Operation) -> Result<(), PlanAbort> {
        let mut stamp = op.stamp(self.actor.by, self.actor.at);
        stamp.client_subject = self.actor.client_subject.map(str::to_owned);
        let mut touched = BTreeSet::new();
        let result = match op {
            Operation::Register(r) => self.register(k, r, &stamp, &mut touched).await,
            Operation::Suspend(h) | Operation::Reinstate(h) => {
                let suspend = matches!(op, Operation::Suspend(_));
                self.hold(
                    suspend,
                    &h.credential_id,
                    h.hold.as_deref(),
                    &stamp,
                    &mut touched,
                )
                .await
            }
            Operation::Revoke(r) => self.revoke(&r.credential_id, &stamp, &mut touched).await,
            Operation::Reissue(r) => self.reissue(k, r, &stamp, &mut touched).await,
        };
        let result = match result {
            Ok(o) => Ok(o),
            Err(Step::Item(p)) => Err(p),
            Err(Step::Abort(a)) => return Err(a),
        };
        self.items.push((result, touched));
        Ok(())
    }

    /// `register`: an idempotent retry, a conflicting one, or a new card.
    async fn register(
        &mut self,
        k: usize,
        r: &Registration,
        stamp: &Stamp,
        touched: &mut BTreeSet<String>,
    ) -> Result<Outcome, Step> {
        if let Some(at) = self.located.get(&r.credential_id).cloned() {
            // A retry: it also mends the parent's link to a derived card in another list.
            if self
                .lists
                .get(&at.list)
                .is_some_and(|lp| lp.work.get(at.idx).is_some())
            {
                self.link(&at, stamp, touched).await?;
            }
            return self.existing(r, &at);
        }
        if self.planned.contains_key(&r.credential_id) {
            return Err(Step::Item(ItemProblem::new(
                ItemError::DuplicateInBatch,
                format!("{:?} is registered twice in this batch", r.credential_id),
            )));
        }
        let at = self.place(r, None, stamp, touched).await?;
        let lp = &self.lists[&at.list];
        let outcome = Outcome {
            credential_id: r.credential_id.clone(),
            result: "registered",
            status: lp.work.get(at.idx).expect("registered").status().name(),
            assignment: Some(self.issuer.assignment(&at, lp.meta.size)),
            affected: Vec::new(),
            new_credential: None,
        };
        self.binds.push(Bind {
            credential_id: r.credential_id.clone(),
            stale: self.stale_binding(&r.credential_id, &at),
            parent: self.parent_elsewhere(&at),
            at,
            item: k,
            reissue: false,
        });
        Ok(outcome)
    }

    /// `suspend` (`suspend` true) or `reinstate` of hold `hold` (default `loss`).
    async fn hold(
        &mut self,
        suspend: bool,
        id: &str,
        hold: Option<&str>,
        stamp: &Stamp,
        touched: &mut BTreeSet<String>,
    ) -> Result<Outcome, Step> {
        let at = self.find(id).ok_or_else(|| ItemProblem::unknown(id))?;
        self.alive(&at)?;
        let hold = hold.unwrap_or(DEFAULT_HOLD);
        let lp = self
            .lists
            .get_mut(&at.list)
            .expect("located lists are loaded");
        let before = family_status(&lp.work, at.idx);
        let changed = if suspend {
            lp.work.suspend(at.idx, hold, stamp)
        } else {
            lp.work.reinstate(at.idx, hold, stamp)
        }
        .map_err(ItemProblem::from)?;
        touched.insert(at.list.clone());
        let cascade = if suspend {
            Cascade::Hold(hold)
        } else {
            Cascade::Lift(hold)
        };
        let (elsewhere, affected) = self.cascade(&at, cascade, stamp, touched).await?;
        let lp = &self.lists[&at.list];
        let mut outcome = changed_outcome(id, &lp.work, at.idx, changed || elsewhere, &before);
        outcome.affected.extend(affected);
        Ok(outcome)
    }

    /// `revoke`.
    async fn revoke(
        &mut self,
        id: &str,
        stamp: &Stamp,
        touched: &mut BTreeSet<String>,
    ) -> Result<Outcome, Step> {
        let at = self.find(id).ok_or_else(|| ItemProblem::unknown(id))?;
        self.alive(&at)?;
        let lp = self
            .lists
            .get_mut(&at.list)
            .expect("located lists are loaded");
        let before = family_status(&lp.work, at.idx);
        let changed = lp
            .work
            .revoke(at.idx, None, stamp)
            .map_err(ItemProblem::from)?;
        touched.insert(at.list.clone());
        let (elsewhere, affected) = self.cascade(&at, Cascade::Revoke, stamp, touched).await?;
        let lp = &self.lists[&at.list];
        let mut outcome = changed_outcome(id, &lp.work, at.idx, changed || elsewhere, &before);
        outcome.affected.extend(affected);
        Ok(outcome)
    }

    /// `reissue`: the new card (already there from an earlier attempt, or registered now),
    /// then the old one revoked as replaced by it.
    async fn reissue(
        &mut self,
        k: usize,
        r: &ReissueOp,
        stamp: &Stamp,
        touched: &mut BTreeSet<String>,
    ) -> Result<Outcome, Step> {
        let old_at = self
            .find(&r.credential_id)
            .ok_or_else(|| ItemProblem::unknown(&r.credential_id))?;
        self.alive(&old_at)?;
        let old = self.lists[&old_at.list]
            .work
            .get(old_at.idx)
            .expect("located records are loaded")
            .clone();
        // A replacement recorded, or else one marked (by a reissue not finished, or this one).
        let replaced_by = old
            .replaced_by
            .as_ref()
            .or_else(|| self.marked.get(&old_at));
        if let Some(done) = replaced_by {
            if *done != r.new_credential_id {
                return Err(Step::Item(
                    RuleError::AlreadyReissued(old.credential_id.clone(), done.clone()).into(),
                ));
            }
        }
        let new_at = match self.find(&r.new_credential_id) {
            Some(at) => {
                let rec = self.lists[&at.list].work.get(at.idx);
                if rec.and_then(|n| n.replaces.as_deref()) != Some(&r.credential_id) {
                    return Err(Step::Item(ItemProblem::new(
                        ItemError::RegistrationConflict,
                        format!(
                            "{:?} is already registered, not as the replacement of {:?}",
                            r.new_credential_id, r.credential_id
                        ),
                    )));
                }
                // A retry: it also mends the parent's link to a new card in another list.
                self.link(&at, stamp, touched).await?;
                at
            }
            None => {
                let parent = match (&r.parent, &old.parent) {
                    (Some(p), _) => Some(p.clone()),
                    (None, Some(p)) => {
                        // Not named by the batch, so not located: where the old card's record
                        // says (read with it, as its family, or with the derived cards
                        // elsewhere of the batch: `family`).
                        let at = Location {
                            list: p.list.clone().unwrap_or_else(|| old_at.list.clone()),
                            idx: p.idx,
                        };
                        self.load_elsewhere(std::slice::from_ref(&at)).await?;
                        self.located.entry(p.credential_id.clone()).or_insert(at);
                        Some(p.credential_id.clone())
                    }
                    (None, None) => None,
                };
                // A derived card's pool is the configuration's once it has one (a card
                // registered in its parent's pool before keeps no claim to it).
                let purpose = old.purpose.clone().filter(|_| {
                    parent.is_none() || self.issuer.settings.derived_pool_for(&old.kind).is_none()
                });
                let reg = Registration {
                    credential_id: r.new_credential_id.clone(),
                    kind: old.kind.clone(),
                    parent,
                    purpose,
                    reason: Some(r.reason.clone()),
                    request_id: r.request_id.clone(),
                    expires_at: r.expires_at.clone(),
                };
                let at = self
                    .place(&reg, Some(&r.credential_id), stamp, touched)
                    .await?;
                self.binds.push(Bind {
                    credential_id: r.new_credential_id.clone(),
                    stale: self.stale_binding(&r.new_credential_id, &at),
                    parent: self.parent_elsewhere(&at),
                    at: at.clone(),
                    item: k,
                    reissue: true,
                });
                at
            }
        };
        let across = new_at.list != old_at.list;
        if across {
            self.first.insert(new_at.list.clone());
        }
        let touched_before = touched.clone();
        let lp = self.lists.get_mut(&old_at.list).expect("loaded");
        let before = family_status(&lp.work, old_at.idx);
        let changed = lp
            .work
            .revoke(old_at.idx, Some(&r.new_credential_id), stamp)
            .map_err(ItemProblem::from)?;
        touched.insert(old_at.list.clone());
        let (elsewhere, affected) = self
            .cascade(&old_at, Cascade::Revoke, stamp, touched)
            .await?;
        if across {
            // The revocation waits for the new card where commits are not joint.
            self.later.insert(old_at.list.clone());
            self.later
                .extend(touched.difference(&touched_before).cloned());
        }
        let lp = &self.lists[&old_at.list];
        let mut outcome = changed_outcome(
            &r.credential_id,
            &lp.work,
            old_at.idx,
            changed || elsewhere,
            &before,
        );
        outcome.affected.extend(affected);
        let new_lp = &self.lists[&new_at.list];
        outcome.new_credential = Some(Box::new(Outcome {
            credential_id: r.new_credential_id.clone(),
            result: "registered",
            status: new_lp
                .work
                .get(new_at.idx)
                .expect("registered")
                .status()
                .name(),
            assignment: Some(self.issuer.assignment(&new_at, new_lp.meta.size)),
            affected: Vec::new(),
            new_credential: None,
        }));
        Ok(outcome)
    }

    /// An idempotent retry of a registration, or a conflicting one.
    fn existing(&self, r: &Registration, at: &Location) -> Result<Outcome, Step> {
        self.alive(at)?;
        let lp = &self.lists[&at.list];
        let rec = lp.work.get(at.idx).ok_or_else(|| {
            ItemProblem::new(
                ItemError::Corrupt,
                format!(
                    "{:?} is bound to {at}, which has no record",
                    r.credential_id
                ),
            )
        })?;
        self.issuer
            .existing_outcome(r, at, rec, lp.meta.size)
            .map_err(Step::Item)
    }

    /// Places and records a new credential (the new card of a reissue of `replaces`, if
    /// given); returns where.
    async fn place(
        &mut self,
        r: &Registration,
        replaces: Option<&str>,
        stamp: &Stamp,
        touched: &mut BTreeSet<String>,
    ) -> Result<Location, Step> {
        let expires_at = match &r.expires_at {
            Some(e) => {
                let at = super::operation::parse_expires_at(e)?;
                super::operation::check_not_expired(e, at, self.actor.at)?;
                Some(at)
            }
            None => None,
        };
        let kinds = &self.issuer.settings.kinds;
        // With a derived pool, a derived card goes there, linked to its parent across lists.
        let derived_pool = r
            .parent
            .as_ref()
            .and_then(|_| self.issuer.settings.derived_pool_for(&r.kind));
        let parent = match &r.parent {
            Some(p) => {
                let at = self.find(p).ok_or_else(|| {
                    ItemProblem::new(
                        ItemError::UnknownParent,
                        format!("parent {p:?} is not registered"),
                    )
                })?;
                let prec = self.lists[&at.list].work.get(at.idx).ok_or_else(|| {
                    ItemProblem::new(
                        ItemError::UnknownParent,
                        format!("parent {p:?} has no record"),
                    )
                })?;
                if !kinds.may_be_parent(&prec.kind) {
                    return Err(Step::Item(kinds.not_a_parent(p, &prec.kind)));
                }
                self.alive(&at)?;
                if let Some(purpose) = &r.purpose {
                    match &derived_pool {
                        Some(pool) if pool != purpose => {
                            return Err(Step::Item(ItemProblem::bad(format!(
                                "a derived {:?} card goes to pool {pool:?}, not {purpose:?}",
                                r.kind
                            ))));
                        }
                        Some(_) => {}
                        None if self.lists[&at.list].meta.purpose.as_ref() != Some(purpose) => {
                            return Err(Step::Item(ItemProblem::bad(format!(
                                "a derived card lives in its parent's list, whose pool is not {purpose:?}"
                            ))));
                        }
                        None => {}
                    }
                }
                Some(at)
            }
            None => None,
        };
        let pending = self.pending_place(&r.credential_id);
        let list = match (&parent, derived_pool.as_ref()) {
            (Some(p), None) => p.list.clone(),
            (parent, derived) => {
                let purpose = match (parent, derived) {
                    (Some(_), Some(pool)) => pool.clone(),
                    _ => r
                        .purpose
                        .clone()
                        .unwrap_or_else(|| self.issuer.settings.default_purpose.clone()),
                };
                // A pending registration of the id in a list of its pool: completed there.
                match pending {
                    Some(at) if self.lists[&at.list].meta.purpose.as_deref() == Some(&purpose) => {
                        at.list.clone()
                    }
                    _ => self.choose_list(&purpose).await?,
                }
            }
        };
        self.ensure_allocated(&list).await.map_err(Step::Abort)?;
        // Checked again now that the list's allocations are loaded.
        let pending = self.pending_place(&r.credential_id);
        let lp = self.lists.get_mut(&list).expect("loaded");
        let idx = match pending {
            Some(at) if at.list == list => Some(at.idx),
            Some(at) => {
                return Err(Step::Item(ItemProblem::new(
                    ItemError::RegistrationConflict,
                    format!(
                        "{:?} is being registered in list {:?} by a request not finished; \
                         a retry must repeat its parameters, a new card needs a new id",
                        r.credential_id, at.list
                    ),
                )))
            }
            None => alloc::pick_free(
                lp.meta.size,
                lp.allocated.as_ref().expect("loaded"),
                &lp.work.claims,
            ),
        }
        .ok_or_else(|| {
            ItemProblem::new(
                ItemError::ListFull,
                format!(
                    "list {list:?} has no free index left{}",
                    if parent.is_some() && derived_pool.is_none() {
                        " for a card derived from a card in it"
                    } else {
                        ""
                    }
                ),
            )
        })?;
        let record = Record {
            credential_id: r.credential_id.clone(),
            kind: r.kind.clone(),
            parent: None,
            children: Vec::new(),
            children_elsewhere: Vec::new(),
            holds: BTreeSet::new(),
            revoked: false,
            replaced_by: None,
            replaces: replaces.map(str::to_owned),
            purpose: r.purpose.clone(),
            expires_at,
            history: Vec::new(),
        };
        let mut reg_stamp = stamp.clone();
        reg_stamp.op = if replaces.is_some() {
            "reissue"
        } else {
            "register"
        };
        reg_stamp.hold = None;
        let at = Location {
            list: list.clone(),
            idx,
        };
        match (&parent, &derived_pool) {
            (Some(p), Some(_)) => {
                let prec = self.lists[&p.list].work.get(p.idx).expect("found").clone();
                let lp = self.lists.get_mut(&list).expect("loaded");
                lp.work
                    .register_derived(idx, record, &prec, p, &reg_stamp)
                    .map_err(ItemProblem::from)?;
                touched.insert(list.clone());
                self.link(&at, stamp, touched).await?;
            }
            _ => {
                lp.work
                    .register(idx, record, parent.as_ref().map(|p| p.idx), &reg_stamp)
                    .map_err(ItemProblem::from)?;
                touched.insert(list.clone());
            }
        }
        self.planned.insert(r.credential_id.clone(), at.clone());
        Ok(at)
    }

    /// Where an earlier registration of `id`, not committed yet (or never to be: it failed or
    /// its replica stopped), bound it: the place a registration of `id` completes, so that
    /// however the two commits interleave, the id ends with one record at one index (the
    /// claim of that index admits one of them; the other plans again and finds it). `None` if
    /// `id` is not bound, or bound to an index that went to another credential.
    fn pending_place(&self, id: &str) -> Option<Location> {
        let at = self.unsettled.get(id)?;
        let lp = &self.lists[&at.list];
        // A retired list takes no commit: that registration can never land there.
        if lp.work.get(at.idx).is_some()
            || lp.work.claims.contains(at.idx)
            || lp.meta.life.is_retired()
        {
            return None;
        }
        // Allocated with no record (this replica's bitmap may lag: the commit's claim check
        // is what decides): another credential's, or debris; either way not this id's.
        let allocated = lp.allocated.as_ref().is_some_and(|a| a.contains(at.idx));
        (!allocated).then(|| at.clone())
    }

    /// The binding of `id` that a registration placed at `at` replaces: the one in force, if
    /// it points elsewhere (an index another credential holds).
    fn stale_binding(&self, id: &str, at: &Location) -> Option<Location> {
        self.unsettled.get(id).filter(|s| *s != at).cloned()
    }

    /// The list of pool `purpose` a new top-level card goes to: one of the lists remembered
    /// for the pool while enough of them have room ([`Issuer::choose_remembered`]), else
    /// [`Issuer::choose_list`], reading every list's metadata first if this plan has not.
    async fn choose_list(&mut self, purpose: &str) -> Result<String, Step> {
        if self.metas.is_none() {
            let lists = &self.lists;
            let claims = |id: &str| lists.get(id).map_or(0, |lp| lp.work.claims.len());
            if let Some(id) = self
                .issuer
                .choose_remembered(purpose, claims, &self.pool_metas)
            {
                return Ok(id);
            }
            let all = self
                .issuer
                .store
                .lists()
                .await
                .map_err(|e| Step::Abort(e.into()))?;
            self.metas = Some(all);
        }
        let metas = self.metas.as_mut().expect("read above");
        let lists = &self.lists;
        let claims = |id: &str| lists.get(id).map_or(0, |lp| lp.work.claims.len());
        self.issuer.choose_list(purpose, claims, metas).await
    }
}

/// Takes the records read (by index) into `lp` (rebuilding its work so the status of every
/// record as read is captured); returns the indices they link to.
fn take_records(
    lp: &mut ListPlan,
    list: &str,
    recs: impl IntoIterator<Item = (u32, Vec<u8>)>,
) -> Result<Vec<u32>, StoreError> {
    let mut next = Vec::new();
    let mut recs = recs.into_iter().peekable();
    if recs.peek().is_none() {
        return Ok(next);
    }
    let mut loaded = std::mem::take(&mut lp.work.records);
    for (idx, bytes) in recs {
        let rec = Record::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
            list: list.to_owned(),
            reason: format!("record {idx}: {e}"),
        })?;
        next.extend(rec.children.iter().copied());
        // A parent in another list is read by `family`, not here.
        next.extend(
            rec.parent
                .as_ref()
                .filter(|p| p.list.is_none())
                .map(|p| p.idx),
        );
        loaded.insert(idx, rec);
    }
    debug_assert!(lp.work.claims.is_empty() && !lp.work.is_dirty());
    lp.work = ListWork::new(lp.work.bits, loaded);
    Ok(next)
}

/// The status of a credential's derived cards, to report which ones an operation changed.
fn family_status(work: &ListWork, idx: u32) -> Vec<(u32, Status)> {
    work.get(idx)
        .map(|r| {
            r.children
                .iter()
                .filter_map(|&c| work.get(c).map(|cr| (c, cr.status())))
                .collect()
        })
        .unwrap_or_default()
}

/// The outcome of an operation on the card at `idx` (`changed` or `unchanged`), naming the
/// derived cards whose status moved from `before`.
fn changed_outcome(
    id: &str,
    work: &ListWork,
    idx: u32,
    changed: bool,
    before: &[(u32, Status)],
) -> Outcome {
    let affected = before
        .iter()
        .filter_map(|&(c, old)| {
            let r = work.get(c)?;
            (r.status() != old).then(|| Affected {
                credential_id: r.credential_id.clone(),
                status: r.status().name(),
            })
        })
        .collect();
    Outcome {
        credential_id: id.to_owned(),
        result: if changed { "changed" } else { "unchanged" },
        status: work.get(idx).expect("loaded").status().name(),
        assignment: None,
        affected,
        new_credential: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::tests::{
        affected, card_with_phone, issuer, issuer_with, register, reinstate, reissue, revoke, run,
        status, suspend,
    };
    use crate::issuer::{IssuerError, Settings};

    /// Runs `ops` as one batch that must be refused; returns the failing items' errors.
    async fn refused(issuer: &Issuer, ops: &[Operation]) -> Vec<(usize, ItemError)> {
        match issuer.execute("clerk", ops).await {
            Err(IssuerError::Invalid(items)) => {
                items.into_iter().map(|(i, p)| (i, p.error)).collect()
            }
            other => panic!("expected the batch to be refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn planning_writes_nothing_and_plans_items_in_order() {
        let (issuer, _dir) = issuer();
        run(&issuer, &[register("card-1", "physical", None)]).await;
        let actor = Actor {
            by: "clerk",
            client_subject: None,
            at: 1,
            token: 0,
        };
        let ops = [
            suspend("card-1", None),
            reinstate("card-1", None),
            revoke("card-1"),
        ];
        let plan = issuer
            .plan(&actor, &ops.iter().collect::<Vec<_>>())
            .await
            .ok()
            .expect("planned");
        let outcomes: Vec<_> = plan
            .items
            .iter()
            .map(|(r, touched)| {
                let o = r.as_ref().expect("plans");
                (o.result, o.status, touched.len())
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                ("changed", "SUSPENDED", 1),
                ("changed", "VALID", 1),
                ("changed", "INVALID", 1)
            ]
        );
        assert!(plan.binds.is_empty() && plan.first.is_empty() && plan.later.is_empty());
        // Nothing reached the store.
        assert_eq!(status(&issuer, "card-1").await, "VALID");
    }

    /// A loss report on a physical card puts its derived cards on hold too (`parent:loss`),
    /// and the outcome names them; reinstating lifts only what it put.
    #[tokio::test]
    async fn a_hold_on_a_card_reaches_its_family_and_is_reported() {
        let (issuer, _dir) = issuer();
        run(
            &issuer,
            &[
                register("card-1", "physical", None),
                register("phone-1", "mobile", Some("card-1")),
                register("phone-2", "mobile", Some("card-1")),
            ],
        )
        .await;
        let card = issuer.view("card-1").await.unwrap().unwrap();
        let phone = issuer.view("phone-1").await.unwrap().unwrap();
        assert_eq!(
            phone.assignment.list_id, card.assignment.list_id,
            "a derived card lives in its parent's list"
        );
        assert_eq!(card.children, ["phone-1", "phone-2"]);

        run(&issuer, &[suspend("phone-2", Some("fraud"))]).await;
        let out = run(&issuer, &[suspend("card-1", None)]).await;
        assert_eq!(
            affected(&out[0]),
            [("phone-1", "SUSPENDED")],
            "phone-2 was suspended already: its status did not change"
        );
        let out = run(&issuer, &[reinstate("card-1", None)]).await;
        assert_eq!(affected(&out[0]), [("phone-1", "VALID")]);
        assert_eq!(
            status(&issuer, "phone-2").await,
            "SUSPENDED",
            "its own hold stays"
        );

        let out = run(&issuer, &[revoke("card-1")]).await;
        assert_eq!(
            affected(&out[0]),
            [("phone-1", "INVALID"), ("phone-2", "INVALID")]
        );
    }

    /// Holds are named: a card stays suspended while any hold remains, and lifting a hold it
    /// does not have changes nothing.
    #[tokio::test]
    async fn a_card_stays_suspended_until_its_last_hold_is_lifted() {
        let (issuer, _dir) = issuer();
        run(&issuer, &[register("card-1", "physical", None)]).await;
        let out = run(
            &issuer,
            &[suspend("card-1", None), suspend("card-1", Some("fraud"))],
        )
        .await;
        assert_eq!((out[1].result, out[1].status), ("changed", "SUSPENDED"));
        let out = run(&issuer, &[reinstate("card-1", None)]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "SUSPENDED"));
        let out = run(&issuer, &[reinstate("card-1", None)]).await;
        assert_eq!((out[0].result, out[0].status), ("unchanged", "SUSPENDED"));
        let out = run(&issuer, &[reinstate("card-1", Some("fraud"))]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "VALID"));
        let view = issuer.view("card-1").await.unwrap().unwrap();
        assert!(view.holds.is_empty());
    }

    #[tokio::test]
    async fn revocation_is_terminal() {
        let (issuer, _dir) = issuer();
        run(&issuer, &[register("card-1", "physical", None)]).await;
        run(&issuer, &[revoke("card-1")]).await;
        let out = run(&issuer, &[revoke("card-1")]).await;
        assert_eq!((out[0].result, out[0].status), ("unchanged", "INVALID"));
        for op in [suspend("card-1", None), reinstate("card-1", None)] {
            assert_eq!(refused(&issuer, &[op]).await, [(0, ItemError::Terminal)]);
        }
        assert_eq!(
            refused(&issuer, &[register("phone-1", "mobile", Some("card-1"))]).await,
            [(0, ItemError::ParentRevoked)]
        );
    }

    /// A failing item fails the whole batch before anything is written, and every failure is
    /// reported with its position.
    #[tokio::test]
    async fn a_batch_with_a_failing_item_writes_nothing() {
        let (issuer, _dir) = issuer();
        run(&issuer, &[register("card-1", "physical", None)]).await;
        let errors = refused(
            &issuer,
            &[
                suspend("card-1", None),
                suspend("nobody", None),
                register("card-2", "physical", None),
                register("card-2", "physical", None),
                register("phone-1", "mobile", Some("nobody")),
                register("phone-2", "mobile", Some("card-1")),
                register("phone-3", "mobile", Some("phone-2")),
            ],
        )
        .await;
        assert_eq!(
            errors,
            [
                (1, ItemError::UnknownCredential),
                (3, ItemError::DuplicateInBatch),
                (4, ItemError::UnknownParent),
                (6, ItemError::ParentNotPhysical),
            ]
        );
        assert_eq!(status(&issuer, "card-1").await, "VALID");
        assert!(issuer.view("card-2").await.unwrap().is_none());
    }

    /// A registration repeated with the same parameters is answered `exists` (a retry); with
    /// other parameters it is a conflict, never a second card.
    #[tokio::test]
    async fn a_repeated_registration_is_a_retry_or_a_conflict() {
        let (issuer, _dir) = issuer();
        let first = run(&issuer, &[register("card-1", "physical", None)]).await;
        assert_eq!(first[0].result, "registered");
        let again = run(&issuer, &[register("card-1", "physical", None)]).await;
        assert_eq!(again[0].result, "exists");
        assert_eq!(again[0].assignment, first[0].assignment);
        assert_eq!(
            refused(&issuer, &[register("card-1", "mobile", None)]).await,
            [(0, ItemError::RegistrationConflict)]
        );
    }

    /// The default pool grows ahead of demand (`min_open_lists` lists `default-<n>`); any
    /// other pool must be created by an admin first (issue 21: a `write` token only grows
    /// pools).
    #[tokio::test]
    async fn issue_21_a_registration_creates_no_pool_but_the_default() {
        let (issuer, _dir) = issuer();
        run(&issuer, &[register("card-1", "physical", None)]).await;
        let lists: Vec<_> = issuer.lists().await.unwrap();
        let ids: Vec<_> = lists.iter().map(|l| l.list_id.as_str()).collect();
        assert_eq!(ids, ["default-1", "default-2"]);
        let mut elsewhere = Registration {
            credential_id: "card-2".into(),
            kind: "physical".into(),
            parent: None,
            purpose: Some("transit".into()),
            reason: None,
            request_id: None,
            expires_at: None,
        };
        assert_eq!(
            refused(&issuer, &[Operation::Register(elsewhere.clone())]).await,
            [(0, ItemError::UnknownPool)]
        );
        issuer
            .create_list(crate::store::NewList {
                id: "transit-1".into(),
                bits: crate::status::Bits::Two,
                size: 1024,
                purpose: Some("transit".into()),
            })
            .await
            .unwrap();
        let out = run(&issuer, &[Operation::Register(elsewhere.clone())]).await;
        let list = &out[0].assignment.as_ref().unwrap().list_id;
        assert!(list.starts_with("transit-"), "{list}");
        // The pool was grown to two open lists, numbered after the admin's.
        let ids: Vec<_> = issuer
            .lists()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.list_id)
            .collect();
        assert_eq!(ids, ["default-1", "default-2", "transit-1", "transit-2"]);
        elsewhere.credential_id = "card-3".into();
        elsewhere.parent = Some("card-1".into());
        elsewhere.kind = "mobile".into();
        assert_eq!(
            refused(&issuer, &[Operation::Register(elsewhere)]).await,
            [(0, ItemError::BadItem)],
            "a derived card lives in its parent's list, in its parent's pool"
        );
    }

    /// Issue 21: at `--max-lists`, a registration that needs a new list is refused with
    /// `list-limit`, and no list is created beyond the bound.
    #[tokio::test]
    async fn issue_21_no_list_is_created_beyond_max_lists() {
        let (issuer, _dir) = issuer_with(Settings {
            list_size: 1024,
            max_lists: 1,
            ..Settings::default()
        });
        run(&issuer, &[register("card-1", "physical", None)]).await;
        assert_eq!(issuer.lists().await.unwrap().len(), 1);
        let (full, _dir) = issuer_with(Settings {
            list_size: 1024,
            max_lists: 0,
            ..Settings::default()
        });
        assert_eq!(
            refused(&full, &[register("card-1", "physical", None)]).await,
            [(0, ItemError::ListLimit)]
        );
        assert!(full.lists().await.unwrap().is_empty());
    }

    /// A reissue registers the new card and revokes the old one as replaced by it; repeating
    /// it is a retry, reissuing the old card as another card is refused.
    #[tokio::test]
    async fn a_card_is_reissued_once() {
        let (issuer, _dir) = card_with_phone(issuer()).await;
        let out = run(&issuer, &[reissue("card-1", "card-2", None)]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "INVALID"));
        assert_eq!(affected(&out[0]), [("phone-1", "INVALID")]);
        let new = out[0].new_credential.as_ref().expect("the new card");
        assert_eq!(
            (new.credential_id.as_str(), new.status),
            ("card-2", "VALID")
        );
        let old = issuer.view("card-1").await.unwrap().unwrap();
        assert_eq!(old.replaced_by.as_deref(), Some("card-2"));
        let view = issuer.view("card-2").await.unwrap().unwrap();
        assert_eq!(view.replaces.as_deref(), Some("card-1"));

        let retry = run(&issuer, &[reissue("card-1", "card-2", None)]).await;
        assert_eq!(retry[0].result, "unchanged");
        assert_eq!(
            retry[0].new_credential.as_ref().unwrap().assignment,
            new.assignment
        );
        assert_eq!(
            refused(&issuer, &[reissue("card-1", "card-3", None)]).await,
            [(0, ItemError::AlreadyReissued)]
        );
        assert_eq!(
            refused(&issuer, &[reissue("phone-1", "card-2", None)]).await,
            [(0, ItemError::RegistrationConflict)],
            "card-2 exists, as the replacement of another card"
        );
    }

    /// A derived card reissued without naming a parent goes under its old parent, which the
    /// batch did not name (it was refused as `unknown-parent`).
    #[tokio::test]
    async fn a_derived_card_is_reissued_under_its_parent_unnamed() {
        let (issuer, _dir) = card_with_phone(issuer()).await;
        let out = run(&issuer, &[reissue("phone-1", "phone-2", None)]).await;
        assert_eq!((out[0].result, out[0].status), ("changed", "INVALID"));
        let new = issuer.view("phone-2").await.unwrap().unwrap();
        assert_eq!(new.parent.as_deref(), Some("card-1"));
        let card = issuer.view("card-1").await.unwrap().unwrap();
        assert_eq!(card.children, ["phone-1", "phone-2"]);
    }

    #[test]
    fn a_registration_repeats_only_with_the_same_kind_parent_and_pool() {
        let rec = Record {
            credential_id: "phone-1".into(),
            kind: "mobile".into(),
            parent: Some(crate::issuer::record::Parent {
                credential_id: "card-1".into(),
                idx: 3,
                list: None,
            }),
            children: Vec::new(),
            children_elsewhere: Vec::new(),
            holds: BTreeSet::new(),
            revoked: false,
            replaced_by: None,
            replaces: None,
            purpose: Some("transit".into()),
            expires_at: None,
            history: Vec::new(),
        };
        let mut r = Registration {
            credential_id: "phone-1".into(),
            kind: "mobile".into(),
            parent: Some("card-1".into()),
            purpose: None,
            reason: Some("any reason".into()),
            request_id: None,
            expires_at: None,
        };
        assert_eq!(
            same_registration(&r, &rec),
            Ok(()),
            "the pool may be left out"
        );
        r.purpose = Some("transit".into());
        assert_eq!(same_registration(&r, &rec), Ok(()));
        // A retry may leave expires_at out, or repeat it.
        r.expires_at = Some("2029-06-30T23:59:59Z".into());
        let mut rec = rec;
        rec.expires_at = Some(1_877_558_399);
        assert_eq!(same_registration(&r, &rec), Ok(()));
        let changes: [fn(&mut Registration); 5] = [
            |r| r.purpose = Some("default".into()),
            |r| r.kind = "physical".into(),
            |r| r.parent = None,
            |r| r.parent = Some("card-2".into()),
            |r| r.expires_at = Some("2029-07-01T00:00:00Z".into()),
        ];
        for change in changes {
            let mut other = r.clone();
            change(&mut other);
            let e = same_registration(&other, &rec).unwrap_err();
            assert_eq!(e.error, ItemError::RegistrationConflict);
            assert!(
                e.detail.contains(
                    "kind \"mobile\", parent \"card-1\", expires_at 2029-06-30T23:59:59Z"
                ),
                "{}",
                e.detail
            );
        }
    }
}
