//! statusd's criterion suite. Run all of it with
//!
//! ```text
//! cargo bench --bench statusd                 # every group, sizes 2^20, 2^24, 2^26
//! cargo bench --bench statusd -- encode/      # one group
//! ```
//!
//! Under `cargo test` each benchmark runs once as a smoke test, at 2^20 entries only.
//! Results and the machine they were measured on are kept in docs/BENCHMARKS.md.
//!
//! Groups:
//! * `encode/{entries}`: a 2-bit list with 1 % INVALID and 0.2 % SUSPENDED at random indices
//!   (the nationwide shape). `zlib9_dense` is the baseline the issue names: classic zlib at
//!   level 9 over the already packed byte array (packing not timed). `sparse_zlib` is what
//!   statusd does: pack from the bitmaps and compress in one pass. `signed_jwt` adds the JSON
//!   claims, base64url and the ES256 signature: the full revocation-to-token path.
//! * `decode/1048576`: inflate and unpack a token's `lst`.
//! * `lookup`: one per-credential read from the bitmaps.
//! * `snapshot/reencode_*`: one list's artefacts without and with the signed deltas of a full
//!   change history (issue 16): the re-encoding cost deltas add.
//! * `handler`: the public request handler without sockets, on a 50-list snapshot: single
//!   lookups (uniform on one list, and Zipf-skewed over all lists as `loadtest/lookups.js`
//!   asks), a 20-index batch lookup, token 200 (identity and gzip), W3C credential 200, 304.
//! * `snapshot`: re-encoding one changed list and assembling a 50-list snapshot around it.
//! * `signing`: one ES256 signature over a token's signing input, with the key file's key in
//!   memory and with a key in a SoftHSM2 token (PKCS#11, `CKM_ECDSA`, the signature checked
//!   under the public key as statusd does; `_unchecked`: the token alone). Needs softhsm2 and opensc (scripts/test installs
//!   them); the token is made in a temporary directory.
//!
//! Each group's function says what it measures and how to run that group alone.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::Method;
use rand::{rngs::StdRng, Rng, SeedableRng};
use statusd::http::{Public, PublicSettings};
use statusd::metrics::Metrics;
use statusd::snapshot::build::{self, BuildParams};
use statusd::snapshot::{Lists, SnapshotStore};
use statusd::status::ietf::IetfList;
use statusd::status::packing::{self, Order};
use statusd::status::{Bits, Status, StatusList};
use statusd::store::ListMeta;
use statusd::token::keys::{Algorithm, KeySet, SigningKey};
use statusd::token::statuslist::{self, StatusListClaims};
use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The nationwide list shape: 2 bits, 1 % INVALID, 0.2 % SUSPENDED, random indices.
fn nationwide_list(size: u32, seed: u64) -> StatusList {
    let mut rng = StdRng::seed_from_u64(seed);
    let n_invalid = size as usize / 100;
    let n_suspended = size as usize / 500;
    let picked = rand::seq::index::sample(&mut rng, size as usize, n_invalid + n_suspended);
    let mut entries: Vec<(u64, Status)> = picked
        .iter()
        .enumerate()
        .map(|(n, i)| {
            (
                i as u64,
                if n < n_invalid {
                    Status::INVALID
                } else {
                    Status::SUSPENDED
                },
            )
        })
        .collect();
    entries.sort_unstable();
    StatusList::from_entries(Bits::Two, size, entries).expect("valid list")
}

/// Only `cargo bench` passes `--bench`; under `cargo test` we run the small size only.
fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn sizes() -> Vec<u32> {
    if full_run() {
        vec![1 << 20, 1 << 24, 1 << 26]
    } else {
        vec![1 << 20]
    }
}

fn zlib9(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::best(),
    );
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

fn claims(list: &StatusList) -> StatusListClaims {
    StatusListClaims {
        sub: "https://status.example.kr/statuslists/1".into(),
        iss: Some("https://status.example.kr".into()),
        iat: 1_795_000_000,
        exp: Some(1_795_086_400),
        ttl: Some(300),
        status_list: IetfList::encode(list, Some("https://status.example.kr/statuslists".into())),
    }
}

