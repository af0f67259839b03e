//! Per-request metrics (`http_requests_total`, `http_request_duration_seconds`,
//! `http_response_body_bytes_total`), recorded without a shared cache line.
//!
//! A `prometheus` counter or histogram is one set of atomics that every worker thread bumps:
//! on every request, each of them moves a cache line from the core that last wrote it, six
//! times per request with a counter, a histogram and a byte counter. Here every thread writes
//! its own [`Shard`] (one per thread, cache-line aligned), so a request's increments stay in
//! its core's cache; a scrape sums the shards. The exposition is the same as with the crate's
//! own types: every (plane, route, outcome) series exists from the start.
//!
//! Durations are read from the CPU's time-stamp counter ([`quanta`]) where it is invariant:
//! two `rdtsc`s and a multiply per request instead of two `clock_gettime` calls and a
//! `Duration` subtraction (about 95 instructions a request, issue #18's profile), calibrated
//! against the monotonic clock once per process. Without an invariant counter quanta reads
//! the monotonic clock itself.

use super::{outcome, Route, OUTCOMES};
use prometheus::core::{Collector, Desc};
use prometheus::proto;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Upper bounds of the latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const BUCKETS: usize = LATENCY_BUCKETS.len();
const ROUTES: usize = Route::ALL.len();
/// Threads beyond this many share shards (correct, just no longer contention-free).
const SHARDS: usize = 16;

/// One route's cells in one shard. `buckets[BUCKETS]` counts observations above the last bound
/// (+Inf), so the histogram's count is the sum of the buckets and is consistent with them in
/// every scrape by construction.
///
/// Laid out so that a request answered within the first bucket (50 µs: every answer made from
/// memory) writes one cache line: the sum, the bytes, the outcomes and `buckets[0]` fill the
/// first 64 bytes of a line-aligned block.
#[derive(Default)]
#[repr(C, align(64))]
struct Cells {
    sum_nanos: AtomicU64,
    bytes: AtomicU64,
    outcomes: [AtomicU64; OUTCOMES.len()],
    buckets: [AtomicU64; BUCKETS + 1],
}

// The layout above, checked: the first bucket ends the first line.
const _: () = assert!(std::mem::offset_of!(Cells, buckets) + 8 <= 64);

/// One thread's cells, aligned so no two shards share a cache line (128 bytes covers adjacent
/// line prefetching).
#[repr(align(128))]
#[derive(Default)]
struct Shard([Cells; ROUTES]);

pub struct RequestMetrics {
    shards: Box<[Shard]>,
    clock: quanta::Clock,
    bounds_nanos: [u64; BUCKETS],
    descs: [Desc; 3],
}

/// When a request started, on the metrics clock ([`RequestMetrics::start`]): a raw counter
/// reading, only meaningful to the [`RequestMetrics`] that took it.
#[derive(Clone, Copy, Debug)]
pub struct Start(u64);

/// The shard of the calling thread: threads take shards round-robin on first use. The
/// thread-local is const-initialised (`usize::MAX` until first use), so reading it is one load
/// rather than a lazily-initialised slot's state check.
#[inline]
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let mut index = i.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, Relaxed) % SHARDS;
            i.set(index);
        }
        index
    })
}

