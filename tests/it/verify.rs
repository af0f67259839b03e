//! `statusd verify` against a running statusd over real sockets: every credential format
//! (SD-JWT VC / JWT `status`, W3C VC-JWT 1.1 and 2.0 `credentialStatus`, mdoc MSO COSE_Sign1),
//! every status and its exit code, the cache (reuse within `ttl`, refetch after it, expiry),
//! and each way the check must fail: a tampered token, a wrong `sub`, an index out of range,
//! an unreachable list, offline without a cache; lists and key sets over https (a private CA
//! with `--ca`, refused without it).

use crate::support::{start_with, TempDir};
use ciborium::Value as Cbor;
use serde_json::{json, Value};
use statusd::status::{Bits, Status};
use statusd::store::{Change, Store as _};
use statusd::token::keys::{Algorithm, SigningKey};
use std::process::Output;

/// The list every test reads: 2 bits, large enough for W3C views; 1 INVALID, 2 SUSPENDED,
/// 3 APPLICATION_SPECIFIC, everything else VALID.
const SIZE: u32 = 131_072;

fn lists() -> Vec<crate::support::SeedList<'static>> {
    vec![("v", Bits::Two, SIZE, vec![(1, 1), (2, 2), (3, 3)])]
}

/// Runs `statusd verify` off the async threads (the server runs on them).
async fn verify(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        crate::support::statusd()
            .arg("verify")
            .args(&args)
            .output()
            .expect("run statusd verify")
    })
    .await
    .unwrap()
}

fn args(credential: &str, cache: &TempDir, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        credential.to_owned(),
        "--cache-dir".to_owned(),
        cache.0.to_str().unwrap().to_owned(),
    ];
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

/// The JSON report and the exit code.
fn report(out: &Output) -> (i32, Value) {
    let code = out.status.code().expect("exit code");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

fn fails_with(out: &Output, needle: &str) {
    let (code, v) = report(out);
    assert_eq!(code, 1, "report: {v}");
    assert_eq!(v["status"], "CHECK_FAILED");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "expected {needle:?} in stderr: {err}");
}

fn jwt(header_typ: &str, claims: &Value) -> String {
    let mut h = serde_json::Map::new();
    h.insert("typ".into(), json!(header_typ));
    // The credential's own key: not the list's, and not checked by `verify` (out of scope).
    let key = SigningKey::generate(Algorithm::Es256);
    statusd::token::sign_compact(h, claims.to_string().as_bytes(), &key).expect("sign")
}

/// An SD-JWT VC with one disclosure and a `status` claim.
fn sd_jwt_vc(uri: &str, idx: u64) -> String {
    let t = jwt(
        "dc+sd-jwt",
        &json!({"iss": "https://issuer.example", "vct": "https://credentials.example/id",
                "_sd": [], "status": {"status_list": {"idx": idx, "uri": uri}}}),
    );
    format!("{t}~WyJzYWx0IiwiZ2l2ZW5fbmFtZSIsIkpvaG4iXQ~")
}

/// A W3C VCDM 2.0 credential secured as `vc+jwt`.
fn vc_jwt_2(entries: Value) -> String {
    jwt(
        "vc+jwt",
        &json!({"@context": ["https://www.w3.org/ns/credentials/v2"],
                "type": ["VerifiableCredential"], "issuer": "https://issuer.example",
                "credentialSubject": {"id": "did:example:holder"},
                "credentialStatus": entries}),
    )
}

/// A W3C VC 1.1 JWT: the credential in the `vc` claim.
fn vc_jwt_1_1(entries: Value) -> String {
    jwt(
        "JWT",
        &json!({"iss": "https://issuer.example", "sub": "did:example:holder",
                "vc": {"@context": ["https://www.w3.org/2018/credentials/v1"],
                       "type": ["VerifiableCredential"],
                       "credentialSubject": {"id": "did:example:holder"},
                       "credentialStatus": entries}}),
    )
}

fn entry(base: &str, purpose: &str, idx: u64, size: Option<u8>) -> Value {
    let url = format!("{base}/bitstringlists/v/{purpose}");
    let mut e = json!({"id": format!("{url}#{idx}"), "type": "BitstringStatusListEntry",
        "statusPurpose": purpose, "statusListIndex": idx.to_string(),
        "statusListCredential": url});
    if let Some(s) = size {
        e["statusSize"] = json!(s);
    }
    e
}

