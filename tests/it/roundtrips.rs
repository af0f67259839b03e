//! Round trips to Redis per single-item issuer operation (issue #22), counted by a proxy on
//! loopback in front of a real `redis-server` ([`crate::proxy`]). Each operation has a budget;
//! a change that adds a round trip to one fails here. With Redis in another zone every round
//! trip is the whole latency of a loss report.

use crate::proxy::Proxy;
use crate::redis_harness::RedisServer;
use statusd::issuer::{
    HoldOp, Issuer, Operation, Outcome, Registration, ReissueOp, RevokeOp, Settings,
};
use statusd::routes::PublicUrls;
use statusd::status::Bits;
use statusd::store::any::AnyStore;
use statusd::store::redis::RedisStore;
use statusd::store::registry::Registry;
use statusd::store::{NewList, Store};
use std::sync::Arc;
use std::time::Duration;

pub fn urls() -> PublicUrls {
    PublicUrls::new("https://status.example")
}

pub fn register(id: &str, kind: &str, parent: Option<&str>, purpose: Option<&str>) -> Operation {
    Operation::Register(Registration {
        credential_id: id.into(),
        kind: kind.into(),
        parent: parent.map(Into::into),
        purpose: purpose.map(Into::into),
        reason: None,
        request_id: None,
        expires_at: None,
    })
}

pub fn hold(id: &str) -> HoldOp {
    HoldOp {
        credential_id: id.into(),
        reason: "reported lost".into(),
        hold: None,
        request_id: None,
    }
}

pub fn reissue(old: &str, new: &str, parent: Option<&str>) -> Operation {
    Operation::Reissue(ReissueOp {
        credential_id: old.into(),
        new_credential_id: new.into(),
        parent: parent.map(Into::into),
        reason: "replaced".into(),
        request_id: None,
        expires_at: None,
    })
}

async fn one(issuer: &Issuer, op: Operation) -> Outcome {
    let mut r = issuer
        .execute("clerk", std::slice::from_ref(&op))
        .await
        .unwrap_or_else(|e| panic!("{op:?}: {e:?}"));
    r.pop()
        .expect("one result")
        .unwrap_or_else(|p| panic!("{op:?}: {p:?}"))
}

/// The budget per single-item operation, in round trips to a standalone Redis (before issue
/// #22: register 7, derived 8, exists 6, suspend, reinstate and revoke 6, suspend with a
/// derived card 7, reissue in one list 8, across lists 14).
///
/// A single write is one read of where the credentials it names live (sharing its round trip
/// with the read of every list's metadata when a top-level card needs a list chosen), one read
/// of each list involved (all of them together: the list's metadata and the records named with
/// their whole families, children and parent, in one script), and one commit script that
/// re-checks every list read, applies and binds the new ids. A top-level registration needs no
/// read of its list (2); a reissue across lists reads both lists together and commits both, with
/// the new id's binding, in one step (3); a reissue that names no parent reads every list's
/// metadata with the locate, in case the old card is top-level and its new card needs a list
/// chosen (3).
const BUDGET: &[(&str, u64)] = &[
    ("register", 2),
    ("register derived", 3),
    ("register again (exists)", 2),
    ("suspend", 3),
    ("suspend with a derived card", 3),
    ("reinstate", 3),
    ("revoke", 3),
    ("reissue in one list", 3),
    ("reissue across lists", 3),
    ("reissue a top-level card", 3),
];

