//! The Status List Token (draft-ietf-oauth-status-list-20 §5): its claims, and signing and
//! verifying them as a JWT (§5.1) or a CWT (§5.2).
//!
//! Owns explicit typing (`typ` / COSE label 16), the claim set's required members and their
//! types, and the time checks. It must never inflate the `status_list` (callers call
//! [`IetfList::decode`] when they need the entries, so the decompression cost and its bound stay
//! in one place), and never return claims from a token whose signature was not checked except
//! through the explicitly named `decode_*_unverified` functions.
//!
//! Typing decisions:
//! * JWT `typ` must be `statuslist+jwt`. `application/statuslist+jwt` is accepted too, and case
//!   is ignored: RFC 7515 §4.1.9 lets producers include the `application/` prefix and says
//!   recipients must treat both alike, and media types are case-insensitive. We always emit the
//!   short form the draft mandates.
//! * CWT label 16 must be the text `application/statuslist+cwt` (case-insensitively). The short
//!   form `statuslist+cwt` of drafts ≤ -07 is refused, and so is any Content-Format number,
//!   since the draft's number is still TBD.

use super::signed::{self, Registered, SignedClaims};
use super::signer::{SignError, TokenSigner};
#[cfg(doc)]
use super::{cose::Sign1, jws::Jws};
use super::{KeySet, TokenError};
use crate::status::ietf::IetfList;
use ciborium::Value as Cbor;
use serde_json::Value as Json;
use std::collections::HashSet;

/// The JWT `typ` of a Status List Token (draft §5.1).
pub const JWT_TYP: &str = "statuslist+jwt";
/// The COSE `typ` (label 16) of a Status List Token (draft §5.2).
pub const CWT_TYP: &str = "application/statuslist+cwt";
/// How far in the future `iat` may lie before [`check_time`] calls the token not yet valid.
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;

/// CWT claim keys (RFC 8392 §4 and draft §14; 65533/65534 are the draft's requested values).
pub mod cwt_key {
    pub const ISS: i64 = 1;
    pub const SUB: i64 = 2;
    pub const EXP: i64 = 4;
    pub const IAT: i64 = 6;
    pub const STATUS_LIST: i64 = 65533;
    pub const TTL: i64 = 65534;
}

/// The claims of a Status List Token. Unknown claims are ignored when reading and never
/// written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusListClaims {
    /// The URI of this Status List Token; must equal the Referenced Tokens' `uri`.
    pub sub: String,
    /// The issuer, if any (not required by the draft).
    pub iss: Option<String>,
    /// Issued-at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch (RECOMMENDED).
    pub exp: Option<u64>,
    /// Maximum cache lifetime in seconds (RECOMMENDED). Must be positive: signing a `Some(0)`
    /// produces a token every verifier, including ours, rejects.
    pub ttl: Option<u64>,
    /// The status list, still compressed.
    pub status_list: IetfList,
}

impl StatusListClaims {
    fn registered(&self) -> Registered<'_> {
        Registered {
            sub: &self.sub,
            iss: self.iss.as_deref(),
            iat: self.iat,
            exp: self.exp,
            ttl: self.ttl,
        }
    }
}

impl SignedClaims for StatusListClaims {
    const JWT_TYP: &'static str = JWT_TYP;
    const CWT_TYP: &'static str = CWT_TYP;
    type Error = TokenError;

    /// The JWT claims set: `sub`, `iss` (if any), `iat`, `exp`, `ttl`, `status_list`. Members
    /// serialise in sorted order, as in the draft's example.
    fn to_jwt_claims(&self) -> Json {
        let mut m = self.registered().to_jwt();
        m.insert("status_list".into(), self.status_list.to_json());
        Json::Object(m)
    }

    /// The CWT claims map, keys in the draft's order: 2 sub, 1 iss, 6 iat, 4 exp, 65534 ttl,
    /// 65533 status_list. For the draft's claims this reproduces its §5.2 payload byte for byte.
    fn to_cwt_claims(&self) -> Cbor {
        let mut m = self.registered().to_cwt();
        m.push((Cbor::from(cwt_key::STATUS_LIST), self.status_list.to_cbor()));
        Cbor::Map(m)
    }

