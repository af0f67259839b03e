//! Issuer API throughput driver (`loadtest/issuer` runs it): registrations, then status
//! changes, through `POST /v1/credentials/batch` on a running statusd, on loopback only.
//!
//! ```text
//! issuer_load --admin http://127.0.0.1:9090 --token T [--registrations 200000]
//!             [--batch 10000] [--concurrency 2] [--changes 200000] [--purpose default]
//! ```
//!
//! A `--purpose` other than `default` must name a pool that exists: an `admin` token creates
//! one with `POST /v1/lists`; registrations (`write`) cannot.
//!
//! Prints one JSON line per phase: items, seconds, items per second. Bodies are built before
//! the clock starts, so the figures are the server's, not the driver's JSON encoding.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::time::Instant;

/// Issuer API load: batches of registrations, then suspensions and reinstatements.
#[derive(clap::Parser)]
struct Args {
    /// statusd's admin listener (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:9090", value_parser = support::loopback_url)]
    admin: String,
    /// A `write`-scope admin token.
    #[arg(long, default_value = "")]
    token: String,
    #[arg(long, default_value = "200000")]
    registrations: usize,
    #[arg(long, default_value = "200000")]
    changes: usize,
    /// Operations per batch request.
    #[arg(long, default_value = "10000")]
    batch: usize,
    /// Batches in flight.
    #[arg(long, default_value = "2")]
    concurrency: usize,
    /// The issuer pool registered into.
    #[arg(long, default_value = "default")]
    purpose: String,
}

/// Sends every body (at most `concurrency` at a time) of `items` operations in all, with a
/// progress bar on a terminal; returns the seconds taken. Every item of every answer must have
/// succeeded.
async fn run(a: &Args, bodies: Vec<Bytes>, items: usize, what: &str) -> f64 {
    let pb = statusd::progress::bar(items as u64, "items");
    pb.set_message(what.to_owned());
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let url = format!("{}/v1/credentials/batch", a.admin);
    let auth = format!("Bearer {}", a.token);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, url, auth, queue) = (client.clone(), url.clone(), auth.clone(), queue.clone());
        let pb = pb.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    return;
                };
                let req = hyper::Request::post(&url)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .unwrap();
                let resp = client.request(req).await.expect("request");
                let status = resp.status();
                let bytes = resp.into_body().collect().await.expect("body").to_bytes();
                assert!(
                    status.is_success(),
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
                );
                let v: Value = serde_json::from_slice(&bytes).expect("JSON");
                let results = v["results"].as_array().expect("results");
                for r in results {
                    assert!(r.get("error").is_none(), "item failed: {r}");
                }
                pb.inc(results.len() as u64);
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    pb.finish_and_clear();
    start.elapsed().as_secs_f64()
}

fn report(phase: &str, items: usize, secs: f64) {
    println!(
        "{}",
        json!({"phase": phase, "items": items, "seconds": (secs * 1000.0).round() / 1000.0,
               "per_second": (items as f64 / secs).round()})
    );
}

#[tokio::main]
async fn main() {
    let a = <Args as clap::Parser>::parse();
    let run_id: u32 = rand::random();
    let ids: Vec<String> = (0..a.registrations)
        .map(|i| format!("load-{run_id:08x}-{i}"))
        .collect();
    let register: Vec<Bytes> = ids
        .chunks(a.batch)
        .map(|c| {
            let ops: Vec<Value> = c
                .iter()
                .map(|id| json!({"op": "register", "credential_id": id, "kind": "physical", "purpose": a.purpose}))
                .collect();
            Bytes::from(json!({"operations": ops}).to_string())
        })
        .collect();
    let secs = run(&a, register, a.registrations, "register").await;
    report("register", a.registrations, secs);

    // Status changes: suspend cards (batches in parallel: distinct cards), then reinstate them.
    let half = (a.changes / 2).min(ids.len());
    let batches = |op: &str| -> Vec<Bytes> {
        ids[..half]
            .chunks(a.batch)
            .map(|c| {
                let ops: Vec<Value> = c
                    .iter()
                    .map(|id| json!({"op": op, "credential_id": id, "reason": "load test"}))
                    .collect();
                Bytes::from(json!({"operations": ops}).to_string())
            })
            .collect()
    };
    let (suspend, reinstate) = (batches("suspend"), batches("reinstate"));
    let total =
        run(&a, suspend, half, "suspend").await + run(&a, reinstate, half, "reinstate").await;
    report("change", 2 * half, total);
}
