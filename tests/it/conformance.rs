//! Conformance with the published test vectors of both standards (shared spec §2, §3.12–3.13).
//! Decoded values are compared, not compressed bytes, except where the build's classic zlib makes
//! byte equality a fair check.

use crate::support::{hex, vectors};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use statusd::status::ietf::IetfList;
use statusd::status::packing::{self, Order};
use statusd::status::w3c::{self, MIN_ENTRIES};
use statusd::status::{deflate, Bits, Status, StatusList};
use statusd::token::{keys::KeySet, statuslist};

fn expected(v: &serde_json::Value) -> StatusList {
    let bits = Bits::new(v["bits"].as_u64().unwrap()).unwrap();
    let size = v["size"].as_u64().unwrap() as u32;
    // The small vectors have 12 or 16 entries; the packed arrays are whole bytes.
    let cap = (size as u64 * bits.get() as u64).div_ceil(8) as u32 * 8 / bits.get() as u32;
    StatusList::from_entries(
        bits,
        cap,
        v["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), Status(p[1].as_u64().unwrap() as u8))),
    )
    .unwrap()
}

/// A vector's list of indices (a JSON array of numbers).
fn indices(set: &serde_json::Value) -> Vec<u64> {
    set.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn every_ietf_vector_decodes_from_json_and_cbor() {
    for v in vectors()["ietf"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let want = expected(v);
        let json = serde_json::json!({"bits": v["bits"], "lst": v["lst"]});
        let from_json = IetfList::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cbor_bytes = hex(v["cbor_hex"].as_str().unwrap());
        let cbor: ciborium::Value = ciborium::from_reader(cbor_bytes.as_slice()).unwrap();
        let from_cbor = IetfList::from_cbor(&cbor).unwrap();
        assert_eq!(
            from_json, from_cbor,
            "{name}: JSON and CBOR carry the same lst"
        );
        let got = from_json.decode().unwrap();
        assert_eq!(got, want, "{name}: decoded entries");
        // Every listed index reads back its value; a spread of other indices reads VALID.
        for p in v["statuses"].as_array().unwrap() {
            let idx = p[0].as_u64().unwrap();
            assert_eq!(
                got.get(idx).unwrap().0 as u64,
                p[1].as_u64().unwrap(),
                "{name}[{idx}]"
            );
        }
        // Our CBOR encoding of the same object is byte-identical (definite, shortest form).
        assert_eq!(from_json.to_cbor_bytes(), cbor_bytes, "{name}: CBOR bytes");
    }
}

#[test]
fn every_ietf_vector_round_trips_through_our_encoder() {
    for v in vectors()["ietf"].as_array().unwrap() {
        let want = expected(v);
        let ours = IetfList::encode(&want, None);
        assert_eq!(&ours.lst[..2], &[0x78, 0xda], "zlib header of level 9");
        assert_eq!(ours.decode().unwrap(), want);
        // And a classic zlib decoder reads our bytes to the same packed array.
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::ZlibDecoder::new(ours.lst.as_slice()),
            &mut plain,
        )
        .unwrap();
        assert_eq!(plain, packing::pack_dense(&want, Order::LsbFirst));
        let json = ours.to_json();
        assert!(
            !json["lst"].as_str().unwrap().contains('='),
            "lst is unpadded"
        );
        assert_eq!(IetfList::from_json(&json).unwrap(), ours);
    }
}

#[test]
fn small_vectors_pack_to_the_spec_bytes() {
    let v = &vectors()["ietf"];
    let one = expected(&v[0]);
    assert_eq!(packing::pack_dense(&one, Order::LsbFirst), [0xb9, 0xa3]);
    let two = expected(&v[1]);
    assert_eq!(
        packing::pack_dense(&two, Order::LsbFirst),
        [0xc9, 0x44, 0xf9]
    );
    // Classic zlib at level 9 reproduces the draft's compressed bytes exactly.
    use std::io::Write as _;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&[0xb9, 0xa3]).unwrap();
    assert_eq!(z.finish().unwrap(), hex("78dadbb918000217015d"));
}

