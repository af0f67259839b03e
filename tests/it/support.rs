//! Shared helpers for the integration tests: test vectors, a running server, an HTTP client.
//! Larger pieces have a module each: [`replica`] (a statusd process on chosen ports) and
//! [`traffic`] (the fault tests' reads and writes).

pub mod replica;
pub mod traffic;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use serde_json::Value;
use statusd::app::{self, Running};
use statusd::config::{Config, ServeArgs};
use statusd::status::{Bits, Status};
use statusd::store::{Change, NewList, Store};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// `tests/data/vectors.json`, extracted verbatim from the shared spec by
/// `scripts/extract-vectors.py`.
pub fn vectors() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vectors.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors.json"))
            .expect("vectors.json is JSON")
    })
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "statusd-it-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A configuration on loopback port 0 with a demo key in `dir`, plus `extra` flags.
pub fn config(dir: &std::path::Path, extra: &[&str]) -> Config {
    #[derive(clap::Parser)]
    struct A {
        #[command(flatten)]
        a: ServeArgs,
    }
    let dir = dir.to_str().expect("utf-8 temp path");
    let mut args = vec![
        "t",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--demo",
    ];
    args.extend_from_slice(extra);
    let a = <A as clap::Parser>::try_parse_from(args).expect("valid test flags");
    Config::from_args(&a.a).expect("valid test config")
}

/// Flags for a server that re-signs its tokens every second: `ttl` 1 s, tokens valid for 10 s,
/// no delay before re-encoding a changed list.
pub const RESIGN_EVERY_SECOND: [&str; 6] = [
    "--ttl",
    "1",
    "--token-lifetime",
    "10",
    "--reencode-interval",
    "0",
];

/// The operator guide's "Configuration reference" section (up to the next `## ` heading): the
/// one table of every setting, which `deploy::` checks against src/config.rs.
pub fn configuration_reference() -> String {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
    )
    .expect("docs/operations.md");
    let section = guide
        .split("\n## Configuration reference\n")
        .nth(1)
        .expect("docs/operations.md has a \"## Configuration reference\" section");
    section.split("\n## ").next().unwrap().to_owned()
}

/// A change of entry `idx` to status `v`.
pub fn change(idx: u32, v: u8) -> Change {
    Change {
        idx,
        status: Status(v),
    }
}

/// A list to create: `id` with `size` entries of `bits` bits, no purpose.
pub fn new_list(id: &str, bits: Bits, size: u32) -> NewList {
    NewList {
        id: id.into(),
        bits,
        size,
        purpose: None,
    }
}

/// The non-VALID entries of `list` as `(index, value)`.
pub fn nonzero(list: &statusd::status::StatusList) -> Vec<(u32, u8)> {
    list.iter_nonzero().map(|(i, s)| (i, s.0)).collect()
}

/// A list to seed: id, bits, size and `(index, value)` entries.
pub type SeedList<'a> = (&'a str, Bits, u32, Vec<(u32, u8)>);

/// Creates list `id` (no pool) in `store` and sets `entries` (`(index, value)`) in one write.
pub async fn seed_list(store: &impl Store, id: &str, bits: Bits, size: u32, entries: &[(u32, u8)]) {
    store
        .create_list(new_list(id, bits, size))
        .await
        .expect("create list");
    let changes: Vec<Change> = entries.iter().map(|&(idx, v)| change(idx, v)).collect();
    if !changes.is_empty() {
        store.apply(id, &changes).await.expect("seed list");
    }
}

/// Starts a server whose store holds `lists` (id, bits, size, entries) and waits until ready.
pub async fn start_with(dir: &std::path::Path, lists: &[SeedList<'_>], extra: &[&str]) -> Running {
    // Seed before starting so the first snapshot already holds everything (and --demo, which
    // only seeds an empty store, adds nothing).
    {
        let store = statusd::store::embedded::EmbeddedStore::open(dir).expect("open store");
        for (id, bits, size, entries) in lists {
            seed_list(&store, id, *bits, *size, entries).await;
        }
    }
    let running = app::start(&config(dir, extra))
        .await
        .expect("start statusd");
    assert!(
        running.ready(Duration::from_secs(20)).await,
        "statusd did not become ready"
    );
    running
}

/// A plain HTTP/1.1 request over a real socket.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> (StatusCode, HeaderMap, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .expect("request");
    let resp = client.request(req).await.expect("send request");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("read body").to_bytes();
    (parts.status, parts.headers, bytes)
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    request(Method::GET, url, headers, None).await
}

