//! Mass-revocation drill driver (`loadtest/drill` runs it): revoke `--per-list` random entries
//! in each of the store's lists at once (one atomic write per list, all lists concurrently,
//! through the same Redis write script statusd uses), then poll every replica's signed Status
//! List Tokens until each shows every revoked entry as INVALID.
//!
//! ```text
//! drill --redis redis://127.0.0.1:6379 --replicas http://127.0.0.1:8080,http://127.0.0.1:8081
//!       [--per-list 20000]
//! ```
//!
//! Prints one JSON object: entries revoked, seconds until Redis acknowledged every write, and
//! seconds until each replica published every list. Loopback only.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rand::Rng;
use serde_json::json;
use statusd::status::Status;
use statusd::store::redis::RedisStore;
use statusd::store::{Change, Store};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Mass-revocation drill: revoke entries in every list at once, time the replicas.
#[derive(clap::Parser)]
struct Args {
    /// The Redis the replicas read (loopback only).
    #[arg(long, value_parser = support::loopback_url)]
    redis: String,
    /// Every replica's public listener, comma-separated (loopback only).
    #[arg(long, value_name = "URL,URL", required = true, value_delimiter = ',', value_parser = support::loopback_url)]
    replicas: Vec<String>,
    /// Entries revoked in each list.
    #[arg(long, default_value = "20000")]
    per_list: usize,
}

async fn token(url: &str) -> Option<String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let resp = client.get(url.parse().ok()?).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

#[tokio::main]
async fn main() {
    let Args {
        redis,
        replicas,
        per_list,
    } = clap::Parser::parse();
    // 50 scripts of 20,000 changes queue up in Redis: allow each a minute, not the 2 s a
    // replica allows itself.
    let opts = statusd::store::redis::RedisOptions {
        response_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let store = RedisStore::connect_with(&redis, opts).await.expect("redis");
    let lists = store.lists().await.expect("lists");
    assert!(!lists.is_empty(), "no lists in the store");

    // The entries to revoke, and a sample of them per list to check on every replica.
    let mut rng = rand::thread_rng();
    let plan: Vec<(String, Vec<Change>, Vec<u32>)> = lists
        .iter()
        .map(|m| {
            let mut idxs = BTreeSet::new();
            while idxs.len() < per_list.min(m.size as usize) {
                idxs.insert(rng.gen_range(0..m.size));
            }
            let changes: Vec<Change> = idxs
                .iter()
                .map(|&idx| Change {
                    idx,
                    status: Status::INVALID,
                })
                .collect();
            let sample: Vec<u32> = idxs
                .iter()
                .step_by((idxs.len() / 200).max(1))
                .copied()
                .collect();
            (m.id.clone(), changes, sample)
        })
        .collect();
    let total: usize = plan.iter().map(|p| p.1.len()).sum();

    let start = Instant::now();
    let mut writes = tokio::task::JoinSet::new();
    for (id, changes, _) in &plan {
        let (store, id, changes) = (store.clone(), id.clone(), changes.clone());
        writes.spawn(async move { store.apply(&id, &changes).await.map(|_| ()) });
    }
    while let Some(r) = writes.join_next().await {
        r.expect("task").expect("apply");
    }
    let acked = start.elapsed().as_secs_f64();

    // Every replica is polled at the same time, each until all its lists show the sample.
    let plan = std::sync::Arc::new(plan);
    let mut polls = tokio::task::JoinSet::new();
    // Lists published per replica; on standard error, on a terminal only.
    let pb = statusd::progress::bar((plan.len() * replicas.len()) as u64, "lists published");
    pb.set_message(format!("{total} revoked"));
    for base in replicas.clone() {
        let plan = plan.clone();
        let pb = pb.clone();
        polls.spawn(async move {
            let mut pending: Vec<usize> = (0..plan.len()).collect();
            while !pending.is_empty() {
                let mut still = Vec::new();
                for k in pending {
                    let (id, _, sample) = &plan[k];
                    let done = match token(&format!("{base}/statuslists/{id}")).await {
                        Some(jwt) => {
                            let claims = statusd::token::statuslist::decode_jwt_unverified(&jwt)
                                .expect("a status list token")
                                .claims;
                            let list = claims.status_list.decode().expect("a valid list");
                            sample.iter().all(|&i| list.get_unchecked(i) == Status::INVALID)
                        }
                        None => false,
                    };
                    if done {
                        pb.inc(1);
                    } else {
                        still.push(k);
                    }
                }
                pending = still;
                if !pending.is_empty() {
                    assert!(start.elapsed() < Duration::from_secs(300), "{base}: not published after 300 s");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            json!({"replica": base, "seconds": (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0})
        });
    }
    let mut published = Vec::new();
    while let Some(r) = polls.join_next().await {
        published.push(r.expect("poll task"));
    }
    pb.finish_and_clear();
    println!(
        "{}",
        json!({
            "lists": lists.len(),
            "revoked": total,
            "acknowledged_seconds": (acked * 1000.0).round() / 1000.0,
            "published": published,
        })
    );
}
