//! The refresher: follows the source of truth and publishes snapshots.
//!
//! A small loop: wait for a change hint (or a tick), compare list versions with the published
//! snapshot (only the lists a hint named; every list's on the tick, or about once a second
//! while a live subscription names every write, so a lost hint only delays an update), bring changed lists up to date (incrementally from the store's change feed when it
//! has one, in full otherwise), rebuild them on the blocking pool in parallel, and publish one
//! new snapshot. Every failure is logged and counted, the loop backs off, and the last good
//! snapshot keeps serving: a list that fails validation keeps its previous version, a list that
//! vanishes from the store keeps being served, and tokens are re-signed from the state in memory
//! when the store does not answer, so nothing is ever served past its `exp`.
//!
//! Background builds hand their artefacts back through `Built`, whose wake-up publishes them
//! into the current snapshot at once, without asking the store again. Readiness (whether a
//! synchronisation happened recently enough) is marked here and kept next to the snapshot
//! ([`SyncState`]).
//!
//! Signing also waits for the signing key ([`KeyWatch`], checked before every pass and told of
//! every failed signature): while the key file does not hold it, the PKCS#11 token does not sign
//! with it, or its certificate no longer vouches for it, lists keep following the store for
//! lookups, their signed artefacts stay as last signed, and as those near `exp` their
//! `Cache-Control` is shortened and then the artefacts withheld ([`build::aged`]), so no cache
//! keeps a token past its `exp`.

use crate::keyfile::KeyWatch;
use crate::metrics::Metrics;
use crate::runtime;
use crate::snapshot::build::{self, BuildParams};
use crate::snapshot::delta::History;
use crate::snapshot::readiness::unix_ms;
use crate::snapshot::{persist, Aging, Artefacts, ListSnapshot, Lists, SnapshotStore, SyncState};
use crate::status::StatusList;
use crate::store::{Feed, Hint, ListMeta, Store, StoreError};
use crate::token::keys::KeySet;
use crate::token::{SignError, Signer, TokenSigner as _};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// After a wake-up, how long to wait for more changes before synchronising.
const COALESCE: Duration = Duration::from_millis(5);
/// How often the last good snapshot is written to disk at most.
const PERSIST_EVERY: Duration = Duration::from_secs(5);

/// What the refresher signs with.
pub struct Signing {
    /// The signing key (a key file's, or a PKCS#11 token's).
    pub key: Arc<Signer>,
    /// The key's source (file or PKCS#11 token) and certificate, checked before every pass
    /// that could sign, and told of every failed signature: signing pauses while it fails.
    pub watch: Arc<KeyWatch>,
    /// Keys published in the JWKS (the signing key and any still-valid previous keys),
    /// replaced whole by a reload (SIGHUP); the next synchronisation publishes the new JWKS.
    pub published_keys: Arc<arc_swap::ArcSwap<KeySet>>,
}

/// The refresher: built with [`Refresher::new`], run with [`Refresher::run`].
pub struct Refresher<S> {
    /// The source of truth it follows.
    store: Arc<S>,
    /// Where it publishes, and what it compares the store with.
    snapshots: Arc<SnapshotStore>,
    /// The signing key.
    key: Arc<Signer>,
    /// See [`Signing::watch`].
    key_watch: Arc<KeyWatch>,
    /// See [`Signing::published_keys`].
    published_keys: Arc<arc_swap::ArcSwap<KeySet>>,
    /// URLs, issuer, token lifetimes and the tick every artefact is built with.
    params: BuildParams,
    metrics: Arc<Metrics>,
    /// Marked after every synchronisation; `/readyz` reads it.
    sync: Arc<SyncState>,
    /// Where the last good snapshot is kept for a start while the store is down.
    persist_to: Option<PathBuf>,
    /// The generation last written to [`Self::persist_to`], and when.
    persisted: (u64, Option<Instant>),
    /// Each list as last written there, so that a write encodes only the lists that changed.
    written: Arc<std::sync::Mutex<persist::Written>>,
    /// The write to [`Self::persist_to`] under way, if any. The loop never waits for it: a
    /// write of 256 changed lists (encoding, a 6 MB file, fsync) takes hundreds of
    /// milliseconds, during which no change would become visible (issue 16, write → visible).
    persisting: Option<JoinHandle<()>>,
    /// Lists whose state at a version failed validation, and when: retried every
    /// [`RETRY_REJECTED`] rather than on every poll, so a corrupt list does not flood the log.
    rejected: Mutex<HashMap<String, (u64, Instant)>>,
    /// Shortest time between two re-encodings of a list that keeps changing. Lookups see every
    /// change at once; tokens follow within this interval (0: re-encode after every change).
    reencode_every: Duration,
    /// How often every list's metadata is read while the store's hints name every write
    /// ([`Store::hints_complete`]); otherwise on every tick.
    full_sync_every: Duration,
    /// Background artefact builds (re-encodings) running or waiting for a slot, by list id.
    encoding: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Builds that run at once, one per core: a build is CPU work throughout, so more at once
    /// would only hold more encodings in memory (256 lists at a cold start) and finish none
    /// sooner.
    build_slots: Arc<tokio::sync::Semaphore>,
    /// Artefacts of background builds that finished, waiting to be attached.
    built: Arc<Built>,
    /// When lists missing from the store were last logged ([`Self::warn_missing`]).
    missing_warned: Mutex<Option<Instant>>,
    /// The retired lists the store names ([`crate::retire`]): published with every snapshot so
    /// their URLs answer 410.
    retired: Mutex<Arc<HashSet<Box<str>>>>,
    /// Each list's recent state changes, from which its re-encodings sign deltas
    /// ([`crate::snapshot::delta`]).
    history: Mutex<HashMap<String, History>>,
    /// The published keys the last publication's JWKS was built from: while they are the
    /// keys published now, a publication shares that JWKS without serialising the keys.
    jwks_from: Mutex<Option<Arc<KeySet>>>,
}

