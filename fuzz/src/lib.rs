//! The bodies of the fuzz targets, shared by the libFuzzer targets (`fuzz_targets/`) and the
//! regression test beside them ([`replay`](mod@replay), run by scripts/test), which replays the
//! committed corpus through [`TARGETS`] in CI.
//!
//! Each body takes arbitrary bytes, feeds them to one untrusted-input entry point and asserts
//! the properties that matter: no panic, decoded lists within [`MAX_ENTRIES`] and consistent with
//! their declared width, and encode → decode round trips wherever an encoder exists. A failed
//! assertion is a finding. Nothing here is used by the service itself, which is why it lives
//! outside statusd's library.

#[cfg(test)]
mod replay;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::Value as Json;
use statusd::http::{negotiate, Public, PublicSettings};
use statusd::routes::{LIST_OFFERS, VC_OFFERS};
use statusd::inspect::{self, Options};
use statusd::issuer::auth::{bearer, Tokens};
use statusd::issuer::{Operation, MAX_BATCH};
use statusd::metrics::{Metrics, Route};
use statusd::snapshot::{build, Lists, Snapshot, SnapshotStore};
use statusd::status::ietf::IetfList;
use statusd::status::packing::{self, Order};
use statusd::status::{deflate, sparse, w3c, Bits, Status, StatusList, MAX_ENTRIES};
use statusd::store::{redis as redis_store, ListMeta};
use statusd::token::{statuslist, vc, KeySet, SigningKey};
use std::io::Read as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// A target's body: arbitrary bytes in, a panic on a finding.
pub type Body = fn(&[u8]);

/// Every target: its name (the directory under `fuzz/corpus/` and
/// `tests/data/fuzz-regressions/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("http_request", http_request),
    ("headers", headers),
    ("jwt", jwt),
    ("cwt", cwt),
    ("ietf_list", ietf_list),
    ("inflate", inflate),
    ("codec_roundtrip", codec_roundtrip),
    ("w3c", w3c_credential),
    ("roaring", roaring),
    ("inspect", inspect_any),
    ("admin_json", admin_json),
    ("redis_load", redis_load),
    ("redis_feed", redis_feed),
];

/// The key of the IETF draft's examples (`kid` 12): the seeds it signed verify under it.
const SPEC_JWK: &str = r#"{"kty":"EC","d":"xzUEdsyLosZF0acZGRAjTKImb0lQvAvssDK5XIZELd0","use":"sig","crv":"P-256","x":"I3HWm_0Ds1dPMI-IWmf4mBmH-YaeAVbPVu7vB27CxXo","y":"6N_d5Elj9bs1htgV3okJKIdbHEpkgTmAluYKJemzn1M","kid":"12","alg":"ES256"}"#;

fn spec_key() -> &'static (SigningKey, KeySet) {
    static KEY: OnceLock<(SigningKey, KeySet)> = OnceLock::new();
    KEY.get_or_init(|| {
        let jwk: Json = serde_json::from_str(SPEC_JWK).expect("constant JWK");
        let key = SigningKey::from_jwk(&jwk).expect("the draft's key");
        let keys = KeySet::new(vec![key.verifying_key()]);
        (key, keys)
    })
}

/// Lists with more non-VALID entries than this skip the entry-by-entry checks and re-encoding:
/// those cost O(entries) by design (the encoders work from the non-VALID entries), and a few
/// kilobytes of hostile input can describe 2^26 of them, which would only time the harness out.
const MAX_CHECKED_NONZERO: u64 = 1 << 20;

/// The checks every decoded list must pass, whatever produced it.
fn check_list(list: &StatusList) {
    let bits = list.bits();
    assert!(list.size() > 0 && list.size() <= MAX_ENTRIES, "size bound");
    assert_eq!(list.size() % bits.per_byte(), 0, "size fills whole bytes");
    if list.count_nonzero() > MAX_CHECKED_NONZERO {
        return;
    }
    let mut n = 0u64;
    let mut last = None;
    for (idx, status) in list.iter_nonzero() {
        assert!(idx < list.size(), "index within the list");
        assert!(status.0 != 0 && status.0 <= bits.max_value(), "value fits");
        assert!(last < Some(idx), "increasing indices");
        last = Some(idx);
        n += 1;
    }
    assert_eq!(n, list.count_nonzero());
}

