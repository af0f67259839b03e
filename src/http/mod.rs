//! The public plane: status lists, W3C credentials, per-credential lookups, aggregation, JWKS.
//!
//! [`Public::respond`] is a pure function of (request head, current snapshot): one
//! `SnapshotStore::load`, a route `match` on the path, and refcount bumps of prebuilt bodies and
//! headers. Only the batch lookup reads a body. Nothing here logs request paths: a lookup path
//! names the credential being verified.
//!
//! Load shedding: every request takes a [`Slot`] (one atomic counter, no lock) that lives in
//! its response body until hyper drops it, so a request counts as in flight until its last byte
//! is handed to the connection: HTTP/2 streams waiting for flow-control window and batch
//! lookups whose body arrives slowly count, answered lookups do not. Past `--max-inflight`, a
//! request is answered 503 `overloaded` at once, from a prebuilt response.

pub mod negotiate;

use crate::metrics::{Metrics, Route};
use crate::problem::Problem;
use crate::routes::{Target, LIST_OFFERS, VC11_OFFERS, VC_OFFERS};
use crate::snapshot::{Aging, ListSnapshot, Representation, Snapshot, SnapshotStore};
use crate::status::{w3c::Purpose, Status};
use crate::store::MAX_ID_LEN;
use crate::wire::{body_bytes, check_header_size, head, strict_json};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Most indices one batch lookup may ask for.
pub const MAX_BATCH: usize = 1000;
/// Largest batch lookup body: 1,000 ten-digit indices with separators fit comfortably.
pub const MAX_BATCH_BODY: usize = 16 * 1024;

static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
const VARY_LIST: HeaderValue = HeaderValue::from_static("Accept, Accept-Encoding");
const VARY_ACCEPT: HeaderValue = HeaderValue::from_static("Accept");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
const EXPOSE: HeaderValue = HeaderValue::from_static("ETag, Last-Modified, Cache-Control");
const GZIP: HeaderValue = HeaderValue::from_static("gzip");
const JSON: HeaderValue = HeaderValue::from_static(crate::routes::JSON);
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// Settings of the public plane that are not part of the snapshot.
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
            max_inflight: crate::config::DEFAULT_MAX_INFLIGHT,
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
    /// `"s0"` … `"s255"`: the ETag of a lookup is its status value (the URL fixes the rest).
    lookup_etags: Vec<HeaderValue>,
    /// Requests holding a [`Slot`]: from `call` until their response body is dropped.
    inflight: AtomicUsize,
    /// The 503 `overloaded` answer, built once so shedding costs no formatting.
    overloaded: (HeaderMap, Bytes),
}

