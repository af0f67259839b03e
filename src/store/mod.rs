//! Sources of truth: where list state lives and how it changes, behind one trait.
//!
//! [`Store`] is implemented by the embedded durable store ([`embedded`], the default for a single
//! machine) and by Redis (production, many replicas). The snapshot builder and the refresher only
//! see this trait. Every implementation enforces the same transition rules ([`check_change`]) in
//! the same atomic step that applies a change, so no writer can bypass them.

pub mod any;
pub mod embedded;
pub mod redis;
pub mod registry;
pub mod retire;

use crate::status::{Bits, Status, StatusError, StatusList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;

/// How statusd reaches a `rediss://` Redis and authenticates to any Redis (the Redis store's
/// settings, built by `config` from the `--redis-*` flags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisSecurity {
    /// PEM CA certificates of the server (default: the system's roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
}

/// Whether a write to Redis waits for replicas before it is acknowledged (the Redis store's
/// settings, built by `config` from `--redis-wait-replicas` and `--redis-wait-timeout`).
///
/// Redis replicates asynchronously: a master that acknowledged a write and died before any
/// replica had it takes the write with it when a replica is promoted, and a lost revocation is a
/// card that reads valid again. With `replicas` > 0 every write the store acknowledges is
/// followed, in the same round trip, by `WAIT replicas timeout`; fewer acknowledgements than
/// asked answer [`StoreError::NotReplicated`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisWait {
    /// Replicas that must hold a write before it is acknowledged; 0: none (no `WAIT`).
    pub replicas: u32,
    /// How long `WAIT` waits for them at most. Keep it below the Redis response timeout (2 s).
    pub timeout: std::time::Duration,
}

impl Default for RedisWait {
    fn default() -> Self {
        RedisWait {
            replicas: 0,
            timeout: std::time::Duration::from_secs(1),
        }
    }
}

/// Longest list id; ids appear in URLs and Redis keys.
pub const MAX_ID_LEN: usize = 64;

/// What a list is, apart from its entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {
    pub id: String,
    pub bits: u8,
    pub size: u32,
    /// Increases by one with every applied batch of changes; 0 for a new list.
    pub version: u64,
    /// Unix seconds of the last change (or creation).
    pub updated_at: u64,
    /// Unix milliseconds of the last change, by the store's clock (0 if a writer did not say):
    /// the start of the propagation latency the refresher measures.
    #[serde(default)]
    pub updated_ms: u64,
    /// The issuer pool the list belongs to (`None`: not managed by the issuer API, such as the
    /// demo lists or lists other writers maintain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Indices the issuer API has handed out (never reused; see [`registry`]).
    #[serde(default)]
    pub allocated: u64,
    /// How long the list's credentials live, and whether it is retired ([`retire`]).
    #[serde(flatten)]
    pub life: Lifetime,
}

/// The expiry of a list's credentials and the list's retirement ([`crate::retire`]): kept in
/// its metadata, changed only atomically with a commit ([`registry::Txn::extends`]) or by
/// [`retire::Retire`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifetime {
    /// The latest `expires_at` (Unix seconds) of the credentials registered in the list; 0
    /// while none is. `None` once one was registered without an expiry, and for lists from
    /// before expiries were kept: such a list never retires.
    #[serde(default)]
    pub expires_max: Option<u64>,
    /// When (Unix seconds) the list was retired: it is no longer published, answers 410 Gone,
    /// and takes no writes. Its metadata stays for good (a tombstone), so that its id and
    /// indices are never reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
    /// When (Unix seconds) the retired list's status data was deleted, after the retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<u64>,
}

impl Lifetime {
    /// A new list's: no credential yet, so nothing keeps it alive.
    pub fn new_list() -> Lifetime {
        Lifetime {
            expires_max: Some(0),
            ..Lifetime::default()
        }
    }

    pub fn is_retired(&self) -> bool {
        self.retired_at.is_some()
    }

    /// `expires_max` after a commit that `extends` it.
    pub fn extended(&self, extends: Extends) -> Option<u64> {
        match (self.expires_max, extends) {
            (_, Extends::Forever) | (None, _) => None,
            (Some(t), Extends::Nothing) => Some(t),
            (Some(t), Extends::Until(u)) => Some(t.max(u)),
        }
    }
}

/// What the credentials a commit registers do to their list's [`Lifetime::expires_max`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Extends {
    /// It registers none.
    #[default]
    Nothing,
    /// The latest `expires_at` among them.
    Until(u64),
    /// One of them has no expiry: the list never retires.
    Forever,
}

