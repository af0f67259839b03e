//! The public plane: status lists, W3C credentials, per-credential lookups, aggregation, JWKS.
//!
//! [`Public::respond`] is a pure function of (request head, current snapshot): one
//! `SnapshotStore::load`, one parse of the path ([`crate::routes::Target`]), a route `match`
//! (`route.rs`), and refcount bumps of prebuilt bodies and headers (`respond.rs`, where the
//! `If-None-Match` → 304 logic is written once). Only the batch lookup reads a body
//! (`batch.rs`). Nothing here logs request paths: a lookup path names the
//! credential being verified.
//!
//! This file holds the service: settings, load shedding, the response body and futures.
//!
//! Load shedding: every request takes a [`Slot`] (one atomic counter, no lock, in a cache line
//! of its own) that lives in its response body until hyper drops it, so a request counts as in flight until its last byte
//! is handed to the connection: HTTP/2 streams waiting for flow-control window and batch
//! lookups whose body arrives slowly count, answered lookups do not. Past `--max-inflight`, a
//! request is answered 503 `overloaded` at once, from a prebuilt response.

mod batch;
pub mod negotiate;
mod respond;
mod route;

pub use batch::{MAX_BATCH, MAX_BATCH_BODY};
pub use route::parse_index;

use crate::metrics::{Metrics, Route, Start};
use crate::problem::Problem;
use crate::routes::Target;
use crate::snapshot::SnapshotStore;
use crate::wire::{body_bytes, head};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Default of `--max-inflight`.
///
/// The public plane answers from memory in microseconds, so a healthy replica has few requests
/// in flight: at 100,000 requests/s and 1 ms from request to the last byte handed to the socket,
/// Little's law gives 100. What stays in flight longer are HTTP/2 streams whose client does not
/// read (their response waits for flow-control window) and batch lookups whose body arrives
/// slowly. 1,024 leaves ten times the healthy concurrency as headroom while bounding what those
/// can pin: at most 1,024 × (16 KiB batch body + ~70 KiB batch answer), under 90 MiB. It stays
/// far below `--max-connections` × 256 streams, so it is the limit that binds first.
pub const DEFAULT_MAX_INFLIGHT: usize = 1024;

/// Settings of the public plane that are not part of the snapshot (built by `config`).
#[derive(Clone, Debug)]
pub struct PublicSettings {
    /// `Cache-Control` of lookup responses.
    pub lookup_cache_control: HeaderValue,
    /// Requests in flight past which new ones are shed (`--max-inflight`).
    pub max_inflight: usize,
    /// Time a batch lookup has to send its body (`--header-read-timeout` again): a body
    /// trickled forever would otherwise hold its in-flight slot forever.
    pub body_timeout: Duration,
}

impl PublicSettings {
    pub fn new(lookup_max_age: Duration) -> Self {
        let cc = match lookup_max_age.as_secs() {
            0 => "no-store".to_owned(),
            s => format!("public, max-age={s}"),
        };
        PublicSettings {
            lookup_cache_control: static_value(cc),
            max_inflight: DEFAULT_MAX_INFLIGHT,
            body_timeout: Duration::from_secs(10),
        }
    }

    /// Gives batch lookups `timeout` to send their body.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Sheds requests past `max` in flight.
    pub fn with_max_inflight(mut self, max: std::num::NonZeroUsize) -> Self {
        self.max_inflight = max.get();
        self
    }
}

/// The public plane's hyper service. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Public {
    inner: Arc<Inner>,
}

struct Inner {
    snapshots: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    settings: PublicSettings,
    /// What a lookup answer is built from, per status value ([`respond::LookupAnswer`]).
    lookup_answers: Vec<respond::LookupAnswer>,
    /// Requests holding a [`Slot`]: from `call` until their response body is dropped.
    inflight: &'static Inflight,
    /// The 503 `overloaded` answer, built once so shedding costs no formatting.
    overloaded: (HeaderMap, Bytes),
}

/// The in-flight count, alone in its cache line: every request on every core adds to it and
/// takes from it. Leaked, one per [`Public`] (a server builds one), so that a [`Slot`] can
/// reach it without an `Arc` whose shared refcount every request would bump twice more.
#[repr(align(128))]
struct Inflight(AtomicUsize);

