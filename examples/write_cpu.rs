//! statusd CPU per single-item write, per replica (issue 16: ≤ 0.3 ms at 256 lists), and
//! write → visible latency on a replica that takes no writes. `loadtest/write-cpu` runs the
//! whole setup (Redis, 256 lists, two replicas) around it; loopback only, stops by itself.
//!
//! ```text
//! write_cpu --admin http://127.0.0.1:9090 --token T --reader http://127.0.0.1:8081 \
//!           --pids 1234,1240 --metrics http://127.0.0.1:9090,http://127.0.0.1:9091 \
//!           [--writes 2000] [--rate 200] [--visible-writes 5000] \
//!           [--visible-rate 1000] [--sample-every 10]
//! ```
//!
//! 1. Registers `--writes` + `--visible-writes` cards through the writer's issuer API (batches
//!    of 1,000), then waits `--settle` seconds for the re-encodings they caused.
//! 2. Idle baseline: the CPU (`utime + stime` of `/proc/<pid>/stat`) of each process in
//!    `--pids` over as long as the write run will take.
//! 3. Write run: `--writes` single suspends (`POST /v1/credentials/{id}/suspend`), one card
//!    each, at `--rate` per second on a fixed schedule (open loop); the CPU of each process
//!    over the run, less the idle baseline scaled to the run's length, per write; and, since
//!    idle CPU is the tick's reads of every list's metadata, which a busy replica may make
//!    fewer or more of, also less the baseline scaled to the number of such reads it made
//!    (`statusd_refresh_reads_total{scope="all"}` from `--metrics`). Also the metadata reads
//!    per write Redis served (`HGETALL`, `SMEMBERS`: `INFO commandstats` of `--redis`), both
//!    replicas together, less the idle rate: a figure the machine's load does not blur.
//! 4. Visibility run: `--visible-writes` suspends at `--visible-rate` per second; every
//!    `--sample-every`-th is followed on the reader's lookup endpoint
//!    (`GET /statuses/{list}/{idx}`, every 2 ms) until it shows SUSPENDED: latency from the
//!    API's answer to that lookup. Kept apart from the CPU run, whose figures the polling would
//!    otherwise inflate on the reader.
//!
//! Prints one JSON object.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// CPU per single write on two replicas, and write → visible latency.
#[derive(clap::Parser)]
struct Args {
    /// The writing replica's admin listener (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:9090", value_parser = support::loopback_url)]
    admin: String,
    /// A `write`-scope admin token of the writing replica.
    #[arg(long, default_value = "")]
    token: String,
    /// The public listener of the replica that takes no writes (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8081", value_parser = support::loopback_url)]
    reader: String,
    /// Processes whose CPU is measured, comma-separated (the writer's, then the reader's).
    #[arg(long, value_delimiter = ',', required = true)]
    pids: Vec<u32>,
    /// Their admin listeners (loopback only), in the same order: the synchronisations each
    /// made (`statusd_refresh_reads_total`) are read from their `/metrics`.
    #[arg(long, value_delimiter = ',', required = true, value_parser = support::loopback_url)]
    metrics: Vec<String>,
    /// The Redis both replicas read (loopback only): the metadata reads of the runs (`HGETALL`,
    /// `SMEMBERS` of `INFO commandstats`) are counted there, every replica's together.
    #[arg(long, default_value = "redis://127.0.0.1:6379", value_parser = support::loopback_url)]
    redis: String,
    /// Names of the processes in `--pids`, for the report.
    #[arg(long, value_delimiter = ',', default_value = "writer,reader")]
    names: Vec<String>,
    /// Single suspends of the CPU run.
    #[arg(long, default_value = "2000", value_parser = support::positive)]
    writes: u64,
    /// Their rate, per second.
    #[arg(long, default_value = "200", value_parser = support::positive)]
    rate: u64,
    /// Single suspends of the visibility run (0: none).
    #[arg(long, default_value = "5000")]
    visible_writes: u64,
    /// Their rate, per second.
    #[arg(long, default_value = "1000", value_parser = support::positive)]
    visible_rate: u64,
    /// Every n-th write of the visibility run is followed until visible.
    #[arg(long, default_value = "10", value_parser = support::positive)]
    sample_every: u64,
    /// Seconds to wait after the registrations (their re-encodings run meanwhile).
    #[arg(long, default_value = "8", value_parser = support::seconds)]
    settle: Duration,
    /// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`).
    #[arg(long, default_value = "100", value_parser = support::positive)]
    clk_tck: u64,
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// CPU ticks (user + system, every thread) of each process.
fn cpu_ticks(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
            // Fields after the command name (which may hold spaces): state is the first,
            // utime the 12th, stime the 13th.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .expect("a stat line")
                .1
                .split_whitespace()
                .collect();
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
        })
        .collect()
}

