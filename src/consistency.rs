//! The consistency check: every second, a replica compares a sample of its published snapshot
//! with the source of truth, so a replica that publishes something wrong (a bug, a corrupted
//! feed, memory corruption) is noticed, counted, logged and alerted on, not trusted silently.
//!
//! Each round picks one published list at random and reads a sample of its entries from the
//! store together with the list's version: half drawn from the entries the snapshot holds as
//! non-VALID (where a wrong status would revoke or reinstate someone; drawn by rank, with
//! replacement, so a round costs the same whatever the list holds), half uniformly from the
//! whole list. Only a read at exactly the snapshot's version is compared; a list that changed in
//! between is in flight and skipped. Indices are never logged.

use crate::metrics::Metrics;
use crate::snapshot::SnapshotStore;
use crate::store::any::AnyStore;
use crate::store::Store;
use rand::seq::IteratorRandom;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The checker's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Entries compared per round (0 turns the check off).
    pub samples: usize,
    pub every: Duration,
}

/// What one round found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub compared: usize,
    pub mismatches: usize,
    /// The list moved on between the snapshot and the read.
    pub skipped: bool,
}

/// Runs one round against the current snapshot; `None` if there is nothing to check.
pub async fn round(
    snapshots: &SnapshotStore,
    store: &AnyStore,
    samples: usize,
) -> Option<Result<Round, crate::store::StoreError>> {
    let snap = snapshots.load_full();
    let (id, ls) = {
        let mut rng = rand::thread_rng();
        let (id, ls) = snap.lists.iter().choose(&mut rng)?;
        (id.to_string(), ls.clone())
    };
    let size = ls.list.size();
    if size == 0 || samples == 0 {
        return None;
    }
    let idxs: Vec<u32> = {
        let mut rng = rand::thread_rng();
        let mut idxs = ls.list.sample_nonzero(&mut rng, samples / 2);
        while idxs.len() < samples {
            idxs.push(rng.gen_range(0..size));
        }
        idxs
    };
    let (version, truth) = match store.entries(&id, &idxs).await {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    if version != ls.meta.version {
        return Some(Ok(Round {
            skipped: true,
            ..Round::default()
        }));
    }
    let mismatches = idxs
        .iter()
        .zip(&truth)
        .filter(|(&i, &t)| ls.list.get_unchecked(i) != t)
        .count();
    if mismatches > 0 {
        tracing::error!(
            list = %id,
            version,
            mismatches,
            sampled = idxs.len(),
            "published snapshot disagrees with the source of truth"
        );
    }
    Some(Ok(Round {
        compared: idxs.len(),
        mismatches,
        skipped: false,
    }))
}

/// Runs rounds until shutdown.
pub async fn run(
    settings: Settings,
    snapshots: Arc<SnapshotStore>,
    store: Arc<AnyStore>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    if settings.samples == 0 {
        return;
    }
    let mut tick = tokio::time::interval(settings.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match round(&snapshots, &store, settings.samples).await {
            None => {}
            Some(Ok(r)) if r.skipped => metrics.consistency_skipped.inc(),
            Some(Ok(r)) => {
                metrics.consistency_compared.inc_by(r.compared as u64);
                metrics.consistency_mismatches.inc_by(r.mismatches as u64);
            }
            // The refresher reports store outages; the check just waits for the next round.
            Some(Err(e)) => {
                tracing::debug!(error = %e, "consistency check could not read the store")
            }
        }
    }
}
