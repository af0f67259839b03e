//! The issuer side: registering credentials, allocating their indices, and the lifecycle
//! operations (loss reports as holds, revocation, reissue) with their audit trail.
//!
//! | module     | owns                                                                  |
//! |------------|-----------------------------------------------------------------------|
//! | [`record`] | the lifecycle rules, pure: holds, cascades, terminal revocation, audit |
//! | [`alloc`]  | unpredictable, uniform, never-reused index allocation                  |
//! | [`auth`]   | admin bearer tokens and scopes                                         |
//! | [`kinds`]  | the accepted credential kinds and which may be parents (configuration) |
//! | this file  | batches: validate everything, plan against the store, commit per list  |
//!
//! A batch runs in three steps. **Check**: every item's syntax. **Plan**: locate every
//! credential the batch names, read the records of each list involved with its metadata (at
//! one version per list; every list's first read together, so a single write costs one round
//! trip to locate, one to read, one to commit: issue #22), allocate indices and run the rules
//! in memory, item by item in order; if any item
//! fails, nothing is written and every failure is reported. **Commit**: one compare-and-set per
//! list ([`Registry::commit`]); a list that changed meanwhile is planned again (the items of
//! lists already committed are done). Derived cards live in their parent's list, so an item
//! never needs more than one list, except a reissue whose new card lands elsewhere: its new
//! card is committed (and bound) before the old one is revoked, and a retry finishes it.

pub mod alloc;
pub mod auth;
pub mod kinds;
pub mod record;
pub mod text;

use crate::routes::PublicUrls;
use crate::status::w3c::{self, Purpose};
use crate::status::Bits;
use crate::store::any::AnyStore;
use crate::store::registry::{check_credential_id, Location, MetaRecords, Registry, Txn};
use crate::store::{check_id, ListMeta, NewList, Store, StoreError};
use record::{ListWork, Record, RuleError, Stamp, PHYSICAL};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most items in one batch request.
pub const MAX_BATCH: usize = 10_000;
/// Longest reason, request id, kind or hold name.
pub const MAX_REASON: usize = 500;
pub const MAX_REQUEST_ID: usize = 128;
const MAX_KIND: usize = 32;
/// Longest pool name: a pool's lists are `<purpose>-<n>`, and list ids have at most 64
/// characters.
pub const MAX_PURPOSE: usize = 48;

/// Checks a pool name.
pub fn check_purpose(p: &str) -> Result<(), ItemProblem> {
    if p.len() <= MAX_PURPOSE && check_id(p).is_ok() {
        Ok(())
    } else {
        Err(ItemProblem::bad(format!(
            "purpose must be 1 to {MAX_PURPOSE} characters from A-Z a-z 0-9 - _"
        )))
    }
}
/// The hold a loss report puts on a card when the request names none.
pub const DEFAULT_HOLD: &str = "loss";
/// How often a batch is planned again after losing a race on a list. Retries on one replica
/// queue in the retry lane ([`Coordination::retry_lane`]), so this only bounds races with other
/// replicas, each of which makes progress.
const MAX_ATTEMPTS: usize = 64;

/// Issuer settings, from [`crate::config::Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lists with at least this share of indices allocated take no new top-level cards (derived
    /// cards may still fill their parent's list).
    pub fill_threshold: f64,
    /// Pools keep at least this many lists under the threshold, creating new ones ahead of
    /// demand.
    pub min_open_lists: usize,
    pub list_bits: Bits,
    pub list_size: u32,
    /// The pool of registrations that name none.
    pub default_purpose: String,
    /// The accepted credential kinds and which may be parents.
    pub kinds: kinds::Kinds,
    /// Most lists the store may hold (all of them, the issuer's and others'); the issuer creates
    /// none beyond it, ahead of demand or on `POST /v1/lists`.
    pub max_lists: usize,
}

/// Default of [`Settings::max_lists`]: ten times the planned 50 lists of 2^20 entries
/// (docs/capacity.md: 500 lists is about 0.4–0.6 GB of RSS per replica).
pub const DEFAULT_MAX_LISTS: usize = 512;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            fill_threshold: 0.75,
            min_open_lists: 2,
            list_bits: Bits::Two,
            list_size: 1 << 20,
            default_purpose: "default".into(),
            kinds: kinds::Kinds::default(),
            max_lists: DEFAULT_MAX_LISTS,
        }
    }
}

