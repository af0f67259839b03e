//! Traffic for the fault tests (network faults, failover, crash): admin calls that may hang or
//! meet a dead server, a fixed-rate reader of seeded entries, and an issuer writer that registers
//! and suspends credentials. Reader and writer record what happened by phase of the [`Run`].

use crate::support;
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One admin call authorised by `token`, on a task of its own and bounded by `timeout`: a
/// request to a killed server fails (or is abandoned at the timeout) without taking the test
/// down. `Err(elapsed)` if it did not answer in time or could not be sent.
pub async fn admin_call(
    admin: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    timeout: Duration,
) -> Result<(StatusCode, HeaderMap, Value), Duration> {
    let (url, token) = (format!("{admin}{path}"), token.to_owned());
    let started = Instant::now();
    let fut = tokio::spawn(async move { support::authorized(method, &url, &token, body).await });
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok((s, h, b))) => Ok((s, h, serde_json::from_slice(&b).unwrap_or(Value::Null))),
        _ => Err(started.elapsed()),
    }
}

/// Checks a refusal: 503 `store-unavailable` (or `not-replicated`: applied on the Redis
/// primary, not confirmed by its replicas) as problem+json with `Retry-After`. Whether it was
/// `not-replicated`.
pub fn refused(s: StatusCode, h: &HeaderMap, v: &Value, what: &str) -> bool {
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what} answered {s}: {v}"
    );
    assert_eq!(h["content-type"], "application/problem+json", "{what}");
    let not_replicated = v["type"] == "urn:statusd:problem:not-replicated";
    assert!(
        not_replicated || v["type"] == "urn:statusd:problem:store-unavailable",
        "{what}: {v}"
    );
    assert!(h.contains_key("retry-after"), "{what}: no Retry-After");
    not_replicated
}

/// What the drivers of one run share: its start, the phase it is in (an index the test
/// advances) and the stop flag.
#[derive(Clone)]
pub struct Run {
    pub t0: Instant,
    phase: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Run {
    /// A run starting now, in phase 0.
    pub fn start() -> Run {
        Run {
            t0: Instant::now(),
            phase: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn phase(&self) -> usize {
        self.phase.load(Ordering::Relaxed) as usize
    }

    pub fn set_phase(&self, phase: usize) {
        self.phase.store(phase as u64, Ordering::Relaxed);
    }

    /// Tells the drivers to return.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Reads of one phase: attempted, failed (not 200), wrong (another value), latencies.
#[derive(Default, Clone)]
pub struct Reads {
    pub attempted: u64,
    pub failed: u64,
    pub wrong: u64,
    pub latencies: Vec<Duration>,
}

/// Reads the `seeded` entries (`(index, value)`, never changed) of list `list` on the public
/// plane at `public`, `rate` a second, each on a task of its own with a 5 s timeout, until the
/// run stops; counts them into `reads[phase]`.
pub async fn reader(
    public: String,
    list: &'static str,
    seeded: &'static [(u32, u8)],
    rate: u64,
    run: Run,
    reads: Arc<Mutex<Vec<Reads>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0usize.. {
        tick.tick().await;
        if run.stopped() {
            return;
        }
        let (idx, want) = seeded[n % seeded.len()];
        let p = run.phase();
        let url = format!("{public}/statuses/{list}/{idx}");
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::spawn(async move { support::get(&url, &[]).await }),
        )
        .await;
        let took = started.elapsed();
        let mut all = reads.lock().unwrap();
        let reads = &mut all[p];
        reads.attempted += 1;
        reads.latencies.push(took);
        match answer {
            Ok(Ok((StatusCode::OK, _, body))) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if v["value"].as_u64() != Some(u64::from(want)) {
                    reads.wrong += 1;
                }
            }
            _ => reads.failed += 1,
        }
    }
}

/// One answer to a write.
#[derive(Clone, Copy)]
pub struct Answer {
    pub phase: usize,
    /// When it arrived, from the run's start.
    pub at: Duration,
    pub took: Duration,
    /// Whether it was an acknowledgement.
    pub acked: bool,
}

/// What happened to the writes.
#[derive(Default)]
pub struct Writes {
    /// Registrations acknowledged, with whether their suspension was acknowledged.
    pub acked: Vec<(String, bool)>,
    /// Registrations or suspensions refused (503 with a problem): credential id and operation.
    pub refused: Vec<(String, &'static str)>,
    /// How many of the refusals were `not-replicated` (the rest `store-unavailable`).
    pub not_replicated: usize,
    /// Every answer, in order.
    pub answers: Vec<Answer>,
}

/// The issuer writer's settings.
pub struct Writer {
    /// The admin plane, `http://host:port`.
    pub admin: String,
    /// A token with the `write` scope.
    pub token: &'static str,
    /// Credential ids are `{prefix}-{n}`.
    pub prefix: &'static str,
    /// Longest a write may take before it counts as hung (and the test fails).
    pub timeout: Duration,
    /// The pause after a refusal.
    pub pause: Duration,
}

/// Registers credentials and suspends each, one after the other, until the run stops. Every
/// answer is an acknowledgement or a refusal ([`refused`]); none may take longer than the
/// writer's timeout.
pub async fn writer(w: Writer, run: Run, writes: Arc<Mutex<Writes>>) {
    let record = |p, started: Instant, acked| {
        writes.lock().unwrap().answers.push(Answer {
            phase: p,
            at: run.t0.elapsed(),
            took: started.elapsed(),
            acked,
        })
    };
    for i in 0.. {
        if run.stopped() {
            return;
        }
        let id = format!("{}-{i}", w.prefix);
        let p = run.phase();
        let started = Instant::now();
        let body = json!({"credential_id": id, "kind": "physical"});
        let path = "/v1/credentials";
        let answer = admin_call(&w.admin, w.token, Method::POST, path, Some(body), w.timeout).await;
        record(
            p,
            started,
            matches!(answer, Ok((StatusCode::CREATED, _, _))),
        );
        match answer {
            Ok((StatusCode::CREATED, _, _)) => {}
            Ok((s, h, v)) => {
                let unconfirmed = refused(s, &h, &v, "a registration");
                {
                    let mut writes = writes.lock().unwrap();
                    writes.not_replicated += usize::from(unconfirmed);
                    writes.refused.push((id, "register"));
                }
                tokio::time::sleep(w.pause).await;
                continue;
            }
            Err(t) => panic!("registration {id} hung for {t:?} (phase {p})"),
        }
        writes.lock().unwrap().acked.push((id.clone(), false));
        let started = Instant::now();
        let path = format!("/v1/credentials/{id}/suspend");
        let body = json!({"reason": "lost"});
        let answer = admin_call(
            &w.admin,
            w.token,
            Method::POST,
            &path,
            Some(body),
            w.timeout,
        )
        .await;
        record(p, started, matches!(answer, Ok((StatusCode::OK, _, _))));
        match answer {
            Ok((StatusCode::OK, _, _)) => {
                writes.lock().unwrap().acked.last_mut().unwrap().1 = true;
            }
            Ok((s, h, v)) => {
                let unconfirmed = refused(s, &h, &v, "a suspension");
                {
                    let mut writes = writes.lock().unwrap();
                    writes.not_replicated += usize::from(unconfirmed);
                    writes.refused.push((id, "suspend"));
                }
                tokio::time::sleep(w.pause).await;
            }
            Err(t) => panic!("suspension of {id} hung for {t:?} (phase {p})"),
        }
    }
}