impl RequestMetrics {
    pub fn new() -> Self {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.into(),
                help.into(),
                labels.iter().map(|l| (*l).into()).collect(),
                Default::default(),
            )
            .expect("metric definitions are static and valid")
        };
        RequestMetrics {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            // Calibrated on first use in the process (at least half a millisecond of spinning,
            // at most 200 ms), when the server is built: never on the request path.
            clock: quanta::Clock::new(),
            bounds_nanos: LATENCY_BUCKETS.map(|s| (s * 1e9) as u64),
            descs: [
                desc(
                    "http_requests_total",
                    "HTTP responses by plane, route and outcome class",
                    &["plane", "route", "outcome"],
                ),
                desc(
                    "http_request_duration_seconds",
                    "Time from request to response head, by route",
                    &["plane", "route"],
                ),
                desc(
                    "http_response_body_bytes_total",
                    "Response body bytes served, by route",
                    &["plane", "route"],
                ),
            ],
        }
    }

    /// Now, as the start of a request to record with [`RequestMetrics::observe_since`].
    #[inline]
    pub fn start(&self) -> Start {
        Start(self.clock.raw())
    }

    /// Records one response to a request that started at `start`.
    #[inline]
    pub fn observe_since(&self, route: Route, status: u16, start: Start, body_bytes: u64) {
        let nanos = self.clock.delta_as_nanos(start.0, self.clock.raw());
        self.record(route, status, nanos, body_bytes);
    }

    /// Records one response that took `elapsed` (tests).
    #[cfg(test)]
    pub fn observe(
        &self,
        route: Route,
        status: u16,
        elapsed: std::time::Duration,
        body_bytes: u64,
    ) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.record(route, status, nanos, body_bytes);
    }

    #[inline]
    fn record(&self, route: Route, status: u16, nanos: u64, body_bytes: u64) {
        let cells = &self.shards[shard_index()].0[route as usize];
        let bucket = self
            .bounds_nanos
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKETS);
        cells.outcomes[outcome(status)].fetch_add(1, Relaxed);
        cells.buckets[bucket].fetch_add(1, Relaxed);
        cells.sum_nanos.fetch_add(nanos, Relaxed);
        cells.bytes.fetch_add(body_bytes, Relaxed);
    }

    /// One route's totals over all shards.
    fn totals(&self, route: usize) -> Totals {
        let mut t = Totals::default();
        for shard in self.shards.iter() {
            let c = &shard.0[route];
            for (sum, cell) in t.outcomes.iter_mut().zip(&c.outcomes) {
                *sum += cell.load(Relaxed);
            }
            for (sum, cell) in t.buckets.iter_mut().zip(&c.buckets) {
                *sum += cell.load(Relaxed);
            }
            t.sum_nanos += c.sum_nanos.load(Relaxed);
            t.bytes += c.bytes.load(Relaxed);
        }
        t
    }

    /// Responses of `route` with `outcome` so far.
    #[cfg(test)]
    fn count(&self, route: Route, outcome: &str) -> u64 {
        let i = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .expect("a known outcome");
        self.totals(route as usize).outcomes[i]
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics::new()
    }
}

#[derive(Default)]
struct Totals {
    outcomes: [u64; OUTCOMES.len()],
    buckets: [u64; BUCKETS + 1],
    sum_nanos: u64,
    bytes: u64,
}

/// Label pairs sorted by name, as the crate's own metric types expose them.
fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    let mut pairs = pairs.to_vec();
    pairs.sort_unstable_by_key(|(name, _)| *name);
    pairs
        .iter()
        .map(|(name, value)| {
            let mut l = proto::LabelPair::default();
            l.set_name((*name).into());
            l.set_value((*value).into());
            l
        })
        .collect()
}

