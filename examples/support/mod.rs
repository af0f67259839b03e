//! Flag parsing shared by the load generators in `examples/` (each declares its flags with
//! clap's derive, the way `src/cli.rs` does, and takes its value parsers from here): the
//! loopback-only rule every load test keeps, durations in whole seconds, and the header and file
//! values of the baseline. Included with `mod support;`: Cargo builds only `examples/*.rs` and
//! `examples/*/main.rs` as examples, so this directory is not one.

// Each example uses the parsers it needs; the rest are unused in that build.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Whether a URL (`scheme://host...`) or `host:port` names this machine: load tests never send
/// to anything else.
fn is_loopback(target: &str) -> bool {
    let host = target.split_once("://").map_or(target, |(_, rest)| rest);
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

/// A loopback URL (`redis://127.0.0.1:6379`, `http://127.0.0.1:8080`).
pub fn loopback_url(s: &str) -> Result<String, String> {
    if is_loopback(s) {
        Ok(s.trim_end_matches('/').to_owned())
    } else {
        Err(format!("load tests target loopback only, not {s}"))
    }
}

/// A loopback socket address.
pub fn loopback_addr(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!("load tests target loopback only, not {addr}"))
    }
}

/// Whole seconds.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_secs)
        .map_err(|e| format!("{s:?}: {e} (whole seconds)"))
}

/// The whole content of a file.
pub fn file_bytes(path: &str) -> Result<bytes::Bytes, String> {
    std::fs::read(path)
        .map(bytes::Bytes::from)
        .map_err(|e| format!("{path}: {e}"))
}

/// A header value.
pub fn header_value(s: &str) -> Result<hyper::header::HeaderValue, String> {
    hyper::header::HeaderValue::try_from(s).map_err(|e| format!("{s:?}: {e}"))
}

/// `Name: value`.
pub fn header(s: &str) -> Result<(hyper::header::HeaderName, hyper::header::HeaderValue), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected 'Name: value'"))?;
    let name = hyper::header::HeaderName::try_from(k.trim()).map_err(|e| format!("{s:?}: {e}"))?;
    Ok((name, header_value(v.trim())?))
}

/// A number above zero.
pub fn positive(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be above zero".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// Polls a lookup URL every 2 ms until it answers SUSPENDED (`"value":2`), for up to 10 s after
/// `acked`: the time from `acked` until it did, `None` if it never did (write → visible).
pub async fn until_suspended<B>(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        B,
    >,
    url: &hyper::Uri,
    acked: Instant,
) -> Option<Duration>
where
    B: hyper::body::Body + Default + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt as _;
    while acked.elapsed() < Duration::from_secs(10) {
        if let Ok(resp) = client.get(url.clone()).await {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if body.windows(9).any(|w| w == b"\"value\":2") {
                return Some(acked.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}