impl Extends {
    /// Both extensions together.
    pub fn and(self, other: Extends) -> Extends {
        use Extends::*;
        match (self, other) {
            (Forever, _) | (_, Forever) => Forever,
            (Nothing, x) | (x, Nothing) => x,
            (Until(a), Until(b)) => Until(a.max(b)),
        }
    }
}

impl ListMeta {
    pub fn bits(&self) -> Result<Bits, StatusError> {
        Bits::new(self.bits.into())
    }
}

/// A request to create a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewList {
    pub id: String,
    pub bits: Bits,
    pub size: u32,
    /// The issuer pool to put the list in ([`ListMeta::purpose`]).
    pub purpose: Option<String>,
}

/// One status change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub idx: u32,
    pub status: Status,
}

/// What an applied batch did: the new version and each entry's previous status, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub version: u64,
    pub previous: Vec<Status>,
}

/// Errors of a source of truth.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("list {0:?} does not exist")]
    UnknownList(String),
    #[error("list {0:?} already exists")]
    ListExists(String),
    #[error("invalid list id {0:?}: use 1 to 64 characters from A-Z a-z 0-9 - _")]
    InvalidId(String),
    #[error("entry {idx} is INVALID, which is terminal; it cannot become {to}")]
    Terminal { idx: u32, to: Status },
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("stored data for list {list:?} is corrupt: {reason}")]
    Corrupt { list: String, reason: String },
    #[error("storage backend: {0}")]
    Backend(String),
    /// The disk under the store is full (`ENOSPC`): nothing was written; writes succeed again
    /// once space is freed.
    #[error("the store's disk is full; nothing was written: {0}")]
    Full(String),
    /// A registry commit found the list changed since it was read ([`registry::Txn`]): read
    /// again and retry.
    #[error("list {0:?} changed concurrently")]
    Conflict(String),
    /// A Redis write was applied on the master but fewer replicas than `--redis-wait-replicas`
    /// confirmed it within `--redis-wait-timeout` ([`RedisWait`]): a failover now could lose it.
    /// Retrying the same operation is safe (issuer operations are idempotent).
    #[error(
        "the write was applied on the Redis primary but confirmed by {acked} of the {wanted} \
         replicas required (STATUSD_REDIS_WAIT_REPLICAS); it may be lost in a failover"
    )]
    NotReplicated { acked: u32, wanted: u32 },
    /// The list is retired ([`Lifetime::retired_at`]): it takes no writes.
    #[error("list {0:?} is retired: every credential in it expired; it takes no more changes")]
    Retired(String),
    /// The issuer did not create a list: the store already holds the most lists configured
    /// (`--max-lists`). Produced by [`crate::issuer::Issuer`], never by a store.
    #[error(
        "the store already holds {limit} lists, the most allowed (--max-lists, \
         STATUSD_MAX_LISTS); no list was created"
    )]
    ListLimit { limit: usize },
}

/// Whether an I/O error means the disk (or its quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Checks a list id: it goes into URLs, file names and Redis keys unescaped.
pub fn check_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId(id.to_owned()))
    }
}

/// The transition rules every store applies atomically with the change: the index is in range,
/// the value fits `bits`, and INVALID is terminal (setting INVALID again is a no-op, not an error).
pub fn check_change(bits: Bits, size: u32, old: Status, change: Change) -> Result<(), StoreError> {
    if change.idx >= size {
        return Err(StatusError::IndexOutOfRange {
            idx: change.idx.into(),
            size,
        }
        .into());
    }
    if change.status.0 > bits.max_value() {
        return Err(StatusError::ValueTooWide {
            value: change.status.0,
            bits: bits.get(),
        }
        .into());
    }
    if old == Status::INVALID && change.status != Status::INVALID {
        return Err(StoreError::Terminal {
            idx: change.idx,
            to: change.status,
        });
    }
    Ok(())
}

/// What [`Store::changed`] knows of what changed since its previous answer: the lists a write
/// named, or that anything may have changed. Only a hint either way: a write whose hint was
/// lost is found by the refresher's periodic full read ([`Store::lists`]), later.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hint {
    /// Anything may have changed (a list was created, or messages may have been missed while
    /// unsubscribed): read every list's metadata.
    pub all: bool,
    /// Lists a write named.
    pub lists: BTreeSet<String>,
}

