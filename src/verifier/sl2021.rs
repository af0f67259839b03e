//! Reading a W3C CCG **Status List 2021** credential (the VC Data Model 1.1 form that VC 1.1
//! verifiers, Korea's mobile ID among them, still use): `StatusList2021Credential` with a
//! `StatusList2021` subject whose `encodedList` is the base64(url) GZIP of an MSB-first bitstring,
//! secured as a VC-JWT 1.1 (the credential in the `vc` claim).
//!
//! Owns the 2021 data model only; the codecs are [`crate::status`]'s.

use crate::status::packing::{self, Order};
use crate::status::{deflate, Bits, StatusList, MAX_ENTRIES};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value as Json;

pub use crate::status::sl2021::{SL2021_CONTEXT, VC_V1_CONTEXT};

/// A `StatusList2021Credential` read back, with its bitstring expanded.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub id: Option<String>,
    pub purpose: String,
    pub issuance_date: Option<String>,
    pub expiration_date: Option<String>,
    pub list: StatusList,
}

/// Reads and checks a `StatusList2021Credential`, enforcing `min_entries`.
pub fn parse(vc: &Json, min_entries: u32) -> Result<Parsed, String> {
    let contexts: Vec<&str> = match vc.get("@context") {
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).collect(),
        _ => return Err("@context must be an array".into()),
    };
    if contexts.first() != Some(&VC_V1_CONTEXT) || !contexts.contains(&SL2021_CONTEXT) {
        return Err(format!(
            "@context must start with {VC_V1_CONTEXT} and include {SL2021_CONTEXT}"
        ));
    }
    let types: Vec<&str> = match vc.get("type") {
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).collect(),
        _ => return Err("type must be an array".into()),
    };
    if !types.contains(&"VerifiableCredential") || !types.contains(&"StatusList2021Credential") {
        return Err("type must include VerifiableCredential and StatusList2021Credential".into());
    }
    let subject = vc
        .get("credentialSubject")
        .and_then(Json::as_object)
        .ok_or("credentialSubject must be an object")?;
    if subject.get("type").and_then(Json::as_str) != Some("StatusList2021") {
        return Err("credentialSubject.type must be StatusList2021".into());
    }
    let purpose = subject
        .get("statusPurpose")
        .and_then(Json::as_str)
        .ok_or("credentialSubject.statusPurpose must be a string")?
        .to_owned();
    let encoded = subject
        .get("encodedList")
        .and_then(Json::as_str)
        .ok_or("credentialSubject.encodedList must be a string")?;
    let text = |k: &str| vc.get(k).and_then(Json::as_str).map(str::to_owned);
    Ok(Parsed {
        id: text("id"),
        purpose,
        issuance_date: text("issuanceDate"),
        expiration_date: text("expirationDate"),
        list: decode_list(encoded, min_entries)?,
    })
}

/// Expands an `encodedList`: base64url without padding as Digital Bazaar writes it, standard
/// base64 as the CCG text says, or a multibase `u` before a GZIP header (`uH4sI…`).
pub fn decode_list(encoded: &str, min_entries: u32) -> Result<StatusList, String> {
    let body = match encoded.strip_prefix('u') {
        Some(rest) if rest.starts_with("H4sI") => rest,
        _ => encoded,
    };
    let gz = URL_SAFE_NO_PAD
        .decode(body.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(body))
        .map_err(|e| format!("encodedList is not base64: {e}"))?;
    let bytes = deflate::inflate_gzip(&gz, packing::packed_len(Bits::One, MAX_ENTRIES))
        .map_err(|e| format!("encodedList: {e}"))?;
    let entries = bytes.len() as u64 * 8;
    if entries < u64::from(min_entries) {
        return Err(format!(
            "the list has {entries} entries, fewer than the {min_entries} required (STATUS_LIST_LENGTH_ERROR)"
        ));
    }
    packing::unpack(Bits::One, Order::MsbFirst, &bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn credential(encoded: &str) -> Json {
        json!({
            "@context": [VC_V1_CONTEXT, SL2021_CONTEXT],
            "id": "https://example.com/credentials/status/3",
            "type": ["VerifiableCredential", "StatusList2021Credential"],
            "issuer": "did:example:12345",
            "issuanceDate": "2021-04-05T14:27:40Z",
            "credentialSubject": {
                "id": "https://example.com/status/3#list",
                "type": "StatusList2021",
                "statusPurpose": "revocation",
                "encodedList": encoded
            }
        })
    }

    /// The CCG spec's example list (16 KB of zeros), as base64url and as standard base64.
    #[test]
    fn the_spec_example_list_decodes_in_every_spelling() {
        let b64url = "H4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA";
        let b64 = b64url.replace('-', "+").replace('_', "/");
        for encoded in [b64url.to_owned(), b64, format!("u{b64url}")] {
            let p = parse(&credential(&encoded), 131_072).unwrap();
            assert_eq!(p.list.size(), 131_072);
            assert_eq!(p.list.count_nonzero(), 0);
            assert_eq!(p.purpose, "revocation");
        }
    }

    #[test]
    fn set_bits_are_read_msb_first_and_short_lists_refused() {
        let gz = deflate::gzip_sparse(16_384, [(0usize, 0x80u8), (2, 0x01)]);
        let encoded = URL_SAFE_NO_PAD.encode(gz);
        let p = parse(&credential(&encoded), 131_072).unwrap();
        assert_eq!(p.list.get(0).unwrap().0, 1);
        assert_eq!(p.list.get(1).unwrap().0, 0);
        assert_eq!(p.list.get(23).unwrap().0, 1);
        let e = parse(&credential(&encoded), 262_144).unwrap_err();
        assert!(e.contains("STATUS_LIST_LENGTH_ERROR"), "{e}");
        let mut v2 = credential(&encoded);
        v2["@context"] = json!(["https://www.w3.org/ns/credentials/v2"]);
        assert!(parse(&v2, 131_072).is_err());
    }
}