    /// Reads a JWT claims set (the decoded payload JSON).
    fn from_jwt_claims(v: &Json) -> Result<Self, TokenError> {
        let m = v
            .as_object()
            .ok_or_else(|| TokenError::Malformed("JWT claims set is not a JSON object".into()))?;
        let sub = match m.get("sub") {
            None => return Err(TokenError::MissingClaim("sub")),
            Some(Json::String(s)) => non_empty(s, "sub")?,
            Some(other) => return Err(expected("sub", "a string", other)),
        };
        let iss = match m.get("iss") {
            None => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(other) => return Err(expected("iss", "a string", other)),
        };
        let iat = json_uint(m.get("iat").ok_or(TokenError::MissingClaim("iat"))?, "iat")?;
        let exp = m.get("exp").map(|v| json_uint(v, "exp")).transpose()?;
        let ttl = m
            .get("ttl")
            .map(|v| json_uint(v, "ttl").and_then(positive_ttl))
            .transpose()?;
        let status_list = IetfList::from_json(
            m.get("status_list")
                .ok_or(TokenError::MissingClaim("status_list"))?,
        )?;
        Ok(StatusListClaims {
            sub,
            iss,
            iat,
            exp,
            ttl,
            status_list,
        })
    }

    /// Reads a CWT claims map. Keys must be integers or text (text keys are ignored, as are
    /// unknown integer keys); a duplicate key is malformed (RFC 8392 §7.1 via RFC 8949 §5.6).
    fn from_cwt_claims(v: &Cbor) -> Result<Self, TokenError> {
        let entries = v
            .as_map()
            .ok_or_else(|| TokenError::Malformed("CWT claims set is not a CBOR map".into()))?;
        let mut seen_int = HashSet::new();
        let mut seen_text = HashSet::new();
        let (mut sub, mut iss, mut iat, mut exp, mut ttl, mut status_list) =
            (None, None, None, None, None, None);
        for (k, val) in entries {
            let key = match k {
                Cbor::Integer(i) => i128::from(*i),
                Cbor::Text(t) => {
                    if !seen_text.insert(t.as_str()) {
                        return Err(TokenError::Malformed(format!("duplicate claim key {t:?}")));
                    }
                    continue;
                }
                other => {
                    return Err(TokenError::Malformed(format!(
                        "CWT claim keys must be integers or text, got {other:?}"
                    )))
                }
            };
            if !seen_int.insert(key) {
                return Err(TokenError::Malformed(format!("duplicate claim key {key}")));
            }
            match i64::try_from(key) {
                Ok(cwt_key::SUB) => sub = Some(non_empty(cbor_text(val, "sub")?, "sub")?),
                Ok(cwt_key::ISS) => iss = Some(cbor_text(val, "iss")?.to_owned()),
                Ok(cwt_key::IAT) => iat = Some(cbor_uint(val, "iat")?),
                Ok(cwt_key::EXP) => exp = Some(cbor_uint(val, "exp")?),
                Ok(cwt_key::TTL) => ttl = Some(positive_ttl(cbor_uint(val, "ttl")?)?),
                Ok(cwt_key::STATUS_LIST) => status_list = Some(IetfList::from_cbor(val)?),
                _ => {}
            }
        }
        Ok(StatusListClaims {
            sub: sub.ok_or(TokenError::MissingClaim("sub"))?,
            iss,
            iat: iat.ok_or(TokenError::MissingClaim("iat"))?,
            exp,
            ttl,
            status_list: status_list.ok_or(TokenError::MissingClaim("status_list"))?,
        })
    }
}

fn expected(claim: &'static str, what: &str, got: impl std::fmt::Display) -> TokenError {
    TokenError::InvalidClaim {
        claim,
        reason: format!("expected {what}, got {got}"),
    }
}

fn non_empty(s: &str, claim: &'static str) -> Result<String, TokenError> {
    if s.is_empty() {
        return Err(TokenError::InvalidClaim {
            claim,
            reason: "must not be empty".into(),
        });
    }
    Ok(s.to_owned())
}

/// A NumericDate or ttl in JSON. We require an integer: the draft's producers emit integers,
/// and accepting fractions would only add rounding questions.
fn json_uint(v: &Json, claim: &'static str) -> Result<u64, TokenError> {
    match v {
        Json::Number(n) => n.as_u64().ok_or_else(|| TokenError::InvalidClaim {
            claim,
            reason: if n.as_i64().is_some() {
                format!("must not be negative, got {n}")
            } else {
                format!("must be an integer no larger than 2^64-1, got {n}")
            },
        }),
        other => Err(expected(claim, "an integer", other)),
    }
}

/// A uint in CBOR (major type 0). Negative integers, floats and tagged dates are refused.
fn cbor_uint(v: &Cbor, claim: &'static str) -> Result<u64, TokenError> {
    match v {
        Cbor::Integer(i) => u64::try_from(*i).map_err(|_| TokenError::InvalidClaim {
            claim,
            reason: format!("must be an unsigned integer, got {}", i128::from(*i)),
        }),
        other => Err(expected(claim, "an unsigned integer", format!("{other:?}"))),
    }
}

