//! The Redis store against real `redis-server` processes: the data model of docs/redis.md as
//! other writers see it, a cluster, and failures (a paused, a killed and restarted, and an
//! absent server). The behaviour it shares with the embedded store is `store_contract.rs`.

use crate::redis_harness::{free_port, free_ports, RedisCluster, RedisServer};
use crate::support::{change as c, new_list, nonzero};
use statusd::status::packing::{pack_dense, Order};
use statusd::status::{Bits, Status};
use statusd::store::redis::{data_key, feed_key, meta_key, RedisOptions, RedisStore, LISTS_KEY};
use statusd::store::{Change, NewList, Store, StoreError};
use std::time::{Duration, Instant};

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url()).await.expect("connect")
}

/// Retries `f` until it succeeds or `within` has passed.
async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("still failing after {within:?}: {e}"),
        }
    }
}

/// The Redis side of `store_contract`'s refused batches: the script checks the whole batch
/// before it writes, so neither `data` nor the feed sees a refused batch.
#[tokio::test]
async fn a_rejected_batch_leaves_data_and_feed_untouched() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.create_list(new_list("b", Bits::Two, 64)).await.unwrap();
    s.apply("b", &[c(1, 1)]).await.unwrap();
    let data_before: Vec<u8> = server.query(redis::cmd("GET").arg(data_key("b")));
    for batch in [
        &[c(2, 2), c(1, 0)][..],
        &[c(3, 2), c(64, 1)][..],
        &[c(3, 2), c(4, 4)][..],
    ] {
        assert!(s.apply("b", batch).await.is_err());
    }
    let data_after: Vec<u8> = server.query(redis::cmd("GET").arg(data_key("b")));
    assert_eq!(data_before, data_after);
    let feed_len: u64 = server.query(redis::cmd("XLEN").arg(feed_key("b")));
    assert_eq!(feed_len, 1);
}

#[tokio::test]
async fn data_is_in_redis_bit_order() {
    let server = RedisServer::start();
    let s = store(&server).await;
    for (id, bits) in [
        ("w1", Bits::One),
        ("w2", Bits::Two),
        ("w4", Bits::Four),
        ("w8", Bits::Eight),
    ] {
        s.create_list(new_list(id, bits, 64)).await.unwrap();
        let max = bits.max_value();
        s.apply(id, &[c(0, max), c(9, 1), c(63, 1)]).await.unwrap();
        // What another writer or reader sees with BITFIELD.
        let ty = format!("u{}", bits.get());
        let got: Vec<u64> = server.query(
            redis::cmd("BITFIELD")
                .arg(data_key(id))
                .arg("GET")
                .arg(&ty)
                .arg("#0")
                .arg("GET")
                .arg(&ty)
                .arg("#9")
                .arg("GET")
                .arg(&ty)
                .arg("#63"),
        );
        assert_eq!(got, vec![u64::from(max), 1, 1], "{id}");
        // Byte for byte the W3C (MSB-first) packing.
        let (_, list) = s.load(id).await.unwrap();
        let raw: Vec<u8> = server.query(redis::cmd("GET").arg(data_key(id)));
        assert_eq!(raw, pack_dense(&list, Order::MsbFirst), "{id}");
        // A foreign write is read back as statusd would have written it.
        let _: Vec<i64> = server.query(
            redis::cmd("BITFIELD")
                .arg(data_key(id))
                .arg("SET")
                .arg(&ty)
                .arg("#17")
                .arg(1),
        );
        let (_, list) = s.load(id).await.unwrap();
        assert_eq!(
            nonzero(&list),
            vec![(0, max), (9, 1), (17, 1), (63, 1)],
            "{id}"
        );
    }
    // A short data string: the missing bytes are VALID entries.
    s.create_list(new_list("short", Bits::Two, 1024))
        .await
        .unwrap();
    s.apply("short", &[c(2, 2)]).await.unwrap();
    let len: u64 = server.query(redis::cmd("STRLEN").arg(data_key("short")));
    assert_eq!(len, 1);
    let (_, list) = s.load("short").await.unwrap();
    assert_eq!((list.size(), nonzero(&list)), (1024, vec![(2, 2)]));
}

/// `lists` reads the metadata of the lists it saw last time together with the list set (one
/// round trip, issue #22): lists another writer created meanwhile, changed or took out of the
/// set are still seen as they are now.
#[tokio::test]
async fn lists_follows_other_writers_after_the_first_read() {
    let server = RedisServer::start();
    let (a, b) = (store(&server).await, store(&server).await);
    a.create_list(new_list("x", Bits::One, 8)).await.unwrap();
    let versions = |metas: Vec<statusd::store::ListMeta>| -> Vec<(String, u64)> {
        metas.into_iter().map(|m| (m.id, m.version)).collect()
    };
    assert_eq!(versions(a.lists().await.unwrap()), vec![("x".into(), 0)]);
    b.create_list(new_list("y", Bits::One, 8)).await.unwrap();
    b.apply("x", &[c(1, 1)]).await.unwrap();
    assert_eq!(
        versions(a.lists().await.unwrap()),
        vec![("x".into(), 1), ("y".into(), 0)]
    );
    let _: i64 = server.query(redis::cmd("SREM").arg(LISTS_KEY).arg("x"));
    b.apply("y", &[c(2, 1)]).await.unwrap();
    assert_eq!(versions(a.lists().await.unwrap()), vec![("y".into(), 1)]);
}

