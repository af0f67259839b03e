//! Issue #20, item 4: a replica whose clock is off Redis's. The statusd binary runs under
//! libfaketime (Debian `faketime`) against a real `redis-server`; its offset is read from a file
//! the test rewrites (`FAKETIME_TIMESTAMP_FILE`, re-read every second), so one process sees its
//! clock jump ahead, behind and back. Redis runs on the real clock.
//!
//! Checked: `statusd_clock_skew_seconds` follows the offset; beyond `--max-clock-skew` the replica
//! stops signing (the served token keeps its `iat`, then the signed route answers 503
//! `signing-unavailable` before `exp`) while lookups keep answering; within the bound again,
//! signing resumes with `iat` on the real clock. A second replica started already skewed never
//! signs at all.

use crate::redis_harness::{free_ports, RedisServer};
use crate::support::replica::Replica;
use crate::support::{self, get, until};
use statusd::status::{Bits, Status};
use statusd::store::Store;
use statusd::token::{decode_jwt_unverified, StatusListClaims};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const JWT: &str = "application/statuslist+jwt";
const MAX_SKEW: &str = "5";

/// A statusd process under libfaketime.
struct Skewed {
    r: Replica,
    admin: std::net::SocketAddr,
    offset_file: PathBuf,
}

impl Skewed {
    fn spawn(dir: &Path, redis: &str, offset: &str) -> Skewed {
        let lib = libfaketime();
        let offset_file = dir.join("faketime");
        std::fs::write(&offset_file, offset).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_statusd"));
        // libfaketime itself rather than the `faketime` wrapper, which would set `FAKETIME` and
        // so override the file the offset is read from (and can change) while the process runs.
        // --demo for a key of its own; the store already holds a list, so nothing is seeded.
        cmd.args(["serve", "--demo"])
            .args(support::RESIGN_EVERY_SECOND)
            .args(["--max-clock-skew", MAX_SKEW])
            .arg("--data-dir")
            .arg(dir)
            .arg("--redis-url")
            .arg(redis)
            .env("LD_PRELOAD", lib)
            .env_remove("FAKETIME")
            .env("FAKETIME_TIMESTAMP_FILE", &offset_file)
            .env("FAKETIME_CACHE_DURATION", "1")
            // Timers and timeouts run on the real monotonic clock; only the wall clock is off.
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("STATUSD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let r = Replica::spawn(&mut cmd, free_ports::<2>());
        Skewed {
            admin: r.admin_addr(),
            r,
            offset_file,
        }
    }

    fn set_offset(&self, offset: &str) {
        std::fs::write(&self.offset_file, offset).unwrap();
    }

    async fn skew(&self) -> f64 {
        support::metric(self.admin, "statusd_clock_skew_seconds").await
    }

    /// `/statuslists/1` as a JWT: the claims, or the status and problem type.
    async fn token(&self) -> Result<StatusListClaims, (u16, String)> {
        let (s, h, b) = get(
            &format!("{}/statuslists/1", self.r.public),
            &[("accept", JWT)],
        )
        .await;
        if s != 200 {
            let p = support::problem(s, &h, &b);
            return Err((s.as_u16(), p["type"].as_str().unwrap_or("").to_owned()));
        }
        let jwt = std::str::from_utf8(&b).expect("a JWT is text");
        Ok(decode_jwt_unverified(jwt).expect("a JWT").claims)
    }

    async fn lookup(&self, idx: u32) -> u64 {
        let (s, _, b) = get(&format!("{}/statuses/1/{idx}", self.r.public), &[]).await;
        assert_eq!(s, 200, "lookups keep answering");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["value"].as_u64().unwrap()
    }

    async fn ready(&mut self) {
        self.r.wait_ready().await;
    }
}

/// libfaketime's multi-threaded library (Debian `faketime`, which depends on `libfaketime`).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    found.expect(
        "libfaketimeMT.so.1 not found under /usr/lib/*/faketime: run scripts/test, which \
         installs it (apt-get install faketime)",
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_clock_is_reported_and_pauses_signing_until_it_is_back_within_bound() {
    let redis = RedisServer::start();
    let store = statusd::app::open_store(Some(&redis.url()), Path::new("/nonexistent"))
        .await
        .unwrap();
    support::seed_list(&store, "1", Bits::Two, 16_384, &[(3, 1)]).await;

    let dir = support::TempDir::new("clock-skew");
    let mut r = Skewed::spawn(&dir.0, &redis.url(), "+0");
    r.ready().await;
    let r = &r;

    // Within the bound: measured near 0, signed on the real clock.
    assert!(r.skew().await.abs() < 1.0, "skew {}", r.skew().await);
    let first = r.token().await.expect("a signed token");
    assert!(
        first.iat.abs_diff(now()) <= 2,
        "iat {} at {}",
        first.iat,
        now()
    );

    // Two minutes ahead: measured within a check (5 s) plus libfaketime's cache (1 s).
    r.set_offset("+120");
    let jumped = Instant::now();
    until(
        "the skew ahead to be measured",
        Duration::from_secs(15),
        || async move {
            let s = r.skew().await;
            (s - 120.0).abs().lt(&2.0).then_some(())
        },
    )
    .await;
    let detected = jumped.elapsed();
    // Signing is paused: what is served stops changing, lookups follow the store, and the
    // token is withheld before its exp (10 s lifetime) rather than re-signed with a wrong clock.
    // It may have been re-signed once with the skewed clock before the measurement (at most one
    // check interval), and may already be withheld (its exp is past by the skewed clock).
    store.apply("1", &[support::change(7, 2)]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut served_iat = None;
    let withheld = loop {
        match r.token().await {
            Ok(c) => {
                assert_eq!(
                    *served_iat.get_or_insert(c.iat),
                    c.iat,
                    "re-signed while paused"
                );
                assert!(c.exp.unwrap() > now(), "served past exp");
            }
            Err(e) => break e,
        }
        assert!(Instant::now() < deadline, "the token was not withheld");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let withheld_after = jumped.elapsed();
    assert_eq!(
        withheld,
        (503, "urn:statusd:problem:signing-unavailable".to_owned())
    );
    until(
        "the lookup to follow the store",
        Duration::from_secs(5),
        || async move { (r.lookup(7).await == 2).then_some(()) },
    )
    .await;

    // Two minutes behind: still paused.
    r.set_offset("-120");
    until(
        "the skew behind to be measured",
        Duration::from_secs(15),
        || async move {
            let s = r.skew().await;
            (s + 120.0).abs().lt(&2.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        r.token().await.unwrap_err(),
        (503, "urn:statusd:problem:signing-unavailable".to_owned())
    );

    // Back within the bound: signing resumes on the real clock, with the change made meanwhile.
    r.set_offset("+0");
    let back = Instant::now();
    let resumed = until(
        "signing to resume",
        Duration::from_secs(20),
        || async move { r.token().await.ok() },
    )
    .await;
    assert!(
        resumed.iat.abs_diff(now()) <= 2,
        "iat {} at {}",
        resumed.iat,
        now()
    );
    eprintln!(
        "clock skew: +120 s measured after {detected:?}, token withheld {withheld_after:?} after \
         the jump, signing resumed {:?} after the clock came back",
        back.elapsed()
    );
    let list = resumed.status_list.decode().unwrap();
    assert_eq!(list.get(7).unwrap(), Status(2));
    assert!(r.skew().await.abs() < 1.0);

    // A replica that starts skewed never signs: measured before the first signature.
    let dir2 = support::TempDir::new("clock-skew-start");
    let mut late = Skewed::spawn(&dir2.0, &redis.url(), "-300");
    late.ready().await;
    assert!((late.skew().await + 300.0).abs() < 2.0);
    assert_eq!(
        late.token().await.unwrap_err(),
        (503, "urn:statusd:problem:signing-unavailable".to_owned())
    );
    assert_eq!(late.lookup(7).await, 2, "lookups answer from the store");
    assert_eq!(
        support::metric(late.admin, "statusd_clock_skew_max_seconds").await,
        5.0
    );
}
