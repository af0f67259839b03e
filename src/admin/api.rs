//! The issuer API on the admin plane: `/v1/lists` and `/v1/credentials`, behind bearer
//! tokens. [`ROUTES`] is the route table (the OpenAPI document `docs/admin-api.yaml` is checked
//! against it); requests are parsed here, run by [`crate::issuer::Issuer`], and every failure
//! leaves as a [`Problem`]. Credential ids and reasons are never logged.

use crate::issuer::auth::{bearer, Caller, Scope, Tokens};
use crate::issuer::{
    check_purpose, last_number, HoldOp, Issuer, IssuerError, ItemError, ItemProblem, Operation,
    Outcome, ReissueOp, RevokeOp, MAX_BATCH,
};
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::runtime::BULK_MIN_ITEMS;
use crate::status::Bits;
use crate::store::{check_id, NewList, StoreError};
use crate::tls::ClientSubject;
use crate::wire::{head, strict_json};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// Largest body of a batch request (10,000 items of a few hundred bytes).
pub const MAX_BATCH_BODY: usize = 8 << 20;
/// Largest body of any other request.
pub const MAX_BODY: usize = 64 << 10;

/// Every issuer route: method, path template, scope needed.
pub const ROUTES: &[(&str, &str, Scope)] = &[
    ("GET", "/v1/lists", Scope::Read),
    ("POST", "/v1/lists", Scope::Admin),
    ("GET", "/v1/lists/{list_id}", Scope::Read),
    ("POST", "/v1/credentials", Scope::Write),
    ("POST", "/v1/credentials/batch", Scope::Write),
    ("GET", "/v1/credentials/{credential_id}", Scope::Read),
    ("GET", "/v1/credentials/{credential_id}/audit", Scope::Read),
    (
        "POST",
        "/v1/credentials/{credential_id}/suspend",
        Scope::Write,
    ),
    (
        "POST",
        "/v1/credentials/{credential_id}/reinstate",
        Scope::Write,
    ),
    (
        "POST",
        "/v1/credentials/{credential_id}/revoke",
        Scope::Write,
    ),
    (
        "POST",
        "/v1/credentials/{credential_id}/reissue",
        Scope::Write,
    ),
];

type Resp = Response<Full<Bytes>>;

/// The issuer API.
pub struct Api {
    issuer: Issuer,
    /// The admin tokens, replaced whole when the tokens file is reloaded (SIGHUP).
    tokens: arc_swap::ArcSwap<Tokens>,
    metrics: Arc<Metrics>,
    /// Time a request body has to arrive (`--header-read-timeout`, as on the public plane).
    body_timeout: std::time::Duration,
    /// Where batches of [`BULK_MIN_ITEMS`] or more run ([`crate::runtime::Lane::bulk`]), and the
    /// issuer they run with (its store's connections made on the lane); `None` runs them where
    /// they arrive, with [`Self::issuer`] (tests, tools without a server).
    bulk: Option<(tokio::runtime::Handle, Issuer)>,
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Resp {
    bytes_response(
        status,
        serde_json::to_vec(body).expect("responses serialise"),
    )
}

/// A JSON answer from its serialised bytes.
fn bytes_response(status: StatusCode, bytes: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Decodes `%XX` escapes of one path segment; `None` on a malformed escape or non-UTF-8.
fn percent_decode(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A matched route.
enum Route {
    Lists,
    List(String),
    Credentials,
    Batch,
    Credential(String),
    Audit(String),
    Action(String, &'static str),
}

fn route(path: &str) -> Option<Result<Route, Problem>> {
    let rest = path.strip_prefix("/v1/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    let decode = |s: &str| {
        percent_decode(s)
            .ok_or_else(|| Problem::BadBody("malformed percent-encoding in the path".into()))
    };
    Some(match segs.as_slice() {
        ["lists"] => Ok(Route::Lists),
        ["lists", id] => decode(id).map(Route::List),
        ["credentials"] => Ok(Route::Credentials),
        ["credentials", "batch"] => Ok(Route::Batch),
        ["credentials", id] => decode(id).map(Route::Credential),
        ["credentials", id, "audit"] => decode(id).map(Route::Audit),
        ["credentials", id, action @ ("suspend" | "reinstate" | "revoke" | "reissue")] => {
            let action: &'static str = match *action {
                "suspend" => "suspend",
                "reinstate" => "reinstate",
                "revoke" => "revoke",
                _ => "reissue",
            };
            decode(id).map(|id| Route::Action(id, action))
        }
        _ => return None,
    })
}

/// Body of `POST /v1/lists`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateList {
    list_id: Option<String>,
    purpose: String,
    bits: Option<u8>,
    size: Option<u32>,
}

/// Body of `POST /v1/credentials/batch`: the items are read one at a time and turned into
/// operations at once ([`Items`]), never held as a whole tree.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    operations: Items,
}

/// The operations of a batch and its bad items (0-based positions).
struct Items {
    ops: Vec<Operation>,
    invalid: Vec<(usize, ItemProblem)>,
}

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Items;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of operations")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Items, A::Error> {
                let mut items = Items {
                    ops: Vec::new(),
                    invalid: Vec::new(),
                };
                // One item's tree at a time, of at most 256 values (the first pass saw to it).
                while let Some(item) = seq.next_element::<Json>()? {
                    match serde_json::from_value::<Operation>(item) {
                        Ok(op) => items.ops.push(op),
                        Err(e) => items.invalid.push((
                            items.ops.len() + items.invalid.len(),
                            ItemProblem::new(ItemError::BadItem, format!("invalid operation: {e}")),
                        )),
                    }
                }
                Ok(items)
            }
        }
        d.deserialize_seq(V)
    }
}

