//! Signed deltas (issue 16 item 4, statusd's extension) over real sockets: a verifier's mirror
//! brought forward by deltas equals the list fetched whole, bit for bit, in both token forms;
//! an unavailable delta (too old, ahead, larger than the list) is a 410 problem that links the
//! list, and the mirror falls back to it; a tampered delta and a validly signed delta whose
//! digest does not match are refused, leaving the mirror as it was.

use crate::support::{get, problem, start_with, TempDir};
use statusd::delta::{self, DeltaClaims, DeltaError};
use statusd::status::{Bits, Status, StatusList};
use statusd::store::{Change, Store as _};
use statusd::token::keys::{Algorithm, KeySet, SigningKey};
use statusd::verifier::delta::{Form, Mirror, MirrorOptions, Synced};
use std::time::Duration;

const SIZE: u32 = 1 << 17;

fn options(keys: &KeySet, form: Form) -> MirrorOptions {
    MirrorOptions {
        keys: keys.clone(),
        form,
        timeout: Duration::from_secs(10),
        tls: Default::default(),
        now: None,
    }
}

/// The list as published now, fetched whole and verified, and the version it says it is.
async fn fresh(url: &str, keys: &KeySet) -> (StatusList, u64) {
    let (m, _) = Mirror::fetch(url, &options(keys, Form::Jwt)).await.unwrap();
    (
        m.list().clone(),
        m.version().expect("statusd names versions"),
    )
}