/// Every single-item write stays within its round-trip budget on standalone Redis, measured
/// after a warm-up (the commit script loaded, the pool's lists created, the allocation bitmaps
/// cached: the steady state of a running replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writes_stay_within_their_round_trip_budget() {
    let server = RedisServer::start();
    // Some delay each way, so that requests sent together (one round trip) are seen together
    // even on a loaded machine, as they would be on a link to another zone.
    let proxy = Proxy::start(server.port, Duration::from_millis(25)).await;
    let store = RedisStore::connect(&proxy.url()).await.expect("connect");
    let store = Arc::new(AnyStore::Redis(store));
    let settings = Settings {
        list_size: 1 << 17,
        ..Settings::default()
    };
    let issuer = Issuer::new(store.clone(), urls(), settings);
    // Warm-up: lists of the default pool, a branch pool, the scripts, the bitmaps.
    issuer
        .create_list(NewList {
            id: "branch-1".into(),
            bits: Bits::Two,
            size: 1 << 17,
            purpose: Some("branch".into()),
        })
        .await
        .expect("branch list");
    for i in 0..4 {
        one(
            &issuer,
            register(&format!("warm-{i}"), "physical", None, None),
        )
        .await;
    }
    one(&issuer, register("B", "physical", None, Some("branch"))).await;
    one(&issuer, register("S", "physical", None, None)).await;
    one(&issuer, register("S2", "physical", None, None)).await;
    // Again: `exists`, after a read of S's list (the read script loaded).
    one(&issuer, register("S", "physical", None, None)).await;
    // A running replica holds every list's allocations (registrations chose among them).
    for m in store.lists().await.expect("lists") {
        store.allocated(&m.id).await.expect("allocated");
    }

    let mut counts: Vec<(&str, u64)> = Vec::new();
    let mut measure = |name: &'static str, trips: u64| counts.push((name, trips));
    macro_rules! trips {
        ($op:expr) => {{
            let before = proxy.round_trips();
            let outcome = one(&issuer, $op).await;
            (proxy.round_trips() - before, outcome)
        }};
    }
    let (n, o) = trips!(register("P", "physical", None, None));
    assert_eq!(o.result, "registered");
    measure("register", n);
    let (n, o) = trips!(register("M", "mobile", Some("P"), None));
    assert_eq!(o.result, "registered");
    measure("register derived", n);
    let (n, o) = trips!(register("P", "physical", None, None));
    assert_eq!(o.result, "exists");
    measure("register again (exists)", n);
    let (n, o) = trips!(Operation::Suspend(hold("S")));
    assert_eq!((o.result, o.status), ("changed", "SUSPENDED"));
    measure("suspend", n);
    let (n, o) = trips!(Operation::Suspend(hold("P")));
    assert_eq!(o.affected.len(), 1, "{o:?}");
    measure("suspend with a derived card", n);
    let (n, o) = trips!(Operation::Reinstate(hold("S")));
    assert_eq!((o.result, o.status), ("changed", "VALID"));
    measure("reinstate", n);
    let (n, o) = trips!(Operation::Revoke(RevokeOp {
        credential_id: "S".into(),
        reason: "fraud".into(),
        request_id: None,
    }));
    assert_eq!((o.result, o.status), ("changed", "INVALID"));
    measure("revoke", n);
    let (n, o) = trips!(reissue("M", "M2", Some("P")));
    let new = o.new_credential.expect("a new card");
    assert_eq!(
        new.assignment.as_ref().map(|a| a.list_id.as_str()),
        Some(o_list(&issuer, "P").await.as_str())
    );
    measure("reissue in one list", n);
    let branch = o_list(&issuer, "B").await;
    let (n, o) = trips!(reissue("M2", "M3", Some("B")));
    let new = o.new_credential.expect("a new card");
    assert_eq!(
        new.assignment.as_ref().map(|a| a.list_id.as_str()),
        Some(branch.as_str())
    );
    measure("reissue across lists", n);
    let (n, o) = trips!(reissue("S2", "S3", None));
    assert_eq!((o.result, o.status), ("changed", "INVALID"));
    measure("reissue a top-level card", n);

    for (name, n) in &counts {
        println!("round trips: {name}: {n}");
    }
    for ((name, n), (budget_name, budget)) in counts.iter().zip(BUDGET) {
        assert_eq!(name, budget_name);
        assert!(
            *n >= 1,
            "{name}: the proxy saw no round trip: is it in the path?"
        );
        assert!(
            n <= budget,
            "{name}: {n} round trips to Redis, over its budget of {budget}"
        );
    }
    assert_eq!(counts.len(), BUDGET.len());

    // What `statusd_issuer_store_requests` reports for a loss report: the same three.
    one(&issuer, register("Q", "physical", None, None)).await;
    let (r, requests) =
        statusd::store::count_requests(issuer.execute("clerk", &[Operation::Suspend(hold("Q"))]))
            .await;
    assert_eq!(
        r.expect("runs")[0].as_ref().map(|o| o.result),
        Ok("changed")
    );
    assert_eq!(requests, 3);
}

