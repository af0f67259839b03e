//! Every metric statusd exports, declared once with its help text. Label handles are resolved
//! when [`Metrics`] is built, so the request path only bumps pre-resolved counters; the
//! per-request ones are sharded by thread (`metrics::requests`).

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

mod requests;
use requests::RequestMetrics;
pub use requests::Start;

/// Routes of both planes, as metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Aggregation,
    StatusList,
    Bitstring,
    Lookup,
    BatchLookup,
    Jwks,
    Preflight,
    Unmatched,
    AdminMetrics,
    AdminHealth,
    AdminApi,
    /// `/statuslist2021/{id}/{purpose}`: the VC 1.1 Status List 2021 views.
    StatusList2021,
    /// `/`: the issuer's controller document (Data Integrity verification methods).
    Controller,
    /// `/statuslists/{id}/deltas/{from}`: signed deltas (statusd's extension).
    StatusListDelta,
}

impl Route {
    pub const ALL: [Route; 14] = [
        Route::Aggregation,
        Route::StatusList,
        Route::Bitstring,
        Route::Lookup,
        Route::BatchLookup,
        Route::Jwks,
        Route::Preflight,
        Route::Unmatched,
        Route::AdminMetrics,
        Route::AdminHealth,
        Route::AdminApi,
        Route::StatusList2021,
        Route::Controller,
        Route::StatusListDelta,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Route::Aggregation => "aggregation",
            Route::StatusList => "statuslist",
            Route::Bitstring => "bitstringlist",
            Route::Lookup => "lookup",
            Route::BatchLookup => "batch_lookup",
            Route::Jwks => "jwks",
            Route::Preflight => "preflight",
            Route::Unmatched => "unmatched",
            Route::AdminMetrics => "admin_metrics",
            Route::AdminHealth => "admin_health",
            Route::AdminApi => "admin_api",
            Route::StatusList2021 => "statuslist2021",
            Route::Controller => "controller",
            Route::StatusListDelta => "statuslist_delta",
        }
    }

    pub const fn plane(self) -> &'static str {
        match self {
            Route::AdminMetrics | Route::AdminHealth | Route::AdminApi => "admin",
            _ => "public",
        }
    }
}

/// The request metrics in the registry, which takes collectors by value.
struct Shared(Arc<RequestMetrics>);