/// What the first pass allows a batch body: [`MAX_BATCH`] items, counted as they are read, of
/// at most 256 JSON values each (an operation has at most 8; past 128, nesting fails first), so
/// that items can be read one at a time, each into a small tree.
pub const BATCH_LIMITS: strict_json::Limits = strict_json::Limits {
    items: Some(strict_json::Items {
        key: "operations",
        max: MAX_BATCH,
        what: "a batch",
        max_values: 256,
        values_what: "the number of JSON values in one operation",
    }),
};

/// Bodies of the per-credential actions: the operation without `credential_id`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    reason: String,
    hold: Option<String>,
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: String,
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReissueBody {
    new_credential_id: String,
    parent: Option<String>,
    reason: String,
    request_id: Option<String>,
    expires_at: Option<String>,
}

/// Every body of the issuer API is read here or in [`parse_batch`], through the strict parser
/// ([`strict_json`]: a duplicate key anywhere is 400 `duplicate-json-key`).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    strict_json::from_slice(body, strict_json::Limits::default())
        .map_err(|e| e.problem("invalid JSON body"))
}

/// Reads a batch body: a first pass refuses duplicate keys, more than [`MAX_BATCH`] items
/// (counted as they are read, before anything is built) and overgrown items
/// ([`BATCH_LIMITS`]); then every item is parsed before anything runs, so a malformed item
/// fails the whole batch with every bad item listed. Public for the fuzz targets and the
/// allocation test.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Operation>, Problem> {
    let batch: Batch =
        strict_json::from_slice(body, BATCH_LIMITS).map_err(|e| e.problem("invalid JSON body"))?;
    let Items { ops, invalid } = batch.operations;
    if invalid.is_empty() {
        Ok(ops)
    } else {
        Err(Problem::BatchInvalid(invalid))
    }
}

/// 404 for a credential id in the path (the id is not echoed).
fn unknown_credential() -> Problem {
    Problem::Issuer(ItemProblem::new(
        ItemError::UnknownCredential,
        "no credential with this id is registered",
    ))
}

fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::ListExists(id) => Problem::Issuer(ItemProblem::new(
            ItemError::ListExists,
            format!("list {id:?} already exists"),
        )),
        StoreError::InvalidId(_) | StoreError::Status(_) => {
            Problem::Issuer(ItemProblem::new(ItemError::BadItem, e.to_string()))
        }
        other => Problem::Issuer(ItemProblem::from(other)),
    }
}

impl Api {
    pub fn new(issuer: Issuer, tokens: Tokens, metrics: Arc<Metrics>) -> Self {
        Api {
            issuer,
            tokens: arc_swap::ArcSwap::from_pointee(tokens),
            metrics,
            body_timeout: std::time::Duration::from_secs(10),
            bulk: None,
        }
    }

