//! One contract, both stores: what the [`Store`] trait promises (create, apply, load, entries,
//! lists, the order of changes within a batch, the errors of a refused batch), the issuer
//! registry's reads and joint commits ([`Registry`]) and the retirement of a list ([`Retire`]),
//! run against the embedded store and against a real `redis-server` alike. What only one store
//! has (the Redis data model, its failures and clusters; the embedded file) is tested in
//! `redis.rs` and beside the embedded store.

use crate::redis_harness::RedisServer;
use crate::support::{change as c, new_list, nonzero, TempDir};
use statusd::status::{Bits, Status, StatusError};
use statusd::store::embedded::EmbeddedStore;
use statusd::store::redis::RedisStore;
use statusd::store::registry::{Location, Registry, Txn};
use statusd::store::retire::Retire;
use statusd::store::{Applied, Extends, ListMeta, NewList, Store, StoreError};

/// `$refused` fails with an error matching the pattern; the message shows the error it got.
macro_rules! assert_refused {
    ($refused:expr, $($pattern:tt)+) => {{
        let err = $refused.unwrap_err();
        assert!(matches!(err, $($pattern)+), "{err}");
    }};
}

/// A store under test: opened afresh by each call, as a restart or another replica would.
trait Subject {
    type S: Store + Registry + Retire;
    async fn open(&self) -> Self::S;
}

/// The embedded store in a fresh directory.
struct Embedded(TempDir);

impl Subject for Embedded {
    type S = EmbeddedStore;
    async fn open(&self) -> EmbeddedStore {
        EmbeddedStore::open(&self.0 .0).expect("open the embedded store")
    }
}

/// A store on a fresh `redis-server`.
struct Redis(RedisServer);

impl Subject for Redis {
    type S = RedisStore;
    async fn open(&self) -> RedisStore {
        RedisStore::connect(&self.0.url()).await.expect("connect")
    }
}

async fn create_apply_load_and_reopen(subject: impl Subject) {
    let s = subject.open().await;
    assert!(s.lists().await.unwrap().is_empty());
    let meta = s.create_list(new_list("a", Bits::Two, 1024)).await.unwrap();
    assert_eq!(
        (meta.id.as_str(), meta.bits, meta.size, meta.version),
        ("a", 2, 1024, 0)
    );
    let a = s.apply("a", &[c(5, 2), c(9, 1)]).await.unwrap();
    assert_eq!(
        a,
        Applied {
            version: 1,
            previous: vec![Status(0), Status(0)]
        }
    );
    let a = s.apply("a", &[c(5, 0)]).await.unwrap();
    assert_eq!(a.previous, vec![Status(2)]);
    assert_eq!(
        s.entries("a", &[9, 5, 0]).await.unwrap(),
        (2, vec![Status(1), Status(0), Status(0)])
    );
    assert!(s.entries("a", &[1024]).await.is_err());
    drop(s);
    // Opened again (a restart, or a new replica): the same state.
    let s = subject.open().await;
    let (meta, list) = s.load("a").await.unwrap();
    assert_eq!(meta.version, 2);
    assert_eq!((list.bits(), list.size()), (Bits::Two, 1024));
    assert_eq!(nonzero(&list), vec![(9, 1)]);
    assert_eq!(s.lists().await.unwrap(), vec![meta.clone()]);
    assert!(meta.updated_at > 1_600_000_000);
    assert_refused!(s.load("zz").await, StoreError::UnknownList(_));
    assert_refused!(s.load("a/b").await, StoreError::UnknownList(_));
}

