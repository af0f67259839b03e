//! A claim set signed as a JWT (JWS compact) or a CWT (COSE_Sign1_Tagged) under an explicit
//! `typ`: what the Status List Token ([`super::statuslist`]) and statusd's signed delta
//! ([`crate::delta`]) have in common. Each claim set says how it is written and read
//! ([`SignedClaims`]); this module owns the order of the steps around it, once: the `typ` in the
//! header, the signing call, and on the way back framing, `typ`, signature, then the claims.
//!
//! It must never interpret a claim (that is each claim set's own code) and never return claims
//! whose signature was not checked except through the explicitly named `decode_*_unverified`.

use super::cose::{cbor_from_slice, sign1_tagged, CoseTyp, Sign1};
use super::jws::{sign_compact, Jws};
use super::signer::{SignError, TokenSigner};
use super::statuslist::MAX_CLOCK_SKEW_SECS;
use super::{Algorithm, KeySet, TokenError};
use crate::status::ietf::cbor_to_vec;
use ciborium::Value as Cbor;
use serde_json::{Map, Value as Json};

/// A claim set that travels signed, as a JWT and as a CWT.
pub trait SignedClaims: Sized {
    /// The JWT header `typ`.
    const JWT_TYP: &'static str;
    /// The COSE protected `typ` (label 16).
    const CWT_TYP: &'static str;
    /// What reading the claims fails with.
    type Error: From<TokenError>;
    /// The JWT claims set (a JSON object).
    fn to_jwt_claims(&self) -> Json;
    /// The CWT claims map.
    fn to_cwt_claims(&self) -> Cbor;
    /// Reads a JWT claims set (the decoded payload JSON).
    fn from_jwt_claims(v: &Json) -> Result<Self, Self::Error>;
    /// Reads a CWT claims map.
    fn from_cwt_claims(v: &Cbor) -> Result<Self, Self::Error>;
}

/// The registered claims both claim sets begin with, written the one way both write them:
/// JWT members `sub`, `iss`, `iat`, `exp`, `ttl` (absent when `None`); CWT keys in the draft's
/// order 2 sub, 1 iss, 6 iat, 4 exp, 65534 ttl, so each claim set appends its own claim last.
pub(crate) struct Registered<'a> {
    pub sub: &'a str,
    pub iss: Option<&'a str>,
    pub iat: u64,
    pub exp: Option<u64>,
    pub ttl: Option<u64>,
}

impl Registered<'_> {
    pub(crate) fn to_jwt(&self) -> Map<String, Json> {
        let mut m = Map::new();
        m.insert("sub".into(), Json::from(self.sub));
        if let Some(iss) = self.iss {
            m.insert("iss".into(), Json::from(iss));
        }
        m.insert("iat".into(), Json::from(self.iat));
        if let Some(exp) = self.exp {
            m.insert("exp".into(), Json::from(exp));
        }
        if let Some(ttl) = self.ttl {
            m.insert("ttl".into(), Json::from(ttl));
        }
        m
    }

    /// Valid at `now` (seconds since the epoch): expired when `now` is at or past `exp` (RFC 7519
    /// §4.1.4: now "MUST be before" exp); not yet valid when `iat` is more than
    /// [`MAX_CLOCK_SKEW_SECS`] ahead of `now`. `ttl` is a caching hint, not a validity bound.
    pub(crate) fn check_time(&self, now: u64) -> Result<(), TokenError> {
        if self.iat > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(TokenError::NotYetValid { iat: self.iat, now });
        }
        match self.exp {
            Some(exp) if now >= exp => Err(TokenError::Expired { exp, now }),
            _ => Ok(()),
        }
    }

    pub(crate) fn to_cwt(&self) -> Vec<(Cbor, Cbor)> {
        use super::statuslist::cwt_key;
        let mut m = vec![(Cbor::from(cwt_key::SUB), Cbor::from(self.sub))];
        if let Some(iss) = self.iss {
            m.push((Cbor::from(cwt_key::ISS), Cbor::from(iss)));
        }
        m.push((Cbor::from(cwt_key::IAT), Cbor::from(self.iat)));
        if let Some(exp) = self.exp {
            m.push((Cbor::from(cwt_key::EXP), Cbor::from(exp)));
        }
        if let Some(ttl) = self.ttl {
            m.push((Cbor::from(cwt_key::TTL), Cbor::from(ttl)));
        }
        m
    }
}

