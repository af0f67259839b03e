//! COSE_Sign1 (RFC 9052 §4.2) in its tagged form, as the draft requires of a Status List CWT.
//!
//! Owns the COSE framing: tag handling (18 required; 61 and 17 refused with their own errors),
//! header placement (alg, typ and crit must be protected), kid lookup and the `Signature1`
//! Sig_structure. It must never interpret the payload (that is `statuslist`), never accept
//! trailing bytes after the message, and never produce or accept COSE_Mac0 (statusd signs only;
//! see the module docs of `token`).

use super::signer::{SignError, TokenSigner};
use super::{Algorithm, KeySet, TokenError, VerifyingKey};
use ciborium::Value as Cbor;
use coset::iana::{self, EnumI64 as _};
use coset::{
    AsCborValue as _, CoseSign1, CoseSign1Builder, HeaderBuilder, Label,
    RegisteredLabelWithPrivate, TaggedCborSerializable as _,
};

/// COSE header label of `typ` (RFC 9596).
pub const LABEL_TYP: i64 = 16;
/// COSE header label of `x5chain` (RFC 9360 §2): one DER certificate as a byte string, or
/// several (leaf first) as an array of byte strings.
pub const LABEL_X5CHAIN: i64 = 33;

/// The CBOR tag of COSE_Sign1_Tagged.
const TAG_COSE_SIGN1: u64 = 18;
/// The CWT tag (RFC 8392 §6), which a Status List Token must not carry.
const TAG_CWT: u64 = 61;

/// The value of the `typ` header parameter (label 16): a media type string or a CoAP
/// Content-Format number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoseTyp {
    Text(String),
    ContentFormat(u64),
}

impl std::fmt::Display for CoseTyp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoseTyp::Text(t) => f.write_str(t),
            CoseTyp::ContentFormat(n) => write!(f, "content-format {n}"),
        }
    }
}

/// Builds a COSE_Sign1_Tagged (tag 18, not wrapped in tag 61) over `payload`: protected
/// `{1: alg, 16: protected_typ}`, unprotected `{4: kid as UTF-8 bytes}` (the draft's example puts
/// the kid there), and an ES256, ES384, EdDSA, PS256 or RS256 signature with empty external AAD. With a certificate
/// chain, the protected header also carries it as `x5chain` (label 33), as ISO/IEC 18013-5
/// verifiers expect of a Status List Token.
pub fn sign1_tagged(
    protected_typ: &str,
    payload: Vec<u8>,
    key: &(impl TokenSigner + ?Sized),
) -> Result<Vec<u8>, SignError> {
    let alg = match key.algorithm() {
        Algorithm::Es256 => iana::Algorithm::ES256,
        Algorithm::EdDsa => iana::Algorithm::EdDSA,
        Algorithm::Es384 => iana::Algorithm::ES384,
        Algorithm::Ps256 => iana::Algorithm::PS256,
        Algorithm::Rs256 => iana::Algorithm::RS256,
    };
    let mut protected = HeaderBuilder::new()
        .algorithm(alg)
        .value(LABEL_TYP, Cbor::Text(protected_typ.to_owned()));
    match &*key.x5c() {
        [] => {}
        [leaf] => protected = protected.value(LABEL_X5CHAIN, Cbor::Bytes(leaf.clone())),
        chain => {
            protected = protected.value(
                LABEL_X5CHAIN,
                Cbor::Array(chain.iter().cloned().map(Cbor::Bytes).collect()),
            )
        }
    }
    let protected = protected.build();
    let unprotected = HeaderBuilder::new()
        .key_id(key.kid().as_bytes().to_vec())
        .build();
    Ok(CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(payload)
        .try_create_signature(b"", |tbs| key.try_sign(tbs))?
        .build()
        .to_tagged_vec()
        .expect("serialising a COSE_Sign1 built from valid headers cannot fail"))
}

/// A parsed, not yet verified COSE_Sign1_Tagged.
#[derive(Clone, Debug, PartialEq)]
pub struct Sign1 {
    inner: CoseSign1,
    alg: Algorithm,
    typ: Option<CoseTyp>,
    kid: Option<Vec<u8>>,
}

