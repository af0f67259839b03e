//! TLS end to end: real handshakes on both listeners (rustls, curl, openssl s_client), HTTP/2
//! by ALPN, plain HTTP to a TLS port, silent handshakes under the first-request deadline,
//! mutual TLS on the admin plane, and reloads by SIGHUP's code path.
//!
//! The test PKI is generated at test time (rcgen); no private key is committed.

use crate::support::{start_with, TempDir};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A certificate and key, as PEM files on disk and in memory.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A private CA that issues server and client certificates into a directory.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = p.self_signed(&ca_key).unwrap();
        let ca_cert = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_cert, ca.pem()).unwrap();
        Pki {
            dir: dir.to_owned(),
            ca_cert,
            ca,
            ca_key,
        }
    }

    fn issue(&self, file: &str, p: rcgen::CertificateParams) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued {
            cert: cert_path,
            key: key_path,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for localhost and 127.0.0.1, with `cn` as its common name.
    pub fn server(&self, file: &str, cn: &str) -> Issued {
        let mut p =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, p)
    }

    /// A certificate for localhost and 127.0.0.1 that serves and also authenticates as a
    /// client (Redis cluster nodes present theirs to each other).
    pub fn peer(&self, file: &str, cn: &str) -> Issued {
        let mut p =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(file, p)
    }

    /// A client certificate for `cn`, valid now unless `expired`.
    pub fn client(&self, file: &str, cn: &str, expired: bool) -> Issued {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example Ops");
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.issue(file, p)
    }
}

/// A rustls client configuration trusting `ca`, offering `alpn`, presenting `identity`.
pub fn client_config(
    ca: &Path,
    alpn: &[&[u8]],
    identity: Option<&Issued>,
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// One TLS connection to `addr`, its negotiated ALPN protocol.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Sends one request over a new TLS connection (HTTP/2 if ALPN chose it) and returns the
/// status, the body and the negotiated protocol. `Err` is a failed handshake or request.
pub async fn https(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(StatusCode, Bytes, Option<Vec<u8>>), String> {
    let tls = connect(addr, config).await.map_err(|e| e.to_string())?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = hyper_util::rt::TokioIo::new(tls);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut()
            .insert(hyper::header::HOST, "localhost".parse().unwrap());
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes, alpn))
}

