//! W3C Bitstring Status List v1.0: the `encodedList` codec (MSB-first, GZIP, multibase `u`),
//! the `BitstringStatusListCredential` document, and the views statusd publishes from one list.
//!
//! One IETF list with `bits` ≥ 2 is published as three W3C credentials derived from the same
//! bitmaps: `revocation` (1 bit: INVALID), `suspension` (1 bit: SUSPENDED) and `message`
//! (`statusSize` = `bits`, every value, with `statusMessages`). Within a multi-bit entry the most
//! significant bit comes first, the natural reading of "index 0 is the left-most bit" that the
//! REC leaves open. This module never signs; securing is `token::vc`.

use super::{deflate, packing, Bits, Status, StatusError, StatusList, MAX_ENTRIES};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value as Json};
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// Herd-privacy minimum of the REC: a bitstring has at least 131,072 entries.
pub const MIN_ENTRIES: u32 = 131_072;

/// The VC Data Model 2.0 base context, which includes the status-list terms.
pub const VC_V2_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";

/// `statusPurpose` values statusd understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    Revocation,
    Suspension,
    Message,
    Refresh,
}

impl Purpose {
    /// The purposes statusd publishes for every list (`refresh` has no meaning in our model).
    pub const PUBLISHED: [Purpose; 3] =
        [Purpose::Revocation, Purpose::Suspension, Purpose::Message];

    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::Revocation => "revocation",
            Purpose::Suspension => "suspension",
            Purpose::Message => "message",
            Purpose::Refresh => "refresh",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Purpose {
    type Err = W3cError;

    fn from_str(s: &str) -> Result<Self, W3cError> {
        match s {
            "revocation" => Ok(Purpose::Revocation),
            "suspension" => Ok(Purpose::Suspension),
            "message" => Ok(Purpose::Message),
            "refresh" => Ok(Purpose::Refresh),
            other => Err(W3cError::UnknownPurpose(other.to_owned())),
        }
    }
}

/// Errors of the W3C codec, each mapped to the REC's error name by [`W3cError::code`].
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum W3cError {
    #[error(
        "encodedList must start with the multibase prefix 'u' (base64url, no padding), found {0:?}"
    )]
    MultibasePrefix(String),
    #[error("encodedList is not unpadded base64url: {0}")]
    Base64(String),
    #[error("encodedList: {0}")]
    Inflate(#[from] deflate::InflateError),
    #[error("status list has {entries} entries; at least {min} are required")]
    TooShort { entries: u64, min: u32 },
    #[error("unknown statusPurpose {0:?}")]
    UnknownPurpose(String),
    #[error("statusPurpose {0} is not published by statusd")]
    UnpublishedPurpose(Purpose),
    #[error("malformed credential: {0}")]
    Malformed(String),
    #[error(transparent)]
    Status(#[from] StatusError),
}

impl W3cError {
    /// The REC §3.5 / VCDM 2.0 error name for problem details.
    pub fn code(&self) -> &'static str {
        match self {
            W3cError::TooShort { .. } => "STATUS_LIST_LENGTH_ERROR",
            W3cError::Status(StatusError::IndexOutOfRange { .. }) => "RANGE_ERROR",
            _ => "MALFORMED_VALUE_ERROR",
        }
    }
}

/// The entries a view publishes: width and `(index, value)` pairs in index order.
pub struct View {
    pub status_size: Bits,
    pub entries: Vec<(u32, u8)>,
}

/// Derives the W3C view of `list` for `purpose`.
pub fn view(list: &StatusList, purpose: Purpose) -> Result<View, W3cError> {
    let status_size = status_size(list, purpose)?;
    let one_bit = |status: Status| list.indices_with(status).iter().map(|i| (i, 1)).collect();
    let entries = match purpose {
        Purpose::Revocation => one_bit(Status::INVALID),
        Purpose::Suspension => one_bit(Status::SUSPENDED),
        _ => list.iter_nonzero().map(|(i, s)| (i, s.0)).collect(),
    };
    Ok(View {
        status_size,
        entries,
    })
}

