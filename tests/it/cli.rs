//! The `statusd` binary: keygen, inspect (every format, every failure exits non-zero with a
//! precise message), serve --check-config and serve --demo.

use crate::support::{self, get, hex, vectors, Served, TempDir};
use std::process::{Output, Stdio};

fn statusd(args: &[&str]) -> Output {
    support::statusd().args(args).output().expect("run statusd")
}

fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn fails_with(out: &Output, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "expected {needle:?} in stderr: {err}");
}

struct Files {
    dir: TempDir,
}

impl Files {
    fn new(tag: &str) -> Self {
        Files {
            dir: TempDir::new(tag),
        }
    }
    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_owned()
    }
}

#[test]
fn inspect_verifies_the_spec_tokens() {
    let f = Files::new("inspect");
    let jwks = f.write(
        "jwks.json",
        serde_json::json!({"keys": [vectors()["example_jwk"]]})
            .to_string()
            .as_bytes(),
    );
    let jwt = f.write("token.jwt", vectors()["jwt"].as_str().unwrap().as_bytes());
    let cwt = f.write("token.cwt", &hex(vectors()["cwt_hex"].as_str().unwrap()));

    let r = ok_json(&statusd(&[
        "inspect", &jwt, "--key", &jwks, "--idx", "0", "--idx", "1", "--idx", "15",
    ]));
    assert_eq!(r["format"], "statuslist+jwt");
    assert_eq!(r["signature"], "verified");
    assert_eq!(r["kid"], "12");
    assert_eq!(r["subject"], "https://example.com/statuslists/1");
    assert_eq!(r["size"], 16);
    assert_eq!(
        r["entries"],
        serde_json::json!([
            {"idx": 0, "status": "INVALID", "value": 1},
            {"idx": 1, "status": "VALID", "value": 0},
            {"idx": 15, "status": "INVALID", "value": 1},
        ])
    );
    assert_eq!(r["non_valid"]["INVALID"], 9);

    let r = ok_json(&statusd(&["inspect", &cwt, "--key", &jwks, "--all"]));
    assert_eq!(r["format"], "statuslist+cwt");
    assert_eq!(r["signature"], "verified");
    assert_eq!(r["entries"].as_array().unwrap().len(), 9);

    // Without a key the token is decoded but the report says so.
    let r = ok_json(&statusd(&["inspect", &jwt]));
    assert_eq!(r["signature"], "not checked (no key given)");

    // Standard input.
    let mut child = support::statusd()
        .args(["inspect", "-", "--key", &jwks])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        vectors()["jwt"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(ok_json(&out)["signature"], "verified");
}

#[test]
fn inspect_reads_unsigned_forms() {
    let f = Files::new("unsigned");
    let v = &vectors()["ietf"][3];
    let json = f.write(
        "list.json",
        serde_json::json!({"bits": v["bits"], "lst": v["lst"]})
            .to_string()
            .as_bytes(),
    );
    let r = ok_json(&statusd(&["inspect", &json, "--idx", "1993"]));
    assert_eq!(r["format"], "status_list (JSON)");
    assert_eq!(r["signature"], "unsigned");
    assert_eq!(r["entries"][0]["status"], "SUSPENDED");
    let cbor = f.write("list.cbor", &hex(v["cbor_hex"].as_str().unwrap()));
    let r = ok_json(&statusd(&["inspect", &cbor, "--idx", "159495"]));
    assert_eq!(r["format"], "status_list (CBOR)");
    assert_eq!(r["entries"][0]["value"], 3);
    let vc = f.write(
        "vc.json",
        vectors()["w3c"]["example_credential"]
            .to_string()
            .as_bytes(),
    );
    let r = ok_json(&statusd(&["inspect", &vc, "--idx", "131071"]));
    assert_eq!(r["format"], "vc");
    assert_eq!(r["purposes"], serde_json::json!(["revocation"]));
    assert_eq!(r["size"], 131_072);
}

#[test]
fn inspect_failures_exit_non_zero_with_a_precise_message() {
    let f = Files::new("fail");
    let jwks = f.write(
        "jwks.json",
        serde_json::json!({"keys": [vectors()["example_jwk"]]})
            .to_string()
            .as_bytes(),
    );
    let jwt_text = vectors()["jwt"].as_str().unwrap();
    let jwt = f.write("token.jwt", jwt_text.as_bytes());
    fails_with(
        &statusd(&["inspect", &jwt, "--key", &jwks, "--idx", "16"]),
        "index 16 is out of range: the list has 16 entries",
    );
    fails_with(
        &statusd(&["inspect", &jwt, "--key", &jwks, "--at", "2291720170"]),
        "expired",
    );

    // A signature from another key.
    let other = f.dir.0.join("other.pem");
    assert!(statusd(&["keygen", "--out", other.to_str().unwrap()])
        .status
        .success());
    fails_with(
        &statusd(&["inspect", &jwt, "--key", other.to_str().unwrap()]),
        "no verification key for kid \"12\"",
    );

    // Tampered payload: flip one character of the signature.
    let mut t = jwt_text.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'g' { 'h' } else { 'g' });
    let tampered = f.write("tampered.jwt", t.as_bytes());
    fails_with(
        &statusd(&["inspect", &tampered, "--key", &jwks]),
        "signature",
    );

    // Wrong typ: the spec's vc-less Referenced Token CWT is not a Status List Token.
    let rt = f.write(
        "ref.cwt",
        &hex(vectors()["referenced_cwt_hex"].as_str().unwrap()),
    );
    fails_with(
        &statusd(&["inspect", &rt, "--key", &jwks]),
        "no type header",
    );

    // Tag 61 around the CWT.
    let mut wrapped = vec![0xd8, 0x3d];
    wrapped.extend(hex(vectors()["cwt_hex"].as_str().unwrap()));
    let w = f.write("wrapped.cwt", &wrapped);
    fails_with(&statusd(&["inspect", &w, "--key", &jwks]), "tag 61");

    // Unknown bits, padded lst, gzip where zlib is required.
    for (name, body, needle) in [
        (
            "bits.json",
            r#"{"bits":3,"lst":"eNrbuRgAAhcBXQ"}"#,
            "bits must be 1, 2, 4 or 8, got 3",
        ),
        (
            "pad.json",
            r#"{"bits":1,"lst":"eNrbuRgAAhcBXQ=="}"#,
            "must not be padded",
        ),
        (
            "std.json",
            r#"{"bits":1,"lst":"eNrbuRgAAhcB+Q"}"#,
            "not in the base64url alphabet",
        ),
        (
            "gzip.json",
            r#"{"bits":1,"lst":"H4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA"}"#,
            "expected ZLIB (RFC 1950) data but found GZIP",
        ),
        (
            "trunc.json",
            r#"{"bits":1,"lst":"eNrbuRgAAhc"}"#,
            "truncated",
        ),
    ] {
        let p = f.write(name, body.as_bytes());
        fails_with(&statusd(&["inspect", &p]), needle);
    }
    // W3C: zlib where gzip is required, wrong multibase prefix, too short.
    let mut vc = vectors()["w3c"]["example_credential"].clone();
    vc["credentialSubject"]["encodedList"] = "ueNrbuRgAAhcBXQ".into();
    fails_with(
        &statusd(&[
            "inspect",
            &f.write("zlib-vc.json", vc.to_string().as_bytes()),
        ]),
        "expected GZIP (RFC 1952) data but found ZLIB",
    );
    vc["credentialSubject"]["encodedList"] = "zH4sIAAAAAAAAA".into();
    fails_with(
        &statusd(&["inspect", &f.write("z-vc.json", vc.to_string().as_bytes())]),
        "multibase prefix 'u'",
    );
    vc["credentialSubject"]["encodedList"] =
        vectors()["w3c"]["too_short"][0]["encoded_list"].clone();
    fails_with(
        &statusd(&[
            "inspect",
            &f.write("short-vc.json", vc.to_string().as_bytes()),
        ]),
        "STATUS_LIST_LENGTH_ERROR",
    );

    fails_with(
        &statusd(&["inspect", &f.write("junk", b"\x00\x01garbage")]),
        "unrecognised input",
    );
    fails_with(
        &statusd(&["inspect", "/does/not/exist"]),
        "reading /does/not/exist",
    );
    fails_with(
        // https is fetched now (tests/it/tls.rs); an unreachable server is a clear error.
        &statusd(&["inspect", "https://127.0.0.1:1/statuslists/1"]),
        "fetching https://127.0.0.1:1/statuslists/1",
    );
    fails_with(
        &statusd(&[
            "inspect",
            &f.write("list.json", br#"{"bits":1,"lst":"eNrbuRgAAhcBXQ"}"#),
            "--key",
            &jwks,
        ]),
        "carries no signature",
    );
}

#[test]
fn keygen_writes_private_keys_safely() {
    let f = Files::new("keygen");
    for alg in ["es256", "ed25519"] {
        let path = f.dir.0.join(format!("{alg}.pem"));
        let out = statusd(&["keygen", "--alg", alg, "--out", path.to_str().unwrap()]);
        let r = ok_json(&out);
        assert_eq!(r["alg"], if alg == "es256" { "ES256" } else { "EdDSA" });
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let key = statusd::token::keys::SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(r["kid"], key.kid());
        // Never overwrite a key by accident.
        fails_with(
            &statusd(&["keygen", "--alg", alg, "--out", path.to_str().unwrap()]),
            "creating",
        );
        assert!(statusd(&[
            "keygen",
            "--alg",
            alg,
            "--out",
            path.to_str().unwrap(),
            "--force"
        ])
        .status
        .success());
    }
}

#[test]
fn check_config_reports_bad_settings_with_exit_64() {
    let out = statusd(&["serve", "--check-config", "--demo"]);
    assert!(out.status.success());
    let out = statusd(&["serve", "--check-config", "--demo", "--listen", "localhost"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen (STATUSD_LISTEN)"));
    let out = statusd(&["serve", "--check-config"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("statusd keygen"));
}

/// The README's run command: `statusd serve --demo` with nothing configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_works_out_of_the_box() {
    let dir = TempDir::new("demo");
    let mut served = Served::start(
        support::serve_demo()
            .current_dir(&dir.0)
            .env("STATUSD_LOG", "info"),
    );
    let public = served.public.clone();
    let saw_key_notice = served
        .startup
        .iter()
        .any(|line| line.contains("generated a demo ES256 signing key"));
    let base = format!("http://{public}");
    assert!(saw_key_notice, "the generated key is announced");
    let mut ok = false;
    for _ in 0..200 {
        if get(&format!("{base}/statuslists"), &[]).await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "demo never became ready");
    let (_, _, body) = get(&format!("{base}/statuslists"), &[]).await;
    let agg: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(agg["status_lists"].as_array().unwrap().len(), 3);
    let out = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            statusd(&[
                "inspect",
                &format!("{base}/statuslists/2"),
                "--key",
                &format!("{base}/.well-known/jwks.json"),
            ])
        }
    })
    .await
    .unwrap();
    let r = ok_json(&out);
    assert_eq!(r["size"], 1 << 20);
    // 1 % INVALID and 0.2 % SUSPENDED of 2^20 entries.
    assert_eq!(r["non_valid"]["INVALID"], 10_485);
    assert_eq!(r["non_valid"]["SUSPENDED"], 2_097);
    assert!(dir.0.join("statusd-data/demo-signing-key.pem").exists());
    // SIGTERM drains and exits cleanly.
    let status = served.stop();
    assert!(status.success(), "{status}");
}

