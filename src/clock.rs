//! Clock skew: this replica's clock against the store's, and the bound past which it stops
//! signing.
//!
//! Every signed token's `iat` and `exp` come from this replica's clock. A replica whose clock
//! runs ahead issues tokens that verifiers reject (`iat` in the future) or trust past the
//! intended `exp`; one that runs behind issues tokens that are stale on arrival. With Redis,
//! [`run`] asks the store for its time (`TIME`) every [`CHECK_EVERY`] and exports the difference
//! as `statusd_clock_skew_seconds` (positive: this replica is ahead). Beyond
//! `--max-clock-skew` ([`ClockWatch::may_sign`] false) the signing key's watch pauses signing
//! exactly as for an unusable key ([`crate::keyfile::KeyWatch::with_clock`]): lookups keep
//! following the store, the last signed tokens age and are then withheld (503
//! `signing-unavailable`). Readiness is left alone: the lookups a skewed replica answers are
//! right, and when Redis's own clock jumps every replica is "skewed" at once, which must not
//! take them all out of the load balancer.
//!
//! The measurement is the midpoint of the round trip minus the store's time; half the round
//! trip is its uncertainty and is given the benefit of the doubt, so a slow network alone never
//! pauses signing. A failed measurement (store unreachable) keeps the last verdict.
//!
//! The embedded store has no clock but this machine's: the skew is 0 by construction and
//! signing never pauses for it (watch the host's NTP instead, e.g. node_exporter's
//! `node_timex_offset_seconds`).

use crate::metrics::Metrics;
use crate::store::any::AnyStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How often the skew is measured.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Whether this replica's clock is close enough to the store's to sign, from the last
/// measurement; true until a measurement says otherwise.
#[derive(Debug)]
pub struct ClockWatch {
    max_skew: Duration,
    within: AtomicBool,
}

/// One comparison of this replica's clock with the store's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Skew {
    /// This replica's time minus the store's, in seconds (positive: this replica is ahead).
    pub seconds: f64,
    /// Half the round trip: the store read its clock somewhere inside it.
    pub uncertainty: f64,
}

impl Skew {
    /// The skew from the local times `before` and `after` a request and the store's time
    /// `store` in its answer.
    pub fn measure(before: SystemTime, store: SystemTime, after: SystemTime) -> Skew {
        let (b, s, a) = (secs(before), secs(store), secs(after));
        // A clock stepped back between the two local reads: no round trip to trust.
        let rtt = (a - b).max(0.0);
        Skew {
            seconds: b + rtt / 2.0 - s,
            uncertainty: rtt / 2.0,
        }
    }

    /// Whether the skew is within `max` even after granting it the whole uncertainty.
    pub fn within(&self, max: Duration) -> bool {
        self.seconds.abs() - self.uncertainty <= max.as_secs_f64()
    }
}

impl ClockWatch {
    pub fn new(max_skew: Duration) -> ClockWatch {
        ClockWatch {
            max_skew,
            within: AtomicBool::new(true),
        }
    }

    /// False while the last measurement put this replica's clock beyond the bound.
    pub fn may_sign(&self) -> bool {
        self.within.load(Ordering::Relaxed)
    }

    /// Records a measurement: the gauge, and one log line per transition.
    pub fn record(&self, skew: Skew, metrics: &Metrics) -> bool {
        metrics.clock_skew.set(skew.seconds);
        let within = skew.within(self.max_skew);
        let was = self.within.swap(within, Ordering::Relaxed);
        match (was, within) {
            (true, false) => tracing::error!(
                skew_seconds = skew.seconds,
                uncertainty_seconds = skew.uncertainty,
                max_seconds = self.max_skew.as_secs(),
                "signing paused: this replica's clock is off Redis's TIME by more than \
                 --max-clock-skew; serving the last signed lists until it is back within"
            ),
            (false, true) => tracing::info!(
                skew_seconds = skew.seconds,
                "the clock is within --max-clock-skew of Redis's again; signing resumes"
            ),
            _ => {}
        }
        within
    }
}

/// Measures the skew once against the store; `None` for the embedded store (no other clock)
/// and when the store does not answer within `timeout`.
pub async fn measure(store: &AnyStore, timeout: Duration) -> Option<Skew> {
    let AnyStore::Redis(redis) = store else {
        return None;
    };
    let before = SystemTime::now();
    let store_time = tokio::time::timeout(timeout, redis.server_time()).await;
    let after = SystemTime::now();
    match store_time {
        Ok(Ok(t)) => Some(Skew::measure(before, t, after)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "could not read Redis's TIME; keeping the last clock verdict");
            None
        }
        Err(_) => None,
    }
}

/// Measures the skew every [`CHECK_EVERY`] until `shutdown` (returns at once on the embedded
/// store, whose gauge stays 0).
pub async fn run(
    watch: Arc<ClockWatch>,
    store: Arc<AnyStore>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    if !matches!(*store, AnyStore::Redis(_)) {
        return;
    }
    loop {
        if let Some(skew) = measure(&store, CHECK_EVERY).await {
            watch.record(skew, &metrics);
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = crate::runtime::stopped(&mut shutdown) => break,
        }
    }
}

fn secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn skew_is_the_round_trip_midpoint_minus_the_store_time() {
        // Ahead by 10 s, 200 ms round trip.
        let s = Skew::measure(at(1_010_000), at(1_000_100), at(1_010_200));
        assert!((s.seconds - 10.0).abs() < 1e-9, "{s:?}");
        assert!((s.uncertainty - 0.1).abs() < 1e-9, "{s:?}");
        // Behind by 5 s.
        let s = Skew::measure(at(995_000), at(1_000_000), at(995_000));
        assert!((s.seconds + 5.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn the_uncertainty_is_granted_before_comparing_with_the_bound() {
        let max = Duration::from_secs(30);
        let skew = |seconds, uncertainty| Skew {
            seconds,
            uncertainty,
        };
        assert!(skew(30.0, 0.0).within(max));
        assert!(!skew(30.5, 0.0).within(max));
        assert!(!skew(-30.5, 0.0).within(max));
        // A 2 s round trip (a congested link) does not pause signing at 30.5 s.
        assert!(skew(30.5, 1.0).within(max));
    }

    #[test]
    fn the_watch_pauses_and_resumes_with_the_measurements_and_sets_the_gauge() {
        let metrics = Metrics::new();
        let watch = ClockWatch::new(Duration::from_secs(30));
        assert!(watch.may_sign());
        let skew = |seconds| Skew {
            seconds,
            uncertainty: 0.001,
        };
        assert!(!watch.record(skew(-120.0), &metrics));
        assert!(!watch.may_sign());
        assert_eq!(metrics.clock_skew.get(), -120.0);
        assert!(watch.record(skew(0.25), &metrics));
        assert!(watch.may_sign());
        assert_eq!(metrics.clock_skew.get(), 0.25);
    }
}
