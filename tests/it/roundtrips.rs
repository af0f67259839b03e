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
use statusd::store::redis::{RedisOptions, RedisStore};
use statusd::store::registry::Registry;
use statusd::store::{NewList, RedisWait, Store};
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
    within_budget(&server, RedisOptions::default()).await;
}

/// The same budget with every write waiting for a replica (`STATUSD_REDIS_WAIT_REPLICAS=1`,
/// issue #20): `WAIT` travels in the write's own pipeline, so it adds no round trip. The
/// replica is a real second `redis-server` following the first; had `WAIT` not been confirmed,
/// the writes would answer `not-replicated` and the test would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_waiting_for_a_replica_stay_within_the_same_budget() {
    let server = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &server.port.to_string()]);
    crate::redis_harness::until_replicas_caught_up(server.port).await;
    assert!(replica
        .query::<String>(redis::cmd("INFO").arg("replication"))
        .contains("role:slave"));
    let wait = RedisWait {
        replicas: 1,
        timeout: Duration::from_secs(1),
    };
    within_budget(
        &server,
        RedisOptions {
            wait,
            ..Default::default()
        },
    )
    .await;
    // The writes did wait: Redis counted the WAITs.
    let stats: String = server.query(redis::cmd("INFO").arg("commandstats"));
    let waits: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0);
    assert!(waits >= 10, "{waits} WAITs: {stats}");
}