impl Hint {
    /// More names than this and the hint says [`Hint::all`] instead: one full read is then
    /// cheaper than as many single ones, and the set stays small.
    pub const MAX_LISTS: usize = 64;

    /// A hint that anything may have changed.
    pub fn all() -> Hint {
        Hint {
            all: true,
            lists: BTreeSet::new(),
        }
    }

    /// Whether it says nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.all && self.lists.is_empty()
    }

    /// Adds list `id`, named by a write.
    pub fn add(&mut self, id: &str) {
        if self.all {
            return;
        }
        if !self.lists.contains(id) {
            self.lists.insert(id.to_owned());
        }
        if self.lists.len() > Self::MAX_LISTS {
            *self = Hint::all();
        }
    }

    /// Adds everything `other` says.
    pub fn merge(&mut self, other: Hint) {
        if other.all {
            *self = Hint::all();
        }
        for id in &other.lists {
            self.add(id);
        }
    }
}

/// The hints a store gathers between two [`Store::changed`] answers, and the wake-up that
/// announces them: writers [`Self::note`] and wake, the refresher waits and takes.
#[derive(Debug)]
pub(crate) struct Hints {
    pending: std::sync::Mutex<Hint>,
    wake: tokio::sync::watch::Sender<u64>,
    /// The refresher's view of `wake`.
    seen: tokio::sync::Mutex<tokio::sync::watch::Receiver<u64>>,
    /// Since when every write has been named by a hint (a live subscription), if it is.
    complete_since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for Hints {
    fn default() -> Self {
        let (wake, seen) = tokio::sync::watch::channel(0);
        Hints {
            pending: std::sync::Mutex::default(),
            wake,
            seen: tokio::sync::Mutex::new(seen),
            complete_since: std::sync::Mutex::default(),
        }
    }
}

impl Hints {
    /// Notes that list `id` changed (`None`: anything may have), and wakes the waiter.
    pub(crate) fn note(&self, id: Option<&str>) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match id {
                Some(id) => pending.add(id),
                None => *pending = Hint::all(),
            }
        }
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits up to `timeout` for a note (none if one came since the last call), then takes
    /// every note gathered so far.
    pub(crate) async fn wait(&self, timeout: std::time::Duration) -> Hint {
        {
            let mut seen = self.seen.lock().await;
            let _ = tokio::time::timeout(timeout, seen.changed()).await;
        }
        self.take()
    }

    /// Takes every note gathered so far.
    pub(crate) fn take(&self) -> Hint {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records whether every write is named by a hint from now on (a subscription taken) or
    /// no longer (lost: writes may go unnamed until it is back, so anything may have changed).
    pub(crate) fn set_complete(&self, complete: bool) {
        let mut since = self
            .complete_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (complete, since.is_some()) {
            (true, false) => *since = Some(std::time::Instant::now()),
            (false, true) => {
                *since = None;
                drop(since);
                self.note(None);
            }
            _ => {}
        }
    }

    /// Whether every write has been named by a hint for at least `settle` (see
    /// [`Store::hints_complete`]).
    pub(crate) fn complete_for(&self, settle: std::time::Duration) -> bool {
        self.complete_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() >= settle)
    }
}

/// What [`Store::changes_since`] answers: the version reached and the changes that led there,
/// or `None` (a gap, or no change log: the caller reloads the list in full).
pub type Feed = Option<(u64, Vec<Change>)>;

