//! Malformed and hostile input against both listeners over real sockets, table-driven.
//!
//! Requests are written as raw bytes, so the table can hold what a well-behaved client would
//! refuse to send (NUL and non-ASCII in the path, conflicting framing, broken chunking, header
//! floods). Each case names the answer it must get: a problem+json status and `type` (also for
//! framing hyper refuses before any service runs: `server::guard` rewrites hyper's bare answer),
//! or a plain status. Afterwards the server still answers and the test process (the server
//! runs in it) has not grown without bound. HTTP/2 abuse and slow clients follow the table;
//! the admin plane's security properties (every route refuses bad tokens, body limits, no
//! secrets in logs, loopback only) close the file.

use crate::support::{get, start_with, TempDir};
use statusd::admin::api::ROUTES;
use statusd::issuer::auth::Scope;
use statusd::status::Bits;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WRITER: &str = "writer-token-0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdefgh";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plane {
    Public,
    Admin,
}
use Plane::{Admin, Public};

/// What a case must get back.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// problem+json with this status and `urn:statusd:problem:<slug>`.
    Problem(u16, &'static str),
    /// A successful or otherwise plain status.
    Status(u16),
}

struct Case {
    name: String,
    plane: Plane,
    raw: Vec<u8>,
    expect: Expect,
}