fn cbor_text<'a>(v: &'a Cbor, claim: &'static str) -> Result<&'a str, TokenError> {
    v.as_text()
        .ok_or_else(|| expected(claim, "a text string", format!("{v:?}")))
}

fn positive_ttl(ttl: u64) -> Result<u64, TokenError> {
    if ttl == 0 {
        return Err(TokenError::InvalidClaim {
            claim: "ttl",
            reason: "must be positive".into(),
        });
    }
    Ok(ttl)
}

/// Signs `claims` as a Status List Token JWT with header
/// `{"alg":…,"kid":…,"typ":"statuslist+jwt"}`.
pub fn sign_jwt(
    claims: &StatusListClaims,
    key: &(impl TokenSigner + ?Sized),
) -> Result<String, SignError> {
    signed::sign_jwt(claims, key)
}

/// Signs `claims` as a Status List Token CWT: COSE_Sign1_Tagged (18, no tag 61), protected
/// `{1: alg, 16: "application/statuslist+cwt"}`, unprotected `{4: kid}`.
pub fn sign_cwt(
    claims: &StatusListClaims,
    key: &(impl TokenSigner + ?Sized),
) -> Result<Vec<u8>, SignError> {
    signed::sign_cwt(claims, key)
}

/// A Status List Token JWT decoded without checking its signature (for `statusd inspect`).
pub type UnverifiedJwt = signed::UnverifiedJwt<StatusListClaims>;

/// A Status List Token CWT decoded without checking its signature (for `statusd inspect`).
pub type UnverifiedCwt = signed::UnverifiedCwt<StatusListClaims>;

/// Verifies a Status List Token JWT: framing and `alg` ([`Jws::parse`]), `typ`, the signature
/// under the key `keys` selects, then the claims. Time is not checked; see [`check_time`].
pub fn verify_jwt(token: &str, keys: &KeySet) -> Result<StatusListClaims, TokenError> {
    signed::verify_jwt(token, keys)
}

/// Verifies a Status List Token CWT: tag 18 without tag 61 ([`Sign1::parse`]), label 16, the
/// signature, then the claims. Time is not checked; see [`check_time`].
pub fn verify_cwt(bytes: &[u8], keys: &KeySet) -> Result<StatusListClaims, TokenError> {
    signed::verify_cwt(bytes, keys)
}

/// Every check of [`verify_jwt`] except the signature. Never use the result to make a status
/// decision; it exists to show an operator what a token says.
pub fn decode_jwt_unverified(token: &str) -> Result<UnverifiedJwt, TokenError> {
    signed::decode_jwt_unverified(token)
}

/// Every check of [`verify_cwt`] except the signature. Never use the result to make a status
/// decision; it exists to show an operator what a token says.
pub fn decode_cwt_unverified(bytes: &[u8]) -> Result<UnverifiedCwt, TokenError> {
    signed::decode_cwt_unverified(bytes)
}

/// Checks the token's validity period at `now` (seconds since the epoch). Expired when `now` is
/// at or past `exp` (RFC 7519 §4.1.4: now "MUST be before" exp); not yet valid when `iat` is
/// more than [`MAX_CLOCK_SKEW_SECS`] ahead of `now`. `ttl` is a caching hint, not a validity
/// bound, so it is not checked here.
pub fn check_time(claims: &StatusListClaims, now: u64) -> Result<(), TokenError> {
    claims.registered().check_time(now)
}

#[cfg(test)]
mod tests {
    use super::super::cose::{sign1_tagged, CoseTyp};
    use super::super::jws::sign_compact;
    use super::super::test_vectors::*;
    use super::super::{b64url_encode, Algorithm, VerifyingKey};
    use super::*;
    use crate::status::ietf::cbor_to_vec;
    use crate::status::ietf::IetfError;
    use crate::status::Bits;
    use crate::token::SigningKey;
    use proptest::prelude::*;
    use serde_json::json;
    use serde_json::Map;

    const SUB: &str = "https://example.com/statuslists/1";
    const IAT: u64 = 1686920170;
    const EXP: u64 = 2291720170;

    fn spec_list() -> IetfList {
        IetfList {
            bits: Bits::One,
            lst: hex(SPEC_LST_HEX),
            aggregation_uri: None,
        }
    }

    /// The claims of the draft's tokens; the raw JWT carries `iss`, the CWT does not.
    fn spec_claims(iss: Option<&str>) -> StatusListClaims {
        StatusListClaims {
            sub: SUB.into(),
            iss: iss.map(str::to_owned),
            iat: IAT,
            exp: Some(EXP),
            ttl: Some(43200),
            status_list: spec_list(),
        }
    }

