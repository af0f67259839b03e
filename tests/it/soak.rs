//! Issue #20, item 5: the soak, short. A statusd replica on a real `redis-server` re-signs its
//! tokens constantly (`--ttl 2 --token-lifetime 10`: every 5 s) while lookups and token fetches
//! arrive on fresh connections and an issuer registers and suspends credentials. Every sample
//! interval the test records the replica's RSS and open file descriptors (`/proc`), Redis's
//! connected clients, the lists in the published snapshot (the seeded one and the issuer's) and
//! its generation, and the lookups' p99. Pass: no read or write fails, the snapshot keeps being
//! republished with exactly the store's lists, and RSS, descriptors and Redis connections do
//! not grow from the first third of the run to the last beyond a noise margin, RSS beyond that
//! only by what the credentials registered meanwhile add to the published state
//! ([`STATE_BYTES_PER_CREDENTIAL`]).
//!
//! CI runs 45 s, sampled every 5 s; `loadtest/soak` runs two hours sampled every minute
//! (`STATUSD_SOAK_SECS`, `STATUSD_SOAK_SAMPLE_SECS`) and keeps the series.

use crate::net_faults::{call, spawn_replica, TOKEN};
use crate::redis_harness::{query, RedisServer};
use crate::support::{self, TempDir};
use hyper::{Method, StatusCode};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lookups and token fetches per second, each on a fresh connection.
const READ_RATE: u64 = 100;

/// What a credential registered and suspended may add to the replica's memory: the published
/// state (every representation of its list, gzip copies included, and the bitmaps) holds at
/// most 64 bytes per non-VALID credential, averaged over the credentials of a list, twice that
/// while the list is re-encoded next to its published artefacts (docs/capacity.md, "Memory
/// per replica").
const STATE_BYTES_PER_CREDENTIAL: u64 = 128;

/// RSS swings of the allocator (freed memory kept by each thread's arena for reuse).
const RSS_NOISE_KIB: u64 = 4096;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// One sample.
#[derive(Clone, Debug)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
    redis_clients: u64,
    lists: f64,
    generation: f64,
    reads: u64,
    read_p99: Duration,
    writes: u64,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("statusd runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("statusd runs")
        .count()
}

fn redis_clients(port: u16) -> u64 {
    let info: String = query(port, redis::cmd("INFO").arg("clients")).expect("redis answers");
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("connected_clients")
}

