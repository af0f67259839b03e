//! `statusd credentials import` end to end, on the embedded store and on a real redis-server:
//! a generated file is registered line by line exactly once, also when the importer is killed
//! mid-way and run again, and through a Redis pause; refused lines land in the refused file
//! with their line numbers; every exit status the command documents is the one it returns.

use crate::redis_harness::{free_port, RedisServer};
use crate::support::{self, TempDir};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use statusd::app::{self, Running};
use statusd::status::Bits;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "import-token-0123456789abcdef";

struct Env {
    running: Running,
    dir: TempDir,
    redis: Option<RedisServer>,
}

impl Env {
    async fn start(redis: bool) -> Env {
        let dir = TempDir::new("import");
        std::fs::write(dir.0.join("tokens"), format!("importer write {TOKEN}\n")).unwrap();
        let redis = redis.then(RedisServer::start);
        let url = redis.as_ref().map(|r| r.url());
        // A list in the store keeps --demo from seeding its demo lists.
        let store = app::open_store(url.as_deref(), &dir.0).await.unwrap();
        support::seed_list(&store, "other", Bits::Two, 1024, &[]).await;
        drop(store);
        let tokens = dir.0.join("tokens");
        let mut args = vec![
            "--admin-tokens",
            tokens.to_str().unwrap(),
            "--list-size",
            "131072",
        ];
        if let Some(u) = &url {
            args.extend(["--redis-url", u.as_str()]);
        }
        let running = app::start(&support::config(&dir.0, &args))
            .await
            .expect("start statusd");
        assert!(running.ready(Duration::from_secs(20)).await, "not ready");
        Env {
            running,
            dir,
            redis,
        }
    }