async fn o_list(issuer: &Issuer, id: &str) -> String {
    issuer
        .credential(id)
        .await
        .expect("read")
        .expect("registered")
        .0
        .list
}

/// Suspends, reinstates and revokes the registered credential `S`, one operation at a time, each
/// changing it: the store requests each made (as `statusd_issuer_store_requests` counts them),
/// by operation.
async fn single_writes_counted(issuer: &Issuer) -> Vec<(&'static str, u32)> {
    let mut counted = Vec::new();
    for op in [
        Operation::Suspend(hold("S")),
        Operation::Reinstate(hold("S")),
        Operation::Revoke(RevokeOp {
            credential_id: "S".into(),
            reason: "fraud".into(),
            request_id: None,
        }),
    ] {
        let (r, requests) =
            statusd::store::count_requests(issuer.execute("clerk", std::slice::from_ref(&op)))
                .await;
        assert_eq!(
            r.expect("runs")[0].as_ref().map(|o| o.result),
            Ok("changed")
        );
        counted.push((op.name(), requests));
    }
    counted
}

/// The embedded store's side of the same idea: a single suspend, reinstate or revoke is three
/// transactions (locate, the list's metadata and records with their families together, the
/// commit), as counted by what `statusd_issuer_store_requests` reports; before issue #22 it was
/// five (every list's metadata, the locate, two reads of the list, the commit). A registration
/// and a reissue are three too: the new id is bound in the commit's transaction (a top-level
/// registration reads every list's metadata instead of its list; a reissue that names no parent
/// reads it besides, alongside the locate, in case its new card needs a list chosen).
#[tokio::test]
async fn single_writes_on_the_embedded_store_take_three_transactions() {
    let dir = crate::support::TempDir::new("roundtrips-embedded");
    let store = statusd::store::embedded::EmbeddedStore::open(&dir.0).expect("open");
    let settings = Settings {
        list_size: 1 << 17,
        ..Settings::default()
    };
    let store = Arc::new(AnyStore::Embedded(store));
    let issuer = Issuer::new(store.clone(), urls(), settings);
    one(&issuer, register("warm", "physical", None, None)).await;
    for m in store.lists().await.expect("lists") {
        store.allocated(&m.id).await.expect("allocated");
    }
    for op in [
        register("S", "physical", None, None),
        register("S-phone", "mobile", Some("S"), None),
        Operation::Suspend(hold("S")),
        Operation::Reinstate(hold("S")),
        reissue("S-phone", "S-phone-2", Some("S")),
        Operation::Revoke(RevokeOp {
            credential_id: "S".into(),
            reason: "fraud".into(),
            request_id: None,
        }),
    ] {
        let name = op.name();
        let (r, transactions) =
            statusd::store::count_requests(issuer.execute("clerk", std::slice::from_ref(&op)))
                .await;
        let out = r.expect("runs");
        let result = out[0].as_ref().map(|o| o.result);
        assert!(
            result == Ok("changed") || result == Ok("registered"),
            "{name}: {result:?}"
        );
        assert_eq!(transactions, 3, "{name}");
    }
}

