//! Decoding and verifying anything statusd publishes, whatever the format: what
//! `statusd inspect` runs. It recognises the format from the bytes, runs every structural check,
//! verifies the signature when keys are given, checks the validity period and reads the
//! requested indices, refusing out-of-range ones as a relying party must.

use crate::status::ietf::{IetfError, IetfList};
use crate::status::sparse::{self, SparseError};
use crate::status::w3c::{self, W3cError};
use crate::status::{Status, StatusError, StatusList};
use crate::token::keys::KeySet;
use crate::token::{statuslist, vc, TokenError};
use serde::Serialize;
use std::collections::BTreeMap;

/// The formats `inspect` recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Format {
    #[serde(rename = "statuslist+jwt")]
    StatusListJwt,
    #[serde(rename = "statuslist+cwt")]
    StatusListCwt,
    #[serde(rename = "vc+jwt")]
    VcJwt,
    #[serde(rename = "vc")]
    VcJson,
    #[serde(rename = "status_list (JSON)")]
    StatusListJson,
    #[serde(rename = "status_list (CBOR)")]
    StatusListCbor,
    #[serde(rename = "roaring")]
    Roaring,
}

impl Format {
    /// The name users read: the same as in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Format::StatusListJwt => "statuslist+jwt",
            Format::StatusListCwt => "statuslist+cwt",
            Format::VcJwt => "vc+jwt",
            Format::VcJson => "vc",
            Format::StatusListJson => "status_list (JSON)",
            Format::StatusListCbor => "status_list (CBOR)",
            Format::Roaring => "roaring",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to check and read.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Keys to verify signatures with; without them signatures are reported as not checked.
    pub keys: Option<KeySet>,
    /// Indices to read.
    pub indices: Vec<u64>,
    /// List every non-VALID entry.
    pub all: bool,
    /// Unix time for the validity-period check.
    pub now: u64,
    /// Minimum W3C list length (131,072 unless an ecosystem sets a lower bound).
    pub min_entries: u32,
    /// X.509 roots to validate the token's chain (`x5c`, `x5chain`) against (empty: the chain
    /// is not checked); the leaf's key must then verify the token, in addition to `keys` if
    /// given.
    pub trust_anchors: Vec<x509_cert::Certificate>,
}

/// One entry read from the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub idx: u64,
    pub status: &'static str,
    pub value: u8,
}

/// What `inspect` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: Format,
    /// "verified", "not checked (no key given)" or "unsigned".
    pub signature: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `sub` (IETF) or `id` (W3C).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Seconds (IETF) — W3C `ttl` milliseconds are converted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub purposes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregation_uri: Option<String>,
    pub bits: u8,
    pub size: u32,
    /// Count of entries per status name, VALID excluded.
    pub non_valid: BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<Entry>,
    /// With a trust anchor: the chain validated up to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

/// Why `inspect` failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("unrecognised input: {0}")]
    UnknownFormat(String),
    // Each variant states its cause in its own text and returns no `source()`, so the printed
    // chain names the cause once (issue 19: "a verification failure should state its cause
    // once").
    #[error("{format}: {error}")]
    Token { format: Format, error: TokenError },
    #[error("status_list: {0}")]
    Ietf(IetfError),
    #[error("W3C {code}: {err}", code = .0.code(), err = .0)]
    W3c(W3cError),
    #[error("{0}")]
    Sparse(SparseError),
    #[error("index {idx} is out of range: the list has {size} entries, so the referenced token must be rejected")]
    OutOfRange { idx: u64, size: u32 },
    #[error("--key was given, but {0} input carries no signature to verify")]
    NothingToVerify(Format),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("certificate chain: {0}")]
    Chain(#[from] crate::anchor::AnchorError),
}

fn detect(input: &[u8]) -> Result<Format, InspectError> {
    let text = std::str::from_utf8(input).ok().map(str::trim);
    if let Some(t) = text {
        if t.starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(t).map_err(|e| InspectError::Json(e.to_string()))?;
            return Ok(
                if v.get("@context").is_some() || v.get("credentialSubject").is_some() {
                    Format::VcJson
                } else {
                    Format::StatusListJson
                },
            );
        }
        if t.split('.').count() == 3
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b))
        {
            // The typ header tells a Status List Token from a VC; read it leniently here and
            // let the real parser judge.
            let typ = crate::token::jws::Jws::parse(t)
                .ok()
                .and_then(|j| j.typ().map(str::to_ascii_lowercase));
            return Ok(match typ.as_deref() {
                Some(t) if t.contains("vc+jwt") => Format::VcJwt,
                _ => Format::StatusListJwt,
            });
        }
    }
    match input {
        // Tag 18 (COSE_Sign1), tag 61 (CWT, which the parser rejects precisely), tag 17.
        [0xd2, ..] | [0xd8, 0x3d, ..] | [0xd1, ..] => Ok(Format::StatusListCwt),
        [b, ..] if b >> 5 == 5 => Ok(Format::StatusListCbor),
        [0x78, ..] => Ok(Format::Roaring),
        _ => Err(InspectError::UnknownFormat(
            "expected a Status List Token (JWT or CWT), a W3C status list credential (vc+jwt or \
             JSON), a status_list object (JSON or CBOR) or statusd's roaring form"
                .into(),
        )),
    }
}

