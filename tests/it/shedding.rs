//! Load shedding end to end: past `--max-inflight` requests in flight, the public plane answers
//! 503 `overloaded` with `Retry-After: 1` at once, the admin plane keeps answering, and service
//! resumes when the held requests finish or their clients go away.
//!
//! The public plane answers from memory in microseconds, so requests are held in flight the two
//! ways they really stay there: batch lookups whose body arrives slowly (the response future is
//! pending) and HTTP/2 streams whose client grants no flow-control window (the response body is
//! waiting to be sent).

use crate::support::{get, problem, start_with, TempDir};
use bytes::Bytes;
use hyper::StatusCode;
use statusd::status::Bits;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "admin-token-0123456789abcdefgh";
const BATCH: &[u8] = br#"{"idx":[7,9]}"#;

/// A server with list `s` (a W3C-sized list, so its token body is a few hundred bytes) and an
/// admin token, shedding past `max` requests in flight.
async fn server(dir: &TempDir, max: &str) -> statusd::app::Running {
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, format!("ops admin {ADMIN}\n")).unwrap();
    start_with(
        &dir.0,
        &[("s", Bits::Two, 1 << 17, vec![(7, 2)])],
        &[
            "--max-inflight",
            max,
            "--admin-tokens",
            tokens.to_str().unwrap(),
        ],
    )
    .await
}

/// A batch lookup whose body stops after three bytes: in flight until [`finish`] or drop.
async fn slow_batch(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /statuses/s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        BATCH.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&BATCH[..3]).await.unwrap();
    s
}

