//! A replica whose signing key file becomes unreadable keeps serving the tokens it signed, alerts,
//! and never serves a token past its `exp` (issue #8).
//!
//! A real server on the embedded store, with a 1 s `ttl` and a 10 s token lifetime: tokens are
//! re-signed every 5 s, so the whole pause fits in a few seconds. The key file is deleted, then
//! replaced by a directory and by another key (tests run as root, so `chmod 000` would not do).
//! Meanwhile the served JWT keeps its `iat`, every `Cache-Control` it comes with ends before its
//! `exp`, lookups follow a change the token does not show, and the signed routes answer 503
//! `signing-unavailable` before `exp`. Once the file holds the key again, signing resumes.

use crate::support::{get, metric, problem, start_with, until, TempDir};
use hyper::header::HeaderMap;
use statusd::app::Running;
use statusd::status::{Bits, Status};
use statusd::store::{Change, Store};
use statusd::token::keys::{Algorithm, KeySet, SigningKey};
use statusd::token::{decode_jwt_unverified, verify_jwt, StatusListClaims};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Large enough for the W3C view, so `/bitstringlists/…` is checked too.
const LIST_SIZE: u32 = 131_072;
/// The index the store changes while signing is paused.
const CHANGED: u64 = 5;
const JWT: &str = "application/statuslist+jwt";
/// `Cache-Control` windows of a token served normally with `--ttl 1` (max-age 1, swr 1).
const NORMAL_WINDOW: u64 = 2;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `max-age` + `stale-while-revalidate` + `stale-if-error` of a `Cache-Control` value.
fn window(headers: &HeaderMap) -> u64 {
    let cc = headers["cache-control"].to_str().unwrap();
    ["max-age=", "stale-while-revalidate=", "stale-if-error="]
        .iter()
        .map(|k| {
            cc.split(", ")
                .find_map(|d| d.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} in {cc}"))
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

/// `GET {base}{path}` as `accept`.
async fn fetch(base: &str, path: &str, accept: &str) -> (hyper::StatusCode, HeaderMap, Vec<u8>) {
    let (s, h, b) = get(&format!("{base}{path}"), &[("accept", accept)]).await;
    (s, h, b.to_vec())
}

/// The served JWT's claims, or `None` (with the headers) when it is not 200.
async fn token(base: &str) -> (Option<StatusListClaims>, HeaderMap, Vec<u8>) {
    let (s, h, b) = fetch(base, "/statuslists/1", JWT).await;
    if s != 200 {
        return (None, h, b);
    }
    let jwt = std::str::from_utf8(&b).expect("a JWT is text");
    let claims = decode_jwt_unverified(jwt).expect("a JWT").claims;
    (Some(claims), h, b)
}

fn status_at(claims: &StatusListClaims, idx: u64) -> Status {
    claims.status_list.decode().unwrap().get(idx).unwrap()
}

async fn lookup(base: &str, idx: u64) -> u64 {
    let (s, _, b) = get(&format!("{base}/statuses/1/{idx}"), &[]).await;
    assert_eq!(s, 200, "lookups keep answering");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    v["value"].as_u64().unwrap()
}

async fn key_ok(r: &Running) -> f64 {
    metric(r.admin_addr, "statusd_signing_key_ok").await
}

/// Replaces whatever is at `path` (file or directory) with `f`'s doing.
fn replace(path: &Path, f: impl FnOnce(&Path)) {
    if path.is_dir() {
        std::fs::remove_dir(path).unwrap();
    } else if path.exists() {
        std::fs::remove_file(path).unwrap();
    }
    f(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_key_file_pauses_signing_and_nothing_is_served_past_exp() {
    let started = Instant::now();
    let dir = TempDir::new("signing-key");
    let keys = TempDir::new("signing-key-file");
    let key = SigningKey::generate(Algorithm::Es256);
    let jwks = KeySet::new(vec![key.verifying_key()]);
    let path = keys.0.join("signing-key.pem");
    std::fs::write(&path, key.to_pkcs8_pem()).unwrap();
    let r = start_with(
        &dir.0,
        &[("1", Bits::One, LIST_SIZE, vec![(3, 1)])],
        &[
            &["--signing-key", path.to_str().unwrap()][..],
            &crate::support::RESIGN_EVERY_SECOND,
        ]
        .concat(),
    )
    .await;
    let base = format!("http://{}", r.public_addr);
    let (base, running) = (base.as_str(), &r);

    // Before the fault: tokens are re-signed at half their lifetime.
    let first = token(base).await.0.expect("a token").iat;
    let signed = until("a re-signed token", Duration::from_secs(8), || async move {
        token(base).await.0.filter(|c| c.iat > first)
    })
    .await;
    assert_eq!(key_ok(&r).await, 1.0);
    assert_eq!(status_at(&signed, CHANGED), Status::VALID);
    let exp = signed.exp.expect("tokens carry exp") as f64;

    // The key file disappears: signing pauses, the gauge says so.
    std::fs::remove_file(&path).unwrap();
    until(
        "statusd_signing_key_ok 0",
        Duration::from_secs(3),
        || async move { (key_ok(running).await == 0.0).then_some(()) },
    )
    .await;

    // A change made meanwhile reaches the lookups, not the token.
    r.store
        .apply(
            "1",
            &[Change {
                idx: CHANGED as u32,
                status: Status::INVALID,
            }],
        )
        .await
        .unwrap();
    until(
        "the lookup to follow the store",
        Duration::from_secs(3),
        || async move { (lookup(base, CHANGED).await == 1).then_some(()) },
    )
    .await;

    // Until past exp: the same token with a window that shrinks and never reaches past exp,
    // then 503 before exp, and never an expired token.
    let mut shortened = false;
    let mut withheld_at = None;
    while now() < exp + 1.0 {
        let asked = now();
        let (claims, h, body) = token(base).await;
        match claims {
            Some(c) => {
                assert!(withheld_at.is_none(), "a token served again after a 503");
                assert_eq!((c.iat, c.exp), (signed.iat, signed.exp), "no new signature");
                assert_eq!(status_at(&c, CHANGED), Status::VALID);
                assert!(asked < exp, "a token served at {asked} past its exp {exp}");
                let w = window(&h);
                assert!(
                    asked + w as f64 <= exp,
                    "{:?} at {asked} reaches past exp {exp}",
                    h["cache-control"]
                );
                if w < NORMAL_WINDOW && !shortened {
                    shortened = true;
                    // Another fault: a directory where the key file was.
                    replace(&path, |p| std::fs::create_dir(p).unwrap());
                }
            }
            None => {
                let p = problem(hyper::StatusCode::SERVICE_UNAVAILABLE, &h, &body);
                assert_eq!(p["type"], "urn:statusd:problem:signing-unavailable");
                assert!(h.contains_key("retry-after"));
                assert_eq!(h["cache-control"], "no-store");
                if withheld_at.is_none() {
                    withheld_at = Some(asked);
                    assert!(
                        asked < exp,
                        "the first 503 came at {asked}, after exp {exp}"
                    );
                    // Every signed form is withheld; lookups, the aggregation and the JWKS
                    // still answer.
                    for (path, accept) in [
                        ("/statuslists/1", "application/statuslist+cwt"),
                        ("/statuslists/1", "application/vnd.statusd.roaring"),
                        ("/bitstringlists/1/revocation", "application/vc+jwt"),
                    ] {
                        let (s, h, b) = fetch(base, path, accept).await;
                        problem(s, &h, &b);
                        assert_eq!(s, 503, "{path} as {accept}");
                    }
                    assert_eq!(lookup(base, CHANGED).await, 1);
                    for path in ["/statuslists", "/.well-known/jwks.json"] {
                        assert_eq!(get(&format!("{base}{path}"), &[]).await.0, 200, "{path}");
                    }
                    // Another fault: a different key in the file.
                    replace(&path, |p| {
                        let other = SigningKey::generate(Algorithm::Es256);
                        std::fs::write(p, other.to_pkcs8_pem()).unwrap();
                    });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(shortened, "the Cache-Control window never shrank");
    assert!(withheld_at.is_some(), "the token was never withheld");
    assert_eq!(key_ok(&r).await, 0.0, "another key keeps signing paused");
    assert!(metric(r.admin_addr, "statusd_signing_key_errors_total").await >= 3.0);

    // The file holds the key again: signing resumes at once, with the change.
    replace(&path, |p| std::fs::write(p, key.to_pkcs8_pem()).unwrap());
    let (resumed, h) = until(
        "a newly signed token",
        Duration::from_secs(5),
        || async move {
            match fetch(base, "/statuslists/1", JWT).await {
                (s, h, b) if s == 200 => Some((String::from_utf8(b).unwrap(), h)),
                _ => None,
            }
        },
    )
    .await;
    let c = verify_jwt(&resumed, &jwks).expect("signed by the key");
    assert!(c.iat > signed.iat);
    assert!(c.exp.unwrap() as f64 > now());
    assert_eq!(status_at(&c, CHANGED), Status::INVALID);
    assert_eq!(window(&h), NORMAL_WINDOW);
    assert_eq!(key_ok(&r).await, 1.0);
    let (s, _, _) = fetch(base, "/bitstringlists/1/revocation", "application/vc+jwt").await;
    assert_eq!(s, 200);
    r.stop().await;
    eprintln!("signing_key test took {:?}", started.elapsed());
}

/// `openssl` in `dir`, which must succeed; its stdout.
fn openssl(dir: &Path, args: &[&str]) -> String {
    crate::support::run(
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir),
    )
}

/// The JWT the replica serves once it is signed with `alg`; openssl verifies its signature
/// with the public key in `pub.pem` (`padding`: openssl's `-sigopt`s for PSS or PKCS#1 v1.5).
async fn openssl_verifies_the_served_jwt(
    dir: &Path,
    running: &Running,
    alg: &str,
    padding: &[&str],
) {
    use base64::Engine as _;
    let base = format!("http://{}", running.public_addr);
    let (_, _, body) = get(&format!("{base}/statuslists/1"), &[("accept", JWT)]).await;
    let token = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(decode_jwt_unverified(&token).unwrap().header["alg"], alg);
    let (_, _, jwks) = get(&format!("{base}/.well-known/jwks.json"), &[]).await;
    let keys = KeySet::from_jwks_json(std::str::from_utf8(&jwks).unwrap()).unwrap();
    assert_eq!(keys.keys[0].algorithm().jose_name(), alg);
    verify_jwt(&token, &keys).expect("the project's decoder verifies it");
    let (input, sig) = token.rsplit_once('.').unwrap();
    std::fs::write(dir.join("input"), input).unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    std::fs::write(dir.join("sig"), sig).unwrap();
    let mut args = vec!["dgst", "-sha256"];
    args.extend_from_slice(padding);
    args.extend(["-verify", "pub.pem", "-signature", "sig", "input"]);
    assert!(openssl(dir, &args).contains("Verified OK"));
}

/// Government PKIs are often RSA-only: an RSA key file signs PS256 (RSASSA-PSS, SHA-256, 32-byte
/// salt), or RS256 with `--signing-alg`; openssl verifies both. A PKCS#1 file and
/// `--signing-alg` for an EC key are refused with a message that says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_key_file_signs_ps256_or_rs256_and_openssl_verifies_both() {
    let dir = TempDir::new("rsa-key-file");
    openssl(
        &dir.0,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:3072",
            "-out",
            "rsa.pem",
        ],
    );
    openssl(
        &dir.0,
        &["pkey", "-in", "rsa.pem", "-pubout", "-out", "pub.pem"],
    );
    let key = dir.0.join("rsa.pem");
    let key = key.to_str().unwrap();
    let lists = [("1", Bits::One, 1024, vec![(3, 1)])];
    let data = TempDir::new("rsa-key-file-ps256");
    let running = start_with(&data.0, &lists, &["--signing-key", key]).await;
    let pss = [
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
    ];
    openssl_verifies_the_served_jwt(&dir.0, &running, "PS256", &pss).await;
    running.stop().await;

    let data = TempDir::new("rsa-key-file-rs256");
    let running = start_with(
        &data.0,
        &lists,
        &["--signing-key", key, "--signing-alg", "RS256"],
    )
    .await;
    openssl_verifies_the_served_jwt(&dir.0, &running, "RS256", &[]).await;
    running.stop().await;

    // PKCS#1 ("RSA PRIVATE KEY"): refused, with the conversion to use.
    openssl(
        &dir.0,
        &["rsa", "-in", "rsa.pem", "-traditional", "-out", "pkcs1.pem"],
    );
    let pkcs1 = dir.0.join("pkcs1.pem");
    let data = TempDir::new("rsa-key-file-pkcs1");
    let e = statusd::app::start(&crate::support::config(
        &data.0,
        &["--signing-key", pkcs1.to_str().unwrap()],
    ))
    .await
    .err()
    .expect("a PKCS#1 key is refused");
    assert!(format!("{e:#}").contains("openssl pkcs8 -topk8"), "{e:#}");

    // --signing-alg names an RSA algorithm: for an EC key it is a mistake, said at start.
    let ec = dir.0.join("ec.pem");
    std::fs::write(&ec, SigningKey::generate(Algorithm::Es256).to_pkcs8_pem()).unwrap();
    let data = TempDir::new("rsa-key-file-ec");
    let e = statusd::app::start(&crate::support::config(
        &data.0,
        &[
            "--signing-key",
            ec.to_str().unwrap(),
            "--signing-alg",
            "PS256",
        ],
    ))
    .await
    .err()
    .expect("--signing-alg with an EC key is refused");
    assert!(format!("{e:#}").contains("STATUSD_SIGNING_ALG"), "{e:#}");
}
