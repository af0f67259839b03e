//! Single-write latency of the issuer against Redis in another zone (issue #22): a
//! `redis-server` on a free loopback port, reached through a proxy that holds every chunk a
//! fixed delay each way (the counting proxy of the tests, `tests/it/proxy.rs`).
//!
//! ```text
//! cargo run --example write_latency -- [--delays 0,50,200] [--samples 20]
//! ```
//!
//! For each delay (milliseconds each way, so the round trip is twice it), `--samples` rounds of
//! single-item operations through [`Issuer::execute`] (what `POST /v1/credentials/...` runs,
//! without the HTTP layer, which adds well under a millisecond on loopback): register a card,
//! suspend it, reinstate it, reissue it (the new card lands in either of the pool's two lists),
//! revoke the new card. Prints a Markdown table of p50 and p99 per operation, the round trips
//! the proxy counted per operation, and the median of how much longer than asked the proxy held
//! an operation's chunks (near zero on an idle machine; on a loaded one its threads wake late,
//! which is not statusd's time). Needs `redis-server` on `PATH`.

#[path = "../tests/it/proxy.rs"]
mod proxy;

use proxy::Proxy;
use statusd::issuer::{HoldOp, Issuer, Operation, Registration, ReissueOp, RevokeOp, Settings};
use statusd::routes::PublicUrls;
use statusd::store::any::AnyStore;
use statusd::store::redis::RedisStore;
use statusd::store::registry::Registry;
use statusd::store::Store;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Redis(Child, std::path::PathBuf);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn start_redis() -> (Redis, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = std::env::temp_dir().join(format!("statusd-write-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let redis = Redis(child, dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (redis, port)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Latency of single issuer writes with Redis a round trip away.
#[derive(clap::Parser)]
struct Args {
    /// Delays added each way between statusd and Redis, in milliseconds.
    #[arg(
        long,
        value_name = "MS,MS",
        default_value = "0,50,200",
        value_delimiter = ','
    )]
    delays: Vec<u64>,
    /// Writes per operation and delay.
    #[arg(long, default_value = "20")]
    samples: usize,
}

const OPS: [&str; 5] = ["register", "suspend", "reinstate", "reissue", "revoke"];

#[tokio::main]
async fn main() {
    let Args { delays, samples } = clap::Parser::parse();
    let (_redis, port) = start_redis();
    let urls = PublicUrls::new("https://status.example");
    println!(
        "| added each way | RTT | operation | p50 | p99 | round trips | proxy overshoot p50 | samples |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for delay in delays {
        let proxy = Proxy::start(port, Duration::from_millis(delay)).await;
        let store = RedisStore::connect(&proxy.url()).await.expect("connect");
        let store = Arc::new(AnyStore::Redis(store));
        let settings = Settings {
            list_size: 1 << 17,
            ..Settings::default()
        };
        let issuer = Issuer::new(store.clone(), urls.clone(), settings);
        // Warm-up: the pool's lists, the commit script, every list's allocations.
        for i in 0..4 {
            run(&issuer, &proxy, register(&format!("warm-{delay}-{i}"))).await;
        }
        for m in store.lists().await.expect("lists") {
            store.allocated(&m.id).await.expect("allocated");
        }
        let mut took: Vec<Vec<Duration>> = vec![Vec::new(); OPS.len()];
        let mut trips: Vec<Vec<u64>> = vec![Vec::new(); OPS.len()];
        let mut over: Vec<Vec<Duration>> = vec![Vec::new(); OPS.len()];
        for i in 0..samples {
            let id = format!("card-{delay}-{i}");
            let new = format!("{id}-new");
            let ops = [
                register(&id),
                Operation::Suspend(hold(&id)),
                Operation::Reinstate(hold(&id)),
                Operation::Reissue(ReissueOp {
                    credential_id: id.clone(),
                    new_credential_id: new.clone(),
                    parent: None,
                    reason: "replaced".into(),
                    request_id: None,
                    expires_at: None,
                }),
                Operation::Revoke(RevokeOp {
                    credential_id: new,
                    reason: "fraud".into(),
                    request_id: None,
                }),
            ];
            for (k, op) in ops.into_iter().enumerate() {
                let (t, n, o) = run(&issuer, &proxy, op).await;
                took[k].push(t);
                trips[k].push(n);
                over[k].push(o);
            }
        }
        for (k, name) in OPS.iter().enumerate() {
            took[k].sort_unstable();
            trips[k].sort_unstable();
            over[k].sort_unstable();
            let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
            let (lo, hi) = (trips[k][0], trips[k][trips[k].len() - 1]);
            println!(
                "| {delay} ms | {} ms | {name} | {} | {} | {} | {} | {samples} |",
                2 * delay,
                ms(percentile(&took[k], 0.5)),
                ms(percentile(&took[k], 0.99)),
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}–{hi}")
                },
                ms(percentile(&over[k], 0.5)),
            );
        }
    }
}

/// Runs one single-item operation: its latency, the round trips the proxy counted and how much
/// longer than asked the proxy held its chunks (summed: on a loaded machine its writer threads
/// wake late, which adds to the latency without being statusd's).
async fn run(issuer: &Issuer, proxy: &Proxy, op: Operation) -> (Duration, u64, Duration) {
    let before = proxy.round_trips();
    let over = proxy.overshoot();
    let start = Instant::now();
    let mut r = issuer
        .execute("bench", std::slice::from_ref(&op))
        .await
        .unwrap_or_else(|e| panic!("{op:?}: {e:?}"));
    let took = start.elapsed();
    r.pop()
        .expect("one result")
        .unwrap_or_else(|p| panic!("{op:?}: {p:?}"));
    (
        took,
        proxy.round_trips() - before,
        proxy.overshoot().saturating_sub(over),
    )
}

fn register(id: &str) -> Operation {
    Operation::Register(Registration {
        credential_id: id.into(),
        kind: "physical".into(),
        parent: None,
        purpose: None,
        reason: None,
        request_id: None,
        expires_at: None,
    })
}

fn hold(id: &str) -> HoldOp {
    HoldOp {
        credential_id: id.into(),
        reason: "reported lost".into(),
        hold: None,
        request_id: None,
    }
}
