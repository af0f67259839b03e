//! Decoding and verifying anything statusd publishes, whatever the format: what
//! `statusd inspect` runs. It recognises the format from the bytes, runs every structural check,
//! verifies the signature when keys are given, checks the validity period and reads the
//! requested indices, refusing out-of-range ones as a relying party must.
//!
//! Signed deltas (statusd's extension, [`crate::delta`]) are recognised by their `typ` and read
//! with the same verification and decoding the verifier library's mirror uses; having no list to
//! apply them to, `inspect` shows their changes rather than entries of a list.

use crate::delta::{self, DeltaClaims, DeltaError};
use crate::status::ietf::{IetfError, IetfList};
use crate::status::sparse::{self, SparseError};
use crate::status::w3c::{self, W3cError};
use crate::status::{Status, StatusError, StatusList, MAX_ENTRIES};
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
    #[serde(rename = "statuslist-delta+jwt")]
    DeltaJwt,
    #[serde(rename = "statuslist-delta+cwt")]
    DeltaCwt,
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
            Format::DeltaJwt => "statuslist-delta+jwt",
            Format::DeltaCwt => "statuslist-delta+cwt",
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
    #[error("{format}: {error}")]
    Delta { format: Format, error: DeltaError },
    #[error("--idx reads entries of a list, and {0} input is a delta: it carries only the entries that changed (--all lists every one)")]
    IdxOnDelta(Format),
    #[error("{0} input is a delta, not a list: read it with inspect_any")]
    NotAList(Format),
}

/// What `statusd inspect` prints: a list's report or a signed delta's.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Inspected {
    List(Report),
    Delta(DeltaReport),
}

/// How many changes a delta's report lists without `--all`.
pub const DELTA_CHANGES_SHOWN: usize = 20;

/// What `inspect` prints for a signed delta.
#[derive(Clone, Debug, Serialize)]
pub struct DeltaReport {
    pub format: Format,
    /// "verified" or "not checked (no key given)".
    pub signature: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The list's URI, as in its Status List Token.
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    pub iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    pub bits: u8,
    /// The oldest version the delta applies to.
    pub from: u64,
    /// The version it brings the list to.
    pub to: u64,
    /// How many entries the delta names.
    pub change_count: usize,
    /// The entries it names with their value at `to`, in index order: the first
    /// [`DELTA_CHANGES_SHOWN`], or all with `--all`.
    pub changes: Vec<Entry>,
    /// Changes named but not listed (without `--all`).
    #[serde(skip_serializing_if = "is_zero")]
    pub changes_not_shown: usize,
    /// SHA-256 of the list at `to` (IETF packing, before compression), in hex.
    pub sha256: String,
    /// With a trust anchor: the chain validated up to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
                Some(t) if t.contains(delta::JWT_TYP) => Format::DeltaJwt,
                _ => Format::StatusListJwt,
            });
        }
    }
    match input {
        // Tag 18 (COSE_Sign1): a delta by its typ, read leniently here as for JWTs.
        [0xd2, ..] if cose_typ_is(input, delta::CWT_TYP) => Ok(Format::DeltaCwt),
        // Tag 18 (COSE_Sign1), tag 61 (CWT, which the parser rejects precisely), tag 17.
        [0xd2, ..] | [0xd8, 0x3d, ..] | [0xd1, ..] => Ok(Format::StatusListCwt),
        [b, ..] if b >> 5 == 5 => Ok(Format::StatusListCbor),
        [0x78, ..] => Ok(Format::Roaring),
        _ => Err(InspectError::UnknownFormat(
            "expected a Status List Token (JWT or CWT), a W3C status list credential (vc+jwt or \
             JSON), a status_list object (JSON or CBOR), statusd's roaring form or a signed \
             delta (statuslist-delta+jwt or +cwt)"
                .into(),
        )),
    }
}

