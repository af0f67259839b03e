//! Issue #20, item 1: network faults between the replicas and Redis. The test builds the network
//! itself (it runs as root) and tears it down on drop:
//!
//! * `redis-server` runs in a network namespace of its own, reached over a veth pair;
//! * two statusd replicas run on the host and reach it through a relay in this test that can add
//!   a one-way delay to every byte (the kernel here has no `sch_netem`, so latency is added in
//!   user space: [`Relay`]);
//! * packet loss and the partition are nftables rules in Redis's namespace (`numgen random`
//!   drops 5 % of packets both ways; the partition drops them all, silently, as a cut link does).
//!
//! Phases: baseline, 200 ms added latency, 5 % loss, a full partition (10 s here; 30 s with
//! `STATUSD_NET_FAULTS_PARTITION=30`, which `loadtest/net-faults` sets), then healed. Meanwhile
//! both replicas are read at a fixed rate and an issuer writes (register, then suspend) through
//! replica A. Checked: no read fails or is wrong; every write is acknowledged or refused with a
//! problem+json 503 `store-unavailable` and `Retry-After`, none takes longer than its timeout;
//! after healing both replicas catch up (time measured), every acknowledged write is visible on
//! both, and a refused write is either absent or whole (never half-applied). The figures are
//! printed for docs/BENCHMARKS.md.

use crate::redis_harness::free_ports;
use crate::support::replica::{issuer_serve, Replica};
use crate::support::traffic::{self, admin_call, reader, Reads, Run, Writer, Writes};
use crate::support::{self, TempDir};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use statusd::status::Bits;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TOKEN: &str = "net-faults-token-0123456789abcdef";
/// Longest a write may take before it counts as hung: statusd's Redis timeouts are 2 s each.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Reads per second per replica.
const READ_RATE: u64 = 20;
/// Entries of the seeded list `net` and their values; never changed, so every read is checkable.
const SEEDED: [(u32, u8); 3] = [(1, 1), (2, 2), (5, 1)];

fn ip(args: &[&str]) {
    support::run(Command::new("ip").args(args));
}

/// A network namespace joined to the host by a veth pair, with `redis-server` inside.
struct Netns {
    name: String,
    host_if: String,
    redis_ip: String,
    redis: Option<Child>,
}

impl Netns {
    fn create() -> Netns {
        let tag: u32 = rand::random::<u32>() & 0x00ff_ffff;
        let name = format!("statusd-nf-{tag:06x}");
        let host_if = format!("sdnf{tag:06x}");
        let peer_if = format!("sdnp{tag:06x}");
        let (a, b) = (200 + (tag % 50), (tag >> 8) % 256);
        let host_ip = format!("10.{a}.{b}.1");
        let redis_ip = format!("10.{a}.{b}.2");
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            host_if,
            redis_ip,
            redis: None,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut full = vec!["netns", "exec", &ns.name, "ip"];
            full.extend_from_slice(args);
            ip(&full);
        };
        inside(&[
            "addr",
            "add",
            &format!("{}/30", ns.redis_ip),
            "dev",
            &peer_if,
        ]);
        inside(&["link", "set", &peer_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    fn start_redis(&mut self, dir: &std::path::Path) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "redis-server"])
            .args(["--bind", &self.redis_ip, "--port", "6379", "--save", ""])
            // Reached from the host over the veth: not loopback, and no password here.
            .args(["--protected-mode", "no"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (run scripts/test, which installs it)");
        self.redis = Some(child);
        let url = format!("redis://{}:6379", self.redis_ip);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if up.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server in {} did not start",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the nftables rules in the namespace (both directions): `verdict` is appended to
    /// a rule matching every packet, `None` removes the rules.
    fn filter(&self, rule: Option<&str>) {
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "nft", "delete", "table", "inet", "fault",
            ])
            .stderr(Stdio::null())
            .status();
        let Some(rule) = rule else {
            return;
        };
        let script = format!(
            "table inet fault {{\n\
             chain in {{ type filter hook input priority 0; {rule}; }}\n\
             chain out {{ type filter hook output priority 0; {rule}; }}\n\
             }}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft (Debian nftables; scripts/test installs it)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut c) = self.redis.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A TCP relay on loopback to `upstream` that holds every chunk for `delay` ms in each
/// direction (order kept, throughput not limited): user-space added latency.
struct Relay {
    port: u16,
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, delay) = (upstream.clone(), delay.clone());
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(Self::pipe(dr, uw, delay.clone()), Self::pipe(ur, dw, delay));
                });
            }
        });
        Relay {
            port,
            delay_ms,
            task,
        }
    }

    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        delay: Arc<AtomicU64>,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Bytes)>();
        let writer = async move {
            while let Some((at, chunk)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                if to.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = to.shutdown().await;
        };
        let reader = async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let at = tokio::time::Instant::now()
                            + Duration::from_millis(delay.load(Ordering::Relaxed));
                        if tx.send((at, Bytes::copy_from_slice(&buf[..n]))).is_err() {
                            return;
                        }
                    }
                }
            }
        };
        tokio::join!(reader, writer);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A replica on Redis at `redis` with the admin tokens in `dir/tokens` and `extra` flags, logging
