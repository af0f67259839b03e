//! VC Data Model 1.1 JWT securing (VC-JWT 1.1, "JWT and JWS" in VCDM 1.1 §6.3.1): the
//! credential in the `vc` claim, `iss`, `jti`, `nbf` and `exp` mirroring its `issuer`, `id`,
//! `issuanceDate` and `expirationDate`; header `{"alg":…,"kid":…,"typ":"JWT"}`.
//!
//! Owns the JWT mapping only; the credential's data model belongs to [`crate::status`].

use super::jws::sign_compact;
use super::{SignError, TokenSigner};
use serde_json::{json, Map, Value};

/// Signs `credential` as a VC-JWT 1.1 with `nbf` (and `exp` when given) in Unix seconds.
pub fn sign_vc_jwt_1_1(
    credential: &Value,
    nbf: u64,
    exp: Option<u64>,
    key: &(impl TokenSigner + ?Sized),
) -> Result<String, SignError> {
    let mut header = Map::new();
    header.insert("typ".into(), Value::from("JWT"));
    let mut claims = json!({"nbf": nbf, "iat": nbf, "vc": credential});
    if let Some(iss) = credential.get("issuer") {
        claims["iss"] = iss.get("id").unwrap_or(iss).clone();
    }
    if let Some(id) = credential.get("id") {
        claims["jti"] = id.clone();
    }
    if let Some(exp) = exp {
        claims["exp"] = json!(exp);
    }
    let payload = serde_json::to_vec(&claims).expect("serialising a JSON value cannot fail");
    sign_compact(header, &payload, key)
}

#[cfg(test)]
mod tests {
    use super::super::jws::Jws;
    use super::super::{Algorithm, KeySet, SigningKey};
    use super::*;

    #[test]
    fn claims_mirror_the_credential_and_verify() {
        let key = SigningKey::generate(Algorithm::Es256);
        let vc = json!({"id": "https://s.example/l", "issuer": "https://s.example"});
        let t = sign_vc_jwt_1_1(&vc, 10, Some(20), &key).unwrap();
        let jws = Jws::parse(&t).unwrap();
        jws.verify(&KeySet::from(key.verifying_key())).unwrap();
        assert_eq!(jws.typ(), Some("JWT"));
        let c: Value = serde_json::from_slice(jws.payload()).unwrap();
        assert_eq!(c["iss"], "https://s.example");
        assert_eq!(c["jti"], "https://s.example/l");
        assert_eq!((c["nbf"].as_u64(), c["exp"].as_u64()), (Some(10), Some(20)));
        assert_eq!(c["vc"], vc);
    }
}