impl prometheus::core::Collector for Shared {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

/// Outcome classes of a response, as metric labels.
const OUTCOMES: [&str; 5] = ["2xx", "304", "4xx", "5xx", "other"];

fn outcome(status: u16) -> usize {
    match status {
        304 => 1,
        200..=299 => 0,
        400..=499 => 2,
        500..=599 => 3,
        _ => 4,
    }
}

/// The registry and every handle.
pub struct Metrics {
    registry: Registry,
    requests: Arc<RequestMetrics>,
    pub snapshot_generation: IntGauge,
    pub snapshot_published: Gauge,
    pub snapshot_age: Gauge,
    pub lists: IntGauge,
    pub entries_non_valid: IntGauge,
    pub build_seconds: Histogram,
    pub propagation_seconds: Histogram,
    pub lists_rebuilt: IntCounter,
    pub refresh_errors: IntCounter,
    /// Synchronisations that read every list's metadata (`refresh_reads_total{scope="all"}`:
    /// the tick, a new list, a missed message) and those that read only the lists a change
    /// hint named (`scope="named"`).
    pub refresh_reads_all: IntCounter,
    pub refresh_reads_named: IntCounter,
    /// Failed writes of the last-good snapshot file (a full disk, among others).
    pub persist_errors: IntCounter,
    /// Lists this replica retired, and retired lists whose data it deleted ([`crate::retire`]).
    pub lists_retired: IntCounter,
    pub lists_purged: IntCounter,
    /// Retired lists in the store (tombstones), as of the last retirement pass.
    pub lists_tombstones: IntGauge,
    /// Retirement passes that failed.
    pub retire_errors: IntCounter,
    pub last_sync: Gauge,
    pub connections_refused: IntCounter,
    /// Connections closed to make room at the connection limit: they had sent no request.
    pub connections_displaced: IntCounter,
    /// Connections closed because no request head arrived within the header read timeout.
    pub connections_timed_out: IntCounter,
    /// Public-plane requests answered 503 at once because `--max-inflight` were in flight.
    pub requests_shed: IntCounter,
    /// Redis writes fewer replicas confirmed than `--redis-wait-replicas` asks (answered 503
    /// `not-replicated`; applied on the primary).
    pub redis_wait_shortfalls: IntCounter,
    /// Allocated share of each list's indices (issuer API), by list.
    pub list_allocated_ratio: GaugeVec,
    /// Issuer operations by operation and result (`registered`, `exists`, `changed`,
    /// `unchanged`, or the problem slug).
    pub issuer_operations: IntCounterVec,
    /// Latency and store requests of each issuer request, by operation (a single item's, or
    /// `batch`), in [`ISSUER_OPS`] order; see [`Metrics::issuer_op`].
    issuer_ops: Vec<IssuerOpMetrics>,
    /// Consistency check ([`crate::consistency`]): entries compared with the store, mismatches
    /// found, and rounds skipped because the list was changing.
    pub consistency_compared: IntCounter,
    pub consistency_mismatches: IntCounter,
    pub consistency_skipped: IntCounter,
    /// Earliest `exp` among the served tokens: alerts watch that re-signing keeps it ahead.
    pub token_expiry: Gauge,
    /// 1 for the key this replica signs with, so a rotation's rollout can be watched.
    pub signing_key_info: IntGaugeVec,
    /// 1 while the signing key (file or PKCS#11 token) holds and signs with the key this replica
    /// loaded; 0 while signing is paused because it does not (see `keyfile`).
    pub signing_key_ok: IntGauge,
    /// Checks of the signing key that failed (file unreadable, not a key, another key; token
    /// unavailable; a failed signature).
    pub signing_key_errors: IntCounter,
    pub jwks_keys: IntGauge,
    /// `notAfter` of the signing key's leaf certificate (`STATUSD_SIGNING_CERT`); 0 without one.
    pub signing_cert_not_after: Gauge,
    /// This replica's clock minus Redis's `TIME`, in seconds (positive: ahead); 0 on the
    /// embedded store, whose clock is this machine's ([`crate::clock`]).
    pub clock_skew: Gauge,
    /// `--max-clock-skew`: beyond it (either way) this replica pauses signing.
    pub clock_skew_max: Gauge,
    /// TLS handshakes that failed (plain HTTP to a TLS port, untrusted or missing client
    /// certificates, protocol errors); timed-out ones count in `connections_timed_out`.
    pub tls_handshake_failures: IntCounter,
    /// Configuration reloads (SIGHUP) by result: `ok`, or `error` when a new file was refused
    /// and the old configuration stayed in force.
    pub config_reloads: IntCounterVec,
}

/// The issuer requests [`Metrics::issuer_op`] knows: the single-item operations, `batch`, and
/// `bulk` (a batch of [`crate::runtime::BULK_MIN_ITEMS`] or more, run on the bulk lane).
pub const ISSUER_OPS: [&str; 7] = [
    "register",
    "suspend",
    "reinstate",
    "revoke",
    "reissue",
    "batch",
    "bulk",
];

/// One issuer operation's handles, resolved at start-up.
pub struct IssuerOpMetrics {
    /// `statusd_issuer_operation_seconds{op}`: from the checked request to its outcome.
    pub seconds: Histogram,
    /// `statusd_issuer_store_requests{op}`: requests to the store (a Redis command, pipeline
    /// or script; an embedded transaction) per operation; on a distant Redis each costs up to a
    /// round trip (issue #22: 3 for a single suspend, reinstate or revoke).
    pub store_requests: Histogram,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("metric definitions are static and valid")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("statusd".into()), None).expect("valid prefix");
        let requests = Arc::new(RequestMetrics::new());
        must(registry.register(Box::new(Shared(requests.clone()))));
        let gauge = |name: &str, help: &str| {
            let g = must(Gauge::new(name, help));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let int_gauge = |name: &str, help: &str| {
            let g = must(IntGauge::new(name, help));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = must(IntCounter::new(name, help));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let build_seconds = must(Histogram::with_opts(
            HistogramOpts::new(
                "snapshot_list_build_seconds",
                "Time to encode, sign and hash one list",
            )
            .buckets(vec![
                0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        ));
        must(registry.register(Box::new(build_seconds.clone())));
        let propagation_seconds = must(Histogram::with_opts(
            HistogramOpts::new(
                "propagation_seconds",
                "From a change's commit in the store (store clock) to its publication here",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        ));
        must(registry.register(Box::new(propagation_seconds.clone())));
        let list_allocated_ratio = must(GaugeVec::new(
            Opts::new(
                "list_allocated_ratio",
                "Share of a list's indices handed out by the issuer API (never reused)",
            ),
            &["list"],
        ));
        must(registry.register(Box::new(list_allocated_ratio.clone())));
        let issuer_operations = must(IntCounterVec::new(
            Opts::new(
                "issuer_operations_total",
                "Issuer API operations by operation and result",
            ),
            &["op", "result"],
        ));
        must(registry.register(Box::new(issuer_operations.clone())));
        let issuer_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "issuer_operation_seconds",
                "Issuer API request latency by operation (a single item's, or batch)",
            )
            .buckets(vec![
                0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["op"],
        ));
        must(registry.register(Box::new(issuer_seconds.clone())));
        let issuer_store_requests = must(HistogramVec::new(
            HistogramOpts::new(
                "issuer_store_requests",
                "Requests to the store per issuer API request, by operation (a Redis command, \
                 pipeline or script counts as one, as does an embedded transaction)",
            )
            .buckets(vec![
                1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 50.0, 100.0,
            ]),
            &["op"],
        ));
        must(registry.register(Box::new(issuer_store_requests.clone())));
        let issuer_ops = ISSUER_OPS
            .iter()
            .map(|op| IssuerOpMetrics {
                seconds: issuer_seconds.with_label_values(&[op]),
                store_requests: issuer_store_requests.with_label_values(&[op]),
            })
            .collect();
        let signing_key_info = must(IntGaugeVec::new(
            Opts::new(
                "signing_key_info",
                "The key this replica signs with (value 1), by kid and alg",
            ),
            &["kid", "alg"],
        ));
        must(registry.register(Box::new(signing_key_info.clone())));
        let refresh_reads = must(IntCounterVec::new(
            Opts::new(
                "refresh_reads_total",
                "Synchronisations with the source of truth by what they read: every list's \
                 metadata (all: the tick, a new list, missed messages) or only the lists a change \
                 hint named (named)",
            ),
            &["scope"],
        ));
        must(registry.register(Box::new(refresh_reads.clone())));
        Metrics {
            consistency_compared: counter(
                "consistency_entries_compared_total",
                "Snapshot entries compared with the source of truth by the consistency check",
            ),
            consistency_mismatches: counter(
                "consistency_mismatches_total",
                "Sampled snapshot entries that disagreed with the source of truth at the same version",
            ),
            consistency_skipped: counter(
                "consistency_skipped_total",
                "Consistency rounds skipped because the sampled list changed meanwhile",
            ),
            list_allocated_ratio,
            issuer_operations,
            issuer_ops,
            signing_key_info,
            signing_key_ok: int_gauge(
                "signing_key_ok",
                "1 while the signing key (file or PKCS#11 token) holds and signs with the key this replica loaded; 0 while signing is paused",
            ),
            signing_key_errors: counter(
                "signing_key_errors_total",
                "Checks of the signing key that failed: file unreadable, not a key or another key; PKCS#11 token unavailable; a failed signature",
            ),
            jwks_keys: int_gauge(
                "jwks_keys",
                "Keys published in the JWKS (the signing key and any rotation keys)",
            ),
            signing_cert_not_after: gauge(
                "signing_cert_not_after_timestamp_seconds",
                "notAfter (Unix time) of the signing key's leaf certificate; 0 without a certificate",
            ),
            clock_skew: gauge(
                "clock_skew_seconds",
                "This replica's clock minus the store's (Redis TIME), in seconds; positive when ahead, 0 on the embedded store",
            ),
            clock_skew_max: gauge(
                "clock_skew_max_seconds",
                "--max-clock-skew: beyond this skew either way the replica pauses signing",
            ),
            token_expiry: gauge(
                "token_expiry_timestamp_seconds",
                "Earliest exp (Unix time) among the signed tokens served; 0 before the first",
            ),
            propagation_seconds,
            snapshot_generation: int_gauge(
                "snapshot_generation",
                "Generation of the published snapshot (0: none yet)",
            ),
            snapshot_published: gauge(
                "snapshot_published_timestamp_seconds",
                "Unix time the current snapshot was published",
            ),
            snapshot_age: gauge(
                "snapshot_age_seconds",
                "Seconds since the current snapshot was published",
            ),
            lists: int_gauge("lists", "Status lists in the published snapshot"),
            entries_non_valid: int_gauge(
                "entries_non_valid",
                "Non-VALID entries over all published lists",
            ),
            lists_rebuilt: counter(
                "snapshot_lists_rebuilt_total",
                "Lists re-encoded and re-signed",
            ),
            refresh_errors: counter(
                "refresh_errors_total",
                "Failed synchronisations with the source of truth",
            ),
            persist_errors: counter(
                "snapshot_persist_errors_total",
                "Failed writes of the last-good snapshot file; the previous file is kept",
            ),
            lists_retired: counter(
                "lists_retired_total",
                "Lists this replica retired: every credential in them expired more than STATUSD_RETIRE_AFTER ago",
            ),
            lists_purged: counter(
                "lists_purged_total",
                "Retired lists whose status data this replica deleted after STATUSD_RETIRED_RETENTION",
            ),
            lists_tombstones: int_gauge(
                "lists_retired",
                "Retired lists in the store (answered 410), as of this replica's last retirement pass",
            ),
            retire_errors: counter(
                "retire_errors_total",
                "List retirement passes that failed (retried on the next pass)",
            ),
            last_sync: gauge(
                "last_sync_timestamp_seconds",
                "Unix time of the last successful synchronisation",
            ),
            connections_refused: counter(
                "connections_refused_total",
                "Connections closed at once because the connection limit was reached",
            ),
            connections_displaced: counter(
                "connections_displaced_total",
                "Connections that had sent no request, closed to make room for a new one at the \
                 connection limit",
            ),
            connections_timed_out: counter(
                "connections_timed_out_total",
                "Connections closed because no request head arrived within the header read \
                 timeout",
            ),
            requests_shed: counter(
                "requests_shed_total",
                "Public requests answered 503 at once because --max-inflight requests were in \
                 flight (not counted in http_requests_total: they were never routed)",
            ),
            redis_wait_shortfalls: counter(
                "redis_wait_shortfalls_total",
                "Redis writes that fewer replicas than --redis-wait-replicas confirmed within \
                 --redis-wait-timeout: applied on the primary, answered 503 not-replicated",
            ),
            tls_handshake_failures: counter(
                "tls_handshake_failures_total",
                "TLS handshakes that failed (not TLS, untrusted or missing client certificate, \
                 protocol error)",
            ),
            refresh_reads_all: refresh_reads.with_label_values(&["all"]),
            refresh_reads_named: refresh_reads.with_label_values(&["named"]),
            config_reloads: {
                let c = must(IntCounterVec::new(
                    Opts::new(
                        "config_reloads_total",
                        "Configuration reloads (SIGHUP) by result: ok, or error when a new file \
                         was refused and the old configuration stayed in force",
                    ),
                    &["result"],
                ));
                must(registry.register(Box::new(c.clone())));
                for result in ["ok", "error"] {
                    c.with_label_values(&[result]);
                }
                c
            },
            build_seconds,
            requests,
            registry,
        }
    }

    /// Now, on the clock of the request metrics: the start of a request to record with
    /// [`Metrics::observe_since`] (a time-stamp counter read where the CPU's is invariant).
    #[inline]
    pub fn start(&self) -> Start {
        self.requests.start()
    }

    /// Records one response of `route` to a request that started at `start`.
    #[inline]
    pub fn observe_since(&self, route: Route, status: u16, start: Start, body_bytes: u64) {
        self.requests
            .observe_since(route, status, start, body_bytes);
    }

    /// The handles of issuer operation `op` (one of [`ISSUER_OPS`]).
    pub fn issuer_op(&self, op: &str) -> Option<&IssuerOpMetrics> {
        let i = ISSUER_OPS.iter().position(|o| *o == op)?;
        self.issuer_ops.get(i)
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into a Vec cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_handles_line_up_with_labels() {
        let m = Metrics::new();
        m.observe_since(Route::Lookup, 200, m.start(), 60);
        m.observe_since(Route::StatusList, 304, m.start(), 0);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.contains(
                r#"statusd_http_requests_total{outcome="2xx",plane="public",route="lookup"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"statusd_http_requests_total{outcome="304",plane="public",route="statuslist"} 1"#
        ));
        assert!(text.contains(
            r#"statusd_http_response_body_bytes_total{plane="public",route="lookup"} 60"#
        ));
    }

    #[test]
    fn every_issuer_operation_has_its_histograms() {
        let m = Metrics::new();
        for op in ISSUER_OPS {
            let h = m.issuer_op(op).expect(op);
            h.seconds.observe(0.25);
            h.store_requests.observe(3.0);
        }
        assert!(m.issuer_op("rename").is_none());
        let text = String::from_utf8(m.encode()).unwrap();
        for op in ISSUER_OPS {
            assert!(
                text.contains(&format!(
                    "statusd_issuer_store_requests_bucket{{op=\"{op}\",le=\"3\"}} 1"
                )),
                "{op}: {text}"
            );
            assert!(text.contains(&format!(
                "statusd_issuer_operation_seconds_count{{op=\"{op}\"}} 1"
            )));
        }
    }
}