/// errors only.
pub fn spawn_replica(dir: &std::path::Path, redis: &str, extra: &[&str]) -> Replica {
    let mut cmd = issuer_serve(dir);
    cmd.args(extra)
        .arg("--redis-url")
        .arg(redis)
        .env("STATUSD_LOG", "error")
        .stderr(Stdio::inherit());
    Replica::spawn(&mut cmd, free_ports::<2>())
}

/// One admin call with [`TOKEN`] and the write timeout: `Err(elapsed)` if it did not answer in
/// time.
pub async fn call(
    admin: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, hyper::HeaderMap, Value), Duration> {
    admin_call(admin, TOKEN, method, path, body, WRITE_TIMEOUT).await
}

fn p99(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

const PHASES: [&str; 5] = [
    "baseline",
    "latency 200 ms",
    "loss 5 %",
    "partition",
    "healed",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_fail_and_no_acknowledged_write_is_lost_through_latency_loss_and_a_partition() {
    let partition = Duration::from_secs(
        std::env::var("STATUSD_NET_FAULTS_PARTITION")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    );
    let phase_len = Duration::from_secs(6);
    let redis_dir = TempDir::new("net-faults-redis");
    let mut ns = Netns::create();
    ns.start_redis(&redis_dir.0);
    let relay = Relay::start(format!("{}:6379", ns.redis_ip)).await;
    let url = format!("redis://127.0.0.1:{}", relay.port);

    // The seeded list every read checks; its presence also keeps --demo from seeding.
    let store = statusd::app::open_store(Some(&url), std::path::Path::new("/nonexistent"))
        .await
        .unwrap();
    crate::support::seed_list(&store, "net", Bits::Two, 1024, &SEEDED).await;
    drop(store);

    let dirs = [TempDir::new("net-faults-a"), TempDir::new("net-faults-b")];
    let mut replicas: Vec<Replica> = dirs
        .iter()
        .map(|d| {
            std::fs::write(d.0.join("tokens"), format!("net write {TOKEN}\n")).unwrap();
            spawn_replica(&d.0, &url, &[])
        })
        .collect();
    for r in &mut replicas {
        r.wait_ready().await;
    }

    let run = Run::start();
    let reads = Arc::new(Mutex::new(vec![Reads::default(); PHASES.len()]));
    let writes = Arc::new(Mutex::new(Writes::default()));
    let mut tasks: Vec<_> = replicas
        .iter()
        .map(|r| {
            tokio::spawn(reader(
                r.public.clone(),
                "net",
                &SEEDED,
                READ_RATE,
                run.clone(),
                reads.clone(),
            ))
        })
        .collect();
    let writer = Writer {
        admin: replicas[0].admin.clone(),
        token: TOKEN,
        prefix: "nf",
        timeout: WRITE_TIMEOUT,
        pause: Duration::from_millis(200),
    };
    tasks.push(tokio::spawn(traffic::writer(
        writer,
        run.clone(),
        writes.clone(),
    )));

    tokio::time::sleep(phase_len).await;
    run.set_phase(1);
    relay.delay_ms.store(200, Ordering::Relaxed);
    tokio::time::sleep(phase_len).await;
    relay.delay_ms.store(0, Ordering::Relaxed);
    run.set_phase(2);
    ns.filter(Some("numgen random mod 100 < 5 drop"));
    tokio::time::sleep(phase_len).await;
    run.set_phase(3);
    ns.filter(Some("drop"));
    tokio::time::sleep(partition).await;
    ns.filter(None);
    let healed = Instant::now();
    run.set_phase(4);

    // Catch-up: a change written after healing reaches both replicas' lookups.
    let marker = loop {
        let id = format!("marker-{}", healed.elapsed().as_millis());
        let body = json!({"credential_id": id, "kind": "physical"});
        match call(
            &replicas[1].admin,
            Method::POST,
            "/v1/credentials",
            Some(body),
        )
        .await
        {
            Ok((StatusCode::CREATED, _, v)) => break v,
            Ok(_) => {
                assert!(
                    healed.elapsed() < Duration::from_secs(30),
                    "writes did not resume"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(t) => panic!("a write after healing hung for {t:?}"),
        }
    };
    let writes_resumed = healed.elapsed();
    let a = &marker["assignment"];
    let lookup = |r: &Replica| {
        format!(
            "{}/statuses/{}/{}",
            r.public,
            a["list_id"].as_str().unwrap(),
            a["idx"]
        )
    };
    let mut caught_up = Vec::new();
    for r in &replicas {
        let url = lookup(r);
        loop {
            let (s, _, _) = support::get(&url, &[]).await;
            if s == StatusCode::OK {
                break;
            }
            assert!(
                healed.elapsed() < Duration::from_secs(30),
                "a replica did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        caught_up.push(healed.elapsed());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.stop();
    for t in tasks {
        t.await.expect("reader or writer");
    }

    // Every acknowledged write is visible on both replicas; every refused one is absent or whole.
    let w = std::mem::take(&mut *writes.lock().unwrap());
    let mut visible = 0;
    for (id, suspended) in &w.acked {
        let (s, _, v) = call(
            &replicas[1].admin,
            Method::GET,
            &format!("/v1/credentials/{id}"),
            None,
        )
        .await
        .expect("answers");
        assert_eq!(s, StatusCode::OK, "acknowledged {id} lost: {v}");
        let status = v["status"].as_str().unwrap().to_owned();
        if *suspended {
            assert_eq!(status, "SUSPENDED", "{id}");
        }
        let a = &v["assignment"];
        for r in &replicas {
            let url = format!(
                "{}/statuses/{}/{}",
                r.public,
                a["list_id"].as_str().unwrap(),
                a["idx"]
            );
            let (s, _, body) = support::get(&url, &[]).await;
            assert_eq!(s, StatusCode::OK);
            let l: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(l["status"], status.as_str(), "{id} on {}", r.public);
        }
        visible += 1;
    }
    for (id, op) in &w.refused {
        let (s, _, v) = call(
            &replicas[0].admin,
            Method::GET,
            &format!("/v1/credentials/{id}"),
            None,
        )
        .await
        .expect("answers");
        match (*op, s) {
            // Not applied, or applied whole (the reply was lost after Redis committed).
            ("register", StatusCode::NOT_FOUND) => {}
            (_, StatusCode::OK) => {
                assert_eq!(v["kind"], "physical", "{id}");
                assert!(
                    v["assignment"]["list_id"].is_string(),
                    "{id} half-registered: {v}"
                );
            }
            _ => panic!("refused {op} of {id}: now {s} {v}"),
        }
    }

    let r = reads.lock().unwrap().clone();
    eprintln!("net faults (partition {partition:?}):");
    eprintln!(
        "| phase | reads | failed | wrong | read p99 | writes acked | writes refused | write p99 | write max |"
    );
    let mut failed = 0;
    for (i, name) in PHASES.iter().enumerate() {
        let phase: Vec<(Duration, bool)> = w
            .answers
            .iter()
            .filter(|a| a.phase == i)
            .map(|a| (a.took, a.acked))
            .collect();
        let wl: Vec<Duration> = phase.iter().map(|(d, _)| *d).collect();
        let acked = phase.iter().filter(|(_, a)| *a).count();
        eprintln!(
            "| {name} | {} | {} | {} | {:?} | {acked} | {} | {:?} | {:?} |",
            r[i].attempted,
            r[i].failed,
            r[i].wrong,
            p99(r[i].latencies.clone()),
            phase.len() - acked,
            p99(wl.clone()),
            wl.iter().max().copied().unwrap_or_default()
        );
        failed += r[i].failed + r[i].wrong;
    }
    eprintln!(
        "writes acknowledged {} (all {visible} visible on both replicas), refused {}; \
         after healing: writes resumed in {writes_resumed:?}, replicas caught up in {caught_up:?}",
        w.acked.len(),
        w.refused.len()
    );
    assert_eq!(failed, 0, "reads failed or were wrong");
    assert!(r.iter().all(|p| p.attempted > 0), "every phase was read");
    assert!(!w.acked.is_empty(), "no write was acknowledged");
    assert!(
        !w.refused.is_empty(),
        "the partition refused no write: the fault did not reach statusd"
    );
    drop(relay);
    drop(ns);
}
