//! The refresher: follows the source of truth and publishes snapshots.
//!
//! A small loop: wait for a change hint (or a tick), compare list versions with the published
//! snapshot, rebuild only the lists that changed or whose tokens reached half their lifetime
//! (on the blocking pool, in parallel), and publish one new snapshot. Every failure is logged
//! and counted, the loop backs off, and the last good snapshot keeps serving.

use crate::metrics::Metrics;
use crate::snapshot::build::{self, BuildParams};
use crate::snapshot::{ListSnapshot, SnapshotStore};
use crate::store::{Store, StoreError};
use crate::token::keys::{KeySet, SigningKey};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Longest wait between two synchronisations when nothing signals a change; bounds how late a
/// re-signing can happen.
const TICK: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Everything the refresher needs.
pub struct Refresher<S> {
    pub store: Arc<S>,
    pub snapshots: Arc<SnapshotStore>,
    pub key: Arc<SigningKey>,
    /// Keys published in the JWKS (the signing key and any still-valid previous keys).
    pub published_keys: KeySet,
    pub params: BuildParams,
    pub metrics: Arc<Metrics>,
}

impl<S: Store> Refresher<S> {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let wait = match self.sync_once().await {
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    TICK
                }
                Err(e) => {
                    self.metrics.refresh_errors.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff, "refresh failed; serving the last good snapshot");
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    w
                }
            };
            tokio::select! {
                _ = self.store.changed(wait) => {}
                _ = crate::server::stopped(&mut shutdown) => return,
            }
        }
    }

    /// One synchronisation. Returns whether a new snapshot was published.
    pub async fn sync_once(&self) -> Result<bool, StoreError> {
        let current = self.snapshots.load_full();
        let metas = self.store.lists().await?;
        let now = SystemTime::now();
        let mut lists: HashMap<Box<str>, Arc<ListSnapshot>> = HashMap::with_capacity(metas.len());
        let mut stale = Vec::new();
        for meta in metas {
            match current.lists.get(meta.id.as_str()) {
                Some(ls)
                    if ls.meta.version == meta.version
                        && !self.params.needs_resign(ls.iat, now) =>
                {
                    lists.insert(meta.id.into(), ls.clone());
                }
                _ => stale.push(meta.id),
            }
        }
        let same_set = lists.len() == current.lists.len() && stale.is_empty();
        if same_set && current.generation > 0 {
            self.metrics.last_sync.set(unix_f64(now));
            return Ok(false);
        }
        let mut builds = Vec::with_capacity(stale.len());
        for id in stale {
            let (meta, list) = self.store.load(&id).await?;
            let key = self.key.clone();
            let params = self.params.clone();
            builds.push(tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let ls = build::list_snapshot(meta, list, &key, &params, SystemTime::now());
                (ls, started.elapsed())
            }));
        }
        for b in builds {
            let (ls, took) = b
                .await
                .map_err(|e| StoreError::Backend(format!("snapshot build task failed: {e}")))?;
            self.metrics.build_seconds.observe(took.as_secs_f64());
            self.metrics.lists_rebuilt.inc();
            lists.insert(ls.meta.id.as_str().into(), Arc::new(ls));
        }
        let generation = current.generation + 1;
        let non_valid: u64 = lists.values().map(|l| l.non_valid).sum();
        let count = lists.len();
        let snapshot = build::snapshot(generation, lists, &self.published_keys, &self.params, now);
        self.snapshots.publish(snapshot);
        self.metrics.snapshot_generation.set(generation as i64);
        self.metrics.snapshot_published.set(unix_f64(now));
        self.metrics.lists.set(count as i64);
        self.metrics.entries_non_valid.set(non_valid as i64);
        self.metrics.last_sync.set(unix_f64(now));
        tracing::debug!(generation, lists = count, "published snapshot");
        Ok(true)
    }
}

fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