/// A source of truth for status lists.
pub trait Store: Send + Sync + 'static {
    /// Every list's metadata, current versions included.
    fn lists(&self) -> impl Future<Output = Result<Vec<ListMeta>, StoreError>> + Send;

    /// One list's metadata (`None` if there is no such list): what the refresher reads for a
    /// list a [`Hint`] names, instead of every list's.
    fn meta(&self, id: &str) -> impl Future<Output = Result<Option<ListMeta>, StoreError>> + Send;

    /// Several lists' metadata, in order (`None` for a list that does not exist), in one round
    /// trip or one transaction: what the issuer reads for the lists of a pool it remembers.
    fn metas(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Option<ListMeta>>, StoreError>> + Send;

    /// One list in full, consistent with the returned metadata's version.
    fn load(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<(ListMeta, StatusList), StoreError>> + Send;

    /// Creates an all-VALID list.
    fn create_list(
        &self,
        new: NewList,
    ) -> impl Future<Output = Result<ListMeta, StoreError>> + Send;

    /// Applies `changes` to one list atomically: all of them or, on any rule violation, none.
    fn apply(
        &self,
        id: &str,
        changes: &[Change],
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// The changes that took list `id` from `version` to its current version, with that version,
    /// if the store still holds every one of them in order; `Ok(None)` when it does not (a gap)
    /// or keeps no change log, and the caller reloads the list in full.
    fn changes_since(
        &self,
        id: &str,
        version: u64,
    ) -> impl Future<Output = Result<Option<(u64, Vec<Change>)>, StoreError>> + Send;

    /// List `id`'s metadata (`None`: no such list) and, when it is ahead of `version`, the
    /// changes since then as [`Self::changes_since`] gives them: what the refresher reads for
    /// each list a write names. One round trip where the store can (Redis); by default the two
    /// reads one after the other.
    fn meta_and_changes_since(
        &self,
        id: &str,
        version: u64,
    ) -> impl Future<Output = Result<Option<(ListMeta, Feed)>, StoreError>> + Send {
        async move {
            let Some(meta) = self.meta(id).await? else {
                return Ok(None);
            };
            let feed = if meta.version > version {
                self.changes_since(id, version).await?
            } else {
                None
            };
            Ok(Some((meta, feed)))
        }
    }

    /// The list's version and the values of the entries at `idxs` (in order), read together:
    /// what the consistency check compares a snapshot with. Indices beyond the list fail.
    fn entries(
        &self,
        id: &str,
        idxs: &[u32],
    ) -> impl Future<Output = Result<(u64, Vec<Status>), StoreError>> + Send;

    /// Resolves when the store may have changed since the last call (or after `timeout`), with
    /// what it knows of the change: the lists writes named, or that anything may have changed
    /// (empty after a `timeout` with no news). A hint only: the refresher compares versions,
    /// and reads every list's metadata periodically whatever the hints said.
    fn changed(&self, timeout: std::time::Duration) -> impl Future<Output = Hint> + Send;

    /// Whether [`Self::changed`] names every write now, and has done so long enough that the
    /// full read taken when it began (messages may have been lost before) is behind: a live
    /// subscription. The refresher then reads every list's metadata less often
    /// ([`crate::refresh::Refresher::full_sync_every`]), as a safety net only. `false` (the
    /// default) keeps that read on every tick.
    fn hints_complete(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_url_and_key_safe() {
        for ok in ["1", "list-7", "A_b-9", &"x".repeat(64)] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "ä", "..", &"x".repeat(65), "{tag}"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_hint_naming_too_many_lists_says_all() {
        let mut h = Hint::default();
        assert!(h.is_empty());
        h.add("a");
        h.add("a");
        assert_eq!(h.lists.len(), 1);
        assert!(!h.all && !h.is_empty());
        for i in 0..Hint::MAX_LISTS {
            h.add(&i.to_string());
        }
        assert!(h.all && h.lists.is_empty(), "{h:?}");
        let mut named = Hint::default();
        named.add("b");
        named.merge(Hint::all());
        assert_eq!(named, Hint::all());
    }

    #[test]
    fn invalid_is_terminal() {
        let c = |idx, s| Change {
            idx,
            status: Status(s),
        };
        assert!(check_change(Bits::Two, 8, Status::VALID, c(1, 2)).is_ok());
        assert!(check_change(Bits::Two, 8, Status::INVALID, c(1, 1)).is_ok());
        assert!(matches!(
            check_change(Bits::Two, 8, Status::INVALID, c(1, 0)),
            Err(StoreError::Terminal { idx: 1, .. })
        ));
        assert!(matches!(
            check_change(Bits::Two, 8, Status::INVALID, c(1, 2)),
            Err(StoreError::Terminal { .. })
        ));
        assert!(check_change(Bits::Two, 8, Status::VALID, c(8, 1)).is_err());
        assert!(check_change(Bits::One, 8, Status::VALID, c(0, 2)).is_err());
    }

    #[test]
    fn a_credential_without_expiry_keeps_its_list_forever() {
        use Extends::*;
        assert_eq!(Until(5).and(Until(9)), Until(9));
        assert_eq!(Nothing.and(Until(3)), Until(3));
        assert_eq!(Until(3).and(Forever), Forever);
        let new = Lifetime::new_list();
        assert_eq!(new.extended(Nothing), Some(0));
        assert_eq!(new.extended(Until(7)), Some(7));
        assert_eq!(new.extended(Forever), None);
        let legacy = Lifetime::default();
        assert_eq!(legacy.extended(Until(7)), None);
        // Lists stored before lifetimes were kept read as never retiring.
        let old: ListMeta =
            serde_json::from_str(r#"{"id":"a","bits":2,"size":8,"version":1,"updated_at":0}"#)
                .unwrap();
        assert_eq!(old.life, Lifetime::default());
        let back: ListMeta = serde_json::from_value(
            serde_json::to_value(ListMeta {
                life: Lifetime {
                    expires_max: Some(9),
                    retired_at: Some(10),
                    purged_at: None,
                },
                ..old
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(back.life.expires_max, Some(9));
        assert!(back.life.is_retired());
    }

    /// Requests awaited together cost the round trips of the longest of them; every request
    /// counts.
    #[tokio::test]
    async fn concurrent_steps_count_the_round_trips_of_the_longest() {
        let step = |n: u32| async move {
            for _ in 0..n {
                note_requests(1);
                tokio::task::yield_now().await;
            }
        };
        let ((), counted) = count_round_trips(async {
            together(step(2), step(3)).await;
            step(1).await;
            all_together(vec![step(1), step(2)]).await;
        })
        .await;
        assert_eq!(
            counted,
            Requests {
                requests: 9,
                round_trips: 3 + 1 + 2
            }
        );
        // Outside a count, nothing is noted and nothing fails.
        together(step(1), step(1)).await;
    }
}

/// What a task sent to the store's backend inside [`count_requests`]: its requests, and the
/// round trips they cost (requests sent together and awaited together, a pipeline, a script,
/// one command to each of several cluster nodes at once, count as one round trip of latency).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub requests: u32,
    pub round_trips: u32,
}

tokio::task_local! {
    /// Requests sent to the backend by the task running inside [`count_requests`].
    static REQUESTS: std::cell::Cell<Requests>;
}

/// Runs `f`, counting the requests this task sends to the store's backend meanwhile: a Redis
/// command, pipeline or script counts as one (requests sent together, sharing a round trip,
/// each count), as does an embedded store transaction. The issuer reports it per operation
/// (`statusd_issuer_store_requests`): on a distant Redis each one costs up to a round trip.
pub async fn count_requests<F: Future>(f: F) -> (F::Output, u32) {
    let (out, counted) = count_round_trips(f).await;
    (out, counted.requests)
}

/// [`count_requests`] with the round trips those requests cost: futures run through
/// [`together`] or [`all_together`] count as many round trips as the longest of them.
pub async fn count_round_trips<F: Future>(f: F) -> (F::Output, Requests) {
    REQUESTS
        .scope(std::cell::Cell::new(Requests::default()), async move {
            let out = f.await;
            (out, REQUESTS.with(std::cell::Cell::get))
        })
        .await
}

/// Notes `n` requests to the backend, sent together (one round trip), for [`count_requests`]
/// (nothing outside one).
pub(crate) fn note_requests(n: u32) {
    let _ = REQUESTS.try_with(|c| {
        let mut r = c.get();
        r.requests = r.requests.saturating_add(n);
        r.round_trips = r.round_trips.saturating_add(1);
        c.set(r);
    });
}

/// Adds what concurrent steps sent (each counted apart) to the running count: every request,
/// and the round trips of the longest step, since they were awaited together.
fn note_concurrent(steps: impl IntoIterator<Item = Requests>) {
    let _ = REQUESTS.try_with(|c| {
        let mut r = c.get();
        let mut longest = 0;
        for s in steps {
            r.requests = r.requests.saturating_add(s.requests);
            longest = longest.max(s.round_trips);
        }
        r.round_trips = r.round_trips.saturating_add(longest);
        c.set(r);
    });
}

/// Runs `a` and `b` concurrently on this task (their requests overlap in flight), counting
/// their round trips as the longer one's.
pub async fn together<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let ((a, ca), (b, cb)) = tokio::join!(count_round_trips(a), count_round_trips(b));
    note_concurrent([ca, cb]);
    (a, b)
}

/// [`together`] for any number of futures of one type; outputs in order.
pub async fn all_together<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<_> = futures
        .into_iter()
        .map(|f| Box::pin(count_round_trips(f)))
        .collect();
    let mut out: Vec<Option<(F::Output, Requests)>> = futures.iter().map(|_| None).collect();
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
    let (out, counted): (Vec<_>, Vec<_>) = out
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .unzip();
    note_concurrent(counted);
    out
}
