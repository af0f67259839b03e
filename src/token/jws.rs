//! JWS compact serialisation (RFC 7515 §7.1): `BASE64URL(header).BASE64URL(payload).BASE64URL(sig)`.
//!
//! Owns the framing only: strict segment and base64url checks, the protected header's `alg`,
//! `kid`, `typ`, `cty` and `crit`, and the signature over the signing input. It must never
//! interpret the payload (that is `statuslist` / `vc`), never take a key from the header itself
//! (`jwk`, `jku`, `x5u` and `x5c` are ignored: trusting them would let a token vouch for itself)
//! and never let the header's `alg` decide how a key is used (RFC 8725 §3.1).

use super::signer::{SignError, TokenSigner};
use super::{b64url_decode, b64url_encode, Algorithm, KeySet, TokenError, VerifyingKey};
use serde_json::{Map, Value};

/// Signs `payload` as a JWS in compact form. `alg` and `kid` are set from `key`, overriding any
/// the caller put in `header`, and so is `x5c` (RFC 7515 §4.1.6: standard base64 DER, leaf
/// first) when the key has a certificate chain; everything else (`typ`, `cty`, …) is the
/// caller's.
///
/// The header is serialised with sorted member names (`serde_json::Map` is ordered), which makes
/// the output reproducible and matches the draft's examples byte for byte.
pub fn sign_compact(
    mut header: Map<String, Value>,
    payload: &[u8],
    key: &(impl TokenSigner + ?Sized),
) -> Result<String, SignError> {
    header.insert("alg".into(), Value::from(key.algorithm().jose_name()));
    header.insert("kid".into(), Value::from(key.kid()));
    let chain = key.x5c();
    if !chain.is_empty() {
        header.insert("x5c".into(), x5c_json(&chain));
    }
    let header_json =
        serde_json::to_vec(&Value::Object(header)).expect("serialising a JSON map cannot fail");
    let signing_input = format!("{}.{}", b64url_encode(&header_json), b64url_encode(payload));
    let sig = key.try_sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64url_encode(&sig)))
}

/// An `x5c` value (RFC 7515 §4.1.6, RFC 7517 §4.7): each DER certificate in standard,
/// padded base64 (not base64url), leaf first.
pub fn x5c_json(chain: &[Vec<u8>]) -> Value {
    use base64::Engine as _;
    Value::Array(
        chain
            .iter()
            .map(|der| Value::from(base64::engine::general_purpose::STANDARD.encode(der)))
            .collect(),
    )
}

/// A parsed, not yet verified JWS in compact form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jws {
    header: Map<String, Value>,
    alg: Algorithm,
    payload: Vec<u8>,
    signing_input: String,
    signature: Vec<u8>,
}

/// Reads an optional string header parameter; any other JSON type is malformed.
fn header_str<'a>(
    header: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, TokenError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(TokenError::Malformed(format!(
            "header parameter {name:?} must be a string, got {other}"
        ))),
    }
}

impl Jws {
    /// Parses a compact JWS strictly: exactly three segments of unpadded base64url, a header
    /// that is a JSON object with a string `alg` naming ES256, ES384, EdDSA, PS256 or RS256 (`none` and HMAC are
    /// [`TokenError::UnsupportedAlgorithm`]), no `crit`, and string-valued `kid`, `typ` and `cty`
    /// if present. Duplicate header members resolve to the last one, which RFC 7515 §4 permits.
    pub fn parse(compact: &str) -> Result<Jws, TokenError> {
        let segments: Vec<&str> = compact.split('.').collect();
        let [h, p, s] = segments.as_slice() else {
            return Err(TokenError::Malformed(format!(
                "a compact JWS has 3 dot-separated segments, found {}",
                segments.len()
            )));
        };
        let header_bytes = b64url_decode(h, "header").map_err(TokenError::Malformed)?;
        let header = match serde_json::from_slice::<Value>(&header_bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(TokenError::Malformed("header is not a JSON object".into())),
            Err(e) => return Err(TokenError::Malformed(format!("header is not JSON: {e}"))),
        };
        let alg = match header.get("alg") {
            None => return Err(TokenError::Malformed("header has no \"alg\"".into())),
            Some(Value::String(name)) => Algorithm::from_jose_name(name)?,
            Some(other) => {
                return Err(TokenError::Malformed(format!(
                    "header \"alg\" must be a string, got {other}"
                )))
            }
        };
        if let Some(crit) = header.get("crit") {
            // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must
            // reject the JWS. We implement no extensions (not even RFC 7797 `b64`).
            return Err(TokenError::UnsupportedCritical(crit.to_string()));
        }
        for name in ["kid", "typ", "cty"] {
            header_str(&header, name)?;
        }
        let payload = b64url_decode(p, "payload").map_err(TokenError::Malformed)?;
        let signature = b64url_decode(s, "signature").map_err(TokenError::Malformed)?;
        if signature.is_empty() {
            return Err(TokenError::Malformed("signature segment is empty".into()));
        }
        Ok(Jws {
            header,
            alg,
            payload,
            signing_input: format!("{h}.{p}"),
            signature,
        })
    }

