//! Trusting a token through the certificate chain it carries: `x5c` in a JWS header (RFC 7515
//! §4.1.6), `x5chain` (label 33) in a COSE protected header (RFC 9360 §2). Owns extracting that
//! chain and validating it, with [`crate::cert::validate`], up to one of the trust anchors the
//! caller names; what it hands back is the leaf's key (bound to the token's `kid`), which must
//! then verify the token. `statusd inspect --trust-anchor` and the verifier
//! (`statusd verify --trust-anchor`) both go through [`keys`].
//!
//! A chain never vouches for itself: without an anchor nothing here is trusted, and the
//! signature check stays the caller's (this module never says a token is valid).

use crate::cert::{CertChain, CertError};
use crate::token::keys::KeySet;
use base64::Engine as _;
use std::time::SystemTime;
use x509_cert::Certificate;

/// Why a token's chain gives no trusted key. Each variant names the failed step.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("the token carries no certificate chain (no {0})")]
    Missing(&'static str),
    #[error("the token is neither a JWS nor a COSE_Sign1: {0}")]
    NotAToken(String),
    #[error("{0}")]
    Malformed(String),
    #[error("no trust anchor given")]
    NoAnchor,
    // The certificate check states its cause itself; no `source()`, so it is said once.
    #[error("{0}")]
    Untrusted(CertError),
}

/// The key a validated chain yields.
#[derive(Clone, Debug)]
pub struct Anchored {
    /// The leaf's key, with the token's `kid` if it has one.
    pub keys: KeySet,
    /// How many certificates the token carried.
    pub certificates: usize,
    /// The subject of the anchor the chain validated to (RFC 4514).
    pub anchor: String,
}

impl Anchored {
    /// "2 certificate(s) validated to CN=Root": what reports say.
    pub fn describe(&self) -> String {
        format!(
            "{} certificate(s) validated to {}",
            self.certificates, self.anchor
        )
    }
}

/// A COSE_Sign1 (tagged 18, or in a CWT tag 61, or untagged 17-style first byte) rather than
/// JWS text.
fn is_cose(token: &[u8]) -> bool {
    matches!(token, [0xd2, ..] | [0xd8, ..] | [0x84, ..])
}

/// The DER certificates (leaf first) and the `kid` of `token`.
pub fn chain(token: &[u8]) -> Result<(Vec<Vec<u8>>, Option<String>), AnchorError> {
    if is_cose(token) {
        return cose_chain(token);
    }
    let text = std::str::from_utf8(token)
        .map(str::trim)
        .map_err(|_| AnchorError::NotAToken("not UTF-8 text and not CBOR".into()))?;
    let jws =
        crate::token::jws::Jws::parse(text).map_err(|e| AnchorError::NotAToken(e.to_string()))?;
    let x5c = jws.header().get("x5c").ok_or(AnchorError::Missing("x5c"))?;
    let items = x5c
        .as_array()
        .ok_or_else(|| AnchorError::Malformed("x5c is not an array".into()))?;
    let ders = items
        .iter()
        .map(|c| {
            c.as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| AnchorError::Malformed("an x5c entry is not standard base64".into()))
        })
        .collect::<Result<_, _>>()?;
    Ok((ders, jws.kid().map(str::to_owned)))
}

fn cose_chain(token: &[u8]) -> Result<(Vec<Vec<u8>>, Option<String>), AnchorError> {
    use coset::{CborSerializable as _, TaggedCborSerializable as _};
    // A CWT tag (61) around the COSE_Sign1 is unwrapped; anything else is the parser's to judge.
    let inner = match ciborium::from_reader::<ciborium::Value, _>(token) {
        Ok(ciborium::Value::Tag(61, v)) => {
            let mut b = Vec::new();
            ciborium::into_writer(&*v, &mut b)
                .map_err(|e| AnchorError::NotAToken(e.to_string()))?;
            b
        }
        _ => token.to_vec(),
    };
    let msg = coset::CoseSign1::from_tagged_slice(&inner)
        .or_else(|_| coset::CoseSign1::from_slice(&inner))
        .map_err(|e| AnchorError::NotAToken(format!("not a COSE_Sign1: {e}")))?;
    let value = msg
        .protected
        .header
        .rest
        .iter()
        .find(|(l, _)| *l == coset::Label::Int(crate::token::cose::LABEL_X5CHAIN))
        .map(|(_, v)| v.clone())
        .ok_or(AnchorError::Missing("x5chain in the protected header"))?;
    let bad = || AnchorError::Malformed("x5chain is not a byte string or an array of them".into());
    let ders = match value {
        ciborium::Value::Bytes(b) => vec![b],
        ciborium::Value::Array(items) => items
            .into_iter()
            .map(|i| i.into_bytes().map_err(|_| bad()))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad()),
    };
    let kid = [&msg.protected.header.key_id, &msg.unprotected.key_id]
        .into_iter()
        .find(|k| !k.is_empty())
        .map(|k| String::from_utf8_lossy(k).into_owned());
    Ok((ders, kid))
}

/// Validates `token`'s chain at `at` up to one of `anchors` (the first that accepts it) and
/// returns the leaf's key. When none accepts it, the error is the first anchor's that got past
/// the chain's end (a real defect of the chain), else the first anchor's.
pub fn keys(
    token: &[u8],
    anchors: &[Certificate],
    at: SystemTime,
) -> Result<Anchored, AnchorError> {
    let (ders, kid) = chain(token)?;
    if ders.is_empty() {
        return Err(AnchorError::Malformed(
            "the certificate chain is empty".into(),
        ));
    }
    let chain = CertChain::from_der(&ders).map_err(AnchorError::Malformed)?;
    let mut first_error = None;
    for anchor in anchors {
        match crate::cert::validate(&chain, anchor, at) {
            Ok(leaf) => {
                let leaf = match &kid {
                    Some(kid) => leaf.with_kid(kid.clone()),
                    None => leaf,
                };
                return Ok(Anchored {
                    keys: KeySet::from(leaf),
                    certificates: ders.len(),
                    anchor: anchor.tbs_certificate.subject.to_string(),
                });
            }
            Err(e @ CertError::UntrustedRoot { .. }) => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(AnchorError::Untrusted(e)),
        }
    }
    Err(first_error.map_or(AnchorError::NoAnchor, AnchorError::Untrusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_without_a_chain_is_refused_by_name() {
        let key = crate::token::SigningKey::generate(crate::token::Algorithm::Es256);
        let jwt = crate::token::sign_compact(serde_json::Map::new(), b"{}", &key).unwrap();
        assert!(matches!(
            chain(jwt.as_bytes()),
            Err(AnchorError::Missing("x5c"))
        ));
        let cwt = crate::token::sign1_tagged("application/cwt", b"{}".to_vec(), &key).unwrap();
        assert!(matches!(
            chain(&cwt),
            Err(AnchorError::Missing("x5chain in the protected header"))
        ));
        assert!(matches!(
            keys(b"\x01\x02", &[], SystemTime::now()),
            Err(AnchorError::NotAToken(_))
        ));
    }
}