    /// An import of 2,000 generated cards (`cards.jsonl`) in batches of 50, two at a time, once
    /// it has registered 200: the file, its line count and the importer process.
    async fn import_under_way(&self) -> (PathBuf, u64, std::process::Child) {
        let file = self.path("cards.jsonl");
        let lines = cards(&file, 2_000) as u64;
        let child = self
            .importer(&file, &["--batch-size", "50", "--concurrency", "2"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.allocated().await < 200 {
            assert!(Instant::now() < deadline, "the importer made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (file, lines, child)
    }

    /// Stops statusd before its directory goes, so nothing is written there afterwards.
    async fn stop(self) {
        self.running.stop().await;
    }

    fn admin(&self) -> String {
        format!("http://{}", self.running.admin_addr)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// The importer as a process, with standard output and error piped.
    fn importer(&self, file: &Path, extra: &[&str]) -> Command {
        importer(&self.admin(), TOKEN, file, extra)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.admin());
        let (status, _, body) = support::authorized(Method::GET, &url, TOKEN, None).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Every credential of `file` is registered once: bound to an index no other credential
    /// holds. At most `wasted` more indices are allocated than there are credentials: indices
    /// are never reused, so a registration the store acknowledged to nobody (a Redis timeout,
    /// a batch cut off) leaves its index allocated and unused, never a second live entry.
    async fn each_line_holds_its_own_index(&self, file: &Path, wasted: u64) {
        let text = std::fs::read_to_string(file).unwrap();
        let mut places = std::collections::HashSet::new();
        let mut n = 0u64;
        for line in text.lines() {
            let id = serde_json::from_str::<Value>(line).unwrap()["credential_id"]
                .as_str()
                .unwrap()
                .to_owned();
            let (status, v) = self.get(&format!("/v1/credentials/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{id}: {v}");
            let a = &v["assignment"];
            let at = (
                a["list_id"].as_str().unwrap().to_owned(),
                a["idx"].as_u64().unwrap(),
            );
            assert!(
                places.insert(at.clone()),
                "{id} shares {at:?} with another credential"
            );
            n += 1;
        }
        let allocated = self.allocated().await;
        assert!(
            (n..=n + wasted).contains(&allocated),
            "{allocated} indices allocated for {n} credentials"
        );
    }

    /// Indices allocated over the issuer's lists: one per registered credential, so a
    /// credential registered twice would show as one too many.
    async fn allocated(&self) -> u64 {
        let (status, v) = self.get("/v1/lists").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["lists"]
            .as_array()
            .unwrap_or_else(|| panic!("no lists in {v}"))
            .iter()
            .filter(|l| l["list_id"] != "other")
            .map(|l| l["allocated"].as_u64().unwrap())
            .sum()
    }
}

fn importer(admin: &str, token: &str, file: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_statusd"));
    cmd.args(["credentials", "--admin-url", admin, "import"])
        .arg(file)
        .args(extra)
        .env("STATUSD_ADMIN_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the importer to its end off the async threads (the server runs on them).
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run statusd"))
        .await
        .unwrap()
}

fn summary(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A piped standard error gets no progress bar: no redraws, only lines.
    assert!(
        !stderr.contains('\r'),
        "a progress bar was drawn into a pipe: {stderr:?}"
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON summary ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `n` physical cards, then one mobile card derived from each tenth of them.
fn cards(path: &Path, n: usize) -> usize {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "{}\n",
            json!({"credential_id": format!("ic-{i:07}"), "kind": "physical", "reason": "launch import"})
        ));
    }
    let mut lines = n;
    for i in (0..n).step_by(10) {
        text.push_str(&format!(
            "{}\n",
            json!({"op": "register", "credential_id": format!("mc-{i:07}"), "kind": "mobile", "parent": format!("ic-{i:07}")})
        ));
        lines += 1;
    }
    std::fs::write(path, text).unwrap();
    lines
}

/// Kill the importer mid-way, run it again: every line is registered exactly once.
async fn interrupted_import_resumes_without_duplicates(env: &Env) {
    let file = env.path("cards.jsonl");
    let lines = cards(&file, 2_000) as u64;
    let mut child = env
        .importer(&file, &["--batch-size", "50", "--concurrency", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while env.allocated().await < 400 {
        assert!(Instant::now() < deadline, "the importer made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the importer ended too soon"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = env.allocated().await;
    assert!(before < lines, "killed after the end: {before} of {lines}");
    // Indices a batch allocated when the importer died may be wasted (the server commits a
    // list, then binds the ids: a cut between the two leaves the index allocated, unused):
    // at most the batches in flight.
    let wasted_at_most = 2 * 50;

    let out = run(env.importer(&file, &["--batch-size", "500"])).await;
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(s["complete"], true);
    assert_eq!(s["lines"], lines);
    assert_eq!(s["refused"], 0, "{s}");
    assert_eq!(
        s["registered"].as_u64().unwrap() + s["existing"].as_u64().unwrap(),
        lines,
        "{s}"
    );
    assert!(
        s["existing"].as_u64().unwrap() > 0,
        "the rerun skipped nothing: {s}"
    );
    // A third run registers nothing: every line is registered.
    let again = summary(&run(env.importer(&file, &[])).await);
    assert_eq!(
        (again["registered"].as_u64(), again["existing"].as_u64()),
        (Some(0), Some(lines))
    );
    env.each_line_holds_its_own_index(&file, wasted_at_most)
        .await;
    // A derived card sits in its parent's list.
    let (_, parent) = env.get("/v1/credentials/ic-0000010").await;
    let (_, child) = env.get("/v1/credentials/mc-0000010").await;
    assert_eq!(child["parent"], "ic-0000010");
    assert_eq!(
        child["assignment"]["list_id"],
        parent["assignment"]["list_id"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_killed_midway_and_rerun_registers_every_line_once_embedded() {
    let env = Env::start(false).await;
    interrupted_import_resumes_without_duplicates(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_killed_midway_and_rerun_registers_every_line_once_redis() {
    let env = Env::start(true).await;
    interrupted_import_resumes_without_duplicates(&env).await;
    env.stop().await;
}

/// Redis stops answering for a few seconds in the middle of an import: the server answers 503
/// with Retry-After, the importer retries, and the import completes with every line once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_retries_through_a_redis_pause() {
    let env = Env::start(true).await;
    let (file, lines, child) = env.import_under_way().await;
    let redis = env.redis.as_ref().unwrap();
    redis.pause();
    tokio::time::sleep(Duration::from_secs(4)).await;
    redis.resume();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let s = summary(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{s}\n{stderr}");
    assert!(
        stderr.contains("retry 1 in"),
        "the retries are shown: {stderr}"
    );
    // A batch answered 503 may have been applied when Redis woke: its retry answers `exists`.
    assert_eq!(
        s["registered"].as_u64().unwrap() + s["existing"].as_u64().unwrap(),
        lines,
        "{s}"
    );
    assert_eq!(s["refused"], 0, "{s}");
    // A registration whose commit Redis ran after statusd gave up on it (and answered 503)
    // leaves its index unused; the retry registers the card elsewhere. At most the batches in
    // flight.
    env.each_line_holds_its_own_index(&file, 2 * 50).await;
    env.stop().await;
}

/// Refused lines: each in the refused file with its line number, the item and the problem;
/// the others registered; exit 3. Then the exit statuses of a bad file, a refused token and an
/// unreachable server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_lines_are_listed_with_their_problem_and_exit_statuses_say_what_happened() {
    let env = Env::start(false).await;
    let file = env.path("mixed.jsonl");
    let lines = [
        r#"{"credential_id":"ic-a","kind":"physical"}"#,
        r#"{"credential_id":"ic-b","kind":"physical""#,
        "",
        r#"{"credential_id":"ic-c","kind":"physical","colour":"red"}"#,
        r#"{"credential_id":"mc-x","kind":"mobile","parent":"ic-nobody"}"#,
        r#"{"credential_id":"ic-a","kind":"mobile","parent":"ic-d"}"#,
        r#"{"credential_id":"ic-d","kind":"physical"}"#,
        r#"{"credential_id":"ic-a","kind":"physical","request_id":"again"}"#,
        r#"{"op":"revoke","credential_id":"ic-d","reason":"lost"}"#,
        r#"{"credential_id":"ic-e","kind":"physical"}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let refused_path = env.path("refused.jsonl");
    let out = run(env.importer(
        &file,
        &[
            "--refused",
            refused_path.to_str().unwrap(),
            "--batch-size",
            "3",
        ],
    ))
    .await;
    let s = summary(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{s}\n{stderr}");
    assert_eq!(s["lines"], 9, "{s}");
    assert_eq!(s["registered"], 3, "ic-a, ic-d, ic-e: {s}");
    assert_eq!(s["existing"], 1, "the repeated ic-a line: {s}");
    assert_eq!(s["refused"], 5, "{s}");
    assert_eq!(s["complete"], true);
    assert!(
        stderr.contains("line 2 refused: bad-item: not JSON"),
        "{stderr}"
    );
    let mut refused: Vec<Value> = std::fs::read_to_string(&refused_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each refused line is JSON"))
        .collect();
    refused.sort_by_key(|r| r["line"].as_u64());
    let got: Vec<(u64, &str)> = refused
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["problem"]["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (2, "urn:statusd:problem:bad-item"),
            (4, "urn:statusd:problem:bad-item"),
            (5, "urn:statusd:problem:unknown-parent"),
            (6, "urn:statusd:problem:registration-conflict"),
            (9, "urn:statusd:problem:bad-item"),
        ],
        "{refused:#?}"
    );
    let detail = |i: usize| refused[i]["problem"]["detail"].as_str().unwrap();
    assert!(
        detail(0).starts_with("not JSON: EOF while parsing an object"),
        "{}",
        detail(0)
    );
    assert!(
        detail(1).contains("unknown field `colour`"),
        "{}",
        detail(1)
    );
    assert!(
        detail(3).contains("already registered with different parameters"),
        "{}",
        detail(3)
    );
    assert!(
        detail(4).contains("only register operations"),
        "{}",
        detail(4)
    );
    assert_eq!(
        refused[0]["item"], lines[1],
        "an unreadable line is kept as text"
    );
    assert_eq!(refused[2]["item"]["parent"], "ic-nobody");
    assert_eq!(refused[4]["item"]["op"], "revoke");
    // The registered lines are registered; the refused ones are not.
    assert_eq!(env.get("/v1/credentials/ic-e").await.0, StatusCode::OK);
    assert_eq!(
        env.get("/v1/credentials/mc-x").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.get("/v1/credentials/ic-c").await.0,
        StatusCode::NOT_FOUND
    );

    // Not JSON Lines at all: 65, nothing sent.
    let csv = env.path("cards.csv");
    std::fs::write(&csv, "credential_id,kind\nic-z,physical\n").unwrap();
    let out = run(env.importer(&csv, &[])).await;
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not JSON Lines"));
    assert!(out.stdout.is_empty());
    let out = run(env.importer(&env.path("missing.jsonl"), &[])).await;
    assert_eq!(out.status.code(), Some(65));

    // A token the server does not know: 77, with the hint.
    let out = run(importer(
        &env.admin(),
        "not-a-known-token-0123456789",
        &file,
        &[],
    ))
    .await;
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(77), "{s}");
    assert!(s["error"].as_str().unwrap().contains("HTTP 401"), "{s}");

    // Nobody listening: retried for --retry-for, then 75, and the error says how to resume.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = run(importer(&dead, TOKEN, &file, &["--retry-for", "1s"])).await;
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(75), "{s}");
    assert_eq!(s["complete"], false);
    let error = s["error"].as_str().unwrap();
    assert!(
        error.contains("still failing after") && error.contains("run the same command again"),
        "{error}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("retry 1 in"));
    env.stop().await;
}

/// Ctrl-C (SIGINT) mid-way: the batches in flight are answered, the summary says where to
/// resume, exit 130; the rerun with --from-line there completes the import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_after_the_batches_in_flight_with_exit_130() {
    let env = Env::start(false).await;
    let (file, lines, child) = env.import_under_way().await;
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(130), "{s}");
    assert_eq!(s["complete"], false);
    assert!(
        s["error"].as_str().unwrap().starts_with("interrupted"),
        "{s}"
    );
    let answered = s["registered"].as_u64().unwrap();
    assert!(answered > 0 && answered < lines, "{s}");
    // Every batch it sent was answered before it stopped: nothing registered is unaccounted.
    assert_eq!(env.allocated().await, answered, "{s}");
    // Resuming from where it says skips the lines before, which are all answered...
    let from = s["resume_from"]
        .as_u64()
        .expect("a stopped import says where to resume");
    assert!(from > 1 && from <= answered + 1, "{s}");
    let out = run(env.importer(&file, &["--from-line", &from.to_string()])).await;
    let r = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert_eq!(r["skipped"], from - 1, "{r}");
    assert_eq!(
        r["registered"].as_u64().unwrap() + answered,
        lines,
        "every line not answered before is registered now: {r}"
    );
    // ... as a full rerun confirms: every line registered, each once, no index wasted.
    let all = summary(&run(env.importer(&file, &[])).await);
    assert_eq!(all["existing"], lines, "{all}");
    env.each_line_holds_its_own_index(&file, 0).await;
    env.stop().await;
}

/// The importer over https with a private CA and a client certificate (mutual TLS on the admin
/// plane), as the other admin commands; without the CA the server is not trusted and the
/// import fails at once (exit 1), not after minutes of retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_speaks_https_with_a_private_ca_and_mutual_tls() {
    use crate::tls::Pki;
    let dir = TempDir::new("import-tls");
    let pki = Pki::new(&dir.0, "main");
    let server = pki.server("server", "statusd");
    let client = pki.client("importer", "importer", false);
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, format!("importer write {TOKEN}\n")).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let running = support::start_with(
        &dir.0,
        // A list in the store keeps --demo from seeding its demo lists.
        &[("other", Bits::Two, 1024, vec![])],
        &[
            "--tls-cert",
            &s(&server.cert),
            "--tls-key",
            &s(&server.key),
            "--admin-client-ca",
            &s(&pki.ca_cert),
            "--admin-tokens",
            &s(&tokens),
            "--list-size",
            "131072",
        ],
    )
    .await;
    let file = dir.0.join("cards.jsonl");
    let lines = cards(&file, 30) as u64;
    let admin = format!("https://localhost:{}", running.admin_addr.port());
    let identity = [
        "--client-cert".to_owned(),
        s(&client.cert),
        "--client-key".to_owned(),
        s(&client.key),
    ];
    let mut with_ca = vec!["--ca".to_owned(), s(&pki.ca_cert)];
    with_ca.extend(identity.iter().cloned());
    let out = run(importer(
        &admin,
        TOKEN,
        &file,
        &with_ca.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await;
    let summary = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{summary}");
    assert_eq!(summary["registered"], lines);

    let out = run(importer(
        &admin,
        TOKEN,
        &file,
        &identity.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("certificate"));
    assert!(
        !stderr.contains("retry"),
        "an untrusted server is not retried: {stderr}"
    );
    running.stop().await;
}
