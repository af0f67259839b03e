//! `kill -9` in the middle of issuer writes, on both stores: after a restart, every write that
//! was acknowledged is there (and on the public plane), and no write that was refused is.

use crate::redis_harness::{free_ports, RedisServer};
use crate::support::replica::{issuer_serve, Replica};
use crate::support::traffic::admin_call;
use crate::support::{self, TempDir};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use statusd::app;
use statusd::status::Bits;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "crash-test-token-0123456789abcdef";

fn spawn(dir: &std::path::Path, redis: Option<&str>, ports: [u16; 2]) -> Replica {
    let mut cmd = issuer_serve(dir);
    cmd.env("STATUSD_LOG", "warn").stderr(Stdio::null());
    if let Some(url) = redis {
        cmd.arg("--redis-url").arg(url);
    }
    Replica::spawn(&mut cmd, ports)
}

/// One admin call that may fail because the server is gone: `None` then.
async fn call(
    admin: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Option<(StatusCode, Value)> {
    admin_call(admin, TOKEN, method, path, body, Duration::from_secs(5))
        .await
        .ok()
        .map(|(s, _, v)| (s, v))
}

#[derive(Default)]
struct Ledger {
    /// Registrations acknowledged, with whether their suspension was acknowledged (`Some(true)`),
    /// not sent (`Some(false)`) or in flight when the server died (`None`: either outcome).
    acked: Vec<(String, Option<bool>)>,
    /// Registrations refused (a conflicting retry): the kind must stay physical.
    refused: Vec<String>,
}

async fn writer(admin: String, task: usize, ledger: Arc<Mutex<Ledger>>) {
    for i in 0.. {
        let id = format!("c-{task}-{i}");
        let body = json!({"credential_id": id, "kind": "physical"});
        match call(&admin, Method::POST, "/v1/credentials", Some(body)).await {
            Some((StatusCode::CREATED, _)) => {
                ledger.lock().unwrap().acked.push((id.clone(), Some(false)))
            }
            Some((s, v)) => panic!("registration answered {s}: {v}"),
            None => return,
        }
        let conflicting = json!({"credential_id": id, "kind": "mobile"});
        match call(&admin, Method::POST, "/v1/credentials", Some(conflicting)).await {
            Some((StatusCode::CONFLICT, _)) => ledger.lock().unwrap().refused.push(id.clone()),
            Some((s, v)) => panic!("a conflicting registration answered {s}: {v}"),
            None => return,
        }
        let path = format!("/v1/credentials/{id}/suspend");
        let answer = call(&admin, Method::POST, &path, Some(json!({"reason": "lost"}))).await;
        let outcome = match &answer {
            Some((StatusCode::OK, _)) => Some(true),
            Some((s, v)) => panic!("suspend answered {s}: {v}"),
            None => None,
        };
        {
            let mut l = ledger.lock().unwrap();
            let last = l.acked.iter_mut().rev().find(|(c, _)| *c == id).unwrap();
            last.1 = outcome;
        }
        if answer.is_none() {
            return;
        }
    }
}

async fn drill(redis: Option<&RedisServer>) {
    let dir = TempDir::new("crash");
    std::fs::write(dir.0.join("tokens"), format!("crash write {TOKEN}\n")).unwrap();
    let url = redis.map(RedisServer::url);
    {
        // A list in the store keeps --demo from seeding; the issuer makes its own.
        let store = app::open_store(url.as_deref(), &dir.0).await.unwrap();
        support::seed_list(&store, "x", Bits::Two, 1024, &[]).await;
    }
    let ports = free_ports::<2>();
    let mut server = spawn(&dir.0, url.as_deref(), ports);
    server.wait_ready().await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let writers: Vec<_> = (0..4)
        .map(|t| tokio::spawn(writer(server.admin.clone(), t, ledger.clone())))
        .collect();
    // At least 1.5 s of writes, and at least 10 acknowledged registrations (a loaded machine
    // made only 8 in 1.5 s and the test failed for want of writes, not of durability).
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500)
        || (ledger.lock().unwrap().acked.len() < 10 && started.elapsed() < Duration::from_secs(30))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    drop(server);
    for w in writers {
        w.await.expect("writer");
    }
    let (acked, refused) = {
        let l = ledger.lock().unwrap();
        (l.acked.clone(), l.refused.clone())
    };
    assert!(
        acked.len() >= 10,
        "too few writes before the kill: {}",
        acked.len()
    );

    let mut server = spawn(&dir.0, url.as_deref(), ports);
    server.wait_ready().await;
    for (id, suspended) in &acked {
        let (s, v) = call(
            &server.admin,
            Method::GET,
            &format!("/v1/credentials/{id}"),
            None,
        )
        .await
        .expect("answer");
        assert_eq!(s, StatusCode::OK, "acknowledged {id} lost: {v}");
        assert_eq!(v["kind"], "physical", "{id}");
        let want = match suspended {
            Some(true) => "SUSPENDED",
            Some(false) => "VALID",
            // In flight at the kill: applied or not, but the same everywhere.
            None => v["status"].as_str().unwrap(),
        };
        assert_eq!(v["status"], want, "{id}");
        let a = &v["assignment"];
        let lookup = format!(
            "{}/statuses/{}/{}",
            server.public,
            a["list_id"].as_str().unwrap(),
            a["idx"]
        );
        let (s, _, body) = support::get(&lookup, &[]).await;
        assert_eq!(s, StatusCode::OK);
        let l: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(l["status"], want, "{id} on the public plane");
    }
    for id in &refused {
        let (_, v) = call(
            &server.admin,
            Method::GET,
            &format!("/v1/credentials/{id}"),
            None,
        )
        .await
        .unwrap();
        assert_eq!(v["kind"], "physical", "a refused write changed {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write_embedded() {
    drill(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write_redis() {
    // Redis with an fsync'd append-only file, as deploy/compose.yaml runs it: statusd's
    // acknowledgement means Redis acknowledged the script.
    let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    drill(Some(&redis)).await;
}