/// One operation of a batch (the `op` field selects it).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    Register(Registration),
    Suspend(HoldOp),
    Reinstate(HoldOp),
    Revoke(RevokeOp),
    Reissue(ReissueOp),
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub credential_id: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HoldOp {
    pub credential_id: String,
    pub reason: String,
    /// The hold's name (default `loss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RevokeOp {
    pub credential_id: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReissueOp {
    pub credential_id: String,
    pub new_credential_id: String,
    /// For a derived card: the physical card the new one derives from (default: the old
    /// card's parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Register(_) => "register",
            Operation::Suspend(_) => "suspend",
            Operation::Reinstate(_) => "reinstate",
            Operation::Revoke(_) => "revoke",
            Operation::Reissue(_) => "reissue",
        }
    }

    pub fn credential_id(&self) -> &str {
        match self {
            Operation::Register(r) => &r.credential_id,
            Operation::Suspend(h) | Operation::Reinstate(h) => &h.credential_id,
            Operation::Revoke(r) => &r.credential_id,
            Operation::Reissue(r) => &r.credential_id,
        }
    }

    /// Syntax checks that need no store (the first step of every batch).
    pub fn check(&self) -> Result<(), ItemProblem> {
        let id = |field: &str, v: &str| {
            if check_credential_id(v) {
                Ok(())
            } else {
                Err(ItemProblem::bad(format!(
                    "{field} must be 1 to 200 visible ASCII characters without spaces"
                )))
            }
        };
        let text = text::check;
        let request_id = |r: &Option<String>| match r {
            Some(r) => text("request_id", r, MAX_REQUEST_ID, true),
            None => Ok(()),
        };
        match self {
            Operation::Register(r) => {
                id("credential_id", &r.credential_id)?;
                check_kind(&r.kind)?;
                if let Some(p) = &r.parent {
                    id("parent", p)?;
                    if *p == r.credential_id {
                        return Err(ItemProblem::new(
                            "cycle",
                            "a credential cannot be its own parent",
                        ));
                    }
                    if r.kind == PHYSICAL {
                        return Err(ItemProblem::new(
                            "cycle",
                            "a physical card derives from no other card: it cannot have a parent",
                        ));
                    }
                }
                if let Some(p) = &r.purpose {
                    check_purpose(p)?;
                }
                if let Some(reason) = &r.reason {
                    text("reason", reason, MAX_REASON, false)?;
                }
                request_id(&r.request_id)
            }
            Operation::Suspend(h) | Operation::Reinstate(h) => {
                id("credential_id", &h.credential_id)?;
                text("reason", &h.reason, MAX_REASON, true)?;
                if let Some(hold) = &h.hold {
                    check_hold(hold)?;
                }
                request_id(&h.request_id)
            }
            Operation::Revoke(r) => {
                id("credential_id", &r.credential_id)?;
                text("reason", &r.reason, MAX_REASON, true)?;
                request_id(&r.request_id)
            }
            Operation::Reissue(r) => {
                id("credential_id", &r.credential_id)?;
                id("new_credential_id", &r.new_credential_id)?;
                if r.new_credential_id == r.credential_id {
                    return Err(ItemProblem::bad(
                        "new_credential_id must differ from credential_id",
                    ));
                }
                if let Some(p) = &r.parent {
                    id("parent", p)?;
                    if *p == r.new_credential_id || *p == r.credential_id {
                        return Err(ItemProblem::new(
                            "cycle",
                            "the new card cannot derive from itself or from the card it replaces",
                        ));
                    }
                }
                text("reason", &r.reason, MAX_REASON, true)?;
                request_id(&r.request_id)
            }
        }
    }

    fn stamp(&self, by: &str, at: u64) -> Stamp {
        let (reason, request_id, hold) = match self {
            Operation::Register(r) => (r.reason.clone(), r.request_id.clone(), None),
            Operation::Suspend(h) | Operation::Reinstate(h) => (
                Some(h.reason.clone()),
                h.request_id.clone(),
                Some(h.hold.clone().unwrap_or_else(|| DEFAULT_HOLD.into())),
            ),
            Operation::Revoke(r) => (Some(r.reason.clone()), r.request_id.clone(), None),
            Operation::Reissue(r) => (Some(r.reason.clone()), r.request_id.clone(), None),
        };
        Stamp {
            at,
            by: by.to_owned(),
            client_subject: None,
            op: self.name(),
            reason,
            request_id,
            hold,
        }
    }
}

/// A kind or hold name: 1 to 32 characters from a-z 0-9 - _.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KIND
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_kind(kind: &str) -> Result<(), ItemProblem> {
    if is_name(kind) {
        Ok(())
    } else {
        Err(ItemProblem::bad(
            "kind must be physical, mobile, or another name of 1 to 32 characters from a-z 0-9 - _",
        ))
    }
}

fn check_hold(hold: &str) -> Result<(), ItemProblem> {
    if is_name(hold) {
        Ok(())
    } else {
        Err(ItemProblem::bad(
            "hold must be 1 to 32 characters from a-z 0-9 - _",
        ))
    }
}

/// Why one item of a batch failed: a problem `type` slug and a detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItemProblem {
    #[serde(rename = "type")]
    pub slug: &'static str,
    pub detail: String,
}

impl ItemProblem {
    pub fn new(slug: &'static str, detail: impl Into<String>) -> Self {
        ItemProblem {
            slug,
            detail: detail.into(),
        }
    }

    pub fn bad(detail: impl Into<String>) -> Self {
        ItemProblem::new("bad-item", detail)
    }

    fn unknown(id: &str) -> Self {
        ItemProblem::new(
            "unknown-credential",
            format!("no credential {id:?} is registered"),
        )
    }

    /// The HTTP status of this problem when it is the only item.
    pub fn status(&self) -> u16 {
        match self.slug {
            "bad-item" => 400,
            "unknown-credential" => 404,
            "unknown-parent" | "parent-not-physical" | "cycle" | "unknown-pool" => 422,
            "store-unavailable" | "contention" => 503,
            "insufficient-storage" => 507,
            "corrupt" => 500,
            _ => 409,
        }
    }
}

impl From<RuleError> for ItemProblem {
    fn from(e: RuleError) -> Self {
        let slug = match e {
            RuleError::Terminal(_) => "terminal",
            RuleError::NotSuspendable { .. } => "not-suspendable",
            RuleError::ParentRevoked(_) => "parent-revoked",
            RuleError::ParentNotPhysical(_) => "parent-not-physical",
            RuleError::AlreadyReissued(..) => "already-reissued",
        };
        ItemProblem::new(slug, e.to_string())
    }
}

impl From<StoreError> for ItemProblem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => ItemProblem::new(
                "contention",
                "the list kept changing concurrently; retry the request",
            ),
            StoreError::Corrupt { .. } => ItemProblem::new("corrupt", e.to_string()),
            StoreError::ListLimit { .. } => ItemProblem::new("list-limit", e.to_string()),
            StoreError::Full(_) => ItemProblem::new(
                "insufficient-storage",
                "the embedded store's disk is full; nothing was written. Free space in the \
                 data directory and retry",
            ),
            StoreError::Terminal { .. } => ItemProblem::new(
                "terminal",
                format!("the published entry is INVALID (terminal): {e}"),
            ),
            other => ItemProblem::new("store-unavailable", other.to_string()),
        }
    }
}

/// Errors of a whole batch.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// One or more items failed validation; nothing was applied. Positions are 0-based.
    #[error("{} of the batch's items are invalid; nothing was applied", .0.len())]
    Invalid(Vec<(usize, ItemProblem)>),
    #[error("a batch holds at most {MAX_BATCH} operations")]
    TooLarge,
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
}

/// What the issuer embeds in a credential to point at its status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assignment {
    pub list_id: String,
    pub idx: u32,
    /// The JOSE `status` claim (draft-ietf-oauth-status-list §6.1).
    pub status_claim: Json,
    /// The CWT claim 65535 (`status`), as JSON for readability and as base64url CBOR.
    pub cwt_status_claim: Json,
    pub cwt_status_claim_cbor: String,
    /// W3C `credentialStatus` entries for the revocation and suspension views (empty for lists
    /// under the 131,072 entries the W3C REC requires, which have no W3C view).
    pub credential_status: Json,
    /// The same two views as VC 1.1 `StatusList2021Entry` entries, for VC 1.1 credentials
    /// (empty under 131,072 entries, like `credential_status`).
    pub credential_status_2021: Json,
}