/// Each replica's synchronisations so far: `(all, named)` of `statusd_refresh_reads_total`.
async fn reads(client: &Client, admins: &[String]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(admins.len());
    for admin in admins {
        let url: hyper::Uri = format!("{admin}/metrics").parse().expect("metrics URL");
        let resp = client.get(url).await.expect("metrics answer");
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("metrics")
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        let value = |scope: &str| {
            let prefix = format!("statusd_refresh_reads_total{{scope=\"{scope}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        out.push((value("all"), value("named")));
    }
    out
}

/// Calls Redis has served so far of `HGETALL` (a list's metadata) and `SMEMBERS` (the list
/// set: one per read of every list).
async fn redis_calls(redis: &mut redis::aio::MultiplexedConnection) -> (f64, f64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO commandstats");
    let calls = |command: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (calls("hgetall"), calls("smembers"))
}

/// POSTs `body` to `url` with the token; returns the answer's JSON if it is a success.
async fn post(client: &Client, url: &str, token: &str, body: Value) -> Result<Value, String> {
    let req = hyper::Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{url}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))
}

/// Registers `n` cards; returns each one's id and place (list, index).
async fn register(a: &Args, client: &Client, n: u64) -> Vec<(String, String, u32)> {
    let run: u32 = rand::random();
    let url = format!("{}/v1/credentials/batch", a.admin);
    let mut out = Vec::with_capacity(n as usize);
    let ids: Vec<String> = (0..n).map(|i| format!("cpu-{run:08x}-{i}")).collect();
    for chunk in ids.chunks(1000) {
        let ops: Vec<Value> = chunk
            .iter()
            .map(|id| json!({"op": "register", "credential_id": id, "kind": "physical"}))
            .collect();
        let answer = post(client, &url, &a.token, json!({ "operations": ops }))
            .await
            .unwrap_or_else(|e| panic!("registering: {e}"));
        for (id, r) in chunk
            .iter()
            .zip(answer["results"].as_array().expect("results"))
        {
            let at = &r["assignment"];
            let (Some(list), Some(idx)) = (at["list_id"].as_str(), at["idx"].as_u64()) else {
                panic!("{id}: no assignment in {r}");
            };
            out.push((id.clone(), list.to_owned(), idx as u32));
        }
    }
    out
}

/// What a run of suspends did.
struct Run {
    /// From the first send to the last answer.
    took: Duration,
    /// Write → visible of the sampled writes, sorted.
    latencies: Vec<Duration>,
    /// Sampled writes not visible within 10 s.
    lost: u64,
    /// Writes refused or not answered (an overloaded replica), and the first such answer.
    failed: u64,
    first_failure: Option<String>,
}