/// One request counted in [`Inner::inflight`]; dropping it (with the response body, or with
/// the response future of a request that never finished) releases the count.
pub struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
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
        let lookup_etags = (0..=255u16)
            .map(|v| static_value(format!("\"s{v}\"")))
            .collect();
        let (parts, body) = Problem::Overloaded.response().into_parts();
        let overloaded = (parts.headers, body_bytes(body));
        Public {
            inner: Arc::new(Inner {
                snapshots,
                metrics,
                settings,
                lookup_etags,
                inflight: AtomicUsize::new(0),
                overloaded,
            }),
        }
    }

    /// Requests in flight now (see [`Slot`]).
    pub fn inflight(&self) -> usize {
        self.inner.inflight.load(Ordering::Relaxed)
    }

    /// A slot for one more request, or `None` when `max_inflight` are in flight. Wait-free: a
    /// refused attempt briefly over-counts, which can only shed a concurrent request early.
    pub fn try_enter(&self) -> Option<Slot> {
        let before = self.inner.inflight.fetch_add(1, Ordering::Relaxed);
        if before >= self.inner.settings.max_inflight {
            self.inner.inflight.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(self.inner.clone()))
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

    /// Answers a request that needs no body: every route but the batch lookup.
    pub fn respond(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> (Route, Resp) {
        let snap = self.inner.snapshots.load();
        self.inner.route(&snap, method, path, query, headers)
    }

    /// Answers a batch lookup (`POST /statuses/{list_id}`) whose body has been read: the
    /// service's work once the body is in, without a socket (benches).
    pub fn respond_batch(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> Resp {
        batch_target(path, headers)
            .and_then(|id| self.inner.batch_answer(id, body))
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

/// A list-valued request field, repeated fields combined ([`head::list_field`]).
fn get(headers: &HeaderMap, name: HeaderName) -> Option<std::borrow::Cow<'_, [u8]>> {
    head::list_field(headers, name)
}

/// A path segment that is a valid list id.
fn list_id(seg: &str) -> Result<&str, Problem> {
    let ok = !seg.is_empty()
        && seg.len() <= MAX_ID_LEN
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(seg)
    } else {
        Err(Problem::BadListId)
    }
}

/// A canonical decimal index: digits only, no leading zeros, at most 10 digits (u32 range is
/// checked against the list size afterwards).
pub fn parse_index(seg: &str) -> Result<u64, Problem> {
    let b = seg.as_bytes();
    if b.is_empty()
        || b.len() > 10
        || !b.iter().all(u8::is_ascii_digit)
        || (b.len() > 1 && b[0] == b'0')
    {
        return Err(Problem::BadIndex);
    }
    Ok(b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Appends `n` in decimal without allocating beyond `out`.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// One lookup result as JSON: `{"list_id":…,"idx":…,"status":…,"value":…}`.
fn push_lookup(out: &mut Vec<u8>, id: &str, idx: u64, status: Status) {
    out.extend_from_slice(b"{\"list_id\":\"");
    out.extend_from_slice(id.as_bytes()); // ids are [A-Za-z0-9_-]: nothing to escape
    out.extend_from_slice(b"\",\"idx\":");
    push_u64(out, idx);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(status.name().as_bytes());
    out.extend_from_slice(b"\",\"value\":");
    push_u64(out, status.0.into());
    out.push(b'}');
}

/// A 200 response with room for `headers` header fields, so inserting them never reallocates.
/// Sized per route: a map for 16 fields is a 2.7 KB allocation, past the allocator's per-thread
/// cache, where a lookup's 4 fields fit in 700 bytes.
fn response(body: Bytes, headers: usize) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.headers_mut() = HeaderMap::with_capacity(headers);
    r
}

/// Exact length of [`push_lookup`]'s output, so the body is allocated once at its final size
/// (a `Vec` whose length equals its capacity becomes `Bytes` without another allocation).
fn lookup_len(id: &str, idx: u64, status: Status) -> usize {
    let digits = |n: u64| n.checked_ilog10().map_or(1, |l| l as usize + 1);
    r#"{"list_id":"","idx":,"status":"","value":}"#.len()
        + id.len()
        + digits(idx)
        + status.name().len()
        + digits(status.0.into())
}

/// The metrics label of a request for `target`.
fn metric_route(target: Target<'_>) -> Route {
    match target {
        Target::Aggregation => Route::Aggregation,
        Target::StatusList(_) => Route::StatusList,
        Target::Bitstring(..) => Route::Bitstring,
        Target::StatusList2021(..) => Route::StatusList2021,
        Target::Lookup(..) => Route::Lookup,
        Target::Batch(_) => Route::BatchLookup,
        Target::Jwks => Route::Jwks,
        Target::Unmatched => Route::Unmatched,
    }
}

fn cors(h: &mut HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE);
}

impl Inner {
    fn route(
        &self,
        snap: &Snapshot,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> (Route, Resp) {
        let target = Target::parse(path);
        let route = metric_route(target);
        let resp = if let Err(p) = check_header_size(headers) {
            Err(p)
        } else if *method == Method::OPTIONS && route != Route::Unmatched {
            return (Route::Preflight, preflight(route));
        } else {
            self.dispatch(snap, target, method, query, headers)
        };
        (route, resp.unwrap_or_else(|p| p.response()))
    }

    fn dispatch(
        &self,
        snap: &Snapshot,
        target: Target<'_>,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Resp, Problem> {
        let read_only = |allow| {
            if *method == Method::GET || *method == Method::HEAD {
                Ok(())
            } else {
                Err(Problem::MethodNotAllowed { allow })
            }
        };
        match target {
            Target::Unmatched => Err(Problem::NoRoute),
            Target::Aggregation => {
                read_only("GET, HEAD, OPTIONS")?;
                ready(snap)?;
                Ok(self.simple(&snap.aggregation, headers))
            }
            Target::Jwks => {
                read_only("GET, HEAD, OPTIONS")?;
                ready(snap)?;
                Ok(self.simple(&snap.jwks, headers))
            }
            Target::StatusList(id) => {
                read_only("GET, HEAD, OPTIONS")?;
                let id = list_id(id)?;
                if head::has_query_param(query, "time") {
                    return Err(Problem::HistoryNotSupported);
                }
                let list = lookup_list(snap, id, false)?;
                signed(list)?;
                let chosen =
                    negotiate::choose_media(get(headers, header::ACCEPT).as_deref(), LIST_OFFERS)
                        .ok_or(Problem::NotAcceptable {
                        offered: LIST_OFFERS,
                    })?;
                let a = &list.artefacts;
                let rep = [&a.jwt, &a.cwt, &a.roaring][chosen];
                Ok(self.list_response(list, rep, headers))
            }
            // The two W3C views differ only in which artefact and which media types they offer.
            Target::Bitstring(id, purpose) | Target::StatusList2021(id, purpose) => {
                read_only("GET, HEAD, OPTIONS")?;
                let id = list_id(id)?;
                let list = lookup_list(snap, id, true)?;
                let purpose: Purpose = purpose.parse().map_err(|_| Problem::UnknownPurpose)?;
                signed(list)?;
                let (rep, offered) = if matches!(target, Target::Bitstring(..)) {
                    (list.artefacts.w3c(purpose), VC_OFFERS)
                } else {
                    (list.artefacts.sl2021(purpose), VC11_OFFERS)
                };
                let rep = rep
                    .filter(|r| !r.body.is_empty())
                    .ok_or(Problem::UnknownPurpose)?;
                negotiate::choose_media(get(headers, header::ACCEPT).as_deref(), offered)
                    .ok_or(Problem::NotAcceptable { offered })?;
                Ok(self.list_response(list, rep, headers))
            }
            Target::Lookup(id, idx) => {
                read_only("GET, HEAD, OPTIONS")?;
                let id = list_id(id)?;
                let idx = parse_index(idx)?;
                let list = lookup_list(snap, id, false)?;
                let status = list.list.get(idx).map_err(|_| Problem::IndexOutOfRange {
                    size: list.list.size(),
                })?;
                Ok(self.lookup_response(id, idx, status, headers))
            }
            Target::Batch(_) => Err(Problem::MethodNotAllowed {
                allow: "POST, OPTIONS",
            }),
        }
    }

    fn lookup_response(&self, id: &str, idx: u64, status: Status, headers: &HeaderMap) -> Resp {
        let etag = &self.lookup_etags[usize::from(status.0)];
        if let Some(inm) = get(headers, header::IF_NONE_MATCH).as_deref() {
            if negotiate::none_match(inm, etag.as_bytes()) {
                let mut r = response(Bytes::new(), 3);
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                let h = r.headers_mut();
                h.insert(header::ETAG, etag.clone());
                h.insert(
                    header::CACHE_CONTROL,
                    self.settings.lookup_cache_control.clone(),
                );
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
                return r;
            }
        }
        let mut body = Vec::with_capacity(lookup_len(id, idx, status));
        push_lookup(&mut body, id, idx, status);
        debug_assert_eq!(body.len(), body.capacity());
        let mut r = response(Bytes::from(body), 4);
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, JSON);
        h.insert(header::ETAG, etag.clone());
        h.insert(
            header::CACHE_CONTROL,
            self.settings.lookup_cache_control.clone(),
        );
        // The lookup's ETag only matters to caches, so no Expose-Headers: fewer bytes per answer.
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
        r
    }

    /// A list representation with caching headers, gzip when accepted, 304 when revalidated.
    fn list_response(
        &self,
        list: &ListSnapshot,
        rep: &Representation,
        headers: &HeaderMap,
    ) -> Resp {
        let gz = rep
            .gzip
            .as_ref()
            .filter(|_| negotiate::accepts_gzip(get(headers, header::ACCEPT_ENCODING).as_deref()));
        let (body, etag) = match gz {
            Some((b, e)) => (b, e),
            None => (&rep.body, &rep.etag),
        };
        let not_modified = get(headers, header::IF_NONE_MATCH)
            .as_deref()
            .is_some_and(|inm| negotiate::none_match(inm, etag.as_bytes()));
        // A 304 carries 4 fields, a 200 up to 10.
        let mut r = if not_modified {
            response(Bytes::new(), 4)
        } else {
            response(body.clone(), 10)
        };
        if not_modified {
            *r.status_mut() = StatusCode::NOT_MODIFIED;
        }
        let h = r.headers_mut();
        let a = &list.artefacts;
        h.insert(header::ETAG, etag.clone());
        h.insert(header::CACHE_CONTROL, a.cache_control.clone());
        h.insert(
            header::VARY,
            if rep.gzip.is_some() {
                VARY_LIST
            } else {
                VARY_ACCEPT
            },
        );
        // A 304 carries what RFC 9110 §15.4.5 requires for cache updates (ETag, Cache-Control,
        // Vary) and the CORS grant a browser checks; the rest stays with the stored 200.
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
        if !not_modified {
            h.insert(header::CONTENT_TYPE, rep.content_type.clone());
            if gz.is_some() {
                h.insert(header::CONTENT_ENCODING, GZIP);
            }
            h.insert(header::LAST_MODIFIED, a.last_modified.clone());
            h.insert(SURROGATE_KEY.clone(), a.surrogate_key.clone());
            h.insert(CACHE_TAG.clone(), a.surrogate_key.clone());
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE);
        }
        r
    }

    /// Aggregation and JWKS: small JSON documents with an ETag.
    fn simple(&self, rep: &Representation, headers: &HeaderMap) -> Resp {
        let not_modified = get(headers, header::IF_NONE_MATCH)
            .as_deref()
            .is_some_and(|inm| negotiate::none_match(inm, rep.etag.as_bytes()));
        let mut r = if not_modified {
            response(Bytes::new(), 4)
        } else {
            response(rep.body.clone(), 5)
        };
        if not_modified {
            *r.status_mut() = StatusCode::NOT_MODIFIED;
        }
        let h = r.headers_mut();
        if !not_modified {
            h.insert(header::CONTENT_TYPE, rep.content_type.clone());
        }
        h.insert(header::ETAG, rep.etag.clone());
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        cors(h);
        r
    }

    async fn batch(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        match self.batch_inner(req).await {
            Ok(r) => r,
            Err(p) => p.response(),
        }
    }

    async fn batch_inner(&self, req: Request<Incoming>) -> Result<Resp, Problem> {
        let (parts, body) = req.into_parts();
        let id = batch_target(parts.uri.path(), &parts.headers)?.to_owned();
        let bytes = head::read_body(
            body,
            &parts.headers,
            MAX_BATCH_BODY,
            self.settings.body_timeout,
        )
        .await?;
        self.batch_answer(&id, &bytes)
    }

    /// The batch lookup once its body is read: parse, look up every index, one JSON body.
    fn batch_answer(&self, id: &str, bytes: &[u8]) -> Result<Resp, Problem> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Batch {
            idx: Vec<u64>,
        }
        // Strict JSON (a duplicate key is refused), the indices counted as they are read.
        let limits = strict_json::Limits {
            items: Some(strict_json::Items {
                key: "idx",
                max: MAX_BATCH,
                what: "a batch lookup",
                // Each index is parsed as a number at once; nothing to bound.
                max_values: usize::MAX,
                values_what: "an index",
            }),
        };
        let batch: Batch = strict_json::from_slice(bytes, limits)
            .map_err(|e| e.problem("expected {\"idx\":[non-negative integers]}"))?;
        if batch.idx.len() > MAX_BATCH {
            return Err(Problem::TooLarge {
                what: "a batch lookup",
                limit: MAX_BATCH,
            });
        }
        let snap = self.snapshots.load_full();
        let list = lookup_list(&snap, id, false)?;
        let mut out = Vec::with_capacity(32 + batch.idx.len() * 56);
        out.extend_from_slice(b"{\"list_id\":\"");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\",\"statuses\":[");
        for (n, &idx) in batch.idx.iter().enumerate() {
            let status = list.list.get(idx).map_err(|_| Problem::IndexOutOfRange {
                size: list.list.size(),
            })?;
            if n > 0 {
                out.push(b',');
            }
            push_lookup(&mut out, id, idx, status);
        }
        out.extend_from_slice(b"]}");
        let mut r = response(Bytes::from(out), 4);
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, JSON);
        h.insert(header::CACHE_CONTROL, NO_STORE);
        cors(h);
        Ok(r)
    }
}

