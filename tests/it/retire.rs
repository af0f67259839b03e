//! Credential expiry and list retirement end to end (issue 16), on the embedded store and on a
//! real redis-server: registrations carry `expires_at`; a full list whose credentials all
//! expired (with `--retire-after 1s`) is retired by the replicas themselves: its URLs answer
//! 410 problem+json that a CDN may cache, it leaves the aggregation on every replica, its
//! indices are never handed out again, and its status data is deleted after the retention while
//! its tombstone and its credentials' audit trail stay.

use crate::redis_harness::RedisServer;
use crate::support::{self, get, metric, problem, request, TempDir};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use statusd::app::{self, Running};
use statusd::store::Store;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WRITER: &str = "writer-token-0123456789abcdef";

/// Starts statusd with the issuer API on lists of 8 entries (closed at 6: the fill threshold),
/// one open list per pool, a grace of 1 s and a retention of 2 s.
async fn start(dir: &TempDir, redis: Option<&RedisServer>) -> Running {
    let running = launch(dir, redis).await;
    assert!(running.ready(Duration::from_secs(20)).await, "not ready");
    running
}

/// [`start`] without waiting for readiness.
async fn launch(dir: &TempDir, redis: Option<&RedisServer>) -> Running {
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, format!("issuance write {WRITER}\n")).unwrap();
    let url = redis.map(RedisServer::url);
    let mut args = vec![
        "--admin-tokens",
        tokens.to_str().unwrap(),
        "--list-size",
        "8",
        "--min-open-lists",
        "1",
        "--reencode-interval",
        "1",
        "--retire-after",
        "1s",
        "--retired-retention",
        "2s",
    ];
    if let Some(u) = &url {
        args.extend(["--redis-url", u.as_str()]);
    }
    app::start(&support::config(&dir.0, &args))
        .await
        .expect("start statusd")
}

/// `POST` of `body` to the admin path `path` with the write token.
async fn admin(srv: &Running, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, headers, bytes) = request(
        Method::POST,
        &format!("http://{}{path}", srv.admin_addr),
        &[
            ("authorization", &format!("Bearer {WRITER}")),
            ("content-type", "application/json"),
        ],
        Some(Bytes::from(body.to_string())),
    )
    .await;
    if !status.is_success() {
        return (status, problem(status, &headers, &bytes));
    }
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn admin_get(srv: &Running, path: &str) -> (StatusCode, Value) {
    let (status, _, bytes) = get(
        &format!("http://{}{path}", srv.admin_addr),
        &[("authorization", &format!("Bearer {WRITER}"))],
    )
    .await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// An RFC 3339 UTC time `secs` seconds from now.
fn in_secs(secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs((now + secs) as u64))
        .to_string()
}