    /// The protected header, as decoded.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The header's `alg`, already known to be one statusd verifies.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// The header's `typ`, if any.
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }

    /// The header's `typ` is `expected` (case-insensitively, with or without `application/`).
    pub fn check_typ(&self, expected: &'static str) -> Result<(), TokenError> {
        match self.typ() {
            None => Err(TokenError::MissingType),
            Some(t) if super::media_type_matches(t, expected) => Ok(()),
            Some(t) => Err(TokenError::WrongType {
                expected,
                found: t.to_owned(),
            }),
        }
    }

    /// The decoded payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The JWS Signing Input: the first two segments, joined by `.`, exactly as received.
    pub fn signing_input(&self) -> &str {
        &self.signing_input
    }

    /// The decoded signature bytes.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Verifies against the key [`KeySet::find`] selects for this header's `kid` and `alg`.
    pub fn verify(&self, keys: &KeySet) -> Result<(), TokenError> {
        self.verify_with(keys.find(self.kid(), self.alg)?)
    }

    /// Verifies against one given key, ignoring `kid` but still requiring that the key's
    /// algorithm is the header's `alg`.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<(), TokenError> {
        if key.algorithm() != self.alg {
            return Err(TokenError::AlgorithmMismatch {
                token: self.alg.jose_name(),
                key: key.algorithm().jose_name(),
            });
        }
        key.verify(self.signing_input.as_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_vectors::*;
    use super::*;
    use crate::token::SigningKey;
    use proptest::prelude::*;

    fn b64(s: &str) -> String {
        b64url_encode(s.as_bytes())
    }

    /// A token with the given header JSON and payload, signed by `key` over exactly those bytes
    /// (so only the property under test is wrong).
    fn raw_token(header: &str, payload: &str, key: &SigningKey) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = key.sign(input.as_bytes());
        format!("{input}.{}", b64url_encode(&sig))
    }

    #[test]
    fn spec_jwt_parses_and_verifies() {
        let jws = Jws::parse(SPEC_JWT).unwrap();
        assert_eq!(jws.alg(), Algorithm::Es256);
        assert_eq!(jws.kid(), Some("12"));
        assert_eq!(jws.typ(), Some("statuslist+jwt"));
        assert_eq!(jws.payload(), SPEC_JWT_PAYLOAD.as_bytes());
        assert_eq!(jws.signature().len(), 64);
        let header: Value = serde_json::from_str(SPEC_JWT_HEADER).unwrap();
        assert_eq!(&Value::Object(jws.header().clone()), &header);
        jws.verify(&spec_keyset()).unwrap();
        let key = spec_keyset().keys[0].clone();
        jws.verify_with(&key).unwrap();
    }

    #[test]
    fn sign_compact_sets_alg_and_kid() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Es384] {
            let key = SigningKey::generate(alg);
            let mut header = Map::new();
            header.insert("typ".into(), Value::from("example"));
            header.insert("alg".into(), Value::from("none")); // must be overridden
            let token = sign_compact(header, b"hello", &key).unwrap();
            let jws = Jws::parse(&token).unwrap();
            assert_eq!(jws.alg(), alg);
            assert_eq!(jws.kid(), Some(key.kid()));
            assert_eq!(jws.typ(), Some("example"));
            assert_eq!(jws.payload(), b"hello");
            let len = if alg == Algorithm::Es384 { 96 } else { 64 };
            assert_eq!(jws.signature().len(), len);
            jws.verify(&KeySet::from(key.verifying_key())).unwrap();
        }
    }

    #[test]
    fn spec_signing_input_is_reproduced() {
        // Same header and payload bytes as the draft's token; only the signature differs
        // (ES256 in the draft used a random nonce).
        let key = spec_signing_key();
        let mut header = Map::new();
        header.insert("typ".into(), Value::from("statuslist+jwt"));
        let token = sign_compact(header, SPEC_JWT_PAYLOAD.as_bytes(), &key).unwrap();
        let spec_input = SPEC_JWT.rsplit_once('.').unwrap().0;
        assert_eq!(token.rsplit_once('.').unwrap().0, spec_input);
        Jws::parse(&token).unwrap().verify(&spec_keyset()).unwrap();
    }

    #[test]
    fn tampered_payload_is_bad_signature() {
        let (h, rest) = SPEC_JWT.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let evil = SPEC_JWT_PAYLOAD.replace("43200", "43201");
        let token = format!("{h}.{}.{s}", b64(&evil));
        let jws = Jws::parse(&token).unwrap();
        assert_eq!(jws.verify(&spec_keyset()), Err(TokenError::BadSignature));
    }

    #[test]
    fn flipped_signature_bit_is_bad_signature() {
        let mut jws = Jws::parse(SPEC_JWT).unwrap();
        jws.signature[10] ^= 1;
        assert_eq!(jws.verify(&spec_keyset()), Err(TokenError::BadSignature));
        // A DER-encoded or truncated signature is rejected, not reinterpreted.
        jws.signature.truncate(63);
        assert_eq!(jws.verify(&spec_keyset()), Err(TokenError::BadSignature));
    }

    #[test]
    fn segment_count_is_exact() {
        let parts: Vec<&str> = SPEC_JWT.split('.').collect();
        for bad in [
            parts[..2].join("."),
            format!("{SPEC_JWT}.{}", parts[2]),
            String::new(),
            "abc".into(),
        ] {
            assert!(
                matches!(Jws::parse(&bad), Err(TokenError::Malformed(m)) if m.contains("3 dot-separated")),
                "{bad}"
            );
        }
    }

    #[test]
    fn padded_or_non_url_base64_is_malformed() {
        let parts: Vec<&str> = SPEC_JWT.split('.').collect();
        // The header segment is 70 chars (≡ 2 mod 4), so standard base64 would pad it with "==".
        let padded_header = format!("{}==.{}.{}", parts[0], parts[1], parts[2]);
        assert!(
            matches!(Jws::parse(&padded_header), Err(TokenError::Malformed(m)) if m.contains("padded"))
        );
        let padded_sig = format!("{}.{}.{}==", parts[0], parts[1], parts[2]);
        assert!(
            matches!(Jws::parse(&padded_sig), Err(TokenError::Malformed(m)) if m.contains("padded"))
        );
        let std_alphabet = format!("{}.{}.{}", parts[0], parts[1], parts[2].replace('-', "+"));
        assert!(
            matches!(Jws::parse(&std_alphabet), Err(TokenError::Malformed(m)) if m.contains("alphabet"))
        );
    }

    #[test]
    fn header_must_be_a_json_object_with_alg() {
        let key = SigningKey::generate(Algorithm::Es256);
        for (header, needle) in [
            ("not json", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"typ":"x"}"#, "no \"alg\""),
            (r#"{"alg":7}"#, "must be a string"),
            (r#"{"alg":"ES256","kid":12}"#, "\"kid\" must be a string"),
            (r#"{"alg":"ES256","typ":null}"#, "\"typ\" must be a string"),
        ] {
            let token = raw_token(header, "{}", &key);
            assert!(
                matches!(Jws::parse(&token), Err(TokenError::Malformed(ref m)) if m.contains(needle)),
                "{header}: {:?}",
                Jws::parse(&token)
            );
        }
    }

    #[test]
    fn none_and_hmac_are_unsupported() {
        let payload = b64("{}");
        let none = format!("{}.{payload}.", b64(r#"{"alg":"none"}"#));
        assert_eq!(
            Jws::parse(&none),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
        for alg in [
            "HS256", "HS384", "HS512", "RS384", "ES512", "es256", "PS512",
        ] {
            let token = format!("{}.{payload}.AAAA", b64(&format!(r#"{{"alg":"{alg}"}}"#)));
            assert_eq!(
                Jws::parse(&token),
                Err(TokenError::UnsupportedAlgorithm(alg.into()))
            );
        }
    }

    #[test]
    fn crit_is_rejected() {
        let key = SigningKey::generate(Algorithm::EdDsa);
        let token = raw_token(r#"{"alg":"EdDSA","b64":false,"crit":["b64"]}"#, "{}", &key);
        assert_eq!(
            Jws::parse(&token),
            Err(TokenError::UnsupportedCritical(r#"["b64"]"#.into()))
        );
    }

    #[test]
    fn empty_signature_is_malformed() {
        let token = format!("{}.{}.", b64(r#"{"alg":"ES256"}"#), b64("{}"));
        assert!(matches!(Jws::parse(&token), Err(TokenError::Malformed(m)) if m.contains("empty")));
    }

    #[test]
    fn kid_lookup_and_algorithm_binding() {
        let es = SigningKey::generate(Algorithm::Es256).with_kid("a".into());
        let ed = SigningKey::generate(Algorithm::EdDsa).with_kid("b".into());
        let keys = KeySet::new(vec![es.verifying_key(), ed.verifying_key()]);

        // Unknown kid.
        let stranger = SigningKey::generate(Algorithm::Es256).with_kid("zz".into());
        let token = sign_compact(Map::new(), b"x", &stranger).unwrap();
        assert_eq!(
            Jws::parse(&token).unwrap().verify(&keys),
            Err(TokenError::UnknownKey(Some("zz".into())))
        );

        // Signed by an EdDSA key that claims the ES256 key's kid: alg mismatch, never a
        // verification under the wrong algorithm.
        let impostor = SigningKey::generate(Algorithm::EdDsa).with_kid("a".into());
        let token = sign_compact(Map::new(), b"x", &impostor).unwrap();
        assert_eq!(
            Jws::parse(&token).unwrap().verify(&keys),
            Err(TokenError::AlgorithmMismatch {
                token: "EdDSA",
                key: "ES256"
            })
        );
        assert_eq!(
            Jws::parse(&token).unwrap().verify_with(&es.verifying_key()),
            Err(TokenError::AlgorithmMismatch {
                token: "EdDSA",
                key: "ES256"
            })
        );

        // Same kid and alg, different key material: the signature fails.
        let twin = SigningKey::generate(Algorithm::Es256).with_kid("a".into());
        let token = sign_compact(Map::new(), b"x", &twin).unwrap();
        assert_eq!(
            Jws::parse(&token).unwrap().verify(&keys),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tokens_without_kid() {
        let a = SigningKey::generate(Algorithm::Es256);
        let b = SigningKey::generate(Algorithm::Es256);
        let ed = SigningKey::generate(Algorithm::EdDsa);
        let token = raw_token(r#"{"alg":"ES256"}"#, "{}", &a);
        let jws = Jws::parse(&token).unwrap();
        // The one ES256 key in the set is used.
        jws.verify(&KeySet::new(vec![a.verifying_key(), ed.verifying_key()]))
            .unwrap();
        // Two candidates: refuse to guess.
        assert_eq!(
            jws.verify(&KeySet::new(vec![a.verifying_key(), b.verifying_key()])),
            Err(TokenError::AmbiguousKey {
                alg: "ES256",
                count: 2
            })
        );
        // Only a key of another algorithm.
        assert_eq!(
            jws.verify(&KeySet::from(ed.verifying_key())),
            Err(TokenError::AlgorithmMismatch {
                token: "ES256",
                key: "EdDSA"
            })
        );
        assert_eq!(
            jws.verify(&KeySet::default()),
            Err(TokenError::UnknownKey(None))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,200}") {
            let _ = Jws::parse(&s).map(|j| j.verify(&spec_keyset()));
        }

        #[test]
        fn jws_shaped_strings_never_panic(s in "[A-Za-z0-9_=+/.-]{0,300}") {
            let _ = Jws::parse(&s).map(|j| j.verify(&spec_keyset()));
        }

        #[test]
        fn arbitrary_segments_never_panic(
            h in proptest::collection::vec(any::<u8>(), 0..64),
            p in proptest::collection::vec(any::<u8>(), 0..64),
            s in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let token = format!("{}.{}.{}", b64url_encode(&h), b64url_encode(&p), b64url_encode(&s));
            let _ = Jws::parse(&token).map(|j| j.verify(&spec_keyset()));
        }
    }
}
