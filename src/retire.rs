//! List retirement: a list whose credentials have all expired leaves the service.
//!
//! **The rule** ([`due`]). A list is retired once
//! * the issuer manages it (it belongs to a pool: lists other writers maintain never retire),
//! * it is closed: at least `--fill-threshold` of its indices are allocated, so the pool no
//!   longer puts new cards there (the pool's open lists are never retired; a derived card may
//!   still join its parent's closed list, and moves its expiry like any other),
//! * every credential registered in it has an `expires_at` (one without keeps the list for
//!   good), and the latest of them ([`Lifetime::expires_max`](crate::store::Lifetime::expires_max)) is more than
//!   `STATUSD_RETIRE_AFTER` (default 30 days) in the past.
//!
//! **What retiring does.** The store marks the list retired in one atomic step
//! ([`Retire::retire`], a compare-and-set on the version the rule was judged at). Every
//! replica's refresher then drops it from its snapshot (its memory is released, its tokens are
//! no longer re-signed, it leaves the aggregation) and its URLs answer 410 Gone, cacheable
//! ([`crate::problem::Problem::ListRetired`]); the issuer refuses operations on its
//! credentials (`list-retired`). After `STATUSD_RETIRED_RETENTION` (default 90 days) its
//! status data is deleted ([`Retire::purge`]). Its metadata stays as a tombstone, so its id is
//! never reused, its indices are never handed out again, and its URLs keep answering 410.
//! The credential records stay too: they hold the audit trail, still read through
//! `GET /v1/credentials/{id}/audit`.
//!
//! **Who retires.** Every replica runs [`run`]: each pass reads the lists' metadata and
//! attempts what is due. Both steps are idempotent and atomic in the store, so replicas may
//! race: one wins each step (and counts and logs it), the others find it done.

use crate::metrics::Metrics;
use crate::runtime;
use crate::store::retire::Retire;
use crate::store::{ListMeta, StoreError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Default of [`Settings::after`]: 30 days.
pub const DEFAULT_RETIRE_AFTER: Duration = Duration::from_secs(30 * 86_400);
/// Default of [`Settings::retention`]: 90 days, time enough to notice and undo a mistaken
/// retirement (a wrong `expires_at` in a bulk import) before the data is gone.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// Retirement settings, from [`crate::config::Config`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// `STATUSD_RETIRE_AFTER`: how long after its last credential expired a list is retired.
    pub after: Duration,
    /// `STATUSD_RETIRED_RETENTION`: how long after retirement its status data is deleted.
    pub retention: Duration,
    /// The issuer's fill threshold: a list under it still takes new cards and is not retired.
    pub fill_threshold: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            after: DEFAULT_RETIRE_AFTER,
            retention: DEFAULT_RETENTION,
            fill_threshold: 0.75,
        }
    }
}

