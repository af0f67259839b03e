//! A `statusd serve` process on two chosen loopback ports, for the tests that kill, restart,
//! skew or cut it off from outside (crash, network faults, clock skew, soak): readiness probed
//! on `/readyz`, the process killed on drop so that a failed assertion does not leave it running.

use crate::support;
use hyper::StatusCode;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A statusd process, killed on drop.
pub struct Replica {
    pub child: Child,
    /// The public plane, `http://127.0.0.1:{port}`.
    pub public: String,
    /// The admin plane, `http://127.0.0.1:{port}`.
    pub admin: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `statusd serve --demo` as the tests that write through the issuer under faults run it:
/// re-encoding every second, issuer lists of 131,072 entries, `dir` as data directory with the
/// admin tokens in `dir/tokens`, standard output discarded.
pub fn issuer_serve(dir: &Path) -> Command {
    let mut cmd = support::statusd();
    cmd.args(["serve", "--demo", "--reencode-interval", "1"])
        .args(["--list-size", "131072"])
        .arg("--data-dir")
        .arg(dir)
        .arg("--admin-tokens")
        .arg(dir.join("tokens"))
        .stdout(Stdio::null());
    cmd
}

impl Replica {
    /// Spawns `cmd` (a `statusd serve …` command) listening on `ports`: public, admin.
    pub fn spawn(cmd: &mut Command, [public, admin]: [u16; 2]) -> Replica {
        let child = cmd
            .arg("--listen")
            .arg(format!("127.0.0.1:{public}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .spawn()
            .expect("spawn statusd");
        Replica {
            child,
            public: format!("http://127.0.0.1:{public}"),
            admin: format!("http://127.0.0.1:{admin}"),
        }
    }

    /// The admin plane's address, for [`support::metric`].
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.admin
            .trim_start_matches("http://")
            .parse()
            .expect("admin address")
    }

    /// One readiness probe, answered within a second or not; panics if the process has exited.
    pub async fn ready(&mut self) -> bool {
        // Connection refused panics inside the helper: probe on a task of its own.
        let url = format!("{}/readyz", self.admin);
        let probe = tokio::spawn(async move { support::get(&url, &[]).await.0 });
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("statusd exited: {status}");
        }
        matches!(
            tokio::time::timeout(Duration::from_secs(1), probe).await,
            Ok(Ok(StatusCode::OK))
        )
    }

    /// Waits up to 30 s for the process to be ready.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready().await {
            assert!(Instant::now() < deadline, "statusd did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