/// An ISO mdoc `issuerAuth`: COSE_Sign1 over #6.24(MSO) with the MSO's `status`, as hex.
fn mdoc_mso_hex(uri: &str, idx: u64) -> String {
    let text = |s: &str| Cbor::Text(s.into());
    let mso = Cbor::Map(vec![
        (text("version"), text("1.0")),
        (text("digestAlgorithm"), text("SHA-256")),
        (text("docType"), text("org.iso.18013.5.1.mDL")),
        (
            text("status"),
            Cbor::Map(vec![(
                text("status_list"),
                Cbor::Map(vec![
                    (text("idx"), Cbor::Integer(idx.into())),
                    (text("uri"), text(uri)),
                ]),
            )]),
        ),
    ]);
    let inner = statusd::status::ietf::cbor_to_vec(&mso);
    let payload = statusd::status::ietf::cbor_to_vec(&Cbor::Tag(24, Box::new(Cbor::Bytes(inner))));
    let key = SigningKey::generate(Algorithm::Es256);
    statusd::token::sign1_tagged("application/mso+cbor", payload, &key)
        .expect("sign the MSO")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Unix time two days from now, as `--at` takes it.
fn two_days_from_now() -> String {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2 * 86_400)
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_every_status_of_jwt_sd_jwt_vc_and_mdoc_credentials() {
    let dir = TempDir::new("verify-formats");
    let running = start_with(&dir.0, &lists(), &[]).await;
    let uri = format!("http://{}/statuslists/v", running.public_addr);
    let cache = TempDir::new("verify-formats-cache");
    for (idx, code, outcome, name) in [
        (0, 0, "VALID", "VALID"),
        (1, 10, "INVALID", "INVALID"),
        (2, 11, "SUSPENDED", "SUSPENDED"),
        (3, 12, "OTHER", "APPLICATION_SPECIFIC"),
    ] {
        let (got, r) = report(&verify(args(&sd_jwt_vc(&uri, idx), &cache, &[])).await);
        assert_eq!((got, r["status"].as_str()), (code, Some(outcome)), "{r}");
        assert_eq!(r["exit_code"], code);
        assert_eq!(r["credential_format"], "jwt");
        assert_eq!(
            r["credential_signature"]
                .as_str()
                .unwrap()
                .split(' ')
                .next(),
            Some("not")
        );
        let c = &r["references"][0];
        assert_eq!(c["status"], name);
        assert_eq!(c["list"]["format"], "statuslist+jwt");
        assert_eq!(
            c["list"]["key_source"],
            format!("http://{}/.well-known/jwks.json", running.public_addr)
        );

        // The mdoc again, with no cache at all: every run fetches.
        let no_cache = vec![mdoc_mso_hex(&uri, idx), "--no-cache".to_owned()];
        let (got, r) = report(&verify(no_cache).await);
        assert_eq!(got, code, "mdoc {r}");
        assert_eq!(r["credential_format"], "cose");
        assert_eq!(r["references"][0]["status"], name);
        assert_eq!(r["references"][0]["list"]["source"], "network");
        assert_eq!(r["references"][0]["list"]["format"], "statuslist+cwt");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_bitstring_views_from_vc_jwt_1_1_and_2_0() {
    let dir = TempDir::new("verify-w3c");
    let running = start_with(&dir.0, &lists(), &[]).await;
    let base = format!("http://{}", running.public_addr);
    let cache = TempDir::new("verify-w3c-cache");
    for (idx, code, revocation, suspension) in [
        (0, 0, "VALID", "VALID"),
        (1, 10, "INVALID", "VALID"),
        (2, 11, "VALID", "SUSPENDED"),
    ] {
        let entries = json!([
            entry(&base, "revocation", idx, None),
            entry(&base, "suspension", idx, None)
        ]);
        for (credential, label) in [
            (vc_jwt_2(entries.clone()), "2.0"),
            (vc_jwt_1_1(entries), "1.1"),
        ] {
            let (got, r) = report(&verify(args(&credential, &cache, &[])).await);
            assert_eq!(got, code, "VC {label}: {r}");
            assert_eq!(r["credential_format"], "vc-jwt");
            assert_eq!(r["references"][0]["status"], revocation);
            assert_eq!(r["references"][1]["status"], suspension);
            assert_eq!(r["references"][0]["list"]["format"], "vc+jwt");
        }
    }
    // An application-specific value through the `message` view (statusSize 2): exit 12.
    let message = vc_jwt_2(json!([entry(&base, "message", 3, Some(2))]));
    let (got, r) = report(&verify(args(&message, &cache, &[])).await);
    assert_eq!(got, 12, "{r}");
    assert_eq!(r["references"][0]["status"], "APPLICATION_SPECIFIC");
    // A purpose the list does not publish is a STATUS_VERIFICATION_ERROR.
    let mut wrong = entry(&base, "revocation", 0, None);
    wrong["statusPurpose"] = json!("suspension");
    let out = verify(args(&vc_jwt_2(wrong), &cache, &[])).await;
    fails_with(&out, "statusPurpose");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reuses_a_cached_list_within_ttl_without_any_request() {
    let dir = TempDir::new("verify-cache");
    let running = start_with(&dir.0, &lists(), &[]).await;
    let uri = format!("http://{}/statuslists/v", running.public_addr);
    let base = format!("http://{}", running.public_addr);
    let cache = TempDir::new("verify-cache-dir");
    let jwt = sd_jwt_vc(&uri, 1);
    let vc = vc_jwt_2(entry(&base, "revocation", 1, None));
    for c in [&jwt, &vc] {
        let (code, r) = report(&verify(args(c, &cache, &[])).await);
        assert_eq!(code, 10, "{r}");
        assert_eq!(r["references"][0]["list"]["source"], "network");
        assert!(r["references"][0]["list"]["etag"].is_string());
    }
    // No server at all now: a second run within ttl (300 s) must not need one.
    running.stop().await;
    for c in [&jwt, &vc] {
        let (code, r) = report(&verify(args(c, &cache, &[])).await);
        assert_eq!(code, 10, "{r}");
        let list = &r["references"][0]["list"];
        assert_eq!(list["source"], "cache");
        assert!(list["age_seconds"].as_u64().unwrap() < 60);
        // And offline mode reads the same cache.
        let (code, r) = report(&verify(args(c, &cache, &["--offline"])).await);
        assert_eq!(
            (code, &r["references"][0]["list"]["source"]),
            (10, &json!("cache"))
        );
    }
    // Past the list's exp the cached token is refused, offline or not.
    let later = two_days_from_now();
    fails_with(
        &verify(args(&jwt, &cache, &["--offline", "--at", &later])).await,
        "expired",
    );
    fails_with(
        &verify(args(&vc, &cache, &["--offline", "--at", &later])).await,
        "expired",
    );
    // Once the ttl has passed the list is fetched again, and the server is gone.
    let after_ttl = (later.parse::<u64>().unwrap() - 2 * 86_400 + 400).to_string();
    fails_with(
        &verify(args(&jwt, &cache, &["--at", &after_ttl])).await,
        "fetching the list failed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refetches_a_changed_list_after_ttl() {
    let dir = TempDir::new("verify-ttl");
    let running = start_with(
        &dir.0,
        &lists(),
        &[
            "--ttl",
            "2",
            "--token-lifetime",
            "60",
            "--reencode-interval",
            "1",
        ],
    )
    .await;
    let uri = format!("http://{}/statuslists/v", running.public_addr);
    let cache = TempDir::new("verify-ttl-cache");
    let jwt = sd_jwt_vc(&uri, 0);
    let (code, r) = report(&verify(args(&jwt, &cache, &[])).await);
    assert_eq!(
        (code, &r["references"][0]["list"]["ttl_seconds"]),
        (0, &json!(2)),
        "{r}"
    );
    let fetched = std::time::Instant::now();
    running
        .store
        .apply(
            "v",
            &[Change {
                idx: 0,
                status: Status::INVALID,
            }],
        )
        .await
        .unwrap();
    let (code, r) = report(&verify(args(&jwt, &cache, &[])).await);
    if fetched.elapsed() < std::time::Duration::from_millis(1500) {
        // Within ttl the cached (old) list answers: that is what ttl allows.
        assert_eq!(
            (code, &r["references"][0]["list"]["source"]),
            (0, &json!("cache")),
            "{r}"
        );
    }
    // After ttl the list is asked for again and the change is seen.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (code, r) = report(&verify(args(&jwt, &cache, &[])).await);
        let source = r["references"][0]["list"]["source"].clone();
        if code == 10 {
            assert_eq!(source, "network", "a changed list arrives whole: {r}");
            break;
        }
        assert_eq!(code, 0, "{r}");
        assert!(
            std::time::Instant::now() < deadline,
            "the change never arrived: {r}"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_tampered_lists_wrong_sub_out_of_range_and_unreachable_lists() {
    let dir = TempDir::new("verify-bad");
    let running = start_with(&dir.0, &lists(), &[]).await;
    let addr = running.public_addr;
    let uri = format!("http://{addr}/statuslists/v");
    let cache = TempDir::new("verify-bad-cache");

    // Wrong sub: the same list reached under another name than the one it was signed for.
    let other_name = format!("http://localhost:{}/statuslists/v", addr.port());
    fails_with(
        &verify(args(&sd_jwt_vc(&other_name, 0), &cache, &[])).await,
        "sub",
    );
    // Index out of range.
    fails_with(
        &verify(args(&sd_jwt_vc(&uri, u64::from(SIZE)), &cache, &[])).await,
        "out of range",
    );
    // A key the list was not signed with.
    let wrong = TempDir::new("verify-bad-key");
    let pem = wrong.0.join("wrong.pem");
    std::fs::write(
        &pem,
        SigningKey::generate(Algorithm::Es256)
            .verifying_key()
            .to_public_pem(),
    )
    .unwrap();
    fails_with(
        &verify(args(
            &sd_jwt_vc(&uri, 0),
            &cache,
            &["--key", pem.to_str().unwrap()],
        ))
        .await,
        "no verification key",
    );
    // A tampered cached token: the cache is re-verified on every read.
    let (code, _) = report(&verify(args(&sd_jwt_vc(&uri, 0), &cache, &[])).await);
    assert_eq!(code, 0);
    let body =
        statusd::verifier::Cache::new(&cache.0).body_path(&uri, statusd::verifier::ACCEPT_TOKEN);
    let token = std::fs::read_to_string(&body).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    let mut forged = claims.clone();
    // Claim every entry VALID: a different lst under the original signature.
    forged["status_list"]["lst"] = json!("eNrbuRgAAhcBXQ");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged.to_string()
        ),
        parts[2]
    );
    std::fs::write(&body, forged).unwrap();
    fails_with(
        &verify(args(&sd_jwt_vc(&uri, 1), &cache, &["--offline"])).await,
        "signature verification failed",
    );
    // Unreachable: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    fails_with(
        &verify(args(
            &sd_jwt_vc(&format!("http://{closed}/statuslists/v"), 0),
            &cache,
            &[],
        ))
        .await,
        "fetching the list failed",
    );
    // Offline with nothing cached.
    let empty = TempDir::new("verify-bad-empty");
    fails_with(
        &verify(args(&sd_jwt_vc(&uri, 0), &empty, &["--offline"])).await,
        "not in the cache",
    );
    // A credential without a status reference.
    fails_with(
        &verify(args(&jwt("JWT", &json!({"sub": "x"})), &cache, &[])).await,
        "no status reference",
    );
    running.stop().await;
}

/// A VC 1.1 credential whose `credentialStatus` holds `entries`, issued by `issuer`.
fn vc_1_1(issuer: &str, entries: Value) -> Value {
    json!({"@context": ["https://www.w3.org/2018/credentials/v1",
                        "https://w3id.org/vc/status-list/2021/v1"],
           "id": "urn:uuid:5b1b0f6e-7c1a-4d4e-9d0c-2f4d8c1e9a11",
           "type": ["VerifiableCredential"], "issuer": issuer,
           "issuanceDate": "2026-01-01T00:00:00Z",
           "credentialSubject": {"id": "did:example:holder"},
           "credentialStatus": entries})
}

/// Digital Bazaar's checker over `credential`: `verified` (no status bit set) or its error. The
/// list credential is fetched in its Data Integrity form and its proof verified (key found through
/// the controller document statusd serves).
async fn digitalbazaar_check(credential: &Value, dir: &TempDir) -> Value {
    let path = dir.0.join(format!("cred-{:x}.json", rand::random::<u64>()));
    std::fs::write(&path, credential.to_string()).unwrap();
    crate::interop::node_json(vec!["sl2021_check.mjs".into(), path.into()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_list_2021_views_are_read_by_statusd_verify_and_digitalbazaar_vc_status_list() {
    let dir = TempDir::new("verify-sl2021");
    let running = start_with(&dir.0, &lists(), &[]).await;
    let base = format!("http://{}", running.public_addr);
    let cache = TempDir::new("verify-sl2021-cache");
    let entry = |purpose: &str, idx: u32| {
        let url = format!("{base}/statuslist2021/v/{purpose}");
        statusd::status::sl2021::status_entry(&url, idx, purpose.parse().unwrap())
    };
    for (idx, code, revoked, suspended) in [
        (0, 0, false, false),
        (1, 10, true, false),
        (2, 11, false, true),
        (3, 0, false, false),
    ] {
        let both = json!([entry("revocation", idx), entry("suspension", idx)]);
        let jwt_1_1 = jwt("JWT", &json!({"iss": base, "vc": vc_1_1(&base, both)}));
        let (got, r) = report(&verify(args(&jwt_1_1, &cache, &[])).await);
        assert_eq!(got, code, "idx {idx}: {r}");
        assert_eq!(
            r["references"][0]["reference"]["type"],
            "StatusList2021Entry"
        );
        assert_eq!(
            r["references"][0]["list"]["format"],
            "StatusList2021Credential (VC-JWT 1.1)"
        );
        assert_eq!(
            r["references"][0]["status"],
            if revoked { "INVALID" } else { "VALID" }
        );
        assert_eq!(
            r["references"][1]["status"],
            if suspended { "SUSPENDED" } else { "VALID" }
        );

        for (purpose, set) in [("revocation", revoked), ("suspension", suspended)] {
            let c = vc_1_1(&base, entry(purpose, idx));
            let db = digitalbazaar_check(&c, &dir).await;
            assert_eq!(db["error"], Value::Null, "{purpose} {idx}: {db}");
            assert_eq!(db["verified"], !set, "{purpose} {idx}: {db}");
        }
    }
    // The library refuses a list of another issuer: statusd signs with its own.
    let c = vc_1_1("https://someone-else.example", entry("revocation", 0));
    assert_eq!(digitalbazaar_check(&c, &dir).await["verified"], false);
    // Small lists have no view, like the Bitstring views.
    let (status, _, _) =
        crate::support::get(&format!("{base}/statuslist2021/v/message"), &[]).await;
    assert_eq!(status, 404);
    running.stop().await;
}

/// Issue #15 follow-up: https lists and JWKS are fetched through the TLS client `inspect` uses.
/// The server's CA is generated at test time; with `--ca` the list is read, without it the
/// server is not trusted and the check fails with the handshake named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fetches_https_lists_with_a_private_ca_and_refuses_an_untrusted_server() {
    let dir = TempDir::new("verify-https");
    let pki = crate::tls::Pki::new(&dir.0, "verify");
    let server = pki.server("server", "statusd public");
    let running = start_with(
        &dir.0,
        &lists(),
        &[
            "--tls-cert",
            server.cert.to_str().unwrap(),
            "--tls-key",
            server.key.to_str().unwrap(),
        ],
    )
    .await;
    let uri = format!("https://{}/statuslists/v", running.public_addr);
    let ca = pki.ca_cert.to_str().unwrap();
    for (idx, code, outcome) in [(0, 0, "VALID"), (2, 11, "SUSPENDED")] {
        let cache = TempDir::new("verify-https-cache");
        let (got, r) = report(&verify(args(&sd_jwt_vc(&uri, idx), &cache, &["--ca", ca])).await);
        assert_eq!((got, r["status"].as_str()), (code, Some(outcome)), "{r}");
        let list = &r["references"][0]["list"];
        assert_eq!(list["source"], "network");
        assert_eq!(
            list["key_source"],
            format!("https://{}/.well-known/jwks.json", running.public_addr)
        );
        // The mdoc (statuslist+cwt) over https too.
        let (got, r) = report(
            &verify(vec![
                mdoc_mso_hex(&uri, idx),
                "--no-cache".into(),
                "--ca".into(),
                ca.into(),
            ])
            .await,
        );
        assert_eq!(got, code, "mdoc {r}");
    }
    // Without --ca the system roots do not know the test CA: refused, with the reason.
    let cache = TempDir::new("verify-https-untrusted");
    let out = verify(args(&sd_jwt_vc(&uri, 0), &cache, &[])).await;
    fails_with(&out, "TLS handshake");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&uri) && err.contains("certificate"), "{err}");
    running.stop().await;
}

/// Issue 15 item 1, `--trust-anchor`: statusd signs with a certificate chain (a test PKI made
/// with openssl at test time); every list form (statuslist+jwt, statuslist+cwt, vc+jwt and the
/// VC-JWT 1.1 Status List 2021 view) is trusted through its `x5c` / `x5chain` validated up to
/// the root, without any JWKS. A chain from another CA, and a leaf that has expired by the time
/// of the check, fail the check (exit 1) with the failed step named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_a_trust_anchor_validates_each_lists_chain_and_refuses_another_ca_or_an_expired_leaf(
) {
    let dir = TempDir::new("verify-anchor");
    let pki = statusd::cert::test_pki::Pki::new();
    let other = statusd::cert::test_pki::Pki::new();
    let key = SigningKey::generate(Algorithm::Es256);
    let key_file = dir.0.join("signing-key.pem");
    std::fs::write(&key_file, key.to_pkcs8_pem()).unwrap();
    // Valid for one day: long enough for the one-hour tokens, expired two days from now.
    let chain = pki.leaf("signer", &key.verifying_key().to_public_pem(), "leaf", 1);
    let running = start_with(
        &dir.0,
        &lists(),
        &[
            "--signing-key",
            key_file.to_str().unwrap(),
            "--signing-cert",
            chain.to_str().unwrap(),
            "--token-lifetime",
            "3600",
        ],
    )
    .await;
    let base = format!("http://{}", running.public_addr);
    let uri = format!("{base}/statuslists/v");
    let root = pki.root();
    let root = root.to_str().unwrap();
    // A bundle: the anchors are every certificate of the file, the right one last.
    let bundle = dir.0.join("bundle.pem");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(other.root()).unwrap()
            + &std::fs::read_to_string(pki.root()).unwrap(),
    )
    .unwrap();
    let sl2021 = |purpose: &str, idx: u32| {
        let url = format!("{base}/statuslist2021/v/{purpose}");
        statusd::status::sl2021::status_entry(&url, idx, purpose.parse().unwrap())
    };
    let validated = "2 certificate(s) validated to CN=Test Root";
    for (idx, code) in [(0u32, 0), (1, 10), (2, 11), (3, 12)] {
        let i = u64::from(idx);
        let mut credentials = vec![
            (sd_jwt_vc(&uri, i), "statuslist+jwt"),
            (mdoc_mso_hex(&uri, i), "statuslist+cwt"),
        ];
        if idx < 3 {
            // The W3C views: revocation (INVALID) and suspension (SUSPENDED) entries.
            let purpose = if idx == 2 { "suspension" } else { "revocation" };
            credentials.push((vc_jwt_2(entry(&base, purpose, i, None)), "vc+jwt"));
            let v = vc_1_1(&base, sl2021(purpose, idx));
            credentials.push((
                jwt("JWT", &json!({"iss": base, "vc": v})),
                "StatusList2021Credential (VC-JWT 1.1)",
            ));
        }
        for (credential, format) in credentials {
            for anchors in [root, bundle.to_str().unwrap()] {
                let out = verify(vec![
                    credential.clone(),
                    "--no-cache".into(),
                    "--trust-anchor".into(),
                    anchors.into(),
                ])
                .await;
                let (got, r) = report(&out);
                assert_eq!(got, code, "{format} idx {idx}: {r}");
                let list = &r["references"][0]["list"];
                assert_eq!(list["format"], format, "{r}");
                assert_eq!(list["key_source"], validated, "{r}");
            }
        }
    }

    // A chain from another CA: the check fails, naming the anchor it does not reach.
    let cache = TempDir::new("verify-anchor-cache");
    for credential in [sd_jwt_vc(&uri, 0), mdoc_mso_hex(&uri, 0)] {
        let out = verify(args(
            &credential,
            &cache,
            &["--trust-anchor", other.root().to_str().unwrap()],
        ))
        .await;
        fails_with(
            &out,
            "certificate chain: the chain does not end at the trust anchor (CN=Test Root)",
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&uri),
            "the list is named"
        );
    }
    // Two days on, the leaf has expired: refused for the certificate, before the token's exp
    // is even looked at.
    let later = two_days_from_now();
    for credential in [sd_jwt_vc(&uri, 0), mdoc_mso_hex(&uri, 0)] {
        let out = verify(vec![
            credential,
            "--no-cache".into(),
            "--trust-anchor".into(),
            root.into(),
            "--at".into(),
            later.clone(),
        ])
        .await;
        fails_with(
            &out,
            "certificate chain: certificate 0 (CN=Revocation List Signer) is not valid at",
        );
    }
    // --key and --trust-anchor are two trust models: not both.
    let out = verify(vec![
        sd_jwt_vc(&uri, 0),
        "--trust-anchor".into(),
        root.into(),
        "--key".into(),
        format!("{base}/.well-known/jwks.json"),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    running.stop().await;
}