async fn a_rejected_batch_changes_nothing(subject: impl Subject) {
    let s = subject.open().await;
    s.create_list(new_list("b", Bits::Two, 64)).await.unwrap();
    s.apply("b", &[c(1, 1)]).await.unwrap();
    assert_refused!(
        s.apply("b", &[c(2, 2), c(1, 0)]).await,
        StoreError::Terminal {
            idx: 1,
            to: Status::VALID
        }
    );
    assert_refused!(
        s.apply("b", &[c(3, 2), c(64, 1)]).await,
        StoreError::Status(StatusError::IndexOutOfRange { idx: 64, size: 64 })
    );
    assert_refused!(
        s.apply("b", &[c(3, 2), c(4, 4)]).await,
        StoreError::Status(StatusError::ValueTooWide { value: 4, bits: 2 })
    );
    let (meta, list) = s.load("b").await.unwrap();
    assert_eq!(meta.version, 1);
    assert_eq!(nonzero(&list), vec![(1, 1)]);

    assert_refused!(s.apply("zz", &[]).await, StoreError::UnknownList(_));
    assert_refused!(
        s.create_list(new_list("b", Bits::One, 8)).await,
        StoreError::ListExists(_)
    );
    assert_refused!(
        s.create_list(new_list("a/b", Bits::One, 8)).await,
        StoreError::InvalidId(_)
    );
    assert_refused!(
        s.create_list(new_list("odd", Bits::Two, 3)).await,
        StoreError::Status(StatusError::InvalidSize(3))
    );
    // An empty batch is a batch: it moves the version.
    assert_eq!(s.apply("b", &[]).await.unwrap().version, 2);
}

async fn a_batch_sees_its_own_earlier_changes_and_invalid_is_terminal(subject: impl Subject) {
    let s = subject.open().await;
    s.create_list(new_list("o", Bits::Two, 16)).await.unwrap();
    let a = s.apply("o", &[c(3, 2), c(3, 0), c(3, 1)]).await.unwrap();
    assert_eq!(a.previous, vec![Status(0), Status(2), Status(0)]);
    // INVALID again is allowed.
    let a = s.apply("o", &[c(3, 1)]).await.unwrap();
    assert_eq!((a.version, a.previous), (2, vec![Status::INVALID]));
    // A change that makes an entry INVALID binds the rest of its own batch.
    assert_refused!(
        s.apply("o", &[c(4, 1), c(4, 2)]).await,
        StoreError::Terminal {
            idx: 4,
            to: Status(2)
        }
    );
    assert_refused!(
        s.apply("o", &[c(5, 2), c(3, 0)]).await,
        StoreError::Terminal { idx: 3, .. }
    );
    let (meta, list) = s.load("o").await.unwrap();
    assert_eq!(meta.version, 2);
    assert_eq!(nonzero(&list), vec![(3, 1)]);
}

/// One list's metadata read alone ([`Store::meta`]): what a replica reads for a change hint;
/// several lists' at once ([`Store::metas`]): what the issuer reads for a pool's lists.
async fn meta_reads_one_list(subject: impl Subject) {
    let s = subject.open().await;
    s.create_list(new_list("a", Bits::Two, 64)).await.unwrap();
    s.create_list(new_list("b", Bits::One, 64)).await.unwrap();
    s.apply("b", &[c(3, 1)]).await.unwrap();
    let b = s.meta("b").await.unwrap().expect("b exists");
    let listed = s.lists().await.unwrap();
    assert_eq!(Some(&b), listed.iter().find(|m| m.id == "b"));
    assert_eq!((b.version, b.bits, b.size), (1, 1, 64));
    assert_eq!(s.meta("c").await.unwrap(), None);
    assert_eq!(s.meta("not an id").await.unwrap(), None);
    // Several at once, in order, in one round trip or transaction.
    let a = s.meta("a").await.unwrap();
    let ids = ["b", "c", "not an id", "a"].map(String::from);
    assert_eq!(s.metas(&ids).await.unwrap(), [Some(b), None, None, a]);
    assert_eq!(s.metas(&[]).await.unwrap(), []);
}