/// Suspends each card of `cards` with one request, at `rate` per second on a fixed schedule;
/// every `sample_every`-th (if any) is then followed on the reader until visible.
async fn suspend(
    a: &Args,
    client: &Client,
    cards: &[(String, String, u32)],
    rate: u64,
    sample_every: Option<u64>,
) -> Run {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let lost = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failures = Arc::new(Mutex::new((0u64, None)));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (id, list, idx)) in cards.iter().enumerate() {
        tick.tick().await;
        let url = format!("{}/v1/credentials/{id}/suspend", a.admin);
        let lookup: hyper::Uri = format!("{}/statuses/{list}/{idx}", a.reader)
            .parse()
            .expect("lookup URL");
        let sample = sample_every.is_some_and(|k| (n as u64).is_multiple_of(k));
        let (client, token, latencies, lost, failures) = (
            client.clone(),
            a.token.clone(),
            latencies.clone(),
            lost.clone(),
            failures.clone(),
        );
        tasks.spawn(async move {
            let answer = post(&client, &url, &token, json!({"reason": "load test"}))
                .await
                .and_then(|answer| match answer["status"].as_str() {
                    Some("SUSPENDED") => Ok(()),
                    _ => Err(format!("{url}: {answer}")),
                });
            if let Err(e) = answer {
                let mut f = failures.lock().unwrap();
                f.0 += 1;
                f.1.get_or_insert(e);
                return;
            }
            if !sample {
                return;
            }
            match support::until_suspended(&client, &lookup, Instant::now()).await {
                Some(latency) => latencies.lock().unwrap().push(latency),
                None => {
                    lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a write task");
    }
    let took = started.elapsed();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let (failed, first_failure) = failures.lock().unwrap().clone();
    Run {
        took,
        latencies,
        lost: lost.load(std::sync::atomic::Ordering::Relaxed),
        failed,
        first_failure,
    }
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    (sorted[i].as_secs_f64() * 1e5).round() / 100.0
}

#[tokio::main]
async fn main() {
    let a = <Args as clap::Parser>::parse();
    assert_eq!(a.pids.len(), a.names.len(), "one name per pid");
    assert_eq!(a.pids.len(), a.metrics.len(), "one admin listener per pid");
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    eprintln!("registering {} cards", a.writes + a.visible_writes);
    let cards = register(&a, &client, a.writes + a.visible_writes).await;
    let (cpu_cards, visible_cards) = cards.split_at(a.writes as usize);
    tokio::time::sleep(a.settle).await;

    let planned = Duration::from_secs_f64(a.writes as f64 / a.rate as f64);
    eprintln!("idle baseline: {planned:?}");
    let mut redis = redis::Client::open(a.redis.as_str())
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let redis_idle0 = redis_calls(&mut redis).await;
    let (idle0, idle_reads0) = (cpu_ticks(&a.pids), reads(&client, &a.metrics).await);
    let t = Instant::now();
    tokio::time::sleep(planned).await;
    let idle_secs = t.elapsed().as_secs_f64();
    let (idle1, idle_reads1) = (cpu_ticks(&a.pids), reads(&client, &a.metrics).await);
    let redis_idle1 = redis_calls(&mut redis).await;

    eprintln!("CPU run: {} single suspends at {}/s", a.writes, a.rate);
    let redis_run0 = redis_calls(&mut redis).await;
    let (run0, run_reads0) = (cpu_ticks(&a.pids), reads(&client, &a.metrics).await);
    let run = suspend(&a, &client, cpu_cards, a.rate, None).await;
    let (run1, run_reads1) = (cpu_ticks(&a.pids), reads(&client, &a.metrics).await);
    let redis_run1 = redis_calls(&mut redis).await;
    let run_secs = run.took.as_secs_f64();
    let written = a.writes - run.failed;

    let ms = |ticks: f64| ticks * 1000.0 / a.clk_tck as f64;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let mut replicas = serde_json::Map::new();
    for (k, name) in a.names.iter().enumerate() {
        let idle_ms = ms((idle1[k] - idle0[k]) as f64);
        let run_ms = ms((run1[k] - run0[k]) as f64);
        // The idle baseline scaled to the run's length (a run behind schedule takes longer).
        let idle_for_run = idle_ms * run_secs / idle_secs;
        // Idle, a replica only reads every list on its tick; under writes it may make fewer
        // such reads (a busy loop) or more (changes found by them). The same baseline, scaled
        // to the full reads the run made instead, says what a write costs beyond them.
        let idle_full = idle_reads1[k].0 - idle_reads0[k].0;
        let run_full = run_reads1[k].0 - run_reads0[k].0;
        let per_full_read = idle_ms / idle_full.max(1.0);
        replicas.insert(
            name.clone(),
            json!({
                "pid": a.pids[k],
                "idle_cpu_ms": round(idle_ms),
                "idle_cpu_percent": round(idle_ms / idle_secs / 10.0),
                "idle_full_reads_per_s": round(idle_full / idle_secs),
                "run_cpu_ms": round(run_ms),
                "run_full_reads_per_s": round(run_full / run_secs),
                "run_named_reads": run_reads1[k].1 - run_reads0[k].1,
                "cpu_ms_per_write": round((run_ms - idle_for_run) / written.max(1) as f64),
                "cpu_ms_per_write_beyond_full_reads":
                    round((run_ms - per_full_read * run_full) / written.max(1) as f64),
            }),
        );
    }

    let mut visible = Value::Null;
    if a.visible_writes > 0 {
        eprintln!(
            "visibility run: {} single suspends at {}/s",
            a.visible_writes, a.visible_rate
        );
        let v = suspend(
            &a,
            &client,
            visible_cards,
            a.visible_rate,
            Some(a.sample_every),
        )
        .await;
        let l = &v.latencies;
        visible = json!({
            "writes": a.visible_writes,
            "failed": v.failed,
            "first_failure": v.first_failure,
            "rate_per_s": ((a.visible_writes - v.failed) as f64 / v.took.as_secs_f64()).round(),
            "samples": l.len(),
            "never_visible": v.lost,
            "latency_ms": {
                "p50": percentile_ms(l, 0.50),
                "p90": percentile_ms(l, 0.90),
                "p99": percentile_ms(l, 0.99),
                "max": percentile_ms(l, 1.0),
            },
        });
    }
    // Metadata reads per write, every replica's together, less the idle rate over the run.
    let per_write =
        |idle: f64, run: f64| round((run - idle * run_secs / idle_secs) / written.max(1) as f64);
    let redis_reads = json!({
        "hgetall_idle_per_s": round((redis_idle1.0 - redis_idle0.0) / idle_secs),
        "smembers_idle_per_s": round((redis_idle1.1 - redis_idle0.1) / idle_secs),
        "hgetall_per_write": per_write(redis_idle1.0 - redis_idle0.0, redis_run1.0 - redis_run0.0),
        "smembers_per_write": per_write(redis_idle1.1 - redis_idle0.1, redis_run1.1 - redis_run0.1),
    });
    let summary = json!({
        "redis_metadata_reads": redis_reads,
        "cpu_run": {
            "writes": a.writes,
            "rate_per_s": a.rate,
            "failed": run.failed,
            "first_failure": run.first_failure,
            "achieved_per_s": (written as f64 / run_secs).round(),
            "seconds": round(run_secs),
            "idle_seconds": round(idle_secs),
        },
        "replicas": replicas,
        "visibility_run": visible,
    });
    println!("{}", serde_json::to_string_pretty(&summary).expect("JSON"));
}
