//! W3C VC-JOSE-COSE (§3.1.1) securing of a credential, e.g. a `BitstringStatusListCredential`:
//! the credential JSON itself is the JWS payload, with header
//! `{"alg":…,"kid":…,"typ":"vc+jwt","cty":"vc"}`.
//!
//! Owns the `vc+jwt` typing and the payload-is-an-object check only. It must never check the
//! credential's data model (`@context`, `type`, `validFrom`/`validUntil`, `credentialSubject`):
//! that belongs to the W3C status module, which knows what a status list credential must hold.

use super::jws::{sign_compact, Jws};
use super::signer::{SignError, TokenSigner};
use super::{KeySet, TokenError};
use serde_json::{Map, Value};

/// The JOSE `typ` of a VC secured with JOSE (`application/vc+jwt`, short form).
pub const VC_JWT_TYP: &str = "vc+jwt";
/// The JOSE `cty` of the payload: a VCDM 2.0 credential (`application/vc`, short form).
pub const VC_CTY: &str = "vc";

/// Signs `credential` as a `vc+jwt`. The caller passes a credential object; anything else is
/// signed as given but [`verify_vc_jwt`] will refuse it.
pub fn sign_vc_jwt(
    credential: &Value,
    key: &(impl TokenSigner + ?Sized),
) -> Result<String, SignError> {
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(VC_JWT_TYP));
    header.insert("cty".into(), Value::from(VC_CTY));
    let payload = serde_json::to_vec(credential).expect("serialising a JSON value cannot fail");
    sign_compact(header, &payload, key)
}

/// A `vc+jwt` decoded without checking its signature (for `statusd inspect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnverifiedVcJwt {
    pub header: Map<String, Value>,
    pub credential: Value,
}

fn credential(jws: &Jws) -> Result<Value, TokenError> {
    match serde_json::from_slice(jws.payload()) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(TokenError::Malformed(
            "vc+jwt payload is not a JSON object".into(),
        )),
        Err(e) => Err(TokenError::Malformed(format!(
            "vc+jwt payload is not JSON: {e}"
        ))),
    }
}

/// Verifies a `vc+jwt`: framing and `alg`, `typ`, the signature, and that the payload is a JSON
/// object. Returns the credential. `cty` is not required (VC-JOSE-COSE says SHOULD).
pub fn verify_vc_jwt(token: &str, keys: &KeySet) -> Result<Value, TokenError> {
    let jws = Jws::parse(token)?;
    jws.check_typ(VC_JWT_TYP)?; // `application/vc+jwt` and any case accepted, as for Status List JWTs
    jws.verify(keys)?;
    credential(&jws)
}

