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

mod support;

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

/// The bare hyper baseline of `loadtest/wrk-ab`: one fixed answer to every request.
#[derive(clap::Parser)]
#[command(group(clap::ArgGroup::new("body").required(true).args(["body_file", "body_size"])))]
struct Args {
    /// Address to listen on (port 0: the kernel picks one; the log line names it).
    #[arg(long)]
    listen: SocketAddr,
    /// The body of every answer (to GET, and to POST without --post-body-file).
    #[arg(long, value_name = "PATH", value_parser = support::file_bytes)]
    body_file: Option<Bytes>,
    /// A body of N bytes of 'x' instead of --body-file.
    #[arg(long, value_name = "N")]
    body_size: Option<usize>,
    /// The body of every answer to POST (the batch lookup answer).
    #[arg(long, value_name = "PATH", value_parser = support::file_bytes)]
    post_body_file: Option<Bytes>,
    #[arg(long, value_name = "TYPE", default_value = "application/octet-stream", value_parser = support::header_value)]
    content_type: HeaderValue,
    /// ETag of every 200; a byte-equal If-None-Match gets an empty 304.
    #[arg(long, value_parser = support::header_value)]
    etag: Option<HeaderValue>,
    /// A fixed response header, 'Name: value' (repeatable).
    #[arg(long = "header", value_name = "'Name: value'", value_parser = support::header)]
    extra: Vec<(HeaderName, HeaderValue)>,
    /// statusd's default.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = support::seconds)]
    header_read_timeout: Duration,
}

impl Args {
    fn fixed(&mut self) -> Fixed {
        Fixed {
            body: self
                .body_file
                .take()
                .unwrap_or_else(|| Bytes::from(vec![b'x'; self.body_size.unwrap_or(0)])),
            post_body: self.post_body_file.take(),
            content_type: self.content_type.clone(),
            etag: self.etag.take(),
            extra: std::mem::take(&mut self.extra),
        }
    }
}

async fn serve(mut args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let fixed = args.fixed();
    eprintln!(
        "baseline listening on {} ({} body bytes)",
        listener.local_addr()?,
        fixed.body.len()
    );
    // The very builder statusd's listeners use.
    let builder = statusd::server::builder(args.header_read_timeout);
    let fixed = Arc::new(fixed);
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
    let args = <Args as clap::Parser>::parse();
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
