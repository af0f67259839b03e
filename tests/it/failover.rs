//! Issue #20, item 2: a Redis Cluster master fails over to its replica under reads and writes.
//! Three masters with a replica each ([`RedisCluster::start_with_replicas`], node timeout 1 s);
//! the master holding the issuer's list is killed (SIGKILL) while the public plane is read at a
//! fixed rate and an issuer registers and suspends credentials. Checked: no read fails or is
//! wrong; every write is acknowledged or refused with 503 `store-unavailable` and `Retry-After`
//! within its timeout; writes are acknowledged again after the promotion, without restarting
//! statusd; every acknowledged write is there afterwards and every refused one is absent or
//! whole. The figures are printed for docs/BENCHMARKS.md.

use crate::net_faults::{call, refused, TOKEN};
use crate::redis_harness::RedisCluster;
use crate::support::{self, TempDir};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use statusd::status::Bits;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SEEDED: [(u32, u8); 3] = [(1, 1), (2, 2), (5, 1)];

#[derive(Default)]
struct Ledger {
    acked: Vec<(String, bool)>,
    refused: Vec<(String, &'static str)>,
    /// When each acknowledgement arrived, from the test's start.
    acked_at: Vec<Duration>,
    latencies: Vec<Duration>,
}

async fn writer(admin: String, t0: Instant, stop: Arc<AtomicBool>, l: Arc<Mutex<Ledger>>) {
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("fo-{i}");
        let started = Instant::now();
        let body = json!({"credential_id": id, "kind": "physical"});
        let answer = call(&admin, Method::POST, "/v1/credentials", Some(body)).await;
        l.lock().unwrap().latencies.push(started.elapsed());
        match answer {
            Ok((StatusCode::CREATED, _, _)) => {}
            Ok((s, h, v)) => {
                refused(s, &h, &v, "a registration");
                l.lock().unwrap().refused.push((id, "register"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(t) => panic!("registration {id} hung for {t:?}"),
        }
        {
            let mut l = l.lock().unwrap();
            l.acked.push((id.clone(), false));
            l.acked_at.push(t0.elapsed());
        }
        let started = Instant::now();
        let path = format!("/v1/credentials/{id}/suspend");
        let answer = call(&admin, Method::POST, &path, Some(json!({"reason": "lost"}))).await;
        l.lock().unwrap().latencies.push(started.elapsed());
        match answer {
            Ok((StatusCode::OK, _, _)) => {
                let mut l = l.lock().unwrap();
                l.acked.last_mut().unwrap().1 = true;
                l.acked_at.push(t0.elapsed());
            }
            Ok((s, h, v)) => {
                refused(s, &h, &v, "a suspension");
                l.lock().unwrap().refused.push((id, "suspend"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(t) => panic!("suspension of {id} hung for {t:?}"),
        }
    }
}

/// Reads at 50/s until stopped: (attempted, failed, wrong, latencies).
async fn reader(public: String, stop: Arc<AtomicBool>) -> (u64, u64, u64, Vec<Duration>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut attempted, mut failed, mut wrong, mut lat) = (0, 0, 0, Vec::new());
    for n in 0usize.. {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (idx, want) = SEEDED[n % SEEDED.len()];
        let url = format!("{public}/statuses/x/{idx}");
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::spawn(async move { support::get(&url, &[]).await }),
        )
        .await;
        lat.push(started.elapsed());
        attempted += 1;
        match answer {
            Ok(Ok((StatusCode::OK, _, body))) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if v["value"].as_u64() != Some(u64::from(want)) {
                    wrong += 1;
                }
            }
            _ => failed += 1,
        }
    }
    (attempted, failed, wrong, lat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_load_fails_over_without_failed_reads_or_lost_writes() {
    let mut cluster = RedisCluster::start_with_replicas();
    let url = cluster.url();
    let dir = TempDir::new("failover");
    std::fs::write(dir.0.join("tokens"), format!("fo write {TOKEN}\n")).unwrap();
    {
        let store = statusd::app::open_store(Some(&url), &dir.0).await.unwrap();
        crate::support::seed_list(&store, "x", Bits::Two, 1024, &SEEDED).await;
    }
    let tokens = dir.0.join("tokens");
    let config = support::config(
        &dir.0,
        &[
            "--redis-url",
            &url,
            "--admin-tokens",
            tokens.to_str().unwrap(),
            "--list-size",
            "131072",
        ],
    );
    let r = statusd::app::start(&config).await.expect("start statusd");
    assert!(r.ready(Duration::from_secs(20)).await, "not ready");
    // The clock check reads TIME from some node of the cluster.
    assert!(
        statusd::clock::measure(&r.store, Duration::from_secs(1))
            .await
            .is_some_and(|s| s.seconds.abs() < 1.0),
        "Redis Cluster TIME"
    );
    let public = format!("http://{}", r.public_addr);
    let admin = format!("http://{}", r.admin_addr);

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let read = tokio::spawn(reader(public.clone(), stop.clone()));
    let write = tokio::spawn(writer(admin.clone(), t0, stop.clone(), ledger.clone()));

    // Writes flow; then the master holding the issuer's list is killed.
    while ledger.lock().unwrap().acked.len() < 5 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no writes before the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = ledger.lock().unwrap().acked[0].0.clone();
    let (_, _, v) = call(
        &admin,
        Method::GET,
        &format!("/v1/credentials/{first}"),
        None,
    )
    .await
    .expect("answers");
    let list = v["assignment"]["list_id"].as_str().unwrap().to_owned();
    let key = statusd::store::redis::meta_key(&list);
    let victim = cluster
        .nodes
        .iter()
        .position(|n| n.port == cluster.node_for(&key).port)
        .unwrap();
    let killed_at = t0.elapsed();
    let acked_before = ledger.lock().unwrap().acked_at.len();
    cluster.nodes[victim].kill();

    // A replica is promoted to master of those slots: the cluster is whole again.
    let promoted = loop {
        let others: Vec<u16> = cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, n)| n.port)
            .collect();
        let ok = others.iter().all(|&p| {
            crate::redis_harness::query::<String>(p, redis::cmd("CLUSTER").arg("INFO"))
                .is_ok_and(|i| i.contains("cluster_state:ok"))
        });
        if ok && others.iter().filter(|&&p| cluster.is_master(p)).count() == 3 {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() - killed_at < Duration::from_secs(30),
            "no replica was promoted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Writes are acknowledged again, by the same statusd.
    let resumed = loop {
        let at = ledger
            .lock()
            .unwrap()
            .acked_at
            .iter()
            .copied()
            .find(|&t| t > promoted);
        if let Some(at) = at {
            break at;
        }
        assert!(
            t0.elapsed() - promoted < Duration::from_secs(30),
            "writes did not resume after the promotion"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (attempted, failed, wrong, mut lat) = read.await.unwrap();
    write.await.unwrap();

    let l = std::mem::take(&mut *ledger.lock().unwrap());
    for (id, suspended) in &l.acked {
        let (s, _, v) = call(&admin, Method::GET, &format!("/v1/credentials/{id}"), None)
            .await
            .expect("answers");
        assert_eq!(s, StatusCode::OK, "acknowledged {id} lost: {v}");
        if *suspended {
            assert_eq!(v["status"], "SUSPENDED", "{id}");
        }
        let a = &v["assignment"];
        let url = format!(
            "{public}/statuses/{}/{}",
            a["list_id"].as_str().unwrap(),
            a["idx"]
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, _, body) = support::get(&url, &[]).await;
            let l: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if s == StatusCode::OK && l["status"] == v["status"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not on the public plane: {s} {l}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for (id, op) in &l.refused {
        let (s, _, v) = call(&admin, Method::GET, &format!("/v1/credentials/{id}"), None)
            .await
            .expect("answers");
        match (*op, s) {
            ("register", StatusCode::NOT_FOUND) => {}
            (_, StatusCode::OK) => {
                assert!(
                    v["assignment"]["list_id"].is_string(),
                    "{id} half-registered: {v}"
                )
            }
            _ => panic!("refused {op} of {id}: now {s} {v}"),
        }
    }
    lat.sort();
    let mut wl = l.latencies.clone();
    wl.sort();
    eprintln!(
        "failover: master killed at {killed_at:?}, replica promoted after {:?}, writes \
         acknowledged again after {:?}; reads {attempted} failed {failed} wrong {wrong} p99 {:?}; \
         writes acknowledged {} ({acked_before} before the kill), refused {}, all acknowledged \
         present; write p99 {:?} max {:?}",
        promoted - killed_at,
        resumed - killed_at,
        lat[lat.len() * 99 / 100],
        l.acked.len(),
        l.refused.len(),
        wl[wl.len() * 99 / 100],
        wl.last().unwrap()
    );
    assert_eq!((failed, wrong), (0, 0), "reads failed or were wrong");
    r.stop().await;
}