    /// Runs batches of [`BULK_MIN_ITEMS`] or more on `lane` (the bulk lane's runtime) with
    /// `issuer` (this API's issuer writing through the lane's own connections).
    pub fn with_bulk_lane(mut self, lane: tokio::runtime::Handle, issuer: Issuer) -> Self {
        self.bulk = Some((lane, issuer));
        self
    }

    /// Gives request bodies `timeout` to arrive (408 after it).
    pub fn with_body_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Puts `tokens` in force for every request from now on (a reloaded tokens file).
    pub fn replace_tokens(&self, tokens: Tokens) {
        self.tokens.store(Arc::new(tokens));
    }

    /// Answers `/v1/…` requests; `None` for other paths.
    pub async fn handle(self: &Arc<Self>, req: Request<Incoming>) -> Option<Resp> {
        let route = route(req.uri().path())?;
        Some(match self.serve(route, req).await {
            Ok(r) => r,
            Err(p) => p.response(),
        })
    }

    fn authorise(&self, req: &Request<Incoming>, needed: Scope) -> Result<Who, Problem> {
        let tokens = self.tokens.load();
        if tokens.is_empty() {
            return Err(Problem::AdminDisabled);
        }
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| bearer(h.as_bytes()))
            .ok_or(Problem::Unauthorized)?;
        let caller = tokens.authenticate(token).ok_or(Problem::Unauthorized)?;
        if !caller.may(needed) {
            return Err(Problem::Forbidden {
                scope: needed.as_str(),
            });
        }
        Ok(Who {
            caller,
            client_subject: req.extensions().get::<ClientSubject>().cloned(),
        })
    }

    async fn body(&self, req: Request<Incoming>, limit: usize) -> Result<Bytes, Problem> {
        if head::declares_json(req.headers()) != Some(true) {
            return Err(Problem::UnsupportedMediaType);
        }
        let (parts, body) = req.into_parts();
        head::read_body(body, &parts.headers, limit, self.body_timeout).await
    }

    async fn serve(
        self: &Arc<Self>,
        route: Result<Route, Problem>,
        req: Request<Incoming>,
    ) -> Result<Resp, Problem> {
        let route = route?;
        let method = req.method().clone();
        let not_allowed = |allow: &'static str| Err(Problem::MethodNotAllowed { allow });
        match route {
            Route::Lists => match method {
                Method::GET => {
                    self.authorise(&req, Scope::Read)?;
                    let lists = self.issuer.lists().await.map_err(store_problem)?;
                    Ok(json_response(StatusCode::OK, &json!({ "lists": lists })))
                }
                Method::POST => {
                    let caller = self.authorise(&req, Scope::Admin)?;
                    let body: CreateList = parse(&self.body(req, MAX_BODY).await?)?;
                    self.create_list(&caller, body).await
                }
                _ => not_allowed("GET, POST"),
            },
            Route::List(id) => {
                if method != Method::GET {
                    return not_allowed("GET");
                }
                self.authorise(&req, Scope::Read)?;
                match self.issuer.list(&id).await.map_err(store_problem)? {
                    Some(l) => Ok(json_response(StatusCode::OK, &l)),
                    None => Err(Problem::UnknownList { w3c: false }),
                }
            }
            Route::Credentials => {
                if method != Method::POST {
                    return not_allowed("POST");
                }
                let caller = self.authorise(&req, Scope::Write)?;
                let op: Json = parse(&self.body(req, MAX_BODY).await?)?;
                let op = match op {
                    Json::Object(mut m) => {
                        if m.contains_key("op") {
                            return Err(Problem::BadBody(
                                "unknown field `op`: this route registers; send other operations to their own routes or to /v1/credentials/batch".into(),
                            ));
                        }
                        m.insert("op".into(), json!("register"));
                        Json::Object(m)
                    }
                    _ => return Err(Problem::BadBody("the body must be a JSON object".into())),
                };
                let op: Operation = serde_json::from_value(op)
                    .map_err(|e| Problem::BadBody(format!("invalid registration: {e}")))?;
                self.single(&caller, op).await
            }
            // `batch` is also a credential id like any other.
            Route::Batch if method == Method::GET => {
                Box::pin(self.serve(Ok(Route::Credential("batch".into())), req)).await
            }
            Route::Batch => {
                if method != Method::POST {
                    return not_allowed("GET, POST");
                }
                let caller = self.authorise(&req, Scope::Write)?;
                let minimal = prefers_minimal(req.headers());
                let body = self.body(req, MAX_BATCH_BODY).await?;
                let mut answer = match &self.bulk {
                    // A body that can hold a bulk batch is parsed on the lane too: parsing a
                    // launch import's 1,000 registrations on the admin threads held a CPU
                    // long enough to delay lookups (issue 16).
                    Some((lane, issuer)) if body.len() >= BULK_MIN_BODY => {
                        let (api, issuer) = (self.clone(), issuer.clone());
                        let run = lane.spawn(async move {
                            let ops = parse_batch(&body)?;
                            if ops.len() < BULK_MIN_ITEMS {
                                return Ok(Lane::Small(ops, caller));
                            }
                            let answer = api.batch(&issuer, &caller, ops, "bulk", minimal).await;
                            answer.map(Lane::Answered)
                        });
                        match run.await {
                            Ok(Ok(Lane::Answered(answer))) => answer,
                            Ok(Ok(Lane::Small(ops, caller))) => {
                                self.batch(&self.issuer, &caller, ops, "batch", minimal)
                                    .await?
                            }
                            Ok(Err(p)) => return Err(p),
                            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                            Err(_) => {
                                return Err(Problem::StoreUnavailable(
                                    "the replica is shutting down; retry the batch".into(),
                                ))
                            }
                        }
                    }
                    _ => {
                        let ops = parse_batch(&body)?;
                        self.batch(&self.issuer, &caller, ops, "batch", minimal)
                            .await?
                    }
                };
                if minimal {
                    answer.headers_mut().insert(
                        PREFERENCE_APPLIED.clone(),
                        HeaderValue::from_static("return=minimal"),
                    );
                }
                Ok(answer)
            }
            Route::Credential(id) => {
                if method != Method::GET {
                    return not_allowed("GET");
                }
                self.authorise(&req, Scope::Read)?;
                match self.issuer.view(&id).await.map_err(store_problem)? {
                    Some(v) => Ok(json_response(StatusCode::OK, &v)),
                    None => Err(unknown_credential()),
                }
            }
            Route::Audit(id) => {
                if method != Method::GET {
                    return not_allowed("GET");
                }
                self.authorise(&req, Scope::Read)?;
                match self.issuer.credential(&id).await.map_err(store_problem)? {
                    Some((at, rec)) => Ok(json_response(
                        StatusCode::OK,
                        &json!({
                            "credential_id": rec.credential_id,
                            "list_id": at.list,
                            "idx": at.idx,
                            "events": rec.history.iter().map(|e| e.audit()).collect::<Vec<_>>(),
                        }),
                    )),
                    None => Err(unknown_credential()),
                }
            }
            Route::Action(id, action) => {
                if method != Method::POST {
                    return not_allowed("POST");
                }
                let caller = self.authorise(&req, Scope::Write)?;
                let body = self.body(req, MAX_BODY).await?;
                let op = match action {
                    "suspend" | "reinstate" => {
                        let b: HoldBody = parse(&body)?;
                        let h = HoldOp {
                            credential_id: id,
                            reason: b.reason,
                            hold: b.hold,
                            request_id: b.request_id,
                        };
                        if action == "suspend" {
                            Operation::Suspend(h)
                        } else {
                            Operation::Reinstate(h)
                        }
                    }
                    "revoke" => {
                        let b: RevokeBody = parse(&body)?;
                        Operation::Revoke(RevokeOp {
                            credential_id: id,
                            reason: b.reason,
                            request_id: b.request_id,
                        })
                    }
                    _ => {
                        let b: ReissueBody = parse(&body)?;
                        Operation::Reissue(ReissueOp {
                            credential_id: id,
                            new_credential_id: b.new_credential_id,
                            parent: b.parent,
                            reason: b.reason,
                            request_id: b.request_id,
                            expires_at: b.expires_at,
                        })
                    }
                };
                self.single(&caller, op).await
            }
        }
    }

    async fn create_list(&self, caller: &Who, body: CreateList) -> Result<Resp, Problem> {
        let settings = self.issuer.settings();
        check_purpose(&body.purpose).map_err(|p| Problem::BadBody(p.detail))?;
        if let Some(id) = &body.list_id {
            check_id(id).map_err(|e| Problem::BadBody(e.to_string()))?;
        }
        if let Some(size) = body.size {
            let bits = Bits::new(body.bits.unwrap_or(settings.list_bits.get()).into())
                .map_err(|e| Problem::BadBody(e.to_string()))?;
            crate::status::StatusList::new(bits, size)
                .map_err(|e| Problem::BadBody(e.to_string()))?;
        }
        let bits = match body.bits {
            Some(b) => Bits::new(b.into()).map_err(|e| Problem::BadBody(e.to_string()))?,
            None => settings.list_bits,
        };
        let id = match body.list_id {
            Some(id) => id,
            None => {
                let lists = self.issuer.lists().await.map_err(store_problem)?;
                let n = last_number(&body.purpose, lists.iter().map(|l| l.list_id.as_str()));
                format!("{}-{}", body.purpose, n + 1)
            }
        };
        let view = self
            .issuer
            .create_list(NewList {
                id,
                bits,
                size: body.size.unwrap_or(settings.list_size),
                purpose: Some(body.purpose),
            })
            .await
            .map_err(store_problem)?;
        tracing::info!(by = %caller.name, client = caller.subject(), list = %view.list_id, "created a list");
        Ok(json_response(StatusCode::CREATED, &view))
    }

    /// Runs issuer request `op`, observing its latency and its requests to the store.
    async fn timed<T>(&self, op: &str, f: impl std::future::Future<Output = T>) -> T {
        let start = std::time::Instant::now();
        let (out, requests) = crate::store::count_requests(f).await;
        if let Some(h) = self.metrics.issuer_op(op) {
            h.seconds.observe(start.elapsed().as_secs_f64());
            h.store_requests.observe(f64::from(requests));
        }
        out
    }

    fn count(&self, op: &str, result: &Result<Outcome, ItemProblem>) {
        self.metrics
            .issuer_operations
            .with_label_values(&[op, result_label(result)])
            .inc();
    }

    async fn single(&self, caller: &Who, op: Operation) -> Result<Resp, Problem> {
        let name = op.name();
        let executed = self
            .timed(
                name,
                self.issuer
                    .execute_as(&caller.name, caller.subject(), std::slice::from_ref(&op)),
            )
            .await;
        let mut results = match executed {
            Ok(r) => r,
            Err(IssuerError::Invalid(mut errors)) => {
                let (_, p) = errors.pop().expect("one item");
                self.count(name, &Err(p.clone()));
                return Err(Problem::Issuer(p));
            }
            Err(IssuerError::TooLarge) => unreachable!("one item"),
            Err(IssuerError::Store(
                e @ (StoreError::Full(_) | StoreError::NotReplicated { .. }),
            )) => return Err(Problem::Issuer(e.into())),
            Err(IssuerError::Store(e)) => return Err(Problem::StoreUnavailable(e.to_string())),
        };
        let result = results.pop().expect("one result");
        self.count(name, &result);
        tracing::info!(by = %caller.name, client = caller.subject(), op = name, "issuer operation");
        match result {
            Ok(o) => {
                let status = if o.result == "registered" {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(json_response(status, &o))
            }
            Err(p) => Err(Problem::Issuer(p)),
        }
    }

    /// Runs batch `ops` with `issuer`, timed as `metric` (`batch`, or `bulk` on the bulk lane);
    /// `minimal` answers each item with its outcome alone ([`prefers_minimal`]).
    async fn batch(
        &self,
        issuer: &Issuer,
        caller: &Who,
        ops: Vec<Operation>,
        metric: &str,
        minimal: bool,
    ) -> Result<Resp, Problem> {
        let results = match self
            .timed(
                metric,
                issuer.execute_as(&caller.name, caller.subject(), &ops),
            )
            .await
        {
            Ok(r) => r,
            Err(IssuerError::Invalid(errors)) => return Err(Problem::BatchInvalid(errors)),
            Err(IssuerError::TooLarge) => {
                return Err(Problem::TooLarge {
                    what: "a batch",
                    limit: MAX_BATCH,
                })
            }
            Err(IssuerError::Store(
                e @ (StoreError::Full(_) | StoreError::NotReplicated { .. }),
            )) => return Err(Problem::Issuer(e.into())),
            Err(IssuerError::Store(e)) => return Err(Problem::StoreUnavailable(e.to_string())),
        };
        // Counted per (operation, result) rather than per item: a label lookup hashes both.
        let mut counts: Vec<(&'static str, &'static str, u64)> = Vec::new();
        for (op, r) in ops.iter().zip(&results) {
            let key = (op.name(), result_label(r));
            match counts.iter_mut().find(|c| (c.0, c.1) == key) {
                Some(c) => c.2 += 1,
                None => counts.push((key.0, key.1, 1)),
            }
        }
        for (op, label, n) in counts {
            self.metrics
                .issuer_operations
                .with_label_values(&[op, label])
                .inc_by(n);
        }
        tracing::info!(by = %caller.name, client = caller.subject(), items = results.len(), "issuer batch");
        let answer = BatchAnswer {
            ops: &ops,
            results: &results,
            minimal,
        };
        // About 1.5 kB per registration (its assignment); growing the buffer by doubling up to
        // megabytes would copy it and free blocks large enough to make malloc consolidate.
        let per_item = if minimal {
            MINIMAL_ITEM_BYTES
        } else {
            BATCH_ITEM_BYTES
        };
        let mut body = Vec::with_capacity(64 + results.len() * per_item);
        serde_json::to_writer(&mut body, &answer).expect("outcomes serialise");
        Ok(bytes_response(StatusCode::OK, body))
    }
}