fn family(
    desc: &Desc,
    kind: proto::MetricType,
    metrics: Vec<proto::Metric>,
) -> proto::MetricFamily {
    let mut f = proto::MetricFamily::default();
    f.set_name(desc.fq_name.clone());
    f.set_help(desc.help.clone());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter(pairs: &[(&str, &str)], value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::default();
    m.set_label(labels(pairs));
    m.set_counter(c);
    m
}

impl Collector for RequestMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let (mut requests, mut latency, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
        for route in Route::ALL {
            let t = self.totals(route as usize);
            let (plane, name) = (route.plane(), route.label());
            for (o, n) in OUTCOMES.iter().zip(t.outcomes) {
                requests.push(counter(
                    &[("plane", plane), ("route", name), ("outcome", o)],
                    n,
                ));
            }
            bytes.push(counter(&[("plane", plane), ("route", name)], t.bytes));
            let mut h = proto::Histogram::default();
            let mut cumulative = 0;
            let buckets = LATENCY_BUCKETS
                .iter()
                .zip(t.buckets)
                .map(|(&bound, n)| {
                    cumulative += n;
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            h.set_bucket(buckets);
            h.set_sample_count(t.buckets.iter().sum());
            h.set_sample_sum(t.sum_nanos as f64 / 1e9);
            let mut m = proto::Metric::default();
            m.set_label(labels(&[("plane", plane), ("route", name)]));
            m.set_histogram(h);
            latency.push(m);
        }
        vec![
            family(&self.descs[0], proto::MetricType::COUNTER, requests),
            family(&self.descs[1], proto::MetricType::HISTOGRAM, latency),
            family(&self.descs[2], proto::MetricType::COUNTER, bytes),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gathered(m: RequestMetrics) -> String {
        let registry = prometheus::Registry::new_custom(Some("statusd".into()), None).unwrap();
        registry.register(Box::new(m)).unwrap();
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn observations_from_many_threads_add_up_in_one_exposition() {
        let m = RequestMetrics::new();
        std::thread::scope(|s| {
            for t in 0..(SHARDS + 3) {
                let m = &m;
                s.spawn(move || {
                    for i in 0..100u64 {
                        // 0.2 ms falls in the 0.00025 bucket; 2 s is past the last bound.
                        let d = if i % 10 == 0 {
                            Duration::from_secs(2)
                        } else {
                            Duration::from_micros(200)
                        };
                        m.observe(Route::Lookup, if t == 0 { 404 } else { 200 }, d, 10);
                    }
                });
            }
        });
        assert_eq!(m.count(Route::Lookup, "2xx"), 100 * (SHARDS as u64 + 2));
        assert_eq!(m.count(Route::Lookup, "4xx"), 100);
        let text = gathered(m);
        let n = 100 * (SHARDS as u64 + 3);
        let line = |s: &str| {
            assert!(text.lines().any(|l| l == s), "missing {s:?} in\n{text}");
        };
        line(&format!(
            "statusd_http_requests_total{{outcome=\"2xx\",plane=\"public\",route=\"lookup\"}} {}",
            n - 100
        ));
        line("statusd_http_requests_total{outcome=\"5xx\",plane=\"admin\",route=\"admin_api\"} 0");
        line(&format!(
            "statusd_http_response_body_bytes_total{{plane=\"public\",route=\"lookup\"}} {}",
            n * 10
        ));
        let below = n - n / 10;
        line(
            "statusd_http_request_duration_seconds_bucket{plane=\"public\",route=\"lookup\",le=\"0.0001\"} 0",
        );
        line(&format!(
            "statusd_http_request_duration_seconds_bucket{{plane=\"public\",route=\"lookup\",le=\"0.00025\"}} {below}"
        ));
        line(&format!(
            "statusd_http_request_duration_seconds_bucket{{plane=\"public\",route=\"lookup\",le=\"1\"}} {below}"
        ));
        line(&format!(
            "statusd_http_request_duration_seconds_bucket{{plane=\"public\",route=\"lookup\",le=\"+Inf\"}} {n}"
        ));
        line(&format!(
            "statusd_http_request_duration_seconds_count{{plane=\"public\",route=\"lookup\"}} {n}"
        ));
        let sum = (n / 10) as f64 * 2.0 + below as f64 * 0.0002;
        let got: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "statusd_http_request_duration_seconds_sum{plane=\"public\",route=\"lookup\"} ",
                )
            })
            .expect("a sum line")
            .parse()
            .unwrap();
        assert!((got - sum).abs() < 1e-6, "{got} vs {sum}");
    }

    #[test]
    fn shards_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<Shard>(), 128);
        assert_eq!(std::mem::size_of::<Shard>() % 128, 0);
    }
}