/// The result of one item.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub credential_id: String,
    /// `registered`, `exists` (an idempotent retry), `changed` or `unchanged`.
    pub result: &'static str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
    /// Other credentials whose status the operation changed (cascades), with their new status.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<Affected>,
    /// For `reissue`: the new credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_credential: Option<Box<Outcome>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Affected {
    pub credential_id: String,
    pub status: &'static str,
}

/// A credential as `GET /v1/credentials/{id}` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialView {
    pub credential_id: String,
    pub kind: String,
    pub status: &'static str,
    pub holds: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub children: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    pub assignment: Assignment,
}

/// A list as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ListView {
    pub list_id: String,
    pub bits: u8,
    pub size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    pub allocated: u64,
    /// `allocated / size`.
    pub fill: f64,
    /// Whether new top-level cards are still allocated here.
    pub open: bool,
    pub version: u64,
    /// Unix seconds of the last change, for machines.
    pub updated_at: u64,
    /// The same as an RFC 3339 UTC time, for people.
    pub updated: String,
}

/// The issuer: batches against the configured store.
#[derive(Clone)]
pub struct Issuer {
    store: Arc<AnyStore>,
    urls: PublicUrls,
    settings: Settings,
    coord: Arc<Coordination>,
}

/// How the batches of one replica stay out of each other's way. The store's compare-and-set is
/// what keeps them correct, across replicas too; this only keeps races from costing indices and
/// retries on one replica.
#[derive(Default)]
struct Coordination {
    /// Credential ids a batch in flight may register (its registrations and the new ids of its
    /// reissues). A batch waits until none of its ids is held, then holds them all at once
    /// (all or none: no deadlock), so two registrations of one id never run together here:
    /// the second finds the first's binding instead of burning an index of its own.
    registering: std::sync::Mutex<HashSet<String>>,
    released: tokio::sync::Notify,
    /// Taken, first come first served, by a batch that lost a race on a list, for its retries:
    /// batches that collide on one list (cards derived from one parent) then retry one after
    /// the other instead of all together, so each retry meets only first attempts and other
    /// replicas, never the other losers.
    retry_lane: tokio::sync::Mutex<()>,
    /// Held while lists are counted and created, so that this replica never passes
    /// [`Settings::max_lists`].
    creating: tokio::sync::Mutex<()>,
    /// When (Unix seconds) the bound on lists was last logged: at most once a minute.
    limit_logged: std::sync::atomic::AtomicU64,
}

/// The ids a batch holds in [`Coordination::registering`]; released when dropped.
struct Registering<'a> {
    coord: &'a Coordination,
    ids: Vec<String>,
}

impl Coordination {
    fn log_list_limit(&self, purpose: &str, limit: usize) {
        use std::sync::atomic::Ordering;
        let now = now_ms() / 1000;
        let last = self.limit_logged.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .limit_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                purpose,
                limit,
                "not opening lists ahead of demand: the store holds the most lists --max-lists allows"
            );
        }
    }

    async fn registering(&self, ids: Vec<String>) -> Registering<'_> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check and the wait wakes us.
            released.as_mut().enable();
            {
                let mut held = self
                    .registering
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !ids.iter().any(|id| held.contains(id)) {
                    held.extend(ids.iter().cloned());
                    return Registering { coord: self, ids };
                }
            }
            released.await;
        }
    }
}

impl Drop for Registering<'_> {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        {
            let mut held = self
                .coord
                .registering
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in &self.ids {
                held.remove(id);
            }
        }
        self.coord.released.notify_waiters();
    }
}

/// A random pause before retrying a batch that keeps losing races (to other replicas, once it
/// holds the retry lane): up to 1, 2, 4, … 32 ms.
async fn backoff(retry: usize) {
    use rand::Rng;
    let cap = 1u64 << retry.min(5);
    let ms = rand::rngs::OsRng.gen_range(0..=cap);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every list's metadata, read once per plan, and only when a top-level card needs a list
/// chosen; lists this plan creates are added.
type Metas = Option<Vec<ListMeta>>;

/// Adds `list` to the plan's lists from its first read (its metadata and the records at
/// `want`); returns the indices those records link to.
fn first_read(
    lists: &mut BTreeMap<String, ListPlan>,
    list: &str,
    want: &[u32],
    (meta, recs): MetaRecords,
) -> Result<Vec<u32>, PlanAbort> {
    let lp = ListPlan {
        work: ListWork::new(meta.bits().map_err(StoreError::from)?, BTreeMap::new()),
        version: meta.version,
        meta,
        allocated: None,
    };
    let lp = lists.entry(list.to_owned()).or_insert(lp);
    Ok(take_records(lp, list, want, recs)?)
}

/// Runs `futures` together on this task (their requests share a round trip), returning their
/// outputs in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// Takes the records read at `want` into `lp` (rebuilding its work so the status of every
/// record as read is captured); returns the indices they link to.
fn take_records(
    lp: &mut ListPlan,
    list: &str,
    want: &[u32],
    recs: Vec<Option<Vec<u8>>>,
) -> Result<Vec<u32>, StoreError> {
    let mut next = Vec::new();
    if want.is_empty() {
        return Ok(next);
    }
    let mut loaded = std::mem::take(&mut lp.work.records);
    for (&idx, bytes) in want.iter().zip(recs) {
        let Some(bytes) = bytes else { continue };
        let rec = Record::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
            list: list.to_owned(),
            reason: format!("record {idx}: {e}"),
        })?;
        next.extend(rec.children.iter().copied());
        next.extend(rec.parent.as_ref().map(|p| p.idx));
        loaded.insert(idx, rec);
    }
    debug_assert!(lp.work.claims.is_empty() && !lp.work.is_dirty());
    lp.work = ListWork::new(lp.work.bits, loaded);
    Ok(next)
}

/// One list's state during planning.
struct ListPlan {
    meta: ListMeta,
    version: u64,
    work: ListWork,
    allocated: Option<RoaringBitmap>,
}

/// A planned batch.
struct Plan {
    lists: BTreeMap<String, ListPlan>,
    /// Per item (by position among the planned items): its outcome or failure, and the lists
    /// it writes.
    items: Vec<(Result<Outcome, ItemProblem>, BTreeSet<String>)>,
    /// New bindings, committed with their list.
    binds: Vec<Bind>,
    /// Lists holding the new card of a reissue whose old card is elsewhere: committed first.
    first: BTreeSet<String>,
    /// Per list, the reservations of reissues whose new card lands in another list (records
    /// as read plus `replaced_by`): committed alone, before everything else.
    reserve: BTreeMap<String, Vec<(u32, Vec<u8>)>>,
}