/// Issue 16: what a replica reads for a list a write names ([`Store::meta_and_changes_since`]):
/// its metadata and, when it is ahead, the changes since the replica's version, as
/// [`Store::meta`] and [`Store::changes_since`] answer them (one round trip on Redis).
async fn meta_and_changes_read_together(subject: impl Subject) {
    let s = subject.open().await;
    s.create_list(new_list("a", Bits::Two, 64)).await.unwrap();
    s.apply("a", &[c(3, 1)]).await.unwrap();
    s.apply("a", &[c(5, 2), c(6, 1)]).await.unwrap();
    let meta = s.meta("a").await.unwrap().expect("a exists");
    assert_eq!(meta.version, 2);
    for since in 0..=1 {
        // Redis replays its feed; the embedded store keeps none (`None`: load in full).
        let feed = s.changes_since("a", since).await.unwrap();
        assert_eq!(
            s.meta_and_changes_since("a", since).await.unwrap(),
            Some((meta.clone(), feed))
        );
    }
    // Not ahead: no changes to read.
    assert_eq!(
        s.meta_and_changes_since("a", 2).await.unwrap(),
        Some((meta, None))
    );
    assert_eq!(s.meta_and_changes_since("b", 0).await.unwrap(), None);
    assert_eq!(
        s.meta_and_changes_since("not an id", 0).await.unwrap(),
        None
    );
}

/// Issue 16: the embedded store's change hints name the list a commit wrote, and a creation
/// says anything may have changed (the refresher then reads every list).
#[tokio::test]
async fn embedded_hints_name_the_list_written() {
    use std::time::Duration;
    let dir = TempDir::new("hints");
    let s = EmbeddedStore::open(&dir.0).unwrap();
    s.create_list(new_list("a", Bits::Two, 64)).await.unwrap();
    s.create_list(new_list("b", Bits::Two, 64)).await.unwrap();
    assert!(s.changed(Duration::from_secs(10)).await.all);
    assert!(s.changed(Duration::from_millis(50)).await.is_empty());
    s.apply("b", &[c(3, 2)]).await.unwrap();
    s.apply("a", &[c(3, 2)]).await.unwrap();
    let hint = s.changed(Duration::from_secs(10)).await;
    assert!(!hint.all);
    assert_eq!(hint.lists.into_iter().collect::<Vec<_>>(), ["a", "b"]);
}

/// A planning read returns the records asked for with their whole family (children, parent,
/// siblings), at one version, and only records that exist.
async fn a_list_read_brings_each_record_s_family(subject: impl Subject) {
    let s = subject.open().await;
    s.create_list(new_list("f", Bits::Two, 64)).await.unwrap();
    let record = |id: &str, links: &str| {
        format!(r#"{{"credential_id":"{id}","kind":"k",{links}"history":[]}}"#).into_bytes()
    };
    let parent = |idx: u32| format!(r#""parent":{{"credential_id":"P","idx":{idx}}},"#);
    let records = vec![
        (10, record("P", r#""children":[11,12],"#)),
        (11, record("M1", &parent(10))),
        (12, record("M2", &parent(10))),
        (20, record("S", "")),
        (30, b"not json".to_vec()),
    ];
    let txn = Txn {
        expect_version: 0,
        claim: vec![10, 11, 12, 20, 30],
        records: records.clone(),
        changes: Vec::new(),
        extends: Extends::Nothing,
    };
    assert_eq!(s.commit("f", &txn).await.unwrap(), 1);
    let (meta, got) = s.list_records("f", &[11]).await.unwrap();
    assert_eq!((meta.id.as_str(), meta.version), ("f", 1));
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), [10, 11, 12]);
    assert_eq!(got[&12], records[2].1);
    let (_, got) = s.list_records("f", &[20, 30, 40]).await.unwrap();
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), [20, 30]);
    let (meta, got) = s.list_records("f", &[]).await.unwrap();
    assert_eq!((meta.version, got.len()), (1, 0));
    assert_refused!(s.list_records("zz", &[1]).await, StoreError::UnknownList(_));
}