/// A raw HTTP/1.1 request with `Host` and `Connection: close`; a `Content-Length` is added for
/// a non-empty body unless the headers carry their own framing.
fn raw(method: &str, path: &[u8], headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if !framed && (!body.is_empty() || method == "POST") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One parsed answer.
#[derive(Debug, Default)]
struct Answer {
    status: Option<u16>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Writes `bytes` while reading the answer until the server closes the connection (a server
/// that refuses early may reset before the whole request is written; what arrived counts).
async fn exchange(addr: SocketAddr, bytes: Vec<u8>) -> Result<Answer, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&bytes).await;
        // Keep the write half open: some answers come only after the server stops reading.
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(w);
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    writer.abort();
    if read.is_err() {
        return Err(format!(
            "no close within 8 s; got {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        ));
    }
    Ok(parse(&buf))
}

fn parse(buf: &[u8]) -> Answer {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Answer::default();
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned());
    Answer {
        status,
        content_type,
        body: buf[end + 4..].to_vec(),
    }
}

fn check(a: &Answer, want: Expect) -> Result<(), String> {
    let is_problem = a.content_type.as_deref() == Some("application/problem+json");
    match want {
        Expect::Problem(status, slug) => {
            if a.status != Some(status) || !is_problem {
                return Err(format!("got {:?} {:?}", a.status, a.content_type));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&a.body).map_err(|e| format!("problem body: {e}"))?;
            let want_type = format!("urn:statusd:problem:{slug}");
            if v["type"] != want_type.as_str() || v["status"] != status {
                return Err(format!("got problem {v}"));
            }
        }
        Expect::Status(status) => {
            if a.status != Some(status) {
                return Err(format!(
                    "got {:?}: {}",
                    a.status,
                    String::from_utf8_lossy(&a.body)
                ));
            }
        }
    }
    Ok(())
}

/// The status `GET {path}` on `addr` answers.
async fn status(addr: SocketAddr, path: &str) -> hyper::StatusCode {
    get(&format!("http://{addr}{path}"), &[]).await.0
}

/// Checks that this process's resident memory grew by less than 200 MiB since `before` (KiB).
fn rss_grew_little_since(before: u64) {
    let grown = vm_rss_kib().saturating_sub(before);
    assert!(grown < 200 * 1024, "RSS grew by {grown} KiB");
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A server with list `a` (2^17 entries), credential `c1` registered, tokens of every scope,
/// and a 1 s header read timeout.
async fn server(dir: &TempDir) -> statusd::app::Running {
    let tokens = dir.0.join("tokens");
    std::fs::write(
        &tokens,
        format!("issuance write {WRITER}\naudit read {READER}\nops admin {ADMIN}\n"),
    )
    .unwrap();
    let srv = start_with(
        &dir.0,
        &[("a", Bits::Two, 1 << 17, vec![(1, 1), (7, 2)])],
        &[
            "--admin-tokens",
            tokens.to_str().unwrap(),
            "--header-read-timeout",
            "1",
        ],
    )
    .await;
    let reg = raw(
        "POST",
        b"/v1/credentials",
        &[
            ("authorization", format!("Bearer {WRITER}").as_bytes()),
            ("content-type", b"application/json"),
        ],
        br#"{"credential_id":"c1","kind":"physical"}"#,
    );
    let a = exchange(srv.admin_addr, reg).await.unwrap();
    assert_eq!(a.status, Some(201), "{}", String::from_utf8_lossy(&a.body));
    srv
}

/// Nested arrays `depth` deep inside `prefix … suffix`.
fn nested(prefix: &str, depth: usize, suffix: &str) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.extend(std::iter::repeat_n(b'[', depth));
    v.extend(std::iter::repeat_n(b']', depth));
    v.extend_from_slice(suffix.as_bytes());
    v
}

fn cases() -> Vec<Case> {
    use Expect::{Problem, Status};
    let mut c: Vec<Case> = Vec::new();
    let mut add = |name: &str, plane: Plane, raw: Vec<u8>, expect: Expect| {
        c.push(Case {
            name: name.to_owned(),
            plane,
            raw,
            expect,
        })
    };
    let get = |path: &[u8]| raw("GET", path, &[], b"");
    let json: (&str, &[u8]) = ("content-type", b"application/json");
    let batch = |body: &[u8]| raw("POST", b"/statuses/a", &[json], body);
    let auth_w = format!("Bearer {WRITER}");
    let auth_r = format!("Bearer {READER}");
    let auth_a = format!("Bearer {ADMIN}");
    let admin_post = |path: &[u8], auth: &str, body: &[u8]| {
        raw(
            "POST",
            path,
            &[("authorization", auth.as_bytes()), json],
            body,
        )
    };
    let admin_get =
        |path: &[u8], auth: &str| raw("GET", path, &[("authorization", auth.as_bytes())], b"");
    // A writer's registration with `extra` header fields.
    let register_with = |extra: &[(&str, &[u8])], body: &[u8]| {
        let mut headers = vec![("authorization", auth_w.as_bytes()), json];
        headers.extend_from_slice(extra);
        raw("POST", b"/v1/credentials", &headers, body)
    };

    // Control: the table's server answers well-formed requests.
    add("control lookup", Public, get(b"/statuses/a/7"), Status(200));
    add("control readyz", Admin, get(b"/readyz"), Status(200));

    // Paths.
    add(
        "dot-dot segment",
        Public,
        get(b"/statuses/a/../1"),
        Problem(404, "no-route"),
    );
    add(
        "encoded dot-dot index",
        Public,
        get(b"/statuses/a/%2e%2e"),
        Problem(400, "bad-index"),
    );
    add(
        "double slash prefix",
        Public,
        get(b"//statuses/a/1"),
        Problem(404, "no-route"),
    );
    add(
        "empty list id",
        Public,
        get(b"/statuses//1"),
        Problem(400, "bad-list-id"),
    );
    add(
        "encoded slash in id",
        Public,
        get(b"/statuses/a%2F1/1"),
        Problem(400, "bad-list-id"),
    );
    add(
        "id of 65 characters",
        Public,
        get(format!("/statuslists/{}", "x".repeat(65)).as_bytes()),
        Problem(400, "bad-list-id"),
    );
    add(
        "id of 8,000 characters",
        Public,
        get(format!("/statuses/{}/1", "x".repeat(8000)).as_bytes()),
        Problem(400, "bad-list-id"),
    );
    add(
        "raw UTF-8 in path",
        Public,
        get("/statuses/é/1".as_bytes()),
        Problem(400, "bad-list-id"),
    );
    add(
        "encoded UTF-8 in id",
        Public,
        get(b"/statuses/%C3%A9/1"),
        Problem(400, "bad-list-id"),
    );
    add(
        "raw NUL in path",
        Public,
        get(b"/statuses/a\0/1"),
        Problem(400, "malformed-request"),
    );
    add(
        "encoded NUL in id",
        Public,
        get(b"/statuses/a%00/1"),
        Problem(400, "bad-list-id"),
    );
    add(
        "encoded NUL in index",
        Public,
        get(b"/statuses/a/1%00"),
        Problem(400, "bad-index"),
    );
    add(
        "raw invalid UTF-8 in path",
        Public,
        get(b"/statuses/\xff\xfe/1"),
        Problem(400, "malformed-request"),
    );
    add(
        "asterisk form",
        Public,
        raw("OPTIONS", b"*", &[], b""),
        Problem(404, "no-route"),
    );
    add(
        "absolute form is its path",
        Public,
        get(b"http://evil.example/statuses/a/7"),
        Status(200),
    );
    let overlong_id = format!("/v1/credentials/{}", "x".repeat(8000));
    for (name, path, want) in [
        (
            "admin dot-dot",
            &b"/v1/credentials/../lists"[..],
            Problem(404, "no-route"),
        ),
        (
            "admin double slash",
            b"//v1/lists",
            Problem(404, "no-route"),
        ),
        (
            "admin too many segments",
            b"/v1/credentials/a/b/c",
            Problem(404, "no-route"),
        ),
        (
            "admin raw NUL in path",
            b"/v1/lists/a\0",
            Problem(400, "malformed-request"),
        ),
        (
            "admin overlong credential id",
            overlong_id.as_bytes(),
            Problem(404, "unknown-credential"),
        ),
        (
            "admin encoded NUL in list id",
            b"/v1/lists/%00",
            Problem(404, "unknown-list"),
        ),
    ] {
        add(name, Admin, admin_get(path, &auth_r), want);
    }

    // Indices.
    for (name, idx, want) in [
        ("negative index", "-1", Problem(400, "bad-index")),
        ("leading zero", "01", Problem(400, "bad-index")),
        ("plus sign", "+1", Problem(400, "bad-index")),
        ("2^64", "18446744073709551616", Problem(400, "bad-index")),
        ("1,000 digits", &"9".repeat(1000), Problem(400, "bad-index")),
        ("exponent", "1e3", Problem(400, "bad-index")),
        ("hex", "0x10", Problem(400, "bad-index")),
        ("decimal point", "1.0", Problem(400, "bad-index")),
        ("encoded digit", "%31", Problem(400, "bad-index")),
        (
            "2^32 is out of range",
            "4294967296",
            Problem(404, "index-out-of-range"),
        ),
        (
            "list size is out of range",
            "131072",
            Problem(404, "index-out-of-range"),
        ),
    ] {
        add(
            name,
            Public,
            get(format!("/statuses/a/{idx}").as_bytes()),
            want,
        );
    }

    // Percent-encoding errors.
    add(
        "bad escape in id",
        Public,
        get(b"/statuses/%zz/1"),
        Problem(400, "bad-list-id"),
    );
    add(
        "truncated escape in id",
        Public,
        get(b"/statuses/a%/1"),
        Problem(400, "bad-list-id"),
    );
    for (name, path) in [
        ("admin bad escape", &b"/v1/credentials/%zz"[..]),
        ("admin truncated escape", b"/v1/credentials/%4"),
        ("admin escape of invalid UTF-8", b"/v1/credentials/%C3%28"),
    ] {
        add(
            name,
            Admin,
            admin_get(path, &auth_r),
            Problem(400, "bad-body"),
        );
    }

    // Header values that are not UTF-8, and malformed header lines.
    add(
        "Accept not UTF-8",
        Public,
        raw("GET", b"/statuslists/a", &[("accept", b"\xff\xfe")], b""),
        Problem(406, "not-acceptable"),
    );
    add(
        "If-None-Match not UTF-8",
        Public,
        raw(
            "GET",
            b"/statuses/a/7",
            &[("if-none-match", b"\"\xff\"")],
            b"",
        ),
        Status(200),
    );
    add(
        "Content-Type not UTF-8",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[("content-type", b"\xff")],
            br#"{"idx":[1]}"#,
        ),
        Problem(415, "unsupported-media-type"),
    );
    add(
        "header name with space",
        Public,
        raw("GET", b"/statuses/a/7", &[("bad header", b"x")], b""),
        Problem(400, "malformed-request"),
    );
    add(
        "header line without colon",
        Public,
        {
            let mut r = get(b"/statuses/a/7");
            r.truncate(r.len() - 2);
            r.extend_from_slice(b"no-colon-here\r\n\r\n");
            r
        },
        Problem(400, "malformed-request"),
    );
    add(
        "obsolete line folding",
        Public,
        raw("GET", b"/statuses/a/7", &[("x-a", b"1\r\n folded")], b""),
        Problem(400, "malformed-request"),
    );

    // Header sizes and floods.
    let pad_20k = vec![b'a'; 20 * 1024];
    let pad_70k = vec![b'a'; 70 * 1024];
    add(
        "20 KiB header",
        Public,
        raw("GET", b"/statuses/a/7", &[("x-pad", &pad_20k)], b""),
        Problem(431, "headers-too-large"),
    );
    add(
        "20 KiB header on a batch",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[json, ("x-pad", &pad_20k)],
            br#"{"idx":[1]}"#,
        ),
        Problem(431, "headers-too-large"),
    );
    add(
        "90 headers over 16 KiB",
        Public,
        {
            let v = [b'b'; 200];
            let names: Vec<String> = (0..90).map(|i| format!("x-h{i}")).collect();
            let hs: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &v[..])).collect();
            raw("GET", b"/statuses/a/7", &hs, b"")
        },
        Problem(431, "headers-too-large"),
    );
    add(
        "70 KiB header",
        Public,
        raw("GET", b"/statuses/a/7", &[("x-pad", &pad_70k)], b""),
        Problem(431, "headers-too-large"),
    );
    let thousand_accept: Vec<(&str, &[u8])> = vec![("accept", b"application/json"); 1000];
    add(
        "1,000 Accept headers",
        Public,
        raw("GET", b"/statuslists/a", &thousand_accept, b""),
        Problem(431, "headers-too-large"),
    );
    add(
        "admin 20 KiB header",
        Admin,
        raw("GET", b"/readyz", &[("x-pad", &pad_20k)], b""),
        Problem(431, "headers-too-large"),
    );
    add(
        "admin 70 KiB header",
        Admin,
        raw("GET", b"/readyz", &[("x-pad", &pad_70k)], b""),
        Problem(431, "headers-too-large"),
    );
    add(
        "admin 1,000 Accept headers",
        Admin,
        raw("GET", b"/readyz", &thousand_accept, b""),
        Problem(431, "headers-too-large"),
    );

    // Methods.
    add(
        "unknown method",
        Public,
        raw("BREW", b"/statuses/a/7", &[], b""),
        Problem(405, "method-not-allowed"),
    );
    add(
        "lower-case method",
        Public,
        raw("get", b"/statuses/a/7", &[], b""),
        Problem(405, "method-not-allowed"),
    );
    add(
        "DELETE a list",
        Public,
        raw("DELETE", b"/statuslists/a", &[], b""),
        Problem(405, "method-not-allowed"),
    );
    add(
        "PUT a batch",
        Public,
        raw("PUT", b"/statuses/a", &[json], br#"{"idx":[1]}"#),
        Problem(405, "method-not-allowed"),
    );
    add(
        "method with @",
        Public,
        raw("G@T", b"/statuses/a/7", &[], b""),
        Problem(400, "malformed-request"),
    );
    add(
        "TRACE",
        Public,
        raw("TRACE", b"/statuses/a/7", &[], b""),
        Problem(405, "method-not-allowed"),
    );
    add(
        "admin unknown method",
        Admin,
        raw(
            "BREW",
            b"/v1/lists",
            &[("authorization", auth_a.as_bytes())],
            b"",
        ),
        Problem(405, "method-not-allowed"),
    );
    add(
        "admin PATCH readyz",
        Admin,
        raw("PATCH", b"/readyz", &[], b""),
        Problem(405, "method-not-allowed"),
    );
    add(
        "admin DELETE metrics",
        Admin,
        raw("DELETE", b"/metrics", &[], b""),
        Problem(405, "method-not-allowed"),
    );

    // Framing conflicts. With both Transfer-Encoding and Content-Length, hyper follows RFC 9112
    // §6.3: chunked wins (the public batch answers the chunked body; the admin registration
    // reads `{}`) and the connection is closed after the answer.
    add(
        "Transfer-Encoding and Content-Length",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[
                json,
                ("transfer-encoding", b"chunked"),
                ("content-length", b"5"),
            ],
            b"b\r\n{\"idx\":[1]}\r\n0\r\n\r\n",
        ),
        Status(200),
    );
    add(
        "Transfer-Encoding gzip only",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[json, ("transfer-encoding", b"gzip")],
            br#"{"idx":[1]}"#,
        ),
        Problem(400, "malformed-request"),
    );
    add(
        "two Content-Lengths",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[json, ("content-length", b"11"), ("content-length", b"12")],
            br#"{"idx":[1]}"#,
        ),
        Problem(400, "malformed-request"),
    );
    add(
        "negative Content-Length",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[json, ("content-length", b"-1")],
            b"",
        ),
        Problem(400, "malformed-request"),
    );
    add(
        "Content-Length over u64",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[json, ("content-length", b"99999999999999999999")],
            b"",
        ),
        Problem(400, "malformed-request"),
    );
    add(
        "batch body trickled past the read timeout",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[json, ("content-length", b"100")],
            b"{\"idx\":[",
        ),
        Problem(408, "body-timeout"),
    );
    add(
        "bad chunk size",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[json, ("transfer-encoding", b"chunked")],
            b"zz\r\n{}\r\n0\r\n\r\n",
        ),
        Problem(400, "bad-body"),
    );
    add(
        "chunk size over u64",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[json, ("transfer-encoding", b"chunked")],
            b"fffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
        ),
        Problem(400, "bad-body"),
    );
    add(
        "admin Transfer-Encoding and Content-Length",
        Admin,
        register_with(
            &[("transfer-encoding", b"chunked"), ("content-length", b"2")],
            b"2\r\n{}\r\n0\r\n\r\n",
        ),
        Problem(400, "bad-body"),
    );

    // JSON bodies.
    add(
        "100,000 nested arrays in a batch lookup",
        Public,
        batch(&nested("{\"idx\":", 100_000, "}")),
        Problem(413, "too-large"),
    );
    add(
        "8,000 nested arrays in a batch lookup",
        Public,
        batch(&nested("{\"idx\":", 8_000, "}")),
        Problem(400, "bad-body"),
    );
    add(
        "16,000 unclosed arrays in a batch lookup",
        Public,
        batch(&vec![b'['; 16_000]),
        Problem(400, "bad-body"),
    );
    add(
        "100,000 nested arrays in an admin batch",
        Admin,
        admin_post(
            b"/v1/credentials/batch",
            &auth_w,
            &nested("{\"operations\":", 100_000, "}"),
        ),
        Problem(400, "bad-body"),
    );
    add(
        "1,000,000 unclosed arrays in an admin batch",
        Admin,
        admin_post(b"/v1/credentials/batch", &auth_w, &vec![b'['; 1_000_000]),
        Problem(400, "bad-body"),
    );
    add(
        "12,000 nested objects in a registration",
        Admin,
        admin_post(
            b"/v1/credentials",
            &auth_w,
            &"{\"a\":".repeat(12_000).into_bytes(),
        ),
        Problem(400, "bad-body"),
    );
    add(
        "invalid UTF-8 in a batch lookup",
        Public,
        batch(b"{\"idx\":[1],\"x\":\"\xff\"}"),
        Problem(400, "bad-body"),
    );
    add(
        "invalid UTF-8 in a reason",
        Admin,
        admin_post(
            b"/v1/credentials/c1/revoke",
            &auth_w,
            b"{\"reason\":\"\xff\xfe\"}",
        ),
        Problem(400, "bad-body"),
    );
    add(
        "idx 1e400",
        Public,
        batch(br#"{"idx":[1e400]}"#),
        Problem(400, "bad-body"),
    );
    add(
        "idx 2^64",
        Public,
        batch(br#"{"idx":[18446744073709551616]}"#),
        Problem(400, "bad-body"),
    );
    add(
        "idx -1",
        Public,
        batch(br#"{"idx":[-1]}"#),
        Problem(400, "bad-body"),
    );
    add(
        "idx 1.5",
        Public,
        batch(br#"{"idx":[1.5]}"#),
        Problem(400, "bad-body"),
    );
    add(
        "idx a string",
        Public,
        batch(br#"{"idx":"1"}"#),
        Problem(400, "bad-body"),
    );
    add(
        "idx twice",
        Public,
        batch(br#"{"idx":[1],"idx":[2]}"#),
        Problem(400, "duplicate-json-key"),
    );
    add(
        "idx 2^32 in a batch",
        Public,
        batch(br#"{"idx":[4294967296]}"#),
        Problem(404, "index-out-of-range"),
    );
    add(
        "1,001 indices",
        Public,
        batch(format!("{{\"idx\":[{}]}}", vec!["1"; 1001].join(",")).as_bytes()),
        Problem(413, "too-large"),
    );
    add(
        "empty batch body",
        Public,
        batch(b""),
        Problem(400, "bad-body"),
    );
    add(
        "batch as text/plain",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[("content-type", b"text/plain")],
            br#"{"idx":[1]}"#,
        ),
        Problem(415, "unsupported-media-type"),
    );
    add(
        "list size 1e400",
        Admin,
        admin_post(b"/v1/lists", &auth_a, br#"{"purpose":"x","size":1e400}"#),
        Problem(400, "bad-body"),
    );
    add(
        "list size 2^32",
        Admin,
        admin_post(
            b"/v1/lists",
            &auth_a,
            br#"{"purpose":"x","size":4294967296}"#,
        ),
        Problem(400, "bad-body"),
    );
    add(
        "list size -1",
        Admin,
        admin_post(b"/v1/lists", &auth_a, br#"{"purpose":"x","size":-1}"#),
        Problem(400, "bad-body"),
    );
    add(
        "list bits 256",
        Admin,
        admin_post(b"/v1/lists", &auth_a, br#"{"purpose":"x","bits":256}"#),
        Problem(400, "bad-body"),
    );

    // Duplicate keys (issue 21, item 3): refused on every body of both planes, at any depth,
    // after unescaping, before anything is applied.
    let dup = Problem(400, "duplicate-json-key");
    add(
        "duplicate idx spelled with an escape",
        Public,
        batch(br#"{"idx":[1],"\u0069dx":[2]}"#),
        dup,
    );
    add(
        "duplicate key inside a batch lookup's junk",
        Public,
        batch(br#"{"idx":[1],"x":{"a":1,"a":2}}"#),
        dup,
    );
    add(
        "duplicate op in a batch item",
        Admin,
        admin_post(
            b"/v1/credentials/batch",
            &auth_w,
            br#"{"operations":[{"op":"suspend","credential_id":"c1","reason":"x","op":"revoke"}]}"#,
        ),
        dup,
    );
    add(
        "duplicate op spelled with an escape",
        Admin,
        admin_post(
            b"/v1/credentials/batch",
            &auth_w,
            br#"{"operations":[{"op":"suspend","credential_id":"c1","reason":"x","\u006fp":"revoke"}]}"#,
        ),
        dup,
    );
    add(
        "duplicate operations array",
        Admin,
        admin_post(
            b"/v1/credentials/batch",
            &auth_w,
            br#"{"operations":[],"operations":[{"op":"revoke","credential_id":"c1","reason":"x"}]}"#,
        ),
        dup,
    );
    add(
        "duplicate credential_id in a registration",
        Admin,
        admin_post(
            b"/v1/credentials",
            &auth_w,
            br#"{"credential_id":"d1","kind":"physical","credential_id":"d2"}"#,
        ),
        dup,
    );
    add(
        "duplicate reason in a revocation",
        Admin,
        admin_post(
            b"/v1/credentials/c1/revoke",
            &auth_w,
            br#"{"reason":"a","reason":"b"}"#,
        ),
        dup,
    );
    add(
        "duplicate hold in a suspension",
        Admin,
        admin_post(
            b"/v1/credentials/c1/suspend",
            &auth_w,
            br#"{"reason":"a","hold":"loss","hold":"court"}"#,
        ),
        dup,
    );
    add(
        "duplicate new id in a reissue",
        Admin,
        admin_post(
            b"/v1/credentials/c1/reissue",
            &auth_w,
            br#"{"new_credential_id":"n1","reason":"a","new_credential_id":"n2"}"#,
        ),
        dup,
    );
    add(
        "duplicate purpose in a list creation",
        Admin,
        admin_post(b"/v1/lists", &auth_a, br#"{"purpose":"x","purpose":"y"}"#),
        dup,
    );

    // Batch bodies are counted while they are read (issue 21, item 6).
    add(
        "10,001 empty items in an admin batch",
        Admin,
        admin_post(
            b"/v1/credentials/batch",
            &auth_w,
            format!("{{\"operations\":[{}]}}", vec!["{}"; 10_001].join(",")).as_bytes(),
        ),
        Problem(413, "too-large"),
    );
    add(
        "2.8 million empty items in an admin batch",
        Admin,
        admin_post(
            b"/v1/credentials/batch",
            &auth_w,
            format!("{{\"operations\":[{}]}}", vec!["{}"; 2_790_000].join(",")).as_bytes(),
        ),
        Problem(413, "too-large"),
    );
    add(
        "4 million values in one admin batch item",
        Admin,
        admin_post(
            b"/v1/credentials/batch",
            &auth_w,
            format!(
                "{{\"operations\":[{{\"op\":\"revoke\",\"credential_id\":\"c1\",\"reason\":\"x\",\"x\":[{}]}}]}}",
                vec!["0"; 4_000_000].join(",")
            )
            .as_bytes(),
        ),
        Problem(413, "too-large"),
    );

    // Format characters in free text (issue 21, item 9): 400, naming the field.
    for (name, c) in [
        ("RLO", '\u{202E}'),
        ("LRE", '\u{202A}'),
        ("RLI", '\u{2067}'),
        ("PDI", '\u{2069}'),
        ("RLM", '\u{200F}'),
        ("ALM", '\u{061C}'),
        ("ZWSP", '\u{200B}'),
        ("BOM", '\u{FEFF}'),
        ("line separator", '\u{2028}'),
    ] {
        let reason = format!("found{c}card");
        add(
            &format!("{name} in a revocation reason"),
            Admin,
            admin_post(
                b"/v1/credentials/c1/revoke",
                &auth_w,
                serde_json::json!({ "reason": reason })
                    .to_string()
                    .as_bytes(),
            ),
            Problem(400, "bad-item"),
        );
    }
    add(
        "RLO escaped in a suspension reason",
        Admin,
        admin_post(
            b"/v1/credentials/c1/suspend",
            &auth_w,
            br#"{"reason":"lost \u202e draC"}"#,
        ),
        Problem(400, "bad-item"),
    );
    add(
        "LRI in a request id",
        Admin,
        admin_post(
            b"/v1/credentials/c1/revoke",
            &auth_w,
            "{\"reason\":\"x\",\"request_id\":\"r\u{2066}1\"}".as_bytes(),
        ),
        Problem(400, "bad-item"),
    );
    add(
        "RLO in a registration reason",
        Admin,
        admin_post(
            b"/v1/credentials",
            &auth_w,
            "{\"credential_id\":\"f1\",\"kind\":\"physical\",\"reason\":\"\u{202E}x\"}".as_bytes(),
        ),
        Problem(400, "bad-item"),
    );
    add(
        "RLO in a reissue reason",
        Admin,
        admin_post(
            b"/v1/credentials/c1/reissue",
            &auth_w,
            "{\"new_credential_id\":\"f2\",\"reason\":\"\u{202E}x\"}".as_bytes(),
        ),
        Problem(400, "bad-item"),
    );
    add(
        "RLO in a batch item's reason",
        Admin,
        admin_post(
            b"/v1/credentials/batch",
            &auth_w,
            "{\"operations\":[{\"op\":\"revoke\",\"credential_id\":\"c1\",\"reason\":\"\u{202E}x\"}]}"
                .as_bytes(),
        ),
        Problem(422, "batch-invalid"),
    );

    // Pools (issue 21, item 4): a write token cannot create one.
    add(
        "registration in a pool nobody created",
        Admin,
        admin_post(
            b"/v1/credentials",
            &auth_w,
            br#"{"credential_id":"p1","kind":"physical","purpose":"new-pool"}"#,
        ),
        Problem(422, "unknown-pool"),
    );
    add(
        "batch registration in a pool nobody created",
        Admin,
        admin_post(
            b"/v1/credentials/batch",
            &auth_w,
            br#"{"operations":[{"op":"register","credential_id":"p1","kind":"physical","purpose":"new-pool"}]}"#,
        ),
        Problem(422, "batch-invalid"),
    );

    // Tokens on every issuer route: missing, malformed, wrong scheme, wrong, not ASCII,
    // insufficient scope, over-long.
    let long = format!("Bearer {}", "t".repeat(20 * 1024));
    for (method, template, scope) in ROUTES {
        let path = template
            .replace("{list_id}", "a")
            .replace("{credential_id}", "c1");
        let route = format!("{method} {template}");
        let body: &[u8] = if *method == "POST" { b"{}" } else { b"" };
        let with = |auth: Option<&[u8]>| {
            let mut hs: Vec<(&str, &[u8])> = vec![json];
            if let Some(a) = auth {
                hs.push(("authorization", a));
            }
            raw(method, path.as_bytes(), &hs, body)
        };
        let unauthorized = Problem(401, "unauthorized");
        add(
            &format!("{route}: no token"),
            Admin,
            with(None),
            unauthorized,
        );
        add(
            &format!("{route}: bare scheme"),
            Admin,
            with(Some(b"Bearer")),
            unauthorized,
        );
        add(
            &format!("{route}: two tokens"),
            Admin,
            with(Some(format!("Bearer {WRITER} {ADMIN}").as_bytes())),
            unauthorized,
        );
        add(
            &format!("{route}: Basic scheme"),
            Admin,
            with(Some(b"Basic YWRtaW46YWRtaW4=")),
            unauthorized,
        );
        add(
            &format!("{route}: wrong token"),
            Admin,
            with(Some(b"Bearer wrong-token-0123456789abcdef")),
            unauthorized,
        );
        add(
            &format!("{route}: token not ASCII"),
            Admin,
            with(Some(format!("Bearer {ADMIN}\u{e9}").as_bytes())),
            unauthorized,
        );
        add(
            &format!("{route}: 20 KiB token"),
            Admin,
            with(Some(long.as_bytes())),
            Problem(431, "headers-too-large"),
        );
        let weaker = match scope {
            Scope::Read => None,
            Scope::Write => Some(READER),
            Scope::Admin => Some(WRITER),
        };
        if let Some(t) = weaker {
            add(
                &format!("{route}: insufficient scope"),
                Admin,
                with(Some(format!("Bearer {t}").as_bytes())),
                Problem(403, "forbidden"),
            );
        }
    }
    // Hardening round two (issue 21, item 7): HTTP conformance at the edges, on both planes.
    let no_host = |path: &[u8]| {
        let mut r = Vec::new();
        r.extend_from_slice(b"GET ");
        r.extend_from_slice(path);
        r.extend_from_slice(b" HTTP/1.1\r\nConnection: close\r\n\r\n");
        r
    };
    for (plane, path) in [(Public, &b"/statuses/a/7"[..]), (Admin, b"/readyz")] {
        add("no Host", plane, no_host(path), Problem(400, "bad-host"));
        add(
            "two Host fields",
            plane,
            raw("GET", path, &[("host", b"other")], b""),
            Problem(400, "bad-host"),
        );
        let mut bad = no_host(path);
        bad.splice(
            bad.len() - 2..bad.len() - 2,
            b"Host: a b\r\n".iter().copied(),
        );
        add("invalid Host", plane, bad, Problem(400, "bad-host"));
        add(
            "unsupported transfer coding before chunked",
            plane,
            raw(
                "GET",
                path,
                &[("transfer-encoding", b"gzip, chunked")],
                b"0\r\n\r\n",
            ),
            Problem(501, "unsupported-transfer-encoding"),
        );
        let hundred_and_one: Vec<(&str, &[u8])> = vec![("x-f", b"1"); 101];
        add(
            "101 header fields under the byte limit",
            plane,
            raw("GET", path, &hundred_and_one, b""),
            Problem(431, "headers-too-large"),
        );
    }
    add(
        "HTTP/1.0 without Host is fine",
        Public,
        b"GET /statuses/a/7 HTTP/1.0\r\n\r\n".to_vec(),
        Status(200),
    );
    add(
        "gzip-encoded batch body",
        Public,
        raw(
            "POST",
            b"/statuses/a",
            &[json, ("content-encoding", b"gzip")],
            br#"{"idx":[1]}"#,
        ),
        Problem(415, "unsupported-content-encoding"),
    );
    add(
        "gzip-encoded admin body",
        Admin,
        register_with(
            &[("content-encoding", b"gzip")],
            br#"{"credential_id":"c9","kind":"physical"}"#,
        ),
        Problem(415, "unsupported-content-encoding"),
    );
    add(
        "two Authorization fields",
        Admin,
        raw(
            "GET",
            b"/v1/lists",
            &[
                ("authorization", auth_r.as_bytes()),
                ("authorization", auth_a.as_bytes()),
            ],
            b"",
        ),
        Problem(400, "repeated-field"),
    );
    add(
        "percent-encoded time parameter",
        Public,
        get(b"/statuslists/a?%74ime=1700000000"),
        Problem(501, "history-not-supported"),
    );
    add(
        "percent-encoded time parameter, every byte",
        Public,
        get(b"/statuslists/a?%74%69%6d%65=1700000000"),
        Problem(501, "history-not-supported"),
    );
    for (plane, path, auth) in [
        (Public, &b"/statuses/a"[..], None),
        (Admin, b"/v1/credentials/batch", Some(auth_w.as_bytes())),
    ] {
        let mut h: Vec<(&str, &[u8])> = vec![
            json,
            ("expect", b"100-continue"),
            ("content-length", b"99999999"),
        ];
        if let Some(a) = auth {
            h.push(("authorization", a));
        }
        add(
            "Expect: 100-continue over the body limit",
            plane,
            raw("POST", path, &h, b""),
            Problem(413, "too-large"),
        );
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_requests_get_precise_answers_and_leave_the_server_up() {
    let dir = TempDir::new("bad-input");
    let srv = server(&dir).await;
    let rss_before = vm_rss_kib();
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let addr = match case.plane {
            Public => srv.public_addr,
            Admin => srv.admin_addr,
        };
        let result = match exchange(addr, case.raw.clone()).await {
            Ok(answer) => check(&answer, case.expect),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            failures.push(format!(
                "{} ({:?}): want {:?}, {e}",
                case.name, case.plane, case.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} bad-input cases answered as documented", cases.len());
    // Still up, still right.
    let (s, _, body) = get(&format!("http://{}/statuses/a/7", srv.public_addr), &[]).await;
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("SUSPENDED"));
    assert_eq!(status(srv.admin_addr, "/readyz").await, 200);
    rss_grew_little_since(rss_before);
    srv.stop().await;
}

/// Headers trickled one byte at a time past the 1 s header read timeout: the connection is
/// closed, on both planes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_headers_are_cut_off_on_both_planes() {
    let dir = TempDir::new("loris");
    let srv = server(&dir).await;
    for addr in [srv.public_addr, srv.admin_addr] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let started = Instant::now();
        let mut closed = false;
        let mut buf = [0u8; 256];
        for byte in head.iter().chain(std::iter::repeat(&b'a')).take(200) {
            if s.write_all(&[*byte]).await.is_err() {
                closed = true;
                break;
            }
            match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                // hyper may answer 408 before closing.
                Ok(Ok(_)) | Err(_) => {}
            }
        }
        let elapsed = started.elapsed();
        assert!(closed, "{addr}: a 20 s trickle was never cut off");
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
            "{addr}: cut off after {elapsed:?}"
        );
    }
    assert_eq!(status(srv.public_addr, "/statuses/a/7").await, 200);
    srv.stop().await;
}

/// Reads until the server closes `s` or `limit` passes; the time it took, or `None` if the
/// connection was still open at `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at((started + limit).into(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Issue 21, finding 1: a connection that never sends a byte was never closed (the header read
/// timeout only started at the first byte), nor was one that stopped inside the HTTP/2 preface
/// or right after it. Each is now closed after the 1 s header read timeout, on both planes.
/// Fixed in c7ff940.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_silent_connections_were_never_closed() {
    let dir = TempDir::new("silent");
    let srv = server(&dir).await;
    let openings: [(&str, &[u8]); 5] = [
        ("nothing at all", b""),
        ("half a request line", b"GET /statuses/a"),
        ("half the HTTP/2 preface", b"PRI * HTTP/2.0\r\n"),
        (
            "the HTTP/2 preface alone",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ),
        (
            "the HTTP/2 preface and half a frame header",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
        ),
    ];
    for addr in [srv.public_addr, srv.admin_addr] {
        let mut held = Vec::new();
        for (what, bytes) in openings {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(bytes).await.unwrap();
            held.push((what, s));
        }
        for (what, mut s) in held {
            let took = closed_within(&mut s, Duration::from_secs(5)).await;
            let took = took.unwrap_or_else(|| panic!("{addr}: {what}: still open after 5 s"));
            assert!(
                took < Duration::from_secs(3),
                "{addr}: {what}: closed after {took:?}"
            );
        }
    }
    let closed =
        crate::support::metric(srv.admin_addr, "statusd_connections_timed_out_total").await;
    // hyper's own header timer may close the half request line first; the other four per plane
    // have no timer but the first-request deadline.
    assert!(closed >= 8.0, "{closed} connections counted as timed out");
    assert_eq!(status(srv.public_addr, "/statuses/a/7").await, 200);
    srv.stop().await;
}

/// Issue 21, finding 2: an admin request body that never arrives was a hang; it now gets the
/// public batch lookup's read timeout (408), and both planes still answer afterwards.
/// Fixed in c7ff940.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_admin_bodies_that_never_arrived_hung() {
    let dir = TempDir::new("admin-body");
    let srv = server(&dir).await;
    let auth = format!("Bearer {WRITER}");
    for (addr, path, with_auth) in [
        (srv.admin_addr, &b"/v1/credentials"[..], true),
        (srv.public_addr, b"/statuses/a", false),
    ] {
        let mut h: Vec<(&str, &[u8])> = vec![
            ("content-type", b"application/json"),
            ("content-length", b"40"),
        ];
        if with_auth {
            h.push(("authorization", auth.as_bytes()));
        }
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&raw("POST", path, &h, b"")).await.unwrap();
        s.write_all(b"{\"credential_id\"").await.unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .unwrap_or_else(|_| panic!("{addr}: a body that never arrives is still waited for"))
            .unwrap();
        let a = parse(&out);
        check(&a, Expect::Problem(408, "body-timeout")).unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert!(started.elapsed() >= Duration::from_millis(900));
    }
    srv.stop().await;
}

/// 1,000 concurrent streams on one HTTP/2 connection (the h2 client queues what the server's
/// 256-stream limit does not admit yet): every one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_http2_streams_on_one_connection_are_all_answered() {
    let dir = TempDir::new("h2-streams");
    let srv = server(&dir).await;
    let tcp = TcpStream::connect(srv.public_addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // One answered request first: the server's SETTINGS (and its 256-stream limit) precede it,
    // so the client then queues what the limit does not admit instead of racing the SETTINGS
    // (on a loaded machine the flood went out first and streams past 256 were refused).
    let mut first = send.clone().ready().await.unwrap();
    let req = hyper::Request::get("http://localhost/statuses/a/7")
        .body(())
        .unwrap();
    let (resp, _) = first.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let mut send = send.ready().await.unwrap();
            let req = hyper::Request::get("http://localhost/statuses/a/7")
                .body(())
                .unwrap();
            let (resp, _) = send.send_request(req, true).unwrap();
            let resp = resp.await.unwrap();
            let status = resp.status();
            let mut body = resp.into_body();
            let mut n = 0;
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                n += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            (status, n)
        }));
    }
    let results = tokio::time::timeout(Duration::from_secs(60), async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
    .await
    .expect("1,000 streams answered within 60 s");
    assert!(results.iter().all(|(s, n)| *s == 200 && *n > 0));
    srv.stop().await;
}

/// Raw HTTP/2 frames, for clients that ignore the server's settings.
mod frames {
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const GOAWAY: u8 = 7;
    pub const REFUSED_STREAM: u32 = 7;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Preface and SETTINGS granting response bodies no window (`INITIAL_WINDOW_SIZE` 0).
    pub fn preface() -> Vec<u8> {
        let mut v = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        v.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]));
        v
    }

    /// `GET path` as an HPACK block of indexed and literal fields, END_STREAM | END_HEADERS.
    pub fn get_headers(stream: u32, path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 9]);
        block.extend_from_slice(b"localhost");
        frame(HEADERS, 0x5, stream, &block)
    }

    pub fn rst(stream: u32) -> Vec<u8> {
        frame(RST_STREAM, 0, stream, &8u32.to_be_bytes())
    }

    /// What came back on one connection.
    #[derive(Debug, Default)]
    pub struct Seen {
        pub headers: usize,
        pub refused: usize,
        pub resets: usize,
        pub goaway: Option<u32>,
        pub closed: bool,
    }
}