    #[test]
    fn spec_jwt_verifies_to_the_draft_claims() {
        let expected = spec_claims(Some("https://example.com"));
        assert_eq!(verify_jwt(SPEC_JWT, &spec_keyset()).unwrap(), expected);
        // The same with the key loaded as a single JWK rather than a set.
        let jwk: Json = serde_json::from_str(SPEC_PUBLIC_JWK).unwrap();
        let keys = KeySet::from(VerifyingKey::from_jwk(&jwk).unwrap());
        let claims = verify_jwt(SPEC_JWT, &keys).unwrap();
        assert_eq!(claims, expected);
        assert_eq!(claims.status_list.bits, Bits::One);
        assert_eq!(claims.status_list.lst, hex("78dadbb918000217015d"));
        assert_eq!(
            claims.status_list.to_json(),
            json!({"bits":1,"lst":"eNrbuRgAAhcBXQ"})
        );

        let decoded = decode_jwt_unverified(SPEC_JWT).unwrap();
        assert_eq!(decoded.claims, expected);
        assert_eq!(decoded.header["typ"], "statuslist+jwt");
        assert_eq!(decoded.header["kid"], "12");
        assert_eq!(decoded.header["alg"], "ES256");
    }

    #[test]
    fn spec_cwt_verifies_to_the_draft_claims() {
        let bytes = hex(SPEC_CWT_HEX);
        let expected = spec_claims(None);
        assert_eq!(verify_cwt(&bytes, &spec_keyset()).unwrap(), expected);
        let decoded = decode_cwt_unverified(&bytes).unwrap();
        assert_eq!(decoded.claims, expected);
        assert_eq!(decoded.alg, Algorithm::Es256);
        assert_eq!(
            decoded.typ,
            CoseTyp::Text("application/statuslist+cwt".into())
        );
        assert_eq!(decoded.kid.as_deref(), Some(&b"12"[..]));
        assert_eq!(decoded.claims.status_list.lst, hex("78dadbb918000217015d"));
    }

    #[test]
    fn spec_tokens_are_reproduced_up_to_the_signature() {
        let key = spec_signing_key();
        // JWT: identical signing input (header and payload bytes).
        let jwt = sign_jwt(&spec_claims(Some("https://example.com")), &key).unwrap();
        assert_eq!(
            jwt.rsplit_once('.').unwrap().0,
            SPEC_JWT.rsplit_once('.').unwrap().0
        );
        verify_jwt(&jwt, &spec_keyset()).unwrap();
        // CWT: identical bytes up to the 64-byte signature.
        assert_eq!(
            cbor_to_vec(&spec_claims(None).to_cwt_claims()),
            hex(SPEC_CWT_PAYLOAD_HEX)
        );
        let cwt = sign_cwt(&spec_claims(None), &key).unwrap();
        let spec = hex(SPEC_CWT_HEX);
        assert_eq!(cwt.len(), spec.len());
        assert_eq!(cwt[..spec.len() - 64], spec[..spec.len() - 64]);
        verify_cwt(&cwt, &spec_keyset()).unwrap();
    }

    #[test]
    fn round_trips_for_both_algorithms() {
        let variants = [
            spec_claims(None),
            spec_claims(Some("https://issuer.example")),
            StatusListClaims {
                sub: "https://s.example/l/2".into(),
                iss: None,
                iat: 0,
                exp: None,
                ttl: None,
                status_list: IetfList {
                    bits: Bits::Eight,
                    lst: vec![0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
                    aggregation_uri: Some("https://s.example/agg".into()),
                },
            },
        ];
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Es384] {
            let key = SigningKey::generate(alg);
            let keys = KeySet::from(key.verifying_key());
            for claims in &variants {
                assert_eq!(
                    &verify_jwt(&sign_jwt(claims, &key).unwrap(), &keys).unwrap(),
                    claims
                );
                assert_eq!(
                    &verify_cwt(&sign_cwt(claims, &key).unwrap(), &keys).unwrap(),
                    claims
                );
            }
        }
    }