/// Links into other lists (a derived pool: `children_elsewhere` in a parent's record, a
/// `parent` with a `list` in a derived card's) are not followed by a list read: whatever the
/// index they name holds in this list is another family's. Same-list links in the same records
/// still are, and the records come back byte for byte.
async fn a_list_read_does_not_follow_links_into_other_lists(subject: impl Subject) {
    let s = subject.open().await;
    s.create_list(new_list("g", Bits::Two, 64)).await.unwrap();
    let records = vec![
        (
            1,
            br#"{"credential_id":"P","kind":"k","children":[2],"children_elsewhere":[{"list":"m","idx":3}],"history":[]}"#
                .to_vec(),
        ),
        (
            2,
            br#"{"credential_id":"M","kind":"k","parent":{"credential_id":"P","idx":1},"history":[]}"#
                .to_vec(),
        ),
        (
            3,
            br#"{"credential_id":"X","kind":"k","parent":{"credential_id":"Q","idx":4,"list":"h"},"history":[]}"#
                .to_vec(),
        ),
        (4, br#"{"credential_id":"Y","kind":"k","history":[]}"#.to_vec()),
    ];
    let txn = Txn {
        expect_version: 0,
        claim: vec![1, 2, 3, 4],
        records: records.clone(),
        changes: Vec::new(),
        extends: Extends::Nothing,
    };
    s.commit("g", &txn).await.unwrap();
    let (_, got) = s.list_records("g", &[1]).await.unwrap();
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(got[&1], records[0].1);
    let (_, got) = s.list_records("g", &[3]).await.unwrap();
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), [3]);
}

