//! The readiness latch: whether this replica is worth routing traffic to. It is ready once a
//! snapshot is published ([`super::SnapshotStore::is_ready`]) and while the refresher has
//! synchronised that snapshot with the store within `--max-staleness` ([`SyncState`]). The
//! refresher marks each synchronisation; the admin plane's `/readyz` reads [`SyncState::readiness`].

use super::SnapshotStore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Freshness of the published state, shared by the refresher (which marks it) and the admin
/// plane's `/readyz` (which reads it).
#[derive(Debug)]
pub struct SyncState {
    /// Unix milliseconds of the last successful synchronisation; 0 = never.
    last_sync_ms: AtomicU64,
    /// `--max-staleness`: how long after the last synchronisation the replica stays ready.
    max_staleness: Duration,
}

/// What `/readyz` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// A snapshot is published and synchronised within the staleness limit.
    Ready,
    /// A snapshot is served, but not synchronised with the store for too long (or not yet:
    /// one restored from disk at start).
    Stale,
    /// No snapshot published yet.
    NotReady,
}

impl SyncState {
    pub fn new(max_staleness: Duration) -> Self {
        SyncState {
            last_sync_ms: AtomicU64::new(0),
            max_staleness,
        }
    }

    /// Records a successful synchronisation at `now`.
    pub fn mark(&self, now: SystemTime) {
        self.last_sync_ms.store(unix_ms(now), Ordering::Relaxed);
    }

    /// Time since the last successful synchronisation, or `None` if there was none.
    pub fn staleness(&self) -> Option<Duration> {
        match self.last_sync_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(
                unix_ms(SystemTime::now()).saturating_sub(ms),
            )),
        }
    }

    /// Synchronised recently enough to be worth routing traffic to.
    pub fn is_fresh(&self) -> bool {
        self.staleness().is_some_and(|s| s <= self.max_staleness)
    }

    /// The replica's readiness: serving a snapshot is not enough, a replica cut off from its
    /// store for longer than the staleness limit asks the load balancer to prefer fresher ones.
    pub fn readiness(&self, snapshots: &SnapshotStore) -> Readiness {
        if !snapshots.is_ready() {
            Readiness::NotReady
        } else if self.is_fresh() {
            Readiness::Ready
        } else {
            Readiness::Stale
        }
    }
}

/// Unix milliseconds of `t` (0 before the epoch).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_a_snapshot_and_a_recent_sync() {
        let snapshots = SnapshotStore::default();
        let sync = SyncState::new(Duration::from_secs(30));
        assert_eq!(sync.readiness(&snapshots), Readiness::NotReady);
        sync.mark(SystemTime::now());
        assert_eq!(
            sync.readiness(&snapshots),
            Readiness::NotReady,
            "nothing published"
        );
        let mut next = crate::snapshot::Snapshot::empty();
        next.generation = 1;
        snapshots.publish(next);
        assert_eq!(sync.readiness(&snapshots), Readiness::Ready);
        sync.mark(SystemTime::now() - Duration::from_secs(31));
        assert_eq!(sync.readiness(&snapshots), Readiness::Stale);
    }
}