/// What one item of a batch answer takes, about: a registration's assignment with its status
/// claims and W3C entries.
const BATCH_ITEM_BYTES: usize = 1_600;
/// The same under `Prefer: return=minimal`: index, id, result and status.
const MINIMAL_ITEM_BYTES: usize = 128;

/// Batch bodies at least this long are parsed on the bulk lane (when there is one): the
/// smallest body that can hold [`BULK_MIN_ITEMS`] operations (`{"op":"revoke","credential_id":"x"}`
/// is 35 bytes). A shorter one is parsed, and run, on the admin threads.
const BULK_MIN_BODY: usize = BULK_MIN_ITEMS * 35;

/// What the bulk lane made of a large batch body: its answer, or operations too few for the
/// lane, handed back to the admin threads with their caller.
enum Lane {
    Answered(Resp),
    Small(Vec<Operation>, Who),
}

static PREFERENCE_APPLIED: header::HeaderName =
    header::HeaderName::from_static("preference-applied");

/// Whether the request asks for minimal answers: a `Prefer` field with the preference
/// `return=minimal` (RFC 7240 §4.2; names case-insensitive, the value optionally quoted,
/// parameters after `;` ignored). A batch then answers each item with its index, id, result
/// and status, without the assignment and affected cards: a launch import's answers shrink from
/// 1.5 kB to about 90 bytes per registration, which the importer does not read anyway.
pub fn prefers_minimal(headers: &hyper::HeaderMap) -> bool {
    let prefer = head::list_field(headers, header::HeaderName::from_static("prefer"));
    let Some(Ok(prefer)) = prefer.as_deref().map(std::str::from_utf8) else {
        return false;
    };
    prefer.split(',').any(|pref| {
        let pref = pref.split(';').next().unwrap_or("");
        let Some((name, value)) = pref.split_once('=') else {
            return false;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        name.trim().eq_ignore_ascii_case("return") && value.eq_ignore_ascii_case("minimal")
    })
}

/// The metric label of an item's result: the outcome's `result`, or the problem's slug.
fn result_label(r: &Result<Outcome, ItemProblem>) -> &'static str {
    match r {
        Ok(o) => o.result,
        Err(p) => p.error.slug(),
    }
}