/// Decodes exactly one CBOR data item, refusing trailing bytes. ciborium limits nesting depth
/// and grows buffers as data arrives, so hostile lengths cannot exhaust the stack or memory.
pub(crate) fn cbor_from_slice(mut bytes: &[u8], what: &str) -> Result<Cbor, TokenError> {
    let value: Cbor = ciborium::from_reader(&mut bytes)
        .map_err(|e| TokenError::Malformed(format!("{what} is not valid CBOR: {e}")))?;
    if !bytes.is_empty() {
        return Err(TokenError::Malformed(format!(
            "{} trailing byte(s) after the {what}",
            bytes.len()
        )));
    }
    Ok(value)
}

fn cose_err(e: coset::CoseError) -> TokenError {
    TokenError::Malformed(format!("COSE_Sign1: {e}"))
}

impl Sign1 {
    /// Parses COSE_Sign1_Tagged strictly. Tag 61 around anything is [`TokenError::Tag61`];
    /// untagged input or another tag (17 = COSE_Mac0) is [`TokenError::NotCoseSign1Tagged`].
    /// `alg` must be in the protected header and be ES256, ES384, EdDSA, PS256 or RS256; `crit` is refused; `typ`
    /// is read from the protected header only (RFC 9596 requires integrity protection for it to
    /// mean anything); `kid` may be in either header but not in both with different values. A
    /// detached (nil) payload and trailing bytes are malformed.
    pub fn parse(bytes: &[u8]) -> Result<Sign1, TokenError> {
        let inner = match cbor_from_slice(bytes, "COSE message")? {
            Cbor::Tag(TAG_CWT, _) => return Err(TokenError::Tag61),
            Cbor::Tag(TAG_COSE_SIGN1, body) => {
                CoseSign1::from_cbor_value(*body).map_err(cose_err)?
            }
            Cbor::Tag(other, _) => return Err(TokenError::NotCoseSign1Tagged(Some(other))),
            _ => return Err(TokenError::NotCoseSign1Tagged(None)),
        };
        let protected = &inner.protected.header;
        let unprotected = &inner.unprotected;

        if unprotected.alg.is_some() {
            return Err(TokenError::Malformed(
                "alg (label 1) must be in the protected header".into(),
            ));
        }
        let alg = match &protected.alg {
            None => {
                return Err(TokenError::Malformed(
                    "protected header has no alg (label 1)".into(),
                ))
            }
            Some(RegisteredLabelWithPrivate::Assigned(a)) => Algorithm::from_cose_id(a.to_i64())?,
            Some(RegisteredLabelWithPrivate::PrivateUse(id)) => Algorithm::from_cose_id(*id)?,
            Some(RegisteredLabelWithPrivate::Text(t)) => {
                return Err(TokenError::UnsupportedAlgorithm(format!(
                    "COSE algorithm {t:?}"
                )))
            }
        };
        if !protected.crit.is_empty() {
            return Err(TokenError::UnsupportedCritical(format!(
                "{:?}",
                protected.crit
            )));
        }
        if !unprotected.crit.is_empty() {
            return Err(TokenError::Malformed(
                "crit (label 2) must be in the protected header".into(),
            ));
        }

        let typ = protected
            .rest
            .iter()
            .find(|(label, _)| *label == Label::Int(LABEL_TYP))
            .map(|(_, value)| match value {
                Cbor::Text(t) => Ok(CoseTyp::Text(t.clone())),
                Cbor::Integer(i) => u64::try_from(*i).map(CoseTyp::ContentFormat).map_err(|_| {
                    TokenError::Malformed("typ (label 16) is a negative integer".into())
                }),
                _ => Err(TokenError::Malformed(
                    "typ (label 16) must be a text string or an unsigned integer".into(),
                )),
            })
            .transpose()?;

        let kid = match (protected.key_id.as_slice(), unprotected.key_id.as_slice()) {
            ([], []) => None,
            (p, []) => Some(p.to_vec()),
            ([], u) => Some(u.to_vec()),
            (p, u) if p == u => Some(p.to_vec()),
            _ => {
                return Err(TokenError::Malformed(
                    "kid (label 4) differs between the protected and unprotected headers".into(),
                ))
            }
        };

        if inner.payload.is_none() {
            return Err(TokenError::Malformed(
                "detached (nil) payloads are not supported".into(),
            ));
        }
        Ok(Sign1 {
            inner,
            alg,
            typ,
            kid,
        })
    }