async fn finish(mut s: TcpStream) -> String {
    s.write_all(&BATCH[3..]).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("held request answered")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls the lookup until it answers `want` (the server sees held requests asynchronously).
async fn until(url: &str, want: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(url, &[]).await.0 != want {
        assert!(Instant::now() < deadline, "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_shed(url: &str) {
    let started = Instant::now();
    let (s, h, body) = get(url, &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "shedding took {:?}",
        started.elapsed()
    );
    assert_eq!(h["retry-after"], "1");
    let p = problem(s, &h, &body);
    assert_eq!(p["type"], "urn:statusd:problem:overloaded");
}

async fn admin_still_answers(admin: &str) {
    let (s, _, _) = get(&format!("{admin}/readyz"), &[]).await;
    assert_eq!(s, StatusCode::OK, "/readyz while the public plane sheds");
    let auth = format!("Bearer {ADMIN}");
    let (s, _, body) = get(&format!("{admin}/v1/lists"), &[("authorization", &auth)]).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

fn shed_total(metrics: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(metrics);
    text.lines()
        .find_map(|l| l.strip_prefix("statusd_requests_shed_total "))
        .expect("the shed counter is exported")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_batch_bodies_fill_the_limit_and_the_next_request_is_shed() {
    let dir = TempDir::new("shed-h1");
    let srv = server(&dir, "4").await;
    let lookup = format!("http://{}/statuses/s/7", srv.public_addr);
    let admin = format!("http://{}", srv.admin_addr);
    until(&lookup, StatusCode::OK).await;

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(slow_batch(srv.public_addr).await);
    }
    until(&lookup, StatusCode::SERVICE_UNAVAILABLE).await;
    for _ in 0..3 {
        assert_shed(&lookup).await;
    }
    admin_still_answers(&admin).await;

    // Two held requests complete normally; two clients go away mid-body. Both release.
    let answer = finish(held.pop().unwrap()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""status":"SUSPENDED""#), "{answer}");
    let answer = finish(held.pop().unwrap()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    until(&lookup, StatusCode::OK).await;
    // All four slots are free again: four more held requests fit, the fifth is shed.
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(slow_batch(srv.public_addr).await);
    }
    until(&lookup, StatusCode::SERVICE_UNAVAILABLE).await;
    for s in again {
        assert!(finish(s).await.starts_with("HTTP/1.1 200"));
    }
    until(&lookup, StatusCode::OK).await;

    let (_, _, metrics) = get(&format!("{admin}/metrics"), &[]).await;
    assert!(shed_total(&metrics) >= 4, "shed requests are counted");
    srv.stop().await;
}

/// An HTTP/2 connection whose client grants response bodies no window: every answered stream
/// stays in flight until the client resets it.
async fn h2_no_window(addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

async fn h2_get(
    send: &h2::client::SendRequest<Bytes>,
    path: &str,
) -> hyper::Response<h2::RecvStream> {
    let mut send = send.clone().ready().await.unwrap();
    let req = hyper::Request::get(format!("http://localhost{path}"))
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("response head")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_without_window_and_pending_bodies_count_until_reset() {
    let dir = TempDir::new("shed-h2");
    let srv = server(&dir, "4").await;
    let lookup = format!("http://{}/statuses/s/7", srv.public_addr);
    let admin = format!("http://{}", srv.admin_addr);
    until(&lookup, StatusCode::OK).await;

    let send = h2_no_window(srv.public_addr).await;
    // Three answered streams whose bodies wait for window.
    let mut held = Vec::new();
    for _ in 0..3 {
        let resp = h2_get(&send, "/statuslists/s").await;
        assert_eq!(resp.status(), StatusCode::OK);
        held.push(resp);
    }
    // And one batch lookup whose body never ends: its response future is pending.
    let mut ready = send.clone().ready().await.unwrap();
    let req = hyper::Request::post("http://localhost/statuses/s")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (pending, mut body) = ready.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(&BATCH[..3]), false)
        .unwrap();

    until(&lookup, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_shed(&lookup).await;
    // A fifth stream on the same connection is shed too: its head arrives at once.
    let resp = h2_get(&send, "/statuses/s/7").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    admin_still_answers(&admin).await;

    // Resetting the pending batch drops its response future: one slot comes back.
    drop((pending, body));
    until(&lookup, StatusCode::OK).await;
    // Resetting the streams that wait for window drops their bodies: the rest come back.
    drop(held);
    drop(resp);
    let mut answered = Vec::new();
    for _ in 0..3 {
        let r = h2_get(&send, "/statuslists/s").await;
        assert_eq!(r.status(), StatusCode::OK, "slots released by resets");
        answered.push(r);
    }
    drop((answered, send));
    srv.stop().await;
}

/// Issue 21, finding 1: silent sockets up to the connection limit locked every verifier out of
/// the public plane, and the admin plane's `/livez` with it. At the limit a new connection now
/// displaces the oldest one that has not sent a request: real requests are served at once, and
/// the silent sockets are closed after the header read timeout in any case. Fixed in c7ff940.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_silent_sockets_at_the_connection_limit_locked_out_verifiers_and_livez() {
    let dir = TempDir::new("silent-limit");
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, format!("ops admin {ADMIN}\n")).unwrap();
    let srv = start_with(
        &dir.0,
        &[("s", Bits::Two, 1 << 17, vec![(7, 2)])],
        &[
            "--max-connections",
            "16",
            "--header-read-timeout",
            "2",
            "--admin-tokens",
            tokens.to_str().unwrap(),
        ],
    )
    .await;
    let lookup = format!("http://{}/statuses/s/7", srv.public_addr);
    let livez = format!("http://{}/livez", srv.admin_addr);
    let mut silent = Vec::new();
    for addr in [srv.public_addr, srv.admin_addr] {
        for _ in 0..16 {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Well before the silent sockets time out, both planes answer real requests.
    let started = Instant::now();
    for _ in 0..5 {
        let (s, _, body) = get(&lookup, &[]).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(get(&livez, &[]).await.0, StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered only after {:?}",
        started.elapsed()
    );
    let displaced =
        crate::support::metric(srv.admin_addr, "statusd_connections_displaced_total").await;
    // At least one per plane (a closed client connection frees its slot for the next one).
    assert!(displaced >= 2.0, "{displaced} connections displaced");
    // Connections serving requests are never displaced: 16 held batch lookups fill the public
    // limit, and the 17th connection is refused instead.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(slow_batch(srv.public_addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(srv.public_addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /statuses/s/7 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut out)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a connection past a limit of busy ones was served: {:?}",
        String::from_utf8_lossy(&out)
    );
    for s in held {
        assert!(finish(s).await.starts_with("HTTP/1.1 200"));
    }
    // And every silent socket has been closed by now (displaced or timed out).
    for mut s in silent {
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "a silent socket is still open"
        );
    }
    srv.stop().await;
}