/// The answer to a batch, `{"results": [...]}`, serialised straight from the outcomes: one
/// object per item, its keys in sorted order with `index` among them. These are the bytes the
/// answer had when each outcome was converted to a `serde_json::Value` (whose objects sort
/// their keys) and given its `index`; building, converting and dropping those trees was half
/// of statusd's CPU in a bulk import (issue 16).
struct BatchAnswer<'a> {
    ops: &'a [Operation],
    results: &'a [Result<Outcome, ItemProblem>],
    /// Outcomes without their assignment, affected cards or new credential.
    minimal: bool,
}

impl serde::Serialize for BatchAnswer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        struct Results<'a>(&'a BatchAnswer<'a>);
        impl serde::Serialize for Results<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.results.len()))?;
                for (index, (op, r)) in self.0.ops.iter().zip(self.0.results).enumerate() {
                    match r {
                        Ok(o) => seq.serialize_element(&SortedOutcome {
                            o,
                            index: Some(index),
                            minimal: self.0.minimal,
                        })?,
                        Err(p) => seq.serialize_element(&ItemFailure { index, op, p })?,
                    }
                }
                seq.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("results", &Results(self))?;
        m.end()
    }
}

/// An [`Outcome`] with its keys sorted, and its position in the batch (the new card of a
/// reissue has none).
struct SortedOutcome<'a> {
    o: &'a Outcome,
    index: Option<usize>,
    /// Only the id, index, result and status.
    minimal: bool,
}