/// Reads frames until `done` says so, the server closes, or 3 s pass without a frame. The
/// server's first SETTINGS is acknowledged.
async fn read_frames(s: &mut TcpStream, done: impl Fn(&frames::Seen) -> bool) -> frames::Seen {
    use frames::*;
    let mut seen = Seen::default();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match kind {
                HEADERS => seen.headers += 1,
                RST_STREAM => {
                    seen.resets += 1;
                    if u32::from_be_bytes(payload[..4].try_into().unwrap()) == REFUSED_STREAM {
                        seen.refused += 1;
                    }
                }
                GOAWAY => seen.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap())),
                SETTINGS if flags & 1 == 0 => {
                    let _ = s.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                }
                _ => {}
            }
        }
        if done(&seen) {
            return seen;
        }
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                seen.closed = true;
                return seen;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return seen,
        }
    }
}

/// A client that opens 1,000 streams at once, ignoring the server's 256-stream limit, and
/// grants no window so answered streams stay open: the streams over the limit are refused,
/// the rest answered; and a rapid-reset flood (HEADERS then RST_STREAM, 10,000 times) is met
/// with GOAWAY. The server keeps serving others throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_floods_and_rapid_resets_are_refused() {
    use frames::*;
    let dir = TempDir::new("h2-abuse");
    let srv = server(&dir).await;
    let rss_before = vm_rss_kib();

    let mut s = TcpStream::connect(srv.public_addr).await.unwrap();
    let mut flood = preface();
    for i in 0..1000u32 {
        flood.extend(get_headers(2 * i + 1, "/statuslists/a"));
    }
    s.write_all(&flood).await.unwrap();
    let seen = read_frames(&mut s, |seen| {
        seen.headers + seen.refused >= 1000 || seen.goaway.is_some()
    })
    .await;
    println!("1,000 streams at once: {seen:?}");
    // The server's SETTINGS_MAX_CONCURRENT_STREAMS is 256: exactly that many are answered
    // (and held, for lack of window), every later one is refused, the connection survives.
    assert_eq!(
        (seen.headers, seen.refused, seen.goaway),
        (256, 744, None),
        "{seen:?}"
    );
    assert_eq!(
        status(srv.public_addr, "/statuses/a/7").await,
        200,
        "others are served while the flood's streams are held"
    );
    drop(s);

    let mut s = TcpStream::connect(srv.public_addr).await.unwrap();
    let mut flood = preface();
    for i in 0..10_000u32 {
        flood.extend(get_headers(2 * i + 1, "/statuses/a/7"));
        flood.extend(rst(2 * i + 1));
    }
    let _ = s.write_all(&flood).await;
    let seen = read_frames(&mut s, |seen| seen.goaway.is_some()).await;
    println!("rapid reset: {seen:?}");
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    drop(s);

    assert_eq!(status(srv.public_addr, "/statuses/a/7").await, 200);
    rss_grew_little_since(rss_before);
    srv.stop().await;
}

