//! Issue #20, item 2: a Redis Cluster master fails over to its replica under reads and writes.
//! Three masters with a replica each ([`RedisCluster::start_with_replicas`], node timeout 1 s);
//! statusd waits for one replica to confirm each write (`STATUSD_REDIS_WAIT_REPLICAS=1`: Redis
//! replicates asynchronously, and without it a master killed before its replica had an
//! acknowledged write took that write with it: `acknowledged fo-0 lost: list "default-1" does
//! not exist`). Once the replicas have caught up with what was seeded, the master holding the
//! issuer's list is killed (SIGKILL) while the public plane is read at a fixed rate and an
//! issuer registers and suspends credentials. Checked: no read fails or is wrong; every write is
//! acknowledged or refused with 503 (`store-unavailable`, or `not-replicated` while the promoted
//! master has no replica) and `Retry-After` within its timeout; writes are acknowledged again
//! once the killed node, restarted, follows the promoted one, without restarting statusd; every
//! acknowledged write is there afterwards and every refused one is absent or whole. The figures
//! are printed for docs/BENCHMARKS.md.

use crate::net_faults::{call, TOKEN};
use crate::redis_harness::RedisCluster;
use crate::support::traffic::{self, reader, Reads, Run, Writer, Writes};
use crate::support::{self, TempDir};
use hyper::{Method, StatusCode};
use serde_json::Value;
use statusd::status::Bits;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SEEDED: [(u32, u8); 3] = [(1, 1), (2, 2), (5, 1)];

/// statusd on Redis at `url` with the admin tokens in `dir/tokens`, issuer lists of 131,072
/// entries, and every write waiting up to `wait` for one replica; ready.
async fn start_waiting_for_replicas(dir: &TempDir, url: &str, wait: &str) -> statusd::app::Running {
    let tokens = dir.0.join("tokens");
    let config = support::config(
        &dir.0,
        &[
            "--redis-url",
            url,
            "--admin-tokens",
            tokens.to_str().unwrap(),
            "--list-size",
            "131072",
            "--redis-wait-replicas",
            "1",
            "--redis-wait-timeout",
            wait,
        ],
    );
    let r = statusd::app::start(&config).await.expect("start statusd");
    assert!(r.ready(Duration::from_secs(20)).await, "not ready");
    r
}