impl From<IetfError> for InspectError {
    fn from(e: IetfError) -> Self {
        InspectError::Ietf(e)
    }
}

impl From<W3cError> for InspectError {
    fn from(e: W3cError) -> Self {
        InspectError::W3c(e)
    }
}

impl From<SparseError> for InspectError {
    fn from(e: SparseError) -> Self {
        InspectError::Sparse(e)
    }
}

fn token(format: Format) -> impl Fn(TokenError) -> InspectError {
    move |error| InspectError::Token { format, error }
}

fn empty(format: Format, signature: &'static str, list: &StatusList) -> Report {
    Report {
        format,
        signature,
        alg: None,
        kid: None,
        subject: None,
        issuer: None,
        iat: None,
        exp: None,
        ttl_seconds: None,
        valid_from: None,
        valid_until: None,
        purposes: Vec::new(),
        aggregation_uri: None,
        bits: list.bits().get(),
        size: list.size(),
        non_valid: BTreeMap::new(),
        entries: Vec::new(),
        chain: None,
    }
}

fn from_claims(
    format: Format,
    signature: &'static str,
    claims: statuslist::StatusListClaims,
    opts: &Options,
) -> Result<(Report, StatusList), InspectError> {
    statuslist::check_time(&claims, opts.now).map_err(token(format))?;
    let list = claims.status_list.decode()?;
    let mut r = empty(format, signature, &list);
    r.subject = Some(claims.sub);
    r.issuer = claims.iss;
    r.iat = Some(claims.iat);
    r.exp = claims.exp;
    r.ttl_seconds = claims.ttl;
    r.aggregation_uri = claims.status_list.aggregation_uri;
    Ok((r, list))
}

fn signature_label(keys: &Option<KeySet>) -> &'static str {
    if keys.is_some() {
        "verified"
    } else {
        "not checked (no key given)"
    }
}