/// `--background-priority`: by default the admin plane's threads run at nice +10 and the public
/// workers at the normal priority; with `idle` the admin threads are in `SCHED_IDLE` and the
/// public workers are not (issue 16: lookups beside a launch import). Read from the server's
/// threads in /proc.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_threads_run_at_the_priority_asked() {
    for (flag, admin_policy) in [(None, 0), (Some("idle"), 5)] {
        let dir = TempDir::new("priority");
        let mut cmd = support::serve_demo();
        cmd.current_dir(&dir.0);
        if let Some(p) = flag {
            cmd.args(["--background-priority", p]);
        }
        let mut served = Served::start(&mut cmd);
        let all = support::threads(&served.child.id().to_string());
        let admin: Vec<_> = all.iter().filter(|t| t.name == "statusd-admin").collect();
        let public: Vec<_> = all.iter().filter(|t| t.name == "tokio-rt-worker").collect();
        // The main thread (it drives the public runtime) keeps the priority it started with.
        let base = all
            .iter()
            .find(|t| t.name == "statusd")
            .expect("main thread")
            .nice;
        assert!(!admin.is_empty() && !public.is_empty(), "{all:?}");
        for t in &admin {
            assert_eq!(t.policy, admin_policy, "{flag:?}: {all:?}");
            if admin_policy == 0 {
                assert!(t.nice >= 10.max(base), "{flag:?}: {all:?}");
            }
        }
        for t in &public {
            assert_eq!(
                (t.policy, t.nice),
                (0, base),
                "{flag:?}: a public worker lowered: {all:?}"
            );
        }
        assert!(served.stop().success());
    }
}
