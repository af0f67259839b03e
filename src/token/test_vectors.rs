//! The draft's token test vectors (spec §2.4, §2.5, §2.7, §2.9) and a hex helper, shared by the
//! unit tests of every file in `token/`. Test-only; never compiled into the library.

/// §2.4: the raw Status List Token JWT from draft §8.2 (with `iss`), on one line.
pub const SPEC_JWT: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6IjEyIiwidHlwIjoic3RhdHVzbGlzdCtqd3QifQ.eyJleHAiOjIyOTE3MjAxNzAsImlhdCI6MTY4NjkyMDE3MCwiaXNzIjoiaHR0cHM6Ly9leGFtcGxlLmNvbSIsInN0YXR1c19saXN0Ijp7ImJpdHMiOjEsImxzdCI6ImVOcmJ1UmdBQWhjQlhRIn0sInN1YiI6Imh0dHBzOi8vZXhhbXBsZS5jb20vc3RhdHVzbGlzdHMvMSIsInR0bCI6NDMyMDB9.2lKUUNG503R9htu4aHAYi7vjmr3sgApbfoDvPrl65N3URUO1EYqqQl45Jfzd-Av4QzlKa3oVALpLwOEUOq-U_g";

/// §2.4: the decoded header and payload bytes of [`SPEC_JWT`].
pub const SPEC_JWT_HEADER: &str = r#"{"alg":"ES256","kid":"12","typ":"statuslist+jwt"}"#;
pub const SPEC_JWT_PAYLOAD: &str = r#"{"exp":2291720170,"iat":1686920170,"iss":"https://example.com","status_list":{"bits":1,"lst":"eNrbuRgAAhcBXQ"},"sub":"https://example.com/statuslists/1","ttl":43200}"#;

/// §2.5: the Status List Token CWT (189 bytes).
pub const SPEC_CWT_HEX: &str = "d2845820a2012610781a6170706c69636174696f6e2f7374617475736c6973742b637774a1044231325850a502782168747470733a2f2f6578616d706c652e636f6d2f7374617475736c697374732f31061a648c5bea041a8898dfea19fffe19a8c019fffda2646269747301636c73744a78dadbb918000217015d584093fa4d01032b18c35e2fe1101b77fd6cc9440022caa4694450c4e4e9feab4e99d1fa6d9772ce2bf3a12e0323ded7c982c5e101a5e67f0cbc1e2b6f57ce99c279";

/// §2.5: the protected header bstr contents of [`SPEC_CWT_HEX`].
pub const SPEC_CWT_PROTECTED_HEX: &str =
    "a2012610781a6170706c69636174696f6e2f7374617475736c6973742b637774";

/// §2.5: the payload bstr contents of [`SPEC_CWT_HEX`] (80 bytes).
pub const SPEC_CWT_PAYLOAD_HEX: &str = "a502782168747470733a2f2f6578616d706c652e636f6d2f7374617475736c697374732f31061a648c5bea041a8898dfea19fffe19a8c019fffda2646269747301636c73744a78dadbb918000217015d";

/// §2.7: the Referenced Token CWT (181 bytes), no typ.
pub const SPEC_REFERENCED_CWT_HEX: &str = "d28443a10126a1044231325866a502653132333435017368747470733a2f2f6578616d706c652e636f6d061a648c5bea041a8898dfea19ffffa16b7374617475735f6c697374a2636964780063757269782168747470733a2f2f6578616d706c652e636f6d2f7374617475736c697374732f315840340f7efea10f1a36dc4797636a17b4dd4848b68997d1d10e8cceb3a38ff33b3dda72964a83989f6cf98560c2fc97a08bc8977cc6b0f84cfedab93d3e4481e938";

/// §2.9: the generator's P-256 example key (public example material), as a private JWK.
pub const SPEC_PRIVATE_JWK: &str = r#"{
  "kty": "EC",
  "d": "xzUEdsyLosZF0acZGRAjTKImb0lQvAvssDK5XIZELd0",
  "use": "sig",
  "crv": "P-256",
  "x": "I3HWm_0Ds1dPMI-IWmf4mBmH-YaeAVbPVu7vB27CxXo",
  "y": "6N_d5Elj9bs1htgV3okJKIdbHEpkgTmAluYKJemzn1M",
  "kid": "12",
  "alg": "ES256"
}"#;

/// §2.9 without `d`: what a relying party holds.
pub const SPEC_PUBLIC_JWK: &str = r#"{"kty":"EC","use":"sig","crv":"P-256","x":"I3HWm_0Ds1dPMI-IWmf4mBmH-YaeAVbPVu7vB27CxXo","y":"6N_d5Elj9bs1htgV3okJKIdbHEpkgTmAluYKJemzn1M","kid":"12","alg":"ES256"}"#;

/// The compressed `lst` of the 1-bit example list (§2.1), `eNrbuRgAAhcBXQ` decoded.
pub const SPEC_LST_HEX: &str = "78dadbb918000217015d";

/// Decodes a hex string (test helper; there is no `hex` crate). Panics on bad input, which in a
/// test is a bug in the literal.
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex literal");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex literal"))
        .collect()
}

/// The §2.9 key as a verifier's key set.
pub fn spec_keyset() -> super::KeySet {
    super::KeySet::from_jwks_json(&format!(r#"{{"keys":[{SPEC_PUBLIC_JWK}]}}"#))
        .expect("the spec JWK loads")
}

/// The §2.9 key as a signing key (kid "12" from the JWK).
pub fn spec_signing_key() -> super::SigningKey {
    let jwk: serde_json::Value = serde_json::from_str(SPEC_PRIVATE_JWK).expect("JSON literal");
    super::SigningKey::from_jwk(&jwk).expect("the spec private JWK loads")
}
