//! Signing-key rotation without downtime, end to end, as `docs/operations.md` prescribes it:
//! publish the next key before it signs, switch the signing key while the old one stays
//! published, and unpublish the old key only once nothing it signed can still be in use.
//!
//! Each step restarts statusd on the same data directory with different `--signing-key` /
//! `--published-keys` settings, reads the JWKS by `kid`, and checks tokens with the crate's own
//! verifiers: a token signed by the old key and fetched at the start keeps verifying against the
//! JWKS of every step until the old key is unpublished.

use crate::support::{config, get, start_with, TempDir};
use statusd::app::{self, Running};
use statusd::status::Bits;
use statusd::token::keys::{Algorithm, KeySet, SigningKey};
use statusd::token::{
    decode_cwt_unverified, decode_jwt_unverified, decode_vc_jwt_unverified, verify_cwt, verify_jwt,
    verify_vc_jwt, TokenError,
};
use std::path::Path;
use std::time::Duration;

/// One list large enough for the W3C view, so `vc+jwt` credentials are checked too.
const LIST_SIZE: u32 = 131_072;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write key file");
    path.to_str().expect("utf-8 path").to_owned()
}

/// Restarts statusd on `dir` (the lists are already in its store) and waits until ready.
async fn restart(dir: &Path, extra: &[&str]) -> Running {
    let running = app::start(&config(dir, extra))
        .await
        .expect("restart statusd");
    assert!(
        running.ready(Duration::from_secs(20)).await,
        "statusd did not become ready after a restart with {extra:?}"
    );
    running
}

