//! Heap allocations per request on the public hot path, pinned. The handler is called directly
//! (no sockets) and allocations are counted on the calling thread only.

use hyper::header::HeaderMap;
use hyper::Method;
use statusd::http::{Public, PublicSettings};
use statusd::metrics::Metrics;
use statusd::snapshot::build::{self, BuildParams};
use statusd::snapshot::SnapshotStore;
use statusd::status::{Bits, Status, StatusList};
use statusd::store::ListMeta;
use statusd::token::keys::{Algorithm, KeySet, SigningKey};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the counter is a const-
// initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

fn public() -> (Public, hyper::header::HeaderValue) {
    let key = SigningKey::generate(Algorithm::Es256);
    let p = BuildParams {
        public_url: "https://status.example".into(),
        issuer: "https://status.example".into(),
        ttl: Duration::from_secs(300),
        lifetime: Duration::from_secs(86_400),
        tick: Duration::from_secs(1),
    };
    let list = StatusList::from_entries(Bits::Two, 1 << 20, [(7, Status::SUSPENDED)]).unwrap();
    let meta = ListMeta {
        id: "1".into(),
        bits: 2,
        size: 1 << 20,
        version: 1,
        updated_at: 0,
        updated_ms: 0,
        ..Default::default()
    };
    let ls = build::list_snapshot(meta, list, &key, &p, SystemTime::now())
        .ok()
        .unwrap();
    let etag = ls.artefacts.jwt.etag.clone();
    let snapshots = Arc::new(SnapshotStore::default());
    let mut lists = HashMap::new();
    lists.insert("1".into(), Arc::new(ls));
    snapshots.publish(build::snapshot(
        1,
        lists,
        &KeySet::new(vec![key.verifying_key()]),
        &p,
        SystemTime::now(),
    ));
    (
        Public::new(
            snapshots,
            Arc::new(Metrics::new()),
            PublicSettings::new(Duration::from_secs(10)),
        ),
        etag,
    )
}

#[test]
fn lookup_and_token_responses_allocate_a_pinned_small_number_of_times() {
    let (public, etag) = public();
    let none = HeaderMap::new();
    let mut inm = HeaderMap::new();
    inm.insert(hyper::header::IF_NONE_MATCH, etag);
    let cases: [(&str, &HeaderMap, u64); 3] = [
        ("/statuses/1/7", &none, LOOKUP_MAX),
        ("/statuslists/1", &none, TOKEN_MAX),
        ("/statuslists/1", &inm, TOKEN_MAX),
    ];
    for (path, headers, max) in cases {
        // Warm-up: first calls may initialise lazies (thread-locals of arc-swap, etc.).
        for _ in 0..3 {
            drop(public.respond(&Method::GET, path, None, headers));
        }
        let n = 100;
        let total = allocations(|| {
            for _ in 0..n {
                let (_, resp) = public.respond(&Method::GET, path, None, headers);
                assert!(resp.status().as_u16() < 400);
                drop(resp);
            }
        });
        let per = total as f64 / n as f64;
        println!(
            "{path} ({} headers): {per} allocations per request",
            headers.len()
        );
        assert!(
            per <= max as f64,
            "{path}: {per} allocations per request, pinned at {max}"
        );
    }
}

/// Pinned counts; lower them when the handler improves, never raise them without a reason.
/// A lookup: the JSON body (allocated once at its exact size) and the header map's two arrays.
const LOOKUP_MAX: u64 = 3;
/// A token (200 or 304): only the header map; bodies and header values are refcounted.
const TOKEN_MAX: u64 = 2;
