//! Issue #20, item 3: the embedded store's disk fills up. The data directory is a small tmpfs
//! this test mounts itself (tests run as root); writes past its capacity are refused with 507
//! `insufficient-storage`, public reads keep answering, nothing acknowledged is lost, and writes
//! resume once space is freed and again after the tmpfs is remounted larger.

use crate::support::{self, TempDir};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use statusd::app;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WRITER: &str = "writer-token-0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef";

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.0)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        &self.dir.0
    }

    fn remount(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: after a failed assertion the server may still hold files open here.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Fills the file system holding `path` until the kernel says ENOSPC.
fn fill(path: &Path) -> PathBuf {
    use std::io::Write as _;
    let filler = path.join("filler");
    let mut f = std::fs::File::create(&filler).expect("create filler");
    let chunk = vec![0xa5u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if statusd::store::is_disk_full(&e) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    filler
}

async fn call(
    admin: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, hyper::HeaderMap, Value) {
    let url = format!("http://{admin}{path}");
    let (status, h, bytes) = support::authorized(method, &url, token, body).await;
    if !status.is_success() {
        support::problem(status, &h, &bytes);
    }
    (
        status,
        h,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_with_507_keeps_reads_and_resumes() {
    let fs = Tmpfs::mount("4m");
    let data = fs.path().join("data");
    let tokens = fs.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("issuance write {WRITER}\naudit read {READER}\n"),
    )
    .unwrap();
    let config = support::config(
        &data,
        &[
            "--admin-tokens",
            tokens.to_str().unwrap(),
            "--reencode-interval",
            "1",
        ],
    );
    let running = app::start(&config).await.expect("start statusd");
    assert!(running.ready(Duration::from_secs(20)).await, "not ready");
    let admin = running.admin_addr.to_string();
    let public = running.public_addr.to_string();
    let register = |i: usize| {
        let admin = admin.clone();
        async move {
            call(
                &admin,
                WRITER,
                Method::POST,
                "/v1/credentials",
                Some(json!({"credential_id": format!("cred-{i}"), "kind": "physical"})),
            )
            .await
        }
    };

    let (status, _, first) = register(0).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let place = &first["assignment"];
    let lookup = format!(
        "http://{public}/statuses/{}/{}",
        place["list_id"].as_str().unwrap(),
        place["idx"]
    );

    // The new list is published within the re-encode interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while support::get(&lookup, &[]).await.0 != StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "{lookup} never published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Fill the disk, then write until the store refuses.
    let filler = fill(fs.path());
    let mut acknowledged = vec![0];
    // Every answer is an acknowledgement or the precise refusal; after a refusal the store is
    // reopened, which may reclaim the failed commit's pages, so a few writes can fit again.
    let mut refused = 0;
    for i in 1..5000 {
        let (status, _, v) = register(i).await;
        match status {
            StatusCode::CREATED => acknowledged.push(i),
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(v["type"], "urn:statusd:problem:insufficient-storage", "{v}");
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("write {i} on a full disk answered {other}: {v}"),
        }
    }
    assert_eq!(refused, 3, "a full disk refuses writes");
    // Public reads keep answering from the snapshot.
    let (status, _, body) = support::get(&lookup, &[]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    // Space returns: writes resume, and every acknowledged write is still there.
    std::fs::remove_file(&filler).unwrap();
    let (status, _, v) = register(6000).await;
    assert_eq!(status, StatusCode::CREATED, "after freeing space: {v}");
    acknowledged.push(6000);
    for i in &acknowledged {
        let (status, _, v) = call(
            &admin,
            READER,
            Method::GET,
            &format!("/v1/credentials/cred-{i}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "acknowledged cred-{i} lost: {v}");
    }

    // Full again, then the tmpfs is remounted larger: writes resume without a restart.
    let filler = fill(fs.path());
    let mut full = false;
    for i in 7000..10000 {
        let (status, _, v) = register(i).await;
        match status {
            StatusCode::CREATED => acknowledged.push(i),
            StatusCode::INSUFFICIENT_STORAGE => {
                full = true;
                break;
            }
            other => panic!("write {i} answered {other}: {v}"),
        }
    }
    assert!(full, "the refilled disk refuses writes");
    fs.remount("64m");
    let (status, _, v) = register(20000).await;
    assert_eq!(status, StatusCode::CREATED, "after remounting larger: {v}");
    let (status, _, _) = support::get(&lookup, &[]).await;
    assert_eq!(status, StatusCode::OK);
    running.stop().await;
    drop(filler);

    // The database file is intact: it opens and holds every acknowledged credential.
    let store = statusd::store::embedded::EmbeddedStore::open(&data).expect("store reopens");
    assert!(!statusd::store::Store::lists(&store)
        .await
        .expect("lists")
        .is_empty());
}
