//! Revocation-to-visible latency: writes status changes to Redis at a steady rate, spread over
//! every list, and for a sample of them polls a replica's lookup endpoint until the new value is
//! served. Latency runs from the write's acknowledgement by Redis to the first lookup that shows
//! it. Loopback only; stops by itself after `--duration`.
//!
//! ```text
//! cargo run --release --example propagation -- --redis redis://127.0.0.1:6390 \
//!     --replica http://127.0.0.1:8080 --lists 50 --size 1048576 --rate 1000 --duration 30
//! ```
//! `--samples FILE` also writes every sampled latency (CSV, sorted) for `loadtest/charts`.
//! `loadtest/propagation` runs the whole setup (Redis, seed, statusd) around it.

mod support;

use bytes::Bytes;
use http_body_util::Empty;
use rand::Rng;
use statusd::status::Status;
use statusd::store::redis::RedisStore;
use statusd::store::{Change, Store, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Revocation-to-visible latency on one replica.
#[derive(clap::Parser)]
struct Args {
    /// The Redis the replica reads (loopback only).
    #[arg(long, default_value = "redis://127.0.0.1:6379", value_parser = support::loopback_url)]
    redis: String,
    /// The replica's public listener (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = support::loopback_url)]
    replica: String,
    /// Lists seeded (written to `1..=lists`).
    #[arg(long, default_value = "50")]
    lists: u32,
    /// Entries per list.
    #[arg(long, default_value = "1048576")]
    size: u32,
    /// Changes written per second.
    #[arg(long, default_value = "1000")]
    rate: u64,
    /// Length of the write run, whole seconds.
    #[arg(long, default_value = "30", value_parser = support::seconds)]
    duration: Duration,
    /// Every n-th change is followed until it is visible.
    #[arg(long, default_value = "5", value_parser = support::positive)]
    sample_every: u64,
    /// Also write every sampled latency to this file: CSV, one column `latency_ms`, sorted.
    #[arg(long, value_name = "FILE")]
    samples: Option<std::path::PathBuf>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let a = <Args as clap::Parser>::parse();
    let store = RedisStore::connect(&a.redis)
        .await
        .expect("connect to Redis");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let (written, refused, lost) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / a.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0u64;
    let mut tasks = Vec::new();
    while started.elapsed() < a.duration {
        tick.tick().await;
        n += 1;
        let list = format!("{}", 1 + (n % u64::from(a.lists)));
        let idx = rand::thread_rng().gen_range(0..a.size);
        let sample = n.is_multiple_of(a.sample_every);
        let (store, client, latencies, written, refused, lost, replica) = (
            store.clone(),
            client.clone(),
            latencies.clone(),
            written.clone(),
            refused.clone(),
            lost.clone(),
            a.replica.clone(),
        );
        tasks.push(tokio::spawn(async move {
            match store
                .apply(
                    &list,
                    &[Change {
                        idx,
                        status: Status::SUSPENDED,
                    }],
                )
                .await
            {
                Ok(applied) => {
                    written.fetch_add(1, Ordering::Relaxed);
                    // Only a VALID -> SUSPENDED flip can be seen arriving.
                    if !sample || applied.previous[0] != Status::VALID {
                        return;
                    }
                    let acked = Instant::now();
                    let url: hyper::Uri =
                        format!("{replica}/statuses/{list}/{idx}").parse().unwrap();
                    match support::until_suspended(&client, &url, acked).await {
                        Some(latency) => latencies.lock().unwrap().push(latency),
                        None => {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(StoreError::Terminal { .. }) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }));
        if tasks.len() > 4096 {
            tasks.retain(|t| !t.is_finished());
        }
    }
    let wrote_for = started.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    if let Some(path) = &a.samples {
        let mut csv = String::from("latency_ms\n");
        for d in &l {
            csv.push_str(&format!("{:.3}\n", d.as_secs_f64() * 1e3));
        }
        std::fs::write(path, csv).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let w = written.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "changes_written": w,
        "refused_terminal": refused.load(Ordering::Relaxed),
        "write_rate_per_s": (w as f64 / wrote_for.as_secs_f64()).round(),
        "samples": l.len(),
        "never_visible": lost.load(Ordering::Relaxed),
        "latency_ms": {
            "p50": percentile(&l, 0.50).as_secs_f64() * 1e3,
            "p90": percentile(&l, 0.90).as_secs_f64() * 1e3,
            "p99": percentile(&l, 0.99).as_secs_f64() * 1e3,
            "max": l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        },
    });
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    if lost.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}
