//! Reload without restart: a real `statusd serve` process gets SIGHUP while a load generator
//! keeps keep-alive TLS connections busy; the new certificate is served to new connections
//! with zero failed requests, an invalid one leaves the old one serving, and a rotated admin
//! tokens file takes effect at once.

use crate::support::{serve_demo, Served, TempDir};
use crate::tls::{client_config, connect, https, Pki};
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// A `statusd serve --demo` process with JSON logs, and its log events as they come.
struct Process {
    served: Served,
    public: SocketAddr,
    admin: SocketAddr,
}

impl Process {
    fn start(dir: &std::path::Path, extra: &[&str]) -> Process {
        let served = Served::start(
            serve_demo()
                .args(extra)
                .current_dir(dir)
                .env("STATUSD_LOG_FORMAT", "json")
                .env("STATUSD_LOG", "info"),
        );
        Process {
            public: served.public.parse().unwrap(),
            admin: served.admin.parse().unwrap(),
            served,
        }
    }

    /// The next event whose message is `message` (earlier ones are skipped).
    fn wait_for(&mut self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(line) = self.served.log.recv_timeout(deadline - Instant::now()) {
            let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if e["message"] == message {
                return e;
            }
        }
        panic!("statusd never logged {message:?}");
    }

    /// Sends SIGHUP and returns the reload's summary event.
    fn hup(&mut self) -> serde_json::Value {
        assert!(Command::new("kill")
            .args(["-HUP", &self.served.child.id().to_string()])
            .status()
            .unwrap()
            .success());
        self.wait_for("configuration reload done")
    }

    fn stop(mut self) {
        assert!(self.served.stop().success());
    }
}

