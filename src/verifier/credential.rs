//! Reading a credential's status references: the `status` claim of a JWT or SD-JWT VC, the
//! `credentialStatus` entries of a W3C VC-JWT (1.1 `vc` claim or 2.0 payload) or JSON VC, and
//! the `status` of a COSE_Sign1 (an ISO mdoc MSO or a CWT).
//!
//! Owns the parsing of the *referenced* credential only. It never checks the credential's own
//! signature: that is the caller's job, done before status is checked (draft §8.3 step 1).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ciborium::Value as Cbor;
use serde::Serialize;
use serde_json::Value as Json;

/// The credential formats `statusd verify` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CredentialFormat {
    /// A JWT or SD-JWT (VC) with a `status` claim.
    #[serde(rename = "jwt")]
    Jwt,
    /// A W3C VC secured as a JWT: VC 1.1 (`vc` claim) or VCDM 2.0 (`vc+jwt`).
    #[serde(rename = "vc-jwt")]
    VcJwt,
    /// An unsecured or Data-Integrity-secured W3C VC in JSON.
    #[serde(rename = "vc")]
    VcJson,
    /// A COSE_Sign1 whose payload carries `status`: an ISO mdoc MSO or a CWT (claim 65535).
    #[serde(rename = "cose")]
    Cose,
}

/// One status reference a credential carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Reference {
    /// IETF Token Status List: `status.status_list` `{idx, uri}`.
    #[serde(rename = "status_list")]
    TokenStatusList { uri: String, idx: u64 },
    /// W3C `BitstringStatusListEntry`.
    #[serde(rename = "BitstringStatusListEntry")]
    Bitstring {
        #[serde(rename = "statusListCredential")]
        url: String,
        #[serde(rename = "statusListIndex")]
        index: u64,
        #[serde(rename = "statusPurpose")]
        purpose: String,
        #[serde(rename = "statusSize")]
        size: u8,
    },
    /// W3C CCG `StatusList2021Entry` (the VC 1.1 form): one bit per credential.
    #[serde(rename = "StatusList2021Entry")]
    StatusList2021 {
        #[serde(rename = "statusListCredential")]
        url: String,
        #[serde(rename = "statusListIndex")]
        index: u64,
        #[serde(rename = "statusPurpose")]
        purpose: String,
    },
}

impl Reference {
    /// The URL the list is fetched from.
    pub fn url(&self) -> &str {
        match self {
            Reference::TokenStatusList { uri, .. } => uri,
            Reference::Bitstring { url, .. } | Reference::StatusList2021 { url, .. } => url,
        }
    }

    /// The index into the list.
    pub fn index(&self) -> u64 {
        match self {
            Reference::TokenStatusList { idx, .. } => *idx,
            Reference::Bitstring { index, .. } | Reference::StatusList2021 { index, .. } => *index,
        }
    }

    /// The W3C `statusPurpose`; `None` for an IETF reference, whose value is a status type.
    pub fn purpose(&self) -> Option<&str> {
        match self {
            Reference::TokenStatusList { .. } => None,
            Reference::Bitstring { purpose, .. } | Reference::StatusList2021 { purpose, .. } => {
                Some(purpose)
            }
        }
    }

    /// The entry width the reference expects (`statusSize`; 1 for Status List 2021); `None`
    /// for an IETF reference, whose width is the list's `bits`.
    pub fn status_size(&self) -> Option<u8> {
        match self {
            Reference::TokenStatusList { .. } => None,
            Reference::Bitstring { size, .. } => Some(*size),
            Reference::StatusList2021 { .. } => Some(1),
        }
    }
}

/// A credential's format and status references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub format: CredentialFormat,
    pub references: Vec<Reference>,
}

/// Why a credential's status references could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CredentialError {
    #[error("unrecognised credential: expected a JWT / SD-JWT (VC), a W3C VC (JWT or JSON) or a COSE_Sign1 (mdoc MSO or CWT), as text, hex or base64url")]
    Unrecognised,
    #[error("malformed credential: {0}")]
    Malformed(String),
    #[error(
        "the credential carries no status reference (no `status` claim and no `credentialStatus`)"
    )]
    NoStatus,
    #[error("status reference: {0}")]
    BadReference(String),
}