/// Decodes, verifies and reads `input`.
pub fn inspect(input: &[u8], opts: &Options) -> Result<Report, InspectError> {
    let format = detect(input)?;
    let text = || std::str::from_utf8(input).map(str::trim).unwrap_or("");
    let sig = signature_label(&opts.keys);
    let (mut report, list) = match format {
        Format::StatusListJwt => {
            let (claims, header) = match &opts.keys {
                Some(k) => {
                    let claims = statuslist::verify_jwt(text(), k).map_err(token(format))?;
                    let jws = crate::token::jws::Jws::parse(text()).map_err(token(format))?;
                    (claims, jws.header().clone())
                }
                None => {
                    let u = statuslist::decode_jwt_unverified(text()).map_err(token(format))?;
                    (u.claims, u.header)
                }
            };
            let (mut r, l) = from_claims(format, sig, claims, opts)?;
            r.alg = header
                .get("alg")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            r.kid = header
                .get("kid")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            (r, l)
        }
        Format::StatusListCwt => {
            let u = statuslist::decode_cwt_unverified(input).map_err(token(format))?;
            let claims = match &opts.keys {
                Some(k) => statuslist::verify_cwt(input, k).map_err(token(format))?,
                None => u.claims,
            };
            let (mut r, l) = from_claims(format, sig, claims, opts)?;
            r.alg = Some(u.alg.jose_name().to_owned());
            r.kid = u.kid.map(|k| String::from_utf8_lossy(&k).into_owned());
            (r, l)
        }
        Format::VcJwt | Format::VcJson => {
            let (credential, header) = match (format, &opts.keys) {
                (Format::VcJwt, Some(k)) => {
                    let c = vc::verify_vc_jwt(text(), k).map_err(token(format))?;
                    let jws = crate::token::jws::Jws::parse(text()).map_err(token(format))?;
                    (c, Some(jws.header().clone()))
                }
                (Format::VcJwt, None) => {
                    let u = vc::decode_vc_jwt_unverified(text()).map_err(token(format))?;
                    (u.credential, Some(u.header))
                }
                (_, Some(_)) => return Err(InspectError::NothingToVerify(format)),
                (_, None) => (
                    serde_json::from_str(text()).map_err(|e| InspectError::Json(e.to_string()))?,
                    None,
                ),
            };
            let parsed = w3c::parse_credential(&credential, opts.min_entries)?;
            let signature = if format == Format::VcJson {
                "unsigned (proofs are not checked)"
            } else {
                sig
            };
            let mut r = empty(format, signature, &parsed.list);
            if let Some(h) = header {
                r.alg = h.get("alg").and_then(|v| v.as_str()).map(str::to_owned);
                r.kid = h.get("kid").and_then(|v| v.as_str()).map(str::to_owned);
            }
            r.subject = parsed.id;
            r.issuer = parsed.issuer;
            r.ttl_seconds = parsed.ttl_ms.map(|ms| ms / 1000);
            r.valid_from = parsed.valid_from;
            r.valid_until = parsed.valid_until;
            r.purposes = parsed.purposes;
            (r, parsed.list)
        }
        Format::StatusListJson | Format::StatusListCbor | Format::Roaring => {
            if opts.keys.is_some() {
                return Err(InspectError::NothingToVerify(format));
            }
            let list = match format {
                Format::StatusListJson => {
                    let v: serde_json::Value = serde_json::from_str(text())
                        .map_err(|e| InspectError::Json(e.to_string()))?;
                    IetfList::from_json(&v)?.decode()?
                }
                Format::StatusListCbor => {
                    let v: ciborium::Value = ciborium::from_reader(input).map_err(|e| {
                        InspectError::Ietf(IetfError::Invalid {
                            member: "status_list",
                            reason: format!("not CBOR: {e}"),
                        })
                    })?;
                    IetfList::from_cbor(&v)?.decode()?
                }
                _ => sparse::decode(input)?,
            };
            (empty(format, "unsigned", &list), list)
        }
    };
    if !opts.trust_anchors.is_empty() {
        anchored(input, format, &opts.trust_anchors, &mut report, opts)?;
    }
    for (_, status) in list.iter_nonzero() {
        *report.non_valid.entry(status.name()).or_default() += 1;
    }
    for &idx in &opts.indices {
        let status = list.get(idx).map_err(|e| match e {
            StatusError::IndexOutOfRange { idx, size } => InspectError::OutOfRange { idx, size },
            other => InspectError::Ietf(other.into()),
        })?;
        report.entries.push(entry(idx, status));
    }
    if opts.all {
        report
            .entries
            .extend(list.iter_nonzero().map(|(i, s)| entry(i.into(), s)));
    }
    Ok(report)
}

fn entry(idx: u64, status: Status) -> Entry {
    Entry {
        idx,
        status: status.name(),
        value: status.0,
    }
}

/// Validates the token's chain up to one of `anchors` at the token's `iat` (or `opts.now`: an
/// operator asks whether the chain vouched for the token when it was signed) and verifies the
/// token with the leaf's key.
fn anchored(
    input: &[u8],
    format: Format,
    anchors: &[x509_cert::Certificate],
    report: &mut Report,
    opts: &Options,
) -> Result<(), InspectError> {
    if !matches!(
        format,
        Format::StatusListJwt | Format::VcJwt | Format::StatusListCwt
    ) {
        return Err(InspectError::NothingToVerify(format));
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(report.iat.unwrap_or(opts.now));
    let anchored = crate::anchor::keys(input, anchors, at)?;
    let text = || std::str::from_utf8(input).map(str::trim).unwrap_or("");
    match format {
        Format::StatusListJwt => statuslist::verify_jwt(text(), &anchored.keys).map(drop),
        Format::VcJwt => vc::verify_vc_jwt(text(), &anchored.keys).map(drop),
        _ => statuslist::verify_cwt(input, &anchored.keys).map(drop),
    }
    .map_err(token(format))?;
    report.signature = "verified";
    report.chain = Some(anchored.describe());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [Format; 7] = [
        Format::StatusListJwt,
        Format::StatusListCwt,
        Format::VcJwt,
        Format::VcJson,
        Format::StatusListJson,
        Format::StatusListCbor,
        Format::Roaring,
    ];

    #[test]
    fn format_names_match_the_report() {
        for f in FORMATS {
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
        }
    }

    /// Issue 19: "StatusListJwt: no verification key…" followed by "caused by: no verification
    /// key…" said the cause twice, and in Rust's debug spelling. Fixed in e8a2d9f.
    #[test]
    fn issue_19_a_verification_failure_named_its_cause_twice() {
        let e = token(Format::StatusListJwt)(TokenError::BadSignature);
        assert_eq!(
            e.to_string(),
            "statuslist+jwt: signature verification failed"
        );
        assert!(std::error::Error::source(&e).is_none());
        let e = InspectError::from(IetfError::Missing("lst"));
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(
            InspectError::NothingToVerify(Format::Roaring).to_string(),
            "--key was given, but roaring input carries no signature to verify"
        );
    }
}