    /// The protected `alg`.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The protected `typ` (label 16), if present.
    pub fn typ(&self) -> Option<&CoseTyp> {
        self.typ.as_ref()
    }

    /// The protected `typ` is the text `expected` (case-insensitively); returns it.
    pub fn check_typ(&self, expected: &'static str) -> Result<CoseTyp, TokenError> {
        match self.typ() {
            None => Err(TokenError::MissingType),
            Some(CoseTyp::Text(t)) if t.eq_ignore_ascii_case(expected) => {
                Ok(CoseTyp::Text(t.clone()))
            }
            Some(other) => Err(TokenError::WrongType {
                expected,
                found: other.to_string(),
            }),
        }
    }

    /// The `kid` bytes (label 4), from whichever header carries it.
    pub fn kid(&self) -> Option<&[u8]> {
        self.kid.as_deref()
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        self.inner.payload.as_deref().unwrap_or_default()
    }

    /// The protected header exactly as received (the bstr contents).
    pub fn protected_bytes(&self) -> &[u8] {
        self.inner
            .protected
            .original_data
            .as_deref()
            .unwrap_or_default()
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8] {
        &self.inner.signature
    }

    /// Verifies against the key [`KeySet::find`] selects for this message's `kid` and `alg`.
    /// A kid that is not UTF-8 cannot name any key in a [`KeySet`] (JWK kids are strings).
    pub fn verify(&self, keys: &KeySet) -> Result<(), TokenError> {
        let kid = match &self.kid {
            None => None,
            Some(bytes) => Some(std::str::from_utf8(bytes).map_err(|_| {
                TokenError::UnknownKey(Some(format!(
                    "h'{}'",
                    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                )))
            })?),
        };
        self.verify_with(keys.find(kid, self.alg)?)
    }

    /// Verifies against one given key (ignoring `kid`), which must be of the protected `alg`.
    /// The Sig_structure is `["Signature1", protected, h'', payload]` over the protected bytes
    /// as received, never a re-encoding.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<(), TokenError> {
        if key.algorithm() != self.alg {
            return Err(TokenError::AlgorithmMismatch {
                token: self.alg.jose_name(),
                key: key.algorithm().jose_name(),
            });
        }
        self.inner
            .verify_signature(b"", |sig, tbs| key.verify(tbs, sig))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_vectors::*;
    use super::*;
    use crate::status::ietf::cbor_to_vec;
    use crate::token::SigningKey;
    use proptest::prelude::*;

    fn parse_tagged(v: Cbor) -> Result<Sign1, TokenError> {
        Sign1::parse(&cbor_to_vec(&v))
    }

    fn spec_cwt_value() -> Cbor {
        cbor_from_slice(&hex(SPEC_CWT_HEX), "test").unwrap()
    }

    fn untag(v: Cbor) -> Cbor {
        match v {
            Cbor::Tag(18, inner) => *inner,
            other => panic!("expected tag 18, got {other:?}"),
        }
    }

    #[test]
    fn spec_status_list_cwt_parses_and_verifies() {
        let bytes = hex(SPEC_CWT_HEX);
        assert_eq!(bytes.len(), 189);
        assert_eq!(bytes[0], 0xd2, "tag 18");
        let msg = Sign1::parse(&bytes).unwrap();
        assert_eq!(msg.alg(), Algorithm::Es256);
        assert_eq!(
            msg.typ(),
            Some(&CoseTyp::Text("application/statuslist+cwt".into()))
        );
        assert_eq!(msg.kid(), Some(&b"12"[..]));
        assert_eq!(msg.protected_bytes(), hex(SPEC_CWT_PROTECTED_HEX));
        assert_eq!(msg.payload(), hex(SPEC_CWT_PAYLOAD_HEX));
        assert_eq!(msg.signature().len(), 64);
        msg.verify(&spec_keyset()).unwrap();
    }