/// The `statusSize` of `purpose`'s view of `list`: one bit for revocation and suspension, the
/// list's width for messages.
fn status_size(list: &StatusList, purpose: Purpose) -> Result<Bits, W3cError> {
    match purpose {
        Purpose::Revocation | Purpose::Suspension => Ok(Bits::One),
        Purpose::Message => Ok(list.bits()),
        Purpose::Refresh => Err(W3cError::UnpublishedPurpose(purpose)),
    }
}

/// `encodedList` of `size` entries of width `status_size`: multibase `u` + base64url(GZIP).
pub fn encode_list(
    status_size: Bits,
    size: u32,
    entries: impl IntoIterator<Item = (u32, u8)>,
) -> Result<String, W3cError> {
    if size < MIN_ENTRIES {
        return Err(W3cError::TooShort {
            entries: size.into(),
            min: MIN_ENTRIES,
        });
    }
    let gz = deflate::gzip_sparse(
        packing::packed_len(status_size, size),
        packing::pack_sparse(status_size, packing::Order::MsbFirst, entries.into_iter()),
    );
    Ok(multibase(&gz))
}

/// `encodedList` of a GZIP member: multibase `u` + base64url without padding.
pub fn multibase(gz: &[u8]) -> String {
    let mut out = String::with_capacity(1 + gz.len().div_ceil(3) * 4);
    out.push('u');
    URL_SAFE_NO_PAD.encode_string(gz, &mut out);
    out
}

/// Expands an `encodedList` into a list of `statusSize`-bit entries, enforcing `min_entries`.
pub fn decode_list(
    encoded: &str,
    status_size: Bits,
    min_entries: u32,
) -> Result<StatusList, W3cError> {
    let body = match encoded.strip_prefix('u') {
        Some(b) => b,
        None => {
            return Err(W3cError::MultibasePrefix(
                encoded.chars().next().map(String::from).unwrap_or_default(),
            ))
        }
    };
    if body.ends_with('=') {
        return Err(W3cError::Base64("padding '=' is not allowed".into()));
    }
    let gz = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| W3cError::Base64(e.to_string()))?;
    let bytes = deflate::inflate_gzip(&gz, packing::packed_len(status_size, MAX_ENTRIES))?;
    let entries = bytes.len() as u64 * 8 / u64::from(status_size.get());
    if entries < u64::from(min_entries) {
        return Err(W3cError::TooShort {
            entries,
            min: min_entries,
        });
    }
    Ok(packing::unpack(
        status_size,
        packing::Order::MsbFirst,
        &bytes,
    )?)
}

/// What goes into a published credential besides the list itself.
#[derive(Clone, Debug)]
pub struct CredentialParams<'a> {
    /// The URL the credential is served from: its `id` and the entries' `statusListCredential`.
    pub id: &'a str,
    pub issuer: &'a str,
    pub valid_from: SystemTime,
    pub valid_until: Option<SystemTime>,
    /// `credentialSubject.ttl`, in milliseconds (the REC's unit; the IETF `ttl` is seconds).
    pub ttl_ms: Option<u64>,
}

/// `statusMessages` for a `message` view of width `bits`: one per value, named after the IETF
/// status registry so a verifier reading either standard sees the same meaning.
pub fn status_messages(bits: Bits) -> Json {
    Json::Array(
        (0..=u16::from(bits.max_value()))
            .map(|v| {
                json!({
                    "status": format!("0x{v:x}"),
                    "message": Status(v as u8).name().to_ascii_lowercase(),
                })
            })
            .collect(),
    )
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The unsigned `BitstringStatusListCredential` for one view of `list`.
pub fn credential(
    list: &StatusList,
    purpose: Purpose,
    p: &CredentialParams<'_>,
) -> Result<Json, W3cError> {
    credential_with_list(list, purpose, p, None)
}

/// [`credential`], given the view's `encodedList` when it is already encoded (the `message`
/// view comes with the IETF form: [`super::ietf::IetfList::encode_with_message_view`]).
pub fn credential_with_list(
    list: &StatusList,
    purpose: Purpose,
    p: &CredentialParams<'_>,
    encoded: Option<String>,
) -> Result<Json, W3cError> {
    let (status_size, encoded) = match encoded {
        Some(encoded) if list.size() >= MIN_ENTRIES => (status_size(list, purpose)?, encoded),
        _ => {
            let v = view(list, purpose)?;
            let encoded = encode_list(v.status_size, list.size(), v.entries)?;
            (v.status_size, encoded)
        }
    };
    let mut subject = json!({
        "id": format!("{}#list", p.id),
        "type": "BitstringStatusList",
        "statusPurpose": purpose.as_str(),
        "statusSize": status_size.get(),
        "encodedList": encoded,
    });
    if let Some(ttl) = p.ttl_ms {
        subject["ttl"] = json!(ttl);
    }
    if purpose == Purpose::Message {
        subject["statusMessages"] = status_messages(status_size);
    }
    let mut vc = json!({
        "@context": [VC_V2_CONTEXT],
        "id": p.id,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": p.issuer,
        "validFrom": rfc3339(p.valid_from),
    });
    if let Some(until) = p.valid_until {
        vc["validUntil"] = json!(rfc3339(until));
    }
    vc["credentialSubject"] = subject;
    Ok(vc)
}

/// A `BitstringStatusListCredential` read back, with its bitstring expanded.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedCredential {
    pub id: Option<String>,
    pub issuer: Option<String>,
    pub purposes: Vec<String>,
    pub status_size: Bits,
    pub ttl_ms: Option<u64>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    pub list: StatusList,
}

