//! Property tests: random status lists of every width (`bits` 1, 2, 4, 8), empty, sparse, dense,
//! made of runs or of repeating patterns, round-trip through every encoding statusd publishes,
//! checked against a naive reference written here and decoded with independent decoders.
//!
//! The reference is a plain `Vec<u8>` of values, one per entry, packed with the formulas of the
//! shared spec: §1.2 (IETF: entry `i` in byte `i / (8/bits)` at shift `(i % (8/bits)) * bits`,
//! least significant bits first) and §3.4 (W3C: bit `p` of the bitstring is byte `p / 8` under
//! mask `0x80 >> (p % 8)`, entry `i` starts at bit `i * bits`, its most significant bit first).
//! Nothing here calls `packing::pack_dense`; compressed bytes are opened with flate2's own
//! `ZlibDecoder` / `GzDecoder`, CBOR with ciborium, roaring bitmaps with `roaring`.
//!
//! Properties:
//! 1. the model: `StatusList::set` / `get` / `iter_nonzero` / `count_nonzero` / `indices_with`
//!    agree with the reference after any sequence of writes (overwrites and clears included);
//! 2. IETF: `IetfList::encode` inflates to the reference's LSB-first bytes, `decode` gives the
//!    list back, and so does a stream compressed by flate2; JSON and CBOR forms round-trip;
//! 3. signed Status List Tokens (JWT and CWT, ES256 and EdDSA) verify to the same list;
//! 4. W3C: each published view's credential, `encodedList` (GZIP, MSB-first) and `vc+jwt`
//!    carry exactly the reference view; the decoder reads flate2-compressed bitstrings of any
//!    size; lists below the minimum are refused;
//! 5. the roaring form round-trips and holds exactly the reference's index sets;
//! 6. robustness: arbitrary or corrupted input to every decoder returns an error or a value,
//!    never a panic; inflation respects its limit exactly; truncated streams and trailing
//!    bytes are always refused.
//!
//! Lists of up to 32,768 entries may be dense everywhere; the W3C lists (131,072 entries and
//! more) keep dense regions and runs to at most 16,384 and 10,000 entries, because decoding a
//! list whose roaring containers are full takes seconds per list in a debug build (see
//! [`layers`]). The whole file runs in roughly 15–30 s in a debug build on two cores.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::Value as Cbor;
use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use proptest::collection::vec as pvec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use roaring::RoaringBitmap;
use serde_json::Value as Json;
use statusd::status::deflate::{self, InflateError};
use statusd::status::ietf::IetfList;
use statusd::status::w3c::{self, CredentialParams, Purpose, MIN_ENTRIES};
use statusd::status::{sparse, Bits, Status, StatusList};
use statusd::token::{self, Algorithm, KeySet, SigningKey, StatusListClaims};
use std::io::{Read as _, Write as _};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// The naive reference

/// Every width the IETF draft allows.
const WIDTHS: [u8; 4] = [1, 2, 4, 8];

fn bits_of(bits: u8) -> Bits {
    Bits::new(bits.into()).expect("a registered width")
}

fn max_value(bits: u8) -> u8 {
    ((1u16 << bits) - 1) as u8
}

/// IETF (spec §1.2): `per = 8 / bits`, `byte = i / per`, `shift = (i % per) * bits`.
fn naive_pack_lsb(bits: u8, values: &[u8]) -> Vec<u8> {
    let per = 8 / usize::from(bits);
    let mut out = vec![0u8; values.len().div_ceil(per)];
    for (i, &v) in values.iter().enumerate() {
        let shift = (i % per) * usize::from(bits);
        out[i / per] |= v << shift;
    }
    out
}

/// W3C (spec §3.4), bit by bit: entry `i` occupies bitstring positions `i*bits ..`, its most
/// significant bit first; position `p` is byte `p / 8`, mask `0x80 >> (p % 8)`.
fn naive_pack_msb(bits: u8, values: &[u8]) -> Vec<u8> {
    let bits = usize::from(bits);
    let mut out = vec![0u8; (values.len() * bits).div_ceil(8)];
    for (i, &v) in values.iter().enumerate() {
        for j in 0..bits {
            if (v >> (bits - 1 - j)) & 1 == 1 {
                let p = i * bits + j;
                out[p / 8] |= 0x80 >> (p % 8);
            }
        }
    }
    out
}

/// The non-zero entries of the reference, in index order.
fn nonzero(values: &[u8]) -> Vec<(u32, u8)> {
    values
        .iter()
        .enumerate()
        .filter(|(_, &v)| v != 0)
        .map(|(i, &v)| (i as u32, v))
        .collect()
}

