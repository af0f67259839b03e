//! The relying party's status check, as `statusd verify` runs it and as a library call:
//! read a credential's status references ([`credential`]), fetch each list over HTTP through
//! an on-disk cache ([`cache`], [`fetch`]), verify its signature and every claim the IETF draft
//! (§8.3) and the W3C REC (§3.2 Validate) require, and read the entry.
//!
//! Privacy: only whole lists are fetched, never the per-credential lookup API, so the list's
//! host (or its CDN) cannot tell which credential is being checked. Caching follows the
//! token: a list is reused without asking while `fetched_at + ttl` (capped by `exp` and by
//! [`Options::max_ttl`]) lies ahead, then revalidated with `If-None-Match`; `Cache-Control`
//! only counts when the token carries no `ttl` (draft §8.2: `exp`/`ttl` take priority).
//!
//! The credential's own signature is **not** checked here: the caller verifies the credential
//! first, as draft §8.3 step 1 requires, and asks for its status only if it is valid.
//!
//! Verifiers that mirror every list follow them by signed deltas instead ([`delta`]:
//! statusd's extension).
//!
//! This module must never reach into the server (`http`, `snapshot`, `store`, `app`): it uses
//! the codecs of [`crate::status`] and the token checks of [`crate::token`] only.

pub mod cache;
pub mod credential;
pub mod delta;
pub mod fetch;
pub mod sl2021;

pub use cache::Cache;
pub use credential::{Credential, CredentialError, CredentialFormat, Reference};
pub use fetch::FetchError;

use crate::status::ietf::IetfError;
use crate::status::w3c::{self, W3cError};
use crate::status::{Status, StatusError, StatusList};
use crate::token::keys::KeySet;
use crate::token::statuslist::{self, StatusListClaims, MAX_CLOCK_SKEW_SECS};
use crate::token::{vc, TokenError};
use serde::Serialize;
use std::time::Duration;

/// Exit code (and [`Outcome::exit_code`]) when every reference reads VALID.
pub const EXIT_VALID: u8 = 0;
/// A reference reads INVALID (revoked).
pub const EXIT_INVALID: u8 = 10;
/// A reference reads SUSPENDED (and none INVALID).
pub const EXIT_SUSPENDED: u8 = 11;
/// A reference reads any other non-VALID status (and none INVALID or SUSPENDED).
pub const EXIT_OTHER: u8 = 12;
/// The check itself failed; no statement about the credential can be made.
pub const EXIT_CHECK_FAILED: u8 = 1;

/// `Accept` for IETF Status List Tokens.
pub const ACCEPT_TOKEN: &str = "application/statuslist+jwt, application/statuslist+cwt;q=0.9";
/// `Accept` for IETF Status List Tokens when the credential is CBOR (an mdoc or a CWT).
pub const ACCEPT_TOKEN_CBOR: &str = "application/statuslist+cwt, application/statuslist+jwt;q=0.9";
/// `Accept` for W3C status list credentials secured as JWTs.
pub const ACCEPT_VC: &str = "application/vc+jwt";
/// `Accept` for Status List 2021 credentials (VC-JWT 1.1).
pub const ACCEPT_VC_1_1: &str = "application/jwt, application/vc+jwt;q=0.9";
/// `Accept` for a JWKS.
pub const ACCEPT_JWKS: &str = "application/jwk-set+json, application/json;q=0.9";
/// Default longest time a list is reused without asking: a malicious or careless `ttl` must
/// not make the verifier trust a list for weeks (draft §11.5 asks for sanity bounds).
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(86_400);

