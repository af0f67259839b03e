//! Redis over TLS: a real `redis-server --tls-port` with a private CA, client certificates
//! required and a password (from a file); two statusd replicas register and propagate through
//! it; a wrong CA is refused with a clear error; `--check-config` agrees with start-up.

use crate::redis_harness::{free_port, RedisServer};
use crate::support::{config, get, request, TempDir};
use crate::tls::Pki;
use hyper::{Method, StatusCode};
use statusd::app::{self, Running};
use statusd::store::Store;
use std::time::{Duration, Instant};

const PASSWORD: &str = "tls-redis-password-0123";
const TOKEN: &str = "redis-tls-admin-token-0123456789";

/// A TLS-only (for statusd) Redis: the plain port is the harness's readiness probe only.
struct TlsRedis {
    server: RedisServer,
    tls_port: u16,
    pki: Pki,
    client: crate::tls::Issued,
}

/// `redis-server` flags for TLS on `port` with `cert` from `pki`'s CA; `auth_clients` is
/// `--tls-auth-clients` (`yes`, `optional`).
fn tls_flags<'a>(
    pki: &'a Pki,
    cert: &'a crate::tls::Issued,
    port: &'a str,
    auth_clients: &'a str,
) -> Vec<&'a str> {
    vec![
        "--tls-port",
        port,
        "--tls-cert-file",
        cert.cert.to_str().unwrap(),
        "--tls-key-file",
        cert.key.to_str().unwrap(),
        "--tls-ca-cert-file",
        pki.ca_cert.to_str().unwrap(),
        "--tls-auth-clients",
        auth_clients,
    ]
}

fn tls_redis(dir: &TempDir) -> TlsRedis {
    let pki = Pki::new(&dir.0, "redis");
    let cert = pki.server("redis-server", "redis");
    let client = pki.client("redis-client", "statusd", false);
    let tls_port = free_port();
    let tls_port_s = tls_port.to_string();
    let mut flags = tls_flags(&pki, &cert, &tls_port_s, "yes");
    flags.extend(["--requirepass", PASSWORD]);
    let server = RedisServer::start_with(&flags);
    TlsRedis {
        server,
        tls_port,
        pki,
        client,
    }
}

