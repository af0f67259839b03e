//! The CDN edge (`deploy/cdn/nginx.conf`) in front of the real server: a real nginx on free
//! loopback ports, started from the very template production uses, with a temporary prefix
//! directory; stopped when dropped.
//!
//! These tests never skip: without `nginx` and its cache-purge module they fail and say how to
//! get them (`scripts/test` installs both). They check what the edge promises: repeated fetches
//! are cache hits, one request per variant reaches statusd, a revocation reaches the edge within
//! the advertised freshness, a stopped origin is covered by stale-if-error for exactly the
//! window statusd allows and never with an expired token, and the purge hook drops a list.

use crate::redis_harness::free_ports;
use crate::support::{get, request, start_with, TempDir};
use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use statusd::app::Running;
use statusd::metrics::Metrics;
use statusd::status::{Bits, Status};
use statusd::store::{Change, Store};
use statusd::token::keys::KeySet;
use statusd::token::statuslist::{self, StatusListClaims};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOW_TO_INSTALL: &str = "the CDN tests need nginx and its cache-purge module: run \
     scripts/test, which installs them (or `apt-get install nginx libnginx-mod-http-cache-purge`)";
const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/cdn/nginx.conf");
const PURGE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/cdn/purge");
/// Where Debian's nginx keeps dynamic modules.
const MODULES: &str = "/usr/lib/nginx/modules";
/// A list large enough for the W3C views (131,072 entries).
const SIZE: u32 = 1 << 17;

/// One nginx master (and its worker) serving the edge template.
pub struct Nginx {
    /// The public edge listener.
    pub addr: SocketAddr,
    /// The purge listener.
    pub purge_addr: SocketAddr,
    child: Option<Child>,
    /// Prefix directory: rendered config, cache, temporary files, pid file and log.
    dir: TempDir,
}

