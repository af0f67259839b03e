//! `STATUSD_LOG_FORMAT=json`: every line of a real `statusd serve` is one JSON event with
//! timestamp, level, target and fields, and the public path logs no index, even at debug.

use crate::support::{get, serve_demo, Served, TempDir};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_event_per_line_and_the_public_path_logs_no_index() {
    let dir = TempDir::new("json-logs");
    let mut served = Served::start(
        serve_demo()
            .current_dir(&dir.0)
            .env("STATUSD_LOG_FORMAT", "json")
            .env("STATUSD_LOG", "statusd=debug,info"),
    );
    let public = served.public.clone();
    // Lookups of a distinctive index, found and out of range, once the demo lists are served.
    let mut ok = false;
    for _ in 0..200 {
        let (s, _, _) = get(&format!("http://{public}/statuses/2/987653"), &[]).await;
        if s == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the demo never served");
    let _ = get(&format!("http://{public}/statuses/2/98765399"), &[]).await;
    assert!(served.stop().success());
    let mut lines = std::mem::take(&mut served.startup);
    lines.extend(served.log.iter());
    for line in &lines {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON event per line ({e}): {line}"));
        for field in ["timestamp", "level", "target"] {
            assert!(event[field].is_string(), "{field} missing: {line}");
        }
        assert!(event["message"].is_string(), "{line}");
        assert!(!line.contains("987653"), "an index was logged: {line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"target\":\"statusd::")));
}