impl serde::Serialize for SortedOutcome<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let o = self.o;
        let full = !self.minimal;
        let mut m = s.serialize_map(None)?;
        if full && !o.affected.is_empty() {
            m.serialize_entry("affected", &o.affected)?;
        }
        if let Some(a) = o.assignment.as_ref().filter(|_| full) {
            m.serialize_entry("assignment", &a.sorted())?;
        }
        m.serialize_entry("credential_id", &o.credential_id)?;
        if let Some(i) = self.index {
            m.serialize_entry("index", &i)?;
        }
        if let Some(n) = o.new_credential.as_ref().filter(|_| full) {
            let new = SortedOutcome {
                o: n,
                index: None,
                minimal: false,
            };
            m.serialize_entry("new_credential", &new)?;
        }
        m.serialize_entry("result", o.result)?;
        m.serialize_entry("status", o.status)?;
        m.end()
    }
}

/// A failed item of a batch: its position, credential id and problem.
struct ItemFailure<'a> {
    index: usize,
    op: &'a Operation,
    p: &'a ItemProblem,
}

impl serde::Serialize for ItemFailure<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        struct Error<'a>(&'a ItemProblem);
        impl serde::Serialize for Error<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("detail", &self.0.detail)?;
                m.serialize_entry("status", &self.0.error.status().as_u16())?;
                m.serialize_entry("type", &self.0.type_uri())?;
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("credential_id", self.op.credential_id())?;
        m.serialize_entry("error", &Error(self.p))?;
        m.serialize_entry("index", &self.index)?;
        m.end()
    }
}