/// How a verifier fetches, caches and trusts lists.
#[derive(Clone, Debug)]
pub struct Options {
    /// The on-disk cache; `None` fetches every time.
    pub cache: Option<Cache>,
    /// Use only the cache: no request is made, a missing entry fails the check.
    pub offline: bool,
    /// Pinned verification keys. Without them (and without trust anchors) the JWKS is
    /// discovered at `{iss}/.well-known/jwks.json` (the list's `iss`, or the list URL's origin).
    pub keys: Option<KeySet>,
    /// X.509 trust anchors: when given, every list must carry a certificate chain (`x5c` /
    /// `x5chain`) that validates up to one of them at the time of the check, and the leaf's key
    /// must verify it; `keys` is then not used and no JWKS is fetched.
    pub trust_anchors: Vec<x509_cert::Certificate>,
    /// Unix seconds to check validity at; `None` is the system clock.
    pub now: Option<u64>,
    /// Minimum entries of a W3C list (131,072 unless an ecosystem sets less).
    pub min_entries: u32,
    /// Time limit of each request.
    pub timeout: Duration,
    /// Longest reuse of a cached list without revalidation, whatever `ttl` says.
    pub max_ttl: Duration,
    /// How https lists and key sets are fetched: system roots, or a private CA (`--ca`).
    pub tls: crate::tls::ClientTls,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache: Some(Cache::new(Cache::default_dir())),
            offline: false,
            keys: None,
            trust_anchors: Vec::new(),
            now: None,
            min_entries: w3c::MIN_ENTRIES,
            timeout: Duration::from_secs(30),
            max_ttl: DEFAULT_MAX_TTL,
            tls: crate::tls::ClientTls::default(),
        }
    }
}

/// The status a credential has, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Invalid,
    Suspended,
    Other,
    Valid,
}

impl Outcome {
    /// The process exit code of `statusd verify` (a contract: 0, 10, 11, 12).
    pub const fn exit_code(self) -> u8 {
        match self {
            Outcome::Valid => EXIT_VALID,
            Outcome::Invalid => EXIT_INVALID,
            Outcome::Suspended => EXIT_SUSPENDED,
            Outcome::Other => EXIT_OTHER,
        }
    }
}

/// Where a list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Reused from the cache without a request.
    Cache,
    /// Fetched whole from the origin.
    Network,
    /// Cached body confirmed by a 304 to `If-None-Match`.
    Revalidated,
}

/// What was learnt about one list.
#[derive(Clone, Debug, Serialize)]
pub struct ListInfo {
    pub url: String,
    /// `statuslist+jwt`, `statuslist+cwt` or `vc+jwt`.
    pub format: &'static str,
    pub source: Source,
    /// Seconds since the origin last sent or confirmed this list.
    pub age_seconds: u64,
    /// Unix seconds until which the list is reused without asking.
    pub fresh_until: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `--key`, the URL of the discovered JWKS, or the certificate chain validated to a trust
    /// anchor ("2 certificate(s) validated to CN=…").
    pub key_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    pub size: u32,
}

/// The status behind one reference.
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    pub reference: Reference,
    /// `VALID`, `INVALID`, `SUSPENDED`, `APPLICATION_SPECIFIC`, …, or for a W3C `refresh`
    /// or custom purpose the purpose in capitals.
    pub status: String,
    pub value: u8,
    pub outcome: Outcome,
    pub list: ListInfo,
}

/// The result of a check.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub credential_format: CredentialFormat,
    /// Always "not checked": the credential's own signature is the caller's check.
    pub credential_signature: &'static str,
    /// The worst status of all references.
    pub status: Outcome,
    pub exit_code: u8,
    pub references: Vec<Checked>,
}

