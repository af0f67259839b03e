//! Signed tokens: the IETF Status List Token (JWT and CWT forms, draft-ietf-oauth-status-list-20
//! §5) and VC-JOSE-COSE securing of W3C credentials, plus the keys that sign and verify them.
//!
//! Layout:
//! * [`keys`]: signing keys (ES256, ES384, EdDSA; RSA in a PKCS#11 token only), verifying keys, JWK / PEM I/O and [`KeySet`] lookup.
//! * [`signer`]: [`TokenSigner`], what every token is signed through: an in-memory key, or a
//!   [`Signer`] (key file or PKCS#11 token, with its certificate chain).
//! * [`jws`]: JWS compact serialisation (RFC 7515), strict parsing and verification.
//! * [`cose`]: COSE_Sign1_Tagged (RFC 9052) built on `coset`, strict parsing and verification.
//! * [`signed`]: any claim set signed and verified as a JWT or a CWT with its own `typ` (the
//!   Status List Token's and the signed delta's), and the time claims they share.
//! * [`statuslist`]: the Status List Token claims, signed and verified in both forms.
//! * [`vc`]: a W3C credential secured as a `vc+jwt`.
//!
//! This module never does I/O (callers read key files and pass strings) and never inflates a
//! status list: verification hands back the [`crate::status::ietf::IetfList`] still compressed,
//! so the cost of `decode()` stays visible to the caller. Nothing here panics on token or key
//! input: every failure is a [`TokenError`] or a [`KeyError`].
//!
//! Only asymmetric signatures are produced or accepted (ES256, ES384, EdDSA, PS256, RS256). The draft allows MACs,
//! but a verifier that accepts HMAC tokens must guard against key confusion (RFC 8725 §2.1), and
//! statusd has no use for a shared secret, so `none` and every HMAC algorithm are rejected up
//! front with [`TokenError::UnsupportedAlgorithm`].

pub mod cose;
pub mod jws;
pub mod keys;
pub mod signed;
pub mod signer;
pub mod statuslist;
pub mod vc;
pub mod vc11;

#[cfg(test)]
mod test_vectors;