/// Every check of [`verify_vc_jwt`] except the signature.
pub fn decode_vc_jwt_unverified(token: &str) -> Result<UnverifiedVcJwt, TokenError> {
    let jws = Jws::parse(token)?;
    jws.check_typ(VC_JWT_TYP)?; // `application/vc+jwt` and any case accepted, as for Status List JWTs
    Ok(UnverifiedVcJwt {
        credential: credential(&jws)?,
        header: jws.header().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_vectors::*;
    use super::super::{b64url_encode, Algorithm};
    use super::*;
    use crate::token::SigningKey;
    use proptest::prelude::*;
    use serde_json::json;

    fn credential() -> Value {
        json!({
            "@context": ["https://www.w3.org/ns/credentials/v2"],
            "id": "https://example.com/credentials/status/3",
            "type": ["VerifiableCredential", "BitstringStatusListCredential"],
            "issuer": "did:example:12345",
            "validFrom": "2021-04-05T14:27:40Z",
            "credentialSubject": {
                "id": "https://example.com/status/3#list",
                "type": "BitstringStatusList",
                "statusPurpose": "revocation",
                "encodedList": "uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA"
            }
        })
    }

    #[test]
    fn round_trip_for_both_algorithms() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Es384] {
            let key = SigningKey::generate(alg);
            let token = sign_vc_jwt(&credential(), &key).unwrap();
            let keys = KeySet::from(key.verifying_key());
            assert_eq!(verify_vc_jwt(&token, &keys).unwrap(), credential());
            let decoded = decode_vc_jwt_unverified(&token).unwrap();
            assert_eq!(decoded.credential, credential());
            assert_eq!(
                Value::Object(decoded.header),
                json!({"alg": alg.jose_name(), "kid": key.kid(), "typ": "vc+jwt", "cty": "vc"})
            );
        }
    }

    #[test]
    fn payload_is_the_credential_itself() {
        // VC-JOSE-COSE: no `vc` claim wrapper as in the VCDM 1.1 JWT encoding.
        let token = sign_vc_jwt(&credential(), &spec_signing_key()).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        assert_eq!(
            payload,
            b64url_encode(&serde_json::to_vec(&credential()).unwrap())
        );
    }

    #[test]
    fn typ_rules() {
        let key = SigningKey::generate(Algorithm::EdDsa);
        let keys = KeySet::from(key.verifying_key());
        let body = serde_json::to_vec(&credential()).unwrap();
        let with_typ = |typ: Option<&str>| {
            let mut header = Map::new();
            if let Some(t) = typ {
                header.insert("typ".into(), Value::from(t));
            }
            sign_compact(header, &body, &key).unwrap()
        };
        assert!(verify_vc_jwt(&with_typ(Some("application/vc+jwt")), &keys).is_ok());
        assert_eq!(
            verify_vc_jwt(&with_typ(Some("statuslist+jwt")), &keys),
            Err(TokenError::WrongType {
                expected: "vc+jwt",
                found: "statuslist+jwt".into()
            })
        );
        assert_eq!(
            verify_vc_jwt(&with_typ(None), &keys),
            Err(TokenError::MissingType)
        );
        assert_eq!(
            decode_vc_jwt_unverified(&with_typ(None)),
            Err(TokenError::MissingType)
        );
        // A Status List Token is not a VC.
        assert_eq!(
            verify_vc_jwt(SPEC_JWT, &spec_keyset()),
            Err(TokenError::WrongType {
                expected: "vc+jwt",
                found: "statuslist+jwt".into()
            })
        );
    }

    #[test]
    fn signature_and_payload_checks() {
        let key = spec_signing_key();
        let token = sign_vc_jwt(&credential(), &key).unwrap();
        let (h, rest) = token.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let mut evil = credential();
        evil["credentialSubject"]["statusPurpose"] = json!("suspension");
        let forged = format!(
            "{h}.{}.{s}",
            b64url_encode(&serde_json::to_vec(&evil).unwrap())
        );
        assert_eq!(
            verify_vc_jwt(&forged, &spec_keyset()),
            Err(TokenError::BadSignature)
        );
        let other = SigningKey::generate(Algorithm::Es256).with_kid("12".into());
        assert_eq!(
            verify_vc_jwt(&sign_vc_jwt(&credential(), &other).unwrap(), &spec_keyset()),
            Err(TokenError::BadSignature)
        );
        for (payload, needle) in [
            (json!([1]), "not a JSON object"),
            (json!("vc"), "not a JSON object"),
        ] {
            let token = sign_vc_jwt(&payload, &key).unwrap();
            assert!(matches!(
                verify_vc_jwt(&token, &spec_keyset()),
                Err(TokenError::Malformed(m)) if m.contains(needle)
            ));
        }
        let mut header = Map::new();
        header.insert("typ".into(), Value::from("vc+jwt"));
        let token = sign_compact(header, b"{", &key).unwrap();
        assert!(matches!(
            verify_vc_jwt(&token, &spec_keyset()),
            Err(TokenError::Malformed(m)) if m.contains("not JSON")
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(s in "\\PC{0,300}") {
            let _ = verify_vc_jwt(&s, &spec_keyset());
            let _ = decode_vc_jwt_unverified(&s);
        }
    }
}