fn malformed(msg: impl Into<String>) -> W3cError {
    W3cError::Malformed(msg.into())
}

/// Reads and checks a credential per the REC's data model, then expands its list.
pub fn parse_credential(vc: &Json, min_entries: u32) -> Result<ParsedCredential, W3cError> {
    let obj = vc
        .as_object()
        .ok_or_else(|| malformed("credential is not a JSON object"))?;
    let ctx_ok = match obj.get("@context") {
        Some(Json::Array(a)) => a.first().and_then(Json::as_str) == Some(VC_V2_CONTEXT),
        _ => false,
    };
    if !ctx_ok {
        return Err(malformed(format!(
            "@context must be an array starting with {VC_V2_CONTEXT}"
        )));
    }
    let types: Vec<&str> = match obj.get("type") {
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).collect(),
        _ => return Err(malformed("type must be an array")),
    };
    if !types.contains(&"VerifiableCredential") || !types.contains(&"BitstringStatusListCredential")
    {
        return Err(malformed(
            "type must include VerifiableCredential and BitstringStatusListCredential",
        ));
    }
    let subject = obj
        .get("credentialSubject")
        .and_then(Json::as_object)
        .ok_or_else(|| malformed("credentialSubject must be an object"))?;
    if subject.get("type").and_then(Json::as_str) != Some("BitstringStatusList") {
        return Err(malformed(
            "credentialSubject.type must be BitstringStatusList",
        ));
    }
    let purposes = match subject.get("statusPurpose") {
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|p| p.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("statusPurpose array must hold strings"))?,
        _ => {
            return Err(malformed(
                "statusPurpose must be a string or a non-empty array of strings",
            ))
        }
    };
    let status_size = match subject.get("statusSize") {
        None => Bits::One,
        Some(n) => match n.as_u64() {
            Some(s) if s > 0 => Bits::new(s).map_err(|_| {
                malformed(format!("statusSize {s} is not supported (1, 2, 4 or 8)"))
            })?,
            _ => {
                return Err(malformed(format!(
                    "statusSize must be a positive integer, got {n}"
                )))
            }
        },
    };
    let ttl_ms = match subject.get("ttl") {
        None => None,
        Some(t) => Some(
            t.as_u64()
                .ok_or_else(|| malformed(format!("ttl must be a non-negative integer, got {t}")))?,
        ),
    };
    let encoded = subject
        .get("encodedList")
        .and_then(Json::as_str)
        .ok_or_else(|| malformed("credentialSubject.encodedList must be a string"))?;
    let text = |k: &str| obj.get(k).and_then(Json::as_str).map(str::to_owned);
    let issuer = match obj.get("issuer") {
        Some(Json::Object(o)) => o.get("id").and_then(Json::as_str).map(str::to_owned),
        _ => text("issuer"),
    };
    Ok(ParsedCredential {
        id: text("id"),
        issuer,
        purposes,
        status_size,
        ttl_ms,
        valid_from: text("validFrom"),
        valid_until: text("validUntil"),
        list: decode_list(encoded, status_size, min_entries)?,
    })
}