/// What a batch lookup's head must pass before its body is read: header size, the list id in
/// `POST /statuses/{list_id}`, and a JSON content type (if one is declared).
fn batch_target<'p>(path: &'p str, headers: &HeaderMap) -> Result<&'p str, Problem> {
    check_header_size(headers)?;
    let id = list_id(path.split('/').nth(2).unwrap_or(""))?;
    if head::declares_json(headers) == Some(false) {
        return Err(Problem::UnsupportedMediaType);
    }
    Ok(id)
}

fn ready(snap: &Snapshot) -> Result<(), Problem> {
    if snap.generation == 0 {
        Err(Problem::NotReady)
    } else {
        Ok(())
    }
}

fn lookup_list<'a>(
    snap: &'a Snapshot,
    id: &str,
    w3c: bool,
) -> Result<&'a Arc<ListSnapshot>, Problem> {
    ready(snap)?;
    snap.list(id).ok_or(Problem::UnknownList { w3c })
}

/// The list's signed artefacts may be served: not withheld while signing is paused.
fn signed(list: &ListSnapshot) -> Result<(), Problem> {
    if list.artefacts.aging == Aging::Withheld {
        return Err(Problem::SigningUnavailable);
    }
    Ok(())
}

fn preflight(route: Route) -> Resp {
    let mut r = response(Bytes::new(), 5);
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(if route == Route::BatchLookup {
            "POST, OPTIONS"
        } else {
            "GET, HEAD, OPTIONS"
        }),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Accept, Accept-Encoding, If-None-Match, If-Modified-Since, Content-Type",
        ),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    r
}