/// The W3C view of the reference for `purpose`: its width and one value per entry, padded with
/// VALID entries to whole bytes (a bitstring's size is its length in bits over `statusSize`).
fn naive_view(bits: u8, values: &[u8], purpose: Purpose) -> (u8, Vec<u8>) {
    let (width, mut view): (u8, Vec<u8>) = match purpose {
        Purpose::Revocation => (1, values.iter().map(|&v| u8::from(v == 1)).collect()),
        Purpose::Suspension => (1, values.iter().map(|&v| u8::from(v == 2)).collect()),
        Purpose::Message => (bits, values.to_vec()),
        Purpose::Refresh => unreachable!("statusd does not publish refresh lists"),
    };
    let per = 8 / usize::from(width);
    view.resize(view.len().div_ceil(per) * per, 0);
    (width, view)
}

/// The reference for one list: its values, their non-zero entries and the [`StatusList`]
/// built from those entries alone with `from_entries`. Built once per case: with roaring's
/// bitmaps a debug build spends real time on every list it builds.
struct Reference {
    bits: u8,
    values: Vec<u8>,
    nonzero: Vec<(u32, u8)>,
    list: StatusList,
}

impl Reference {
    fn new(bits: u8, values: Vec<u8>) -> Self {
        let nonzero = nonzero(&values);
        let list = StatusList::from_entries(
            bits_of(bits),
            values.len() as u32,
            nonzero.iter().map(|&(i, v)| (u64::from(i), Status(v))),
        )
        .expect("a valid reference list");
        Reference {
            bits,
            values,
            nonzero,
            list,
        }
    }

    /// `list` holds exactly the reference values: same width, same size, same non-zero
    /// entries (read through `iter_nonzero`, not `PartialEq`), and equals the reference list.
    fn check(&self, list: &StatusList) -> Result<(), TestCaseError> {
        prop_assert_eq!(list.bits().get(), self.bits);
        prop_assert_eq!(list.size() as usize, self.values.len());
        let got: Vec<(u32, u8)> = list.iter_nonzero().map(|(i, s)| (i, s.0)).collect();
        let want = &self.nonzero;
        if got != *want {
            let first = (0..got.len().max(want.len())).find(|&k| got.get(k) != want.get(k));
            return Err(TestCaseError::fail(format!(
                "non-zero entries differ: {} decoded vs {} expected, first difference at \
                 position {first:?} ({:?} vs {:?})",
                got.len(),
                want.len(),
                first.and_then(|k| got.get(k)),
                first.and_then(|k| want.get(k)),
            )));
        }
        prop_assert!(*list == self.list, "StatusList equality");
        Ok(())
    }
}

fn zlib_inflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ZlibDecoder::new(data)
        .read_to_end(&mut out)
        .expect("flate2 reads our ZLIB stream");
    out
}

fn gzip_inflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("flate2 reads our GZIP member");
    out
}

fn zlib_deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::new(level));
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

fn gzip_deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut z = GzEncoder::new(Vec::new(), Compression::new(level));
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

/// The first offset where two byte arrays differ, with both bytes there (or `None` past the
/// end): a readable failure message for arrays of many kilobytes.
fn first_byte_difference(a: &[u8], b: &[u8]) -> Option<(usize, Option<u8>, Option<u8>)> {
    (0..a.len().max(b.len()))
        .find(|&k| a.get(k) != b.get(k))
        .map(|k| (k, a.get(k).copied(), b.get(k).copied()))
}

macro_rules! prop_assert_bytes_eq {
    ($got:expr, $want:expr, $what:expr) => {{
        let (got, want): (&[u8], &[u8]) = (&$got, &$want);
        prop_assert!(
            got == want,
            "{}: {} vs {} bytes, first difference (offset, got, want) = {:?}",
            $what,
            got.len(),
            want.len(),
            first_byte_difference(got, want)
        );
    }};
}

// ---------------------------------------------------------------------------------------------
// Generated lists

/// One step of building a list. Positions are reduced modulo the list size when applied
/// (`u32::MAX` means the last entry) and values are masked to the width, so one strategy serves
/// every size and width.
#[derive(Clone, Debug)]
enum Layer {
    /// One entry.
    Point { idx: u32, value: u8 },
    /// `len` consecutive entries set to `value` (0 clears them): long runs of equal bytes.
    Run { start: u32, len: u32, value: u8 },
    /// Random values in `[start, start + len)`, each zero with probability `zeros / 256`.
    Noise {
        seed: u64,
        start: u32,
        len: u32,
        zeros: u8,
    },
    /// `value` every `period` entries: the repeating patterns far matches copy.
    Periodic {
        start: u32,
        period: u32,
        count: u32,
        value: u8,
    },
}