/// The `credentialStatus` entry an issuer embeds in a credential for one view.
pub fn status_entry(list_url: &str, idx: u32, purpose: Purpose, bits: Bits) -> Json {
    let mut e = json!({
        "id": format!("{list_url}#{idx}"),
        "type": "BitstringStatusListEntry",
        "statusPurpose": purpose.as_str(),
        "statusListIndex": idx.to_string(),
        "statusListCredential": list_url,
    });
    if purpose == Purpose::Message {
        e["statusSize"] = json!(bits.get());
        e["statusMessage"] = status_messages(bits);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn sample() -> StatusList {
        StatusList::from_entries(
            Bits::Two,
            MIN_ENTRIES,
            [
                (0, Status::INVALID),
                (7, Status::SUSPENDED),
                (94_567, Status::INVALID),
                (131_071, Status(3)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn views_split_one_list_by_value() {
        let l = sample();
        let r = view(&l, Purpose::Revocation).unwrap();
        assert_eq!(
            (r.status_size, r.entries),
            (Bits::One, vec![(0, 1), (94_567, 1)])
        );
        let s = view(&l, Purpose::Suspension).unwrap();
        assert_eq!(s.entries, vec![(7, 1)]);
        let m = view(&l, Purpose::Message).unwrap();
        assert_eq!(m.status_size, Bits::Two);
        assert_eq!(m.entries.len(), 4);
        assert!(view(&l, Purpose::Refresh).is_err());
    }

    #[test]
    fn credential_round_trips_each_view() {
        let l = sample();
        let params = CredentialParams {
            id: "https://status.example/bitstringlists/7/message",
            issuer: "https://status.example",
            valid_from: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            valid_until: Some(UNIX_EPOCH + Duration::from_secs(1_700_086_400)),
            ttl_ms: Some(300_000),
        };
        for purpose in Purpose::PUBLISHED {
            let vc = credential(&l, purpose, &params).unwrap();
            assert_eq!(vc["validFrom"], "2023-11-14T22:13:20Z");
            let parsed = parse_credential(&vc, MIN_ENTRIES).unwrap();
            assert_eq!(parsed.purposes, vec![purpose.as_str()]);
            assert_eq!(parsed.ttl_ms, Some(300_000));
            let v = view(&l, purpose).unwrap();
            assert_eq!(parsed.status_size, v.status_size);
            assert_eq!(
                parsed
                    .list
                    .iter_nonzero()
                    .map(|(i, s)| (i, s.0))
                    .collect::<Vec<_>>(),
                v.entries
            );
        }
        let msg = credential(&l, Purpose::Message, &params).unwrap();
        assert_eq!(
            msg["credentialSubject"]["statusMessages"][2]["message"],
            "suspended"
        );
        assert_eq!(
            msg["credentialSubject"]["statusMessages"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }

    #[test]
    fn short_lists_are_refused_both_ways() {
        let l = StatusList::new(Bits::One, 1024).unwrap();
        let err = encode_list(Bits::One, l.size(), []).unwrap_err();
        assert_eq!(err.code(), "STATUS_LIST_LENGTH_ERROR");
    }

    #[test]
    fn wrong_prefix_and_padding_are_precise() {
        assert_eq!(
            decode_list("zH4sI", Bits::One, MIN_ENTRIES),
            Err(W3cError::MultibasePrefix("z".into()))
        );
        assert!(matches!(
            decode_list("uH4sIAA==", Bits::One, MIN_ENTRIES),
            Err(W3cError::Base64(_))
        ));
        assert!(matches!(
            decode_list("", Bits::One, MIN_ENTRIES),
            Err(W3cError::MultibasePrefix(p)) if p.is_empty()
        ));
    }

    #[test]
    fn status_entry_uses_a_decimal_string_index() {
        let e = status_entry(
            "https://s.example/bitstringlists/1/revocation",
            94_567,
            Purpose::Revocation,
            Bits::Two,
        );
        assert_eq!(e["statusListIndex"], "94567");
        assert_eq!(e["type"], "BitstringStatusListEntry");
        assert!(e.get("statusSize").is_none());
        let m = status_entry(
            "https://s.example/bitstringlists/1/message",
            5,
            Purpose::Message,
            Bits::Two,
        );
        assert_eq!(m["statusSize"], 2);
    }
}