/// Why no statement about the credential's status can be made.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Credential(#[from] CredentialError),
    #[error("fetching the list failed: {0}")]
    Fetch(FetchError),
    #[error("{url}: not in the cache and --offline forbids fetching it")]
    Offline { url: String },
    #[error("{url}: {error}")]
    Token { url: String, error: TokenError },
    #[error("{url}: no usable verification key: {reason}")]
    Keys { url: String, reason: String },
    #[error("{url}: certificate chain: {error}")]
    Chain {
        url: String,
        error: crate::anchor::AnchorError,
    },
    #[error("{url}: the list's sub {sub:?} is not the URI the credential references, so the list must be rejected")]
    SubjectMismatch { url: String, sub: String },
    #[error("{url}: the list credential's id {id:?} is not the URL the credential references")]
    IdMismatch { url: String, id: String },
    #[error("{url}: {reason}")]
    List { url: String, reason: String },
    #[error("{url}: index {idx} is out of range (the list has {size} entries), so the credential must be rejected")]
    OutOfRange { url: String, idx: u64, size: u32 },
    #[error("{url}: {reason}")]
    Validity { url: String, reason: String },
    #[error("{url}: statusPurpose {purpose:?} is not among the list's purposes {published:?} (STATUS_VERIFICATION_ERROR)")]
    PurposeMismatch {
        url: String,
        purpose: String,
        published: Vec<String>,
    },
    #[error("{url}: statusSize {entry} of the entry differs from the list's {list}")]
    SizeMismatch { url: String, entry: u8, list: u8 },
    #[error("writing the cache in {dir}: {error}")]
    Cache { dir: String, error: std::io::Error },
}

/// A relying party's status checker.
#[derive(Clone, Debug)]
pub struct Verifier {
    opts: Options,
}

/// A verified list, before its entry is read.
struct Verified {
    list: StatusList,
    format: &'static str,
    kid: Option<String>,
    iat: Option<u64>,
    exp: Option<u64>,
    ttl: Option<u64>,
    valid_until: Option<(String, u64)>,
    purposes: Vec<String>,
}