pub use cose::{sign1_tagged, CoseTyp, Sign1};
pub use jws::{sign_compact, Jws};
pub use keys::{Algorithm, KeySet, SigningKey, VerifyingKey};
pub use signer::{ExternalSigner, SignError, Signer, TokenSigner};
pub use statuslist::{
    check_time, decode_cwt_unverified, decode_jwt_unverified, sign_cwt, sign_jwt, verify_cwt,
    verify_jwt, StatusListClaims, UnverifiedCwt, UnverifiedJwt,
};
pub use vc::{decode_vc_jwt_unverified, sign_vc_jwt, verify_vc_jwt, UnverifiedVcJwt};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Why a token was rejected. Each variant names one distinct failure so callers (and the
/// `inspect` command) can say exactly what is wrong rather than "invalid token".
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TokenError {
    /// The token's framing is broken: segment count, base64url, JSON or CBOR structure.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The explicit type (`typ`, or COSE label 16) names a different kind of token.
    #[error("wrong token type: expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    /// The explicit type is required (RFC 8725 §3.11) but absent.
    #[error("token has no type header (typ / COSE label 16)")]
    MissingType,
    /// `none`, HMAC, or any algorithm other than ES256, ES384, EdDSA, PS256 and RS256.
    #[error("unsupported algorithm {0} (only ES256, ES384, EdDSA, PS256 and RS256 are accepted)")]
    UnsupportedAlgorithm(String),
    /// The key selected by `kid` is of another algorithm than the token header names. Never
    /// "fix" this by trusting the header's `alg` (RFC 8725 §3.1).
    #[error("token algorithm {token} does not match the {key} key it names")]
    AlgorithmMismatch {
        token: &'static str,
        key: &'static str,
    },
    /// No key in the set has this `kid` (or, without a `kid`, no key of the token's algorithm).
    #[error("no verification key for kid {}", .0.as_deref().map_or_else(|| "(none)".to_owned(), |k| format!("{k:?}")))]
    UnknownKey(Option<String>),
    /// The token has no `kid` and several keys of its algorithm could have signed it.
    #[error("token has no kid and {count} {alg} keys could verify it")]
    AmbiguousKey { alg: &'static str, count: usize },
    /// The header marks an extension critical (`crit`); statusd implements none.
    #[error("unsupported critical header parameter(s): {0}")]
    UnsupportedCritical(String),
    /// The signature does not verify under the selected key.
    #[error("signature verification failed")]
    BadSignature,
    /// A required claim is absent.
    #[error("missing required claim {0}")]
    MissingClaim(&'static str),
    /// A claim is present but has the wrong type or an out-of-range value.
    #[error("invalid claim {claim}: {reason}")]
    InvalidClaim { claim: &'static str, reason: String },
    /// A Status List CWT wrapped in the CWT tag 61, which draft §5.2 forbids.
    #[error("CWT is wrapped in tag 61, which a Status List Token must not be")]
    Tag61,
    /// Not COSE_Sign1_Tagged (tag 18): untagged, or another tag such as 17 (COSE_Mac0).
    #[error("expected COSE_Sign1_Tagged (tag 18), found {}", match .0 { None => "an untagged item".to_owned(), Some(17) => "tag 17 (COSE_Mac0; MACs are not supported)".to_owned(), Some(t) => format!("tag {t}") })]
    NotCoseSign1Tagged(Option<u64>),
    /// `exp` is not after `now` (RFC 7519 §4.1.4: "the current date/time MUST be before").
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    /// `iat` lies further in the future than the allowed clock skew.
    #[error("token issued at {iat}, in the future (now {now})")]
    NotYetValid { iat: u64, now: u64 },
    /// The `status_list` claim is not a well-formed Status List object.
    #[error("status_list claim: {0}")]
    StatusList(#[from] crate::status::ietf::IetfError),
}

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum KeyError {
    /// The PEM text or the DER inside it is unreadable, or has the wrong label.
    #[error("PEM: {0}")]
    Pem(String),
    /// A well-formed key of a type statusd cannot use (RSA, other curves, symmetric keys, ...).
    #[error("unsupported key type: {0}")]
    UnsupportedKeyType(String),
    /// A JWK or JWK Set that is not valid JSON or violates RFC 7517 / 7518 / 8037.
    #[error("JWK: {0}")]
    Jwk(String),
    /// The input held no key statusd can use (an empty set, or only unsupported key types).
    #[error("no usable ES256 or EdDSA key found")]
    NoUsableKeys,
}

/// The base64url alphabet without padding (RFC 7515 §2 "Base64url Encoding").
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url strictly: no padding, no whitespace, no standard-alphabet characters and
/// no non-zero trailing bits. `what` names the field for the error message.
pub(crate) fn b64url_decode(s: &str, what: &str) -> Result<Vec<u8>, String> {
    if s.ends_with('=') {
        return Err(format!("{what}: base64url must not be padded with '='"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{what}: character {c:?} is not in the base64url alphabet"
        ));
    }
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("{what}: invalid base64url: {e}"))
}

/// Compares an explicit-typing value with the expected media type. RFC 7515 §4.1.9 says the
/// `application/` prefix may be omitted and recipients must treat both forms alike, and media
/// type names are case-insensitive (RFC 6838 §4.2), so `statuslist+jwt`,
/// `application/statuslist+jwt` and `Application/StatusList+JWT` all match `statuslist+jwt`.
pub(crate) fn media_type_matches(found: &str, expected: &str) -> bool {
    let strip = |s: &str| -> String {
        let lower = s.to_ascii_lowercase();
        match lower.strip_prefix("application/") {
            Some(rest) => rest.to_owned(),
            None => lower,
        }
    };
    strip(found) == strip(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64url_is_strict() {
        assert_eq!(b64url_decode("AQID", "x").unwrap(), vec![1, 2, 3]);
        assert!(b64url_decode("AQ==", "x").unwrap_err().contains("padded"));
        assert!(b64url_decode("a+b/", "x").unwrap_err().contains("alphabet"));
        assert!(b64url_decode("AQ I", "x").unwrap_err().contains("alphabet"));
        // "AR" carries non-zero trailing bits; only "AQ" is the canonical encoding of [1].
        assert!(b64url_decode("AR", "x").is_err());
        assert!(b64url_decode("A", "x").is_err());
        assert_eq!(b64url_encode(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn media_type_comparison() {
        assert!(media_type_matches("statuslist+jwt", "statuslist+jwt"));
        assert!(media_type_matches(
            "application/statuslist+jwt",
            "statuslist+jwt"
        ));
        assert!(media_type_matches("STATUSLIST+JWT", "statuslist+jwt"));
        assert!(media_type_matches(
            "application/statuslist+cwt",
            "application/statuslist+cwt"
        ));
        assert!(!media_type_matches("statuslist+cwt", "statuslist+jwt"));
        assert!(!media_type_matches("jwt", "statuslist+jwt"));
        assert!(!media_type_matches("text/statuslist+jwt", "statuslist+jwt"));
        assert!(!media_type_matches("statuslist+jwt ", "statuslist+jwt"));
    }

    #[test]
    fn error_messages_are_specific() {
        assert_eq!(
            TokenError::UnknownKey(None).to_string(),
            "no verification key for kid (none)"
        );
        assert_eq!(
            TokenError::UnknownKey(Some("12".into())).to_string(),
            "no verification key for kid \"12\""
        );
        assert!(TokenError::NotCoseSign1Tagged(Some(17))
            .to_string()
            .contains("COSE_Mac0"));
        assert!(TokenError::NotCoseSign1Tagged(None)
            .to_string()
            .contains("untagged"));
    }
}