/// `encode/{entries}`: the cost of turning one list into its IETF `lst` (and a signed JWT), and
/// the size it comes out at, against classic zlib level 9 over the packed bytes.
/// `cargo bench --bench statusd -- encode/` (sizes 2^20, 2^24, 2^26; the sizes go to stderr).
fn encode(c: &mut Criterion) {
    let key = SigningKey::generate(Algorithm::Es256);
    for size in sizes() {
        let list = nationwide_list(size, 7);
        let packed = packing::pack_dense(&list, Order::LsbFirst);
        let ours = IetfList::encode(&list, None);
        let theirs = zlib9(&packed);
        // Sizes go to stderr so a bench run records them next to the timings.
        eprintln!(
            "encode/{size}: packed {} B, zlib-9 {} B, sparse {} B, ratio {:.3}",
            packed.len(),
            theirs.len(),
            ours.lst.len(),
            ours.lst.len() as f64 / theirs.len() as f64
        );
        let mut g = c.benchmark_group(format!("encode/{size}"));
        g.throughput(Throughput::Bytes(packed.len() as u64));
        if size > 1 << 20 {
            g.sample_size(10);
            g.warm_up_time(Duration::from_millis(500));
        }
        g.bench_function("zlib9_dense", |b| b.iter(|| zlib9(black_box(&packed))));
        g.bench_function("sparse_zlib", |b| {
            b.iter(|| IetfList::encode(black_box(&list), None))
        });
        g.bench_function("signed_jwt", |b| {
            b.iter(|| statuslist::sign_jwt(&claims(black_box(&list)), &key).unwrap())
        });
        g.finish();
    }
}

/// `decode/1048576`: what a relying party spends reading a 2^20 token's `lst` (inflate, unpack
/// into bit-planes). `cargo bench --bench statusd -- decode/`
fn decode(c: &mut Criterion) {
    let list = nationwide_list(1 << 20, 7);
    let enc = IetfList::encode(&list, None);
    c.bench_function("decode/1048576", |b| {
        b.iter(|| black_box(&enc).decode().unwrap())
    });
}

/// `lookup/bitmap_get`: one credential's status read from a 2^20 list's bit-planes, at random
/// indices: the data-structure part of a lookup. `cargo bench --bench statusd -- lookup/`
fn lookup(c: &mut Criterion) {
    let list = nationwide_list(1 << 20, 7);
    let mut rng = StdRng::seed_from_u64(1);
    let idx: Vec<u64> = (0..4096).map(|_| rng.gen_range(0..1 << 20)).collect();
    let mut i = 0;
    c.bench_function("lookup/bitmap_get", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            list.get(black_box(idx[i])).unwrap()
        })
    });
}

fn params() -> BuildParams {
    BuildParams {
        urls: statusd::routes::PublicUrls::new("https://status.example.kr"),
        issuer: "https://status.example.kr".into(),
        ttl: Duration::from_secs(300),
        lifetime: Duration::from_secs(86_400),
        tick: Duration::from_secs(1),
    }
}

fn meta(id: &str) -> ListMeta {
    ListMeta {
        id: id.into(),
        bits: 2,
        size: 1 << 20,
        version: 1,
        updated_at: 0,
        updated_ms: 0,
        ..Default::default()
    }
}

/// Credential of Zipf rank `r` (1-based) among `lists` x 2^20, scattered over the lists by the
/// same permutation as `loadtest/lookups.js`.
fn zipf_credential(rng: &mut StdRng, lists: u32) -> (u32, u32) {
    let n = f64::from(lists) * f64::from(1u32 << 20);
    let r = (rng.gen::<f64>() * (n + 1.0).ln())
        .exp()
        .floor()
        .clamp(1.0, n) as u64;
    let c = ((r - 1) * 16_777_259 + 982_451_653 % n as u64) % n as u64;
    ((c >> 20) as u32 + 1, (c & 0xF_FFFF) as u32)
}