/// The list ids the Status List Aggregation names.
async fn aggregated(srv: &Running) -> Vec<String> {
    let (status, _, body) = get(&format!("http://{}/statuslists", srv.public_addr), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    doc["status_lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect()
}

/// Waits (up to 30 s) until `/statuslists/{list}` answers 410 on `srv`.
async fn until_gone(srv: &Running, list: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("http://{}/statuslists/{list}", srv.public_addr);
        if get(&url, &[]).await.0 == StatusCode::GONE {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{list} was not retired in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every URL of a retired list answers 410 problem+json, cacheable by a CDN.
async fn assert_gone(srv: &Running, list: &str) {
    let base = format!("http://{}", srv.public_addr);
    for (method, path, body) in [
        (Method::GET, format!("/statuslists/{list}"), None),
        (Method::HEAD, format!("/statuslists/{list}"), None),
        (
            Method::GET,
            format!("/bitstringlists/{list}/revocation"),
            None,
        ),
        (
            Method::GET,
            format!("/statuslist2021/{list}/revocation"),
            None,
        ),
        (Method::GET, format!("/statuses/{list}/3"), None),
        (
            Method::POST,
            format!("/statuses/{list}"),
            Some(Bytes::from(r#"{"idx":[1,2]}"#)),
        ),
    ] {
        let accept = if path.contains("bitstring") {
            "application/vc"
        } else {
            "*/*"
        };
        let (status, headers, bytes) = request(
            method.clone(),
            &format!("{base}{path}"),
            &[("accept", accept), ("content-type", "application/json")],
            body,
        )
        .await;
        assert_eq!(status, StatusCode::GONE, "{method} {path}");
        assert_eq!(
            headers["cache-control"], "public, max-age=86400",
            "{method} {path}"
        );
        if method != Method::HEAD {
            let p = problem(status, &headers, &bytes);
            assert_eq!(p["type"], "urn:statusd:problem:list-retired", "{path}");
        }
    }
}

async fn a_full_expired_list_is_retired_and_gone_everywhere(mut redis: Option<RedisServer>) {
    let dir = TempDir::new("retire");
    let srv = start(&dir, redis.as_ref()).await;
    // A second replica on the same Redis.
    let dir2 = TempDir::new("retire-2");
    let replica = match &redis {
        Some(r) => Some(start(&dir2, Some(r)).await),
        None => None,
    };

    // Expiries are checked: not parsable, in the past.
    for (bad, why) in [
        ("2029-06-30", "not an RFC 3339 UTC time"),
        (&*in_secs(-10), "in the past"),
    ] {
        let (status, p) = admin(
            &srv,
            "/v1/credentials",
            json!({"credential_id": "old", "kind": "physical", "expires_at": bad}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(p["type"], "urn:statusd:problem:bad-item");
        assert!(p["detail"].as_str().unwrap().contains(why), "{p}");
    }

    // Six cards close the pool's one open list (6 of 8 at the 0.75 threshold); all expire in 3 s.
    let expiry = in_secs(3);
    let ops: Vec<Value> = (0..6)
        .map(|i| json!({"op": "register", "credential_id": format!("card-{i}"), "kind": "physical", "expires_at": expiry}))
        .collect();
    let (status, out) = admin(&srv, "/v1/credentials/batch", json!({"operations": ops})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let results = out["results"].as_array().unwrap();
    let old = results[0]["assignment"]["list_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut old_idxs: Vec<u64> = results
        .iter()
        .map(|r| {
            assert_eq!(r["assignment"]["list_id"], old.as_str(), "{r}");
            r["assignment"]["idx"].as_u64().unwrap()
        })
        .collect();
    old_idxs.sort_unstable();
    let (_, view) = admin_get(&srv, "/v1/credentials/card-0").await;
    assert_eq!(view["expires_at"], expiry.as_str());
    // One of them suspended, so the list has status data to delete later.
    let (status, _) = admin(
        &srv,
        "/v1/credentials/card-1/suspend",
        json!({"reason": "reported lost"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The next card goes to a new list; without an expiry it keeps that list for good.
    let (status, fresh) = admin(
        &srv,
        "/v1/credentials",
        json!({"credential_id": "forever", "kind": "physical"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let live = fresh["assignment"]["list_id"].as_str().unwrap().to_owned();
    assert_ne!(live, old);

    until_gone(&srv, &old).await;
    assert_gone(&srv, &old).await;
    let lists = aggregated(&srv).await;
    assert!(!lists.contains(&old) && lists.contains(&live), "{lists:?}");
    if let Some(replica) = &replica {
        // The other replica dropped it too (whichever of them retired it).
        until_gone(replica, &old).await;
        assert_gone(replica, &old).await;
        let lists = aggregated(replica).await;
        assert!(!lists.contains(&old) && lists.contains(&live), "{lists:?}");
        assert!(replica.snapshots.load().list(&old).is_none());
    }
    assert!(srv.snapshots.load().list(&old).is_none(), "memory released");
    let retired = metric(srv.admin_addr, "statusd_lists_retired_total").await
        + match &replica {
            Some(r) => metric(r.admin_addr, "statusd_lists_retired_total").await,
            None => 0.0,
        };
    assert_eq!(retired, 1.0, "one replica retired it");

    // Its credentials take no changes; their audit trail stays readable.
    let (status, p) = admin(
        &srv,
        "/v1/credentials/card-2/revoke",
        json!({"reason": "deceased"}),
    )
    .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(p["type"], "urn:statusd:problem:list-retired");
    let (status, audit) = admin_get(&srv, "/v1/credentials/card-1/audit").await;
    assert_eq!(status, StatusCode::OK);
    let ops: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["register", "suspend"]);
    let (_, list_view) = admin_get(&srv, &format!("/v1/lists/{old}")).await;
    assert!(list_view["retired_at"].is_string(), "{list_view}");
    assert_eq!(list_view["open"], false);

    // New registrations never land in it: its indices are never handed out again.
    let ops: Vec<Value> = (0..8)
        .map(|i| json!({"op": "register", "credential_id": format!("new-{i}"), "kind": "physical", "expires_at": in_secs(3600)}))
        .collect();
    let (status, out) = admin(&srv, "/v1/credentials/batch", json!({"operations": ops})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    for r in out["results"].as_array().unwrap() {
        assert_ne!(r["assignment"]["list_id"], old.as_str(), "{r}");
    }

    // After the retention its status data is deleted; the tombstone and the records stay.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let meta = loop {
        let meta = srv
            .store
            .lists()
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.id == old)
            .expect("the tombstone stays");
        if meta.life.purged_at.is_some() {
            break meta;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{old}'s data was not deleted in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(meta.life.retired_at.is_some());
    assert_eq!(meta.allocated, 6);
    let (_, list) = srv.store.load(&old).await.unwrap();
    assert!(support::nonzero(&list).is_empty(), "entries deleted");
    if let Some(r) = &redis {
        for key in ["data", "feed", "alloc"] {
            let exists: i64 = r.query(redis::cmd("EXISTS").arg(format!("statusd:{{{old}}}:{key}")));
            assert_eq!(exists, 0, "{key} deleted");
        }
        let records: i64 = r.query(redis::cmd("HLEN").arg(format!("statusd:{{{old}}}:creds")));
        assert_eq!(records, 6, "the records (the audit trail) stay");
    }
    let (status, _) = admin_get(&srv, "/v1/credentials/card-1/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert_gone(&srv, &old).await;
    // Registering an expired card's id again is refused, never a second card.
    let (status, p) = admin(
        &srv,
        "/v1/credentials",
        json!({"credential_id": "card-0", "kind": "physical"}),
    )
    .await;
    assert_eq!(status, StatusCode::GONE, "{p}");
    srv.stop().await;
    if let (Some(replica), Some(r)) = (replica, redis.as_mut()) {
        // A replica that starts while Redis is down serves its last snapshot from disk: the
        // retired list still answers 410.
        replica.stop().await;
        r.kill();
        let again = launch(&dir2, Some(r)).await;
        until_gone(&again, &old).await;
        assert_gone(&again, &old).await;
        let (status, _, _) = get(
            &format!("http://{}/statuslists/{live}", again.public_addr),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "the live list is served");
        again.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_full_expired_list_is_retired_and_gone_everywhere() {
    a_full_expired_list_is_retired_and_gone_everywhere(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_full_expired_list_is_retired_and_gone_everywhere() {
    a_full_expired_list_is_retired_and_gone_everywhere(Some(RedisServer::start())).await;
}

/// The retire script touches one list's keys only (one hash slot): it runs unchanged on a
/// Redis Cluster, where the pass reads every list's metadata from the slots' owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retirement_runs_on_a_redis_cluster() {
    use statusd::metrics::Metrics;
    use statusd::retire::{pass, Settings};
    use statusd::status::Bits;
    use statusd::store::redis::RedisStore;
    use statusd::store::registry::{Registry, Txn};
    use statusd::store::{Extends, NewList};
    let cluster = crate::redis_harness::RedisCluster::start();
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    assert!(store.is_cluster());
    for n in 1..=3 {
        let id = format!("p-{n}");
        store
            .create_list(NewList {
                id: id.clone(),
                bits: Bits::Two,
                size: 8,
                purpose: Some("p".into()),
            })
            .await
            .unwrap();
        let txn = Txn {
            claim: (0..6).collect(),
            records: (0..6).map(|i| (i, b"{}".to_vec())).collect(),
            changes: vec![support::change(2, 2)],
            extends: Extends::Until(1_000 * n),
            ..Txn::default()
        };
        store.commit(&id, &txn).await.unwrap();
    }
    let s = Settings {
        after: Duration::from_secs(100),
        retention: Duration::from_secs(100),
        fill_threshold: 0.75,
    };
    let metrics = Metrics::new();
    // p-1 and p-2 are past their grace, p-3 is not.
    let done = pass(&store, &s, &metrics, 2_100).await.unwrap();
    assert_eq!((done.retired, done.purged, done.tombstones), (2, 0, 2));
    let done = pass(&store, &s, &metrics, 2_200).await.unwrap();
    assert_eq!((done.retired, done.purged), (0, 2));
    for n in 1..=2 {
        let data = format!("statusd:{{p-{n}}}:data");
        let node = cluster
            .nodes
            .iter()
            .find(|node| {
                crate::redis_harness::query::<i64>(
                    node.port,
                    redis::cmd("EXISTS").arg(format!("statusd:{{p-{n}}}:meta")),
                )
                .is_ok_and(|e| e == 1)
            })
            .expect("a node holds the tombstone");
        let exists: i64 = node.query(redis::cmd("EXISTS").arg(&data));
        assert_eq!(exists, 0, "{data} deleted");
    }
    let (_, list) = store.load("p-3").await.unwrap();
    assert_eq!(support::nonzero(&list), vec![(2, 2)], "p-3 untouched");
}