/// A list to generate: width, size and how its entries are written.
#[derive(Clone, Debug)]
struct Case {
    bits: u8,
    size: usize,
    layers: Vec<Layer>,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Case {
    fn pos(&self, idx: u32) -> usize {
        if idx == u32::MAX {
            self.size - 1
        } else {
            idx as usize % self.size
        }
    }

    /// The writes the layers make, in order: `(index, value)`, zeros included.
    fn writes(&self) -> Vec<(usize, u8)> {
        let mask = max_value(self.bits);
        let mut out = Vec::new();
        for layer in &self.layers {
            match *layer {
                Layer::Point { idx, value } => out.push((self.pos(idx), value & mask)),
                Layer::Run { start, len, value } => {
                    let start = self.pos(start);
                    let end = self.size.min(start.saturating_add(len as usize));
                    out.extend((start..end).map(|i| (i, value & mask)));
                }
                Layer::Noise {
                    seed,
                    start,
                    len,
                    zeros,
                } => {
                    let mut state = seed;
                    let start = self.pos(start);
                    let end = self.size.min(start.saturating_add(len as usize));
                    out.extend((start..end).map(|i| {
                        let r = splitmix(&mut state);
                        let v = if (r & 0xff) < u64::from(zeros) {
                            0
                        } else {
                            (r >> 8) as u8 & mask
                        };
                        (i, v)
                    }));
                }
                Layer::Periodic {
                    start,
                    period,
                    count,
                    value,
                } => {
                    let start = self.pos(start);
                    out.extend(
                        (start..self.size)
                            .step_by(period as usize)
                            .take(count as usize)
                            .map(|i| (i, value & mask)),
                    );
                }
            }
        }
        out
    }

    /// The reference: one value per entry.
    fn values(&self) -> Vec<u8> {
        let mut values = vec![0u8; self.size];
        for (i, v) in self.writes() {
            values[i] = v;
        }
        values
    }
}

/// Values weighted towards the registered statuses (INVALID, SUSPENDED, 3), any byte otherwise.
fn value() -> impl Strategy<Value = u8> {
    prop_oneof![Just(1u8), Just(2), Just(3), any::<u8>()]
}

/// Anywhere, or the first or last entry.
fn index() -> impl Strategy<Value = u32> {
    prop_oneof![3 => any::<u32>(), 1 => Just(0u32), 1 => Just(u32::MAX)]
}

/// Run lengths; `whole` adds runs over the whole list.
fn run_len(whole: bool) -> BoxedStrategy<u32> {
    let some = prop_oneof![1..=16u32, 17..=600u32, 601..=10_000u32];
    if whole {
        prop_oneof![3 => some, 1 => Just(u32::MAX)].boxed()
    } else {
        some.boxed()
    }
}

fn point() -> impl Strategy<Value = Layer> {
    (index(), value()).prop_map(|(idx, value)| Layer::Point { idx, value })
}

fn run(whole: bool) -> impl Strategy<Value = Layer> {
    (index(), run_len(whole), value()).prop_map(|(start, len, value)| Layer::Run {
        start,
        len,
        value,
    })
}

/// Random values over `1..=max_len` entries from anywhere, or (`max_len` 0) over the whole list.
fn noise(max_len: u32) -> impl Strategy<Value = Layer> {
    (
        any::<u64>(),
        index(),
        1..=max_len.max(1),
        prop_oneof![Just(0u8), Just(128), Just(240), any::<u8>()],
    )
        .prop_map(move |(seed, start, len, zeros)| Layer::Noise {
            seed,
            start: if max_len == 0 { 0 } else { start },
            len: if max_len == 0 { u32::MAX } else { len },
            zeros,
        })
}

fn periodic() -> impl Strategy<Value = Layer> {
    (index(), 1..=300u32, 1..=2000u32, value()).prop_map(|(start, period, count, value)| {
        Layer::Periodic {
            start,
            period,
            count,
            value,
        }
    })
}

/// Empty, sparse, dense, runs, repeating patterns, or a mix of everything.
///
/// With `whole`, dense lists are random everywhere and runs may cover the whole list. Without
/// it (the W3C lists of 2^17 entries and more), "dense" is a random region of up to 16,384
/// entries and runs stop at 10,000: decoding a list whose roaring containers are full costs
/// seconds per list in a debug build (see `StatusList::from_sorted_nonzero`), so the large
/// lists keep most of their entries VALID. Fully dense lists are covered at up to 32,768 entries.
fn layers(whole: bool) -> impl Strategy<Value = Vec<Layer>> {
    prop_oneof![
        1 => Just(Vec::new()),
        3 => pvec(point(), 1..64),
        2 => noise(if whole { 0 } else { 16_384 }).prop_map(|n| vec![n]),
        3 => pvec(run(whole), 1..16),
        2 => pvec(periodic(), 1..4),
        3 => pvec(prop_oneof![point(), run(whole), noise(4096), periodic()], 1..12),
    ]
}

fn width() -> impl Strategy<Value = u8> {
    proptest::sample::select(WIDTHS.to_vec())
}

/// Lists of up to 32,768 entries: `8 k` entries, or a few bytes' worth (12 two-bit entries, 3
/// eight-bit entries: any size filling whole bytes).
fn ietf_case() -> impl Strategy<Value = Case> {
    let size = prop_oneof![
        2 => (1..=64usize).prop_map(|k| (false, k)),
        2 => (65..=512usize).prop_map(|k| (false, k)),
        2 => (513..=4096usize).prop_map(|k| (false, k)),
        1 => (1..=8usize).prop_map(|k| (true, k)),
    ];
    (width(), size, layers(true)).prop_map(|(bits, (small, k), layers)| Case {
        bits,
        size: if small {
            k * (8 / usize::from(bits))
        } else {
            8 * k
        },
        layers,
    })
}

/// W3C lists: at least 131,072 entries, sometimes a few more (not always a multiple of 8, so
/// the 1-bit views are padded), sometimes 2^18.
fn w3c_case() -> impl Strategy<Value = Case> {
    let extra = prop_oneof![3 => Just(0usize), 1 => 1..=7usize, 2 => 8..=4096usize, 1 => Just(MIN_ENTRIES as usize)];
    (width(), extra, layers(false)).prop_map(|(bits, extra, layers)| {
        let per = 8 / usize::from(bits);
        let extra = if extra == MIN_ENTRIES as usize {
            extra
        } else {
            extra * per
        };
        Case {
            bits,
            size: MIN_ENTRIES as usize + extra,
            layers,
        }
    })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Shrinking re-runs whole encodings of large lists; a bounded search keeps a failure
        // report quick while still shrinking the layers a good way.
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    }
}