impl Nginx {
    /// The edge in front of `origin`, on free loopback ports (retried on other ports if one was
    /// taken between choosing and binding it).
    pub fn start(origin: SocketAddr) -> Nginx {
        let found = Command::new("nginx")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "nginx not found: {HOW_TO_INSTALL}");
        let module = Path::new(MODULES).join("ngx_http_cache_purge_module.so");
        assert!(
            module.exists(),
            "{} missing: {HOW_TO_INSTALL}",
            module.display()
        );
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(origin) {
                Ok(n) => return n,
                Err(e) => last = e,
            }
        }
        panic!("nginx did not start: {last}");
    }

    fn try_start(origin: SocketAddr) -> Result<Nginx, String> {
        let [port, purge_port] = free_ports::<2>();
        let dir = TempDir::new("nginx");
        std::fs::create_dir_all(dir.0.join("tmp")).map_err(|e| e.to_string())?;
        let prefix = dir.0.to_str().expect("utf-8 temp path");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let purge_addr: SocketAddr = ([127, 0, 0, 1], purge_port).into();
        let conf = std::fs::read_to_string(TEMPLATE)
            .map_err(|e| format!("{TEMPLATE}: {e}"))?
            .replace("@PREFIX@", prefix)
            .replace("@LISTEN@", &addr.to_string())
            .replace("@PURGE_LISTEN@", &purge_addr.to_string())
            .replace("@ORIGIN@", &origin.to_string())
            .replace("@WORKERS@", "1")
            .replace("@MODULES@", MODULES);
        let unreplaced = conf
            .lines()
            .find(|l| !l.trim_start().starts_with('#') && l.contains('@'));
        assert!(
            unreplaced.is_none(),
            "placeholder left in {TEMPLATE}: {unreplaced:?}"
        );
        let conf_path = dir.0.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.0.join("nginx.log")).map_err(|e| e.to_string())?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf_path)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning nginx: {e}; {HOW_TO_INSTALL}"))?;
        let mut n = Nginx {
            addr,
            purge_addr,
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(addr).is_ok() && TcpStream::connect(purge_addr).is_ok() {
                return Ok(n);
            }
            let exited = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                n.stop();
                return Err(format!("ports {port}, {purge_port}: {}", n.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("nginx.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Fast shutdown (SIGTERM, which the master passes on to its workers; SIGKILL would orphan
    /// them), then SIGKILL if the master is still there after 5 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        // A worker crash (signal 11 with the purge module's "same location" syntax was one)
        // shows only here; fail loudly rather than pass on a half-broken edge.
        let log = self.log();
        if !std::thread::panicking() {
            assert!(
                !log.contains("exited on signal"),
                "an nginx worker crashed:\n{log}"
            );
        }
    }
}

/// The edge's `X-Cache-Status` ("" when the response was not cached).
fn cache_status(h: &HeaderMap) -> &str {
    h.get("x-cache-status")
        .map_or("", |v| v.to_str().unwrap_or(""))
}

/// Responses statusd itself sent on a public route, by outcome ("2xx", "304", ...).
fn origin_count(metrics: &Metrics, route: &str, outcome: &str) -> u64 {
    let text = String::from_utf8(metrics.encode()).unwrap();
    let want = format!(
        "statusd_http_requests_total{{outcome=\"{outcome}\",plane=\"public\",route=\"{route}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out).unwrap();
    out
}

/// A verified Status List Token from a response body (gzip-decoded when it says so).
fn token(h: &HeaderMap, body: &[u8], keys: &KeySet) -> StatusListClaims {
    let body = if h.get("content-encoding").is_some_and(|v| v == "gzip") {
        gunzip(body)
    } else {
        body.to_vec()
    };
    statuslist::verify_jwt(std::str::from_utf8(&body).unwrap(), keys).expect("a valid token")
}

fn status_of(claims: &StatusListClaims, idx: u64) -> Status {
    claims.status_list.decode().unwrap().get(idx).unwrap()
}

/// The JWKS, fetched through the edge.
async fn edge_keys(edge: &Nginx) -> KeySet {
    let (s, _, body) = get(&edge.url("/.well-known/jwks.json"), &[]).await;
    assert_eq!(s, 200);
    KeySet::from_jwks_json(std::str::from_utf8(&body).unwrap()).unwrap()
}

/// `Cache-Control` directive `name=<seconds>`.
fn directive(h: &HeaderMap, name: &str) -> u64 {
    let cc = h["cache-control"].to_str().unwrap();
    cc.split(", ")
        .find_map(|d| d.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {cc}"))
        .parse()
        .unwrap()
}

async fn revoke(srv: &Running, list: &str, idx: u32) {
    srv.store
        .apply(
            list,
            &[Change {
                idx,
                status: Status::INVALID,
            }],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_fetches_are_cache_hits_one_origin_request_per_variant() {
    let dir = TempDir::new("cdn-hit");
    let srv = start_with(&dir.0, &[("a", Bits::Two, SIZE, vec![(7, 2)])], &[]).await;
    let edge = Nginx::start(srv.public_addr);
    let m = srv.metrics.clone();
    let keys = edge_keys(&edge).await;
    let url = edge.url("/statuslists/a");

    let (s, h1, b1) = get(&url, &[]).await;
    assert_eq!((s.as_u16(), cache_status(&h1)), (200, "MISS"));
    assert_eq!(status_of(&token(&h1, &b1, &keys), 7), Status::SUSPENDED);
    // statusd's caching headers reach the client unchanged.
    assert_eq!(
        h1["cache-control"],
        "public, max-age=300, stale-while-revalidate=60, stale-if-error=42780"
    );
    assert_eq!(h1["vary"], "Accept, Accept-Encoding");
    assert_eq!(h1["surrogate-key"], "list-a");
    for _ in 0..3 {
        let (s, h, b) = get(&url, &[("accept", "*/*")]).await;
        assert_eq!((s.as_u16(), cache_status(&h)), (200, "HIT"));
        assert_eq!((&h["etag"], &b), (&h1["etag"], &b1));
    }
    assert_eq!(origin_count(&m, "statuslist", "2xx"), 1);

    // Accept-Encoding spellings that all accept gzip share one gzip entry; it decodes to the
    // same token as the identity entry.
    let (s, hg, bg) = get(&url, &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!((s.as_u16(), cache_status(&hg)), (200, "MISS"));
    assert_eq!(hg["content-encoding"], "gzip");
    assert_eq!(gunzip(&bg), b1);
    for ae in ["gzip", "br, GZIP", "*", "deflate, x-gzip"] {
        let (s, h, b) = get(&url, &[("accept-encoding", ae)]).await;
        assert_eq!((s.as_u16(), cache_status(&h)), (200, "HIT"), "{ae}");
        assert_eq!(b, bg, "{ae}");
    }
    // Codings without gzip share the identity entry; an explicit refusal is never given gzip.
    for ae in ["deflate, br", "identity"] {
        let (s, h, b) = get(&url, &[("accept-encoding", ae)]).await;
        assert_eq!((s.as_u16(), cache_status(&h)), (200, "HIT"), "{ae}");
        assert_eq!(b, b1);
    }
    let (s, h, b) = get(&url, &[("accept-encoding", "gzip;q=0, br")]).await;
    assert_eq!((s.as_u16(), cache_status(&h)), (200, "MISS"));
    assert!(h.get("content-encoding").is_none());
    assert_eq!(b, b1);
    assert_eq!(origin_count(&m, "statuslist", "2xx"), 3);

    // The negotiated media type is part of the key.
    let (s, hc, bc) = get(&url, &[("accept", "application/statuslist+cwt")]).await;
    assert_eq!((s.as_u16(), cache_status(&hc)), (200, "MISS"));
    assert_eq!(hc["content-type"], "application/statuslist+cwt");
    let cwt = statuslist::verify_cwt(&bc, &keys).unwrap();
    assert_eq!(cwt.status_list.decode().unwrap().get(7).unwrap(), Status(2));
    let (_, h, _) = get(&url, &[("accept", "application/statuslist+cwt")]).await;
    assert_eq!(cache_status(&h), "HIT");

    // Conditional GETs are answered by the edge.
    let etag = h1["etag"].to_str().unwrap();
    let (s, h, b) = get(&url, &[("if-none-match", etag)]).await;
    assert_eq!((s.as_u16(), cache_status(&h), b.len()), (304, "HIT", 0));
    assert_eq!(origin_count(&m, "statuslist", "304"), 0);

    // Concurrent misses on a new variant collapse into one origin request (proxy_cache_lock).
    let before = origin_count(&m, "statuslist", "2xx");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            get(&url, &[("accept", "application/vnd.statusd.roaring")]).await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (s, h, _) = t.await.unwrap();
        assert_eq!(s, 200);
        statuses.push(cache_status(&h).to_owned());
    }
    assert_eq!(
        origin_count(&m, "statuslist", "2xx") - before,
        1,
        "misses were not collapsed: {statuses:?}"
    );

    // A query string bypasses the cache both ways: statusd's 501 for ?time=, and the cached
    // list is neither served for it nor replaced by it.
    let (s, h, _) = get(&edge.url("/statuslists/a?time=1700000000"), &[]).await;
    assert_eq!((s.as_u16(), cache_status(&h)), (501, "BYPASS"));
    let (_, h, _) = get(&url, &[]).await;
    assert_eq!(cache_status(&h), "HIT");

    // W3C credentials are cached like the tokens.
    let w3c = edge.url("/bitstringlists/a/suspension");
    let (s, h, _) = get(&w3c, &[]).await;
    assert_eq!((s.as_u16(), cache_status(&h)), (200, "MISS"));
    let (_, h, _) = get(&w3c, &[]).await;
    assert_eq!(cache_status(&h), "HIT");

    // Lookups and batch lookups are never cached at the edge: each one reaches statusd.
    for n in 1..=3 {
        let (s, h, b) = get(&edge.url("/statuses/a/7"), &[]).await;
        assert_eq!((s.as_u16(), cache_status(&h)), (200, ""));
        assert_eq!(h["cache-control"], "public, max-age=10");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()["status"],
            "SUSPENDED"
        );
        assert_eq!(origin_count(&m, "lookup", "2xx"), n);
        let (s, h, _) = request(
            Method::POST,
            &edge.url("/statuses/a"),
            &[("content-type", "application/json")],
            Some(Bytes::from(r#"{"idx":[7,8]}"#)),
        )
        .await;
        assert_eq!((s.as_u16(), cache_status(&h)), (200, ""));
        assert_eq!(origin_count(&m, "batch_lookup", "2xx"), n);
    }
    drop(edge);
    srv.stop().await;
}

/// Revalidation with the ETag when nothing changed, and a revocation visible through the edge
/// within ttl + re-encode interval (plus nginx's whole-second clock and one stale answer while
/// it refreshes in the background).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_the_edge_within_the_advertised_freshness() {
    let dir = TempDir::new("cdn-fresh");
    let srv = start_with(
        &dir.0,
        &[("b", Bits::Two, SIZE, vec![])],
        &["--ttl", "2", "--reencode-interval", "1"],
    )
    .await;
    let edge = Nginx::start(srv.public_addr);
    let m = srv.metrics.clone();
    let keys = edge_keys(&edge).await;
    let url = edge.url("/statuslists/b");
    let (s, h, b) = get(&url, &[]).await;
    assert_eq!((s.as_u16(), cache_status(&h)), (200, "MISS"));
    let (ttl, reencode) = (directive(&h, "max-age"), 1);
    assert_eq!(ttl, 2);
    let first = token(&h, &b, &keys);
    assert_eq!(status_of(&first, 42), Status::VALID);

    // Nothing changes: once expired, the entry is revalidated (statusd answers 304), not
    // downloaded again, and clients keep getting it from the cache meanwhile.
    tokio::time::sleep(Duration::from_millis(ttl * 1000 + 1200)).await;
    let (s, h, b2) = get(&url, &[]).await;
    assert_eq!(s, 200);
    assert!(
        ["STALE", "UPDATING", "REVALIDATED"].contains(&cache_status(&h)),
        "expired entry answered {}",
        cache_status(&h)
    );
    assert_eq!(b2, b);
    let deadline = Instant::now() + Duration::from_secs(3);
    while origin_count(&m, "statuslist", "304") == 0 {
        assert!(Instant::now() < deadline, "the edge never revalidated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        origin_count(&m, "statuslist", "2xx"),
        1,
        "refetched in full"
    );

    let t0 = Instant::now();
    revoke(&srv, "b", 42).await;
    let bound = Duration::from_secs(ttl + reencode + 2);
    let mut seen = Vec::new();
    loop {
        let (s, h, b) = get(&url, &[]).await;
        assert_eq!(s, 200);
        let claims = token(&h, &b, &keys);
        seen.push(format!(
            "{:?} {} iat {}",
            t0.elapsed(),
            cache_status(&h),
            claims.iat
        ));
        if status_of(&claims, 42) == Status::INVALID {
            break;
        }
        assert!(
            t0.elapsed() < bound,
            "revocation not visible through the edge after {bound:?}: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // From then on the edge never goes back to the old state.
    for _ in 0..5 {
        let (_, h, b) = get(&url, &[]).await;
        assert_eq!(status_of(&token(&h, &b, &keys), 42), Status::INVALID);
    }
    drop(edge);
    srv.stop().await;
}

/// With statusd stopped, the edge serves its cached token for statusd's stale-if-error window
/// (beyond stale-while-revalidate), then stops; every token it serves is unexpired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_origin_is_covered_by_stale_if_error_for_its_window_only() {
    let dir = TempDir::new("cdn-sie");
    // lifetime 130 s: the shortest that leaves stale-if-error a few seconds after max-age,
    // stale-while-revalidate and statusd's re-signing margin.
    let srv = start_with(
        &dir.0,
        &[("c", Bits::Two, SIZE, vec![(5, 1)])],
        &[
            "--ttl",
            "1",
            "--token-lifetime",
            "130",
            "--reencode-interval",
            "0",
        ],
    )
    .await;
    let edge = Nginx::start(srv.public_addr);
    let keys = edge_keys(&edge).await;
    let url = edge.url("/statuslists/c");
    let (s, h, cached) = get(&url, &[]).await;
    let stored = Instant::now();
    assert_eq!((s.as_u16(), cache_status(&h)), (200, "MISS"));
    let (max_age, swr, sie) = (
        directive(&h, "max-age"),
        directive(&h, "stale-while-revalidate"),
        directive(&h, "stale-if-error"),
    );
    assert!(
        sie > swr,
        "this test needs stale-if-error > stale-while-revalidate: {h:?}"
    );
    srv.stop().await;

    // nginx keeps time in whole seconds: a window may end up to 1 s later than exact.
    let window = Duration::from_secs(max_age + swr.max(sie));
    let mut last_served = None;
    let mut first_error = None;
    let mut log = Vec::new();
    while stored.elapsed() < window + Duration::from_secs(3) {
        let (s, h, b) = get(&url, &[]).await;
        let at = stored.elapsed();
        log.push(format!("{at:?} {s} {}", cache_status(&h)));
        if s == StatusCode::OK {
            assert!(
                first_error.is_none(),
                "served again after failing: {log:#?}"
            );
            assert_eq!(b, cached);
            let claims = token(&h, &b, &keys);
            statuslist::check_time(&claims, now_secs()).expect("served an expired token");
            assert_eq!(status_of(&claims, 5), Status::INVALID);
            last_served = Some(at);
        } else {
            assert!(
                s == StatusCode::BAD_GATEWAY || s == StatusCode::GATEWAY_TIMEOUT,
                "{log:#?}"
            );
            first_error.get_or_insert(at);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_served = last_served.expect("never served from the cache");
    assert!(
        last_served >= Duration::from_secs(max_age + swr + 1),
        "stale-if-error not honoured: last served at {last_served:?}: {log:#?}"
    );
    let first_error = first_error.expect("served past statusd's stale-if-error window");
    assert!(
        first_error <= window + Duration::from_millis(1500),
        "served past the stale-if-error window ({window:?}): {log:#?}"
    );
    drop(edge);
}

/// The worst case for `exp`: the edge stores a token just before statusd re-signs it, statusd
/// stops, and the edge answers from its cache for as long as statusd's headers allow. No served
/// token may be expired.
///
/// ttl 1 s: short enough to run in seconds. At the configuration's minimum lifetime (4 x ttl)
/// statusd re-signs every second and drops the stale windows (`max-age=1` alone); before that
/// rule, a cache with a whole-second clock served the old token about a second past `exp`
/// (observed: served at 395 with exp 394, X-Cache-Status STALE). At 10 x ttl the edge also
/// serves from `stale-while-revalidate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_never_serves_a_token_past_its_exp() {
    never_past_exp(1, 10, "cdn-exp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_never_serves_a_token_past_its_exp_at_the_shortest_lifetime() {
    never_past_exp(1, 4, "cdn-exp-short").await;
}

async fn never_past_exp(ttl: u64, lifetime: u64, name: &str) {
    let dir = TempDir::new(name);
    let srv = start_with(
        &dir.0,
        &[("x", Bits::One, 1024, vec![(3, 1)])],
        &[
            "--ttl",
            &ttl.to_string(),
            "--token-lifetime",
            &lifetime.to_string(),
            "--reencode-interval",
            "0",
        ],
    )
    .await;
    let edge = Nginx::start(srv.public_addr);
    let keys = edge_keys(&edge).await;
    let url = edge.url("/statuslists/x");
    // Every request has its own Accept value, hence its own cache entry holding whatever
    // token statusd served at that moment: over a little more than half a lifetime, entries
    // stored just before and just after a re-signing.
    let accept = |n: usize| format!("application/statuslist+jwt;q=0.{:03}", n + 1);
    let mut n_keys = 0;
    let mut iats = std::collections::BTreeSet::new();
    let mut cc = String::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(lifetime * 1000 / 2 + 2000) {
        let (s, h, b) = get(&url, &[("accept", &accept(n_keys))]).await;
        assert_eq!((s.as_u16(), cache_status(&h)), (200, "MISS"));
        iats.insert(token(&h, &b, &keys).iat);
        cc = h["cache-control"].to_str().unwrap().to_owned();
        n_keys += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        iats.len() >= 2,
        "no re-signing while storing entries: {iats:?}"
    );
    srv.stop().await;

    let mut stale_served = 0;
    let mut served_after_stop = 0;
    let mut closest = f64::MAX;
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let mut serving = 0;
        for n in 0..n_keys {
            let (s, h, b) = get(&url, &[("accept", &accept(n))]).await;
            if s != StatusCode::OK {
                continue;
            }
            serving += 1;
            served_after_stop += 1;
            let claims = token(&h, &b, &keys);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            if let Err(e) = statuslist::check_time(&claims, now.as_secs()) {
                panic!(
                    "edge served an expired token ({e}; iat {}, exp {:?}, X-Cache-Status {}, \
                     Cache-Control {:?})",
                    claims.iat,
                    claims.exp,
                    cache_status(&h),
                    h["cache-control"]
                );
            }
            closest = closest.min(claims.exp.unwrap() as f64 - now.as_secs_f64());
            if cache_status(&h) != "HIT" {
                stale_served += 1;
            }
        }
        if serving == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still serving {serving} entries 8 s after statusd stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{n_keys} entries, tokens {iats:?}, closest to exp: {closest:.2} s before it");
    assert!(n_keys > 50, "too few entries to prove anything: {n_keys}");
    assert!(
        served_after_stop > 0,
        "the edge served nothing once statusd stopped; the test proved nothing"
    );
    // With stale windows in Cache-Control, the edge must have used them.
    if !cc.contains("stale-while-revalidate=0") {
        assert!(
            stale_served > 0,
            "the edge never answered from an expired entry ({cc}); the test proved nothing"
        );
    }
    drop(edge);
}

/// The purge hook (deploy/cdn/purge) drops every cached variant of one list, so a revocation
/// is served at once instead of after max-age; other lists stay cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_every_cached_variant_of_a_list() {
    let dir = TempDir::new("cdn-purge");
    let srv = start_with(
        &dir.0,
        &[
            ("p", Bits::Two, SIZE, vec![]),
            ("q", Bits::Two, SIZE, vec![]),
        ],
        &["--reencode-interval", "1"],
    )
    .await;
    let edge = Nginx::start(srv.public_addr);
    let keys = edge_keys(&edge).await;
    let variants: [(&str, &[(&str, &str)]); 4] = [
        ("/statuslists/p", &[]),
        ("/statuslists/p", &[("accept-encoding", "gzip, deflate")]),
        (
            "/statuslists/p",
            &[("accept", "application/statuslist+cwt")],
        ),
        (
            "/bitstringlists/p/revocation",
            &[("accept-encoding", "gzip")],
        ),
    ];
    for (path, hdrs) in variants {
        let (s, h, _) = get(&edge.url(path), hdrs).await;
        assert_eq!((s.as_u16(), cache_status(&h)), (200, "MISS"), "{path}");
    }
    let (_, h, _) = get(&edge.url("/statuslists/q"), &[]).await;
    assert_eq!(cache_status(&h), "MISS");

    revoke(&srv, "p", 42).await;
    // statusd publishes the new token within the re-encode interval; the edge keeps the old
    // one (max-age 300 s).
    let direct = format!("http://{}/statuslists/p", srv.public_addr);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, h, b) = get(&direct, &[]).await;
        if status_of(&token(&h, &b, &keys), 42) == Status::INVALID {
            break;
        }
        assert!(Instant::now() < deadline, "statusd never re-encoded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, h, b) = get(&edge.url("/statuslists/p"), &[]).await;
    assert_eq!(cache_status(&h), "HIT");
    assert_eq!(status_of(&token(&h, &b, &keys), 42), Status::VALID);

    let out = Command::new(PURGE_SCRIPT)
        .arg(edge.purge_addr.to_string())
        .arg("p")
        .output()
        .expect("run deploy/cdn/purge");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "purge failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("purged 4 cached variant(s) of 1 list(s)"),
        "{stdout}"
    );

    for (path, hdrs) in variants {
        let (s, h, b) = get(&edge.url(path), hdrs).await;
        assert_eq!((s.as_u16(), cache_status(&h)), (200, "MISS"), "{path}");
        if path == "/statuslists/p" && hdrs.first().is_none_or(|(k, _)| *k != "accept") {
            assert_eq!(status_of(&token(&h, &b, &keys), 42), Status::INVALID);
        }
    }
    let (_, h, _) = get(&edge.url("/statuslists/q"), &[]).await;
    assert_eq!(cache_status(&h), "HIT", "purging p dropped q");
    drop(edge);
    srv.stop().await;
}