/// A following read (a store that reads several lists in one step: both here) brings, after the
/// list asked for, each other list its records link to (`children_elsewhere`, a `parent.list`)
/// that exists, with the records linked to and their families there, at that list's version;
/// one step only, never a list twice, never a link to a list id the store would refuse.
async fn a_following_read_brings_the_lists_linked_to(subject: impl Subject) {
    let s = subject.open().await;
    for id in ["p", "m", "n"] {
        s.create_list(new_list(id, Bits::Two, 64)).await.unwrap();
    }
    let txn = |version, records: &[(u32, &str)]| Txn {
        expect_version: version,
        claim: records.iter().map(|(i, _)| *i).collect(),
        records: records
            .iter()
            .map(|(i, r)| (*i, r.as_bytes().to_vec()))
            .collect(),
        changes: Vec::new(),
        extends: Extends::Nothing,
    };
    s.commit("p", &txn(0, &[
            (
                1,
                r#"{"credential_id":"P","kind":"k","children":[2],"children_elsewhere":[{"list":"m","idx":3},{"list":"n","idx":5},{"list":"zz","idx":1},{"list":"p","idx":4},{"list":"a:b","idx":1}],"history":[]}"#,
            ),
            (
                2,
                r#"{"credential_id":"M","kind":"k","parent":{"credential_id":"P","idx":1},"history":[]}"#,
            ),
            (4, r#"{"credential_id":"Y","kind":"k","history":[]}"#),
        ]))
    .await
    .unwrap();
    s.commit(
        "m",
        &txn(
            0,
            &[(7, r#"{"credential_id":"Z","kind":"k","history":[]}"#)],
        ),
    )
    .await
    .unwrap();
    s.commit("m", &txn(1, &[
            (
                3,
                r#"{"credential_id":"X","kind":"k","children":[6],"parent":{"credential_id":"P","idx":1,"list":"p"},"history":[]}"#,
            ),
            (
                6,
                r#"{"credential_id":"X2","kind":"k","parent":{"credential_id":"X","idx":3},"history":[]}"#,
            ),
        ]))
    .await
    .unwrap();
    s.commit("n", &txn(0, &[(
            5,
            r#"{"credential_id":"W","kind":"k","parent":{"credential_id":"P","idx":1,"list":"p"},"history":[]}"#,
        )]))
    .await
    .unwrap();
    let shape = |read: Vec<(String, statusd::store::registry::MetaRecords)>| {
        read.into_iter()
            .map(|(list, (meta, recs))| {
                assert_eq!(meta.id, list);
                (list, meta.version, recs.into_keys().collect::<Vec<_>>())
            })
            .collect::<Vec<_>>()
    };
    let mut got = shape(s.list_records_following("p", &[1]).await.unwrap());
    assert_eq!(got.remove(0), ("p".to_owned(), 1, vec![1, 2]));
    got.sort();
    assert_eq!(
        got,
        [
            ("m".to_owned(), 2, vec![3, 6]),
            ("n".to_owned(), 1, vec![5])
        ]
    );
    // One step: the parent's list with the parent's family, not the lists it links to.
    let got = shape(s.list_records_following("m", &[6]).await.unwrap());
    assert_eq!(
        got,
        [
            ("m".to_owned(), 2, vec![3, 6]),
            ("p".to_owned(), 1, vec![1, 2])
        ]
    );
    // No links elsewhere: the list alone, as `list_records` reads it.
    let got = shape(s.list_records_following("m", &[7]).await.unwrap());
    assert_eq!(got, [("m".to_owned(), 2, vec![7])]);
    assert_refused!(
        s.list_records_following("zz", &[1]).await,
        StoreError::UnknownList(_)
    );
}

/// A joint commit of two lists and a binding (a reissue across lists on a standalone Redis or
/// the embedded store) is all or nothing: a terminal change in the second list, a stale version
/// or a credential id bound meanwhile leaves both lists, their allocations and the ids as they
/// were; the commit that passes writes everything at once.
async fn a_joint_commit_is_all_or_nothing(subject: impl Subject) {
    let s = subject.open().await;
    assert!(s.commits_jointly());
    s.create_list(new_list("j1", Bits::Two, 64)).await.unwrap();
    s.create_list(new_list("j2", Bits::Two, 64)).await.unwrap();
    s.apply("j2", &[c(9, 1)]).await.unwrap();
    let at = |list: &str, idx| Location {
        list: list.into(),
        idx,
    };
    s.bind(&[("taken".into(), at("j2", 9).into())])
        .await
        .unwrap();
    let txns = |v2: u64, change2: u8| {
        vec![
            (
                "j1".to_owned(),
                Txn {
                    expect_version: 0,
                    claim: vec![3],
                    records: vec![(3, b"{\"credential_id\":\"new\",\"history\":[]}".to_vec())],
                    changes: vec![c(3, 2)],
                    extends: Extends::Nothing,
                },
            ),
            (
                "j2".to_owned(),
                Txn {
                    expect_version: v2,
                    claim: Vec::new(),
                    records: vec![(9, b"{\"credential_id\":\"old\",\"history\":[]}".to_vec())],
                    changes: vec![c(9, change2)],
                    extends: Extends::Nothing,
                },
            ),
        ]
    };
    let bind = [("new".to_owned(), at("j1", 3))];
    let untouched = || async {
        assert_eq!(s.records("j1", &[3]).await.unwrap(), (0, vec![None]));
        assert_eq!(s.records("j2", &[9]).await.unwrap(), (1, vec![None]));
        assert_eq!(s.locate(&["new".into()]).await.unwrap(), [None]);
        assert!(s.allocated("j1").await.unwrap().1.is_empty());
        assert_eq!(s.entries("j1", &[3]).await.unwrap().1, [Status::VALID]);
    };
    assert_refused!(
        s.commit_joint(&txns(1, 0), &bind).await,
        StoreError::Terminal { idx: 9, .. }
    );
    untouched().await;
    assert_refused!(
        s.commit_joint(&txns(0, 1), &bind).await,
        StoreError::Conflict(ref l) if l == "j2"
    );
    untouched().await;
    let taken = [("taken".to_owned(), at("j1", 3))];
    assert_refused!(
        s.commit_joint(&txns(1, 1), &taken).await,
        StoreError::Conflict(_)
    );
    untouched().await;

    assert_eq!(s.commit_joint(&txns(1, 1), &bind).await.unwrap(), [1, 2]);
    assert_eq!(
        s.locate(&["new".into()]).await.unwrap(),
        [Some(at("j1", 3))]
    );
    assert_eq!(s.entries("j1", &[3]).await.unwrap(), (1, vec![Status(2)]));
    assert!(s.allocated("j1").await.unwrap().1.contains(3));
    assert!(s.records("j2", &[9]).await.unwrap().1[0].is_some());
    // The claimed index is taken now: claiming it again is a conflict.
    let again = [(
        "j1".to_owned(),
        Txn {
            expect_version: 1,
            claim: vec![3],
            ..Txn::default()
        },
    )];
    assert_refused!(s.commit_joint(&again, &[]).await, StoreError::Conflict(_));
}

/// `id`'s metadata as [`Store::lists`] reads it (what a replica reads).
async fn listed(s: &impl Store, id: &str) -> ListMeta {
    let lists = s.lists().await.unwrap();
    lists
        .into_iter()
        .find(|m| m.id == id)
        .expect("the list is listed")
}

/// A registry commit at `version` claiming `idxs` (records `r<idx>`) that `extends` the list.
fn claim(version: u64, idxs: &[u32], extends: Extends) -> Txn {
    Txn {
        expect_version: version,
        claim: idxs.to_vec(),
        records: idxs
            .iter()
            .map(|&i| (i, format!("r{i}").into_bytes()))
            .collect(),
        changes: Vec::new(),
        extends,
    }
}

/// A joint commit keeps each list's latest expiry as a commit of that list alone would, and a
/// retired list among its lists refuses all of it, naming that list.
async fn a_joint_commit_keeps_each_list_s_expiry_and_refuses_a_retired_list(subject: impl Subject) {
    let s = subject.open().await;
    let pooled = |id: &str| NewList {
        purpose: Some("p".into()),
        ..new_list(id, Bits::Two, 16)
    };
    for id in ["ea", "eb", "ec"] {
        s.create_list(pooled(id)).await.unwrap();
    }
    let at = |list: &str, idx| Location {
        list: list.into(),
        idx,
    };
    let life = |id: &'static str| {
        let s = &s;
        async move {
            let m = listed(s, id).await;
            (m.version, m.life.expires_max)
        }
    };
    let both = [
        ("ea".to_owned(), claim(0, &[1], Extends::Until(100))),
        ("eb".to_owned(), claim(0, &[1], Extends::Forever)),
    ];
    let x = [("x".to_owned(), at("ea", 1))];
    assert_eq!(s.commit_joint(&both, &x).await.unwrap(), [1, 1]);
    assert_eq!(life("ea").await, (1, Some(100)));
    assert_eq!(
        life("eb").await,
        (1, None),
        "forever, like a commit of its own"
    );
    let both = [
        ("ea".to_owned(), claim(1, &[2], Extends::Until(50))),
        ("eb".to_owned(), claim(1, &[2], Extends::Until(10))),
    ];
    assert_eq!(s.commit_joint(&both, &[]).await.unwrap(), [2, 2]);
    assert_eq!(life("ea").await, (2, Some(100)), "only ever raised");
    assert_eq!(life("eb").await, (2, None));

    assert!(s.retire("ec", 0, 1000).await.unwrap());
    let with_retired = [
        ("ea".to_owned(), claim(2, &[3], Extends::Until(500))),
        ("ec".to_owned(), claim(1, &[1], Extends::Until(500))),
    ];
    let y = [("y".to_owned(), at("ec", 1))];
    assert_refused!(
        s.commit_joint(&with_retired, &y).await,
        StoreError::Retired(ref l) if l == "ec"
    );
    assert_eq!(life("ea").await, (2, Some(100)), "the other list untouched");
    assert!(!s.allocated("ea").await.unwrap().1.contains(3));
    assert_eq!(s.records("ea", &[3]).await.unwrap(), (2, vec![None]));
    assert_eq!(s.locate(&["y".into()]).await.unwrap(), [None]);
}

async fn a_list_keeps_its_latest_expiry_and_retires_once(subject: impl Subject) {
    let s = subject.open().await;
    let pooled = |id: &str| NewList {
        purpose: Some("p".into()),
        ..new_list(id, Bits::Two, 16)
    };
    let meta = s.create_list(pooled("r")).await.unwrap();
    assert_eq!(
        meta.life.expires_max,
        Some(0),
        "nothing keeps a new list alive"
    );
    // The latest expiry of the credentials registered, raised only in the commit.
    let v = s
        .commit("r", &claim(0, &[1, 2], Extends::Until(100)))
        .await
        .unwrap();
    let v = s
        .commit("r", &claim(v, &[3], Extends::Until(50)))
        .await
        .unwrap();
    let v = s
        .commit(
            "r",
            &Txn {
                changes: vec![c(3, 2)],
                ..claim(v, &[], Extends::Nothing)
            },
        )
        .await
        .unwrap();
    let meta = listed(&s, "r").await;
    assert_eq!((meta.version, meta.life.expires_max), (v, Some(100)));
    assert_eq!(meta.allocated, 3);
    // One credential without an expiry keeps its list for good.
    s.create_list(pooled("f")).await.unwrap();
    let fv = s
        .commit("f", &claim(0, &[1], Extends::Until(7)))
        .await
        .unwrap();
    s.commit("f", &claim(fv, &[2], Extends::Forever))
        .await
        .unwrap();
    let f = listed(&s, "f").await;
    assert_eq!(f.life.expires_max, None);

    // Retiring is a compare-and-set on the version judged, and happens once.
    assert_refused!(s.retire("r", v - 1, 1000).await, StoreError::Conflict(_));
    assert!(s.retire("r", v, 1000).await.unwrap());
    assert!(!s.retire("r", v, 1001).await.unwrap(), "retired already");
    let meta = listed(&s, "r").await;
    assert_eq!(meta.life.retired_at, Some(1000));
    assert_eq!(
        meta.version,
        v + 1,
        "a commit planned before it fails as a conflict"
    );
    // A retired list takes no writes, registry commits or plain batches.
    assert_refused!(
        s.commit("r", &claim(v + 1, &[4], Extends::Until(2000)))
            .await,
        StoreError::Retired(_)
    );
    assert_refused!(s.apply("r", &[c(5, 1)]).await, StoreError::Retired(_));
    assert_refused!(s.retire("zz", 0, 1).await, StoreError::UnknownList(_));
    // Only a retired list's data is deleted, once.
    assert!(s.purge("f", 1).await.is_err());
    assert!(s.purge("r", 2000).await.unwrap());
    assert!(!s.purge("r", 2001).await.unwrap());
    drop(s);
    // Opened again (another replica): the tombstone and the audit trail stay, the data is gone.
    let s = subject.open().await;
    let meta = listed(&s, "r").await;
    assert_eq!(
        (meta.life.retired_at, meta.life.purged_at, meta.allocated),
        (Some(1000), Some(2000), 3)
    );
    let (_, records) = s.records("r", &[1, 2, 3, 4]).await.unwrap();
    let records: Vec<Option<Vec<u8>>> = records;
    assert_eq!(
        records,
        vec![
            Some(b"r1".to_vec()),
            Some(b"r2".to_vec()),
            Some(b"r3".to_vec()),
            None
        ]
    );
    let (_, list) = s.load("r").await.unwrap();
    assert!(nonzero(&list).is_empty(), "the entries are deleted");
    assert_refused!(s.create_list(pooled("r")).await, StoreError::ListExists(_));
}

/// Each contract test once per store: `store_contract::embedded::<name>` and
/// `store_contract::redis::<name>`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Embedded(crate::support::TempDir::new("contract"))).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Redis(crate::redis_harness::RedisServer::start())).await;
                }
            )*
        }
    };
}

contract!(
    create_apply_load_and_reopen,
    a_rejected_batch_changes_nothing,
    a_batch_sees_its_own_earlier_changes_and_invalid_is_terminal,
    meta_reads_one_list,
    meta_and_changes_read_together,
    a_list_read_brings_each_record_s_family,
    a_list_read_does_not_follow_links_into_other_lists,
    a_following_read_brings_the_lists_linked_to,
    a_joint_commit_is_all_or_nothing,
    a_joint_commit_keeps_each_list_s_expiry_and_refuses_a_retired_list,
    a_list_keeps_its_latest_expiry_and_retires_once,
);