fn malformed(m: impl Into<String>) -> CredentialError {
    CredentialError::Malformed(m.into())
}

fn bad(m: impl Into<String>) -> CredentialError {
    CredentialError::BadReference(m.into())
}

/// Reads the status references of `input`: the credential's bytes (binary COSE), or text
/// (compact JWT / SD-JWT, JSON, or hex / base64url of a COSE_Sign1).
pub fn parse(input: &[u8]) -> Result<Credential, CredentialError> {
    if looks_like_cose(input) {
        return cose(input);
    }
    let text = std::str::from_utf8(input)
        .map_err(|_| CredentialError::Unrecognised)?
        .trim();
    if text.starts_with('{') {
        let v: Json = serde_json::from_str(text).map_err(|e| malformed(format!("JSON: {e}")))?;
        return w3c(CredentialFormat::VcJson, &v);
    }
    // SD-JWT: `<issuer-signed JWT>~<disclosure>~…~[<KB-JWT>]`; the status claim is never
    // selectively disclosable (SD-JWT VC §3.2.2.2), so the issuer-signed part holds it.
    let jwt = text.split('~').next().unwrap_or_default();
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|p| is_b64url(p)) {
        let header = json_part(parts[0], "JOSE header")?;
        let claims = json_part(parts[1], "JWT claims set")?;
        let typ = header.get("typ").and_then(Json::as_str).unwrap_or("");
        if claims.get("vc").is_some_and(Json::is_object) {
            return w3c(CredentialFormat::VcJwt, &claims["vc"]);
        }
        if typ.to_ascii_lowercase().contains("vc+jwt") || claims.get("credentialStatus").is_some() {
            return w3c(CredentialFormat::VcJwt, &claims);
        }
        let status = claims.get("status").ok_or(CredentialError::NoStatus)?;
        return Ok(Credential {
            format: CredentialFormat::Jwt,
            references: vec![jose_status(status)?],
        });
    }
    let compact: String = text.split_whitespace().collect();
    let bytes = if compact.len().is_multiple_of(2) && compact.bytes().all(|b| b.is_ascii_hexdigit())
    {
        (0..compact.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&compact[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .ok()
    } else {
        URL_SAFE_NO_PAD
            .decode(compact.trim_end_matches('='))
            .ok()
            .or_else(|| STANDARD.decode(&compact).ok())
    };
    match bytes {
        Some(b) if looks_like_cose(&b) => cose(&b),
        _ => Err(CredentialError::Unrecognised),
    }
}

fn is_b64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn json_part(part: &str, what: &str) -> Result<Json, CredentialError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| malformed(format!("{what}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(format!("{what}: {e}")))
}

/// Tag 18 (COSE_Sign1_Tagged) or an untagged COSE_Sign1 array of four (as in an mdoc's
/// `issuerAuth`).
fn looks_like_cose(b: &[u8]) -> bool {
    matches!(b, [0xd2, 0x84, ..] | [0x84, 0x40..=0x5b, ..])
}

fn jose_status(status: &Json) -> Result<Reference, CredentialError> {
    let sl = status
        .get("status_list")
        .and_then(Json::as_object)
        .ok_or_else(|| bad("`status` has no `status_list` object"))?;
    let idx = sl
        .get("idx")
        .and_then(Json::as_u64)
        .ok_or_else(|| bad("`status_list.idx` must be a non-negative integer"))?;
    let uri = sl
        .get("uri")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("`status_list.uri` must be a string"))?;
    Ok(Reference::TokenStatusList {
        uri: check_uri(uri)?,
        idx,
    })
}

fn check_uri(uri: &str) -> Result<String, CredentialError> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        Ok(uri.to_owned())
    } else {
        Err(bad(format!(
            "{uri:?} is not an http(s) URI, so it cannot be resolved"
        )))
    }
}

fn w3c(format: CredentialFormat, vc: &Json) -> Result<Credential, CredentialError> {
    let entries = match vc.get("credentialStatus") {
        None => return Err(CredentialError::NoStatus),
        Some(Json::Array(a)) => a.iter().collect::<Vec<_>>(),
        Some(one) => vec![one],
    };
    let references = entries
        .into_iter()
        .map(w3c_entry)
        .collect::<Result<Vec<_>, _>>()?;
    if references.is_empty() {
        return Err(CredentialError::NoStatus);
    }
    Ok(Credential { format, references })
}