/// The response future: ready at once for everything but the batch lookup, which reads a body.
pub enum ResponseFuture {
    Ready(Option<Resp>),
    Batch(Pin<Box<dyn Future<Output = Resp> + Send>>),
}

/// Wraps a response future with the route's metrics and the request's [`Slot`], which moves
/// into the response body when the response is ready.
pub struct Observed {
    inner: ResponseFuture,
    route: Route,
    start: Instant,
    /// `None` once the response has been returned.
    slot: Option<Slot>,
}

impl Future for Observed {
    type Output = Result<Response<Body>, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let resp = match &mut self.inner {
            ResponseFuture::Ready(r) => r.take().expect("polled after completion"),
            ResponseFuture::Batch(f) => match f.as_mut().poll(cx) {
                Poll::Ready(r) => r,
                Poll::Pending => return Poll::Pending,
            },
        };
        let slot = self.slot.take().expect("polled after completion");
        let len = hyper::body::Body::size_hint(resp.body())
            .exact()
            .unwrap_or(0);
        slot.0.metrics.observe(
            self.route,
            resp.status().as_u16(),
            self.start.elapsed(),
            len,
        );
        Poll::Ready(Ok(resp.map(|bytes| Body {
            bytes,
            _slot: Some(slot),
        })))
    }
}