/// An admin-plane request authorised by the bearer `token`, with `body` sent as JSON.
pub async fn authorized(
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Bytes) {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    request(
        method,
        url,
        &headers,
        body.map(|b| Bytes::from(b.to_string())),
    )
    .await
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
pub async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `cmd` to its end and returns its standard output; panics with its output if it fails.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the unlabelled metric `name` on the admin plane at `admin`.
pub async fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    let (_, _, body) = get(&format!("http://{admin}/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not exported"))
}

/// Parses a problem+json body and checks its shape.
pub fn problem(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Value {
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "status {status}"
    );
    let v: Value = serde_json::from_slice(body).expect("problem body is JSON");
    assert_eq!(v["status"], status.as_u16());
    assert!(v["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(v["title"].as_str().is_some());
    v
}

/// One thread of a process, as `/proc/<pid>/task/<tid>/stat` shows it.
#[derive(Debug)]
pub struct ThreadStat {
    pub name: String,
    /// User and system time, in clock ticks (fields 14 and 15).
    pub cpu_ticks: u64,
    /// Field 19.
    pub nice: i64,
    /// Field 41: 0 `SCHED_OTHER`, 5 `SCHED_IDLE`.
    pub policy: u64,
}

/// The threads of process `pid` (`"self"` for this one); a thread that ends meanwhile is left
/// out.
#[cfg(target_os = "linux")]
pub fn threads(pid: &str) -> Vec<ThreadStat> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc") {
        let Ok(stat) = std::fs::read_to_string(task.expect("task").path().join("stat")) else {
            continue; // the thread ended
        };
        let (name, rest) = stat
            .split_once(" (")
            .and_then(|(_, r)| r.rsplit_once(") "))
            .expect("stat line");
        // Fields from the third (state) on.
        let f: Vec<&str> = rest.split(' ').collect();
        let field = |n: usize| f[n - 3];
        let number = |n: usize| field(n).parse::<u64>().expect("numeric field");
        out.push(ThreadStat {
            name: name.to_owned(),
            cpu_ticks: number(14) + number(15),
            nice: field(19).parse().expect("nice"),
            policy: number(41),
        });
    }
    out
}

/// The `statusd` binary under test, without any `STATUSD_*` variable of the environment the
/// tests run in: a child gets exactly the configuration its test passes (flags, `Command::env`).
pub fn statusd() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_statusd"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("STATUSD_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// `statusd serve --demo` with both planes on loopback port 0; add flags, variables and a
/// directory, then [`Served::start`] it.
pub fn serve_demo() -> std::process::Command {
    let mut cmd = statusd();
    cmd.args([
        "serve",
        "--demo",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    cmd
}

/// A `statusd serve` process started by [`Served::start`]: its log (stderr) read line by line
/// on a thread, its addresses taken from its `statusd listening` line, text or JSON. Killed on
/// drop, so a failed assertion does not leave it (and the harness's output pipe) behind.
pub struct Served {
    pub child: std::process::Child,
    /// The public plane's `host:port`.
    pub public: String,
    /// The admin plane's `host:port`.
    pub admin: String,
    /// The log lines before the `statusd listening` line, and that line last.
    pub startup: Vec<String>,
    /// Every later log line, as it comes; after [`Served::stop`], `log.iter()` reads to the end.
    pub log: std::sync::mpsc::Receiver<String>,
}

impl Served {
    /// Spawns `cmd` (a `statusd serve …` command, e.g. from [`statusd`]) with its stderr piped
    /// and waits up to a minute for it to listen; panics with what it logged if it does not.
    pub fn start(cmd: &mut std::process::Command) -> Served {
        use std::io::BufRead as _;
        let mut child = cmd
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn statusd");
        let (tx, log) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut startup = Vec::new();
        while let Ok(line) = log.recv_timeout(Duration::from_secs(60)) {
            startup.push(line);
            let line = startup.last().expect("just pushed");
            if !line.contains("statusd listening") {
                continue;
            }
            let (public, admin) = (
                log_field(line, "public_addr"),
                log_field(line, "admin_addr"),
            );
            let (Some(public), Some(admin)) = (public, admin) else {
                continue;
            };
            return Served {
                child,
                public,
                admin,
                startup,
                log,
            };
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("statusd never logged that it listens; it logged {startup:#?}");
    }

    /// SIGTERM, and the exit status once it has drained.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for statusd")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of field `name` in one log line: a top-level member of a JSON event, or
/// `name=value` in the text format.
pub fn log_field(line: &str, name: &str) -> Option<String> {
    if line.starts_with('{') {
        let event: Value = serde_json::from_str(line).ok()?;
        return event[name].as_str().map(str::to_owned);
    }
    let rest = line.split(&format!("{name}=")).nth(1)?;
    Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
}