/// Signs `claims` as a JWT with header `{"alg":…,"kid":…,"typ":C::JWT_TYP}` (plus `x5c` with a
/// certificate chain).
pub fn sign_jwt<C: SignedClaims>(
    claims: &C,
    key: &(impl TokenSigner + ?Sized),
) -> Result<String, SignError> {
    let mut header = Map::new();
    header.insert("typ".into(), Json::from(C::JWT_TYP));
    let payload =
        serde_json::to_vec(&claims.to_jwt_claims()).expect("serialising a JSON map cannot fail");
    sign_compact(header, &payload, key)
}

/// Signs `claims` as a CWT: COSE_Sign1_Tagged (18, no tag 61), protected
/// `{1: alg, 16: C::CWT_TYP}`, unprotected `{4: kid}`.
pub fn sign_cwt<C: SignedClaims>(
    claims: &C,
    key: &(impl TokenSigner + ?Sized),
) -> Result<Vec<u8>, SignError> {
    sign1_tagged(C::CWT_TYP, cbor_to_vec(&claims.to_cwt_claims()), key)
}

fn jwt_claims<C: SignedClaims>(jws: &Jws) -> Result<C, C::Error> {
    let v: Json = serde_json::from_slice(jws.payload())
        .map_err(|e| TokenError::Malformed(format!("JWT claims set is not JSON: {e}")))?;
    C::from_jwt_claims(&v)
}

fn cwt_claims<C: SignedClaims>(msg: &Sign1) -> Result<C, C::Error> {
    C::from_cwt_claims(&cbor_from_slice(msg.payload(), "CWT claims set")?)
}

/// Verifies a JWT: framing and `alg` ([`Jws::parse`]), `typ`, the signature under the key
/// `keys` selects, then the claims. Time is each claim set's own check.
pub fn verify_jwt<C: SignedClaims>(token: &str, keys: &KeySet) -> Result<C, C::Error> {
    let jws = Jws::parse(token)?;
    jws.check_typ(C::JWT_TYP)?;
    jws.verify(keys)?;
    jwt_claims(&jws)
}

/// Verifies a CWT: tag 18 without tag 61 ([`Sign1::parse`]), label 16, the signature, then the
/// claims. Time is each claim set's own check.
pub fn verify_cwt<C: SignedClaims>(bytes: &[u8], keys: &KeySet) -> Result<C, C::Error> {
    let msg = Sign1::parse(bytes)?;
    msg.check_typ(C::CWT_TYP)?;
    msg.verify(keys)?;
    cwt_claims(&msg)
}

/// A JWT decoded without checking its signature (for `statusd inspect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnverifiedJwt<C> {
    /// The protected header (with `alg` known to be one statusd accepts).
    pub header: Map<String, Json>,
    pub claims: C,
}

/// A CWT decoded without checking its signature (for `statusd inspect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnverifiedCwt<C> {
    pub alg: Algorithm,
    pub typ: CoseTyp,
    /// The `kid` bytes (UTF-8 text in everything statusd issues).
    pub kid: Option<Vec<u8>>,
    pub claims: C,
}

/// Every check of [`verify_jwt`] except the signature. Never use the result to make a status
/// decision; it exists to show an operator what a token says.
pub fn decode_jwt_unverified<C: SignedClaims>(token: &str) -> Result<UnverifiedJwt<C>, C::Error> {
    let jws = Jws::parse(token)?;
    jws.check_typ(C::JWT_TYP)?;
    Ok(UnverifiedJwt {
        claims: jwt_claims::<C>(&jws)?,
        header: jws.header().clone(),
    })
}

/// Every check of [`verify_cwt`] except the signature. Never use the result to make a status
/// decision; it exists to show an operator what a token says.
pub fn decode_cwt_unverified<C: SignedClaims>(bytes: &[u8]) -> Result<UnverifiedCwt<C>, C::Error> {
    let msg = Sign1::parse(bytes)?;
    let typ = msg.check_typ(C::CWT_TYP)?;
    Ok(UnverifiedCwt {
        alg: msg.alg(),
        typ,
        kid: msg.kid().map(<[u8]>::to_vec),
        claims: cwt_claims::<C>(&msg)?,
    })
}
