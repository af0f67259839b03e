//! W3C CCG **Status List 2021**, the VC Data Model 1.1 form of the W3C status list that VC 1.1
//! verifiers read: a `StatusList2021Credential` whose `StatusList2021` subject carries the
//! revocation or the suspension view of a list, and the `StatusList2021Entry` an issuer embeds.
//!
//! The bitstring is the Bitstring Status List's (MSB-first, GZIP, at least 131,072 entries);
//! only the text differs: `encodedList` is unpadded base64url **without** a multibase prefix,
//! as Digital Bazaar's implementation reads and writes it. Owns the 2021 data model only; it
//! never signs (see [`crate::token::vc11`]).

use super::w3c::{self, CredentialParams, Purpose, W3cError, MIN_ENTRIES};
use super::{deflate, packing, Bits, StatusList};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value as Json};

/// The VC Data Model 1.1 base context.
pub const VC_V1_CONTEXT: &str = "https://www.w3.org/2018/credentials/v1";
/// The Status List 2021 context.
pub const SL2021_CONTEXT: &str = "https://w3id.org/vc/status-list/2021/v1";
/// The purposes Status List 2021 defines.
pub const PURPOSES: [Purpose; 2] = [Purpose::Revocation, Purpose::Suspension];

/// `encodedList` of a one-bit view: unpadded base64url of the GZIP bitstring, no prefix.
pub fn encode_list(size: u32, entries: impl IntoIterator<Item = (u32, u8)>) -> String {
    let gz = deflate::gzip_sparse(
        packing::packed_len(Bits::One, size),
        packing::pack_sparse(Bits::One, packing::Order::MsbFirst, entries.into_iter()),
    );
    URL_SAFE_NO_PAD.encode(gz)
}

/// The unsigned `StatusList2021Credential` for the revocation or suspension view of `list`.
/// `p.valid_from` and `p.valid_until` become `issuanceDate` and `expirationDate`; `ttl` has no
/// place in the 2021 model.
pub fn credential(
    list: &StatusList,
    purpose: Purpose,
    p: &CredentialParams<'_>,
) -> Result<Json, W3cError> {
    credential_with_list(list, purpose, p, None)
}

/// [`credential`], with the view's `encodedList` given when the caller has it: the Bitstring
/// Status List credential of the same purpose carries the same GZIP bitstring (its
/// `encodedList` less the multibase `u`), so a list published in both forms compresses each
/// view once.
pub fn credential_with_list(
    list: &StatusList,
    purpose: Purpose,
    p: &CredentialParams<'_>,
    encoded: Option<String>,
) -> Result<Json, W3cError> {
    if !PURPOSES.contains(&purpose) {
        return Err(W3cError::UnpublishedPurpose(purpose));
    }
    if list.size() < MIN_ENTRIES {
        return Err(W3cError::TooShort {
            entries: list.size().into(),
            min: MIN_ENTRIES,
        });
    }
    let encoded = match encoded {
        Some(e) => e,
        None => encode_list(list.size(), w3c::view(list, purpose)?.entries),
    };
    let mut vc = json!({
        "@context": [VC_V1_CONTEXT, SL2021_CONTEXT],
        "id": p.id,
        "type": ["VerifiableCredential", "StatusList2021Credential"],
        "issuer": p.issuer,
        "issuanceDate": rfc3339(p.valid_from),
        "credentialSubject": {
            "id": format!("{}#list", p.id),
            "type": "StatusList2021",
            "statusPurpose": purpose.as_str(),
            "encodedList": encoded,
        },
    });
    if let Some(until) = p.valid_until {
        vc["expirationDate"] = json!(rfc3339(until));
    }
    Ok(vc)
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The `StatusList2021Entry` an issuer embeds in a VC 1.1 credential for one view.
pub fn status_entry(list_url: &str, idx: u32, purpose: Purpose) -> Json {
    json!({
        "id": format!("{list_url}#{idx}"),
        "type": "StatusList2021Entry",
        "statusPurpose": purpose.as_str(),
        "statusListIndex": idx.to_string(),
        "statusListCredential": list_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn views_round_trip_through_the_verifier_reader() {
        let list = StatusList::from_entries(
            Bits::Two,
            MIN_ENTRIES,
            [
                (5, Status::INVALID),
                (9, Status::SUSPENDED),
                (11, Status(3)),
            ],
        )
        .unwrap();
        let p = CredentialParams {
            id: "https://s.example/statuslist2021/1/revocation",
            issuer: "https://s.example",
            valid_from: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            valid_until: Some(UNIX_EPOCH + Duration::from_secs(1_700_086_400)),
            ttl_ms: Some(300_000),
        };
        for (purpose, set) in [(Purpose::Revocation, 5), (Purpose::Suspension, 9)] {
            let vc = credential(&list, purpose, &p).unwrap();
            assert_eq!(vc["issuanceDate"], "2023-11-14T22:13:20Z");
            assert_eq!(vc["expirationDate"], "2023-11-15T22:13:20Z");
            assert!(vc["credentialSubject"].get("ttl").is_none());
            let encoded = vc["credentialSubject"]["encodedList"].as_str().unwrap();
            assert!(
                encoded.starts_with("H4sI"),
                "no multibase prefix: {encoded}"
            );
            let parsed = crate::verifier::sl2021::parse(&vc, MIN_ENTRIES).unwrap();
            assert_eq!(parsed.purpose, purpose.as_str());
            let set_bits: Vec<u32> = parsed.list.iter_nonzero().map(|(i, _)| i).collect();
            assert_eq!(set_bits, [set]);
        }
        assert!(credential(&list, Purpose::Message, &p).is_err());
        let small = StatusList::new(Bits::One, 1024).unwrap();
        assert!(credential(&small, Purpose::Revocation, &p).is_err());
    }
}