fn cose_typ_is(input: &[u8], typ: &str) -> bool {
    matches!(
        crate::token::Sign1::parse(input).ok().as_ref().and_then(|m| m.typ()),
        Some(crate::token::CoseTyp::Text(t)) if t.eq_ignore_ascii_case(typ)
    )
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

/// A delta's token errors read as a list token's do ("statuslist-delta+jwt: signature
/// verification failed"); the rest are the delta's own.
fn delta_err(format: Format) -> impl Fn(DeltaError) -> InspectError {
    move |error| match error {
        DeltaError::Token(error) => InspectError::Token { format, error },
        error => InspectError::Delta { format, error },
    }
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

/// Decodes, verifies and reads `input`, a list or a signed delta.
pub fn inspect_any(input: &[u8], opts: &Options) -> Result<Inspected, InspectError> {
    match detect(input)? {
        f @ (Format::DeltaJwt | Format::DeltaCwt) => {
            inspect_delta(input, f, opts).map(Inspected::Delta)
        }
        f => inspect_list(input, f, opts).map(Inspected::List),
    }
}

/// Decodes, verifies and reads `input`, a list in any form (a delta is [`InspectError::NotAList`]:
/// see [`inspect_any`]).
pub fn inspect(input: &[u8], opts: &Options) -> Result<Report, InspectError> {
    match detect(input)? {
        f @ (Format::DeltaJwt | Format::DeltaCwt) => Err(InspectError::NotAList(f)),
        f => inspect_list(input, f, opts),
    }
}

/// Verifies a signed delta as the verifier library's mirror does ([`delta::verify_jwt`],
/// [`delta::verify_cwt`], [`DeltaClaims::check_time`]) and reads its changes. With no list to
/// apply them to, their decoding is bounded by the largest list statusd builds
/// ([`MAX_ENTRIES`]) rather than by a list held, and the digest cannot be checked.
fn inspect_delta(
    input: &[u8],
    format: Format,
    opts: &Options,
) -> Result<DeltaReport, InspectError> {
    if !opts.indices.is_empty() {
        return Err(InspectError::IdxOnDelta(format));
    }
    let err = delta_err(format);
    let text = || std::str::from_utf8(input).map(str::trim).unwrap_or("");
    let (claims, alg, kid): (DeltaClaims, _, _) = match (format, &opts.keys) {
        (Format::DeltaJwt, keys) => {
            let (claims, header) = match keys {
                Some(k) => {
                    let claims = delta::verify_jwt(text(), k).map_err(&err)?;
                    let jws = crate::token::jws::Jws::parse(text()).map_err(token(format))?;
                    (claims, jws.header().clone())
                }
                None => {
                    let u = delta::decode_jwt_unverified(text()).map_err(&err)?;
                    (u.claims, u.header)
                }
            };
            let text_of = |k: &str| header.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            (claims, text_of("alg"), text_of("kid"))
        }
        (_, keys) => {
            let u = delta::decode_cwt_unverified(input).map_err(&err)?;
            let claims = match keys {
                Some(k) => delta::verify_cwt(input, k).map_err(&err)?,
                None => u.claims,
            };
            let kid = u.kid.map(|k| String::from_utf8_lossy(&k).into_owned());
            (claims, Some(u.alg.jose_name().to_owned()), kid)
        }
    };
    claims.check_time(opts.now).map_err(token(format))?;
    let d = &claims.delta;
    let changes = delta::decode_changes(d.bits, MAX_ENTRIES, &d.changes).map_err(&err)?;
    let shown = if opts.all {
        changes.len()
    } else {
        changes.len().min(DELTA_CHANGES_SHOWN)
    };
    let mut report = DeltaReport {
        format,
        signature: signature_label(&opts.keys),
        alg,
        kid,
        issuer: claims.iss.clone(),
        iat: claims.iat,
        exp: claims.exp,
        ttl_seconds: claims.ttl,
        bits: d.bits.get(),
        from: d.from,
        to: d.to,
        change_count: changes.len(),
        changes: changes[..shown]
            .iter()
            .map(|&(idx, v)| entry(idx.into(), Status(v)))
            .collect(),
        changes_not_shown: changes.len() - shown,
        sha256: d.sha256.iter().map(|b| format!("{b:02x}")).collect(),
        subject: claims.sub,
        chain: None,
    };
    if !opts.trust_anchors.is_empty() {
        let at = report.iat;
        let (signature, chain) = anchored(input, format, &opts.trust_anchors, at)?;
        (report.signature, report.chain) = (signature, Some(chain));
    }
    Ok(report)
}

fn inspect_list(input: &[u8], format: Format, opts: &Options) -> Result<Report, InspectError> {
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
        Format::DeltaJwt | Format::DeltaCwt => return Err(InspectError::NotAList(format)),
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
        let at = report.iat.unwrap_or(opts.now);
        let (signature, chain) = anchored(input, format, &opts.trust_anchors, at)?;
        (report.signature, report.chain) = (signature, Some(chain));
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

/// Validates the token's chain up to one of `anchors` at `at`, the token's `iat` (or now: an
/// operator asks whether the chain vouched for the token when it was signed), and verifies the
/// token with the leaf's key. Returns the signature's label and the chain's description.
fn anchored(
    input: &[u8],
    format: Format,
    anchors: &[x509_cert::Certificate],
    at: u64,
) -> Result<(&'static str, String), InspectError> {
    if !matches!(
        format,
        Format::StatusListJwt
            | Format::VcJwt
            | Format::StatusListCwt
            | Format::DeltaJwt
            | Format::DeltaCwt
    ) {
        return Err(InspectError::NothingToVerify(format));
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at);
    let anchored = crate::anchor::keys(input, anchors, at)?;
    let text = || std::str::from_utf8(input).map(str::trim).unwrap_or("");
    let keys = &anchored.keys;
    match format {
        Format::StatusListJwt => statuslist::verify_jwt(text(), keys)
            .map(drop)
            .map_err(token(format)),
        Format::VcJwt => vc::verify_vc_jwt(text(), keys)
            .map(drop)
            .map_err(token(format)),
        Format::StatusListCwt => statuslist::verify_cwt(input, keys)
            .map(drop)
            .map_err(token(format)),
        Format::DeltaJwt => delta::verify_jwt(text(), keys)
            .map(drop)
            .map_err(delta_err(format)),
        _ => delta::verify_cwt(input, keys)
            .map(drop)
            .map_err(delta_err(format)),
    }?;
    Ok(("verified", anchored.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [Format; 9] = [
        Format::StatusListJwt,
        Format::StatusListCwt,
        Format::VcJwt,
        Format::VcJson,
        Format::StatusListJson,
        Format::StatusListCbor,
        Format::Roaring,
        Format::DeltaJwt,
        Format::DeltaCwt,
    ];

    mod deltas {
        use super::*;
        use crate::delta::Delta;
        use crate::status::Bits;
        use crate::token::keys::{Algorithm, SigningKey};

        const NOW: u64 = 1_800_000_100;

        /// A delta from version 4 to 9 naming `n` entries (every third index, values 1, 2, 3,
        /// 1, …), its key, and options that verify with it.
        fn signed(n: u32) -> (DeltaClaims, SigningKey, Options) {
            let entries = (0..n).map(|i| (u64::from(i) * 3, Status((i % 3 + 1) as u8)));
            let to = StatusList::from_entries(Bits::Two, 1 << 12, entries).unwrap();
            let claims = DeltaClaims {
                sub: "https://status.example/statuslists/7".into(),
                iss: None,
                iat: 1_800_000_000,
                exp: Some(1_800_086_400),
                ttl: Some(300),
                delta: Delta::build(&to, 4, 9, (0..n).map(|i| i * 3)),
            };
            let key = SigningKey::generate(Algorithm::Es256).with_kid("k1".into());
            let opts = Options {
                keys: Some(KeySet::new(vec![key.verifying_key()])),
                now: NOW,
                ..Options::default()
            };
            (claims, key, opts)
        }

        fn report(input: &[u8], opts: &Options) -> DeltaReport {
            match inspect_any(input, opts).unwrap() {
                Inspected::Delta(r) => r,
                Inspected::List(r) => panic!("read as a list: {r:?}"),
            }
        }

        #[test]
        fn both_forms_are_recognised_verified_and_shown() {
            let (claims, key, opts) = signed(3);
            let jwt = delta::sign_jwt(&claims, &key).unwrap();
            let cwt = delta::sign_cwt(&claims, &key).unwrap();
            for (input, format) in [
                (jwt.as_bytes(), Format::DeltaJwt),
                (&cwt[..], Format::DeltaCwt),
            ] {
                let r = report(input, &opts);
                assert_eq!((r.format, r.signature), (format, "verified"));
                assert_eq!(
                    (r.alg.as_deref(), r.kid.as_deref()),
                    (Some("ES256"), Some("k1"))
                );
                assert_eq!(r.subject, claims.sub);
                assert_eq!(
                    (r.iat, r.exp, r.ttl_seconds),
                    (1_800_000_000, Some(1_800_086_400), Some(300))
                );
                assert_eq!((r.bits, r.from, r.to, r.change_count), (2, 4, 9, 3));
                let shown: Vec<_> = r
                    .changes
                    .iter()
                    .map(|e| (e.idx, e.status, e.value))
                    .collect();
                assert_eq!(
                    shown,
                    [
                        (0, "INVALID", 1),
                        (3, "SUSPENDED", 2),
                        (6, "APPLICATION_SPECIFIC", 3)
                    ]
                );
                assert_eq!(r.changes_not_shown, 0);
                let hex: String = claims
                    .delta
                    .sha256
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(r.sha256, hex);
                // Without a key: the same, the signature not checked.
                let unchecked = Options {
                    keys: None,
                    ..opts.clone()
                };
                let u = report(input, &unchecked);
                assert_eq!(u.signature, "not checked (no key given)");
                assert_eq!(
                    (u.change_count, u.sha256),
                    (r.change_count, r.sha256.clone())
                );
                // A delta is not a list.
                assert!(
                    matches!(inspect(input, &opts), Err(InspectError::NotAList(f)) if f == format)
                );
            }
        }

        #[test]
        fn many_changes_are_listed_only_with_all() {
            let (claims, key, mut opts) = signed(50);
            let jwt = delta::sign_jwt(&claims, &key).unwrap();
            let r = report(jwt.as_bytes(), &opts);
            assert_eq!((r.change_count, r.changes.len()), (50, DELTA_CHANGES_SHOWN));
            assert_eq!(r.changes_not_shown, 50 - DELTA_CHANGES_SHOWN);
            assert_eq!(
                r.changes.last().unwrap().idx,
                3 * (DELTA_CHANGES_SHOWN as u64 - 1)
            );
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json["changes_not_shown"], 30);
            opts.all = true;
            let r = report(jwt.as_bytes(), &opts);
            assert_eq!((r.changes.len(), r.changes_not_shown), (50, 0));
            assert!(serde_json::to_value(&r)
                .unwrap()
                .get("changes_not_shown")
                .is_none());
        }

        #[test]
        fn a_bad_delta_fails_with_its_cause() {
            let (claims, key, opts) = signed(3);
            let message =
                |input: &[u8], opts: &Options| inspect_any(input, opts).unwrap_err().to_string();
            // Another key.
            let other = SigningKey::generate(Algorithm::Es256).with_kid("k1".into());
            let forged = delta::sign_jwt(&claims, &other).unwrap();
            assert_eq!(
                message(forged.as_bytes(), &opts),
                "statuslist-delta+jwt: signature verification failed"
            );
            let forged = delta::sign_cwt(&claims, &other).unwrap();
            assert_eq!(
                message(&forged, &opts),
                "statuslist-delta+cwt: signature verification failed"
            );
            // Expired.
            let jwt = delta::sign_jwt(&claims, &key).unwrap();
            let late = Options {
                now: 1_800_086_400,
                ..opts.clone()
            };
            assert!(
                message(jwt.as_bytes(), &late).starts_with("statuslist-delta+jwt: "),
                "{}",
                message(jwt.as_bytes(), &late)
            );
            assert!(matches!(
                inspect_any(jwt.as_bytes(), &late),
                Err(InspectError::Token {
                    error: TokenError::Expired { .. },
                    ..
                })
            ));
            // --idx asks for a list's entries.
            let idx = Options {
                indices: vec![3],
                ..opts.clone()
            };
            assert!(matches!(
                inspect_any(jwt.as_bytes(), &idx),
                Err(InspectError::IdxOnDelta(Format::DeltaJwt))
            ));
            // Changes that are not ZLIB, signed: refused after the signature, by the delta's rule.
            let mut broken = claims.clone();
            broken.delta.changes = b"not zlib".to_vec();
            let jwt = delta::sign_jwt(&broken, &key).unwrap();
            let e = message(jwt.as_bytes(), &opts);
            assert!(
                e.starts_with("statuslist-delta+jwt: status_list_delta: changes: "),
                "{e}"
            );
            // A truncated token.
            let cut = &jwt[..jwt.len() - 10];
            assert!(message(cut.as_bytes(), &opts).starts_with("statuslist-delta+jwt: "));
        }
    }

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