/// The published JWKS and its `kid`s in order.
async fn jwks(r: &Running) -> (KeySet, Vec<String>) {
    let (status, _, body) = get(
        &format!("http://{}/.well-known/jwks.json", r.public_addr),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let set = KeySet::from_jwks_json(std::str::from_utf8(&body).expect("utf-8 JWKS"))
        .expect("the JWKS parses");
    let kids = set.keys.iter().map(|k| k.kid().to_owned()).collect();
    (set, kids)
}

/// The list's token in `accept`'s form.
async fn token(r: &Running, path: &str, accept: &str) -> Vec<u8> {
    let (status, _, body) = get(
        &format!("http://{}{path}", r.public_addr),
        &[("accept", accept)],
    )
    .await;
    assert_eq!(status, 200, "{path} as {accept}");
    body.to_vec()
}

/// Every signed form of list 1 (JWT, CWT, W3C `vc+jwt`) verifies against `keys` and names
/// `kid`.
async fn assert_signed_by(r: &Running, keys: &KeySet, kid: &str) {
    let jwt = String::from_utf8(token(r, "/statuslists/1", "application/statuslist+jwt").await)
        .expect("a JWT is text");
    verify_jwt(&jwt, keys).expect("the current JWT verifies against the current JWKS");
    assert_eq!(decode_jwt_unverified(&jwt).unwrap().header["kid"], kid);

    let cwt = token(r, "/statuslists/1", "application/statuslist+cwt").await;
    verify_cwt(&cwt, keys).expect("the current CWT verifies against the current JWKS");
    assert_eq!(
        decode_cwt_unverified(&cwt).unwrap().kid.as_deref(),
        Some(kid.as_bytes())
    );

    let vc =
        String::from_utf8(token(r, "/bitstringlists/1/revocation", "application/vc+jwt").await)
            .expect("a vc+jwt is text");
    verify_vc_jwt(&vc, keys).expect("the current credential verifies against the current JWKS");
    assert_eq!(decode_vc_jwt_unverified(&vc).unwrap().header["kid"], kid);
}

/// The `kid` label of `statusd_signing_key_info` on the admin plane.
async fn metrics_signing_kid(r: &Running) -> String {
    let (_, _, body) = get(&format!("http://{}/metrics", r.admin_addr), &[]).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("statusd_signing_key_info{"))
        .expect("statusd_signing_key_info is exported");
    let kid = line.split("kid=\"").nth(1).expect("a kid label");
    kid[..kid.find('"').expect("closing quote")].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_publishes_before_signing_and_unpublishes_after_expiry() {
    let dir = TempDir::new("rotation");
    let keys = TempDir::new("rotation-keys");
    let a = SigningKey::generate(Algorithm::Es256);
    let b = SigningKey::generate(Algorithm::Es256);
    assert_ne!(a.kid(), b.kid());
    let a_private = write(&keys.0, "a.pem", &a.to_pkcs8_pem());
    let a_public = write(&keys.0, "a.pub.pem", &a.verifying_key().to_public_pem());
    let b_private = write(&keys.0, "b.pem", &b.to_pkcs8_pem());
    let b_public = write(&keys.0, "b.pub.pem", &b.verifying_key().to_public_pem());

    // 0. Key A signs and is the only published key.
    let r = start_with(
        &dir.0,
        &[("1", Bits::Two, LIST_SIZE, vec![(3, 1), (9, 2)])],
        &["--signing-key", &a_private],
    )
    .await;
    let (set, kids) = jwks(&r).await;
    assert_eq!(kids, [a.kid()]);
    assert_signed_by(&r, &set, a.kid()).await;
    assert_eq!(metrics_signing_kid(&r).await, a.kid());
    // A verifier (or a cache) holds on to this token for its whole lifetime.
    let old_jwt =
        String::from_utf8(token(&r, "/statuslists/1", "application/statuslist+jwt").await).unwrap();
    let old_claims = verify_jwt(&old_jwt, &set).unwrap();
    r.stop().await;

    // 1. Publish B (its public key suffices) while A still signs.
    let r = restart(
        &dir.0,
        &["--signing-key", &a_private, "--published-keys", &b_public],
    )
    .await;
    let (set, kids) = jwks(&r).await;
    assert_eq!(kids, [a.kid(), b.kid()], "the signing key first, then B");
    assert_signed_by(&r, &set, a.kid()).await;
    assert_eq!(verify_jwt(&old_jwt, &set), Ok(old_claims.clone()));
    r.stop().await;

    // 2. B signs; A stays published (listed as its private PEM here, public half only served).
    let r = restart(
        &dir.0,
        &["--signing-key", &b_private, "--published-keys", &a_private],
    )
    .await;
    let (set, kids) = jwks(&r).await;
    assert_eq!(kids, [b.kid(), a.kid()]);
    assert_signed_by(&r, &set, b.kid()).await;
    assert_eq!(metrics_signing_kid(&r).await, b.kid());
    assert_eq!(
        verify_jwt(&old_jwt, &set),
        Ok(old_claims.clone()),
        "a token signed by A before the switch still verifies"
    );
    let (_, _, jwks_body) = get(
        &format!("http://{}/.well-known/jwks.json", r.public_addr),
        &[],
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&jwks_body).contains("\"d\""),
        "no private member is ever published"
    );
    r.stop().await;

    // 2b. The same step with A's public PEM, and the signing key listed again (deduplicated).
    let r = restart(
        &dir.0,
        &[
            "--signing-key",
            &b_private,
            "--published-keys",
            &format!("{a_public},{b_public}"),
        ],
    )
    .await;
    let (set, kids) = jwks(&r).await;
    assert_eq!(kids, [b.kid(), a.kid()]);
    assert_eq!(verify_jwt(&old_jwt, &set), Ok(old_claims));
    r.stop().await;

    // 3. After A's last token expired: A is unpublished and its tokens no longer verify.
    let r = restart(&dir.0, &["--signing-key", &b_private]).await;
    let (set, kids) = jwks(&r).await;
    assert_eq!(kids, [b.kid()]);
    assert_signed_by(&r, &set, b.kid()).await;
    assert_eq!(
        verify_jwt(&old_jwt, &set),
        Err(TokenError::UnknownKey(Some(a.kid().to_owned())))
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_published_key_files_stop_the_start_with_the_file_named() {
    let dir = TempDir::new("rotation-bad");
    let key = SigningKey::generate(Algorithm::Es256);
    let signing = write(&dir.0, "signing.pem", &key.to_pkcs8_pem());
    let missing = dir.0.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let cert = write(
        &dir.0,
        "cert.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    for (file, needle) in [(missing, "reading"), (cert.as_str(), "CERTIFICATE")] {
        let err = match app::start(&config(
            &dir.0,
            &["--signing-key", &signing, "--published-keys", file],
        ))
        .await
        {
            Ok(r) => {
                r.stop().await;
                panic!("statusd started with an unusable published key file {file}");
            }
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains(file) && err.contains("STATUSD_PUBLISHED_KEYS") && err.contains(needle),
            "{err}"
        );
    }
}