/// One request counted in the service's in-flight count; dropping it (with the response body, or with
/// the response future of a request that never finished) releases the count.
pub struct Slot(&'static Inflight);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The public plane's response body: prebuilt bytes, and the request's [`Slot`] until hyper
/// has taken the last of them (or the stream or connection is gone).
pub struct Body {
    bytes: Full<Bytes>,
    _slot: Option<Slot>,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.bytes).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.bytes.size_hint()
    }
}

type Resp = Response<Full<Bytes>>;

impl Public {
    pub fn new(
        snapshots: Arc<SnapshotStore>,
        metrics: Arc<Metrics>,
        settings: PublicSettings,
    ) -> Self {
        let (parts, body) = Problem::Overloaded.response().into_parts();
        let overloaded = (parts.headers, body_bytes(body));
        Public {
            inner: Arc::new(Inner {
                snapshots,
                metrics,
                lookup_answers: respond::lookup_answers(&settings.lookup_cache_control),
                settings,
                inflight: Box::leak(Box::new(Inflight(AtomicUsize::new(0)))),
                overloaded,
            }),
        }
    }

    /// Requests in flight now (see [`Slot`]).
    pub fn inflight(&self) -> usize {
        self.inner.inflight.0.load(Ordering::Relaxed)
    }

    /// A slot for one more request, or `None` when `max_inflight` are in flight. Wait-free: a
    /// refused attempt briefly over-counts, which can only shed a concurrent request early.
    pub fn try_enter(&self) -> Option<Slot> {
        let inflight = &self.inner.inflight.0;
        let before = inflight.fetch_add(1, Ordering::Relaxed);
        if before >= self.inner.settings.max_inflight {
            inflight.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(self.inner.inflight))
    }

    /// The 503 `overloaded` answer of a shed request.
    fn overloaded(&self) -> Response<Body> {
        let (headers, body) = &self.inner.overloaded;
        let mut r = Response::new(Body {
            bytes: Full::new(body.clone()),
            _slot: None,
        });
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        *r.headers_mut() = headers.clone();
        r
    }

