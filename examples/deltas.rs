//! Bandwidth of one verifier mirroring every list: full-list polling against signed deltas
//! (issue 16), measured over HTTP in one run.
//!
//! Each round stands for one `ttl` (300 s in the capacity plan): every list gets a Poisson
//! number of single status changes at `--rate` per list per ttl (the plan's 10,000 changes a day
//! over 50 lists: 0.69), written to Redis; once the replica has published them, four pollers
//! ask for every list, as a verifier does after each ttl:
//!
//! * full JWT: `GET /statuslists/{id}` (`application/statuslist+jwt`, `Accept-Encoding: gzip`)
//!   with `If-None-Match` of the ETag it holds: a 304 when nothing changed, the list otherwise;
//! * full CWT: the same in `application/statuslist+cwt`;
//! * delta JWT and delta CWT: [`statusd::verifier::delta::Mirror`], the verifier library's
//!   mirror: `GET /statuslists/{id}/deltas/{version}` with the ETag it holds, verified, applied
//!   and checked against the signed digest (the list whole when no delta is available).
//!
//! Bytes are the answers as HTTP/1.1 frames them (status line, header fields, body); requests,
//! TCP and TLS are left out of both sides alike. After every round each mirror must equal the
//! list the full CWT poller holds, bit for bit, or the run fails. Rounds run back to back, so a
//! day of polling takes seconds; the totals are extrapolated to `86,400 / ttl` polls a day of
//! `--plan-lists` lists. Loopback only; prints one JSON object.
//!
//! ```text
//! cargo run --release --example deltas -- --redis redis://127.0.0.1:6390 \
//!     --replica http://127.0.0.1:8080 --lists 8 --rounds 60
//! ```
//! `loadtest/deltas` runs the whole setup (Redis, seed, statusd) around it.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rand::{Rng, SeedableRng};
use serde_json::json;
use statusd::status::{Status, StatusList};
use statusd::store::redis::RedisStore;
use statusd::store::{Change, Store};
use statusd::token::keys::KeySet;
use statusd::token::statuslist;
use statusd::verifier::delta::{Form, Mirror, MirrorOptions, Synced};
use std::time::{Duration, Instant};

#[derive(clap::Parser)]
struct Args {
    /// The Redis the replica reads (loopback only).
    #[arg(long, default_value = "redis://127.0.0.1:6379", value_parser = support::loopback_url)]
    redis: String,
    /// The replica's public listener (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = support::loopback_url)]
    replica: String,
    /// Lists mirrored (seeded as `1..=lists`).
    #[arg(long, default_value = "8")]
    lists: u32,
    /// Rounds: polls of every list by every poller (each stands for one ttl).
    #[arg(long, default_value = "60", value_parser = support::positive)]
    rounds: u64,
    /// Status changes per list per ttl (capacity plan: 10,000 / 50 × 300 / 86,400).
    #[arg(long, default_value = "0.694")]
    rate: f64,
    /// The ttl a round stands for, in seconds (polls per day: 86,400 / ttl).
    #[arg(long, default_value = "300")]
    ttl: u64,
    /// Lists the plan has, for the per-day figures.
    #[arg(long, default_value = "50")]
    plan_lists: u64,
    /// Seed of the change generator.
    #[arg(long, default_value = "16")]
    seed: u64,
}

/// One full-list poller of one list: the ETag it holds and the bytes it received.
struct FullPoller {
    accept: &'static str,
    etag: Option<String>,
    list: Option<StatusList>,
    bytes: usize,
    changed: u64,
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Empty<Bytes>,
>;

impl FullPoller {
    fn new(accept: &'static str) -> Self {
        FullPoller {
            accept,
            etag: None,
            list: None,
            bytes: 0,
            changed: 0,
        }
    }

