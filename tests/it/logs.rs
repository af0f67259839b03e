//! `STATUSD_LOG_FORMAT=json`: every line of a real `statusd serve` is one JSON event with
//! timestamp, level, target and fields, and the public path logs no index, even at debug.

use crate::support::{get, TempDir};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_event_per_line_and_the_public_path_logs_no_index() {
    let dir = TempDir::new("json-logs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_statusd"))
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .current_dir(&dir.0)
        .env_remove("STATUSD_SIGNING_KEY")
        .env_remove("STATUSD_DATA_DIR")
        .env_remove("STATUSD_REDIS_URL")
        .env("STATUSD_LOG_FORMAT", "json")
        .env("STATUSD_LOG", "statusd=debug,info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let mut public = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        let event: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not one JSON event per line ({e}): {line}"));
        lines.push(line);
        if event["message"] == "statusd listening" {
            public = event["public_addr"].as_str().map(str::to_owned);
            break;
        }
    }
    let Some(public) = public else {
        let _ = child.kill();
        panic!("no 'statusd listening' event with public_addr: {lines:#?}");
    };
    // Lookups of a distinctive index, found and out of range, once the demo lists are served.
    let mut served = false;
    for _ in 0..200 {
        let (s, _, _) = get(&format!("http://{public}/statuses/2/987653"), &[]).await;
        if s == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the demo never served");
    let _ = get(&format!("http://{public}/statuses/2/98765399"), &[]).await;
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    assert!(child.wait().unwrap().success());
    lines.extend(rx.try_iter());
    for line in &lines {
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON event");
        for field in ["timestamp", "level", "target"] {
            assert!(event[field].is_string(), "{field} missing: {line}");
        }
        assert!(event["message"].is_string(), "{line}");
        assert!(!line.contains("987653"), "an index was logged: {line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"target\":\"statusd::")));
}