/// `handler/*`: the public request handler without sockets (`Public::respond`, and
/// `Public::respond_batch` once a batch body is read), on a snapshot of 50 lists of 2^20
/// entries (3 under `cargo test`): routing, negotiation, the status read, the response with its
/// headers; not hyper, not the kernel. `lookup` reads random indices of one list,
/// `lookup_zipf_50_lists` the skewed mix over every list that `loadtest/lookups.js` sends,
/// `batch_20` one batch body of 20 indices (JSON in and out), `token_200` / `token_200_gzip` /
/// `w3c_200_gzip` a prebuilt list representation, `token_304` a revalidation.
/// `cargo bench --bench statusd -- handler/`
fn handler(c: &mut Criterion) {
    let key = SigningKey::generate(Algorithm::Es256);
    let p = params();
    let n_lists: u32 = if full_run() { 50 } else { 3 };
    let mut lists = Lists::default();
    for n in 1..=n_lists {
        let id = n.to_string();
        let ls = build::list_snapshot(
            meta(&id),
            nationwide_list(1 << 20, u64::from(n) + 6),
            &key,
            &p,
            SystemTime::now(),
        )
        .ok()
        .unwrap();
        lists.insert(id.into_boxed_str(), Arc::new(ls));
    }
    let etag = lists["1"].artefacts.jwt.etag.clone();
    let snapshots = Arc::new(SnapshotStore::default());
    snapshots.publish(build::snapshot(
        1,
        lists,
        &KeySet::new(vec![key.verifying_key()]),
        &p,
        SystemTime::now(),
    ));
    let public = Public::new(
        snapshots,
        Arc::new(Metrics::new()),
        PublicSettings::new(Duration::from_secs(10)),
    );
    let mut g = c.benchmark_group("handler");
    let none = HeaderMap::new();
    let mut paths = Vec::new();
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..1024 {
        paths.push(format!("/statuses/1/{}", rng.gen_range(0..1u32 << 20)));
    }
    let mut i = 0;
    g.bench_function("lookup", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            public.respond(&Method::GET, black_box(&paths[i]), None, &none)
        })
    });
    let zipf: Vec<String> = (0..4096)
        .map(|_| {
            let (list, idx) = zipf_credential(&mut rng, n_lists);
            format!("/statuses/{list}/{idx}")
        })
        .collect();
    let mut i = 0;
    g.bench_function("lookup_zipf_50_lists", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let (_, r) = public.respond(&Method::GET, black_box(&zipf[i]), None, &none);
            debug_assert_eq!(r.status(), 200);
            r
        })
    });
    let mut json = HeaderMap::new();
    json.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bodies: Vec<Vec<u8>> = (0..256)
        .map(|_| {
            let idx: Vec<u32> = (0..20).map(|_| zipf_credential(&mut rng, 1).1).collect();
            serde_json::to_vec(&serde_json::json!({ "idx": idx })).unwrap()
        })
        .collect();
    let mut i = 0;
    g.bench_function("batch_20", |b| {
        b.iter(|| {
            i = (i + 1) & 255;
            let r = public.respond_batch("/statuses/1", &json, black_box(&bodies[i]));
            debug_assert_eq!(r.status(), 200);
            r
        })
    });
    g.bench_function("token_200", |b| {
        b.iter(|| public.respond(&Method::GET, black_box("/statuslists/1"), None, &none))
    });
    let mut gzip = HeaderMap::new();
    gzip.insert(
        hyper::header::ACCEPT_ENCODING,
        HeaderValue::from_static("gzip, deflate, br"),
    );
    g.bench_function("token_200_gzip", |b| {
        b.iter(|| public.respond(&Method::GET, black_box("/statuslists/1"), None, &gzip))
    });
    g.bench_function("w3c_200_gzip", |b| {
        b.iter(|| {
            public.respond(
                &Method::GET,
                black_box("/bitstringlists/1/revocation"),
                None,
                &gzip,
            )
        })
    });
    let mut inm = HeaderMap::new();
    inm.insert(hyper::header::IF_NONE_MATCH, etag);
    inm.insert(
        hyper::header::ACCEPT,
        HeaderValue::from_static("application/statuslist+jwt"),
    );
    g.bench_function("token_304", |b| {
        b.iter(|| public.respond(&Method::GET, black_box("/statuslists/1"), None, &inm))
    });
    g.finish();
}