/// Issuer request bodies are limited: 64 KiB for single operations, 8 MiB for batches. A body
/// of exactly the limit is read; one byte more is 413 `too-large`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_are_size_limited() {
    use statusd::admin::api::{MAX_BATCH_BODY, MAX_BODY};
    let dir = TempDir::new("admin-limits");
    let srv = server(&dir).await;
    let auth = format!("Bearer {WRITER}");
    let padded = |json: &str, len: usize| {
        let mut v = json.as_bytes().to_vec();
        v.resize(len, b' ');
        v
    };
    let post = |path: &'static str, body: Vec<u8>| {
        raw(
            "POST",
            path.as_bytes(),
            &[
                ("authorization", auth.as_bytes()),
                ("content-type", b"application/json"),
            ],
            &body,
        )
    };
    let registration = r#"{"credential_id":"limit-1","kind":"physical"}"#;
    let cases = [
        (
            "single at the limit",
            post("/v1/credentials", padded(registration, MAX_BODY)),
            Expect::Status(201),
        ),
        (
            "single over the limit",
            post("/v1/credentials", padded(registration, MAX_BODY + 1)),
            Expect::Problem(413, "too-large"),
        ),
        (
            "action over the limit",
            post(
                "/v1/credentials/c1/suspend",
                padded(r#"{"reason":"x"}"#, MAX_BODY + 1),
            ),
            Expect::Problem(413, "too-large"),
        ),
        (
            "batch at the limit",
            post(
                "/v1/credentials/batch",
                padded(r#"{"operations":[]}"#, MAX_BATCH_BODY),
            ),
            Expect::Status(200),
        ),
        (
            "batch over the limit",
            post(
                "/v1/credentials/batch",
                padded(r#"{"operations":[]}"#, MAX_BATCH_BODY + 1),
            ),
            Expect::Problem(413, "too-large"),
        ),
    ];
    for (name, request, want) in cases {
        let answer = exchange(srv.admin_addr, request).await.unwrap();
        if let Err(e) = check(&answer, want) {
            panic!("{name}: want {want:?}, {e}");
        }
    }
    srv.stop().await;
}

/// Runs the real binary with `STATUSD_LOG=debug`, performs issuer operations (and failed
/// authentications), stops it, and searches everything it logged for the tokens, the credential
/// ids and the reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_credential_ids_and_reasons_never_reach_the_logs() {
    use crate::support::request;
    use bytes::Bytes;
    use hyper::Method;
    use std::process::Stdio;

    const WRONG: &str = "wrong-token-SECRET-0123456789abcdef";
    const CRED: &str = "cred-SECRET-7731";
    const CHILD: &str = "cred-SECRET-7732";
    const NEXT: &str = "cred-SECRET-7733";
    const REASON: &str = "reason-SECRET-lost-wallet";
    let dir = TempDir::new("log-secrets");
    let tokens = dir.0.join("tokens");
    std::fs::write(
        &tokens,
        format!("issuance write {WRITER}\naudit read {READER}\nops admin {ADMIN}\n"),
    )
    .unwrap();
    {
        // A list in the store keeps --demo from seeding its large demo lists.
        let store = statusd::store::embedded::EmbeddedStore::open(&dir.0).unwrap();
        crate::support::seed_list(&store, "other", Bits::Two, 1024, &[]).await;
    }
    let mut served = crate::support::Served::start(
        crate::support::serve_demo()
            .args(["--list-size", "131072", "--data-dir"])
            .arg(&dir.0)
            .arg("--admin-tokens")
            .arg(&tokens)
            .env("STATUSD_LOG", "debug")
            .stdout(Stdio::null()),
    );
    let admin = served.admin.clone();
    let base = format!("http://{admin}");
    let call = |token: &'static str, method: Method, path: String, body: Option<String>| {
        let url = format!("{base}{path}");
        async move {
            let auth = format!("Bearer {token}");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            request(method, &url, &headers, body.map(Bytes::from))
                .await
                .0
        }
    };
    let reason = format!(r#"{{"reason":"{REASON}"}}"#);
    let steps = [
        (
            WRITER,
            Method::POST,
            "/v1/credentials".to_owned(),
            Some(format!(
                r#"{{"credential_id":"{CRED}","kind":"physical","reason":"{REASON}"}}"#
            )),
            201,
        ),
        (
            WRITER,
            Method::POST,
            "/v1/credentials".to_owned(),
            Some(format!(
                r#"{{"credential_id":"{CHILD}","kind":"mobile","parent":"{CRED}"}}"#
            )),
            201,
        ),
        (
            WRITER,
            Method::POST,
            format!("/v1/credentials/{CRED}/suspend"),
            Some(reason.clone()),
            200,
        ),
        (
            WRITER,
            Method::POST,
            format!("/v1/credentials/{CRED}/reinstate"),
            Some(reason.clone()),
            200,
        ),
        (
            WRITER,
            Method::POST,
            "/v1/credentials/batch".to_owned(),
            Some(format!(
                r#"{{"operations":[{{"op":"suspend","credential_id":"{CHILD}","reason":"{REASON}"}}]}}"#
            )),
            200,
        ),
        (
            WRITER,
            Method::POST,
            format!("/v1/credentials/{CRED}/reissue"),
            Some(format!(
                r#"{{"new_credential_id":"{NEXT}","reason":"{REASON}"}}"#
            )),
            200,
        ),
        (
            READER,
            Method::GET,
            format!("/v1/credentials/{CRED}/audit"),
            None,
            200,
        ),
        (
            READER,
            Method::POST,
            format!("/v1/credentials/{NEXT}/revoke"),
            Some(reason.clone()),
            403,
        ),
        (
            WRONG,
            Method::GET,
            format!("/v1/credentials/{CRED}"),
            None,
            401,
        ),
        (
            WRITER,
            Method::POST,
            format!("/v1/credentials/{NEXT}/revoke"),
            Some(reason.clone()),
            200,
        ),
        (
            ADMIN,
            Method::GET,
            format!("/v1/credentials/{NEXT}"),
            None,
            200,
        ),
    ];
    for (token, method, path, body, want) in steps {
        let what = format!("{method} {path}");
        let got = call(token, method, path, body).await;
        assert_eq!(got.as_u16(), want, "{what}");
    }
    assert!(served.stop().success());
    let mut log = std::mem::take(&mut served.startup);
    log.extend(served.log.iter());
    let log = log.join("\n");
    assert!(
        log.contains("issuer operation"),
        "operations are logged:\n{log}"
    );
    assert!(log.contains("DEBUG"), "debug logging was on:\n{log}");
    for secret in [WRITER, READER, ADMIN, WRONG, "SECRET"] {
        assert!(!log.contains(secret), "{secret:?} reached the log:\n{log}");
    }
}

/// The admin listener holds the issuer API: a non-loopback address is refused (exit 64, the
/// flag, the variable and the way out named) unless `--admin-allow-public`.
#[test]
fn the_admin_listener_refuses_public_addresses_without_the_flag() {
    let dir = TempDir::new("admin-public");
    let run = |extra: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = crate::support::statusd();
        cmd.args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir.0)
            .args(extra);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    for (extra, env, addr) in [
        (&["--admin-listen", "0.0.0.0:0"][..], None, "0.0.0.0:0"),
        (
            &["--admin-listen", "192.0.2.1:9090"][..],
            None,
            "192.0.2.1:9090",
        ),
        (
            &[][..],
            Some(("STATUSD_ADMIN_LISTEN", "[::]:9090")),
            "[::]:9090",
        ),
    ] {
        let out = run(extra, env);
        assert_eq!(out.status.code(), Some(64), "{addr}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim_end(),
            format!(
                "statusd: invalid configuration: --admin-listen (STATUSD_ADMIN_LISTEN): {addr} is \
                 not a loopback address; the admin plane holds the issuer API, so binding it \
                 elsewhere needs --admin-allow-public"
            ),
        );
    }
    for allow in [
        run(
            &[
                "--admin-listen",
                "0.0.0.0:0",
                "--admin-allow-public",
                "--check-config",
            ],
            None,
        ),
        run(
            &["--admin-listen", "0.0.0.0:0", "--check-config"],
            Some(("STATUSD_ADMIN_ALLOW_PUBLIC", "true")),
        ),
        run(&["--admin-listen", "[::1]:0", "--check-config"], None),
    ] {
        assert!(
            allow.status.success(),
            "{}",
            String::from_utf8_lossy(&allow.stderr)
        );
    }
}
