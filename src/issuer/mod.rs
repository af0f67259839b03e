//! The issuer side: registering credentials, allocating their indices, and the lifecycle
//! operations (loss reports as holds, revocation, reissue) with their audit trail.
//!
//! | module          | owns                                                                       |
//! |-----------------|----------------------------------------------------------------------------|
//! | `operation.rs`  | the [`Operation`]s of a batch, their syntax checks, each [`Outcome`]       |
//! | `error.rs`      | [`ItemError`], closed (slug, status: [`crate::problem`]); [`IssuerError`]  |
//! | `plan.rs`       | planning a batch against the store, in memory, nothing written             |
//! | `plan/family.rs`| families across lists (derived pools): reads, cascades, links, mending     |
//! | `pool.rs`       | where a new top-level card goes; lists opened ahead of demand              |
//! | `apply.rs`      | [`Issuer::execute`]: check, plan, commit per list, plan again on a race    |
//! | `view.rs`       | what the admin API shows: [`Assignment`], [`CredentialView`], [`ListView`] |
//! | [`record`]      | the lifecycle rules, pure: holds, cascades, terminal revocation, audit     |
//! | [`alloc`]       | unpredictable, uniform, never-reused index allocation                      |
//! | [`auth`]        | admin bearer tokens and scopes                                             |
//! | [`kinds`]       | the accepted credential kinds and which may be parents (configuration)     |
//! | [`text`]        | free text (reasons, request ids): what may reach the audit trail           |
//! | this file       | [`Settings`], the [`Issuer`] and what its batches share on a replica       |
//!
//! A batch runs in three steps. **Check**: every item's syntax. **Plan**: locate every
//! credential the batch names, read the records of each list involved with its metadata (at
//! one version per list; every list's first read together, each with the whole families of the
//! records named, so a single write costs one round trip to locate, one to read, one to commit:
//! issue #22), allocate indices and run the rules in memory, item by item in order; if any item
//! fails, nothing is written and every failure is reported. **Commit**: one compare-and-set per
//! list ([`Registry::commit`]); a list that changed meanwhile is planned again (the items of
//! lists already committed are done). Derived cards live in their parent's list, so an item
//! never needs more than one list, except a reissue whose new card lands elsewhere, unless
//! derived cards have a pool of their own ([`Settings::derived_pool`]): then a physical card's
//! cascade reaches its derived cards in their lists, and the item ties those lists together
//! (`plan/family.rs`). Where the
//! store can ([`Registry::commits_jointly`]: the embedded store, a standalone Redis), the lists
//! an item ties together and the new ids' bindings are one atomic step; on a Redis Cluster the
//! lists' commits are sent together, each with its bindings beside it, and a reissue's new
//! card is committed (and bound) before its old card is revoked, after the old card is marked
//! for it with the first read; a retry finishes what landed in part (see `apply`).
//!
//! [`Registry::commit`]: crate::store::registry::Registry::commit
//! [`Registry::commits_jointly`]: crate::store::registry::Registry::commits_jointly

pub mod alloc;
mod apply;
pub mod auth;
mod error;
pub mod kinds;
mod operation;
mod plan;
mod pool;
pub mod record;
pub mod text;
mod view;

pub use error::{IssuerError, ItemError, ItemProblem};
pub use operation::{
    check_purpose, Affected, HoldOp, Operation, Outcome, Registration, ReissueOp, RevokeOp,
    DEFAULT_HOLD, MAX_BATCH, MAX_PURPOSE, MAX_REASON, MAX_REQUEST_ID,
};
pub use pool::last_number;
pub use view::{Assignment, CredentialView, ListView};

use crate::routes::PublicUrls;
use crate::status::Bits;
use crate::store::any::AnyStore;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// The pool derived cards go to (`{kind}` replaced by the card's kind), linked to their
    /// parent across lists; `None`: a derived card goes to its parent's list
    /// (`STATUSD_DERIVED_POOL`, docs/capacity.md "the derived-card gap").
    pub derived_pool: Option<String>,
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
            derived_pool: None,
        }
    }
}

/// The issuer: batches against the configured store.
#[derive(Clone)]
pub struct Issuer {
    /// The source of truth: lists, records and the registry of credential ids.
    store: Arc<AnyStore>,
    /// The public URLs that assignments point at.
    urls: PublicUrls,
    settings: Settings,
    /// Shared by every clone: what this replica's batches coordinate on.
    coord: Arc<Coordination>,
}

impl Settings {
    /// The pool a derived card of `kind` goes to, if derived cards have pools of their own.
    pub fn derived_pool_for(&self, kind: &str) -> Option<String> {
        self.derived_pool
            .as_ref()
            .map(|p| p.replace("{kind}", kind))
    }