fn w3c_entry(e: &Json) -> Result<Reference, CredentialError> {
    let typ = e.get("type").and_then(Json::as_str).unwrap_or("");
    if typ != "BitstringStatusListEntry" && typ != "StatusList2021Entry" {
        return Err(bad(format!(
            "credentialStatus type {typ:?} is not supported (BitstringStatusListEntry and StatusList2021Entry are)"
        )));
    }
    let field = |k: &str| {
        e.get(k)
            .and_then(Json::as_str)
            .ok_or_else(|| bad(format!("{typ}.{k} must be a string")))
    };
    let url = check_uri(field("statusListCredential")?)?;
    let index_text = field("statusListIndex")?;
    let index = index_text
        .parse::<u64>()
        .ok()
        .filter(|_| index_text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            bad(format!(
                "statusListIndex {index_text:?} is not a base-10 integer"
            ))
        })?;
    let purpose = field("statusPurpose")?.to_owned();
    if typ == "StatusList2021Entry" {
        return Ok(Reference::StatusList2021 {
            url,
            index,
            purpose,
        });
    }
    let size = match e.get("statusSize") {
        None => 1,
        Some(n) => match n.as_u64() {
            Some(s @ (1 | 2 | 4 | 8)) => s as u8,
            _ => {
                return Err(bad(format!(
                    "statusSize {n} is not supported (1, 2, 4 or 8)"
                )))
            }
        },
    };
    Ok(Reference::Bitstring {
        url,
        index,
        purpose,
        size,
    })
}