impl TlsRedis {
    fn url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port)
    }

    /// The flags of a replica that reaches this Redis, with `ca` as the trusted CA.
    fn flags(&self, ca: &std::path::Path, password_file: &std::path::Path) -> Vec<String> {
        [
            "--redis-url",
            &self.url(),
            "--redis-ca",
            ca.to_str().unwrap(),
            "--redis-client-cert",
            self.client.cert.to_str().unwrap(),
            "--redis-client-key",
            self.client.key.to_str().unwrap(),
            "--redis-password-file",
            password_file.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

async fn replica(dir: &std::path::Path, flags: &[String]) -> Running {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    app::start(&config(dir, &flags))
        .await
        .expect("start replica")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_register_and_propagate_through_a_tls_redis_with_a_private_ca() {
    let dir = TempDir::new("redis-tls");
    let redis = tls_redis(&dir);
    let password_file = dir.0.join("redis-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, format!("ops admin {TOKEN}\n")).unwrap();
    let key = dir.0.join("key.pem");
    std::fs::write(
        &key,
        statusd::token::keys::SigningKey::generate(statusd::token::keys::Algorithm::Es256)
            .to_pkcs8_pem(),
    )
    .unwrap();
    let mut flags = redis.flags(&redis.pki.ca_cert, &password_file);
    flags.extend(
        [
            "--signing-key",
            key.to_str().unwrap(),
            "--admin-tokens",
            tokens.to_str().unwrap(),
            "--list-size",
            "131072",
            "--reencode-interval",
            "1",
        ]
        .map(str::to_owned),
    );
    // A list in the store keeps --demo from seeding: written through the same TLS settings.
    let config_a = config(
        &dir.0.join("a"),
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let store = app::open_store_secure(
        config_a.redis_url.as_deref(),
        &config_a.redis_security,
        &config_a.data_dir,
    )
    .await
    .unwrap();
    store
        .create_list(statusd::store::NewList {
            id: "other".into(),
            bits: statusd::status::Bits::Two,
            size: 1024,
            purpose: None,
        })
        .await
        .expect("a write over TLS with the client certificate and the password file");
    drop(store);
    let a = replica(&dir.0.join("a"), &flags).await;
    let b = replica(&dir.0.join("b"), &flags).await;
    for r in [&a, &b] {
        assert!(r.ready(Duration::from_secs(20)).await, "ready over TLS");
    }
    let bearer = format!("Bearer {TOKEN}");
    let json = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, _, body) = request(
        Method::POST,
        &format!("http://{}/v1/credentials", a.admin_addr),
        &json,
        Some(r#"{"credential_id":"card-1","kind":"physical"}"#.into()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (list, idx) = (
        v["assignment"]["list_id"].as_str().unwrap().to_owned(),
        v["assignment"]["idx"].as_u64().unwrap(),
    );
    let (status, _, body) = request(
        Method::POST,
        &format!("http://{}/v1/credentials/card-1/revoke", a.admin_addr),
        &json,
        Some(r#"{"reason":"test"}"#.into()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    // Replica b sees the revocation through the TLS Redis.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, _, body) = get(
            &format!("http://{}/statuses/{list}/{idx}", b.public_addr),
            &[],
        )
        .await;
        if s == StatusCode::OK {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if v["status"] == "INVALID" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "b never saw the revocation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
    drop(redis.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_refused_with_a_clear_error_and_check_config_agrees_with_start_up() {
    let dir = TempDir::new("redis-tls-ca");
    let redis = tls_redis(&dir);
    let password_file = dir.0.join("redis-password");
    std::fs::write(&password_file, PASSWORD).unwrap();
    let stranger = Pki::new(&dir.0, "stranger");
    let flags = redis.flags(&stranger.ca_cert, &password_file);
    let config = config(
        &dir.0,
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let store = app::open_store_secure(config.redis_url.as_deref(), &config.redis_security, &dir.0)
        .await
        .unwrap();
    let e = store.lists().await.unwrap_err().to_string();
    assert!(
        e.contains("certificate") || e.contains("UnknownIssuer"),
        "the error names the certificate problem: {e}"
    );
    // --check-config: a rediss:// URL with its files is accepted, as start-up accepts it; a
    // missing CA file or a password file that is not one line is refused with exit 64.
    let check = |flags: &[String]| {
        crate::support::statusd()
            .args(["serve", "--check-config", "--demo"])
            .args(flags)
            .output()
            .unwrap()
    };
    let out = check(&redis.flags(&redis.pki.ca_cert, &password_file));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(&redis.flags(&dir.0.join("absent-ca.pem"), &password_file));
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("absent-ca.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let two_lines = dir.0.join("two-lines");
    std::fs::write(&two_lines, "a\nb\n").unwrap();
    let out = check(&redis.flags(&redis.pki.ca_cert, &two_lines));
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one line"));
    // Every URL --check-config accepts, start-up accepts too (and the other way round).
    for url in [
        "redis://127.0.0.1:1",
        "rediss://127.0.0.1:1",
        "rediss+cluster://127.0.0.1:1,127.0.0.1:2",
        "redis://a:1,redis://b:2",
        "rediss://a:1,redis://b:2",
        "redis+cluster://",
    ] {
        let checked = check(&["--redis-url".into(), url.into()]).status.success();
        let started = statusd::store::redis::RedisStore::connect(url)
            .await
            .is_ok();
        assert_eq!(checked, started, "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_and_follows_a_redis_cluster_over_tls() {
    use crate::redis_harness::{free_ports, RedisCluster};
    use statusd::store::{Change, NewList};
    let dir = TempDir::new("redis-tls-cluster");
    let pki = Pki::new(&dir.0, "cluster");
    let cert = pki.peer("redis-node", "redis");
    let tls_ports = free_ports::<3>();
    let mut next = tls_ports.into_iter();
    // The nodes talk TLS to each other too (tls-cluster), and tell TLS clients their TLS ports.
    let cluster = RedisCluster::start_nodes(|args| {
        let tls_port = next.next().expect("three ports").to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(tls_flags(&pki, &cert, &tls_port, "optional"));
        all.extend(["--tls-cluster", "yes"]);
        RedisServer::start_with(&all)
    });
    let url = format!(
        "rediss+cluster://{}",
        tls_ports.map(|p| format!("127.0.0.1:{p}")).join(",")
    );
    let flags = [
        "--redis-url",
        &url,
        "--redis-ca",
        pki.ca_cert.to_str().unwrap(),
    ];
    let config = config(&dir.0, &flags);
    let store = app::open_store_secure(config.redis_url.as_deref(), &config.redis_security, &dir.0)
        .await
        .unwrap();
    store
        .create_list(NewList {
            id: "tls-cluster".into(),
            bits: statusd::status::Bits::Two,
            size: 1024,
            purpose: None,
        })
        .await
        .expect("a write through the TLS cluster");
    let running = app::start(&config).await.expect("start");
    assert!(
        running.ready(Duration::from_secs(20)).await,
        "ready over TLS"
    );
    store
        .apply(
            "tls-cluster",
            &[Change {
                idx: 5,
                status: statusd::status::Status(1),
            }],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, _, body) = get(
            &format!("http://{}/statuses/tls-cluster/5", running.public_addr),
            &[],
        )
        .await;
        if s == StatusCode::OK
            && serde_json::from_slice::<serde_json::Value>(&body).unwrap()["value"] == 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "the change never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
    drop(cluster);
}