#[tokio::test]
async fn lists_skips_ids_without_meta_and_creation_repairs_the_set() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.create_list(new_list("real", Bits::One, 8)).await.unwrap();
    let _: i64 = server.query(redis::cmd("SADD").arg(LISTS_KEY).arg("ghost"));
    let ids: Vec<String> = s.lists().await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, vec!["real"]);
    // A creation that stopped before SADD: the list is invisible until created again.
    let _: i64 = server.query(redis::cmd("SREM").arg(LISTS_KEY).arg("real"));
    assert!(s.lists().await.unwrap().is_empty());
    assert!(matches!(
        s.create_list(new_list("real", Bits::One, 8)).await,
        Err(StoreError::ListExists(_))
    ));
    let ids: Vec<String> = s.lists().await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, vec!["real"]);
    // Data and feed left behind by a deleted list do not leak into a new one.
    s.apply("real", &[c(1, 1)]).await.unwrap();
    let _: i64 = server.query(redis::cmd("DEL").arg(meta_key("real")));
    s.create_list(new_list("real", Bits::One, 8)).await.unwrap();
    let (meta, list) = s.load("real").await.unwrap();
    assert_eq!((meta.version, list.count_nonzero()), (0, 0));
    s.apply("real", &[c(2, 1)]).await.unwrap();
    assert_eq!(
        s.changes_since("real", 0).await.unwrap(),
        Some((1, vec![c(2, 1)]))
    );
}

#[tokio::test]
async fn changes_since_replays_the_feed_or_reports_a_gap() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.create_list(new_list("f", Bits::Two, 64)).await.unwrap();
    assert_eq!(s.changes_since("f", 0).await.unwrap(), Some((0, vec![])));
    s.apply("f", &[c(1, 2), c(2, 1)]).await.unwrap();
    s.apply("f", &[c(1, 0)]).await.unwrap();
    s.apply("f", &[c(3, 3), c(3, 1)]).await.unwrap();
    assert_eq!(
        s.changes_since("f", 0).await.unwrap(),
        Some((3, vec![c(1, 2), c(2, 1), c(1, 0), c(3, 3), c(3, 1)]))
    );
    assert_eq!(
        s.changes_since("f", 1).await.unwrap(),
        Some((3, vec![c(1, 0), c(3, 3), c(3, 1)]))
    );
    assert_eq!(s.changes_since("f", 3).await.unwrap(), Some((3, vec![])));
    // Ahead of the store (the list was recreated): a gap.
    assert_eq!(s.changes_since("f", 7).await.unwrap(), None);
    assert_eq!(s.changes_since("nope", 0).await.unwrap(), None);

    // Trimmed past the caller's version.
    let _: i64 = server.query(redis::cmd("XTRIM").arg(feed_key("f")).arg("MAXLEN").arg(0));
    assert_eq!(s.changes_since("f", 1).await.unwrap(), None);
    assert_eq!(s.changes_since("f", 3).await.unwrap(), Some((3, vec![])));
    s.apply("f", &[c(4, 2)]).await.unwrap();
    assert_eq!(
        s.changes_since("f", 3).await.unwrap(),
        Some((4, vec![c(4, 2)]))
    );
    assert_eq!(s.changes_since("f", 2).await.unwrap(), None);

    // A malformed entry written behind statusd's back.
    let _: String = server.query(
        redis::cmd("XADD")
            .arg(feed_key("f"))
            .arg("5-0")
            .arg("v")
            .arg(5)
            .arg("c")
            .arg("4=nonsense"),
    );
    let _: i64 = server.query(redis::cmd("HSET").arg(meta_key("f")).arg("version").arg(5));
    assert_eq!(s.changes_since("f", 4).await.unwrap(), None);
    // Out of the list's range, or wider than its bits: also a gap.
    for (v, bad) in [(6, "64=1"), (7, "1=4")] {
        let _: String = server.query(
            redis::cmd("XADD")
                .arg(feed_key("f"))
                .arg(format!("{v}-0"))
                .arg("v")
                .arg(v)
                .arg("c")
                .arg(bad),
        );
        let _: i64 = server.query(redis::cmd("HSET").arg(meta_key("f")).arg("version").arg(v));
        assert_eq!(s.changes_since("f", v - 1).await.unwrap(), None, "{bad}");
    }
    // A version without its entry.
    let _: i64 = server.query(redis::cmd("HSET").arg(meta_key("f")).arg("version").arg(8));
    assert_eq!(s.changes_since("f", 7).await.unwrap(), None);
    // statusd's next write continues from there.
    s.apply("f", &[c(9, 2)]).await.unwrap();
    assert_eq!(
        s.changes_since("f", 8).await.unwrap(),
        Some((9, vec![c(9, 2)]))
    );

    // A feed entry newer than the list (left over from elsewhere) would make XADD fail after
    // the writes; the script drops the stale feed first, and the write succeeds whole.
    let _: String = server.query(
        redis::cmd("XADD")
            .arg(feed_key("f"))
            .arg("100-0")
            .arg("v")
            .arg(100)
            .arg("c")
            .arg(""),
    );
    let a = s.apply("f", &[c(10, 2)]).await.unwrap();
    assert_eq!(a.version, 10);
    assert_eq!(
        s.changes_since("f", 9).await.unwrap(),
        Some((10, vec![c(10, 2)]))
    );
    assert_eq!(s.changes_since("f", 8).await.unwrap(), None);
    let (_, list) = s.load("f").await.unwrap();
    assert_eq!(list.get(10).unwrap(), Status(2));
}