#[test]
fn spec_jwt_and_cwt_verify_with_the_example_key() {
    let keys = KeySet::from_jwks_json(
        &serde_json::json!({"keys": [vectors()["example_jwk"]]}).to_string(),
    )
    .unwrap();
    let jwt = statuslist::verify_jwt(vectors()["jwt"].as_str().unwrap(), &keys).unwrap();
    assert_eq!(jwt.sub, "https://example.com/statuslists/1");
    assert_eq!(jwt.iss.as_deref(), Some("https://example.com"));
    assert_eq!(
        (jwt.iat, jwt.exp, jwt.ttl),
        (1686920170, Some(2291720170), Some(43200))
    );
    let list = jwt.status_list.decode().unwrap();
    assert_eq!(list, expected(&vectors()["ietf"][0]));

    let cwt = statuslist::verify_cwt(&hex(vectors()["cwt_hex"].as_str().unwrap()), &keys).unwrap();
    assert_eq!(cwt.sub, jwt.sub);
    assert_eq!(cwt.iss, None);
    assert_eq!((cwt.iat, cwt.exp, cwt.ttl), (jwt.iat, jwt.exp, jwt.ttl));
    assert_eq!(cwt.status_list.decode().unwrap(), list);
}

#[test]
fn w3c_example_is_an_all_zero_list_of_the_minimum_size() {
    let w = &vectors()["w3c"];
    let l = w3c::decode_list(
        w["example_encoded_list"].as_str().unwrap(),
        Bits::One,
        MIN_ENTRIES,
    )
    .unwrap();
    assert_eq!(l.size(), MIN_ENTRIES);
    assert_eq!(l.count_nonzero(), 0);
    let parsed = w3c::parse_credential(&w["example_credential"], MIN_ENTRIES).unwrap();
    assert_eq!(parsed.purposes, vec!["revocation"]);
    assert_eq!(parsed.list, l);
    // Our encoder produces a bitstring a gzip decoder reads to the same 16 KiB of zeros.
    let ours = w3c::encode_list(Bits::One, MIN_ENTRIES, []).unwrap();
    let gz = URL_SAFE_NO_PAD.decode(&ours[1..]).unwrap();
    assert_eq!(
        deflate::inflate_gzip(&gz, 1 << 20).unwrap(),
        vec![0u8; 16_384]
    );
}

#[test]
fn w3c_bit_order_vectors_are_msb_first() {
    let w = &vectors()["w3c"];
    for d in w["derived"].as_array().unwrap() {
        let l =
            w3c::decode_list(d["encoded_list"].as_str().unwrap(), Bits::One, MIN_ENTRIES).unwrap();
        let set: Vec<u64> = l.iter_nonzero().map(|(i, _)| i.into()).collect();
        let want = indices(&d["set"]);
        assert_eq!(set, want);
        // Re-encoding the same entries decodes identically (the bytes may differ by deflater).
        let again =
            w3c::encode_list(Bits::One, l.size(), l.iter_nonzero().map(|(i, s)| (i, s.0))).unwrap();
        assert_eq!(w3c::decode_list(&again, Bits::One, MIN_ENTRIES).unwrap(), l);
    }
    // The leftover LSB-first vector from a third-party repo must NOT read as index 50000 set.
    let lsb = &w["lsb_first_leftover"];
    let l = w3c::decode_list(lsb["encoded_list"].as_str().unwrap(), Bits::One, 0).unwrap();
    assert_eq!(l.get(50_000).unwrap(), Status::VALID);
    assert_eq!(l.get(50_007).unwrap(), Status::INVALID);
}

#[test]
fn w3c_lists_below_131072_entries_are_a_length_error() {
    for d in vectors()["w3c"]["too_short"].as_array().unwrap() {
        let enc = d["encoded_list"].as_str().unwrap();
        let err = w3c::decode_list(enc, Bits::One, MIN_ENTRIES).unwrap_err();
        assert_eq!(err.code(), "STATUS_LIST_LENGTH_ERROR", "{err}");
        // With the minimum lifted (an ecosystem may set a lower bound), the bit is where the
        // third-party suite says: index 50000, MSB-first.
        let l = w3c::decode_list(enc, Bits::One, 0).unwrap();
        let want = indices(&d["set"]);
        assert_eq!(
            l.iter_nonzero()
                .map(|(i, _)| u64::from(i))
                .collect::<Vec<_>>(),
            want
        );
    }
}