    #[test]
    fn spec_referenced_token_cwt_verifies() {
        let bytes = hex(SPEC_REFERENCED_CWT_HEX);
        assert_eq!(bytes.len(), 181);
        let msg = Sign1::parse(&bytes).unwrap();
        assert_eq!(msg.alg(), Algorithm::Es256);
        assert_eq!(msg.typ(), None);
        assert_eq!(msg.kid(), Some(&b"12"[..]));
        assert_eq!(msg.protected_bytes(), hex("a10126"));
        msg.verify(&spec_keyset()).unwrap();
        // And the payload really is the draft's claims: sub "12345", status {idx 0, uri}.
        let claims = cbor_from_slice(msg.payload(), "payload").unwrap();
        let map = claims.as_map().unwrap();
        assert_eq!(map[0], (Cbor::from(2), Cbor::from("12345")));
        assert_eq!(map[1], (Cbor::from(1), Cbor::from("https://example.com")));
    }

    #[test]
    fn sign1_tagged_round_trips_for_both_algorithms() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Es384] {
            let key = SigningKey::generate(alg).with_kid("k-1".into());
            let bytes = sign1_tagged("application/example", b"payload".to_vec(), &key).unwrap();
            assert_eq!(bytes[0], 0xd2, "tag 18, no tag 61");
            let msg = Sign1::parse(&bytes).unwrap();
            assert_eq!(msg.alg(), alg);
            assert_eq!(
                msg.typ(),
                Some(&CoseTyp::Text("application/example".into()))
            );
            assert_eq!(msg.kid(), Some(&b"k-1"[..]));
            assert_eq!(msg.payload(), b"payload");
            msg.verify(&KeySet::from(key.verifying_key())).unwrap();
            // Header layout: alg and typ protected, kid unprotected.
            let Cbor::Array(parts) = untag(cbor_from_slice(&bytes, "t").unwrap()) else {
                panic!("not an array")
            };
            let protected = cbor_from_slice(parts[0].as_bytes().unwrap(), "p").unwrap();
            assert_eq!(
                protected,
                Cbor::Map(vec![
                    (Cbor::from(1), Cbor::from(alg.cose_id())),
                    (Cbor::from(16), Cbor::from("application/example")),
                ])
            );
            assert_eq!(
                parts[1],
                Cbor::Map(vec![(Cbor::from(4), Cbor::Bytes(b"k-1".to_vec()))])
            );
        }
    }

    #[test]
    fn sig_structure_is_signature1() {
        // Sign the Sig_structure by hand and check the library accepts it: proves the context
        // string, empty AAD and byte layout, independently of coset's builder.
        let key = SigningKey::generate(Algorithm::EdDsa);
        let protected = cbor_to_vec(&Cbor::Map(vec![(Cbor::from(1), Cbor::from(-8))]));
        let payload = b"abc".to_vec();
        let tbs = cbor_to_vec(&Cbor::Array(vec![
            Cbor::from("Signature1"),
            Cbor::Bytes(protected.clone()),
            Cbor::Bytes(vec![]),
            Cbor::Bytes(payload.clone()),
        ]));
        let msg = Cbor::Tag(
            18,
            Box::new(Cbor::Array(vec![
                Cbor::Bytes(protected),
                Cbor::Map(vec![]),
                Cbor::Bytes(payload),
                Cbor::Bytes(key.sign(&tbs)),
            ])),
        );
        parse_tagged(msg)
            .unwrap()
            .verify(&KeySet::from(key.verifying_key()))
            .unwrap();
    }

    #[test]
    fn tag_61_is_refused() {
        let wrapped = Cbor::Tag(61, Box::new(spec_cwt_value()));
        assert_eq!(parse_tagged(wrapped), Err(TokenError::Tag61));
    }

    #[test]
    fn untagged_and_tag_17_are_refused() {
        let body = untag(spec_cwt_value());
        assert_eq!(
            parse_tagged(body.clone()),
            Err(TokenError::NotCoseSign1Tagged(None))
        );
        assert_eq!(
            parse_tagged(Cbor::Tag(17, Box::new(body.clone()))),
            Err(TokenError::NotCoseSign1Tagged(Some(17)))
        );
        assert_eq!(
            parse_tagged(Cbor::Tag(98, Box::new(body))),
            Err(TokenError::NotCoseSign1Tagged(Some(98)))
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = hex(SPEC_CWT_HEX);
        bytes.push(0x00);
        assert!(
            matches!(Sign1::parse(&bytes), Err(TokenError::Malformed(m)) if m.contains("trailing"))
        );
    }

    #[test]
    fn truncated_input_is_malformed() {
        let bytes = hex(SPEC_CWT_HEX);
        for len in [0, 1, 2, 50, 188] {
            assert!(
                matches!(Sign1::parse(&bytes[..len]), Err(TokenError::Malformed(_))),
                "len {len}"
            );
        }
    }

    #[test]
    fn tampered_payload_is_bad_signature() {
        let mut bytes = hex(SPEC_CWT_HEX);
        // The payload bstr starts at offset 43 (after tag, array, protected and unprotected);
        // offset 53 is inside its "sub" URI.
        let pos = 53;
        assert_eq!(bytes[pos], b'/');
        bytes[pos] ^= 0x01;
        let msg = Sign1::parse(&bytes).unwrap();
        assert_eq!(msg.verify(&spec_keyset()), Err(TokenError::BadSignature));
    }

    /// Rebuilds the spec message with other headers, keeping payload and signature.
    fn with_headers(protected: Cbor, unprotected: Cbor) -> Cbor {
        let Cbor::Array(mut parts) = untag(spec_cwt_value()) else {
            panic!("not an array")
        };
        parts[0] = Cbor::Bytes(cbor_to_vec(&protected));
        parts[1] = unprotected;
        Cbor::Tag(18, Box::new(Cbor::Array(parts)))
    }

    #[test]
    fn header_placement_rules() {
        let alg = (Cbor::from(1), Cbor::from(-7));
        let kid = (Cbor::from(4), Cbor::Bytes(b"12".to_vec()));
        // alg missing.
        assert!(matches!(
            parse_tagged(with_headers(Cbor::Map(vec![]), Cbor::Map(vec![kid.clone()]))),
            Err(TokenError::Malformed(m)) if m.contains("no alg")
        ));
        // alg unprotected.
        assert!(matches!(
            parse_tagged(with_headers(Cbor::Map(vec![]), Cbor::Map(vec![alg.clone()]))),
            Err(TokenError::Malformed(m)) if m.contains("protected header")
        ));
        // HMAC 256/256 and ES512.
        for id in [5, -36] {
            assert!(matches!(
                parse_tagged(with_headers(
                    Cbor::Map(vec![(Cbor::from(1), Cbor::from(id))]),
                    Cbor::Map(vec![])
                )),
                Err(TokenError::UnsupportedAlgorithm(m)) if m.contains(&id.to_string())
            ));
        }
        // crit, with a text label or a registered one: we implement no extensions.
        for label in [Cbor::from("exp"), Cbor::from(4)] {
            assert!(matches!(
                parse_tagged(with_headers(
                    Cbor::Map(vec![alg.clone(), (Cbor::from(2), Cbor::Array(vec![label]))]),
                    Cbor::Map(vec![])
                )),
                Err(TokenError::UnsupportedCritical(_))
            ));
        }
        // crit in the unprotected header is misplaced.
        assert!(matches!(
            parse_tagged(with_headers(
                Cbor::Map(vec![alg.clone()]),
                Cbor::Map(vec![(Cbor::from(2), Cbor::Array(vec![Cbor::from(4)]))])
            )),
            Err(TokenError::Malformed(m)) if m.contains("crit")
        ));
        // typ of the wrong CBOR type.
        assert!(matches!(
            parse_tagged(with_headers(
                Cbor::Map(vec![alg.clone(), (Cbor::from(16), Cbor::Bytes(vec![1]))]),
                Cbor::Map(vec![])
            )),
            Err(TokenError::Malformed(m)) if m.contains("label 16")
        ));
        // typ as a content-format number.
        let msg = parse_tagged(with_headers(
            Cbor::Map(vec![alg.clone(), (Cbor::from(16), Cbor::from(61))]),
            Cbor::Map(vec![]),
        ))
        .unwrap();
        assert_eq!(msg.typ(), Some(&CoseTyp::ContentFormat(61)));
        // kid in both headers, disagreeing.
        assert!(matches!(
            parse_tagged(with_headers(
                Cbor::Map(vec![alg.clone(), (Cbor::from(4), Cbor::Bytes(b"13".to_vec()))]),
                Cbor::Map(vec![kid])
            )),
            Err(TokenError::Malformed(m)) if m.contains("differs")
        ));
    }

    #[test]
    fn rewritten_protected_header_breaks_the_signature() {
        // Same semantic header, different encoding (typ first): the signature covers the bytes
        // as received, so this must fail.
        let protected = Cbor::Map(vec![
            (Cbor::from(16), Cbor::from("application/statuslist+cwt")),
            (Cbor::from(1), Cbor::from(-7)),
        ]);
        let msg = parse_tagged(with_headers(
            protected,
            Cbor::Map(vec![(Cbor::from(4), Cbor::Bytes(b"12".to_vec()))]),
        ))
        .unwrap();
        assert_eq!(msg.verify(&spec_keyset()), Err(TokenError::BadSignature));
    }

    #[test]
    fn detached_payload_is_malformed() {
        let Cbor::Array(mut parts) = untag(spec_cwt_value()) else {
            panic!("not an array")
        };
        parts[2] = Cbor::Null;
        assert!(matches!(
            parse_tagged(Cbor::Tag(18, Box::new(Cbor::Array(parts)))),
            Err(TokenError::Malformed(m)) if m.contains("detached")
        ));
    }

    #[test]
    fn kid_lookup() {
        let msg = Sign1::parse(&hex(SPEC_CWT_HEX)).unwrap();
        let other = SigningKey::generate(Algorithm::Es256).with_kid("12".into());
        assert_eq!(
            msg.verify(&KeySet::from(other.verifying_key())),
            Err(TokenError::BadSignature)
        );
        let wrong_kid = spec_keyset().keys[0].clone().with_kid("13".into());
        assert_eq!(
            msg.verify(&KeySet::from(wrong_kid)),
            Err(TokenError::UnknownKey(Some("12".into())))
        );
        let ed = SigningKey::generate(Algorithm::EdDsa).with_kid("12".into());
        assert_eq!(
            msg.verify(&KeySet::from(ed.verifying_key())),
            Err(TokenError::AlgorithmMismatch {
                token: "ES256",
                key: "EdDSA"
            })
        );
        let binary_kid = parse_tagged(with_headers(
            Cbor::Map(vec![(Cbor::from(1), Cbor::from(-7))]),
            Cbor::Map(vec![(Cbor::from(4), Cbor::Bytes(vec![0xff, 0x00]))]),
        ))
        .unwrap();
        assert_eq!(
            binary_kid.verify(&spec_keyset()),
            Err(TokenError::UnknownKey(Some("h'ff00'".into())))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Sign1::parse(&bytes).map(|m| m.verify(&spec_keyset()));
        }

        #[test]
        fn mutated_spec_cwt_never_panics(pos in 0usize..189, byte in any::<u8>()) {
            let mut bytes = hex(SPEC_CWT_HEX);
            bytes[pos] = byte;
            if let Ok(msg) = Sign1::parse(&bytes) {
                // Any change outside the unprotected header must break the signature.
                let unprotected = 36..41;
                if !unprotected.contains(&pos) && bytes != hex(SPEC_CWT_HEX) {
                    prop_assert!(msg.verify(&spec_keyset()).is_err());
                }
            }
        }
    }
}