/// On a Redis Cluster the proxy cannot stand in the path (clients follow the slot map to each
/// node), so the round trips are counted instead ([`statusd::store::count_round_trips`]):
/// requests sent together and awaited together (one command to each of several nodes at once,
/// a list's read beside a reissue's mark) are one round trip. A single suspend, reinstate or
/// revoke is the same three as on a standalone server (the locate, the list's read, whose keys
/// share a slot, and the write script). The credential-id keys live in other slots than the
/// lists, so a new id's binding is set beside the commit, in the same round trip: a derived
/// registration is three (locate, the parent's list, commit and binding), a reissue across
/// lists four (locate; both lists' reads with the old card's mark; the new card's commit
/// with its binding; the old card's revocation), the budgets (#22).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writes_on_a_cluster_make_three_requests() {
    let cluster = crate::redis_harness::RedisCluster::start();
    let store = RedisStore::connect(&cluster.url()).await.expect("connect");
    assert!(store.is_cluster());
    let settings = Settings {
        list_size: 1 << 17,
        ..Settings::default()
    };
    let store = Arc::new(AnyStore::Redis(store));
    let issuer = Issuer::new(store.clone(), urls(), settings);
    for i in 0..4 {
        one(
            &issuer,
            register(&format!("warm-{i}"), "physical", None, None),
        )
        .await;
    }
    // A running replica holds every list's allocations and has read each list (the read
    // script loaded on every node that holds one).
    for m in store.lists().await.expect("lists") {
        store.allocated(&m.id).await.expect("allocated");
        store.list_records(&m.id, &[]).await.expect("read");
    }
    let trips = |op: Operation| {
        let issuer = &issuer;
        async move {
            let (r, counted) =
                statusd::store::count_round_trips(issuer.execute("clerk", &[op])).await;
            let o = r.expect("runs").pop().expect("one").expect("succeeds");
            println!("cluster: {counted:?}");
            (counted.round_trips, o)
        }
    };
    let (n, o) = trips(register("S", "physical", None, None)).await;
    assert_eq!(o.result, "registered");
    println!("cluster round trips: register: {n}");
    assert!(n <= 3, "register: {n} round trips");
    for (name, requests) in single_writes_counted(&issuer).await {
        println!("cluster requests: {name}: {requests}");
        assert_eq!(requests, 3, "{name}");
    }

    issuer
        .create_list(NewList {
            id: "branch-1".into(),
            bits: Bits::Two,
            size: 1 << 17,
            purpose: Some("branch".into()),
        })
        .await
        .expect("branch list");
    one(&issuer, register("B", "physical", None, Some("branch"))).await;
    one(&issuer, register("P", "physical", None, None)).await;
    let (n, o) = trips(register("M", "mobile", Some("P"), None)).await;
    assert_eq!(o.result, "registered");
    println!("cluster round trips: register derived: {n}");
    assert!(
        n <= 3,
        "register derived: {n} round trips, over its budget of 3"
    );
    let o = one(&issuer, Operation::Suspend(hold("P"))).await;
    assert_eq!(o.affected.len(), 1, "{o:?}");
    one(&issuer, Operation::Reinstate(hold("P"))).await;
    let branch = o_list(&issuer, "B").await;
    let (n, o) = trips(reissue("M", "M2", Some("B"))).await;
    println!("cluster round trips: reissue across lists: {n}");
    assert!(
        n <= 4,
        "reissue across lists: {n} round trips, over its budget of 4"
    );
    assert_eq!((o.result, o.status), ("changed", "INVALID"));
    assert_eq!(o_list(&issuer, "M2").await, branch);
    let old = issuer.view("M").await.expect("read").expect("registered");
    assert_eq!(old.replaced_by.as_deref(), Some("M2"));
    let new = issuer.view("M2").await.expect("read").expect("registered");
    assert_eq!(new.replaces.as_deref(), Some("M"));
    assert_eq!(new.status, "VALID");
    let (n, o) = trips(reissue("M2", "M3", Some("B"))).await;
    assert_eq!(o.result, "changed");
    println!("cluster round trips: reissue in one list: {n}");
    assert!(n <= 3, "reissue in one list: {n} round trips");
    assert_eq!(o_list(&issuer, "M3").await, branch);
}