/// Where background builds leave their artefacts, and the wake-up that gets them published at
/// once rather than a tick later (cache windows leave [`BuildParams::margin`] for one tick).
#[derive(Default)]
struct Built {
    artefacts: std::sync::Mutex<Vec<(String, Artefacts)>>,
    notify: tokio::sync::Notify,
}

impl Built {
    fn put(&self, id: String, a: Artefacts) {
        self.artefacts.lock().expect("not poisoned").push((id, a));
        // A permit is kept if the loop is mid-pass, so the wake-up is never lost.
        self.notify.notify_one();
    }

    fn take(&self) -> Vec<(String, Artefacts)> {
        std::mem::take(&mut *self.artefacts.lock().expect("not poisoned"))
    }
}

/// Artefact builds allowed to run at once in the background: one core keeps serving.
const MAX_BACKGROUND_BUILDS: usize = 1;

/// How often a list version that failed validation is tried again.
const RETRY_REJECTED: Duration = Duration::from_secs(5);

impl<S: Store> Refresher<S> {
    /// A refresher that follows `store` and publishes into `snapshots`, marking `sync` after
    /// every synchronisation. It persists nothing and re-encodes after every change unless
    /// told otherwise ([`Self::persist_to`], [`Self::reencode_every`]).
    pub fn new(
        store: Arc<S>,
        snapshots: Arc<SnapshotStore>,
        signing: Signing,
        params: BuildParams,
        metrics: Arc<Metrics>,
        sync: Arc<SyncState>,
    ) -> Self {
        Refresher {
            store,
            snapshots,
            key: signing.key,
            key_watch: signing.watch,
            published_keys: signing.published_keys,
            params,
            metrics,
            sync,
            persist_to: None,
            persisted: (0, None),
            written: Arc::default(),
            persisting: None,
            rejected: Mutex::default(),
            reencode_every: Duration::ZERO,
            full_sync_every: Duration::ZERO,
            encoding: Mutex::default(),
            build_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            built: Arc::default(),
            missing_warned: Mutex::default(),
            retired: Mutex::default(),
            history: Mutex::default(),
            jwks_from: Mutex::default(),
        }
    }

    /// Keeps the last good snapshot in `path`, for a start while the store is down.
    pub fn persist_to(mut self, path: PathBuf) -> Self {
        self.persist_to = Some(path);
        self
    }

    /// Re-encodes a list that keeps changing at most every `interval` (lookups see every
    /// change at once; tokens follow within this interval).
    pub fn reencode_every(mut self, interval: Duration) -> Self {
        self.reencode_every = interval;
        self
    }

    /// Reads every list's metadata only every `interval` (never less often than the tick)
    /// while the store's hints name every write ([`Store::hints_complete`]): that read is then
    /// a safety net for a lost message, and each write costs the list it names. While hints
    /// may miss writes, every list is read on every tick. The default: every tick.
    pub fn full_sync_every(mut self, interval: Duration) -> Self {
        self.full_sync_every = interval;
        self
    }

    /// How long after a successful full synchronisation the next one is due: the tick, or
    /// [`Self::full_sync_every`] while the store's hints name every write and no list's
    /// re-signing falls due before it (cache windows leave [`BuildParams::margin`], sized for
    /// one tick, between the re-signing point and `exp`).
    fn next_full_sync(&self) -> Duration {
        let tick = self.params.tick;
        if self.full_sync_every <= tick || !self.store.hints_complete() {
            return tick;
        }
        let by = SystemTime::now() + self.full_sync_every;
        let resign_due = self
            .snapshots
            .load()
            .lists
            .values()
            .any(|ls| self.params.needs_resign(ls.artefacts.iat, by));
        if resign_due {
            tick
        } else {
            self.full_sync_every
        }
    }