    /// Whether pool `purpose` grows without an admin creating it first: the default pool and
    /// the derived pools the configuration names.
    pub fn is_configured_pool(&self, purpose: &str) -> bool {
        purpose == self.default_purpose
            || self
                .kinds
                .accepted()
                .iter()
                .any(|k| self.derived_pool_for(k).as_deref() == Some(purpose))
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

    /// This issuer writing through `store` (the same data through other connections: the
    /// bulk lane's), coordinating with this one as one replica.
    pub fn with_store(&self, store: Arc<AnyStore>) -> Self {
        Issuer {
            store,
            ..self.clone()
        }
    }
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
    /// Per pool, the lists with room a new top-level card was last chosen among here, from a
    /// read of every list's metadata: planning reads only these lists' metadata, and every
    /// list's again once fewer than [`Settings::min_open_lists`] of them have room.
    pool_lists: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    /// An embedded store in a directory of its own, removed afterwards.
    pub(crate) struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn issuer_with(settings: Settings) -> (Issuer, Scratch) {
        let dir = std::env::temp_dir().join(format!(
            "statusd-plan-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = EmbeddedStore::open(&dir).unwrap();
        let urls = PublicUrls::new("https://status.example");
        let issuer = Issuer::new(Arc::new(AnyStore::Embedded(store)), urls, settings);
        (issuer, Scratch(dir))
    }

    /// Runs `ops` as one batch that must be valid; returns every item's outcome.
    pub(crate) async fn run(issuer: &Issuer, ops: &[Operation]) -> Vec<Outcome> {
        issuer
            .execute("clerk", ops)
            .await
            .expect("a valid batch")
            .into_iter()
            .map(|r| r.expect("the item succeeds"))
            .collect()
    }

    /// The status `id` reads at.
    pub(crate) async fn status(issuer: &Issuer, id: &str) -> &'static str {
        issuer.view(id).await.unwrap().expect("registered").status
    }

    /// The cards an outcome reports changed, with their statuses.
    pub(crate) fn affected(o: &Outcome) -> Vec<(&str, &str)> {
        o.affected
            .iter()
            .map(|a| (a.credential_id.as_str(), a.status))
            .collect()
    }

    /// `issuer` holding physical card `card-1` and its derived mobile card `phone-1` (in its
    /// parent's list, or in a derived pool if the issuer's settings name one).
    pub(crate) async fn card_with_phone(issuer: (Issuer, Scratch)) -> (Issuer, Scratch) {
        run(
            &issuer.0,
            &[
                register("card-1", "physical", None),
                register("phone-1", "mobile", Some("card-1")),
            ],
        )
        .await;
        issuer
    }

    /// Small lists: planning decisions do not depend on the size.
    pub(crate) fn issuer() -> (Issuer, Scratch) {
        issuer_with(Settings {
            list_size: 1024,
            ..Settings::default()
        })
    }

    pub(crate) fn register(id: &str, kind: &str, parent: Option<&str>) -> Operation {
        Operation::Register(Registration {
            credential_id: id.into(),
            kind: kind.into(),
            parent: parent.map(Into::into),
            purpose: None,
            reason: None,
            request_id: None,
            expires_at: None,
        })
    }

    fn hold_op(id: &str, hold: Option<&str>) -> HoldOp {
        HoldOp {
            credential_id: id.into(),
            reason: "card lost".into(),
            hold: hold.map(Into::into),
            request_id: None,
        }
    }

    pub(crate) fn suspend(id: &str, hold: Option<&str>) -> Operation {
        Operation::Suspend(hold_op(id, hold))
    }

    pub(crate) fn reinstate(id: &str, hold: Option<&str>) -> Operation {
        Operation::Reinstate(hold_op(id, hold))
    }

    pub(crate) fn revoke(id: &str) -> Operation {
        Operation::Revoke(RevokeOp {
            credential_id: id.into(),
            reason: "revoked".into(),
            request_id: None,
        })
    }

    pub(crate) fn reissue(old: &str, new: &str, parent: Option<&str>) -> Operation {
        Operation::Reissue(ReissueOp {
            credential_id: old.into(),
            new_credential_id: new.into(),
            parent: parent.map(Into::into),
            reason: "replaced".into(),
            request_id: None,
            expires_at: None,
        })
    }

    /// Issue 21: of 20 concurrent registrations of one id on a replica, 2 were answered 409
    /// `registered-concurrently` instead of the idempotent answer, and indices were burnt.
    /// They now run one after the other: one `registered`, the rest `exists`, one index used.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn issue_21_concurrent_registrations_of_one_id_are_one_card() {
        let (issuer, _dir) = issuer();
        let op = register("card-1", "physical", None);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (issuer, op) = (issuer.clone(), op.clone());
                tokio::spawn(async move { issuer.execute("clerk", &[op]).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            let mut out = t.await.unwrap().expect("a valid batch");
            results.push(out.pop().unwrap().expect("registered or exists").result);
        }
        results.sort_unstable();
        assert_eq!(results[19], "registered");
        assert!(results[..19].iter().all(|r| *r == "exists"), "{results:?}");
        let allocated: u64 = issuer
            .lists()
            .await
            .unwrap()
            .iter()
            .map(|l| l.allocated)
            .sum();
        assert_eq!(allocated, 1);
    }
}