/// A body and where it came from.
struct Fetched {
    body: Vec<u8>,
    meta: cache::Meta,
    source: Source,
    cache_control: Option<String>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rfc3339_secs(s: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(s)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

impl Verifier {
    pub fn new(opts: Options) -> Self {
        Verifier { opts }
    }

    /// Checks the status of `credential` (its bytes or text, see [`credential::parse`]).
    pub async fn verify(&self, credential: &[u8]) -> Result<Report, VerifyError> {
        let cred = credential::parse(credential)?;
        let mut references = Vec::with_capacity(cred.references.len());
        for r in &cred.references {
            references.push(self.check(r, cred.format).await?);
        }
        let status = references
            .iter()
            .map(|c| c.outcome)
            .min()
            .unwrap_or(Outcome::Valid);
        Ok(Report {
            credential_format: cred.format,
            credential_signature: "not checked (out of scope: verify the credential first)",
            status,
            exit_code: status.exit_code(),
            references,
        })
    }

    /// Checks one reference of a credential in `format` (a CBOR credential asks for the CWT
    /// form of a Token Status List first, a JOSE one for the JWT form).
    pub async fn check(
        &self,
        reference: &Reference,
        format: CredentialFormat,
    ) -> Result<Checked, VerifyError> {
        let now = self.opts.now.unwrap_or_else(now_secs);
        let url = reference.url();
        let accept = match (reference, format) {
            (Reference::TokenStatusList { .. }, CredentialFormat::Cose) => ACCEPT_TOKEN_CBOR,
            (Reference::TokenStatusList { .. }, _) => ACCEPT_TOKEN,
            (Reference::Bitstring { .. }, _) => ACCEPT_VC,
            (Reference::StatusList2021 { .. }, _) => ACCEPT_VC_1_1,
        };
        let fetched = self.fetch(url, accept, now).await?;
        let (verified, key_source) = self.verify_list(reference, &fetched.body, now).await?;
        let mut meta = fetched.meta;
        if fetched.source != Source::Cache {
            meta.fresh_until = fresh_until(
                meta.fetched_at,
                verified.ttl,
                fetched.cache_control.as_deref(),
                verified.exp.or(verified.valid_until.as_ref().map(|v| v.1)),
                self.opts.max_ttl,
            );
            if let Some(c) = &self.opts.cache {
                c.put(&cache::Entry {
                    meta: meta.clone(),
                    body: fetched.body,
                })
                .map_err(|error| VerifyError::Cache {
                    dir: c.dir().display().to_string(),
                    error,
                })?;
            }
        }
        let list = &verified.list;
        let read = |idx: u64| {
            list.get(idx).map_err(|e| match e {
                StatusError::IndexOutOfRange { idx, size } => VerifyError::OutOfRange {
                    url: url.to_owned(),
                    idx,
                    size,
                },
                other => VerifyError::List {
                    url: url.to_owned(),
                    reason: other.to_string(),
                },
            })
        };
        let (status, value, outcome) = match (reference.purpose(), reference.status_size()) {
            (Some(purpose), Some(size)) => {
                if !verified.purposes.iter().any(|p| p == purpose) {
                    return Err(VerifyError::PurposeMismatch {
                        url: url.to_owned(),
                        purpose: purpose.to_owned(),
                        published: verified.purposes.clone(),
                    });
                }
                if size != list.bits().get() {
                    return Err(VerifyError::SizeMismatch {
                        url: url.to_owned(),
                        entry: size,
                        list: list.bits().get(),
                    });
                }
                let v = read(reference.index())?.0;
                let (name, outcome) = match (purpose, v) {
                    (_, 0) => ("VALID".to_owned(), Outcome::Valid),
                    ("revocation", _) => ("INVALID".to_owned(), Outcome::Invalid),
                    ("suspension", _) => ("SUSPENDED".to_owned(), Outcome::Suspended),
                    ("message", v) => (Status(v).name().to_owned(), outcome_of(Status(v))),
                    (p, _) => (p.to_ascii_uppercase(), Outcome::Other),
                };
                (name, v, outcome)
            }
            _ => {
                let s = read(reference.index())?;
                (s.name().to_owned(), s.0, outcome_of(s))
            }
        };
        Ok(Checked {
            reference: reference.clone(),
            status,
            value,
            outcome,
            list: ListInfo {
                url: url.to_owned(),
                format: verified.format,
                source: fetched.source,
                age_seconds: now.saturating_sub(meta.fetched_at),
                fresh_until: meta.fresh_until,
                etag: meta.etag,
                kid: verified.kid,
                key_source,
                iat: verified.iat,
                exp: verified.exp,
                ttl_seconds: verified.ttl,
                valid_until: verified.valid_until.map(|v| v.0),
                size: list.size(),
            },
        })
    }

    /// The body of `url`: from the cache while fresh (or always, offline), else from the
    /// origin, revalidating a cached copy by its ETag.
    async fn fetch(&self, url: &str, accept: &str, now: u64) -> Result<Fetched, VerifyError> {
        let cached = self.opts.cache.as_ref().and_then(|c| c.get(url, accept));
        match cached {
            Some(e) if self.opts.offline || now < e.meta.fresh_until => {
                return Ok(Fetched {
                    body: e.body,
                    meta: e.meta,
                    source: Source::Cache,
                    cache_control: None,
                })
            }
            None if self.opts.offline => {
                return Err(VerifyError::Offline {
                    url: url.to_owned(),
                })
            }
            _ => {}
        }
        let cached = self.opts.cache.as_ref().and_then(|c| c.get(url, accept));
        let inm = cached.as_ref().and_then(|e| e.meta.etag.clone());
        let answer = fetch::get(
            url,
            accept,
            inm.as_deref(),
            self.opts.timeout,
            &self.opts.tls,
        )
        .await
        .map_err(VerifyError::Fetch)?;
        let (body, source, etag) = match (answer.not_modified, cached) {
            (true, Some(e)) => (e.body, Source::Revalidated, answer.etag.or(e.meta.etag)),
            (true, None) => {
                return Err(VerifyError::Fetch(FetchError::Status {
                    url: url.to_owned(),
                    status: 304,
                    body: "304 to a request that had no If-None-Match".into(),
                }))
            }
            (false, _) => (answer.body, Source::Network, answer.etag),
        };
        Ok(Fetched {
            body,
            meta: cache::Meta {
                url: url.to_owned(),
                accept: accept.to_owned(),
                etag,
                content_type: answer.content_type,
                fetched_at: now,
                fresh_until: now,
            },
            source,
            cache_control: answer.cache_control,
        })
    }

    /// Whether keys come from a JWKS that may be fetched again when a `kid` is unknown (a key
    /// rotated since it was cached).
    fn may_rediscover(&self) -> bool {
        self.opts.keys.is_none() && self.opts.trust_anchors.is_empty() && !self.opts.offline
    }

    /// The key of the chain `body` carries, validated up to a trust anchor at `now` (the
    /// relying party relies on the list now, so every certificate must be valid now).
    fn anchored_keys(
        &self,
        list_url: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(KeySet, String), VerifyError> {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(now);
        let a = crate::anchor::keys(body, &self.opts.trust_anchors, at).map_err(|error| {
            VerifyError::Chain {
                url: list_url.to_owned(),
                error,
            }
        })?;
        let source = a.describe();
        Ok((a.keys, source))
    }

    /// The keys to verify `body` with: from its certificate chain (trust anchors given), the
    /// pinned keys, or the JWKS of `issuer` (an http(s) URL) or of the list's origin.
    async fn keys(
        &self,
        list_url: &str,
        issuer: Option<&str>,
        body: &[u8],
        now: u64,
        refresh: bool,
    ) -> Result<(KeySet, String), VerifyError> {
        if !self.opts.trust_anchors.is_empty() {
            return self.anchored_keys(list_url, body, now);
        }
        if let Some(k) = &self.opts.keys {
            return Ok((k.clone(), "--key".to_owned()));
        }
        let base = issuer
            .filter(|i| i.starts_with("http://") || i.starts_with("https://"))
            .unwrap_or_else(|| fetch::origin(list_url));
        let jwks_url = format!("{}/.well-known/jwks.json", base.trim_end_matches('/'));
        let keys_err = |reason: String| VerifyError::Keys {
            url: list_url.to_owned(),
            reason,
        };
        let cached = self
            .opts
            .cache
            .as_ref()
            .and_then(|c| c.get(&jwks_url, ACCEPT_JWKS));
        let body = match cached {
            Some(e) if self.opts.offline || (!refresh && now < e.meta.fresh_until) => e.body,
            _ if self.opts.offline => {
                return Err(keys_err(format!(
                    "{jwks_url} is not in the cache and --offline forbids fetching it"
                )))
            }
            _ => {
                let a = fetch::get(
                    &jwks_url,
                    ACCEPT_JWKS,
                    None,
                    self.opts.timeout,
                    &self.opts.tls,
                )
                .await
                .map_err(|e| keys_err(e.to_string()))?;
                if let Some(c) = &self.opts.cache {
                    let age = a.cache_control.as_deref().and_then(cache::max_age);
                    let entry = cache::Entry {
                        meta: cache::Meta {
                            url: jwks_url.clone(),
                            accept: ACCEPT_JWKS.to_owned(),
                            etag: a.etag.clone(),
                            content_type: a.content_type.clone(),
                            fetched_at: now,
                            fresh_until: now
                                .saturating_add(age.unwrap_or(0).min(self.opts.max_ttl.as_secs())),
                        },
                        body: a.body.clone(),
                    };
                    c.put(&entry).map_err(|error| VerifyError::Cache {
                        dir: c.dir().display().to_string(),
                        error,
                    })?;
                }
                a.body
            }
        };
        let text =
            String::from_utf8(body).map_err(|_| keys_err(format!("{jwks_url}: not UTF-8")))?;
        let set =
            KeySet::from_jwks_json(&text).map_err(|e| keys_err(format!("{jwks_url}: {e}")))?;
        Ok((set, jwks_url))
    }

    async fn verify_list(
        &self,
        reference: &Reference,
        body: &[u8],
        now: u64,
    ) -> Result<(Verified, String), VerifyError> {
        let url = reference.url();
        let token_err = |error: TokenError| VerifyError::Token {
            url: url.to_owned(),
            error,
        };
        match reference {
            Reference::TokenStatusList { .. } => {
                let cwt = matches!(body, [0xd2, ..] | [0xd8, ..]);
                let text = std::str::from_utf8(body).map(str::trim);
                let (issuer, kid) = if cwt {
                    let u = statuslist::decode_cwt_unverified(body).map_err(token_err)?;
                    (
                        u.claims.iss,
                        u.kid.map(|k| String::from_utf8_lossy(&k).into_owned()),
                    )
                } else {
                    let t = text.map_err(|_| {
                        token_err(TokenError::Malformed("neither a JWT nor a CWT".into()))
                    })?;
                    let u = statuslist::decode_jwt_unverified(t).map_err(token_err)?;
                    let kid = u
                        .header
                        .get("kid")
                        .and_then(|k| k.as_str())
                        .map(str::to_owned);
                    (u.claims.iss, kid)
                };
                let verify = |keys: &KeySet| -> Result<StatusListClaims, TokenError> {
                    if cwt {
                        statuslist::verify_cwt(body, keys)
                    } else {
                        statuslist::verify_jwt(text.unwrap_or_default(), keys)
                    }
                };
                let (keys, source) = self.keys(url, issuer.as_deref(), body, now, false).await?;
                let (claims, source) = match verify(&keys) {
                    // A key rotated since the JWKS was cached: ask once more.
                    Err(TokenError::UnknownKey(_)) if self.may_rediscover() => {
                        let (keys, source) =
                            self.keys(url, issuer.as_deref(), body, now, true).await?;
                        (verify(&keys).map_err(token_err)?, source)
                    }
                    other => (other.map_err(token_err)?, source),
                };
                if claims.sub != url {
                    return Err(VerifyError::SubjectMismatch {
                        url: url.to_owned(),
                        sub: claims.sub,
                    });
                }
                statuslist::check_time(&claims, now).map_err(token_err)?;
                let list =
                    claims
                        .status_list
                        .decode()
                        .map_err(|e: IetfError| VerifyError::List {
                            url: url.to_owned(),
                            reason: e.to_string(),
                        })?;
                Ok((
                    Verified {
                        list,
                        format: if cwt {
                            "statuslist+cwt"
                        } else {
                            "statuslist+jwt"
                        },
                        kid,
                        iat: Some(claims.iat),
                        exp: claims.exp,
                        ttl: claims.ttl,
                        valid_until: None,
                        purposes: Vec::new(),
                    },
                    source,
                ))
            }
            Reference::StatusList2021 { .. } => self.verify_sl2021(url, body, now).await,
            Reference::Bitstring { .. } => {
                let t = std::str::from_utf8(body)
                    .map(str::trim)
                    .map_err(|_| token_err(TokenError::Malformed("not a vc+jwt".into())))?;
                let u = vc::decode_vc_jwt_unverified(t).map_err(token_err)?;
                let issuer = match u.credential.get("issuer") {
                    Some(serde_json::Value::Object(o)) => o.get("id").and_then(|v| v.as_str()),
                    Some(v) => v.as_str(),
                    None => None,
                }
                .map(str::to_owned);
                let kid = u
                    .header
                    .get("kid")
                    .and_then(|k| k.as_str())
                    .map(str::to_owned);
                let (keys, source) = self.keys(url, issuer.as_deref(), body, now, false).await?;
                let (credential, source) = match vc::verify_vc_jwt(t, &keys) {
                    Err(TokenError::UnknownKey(_)) if self.may_rediscover() => {
                        let (keys, source) =
                            self.keys(url, issuer.as_deref(), body, now, true).await?;
                        (vc::verify_vc_jwt(t, &keys).map_err(token_err)?, source)
                    }
                    other => (other.map_err(token_err)?, source),
                };
                let parsed = w3c::parse_credential(&credential, self.opts.min_entries).map_err(
                    |e: W3cError| VerifyError::List {
                        url: url.to_owned(),
                        reason: format!("{}: {e}", e.code()),
                    },
                )?;
                if let Some(id) = parsed.id.filter(|id| id != url) {
                    return Err(VerifyError::IdMismatch {
                        url: url.to_owned(),
                        id,
                    });
                }
                let validity = |reason: String| VerifyError::Validity {
                    url: url.to_owned(),
                    reason,
                };
                if let Some(from) = &parsed.valid_from {
                    let t = rfc3339_secs(from).ok_or_else(|| {
                        validity(format!("validFrom {from:?} is not a date-time"))
                    })?;
                    if t > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
                        return Err(validity(format!("not yet valid: validFrom is {from}")));
                    }
                }
                let valid_until = match parsed.valid_until {
                    Some(until) => {
                        let t = rfc3339_secs(&until).ok_or_else(|| {
                            validity(format!("validUntil {until:?} is not a date-time"))
                        })?;
                        if now >= t {
                            return Err(validity(format!(
                                "expired: validUntil {until} has passed, so the list must not be relied on"
                            )));
                        }
                        Some((until, t))
                    }
                    None => None,
                };
                Ok((
                    Verified {
                        list: parsed.list,
                        format: "vc+jwt",
                        kid,
                        iat: None,
                        exp: None,
                        ttl: parsed.ttl_ms.map(|ms| ms / 1000),
                        valid_until,
                        purposes: parsed.purposes,
                    },
                    source,
                ))
            }
        }
    }
}

impl Verifier {
    /// A `StatusList2021Credential` secured as a VC-JWT 1.1: the JWS (any `typ` but another
    /// token type's), its signature, the JWT's `exp`/`nbf`, then the credential in `vc` (or
    /// the payload itself) with its `issuanceDate` / `expirationDate`.
    async fn verify_sl2021(
        &self,
        url: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(Verified, String), VerifyError> {
        use crate::token::jws::Jws;
        let token_err = |error: TokenError| VerifyError::Token {
            url: url.to_owned(),
            error,
        };
        let list_err = |reason: String| VerifyError::List {
            url: url.to_owned(),
            reason,
        };
        let validity = |reason: String| VerifyError::Validity {
            url: url.to_owned(),
            reason,
        };
        let t = std::str::from_utf8(body)
            .map(str::trim)
            .map_err(|_| token_err(TokenError::Malformed("not a JWT".into())))?;
        let jws = Jws::parse(t).map_err(token_err)?;
        if let Some(typ) = jws.typ() {
            let typ = typ.to_ascii_lowercase();
            if typ != "jwt" && !typ.ends_with("vc+jwt") {
                return Err(token_err(TokenError::WrongType {
                    expected: "JWT",
                    found: typ,
                }));
            }
        }
        let payload: serde_json::Value = serde_json::from_slice(jws.payload())
            .map_err(|e| token_err(TokenError::Malformed(format!("payload is not JSON: {e}"))))?;
        let credential = payload.get("vc").unwrap_or(&payload).clone();
        let issuer = payload
            .get("iss")
            .and_then(|v| v.as_str())
            .or_else(|| match credential.get("issuer") {
                Some(serde_json::Value::Object(o)) => o.get("id").and_then(|v| v.as_str()),
                Some(v) => v.as_str(),
                None => None,
            })
            .map(str::to_owned);
        let (keys, mut source) = self.keys(url, issuer.as_deref(), body, now, false).await?;
        match jws.verify(&keys) {
            Err(TokenError::UnknownKey(_)) if self.may_rediscover() => {
                let (keys, s) = self.keys(url, issuer.as_deref(), body, now, true).await?;
                jws.verify(&keys).map_err(token_err)?;
                source = s;
            }
            other => other.map_err(token_err)?,
        }
        let exp = payload.get("exp").and_then(|v| v.as_u64());
        if let Some(exp) = exp.filter(|&e| now >= e) {
            return Err(token_err(TokenError::Expired { exp, now }));
        }
        if let Some(nbf) = payload.get("nbf").and_then(|v| v.as_u64()) {
            if nbf > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
                return Err(token_err(TokenError::NotYetValid { iat: nbf, now }));
            }
        }
        let parsed = sl2021::parse(&credential, self.opts.min_entries).map_err(list_err)?;
        if let Some(id) = parsed.id.filter(|id| id != url) {
            return Err(VerifyError::IdMismatch {
                url: url.to_owned(),
                id,
            });
        }
        if let Some(from) = &parsed.issuance_date {
            let t = rfc3339_secs(from)
                .ok_or_else(|| validity(format!("issuanceDate {from:?} is not a date-time")))?;
            if t > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
                return Err(validity(format!("not yet valid: issuanceDate is {from}")));
            }
        }
        let valid_until = match parsed.expiration_date {
            Some(until) => {
                let t = rfc3339_secs(&until).ok_or_else(|| {
                    validity(format!("expirationDate {until:?} is not a date-time"))
                })?;
                if now >= t {
                    return Err(validity(format!(
                        "expired: expirationDate {until} has passed, so the list must not be relied on"
                    )));
                }
                Some((until, t))
            }
            None => None,
        };
        Ok((
            Verified {
                list: parsed.list,
                format: "StatusList2021Credential (VC-JWT 1.1)",
                kid: jws.kid().map(str::to_owned),
                iat: payload.get("iat").and_then(|v| v.as_u64()),
                exp,
                ttl: None,
                valid_until,
                purposes: vec![parsed.purpose],
            },
            source,
        ))
    }
}

/// Until when a list fetched (or revalidated) at `fetched_at` is reused without asking: the
/// token's `ttl` first, `Cache-Control: max-age` only without one (draft §8.2: `exp`/`ttl` take
/// priority over HTTP caching), neither meaning no reuse; capped by `max_ttl` (draft §11.5's
/// sanity bound) and by the list's end of validity (`exp` / `validUntil`).
pub fn fresh_until(
    fetched_at: u64,
    ttl: Option<u64>,
    cache_control: Option<&str>,
    end: Option<u64>,
    max_ttl: Duration,
) -> u64 {
    let ttl = ttl
        .or_else(|| cache_control.and_then(cache::max_age))
        .unwrap_or(0)
        .min(max_ttl.as_secs());
    let until = fetched_at.saturating_add(ttl);
    end.map_or(until, |end| until.min(end))
}

fn outcome_of(s: Status) -> Outcome {
    match s {
        Status::VALID => Outcome::Valid,
        Status::INVALID => Outcome::Invalid,
        Status::SUSPENDED => Outcome::Suspended,
        _ => Outcome::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_decides_the_exit_code() {
        let worst = |v: &[Outcome]| v.iter().copied().min().unwrap().exit_code();
        assert_eq!(worst(&[Outcome::Valid, Outcome::Valid]), 0);
        assert_eq!(worst(&[Outcome::Valid, Outcome::Suspended]), 11);
        assert_eq!(worst(&[Outcome::Suspended, Outcome::Invalid]), 10);
        assert_eq!(worst(&[Outcome::Other, Outcome::Valid]), 12);
        assert_eq!(worst(&[Outcome::Other, Outcome::Suspended]), 11);
    }

    #[test]
    fn freshness_follows_ttl_before_cache_control_and_never_passes_exp() {
        let day = DEFAULT_MAX_TTL;
        let cc = Some("public, max-age=60");
        assert_eq!(
            fresh_until(1000, Some(300), cc, None, day),
            1300,
            "ttl wins"
        );
        assert_eq!(
            fresh_until(1000, None, cc, None, day),
            1060,
            "max-age without ttl"
        );
        assert_eq!(
            fresh_until(1000, None, None, None, day),
            1000,
            "neither: no reuse"
        );
        assert_eq!(fresh_until(1000, None, Some("no-store"), None, day), 1000);
        assert_eq!(
            fresh_until(1000, Some(300), None, Some(1100), day),
            1100,
            "capped by exp"
        );
        assert_eq!(
            fresh_until(1000, Some(10_000_000), None, None, day),
            1000 + 86_400,
            "a hostile ttl is bounded"
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_secs("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(rfc3339_secs("yesterday"), None);
    }
}
