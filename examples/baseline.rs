//! Load-test baseline: the smallest hyper 1.x server that answers every request with one fixed
//! body. `loadtest/wrk-ab` runs it next to statusd so that statusd's throughput is read as a
//! ratio to "hyper on this machine, doing nothing", measured in the same run.
//!
//! To keep the comparison fair it uses what statusd uses: a default multi-thread tokio runtime
//! (`Builder::new_multi_thread().enable_all()`, one worker per core, as in `src/cli.rs`), the
//! hyper-util auto builder (HTTP/1.1 and HTTP/2 on one port) with the same HTTP/1 and HTTP/2
//! settings as `src/server.rs`, and TCP_NODELAY on every accepted stream. There is no router,
//! no metrics, no connection limit and no graceful drain.
//!
//! ```text
//! cargo run --release --example baseline -- --listen 127.0.0.1:8081 --body-file body.json \
//!     [--content-type application/json] [--etag '"abc"'] [--header 'Name: value']...
//! cargo run --release --example baseline -- --listen 127.0.0.1:8081 --body-size 60
//! ```
//!
//! With `--etag`, every 200 carries that `ETag`, and a request whose `If-None-Match` equals it
//! byte for byte gets an empty 304 with the same `ETag` (a plain comparison, no list parsing).
//! `--header` (repeatable) adds fixed response headers, to measure what header bytes cost.
//! `--post-body-file` answers POST requests with a second fixed body (the batch lookup answer
//! in `loadtest/run lookups`), so both servers send bodies of the same size for every request.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

struct Fixed {
    body: Bytes,
    /// Answer to POST requests; `body` when not given.
    post_body: Option<Bytes>,
    content_type: HeaderValue,
    etag: Option<HeaderValue>,
    extra: Vec<(HeaderName, HeaderValue)>,
}

impl Fixed {
    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(etag) = &self.etag {
            if req.headers().get(header::IF_NONE_MATCH) == Some(etag) {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                let h = r.headers_mut();
                h.insert(header::ETAG, etag.clone());
                for (k, v) in &self.extra {
                    h.insert(k.clone(), v.clone());
                }
                return r;
            }
        }
        let body = match &self.post_body {
            Some(b) if req.method() == hyper::Method::POST => b,
            _ => &self.body,
        };
        let mut r = Response::new(Full::new(body.clone()));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, self.content_type.clone());
        if let Some(etag) = &self.etag {
            h.insert(header::ETAG, etag.clone());
        }
        for (k, v) in &self.extra {
            h.insert(k.clone(), v.clone());
        }
        r
    }
}

struct Args {
    listen: SocketAddr,
    fixed: Fixed,
    header_read_timeout: Duration,
}

const USAGE: &str = "usage: baseline --listen ADDR (--body-file PATH | --body-size N) \
[--post-body-file PATH] [--content-type TYPE] [--etag ETAG] [--header 'Name: value']... [--header-read-timeout SECS]";

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut body = None;
    let mut post_body = None;
    let mut content_type = HeaderValue::from_static("application/octet-stream");
    let mut etag = None;
    let mut extra = Vec::new();
    let mut header_read_timeout = Duration::from_secs(10); // statusd's default
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => {
                listen = Some(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("--listen {value:?}: {e}"))?,
                )
            }
            "--body-file" => {
                let b = std::fs::read(&value).map_err(|e| format!("--body-file {value}: {e}"))?;
                body = Some(Bytes::from(b));
            }
            "--post-body-file" => {
                let b =
                    std::fs::read(&value).map_err(|e| format!("--post-body-file {value}: {e}"))?;
                post_body = Some(Bytes::from(b));
            }
            "--body-size" => {
                let n: usize = value
                    .parse()
                    .map_err(|e| format!("--body-size {value:?}: {e}"))?;
                body = Some(Bytes::from(vec![b'x'; n]));
            }
            "--content-type" => {
                content_type = HeaderValue::try_from(value.as_str())
                    .map_err(|e| format!("--content-type {value:?}: {e}"))?
            }
            "--etag" => {
                etag = Some(
                    HeaderValue::try_from(value.as_str())
                        .map_err(|e| format!("--etag {value:?}: {e}"))?,
                )
            }
            "--header" => {
                let (k, v) = value
                    .split_once(':')
                    .ok_or_else(|| format!("--header {value:?}: expected 'Name: value'"))?;
                let k = HeaderName::try_from(k.trim())
                    .map_err(|e| format!("--header {value:?}: {e}"))?;
                let v = HeaderValue::try_from(v.trim())
                    .map_err(|e| format!("--header {value:?}: {e}"))?;
                extra.push((k, v));
            }
            "--header-read-timeout" => {
                let s: u64 = value
                    .parse()
                    .map_err(|e| format!("--header-read-timeout {value:?}: {e}"))?;
                header_read_timeout = Duration::from_secs(s);
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        fixed: Fixed {
            body: body.ok_or("--body-file or --body-size is required")?,
            post_body,
            content_type,
            etag,
            extra,
        },
        header_read_timeout,
    })
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "baseline listening on {} ({} body bytes)",
        listener.local_addr()?,
        args.fixed.body.len()
    );
    // The very builder statusd's listeners use.
    let builder = statusd::server::builder(args.header_read_timeout);
    let fixed = Arc::new(args.fixed);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let fixed = fixed.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let resp = fixed.respond(&req);
            async move {
                // Read a request body to its end, as statusd's batch lookup does, so the
                // connection stays reusable and both servers do that work.
                if req.method() == hyper::Method::POST {
                    let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("baseline: {e}\n{USAGE}");
            std::process::exit(64);
        }
    };
    // statusd's runtime (src/cli.rs): default worker count, all drivers.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(args)) {
        eprintln!("baseline: {e}");
        std::process::exit(1);
    }
}