/// One key per algorithm, generated once for the whole run, with the set that verifies it.
fn key(alg: Algorithm) -> &'static (SigningKey, KeySet) {
    static ES256: OnceLock<(SigningKey, KeySet)> = OnceLock::new();
    static EDDSA: OnceLock<(SigningKey, KeySet)> = OnceLock::new();
    static ES384: OnceLock<(SigningKey, KeySet)> = OnceLock::new();
    let cell = match alg {
        Algorithm::Es256 => &ES256,
        Algorithm::EdDsa => &EDDSA,
        Algorithm::Es384 => &ES384,
        Algorithm::Ps256 | Algorithm::Rs256 => unreachable!("RSA keys live in a PKCS#11 token"),
    };
    cell.get_or_init(|| {
        let key = SigningKey::generate(alg);
        let keys = KeySet::new(vec![key.verifying_key()]);
        (key, keys)
    })
}

fn params(id: &str) -> CredentialParams<'_> {
    CredentialParams {
        id,
        issuer: "https://status.example",
        valid_from: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        valid_until: Some(UNIX_EPOCH + Duration::from_secs(1_700_086_400)),
        ttl_ms: Some(300_000),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The model

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn model_agrees_with_the_reference(case in ietf_case()) {
        let (bits, size) = (case.bits, case.size);
        let mut list = StatusList::new(bits_of(bits), size as u32).unwrap();
        let mut values = vec![0u8; size];
        for (i, v) in case.writes() {
            let old = list.set(i as u64, Status(v)).unwrap();
            prop_assert_eq!(old.0, values[i], "set({}) returns the previous value", i);
            values[i] = v;
        }
        for (i, &v) in values.iter().enumerate() {
            prop_assert_eq!(list.get(i as u64).unwrap().0, v, "get({})", i);
        }
        prop_assert!(list.get(size as u64).is_err());
        prop_assert_eq!(list.count_nonzero(), values.iter().filter(|&&v| v != 0).count() as u64);
        // iter_nonzero, and equality with the list built from the final values alone (so
        // cleared entries leave nothing behind).
        let reference = Reference::new(bits, values);
        reference.check(&list)?;
        // indices_with: every value of a narrow list; for 8 bits, the registered values, the
        // widest one and a few that occur (each query intersects all the planes).
        let mut queried: Vec<u8> = if bits < 8 {
            (0..=max_value(bits)).collect()
        } else {
            let mut q = vec![0, 1, 2, 3, 255];
            q.extend(reference.nonzero.iter().step_by(reference.nonzero.len() / 4 + 1).map(|&(_, v)| v));
            q
        };
        queried.sort_unstable();
        queried.dedup();
        for v in queried {
            let want: Vec<u32> = if v == 0 {
                Vec::new()
            } else {
                reference.nonzero.iter().filter(|&&(_, x)| x == v).map(|&(i, _)| i).collect()
            };
            let got: Vec<u32> = list.indices_with(Status(v)).iter().collect();
            prop_assert_eq!(got, want, "indices_with({})", v);
        }
        if bits < 8 {
            let before = list.clone();
            prop_assert!(list.set(0, Status(max_value(bits) + 1)).is_err());
            prop_assert!(list == before, "a refused set changes nothing");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. IETF: packing, ZLIB, JSON and CBOR forms

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn ietf_list_round_trips(
        case in ietf_case(),
        aggregation_uri in proptest::option::of("https://[a-z]{1,12}\\.example/[ -~]{0,24}"),
        level in 0u32..=9,
    ) {
        let reference = Reference::new(case.bits, case.values());
        let ietf = IetfList::encode(&reference.list, aggregation_uri.clone());
        prop_assert_eq!(ietf.bits.get(), case.bits);
        prop_assert_eq!(&ietf.aggregation_uri, &aggregation_uri);

        // An independent decoder reads the reference's LSB-first bytes.
        let want = naive_pack_lsb(case.bits, &reference.values);
        prop_assert_bytes_eq!(zlib_inflate(&ietf.lst), want, "inflated lst");
        reference.check(&ietf.decode().unwrap())?;

        // And our decoder reads the reference bytes compressed by someone else.
        let theirs = IetfList {
            bits: bits_of(case.bits),
            lst: zlib_deflate(&want, level),
            aggregation_uri: None,
        };
        reference.check(&theirs.decode().unwrap())?;

        // JSON: through text and back to the same object (so to the same list).
        let json = ietf.to_json();
        let lst = json["lst"].as_str().unwrap();
        prop_assert!(!lst.contains(['=', '+', '/']), "lst is unpadded base64url: {}", lst);
        prop_assert_bytes_eq!(URL_SAFE_NO_PAD.decode(lst).unwrap(), ietf.lst, "JSON lst");
        let text = serde_json::to_string(&json).unwrap();
        let from_json = IetfList::from_json(&serde_json::from_str::<Json>(&text).unwrap()).unwrap();
        prop_assert_eq!(&from_json, &ietf);

        // CBOR: through bytes and back; lst is the raw ZLIB stream in a byte string.
        let cbor_bytes = ietf.to_cbor_bytes();
        let cbor: Cbor = ciborium::from_reader(cbor_bytes.as_slice()).unwrap();
        let lst_bstr = cbor
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some("lst"))
            .and_then(|(_, v)| v.as_bytes());
        prop_assert_eq!(lst_bstr, Some(&ietf.lst));
        let from_cbor = IetfList::from_cbor(&cbor).unwrap();
        prop_assert_eq!(&from_cbor, &ietf);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Signed Status List Tokens

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn signed_tokens_carry_the_list(
        case in ietf_case(),
        alg in proptest::sample::select(vec![Algorithm::Es256, Algorithm::EdDsa]),
        n in 0u32..1000,
        iss in proptest::option::of(Just("https://status.example".to_owned())),
        iat in 0u64..=4_000_000_000,
        exp in proptest::option::of(0u64..=u64::MAX),
        ttl in proptest::option::of(1u64..=u64::MAX),
    ) {
        let reference = Reference::new(case.bits, case.values());
        let (key, keys) = key(alg);
        let claims = StatusListClaims {
            sub: format!("https://status.example/statuslists/{n}"),
            iss,
            iat,
            exp,
            ttl,
            status_list: IetfList::encode(&reference.list, None),
        };
        let jwt = token::sign_jwt(&claims, key).unwrap();
        let from_jwt = token::verify_jwt(&jwt, keys).unwrap();
        prop_assert_eq!(&from_jwt, &claims);
        reference.check(&from_jwt.status_list.decode().unwrap())?;

        let cwt = token::sign_cwt(&claims, key).unwrap();
        let from_cwt = token::verify_cwt(&cwt, keys).unwrap();
        prop_assert_eq!(&from_cwt, &claims);
        reference.check(&from_cwt.status_list.decode().unwrap())?;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. W3C Bitstring Status List

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn w3c_credentials_carry_each_view(case in w3c_case()) {
        let values = case.values();
        let list = Reference::new(case.bits, values.clone()).list;
        let (key, keys) = key(Algorithm::Es256);
        for purpose in Purpose::PUBLISHED {
            let (width, view) = naive_view(case.bits, &values, purpose);
            let view = Reference::new(width, view);
            let id = format!("https://status.example/bitstringlists/7/{purpose}");
            let vc = w3c::credential(&list, purpose, &params(&id)).unwrap();

            // The bitstring, opened by hand: multibase 'u', base64url, GZIP, MSB-first bytes.
            let subject = &vc["credentialSubject"];
            prop_assert_eq!(subject["statusSize"].as_u64(), Some(u64::from(width)));
            let encoded = subject["encodedList"].as_str().unwrap();
            let body = encoded.strip_prefix('u').expect("multibase prefix u");
            prop_assert!(!body.contains(['=', '+', '/']), "unpadded base64url");
            let gz = URL_SAFE_NO_PAD.decode(body).unwrap();
            prop_assert_eq!(&gz[..3], &[0x1f, 0x8b, 0x08], "a GZIP member");
            prop_assert_bytes_eq!(
                gzip_inflate(&gz),
                naive_pack_msb(width, &view.values),
                format!("{purpose} bitstring")
            );

            let parsed = w3c::parse_credential(&vc, MIN_ENTRIES).unwrap();
            prop_assert_eq!(&parsed.purposes, &vec![purpose.as_str().to_owned()]);
            prop_assert_eq!(parsed.status_size.get(), width);
            view.check(&parsed.list)?;

            // Secured as a vc+jwt, the same credential (so the same bitstring) comes back.
            let jwt = token::sign_vc_jwt(&vc, key).unwrap();
            let verified = token::verify_vc_jwt(&jwt, keys).unwrap();
            prop_assert!(verified == vc, "vc+jwt payload is the credential");
        }
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// The decoder alone, at any size (the minimum lifted), on bitstrings compressed by flate2;
    /// and the minimum enforced both ways.
    #[test]
    fn w3c_decoder_reads_any_msb_first_bitstring(case in ietf_case(), level in 0u32..=9) {
        let reference = Reference::new(case.bits, case.values());
        let packed = naive_pack_msb(case.bits, &reference.values);
        let encoded = format!("u{}", URL_SAFE_NO_PAD.encode(gzip_deflate(&packed, level)));
        reference.check(&w3c::decode_list(&encoded, bits_of(case.bits), 0).unwrap())?;
        // Every generated list here is below the minimum (at most 32,768 entries).
        let err = w3c::decode_list(&encoded, bits_of(case.bits), MIN_ENTRIES).unwrap_err();
        prop_assert_eq!(err.code(), "STATUS_LIST_LENGTH_ERROR");
        let err = w3c::encode_list(
            bits_of(case.bits),
            case.size as u32,
            reference.nonzero.iter().copied(),
        )
        .unwrap_err();
        prop_assert_eq!(err.code(), "STATUS_LIST_LENGTH_ERROR");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The roaring form

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn roaring_form_round_trips(case in ietf_case()) {
        let reference = Reference::new(case.bits, case.values());
        let encoded = sparse::encode(&reference.list);
        reference.check(&sparse::decode(&encoded).unwrap())?;

        // Opened independently: ZLIB, a CBOR map, one portable roaring bitmap per value.
        let envelope: Cbor = ciborium::from_reader(zlib_inflate(&encoded).as_slice()).unwrap();
        let field = |name: &str| {
            envelope
                .as_map()
                .unwrap()
                .iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        prop_assert_eq!(field("bits").as_integer().map(i128::from), Some(i128::from(case.bits)));
        prop_assert_eq!(field("size").as_integer().map(i128::from), Some(case.size as i128));
        let mut got = Vec::new();
        for (k, v) in field("statuses").as_map().unwrap() {
            let value = u8::try_from(k.as_integer().unwrap()).unwrap();
            prop_assert!(value != 0, "VALID is never listed");
            let set = RoaringBitmap::deserialize_from(v.as_bytes().unwrap().as_slice()).unwrap();
            got.extend(set.iter().map(|i| (i, value)));
        }
        got.sort_unstable();
        prop_assert_eq!(got, reference.nonzero);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Robustness

/// A GZIP header with no optional fields, so arbitrary bytes after it reach the inflater.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Inflation either fails or returns at most `limit` bytes.
fn check_inflate(data: &[u8], limit: usize) -> Result<(), TestCaseError> {
    if let Ok(out) = deflate::inflate_zlib(data, limit) {
        prop_assert!(
            out.len() <= limit,
            "zlib output {} > limit {}",
            out.len(),
            limit
        );
    }
    if let Ok(out) = deflate::inflate_gzip(data, limit) {
        prop_assert!(
            out.len() <= limit,
            "gzip output {} > limit {}",
            out.len(),
            limit
        );
    }
    Ok(())
}

/// Feeds one byte string to every decoder.
fn feed_everything(data: &[u8], limit: usize) -> Result<(), TestCaseError> {
    if let Ok(json) = serde_json::from_slice::<Json>(data) {
        if let Ok(l) = IetfList::from_json(&json) {
            let _ = l.decode();
        }
    }
    if let Ok(cbor) = ciborium::from_reader::<Cbor, _>(data) {
        if let Ok(l) = IetfList::from_cbor(&cbor) {
            let _ = l.decode();
        }
    }
    let _ = sparse::decode(data);
    check_inflate(data, limit)?;
    check_inflate(&[&[0x78, 0xda], data].concat(), limit)?;
    check_inflate(&[&GZIP_HEADER[..], data].concat(), limit)?;
    let text = String::from_utf8_lossy(data);
    let b64 = format!("u{}", URL_SAFE_NO_PAD.encode(data));
    let gz = format!(
        "u{}",
        URL_SAFE_NO_PAD.encode([&GZIP_HEADER[..], data].concat())
    );
    for bits in WIDTHS.map(bits_of) {
        let _ = IetfList {
            bits,
            lst: data.to_vec(),
            aggregation_uri: None,
        }
        .decode();
        for s in [text.as_ref(), b64.as_str(), gz.as_str()] {
            let _ = w3c::decode_list(s, bits, 0);
            let _ = w3c::decode_list(s, bits, MIN_ENTRIES);
        }
    }
    Ok(())
}

/// Arbitrary CBOR in the places the decoders look.
fn cbor_value() -> impl Strategy<Value = Cbor> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| Cbor::Integer(i.into())),
        any::<u64>().prop_map(|i| Cbor::Integer(i.into())),
        pvec(any::<u8>(), 0..64).prop_map(Cbor::Bytes),
        "[a-z_]{0,16}".prop_map(Cbor::Text),
        prop_oneof![
            Just("bits"),
            Just("lst"),
            Just("size"),
            Just("statuses"),
            Just("aggregation_uri")
        ]
        .prop_map(|s| Cbor::Text(s.into())),
        any::<bool>().prop_map(Cbor::Bool),
        Just(Cbor::Null),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            pvec(inner.clone(), 0..6).prop_map(Cbor::Array),
            pvec((inner.clone(), inner), 0..6).prop_map(Cbor::Map),
        ]
    })
}

/// A roaring-form envelope: `bits`, `size` and `(value, bitmap bytes)` pairs.
type Envelope = (u64, u64, Vec<(u64, Vec<u8>)>);

/// Envelopes with arbitrary `bits`, `size` and value → index sets, the sets mostly valid
/// portable roaring bitmaps (in range or not, overlapping or not) and sometimes arbitrary bytes.
fn envelope() -> impl Strategy<Value = Envelope> {
    let bitmap = prop_oneof![
        3 => pvec(prop_oneof![0..4096u32, any::<u32>()], 0..40).prop_map(|idx| {
            let set: RoaringBitmap = idx.into_iter().collect();
            let mut bytes = Vec::new();
            set.serialize_into(&mut bytes).unwrap();
            bytes
        }),
        1 => pvec(any::<u8>(), 0..64),
    ];
    (
        prop_oneof![
            proptest::sample::select(vec![0u64, 1, 2, 3, 4, 8, 16]),
            any::<u64>()
        ],
        prop_oneof![1..=8192u64, any::<u64>()],
        pvec((prop_oneof![0..=16u64, any::<u64>()], bitmap), 0..5),
    )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in pvec(any::<u8>(), 0..512), limit in 0usize..70_000) {
        feed_everything(&data, limit)?;
    }

    #[test]
    fn arbitrary_status_list_objects_never_panic(
        bits in prop_oneof![proptest::sample::select(vec![0u64, 1, 2, 3, 4, 8]), any::<u64>()],
        lst in pvec(any::<u8>(), 0..128),
        lst_text in "[A-Za-z0-9_=+/-]{0,64}",
        extra in cbor_value(),
    ) {
        let as_b64 = URL_SAFE_NO_PAD.encode(&lst);
        for lst_json in [Json::from(as_b64), Json::from(lst_text), Json::from(7)] {
            let json = serde_json::json!({"bits": bits, "lst": lst_json});
            if let Ok(l) = IetfList::from_json(&json) {
                let _ = l.decode();
            }
        }
        let cbor = Cbor::Map(vec![
            (Cbor::Text("bits".into()), Cbor::Integer(bits.into())),
            (Cbor::Text("lst".into()), Cbor::Bytes(lst.clone())),
            (Cbor::Text("lst".into()), extra.clone()),
        ]);
        prop_assert!(IetfList::from_cbor(&cbor).is_err(), "duplicate lst is refused");
        for cbor in [
            Cbor::Map(vec![
                (Cbor::Text("bits".into()), Cbor::Integer(bits.into())),
                (Cbor::Text("lst".into()), Cbor::Bytes(lst)),
            ]),
            extra,
        ] {
            if let Ok(l) = IetfList::from_cbor(&cbor) {
                let _ = l.decode();
            }
            let bytes = statusd::status::ietf::cbor_to_vec(&cbor);
            let _ = sparse::decode(&zlib_deflate(&bytes, 6));
        }
    }

    #[test]
    fn arbitrary_roaring_envelopes_never_panic((bits, size, listed) in envelope()) {
        let statuses = listed
            .iter()
            .map(|(value, bytes)| (Cbor::Integer((*value).into()), Cbor::Bytes(bytes.clone())))
            .collect();
        let cbor = statusd::status::ietf::cbor_to_vec(&Cbor::Map(vec![
            (Cbor::Text("bits".into()), Cbor::Integer(bits.into())),
            (Cbor::Text("size".into()), Cbor::Integer(size.into())),
            (Cbor::Text("statuses".into()), Cbor::Map(statuses)),
        ]));
        if let Ok(list) = sparse::decode(&zlib_deflate(&cbor, 6)) {
            // Whatever decodes holds exactly what the envelope listed.
            prop_assert_eq!(u64::from(list.bits().get()), bits);
            prop_assert_eq!(u64::from(list.size()), size);
            let mut want = Vec::new();
            for (value, bytes) in &listed {
                let set = RoaringBitmap::deserialize_from(bytes.as_slice());
                prop_assert!(set.is_ok(), "a list decoded from an invalid bitmap");
                want.extend(set.unwrap().iter().map(|i| (i, *value as u8)));
            }
            want.sort_unstable();
            let got: Vec<(u32, u8)> = list.iter_nonzero().map(|(i, s)| (i, s.0)).collect();
            prop_assert_eq!(got, want);
        }
    }
}

/// Positions to corrupt: every byte of a short stream, a spread of them in a long one.
fn positions(len: usize, budget: usize) -> Vec<usize> {
    if len <= budget {
        (0..len).collect()
    } else {
        let mut p: Vec<usize> = (0..budget / 2).collect();
        p.extend((0..budget / 2).map(|k| budget / 2 + k * (len - budget / 2) / (budget / 2)));
        p.extend(len - 8..len);
        p
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn corrupted_ietf_lst_is_an_error_or_a_list(
        case in ietf_case(),
        xors in pvec(1u8..=255, 1..=16),
        slack in -64i64..=64,
    ) {
        let reference = Reference::new(case.bits, case.values());
        let ietf = IetfList::encode(&reference.list, None);
        // The output limit is exact: the packed array inflates when it fits, and is refused
        // as too large when it does not.
        let packed = naive_pack_lsb(case.bits, &reference.values);
        let limit = (packed.len() as i64 + slack).max(0) as usize;
        match deflate::inflate_zlib(&ietf.lst, limit) {
            Ok(out) => {
                prop_assert!(packed.len() <= limit, "{} bytes inflated under limit {}", out.len(), limit);
                prop_assert_bytes_eq!(out, packed, "inflated lst");
            }
            Err(e) => {
                prop_assert!(packed.len() > limit, "{} bytes refused under limit {}: {}", packed.len(), limit, e);
                prop_assert_eq!(e, InflateError::TooLarge { limit });
            }
        }
        for (n, pos) in positions(ietf.lst.len(), 256).into_iter().enumerate() {
            let mut bad = ietf.clone();
            bad.lst[pos] ^= xors[n % xors.len()];
            if let Ok(list) = bad.decode() {
                prop_assert_eq!(list.bits().get(), case.bits);
            }
        }
        // A truncated stream is never a valid one.
        for cut in positions(ietf.lst.len(), 64) {
            let short = IetfList { lst: ietf.lst[..cut].to_vec(), ..ietf.clone() };
            prop_assert!(short.decode().is_err(), "lst cut to {} of {} bytes decoded", cut, ietf.lst.len());
        }
        // Trailing bytes are refused too.
        let long = IetfList { lst: [&ietf.lst[..], &[0]].concat(), ..ietf.clone() };
        prop_assert!(long.decode().is_err(), "trailing data accepted");
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn corrupted_w3c_bitstring_is_an_error_or_a_list(
        case in w3c_case(),
        xors in pvec(1u8..=255, 1..=16),
        slack in -64i64..=64,
    ) {
        let reference = Reference::new(case.bits, case.values());
        let list = &reference.list;
        let view = w3c::view(list, Purpose::Message).unwrap();
        let encoded = w3c::encode_list(view.status_size, list.size(), view.entries).unwrap();
        let gz = URL_SAFE_NO_PAD.decode(&encoded[1..]).unwrap();
        let packed = naive_pack_msb(case.bits, &reference.values);
        let limit = (packed.len() as i64 + slack).max(0) as usize;
        match deflate::inflate_gzip(&gz, limit) {
            Ok(out) => {
                prop_assert!(packed.len() <= limit, "{} bytes inflated under limit {}", out.len(), limit);
                prop_assert_bytes_eq!(out, packed, "inflated bitstring");
            }
            Err(e) => {
                prop_assert!(packed.len() > limit, "{} bytes refused under limit {}: {}", packed.len(), limit, e);
                prop_assert_eq!(e, InflateError::TooLarge { limit });
            }
        }
        let bits = bits_of(case.bits);
        // MTIME, XFL and OS (header bytes 4..10) are informational: flipping them leaves a
        // valid member, whose full decode would only cost time here.
        let corruptible = positions(gz.len(), 96).into_iter().filter(|p| !(4..10).contains(p));
        for (n, pos) in corruptible.enumerate() {
            let mut bad = gz.clone();
            bad[pos] ^= xors[n % xors.len()];
            let _ = w3c::decode_list(&format!("u{}", URL_SAFE_NO_PAD.encode(&bad)), bits, 0);
        }
        for cut in positions(gz.len(), 32) {
            let short = format!("u{}", URL_SAFE_NO_PAD.encode(&gz[..cut]));
            prop_assert!(w3c::decode_list(&short, bits, 0).is_err(), "cut to {}", cut);
        }
        let long = format!("u{}", URL_SAFE_NO_PAD.encode([&gz[..], &[0]].concat()));
        prop_assert!(w3c::decode_list(&long, bits, 0).is_err(), "trailing data accepted");
    }
}