/// The future of [`Public::call`]: a routed request, or a shed one answered at once.
pub enum PublicFuture {
    Observed(Observed),
    Shed(Option<Response<Body>>),
}

impl Future for PublicFuture {
    type Output = Result<Response<Body>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            PublicFuture::Observed(o) => Pin::new(o).poll(cx),
            PublicFuture::Shed(r) => Poll::Ready(Ok(r.take().expect("polled after completion"))),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Public {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = PublicFuture;

    fn call(&self, req: Request<Incoming>) -> PublicFuture {
        let Some(slot) = self.try_enter() else {
            self.inner.metrics.requests_shed.inc();
            return PublicFuture::Shed(Some(self.overloaded()));
        };
        let start = Instant::now();
        if let Err(p) = head::check(req.version(), req.headers()) {
            return PublicFuture::Observed(Observed {
                inner: ResponseFuture::Ready(Some(p.response())),
                route: Route::Unmatched,
                start,
                slot: Some(slot),
            });
        }
        let is_batch = req.method() == Method::POST
            && req.uri().path().starts_with("/statuses/")
            && req.uri().path()[10..].find('/').is_none();
        let (route, inner) = if is_batch {
            (
                Route::BatchLookup,
                ResponseFuture::Batch(Box::pin(self.inner.clone().batch(req))),
            )
        } else {
            let (route, r) = self.respond(
                req.method(),
                req.uri().path(),
                req.uri().query(),
                req.headers(),
            );
            (route, ResponseFuture::Ready(Some(r)))
        };
        PublicFuture::Observed(Observed {
            inner,
            route,
            start,
            slot: Some(slot),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_parsing_is_canonical() {
        assert_eq!(parse_index("0"), Ok(0));
        assert_eq!(parse_index("1048575"), Ok(1_048_575));
        assert_eq!(parse_index("9999999999"), Ok(9_999_999_999));
        for bad in [
            "",
            "01",
            "-1",
            "+1",
            "1e3",
            "12345678901",
            "0x10",
            " 1",
            "１",
        ] {
            assert_eq!(parse_index(bad), Err(Problem::BadIndex), "{bad:?}");
        }
    }

    #[test]
    fn lookup_len_is_exact() {
        for (id, idx, v) in [
            ("a", 0, 0),
            ("list-1", 9, 1),
            ("x", 10, 2),
            ("y", 1_048_575, 3),
            ("z", u64::from(u32::MAX), 255),
        ] {
            let mut out = Vec::new();
            push_lookup(&mut out, id, idx, Status(v));
            assert_eq!(out.len(), lookup_len(id, idx, Status(v)), "{id} {idx} {v}");
        }
    }

    #[test]
    fn lookup_json_is_exact() {
        let mut out = Vec::new();
        push_lookup(&mut out, "list-1", 1_048_575, Status::SUSPENDED);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"list_id":"list-1","idx":1048575,"status":"SUSPENDED","value":2}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["value"], 2);
    }

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