    /// Answers a request that needs no body: every route but the batch lookup. Without a
    /// socket (benches, fuzzing): the head checks that need the HTTP version are the
    /// service's ([`head::check`]); this checks the header size.
    pub fn respond(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> (Route, Resp) {
        let target = Target::parse(path);
        let fields = match head::check_header_size(headers) {
            Ok(fields) => fields,
            Err(p) => return (route::metric_route(target), p.response()),
        };
        let snap = self.inner.snapshots.load();
        self.inner.route(&snap, method, target, query, fields)
    }

    /// Answers a batch lookup (`POST /statuses/{list_id}`) whose body has been read: the
    /// service's work once the body is in, without a socket (benches).
    pub fn respond_batch(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> Resp {
        let id = match Target::parse(path) {
            Target::Batch(id) => {
                head::check_header_size(headers).and_then(|_| batch::batch_target(id, headers))
            }
            _ => Err(Problem::NoRoute),
        };
        id.and_then(|id| self.inner.batch_answer(id, body))
            .unwrap_or_else(|p| p.response())
    }
}

/// A header value that clones without touching a shared refcount. Values built from a `String`
/// share one atomic refcount that every clone and drop bumps, and the lookup path clones its
/// `ETag` and `Cache-Control` from every worker thread: that refcount's cache line would bounce
/// between cores on every request. The string is leaked: a handful of bytes per server, for
/// values fixed for the server's life.
fn static_value(s: String) -> HeaderValue {
    HeaderValue::from_static(s.leak())
}

impl Inner {
    /// Counts a response of `route` in the metrics, its time from `start`, and hands it to
    /// hyper with the request's [`Slot`] in its body.
    fn finish(&self, route: Route, start: Start, resp: Resp, slot: Slot) -> Response<Body> {
        let len = hyper::body::Body::size_hint(resp.body())
            .exact()
            .unwrap_or(0);
        self.metrics
            .observe_since(route, resp.status().as_u16(), start, len);
        resp.map(|bytes| Body {
            bytes,
            _slot: Some(slot),
        })
    }
}

/// A batch lookup reading its body: counted in the metrics, with its [`Slot`] moved into the
/// response body, when the answer is ready.
pub struct Observed {
    inner: Pin<Box<dyn Future<Output = Resp> + Send>>,
    service: Arc<Inner>,
    start: Start,
    /// `None` once the response has been returned.
    slot: Option<Slot>,
}

impl Future for Observed {
    type Output = Result<Response<Body>, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let resp = std::task::ready!(self.inner.as_mut().poll(cx));
        let slot = self.slot.take().expect("polled after completion");
        Poll::Ready(Ok(self.service.finish(
            Route::BatchLookup,
            self.start,
            resp,
            slot,
        )))
    }
}

/// The future of `Public::call`: an answer already made (every route but the batch lookup,
/// and shed requests), or a batch lookup reading its body.
///
/// Answers are made, counted and wrapped in `call` itself: hyper polls the future at once, so
/// the time counted is the same, and the response is moved fewer times on its way out.
pub enum PublicFuture {
    Ready(Option<Response<Body>>),
    Observed(Observed),
}

impl Future for PublicFuture {
    type Output = Result<Response<Body>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            PublicFuture::Ready(r) => Poll::Ready(Ok(r.take().expect("polled after completion"))),
            PublicFuture::Observed(o) => Pin::new(o).poll(cx),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Public {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = PublicFuture;

    fn call(&self, req: Request<Incoming>) -> PublicFuture {
        let Some(slot) = self.try_enter() else {
            std::hint::cold_path();
            self.inner.metrics.requests_shed.inc();
            return PublicFuture::Ready(Some(self.overloaded()));
        };
        let start = self.inner.metrics.start();
        let fields = match head::check(req.version(), req.headers()) {
            Ok(fields) => fields,
            Err(p) => {
                std::hint::cold_path();
                let r = self
                    .inner
                    .finish(Route::Unmatched, start, p.response(), slot);
                return PublicFuture::Ready(Some(r));
            }
        };
        // The path is parsed once, here; the batch lookup's head is checked before its body
        // is read.
        let (route, r) = match Target::parse(req.uri().path()) {
            Target::Batch(id) if req.method() == Method::POST => {
                match batch::batch_target(id, req.headers()) {
                    Ok(id) => {
                        let id = id.to_owned();
                        return PublicFuture::Observed(Observed {
                            inner: Box::pin(self.inner.clone().batch(id, req)),
                            service: self.inner.clone(),
                            start,
                            slot: Some(slot),
                        });
                    }
                    Err(p) => (Route::BatchLookup, p.response()),
                }
            }
            target => {
                let snap = self.inner.snapshots.load();
                self.inner
                    .route(&snap, req.method(), target, req.uri().query(), fields)
            }
        };
        PublicFuture::Ready(Some(self.inner.finish(route, start, r, slot)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header;

    fn public(max_inflight: usize) -> Public {
        let mut settings = PublicSettings::new(Duration::from_secs(10));
        settings.max_inflight = max_inflight;
        Public::new(
            Arc::new(SnapshotStore::default()),
            Arc::new(Metrics::new()),
            settings,
        )
    }

    #[test]
    fn slots_are_bounded_and_released_on_drop() {
        let p = public(2);
        let a = p.try_enter().unwrap();
        let b = p.try_enter().unwrap();
        assert!(p.try_enter().is_none(), "a third request is shed");
        assert_eq!(p.inflight(), 2, "a refused attempt leaves no count behind");
        drop(a);
        let c = p.try_enter().unwrap();
        // A slot held by a response body is released with the body.
        let body = Body {
            bytes: Full::new(Bytes::from_static(b"x")),
            _slot: Some(c),
        };
        assert!(p.try_enter().is_none());
        drop(body);
        assert_eq!(p.inflight(), 1);
        drop(b);
        assert_eq!(p.inflight(), 0);
    }

    #[test]
    fn the_overloaded_answer_is_prebuilt_problem_json() {
        let r = public(1).overloaded();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let n = hyper::body::Body::size_hint(r.body()).exact().unwrap();
        assert!(n > 0);
        let bytes = body_bytes(r.into_body().bytes);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["type"], "urn:statusd:problem:overloaded");
    }
}