/// `snapshot/rebuild_one_of_50/1048576`: one list changed among 50: re-encode and re-sign every
/// representation of that list (JWT, CWT, three W3C credentials with gzip variants, roaring)
/// and assemble the next 50-list snapshot around it, as the refresher does off the request
/// path. `cargo bench --bench statusd -- snapshot/`
fn snapshot(c: &mut Criterion) {
    let key = SigningKey::generate(Algorithm::Es256);
    let keys = KeySet::new(vec![key.verifying_key()]);
    let p = params();
    // 50 lists as in the nationwide plan; a smoke run under `cargo test` builds 3.
    let n_lists = if full_run() { 50 } else { 3 };
    let lists: Lists = (0..n_lists)
        .map(|n| {
            let id = n.to_string();
            let ls = build::list_snapshot(
                meta(&id),
                nationwide_list(1 << 20, n),
                &key,
                &p,
                SystemTime::now(),
            )
            .ok()
            .unwrap();
            (id.into_boxed_str(), Arc::new(ls))
        })
        .collect();
    let changed = nationwide_list(1 << 20, 99);
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(20);
    g.bench_with_input(
        BenchmarkId::new("rebuild_one_of_50", 1 << 20),
        &changed,
        |b, changed| {
            b.iter(|| {
                let mut next = lists.clone();
                let ls =
                    build::list_snapshot(meta("7"), changed.clone(), &key, &p, SystemTime::now())
                        .ok()
                        .unwrap();
                next.insert("7".into(), Arc::new(ls));
                build::snapshot(2, next, &keys, &p, SystemTime::now())
            })
        },
    );
    // A re-encoding with the signed deltas of a full history (32 single changes: 11 deltas
    // signed in both forms) against one with only the empty delta: what deltas add per list.
    let mut history = statusd::snapshot::delta::History::default();
    let mut state = changed.clone();
    for k in 0..32u64 {
        let before = state.clone();
        state.set(1_000 + 7 * k, Status::INVALID).unwrap();
        history.record(k + 1, &before, k + 2, &state);
    }
    let at_33 = ListMeta {
        version: 33,
        ..meta("7")
    };
    g.bench_function("reencode_without_history", |b| {
        b.iter(|| build::artefacts(&at_33, &state, &key, &p, SystemTime::now()).unwrap())
    });
    g.bench_function("reencode_with_32_change_history", |b| {
        b.iter(|| {
            build::artefacts_with_history(&at_33, &state, &history, &key, &p, SystemTime::now())
                .unwrap()
        })
    });
    g.finish();
}

/// `cargo bench --bench statusd -- signing/`: signatures per second, file key against SoftHSM2.
fn signing(c: &mut Criterion) {
    use statusd::token::{Signer, TokenSigner as _};
    let msg = vec![b'x'; 400];
    let mut g = c.benchmark_group("signing");
    g.throughput(Throughput::Elements(1));
    let file = Signer::from(SigningKey::generate(Algorithm::Es256));
    g.bench_function("es256_file_key", |b| {
        b.iter(|| file.try_sign(black_box(&msg)).unwrap())
    });
    let (_dir, key, hsm) = softhsm_signer();
    g.bench_function("es256_softhsm2", |b| {
        b.iter(|| hsm.try_sign(black_box(&msg)).unwrap())
    });
    // The token alone: statusd's check of each signature under the public key left out.
    g.bench_function("es256_softhsm2_unchecked", |b| {
        use statusd::token::ExternalSigner as _;
        b.iter(|| key.sign(black_box(&msg)).unwrap())
    });
    g.finish();
}

/// A SoftHSM2 token in a temporary directory with an ES256 key made inside it, and the signer
/// statusd builds for it. Sets `SOFTHSM2_CONF` for this process (the module reads it once).
fn softhsm_signer() -> (
    TempDir,
    Arc<statusd::pkcs11::Pkcs11Key>,
    statusd::token::Signer,
) {
    use std::process::Command;
    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    let dir = TempDir(std::env::temp_dir().join(format!(
        "statusd-bench-hsm-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    )));
    std::fs::create_dir_all(dir.0.join("tokens")).unwrap();
    let conf = dir.0.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.0.join("tokens").display()
        ),
    )
    .unwrap();
    // SoftHSM2, loaded into this process, reads its configuration path from the environment
    // only; the bench sets it before it starts any thread.
    #[allow(clippy::disallowed_methods)]
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(out.status.success(), "{program}: {out:?}");
    };
    run(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
    );
    run(
        "pkcs11-tool",
        &[
            "--module",
            MODULE,
            "--token-label",
            "bench",
            "--login",
            "--pin",
            "1234",
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "k",
            "--id",
            "01",
        ],
    );
    let uri = statusd::pkcs11::Pkcs11Uri::parse("pkcs11:token=bench;object=k").unwrap();
    let key = statusd::pkcs11::Pkcs11Key::open(MODULE.into(), uri, "1234".to_owned().into())
        .expect("the SoftHSM2 key opens");
    let key = Arc::new(key);
    let signer = statusd::token::Signer::external(key.verifying_key().clone(), key.clone());
    (dir, key, signer)
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

criterion_group!(benches, encode, decode, lookup, handler, snapshot, signing);
criterion_main!(benches);