/// When each acknowledgement arrived, from the run's start.
fn acks(w: &Writes) -> impl Iterator<Item = Duration> + '_ {
    w.answers.iter().filter(|a| a.acked).map(|a| a.at)
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
    let r = start_waiting_for_replicas(&dir, &url, "1s").await;
    // The clock check reads TIME from some node of the cluster.
    assert!(
        statusd::clock::measure(&r.store, Duration::from_secs(1))
            .await
            .is_some_and(|s| s.seconds.abs() < 1.0),
        "Redis Cluster TIME"
    );
    let public = format!("http://{}", r.public_addr);
    let admin = format!("http://{}", r.admin_addr);

    let run = Run::start();
    let t0 = run.t0;
    let reads = Arc::new(Mutex::new(vec![Reads::default()]));
    let ledger = Arc::new(Mutex::new(Writes::default()));
    // Reads at 50/s.
    let read = tokio::spawn(reader(
        public.clone(),
        "x",
        &SEEDED,
        50,
        run.clone(),
        reads.clone(),
    ));
    let writer = Writer {
        admin: admin.clone(),
        token: TOKEN,
        prefix: "fo",
        timeout: crate::net_faults::WRITE_TIMEOUT,
        pause: Duration::from_millis(100),
    };
    let write = tokio::spawn(traffic::writer(writer, run.clone(), ledger.clone()));

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
    // What was written without statusd (the seeded list) is on the replica too: what this test
    // checks does not depend on how far replication had got.
    crate::redis_harness::until_replicas_caught_up(cluster.nodes[victim].port).await;
    let killed_at = t0.elapsed();
    let acked_before = acks(&ledger.lock().unwrap()).count();
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
    // The promoted master has no replica, so writes to its slots are refused (not-replicated)
    // until the killed node, restarted as an orchestrator would, follows it.
    cluster.nodes[victim].restart();
    let port = cluster.nodes[victim].port;
    while cluster.is_master(port) {
        assert!(
            t0.elapsed() - promoted < Duration::from_secs(30),
            "the restarted node did not become a replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rejoined = t0.elapsed();
    // Writes are acknowledged again, by the same statusd.
    let resumed = loop {
        let at = acks(&ledger.lock().unwrap()).find(|&t| t > rejoined);
        if let Some(at) = at {
            break at;
        }
        assert!(
            t0.elapsed() - rejoined < Duration::from_secs(30),
            "writes did not resume once the promoted master had a replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.stop();
    read.await.unwrap();
    write.await.unwrap();
    let Reads {
        attempted,
        failed,
        wrong,
        latencies: mut lat,
    } = std::mem::take(&mut reads.lock().unwrap()[0]);

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
    let mut wl: Vec<Duration> = l.answers.iter().map(|a| a.took).collect();
    wl.sort();
    eprintln!(
        "failover: master killed at {killed_at:?}, replica promoted after {:?}, the killed \
         node following it after {:?}, writes acknowledged again after {:?}; reads {attempted} \
         failed {failed} wrong {wrong} p99 {:?}; writes acknowledged {} ({acked_before} before \
         the kill), refused {} ({} not-replicated), all acknowledged present; write p99 {:?} \
         max {:?}",
        promoted - killed_at,
        rejoined - killed_at,
        resumed - killed_at,
        lat[lat.len() * 99 / 100],
        l.acked.len(),
        l.refused.len(),
        l.not_replicated,
        wl[wl.len() * 99 / 100],
        wl.last().unwrap()
    );
    assert_eq!((failed, wrong), (0, 0), "reads failed or were wrong");
    r.stop().await;
}

/// A registration and a suspension that no replica confirms (`STATUSD_REDIS_WAIT_REPLICAS=1`
/// and none attached) are answered 503 `not-replicated` with `Retry-After` once the wait
/// timeout has passed, counted in `statusd_redis_wait_shortfalls_total`. Both were applied on
/// the primary: once a replica follows, retrying each succeeds without applying it twice (the
/// registration answers `exists` at the same index, the suspension finds the card suspended
/// and the list's version does not move again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_no_replica_confirms_is_refused_and_its_retry_is_safe() {
    use crate::redis_harness::{until_replicas_caught_up, RedisServer};
    use statusd::issuer::{Issuer, Settings};
    let server = RedisServer::start();
    let dir = TempDir::new("not-replicated");
    std::fs::write(dir.0.join("tokens"), format!("nr write {TOKEN}\n")).unwrap();
    {
        // The pool's lists, created before writes wait for replicas.
        let store = statusd::app::open_store(Some(&server.url()), &dir.0)
            .await
            .unwrap();
        let settings = Settings {
            list_size: 1 << 17,
            ..Settings::default()
        };
        let issuer = Issuer::new(Arc::new(store), crate::roundtrips::urls(), settings);
        let warm = crate::roundtrips::register("warm", "physical", None, None);
        let r = issuer.execute("test", &[warm]).await.expect("runs");
        assert_eq!(r[0].as_ref().map(|o| o.result), Ok("registered"));
    }
    let wait = Duration::from_millis(500);
    let r = start_waiting_for_replicas(&dir, &server.url(), "500ms").await;
    let admin = format!("http://{}", r.admin_addr);
    let shortfalls = "statusd_redis_wait_shortfalls_total";
    let before = support::metric(r.admin_addr, shortfalls).await;

    let register = serde_json::json!({"credential_id": "nr-1", "kind": "physical"});
    let suspend = serde_json::json!({"reason": "lost"});
    let refused = |what: &str, s: StatusCode, h: &hyper::HeaderMap, v: &Value| {
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{what}: {v}");
        assert_eq!(h["content-type"], "application/problem+json", "{what}");
        assert_eq!(
            v["type"], "urn:statusd:problem:not-replicated",
            "{what}: {v}"
        );
        assert_eq!(h["retry-after"], "1", "{what}");
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("applied on the Redis primary") && detail.contains("safe"),
            "{what}: {detail}"
        );
    };
    for (what, method, path, body) in [
        ("register", Method::POST, "/v1/credentials", &register),
        (
            "suspend",
            Method::POST,
            "/v1/credentials/nr-1/suspend",
            &suspend,
        ),
    ] {
        let started = Instant::now();
        let (s, h, v) = call(&admin, method, path, Some(body.clone()))
            .await
            .expect("answers");
        refused(what, s, &h, &v);
        let took = started.elapsed();
        assert!(
            took >= wait,
            "{what} answered after {took:?}: WAIT did not wait"
        );
    }
    assert!(support::metric(r.admin_addr, shortfalls).await >= before + 2.0);
    // Applied on the primary, though: the card is there, suspended.
    let (s, _, v) = call(&admin, Method::GET, "/v1/credentials/nr-1", None)
        .await
        .expect("answers");
    assert_eq!(
        (s, &v["status"]),
        (StatusCode::OK, &Value::from("SUSPENDED")),
        "{v}"
    );
    let at = v["assignment"].clone();
    let list = at["list_id"].as_str().unwrap().to_owned();
    let list_path = format!("/v1/lists/{list}");
    let (_, _, before_retry) = call(&admin, Method::GET, &list_path, None).await.unwrap();

    // A replica follows; the retries are confirmed and change nothing.
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &server.port.to_string()]);
    until_replicas_caught_up(server.port).await;
    let (s, _, v) = call(&admin, Method::POST, "/v1/credentials", Some(register))
        .await
        .expect("answers");
    assert_eq!(
        (s, &v["result"]),
        (StatusCode::OK, &Value::from("exists")),
        "{v}"
    );
    assert_eq!(v["assignment"], at, "the retry allocated again");
    let path = "/v1/credentials/nr-1/suspend";
    let (s, _, v) = call(&admin, Method::POST, path, Some(suspend))
        .await
        .expect("answers");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["result"], &v["status"]),
        (&Value::from("unchanged"), &Value::from("SUSPENDED")),
        "{v}"
    );
    let (_, _, after) = call(&admin, Method::GET, &list_path, None).await.unwrap();
    assert_eq!(after["version"], before_retry["version"], "{after}");
    assert_eq!(after["allocated"], before_retry["allocated"], "{after}");
    // And the replica holds it all.
    let replicated: i64 =
        replica.query(redis::cmd("EXISTS").arg(statusd::store::redis::cid_key("nr-1")));
    assert_eq!(replicated, 1);
    r.stop().await;
}
