//! The consistency check fires when a published snapshot disagrees with the store, and stays
//! quiet while it agrees: a replica's snapshot is corrupted in memory and the counter moves.

use crate::redis_harness::RedisServer;
use crate::support::{self, TempDir};
use statusd::app;
use statusd::snapshot::{ListSnapshot, Snapshot};
use statusd::status::{Bits, Status};

use std::sync::Arc;
use std::time::{Duration, Instant};

async fn counter(admin: std::net::SocketAddr, name: &str) -> u64 {
    support::metric(admin, name).await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_snapshot_entry_is_detected() {
    let redis = RedisServer::start();
    let dir = TempDir::new("consistency");
    let store = app::open_store(Some(&redis.url()), &dir.0).await.unwrap();
    let seeded = [
        (5, Status::INVALID.0),
        (77, Status::SUSPENDED.0),
        (9_000, Status::INVALID.0),
    ];
    crate::support::seed_list(&store, "c", Bits::Two, 1 << 17, &seeded).await;
    let url = redis.url();
    let config = support::config(
        &dir.0,
        &["--redis-url", &url, "--consistency-samples", "32"],
    );
    let running = app::start(&config).await.unwrap();
    assert!(running.ready(Duration::from_secs(20)).await);
    let admin = running.admin_addr;

    // Agreeing: entries are compared, nothing mismatches.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(admin, "statusd_consistency_entries_compared_total").await < 64 {
        assert!(Instant::now() < deadline, "the check does not run");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        counter(admin, "statusd_consistency_mismatches_total").await,
        0
    );

    // Corrupt the published list in memory: entry 1234 INVALID, while the store says VALID.
    let snap = running.snapshots.load_full();
    let ls = snap.list("c").unwrap();
    let mut list = ls.list.clone();
    list.set(1234, Status::INVALID).unwrap();
    let corrupted = ListSnapshot {
        meta: ls.meta.clone(),
        list,
        non_valid: ls.non_valid + 1,
        artefacts: ls.artefacts.clone(),
    };
    let mut lists = snap.lists.clone();
    lists.insert("c".into(), Arc::new(corrupted));
    running.snapshots.publish(Snapshot {
        generation: snap.generation + 1,
        published_at: snap.published_at,
        lists,
        retired: snap.retired.clone(),
        aggregation: snap.aggregation.clone(),
        jwks: snap.jwks.clone(),
        controller: snap.controller.clone(),
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(admin, "statusd_consistency_mismatches_total").await == 0 {
        assert!(Instant::now() < deadline, "the corruption was not detected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.stop().await;
}