async fn within_budget(server: &RedisServer, opts: RedisOptions) {
    // Some delay each way, so that requests sent together (one round trip) are seen together
    // even on a loaded machine, as they would be on a link to another zone.
    let proxy = Proxy::start(server.port, Duration::from_millis(25)).await;
    let store = RedisStore::connect_with(&proxy.url(), opts)
        .await
        .expect("connect");
    let (store, issuer) = issuer_over(AnyStore::Redis(store));
    // Warm-up: lists of the default pool, a branch pool, the scripts, the bitmaps.
    create_branch_list(&issuer).await;
    warm_up(&issuer).await;
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

/// An issuer over `store` whose lists hold 2^17 entries, as every budget here assumes.
fn issuer_over(store: AnyStore) -> (Arc<AnyStore>, Issuer) {
    let store = Arc::new(store);
    let settings = Settings {
        list_size: 1 << 17,
        ..Settings::default()
    };
    let issuer = Issuer::new(store.clone(), urls(), settings);
    (store, issuer)
}

/// Registers `warm-0` to `warm-3`: the default pool's lists created and the scripts loaded.
async fn warm_up(issuer: &Issuer) {
    for i in 0..4 {
        one(
            issuer,
            register(&format!("warm-{i}"), "physical", None, None),
        )
        .await;
    }
}

/// Creates `branch-1`, the branch pool's list.
async fn create_branch_list(issuer: &Issuer) {
    issuer
        .create_list(NewList {
            id: "branch-1".into(),
            bits: Bits::Two,
            size: 1 << 17,
            purpose: Some("branch".into()),
        })
        .await
        .expect("branch list");
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
/// five (every list's metadata, the locate, two reads of the list, the commit). A reissue is
/// three too: the new id is bound in the commit's transaction (a reissue that names no parent
/// reads every list's metadata in the locate's transaction, in case its new card needs a list
/// chosen). A top-level registration is two: the locate with the pool's lists' metadata in one
/// transaction, instead of its list's read, then the commit.
#[tokio::test]
async fn single_writes_on_the_embedded_store_take_at_most_three_transactions() {
    let dir = crate::support::TempDir::new("roundtrips-embedded");
    let store = statusd::store::embedded::EmbeddedStore::open(&dir.0).expect("open");
    let (store, issuer) = issuer_over(AnyStore::Embedded(store));
    one(&issuer, register("warm", "physical", None, None)).await;
    for m in store.lists().await.expect("lists") {
        store.allocated(&m.id).await.expect("allocated");
    }
    for (op, budget) in [
        (register("S", "physical", None, None), 2),
        (register("S-phone", "mobile", Some("S"), None), 3),
        (Operation::Suspend(hold("S")), 3),
        (Operation::Reinstate(hold("S")), 3),
        (reissue("S-phone", "S-phone-2", Some("S")), 3),
        (
            Operation::Revoke(RevokeOp {
                credential_id: "S".into(),
                reason: "fraud".into(),
                request_id: None,
            }),
            3,
        ),
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
        assert_eq!(transactions, budget, "{name}");
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
    let (store, issuer) = issuer_over(AnyStore::Redis(store));
    warm_up(&issuer).await;
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

    create_branch_list(&issuer).await;
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

/// With derived cards in a pool of their own (`STATUSD_DERIVED_POOL`), the single writes of a
/// family across lists, by name: a registration of a mobile card, a loss report, a
/// reinstatement and a revocation of its physical card (which reach the mobile card in its own
/// list), a mobile card's loss report, a phone change (the mobile card reissued, no parent
/// named). Each returns its outcome's `affected`, checked by the caller's budget run.
fn family_across_lists() -> Vec<(&'static str, Operation, usize)> {
    vec![
        (
            "register derived (mobile pool)",
            register("FM", "mobile", Some("FP"), None),
            0,
        ),
        (
            "suspend, mobile card elsewhere",
            Operation::Suspend(hold("FP")),
            1,
        ),
        (
            "reinstate, mobile card elsewhere",
            Operation::Reinstate(hold("FP")),
            1,
        ),
        ("suspend a mobile card", Operation::Suspend(hold("FM")), 0),
        ("phone change (reissue)", reissue("FM", "FM2", None), 0),
        (
            "revoke, mobile card elsewhere",
            Operation::Revoke(RevokeOp {
                credential_id: "FP".into(),
                reason: "fraud".into(),
                request_id: None,
            }),
            1,
        ),
    ]
}

/// The budget of [`family_across_lists`], per store, as measured (pinned: a change that adds a
/// round trip fails here). On a standalone Redis a cascade from a physical card to its mobile
/// cards in other lists takes three round trips, as in one list: the read of the parent's list
/// (`redis_read.lua` in its `follow` mode) brings the lists its record links to as well, with
/// the mobile cards, so nothing is read after it. A phone change reads the old card's list and,
/// with it, its parent's (three); the registration of a mobile card stays at three (its parent
/// is named, so read right after the locate, which shares its round trip with the metadata of
/// the mobile pool's remembered lists).
///
/// The embedded store counts transactions, one per read of a list with the lists it links to,
/// the locate reading the pool's lists' metadata in its transaction (a registration and a
/// phone change, whose new card is placed in the pool: 3, 4 before), with no network between
/// them. On a Redis Cluster round trips are counted (requests sent together
/// count once; no read follows links there, the other lists being in other slots), and the
/// lists of one operation are committed together (each a compare-and-set of its own): a
/// registration locates, reads the parent's list, then commits the card's list with its
/// binding (its parent's place as a hint) beside the parent's link and the hint of the card in
/// the parent's binding (3, 9 requests); a cascade locates (the parent's binding names its
/// mobile cards' places), reads the parent's list and the mobile lists together, then commits
/// them all together (3; 4 before the hints); a phone change locates (with every list's
/// metadata; the old card's binding names its parent's place), reads the old card's list with
/// its mark and the parent's list together, commits the new card's list with its binding
/// beside the parent's link, and only then revokes the old card in its list (4, 15 requests;
/// 3 when the new card lands in the old card's list; 5 and 4 before the hints). The mobile
/// cards land in random lists of their pool, one or two here: the budgets are those of two.
const FAMILY_BUDGET: &[(&str, u64, u64, u64)] = &[
    // (operation, standalone round trips, embedded transactions, cluster round trips)
    ("register derived (mobile pool)", 3, 3, 3),
    ("suspend, mobile card elsewhere", 3, 3, 3),
    ("reinstate, mobile card elsewhere", 3, 3, 3),
    ("suspend a mobile card", 3, 3, 3),
    ("phone change (reissue)", 3, 3, 4),
    ("revoke, mobile card elsewhere", 3, 3, 3),
];

/// An issuer whose mobile cards go to pool `mobile`, warmed up as a running replica is: both
/// pools' lists created and remembered, every list's allocations read, `FP` registered.
async fn family_issuer(store: Arc<AnyStore>) -> Issuer {
    let settings = Settings {
        list_size: 1 << 17,
        derived_pool: Some("mobile".into()),
        ..Settings::default()
    };
    let issuer = Issuer::new(store.clone(), urls(), settings);
    one(&issuer, register("warm", "physical", None, None)).await;
    one(&issuer, register("warm-m", "mobile", Some("warm"), None)).await;
    one(&issuer, Operation::Suspend(hold("warm"))).await;
    one(&issuer, register("FP", "physical", None, None)).await;
    for m in store.lists().await.expect("lists") {
        store.allocated(&m.id).await.expect("allocated");
        store.list_records(&m.id, &[]).await.expect("read");
    }
    issuer
}

/// Runs [`family_across_lists`] on `issuer`, counting each operation with `count` (round
/// trips through a proxy, or the store requests); checks each outcome and that the mobile
/// cards live in another list than their parent's.
async fn family_counted<F, Fut>(issuer: &Issuer, count: F) -> Vec<(&'static str, u64)>
where
    F: Fn(Operation) -> Fut,
    Fut: std::future::Future<Output = (Outcome, u64)>,
{
    let mut counts = Vec::new();
    for (name, op, affected) in family_across_lists() {
        let (o, n) = count(op).await;
        assert_eq!(o.affected.len(), affected, "{name}: {o:?}");
        assert!(n >= 1, "{name}: nothing counted");
        println!("family across lists: {name}: {n}");
        counts.push((name, n));
    }
    let parent = o_list(issuer, "FP").await;
    for m in ["FM", "FM2"] {
        let list = o_list(issuer, m).await;
        assert!(list.starts_with("mobile-") && list != parent, "{m}: {list}");
    }
    let p = issuer.view("FP").await.expect("read").expect("registered");
    assert_eq!(p.children, ["FM", "FM2"]);
    assert_eq!(p.status, "INVALID");
    for m in ["FM", "FM2"] {
        let v = issuer.view(m).await.expect("read").expect("registered");
        assert_eq!(v.status, "INVALID", "{m}");
    }
    counts
}

fn check_family_budget(counts: &[(&str, u64)], column: usize) {
    assert_eq!(counts.len(), FAMILY_BUDGET.len());
    for ((name, n), budget) in counts.iter().zip(FAMILY_BUDGET) {
        assert_eq!(*name, budget.0);
        let b = [budget.1, budget.2, budget.3][column];
        assert!(*n <= b, "{name}: {n}, over its budget of {b}");
    }
}

/// [`FAMILY_BUDGET`] on a standalone Redis (round trips through a delaying proxy) and on the
/// embedded store (transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_across_lists_stays_within_its_round_trip_budget() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port, Duration::from_millis(25)).await;
    let store = RedisStore::connect(&proxy.url()).await.expect("connect");
    let issuer = family_issuer(Arc::new(AnyStore::Redis(store))).await;
    let counts = family_counted(&issuer, |op| {
        let (issuer, proxy) = (&issuer, &proxy);
        async move {
            let before = proxy.round_trips();
            let o = one(issuer, op).await;
            (o, proxy.round_trips() - before)
        }
    })
    .await;
    check_family_budget(&counts, 0);

    let dir = crate::support::TempDir::new("roundtrips-family");
    let store = statusd::store::embedded::EmbeddedStore::open(&dir.0).expect("open");
    let issuer = family_issuer(Arc::new(AnyStore::Embedded(store))).await;
    let counts = family_counted(&issuer, |op| counted(&issuer, op)).await;
    check_family_budget(&counts, 1);
}

/// [`FAMILY_BUDGET`] on a Redis Cluster, where the lists of a family are committed together,
/// each on its own (round trips counted, the requests printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_across_lists_on_a_cluster() {
    let cluster = crate::redis_harness::RedisCluster::start();
    let store = RedisStore::connect(&cluster.url()).await.expect("connect");
    assert!(store.is_cluster());
    let issuer = family_issuer(Arc::new(AnyStore::Redis(store))).await;
    let counts = family_counted(&issuer, |op| counted_trips(&issuer, op)).await;
    check_family_budget(&counts, 2);
    // A phone change whose new card lands in the old card's list revokes the old card in the
    // new card's commit: one round trip less.
    let one_list = o_list(&issuer, "FM").await == o_list(&issuer, "FM2").await;
    eprintln!("phone change within one mobile list: {one_list}");
    if one_list {
        let (name, n) = counts[4];
        assert_eq!(name, "phone change (reissue)");
        assert!(
            n <= 3,
            "{name} in one mobile list: {n}, over its budget of 3"
        );
    }
}

/// One operation's outcome and the round trips its store requests cost (requests sent
/// together count once), printing the requests too.
async fn counted_trips(issuer: &Issuer, op: Operation) -> (Outcome, u64) {
    let (r, n) =
        statusd::store::count_round_trips(issuer.execute("clerk", std::slice::from_ref(&op))).await;
    println!("  {} requests in {} round trips", n.requests, n.round_trips);
    let o = r
        .expect("runs")
        .pop()
        .expect("one result")
        .unwrap_or_else(|p| panic!("{op:?}: {p:?}"));
    (o, n.round_trips.into())
}

/// One operation's outcome and the store requests it made.
async fn counted(issuer: &Issuer, op: Operation) -> (Outcome, u64) {
    let (r, requests) =
        statusd::store::count_requests(issuer.execute("clerk", std::slice::from_ref(&op))).await;
    let o = r
        .expect("runs")
        .pop()
        .expect("one result")
        .unwrap_or_else(|p| panic!("{op:?}: {p:?}"));
    (o, requests.into())
}

/// The hints a binding carries on a Redis Cluster (docs/redis.md, "Credential-id bindings")
/// save the read of a family's other lists, and are never the truth: a binding without them
/// (the format before them), one missing a card, one whose card was reissued since (stale) or
/// one naming places that hold nothing costs the read it costs without hints, never a wrong
/// result; a parent keeps at most `MAX_CHILD_HINTS` and a registration's retry adds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_family_hints_save_a_read_and_are_never_the_truth() {
    use statusd::store::registry::MAX_CHILD_HINTS;
    let cluster = crate::redis_harness::RedisCluster::start();
    let store = RedisStore::connect(&cluster.url()).await.expect("connect");
    assert!(store.is_cluster());
    let issuer = family_issuer(Arc::new(AnyStore::Redis(store))).await;
    let binding = |id: &str| -> String {
        let key = format!("statusd:cid:{id}");
        cluster.node_for(&key).query(redis::cmd("GET").arg(&key))
    };
    let set_binding = |id: &str, v: &str| {
        let key = format!("statusd:cid:{id}");
        let () = cluster
            .node_for(&key)
            .query(redis::cmd("SET").arg(&key).arg(v));
    };
    let place = |id: &str| {
        let issuer = &issuer;
        let id = id.to_owned();
        async move {
            let (at, _) = issuer.credential(&id).await.unwrap().expect("registered");
            at.to_string()
        }
    };
    let status = |id: &str| {
        let issuer = &issuer;
        let id = id.to_owned();
        async move { issuer.view(&id).await.unwrap().expect("registered").status }
    };
    let fp = place("FP").await;

    // Written at registration: the card's parent, the parent's card; a retry adds nothing.
    one(&issuer, register("FM", "mobile", Some("FP"), None)).await;
    let fm = place("FM").await;
    assert_ne!(
        fm.split('/').next(),
        fp.split('/').next(),
        "a family across lists"
    );
    assert_eq!(binding("FM"), format!("{fm} p:{fp}"));
    assert_eq!(binding("FP"), format!("{fp} c:{fm}"));
    let again = one(&issuer, register("FM", "mobile", Some("FP"), None)).await;
    assert_eq!(again.result, "exists");
    assert_eq!(binding("FP"), format!("{fp} c:{fm}"));
    let (o, n) = counted_trips(&issuer, Operation::Suspend(hold("FP"))).await;
    assert_eq!((o.affected.len(), n), (1, 3), "hinted: {o:?}");
    one(&issuer, Operation::Reinstate(hold("FP"))).await;

    // Bindings as written before hints: one round trip more each, the same result.
    set_binding("FP", &fp);
    set_binding("FM", &fm);
    let (o, n) = counted_trips(&issuer, Operation::Suspend(hold("FP"))).await;
    assert_eq!((o.affected.len(), n), (1, 4), "no hints: {o:?}");
    assert_eq!(status("FM").await, "SUSPENDED");
    one(&issuer, Operation::Reinstate(hold("FP"))).await;
    let (o, n) = counted_trips(&issuer, reissue("FM", "FM2", None)).await;
    let fm2 = place("FM2").await;
    let across = fm2.split('/').next() != fm.split('/').next();
    assert_eq!(
        n,
        if across { 5 } else { 4 },
        "phone change, no hints: {o:?}"
    );
    assert_eq!(
        (status("FM").await, status("FM2").await),
        ("INVALID", "VALID")
    );
    assert_eq!(binding("FM2"), format!("{fm2} p:{fp}"));
    assert_eq!(binding("FP"), format!("{fp} c:{fm2}"));

    // A stale hint (the card it names was reissued since) and none for the card there now.
    set_binding("FP", &format!("{fp} c:{fm}"));
    let (o, n) = counted_trips(&issuer, Operation::Suspend(hold("FP"))).await;
    assert_eq!((o.affected.len(), n), (1, 4), "stale hint: {o:?}");
    assert_eq!(
        (status("FM").await, status("FM2").await),
        ("INVALID", "SUSPENDED")
    );
    // Hints naming a list that does not exist and an index that holds nothing.
    let fm2_list = fm2.split('/').next().unwrap();
    set_binding("FP", &format!("{fp} c:nosuch-1/3 c:{fm2_list}/99999"));
    let (o, n) = counted_trips(&issuer, Operation::Reinstate(hold("FP"))).await;
    assert_eq!((o.affected.len(), n), (1, 4), "wrong hints: {o:?}");
    assert_eq!(status("FM2").await, "VALID");

    // A parent hint that leads nowhere: the phone change reads the parent as without hints.
    set_binding("FM2", &format!("{fm2} p:{fm2_list}/99999"));
    let (o, n) = counted_trips(&issuer, reissue("FM2", "FM3", None)).await;
    let fm3 = place("FM3").await;
    let across = fm3.split('/').next() != Some(fm2_list);
    assert_eq!(n, if across { 5 } else { 4 }, "wrong parent hint: {o:?}");
    let view = issuer.view("FM3").await.unwrap().expect("registered");
    assert_eq!((view.status, view.parent.as_deref()), ("VALID", Some("FP")));
    assert_eq!(binding("FM3"), format!("{fm3} p:{fp}"));

    // Bounded: past the cap, a card is reached by the read without hints.
    set_binding("FP", &fp);
    let extra = MAX_CHILD_HINTS + 1;
    for i in 0..extra {
        one(
            &issuer,
            register(&format!("FC{i}"), "mobile", Some("FP"), None),
        )
        .await;
    }
    let hints = binding("FP")
        .split(' ')
        .filter(|w| w.starts_with("c:"))
        .count();
    assert_eq!(hints, MAX_CHILD_HINTS);
    let o = one(&issuer, Operation::Suspend(hold("FP"))).await;
    assert_eq!(o.affected.len(), extra + 1, "FM3 and the FC cards: {o:?}");
    for i in 0..extra {
        assert_eq!(status(&format!("FC{i}")).await, "SUSPENDED", "FC{i}");
    }

    // Phone changes with the parent hinted: 4 round trips across mobile lists, 3 within one.
    for i in 0..4 {
        let (old, new) = (format!("FC{i}"), format!("FR{i}"));
        let before = place(&old).await;
        let (o, n) = counted_trips(&issuer, reissue(&old, &new, None)).await;
        let after = place(&new).await;
        let across = after.split('/').next() != before.split('/').next();
        println!("  phone change {old} -> {new}, across lists: {across}");
        assert_eq!(n, if across { 4 } else { 3 }, "hinted phone change: {o:?}");
        assert_eq!(status(&new).await, "SUSPENDED", "follows its parent's hold");
    }
}
