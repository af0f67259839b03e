//! Issue 15 item 4: the W3C views with a Data Integrity proof, negotiated by `Accept` on their
//! existing URLs, verified by a third party (Digital Bazaar's `@digitalbazaar/vc` with the
//! ecdsa-rdfc-2019 and eddsa-rdfc-2022 cryptosuites, tests/interop/di_verify.mjs) that finds the
//! key only through what statusd publishes: the proof's verification method `{issuer}#{kid}`,
//! dereferenced in the controller document served at the issuer URL (statusd's root).

use crate::support::{get, start_with, TempDir};
use serde_json::Value;
use statusd::status::Bits;
use statusd::token::keys::{Algorithm, SigningKey};

/// One 2-bit list large enough for every W3C view.
fn lists() -> Vec<crate::support::SeedList<'static>> {
    vec![("d", Bits::Two, 131_072, vec![(1, 1), (2, 2), (3, 3)])]
}

/// Digital Bazaar's verdict on the credential at `url` fetched with `accept`.
async fn digitalbazaar(url: &str, accept: &str, tamper: bool) -> Value {
    let mut args = vec![
        "di_verify.mjs".to_owned(),
        url.to_owned(),
        accept.to_owned(),
    ];
    if tamper {
        args.push("tamper".into());
    }
    crate::interop::node_json(args.into_iter().map(Into::into).collect()).await
}

/// statusd with a signing key of `alg` in a file.
async fn start(dir: &TempDir, alg: Algorithm) -> (statusd::app::Running, SigningKey) {
    let key = SigningKey::generate(alg);
    let file = dir.0.join("signing-key.pem");
    std::fs::write(&file, key.to_pkcs8_pem()).unwrap();
    let running = start_with(&dir.0, &lists(), &["--signing-key", file.to_str().unwrap()]).await;
    (running, key)
}

/// The views and the media types that ask for their Data Integrity form.
const VIEWS: [(&str, &str, &str); 6] = [
    (
        "bitstringlists/d/revocation",
        "application/vc",
        "application/vc",
    ),
    (
        "bitstringlists/d/suspension",
        "application/vc",
        "application/vc",
    ),
    (
        "bitstringlists/d/message",
        "application/vc",
        "application/vc",
    ),
    (
        "statuslist2021/d/revocation",
        "application/vc+ld+json",
        "application/vc+ld+json",
    ),
    (
        "statuslist2021/d/suspension",
        "application/vc",
        "application/vc+ld+json",
    ),
    (
        "statuslist2021/d/suspension",
        "application/vc+ld+json",
        "application/vc+ld+json",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_integrity_views_are_verified_by_digitalbazaar_vc_with_the_key_statusd_publishes() {
    for (alg, suite) in [
        (Algorithm::Es256, "ecdsa-rdfc-2019"),
        (Algorithm::EdDsa, "eddsa-rdfc-2022"),
    ] {
        let dir = TempDir::new("di-views");
        let (running, key) = start(&dir, alg).await;
        let base = format!("http://{}", running.public_addr);
        let method = format!("{base}#{}", key.kid());

        // The issuer URL dereferences to the controller document naming the key.
        let (status, headers, body) = get(&format!("{base}/"), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/ld+json");
        let controller: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(controller["id"], base);
        assert_eq!(controller["assertionMethod"][0], method);
        let published = statusd::w3c_proof::key_from_multibase(
            controller["verificationMethod"][0]["publicKeyMultibase"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(published.thumbprint(), key.verifying_key().thumbprint());

        for (path, accept, content_type) in VIEWS {
            let url = format!("{base}/{path}");
            let r = digitalbazaar(&url, accept, false).await;
            assert_eq!(r["verified"], true, "{alg:?} {path} ({accept}): {r}");
            assert_eq!(r["contentType"], content_type, "{r}");
            assert_eq!(r["cryptosuite"], suite, "{r}");
            assert_eq!(r["verificationMethod"], method, "{r}");
            // The same bytes verify in Rust with the published key.
            let (_, _, body) = get(&url, &[("accept", accept)]).await;
            let secured: Value = serde_json::from_slice(&body).unwrap();
            statusd::w3c_proof::verify_proof(&secured, &published).unwrap();
            // A list changed after signing is refused by the third party.
            let r = digitalbazaar(&url, accept, true).await;
            assert_eq!(r["verified"], false, "tampered {path}: {r}");
        }
        // Without asking for it, the view is still the JWT.
        let (_, headers, _) = get(&format!("{base}/bitstringlists/d/revocation"), &[]).await;
        assert_eq!(headers["content-type"], "application/vc+jwt");
        running.stop().await;
    }
}

/// Issue 15: a key with no Data Integrity cryptosuite here (P-384) publishes no proof: the
/// proof's media types answer 406 naming the JWT forms, which are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p384_key_publishes_no_data_integrity_proof() {
    let dir = TempDir::new("di-p384");
    let (running, _) = start(&dir, Algorithm::Es384).await;
    let base = format!("http://{}", running.public_addr);
    for (path, accept, _) in VIEWS {
        let (status, headers, body) = get(&format!("{base}/{path}"), &[("accept", accept)]).await;
        let p = crate::support::problem(status, &headers, &body);
        assert_eq!(status, 406, "{path}: {p}");
        let offered = p["detail"].as_str().unwrap();
        let offered: Vec<&str> = offered
            .trim_start_matches("offered media types: ")
            .split(", ")
            .collect();
        assert!(
            !offered.contains(&accept) && offered.iter().any(|o| o.ends_with("jwt")),
            "{p}"
        );
        let (status, _, _) = get(&format!("{base}/{path}"), &[]).await;
        assert_eq!(status, 200);
    }
    let (_, _, body) = get(&format!("{base}/"), &[]).await;
    let controller: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(controller["verificationMethod"], serde_json::json!([]));
    running.stop().await;
}