    /// One conditional GET; the CWT poller also decodes what it gets (the reference the
    /// mirrors are compared with).
    async fn poll(&mut self, client: &Client, url: &str, keys: &KeySet) {
        let mut req = hyper::Request::get(url)
            .header("accept", self.accept)
            .header("accept-encoding", "gzip");
        if let Some(etag) = &self.etag {
            req = req.header("if-none-match", etag.as_str());
        }
        let resp = client
            .request(req.body(Empty::new()).expect("request"))
            .await
            .expect("GET the list");
        let status = resp.status();
        let head = statusd::verifier::fetch::head_bytes(status, resp.headers());
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        self.bytes += head + body.len();
        match status.as_u16() {
            304 => {}
            200 => {
                self.changed += 1;
                self.etag = etag;
                if self.accept == statusd::routes::STATUSLIST_CWT {
                    let claims = statuslist::verify_cwt(&body, keys).expect("a valid CWT");
                    self.list = Some(claims.status_list.decode().expect("a valid list"));
                }
            }
            other => panic!("{url}: HTTP {other}"),
        }
    }
}

/// Knuth's Poisson sampler (small means).
fn poisson(rng: &mut impl Rng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let (mut k, mut p) = (0, 1.0);
    loop {
        p *= rng.gen::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// The version the replica's list token encodes.
async fn published_version(client: &Client, url: &str) -> u64 {
    let req = hyper::Request::head(url)
        .body(Empty::new())
        .expect("request");
    let resp = client.request(req).await.expect("HEAD the list");
    resp.headers()
        .get(statusd::routes::LIST_VERSION_HEADER)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("statusd names the list version")
}

#[tokio::main]
async fn main() {
    let a = <Args as clap::Parser>::parse();
    let store = RedisStore::connect(&a.redis)
        .await
        .expect("connect to Redis");
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let jwks = {
        let req = hyper::Request::get(format!("{}/.well-known/jwks.json", a.replica))
            .body(Empty::new())
            .expect("request");
        let body = client
            .request(req)
            .await
            .expect("GET the JWKS")
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        KeySet::from_jwks_json(std::str::from_utf8(&body).expect("UTF-8")).expect("a JWKS")
    };
    let opts = |form| MirrorOptions {
        keys: jwks.clone(),
        form,
        timeout: Duration::from_secs(30),
        tls: Default::default(),
        now: None,
    };
    let (jwt_opts, cwt_opts) = (opts(Form::Jwt), opts(Form::Cwt));
    let ids: Vec<String> = (1..=a.lists).map(|i| i.to_string()).collect();
    let urls: Vec<String> = ids
        .iter()
        .map(|id| format!("{}/statuslists/{id}", a.replica))
        .collect();
    let mut full_jwt: Vec<FullPoller> = ids
        .iter()
        .map(|_| FullPoller::new(statusd::routes::STATUSLIST_JWT))
        .collect();
    let mut full_cwt: Vec<FullPoller> = ids
        .iter()
        .map(|_| FullPoller::new(statusd::routes::STATUSLIST_CWT))
        .collect();
    let mut mirrors = Vec::new();
    for url in &urls {
        let (j, _) = Mirror::fetch(url, &jwt_opts).await.expect("mirror (JWT)");
        let (c, _) = Mirror::fetch(url, &cwt_opts).await.expect("mirror (CWT)");
        mirrors.push([j, c]);
    }
    // Every poller's first request (the full fetch, then the mirrors' first delta, a 200 with no
    // changes since no ETag matches yet) is left out of both sides: a day-long mirror pays it
    // once.
    for (i, url) in urls.iter().enumerate() {
        for (k, o) in [&jwt_opts, &cwt_opts].into_iter().enumerate() {
            mirrors[i][k].sync(o).await.expect("mirror sync");
        }
        full_jwt[i].poll(&client, url, &jwks).await;
        full_cwt[i].poll(&client, url, &jwks).await;
        full_jwt[i].bytes = 0;
        full_cwt[i].bytes = 0;
        full_jwt[i].changed = 0;
        full_cwt[i].changed = 0;
    }
    let mut delta_bytes = [0usize; 2];
    let (mut by_delta, mut by_full, mut unchanged) = (0u64, 0u64, 0u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let (mut written, mut refused) = (0u64, 0u64);
    let started = Instant::now();
    for _ in 0..a.rounds {
        let mut targets = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let size = mirrors[i][0].list().size();
            let mut version = None;
            for _ in 0..poisson(&mut rng, a.rate) {
                let idx = rng.gen_range(0..size);
                let status = if rng.gen_bool(0.8) {
                    Status::INVALID
                } else {
                    Status::SUSPENDED
                };
                match store.apply(id, &[Change { idx, status }]).await {
                    Ok(applied) => {
                        written += 1;
                        version = Some(applied.version);
                    }
                    // An index already revoked, say: the issuer would refuse it too.
                    Err(_) => refused += 1,
                }
            }
            if let Some(v) = version {
                targets.push((i, v));
            }
        }
        for (i, v) in targets {
            let deadline = Instant::now() + Duration::from_secs(60);
            while published_version(&client, &urls[i]).await < v {
                assert!(Instant::now() < deadline, "{} never published {v}", urls[i]);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for (i, url) in urls.iter().enumerate() {
            full_jwt[i].poll(&client, url, &jwks).await;
            full_cwt[i].poll(&client, url, &jwks).await;
            for (k, o) in [&jwt_opts, &cwt_opts].into_iter().enumerate() {
                let synced = mirrors[i][k].sync(o).await.expect("mirror sync");
                delta_bytes[k] += synced.bytes();
                match synced {
                    Synced::Unchanged { .. } => unchanged += 1,
                    Synced::Delta { .. } => by_delta += 1,
                    Synced::Full { .. } => by_full += 1,
                }
                let reference = full_cwt[i].list.as_ref().expect("decoded");
                assert!(
                    mirrors[i][k].list() == reference,
                    "{url}: the mirror differs from the list"
                );
            }
        }
    }
    let polls = a.rounds * u64::from(a.lists);
    let per_day =
        |bytes: usize| bytes as f64 / polls as f64 * (86_400 / a.ttl) as f64 * a.plan_lists as f64;
    let sum = |p: &[FullPoller]| p.iter().map(|p| p.bytes).sum::<usize>();
    let (fj, fc) = (sum(&full_jwt), sum(&full_cwt));
    let changed_polls: u64 = full_cwt.iter().map(|p| p.changed).sum();
    let report = json!({
        "lists": a.lists,
        "rounds": a.rounds,
        "polls_per_poller": polls,
        "changes_written": written,
        "changes_refused": refused,
        "polls_that_found_a_change": changed_polls,
        "changed_share": changed_polls as f64 / polls as f64,
        "mirror_syncs": { "unchanged": unchanged, "delta": by_delta, "full": by_full },
        "bytes": { "full_jwt_gzip": fj, "full_cwt": fc, "delta_jwt": delta_bytes[0], "delta_cwt": delta_bytes[1] },
        "bytes_per_poll": {
            "full_jwt_gzip": fj as f64 / polls as f64,
            "full_cwt": fc as f64 / polls as f64,
            "delta_jwt": delta_bytes[0] as f64 / polls as f64,
            "delta_cwt": delta_bytes[1] as f64 / polls as f64,
        },
        "per_day_mb": {
            "plan_lists": a.plan_lists,
            "ttl_seconds": a.ttl,
            "full_jwt_gzip": per_day(fj) / 1e6,
            "full_cwt": per_day(fc) / 1e6,
            "delta_jwt": per_day(delta_bytes[0]) / 1e6,
            "delta_cwt": per_day(delta_bytes[1]) / 1e6,
        },
        "ratio": {
            "jwt": fj as f64 / delta_bytes[0].max(1) as f64,
            "cwt": fc as f64 / delta_bytes[1].max(1) as f64,
        },
        "run_seconds": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
}