#[tokio::test]
async fn corrupt_data_is_reported() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.create_list(new_list("long", Bits::Two, 64))
        .await
        .unwrap();
    // 64 two-bit entries are 16 bytes; 17 is one too many.
    let _: () = server.query(redis::cmd("SET").arg(data_key("long")).arg(vec![0u8; 17]));
    let err = s.load("long").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { list, .. } if list == "long"),
        "{err}"
    );

    s.create_list(new_list("three", Bits::Two, 64))
        .await
        .unwrap();
    s.apply("three", &[c(1, 2)]).await.unwrap();
    let _: i64 = server.query(redis::cmd("HSET").arg(meta_key("three")).arg("bits").arg(3));
    let err = s.load("three").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { list, .. } if list == "three"),
        "{err}"
    );
    // lists() skips the corrupt list (the refresher keeps its last good version) and still
    // reports the healthy ones.
    let ids: Vec<String> = s.lists().await.unwrap().into_iter().map(|m| m.id).collect();
    assert!(
        ids.contains(&"long".to_owned()) && !ids.contains(&"three".to_owned()),
        "{ids:?}"
    );
    // The script refuses to write to it, and writes nothing.
    let err = s.apply("three", &[c(2, 1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let version: String = server.query(redis::cmd("HGET").arg(meta_key("three")).arg("version"));
    assert_eq!(version, "1");
    let _: i64 = server.query(redis::cmd("HSET").arg(meta_key("three")).arg("bits").arg(2));

    // A key of the wrong type.
    s.create_list(new_list("typed", Bits::Two, 64))
        .await
        .unwrap();
    let _: i64 = server.query(redis::cmd("HSET").arg(data_key("typed")).arg("x").arg("y"));
    let err = s.load("typed").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let err = s.apply("typed", &[c(2, 1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let version: String = server.query(redis::cmd("HGET").arg(meta_key("typed")).arg("version"));
    assert_eq!(version, "0");

    // A version that is not a number.
    let _: i64 = server.query(
        redis::cmd("HSET")
            .arg(meta_key("long"))
            .arg("version")
            .arg("x"),
    );
    let err = s.load("long").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let err = s.apply("long", &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn a_million_entries_and_ten_thousand_changes_in_one_batch() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let size = 1 << 20;
    s.create_list(new_list("big", Bits::Two, size))
        .await
        .unwrap();
    let batch: Vec<Change> = (0..10_000u32)
        .map(|i| c(i * 104 + 7, (i % 3 + 1) as u8))
        .collect();
    let started = Instant::now();
    let a = s.apply("big", &batch).await.unwrap();
    let took = started.elapsed();
    assert_eq!(a.version, 1);
    assert_eq!(a.previous, vec![Status::VALID; 10_000]);
    let (meta, list) = s.load("big").await.unwrap();
    assert_eq!((meta.version, list.size()), (1, size));
    assert_eq!(list.count_nonzero(), 10_000);
    for ch in [batch[0], batch[4_999], batch[9_999]] {
        assert_eq!(list.get(ch.idx.into()).unwrap(), ch.status);
    }
    assert_eq!(
        s.changes_since("big", 0).await.unwrap(),
        Some((1, batch.clone()))
    );
    // A batch of 10,000 whose last change breaks a rule writes none of the others.
    let mut bad: Vec<Change> = (0..10_000u32).map(|i| c(i * 104 + 8, 2)).collect();
    bad[9_999] = c(7, 0); // entry 7 is INVALID
    let err = s.apply("big", &bad).await.unwrap_err();
    assert!(matches!(err, StoreError::Terminal { idx: 7, .. }), "{err}");
    let (meta, list) = s.load("big").await.unwrap();
    assert_eq!((meta.version, list.count_nonzero()), (1, 10_000));
    assert!(
        took < Duration::from_secs(5),
        "10,000 changes took {took:?}"
    );
}

#[tokio::test]
async fn cluster_spreads_lists_and_everything_works() {
    let cluster = RedisCluster::start();
    let s = RedisStore::connect(&cluster.url()).await.unwrap();
    assert!(s.is_cluster());
    let ids: Vec<String> = (0..20).map(|i| format!("list-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        s.create_list(new_list(id, Bits::Two, 256)).await.unwrap();
        let a = s.apply(id, &[c(i as u32, 2), c(100, 1)]).await.unwrap();
        assert_eq!(a.version, 1);
        s.apply(id, &[c(i as u32, 3)]).await.unwrap();
    }
    // The lists landed on more than one master.
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| n.query::<i64>(&redis::cmd("DBSIZE")) > 0)
        .count();
    assert!(holding >= 2, "all lists on {holding} node(s)");
    // Each list's keys share one node (one slot).
    for id in &ids[..3] {
        let node = cluster.node_for(&meta_key(id)).port;
        assert_eq!(cluster.node_for(&data_key(id)).port, node);
        assert_eq!(cluster.node_for(&feed_key(id)).port, node);
    }

    let metas = s.lists().await.unwrap();
    assert_eq!(metas.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
    assert!(metas.iter().all(|m| m.version == 2));
    for (i, id) in ids.iter().enumerate() {
        let (meta, list) = s.load(id).await.unwrap();
        assert_eq!(meta.version, 2);
        let mut want = vec![(i as u32, 3), (100, 1)];
        want.sort();
        assert_eq!(nonzero(&list), want);
        assert_eq!(
            s.changes_since(id, 0).await.unwrap(),
            Some((2, vec![c(i as u32, 2), c(100, 1), c(i as u32, 3)]))
        );
    }
    let err = s.apply(&ids[0], &[c(100, 0)]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Terminal { idx: 100, .. }),
        "{err}"
    );
    assert!(matches!(
        s.create_list(new_list(&ids[0], Bits::Two, 256)).await,
        Err(StoreError::ListExists(_))
    ));
    // A gap on a cluster.
    let _: i64 = cluster.node_for(&feed_key(&ids[5])).query(
        redis::cmd("XTRIM")
            .arg(feed_key(&ids[5]))
            .arg("MAXLEN")
            .arg(0),
    );
    assert_eq!(s.changes_since(&ids[5], 0).await.unwrap(), None);
    // No subscription on a cluster: changed() is a short poll.
    let started = Instant::now();
    s.changed(Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_millis(500));
}

/// Waits until `n` connections are subscribed to the wake-up channel.
async fn subscribed(server: &RedisServer, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply: (String, i64) = server.query(
            redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(statusd::store::redis::CHANNEL),
        );
        if reply.1 >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no subscriber on the channel");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `watcher` wakes within 500 ms of `write` (made through another store).
async fn assert_wakes(watcher: &RedisStore, write: impl std::future::Future<Output = ()>) {
    // Consume wake-ups already pending or on their way (the subscription itself causes one):
    // wait for 100 ms without any.
    loop {
        let started = Instant::now();
        watcher.changed(Duration::from_millis(100)).await;
        if started.elapsed() >= Duration::from_millis(100) {
            break;
        }
    }
    let w = watcher.clone();
    let waiting = tokio::spawn(async move {
        w.changed(Duration::from_secs(10)).await;
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let written = Instant::now();
    write.await;
    let woke = waiting.await.unwrap();
    let after = woke.saturating_duration_since(written);
    assert!(
        woke > written && after < Duration::from_millis(500),
        "woke {after:?} after the write"
    );
}

#[tokio::test]
async fn changed_wakes_promptly_on_a_write_from_another_connection() {
    let server = RedisServer::start();
    let watcher = store(&server).await;
    let writer = store(&server).await;
    writer
        .create_list(new_list("w", Bits::Two, 16))
        .await
        .unwrap();
    subscribed(&server, 2).await;
    assert_wakes(&watcher, async {
        writer.apply("w", &[c(1, 2)]).await.unwrap();
    })
    .await;
    // A new list wakes the other replicas too.
    assert_wakes(&watcher, async {
        writer
            .create_list(new_list("w2", Bits::One, 8))
            .await
            .unwrap();
    })
    .await;
    // Without writes, changed() waits out its timeout.
    let started = Instant::now();
    watcher.changed(Duration::from_millis(200)).await;
    assert!(started.elapsed() >= Duration::from_millis(190));
}

/// Issue 16: a write's message names its list, so that other replicas read that list alone; a
/// (re)subscription says anything may have changed (messages may have been missed).
#[tokio::test]
async fn a_change_hint_names_the_list_written_by_another_connection() {
    let server = RedisServer::start();
    let watcher = store(&server).await;
    let writer = store(&server).await;
    for id in ["w", "x"] {
        writer
            .create_list(new_list(id, Bits::Two, 16))
            .await
            .unwrap();
    }
    subscribed(&server, 2).await;
    // The subscription's own hint, then quiet.
    let mut first = watcher.changed(Duration::from_secs(10)).await;
    while !watcher.changed(Duration::from_millis(100)).await.is_empty() {}
    assert!(first.all, "{first:?}");
    writer.apply("x", &[c(1, 2)]).await.unwrap();
    first = watcher.changed(Duration::from_secs(10)).await;
    assert!(!first.all);
    assert_eq!(first.lists.into_iter().collect::<Vec<_>>(), ["x"]);
}

#[tokio::test]
async fn a_paused_redis_fails_fast_and_recovers() {
    let server = RedisServer::start();
    let opts = RedisOptions {
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let s = RedisStore::connect_with(&server.url(), opts).await.unwrap();
    s.create_list(new_list("p", Bits::Two, 16)).await.unwrap();
    server.pause();
    for _ in 0..2 {
        let started = Instant::now();
        let err = s.lists().await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(&err, StoreError::Backend(m) if m.contains("unavailable")),
            "{err}"
        );
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }
    let started = Instant::now();
    assert!(s.apply("p", &[c(1, 1)]).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(1500));
    server.resume();
    let lists = eventually(Duration::from_secs(5), || s.lists()).await;
    assert_eq!(lists.len(), 1);
    // The apply that timed out may or may not have run once Redis woke up; either way the
    // store is consistent and usable.
    let a = s.apply("p", &[c(2, 2)]).await.unwrap();
    let (meta, _) = s.load("p").await.unwrap();
    assert_eq!(meta.version, a.version);
}

#[tokio::test]
async fn a_restarted_redis_is_reconnected_and_resubscribed() {
    let mut server = RedisServer::start();
    let s = store(&server).await;
    let writer = store(&server).await;
    s.create_list(new_list("r", Bits::Two, 16)).await.unwrap();
    subscribed(&server, 2).await;
    server.kill();
    let err = s.lists().await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("unavailable")),
        "{err}"
    );
    server.restart();
    // Without persistence the data is gone; the same store reconnects by itself.
    let lists = eventually(Duration::from_secs(5), || s.lists()).await;
    assert!(lists.is_empty());
    // The scripts are loaded again (NOSCRIPT is handled).
    eventually(Duration::from_secs(5), || {
        writer.create_list(new_list("r", Bits::Two, 16))
    })
    .await;
    assert_eq!(s.apply("r", &[c(3, 1)]).await.unwrap().version, 1);
    subscribed(&server, 2).await;
    assert_wakes(&s, async {
        writer.apply("r", &[c(1, 2)]).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn connect_succeeds_while_redis_is_down() {
    let port = free_port();
    let s = RedisStore::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap();
    let started = Instant::now();
    let err = s.lists().await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("unavailable")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let _server = RedisServer::start_on(port);
    let lists = eventually(Duration::from_secs(5), || s.lists()).await;
    assert!(lists.is_empty());
    s.create_list(new_list("late", Bits::One, 8)).await.unwrap();

    // TLS is prepared lazily too: nothing listens, and connect still succeeds.
    let tls = RedisStore::connect("rediss://127.0.0.1:1").await.unwrap();
    let err = tls.lists().await.unwrap_err();
    assert!(err.to_string().contains("unavailable"), "{err}");
}

#[tokio::test]
async fn a_failed_handshake_is_retried_with_a_fresh_connection() {
    // The server wants another password than the store has, until an operator fixes it.
    let server = RedisServer::start_with(&["--requirepass", "other"]);
    let url = format!("redis://:secret@127.0.0.1:{}", server.port);
    let s = RedisStore::connect(&url).await.unwrap();
    let err = s.lists().await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
    let admin = redis::Client::open(format!("redis://:other@127.0.0.1:{}", server.port)).unwrap();
    let mut admin = admin.get_connection().unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("secret")
        .query(&mut admin)
        .unwrap();
    // The connection manager caches a failed handshake; the store replaces it.
    let lists = eventually(Duration::from_secs(5), || s.lists()).await;
    assert!(lists.is_empty());
}

#[tokio::test]
async fn a_cluster_store_connects_once_the_cluster_is_up() {
    let ports = free_ports::<3>();
    let url = format!(
        "redis+cluster://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    );
    let s = RedisStore::connect(&url).await.unwrap();
    let started = Instant::now();
    let err = s.lists().await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("unavailable")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let _cluster = RedisCluster::start_on(ports);
    let lists = eventually(Duration::from_secs(10), || s.lists()).await;
    assert!(lists.is_empty());
    s.create_list(new_list("late", Bits::One, 8)).await.unwrap();
    assert_eq!(s.apply("late", &[c(1, 1)]).await.unwrap().version, 1);
}

/// Two replicas allocating in one list: each keeps the bitmap it read, so one of them claims an
/// index the other took meanwhile. The commit refuses it (`conflict`), the bitmap is read
/// afresh, and no index is ever handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_allocation_bitmap_never_hands_out_an_index_twice() {
    use statusd::store::registry::{Registry, Txn};
    let server = RedisServer::start();
    let (a, b) = (store(&server).await, store(&server).await);
    a.create_list(new_list("alloc", Bits::Two, 1024))
        .await
        .unwrap();
    let (va, seen_by_a) = a.allocated("alloc").await.unwrap();
    assert!(seen_by_a.is_empty());
    // B claims 7 after A read the bitmap.
    let (vb, _) = b.allocated("alloc").await.unwrap();
    let claim = |version, idx| Txn {
        expect_version: version,
        claim: vec![idx],
        ..Txn::default()
    };
    let vb = b.commit("alloc", &claim(vb, 7)).await.unwrap();
    // A's cached bitmap still shows 7 free; the version it holds is stale too, so read the
    // version again the way the issuer does (allocated()), and claim 7.
    let (va2, cached) = a.allocated("alloc").await.unwrap();
    assert_eq!(va2, vb, "the version is always read fresh");
    assert!(va2 > va);
    assert!(
        !cached.contains(7),
        "A's bitmap is the one it read before B's claim"
    );
    assert!(matches!(
        a.commit("alloc", &claim(va2, 7)).await,
        Err(StoreError::Conflict(_))
    ));
    // Refused: A reads the bitmap afresh and now sees 7 taken.
    let (va3, fresh) = a.allocated("alloc").await.unwrap();
    assert_eq!(va3, va2, "the refused claim changed nothing");
    assert!(fresh.contains(7));
    // A's own claims are added to its bitmap as they commit.
    let va4 = a.commit("alloc", &claim(va3, 8)).await.unwrap();
    let (va5, mine) = a.allocated("alloc").await.unwrap();
    assert_eq!(va5, va4);
    assert!(mine.contains(7) && mine.contains(8));
    let (_, truth) = b.allocated("alloc").await.unwrap();
    assert_eq!(truth.iter().collect::<Vec<_>>(), vec![7]); // B's cache lacks A's 8…
    let fresh_store = store(&server).await;
    let (_, all) = fresh_store.allocated("alloc").await.unwrap();
    assert_eq!(all.iter().collect::<Vec<_>>(), vec![7, 8]); // …which Redis has.
}

/// Issue 21, item 5, across replicas: four issuers (four replicas' worth of coordination) on
/// one Redis race on one card. Reissues of one card to different new ids: one wins, the others
/// get `already-reissued`, and none of their new cards exists or cost an index. Registrations
/// of one id: every one answers with the same place, and no index is burnt (on a standalone
/// Redis the binding joins the commit, so a replica that loses the race to bind the id writes
/// nothing and answers `exists`). Registrations under one parent: none runs out of retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_racing_on_one_card_leave_no_debris() {
    let server = RedisServer::start();
    race_on_one_card(store(&server).await).await;
}

/// The same races on a Redis Cluster, where a new id's binding is set beside its commit, not in
/// it, and a reissue marks its old card with the first read instead of committing both lists
/// together (issue #22): one reissue wins and no loser writes or allocates anything; the
/// registrations of one id end bound once, to the record every answer names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_racing_on_one_card_on_a_cluster_leave_no_debris() {
    let cluster = RedisCluster::start();
    let s = RedisStore::connect(&cluster.url()).await.unwrap();
    assert!(s.is_cluster());
    race_on_one_card(s).await;
}

async fn race_on_one_card(store: RedisStore) {
    use statusd::issuer::{
        Issuer, IssuerError, ItemError, ItemProblem, Operation, Outcome, ReissueOp, Settings,
    };
    use statusd::routes::PublicUrls;
    use statusd::store::any::AnyStore;
    use statusd::store::registry::Registry;
    use std::sync::Arc;

    const REPLICAS: usize = 4;
    let cluster = store.is_cluster();
    let store = Arc::new(AnyStore::Redis(store));
    let urls = PublicUrls::new("https://status.example");
    let settings = Settings {
        list_size: 1 << 17,
        ..Settings::default()
    };
    let replicas: Vec<Issuer> = (0..REPLICAS)
        .map(|_| Issuer::new(store.clone(), urls.clone(), settings.clone()))
        .collect();
    use crate::roundtrips::register;
    let one = |r: Result<Vec<Result<Outcome, ItemProblem>>, _>| {
        let mut r = r.expect("the batch runs");
        r.pop().expect("one result")
    };
    let allocated = || async {
        let mut sum = 0;
        for m in store.lists().await.unwrap() {
            sum += store.allocated(&m.id).await.unwrap().1.len();
        }
        sum
    };
    // `ops[i]` on replica i % REPLICAS, all at once.
    let race = |ops: Vec<Operation>| {
        let tasks: Vec<_> = ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                let issuer = replicas[i % REPLICAS].clone();
                tokio::spawn(async move {
                    // A single operation that fails its first plan fails the "batch".
                    match issuer.execute("race", std::slice::from_ref(&op)).await {
                        Ok(mut r) => r.pop().expect("one result"),
                        Err(IssuerError::Invalid(mut e)) => Err(e.pop().expect("one").1),
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };

    let a = &replicas[0];
    assert!(one(a
        .execute("t", &[register("P1", "physical", None, None)])
        .await)
    .is_ok());
    assert!(one(a
        .execute("t", &[register("M", "mobile", Some("P1"), None)])
        .await)
    .is_ok());
    a.create_list(NewList {
        id: "branch-1".into(),
        bits: Bits::Two,
        size: 1 << 17,
        purpose: Some("branch".into()),
    })
    .await
    .unwrap();
    assert!(one(a
        .execute("t", &[register("P2", "physical", None, Some("branch"))])
        .await)
    .is_ok());
    let before = allocated().await;

    // (a) Reissues of M (into P2's list: both lists in one commit) and of P1.
    for (old, parent, cards) in [("M", Some("P2"), "M-new"), ("P1", None, "P1-new")] {
        let ops = (0..20)
            .map(|i| {
                Operation::Reissue(ReissueOp {
                    credential_id: old.into(),
                    new_credential_id: format!("{cards}-{i}"),
                    parent: parent.map(Into::into),
                    reason: "replaced".into(),
                    request_id: None,
                    expires_at: None,
                })
            })
            .collect();
        let results = race(ops).await;
        let winners: Vec<usize> = (0..20).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "{old}: {results:?}");
        for (i, r) in results.iter().enumerate() {
            if let Err(p) = r {
                assert_eq!(p.error, ItemError::AlreadyReissued, "{old} #{i}: {p:?}");
            }
        }
        let ids: Vec<String> = (0..20).map(|i| format!("{cards}-{i}")).collect();
        let found = store.locate(&ids).await.unwrap();
        for (i, at) in found.iter().enumerate() {
            assert_eq!(at.is_some(), i == winners[0], "{}", ids[i]);
        }
    }
    assert_eq!(allocated().await, before + 2, "no loser burnt an index");

    // (b) Registrations of one id.
    let before = allocated().await;
    let results = race(
        (0..20)
            .map(|_| register("same", "physical", None, None))
            .collect(),
    )
    .await;
    let places: std::collections::BTreeSet<String> = results
        .iter()
        .map(|r| {
            let o = r.as_ref().expect("every registration answers");
            assert!(o.result == "registered" || o.result == "exists", "{o:?}");
            format!("{:?}", o.assignment.as_ref().map(|a| (&a.list_id, a.idx)))
        })
        .collect();
    assert_eq!(places.len(), 1, "{places:?}");
    let (at, rec) = replicas[0]
        .credential("same")
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(rec.credential_id, "same");
    assert!(places.contains(&format!("{:?}", Some((&at.list, at.idx)))));
    let burnt = allocated().await - before - 1;
    if cluster {
        // The binding is not in the commit here: a replica whose commit went through while
        // another bound the id first leaves that index unused (its record names the id, and
        // nothing points to it).
        println!("cluster: {burnt} indices burnt by 20 registrations of one id");
    } else {
        assert_eq!(burnt, 0, "{burnt} indices burnt");
    }

    // (c) Registrations under one parent.
    let results = race(
        (0..20)
            .map(|i| register(&format!("m{i}"), "mobile", Some("P2"), None))
            .collect(),
    )
    .await;
    for r in &results {
        assert_eq!(r.as_ref().map(|o| o.result), Ok("registered"), "{r:?}");
    }
}

/// Runs `cmd` on the cluster node that serves its key (the others answer `MOVED`).
fn on_its_node(cluster: &RedisCluster, cmd: &redis::Cmd) {
    let ran = cluster
        .nodes
        .iter()
        .any(|n| crate::redis_harness::query::<redis::Value>(n.port, cmd).is_ok());
    assert!(ran, "no node took {cmd:?}");
}

/// On a Redis Cluster a new id's binding is set beside its commit (issue #22), so a replica can
/// stop, or its commit fail, with the id bound and no record where it points. Such a binding is
/// pending: no reader takes the id as registered, and the next registration of the id completes
/// it at exactly that index. A binding to an index that went to another credential is stale and
/// replaced. A reissue's mark left by a reissue that stopped admits only that reissue; one
/// taken by a reissue refused by its checks is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_unfinished_registrations_and_reissues_are_completed_by_their_retry() {
    use statusd::issuer::{IssuerError, ItemError, Operation, ReissueOp, RevokeOp};
    use statusd::store::redis::{cid_key, reissued_key};
    use statusd::store::registry::{Location, Registry};
    let cluster = RedisCluster::start();
    let s = RedisStore::connect(&cluster.url()).await.unwrap();
    assert!(s.is_cluster());
    let store = std::sync::Arc::new(statusd::store::any::AnyStore::Redis(s));
    let issuer = statusd::issuer::Issuer::new(
        store.clone(),
        crate::roundtrips::urls(),
        statusd::issuer::Settings {
            list_size: 1 << 12,
            ..Default::default()
        },
    );
    use crate::roundtrips::register;
    let run = |op: Operation| {
        let issuer = &issuer;
        async move {
            // A single operation that fails its first plan fails the "batch".
            match issuer.execute("t", &[op]).await {
                Ok(mut r) => r.pop().expect("one"),
                Err(IssuerError::Invalid(mut e)) => Err(e.pop().expect("one").1),
                Err(e) => panic!("{e}"),
            }
        }
    };
    run(register("P", "physical", None, None)).await.unwrap();
    let (p_at, _) = issuer.credential("P").await.unwrap().unwrap();
    let (_, taken) = store.allocated(&p_at.list).await.unwrap();
    let free = (0..).find(|i| !taken.contains(*i)).unwrap();
    let pending = Location {
        list: p_at.list.clone(),
        idx: free,
    };
    let bind = |id: &str, at: &Location| {
        on_its_node(
            &cluster,
            redis::cmd("SET").arg(cid_key(id)).arg(at.to_string()),
        )
    };

    // (a) M bound, its commit never made: not registered for any reader or operation…
    bind("M", &pending);
    assert!(issuer.view("M").await.unwrap().is_none());
    let e = run(Operation::Revoke(RevokeOp {
        credential_id: "M".into(),
        reason: "fraud".into(),
        request_id: None,
    }))
    .await
    .unwrap_err();
    assert_eq!(e.error, ItemError::UnknownCredential, "{e:?}");
    // …and its registration, retried, lands where it is bound.
    let o = run(register("M", "mobile", Some("P"), None)).await.unwrap();
    assert_eq!(o.result, "registered");
    let a = o.assignment.expect("placed");
    assert_eq!(
        (a.list_id.as_str(), a.idx),
        (pending.list.as_str(), pending.idx)
    );
    let m = issuer.view("M").await.unwrap().expect("registered");
    assert_eq!(m.parent.as_deref(), Some("P"));
    let (_, now) = store.allocated(&p_at.list).await.unwrap();
    assert_eq!(now.len(), taken.len() + 1, "one index for M, none burnt");

    // (b) N bound to P's index (its commit lost that index to P): stale, replaced.
    bind("N", &p_at);
    assert!(issuer.view("N").await.unwrap().is_none());
    let o = run(register("N", "physical", None, None)).await.unwrap();
    assert_eq!(o.result, "registered");
    let (n_at, n) = issuer.credential("N").await.unwrap().expect("registered");
    assert_ne!(n_at, p_at);
    assert_eq!(n.credential_id, "N");
    let p = issuer.view("P").await.unwrap().expect("P");
    assert_eq!((p.credential_id.as_str(), p.status), ("P", "VALID"));

    // (c) A pending registration with another parent (in another list) is another card:
    // a registration of the id with this parent conflicts, as a retry with other parameters.
    issuer
        .create_list(NewList {
            id: "branch-1".into(),
            bits: Bits::Two,
            size: 1 << 12,
            purpose: Some("branch".into()),
        })
        .await
        .unwrap();
    run(register("B", "physical", None, Some("branch")))
        .await
        .unwrap();
    bind("Q", &pending_elsewhere(&store, "branch-1").await);
    let e = run(register("Q", "mobile", Some("P"), None))
        .await
        .unwrap_err();
    assert_eq!(e.error, ItemError::RegistrationConflict, "{e:?}");

    // (d) A reissue refused by its checks gives back the mark it took: another goes on.
    run(register("K", "mobile", Some("P"), None)).await.unwrap();
    let reissue_k = |new: &str, parent: &str| {
        Operation::Reissue(ReissueOp {
            credential_id: "K".into(),
            new_credential_id: new.into(),
            parent: Some(parent.into()),
            reason: "replaced".into(),
            request_id: None,
            expires_at: None,
        })
    };
    let e = run(reissue_k("K-x", "nobody")).await.unwrap_err();
    assert_eq!(e.error, ItemError::UnknownParent, "{e:?}");
    let o = run(reissue_k("K-2", "B")).await.unwrap();
    assert_eq!((o.result, o.status), ("changed", "INVALID"));

    // (e) M marked for M-other by a reissue that stopped after its first read: only that
    // reissue goes on; another is refused before anything is written.
    on_its_node(
        &cluster,
        redis::cmd("HSET")
            .arg(reissued_key(&p_at.list))
            .arg(pending.idx)
            .arg("M-other"),
    );
    let reissue = |new: &str| {
        Operation::Reissue(ReissueOp {
            credential_id: "M".into(),
            new_credential_id: new.into(),
            parent: Some("B".into()),
            reason: "replaced".into(),
            request_id: None,
            expires_at: None,
        })
    };
    let (_, before) = store.allocated("branch-1").await.unwrap();
    let e = run(reissue("M-9")).await.unwrap_err();
    assert_eq!(e.error, ItemError::AlreadyReissued, "{e:?}");
    assert!(issuer.view("M-9").await.unwrap().is_none());
    let (_, after) = store.allocated("branch-1").await.unwrap();
    assert_eq!(after, before, "the refused reissue allocated nothing");
    let o = run(reissue("M-other")).await.unwrap();
    assert_eq!((o.result, o.status), ("changed", "INVALID"));
    let new = issuer.view("M-other").await.unwrap().expect("registered");
    assert_eq!((new.replaces.as_deref(), new.status), (Some("M"), "VALID"));
}

/// A free index of `list`, as a place a registration could have bound an id to.
async fn pending_elsewhere(
    store: &statusd::store::any::AnyStore,
    list: &str,
) -> statusd::store::registry::Location {
    use statusd::store::registry::Registry;
    let (_, taken) = store.allocated(list).await.unwrap();
    statusd::store::registry::Location {
        list: list.into(),
        idx: (0..).find(|i| !taken.contains(*i)).unwrap(),
    }
}

/// On a Redis Cluster the lists of one operation are committed together, each a
/// compare-and-set of its own (issue #22), so any of them may land without the others (a
/// conflict on one, or a replica that stops). Each partial outcome is made here by putting back
/// one list's record and entry as they were before the operation, as if that list's commit
/// never ran; readers see the part that landed, and the retry of the same operation finishes it
/// (docs/redis.md, "Derived pools on a cluster"). A revocation cannot be put back (an entry
/// once invalid stays so); its cascade is the suspension's, retried the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_family_commit_landed_in_part_is_finished_by_its_retry() {
    use crate::roundtrips::{hold, register};
    use statusd::issuer::{Operation, Outcome};
    use statusd::store::any::AnyStore;
    let cluster = RedisCluster::start();
    let s = RedisStore::connect(&cluster.url()).await.unwrap();
    assert!(s.is_cluster());
    let store = std::sync::Arc::new(AnyStore::Redis(s));
    let issuer = statusd::issuer::Issuer::new(
        store.clone(),
        crate::roundtrips::urls(),
        statusd::issuer::Settings {
            list_size: 1 << 12,
            derived_pool: Some("mobile".into()),
            ..Default::default()
        },
    );
    let run = |op: Operation| {
        let issuer = &issuer;
        async move {
            let mut out = issuer.execute("t", &[op]).await.expect("runs");
            out.pop().expect("one").expect("done")
        }
    };
    let changed = |o: &Outcome| assert_eq!(o.result, "changed", "{o:?}");
    run(register("P", "physical", None, None)).await;
    run(register("M", "mobile", Some("P"), None)).await;
    let p = saved(&issuer, &store, "P").await;
    let m = saved(&issuer, &store, "M").await;
    assert_ne!(p.at.list, m.at.list, "a family across lists");

    // (a) A loss report whose mobile list did not commit: the card suspended, the phone valid;
    // the retry carries the hold to the phone.
    run(Operation::Suspend(hold("P"))).await;
    m.put_back(&store).await;
    assert_eq!(
        entries(&store, &[&p, &m]).await,
        [Status::SUSPENDED, Status::VALID]
    );
    changed(&run(Operation::Suspend(hold("P"))).await);
    assert_eq!(
        entries(&store, &[&p, &m]).await,
        [Status::SUSPENDED, Status::SUSPENDED]
    );

    // (b) A reinstatement whose card's list did not commit: the phone valid, the card still
    // suspended; the retry lifts the card's hold and finds the phone done.
    let p_held = saved(&issuer, &store, "P").await;
    run(Operation::Reinstate(hold("P"))).await;
    p_held.put_back(&store).await;
    assert_eq!(
        entries(&store, &[&p, &m]).await,
        [Status::SUSPENDED, Status::VALID]
    );
    changed(&run(Operation::Reinstate(hold("P"))).await);
    assert_eq!(
        entries(&store, &[&p, &m]).await,
        [Status::VALID, Status::VALID]
    );

    // (c) A registration whose card's list did not commit while the parent's link did: the
    // link names an index that holds no card of P, and is ignored by a cascade.
    let mut rec: serde_json::Value =
        serde_json::from_slice(&saved(&issuer, &store, "P").await.record).unwrap();
    let dangling = pending_elsewhere(&store, &m.at.list).await;
    rec["children_elsewhere"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"list": dangling.list, "idx": dangling.idx}));
    let p_now = saved(&issuer, &store, "P").await;
    Saved {
        record: serde_json::to_vec(&rec).unwrap(),
        ..p_now
    }
    .put_back(&store)
    .await;
    changed(&run(Operation::Suspend(hold("P"))).await);
    assert_eq!(
        entries(&store, &[&p, &m]).await,
        [Status::SUSPENDED, Status::SUSPENDED]
    );
    let view = issuer.view("P").await.unwrap().unwrap();
    assert_eq!(view.children, ["M"], "the dangling link names no card");
    changed(&run(Operation::Reinstate(hold("P"))).await);

    // (d) A registration whose card committed (and bound) while the parent's link did not:
    // the card is valid and unlinked, so a loss report misses it; the registration's retry
    // writes the link and brings the card in line with its parent's holds.
    let p_before = saved(&issuer, &store, "P").await;
    run(register("M2", "mobile", Some("P"), None)).await;
    p_before.put_back(&store).await;
    let m2 = saved(&issuer, &store, "M2").await;
    changed(&run(Operation::Suspend(hold("P"))).await);
    assert_eq!(
        entries(&store, &[&p, &m2]).await,
        [Status::SUSPENDED, Status::VALID]
    );
    let again = run(register("M2", "mobile", Some("P"), None)).await;
    assert_eq!(again.result, "exists", "{again:?}");
    assert_eq!(
        entries(&store, &[&p, &m, &m2]).await,
        [Status::SUSPENDED; 3]
    );
    let view = issuer.view("P").await.unwrap().unwrap();
    assert_eq!(view.children, ["M", "M2"]);
}

/// A card's record and entry as they were when read.
struct Saved {
    at: statusd::store::registry::Location,
    record: Vec<u8>,
    status: Status,
}

/// Card `id`'s record and entry as they are now.
async fn saved(
    issuer: &statusd::issuer::Issuer,
    store: &statusd::store::any::AnyStore,
    id: &str,
) -> Saved {
    use statusd::store::registry::Registry;
    let (at, _) = issuer.credential(id).await.unwrap().expect("registered");
    let (_, mut recs) = store.records(&at.list, &[at.idx]).await.unwrap();
    let record = recs.pop().flatten().expect("a record");
    let status = store.entries(&at.list, &[at.idx]).await.unwrap().1[0];
    Saved { at, record, status }
}

impl Saved {
    /// Writes the record and entry back, as if the commits since had not reached its list.
    async fn put_back(&self, store: &statusd::store::any::AnyStore) {
        use statusd::store::registry::{Registry, Txn};
        let (version, _) = store.records(&self.at.list, &[]).await.unwrap();
        let txn = Txn {
            expect_version: version,
            claim: Vec::new(),
            records: vec![(self.at.idx, self.record.clone())],
            changes: vec![Change {
                idx: self.at.idx,
                status: self.status,
            }],
            extends: statusd::store::Extends::Nothing,
        };
        store.commit(&self.at.list, &txn).await.unwrap();
    }
}

/// What a reader sees of each card: its entry.
async fn entries(store: &statusd::store::any::AnyStore, cards: &[&Saved]) -> Vec<Status> {
    let mut out = Vec::new();
    for c in cards {
        out.push(store.entries(&c.at.list, &[c.at.idx]).await.unwrap().1[0]);
    }
    out
}
