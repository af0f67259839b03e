//! The admin plane: Prometheus metrics, liveness and readiness (unauthenticated), and the
//! issuer API ([`api`], behind bearer tokens). It listens on its own port, loopback by default,
//! never shared with the public plane. Routing is a plain `match`. Its command-line client
//! ([`client`]) and the bulk import built on it ([`import`]) live here too.

pub mod api;
pub mod client;
pub mod import;

use crate::metrics::{Metrics, Route};
use crate::problem::Problem;
use crate::snapshot::{Readiness, SnapshotStore, SyncState};
use crate::wire::head;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

/// The admin plane's hyper service.
#[derive(Clone)]
pub struct Admin {
    snapshots: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    sync: Arc<SyncState>,
    api: Option<Arc<api::Api>>,
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl Admin {
    pub fn new(snapshots: Arc<SnapshotStore>, metrics: Arc<Metrics>, sync: Arc<SyncState>) -> Self {
        Admin {
            snapshots,
            metrics,
            sync,
            api: None,
        }
    }

    /// Serves the issuer API as well.
    pub fn with_api(mut self, api: Arc<api::Api>) -> Self {
        self.api = Some(api);
        self
    }

    /// Refreshes the gauges that depend on the clock, then encodes every metric.
    fn metrics_body(&self) -> Vec<u8> {
        let snap = self.snapshots.load();
        if snap.generation > 0 {
            let age = SystemTime::now()
                .duration_since(snap.published_at)
                .map_or(0.0, |d| d.as_secs_f64());
            self.metrics.snapshot_age.set(age);
        }
        self.metrics.encode()
    }

    pub fn respond(&self, method: &Method, path: &str) -> (Route, Resp) {
        let get = *method == Method::GET || *method == Method::HEAD;
        match path {
            "/metrics" if get => {
                let mut r = Response::new(Full::new(Bytes::from(self.metrics_body())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                (Route::AdminMetrics, r)
            }
            "/livez" if get => (Route::AdminHealth, text(StatusCode::OK, "ok\n")),
            "/readyz" if get => {
                let resp = match self.sync.readiness(&self.snapshots) {
                    Readiness::Ready => text(StatusCode::OK, "ready\n"),
                    Readiness::Stale => Problem::Stale.response(),
                    Readiness::NotReady => Problem::NotReady.response(),
                };
                (Route::AdminHealth, resp)
            }
            "/metrics" | "/livez" | "/readyz" => (
                Route::AdminHealth,
                Problem::MethodNotAllowed { allow: "GET, HEAD" }.response(),
            ),
            _ => (Route::AdminApi, Problem::NoRoute.response()),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Admin {
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let start = self.metrics.start();
        let this = self.clone();
        Box::pin(async move {
            let checked = head::check(req.version(), req.headers())
                .and_then(|_| head::single(req.headers(), header::AUTHORIZATION, "Authorization"));
            let (route, resp) = if let Err(p) = checked {
                // Checked before any token is read: an over-long Authorization is refused as
                // such, on every route.
                let route = if req.uri().path().starts_with("/v1/") {
                    Route::AdminApi
                } else {
                    Route::AdminHealth
                };
                (route, p.response())
            } else if req.uri().path().starts_with("/v1/") {
                let resp = match &this.api {
                    Some(api) => api.handle(req).await,
                    None => None,
                };
                (
                    Route::AdminApi,
                    resp.unwrap_or_else(|| Problem::NoRoute.response()),
                )
            } else {
                this.respond(req.method(), req.uri().path())
            };
            let len = hyper::body::Body::size_hint(resp.body())
                .exact()
                .unwrap_or(0);
            this.metrics
                .observe_since(route, resp.status().as_u16(), start, len);
            Ok(resp)
        })
    }
}