    /// Runs until `shutdown` turns true: synchronise, then wait for a change in the store, the
    /// tick, or a finished background build (attached at once, no synchronisation).
    ///
    /// A change hint naming lists the snapshot holds reads only those lists
    /// ([`Self::sync_lists`]); every tick, any other hint (a new list, messages that may have
    /// been missed) and every pass after a failure read every list's metadata
    /// ([`Self::sync_once`]), so a lost hint delays an update by one tick at most, or by
    /// [`Self::full_sync_every`] while the store's hints name every write. Hints do not
    /// postpone the tick.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let mut hint = Hint::all();
        let mut full_due = tokio::time::Instant::now();
        loop {
            let started = tokio::time::Instant::now();
            let full = started >= full_due || !self.knows_all(&hint);
            let synced = if full {
                self.metrics.refresh_reads_all.inc();
                self.sync_once().await
            } else {
                self.metrics.refresh_reads_named.inc();
                self.sync_lists(&hint.lists).await
            };
            match synced {
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    if full {
                        full_due = tokio::time::Instant::now() + self.next_full_sync();
                    }
                }
                Err(e) => {
                    self.metrics.refresh_errors.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff, "refresh failed; serving the last good snapshot");
                    // The next pass reads every list, whatever this one was to read.
                    full_due = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            if !self.key_watch.is_ok() || self.has_aged() {
                // Aged artefacts are looked at every tick: their Cache-Control assumes no
                // longer wait (a failing store's backoff would be longer).
                full_due = full_due.min(tokio::time::Instant::now() + self.params.tick);
            }
            self.persist_if_due().await;
            // The next full synchronisation is due at `full_due`, however many builds finish
            // and hints come before.
            hint = loop {
                let wait = full_due.saturating_duration_since(tokio::time::Instant::now());
                tokio::select! {
                    mut hint = self.store.changed(wait) => {
                        if hint.is_empty() {
                            if tokio::time::Instant::now() < full_due {
                                // A wake-up whose news an earlier answer took.
                                continue;
                            }
                            break hint;
                        }
                        // Let a burst of writes land so one synchronisation picks them all up.
                        tokio::time::sleep(COALESCE).await;
                        hint.merge(self.store.changed(Duration::ZERO).await);
                        break hint;
                    }
                    _ = self.built.notify.notified() => {
                        if self.attach_built().await {
                            self.persist_if_due().await;
                        }
                    }
                    _ = runtime::stopped(&mut shutdown) => {
                        self.finish_persisting().await;
                        if self.snapshots.load().generation != self.persisted.0 {
                            self.persist_task().await;
                        }
                        return;
                    }
                }
            };
        }
    }

    /// Whether `hint` names only lists the published snapshot holds: then they alone are read.
    fn knows_all(&self, hint: &Hint) -> bool {
        let current = self.snapshots.load();
        !hint.all
            && current.generation > 0
            && hint
                .lists
                .iter()
                .all(|id| current.lists.contains_key(id.as_str()))
    }

    /// Starts persisting the published snapshot if it changed since the last write, at most
    /// every [`PERSIST_EVERY`], and never while the previous write is still under way. The
    /// write runs beside the loop ([`Self::persisting`]).
    async fn persist_if_due(&mut self) {
        if self.persisting.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.finish_persisting().await;
        let generation = self.snapshots.load().generation;
        let (persisted, at) = self.persisted;
        if generation != persisted && at.is_none_or(|t| t.elapsed() >= PERSIST_EVERY) {
            self.persisting = Some(tokio::spawn(self.persist_task()));
            self.persisted = (generation, Some(Instant::now()));
        }
    }

    /// Waits for the write under way, if any.
    async fn finish_persisting(&mut self) {
        if let Some(h) = self.persisting.take() {
            if let Err(e) = h.await {
                self.metrics.persist_errors.inc();
                tracing::warn!(error = %e, "snapshot persistence task failed");
            }
        }
    }

    /// Writes the published lists to disk, off the async threads, on a thread of its own at the
    /// refresher's priority (the encoding of every changed list is CPU work lookups must not
    /// wait behind; the blocking pool's threads keep the default priority). Failures are
    /// logged: the file only helps a later start while the store is down.
    fn persist_task(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let path = self.persist_to.clone();
        let snap = self.snapshots.load_full();
        let written = self.written.clone();
        let metrics = self.metrics.clone();
        async move {
            let Some(path) = path else {
                return;
            };
            if snap.generation == 0 {
                return;
            }
            let (done, outcome) = tokio::sync::oneshot::channel();
            let started = std::thread::Builder::new()
                .name("statusd-persist".into())
                .spawn(move || {
                    runtime::lower_priority(runtime::BACKGROUND_NICE);
                    let mut written = written.lock().expect("not poisoned");
                    let _ = done.send(persist::write(&path, &snap, &mut written));
                });
            let res = match started {
                Ok(_) => outcome
                    .await
                    .map_err(|_| "the persist thread panicked".to_owned()),
                Err(e) => Err(format!("starting the persist thread: {e}")),
            };
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    metrics.persist_errors.inc();
                    tracing::warn!(error = %e, "could not persist the last good snapshot; the previous file is kept");
                }
                Err(e) => {
                    metrics.persist_errors.inc();
                    tracing::warn!(error = %e, "snapshot persistence task failed");
                }
            }
        }
    }

    /// Publishes a snapshot read from disk, before the first synchronisation. It is served but
    /// not fresh, so `/readyz` stays false until the store answers. Returns the lists restored.
    pub fn restore(&self, persisted: persist::Persisted) -> usize {
        let now = SystemTime::now();
        let retired = persisted.retired.len();
        *self.retired.lock().expect("not poisoned") =
            Arc::new(persisted.retired.into_iter().collect());
        let built: Lists = persisted
            .lists
            .into_iter()
            .map(|(meta, list)| {
                // Signing paused from the start (a skewed clock): published unsigned.
                if !self.key_watch.is_ok() {
                    let ls = build::unsigned(meta, list, self.key.kid());
                    return (ls.meta.id.as_str().into(), Arc::new(ls));
                }
                let ls = build::list_snapshot(meta, list, &*self.key, &self.params, now)
                    .unwrap_or_else(|u| {
                        self.key_watch.sign_failed(&u.error, &self.metrics);
                        *u.list
                    });
                (ls.meta.id.as_str().into(), Arc::new(ls))
            })
            .collect();
        let n = built.len();
        if n > 0 || retired > 0 {
            self.publish(built, now);
        }
        n
    }

    /// One full synchronisation: every list's metadata is read and compared. Returns whether a
    /// new snapshot was published.
    ///
    /// 0. Check the key file: while it does not hold the signing key, nothing is signed below
    ///    (new lists are published unsigned) and the signed artefacts age instead (step 5).
    /// 1. Bring every changed list's state up to date (feed or full load) and share its current
    ///    artefacts: lookups see the change with this publication.
    /// 2. Attach artefacts that finished building in the background.
    /// 3. Build artefacts of lists new to this replica before publishing them.
    /// 4. Start background re-encodings for lists whose artefacts are behind (no more often than
    ///    `reencode_every`) or due for re-signing.
    /// 5. Age artefacts that may no longer be cached for their full windows ([`build::aged`]).
    pub async fn sync_once(&self) -> Result<bool, StoreError> {
        let signing = self.key_watch.may_sign(&self.metrics).await;
        let current = self.snapshots.load_full();
        let now = SystemTime::now();
        let metas = match self.store.lists().await {
            Ok(m) => m,
            Err(e) => {
                // The store is unreachable: keep the tokens we serve valid from what we have.
                self.resign_from_memory(signing, now).await;
                return Err(e);
            }
        };
        let mut lists = Lists::default();
        let mut changed = current.generation == 0;
        let mut changed_at = Vec::new();
        let mut new_lists = Vec::new();
        let mut retired = HashSet::new();
        for meta in metas {
            let id: Box<str> = meta.id.as_str().into();
            // A retired list is dropped (its memory released) and answered 410 from now on.
            if meta.life.is_retired() {
                retired.insert(id);
                continue;
            }
            let Some(ls) = current.lists.get(&id) else {
                match self.store.load(&meta.id).await {
                    Ok((meta, list)) if signing => {
                        new_lists.push(self.spawn_build(
                            runtime::BACKGROUND_NICE,
                            move |key, p| build::list_snapshot(meta, list, key, p, now),
                            |u| &u.error,
                            |built| built,
                        ));
                    }
                    Ok((meta, list)) => {
                        lists.insert(id, Arc::new(build::unsigned(meta, list, self.key.kid())));
                        changed = true;
                    }
                    Err(e) => self.reject_or_fail(&meta, e)?,
                }
                continue;
            };
            lists.insert(id, ls.clone());
            changed |= self
                .follow(ls, meta, None, &mut lists, &mut changed_at)
                .await?;
        }
        // A list the store no longer names (an emptied or restored Redis, an operator's slip)
        // keeps being served: publishing it empty could turn revoked cards valid. The store is
        // not in sync with what we serve, so this pass does not count as a synchronisation:
        // readiness then follows `max_staleness` as when the store is down.
        let missing: Vec<Box<str>> = current
            .lists
            .keys()
            .filter(|id| !lists.contains_key(id) && !retired.contains(*id))
            .cloned()
            .collect();
        if *current.retired != retired {
            let dropped = current
                .lists
                .keys()
                .filter(|id| retired.contains(*id))
                .count();
            if dropped > 0 {
                tracing::info!(
                    lists = dropped,
                    retired = retired.len(),
                    "dropped retired lists from the snapshot"
                );
            }
            *self.retired.lock().expect("not poisoned") = Arc::new(retired);
            changed = true;
        }
        if !missing.is_empty() {
            self.metrics.refresh_errors.inc();
            self.warn_missing(&missing);
            for id in &missing {
                lists.insert(id.clone(), current.lists[id].clone());
            }
        }
        changed |= self.attach_finished(&mut lists).await;
        for b in new_lists {
            // A list whose signing failed is published unsigned: lookups answer at once.
            let ls = b
                .await
                .map_err(|e| StoreError::Backend(format!("snapshot build task failed: {e}")))?
                .unwrap_or_else(|u| *u.list);
            lists.insert(ls.meta.id.as_str().into(), Arc::new(ls));
            changed = true;
        }
        self.history
            .lock()
            .expect("not poisoned")
            .retain(|id, _| lists.contains_key(id.as_str()));
        if signing {
            self.schedule_encodings(lists.values(), now);
        }
        changed |= self.age(&mut lists, signing, now);
        changed |= self.jwks_outdated(&current);
        if missing.is_empty() {
            self.sync.mark(now);
            self.metrics.last_sync.set(unix_f64(now));
        }
        if !changed {
            return Ok(false);
        }
        self.publish_changed(&current, lists, &changed_at, now);
        Ok(true)
    }

    /// A synchronisation of the lists a change hint named (all of them in the published
    /// snapshot: `Self::knows_all`), each read alone (its metadata and change feed together);
    /// every other list is published as it is. Returns whether a new snapshot was published.
    /// What a hint did not name, the next full synchronisation ([`Self::sync_once`]) finds;
    /// lists missing from the store are its business too, and so is the work that looks at
    /// every list (re-signing due, aging while signing is paused), one tick later at most:
    /// this pass costs the lists it names, not the lists there are. It starts the
    /// re-encodings of the lists it changed.
    pub async fn sync_lists(&self, ids: &BTreeSet<String>) -> Result<bool, StoreError> {
        let current = self.snapshots.load_full();
        let now = SystemTime::now();
        let mut lists = current.lists.clone();
        let mut changed = false;
        let mut changed_at = Vec::new();
        for id in ids {
            let Some(ls) = current.lists.get(id.as_str()) else {
                continue;
            };
            // The metadata and the feed in one round trip.
            let (meta, feed) = match self.store.meta_and_changes_since(id, ls.meta.version).await {
                // Retired: dropped from the snapshot by the full synchronisation, which keeps
                // the set of retired lists.
                Ok(Some((meta, _))) if meta.life.is_retired() => return self.sync_once().await,
                Ok(Some(read)) => read,
                // Gone, or unreadable: the full synchronisation reports it (and keeps serving
                // the list) at its tick, rather than every write here.
                Ok(None) | Err(StoreError::Corrupt { .. } | StoreError::Status(_)) => continue,
                Err(e) => return Err(e),
            };
            changed |= self
                .follow(ls, meta, Some(feed), &mut lists, &mut changed_at)
                .await?;
        }
        changed |= self.attach_finished(&mut lists).await;
        if !changed {
            return Ok(false);
        }
        // The key is checked (a file read on the blocking pool) only when a named list is due
        // for a re-encoding: most writes land within `reencode_every` of the last one.
        let named = || ids.iter().filter_map(|id| lists.get(id.as_str()));
        if !self.encodings_due(named(), now).is_empty()
            && self.key_watch.may_sign(&self.metrics).await
        {
            self.schedule_encodings(named(), now);
        }
        self.publish_changed(&current, lists, &changed_at, now);
        Ok(true)
    }

    /// Brings published list `ls` up to the store's `meta` in `lists` (left as it is when its
    /// version did not move, or failed validation lately), noting when it changed in
    /// `changed_at`; `feed`: the change feed since `ls`'s version, if already read with `meta`.
    /// Returns whether it changed.
    async fn follow(
        &self,
        ls: &Arc<ListSnapshot>,
        meta: ListMeta,
        feed: Option<Feed>,
        lists: &mut Lists,
        changed_at: &mut Vec<u64>,
    ) -> Result<bool, StoreError> {
        if ls.meta.version == meta.version || self.recently_rejected(&meta) {
            return Ok(false);
        }
        match self.update(ls, meta.clone(), feed).await {
            Ok((meta, list)) => {
                if meta.updated_ms > 0 {
                    changed_at.push(meta.updated_ms);
                }
                self.history
                    .lock()
                    .expect("not poisoned")
                    .entry(meta.id.clone())
                    .or_default()
                    .record(ls.meta.version, &ls.list, meta.version, &list);
                let id: Box<str> = meta.id.as_str().into();
                let next = build::with_artefacts(meta, list, ls.artefacts.clone());
                lists.insert(id, Arc::new(next));
                Ok(true)
            }
            Err(e) => {
                self.reject_or_fail(&meta, e)?;
                Ok(false)
            }
        }
    }

    /// Publishes `lists`, changed since `current`, and observes the propagation latency of the
    /// changes written at `changed_at` (Unix milliseconds, by the store's clock).
    fn publish_changed(
        &self,
        current: &crate::snapshot::Snapshot,
        lists: Lists,
        changed_at: &[u64],
        now: SystemTime,
    ) {
        self.publish(lists, now);
        let published_ms = unix_ms(SystemTime::now());
        if current.generation > 0 {
            for ms in changed_at {
                let secs = published_ms.saturating_sub(*ms) as f64 / 1000.0;
                self.metrics.propagation_seconds.observe(secs);
            }
        }
    }

    /// One warning for the lists missing from the store, at most every [`RETRY_REJECTED`]: a
    /// replica polls every few milliseconds, and a log line per list per poll would bury the
    /// rest (counted in `refresh_errors_total` every pass either way).
    fn warn_missing(&self, missing: &[Box<str>]) {
        let mut last = self.missing_warned.lock().expect("not poisoned");
        if last.is_some_and(|t| t.elapsed() < RETRY_REJECTED) {
            return;
        }
        *last = Some(Instant::now());
        let shown: Vec<&str> = missing.iter().take(5).map(|id| &**id).collect();
        tracing::warn!(
            missing = missing.len(),
            lists = ?shown,
            "lists missing from the store; serving their last good versions"
        );
    }

    fn recently_rejected(&self, meta: &ListMeta) -> bool {
        let rejected = self.rejected.lock().expect("not poisoned");
        rejected
            .get(&meta.id)
            .is_some_and(|(v, at)| *v == meta.version && at.elapsed() < RETRY_REJECTED)
    }

    /// A list that failed validation keeps its previous version (counted, logged, retried
    /// later); any other store error ends this synchronisation.
    fn reject_or_fail(&self, meta: &ListMeta, e: StoreError) -> Result<(), StoreError> {
        match e {
            StoreError::Corrupt { .. } | StoreError::Status(_) | StoreError::UnknownList(_) => {
                self.metrics.refresh_errors.inc();
                tracing::error!(error = %e, "list failed validation; keeping its previous version");
                self.rejected
                    .lock()
                    .expect("not poisoned")
                    .insert(meta.id.clone(), (meta.version, Instant::now()));
                Ok(())
            }
            other => Err(other),
        }
    }

    /// Attaches background builds that finished to the lists they encode. Returns whether any
    /// was attached.
    async fn attach_finished(&self, lists: &mut Lists) -> bool {
        let finished = self.built.take();
        // Every other build that ended is reaped too: one that panicked left no artefacts (its
        // error is logged), one that finished after `take` left them for the next pass.
        let ended: Vec<_> = {
            let mut encoding = self.encoding.lock().expect("not poisoned");
            for (id, _) in &finished {
                encoding.remove(id);
            }
            encoding.extract_if(|_, h| h.is_finished()).collect()
        };
        for (id, handle) in ended {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, list = %id, "artefact build failed");
            }
        }
        let mut attached = false;
        for (id, artefacts) in finished {
            // Built from this state or an earlier one of the same list: never newer.
            let Some(ls) = lists
                .get(id.as_str())
                .filter(|ls| artefacts.version <= ls.meta.version)
            else {
                continue;
            };
            let next = build::with_artefacts(ls.meta.clone(), ls.list.clone(), Arc::new(artefacts));
            lists.insert(id.into_boxed_str(), Arc::new(next));
            attached = true;
        }
        attached
    }

    /// Publishes the background builds that finished into the current snapshot, without a
    /// store round trip (the lists' states are those published), and starts the next due
    /// builds. Returns whether a snapshot was published.
    async fn attach_built(&self) -> bool {
        let signing = self.key_watch.may_sign(&self.metrics).await;
        let mut lists = self.snapshots.load().lists.clone();
        if !self.attach_finished(&mut lists).await {
            return false;
        }
        let now = SystemTime::now();
        if signing {
            self.schedule_encodings(lists.values(), now);
        }
        self.publish(lists, now);
        true
    }

    /// The lists among `lists` whose artefacts are behind their state (by at least
    /// `reencode_every`) or due for re-signing, and not being built already: oldest artefacts
    /// first, so no list starves. None while [`MAX_BACKGROUND_BUILDS`] are running.
    fn encodings_due<'a>(
        &self,
        lists: impl Iterator<Item = &'a Arc<ListSnapshot>>,
        now: SystemTime,
    ) -> Vec<&'a Arc<ListSnapshot>> {
        let encoding = self.encoding.lock().expect("not poisoned");
        if encoding.len() >= MAX_BACKGROUND_BUILDS {
            return Vec::new();
        }
        let now_s = unix_ms(now) / 1000;
        let mut due: Vec<&Arc<ListSnapshot>> = lists
            .filter(|ls| !encoding.contains_key(&ls.meta.id))
            .filter(|ls| {
                let a = &ls.artefacts;
                let behind = a.version != ls.meta.version
                    && now_s.saturating_sub(a.iat) >= self.reencode_every.as_secs();
                behind || self.params.needs_resign(a.iat, now) || a.aging != Aging::Fresh
            })
            .collect();
        due.sort_by_key(|ls| ls.artefacts.iat);
        due
    }

    /// Starts background builds for the lists among `lists` that are due
    /// ([`Self::encodings_due`]), at most [`MAX_BACKGROUND_BUILDS`] at once.
    fn schedule_encodings<'a>(
        &self,
        lists: impl Iterator<Item = &'a Arc<ListSnapshot>>,
        now: SystemTime,
    ) {
        let due = self.encodings_due(lists, now);
        let mut encoding = self.encoding.lock().expect("not poisoned");
        for ls in due {
            if encoding.len() >= MAX_BACKGROUND_BUILDS {
                break;
            }
            let (meta, list) = (ls.meta.clone(), ls.list.clone());
            let (id, built) = (ls.meta.id.clone(), self.built.clone());
            let history = self.history.lock().expect("not poisoned").get(&id).cloned();
            let history = history.unwrap_or_default();
            let handle = self.spawn_build(
                runtime::BUILD_NICE,
                move |key, p| {
                    build::artefacts_with_history(&meta, &list, &history, key, p, SystemTime::now())
                },
                |e| e,
                // On failure the list keeps its last signed artefacts, which age while signing
                // fails.
                move |a| {
                    if let Ok(a) = a {
                        built.put(id, a);
                    }
                },
            );
            encoding.insert(ls.meta.id.clone(), handle);
        }
    }

    /// Brings a published list up to `meta.version` from the change feed (`feed` if already
    /// read, else read now) when it can, otherwise loads it in full. Feed entries are validated
    /// against the list's width and size.
    async fn update(
        &self,
        ls: &ListSnapshot,
        meta: ListMeta,
        feed: Option<Feed>,
    ) -> Result<(ListMeta, StatusList), StoreError> {
        if meta.version > ls.meta.version && meta.bits == ls.meta.bits && meta.size == ls.meta.size
        {
            let feed = match feed {
                Some(feed) => feed,
                None => self.store.changes_since(&meta.id, ls.meta.version).await?,
            };
            if let Some((version, changes)) = feed {
                let mut list = ls.list.clone();
                let applied = changes
                    .iter()
                    .try_for_each(|c| list.set(c.idx.into(), c.status).map(drop));
                match applied {
                    Ok(()) if version >= meta.version => {
                        return Ok((ListMeta { version, ..meta }, list));
                    }
                    Ok(()) => {}
                    Err(e) => {
                        self.metrics.refresh_errors.inc();
                        tracing::warn!(list = %meta.id, error = %e, "invalid change in the feed; reloading the list in full");
                    }
                }
            }
        } else if meta.version < ls.meta.version {
            tracing::warn!(list = %meta.id, from = ls.meta.version, to = meta.version, "list version went backwards; reloading in full");
        }
        self.store.load(&meta.id).await
    }

    /// Runs `build` on a thread of its own once a build slot is free ([`Self::build_slots`]),
    /// at priority `nice`: [`runtime::BUILD_NICE`] for the background re-encodings (tens of
    /// milliseconds of CPU each, never ahead of lookups nor of the refresher's publications
    /// that make changes visible), the refresher's own [`runtime::BACKGROUND_NICE`] for the
    /// builds a publication waits for (lists new to this replica, a cold start among them, and
    /// re-signing while the store is down). A build that succeeds is timed and counted; one whose
    /// signature failed is reported to the key watch (`sign_error` finds the error), which
    /// pauses signing. `deliver` then takes the outcome, on the same thread.
    fn spawn_build<T, E, R>(
        &self,
        nice: i32,
        build: impl FnOnce(&Signer, &BuildParams) -> Result<T, E> + Send + 'static,
        sign_error: fn(&E) -> &SignError,
        deliver: impl FnOnce(Result<T, E>) -> R + Send + 'static,
    ) -> JoinHandle<R>
    where
        T: Send + 'static,
        E: Send + 'static,
        R: Send + 'static,
    {
        let key = self.key.clone();
        let params = self.params.clone();
        let metrics = self.metrics.clone();
        let watch = self.key_watch.clone();
        let slots = self.build_slots.clone();
        let work = move || {
            runtime::lower_priority(nice);
            let started = Instant::now();
            let built = build(&key, &params);
            match &built {
                Ok(_) => {
                    metrics
                        .build_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics.lists_rebuilt.inc();
                }
                Err(e) => watch.sign_failed(sign_error(e), &metrics),
            }
            deliver(built)
        };
        tokio::spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (done, outcome) = tokio::sync::oneshot::channel();
            // A thread of its own, so that its lowered priority ends with it: the blocking
            // pool's threads also run the embedded store's transactions.
            std::thread::Builder::new()
                .name("statusd-build".into())
                .spawn(move || {
                    let _ = done.send(work());
                })
                .expect("starting a build thread");
            outcome.await.expect("the build thread panicked")
        })
    }

    /// Re-signs the lists whose tokens reached half their lifetime from the state in memory,
    /// or, while signing is paused, ages them.
    async fn resign_from_memory(&self, signing: bool, now: SystemTime) {
        let current = self.snapshots.load_full();
        if !signing {
            let mut lists = current.lists.clone();
            if self.age(&mut lists, false, now) {
                self.publish(lists, now);
            }
            return;
        }
        let due: Vec<_> = current
            .lists
            .values()
            .filter(|ls| {
                self.params.needs_resign(ls.artefacts.iat, now)
                    || ls.artefacts.aging != Aging::Fresh
            })
            .cloned()
            .collect();
        if due.is_empty() {
            return;
        }
        let mut lists = current.lists.clone();
        for ls in due {
            let (meta, list) = (ls.meta.clone(), ls.list.clone());
            let resigned = self.spawn_build(
                runtime::BACKGROUND_NICE,
                move |key, p| build::list_snapshot(meta, list, key, p, now),
                |u| &u.error,
                |built| built,
            );
            match resigned.await {
                Ok(Ok(fresh)) => {
                    lists.insert(fresh.meta.id.as_str().into(), Arc::new(fresh));
                }
                // Counted and logged by the watch; the list keeps its last signed tokens.
                Ok(Err(_)) => {}
                Err(e) => tracing::error!(error = %e, "re-signing task failed"),
            }
        }
        tracing::info!("re-signed tokens from memory while the store is unavailable");
        self.publish(lists, now);
    }

    /// While signing is paused, shortens the cache windows of artefacts whose `exp` is closer
    /// than their normal windows allow, and withholds those too close to it ([`build::aged`]).
    /// While signing, fresh artefacts are left alone (re-signing at half the lifetime is what
    /// their windows are sized for), but those aged during a pause keep aging until re-signed.
    /// Returns whether any list changed.
    fn age(&self, lists: &mut Lists, signing: bool, now: SystemTime) -> bool {
        // Until the next look: one tick (the loop waits no longer while signing is paused or
        // aged artefacts remain), plus the seconds of `BuildParams::margin`.
        let margin = self.params.margin();
        if signing && !lists.summary().aged {
            return false;
        }
        let aged: Vec<(Box<str>, Arc<ListSnapshot>)> = lists
            .iter()
            .filter(|(_, ls)| !signing || ls.artefacts.aging != Aging::Fresh)
            .filter_map(|(id, ls)| {
                let aged = build::aged(&ls.artefacts, &self.params, now, margin)?;
                let next = ListSnapshot {
                    meta: ls.meta.clone(),
                    list: ls.list.clone(),
                    non_valid: ls.non_valid,
                    artefacts: Arc::new(aged),
                };
                Some((id.clone(), Arc::new(next)))
            })
            .collect();
        let changed = !aged.is_empty();
        lists.extend(aged);
        changed
    }

    /// Whether any published list still serves artefacts aged during a pause in signing.
    fn has_aged(&self) -> bool {
        self.snapshots.load().lists.summary().aged
    }

    /// Whether the published JWKS is not the one the published keys now make (a reload
    /// replaced them). One serialisation of a few keys per synchronisation.
    fn jwks_outdated(&self, current: &crate::snapshot::Snapshot) -> bool {
        current.generation > 0
            && current.jwks.body != self.published_keys.load().to_jwks().to_string().as_bytes()
    }

    fn publish(&self, lists: Lists, now: SystemTime) {
        let previous = self.snapshots.load_full();
        let generation = previous.generation + 1;
        // Each part of the lists keeps its sums: a publication for one list's write sums the
        // part it changed ([`Lists::summary`]).
        let summary = lists.summary();
        let count = lists.len();
        // The fill gauges of the lists whose fill changed; all of them afresh when the set of
        // lists changed (a list that left must leave the metric). A publication for one list's
        // write then looks at the lists that share its part, not at every list.
        let set_fill = |l: &ListSnapshot| {
            self.metrics
                .list_allocated_ratio
                .with_label_values(&[l.meta.id.as_str()])
                .set(l.meta.allocated as f64 / f64::from(l.meta.size.max(1)));
        };
        if previous.generation > 0 && lists.same_ids(&previous.lists) {
            for l in lists.not_shared_with(&previous.lists) {
                let unchanged = previous.lists.get(l.meta.id.as_str()).is_some_and(|p| {
                    Arc::ptr_eq(p, l)
                        || (p.meta.allocated == l.meta.allocated && p.meta.size == l.meta.size)
                });
                if !unchanged {
                    set_fill(l);
                }
            }
        } else {
            self.metrics.list_allocated_ratio.reset();
            lists.values().for_each(|l| set_fill(l));
        }
        let keys = self.published_keys.load_full();
        let keys_unchanged = {
            let mut from = self.jwks_from.lock().expect("not poisoned");
            let unchanged = from.as_ref().is_some_and(|k| Arc::ptr_eq(k, &keys));
            *from = Some(keys.clone());
            unchanged
        };
        let mut snapshot =
            build::next_snapshot(&previous, lists, &keys, keys_unchanged, &self.params, now);
        snapshot.retired = self.retired.lock().expect("not poisoned").clone();
        // Gauges first: whoever sees the snapshot (readiness, a scrape right after) sees the
        // metrics that describe it, even if this thread is preempted in between.
        self.metrics.snapshot_generation.set(generation as i64);
        self.metrics.snapshot_published.set(unix_f64(now));
        self.metrics.lists.set(count as i64);
        self.metrics.entries_non_valid.set(summary.non_valid as i64);
        if let Some(exp) = summary.earliest_exp {
            self.metrics.token_expiry.set(exp as f64);
        }
        self.snapshots.publish(snapshot);
        tracing::debug!(generation, lists = count, "published snapshot");
    }
}

fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