    #[test]
    fn tampered_tokens_fail_the_signature() {
        let (h, rest) = SPEC_JWT.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let evil = SPEC_JWT_PAYLOAD.replace("\"bits\":1", "\"bits\":2");
        let token = format!("{h}.{}.{s}", b64url_encode(evil.as_bytes()));
        assert_eq!(
            verify_jwt(&token, &spec_keyset()),
            Err(TokenError::BadSignature)
        );
        // Unverified decoding still reads it (that is its point).
        assert_eq!(
            decode_jwt_unverified(&token)
                .unwrap()
                .claims
                .status_list
                .bits,
            Bits::Two
        );

        let mut cwt = hex(SPEC_CWT_HEX);
        let last = cwt.len() - 1;
        cwt[last] ^= 0x80;
        assert_eq!(
            verify_cwt(&cwt, &spec_keyset()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn signature_from_another_key_fails() {
        let other = SigningKey::generate(Algorithm::Es256).with_kid("12".into());
        let claims = spec_claims(None);
        assert_eq!(
            verify_jwt(&sign_jwt(&claims, &other).unwrap(), &spec_keyset()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_cwt(&sign_cwt(&claims, &other).unwrap(), &spec_keyset()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn eddsa_token_against_es256_key_is_an_algorithm_mismatch() {
        let ed = SigningKey::generate(Algorithm::EdDsa).with_kid("12".into());
        let claims = spec_claims(None);
        let mismatch = Err(TokenError::AlgorithmMismatch {
            token: "EdDSA",
            key: "ES256",
        });
        assert_eq!(
            verify_jwt(&sign_jwt(&claims, &ed).unwrap(), &spec_keyset()),
            mismatch
        );
        assert_eq!(
            verify_cwt(&sign_cwt(&claims, &ed).unwrap(), &spec_keyset()),
            mismatch
        );
    }

    #[test]
    fn unknown_kid() {
        let key = SigningKey::generate(Algorithm::Es256).with_kid("99".into());
        let claims = spec_claims(None);
        let unknown = Err(TokenError::UnknownKey(Some("99".into())));
        assert_eq!(
            verify_jwt(&sign_jwt(&claims, &key).unwrap(), &spec_keyset()),
            unknown
        );
        assert_eq!(
            verify_cwt(&sign_cwt(&claims, &key).unwrap(), &spec_keyset()),
            unknown
        );
    }

    /// A JWT with any header `typ` (or none) and payload, validly signed.
    fn jwt_with(typ: Option<&str>, payload: &Json, key: &SigningKey) -> String {
        let mut header = Map::new();
        if let Some(t) = typ {
            header.insert("typ".into(), Json::from(t));
        }
        sign_compact(header, &serde_json::to_vec(payload).unwrap(), key).unwrap()
    }

    #[test]
    fn jwt_typ_rules() {
        let key = SigningKey::generate(Algorithm::EdDsa);
        let keys = KeySet::from(key.verifying_key());
        let payload = spec_claims(None).to_jwt_claims();
        for ok in [
            "statuslist+jwt",
            "application/statuslist+jwt",
            "StatusList+JWT",
        ] {
            assert!(
                verify_jwt(&jwt_with(Some(ok), &payload, &key), &keys).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "JWT",
            "statuslist+cwt",
            "application/statuslist+cwt",
            "vc+jwt",
            "",
        ] {
            let token = jwt_with(Some(bad), &payload, &key);
            let err = Err(TokenError::WrongType {
                expected: "statuslist+jwt",
                found: bad.into(),
            });
            assert_eq!(verify_jwt(&token, &keys), err);
            assert_eq!(decode_jwt_unverified(&token).map(|d| d.claims), err);
        }
        let token = jwt_with(None, &payload, &key);
        assert_eq!(verify_jwt(&token, &keys), Err(TokenError::MissingType));
        assert_eq!(
            decode_jwt_unverified(&token).map(|d| d.claims),
            Err(TokenError::MissingType)
        );
    }

    /// A COSE_Sign1_Tagged with the given protected map and payload bytes, validly signed.
    fn cwt_with(protected_typ: Option<Cbor>, payload: Vec<u8>, key: &SigningKey) -> Vec<u8> {
        let mut protected = vec![(Cbor::from(1), Cbor::from(key.algorithm().cose_id()))];
        if let Some(t) = protected_typ {
            protected.push((Cbor::from(16), t));
        }
        let protected = cbor_to_vec(&Cbor::Map(protected));
        let tbs = cbor_to_vec(&Cbor::Array(vec![
            Cbor::from("Signature1"),
            Cbor::Bytes(protected.clone()),
            Cbor::Bytes(vec![]),
            Cbor::Bytes(payload.clone()),
        ]));
        cbor_to_vec(&Cbor::Tag(
            18,
            Box::new(Cbor::Array(vec![
                Cbor::Bytes(protected),
                Cbor::Map(vec![(
                    Cbor::from(4),
                    Cbor::Bytes(key.kid().as_bytes().to_vec()),
                )]),
                Cbor::Bytes(payload),
                Cbor::Bytes(key.sign(&tbs)),
            ])),
        ))
    }

    #[test]
    fn cwt_typ_rules() {
        let key = SigningKey::generate(Algorithm::Es256);
        let keys = KeySet::from(key.verifying_key());
        let payload = cbor_to_vec(&spec_claims(None).to_cwt_claims());
        let ok = cwt_with(Some(Cbor::from(CWT_TYP)), payload.clone(), &key);
        assert!(verify_cwt(&ok, &keys).is_ok());
        for (bad, found) in [
            (Cbor::from("statuslist+cwt"), "statuslist+cwt"),
            (
                Cbor::from("application/statuslist+jwt"),
                "application/statuslist+jwt",
            ),
            (Cbor::from("application/cwt"), "application/cwt"),
            (Cbor::from(12345), "content-format 12345"),
        ] {
            let token = cwt_with(Some(bad), payload.clone(), &key);
            let err = Err(TokenError::WrongType {
                expected: CWT_TYP,
                found: found.into(),
            });
            assert_eq!(verify_cwt(&token, &keys), err);
            assert_eq!(decode_cwt_unverified(&token).map(|d| d.claims), err);
        }
        let token = cwt_with(None, payload, &key);
        assert_eq!(verify_cwt(&token, &keys), Err(TokenError::MissingType));
        // The Referenced Token of §2.7 has no typ: it is not a Status List Token.
        assert_eq!(
            verify_cwt(&hex(SPEC_REFERENCED_CWT_HEX), &spec_keyset()),
            Err(TokenError::MissingType)
        );
    }

    #[test]
    fn cwt_framing_errors_surface() {
        let spec = hex(SPEC_CWT_HEX);
        let tagged61 = [&[0xd8, 0x3d][..], &spec].concat();
        assert_eq!(
            verify_cwt(&tagged61, &spec_keyset()),
            Err(TokenError::Tag61)
        );
        assert_eq!(decode_cwt_unverified(&tagged61), Err(TokenError::Tag61));
        assert_eq!(
            verify_cwt(&spec[1..], &spec_keyset()),
            Err(TokenError::NotCoseSign1Tagged(None))
        );
        let tag17 = [&[0xd1][..], &spec[1..]].concat();
        assert_eq!(
            verify_cwt(&tag17, &spec_keyset()),
            Err(TokenError::NotCoseSign1Tagged(Some(17)))
        );
        let trailing = [&spec[..], &[0xa0]].concat();
        assert!(matches!(
            verify_cwt(&trailing, &spec_keyset()),
            Err(TokenError::Malformed(m)) if m.contains("trailing")
        ));
    }

    /// The spec claims as JSON with one member replaced (`None` removes it).
    fn json_claims_with(name: &str, value: Option<Json>) -> Json {
        let mut v = spec_claims(None).to_jwt_claims();
        let m = v.as_object_mut().unwrap();
        match value {
            Some(x) => m.insert(name.into(), x),
            None => m.remove(name),
        };
        v
    }

    fn jwt_claims_result(payload: &Json) -> Result<StatusListClaims, TokenError> {
        let key = SigningKey::generate(Algorithm::EdDsa);
        let token = jwt_with(Some(JWT_TYP), payload, &key);
        let verified = verify_jwt(&token, &KeySet::from(key.verifying_key()));
        assert_eq!(verified, decode_jwt_unverified(&token).map(|d| d.claims));
        verified
    }

    fn invalid(claim: &'static str) -> impl Fn(&Result<StatusListClaims, TokenError>) -> bool {
        move |r| matches!(r, Err(TokenError::InvalidClaim { claim: c, .. }) if *c == claim)
    }

    #[test]
    fn jwt_claim_validation() {
        for name in ["sub", "iat", "status_list"] {
            assert_eq!(
                jwt_claims_result(&json_claims_with(name, None)),
                Err(TokenError::MissingClaim(name))
            );
        }
        // Optional claims may be absent.
        for name in ["exp", "ttl", "iss"] {
            assert!(
                jwt_claims_result(&json_claims_with(name, None)).is_ok(),
                "{name}"
            );
        }
        let cases: Vec<(&'static str, Json)> = vec![
            ("ttl", json!(0)),
            ("ttl", json!(-1)),
            ("ttl", json!("43200")),
            ("ttl", json!(1.5)),
            ("ttl", json!(null)),
            ("exp", json!("2291720170")),
            ("exp", json!(-5)),
            ("iat", json!(1.25)),
            ("iat", json!(1e30)),
            ("sub", json!(42)),
            ("sub", json!("")),
            ("iss", json!(["a"])),
        ];
        for (name, value) in cases {
            let r = jwt_claims_result(&json_claims_with(name, Some(value.clone())));
            assert!(invalid(name)(&r), "{name}={value}: {r:?}");
        }
        // A bad status_list object is reported by the status module's error.
        let r = jwt_claims_result(&json_claims_with(
            "status_list",
            Some(json!({"bits":3,"lst":"eNrbuRgAAhcBXQ"})),
        ));
        assert!(
            matches!(r, Err(TokenError::StatusList(IetfError::Status(_)))),
            "{r:?}"
        );
        let r = jwt_claims_result(&json_claims_with("status_list", Some(json!({"bits":1}))));
        assert_eq!(r, Err(TokenError::StatusList(IetfError::Missing("lst"))));
        // Not an object at all.
        assert!(matches!(
            jwt_claims_result(&json!([1, 2])),
            Err(TokenError::Malformed(m)) if m.contains("not a JSON object")
        ));
        // Unknown claims are ignored.
        assert!(jwt_claims_result(&json_claims_with("foo", Some(json!({"x":1})))).is_ok());
    }

    #[test]
    fn jwt_payload_must_be_json() {
        let key = SigningKey::generate(Algorithm::EdDsa);
        let mut header = Map::new();
        header.insert("typ".into(), Json::from(JWT_TYP));
        let token = sign_compact(header, b"\x00not json", &key).unwrap();
        assert!(matches!(
            verify_jwt(&token, &KeySet::from(key.verifying_key())),
            Err(TokenError::Malformed(m)) if m.contains("not JSON")
        ));
    }

    /// The spec claims as CBOR with one entry replaced (`None` removes it).
    fn cbor_claims_with(key: i64, value: Option<Cbor>) -> Cbor {
        let Cbor::Map(mut m) = spec_claims(None).to_cwt_claims() else {
            unreachable!()
        };
        m.retain(|(k, _)| *k != Cbor::from(key));
        if let Some(v) = value {
            m.push((Cbor::from(key), v));
        }
        Cbor::Map(m)
    }

    fn cwt_claims_result(payload: Vec<u8>) -> Result<StatusListClaims, TokenError> {
        let key = SigningKey::generate(Algorithm::Es256);
        let token = cwt_with(Some(Cbor::from(CWT_TYP)), payload, &key);
        let verified = verify_cwt(&token, &KeySet::from(key.verifying_key()));
        assert_eq!(verified, decode_cwt_unverified(&token).map(|d| d.claims));
        verified
    }

    #[test]
    fn cwt_claim_validation() {
        use cwt_key as k;
        for (key, name) in [
            (k::SUB, "sub"),
            (k::IAT, "iat"),
            (k::STATUS_LIST, "status_list"),
        ] {
            assert_eq!(
                cwt_claims_result(cbor_to_vec(&cbor_claims_with(key, None))),
                Err(TokenError::MissingClaim(name))
            );
        }
        for key in [k::EXP, k::TTL] {
            assert!(cwt_claims_result(cbor_to_vec(&cbor_claims_with(key, None))).is_ok());
        }
        let cases: Vec<(i64, &'static str, Cbor)> = vec![
            (k::TTL, "ttl", Cbor::from(0)),
            (k::TTL, "ttl", Cbor::from(-1)),
            (k::TTL, "ttl", Cbor::from("43200")),
            (k::TTL, "ttl", Cbor::Float(43200.0)),
            (k::EXP, "exp", Cbor::from("soon")),
            (k::IAT, "iat", Cbor::Tag(1, Box::new(Cbor::from(IAT)))),
            (k::IAT, "iat", Cbor::from(-1)),
            (k::SUB, "sub", Cbor::Bytes(SUB.as_bytes().to_vec())),
            (k::ISS, "iss", Cbor::from(1)),
        ];
        for (key, name, value) in cases {
            let r = cwt_claims_result(cbor_to_vec(&cbor_claims_with(key, Some(value.clone()))));
            assert!(invalid(name)(&r), "{key}={value:?}: {r:?}");
        }
        // The JSON form of the status list inside a CWT is wrong.
        let r = cwt_claims_result(cbor_to_vec(&cbor_claims_with(
            k::STATUS_LIST,
            Some(Cbor::Map(vec![
                (Cbor::from("bits"), Cbor::from(1)),
                (Cbor::from("lst"), Cbor::from("eNrbuRgAAhcBXQ")),
            ])),
        )));
        assert!(
            matches!(
                r,
                Err(TokenError::StatusList(IetfError::Invalid {
                    member: "lst",
                    ..
                }))
            ),
            "{r:?}"
        );
        // Duplicate keys, non-map payloads, bad key types and trailing bytes.
        let Cbor::Map(mut dup) = spec_claims(None).to_cwt_claims() else {
            unreachable!()
        };
        dup.push((Cbor::from(k::SUB), Cbor::from("https://evil.example/")));
        assert!(matches!(
            cwt_claims_result(cbor_to_vec(&Cbor::Map(dup))),
            Err(TokenError::Malformed(m)) if m.contains("duplicate")
        ));
        assert!(matches!(
            cwt_claims_result(cbor_to_vec(&Cbor::Array(vec![]))),
            Err(TokenError::Malformed(m)) if m.contains("not a CBOR map")
        ));
        let Cbor::Map(mut bytes_key) = spec_claims(None).to_cwt_claims() else {
            unreachable!()
        };
        bytes_key.push((Cbor::Bytes(vec![1]), Cbor::from(1)));
        assert!(matches!(
            cwt_claims_result(cbor_to_vec(&Cbor::Map(bytes_key))),
            Err(TokenError::Malformed(m)) if m.contains("integers or text")
        ));
        let mut trailing = hex(SPEC_CWT_PAYLOAD_HEX);
        trailing.push(0x00);
        assert!(matches!(
            cwt_claims_result(trailing),
            Err(TokenError::Malformed(m)) if m.contains("trailing")
        ));
        // Unknown integer and text claims are ignored.
        let Cbor::Map(mut extra) = spec_claims(None).to_cwt_claims() else {
            unreachable!()
        };
        extra.push((Cbor::from(65535), Cbor::Map(vec![])));
        extra.push((Cbor::from("note"), Cbor::from("hi")));
        assert!(cwt_claims_result(cbor_to_vec(&Cbor::Map(extra))).is_ok());
    }

    #[test]
    fn time_checks() {
        let claims = spec_claims(None);
        assert_eq!(check_time(&claims, IAT), Ok(()));
        assert_eq!(check_time(&claims, EXP - 1), Ok(()));
        assert_eq!(
            check_time(&claims, EXP),
            Err(TokenError::Expired { exp: EXP, now: EXP })
        );
        assert_eq!(
            check_time(&claims, EXP + 100),
            Err(TokenError::Expired {
                exp: EXP,
                now: EXP + 100
            })
        );
        assert_eq!(check_time(&claims, IAT - 60), Ok(()));
        assert_eq!(
            check_time(&claims, IAT - 61),
            Err(TokenError::NotYetValid {
                iat: IAT,
                now: IAT - 61
            })
        );
        let no_exp = StatusListClaims {
            exp: None,
            ..claims
        };
        assert_eq!(check_time(&no_exp, u64::MAX), Ok(()));
        // The draft's historical example time lies inside the token's validity.
        assert_eq!(check_time(&spec_claims(None), 1686925000), Ok(()));
    }

    fn arb_claims() -> impl Strategy<Value = StatusListClaims> {
        (
            "[a-z:/.0-9]{1,40}",
            proptest::option::of("[ -~]{0,20}"),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(1..=u64::MAX),
            proptest::sample::select(vec![Bits::One, Bits::Two, Bits::Four, Bits::Eight]),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(sub, iss, iat, exp, ttl, bits, lst)| StatusListClaims {
                sub,
                iss,
                iat,
                exp,
                ttl,
                status_list: IetfList {
                    bits,
                    lst,
                    aggregation_uri: None,
                },
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn claims_round_trip(claims in arb_claims()) {
            let key = SigningKey::generate(Algorithm::EdDsa);
            let keys = KeySet::from(key.verifying_key());
            prop_assert_eq!(&verify_jwt(&sign_jwt(&claims, &key).unwrap(), &keys).unwrap(), &claims);
            prop_assert_eq!(&verify_cwt(&sign_cwt(&claims, &key).unwrap(), &keys).unwrap(), &claims);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                s in "\\PC{0,300}") {
            let _ = verify_cwt(&bytes, &spec_keyset());
            let _ = decode_cwt_unverified(&bytes);
            let _ = verify_jwt(&s, &spec_keyset());
            let _ = decode_jwt_unverified(&s);
        }

        #[test]
        fn garbage_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Well-framed, validly signed tokens around arbitrary payloads reach claim parsing.
            let key = spec_signing_key();
            let keys = spec_keyset();
            let _ = verify_cwt(&sign1_tagged(CWT_TYP, payload.clone(), &key).unwrap(), &keys);
            let mut header = Map::new();
            header.insert("typ".into(), Json::from(JWT_TYP));
            let _ = verify_jwt(&sign_compact(header, &payload, &key).unwrap(), &keys);
        }
    }
}