/// Reads at [`READ_RATE`]: lookups of the seeded list, every tenth a signed token.
async fn reader(
    public: String,
    stop: Arc<AtomicBool>,
    lat: Arc<Mutex<Vec<Duration>>>,
    failed: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / READ_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let (url, accept) = if n % 10 == 0 {
            (
                format!("{public}/statuslists/soak"),
                "application/statuslist+jwt",
            )
        } else {
            (
                format!("{public}/statuses/soak/{}", n % 1024),
                "application/json",
            )
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::spawn(async move { support::get(&url, &[("accept", accept)]).await.0 }),
        )
        .await;
        lat.lock().unwrap().push(started.elapsed());
        if !matches!(answer, Ok(Ok(StatusCode::OK))) {
            failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Registers and suspends credentials, ten a second.
async fn writer(
    admin: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) {
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("soak-{i}");
        let reg = call(
            &admin,
            Method::POST,
            "/v1/credentials",
            Some(json!({"credential_id": id, "kind": "physical"})),
        )
        .await;
        let ok = matches!(reg, Ok((StatusCode::CREATED, _, _)))
            && matches!(
                call(
                    &admin,
                    Method::POST,
                    &format!("/v1/credentials/{id}/suspend"),
                    Some(json!({"reason": "lost"}))
                )
                .await,
                Ok((StatusCode::OK, _, _))
            );
        if ok {
            done.fetch_add(1, Ordering::Relaxed);
        } else {
            failed.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn max_of<T: Copy + Ord>(s: &[Sample], f: impl Fn(&Sample) -> T) -> T {
    s.iter().map(f).max().expect("samples")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_under_constant_resigning_and_writes_does_not_grow() {
    let length = env_secs("STATUSD_SOAK_SECS", 45);
    let every = env_secs("STATUSD_SOAK_SAMPLE_SECS", 5);
    let redis = RedisServer::start();
    let dir = TempDir::new("soak");
    std::fs::write(dir.0.join("tokens"), format!("soak write {TOKEN}\n")).unwrap();
    {
        use statusd::store::Store as _;
        let store = statusd::app::open_store(Some(&redis.url()), &dir.0)
            .await
            .unwrap();
        statusd::demo::seed_list(
            &store,
            "soak",
            statusd::status::Bits::Two,
            131_072,
            0.01,
            0.002,
        )
        .await
        .unwrap();
        assert_eq!(store.lists().await.unwrap().len(), 1);
    }
    // The default --max-connections (10,000): the accept loop's queue of recent connections
    // (server::guard::Waiting) no longer grows with it.
    let mut r = spawn_replica(
        &dir.0,
        &redis.url(),
        &["--ttl", "2", "--token-lifetime", "10"],
    );
    r.wait_ready().await;
    let pid = r.child.id();
    let admin_addr = r.admin_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let (read_failed, written, write_failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let tasks = vec![
        tokio::spawn(reader(
            r.public.clone(),
            stop.clone(),
            lat.clone(),
            read_failed.clone(),
        )),
        tokio::spawn(writer(
            r.admin.clone(),
            stop.clone(),
            written.clone(),
            write_failed.clone(),
        )),
    ];
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut reads = 0;
    while t0.elapsed() < length {
        tokio::time::sleep(every).await;
        let mut l = std::mem::take(&mut *lat.lock().unwrap());
        l.sort();
        reads += l.len() as u64;
        samples.push(Sample {
            at: t0.elapsed(),
            rss_kib: rss_kib(pid),
            fds: fds(pid),
            redis_clients: redis_clients(redis.port),
            lists: support::metric(admin_addr, "statusd_lists").await,
            generation: support::metric(admin_addr, "statusd_snapshot_generation").await,
            reads,
            read_p99: l.get(l.len() * 99 / 100).copied().unwrap_or_default(),
            writes: written.load(Ordering::Relaxed),
        });
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    eprintln!("soak ({length:?}, sampled every {every:?}):");
    eprintln!(
        "| t | RSS KiB | fds | Redis clients | lists | generation | reads | read p99 | writes |"
    );
    for s in &samples {
        eprintln!(
            "| {:.0} s | {} | {} | {} | {} | {} | {} | {:?} | {} |",
            s.at.as_secs_f64(),
            s.rss_kib,
            s.fds,
            s.redis_clients,
            s.lists,
            s.generation,
            s.reads,
            s.read_p99,
            s.writes
        );
    }
    assert_eq!(read_failed.load(Ordering::Relaxed), 0, "reads failed");
    assert_eq!(write_failed.load(Ordering::Relaxed), 0, "writes failed");
    assert!(samples.len() >= 6, "too few samples: {}", samples.len());
    let third = samples.len() / 3;
    let (first, last) = (&samples[..third], &samples[samples.len() - third..]);
    // Re-signing and writes kept republishing the snapshot, with exactly the store's lists.
    assert!(
        last[0].generation > first[0].generation + 3.0,
        "the snapshot was not republished"
    );
    let in_store = query::<u64>(
        redis.port,
        redis::cmd("SCARD").arg(statusd::store::redis::LISTS_KEY),
    )
    .unwrap() as f64;
    assert!(
        samples.iter().all(|s| s.lists == in_store),
        "the snapshot's lists are not the store's {in_store}"
    );
    assert!(
        last.last().unwrap().writes > first[0].writes,
        "writes stopped"
    );
    // No growth beyond noise from the first third to the last, nor beyond what the credentials
    // registered meanwhile add to the published state.
    let (rss0, rss1) = (max_of(first, |s| s.rss_kib), max_of(last, |s| s.rss_kib));
    let registered = last.last().unwrap().writes - first[0].writes;
    let state_kib = registered * STATE_BYTES_PER_CREDENTIAL / 1024;
    eprintln!(
        "soak RSS: {rss0} KiB at most in the first third, {rss1} KiB in the last, {registered} \
         credentials registered in between ({} B of RSS per credential)",
        (rss1.saturating_sub(rss0) * 1024)
            .checked_div(registered)
            .unwrap_or(0)
    );
    assert!(
        rss1 <= rss0 + rss0 / 10 + RSS_NOISE_KIB,
        "RSS grew from {rss0} KiB to {rss1} KiB"
    );
    assert!(
        rss1 <= rss0 + RSS_NOISE_KIB + state_kib,
        "RSS grew from {rss0} KiB to {rss1} KiB: more than {RSS_NOISE_KIB} KiB of noise and \
         {state_kib} KiB for the {registered} credentials registered"
    );
    let (fd0, fd1) = (max_of(first, |s| s.fds), max_of(last, |s| s.fds));
    assert!(fd1 <= fd0 + 4, "descriptors grew from {fd0} to {fd1}");
    let (c0, c1) = (
        max_of(first, |s| s.redis_clients),
        max_of(last, |s| s.redis_clients),
    );
    assert!(c1 <= c0 + 1, "Redis connections grew from {c0} to {c1}");
}