/// A credential id to bind once its list is committed.
struct Bind {
    credential_id: String,
    at: Location,
    /// The item (by position among the planned items).
    item: usize,
    /// The new card of a reissue (not a registration).
    reissue: bool,
}

/// Why planning stopped: a list moved between two reads (plan again), or the store failed.
enum PlanAbort {
    Moved,
    Store(StoreError),
}

impl From<StoreError> for PlanAbort {
    fn from(e: StoreError) -> Self {
        PlanAbort::Store(e)
    }
}

impl Issuer {
    pub fn new(store: Arc<AnyStore>, urls: PublicUrls, settings: Settings) -> Self {
        Issuer {
            store,
            urls,
            settings,
            coord: Arc::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What the issuer embeds for a credential at `at` in a list of `size` entries.
    pub fn assignment(&self, at: &Location, size: u32) -> Assignment {
        let uri = self.urls.list(&at.list);
        let claim = json!({"status_list": {"idx": at.idx, "uri": uri}});
        let cbor = {
            use ciborium::Value as C;
            let map = C::Map(vec![(
                C::Text("status_list".into()),
                C::Map(vec![
                    (C::Text("idx".into()), C::Integer(at.idx.into())),
                    (C::Text("uri".into()), C::Text(uri.clone())),
                ]),
            )]);
            let mut out = Vec::new();
            ciborium::into_writer(&map, &mut out).expect("CBOR to a Vec");
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, out)
        };
        let w3c_views: &[Purpose] = if size >= w3c::MIN_ENTRIES {
            &[Purpose::Revocation, Purpose::Suspension]
        } else {
            &[]
        };
        let entries: Vec<Json> = w3c_views
            .iter()
            .copied()
            .map(|p| w3c::status_entry(&self.urls.credential(&at.list, p), at.idx, p, Bits::One))
            .collect();
        Assignment {
            list_id: at.list.clone(),
            idx: at.idx,
            status_claim: claim.clone(),
            cwt_status_claim: claim,
            cwt_status_claim_cbor: cbor,
            credential_status: Json::Array(entries),
            credential_status_2021: Json::Array(
                w3c_views
                    .iter()
                    .map(|&p| {
                        crate::status::sl2021::status_entry(
                            &self.urls.sl2021(&at.list, p),
                            at.idx,
                            p,
                        )
                    })
                    .collect(),
            ),
        }
    }

    fn list_view(&self, m: &ListMeta) -> ListView {
        let fill = m.allocated as f64 / f64::from(m.size.max(1));
        ListView {
            list_id: m.id.clone(),
            bits: m.bits,
            size: m.size,
            purpose: m.purpose.clone(),
            allocated: m.allocated,
            fill,
            open: m.purpose.is_some() && fill < self.settings.fill_threshold,
            version: m.version,
            updated_at: m.updated_at,
            updated: humantime::format_rfc3339_seconds(
                UNIX_EPOCH + std::time::Duration::from_secs(m.updated_at),
            )
            .to_string(),
        }
    }

    pub async fn lists(&self) -> Result<Vec<ListView>, StoreError> {
        let mut metas = self.store.lists().await?;
        metas.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(metas.iter().map(|m| self.list_view(m)).collect())
    }

    pub async fn list(&self, id: &str) -> Result<Option<ListView>, StoreError> {
        Ok(self.meta(id).await?.map(|m| self.list_view(&m)))
    }

    /// One list's metadata (the store has no per-list read; lists are few).
    async fn meta(&self, id: &str) -> Result<Option<ListMeta>, StoreError> {
        Ok(self.store.lists().await?.into_iter().find(|m| m.id == id))
    }

    /// Creates an issuer-managed list in pool `purpose` (`POST /v1/lists`, `admin` scope: the
    /// only way a new pool comes to be), unless the store holds [`Settings::max_lists`] lists.
    pub async fn create_list(&self, new: NewList) -> Result<ListView, StoreError> {
        let _creating = self.coord.creating.lock().await;
        if self.store.lists().await?.len() >= self.settings.max_lists {
            return Err(StoreError::ListLimit {
                limit: self.settings.max_lists,
            });
        }
        let meta = self.store.create_list(new).await?;
        Ok(self.list_view(&meta))
    }

    /// Creates up to `missing` new lists `<purpose>-<n>` in pool `purpose` (ahead of demand),
    /// adding them to `metas`; a list another replica created meanwhile counts as created. None
    /// beyond [`Settings::max_lists`] lists in the store: returns whether that bound stopped it.
    async fn open_lists(
        &self,
        purpose: &str,
        missing: usize,
        metas: &mut Vec<ListMeta>,
    ) -> Result<bool, StoreError> {
        let max = self.settings.max_lists;
        // `metas` is what the store held when planning began, and what this plan created: at
        // the bound already, as every registration of a batch at the bound would ask again.
        if metas.len() >= max {
            self.coord.log_list_limit(purpose, max);
            return Ok(true);
        }
        let _creating = self.coord.creating.lock().await;
        let room = max.saturating_sub(self.store.lists().await?.len());
        let bounded = room < missing;
        if bounded {
            self.coord.log_list_limit(purpose, max);
        }
        let missing = missing.min(room);
        let mut next = metas
            .iter()
            .filter_map(|m| {
                m.id.strip_prefix(purpose)?
                    .strip_prefix('-')?
                    .parse::<u32>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
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
                        if self.is_open(&m) && m.purpose.as_deref() == Some(purpose) {
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

    fn is_open(&self, m: &ListMeta) -> bool {
        (m.allocated as f64) < self.settings.fill_threshold * f64::from(m.size)
    }

    /// One credential's record and place.
    pub async fn credential(&self, id: &str) -> Result<Option<(Location, Record)>, StoreError> {
        let Some(at) = self.store.locate(&[id.to_owned()]).await?.pop().flatten() else {
            return Ok(None);
        };
        let (_, mut recs) = self.store.records(&at.list, &[at.idx]).await?;
        let Some(Some(bytes)) = recs.pop() else {
            return Ok(None);
        };
        let rec = Record::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
            list: at.list.clone(),
            reason: format!("record {}: {e}", at.idx),
        })?;
        Ok(Some((at, rec)))
    }

    /// The view of one credential, children named by id.
    pub async fn view(&self, id: &str) -> Result<Option<CredentialView>, StoreError> {
        let Some((at, rec)) = self.credential(id).await? else {
            return Ok(None);
        };
        let children = if rec.children.is_empty() {
            Vec::new()
        } else {
            let (_, recs) = self.store.records(&at.list, &rec.children).await?;
            recs.into_iter()
                .flatten()
                .filter_map(|b| Record::from_bytes(&b).ok())
                .map(|r| r.credential_id)
                .collect()
        };
        Ok(Some(CredentialView {
            credential_id: rec.credential_id.clone(),
            kind: rec.kind.clone(),
            status: rec.status().name(),
            holds: rec.holds.iter().cloned().collect(),
            parent: rec.parent.as_ref().map(|p| p.credential_id.clone()),
            children,
            replaced_by: rec.replaced_by.clone(),
            replaces: rec.replaces.clone(),
            assignment: self.assignment(&at, self.meta(&at.list).await?.map_or(0, |m| m.size)),
        }))
    }

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
        let at = now_ms();
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
            let plan = match self.plan(by, client_subject, at, &todo).await {
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
            // Registrations whose id another replica bound first: the idempotent answer.
            for (i, bound) in elsewhere {
                if let Operation::Register(r) = &ops[i] {
                    results[i] = Some(self.registered_elsewhere(r, &bound).await);
                }
            }
            pending.retain(|i| !done.contains(i));
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
    /// if that registration has the same parameters, `registration-conflict` if not.
    async fn registered_elsewhere(
        &self,
        r: &Registration,
        at: &Location,
    ) -> Result<Outcome, ItemProblem> {
        let (_, mut recs) = self.store.records(&at.list, &[at.idx]).await?;
        let corrupt = |why: &str| {
            ItemProblem::new(
                "corrupt",
                format!("{:?} is bound to {at}, {why}", r.credential_id),
            )
        };
        let bytes = recs
            .pop()
            .flatten()
            .ok_or_else(|| corrupt("which has no record"))?;
        let rec = Record::from_bytes(&bytes)
            .map_err(|e| corrupt(&format!("whose record is unreadable: {e}")))?;
        if rec.credential_id != r.credential_id {
            return Err(corrupt("which holds another credential"));
        }
        let size = self.meta(&at.list).await?.map_or(0, |m| m.size);
        self.existing_outcome(r, at, &rec, size)
    }

    /// Commits a plan list by list; returns the positions (in `ops`) of the items now done,
    /// the error that stopped it, if any (a conflict is not one: the caller plans again), and
    /// the registrations done whose id another request bound first, with that binding.
    ///
    /// Order: reissues' reservations ([`ListWork::reserve`]) first, each list's alone; then
    /// the lists holding the new cards of reissues whose old card is elsewhere; then the rest.
    /// A conflict on a reservation leaves nothing written, so of concurrent reissues of one
    /// card, the losers never write their new cards.
    async fn commit(
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
            reserve,
        } = plan;
        let mut expect: BTreeMap<&str, u64> = lists
            .iter()
            .map(|(l, lp)| (l.as_str(), lp.version))
            .collect();
        for (list, records) in &reserve {
            let txn = Txn {
                expect_version: expect[list.as_str()],
                claim: Vec::new(),
                records: records.clone(),
                changes: Vec::new(),
            };
            match self.store.commit(list, &txn).await {
                Ok(version) => {
                    expect.insert(list, version);
                }
                Err(StoreError::Conflict(_)) => return (BTreeSet::new(), None, Vec::new()),
                Err(e) => return (BTreeSet::new(), Some(e), Vec::new()),
            }
        }
        let mut order: Vec<&String> = lists.keys().filter(|l| first.contains(*l)).collect();
        order.extend(lists.keys().filter(|l| !first.contains(*l)));
        let mut committed: BTreeSet<String> = BTreeSet::new();
        let mut lost: BTreeMap<usize, ItemProblem> = BTreeMap::new();
        let mut elsewhere: BTreeMap<usize, Location> = BTreeMap::new();
        let mut stop = None;
        for list in order {
            let lp = &lists[list];
            if lp.work.is_dirty() {
                let (records, changes) = lp.work.writes();
                let txn = Txn {
                    expect_version: expect[list.as_str()],
                    claim: lp.work.claims.iter().collect(),
                    records,
                    changes,
                };
                match self.store.commit(list, &txn).await {
                    Ok(_) => {}
                    Err(StoreError::Conflict(_)) => break,
                    Err(e) => {
                        stop = Some(e);
                        break;
                    }
                }
            }
            committed.insert(list.clone());
            let mine: Vec<&Bind> = binds.iter().filter(|b| b.at.list == *list).collect();
            if mine.is_empty() {
                continue;
            }
            let pairs: Vec<(String, Location)> = mine
                .iter()
                .map(|b| (b.credential_id.clone(), b.at.clone()))
                .collect();
            match self.store.bind(&pairs).await {
                Ok(bound) => {
                    for (b, bound) in mine.into_iter().zip(bound) {
                        if bound == b.at {
                            continue;
                        }
                        // Another request registered the id first (on another replica: on
                        // this one, registrations of one id do not overlap). This one's index
                        // stays allocated, unused.
                        if b.reissue {
                            lost.insert(
                                b.item,
                                ItemProblem::new(
                                    "registered-concurrently",
                                    format!(
                                        "{:?} was registered concurrently by another request",
                                        b.credential_id
                                    ),
                                ),
                            );
                        } else {
                            elsewhere.insert(b.item, bound);
                        }
                    }
                }
                Err(e) => {
                    let p = ItemProblem::from(e);
                    for b in mine {
                        lost.insert(b.item, p.clone());
                    }
                }
            }
        }
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
        (done, stop, moved)
    }

    /// Loads (once) the records at `idxs` of `list` and everything they link to, at one
    /// version. A list not loaded yet is read with its metadata in one round trip (none when
    /// `metas` holds it and no record is wanted); each generation of linked cards not read yet
    /// (a card's children, a derived card's parent) costs one more.
    async fn load(
        &self,
        lists: &mut BTreeMap<String, ListPlan>,
        metas: &Metas,
        list: &str,
        idxs: &[u32],
    ) -> Result<(), PlanAbort> {
        let mut want: Vec<u32> = idxs.to_vec();
        want.sort_unstable();
        want.dedup();
        if !lists.contains_key(list) {
            let known = metas
                .as_ref()
                .and_then(|all| all.iter().find(|m| m.id == list));
            let read = match known {
                Some(meta) if want.is_empty() => (meta.clone(), Vec::new()),
                _ => self.store.list_records(list, &want).await?,
            };
            want = first_read(lists, list, &want, read)?;
        }
        loop {
            let lp = lists.get_mut(list).expect("inserted above");
            want.retain(|i| !lp.work.records.contains_key(i));
            want.sort_unstable();
            want.dedup();
            if want.is_empty() {
                return Ok(());
            }
            let (version, recs) = self.store.records(list, &want).await?;
            if version != lp.version {
                return Err(PlanAbort::Moved);
            }
            want = take_records(lp, list, &want, recs)?;
        }
    }

    /// Makes sure `list` is loaded with its allocated indices: from this replica's cache of
    /// them when the store keeps one (no round trip), else read at the list's version.
    async fn ensure_allocated(
        &self,
        lists: &mut BTreeMap<String, ListPlan>,
        metas: &Metas,
        list: &str,
    ) -> Result<(), PlanAbort> {
        self.load(lists, metas, list, &[]).await?;
        let lp = lists.get_mut(list).expect("loaded");
        if lp.allocated.is_none() {
            if let Some(bitmap) = self.store.allocated_cached(list) {
                lp.allocated = Some(bitmap);
                return Ok(());
            }
            let (version, bitmap) = self.store.allocated(list).await?;
            if version != lp.version {
                return Err(PlanAbort::Moved);
            }
            lp.allocated = Some(bitmap);
        }
        Ok(())
    }

    /// Plans `ops` (checked already) in order against the store's current state.
    async fn plan(
        &self,
        by: &str,
        client_subject: Option<&str>,
        at: u64,
        ops: &[&Operation],
    ) -> Result<Plan, PlanAbort> {
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
        // Every list's metadata is needed only to choose a list for a new top-level card: read
        // alongside the locations when the batch registers one (the requests share a round
        // trip), later if a reissue turns out to need it.
        let top_level = ops
            .iter()
            .any(|op| matches!(op, Operation::Register(r) if r.parent.is_none()));
        let (mut metas, found): (Metas, _) = if top_level {
            let (all, found) = tokio::join!(self.store.lists(), self.store.locate(&names));
            (Some(all?), found?)
        } else {
            (None, self.store.locate(&names).await?)
        };
        let located: HashMap<String, Location> = names
            .iter()
            .cloned()
            .zip(found)
            .filter_map(|(n, l)| Some((n, l?)))
            .collect();
        let mut lists: BTreeMap<String, ListPlan> = BTreeMap::new();
        let mut by_list: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for l in located.values() {
            by_list.entry(&l.list).or_default().push(l.idx);
        }
        // Every list's first read at once: one round trip however many lists the batch names
        // (two for a reissue across lists); then what those records link to, list by list.
        let firsts: Vec<(&str, Vec<u32>)> = by_list
            .into_iter()
            .map(|(list, mut idxs)| {
                idxs.sort_unstable();
                idxs.dedup();
                (list, idxs)
            })
            .collect();
        let reads = join_all(
            firsts
                .iter()
                .map(|(list, idxs)| self.store.list_records(list, idxs))
                .collect(),
        )
        .await;
        for ((list, idxs), read) in firsts.iter().zip(reads) {
            let linked = first_read(&mut lists, list, idxs, read?)?;
            self.load(&mut lists, &metas, list, &linked).await?;
        }

        let mut plan = Plan {
            lists: BTreeMap::new(),
            items: Vec::with_capacity(ops.len()),
            binds: Vec::new(),
            first: BTreeSet::new(),
            reserve: BTreeMap::new(),
        };
        let mut planned: HashMap<String, Location> = HashMap::new();
        for (k, op) in ops.iter().enumerate() {
            let mut stamp = op.stamp(by, at);
            stamp.client_subject = client_subject.map(str::to_owned);
            let mut touched = BTreeSet::new();
            let result = self
                .plan_one(
                    op,
                    &stamp,
                    k,
                    &located,
                    &mut planned,
                    &mut lists,
                    &mut metas,
                    &mut plan,
                    &mut touched,
                )
                .await;
            let result = match result {
                Ok(o) => Ok(o),
                Err(Step::Item(p)) => Err(p),
                Err(Step::Abort(a)) => return Err(a),
            };
            plan.items.push((result, touched));
        }
        plan.lists = lists;
        Ok(plan)
    }

    #[allow(clippy::too_many_arguments)]
    async fn plan_one(
        &self,
        op: &Operation,
        stamp: &Stamp,
        k: usize,
        located: &HashMap<String, Location>,
        planned: &mut HashMap<String, Location>,
        lists: &mut BTreeMap<String, ListPlan>,
        metas: &mut Metas,
        plan: &mut Plan,
        touched: &mut BTreeSet<String>,
    ) -> Result<Outcome, Step> {
        let find = |id: &str, planned: &HashMap<String, Location>| {
            located.get(id).or_else(|| planned.get(id)).cloned()
        };
        match op {
            Operation::Register(r) => {
                if let Some(at) = located.get(&r.credential_id) {
                    return self.existing(r, at, lists);
                }
                if planned.contains_key(&r.credential_id) {
                    return Err(Step::Item(ItemProblem::new(
                        "duplicate-in-batch",
                        format!("{:?} is registered twice in this batch", r.credential_id),
                    )));
                }
                let at = self
                    .register(r, None, stamp, located, planned, lists, metas, touched)
                    .await?;
                let outcome = Outcome {
                    credential_id: r.credential_id.clone(),
                    result: "registered",
                    status: lists[&at.list]
                        .work
                        .get(at.idx)
                        .expect("registered")
                        .status()
                        .name(),
                    assignment: Some(self.assignment(&at, lists[&at.list].meta.size)),
                    affected: Vec::new(),
                    new_credential: None,
                };
                plan.binds.push(Bind {
                    credential_id: r.credential_id.clone(),
                    at,
                    item: k,
                    reissue: false,
                });
                Ok(outcome)
            }
            Operation::Suspend(h) | Operation::Reinstate(h) => {
                let at = find(&h.credential_id, planned)
                    .ok_or_else(|| Step::Item(ItemProblem::unknown(&h.credential_id)))?;
                let hold = h.hold.as_deref().unwrap_or(DEFAULT_HOLD);
                let lp = lists.get_mut(&at.list).expect("located lists are loaded");
                let before = family_status(&lp.work, at.idx);
                let changed = if matches!(op, Operation::Suspend(_)) {
                    lp.work.suspend(at.idx, hold, stamp)
                } else {
                    lp.work.reinstate(at.idx, hold, stamp)
                }
                .map_err(|e| Step::Item(e.into()))?;
                touched.insert(at.list.clone());
                Ok(changed_outcome(
                    &h.credential_id,
                    &lp.work,
                    at.idx,
                    changed,
                    &before,
                ))
            }
            Operation::Revoke(r) => {
                let at = find(&r.credential_id, planned)
                    .ok_or_else(|| Step::Item(ItemProblem::unknown(&r.credential_id)))?;
                let lp = lists.get_mut(&at.list).expect("located lists are loaded");
                let before = family_status(&lp.work, at.idx);
                let changed = lp
                    .work
                    .revoke(at.idx, None, stamp)
                    .map_err(|e| Step::Item(e.into()))?;
                touched.insert(at.list.clone());
                Ok(changed_outcome(
                    &r.credential_id,
                    &lp.work,
                    at.idx,
                    changed,
                    &before,
                ))
            }
            Operation::Reissue(r) => {
                let old_at = find(&r.credential_id, planned)
                    .ok_or_else(|| Step::Item(ItemProblem::unknown(&r.credential_id)))?;
                let old = lists[&old_at.list]
                    .work
                    .get(old_at.idx)
                    .expect("located records are loaded")
                    .clone();
                if let Some(done) = &old.replaced_by {
                    if *done != r.new_credential_id {
                        return Err(Step::Item(
                            RuleError::AlreadyReissued(old.credential_id, done.clone()).into(),
                        ));
                    }
                }
                // The new card: already there from an earlier attempt, or registered now.
                let new_at = match find(&r.new_credential_id, planned) {
                    Some(at) => {
                        let rec = lists[&at.list].work.get(at.idx);
                        if rec.and_then(|n| n.replaces.as_deref()) != Some(&r.credential_id) {
                            return Err(Step::Item(ItemProblem::new(
                                "registration-conflict",
                                format!(
                                    "{:?} is already registered, not as the replacement of {:?}",
                                    r.new_credential_id, r.credential_id
                                ),
                            )));
                        }
                        at
                    }
                    None => {
                        let parent = match (&r.parent, &old.parent) {
                            (Some(p), _) => Some(p.clone()),
                            (None, Some(p)) => Some(p.credential_id.clone()),
                            (None, None) => None,
                        };
                        let reg = Registration {
                            credential_id: r.new_credential_id.clone(),
                            kind: old.kind.clone(),
                            parent,
                            purpose: old.purpose.clone(),
                            reason: Some(r.reason.clone()),
                            request_id: r.request_id.clone(),
                        };
                        let at = self
                            .register(
                                &reg,
                                Some(&r.credential_id),
                                stamp,
                                located,
                                planned,
                                lists,
                                metas,
                                touched,
                            )
                            .await?;
                        plan.binds.push(Bind {
                            credential_id: r.new_credential_id.clone(),
                            at: at.clone(),
                            item: k,
                            reissue: true,
                        });
                        if at.list != old_at.list {
                            // The new card is written before the old one is revoked, in two
                            // commits: first reserve the old card for it, so that a concurrent
                            // reissue of the same card loses before writing anything.
                            let lp = lists.get_mut(&old_at.list).expect("loaded");
                            if let Some(bytes) =
                                lp.work.reserve(old_at.idx, &r.new_credential_id, stamp)
                            {
                                plan.reserve
                                    .entry(old_at.list.clone())
                                    .or_default()
                                    .push((old_at.idx, bytes));
                            }
                        }
                        at
                    }
                };
                if new_at.list != old_at.list {
                    plan.first.insert(new_at.list.clone());
                }
                let lp = lists.get_mut(&old_at.list).expect("loaded");
                let before = family_status(&lp.work, old_at.idx);
                let changed = lp
                    .work
                    .revoke(old_at.idx, Some(&r.new_credential_id), stamp)
                    .map_err(|e| Step::Item(e.into()))?;
                touched.insert(old_at.list.clone());
                let mut outcome =
                    changed_outcome(&r.credential_id, &lp.work, old_at.idx, changed, &before);
                let new_status = lists[&new_at.list]
                    .work
                    .get(new_at.idx)
                    .expect("registered")
                    .status()
                    .name();
                outcome.new_credential = Some(Box::new(Outcome {
                    credential_id: r.new_credential_id.clone(),
                    result: "registered",
                    status: new_status,
                    assignment: Some(self.assignment(&new_at, lists[&new_at.list].meta.size)),
                    affected: Vec::new(),
                    new_credential: None,
                }));
                Ok(outcome)
            }
        }
    }

    /// An idempotent retry of a registration, or a conflicting one.
    fn existing(
        &self,
        r: &Registration,
        at: &Location,
        lists: &BTreeMap<String, ListPlan>,
    ) -> Result<Outcome, Step> {
        let rec = lists[&at.list].work.get(at.idx).ok_or_else(|| {
            Step::Item(ItemProblem::new(
                "corrupt",
                format!(
                    "{:?} is bound to {at}, which has no record",
                    r.credential_id
                ),
            ))
        })?;
        self.existing_outcome(r, at, rec, lists[&at.list].meta.size)
            .map_err(Step::Item)
    }

    /// Registration `r` against the record `rec` its id is bound to, at `at` in a list of
    /// `size` entries: `exists`, or `registration-conflict` if the parameters differ.
    fn existing_outcome(
        &self,
        r: &Registration,
        at: &Location,
        rec: &Record,
        size: u32,
    ) -> Result<Outcome, ItemProblem> {
        let same = rec.kind == r.kind
            && rec.parent.as_ref().map(|p| &p.credential_id) == r.parent.as_ref()
            && (r.purpose.is_none() || rec.purpose == r.purpose);
        if !same {
            return Err(ItemProblem::new(
                "registration-conflict",
                format!(
                    "{:?} is already registered with different parameters: kind {:?}, {}; \
                     a retry must repeat them, a new card needs a new id",
                    r.credential_id,
                    rec.kind,
                    match &rec.parent {
                        Some(p) => format!("parent {:?}", p.credential_id),
                        None => "no parent".to_owned(),
                    }
                ),
            ));
        }
        Ok(Outcome {
            credential_id: r.credential_id.clone(),
            result: "exists",
            status: rec.status().name(),
            assignment: Some(self.assignment(at, size)),
            affected: Vec::new(),
            new_credential: None,
        })
    }

    /// Places and records a new credential; returns where.
    #[allow(clippy::too_many_arguments)]
    async fn register(
        &self,
        r: &Registration,
        replaces: Option<&str>,
        stamp: &Stamp,
        located: &HashMap<String, Location>,
        planned: &mut HashMap<String, Location>,
        lists: &mut BTreeMap<String, ListPlan>,
        metas: &mut Metas,
        touched: &mut BTreeSet<String>,
    ) -> Result<Location, Step> {
        let parent = match &r.parent {
            Some(p) => {
                let at = located
                    .get(p)
                    .or_else(|| planned.get(p))
                    .cloned()
                    .ok_or_else(|| {
                        Step::Item(ItemProblem::new(
                            "unknown-parent",
                            format!("parent {p:?} is not registered"),
                        ))
                    })?;
                let prec = lists[&at.list].work.get(at.idx).ok_or_else(|| {
                    Step::Item(ItemProblem::new(
                        "unknown-parent",
                        format!("parent {p:?} has no record"),
                    ))
                })?;
                if !self.settings.kinds.may_be_parent(&prec.kind) {
                    return Err(Step::Item(self.settings.kinds.not_a_parent(p, &prec.kind)));
                }
                if let Some(purpose) = &r.purpose {
                    if lists[&at.list].meta.purpose.as_ref() != Some(purpose) {
                        return Err(Step::Item(ItemProblem::bad(format!(
                            "a derived card lives in its parent's list, whose pool is not {purpose:?}"
                        ))));
                    }
                }
                Some(at)
            }
            None => None,
        };
        let list = match &parent {
            Some(p) => p.list.clone(),
            None => {
                let purpose = r
                    .purpose
                    .clone()
                    .unwrap_or_else(|| self.settings.default_purpose.clone());
                self.choose_list(&purpose, lists, metas).await?
            }
        };
        self.ensure_allocated(lists, metas, &list)
            .await
            .map_err(Step::Abort)?;
        let lp = lists.get_mut(&list).expect("loaded");
        let idx = alloc::pick_free(
            lp.meta.size,
            lp.allocated.as_ref().expect("loaded"),
            &lp.work.claims,
        )
        .ok_or_else(|| {
            Step::Item(ItemProblem::new(
                "list-full",
                format!(
                    "list {list:?} has no free index left{}",
                    if parent.is_some() {
                        " for a card derived from a card in it"
                    } else {
                        ""
                    }
                ),
            ))
        })?;
        let record = Record {
            credential_id: r.credential_id.clone(),
            kind: r.kind.clone(),
            parent: None,
            children: Vec::new(),
            holds: BTreeSet::new(),
            revoked: false,
            replaced_by: None,
            replaces: replaces.map(str::to_owned),
            purpose: r.purpose.clone(),
            history: Vec::new(),
        };
        let mut reg_stamp = stamp.clone();
        reg_stamp.op = if replaces.is_some() {
            "reissue"
        } else {
            "register"
        };
        reg_stamp.hold = None;
        lp.work
            .register(idx, record, parent.as_ref().map(|p| p.idx), &reg_stamp)
            .map_err(|e| Step::Item(e.into()))?;
        touched.insert(list.clone());
        let at = Location { list, idx };
        planned.insert(r.credential_id.clone(), at.clone());
        Ok(at)
    }

    /// A random open list of pool `purpose`, counting this batch's claims; creates lists when
    /// the pool runs low.
    async fn choose_list(
        &self,
        purpose: &str,
        lists: &BTreeMap<String, ListPlan>,
        metas: &mut Metas,
    ) -> Result<String, Step> {
        if metas.is_none() {
            let all = self
                .store
                .lists()
                .await
                .map_err(|e| Step::Abort(e.into()))?;
            *metas = Some(all);
        }
        let metas = metas.as_mut().expect("read above");
        let open = |metas: &Vec<ListMeta>| -> Vec<String> {
            metas
                .iter()
                .filter(|m| m.purpose.as_deref() == Some(purpose))
                .filter(|m| {
                    let claims = lists.get(&m.id).map_or(0, |lp| lp.work.claims.len());
                    ((m.allocated + claims) as f64)
                        < self.settings.fill_threshold * f64::from(m.size)
                })
                .map(|m| m.id.clone())
                .collect()
        };
        // A pool exists once it has a list: an admin creates it (`POST /v1/lists`), except the
        // default pool, which the configuration names. A `write` token only grows pools.
        if purpose != self.settings.default_purpose
            && !metas.iter().any(|m| m.purpose.as_deref() == Some(purpose))
        {
            return Err(Step::Item(ItemProblem::new(
                "unknown-pool",
                format!(
                    "pool {purpose:?} does not exist: pools are created by an admin, with their \
                     first list (POST /v1/lists with this purpose)"
                ),
            )));
        }
        let mut candidates = open(metas);
        let mut bounded = false;
        if candidates.len() < self.settings.min_open_lists {
            let missing = self.settings.min_open_lists - candidates.len();
            bounded = self
                .open_lists(purpose, missing, metas)
                .await
                .map_err(|e| Step::Abort(e.into()))?;
            candidates = open(metas);
        }
        if candidates.is_empty() {
            return Err(Step::Item(if bounded {
                ItemProblem::new(
                    "list-limit",
                    format!(
                        "pool {purpose:?} has no list with room, and none can be created: {}",
                        StoreError::ListLimit {
                            limit: self.settings.max_lists
                        }
                    ),
                )
            } else {
                ItemProblem::new(
                    "list-full",
                    format!("pool {purpose:?} has no list with room, and none could be created"),
                )
            }));
        }
        use rand::seq::SliceRandom;
        Ok(candidates
            .choose(&mut rand::rngs::OsRng)
            .expect("non-empty")
            .clone())
    }
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

/// Why planning one item stopped.
enum Step {
    Item(ItemProblem),
    Abort(PlanAbort),
}

impl From<PlanAbort> for Step {
    fn from(a: PlanAbort) -> Self {
        Step::Abort(a)
    }
}

/// The status of a credential's derived cards, to report which ones an operation changed.
fn family_status(work: &ListWork, idx: u32) -> Vec<(u32, crate::status::Status)> {
    work.get(idx)
        .map(|r| {
            r.children
                .iter()
                .filter_map(|&c| work.get(c).map(|cr| (c, cr.status())))
                .collect()
        })
        .unwrap_or_default()
}

fn changed_outcome(
    id: &str,
    work: &ListWork,
    idx: u32,
    changed: bool,
    before: &[(u32, crate::status::Status)],
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