/// An authorised caller: its token, and its TLS client certificate's subject when the admin
/// plane runs mutual TLS (the audit trail records both).
#[derive(Clone)]
struct Who {
    caller: Caller,
    client_subject: Option<ClientSubject>,
}

impl Who {
    fn subject(&self) -> Option<&str> {
        self.client_subject.as_ref().map(|s| &*s.0)
    }
}

impl std::ops::Deref for Who {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_and_route() {
        assert!(matches!(route("/v1/lists"), Some(Ok(Route::Lists))));
        assert!(matches!(
            route("/v1/credentials/batch"),
            Some(Ok(Route::Batch))
        ));
        match route("/v1/credentials/urn%3Aid%2F7/suspend") {
            Some(Ok(Route::Action(id, "suspend"))) => assert_eq!(id, "urn:id/7"),
            _ => panic!("not routed"),
        }
        assert!(matches!(route("/v1/credentials/a%zz"), Some(Err(_))));
        assert!(route("/v1/credentials/a/b/c").is_none());
        assert!(route("/metrics").is_none());
        // Every route of the table is reachable.
        for (_, path, _) in ROUTES {
            let concrete = path
                .replace("{list_id}", "l")
                .replace("{credential_id}", "c");
            assert!(matches!(route(&concrete), Some(Ok(_))), "{path}");
        }
    }