/// The leaf certificate a new connection to `addr` is served.
async fn served_leaf(addr: SocketAddr, ca: &std::path::Path) -> Vec<u8> {
    let tls = connect(addr, client_config(ca, &[b"http/1.1"], None))
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_rotates_the_certificate_under_load_without_a_failed_request() {
    let dir = TempDir::new("reload-cert");
    let pki = Pki::new(&dir.0, "main");
    let first = pki.server("server", "statusd first");
    let (cert, key) = (first.cert.clone(), first.key.clone());
    let mut p = Process::start(
        &dir.0,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(
        served_leaf(p.public, &pki.ca_cert).await,
        der(&first.cert_pem)
    );
    let ready = client_config(&pki.ca_cert, &[b"h2"], None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while https(p.admin, ready.clone(), "GET", "/readyz", &[], None)
        .await
        .map(|r| r.0)
        != Ok(StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The load: 8 keep-alive connections (h2 and HTTP/1.1) requesting back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for n in 0..8 {
        let alpn: &[u8] = if n % 2 == 0 { b"h2" } else { b"http/1.1" };
        let config = client_config(&pki.ca_cert, &[alpn], None);
        let (stop, ok, failed, public) = (stop.clone(), ok.clone(), failed.clone(), p.public);
        load.push(tokio::spawn(async move {
            let tls = connect(public, config).await.unwrap();
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = hyper_util::rt::TokioIo::new(tls);
            let uri = format!("https://localhost:{}/.well-known/jwks.json", public.port());
            let req = || {
                hyper::Request::get(&uri)
                    .header("host", "localhost")
                    .body(Empty::<bytes::Bytes>::new())
                    .unwrap()
            };
            macro_rules! drive {
                ($send:expr) => {
                    while !stop.load(Ordering::Relaxed) {
                        let r = match $send.send_request(req()).await {
                            Ok(resp) if resp.status() == StatusCode::OK => {
                                resp.into_body().collect().await.is_ok()
                            }
                            other => {
                                if failed.load(Ordering::Relaxed) == 0 {
                                    eprintln!("first failure: {other:?}");
                                }
                                false
                            }
                        };
                        if r { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    }
                };
            }
            if h2 {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                drive!(send);
            } else {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                drive!(send);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = pki.server("server", "statusd second");
    let summary = tokio::task::block_in_place(|| p.hup());
    assert_eq!(summary["result"], "ok", "{summary}");
    assert_eq!(
        served_leaf(p.public, &pki.ca_cert).await,
        der(&second.cert_pem),
        "new connections get the new certificate"
    );
    // An invalid certificate is refused; the second one keeps serving.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let summary = tokio::task::block_in_place(|| p.hup());
    assert_eq!(summary["result"], "error", "{summary}");
    assert_eq!(
        served_leaf(p.public, &pki.ca_cert).await,
        der(&second.cert_pem)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed requests of {}", ok + failed);
    assert!(ok > 100, "the load ran: {ok} requests");
    let metrics = https(
        p.admin,
        client_config(&pki.ca_cert, &[b"h2"], None),
        "GET",
        "/metrics",
        &[],
        None,
    )
    .await
    .unwrap()
    .1;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("statusd_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("statusd_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_admin_tokens_a_removed_token_is_refused_and_a_new_one_works() {
    let dir = TempDir::new("reload-tokens");
    let tokens = dir.0.join("tokens");
    let (old, new) = (
        "old-token-0123456789abcdef0123",
        "new-token-0123456789abcdef0123",
    );
    std::fs::write(&tokens, format!("ops admin {old}\n")).unwrap();
    let mut p = Process::start(&dir.0, &["--admin-tokens", tokens.to_str().unwrap()]);
    let admin = p.admin;
    let lists = |token: &str| {
        let url = format!("http://{admin}/v1/lists");
        let auth = format!("Bearer {token}");
        async move {
            crate::support::get(&url, &[("authorization", auth.as_str())])
                .await
                .0
        }
    };
    assert_eq!(lists(old).await, StatusCode::OK);
    assert_eq!(lists(new).await, StatusCode::UNAUTHORIZED);
    std::fs::write(&tokens, format!("ops admin {new}\n")).unwrap();
    let summary = tokio::task::block_in_place(|| p.hup());
    assert_eq!(summary["result"], "ok", "{summary}");
    assert_eq!(lists(old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(lists(new).await, StatusCode::OK);
    // A broken file is refused: the tokens in force stay.
    std::fs::write(&tokens, "ops\n").unwrap();
    let summary = tokio::task::block_in_place(|| p.hup());
    assert_eq!(summary["result"], "error", "{summary}");
    assert_eq!(lists(new).await, StatusCode::OK);
    p.stop();
}

/// The `kid`s of the JWKS the public plane serves.
async fn served_kids(public: SocketAddr) -> Vec<String> {
    let (_, _, body) =
        crate::support::get(&format!("http://{public}/.well-known/jwks.json"), &[]).await;
    let jwks: serde_json::Value = serde_json::from_slice(&body).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The reload SIGHUP runs (`Running::reload`), in process: a key added to the published-keys
/// file reaches the JWKS without a restart; an unreadable file leaves the JWKS as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_publishes_a_new_key_and_refuses_a_broken_key_file() {
    use statusd::token::keys::{Algorithm, SigningKey};
    let dir = TempDir::new("reload-keys");
    let file = dir.0.join("published.pem");
    let (next, other) = (
        SigningKey::generate(Algorithm::Es256),
        SigningKey::generate(Algorithm::EdDsa),
    );
    std::fs::write(&file, next.verifying_key().to_public_pem()).unwrap();
    let running =
        crate::support::start_with(&dir.0, &[], &["--published-keys", file.to_str().unwrap()])
            .await;
    let before = served_kids(running.public_addr).await;
    assert_eq!(before.len(), 2);
    assert!(before.contains(&next.kid().to_owned()));
    std::fs::write(
        &file,
        format!(
            "{}{}",
            next.verifying_key().to_public_pem(),
            other.verifying_key().to_public_pem()
        ),
    )
    .unwrap();
    assert!(running.reload().is_empty(), "reloaded");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served_kids(running.public_addr)
        .await
        .contains(&other.kid().to_owned())
    {
        assert!(
            Instant::now() < deadline,
            "the new key never reached the JWKS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        crate::support::metric(running.admin_addr, "statusd_jwks_keys").await,
        3.0
    );
    std::fs::write(&file, "-----BEGIN PUBLIC KEY-----\ngarbage\n").unwrap();
    let refused = running.reload();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("published keys"), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        served_kids(running.public_addr).await.len(),
        3,
        "the JWKS stays"
    );
    running.stop().await;
}

/// The `x5c` chain (DER, leaf first) in the header of the list's current `statuslist+jwt`.
async fn token_x5c(public: SocketAddr) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let (_, _, body) = crate::support::get(
        &format!("http://{public}/statuslists/1"),
        &[("accept", "application/statuslist+jwt")],
    )
    .await;
    let token = String::from_utf8(body.to_vec()).unwrap();
    let header = statusd::token::jws::Jws::parse(&token)
        .unwrap()
        .header()
        .clone();
    header["x5c"]
        .as_array()
        .expect("x5c in the header")
        .iter()
        .map(|c| {
            base64::engine::general_purpose::STANDARD
                .decode(c.as_str().unwrap())
                .unwrap()
        })
        .collect()
}

/// The `x5c` of the signing key's JWKS entry.
async fn jwks_x5c(public: SocketAddr) -> serde_json::Value {
    let (_, _, body) =
        crate::support::get(&format!("http://{public}/.well-known/jwks.json"), &[]).await;
    let jwks: serde_json::Value = serde_json::from_slice(&body).unwrap();
    jwks["keys"][0]["x5c"].clone()
}

/// The reload SIGHUP runs, in process: a renewed certificate for the same key replaces the
/// chain in the JWKS and in the next token, and the not-after gauge moves; a chain for another
/// key is refused and the renewed chain stays in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_installs_a_renewed_signing_certificate_and_refuses_one_for_another_key() {
    use statusd::cert::CertChain;
    use statusd::status::Bits;
    use statusd::store::Store as _;
    use statusd::token::keys::{Algorithm, SigningKey};
    let dir = TempDir::new("reload-signing-cert");
    let key = SigningKey::generate(Algorithm::Es256);
    let key_file = dir.0.join("signing.pem");
    std::fs::write(&key_file, key.to_pkcs8_pem()).unwrap();
    let pki = statusd::cert::test_pki::Pki::new();
    let public = key.verifying_key().to_public_pem();
    let first = CertChain::load(&pki.leaf("first", &public, "leaf", 30)).unwrap();
    let renewed_file = pki.leaf("renewed", &public, "leaf", 90);
    let renewed = CertChain::load(&renewed_file).unwrap();
    let chain_file = dir.0.join("chain.pem");
    std::fs::copy(pki.dir.join("first.chain.pem"), &chain_file).unwrap();
    let running = crate::support::start_with(
        &dir.0,
        &[("1", Bits::One, 1024, vec![])],
        &[
            "--signing-key",
            key_file.to_str().unwrap(),
            "--signing-cert",
            chain_file.to_str().unwrap(),
            "--reencode-interval",
            "0",
        ],
    )
    .await;
    let (public_addr, admin) = (running.public_addr, running.admin_addr);
    assert_eq!(token_x5c(public_addr).await, first.der());
    let not_after = |c: &CertChain| statusd::cert::unix_seconds(c.not_after()) as f64;
    let gauge = "statusd_signing_cert_not_after_timestamp_seconds";
    assert_eq!(
        crate::support::metric(admin, gauge).await,
        not_after(&first)
    );

    std::fs::copy(&renewed_file, &chain_file).unwrap();
    assert!(running.reload().is_empty(), "the renewed chain is taken");
    assert_eq!(
        crate::support::metric(admin, gauge).await,
        not_after(&renewed)
    );
    // A change makes the list's next token, which carries the renewed chain; the JWKS follows
    // with the same synchronisation.
    running
        .store
        .apply("1", &[crate::support::change(7, 1)])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while token_x5c(public_addr).await != renewed.der() {
        assert!(
            Instant::now() < deadline,
            "no token carries the renewed chain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let renewed_jwks = jwks_x5c(public_addr).await;
    assert_eq!(renewed_jwks.as_array().unwrap().len(), renewed.der().len());
    assert_eq!(
        renewed_jwks,
        statusd::token::jws::x5c_json(renewed.der()),
        "the JWKS entry carries the renewed chain"
    );

    // A chain whose leaf certifies another key: refused, the renewed chain stays.
    let other = SigningKey::generate(Algorithm::Es256);
    let foreign = pki.leaf(
        "foreign",
        &other.verifying_key().to_public_pem(),
        "leaf",
        30,
    );
    std::fs::copy(&foreign, &chain_file).unwrap();
    let refused = running.reload();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("signing certificate:"),
        "{refused:?}"
    );
    assert!(refused[0].contains("another key"), "{refused:?}");
    assert_eq!(
        crate::support::metric(admin, gauge).await,
        not_after(&renewed)
    );
    running
        .store
        .apply("1", &[crate::support::change(8, 1)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(token_x5c(public_addr).await, renewed.der());
    assert_eq!(jwks_x5c(public_addr).await, renewed_jwks);
    running.stop().await;
}