fn cose(bytes: &[u8]) -> Result<Credential, CredentialError> {
    let v: Cbor = ciborium::from_reader(bytes).map_err(|e| malformed(format!("CBOR: {e}")))?;
    let v = match v {
        Cbor::Tag(18, inner) => *inner,
        other => other,
    };
    let payload = match v {
        Cbor::Array(a) if a.len() == 4 => match &a[2] {
            Cbor::Bytes(p) => p.clone(),
            _ => {
                return Err(malformed(
                    "COSE_Sign1 payload is detached or not a byte string",
                ))
            }
        },
        _ => return Err(malformed("not a COSE_Sign1 (an array of four)")),
    };
    let mut claims: Cbor = ciborium::from_reader(payload.as_slice())
        .map_err(|e| malformed(format!("payload: {e}")))?;
    // An mdoc's MSO is wrapped as #6.24(bstr .cbor MobileSecurityObject).
    if let Cbor::Tag(24, inner) = &claims {
        if let Cbor::Bytes(b) = inner.as_ref() {
            claims =
                ciborium::from_reader(b.as_slice()).map_err(|e| malformed(format!("MSO: {e}")))?;
        }
    }
    let map = claims
        .as_map()
        .ok_or_else(|| malformed("COSE payload is not a map"))?;
    let status = map
        .iter()
        .find(|(k, _)| match k {
            Cbor::Text(t) => t == "status",
            Cbor::Integer(i) => i128::from(*i) == 65535,
            _ => false,
        })
        .map(|(_, v)| v)
        .ok_or(CredentialError::NoStatus)?;
    let text_key = |m: &Cbor, key: &str| -> Option<Cbor> {
        m.as_map()?
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v.clone())
    };
    let sl = text_key(status, "status_list")
        .ok_or_else(|| bad("`status` has no \"status_list\" map"))?;
    let idx = text_key(&sl, "idx")
        .and_then(|i| i.as_integer())
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| bad("\"idx\" must be an unsigned integer"))?;
    let uri = text_key(&sl, "uri")
        .and_then(|u| u.as_text().map(str::to_owned))
        .ok_or_else(|| bad("\"uri\" must be a text string"))?;
    Ok(Credential {
        format: CredentialFormat::Cose,
        references: vec![Reference::TokenStatusList {
            uri: check_uri(&uri)?,
            idx,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::keys::{Algorithm, SigningKey};
    use serde_json::json;

    fn jwt(claims: &Json, typ: &str) -> String {
        let mut h = serde_json::Map::new();
        h.insert("typ".into(), json!(typ));
        crate::token::sign_compact(
            h,
            claims.to_string().as_bytes(),
            &SigningKey::generate(Algorithm::Es256),
        )
        .unwrap()
    }

    const URI: &str = "https://status.example/statuslists/1";

    #[test]
    fn sd_jwt_vc_status_claim_is_read_from_the_issuer_signed_part() {
        let t = jwt(
            &json!({"vct": "x", "status": {"status_list": {"idx": 7, "uri": URI}}}),
            "dc+sd-jwt",
        );
        let c = parse(format!("{t}~WyJzYWx0IiwiYSIsMV0~").as_bytes()).unwrap();
        assert_eq!(c.format, CredentialFormat::Jwt);
        assert_eq!(
            c.references,
            [Reference::TokenStatusList {
                uri: URI.into(),
                idx: 7
            }]
        );
    }

    #[test]
    fn vc_jwt_1_1_and_2_0_entries() {
        let entry = json!({"type": "BitstringStatusListEntry", "statusPurpose": "revocation",
            "statusListIndex": "42", "statusListCredential": URI});
        let v11 = jwt(&json!({"vc": {"credentialStatus": entry}}), "JWT");
        let v20 = jwt(&json!({"credentialStatus": [entry, entry]}), "vc+jwt");
        assert_eq!(parse(v11.as_bytes()).unwrap().references.len(), 1);
        let c = parse(v20.as_bytes()).unwrap();
        assert_eq!(c.format, CredentialFormat::VcJwt);
        assert_eq!(c.references.len(), 2);
        assert!(matches!(
            &c.references[0],
            Reference::Bitstring {
                index: 42,
                size: 1,
                ..
            }
        ));
    }

    #[test]
    fn malformed_references_are_refused() {
        for (status, needle) in [
            (json!({"status_list": {"idx": -1, "uri": URI}}), "idx"),
            (json!({"status_list": {"idx": 1}}), "uri"),
            (
                json!({"status_list": {"idx": 1, "uri": "urn:x"}}),
                "http(s)",
            ),
            (json!({"other": {}}), "status_list"),
        ] {
            let t = jwt(&json!({"status": status}), "JWT");
            let e = parse(t.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let t = jwt(&json!({"sub": "x"}), "JWT");
        assert_eq!(parse(t.as_bytes()), Err(CredentialError::NoStatus));
        let entry = json!({"credentialStatus": {"type": "BitstringStatusListEntry",
            "statusPurpose": "revocation", "statusListIndex": "0x1", "statusListCredential": URI}});
        assert!(parse(entry.to_string().as_bytes()).is_err());
        assert_eq!(parse(b"hello"), Err(CredentialError::Unrecognised));
    }

    #[test]
    fn mdoc_mso_and_cwt_status() {
        let status = Cbor::Map(vec![(
            Cbor::Text("status_list".into()),
            Cbor::Map(vec![
                (Cbor::Text("idx".into()), Cbor::Integer(3.into())),
                (Cbor::Text("uri".into()), Cbor::Text(URI.into())),
            ]),
        )]);
        let mso = Cbor::Map(vec![
            (Cbor::Text("version".into()), Cbor::Text("1.0".into())),
            (Cbor::Text("status".into()), status.clone()),
        ]);
        let mso_bytes = crate::status::ietf::cbor_to_vec(&mso);
        let wrapped =
            crate::status::ietf::cbor_to_vec(&Cbor::Tag(24, Box::new(Cbor::Bytes(mso_bytes))));
        let key = SigningKey::generate(Algorithm::Es256);
        let signed = crate::token::sign1_tagged("application/mso", wrapped, &key).unwrap();
        let want = [Reference::TokenStatusList {
            uri: URI.into(),
            idx: 3,
        }];
        assert_eq!(parse(&signed).unwrap().references, want);
        let hex: String = signed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse(hex.as_bytes()).unwrap().references, want);
        let cwt = Cbor::Map(vec![(Cbor::Integer(65535.into()), status)]);
        let signed = crate::token::sign1_tagged(
            "application/cwt",
            crate::status::ietf::cbor_to_vec(&cwt),
            &key,
        )
        .unwrap();
        let b64 = URL_SAFE_NO_PAD.encode(&signed);
        assert_eq!(parse(b64.as_bytes()).unwrap().references, want);
    }
}