    /// The batch answer is written straight from the outcomes (issue 16: building a
    /// `serde_json::Value` per item was half of a bulk import's CPU); its bytes are still those
    /// of the answer built from `Value`s, item by item.
    #[test]
    fn batch_answers_are_the_bytes_of_the_value_built_answer() {
        use crate::issuer::tests::{issuer, register, reissue, suspend};
        use crate::issuer::Affected;
        use crate::store::registry::Location;
        let (issuer, _dir) = issuer();
        let at = |list: &str, idx| Location {
            list: list.into(),
            idx,
        };
        let outcome = |id: &str, result, status, assignment| Outcome {
            credential_id: id.into(),
            result,
            status,
            assignment,
            affected: Vec::new(),
            new_credential: None,
        };
        let ops = vec![
            register("card-1", "physical", None),
            register("card-2", "physical", None),
            suspend("card-3", None),
            reissue("phone-1", "phone-2", None),
            suspend("card-\"4\"", None),
        ];
        let big = issuer.assignment(&at("default-1", 123_456), 1 << 20);
        let small = issuer.assignment(&at("small-7", 9), 1024);
        let mut changed = outcome("card-3", "changed", "SUSPENDED", None);
        changed.affected = vec![
            Affected {
                credential_id: "phone-3".into(),
                status: "SUSPENDED",
            },
            Affected {
                credential_id: "phone-4".into(),
                status: "SUSPENDED",
            },
        ];
        let mut reissued = outcome("phone-1", "changed", "INVALID", None);
        reissued.new_credential = Some(Box::new(outcome(
            "phone-2",
            "registered",
            "VALID",
            Some(big.clone()),
        )));
        let results = vec![
            Ok(outcome("card-1", "registered", "VALID", Some(big))),
            Ok(outcome("card-2", "exists", "VALID", Some(small))),
            Ok(changed),
            Ok(reissued),
            Err(ItemProblem::new(
                ItemError::UnknownCredential,
                "no \"card-4\" here",
            )),
        ];
        let items: Vec<Json> = ops
            .iter()
            .zip(&results)
            .enumerate()
            .map(|(i, (op, r))| match r {
                Ok(o) => {
                    let mut v = serde_json::to_value(o).unwrap();
                    v["index"] = json!(i);
                    v
                }
                Err(p) => json!({
                    "index": i,
                    "credential_id": op.credential_id(),
                    "error": {
                        "type": p.type_uri(),
                        "status": p.error.status().as_u16(),
                        "detail": p.detail,
                    }
                }),
            })
            .collect();
        let want = serde_json::to_string(&json!({ "results": items })).unwrap();
        let answer = BatchAnswer {
            ops: &ops,
            results: &results,
            minimal: false,
        };
        assert_eq!(serde_json::to_string(&answer).unwrap(), want);
        // Minimal: the same objects without what a minimal answer leaves out; failures whole.
        let minimal = BatchAnswer {
            ops: &ops,
            results: &results,
            minimal: true,
        };
        let mut want: Json = serde_json::from_str(&want).unwrap();
        for item in want["results"].as_array_mut().unwrap() {
            let item = item.as_object_mut().unwrap();
            for key in ["assignment", "affected", "new_credential"] {
                item.remove(key);
            }
        }
        let got: Json = serde_json::to_value(&minimal).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn prefer_return_minimal_is_recognised_as_rfc_7240_writes_it() {
        let prefers = |values: &[&str]| {
            let mut h = hyper::HeaderMap::new();
            for v in values {
                h.append("prefer", HeaderValue::from_str(v).unwrap());
            }
            prefers_minimal(&h)
        };
        assert!(prefers(&["return=minimal"]));
        assert!(prefers(&["Return=\"minimal\""]));
        assert!(prefers(&["respond-async, return = minimal ; foo=bar"]));
        assert!(prefers(&["wait=10", "return=minimal"]));
        assert!(!prefers(&[]));
        assert!(!prefers(&["return=representation"]));
        assert!(!prefers(&["return"]));
        assert!(!prefers(&["handling=minimal"]));
        assert!(!prefers(&["return=minimalist"]));
    }
}