/// The value of the unlabelled (or fully labelled) metric line `name` on a TLS admin plane.
pub async fn metric(admin: SocketAddr, config: Arc<rustls::ClientConfig>, name: &str) -> f64 {
    let (_, body, _) = https(admin, config, "GET", "/metrics", &[], None)
        .await
        .expect("metrics over TLS");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not exported"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The status of `GET /.well-known/jwks.json` over TLS with `config`.
async fn jwks_status(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> StatusCode {
    let (status, _, _) = https(addr, config, "GET", "/.well-known/jwks.json", &[], None)
        .await
        .unwrap();
    status
}

/// statusd in `dir` with its public plane over TLS (a certificate for `statusd` from a new CA,
/// returned with it), its store seeded with `lists`, and `extra` flags.
async fn start_tls(
    dir: &Path,
    lists: &[crate::support::SeedList<'_>],
    extra: impl FnOnce(&Pki) -> Vec<String>,
) -> (Pki, statusd::app::Running) {
    let pki = Pki::new(dir, "main");
    let server = pki.server("server", "statusd");
    let extra = extra(&pki);
    let mut flags = vec!["--tls-cert", s(&server.cert), "--tls-key", s(&server.key)];
    flags.extend(extra.iter().map(String::as_str));
    let running = start_with(dir, lists, &flags).await;
    (pki, running)
}

/// Runs a command to completion off the async threads; its status and combined output.
async fn run(cmd: &str, args: Vec<String>, stdin: &'static [u8]) -> (bool, String) {
    let cmd = cmd.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new(&cmd)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd} must be installed: {e}"));
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_serve_tls_to_rustls_curl_and_openssl_with_h2_by_alpn() {
    let dir = TempDir::new("tls-both");
    let pki = Pki::new(&dir.0, "main");
    let server = pki.server("server", "statusd public");
    let admin = pki.server("admin", "statusd admin");
    let running = start_with(
        &dir.0,
        &[],
        &[
            "--tls-cert",
            s(&server.cert),
            "--tls-key",
            s(&server.key),
            "--admin-tls-cert",
            s(&admin.cert),
            "--admin-tls-key",
            s(&admin.key),
        ],
    )
    .await;
    let (public, admin_addr) = (running.public_addr, running.admin_addr);
    // rustls, HTTP/2 and HTTP/1.1 by ALPN, on both planes.
    for (addr, path) in [(public, "/.well-known/jwks.json"), (admin_addr, "/livez")] {
        for alpn in [&b"h2"[..], b"http/1.1"] {
            let (status, _, got) = https(
                addr,
                client_config(&pki.ca_cert, &[alpn], None),
                "GET",
                path,
                &[],
                None,
            )
            .await
            .unwrap();
            assert_eq!(status, StatusCode::OK, "{path} over {alpn:?}");
            assert_eq!(got.as_deref(), Some(alpn));
        }
    }
    // curl with the private CA, HTTP/2 by ALPN.
    let (ok, out) = run(
        "curl",
        vec![
            "-sS".into(),
            "--http2".into(),
            "--cacert".into(),
            s(&pki.ca_cert).into(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code} %{http_version}".into(),
            format!("https://localhost:{}/.well-known/jwks.json", public.port()),
        ],
        b"",
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "200 2", "curl: {out}");
    // openssl s_client: verified chain, h2 by ALPN, the admin plane's own certificate.
    for (addr, cn) in [(public, "statusd public"), (admin_addr, "statusd admin")] {
        let (_, out) = run(
            "openssl",
            vec![
                "s_client".into(),
                "-connect".into(),
                addr.to_string(),
                "-servername".into(),
                "localhost".into(),
                "-CAfile".into(),
                s(&pki.ca_cert).into(),
                "-alpn".into(),
                "h2,http/1.1".into(),
            ],
            b"Q\n",
        )
        .await;
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        assert!(out.contains("ALPN protocol: h2"), "{out}");
        assert!(out.contains(&format!("CN = {cn}")), "{out}");
    }
    // TLS 1.0 and 1.1 are not offered.
    let (_, out) = run(
        "openssl",
        vec![
            "s_client".into(),
            "-connect".into(),
            public.to_string(),
            "-tls1_1".into(),
            "-cipher".into(),
            "DEFAULT@SECLEVEL=0".into(),
        ],
        b"Q\n",
    )
    .await;
    assert!(out.contains("Cipher is (NONE)"), "{out}");
    // A client that does not trust the CA is refused.
    let stranger = Pki::new(&dir.0, "stranger");
    let e = https(
        public,
        client_config(&stranger.ca_cert, &[b"h2"], None),
        "GET",
        "/livez",
        &[],
        None,
    )
    .await
    .unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_tls_port_fails_at_once_and_a_silent_handshake_is_closed_at_the_deadline() {
    let dir = TempDir::new("tls-plain");
    let (pki, running) = start_tls(&dir.0, &[], |_| {
        vec!["--header-read-timeout".into(), "1".into()]
    })
    .await;
    let tls = client_config(&pki.ca_cert, &[b"http/1.1"], None);
    // Plain HTTP: the handshake fails on the first bytes and the connection closes, no hang.
    let started = Instant::now();
    let mut plain = tokio::net::TcpStream::connect(running.public_addr)
        .await
        .unwrap();
    plain
        .write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("closed, not left hanging");
    assert!(read.is_ok() || answer.is_empty());
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "before the deadline"
    );
    assert_eq!(
        metric(
            running.admin_addr,
            tls.clone(),
            "statusd_tls_handshake_failures_total"
        )
        .await,
        1.0
    );
    // Silent, and stalled inside the ClientHello: both closed at the 1 s deadline.
    for sent in [&b""[..], b"\x16\x03\x01\x02\x00\x01"] {
        let started = Instant::now();
        let mut c = tokio::net::TcpStream::connect(running.public_addr)
            .await
            .unwrap();
        c.write_all(sent).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
            .await
            .expect("closed by the first-request deadline")
            .ok();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{sent:?}: closed after {waited:?}"
        );
    }
    assert!(
        metric(
            running.admin_addr,
            tls.clone(),
            "statusd_connections_timed_out_total"
        )
        .await
            >= 2.0
    );
    // A good client right after is served.
    assert_eq!(jwks_status(running.public_addr, tls).await, StatusCode::OK);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_error_answers_are_problem_json_over_tls_too() {
    let dir = TempDir::new("tls-problem");
    let (pki, running) = start_tls(&dir.0, &[], |_| vec![]).await;
    let mut tls = connect(
        running.public_addr,
        client_config(&pki.ca_cert, &[b"http/1.1"], None),
    )
    .await
    .unwrap();
    tls.write_all(b"GET /x HTTP/1.1\r\nbad header\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    running.stop().await;
}

const ADMIN_TOKEN: &str = "tls-test-admin-token-0123456789abcdef";

/// Starts statusd with TLS on both planes (a new CA in `dir`, returned), mutual TLS on the admin
/// plane (clients of that CA) and one admin token (`ops`, every scope) in a tokens file.
async fn start_mutual(dir: &TempDir) -> (Pki, statusd::app::Running) {
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, format!("ops admin {ADMIN_TOKEN}\n")).unwrap();
    start_tls(
        &dir.0,
        // A list in the store keeps --demo from seeding its demo lists.
        &[("other", statusd::status::Bits::Two, 1024, vec![])],
        |pki| {
            [
                "--admin-client-ca",
                s(&pki.ca_cert),
                "--admin-tokens",
                s(&tokens),
                "--list-size",
                "131072",
            ]
            .map(str::to_owned)
            .to_vec()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_missing_untrusted_and_expired_client_certificates_and_audits_the_subject(
) {
    let dir = TempDir::new("tls-mutual");
    let (pki, running) = start_mutual(&dir).await;
    let admin = running.admin_addr;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let stranger = Pki::new(&dir.0, "stranger");
    let refused = [
        ("no certificate", None),
        (
            "an untrusted one",
            Some(stranger.client("stranger", "ops-mallory", false)),
        ),
        (
            "an expired one",
            Some(pki.client("expired", "ops-old", true)),
        ),
    ];
    for (what, identity) in &refused {
        for alpn in [&b"h2"[..], b"http/1.1"] {
            let r = https(
                admin,
                client_config(&pki.ca_cert, &[alpn], identity.as_ref()),
                "GET",
                "/v1/lists",
                &auth,
                None,
            )
            .await;
            assert!(r.is_err(), "{what} over {alpn:?} was let in: {r:?}");
        }
    }
    // The public plane does not ask for a client certificate.
    let anyone = client_config(&pki.ca_cert, &[b"h2"], None);
    assert_eq!(
        jwks_status(running.public_addr, anyone).await,
        StatusCode::OK
    );

    let alice = pki.client("alice", "ops-alice", false);
    let good = client_config(&pki.ca_cert, &[b"h2"], Some(&alice));
    // Both, not either: the certificate alone is not enough.
    let (status, _, _) = https(admin, good.clone(), "GET", "/v1/lists", &[], None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let json = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, body, _) = https(
        admin,
        good.clone(),
        "POST",
        "/v1/credentials",
        &json,
        Some(r#"{"credential_id":"card-1","kind":"physical"}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
    let (status, body, _) = https(
        admin,
        good.clone(),
        "POST",
        "/v1/credentials/card-1/revoke",
        &json,
        Some(r#"{"reason":"test"}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let (status, body, _) = https(
        admin,
        good,
        "GET",
        "/v1/credentials/card-1/audit",
        &auth,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    let audit: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let events = audit["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{audit}");
    for e in events {
        assert_eq!(e["by"], "ops", "{e}");
        let subject = e["client_subject"].as_str().unwrap_or_default();
        assert!(
            subject.contains("CN=ops-alice") && subject.contains("O=Example Ops"),
            "{e}"
        );
    }
    assert!(
        metric(
            admin,
            client_config(&pki.ca_cert, &[b"h2"], Some(&alice)),
            "statusd_tls_handshake_failures_total"
        )
        .await
            >= 6.0
    );
    running.stop().await;
}

/// Runs the statusd binary off the async threads.
async fn statusd(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || crate::support::statusd().args(&args).output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_https_inspect_verifies_a_list_and_lists_passes_mutual_tls() {
    let dir = TempDir::new("tls-cli");
    let (pki, running) = start_mutual(&dir).await;
    let base = format!("https://localhost:{}", running.public_addr.port());
    let ca = s(&pki.ca_cert).to_owned();
    let inspect = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "inspect",
            &format!("{base}/statuslists/other"),
            "--key",
            &format!("{base}/.well-known/jwks.json"),
            "--idx",
            "7",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        statusd(args)
    };
    let out = inspect(&["--ca", &ca]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["size"], 1024, "{report}");
    // Without the private CA the server is not trusted.
    let out = inspect(&[]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The admin CLI over mutual TLS: with the client certificate it works, without it not.
    let alice = pki.client("alice", "ops-alice", false);
    let admin_url = format!("https://localhost:{}", running.admin_addr.port());
    let lists = |identity: bool| {
        let mut args: Vec<String> = [
            "lists",
            "show",
            "--admin-url",
            &admin_url,
            "--token",
            ADMIN_TOKEN,
            "--ca",
            &ca,
        ]
        .map(str::to_owned)
        .to_vec();
        if identity {
            args.extend([
                "--client-cert".into(),
                s(&alice.cert).into(),
                "--client-key".into(),
                s(&alice.key).into(),
            ]);
        }
        statusd(args)
    };
    let out = lists(true).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("other"));
    assert!(!lists(false).await.status.success());
    running.stop().await;
}