/// Waits until the list's token encodes `version` (re-encoding runs in the background).
async fn published(url: &str, version: u64) {
    for _ in 0..400 {
        let (_, h, _) = get(url, &[]).await;
        let v: u64 = h["statusd-list-version"].to_str().unwrap().parse().unwrap();
        if v >= version {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} never reached version {version}");
}

fn changes(entries: &[(u32, u8)]) -> Vec<Change> {
    entries
        .iter()
        .map(|&(idx, v)| Change {
            idx,
            status: Status(v),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_follow_deltas_bit_for_bit_and_fall_back_to_the_list() {
    let dir = TempDir::new("deltas");
    let key = SigningKey::generate(Algorithm::Es256);
    let key_file = dir.0.join("signing-key.pem");
    std::fs::write(&key_file, key.to_pkcs8_pem()).unwrap();
    let running = start_with(
        &dir.0,
        &[("d", Bits::Two, SIZE, vec![(1, 1), (2, 2), (500, 1)])],
        &[
            "--reencode-interval",
            "0",
            "--signing-key",
            key_file.to_str().unwrap(),
        ],
    )
    .await;
    let base = format!("http://{}", running.public_addr);
    let url = format!("{base}/statuslists/d");
    let keys = KeySet::new(vec![key.verifying_key()]);
    let (jwt_opts, cwt_opts) = (options(&keys, Form::Jwt), options(&keys, Form::Cwt));
    let (mut jwt, _) = Mirror::fetch(&url, &jwt_opts).await.unwrap();
    let (mut cwt, _) = Mirror::fetch(&url, &cwt_opts).await.unwrap();
    let start = jwt.version().unwrap();
    assert_eq!(cwt.version(), Some(start));

    // Rounds of changes (revocations, suspensions, reinstatements, an entry reset and revoked):
    // after each, both mirrors move by a delta and equal the list fetched whole.
    let rounds: [&[(u32, u8)]; 4] = [
        &[(7, 2)],
        &[(2, 0), (9, 2), (131_071, 3)],
        &[(9, 0), (10, 1), (11, 1), (12, 1)],
        &[(7, 0), (7, 1), (0, 2)],
    ];
    let mut version;
    for round in rounds {
        version = running
            .store
            .apply("d", &changes(round))
            .await
            .unwrap()
            .version;
        published(&url, version).await;
        let (want, at) = fresh(&url, &keys).await;
        assert_eq!(at, version);
        for (m, opts) in [(&mut jwt, &jwt_opts), (&mut cwt, &cwt_opts)] {
            let from = m.version().unwrap();
            let synced = m.sync(opts).await.unwrap();
            assert!(
                matches!(synced, Synced::Delta { from: f, to, .. } if f == from && to == version),
                "{synced:?}"
            );
            assert_eq!(m.list(), &want, "{:?} mirror after {round:?}", opts.form);
            assert_eq!(delta::digest(m.list()), delta::digest(&want));
            // Nothing changed since: a 304 on the delta from the version reached.
            let again = m.sync(opts).await.unwrap();
            assert!(matches!(again, Synced::Unchanged { .. }), "{again:?}");
        }
    }
    // A mirror that missed several rounds catches up with one delta.
    let (mut late, _) = Mirror::fetch(&url, &jwt_opts).await.unwrap();
    let missed = running
        .store
        .apply("d", &changes(&[(20, 2)]))
        .await
        .unwrap()
        .version;
    running
        .store
        .apply("d", &changes(&[(21, 2)]))
        .await
        .unwrap();
    version = running
        .store
        .apply("d", &changes(&[(20, 0)]))
        .await
        .unwrap()
        .version;
    published(&url, version).await;
    assert!(missed < version);
    assert!(matches!(
        late.sync(&jwt_opts).await.unwrap(),
        Synced::Delta { to, .. } if to == version
    ));
    assert_eq!(late.list(), &fresh(&url, &keys).await.0);

    // Unavailable deltas: a 410 problem naming why, linking the list.
    let unavailable = |path: String, accept: &'static str| {
        let base = base.clone();
        async move { get(&format!("{base}{path}"), &[("accept", accept)]).await }
    };
    let (status, h, body) =
        unavailable(format!("/statuslists/d/deltas/{}", version + 5), "*/*").await;
    let p = problem(status, &h, &body);
    assert_eq!(status, 410);
    assert_eq!(p["type"], "urn:statusd:problem:delta-unavailable");
    assert_eq!(
        (p["reason"].as_str(), p["list"].as_str()),
        (Some("ahead"), Some("/statuslists/d"))
    );
    assert_eq!(h["link"], "</statuslists/d>; rel=\"alternate\"");
    assert_eq!(h["cache-control"], "no-store");
    // Version 0 predates what this replica saw (it started at `start`).
    let (status, h, body) = unavailable("/statuslists/d/deltas/0".into(), "*/*").await;
    assert_eq!(problem(status, &h, &body)["reason"], "too-old");
    assert_eq!(h["cache-control"], "public, max-age=60");
    let (status, h, body) = unavailable("/statuslists/d/deltas/01".into(), "*/*").await;
    assert_eq!(
        problem(status, &h, &body)["type"],
        "urn:statusd:problem:bad-version"
    );
    let (status, _, _) = unavailable(
        format!("/statuslists/d/deltas/{version}"),
        "application/json",
    )
    .await;
    assert_eq!(status, 406);
    let (status, h, body) = unavailable("/statuslists/nope/deltas/1".into(), "*/*").await;
    assert_eq!(
        problem(status, &h, &body)["type"],
        "urn:statusd:problem:unknown-list"
    );
    // The delta response itself: the media type asked for, cacheable like the list.
    let (status, h, _) = unavailable(
        format!("/statuslists/d/deltas/{start}"),
        "application/statuslist-delta+cwt",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "application/statuslist-delta+cwt");
    assert!(h["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public, max-age="));
    let etag = h["etag"].to_str().unwrap();
    assert!(
        etag.starts_with(&format!("W/\"d{version}-")) && etag.ends_with("-c\""),
        "{etag}"
    );

    // Entries set and reset again: the list is back to a few entries, but a delta would name
    // every one of them: larger than the list, so the mirror is told the delta is unavailable
    // and fetches the list whole.
    let spread: Vec<u32> = (0..6_000u32)
        .map(|i| (i * 40_503 + 7) % SIZE)
        .filter(|&i| (1_000..131_000).contains(&i))
        .collect();
    let set: Vec<(u32, u8)> = spread.iter().map(|&i| (i, 2)).collect();
    let reset: Vec<(u32, u8)> = spread.iter().map(|&i| (i, 0)).collect();
    running.store.apply("d", &changes(&set)).await.unwrap();
    version = running
        .store
        .apply("d", &changes(&reset))
        .await
        .unwrap()
        .version;
    published(&url, version).await;
    let (status, h, body) = unavailable(
        format!("/statuslists/d/deltas/{}", jwt.version().unwrap()),
        "*/*",
    )
    .await;
    assert_eq!(problem(status, &h, &body)["reason"], "too-large");
    let synced = jwt.sync(&jwt_opts).await.unwrap();
    assert!(
        matches!(synced, Synced::Full { version: Some(v), .. } if v == version),
        "{synced:?}"
    );
    assert_eq!(jwt.list(), &fresh(&url, &keys).await.0);

    // A delta tampered with on the way, and a validly signed delta whose result does not match
    // its digest (a faulty server), are refused; the mirror keeps its list and still syncs.
    version = running
        .store
        .apply("d", &changes(&[(30, 1)]))
        .await
        .unwrap()
        .version;
    published(&url, version).await;
    let held = (jwt.version(), jwt.list().clone());
    let delta_url = jwt.delta_url().unwrap();
    let (_, _, body) = get(
        &delta_url,
        &[("accept", "application/statuslist-delta+jwt")],
    )
    .await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut parts: Vec<String> = text.split('.').map(str::to_owned).collect();
    let mut payload: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["status_list_delta"]["changes"] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        delta::encode_changes(Bits::Two, &[(31, 1)]),
    )
    .into();
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        payload.to_string(),
    );
    assert!(matches!(
        jwt.apply_delta(parts.join(".").as_bytes(), &jwt_opts),
        Err(DeltaError::Token(statusd::token::TokenError::BadSignature))
    ));
    let mut forged: DeltaClaims = delta::verify_jwt(&text, &keys).unwrap();
    forged.delta.changes = delta::encode_changes(Bits::Two, &[(31, 1)]);
    let forged = delta::sign_jwt(&forged, &key).unwrap();
    assert_eq!(
        jwt.apply_delta(forged.as_bytes(), &jwt_opts),
        Err(DeltaError::DigestMismatch)
    );
    assert_eq!((jwt.version(), jwt.list().clone()), held);
    assert!(matches!(
        jwt.sync(&jwt_opts).await.unwrap(),
        Synced::Delta { .. }
    ));
    assert_eq!(jwt.list(), &fresh(&url, &keys).await.0);
    running.stop().await;
}

/// `statusd inspect` reads a delta statusd serves, in both forms, verifying it with the key set
/// the server publishes; `--idx` (entries of a list) and a key that did not sign it fail with
/// exit 1 and the cause, as inspect's other failures do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_reads_a_served_delta_in_both_forms() {
    let dir = TempDir::new("delta-inspect");
    let running = start_with(
        &dir.0,
        &[("d", Bits::Two, SIZE, vec![(1, 1)])],
        &["--reencode-interval", "0"],
    )
    .await;
    let base = format!("http://{}", running.public_addr);
    let url = format!("{base}/statuslists/d");
    let (_, h, _) = get(&url, &[]).await;
    let start: u64 = h["statusd-list-version"].to_str().unwrap().parse().unwrap();
    let version = running
        .store
        .apply("d", &changes(&[(7, 2), (9, 1)]))
        .await
        .unwrap()
        .version;
    published(&url, version).await;
    let jwks = format!("{base}/.well-known/jwks.json");
    let delta_url = format!("{url}/deltas/{start}");
    let inspect = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            crate::support::statusd()
                .arg("inspect")
                .args(args)
                .output()
                .expect("run statusd")
        })
    };
    for form in ["statuslist-delta+jwt", "statuslist-delta+cwt"] {
        let accept = format!("application/{form}");
        let args = [&delta_url, "--key", &jwks, "--accept", &accept];
        let out = inspect(args.map(String::from).to_vec()).await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{form}: {stderr}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
        assert_eq!(r["format"], form);
        assert_eq!(r["signature"], "verified");
        assert_eq!(r["subject"], url.as_str());
        assert!(r["from"].as_u64().unwrap() <= start, "{r}");
        assert_eq!(
            (r["to"].as_u64(), r["bits"].as_u64()),
            (Some(version), Some(2))
        );
        assert_eq!(r["change_count"], 2);
        assert_eq!(
            r["changes"],
            serde_json::json!([
                {"idx": 7, "status": "SUSPENDED", "value": 2},
                {"idx": 9, "status": "INVALID", "value": 1},
            ])
        );
        assert_eq!(r["sha256"].as_str().unwrap().len(), 64);
    }

    let out = inspect(vec![delta_url.clone(), "--idx".into(), "7".into()])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--idx reads entries of a list"), "{stderr}");
    let other = dir.0.join("other-key.pem");
    let other_key = SigningKey::generate(Algorithm::Es256);
    std::fs::write(&other, other_key.verifying_key().to_public_pem()).unwrap();
    let out = inspect(vec![
        delta_url.clone(),
        "--key".into(),
        other.to_str().unwrap().into(),
    ])
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("statuslist-delta+jwt: "), "{stderr}");
    running.stop().await;
}