/// `a\nb\nc…` → up to `N` parts (the last one keeps any further separators).
fn parts<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&[][..]; N];
    let mut rest = data;
    for (i, slot) in out.iter_mut().enumerate() {
        if i + 1 == N {
            *slot = rest;
            break;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(p) => {
                *slot = &rest[..p];
                rest = &rest[p + 1..];
            }
            None => {
                *slot = rest;
                rest = &[];
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Public plane

/// The list the public-plane target serves: 131,072 two-bit entries (so it has W3C views).
const HTTP_LIST: &str = "l1";
const HTTP_ENTRIES: [(u64, Status); 4] = [
    (0, Status::INVALID),
    (1, Status::SUSPENDED),
    (5, Status(3)),
    (131_071, Status::INVALID),
];

fn public() -> &'static (Public, Arc<Snapshot>) {
    static PUBLIC: OnceLock<(Public, Arc<Snapshot>)> = OnceLock::new();
    PUBLIC.get_or_init(|| {
        let (key, keys) = spec_key();
        let p = build::BuildParams {
            urls: statusd::routes::PublicUrls::new("https://status.example"),
            issuer: "https://issuer.example".into(),
            ttl: Duration::from_secs(300),
            lifetime: Duration::from_secs(86_400),
            tick: Duration::from_secs(1),
        };
        let list = StatusList::from_entries(Bits::Two, w3c::MIN_ENTRIES, HTTP_ENTRIES)
            .expect("valid entries");
        let meta = ListMeta {
            id: HTTP_LIST.into(),
            bits: 2,
            size: w3c::MIN_ENTRIES,
            version: 1,
            updated_at: 0,
            updated_ms: 0,
            purpose: None,
            allocated: 0,
            life: Default::default(),
        };
        let now = SystemTime::now();
        let ls = build::list_snapshot(meta, list, key, &p, now)
            .unwrap_or_else(|_| unreachable!("an in-memory key always signs"));
        let lists = Lists::from_iter([(Box::from(HTTP_LIST), Arc::new(ls))]);
        let store = Arc::new(SnapshotStore::default());
        store.publish(build::snapshot(1, lists, keys, &p, now));
        let snap = store.load_full();
        let public = Public::new(
            store,
            Arc::new(Metrics::new()),
            PublicSettings::new(Duration::from_secs(10)),
        );
        (public, snap)
    })
}

/// `method byte, "path?query" line, then "name: value" header lines` → [`Public::respond`].
///
/// Properties: only the statuses the public plane documents; a 304 only when `If-None-Match`
/// was sent; a 200 lookup says exactly what the list holds for a canonical index; a 200 list
/// representation is one of the offered media types with the body the snapshot holds.
pub fn http_request(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
    ][usize::from(m) % 6]
        .clone();
    let [target, header_lines] = parts::<2>(rest);
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in header_lines.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let (public, snap) = public();
    // The raw target (what a caller of `respond` may pass) and, when it is a valid URI, the
    // path and query exactly as hyper hands them over.
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    check_response(public, snap, &method, path, query, &headers);
    if let Ok(uri) = target.parse::<hyper::Uri>() {
        check_response(public, snap, &method, uri.path(), uri.query(), &headers);
    }
}

fn check_response(
    public: &Public,
    snap: &Snapshot,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) {
    let (route, resp) = public.respond(method, path, query, headers);
    let status = resp.status();
    assert!(
        [200, 204, 304, 400, 404, 405, 406, 431, 501].contains(&status.as_u16()),
        "unexpected status {status} for {path:?}"
    );
    if status == StatusCode::NOT_MODIFIED {
        assert!(headers.contains_key(hyper::header::IF_NONE_MATCH));
    }
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(
            resp.headers()[hyper::header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
    if status != StatusCode::OK {
        return;
    }
    let body = http_body_util::BodyExt::collect(resp.into_body());
    let Ok(body) = futures_now(body);
    let body = body.to_bytes();
    let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let list = snap.list(HTTP_LIST).expect("the list");
    match route {
        Route::Lookup => {
            assert_eq!(segs, ["statuses", HTTP_LIST, segs[2]]);
            let idx: u64 = segs[2].parse().expect("a 200 lookup has a decimal index");
            assert_eq!(idx.to_string(), segs[2], "canonical index");
            let v: Json = serde_json::from_slice(&body).expect("lookup JSON");
            let expected = list.list.get(idx).expect("in range");
            assert_eq!(v["idx"], idx);
            assert_eq!(v["value"], expected.0);
            assert_eq!(v["list_id"], HTTP_LIST);
        }
        Route::StatusList => {
            assert_eq!(segs[..2], ["statuslists", HTTP_LIST]);
            let a = &list.artefacts;
            assert!(
                [&a.jwt, &a.cwt, &a.roaring]
                    .iter()
                    .any(|r| r.body == body || r.gzip.as_ref().is_some_and(|(g, _)| *g == body)),
                "a 200 list body is one of the snapshot's representations"
            );
        }
        _ => {}
    }
}

/// Drives a future that never waits (a collected `Full` body) to completion.
fn futures_now<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a Full body is always ready"),
    }
}

/// `Accept \n Accept-Encoding \n If-None-Match` → the negotiation parsers.
///
/// Properties: a choice is one of the offers; a range or coding that names nothing offered,
/// added before or after, changes nothing; a header listing the ETag always matches it.
pub fn headers(data: &[u8]) {
    let [accept, encoding, inm] = parts::<3>(data);
    for offers in [LIST_OFFERS, VC_OFFERS] {
        assert_eq!(negotiate::choose_media(None, offers), Some(0));
        let chosen = negotiate::choose_media(Some(accept), offers);
        assert!(chosen.is_none_or(|i| i < offers.len()));
        if std::str::from_utf8(accept).is_ok_and(|a| !a.trim().is_empty()) {
            for variant in [
                [accept, b", zz/zz"].concat(),
                [b"zz/zz;q=1, ", accept].concat(),
            ] {
                assert_eq!(
                    negotiate::choose_media(Some(&variant), offers),
                    chosen,
                    "an unrelated range changed the choice"
                );
            }
        }
    }
    let gz = negotiate::accepts_gzip(Some(encoding));
    if std::str::from_utf8(encoding).is_ok() {
        for variant in [[encoding, b", zz"].concat(), [b"zz, ", encoding].concat()] {
            assert_eq!(negotiate::accepts_gzip(Some(&variant)), gz);
        }
    }
    let etag = b"\"abc\"";
    let matched = negotiate::none_match(inm, etag);
    assert!(negotiate::none_match(&[inm, b", ", etag].concat(), etag));
    if inm.trim_ascii() != b"*" {
        assert_eq!(
            negotiate::none_match(&[inm, b", \"zz\""].concat(), etag),
            matched
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens and lists

/// A decoded `status_list` must inflate within the bound and survive re-encoding.
fn check_ietf(ietf: &IetfList) {
    let Ok(list) = ietf.decode() else {
        return;
    };
    check_list(&list);
    assert_eq!(list.bits(), ietf.bits);
    if list.count_nonzero() > MAX_CHECKED_NONZERO {
        return;
    }
    let again = IetfList::encode(&list, ietf.aggregation_uri.clone());
    assert_eq!(again.decode().as_ref(), Ok(&list), "IETF re-encoding");
}

/// Status List Token JWT and `vc+jwt` as text.
///
/// Properties: whatever verifies under the draft's key also decodes unverified, with the same
/// claims; claims re-signed with that key verify back to themselves; the list is bounded.
pub fn jwt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (key, keys) = spec_key();
    let unverified = statuslist::decode_jwt_unverified(text);
    if let Ok(claims) = statuslist::verify_jwt(text, keys) {
        assert_eq!(unverified.as_ref().map(|u| &u.claims), Ok(&claims));
    }
    if let Ok(u) = &unverified {
        let token = statuslist::sign_jwt(&u.claims, key).expect("an in-memory key signs");
        assert_eq!(statuslist::verify_jwt(&token, keys).as_ref(), Ok(&u.claims));
        check_ietf(&u.claims.status_list);
    }
    let vc_unverified = vc::decode_vc_jwt_unverified(text);
    if let Ok(c) = vc::verify_vc_jwt(text, keys) {
        assert_eq!(vc_unverified.as_ref().map(|u| &u.credential), Ok(&c));
    }
    if let Some(u) = vc_unverified.ok().filter(|u| !has_float(&u.credential)) {
        let token = vc::sign_vc_jwt(&u.credential, key).expect("an in-memory key signs");
        assert_eq!(vc::verify_vc_jwt(&token, keys), Ok(u.credential.clone()));
        check_credential(&u.credential, 0);
    }
}

/// Whether a JSON value holds a float, which serde_json may not read back bit for bit (its
/// exact float parsing is an opt-in feature): such credentials skip the re-signing check.
fn has_float(v: &Json) -> bool {
    match v {
        Json::Number(n) => n.is_f64(),
        Json::Array(a) => a.iter().any(has_float),
        Json::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

/// Status List Token CWT (COSE_Sign1) bytes. Same properties as [`jwt`].
pub fn cwt(data: &[u8]) {
    let (key, keys) = spec_key();
    let unverified = statuslist::decode_cwt_unverified(data);
    if let Ok(claims) = statuslist::verify_cwt(data, keys) {
        assert_eq!(unverified.as_ref().map(|u| &u.claims), Ok(&claims));
    }
    if let Ok(u) = unverified {
        let token = statuslist::sign_cwt(&u.claims, key).expect("an in-memory key signs");
        assert_eq!(statuslist::verify_cwt(&token, keys), Ok(u.claims.clone()));
        check_ietf(&u.claims.status_list);
    }
}

/// A `status_list` object: first byte even → JSON, odd → CBOR.
///
/// Properties: the object re-serialises to itself in both forms; the list is bounded and
/// re-encodes to the same entries.
pub fn ietf_list(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ietf = if sel % 2 == 0 {
        let Ok(v) = serde_json::from_slice::<Json>(body) else {
            return;
        };
        IetfList::from_json(&v)
    } else {
        let Ok(v) = ciborium::from_reader::<ciborium::Value, _>(body) else {
            return;
        };
        IetfList::from_cbor(&v)
    };
    let Ok(ietf) = ietf else {
        return;
    };
    assert_eq!(IetfList::from_json(&ietf.to_json()).as_ref(), Ok(&ietf));
    assert_eq!(IetfList::from_cbor(&ietf.to_cbor()).as_ref(), Ok(&ietf));
    check_ietf(&ietf);
}

/// Reference inflation with flate2's streaming decoder, reading at most `limit + 1` bytes.
fn reference_inflate(data: &[u8], gzip: bool, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let cap = limit as u64 + 1;
    let r = if gzip {
        flate2::read::GzDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out)
    };
    r.ok().map(|_| out)
}

/// Bounded ZLIB/GZIP inflation, and the sparse writers. First byte: bit 0 picks ZLIB or GZIP,
/// bit 1 decoding arbitrary bytes or writing a sparse array built from the rest.
///
/// Properties (decoding): never more than the limit; what we accept, flate2 decodes to the same
/// bytes. (Writing): the stream inflates, with ours and with flate2, to exactly the array.
pub fn inflate(data: &[u8]) {
    let [sel, lim, rest @ ..] = data else {
        return;
    };
    let gzip = sel & 1 == 1;
    if sel & 2 == 0 {
        // Small limits exercise the bound; 255 means the real one of an 8-bit MAX_ENTRIES list.
        let limit = match *lim {
            255 => packing::packed_len(Bits::Eight, MAX_ENTRIES),
            l => usize::from(l) * 64,
        };
        let ours = if gzip {
            deflate::inflate_gzip(rest, limit)
        } else {
            deflate::inflate_zlib(rest, limit)
        };
        if let Ok(out) = ours {
            assert!(out.len() <= limit, "inflated past the limit");
            assert_eq!(
                reference_inflate(rest, gzip, limit).as_deref(),
                Some(&out[..]),
                "flate2 disagrees"
            );
        }
    } else {
        // A sparse array: length from two bytes, then (gap, byte) pairs.
        let len = usize::from(*lim) << 8 | usize::from(rest.first().copied().unwrap_or(0));
        let mut dense = vec![0u8; len];
        let mut items = Vec::new();
        let mut off = 0usize;
        for pair in rest.get(1..).unwrap_or_default().chunks_exact(2) {
            off += usize::from(pair[0]);
            if off >= len {
                break;
            }
            if pair[1] != 0 {
                dense[off] = pair[1];
                items.push((off, pair[1]));
            }
            off += 1;
        }
        let limit = len;
        let (stream, ours) = if gzip {
            let s = deflate::gzip_sparse(len, items);
            let o = deflate::inflate_gzip(&s, limit);
            (s, o)
        } else {
            let s = deflate::zlib_sparse(len, items);
            let o = deflate::inflate_zlib(&s, limit);
            (s, o)
        };
        assert_eq!(ours.as_deref(), Ok(&dense[..]), "sparse writer round trip");
        assert_eq!(
            reference_inflate(&stream, gzip, limit).as_deref(),
            Some(&dense[..]),
            "flate2 reads the sparse writer's stream"
        );
    }
}

/// A list built from the bytes, through every encoder and back.
///
/// Bytes: width selector, two bytes of size (in units of 8 entries), then `(gap, value)` pairs.
/// Properties: IETF (ZLIB), roaring, W3C (GZIP, for lists long enough) and the Redis bitmap each
/// round-trip to the same list; the sparse packers agree with the dense reference.
pub fn codec_roundtrip(data: &[u8]) {
    let [b, s0, s1, rest @ ..] = data else {
        return;
    };
    let bits = [Bits::One, Bits::Two, Bits::Four, Bits::Eight][usize::from(b & 3)];
    let size = (u32::from(u16::from_le_bytes([*s0, *s1])) + 1) * 8;
    let mut entries = Vec::new();
    let mut idx = 0u64;
    for pair in rest.chunks_exact(2) {
        idx += u64::from(pair[0]);
        if idx >= u64::from(size) {
            break;
        }
        entries.push((idx, Status(pair[1] & bits.max_value())));
        idx += 1;
    }
    let list = StatusList::from_entries(bits, size, entries).expect("entries within the list");
    check_list(&list);
    let ietf = IetfList::encode(&list, None);
    assert_eq!(ietf.decode().as_ref(), Ok(&list), "IETF round trip");
    assert_eq!(
        sparse::decode(&sparse::encode(&list)).as_ref(),
        Ok(&list),
        "roaring round trip"
    );
    for order in [Order::LsbFirst, Order::MsbFirst] {
        let dense = packing::pack_dense(&list, order);
        assert_eq!(packing::unpack(bits, order, &dense).as_ref(), Ok(&list));
        let nonzero: Vec<(usize, u8)> =
            packing::pack_sparse(bits, order, list.iter_nonzero().map(|(i, s)| (i, s.0))).collect();
        let expected: Vec<(usize, u8)> = dense
            .iter()
            .enumerate()
            .filter(|(_, &b)| b != 0)
            .map(|(i, &b)| (i, b))
            .collect();
        assert_eq!(nonzero, expected, "sparse packing agrees with dense");
    }
    // W3C needs at least 131,072 entries: the same entries in a list that long.
    let long = StatusList::from_entries(
        bits,
        size.max(w3c::MIN_ENTRIES),
        list.iter_nonzero().map(|(i, s)| (u64::from(i), s)),
    )
    .expect("same entries, longer list");
    let encoded = w3c::encode_list(
        bits,
        long.size(),
        long.iter_nonzero().map(|(i, s)| (i, s.0)),
    )
    .expect("long enough");
    assert_eq!(
        w3c::decode_list(&encoded, bits, w3c::MIN_ENTRIES).as_ref(),
        Ok(&long),
        "W3C round trip"
    );
}

fn check_credential(v: &Json, min_entries: u32) {
    let Ok(parsed) = w3c::parse_credential(v, min_entries) else {
        return;
    };
    check_list(&parsed.list);
    assert!(parsed.list.size() >= min_entries);
    assert_eq!(parsed.list.bits(), parsed.status_size);
    if parsed.list.size() >= w3c::MIN_ENTRIES && parsed.list.count_nonzero() <= MAX_CHECKED_NONZERO
    {
        let encoded = w3c::encode_list(
            parsed.status_size,
            parsed.list.size(),
            parsed.list.iter_nonzero().map(|(i, s)| (i, s.0)),
        )
        .expect("long enough");
        assert_eq!(
            w3c::decode_list(&encoded, parsed.status_size, min_entries).as_ref(),
            Ok(&parsed.list),
            "W3C re-encoding"
        );
    }
}

/// A W3C `BitstringStatusListCredential` as JSON, or a bare `encodedList` (`u…`).
///
/// Properties: the list honours the minimum length given and its `statusSize`, is bounded, and
/// re-encodes to the same entries.
pub fn w3c_credential(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<Json>(data) {
        check_credential(&v, w3c::MIN_ENTRIES);
        check_credential(&v, 8);
    } else if let Ok(text) = std::str::from_utf8(data) {
        for bits in [Bits::One, Bits::Two] {
            if let Ok(list) = w3c::decode_list(text, bits, 8) {
                check_list(&list);
                assert_eq!(list.bits(), bits);
            }
        }
    }
}

/// statusd's roaring form. Properties: bounded, and re-encodes to the same list.
pub fn roaring(data: &[u8]) {
    if let Ok(list) = sparse::decode(data) {
        check_list(&list);
        if list.count_nonzero() > MAX_CHECKED_NONZERO {
            return;
        }
        assert_eq!(sparse::decode(&sparse::encode(&list)).as_ref(), Ok(&list));
    }
}

/// `statusd inspect` on anything. Properties: a report is bounded and self-consistent, and
/// whatever verifies under the draft's key also inspects without a key, identically.
pub fn inspect_any(data: &[u8]) {
    let opts = Options {
        keys: None,
        indices: vec![0, 3],
        // `--all` lists every entry by design: on a hostile full list that is the harness's
        // cost, not the decoder's.
        all: false,
        now: 1_700_000_000,
        min_entries: 8,
        trust_anchors: Vec::new(),
    };
    let plain = inspect::inspect(data, &opts);
    if let Ok(r) = &plain {
        assert!(r.size > 0 && r.size <= MAX_ENTRIES);
        assert!([1, 2, 4, 8].contains(&r.bits));
        let non_valid: u64 = r.non_valid.values().sum();
        assert!(non_valid <= u64::from(r.size));
        assert_eq!(r.entries.len(), 2);
    }
    let keyed = Options {
        keys: Some(spec_key().1.clone()),
        ..opts
    };
    if let Ok(k) = inspect::inspect(data, &keyed) {
        let p = plain
            .as_ref()
            .expect("verified input inspects without a key");
        assert_eq!((k.format, k.bits, k.size), (p.format, p.bits, p.size));
        assert_eq!(k.non_valid, p.non_valid);
        assert_eq!(k.entries, p.entries);
    }
}

// ---------------------------------------------------------------------------------------------
// Issuer API

/// Admin JSON bodies and credentials. First byte: 0 one operation, 1 a batch body, 2 a tokens
/// file, 3 an `Authorization` value.
///
/// Properties: operations serialise back to themselves; a syntactically valid operation has
/// a valid credential id; a batch has at most 10,000 items and reports bad items in order;
/// every token line parsed authenticates its own name; a bearer token is visible ASCII and
/// re-parses to itself.
pub fn admin_json(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        0 => {
            if let Ok(op) = serde_json::from_slice::<Operation>(body) {
                check_operation(&op);
            }
        }
        1 => match statusd::admin::api::parse_batch(body) {
            Ok(ops) => {
                assert!(ops.len() <= MAX_BATCH);
                ops.iter().for_each(check_operation);
            }
            Err(statusd::problem::Problem::BatchInvalid(items)) => {
                assert!(!items.is_empty());
                assert!(items.windows(2).all(|w| w[0].0 < w[1].0));
            }
            Err(_) => {}
        },
        2 => {
            let Ok(text) = std::str::from_utf8(body) else {
                return;
            };
            let Ok(tokens) = Tokens::parse(text) else {
                return;
            };
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let f: Vec<&str> = line.split_whitespace().collect();
                let caller = tokens
                    .authenticate(f[2].as_bytes())
                    .expect("a parsed token authenticates");
                assert_eq!(caller.name, f[0]);
            }
        }
        _ => {
            if let Some(token) = bearer(body) {
                assert!(!token.is_empty() && token.iter().all(u8::is_ascii_graphic));
                assert_eq!(bearer(&[b"Bearer ", token].concat()), Some(token));
            }
        }
    }
}

fn check_operation(op: &Operation) {
    let v = serde_json::to_value(op).expect("operations serialise");
    assert_eq!(
        serde_json::from_value::<Operation>(v).ok().as_ref(),
        Some(op)
    );
    if op.check().is_ok() {
        assert!(statusd::store::registry::check_credential_id(
            op.credential_id()
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

/// The replies of the `load` transaction as RESP bytes: `*2` then the `HGETALL meta` reply and
/// the `GET data` reply. Properties: a loaded list matches its meta, is bounded, and its Redis
/// bitmap written back loads to the same list.
pub fn redis_load(data: &[u8]) {
    let Ok(redis::Value::Array(replies)) = redis::parse_redis_value(data) else {
        return;
    };
    let [meta, bitmap] = replies.as_slice() else {
        return;
    };
    let Ok((m, list)) = redis_store::parse_list("l1", meta, bitmap.clone()) else {
        return;
    };
    check_list(&list);
    assert_eq!(
        (m.bits, m.size, m.id.as_str()),
        (list.bits().get(), list.size(), "l1")
    );
    let written = packing::pack_dense(&list, Order::MsbFirst);
    let (_, again) = redis_store::parse_list("l1", meta, redis::Value::BulkString(written))
        .expect("a written-back bitmap loads");
    assert_eq!(again, list, "Redis bitmap round trip");
}

/// The replies of the `changes_since` transaction (`HGETALL meta`, `XRANGE feed`) as RESP, after
/// one byte giving the caller's version. Properties: a replay ends at the meta's version, never
/// goes backwards or further than the feed allows, and every change fits the list.
pub fn redis_feed(data: &[u8]) {
    let Some((&v, resp)) = data.split_first() else {
        return;
    };
    let Ok(redis::Value::Array(replies)) = redis::parse_redis_value(resp) else {
        return;
    };
    let [meta, feed] = replies.as_slice() else {
        return;
    };
    let version = u64::from(v);
    let Ok(Some((current, changes))) = redis_store::parse_changes_since("l1", version, meta, feed)
    else {
        return;
    };
    assert!(current >= version && current - version <= redis_store::MAX_CATCHUP);
    let m = redis_store::parse_list("l1", meta, redis::Value::Nil)
        .expect("a replayable list has valid meta")
        .0;
    assert_eq!(m.version, current);
    let bits = Bits::new(m.bits.into()).expect("valid meta");
    for c in &changes {
        assert!(c.idx < m.size && c.status.0 <= bits.max_value());
    }
}
