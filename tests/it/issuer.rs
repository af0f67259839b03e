//! The issuer API end to end, on the embedded store and on a real redis-server: every rule of
//! the mobile ID lifecycle is driven through the admin listener over HTTP and checked on the
//! public plane (the per-credential lookup and the signed Status List Token).

use crate::redis_harness::RedisServer;
use crate::support::{self, problem, request, TempDir};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use statusd::app::{self, Running};
use statusd::status::Bits;

use statusd::token::keys::KeySet;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

const WRITER: &str = "writer-token-0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdefgh";

/// A running statusd with the issuer API, on one of the two stores.
struct Env {
    running: Running,
    _dir: TempDir,
    _redis: Option<RedisServer>,
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Redis,
}

const BACKENDS: [Backend; 2] = [Backend::Embedded, Backend::Redis];

impl Env {
    async fn start(backend: Backend, extra: &[&str]) -> Env {
        let dir = TempDir::new("issuer");
        let tokens = dir.0.join("tokens");
        std::fs::write(
            &tokens,
            format!("issuance write {WRITER}\naudit read {READER}\nops admin {ADMIN}\n"),
        )
        .unwrap();
        let redis = matches!(backend, Backend::Redis).then(RedisServer::start);
        let url = redis.as_ref().map(|r| r.url());
        // A list in the store keeps --demo from seeding its demo lists.
        let store = app::open_store(url.as_deref(), &dir.0).await.unwrap();
        support::seed_list(&store, "other", Bits::Two, 1024, &[]).await;
        drop(store);
        let mut args = vec![
            "--admin-tokens",
            tokens.to_str().unwrap(),
            "--reencode-interval",
            "1",
            "--list-size",
            "131072",
        ];
        if let Some(u) = &url {
            args.extend(["--redis-url", u.as_str()]);
        }
        args.extend_from_slice(extra);
        let config = support::config(&dir.0, &args);
        let running = app::start(&config).await.expect("start statusd");
        assert!(running.ready(Duration::from_secs(20)).await, "not ready");
        Env {
            running,
            _dir: dir,
            _redis: redis,
        }
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("http://{}{path}", self.running.admin_addr);
        let (status, h, bytes) = support::authorized(method, &url, token, body).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            problem(status, &h, &bytes);
        }
        (status, v)
    }

    /// An admin's `POST /v1/lists` with `body`: a list in a pool, new or existing.
    async fn create_list(&self, body: Value) -> (StatusCode, Value) {
        self.call(ADMIN, Method::POST, "/v1/lists", Some(body))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(WRITER, Method::POST, path, Some(body)).await
    }

    async fn register(&self, id: &str, kind: &str, parent: Option<&str>) -> Value {
        let mut body = json!({"credential_id": id, "kind": kind});
        if let Some(p) = parent {
            body["parent"] = json!(p);
        }
        let (status, v) = self.post("/v1/credentials", body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }

    async fn act(&self, id: &str, action: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/credentials/{id}/{action}"), body)
            .await
    }

    async fn place(&self, id: &str) -> (String, u32) {
        let (status, v) = self
            .call(READER, Method::GET, &format!("/v1/credentials/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let a = &v["assignment"];
        (
            a["list_id"].as_str().unwrap().to_owned(),
            a["idx"].as_u64().unwrap() as u32,
        )
    }

    /// The status the public plane shows for `id`: the lookup and the signed token must agree
    /// with `want` within a few seconds (the token follows within the re-encode interval).
    async fn expect_public(&self, want: &[(&str, &str)]) {
        let mut places = Vec::new();
        for (id, status) in want {
            places.push((self.place(id).await, *status, *id));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut wrong = Vec::new();
            let jwks = self.public("/.well-known/jwks.json").await;
            let keys = KeySet::from_jwks_json(std::str::from_utf8(&jwks).unwrap()).unwrap();
            let mut tokens: HashMap<String, statusd::status::StatusList> = HashMap::new();
            for ((list, idx), status, id) in &places {
                // A list created a moment ago may not be published yet.
                let Some(lookup) = self.try_public(&format!("/statuses/{list}/{idx}")).await else {
                    wrong.push(format!("{id}: list {list} not published yet"));
                    continue;
                };
                let lookup: Value = serde_json::from_slice(&lookup).unwrap();
                if lookup["status"] != *status {
                    wrong.push(format!("{id}: lookup says {}", lookup["status"]));
                }
                if !tokens.contains_key(list) {
                    let jwt = self.public(&format!("/statuslists/{list}")).await;
                    let claims = statusd::token::statuslist::verify_jwt(
                        std::str::from_utf8(&jwt).unwrap(),
                        &keys,
                    )
                    .expect("the published token verifies");
                    tokens.insert(list.clone(), claims.status_list.decode().unwrap());
                }
                let published = tokens[list].get((*idx).into()).unwrap();
                if published.name() != *status {
                    wrong.push(format!("{id}: token says {}", published.name()));
                }
            }
            if wrong.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "public plane disagrees: {wrong:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_public(&self, path: &str) -> Option<Bytes> {
        let (status, _, body) =
            support::get(&format!("http://{}{path}", self.running.public_addr), &[]).await;
        (status == StatusCode::OK).then_some(body)
    }

    async fn public(&self, path: &str) -> Bytes {
        let (status, _, body) =
            support::get(&format!("http://{}{path}", self.running.public_addr), &[]).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }
}

fn reason(r: &str) -> Value {
    json!({ "reason": r })
}

/// The loss reports of physical card `P` and its mobile cards `M1` and `M2`, wherever they
/// live: a mobile card reported lost suspends only itself; the physical card reported lost
/// suspends it and every mobile card; finding the physical card does not reinstate `M1`, whose
/// own loss report is still open.
async fn loss_reports_of_a_family(env: &Env) {
    let (s, v) = env.act("M1", "suspend", reason("phone lost")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["affected"], json!(null));
    env.expect_public(&[("P", "VALID"), ("M1", "SUSPENDED"), ("M2", "VALID")])
        .await;
    let (s, v) = env
        .act(
            "P",
            "suspend",
            json!({"reason": "wallet stolen", "request_id": "r-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["result"], "changed");
    assert_eq!(
        v["affected"],
        json!([{"credential_id": "M2", "status": "SUSPENDED"}])
    );
    env.expect_public(&[("P", "SUSPENDED"), ("M1", "SUSPENDED"), ("M2", "SUSPENDED")])
        .await;
    let (s, v) = env.act("P", "reinstate", reason("wallet found")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    env.expect_public(&[("P", "VALID"), ("M1", "SUSPENDED"), ("M2", "VALID")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_loss_cascades_and_mobile_loss_is_local() {
    for backend in BACKENDS {
        let env = Env::start(backend, &[]).await;
        env.register("P", "physical", None).await;
        let m1 = env.register("M1", "mobile", Some("P")).await;
        env.register("M2", "mobile", Some("P")).await;
        // A derived card lives in its parent's list.
        assert_eq!(
            env.place("P").await.0,
            env.place("M1").await.0,
            "{backend:?}"
        );
        assert!(m1["assignment"]["status_claim"]["status_list"]["uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/statuslists/{}", env.place("P").await.0)));

        loss_reports_of_a_family(&env).await;
        let (s, _) = env.act("M1", "reinstate", reason("phone found")).await;
        assert_eq!(s, StatusCode::OK);
        env.expect_public(&[("P", "VALID"), ("M1", "VALID"), ("M2", "VALID")])
            .await;

        // The audit trail: every change to M1, with who, why and the status before and after.
        let (s, audit) = env
            .call(READER, Method::GET, "/v1/credentials/M1/audit", None)
            .await;
        assert_eq!(s, StatusCode::OK);
        let events: Vec<(String, String, String, String, String)> = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
                (f("op"), f("by"), f("old"), f("new"), f("via"))
            })
            .collect();
        let t = |a: &str, b: &str, c: &str, d: &str, e: &str| {
            (
                a.to_owned(),
                b.to_owned(),
                c.to_owned(),
                d.to_owned(),
                e.to_owned(),
            )
        };
        assert_eq!(
            events,
            vec![
                t("register", "issuance", "VALID", "VALID", "-"),
                t("suspend", "issuance", "VALID", "SUSPENDED", "-"),
                t("suspend", "issuance", "SUSPENDED", "SUSPENDED", "P"),
                t("reinstate", "issuance", "SUSPENDED", "SUSPENDED", "P"),
                t("reinstate", "issuance", "SUSPENDED", "VALID", "-"),
            ],
            "{backend:?}"
        );
        assert_eq!(audit["events"][2]["request_id"], "r-1");
        assert_eq!(audit["events"][2]["reason"], "wallet stolen");
        // Reasons and credential ids never reach the public listener.
        for path in [
            "/statuslists",
            &format!("/statuses/{}/0", env.place("P").await.0),
        ] {
            let body = String::from_utf8_lossy(&env.public(path).await).into_owned();
            assert!(
                !body.contains("wallet") && !body.contains("\"M1\""),
                "{body}"
            );
        }
        env.running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_terminal_and_reissue_replaces() {
    for backend in BACKENDS {
        let env = Env::start(backend, &[]).await;
        env.register("P", "physical", None).await;
        env.register("M1", "mobile", Some("P")).await;
        env.register("M2", "mobile", Some("P")).await;

        let (s, v) = env.act("M2", "revoke", reason("device retired")).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("INVALID")));
        for action in ["suspend", "reinstate"] {
            let (s, v) = env.act("M2", action, reason("x")).await;
            assert_eq!(s, StatusCode::CONFLICT, "{action}");
            assert_eq!(v["type"], "urn:statusd:problem:terminal");
            assert!(v["detail"].as_str().unwrap().contains("terminal"), "{v}");
        }
        // Revoking again is a retry: nothing changes.
        let (s, v) = env.act("M2", "revoke", reason("retry")).await;
        assert_eq!(
            (s, v["result"].as_str()),
            (StatusCode::OK, Some("unchanged"))
        );

        // Reissuing the physical card revokes it and, with it, its mobile cards.
        let (s, v) = env
            .act(
                "P",
                "reissue",
                json!({"new_credential_id": "P2", "reason": "card damaged"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "INVALID");
        assert_eq!(v["new_credential"]["credential_id"], "P2");
        assert_eq!(v["new_credential"]["status"], "VALID");
        env.expect_public(&[
            ("P", "INVALID"),
            ("M1", "INVALID"),
            ("M2", "INVALID"),
            ("P2", "VALID"),
        ])
        .await;
        // The new mobile card links to the new physical card, with a fresh index.
        let (s, v) = env
            .act(
                "M1",
                "reissue",
                json!({"new_credential_id": "M1b", "parent": "P2", "reason": "new card"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_ne!(env.place("M1b").await, env.place("M1").await);
        assert_eq!(env.place("M1b").await.0, env.place("P2").await.0);
        let (_, view) = env
            .call(READER, Method::GET, "/v1/credentials/M1b", None)
            .await;
        assert_eq!(
            (view["parent"].as_str(), view["replaces"].as_str()),
            (Some("P2"), Some("M1"))
        );
        let (_, old) = env
            .call(READER, Method::GET, "/v1/credentials/M1", None)
            .await;
        assert_eq!(old["replaced_by"], "M1b");
        // A reissue is done once: a retry answers the same, a different one is refused.
        let (s, v) = env
            .act(
                "M1",
                "reissue",
                json!({"new_credential_id": "M1b", "parent": "P2", "reason": "retry"}),
            )
            .await;
        assert_eq!(
            (s, v["new_credential"]["credential_id"].as_str()),
            (StatusCode::OK, Some("M1b"))
        );
        let (s, v) = env
            .act(
                "M1",
                "reissue",
                json!({"new_credential_id": "M1c", "reason": "again"}),
            )
            .await;
        assert_eq!(
            (s, v["type"].as_str()),
            (
                StatusCode::CONFLICT,
                Some("urn:statusd:problem:already-reissued")
            )
        );
        // A loss report on the new physical card holds the new mobile card.
        env.act("P2", "suspend", reason("lost")).await;
        env.expect_public(&[("P2", "SUSPENDED"), ("M1b", "SUSPENDED"), ("M1", "INVALID")])
            .await;
        env.running.stop().await;
    }
}

/// The mobile ID lifecycle with the mobile cards in a pool of their own
/// (`--derived-pool mobile`), so that a physical card and its mobile cards live in different
/// lists: every rule of the two tests above holds across lists, on both stores, and the
/// public plane shows each list's part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_holds_across_lists_with_a_derived_pool() {
    for backend in BACKENDS {
        let env = Env::start(backend, &["--derived-pool", "mobile"]).await;
        env.register("P", "physical", None).await;
        env.register("M1", "mobile", Some("P")).await;
        env.register("M2", "mobile", Some("P")).await;
        for m in ["M1", "M2"] {
            let list = env.place(m).await.0;
            assert!(list.starts_with("mobile-"), "{backend:?}: {m} in {list}");
        }
        let (_, view) = env
            .call(READER, Method::GET, "/v1/credentials/P", None)
            .await;
        assert_eq!(view["children"], json!(["M1", "M2"]), "{backend:?}");

        loss_reports_of_a_family(&env).await;
        let (_, audit) = env
            .call(READER, Method::GET, "/v1/credentials/M2/audit", None)
            .await;
        let trail: Vec<(String, String, String)> = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
                (f("op"), f("new"), f("via"))
            })
            .collect();
        let t = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            trail,
            [
                t("register", "VALID", "-"),
                t("suspend", "SUSPENDED", "P"),
                t("reinstate", "VALID", "P")
            ],
            "{backend:?}"
        );

        // A phone change: the new mobile card goes to the mobile pool, under the same parent.
        let (s, v) = env
            .act(
                "M2",
                "reissue",
                json!({"new_credential_id": "M2b", "reason": "new phone"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(env.place("M2b").await.0.starts_with("mobile-"));
        let (_, view) = env
            .call(READER, Method::GET, "/v1/credentials/P", None)
            .await;
        assert_eq!(view["children"], json!(["M1", "M2", "M2b"]), "{backend:?}");
        // Reissuing the physical card revokes it and its mobile cards, wherever they are.
        let (s, v) = env
            .act(
                "P",
                "reissue",
                json!({"new_credential_id": "P2", "reason": "card damaged"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(env.place("P2").await.0.starts_with("default-"));
        env.expect_public(&[
            ("P", "INVALID"),
            ("M1", "INVALID"),
            ("M2", "INVALID"),
            ("M2b", "INVALID"),
            ("P2", "VALID"),
        ])
        .await;
        env.running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_idempotent_and_batches_are_all_or_nothing() {
    for backend in BACKENDS {
        let env = Env::start(backend, &[]).await;
        let first = env.register("X", "physical", None).await;
        let (s, again) = env
            .post(
                "/v1/credentials",
                json!({"credential_id": "X", "kind": "physical"}),
            )
            .await;
        assert_eq!(
            (s, again["result"].as_str()),
            (StatusCode::OK, Some("exists"))
        );
        assert_eq!(again["assignment"], first["assignment"]);
        let (s, v) = env
            .post(
                "/v1/credentials",
                json!({"credential_id": "X", "kind": "mobile"}),
            )
            .await;
        assert_eq!(
            (s, v["type"].as_str()),
            (
                StatusCode::CONFLICT,
                Some("urn:statusd:problem:registration-conflict")
            )
        );

        // One bad item: nothing of the batch is applied, every bad item is reported.
        let batch = json!({"operations": [
            {"op": "register", "credential_id": "B1", "kind": "physical"},
            {"op": "suspend", "credential_id": "X", "reason": "lost"},
            {"op": "suspend", "credential_id": "nobody", "reason": "lost"},
            {"op": "register", "credential_id": "B2", "kind": "mobile", "parent": "ghost"},
        ]});
        let (s, v) = env.post("/v1/credentials/batch", batch).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let errs: Vec<(u64, &str)> = v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["index"].as_u64().unwrap(), e["type"].as_str().unwrap()))
            .collect();
        assert_eq!(
            errs,
            vec![
                (2, "urn:statusd:problem:unknown-credential"),
                (3, "urn:statusd:problem:unknown-parent")
            ]
        );
        let (s, _) = env
            .call(READER, Method::GET, "/v1/credentials/B1", None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        env.expect_public(&[("X", "VALID")]).await;

        // The same batch without the bad items applies, with an outcome per item; a card and
        // its derived card can be registered in one batch.
        let batch = json!({"operations": [
            {"op": "register", "credential_id": "B1", "kind": "physical"},
            {"op": "register", "credential_id": "B2", "kind": "mobile", "parent": "B1"},
            {"op": "suspend", "credential_id": "X", "reason": "lost"},
            {"op": "suspend", "credential_id": "B1", "reason": "lost"},
        ]});
        let (s, v) = env.post("/v1/credentials/batch", batch).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let results: Vec<&str> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["result"].as_str().unwrap())
            .collect();
        assert_eq!(results, ["registered", "registered", "changed", "changed"]);
        env.expect_public(&[("X", "SUSPENDED"), ("B1", "SUSPENDED"), ("B2", "SUSPENDED")])
            .await;
        env.running.stop().await;
    }
}

/// One bad request: name, method, path, authorization (a token or a whole header value), body,
/// expected status and problem slug.
type Case = (
    &'static str,
    Method,
    &'static str,
    Option<&'static str>,
    Option<String>,
    StatusCode,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_problem_and_changes_nothing() {
    let env = Env::start(Backend::Embedded, &[]).await;
    env.register("P", "physical", None).await;
    env.register("M", "mobile", Some("P")).await;
    let admin = format!("http://{}", env.running.admin_addr);
    let cases: Vec<Case> = vec![
        (
            "no token",
            Method::GET,
            "/v1/lists",
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "wrong token",
            Method::GET,
            "/v1/lists",
            Some("Bearer nope-nope-nope-nope-nope"),
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "not bearer",
            Method::GET,
            "/v1/lists",
            Some("Basic YTpi"),
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "read scope writes",
            Method::POST,
            "/v1/credentials/P/suspend",
            Some(READER),
            Some(r#"{"reason":"x"}"#.into()),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "write scope creates lists",
            Method::POST,
            "/v1/lists",
            Some(WRITER),
            Some(r#"{"purpose":"x"}"#.into()),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "unknown credential",
            Method::POST,
            "/v1/credentials/nobody/suspend",
            Some(WRITER),
            Some(r#"{"reason":"x"}"#.into()),
            StatusCode::NOT_FOUND,
            "unknown-credential",
        ),
        (
            "unknown parent",
            Method::POST,
            "/v1/credentials",
            Some(WRITER),
            Some(r#"{"credential_id":"N","kind":"mobile","parent":"ghost"}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-parent",
        ),
        (
            "parent not physical",
            Method::POST,
            "/v1/credentials",
            Some(WRITER),
            Some(r#"{"credential_id":"N","kind":"mobile","parent":"M"}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parent-not-physical",
        ),
        (
            "own parent",
            Method::POST,
            "/v1/credentials",
            Some(WRITER),
            Some(r#"{"credential_id":"N","kind":"mobile","parent":"N"}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cycle",
        ),
        (
            "physical with parent",
            Method::POST,
            "/v1/credentials",
            Some(WRITER),
            Some(r#"{"credential_id":"N","kind":"physical","parent":"P"}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cycle",
        ),
        (
            "malformed JSON",
            Method::POST,
            "/v1/credentials",
            Some(WRITER),
            Some("{\"credential_id\":".into()),
            StatusCode::BAD_REQUEST,
            "bad-body",
        ),
        (
            "unknown field",
            Method::POST,
            "/v1/credentials/P/revoke",
            Some(WRITER),
            Some(r#"{"reason":"x","force":true}"#.into()),
            StatusCode::BAD_REQUEST,
            "bad-body",
        ),
        (
            "missing reason",
            Method::POST,
            "/v1/credentials/P/revoke",
            Some(WRITER),
            Some("{}".into()),
            StatusCode::BAD_REQUEST,
            "bad-body",
        ),
        (
            "empty reason",
            Method::POST,
            "/v1/credentials/P/revoke",
            Some(WRITER),
            Some(r#"{"reason":" "}"#.into()),
            StatusCode::BAD_REQUEST,
            "bad-item",
        ),
        (
            "bad kind",
            Method::POST,
            "/v1/credentials",
            Some(WRITER),
            Some(r#"{"credential_id":"N","kind":"Mobile Card"}"#.into()),
            StatusCode::BAD_REQUEST,
            "bad-item",
        ),
        (
            "id with space",
            Method::POST,
            "/v1/credentials",
            Some(WRITER),
            Some(r#"{"credential_id":"a b","kind":"mobile"}"#.into()),
            StatusCode::BAD_REQUEST,
            "bad-item",
        ),
        (
            "unknown op",
            Method::POST,
            "/v1/credentials/batch",
            Some(WRITER),
            Some(r#"{"operations":[{"op":"delete","credential_id":"P"}]}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "batch-invalid",
        ),
        (
            "oversize batch",
            Method::POST,
            "/v1/credentials/batch",
            Some(WRITER),
            Some(format!(
                "{{\"operations\":[{}]}}",
                vec![r#"{"op":"revoke","credential_id":"P","reason":"x"}"#; 10_001].join(",")
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
        ),
        (
            "not JSON",
            Method::POST,
            "/v1/credentials/P/revoke",
            Some(WRITER),
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "wrong method",
            Method::DELETE,
            "/v1/credentials/P",
            Some(WRITER),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
        (
            "bad escape",
            Method::GET,
            "/v1/credentials/%zz",
            Some(READER),
            None,
            StatusCode::BAD_REQUEST,
            "bad-body",
        ),
        (
            "bad list bits",
            Method::POST,
            "/v1/lists",
            Some(ADMIN),
            Some(r#"{"purpose":"x","bits":3}"#.into()),
            StatusCode::BAD_REQUEST,
            "bad-body",
        ),
        (
            "bad list size",
            Method::POST,
            "/v1/lists",
            Some(ADMIN),
            Some(r#"{"purpose":"x","size":0}"#.into()),
            StatusCode::BAD_REQUEST,
            "bad-body",
        ),
        (
            "op in a registration",
            Method::POST,
            "/v1/credentials",
            Some(WRITER),
            Some(r#"{"op":"revoke","credential_id":"N","kind":"physical"}"#.into()),
            StatusCode::BAD_REQUEST,
            "bad-body",
        ),
        (
            "pool name too long for its list ids",
            Method::POST,
            "/v1/credentials",
            Some(WRITER),
            Some(format!(
                r#"{{"credential_id":"N","kind":"physical","purpose":"{}"}}"#,
                "p".repeat(60)
            )),
            StatusCode::BAD_REQUEST,
            "bad-item",
        ),
        (
            "a credential called batch",
            Method::GET,
            "/v1/credentials/batch",
            Some(READER),
            None,
            StatusCode::NOT_FOUND,
            "unknown-credential",
        ),
    ];
    for (name, method, path, auth, body, want, slug) in cases {
        let auth_header = match auth {
            Some(a) if a.contains(' ') => a.to_owned(),
            Some(t) => format!("Bearer {t}"),
            None => String::new(),
        };
        let mut headers = vec![];
        if auth.is_some() {
            headers.push(("authorization", auth_header.as_str()));
        }
        if body.is_some() && name != "not JSON" {
            headers.push(("content-type", "application/json"));
        }
        let (status, h, bytes) = request(
            method,
            &format!("{admin}{path}"),
            &headers,
            body.map(Bytes::from),
        )
        .await;
        assert_eq!(status, want, "{name}: {}", String::from_utf8_lossy(&bytes));
        let p = problem(status, &h, &bytes);
        assert_eq!(p["type"], format!("urn:statusd:problem:{slug}"), "{name}");
    }
    // Nothing changed.
    env.expect_public(&[("P", "VALID"), ("M", "VALID")]).await;
    let (_, v) = env
        .call(READER, Method::GET, "/v1/credentials/P/audit", None)
        .await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    // Health and metrics need no token; the metrics count issuer operations.
    let (s, _, body) = support::get(&format!("{admin}/metrics"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(r#"statusd_issuer_operations_total{op="register",result="registered"} 2"#),
        "{text}"
    );
    assert!(
        text.contains("statusd_list_allocated_ratio{list="),
        "{text}"
    );
    env.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_created_ahead_of_demand_and_report_their_fill() {
    let env = Env::start(
        Backend::Redis,
        &["--min-open-lists", "2", "--fill-threshold", "0.5"],
    )
    .await;
    let (s, v) = env
        .create_list(json!({"purpose": "seoul", "size": 8192}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["list_id"].as_str(), v["open"].as_bool()),
        (Some("seoul-1"), Some(true))
    );
    // The pool keeps two open lists: the first registration creates seoul-2 ahead of demand,
    // and when seoul-1 reaches half full (4,096) it closes and seoul-3 opens.
    let ops: Vec<Value> = (0..12_000)
        .map(|i| json!({"op": "register", "credential_id": format!("s{i}"), "kind": "physical", "purpose": "seoul"}))
        .collect();
    let mut in_first = None;
    for chunk in ops.chunks(4_000) {
        let (s, v) = env
            .post("/v1/credentials/batch", json!({"operations": chunk}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        in_first = in_first.or_else(|| {
            v["results"].as_array().unwrap().iter().find_map(|r| {
                (r["assignment"]["list_id"] == "seoul-1")
                    .then(|| r["credential_id"].as_str().unwrap().to_owned())
            })
        });
    }
    let (_, lists) = env.call(READER, Method::GET, "/v1/lists", None).await;
    let seoul: Vec<(String, u64, bool)> = lists["lists"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["purpose"] == "seoul")
        .map(|l| {
            (
                l["list_id"].as_str().unwrap().to_owned(),
                l["allocated"].as_u64().unwrap(),
                l["open"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(seoul[0], ("seoul-1".to_owned(), 4_096, false), "{seoul:?}");
    assert_eq!(seoul.iter().map(|l| l.1).sum::<u64>(), 12_000, "{seoul:?}");
    assert!(seoul.iter().filter(|l| l.2).count() >= 2, "{seoul:?}");
    assert!(seoul.iter().any(|l| l.0 == "seoul-3"), "{seoul:?}");
    // A derived card may still fill its parent's closed list.
    let p = in_first.expect("a card in seoul-1");
    let (s, v) = env
        .post(
            "/v1/credentials",
            json!({"credential_id": "mob", "kind": "mobile", "parent": p}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["assignment"]["list_id"], "seoul-1");
    let (s, one) = env
        .call(READER, Method::GET, "/v1/lists/seoul-1", None)
        .await;
    assert_eq!(
        (s, one["allocated"].as_u64()),
        (StatusCode::OK, Some(4_097))
    );
    let (s, _) = env.call(READER, Method::GET, "/v1/lists/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    env.running.stop().await;
}

/// 100,000 registrations in one list: no index twice, and indices uniform over the list
/// (chi-square over 64 equal buckets; the 0.1 % critical value for 63 degrees of freedom is
/// 103.4, so an honest allocator fails this about once in a thousand runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_is_unique_and_uniform() {
    for backend in BACKENDS {
        let env = Env::start(backend, &["--min-open-lists", "1", "--fill-threshold", "1"]).await;
        let (s, _) = env
            .create_list(json!({"purpose": "alloc", "list_id": "alloc-1", "size": 1_048_576}))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let mut seen = roaring::RoaringBitmap::new();
        let mut buckets = [0u64; 64];
        for b in 0..10 {
            let ops: Vec<Value> = (0..10_000)
                .map(|i| json!({"op": "register", "credential_id": format!("a{b}-{i}"), "kind": "physical", "purpose": "alloc"}))
                .collect();
            let (s, v) = env
                .post("/v1/credentials/batch", json!({"operations": ops}))
                .await;
            assert_eq!(s, StatusCode::OK);
            for r in v["results"].as_array().unwrap() {
                let a = &r["assignment"];
                assert_eq!(a["list_id"], "alloc-1", "{backend:?}");
                let idx = a["idx"].as_u64().unwrap() as u32;
                assert!(
                    seen.insert(idx),
                    "{backend:?}: index {idx} handed out twice"
                );
                buckets[(idx as usize * 64) >> 20] += 1;
            }
        }
        assert_eq!(seen.len(), 100_000);
        let expected = 100_000.0 / 64.0;
        let chi2: f64 = buckets
            .iter()
            .map(|&o| (o as f64 - expected).powi(2) / expected)
            .sum();
        assert!(
            chi2 < 103.4,
            "{backend:?}: chi-square {chi2:.1} over 64 buckets: {buckets:?}"
        );
        let (_, l) = env
            .call(READER, Method::GET, "/v1/lists/alloc-1", None)
            .await;
        assert_eq!(l["allocated"], 100_000);
        env.running.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Hardening, round two (issue 21): items 3, 4, 5 and 9.

/// `requests` (path, body) sent at once by the writer, each on its own task and connection;
/// the answers in order.
async fn at_once(env: &Env, requests: Vec<(String, Value)>) -> Vec<(StatusCode, Value)> {
    let admin = env.running.admin_addr;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(path, body)| {
            let start = start.clone();
            tokio::spawn(async move {
                let url = format!("http://{admin}{path}");
                let auth = format!("Bearer {WRITER}");
                let headers = [
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ];
                start.wait().await;
                let (status, h, bytes) = request(
                    Method::POST,
                    &url,
                    &headers,
                    Some(Bytes::from(body.to_string())),
                )
                .await;
                if !status.is_success() {
                    problem(status, &h, &bytes);
                }
                (
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// What each answer was, in short: its status and `result` or problem type.
fn summary(answers: &[(StatusCode, Value)]) -> Vec<String> {
    answers
        .iter()
        .map(|(s, v)| {
            let what = v["result"].as_str().or(v["type"].as_str()).unwrap_or("?");
            format!("{} {what}", s.as_u16())
        })
        .collect()
}

/// Indices allocated over every list: what registrations have cost.
async fn allocated(env: &Env) -> u64 {
    let (_, lists) = env.call(READER, Method::GET, "/v1/lists", None).await;
    lists["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["allocated"].as_u64().unwrap())
        .sum()
}

async fn exists(env: &Env, id: &str) -> bool {
    let (s, _) = env
        .call(READER, Method::GET, &format!("/v1/credentials/{id}"), None)
        .await;
    assert!(s == StatusCode::OK || s == StatusCode::NOT_FOUND, "{s}");
    s == StatusCode::OK
}

/// Item 3: a body naming a key twice is refused whole, on both planes: `{"op":"suspend", …,
/// "op":"revoke"}` used to revoke, and a registration with two `credential_id`s registered the
/// second. Fixed in 6a042d9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_a_key_named_twice_in_a_body_took_its_last_value() {
    let env = Env::start(Backend::Embedded, &[]).await;
    env.register("X", "physical", None).await;
    let admin = format!("http://{}", env.running.admin_addr);
    let public = format!("http://{}", env.running.public_addr);
    let list = env.place("X").await.0;
    let auth_w = format!("Bearer {WRITER}");
    let auth_a = format!("Bearer {ADMIN}");
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            format!("{admin}/v1/credentials/batch"),
            auth_w.as_str(),
            r#"{"operations":[{"op":"suspend","credential_id":"X","reason":"lost","op":"revoke"}]}"#,
            "operations[0]",
        ),
        (
            format!("{admin}/v1/credentials/batch"),
            auth_w.as_str(),
            r#"{"operations":[{"op":"suspend","credential_id":"X","reason":"lost","\u006fp":"revoke"}]}"#,
            "operations[0]",
        ),
        (
            format!("{admin}/v1/credentials"),
            auth_w.as_str(),
            r#"{"credential_id":"A","kind":"physical","credential_id":"B"}"#,
            "the top level",
        ),
        (
            format!("{admin}/v1/credentials/X/revoke"),
            auth_w.as_str(),
            r#"{"reason":"a","reason":"b"}"#,
            "the top level",
        ),
        (
            format!("{admin}/v1/credentials/X/reissue"),
            auth_w.as_str(),
            r#"{"new_credential_id":"A","reason":"r","new_credential_id":"B"}"#,
            "the top level",
        ),
        (
            format!("{admin}/v1/lists"),
            auth_a.as_str(),
            r#"{"purpose":"p","purpose":"q"}"#,
            "the top level",
        ),
        (
            format!("{public}/statuses/{list}"),
            "",
            r#"{"idx":[0],"idx":[1]}"#,
            "the top level",
        ),
    ];
    for (url, auth, body, at) in cases {
        let mut headers = vec![("content-type", "application/json")];
        if !auth.is_empty() {
            headers.push(("authorization", auth));
        }
        let (s, h, bytes) = request(Method::POST, &url, &headers, Some(Bytes::from(body))).await;
        let p = problem(s, &h, &bytes);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {p}");
        assert_eq!(
            p["type"], "urn:statusd:problem:duplicate-json-key",
            "{body}"
        );
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(at), "{body}: {detail}");
        assert!(
            [
                "\"op\"",
                "\"credential_id\"",
                "\"reason\"",
                "\"new_credential_id\"",
                "\"purpose\"",
                "\"idx\""
            ]
            .iter()
            .any(|k| detail.contains(k)),
            "names the key: {detail}"
        );
    }
    // Nothing was applied: X is still VALID with one event, A and B do not exist, no list p.
    env.expect_public(&[("X", "VALID")]).await;
    let (_, audit) = env
        .call(READER, Method::GET, "/v1/credentials/X/audit", None)
        .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{audit}");
    assert!(!exists(&env, "A").await && !exists(&env, "B").await);
    let (_, lists) = env.call(READER, Method::GET, "/v1/lists", None).await;
    assert!(!lists.to_string().contains("\"purpose\":\"p\""), "{lists}");
    env.running.stop().await;
}

/// Item 4: a `write` token cannot create pools (each new pool used to open two lists of 2^20
/// entries); an admin creates a pool with its first list, and the writer then grows it. The
/// number of lists is bounded by `--max-lists`, and reaching it is a clear problem.
/// Fixed in 6a042d9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_write_tokens_created_pools_and_lists_were_unbounded() {
    // The store holds "other" already: with --max-lists 3, two more lists fit.
    let env = Env::start(
        Backend::Embedded,
        &["--max-lists", "3", "--min-open-lists", "2"],
    )
    .await;
    let lists = |v: &Value| -> Vec<String> {
        v["lists"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["list_id"].as_str().unwrap().to_owned())
            .collect()
    };
    for purpose in ["new-pool", "x1"] {
        let (s, v) = env
            .post(
                "/v1/credentials",
                json!({"credential_id": "N", "kind": "physical", "purpose": purpose}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["type"], "urn:statusd:problem:unknown-pool");
        assert!(
            v["detail"].as_str().unwrap().contains("POST /v1/lists"),
            "{v}"
        );
    }
    let (_, v) = env.call(READER, Method::GET, "/v1/lists", None).await;
    assert_eq!(lists(&v), ["other"], "no list was created");
    assert!(!exists(&env, "N").await);

    // An admin creates the pool with a small first list; the writer uses it. The pool wants a
    // second open list ahead of demand, which the bound allows (3 lists).
    let (s, v) = env
        .create_list(json!({"purpose": "tiny", "size": 16}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = env
        .post(
            "/v1/credentials",
            json!({"credential_id": "T0", "kind": "physical", "purpose": "tiny"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = env.call(READER, Method::GET, "/v1/lists", None).await;
    assert_eq!(lists(&v), ["other", "tiny-1", "tiny-2"]);

    // At the bound: no more lists, by the admin or ahead of demand.
    let (s, v) = env.create_list(json!({"purpose": "busan"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["type"], "urn:statusd:problem:list-limit");
    assert!(v["detail"].as_str().unwrap().contains("--max-lists"), "{v}");
    // The default pool has no list and can get none.
    let (s, v) = env
        .post(
            "/v1/credentials",
            json!({"credential_id": "D", "kind": "physical"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["type"], "urn:statusd:problem:list-limit");
    let (_, v) = env.call(READER, Method::GET, "/v1/lists", None).await;
    assert_eq!(lists(&v), ["other", "tiny-1", "tiny-2"]);
    env.running.stop().await;

    // A pool at the bound keeps taking cards in its open lists; once they are full the problem
    // is list-limit, not list-full.
    let env = Env::start(Backend::Embedded, &["--max-lists", "2"]).await;
    let (s, _) = env
        .create_list(json!({"purpose": "tiny", "size": 16}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // 0.75 × 16 = 12 top-level cards.
    let ops: Vec<Value> = (0..12)
        .map(|i| json!({"op": "register", "credential_id": format!("t{i}"), "kind": "physical", "purpose": "tiny"}))
        .collect();
    let (s, v) = env
        .post("/v1/credentials/batch", json!({ "operations": ops }))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["result"] == "registered"));
    let (s, v) = env
        .post(
            "/v1/credentials",
            json!({"credential_id": "t12", "kind": "physical", "purpose": "tiny"}),
        )
        .await;
    assert_eq!(
        (s, v["type"].as_str()),
        (StatusCode::CONFLICT, Some("urn:statusd:problem:list-limit")),
        "{v}"
    );
    env.running.stop().await;
}

/// Item 5 (a): twenty reissues of one card to twenty different new ids at once. Exactly one
/// wins; the others get 409 `already-reissued`, and none of their new cards exists or cost an
/// index. The mobile card's new parent lives in another list, so its new card is written in
/// another commit than the revocation (the case that used to leave debris); the physical card's
/// new card lands in either of two lists. Fixed in 6a042d9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_concurrent_reissues_of_one_card_left_debris() {
    for backend in BACKENDS {
        let env = Env::start(backend, &[]).await;
        env.register("P1", "physical", None).await;
        env.register("M", "mobile", Some("P1")).await;
        let (s, _) = env.create_list(json!({"purpose": "branch"})).await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, v) = env
            .post(
                "/v1/credentials",
                json!({"credential_id": "P2", "kind": "physical", "purpose": "branch"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_ne!(env.place("M").await.0, env.place("P2").await.0);
        let before = allocated(&env).await;

        for (old, parent, cards) in [("M", Some("P2"), "M-new"), ("P1", None, "P1-new")] {
            let requests = (0..20)
                .map(|i| {
                    let mut body =
                        json!({"new_credential_id": format!("{cards}-{i}"), "reason": "replaced"});
                    if let Some(p) = parent {
                        body["parent"] = json!(p);
                    }
                    (format!("/v1/credentials/{old}/reissue"), body)
                })
                .collect();
            let answers = at_once(&env, requests).await;
            let winners: Vec<usize> = (0..20)
                .filter(|&i| answers[i].0 == StatusCode::OK)
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "{backend:?} {old}: {:?}",
                summary(&answers)
            );
            let w = winners[0];
            for (i, (s, v)) in answers.iter().enumerate() {
                if i != w {
                    assert_eq!(
                        (*s, v["type"].as_str()),
                        (
                            StatusCode::CONFLICT,
                            Some("urn:statusd:problem:already-reissued")
                        ),
                        "{backend:?} {old} #{i}: {v}"
                    );
                }
            }
            let winner = format!("{cards}-{w}");
            for i in 0..20 {
                assert_eq!(
                    exists(&env, &format!("{cards}-{i}")).await,
                    i == w,
                    "{backend:?}: {cards}-{i}"
                );
            }
            let (_, view) = env
                .call(READER, Method::GET, &format!("/v1/credentials/{old}"), None)
                .await;
            assert_eq!(
                (view["status"].as_str(), view["replaced_by"].as_str()),
                (Some("INVALID"), Some(winner.as_str())),
                "{backend:?}"
            );
            env.expect_public(&[(old, "INVALID"), (&winner, "VALID")])
                .await;
        }
        // Two new cards, two indices: no loser burnt one.
        assert_eq!(allocated(&env).await, before + 2, "{backend:?}");
        env.running.stop().await;
    }
}

/// Item 5 (b): twenty registrations of one credential id at once all get its one index: one
/// 201, nineteen idempotent 200s (no 409 `registered-concurrently`), and one index allocated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_id_all_get_the_same_index() {
    for backend in BACKENDS {
        let env = Env::start(backend, &[]).await;
        let before = allocated(&env).await;
        let requests = (0..20)
            .map(|_| {
                (
                    "/v1/credentials".to_owned(),
                    json!({"credential_id": "same", "kind": "physical"}),
                )
            })
            .collect();
        let answers = at_once(&env, requests).await;
        let created = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count();
        let again = answers
            .iter()
            .filter(|(s, v)| *s == StatusCode::OK && v["result"] == "exists")
            .count();
        assert_eq!(
            (created, again),
            (1, 19),
            "{backend:?}: {:?}",
            summary(&answers)
        );
        let places: BTreeSet<String> = answers
            .iter()
            .map(|(_, v)| v["assignment"]["status_claim"].to_string())
            .collect();
        assert_eq!(places.len(), 1, "{backend:?}: {places:?}");
        assert_eq!(allocated(&env).await, before + 1, "{backend:?}");
        env.running.stop().await;
    }
}

/// Item 5 (c): twenty mobile cards registered under one physical card at once (each commit
/// rewrites the parent's record, so they all race on one list): every one is registered, none
/// gets 503 `contention`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_under_one_parent_never_see_contention() {
    for backend in BACKENDS {
        let env = Env::start(backend, &[]).await;
        env.register("P", "physical", None).await;
        let before = allocated(&env).await;
        let requests = (0..20)
            .map(|i| {
                (
                    "/v1/credentials".to_owned(),
                    json!({"credential_id": format!("m{i}"), "kind": "mobile", "parent": "P"}),
                )
            })
            .collect();
        let answers = at_once(&env, requests).await;
        for (i, (s, v)) in answers.iter().enumerate() {
            assert_eq!(*s, StatusCode::CREATED, "{backend:?} m{i}: {v}");
        }
        let (_, view) = env
            .call(READER, Method::GET, "/v1/credentials/P", None)
            .await;
        assert_eq!(view["children"].as_array().unwrap().len(), 20, "{view}");
        assert_eq!(allocated(&env).await, before + 20, "{backend:?}");
        env.running.stop().await;
    }
}

/// Item 9: reasons and request ids refuse bidirectional controls and other format characters
/// (which make an audit entry read differently from what it says), naming the field; nothing is
/// applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_characters_in_free_text_are_refused() {
    let env = Env::start(Backend::Embedded, &[]).await;
    env.register("P", "physical", None).await;
    for c in [
        '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        '\u{200B}', '\u{FEFF}', '\u{2028}',
    ] {
        let code = format!("U+{:04X}", u32::from(c));
        let cases = [
            (
                "/v1/credentials/P/suspend",
                json!({"reason": format!("lost{c}"), }),
                "reason",
            ),
            (
                "/v1/credentials/P/revoke",
                json!({"reason": "x", "request_id": format!("r{c}")}),
                "request_id",
            ),
            (
                "/v1/credentials",
                json!({"credential_id": "N", "kind": "physical", "reason": format!("{c}new")}),
                "reason",
            ),
            (
                "/v1/credentials/P/reissue",
                json!({"new_credential_id": "N", "reason": format!("a{c}b")}),
                "reason",
            ),
        ];
        for (path, body, field) in cases {
            let (s, v) = env.post(path, body).await;
            assert_eq!(
                (s, v["type"].as_str()),
                (
                    StatusCode::BAD_REQUEST,
                    Some("urn:statusd:problem:bad-item")
                ),
                "{code} {path}: {v}"
            );
            let detail = v["detail"].as_str().unwrap();
            assert!(
                detail.starts_with(field) && detail.contains(&code),
                "{detail}"
            );
        }
        let (s, v) = env
            .post(
                "/v1/credentials/batch",
                json!({"operations": [{"op": "suspend", "credential_id": "P", "reason": format!("{c}")}]}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["errors"][0]["type"], "urn:statusd:problem:bad-item");
    }
    // Hangul, Arabic and emoji are plain text.
    let (s, v) = env
        .act("P", "suspend", json!({"reason": "분실 신고 😀 بطاقة"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, audit) = env
        .call(READER, Method::GET, "/v1/credentials/P/audit", None)
        .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");
    assert!(!exists(&env, "N").await);
    env.running.stop().await;
}

/// Issue 16 (import beside lookups): a batch of `BULK_MIN_ITEMS` or more runs on the bulk
/// lane, whose threads are in `SCHED_IDLE` and take the CPU the batch costs; a smaller batch
/// and single writes stay on the admin threads. Read from the metrics (`op="bulk"` against
/// `op="batch"`) and from this process's threads in /proc (statusd runs in-process here). On
/// both stores (on Redis the lane writes through connections of its own), and what the lane
/// writes reaches the public plane as any write does.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_run_on_the_idle_bulk_lane() {
    for backend in BACKENDS {
        bulk_lane_on(backend).await;
    }
}

#[cfg(target_os = "linux")]
async fn bulk_lane_on(backend: Backend) {
    let env = Env::start(backend, &[]).await;
    let ops = |prefix: &str, n: usize, op: &str| -> Value {
        let items: Vec<Value> = (0..n)
            .map(|i| {
                let id = format!("{prefix}-{i}");
                match op {
                    "register" => json!({"op": op, "credential_id": id, "kind": "physical"}),
                    _ => json!({"op": op, "credential_id": id, "reason": "bulk"}),
                }
            })
            .collect();
        json!({ "operations": items })
    };
    let n = statusd::runtime::BULK_MIN_ITEMS;
    let (s, small) = env
        .post("/v1/credentials/batch", ops("small", n - 1, "register"))
        .await;
    assert_eq!(s, StatusCode::OK, "{backend:?}: {small}");
    let (s, large) = env
        .post("/v1/credentials/batch", ops("large", 20 * n, "register"))
        .await;
    assert_eq!(s, StatusCode::OK, "{backend:?}");
    let results = large["results"].as_array().expect("results");
    assert_eq!(results.len(), 20 * n);
    assert!(
        results.iter().all(|r| r["result"] == "registered"),
        "{backend:?}: {large}"
    );
    let (s, suspended) = env
        .post("/v1/credentials/batch", ops("large", n, "suspend"))
        .await;
    assert_eq!(s, StatusCode::OK, "{backend:?}: {suspended}");
    env.expect_public(&[
        ("large-0", "SUSPENDED"),
        (&format!("large-{}", n - 1), "SUSPENDED"),
    ])
    .await;
    env.expect_public(&[(&format!("large-{n}"), "VALID")]).await;
    let count = |op: &str| {
        let name = format!("statusd_issuer_operation_seconds_count{{op=\"{op}\"}}");
        let admin = env.running.admin_addr;
        async move { support::metric(admin, &name).await }
    };
    assert_eq!(
        count("batch").await,
        1.0,
        "{backend:?}: the small batch on the admin threads"
    );
    assert_eq!(
        count("bulk").await,
        2.0,
        "{backend:?}: the large batches on the bulk lane"
    );
    // `Prefer: return=minimal` (what `statusd credentials import` sends): each item's id,
    // index, result and status, on the lane and on the admin threads alike. A body long
    // enough to be parsed on the lane but with fewer items than it takes goes back to the
    // admin threads.
    let minimal = |body: Value| {
        let url = format!("http://{}/v1/credentials/batch", env.running.admin_addr);
        async move {
            let auth = format!("Bearer {WRITER}");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("prefer", "handling=lenient, return=\"minimal\"; x=1"),
            ];
            let body = Some(Bytes::from(body.to_string()));
            request(Method::POST, &url, &headers, body).await
        }
    };
    let padded = |prefix: &str, n: usize| -> Value {
        let reason = "r".repeat(400);
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"op": "register", "credential_id": format!("{prefix}-{i}"), "kind": "physical", "reason": reason}))
            .collect();
        json!({ "operations": items })
    };
    for (body, n, op) in [
        (ops("min-large", 2 * n, "register"), 2 * n, "bulk"),
        (ops("min-small", 3, "register"), 3, "batch"),
        (padded("min-padded", 10), 10, "batch"),
    ] {
        let before = count(op).await;
        let (s, h, bytes) = minimal(body).await;
        assert_eq!(s, StatusCode::OK, "{backend:?}");
        assert_eq!(h["preference-applied"], "return=minimal");
        let v: Value = serde_json::from_slice(&bytes).expect("JSON");
        let results = v["results"].as_array().expect("results");
        assert_eq!(results.len(), n);
        for (i, r) in results.iter().enumerate() {
            let keys: Vec<&str> = r
                .as_object()
                .expect("object")
                .keys()
                .map(|k| k.as_str())
                .collect();
            assert_eq!(keys, ["credential_id", "index", "result", "status"], "{r}");
            assert_eq!(
                (r["index"].as_u64(), &r["result"]),
                (Some(i as u64), &json!("registered"))
            );
        }
        assert_eq!(
            count(op).await,
            before + 1.0,
            "{backend:?}: {n} items ran as {op}"
        );
    }
    // Without the preference, the same items answer in full (`exists`, with the assignment).
    let (s, full) = env
        .post("/v1/credentials/batch", ops("min-small", 3, "register"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(full["results"][0]["assignment"].is_object(), "{full}");
    // Every lane thread of this process (tests may run several servers) is in SCHED_IDLE,
    // and together they used CPU.
    let threads = support::threads("self");
    let lane: Vec<_> = threads
        .iter()
        .filter(|t| t.name == "statusd-bulk")
        .collect();
    for t in &lane {
        assert_eq!(t.policy, 5, "a bulk-lane thread outside SCHED_IDLE: {t:?}");
    }
    assert!(!lane.is_empty(), "no statusd-bulk thread");
    assert!(
        lane.iter().map(|t| t.cpu_ticks).sum::<u64>() > 0,
        "the lane's threads never ran"
    );
    // On Redis, the shared store's connections live on a thread of their own.
    if matches!(backend, Backend::Redis) {
        let store_thread = threads.iter().any(|t| t.name == "statusd-store");
        assert!(store_thread, "no statusd-store thread");
    }
    env.running.stop().await;
}