impl Settings {
    /// How often a replica looks for lists to retire or purge: half the shorter period, between
    /// 1 s and a minute (a day late on a 30-day grace is nothing; a test's 1 s grace is seen).
    pub fn every(&self) -> Duration {
        (self.after.min(self.retention) / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// What is due for a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Retire it.
    Retire,
    /// Delete its status data (it is retired, and the retention has passed).
    Purge,
}

/// What is due for list `m` at `now` (Unix seconds), if anything (see the module docs).
pub fn due(m: &ListMeta, s: &Settings, now: u64) -> Option<Due> {
    if let Some(retired) = m.life.retired_at {
        let purge =
            m.life.purged_at.is_none() && now >= retired.saturating_add(s.retention.as_secs());
        return purge.then_some(Due::Purge);
    }
    let closed = m.allocated > 0 && (m.allocated as f64) >= s.fill_threshold * f64::from(m.size);
    let expired = m
        .life
        .expires_max
        .is_some_and(|t| t > 0 && now >= t.saturating_add(s.after.as_secs()));
    (m.purpose.is_some() && closed && expired).then_some(Due::Retire)
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Lists this pass retired (another replica may have retired others).
    pub retired: usize,
    /// Retired lists whose status data this pass deleted.
    pub purged: usize,
    /// Retired lists in the store after the pass.
    pub tombstones: usize,
}

/// One pass over `store` at `now` (Unix seconds): retires and purges what is due. A list that
/// changed under a retirement (a derived card joined it) is judged again next pass.
pub async fn pass<S: Retire>(
    store: &S,
    s: &Settings,
    metrics: &Metrics,
    now: u64,
) -> Result<Pass, StoreError> {
    let mut done = Pass::default();
    for m in store.lists().await? {
        match due(&m, s, now) {
            None => {}
            Some(Due::Retire) => match store.retire(&m.id, m.version, now).await {
                Ok(true) => {
                    done.retired += 1;
                    metrics.lists_retired.inc();
                    tracing::info!(
                        list = %m.id,
                        purpose = m.purpose.as_deref().unwrap_or_default(),
                        allocated = m.allocated,
                        last_expiry = %rfc3339(m.life.expires_max.unwrap_or_default()),
                        "retired a list: every credential in it expired more than STATUSD_RETIRE_AFTER ago; its URLs answer 410 from now on"
                    );
                }
                Ok(false) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            },
            Some(Due::Purge) => {
                let purged = store.purge(&m.id, now).await?;
                if purged {
                    done.purged += 1;
                    metrics.lists_purged.inc();
                    tracing::info!(
                        list = %m.id,
                        retired_at = %rfc3339(m.life.retired_at.unwrap_or_default()),
                        "deleted a retired list's status data after STATUSD_RETIRED_RETENTION; its tombstone and audit trail stay"
                    );
                }
            }
        }
    }
    // Counted after the pass: what this pass retired is a tombstone now.
    done.tombstones = store
        .lists()
        .await?
        .iter()
        .filter(|m| m.life.is_retired())
        .count();
    metrics.lists_tombstones.set(done.tombstones as i64);
    Ok(done)
}

/// Runs a [`pass`] every [`Settings::every`] until `shutdown`; failures are logged and counted,
/// and the next pass tries again.
pub async fn run<S: Retire>(
    store: Arc<S>,
    s: Settings,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = pass(store.as_ref(), &s, &metrics, now_secs()).await {
            metrics.retire_errors.inc();
            tracing::warn!(error = %e, "list retirement pass failed; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(s.every()) => {}
            _ = runtime::stopped(&mut shutdown) => return,
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rfc3339(secs: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lifetime;

    const DAY: u64 = 86_400;

    fn closed(expires_max: Option<u64>) -> ListMeta {
        ListMeta {
            id: "default-1".into(),
            bits: 2,
            size: 100,
            purpose: Some("default".into()),
            allocated: 75,
            life: Lifetime {
                expires_max,
                ..Lifetime::default()
            },
            ..ListMeta::default()
        }
    }

    #[test]
    fn a_closed_list_retires_a_grace_period_after_its_last_expiry() {
        let s = Settings::default();
        let t = 1_900_000_000;
        let m = closed(Some(t));
        assert_eq!(due(&m, &s, t), None);
        assert_eq!(due(&m, &s, t + 30 * DAY - 1), None);
        assert_eq!(due(&m, &s, t + 30 * DAY), Some(Due::Retire));
    }

    #[test]
    fn open_foreign_empty_and_unexpiring_lists_never_retire() {
        let s = Settings::default();
        let late = 4_000_000_000;
        let open = ListMeta {
            allocated: 74,
            ..closed(Some(1))
        };
        let foreign = ListMeta {
            purpose: None,
            ..closed(Some(1))
        };
        let empty = ListMeta {
            allocated: 0,
            size: 0,
            ..closed(Some(0))
        };
        for m in [open, foreign, empty, closed(None), closed(Some(0))] {
            assert_eq!(due(&m, &s, late), None, "{m:?}");
        }
    }

    #[test]
    fn a_retired_list_is_purged_after_the_retention_once() {
        let s = Settings::default();
        let mut m = closed(Some(1));
        m.life.retired_at = Some(1000);
        assert_eq!(due(&m, &s, 1000 + 90 * DAY - 1), None);
        assert_eq!(due(&m, &s, 1000 + 90 * DAY), Some(Due::Purge));
        m.life.purged_at = Some(1000 + 90 * DAY);
        assert_eq!(due(&m, &s, u64::MAX), None);
    }

    /// Replicas race: of two passes over one store at once, one retires the list and one
    /// deletes its data later; every other attempt finds it done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_passes_retire_and_purge_once() {
        use crate::status::Bits;
        use crate::store::registry::{Registry, Txn};
        use crate::store::{embedded::EmbeddedStore, Extends, NewList, Store};
        let dir = std::env::temp_dir().join(format!(
            "statusd-retire-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let store = EmbeddedStore::open(&dir).unwrap();
        for id in ["p-1", "p-2"] {
            store
                .create_list(NewList {
                    id: id.into(),
                    bits: Bits::Two,
                    size: 8,
                    purpose: Some("p".into()),
                })
                .await
                .unwrap();
        }
        let commit = |list: &'static str, extends| {
            let store = store.clone();
            async move {
                let txn = Txn {
                    expect_version: 0,
                    claim: (0..6).collect(),
                    records: (0..6).map(|i| (i, b"{}".to_vec())).collect(),
                    extends,
                    ..Txn::default()
                };
                store.commit(list, &txn).await.unwrap();
            }
        };
        commit("p-1", Extends::Until(1_000)).await;
        // Closed too, but one credential never expires.
        commit("p-2", Extends::Forever).await;
        let s = Settings {
            after: Duration::from_secs(100),
            retention: Duration::from_secs(50),
            fill_threshold: 0.75,
        };
        let metrics = Metrics::new();
        let early = pass(&store, &s, &metrics, 1_099).await.unwrap();
        assert_eq!(early, Pass::default(), "still within the grace");
        let (a, b) = tokio::join!(
            pass(&store, &s, &metrics, 1_100),
            pass(&store, &s, &metrics, 1_100)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.retired + b.retired, 1);
        assert_eq!((a.tombstones, b.tombstones), (1, 1));
        let (a, b) = tokio::join!(
            pass(&store, &s, &metrics, 1_150),
            pass(&store, &s, &metrics, 1_150)
        );
        assert_eq!(a.unwrap().purged + b.unwrap().purged, 1);
        assert_eq!(metrics.lists_retired.get(), 1);
        assert_eq!(metrics.lists_purged.get(), 1);
        let metas = store.lists().await.unwrap();
        let life = |id: &str| metas.iter().find(|m| m.id == id).unwrap().life.clone();
        assert_eq!(
            (life("p-1").retired_at, life("p-1").purged_at),
            (Some(1_100), Some(1_150))
        );
        assert_eq!(life("p-2").retired_at, None, "a credential without expiry");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn passes_are_at_least_a_second_and_at_most_a_minute_apart() {
        let every = |after, retention| {
            Settings {
                after: Duration::from_secs(after),
                retention: Duration::from_secs(retention),
                fill_threshold: 0.75,
            }
            .every()
        };
        assert_eq!(every(30 * DAY, 90 * DAY), Duration::from_secs(60));
        assert_eq!(every(1, 1), Duration::from_secs(1));
        assert_eq!(every(10, 90 * DAY), Duration::from_secs(5));
    }
}
