//! Keys: the signature algorithms statusd supports (ES256 on P-256, ES384 on P-384, EdDSA on
//! Ed25519, PS256 and RS256 on RSA), private signing keys, public verifying keys, and the
//! [`KeySet`] a verifier looks keys up in.
//!
//! Owns key parsing (PKCS#8 / SPKI PEM, JWK, JWK Set) and serialisation, `kid` derivation
//! (RFC 7638 thumbprints) and raw sign / verify over bytes. It must never read files (callers
//! pass the text), never print private key material (see the manual `Debug` impl), and never pick
//! a key by the token's `alg` alone: [`KeySet::find`] matches `kid` first and then insists the
//! key's own algorithm equals the token's (RFC 8725 §3.1).

use super::{b64url_decode, b64url_encode, KeyError, TokenError};
use p256::pkcs8::der::pem;
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use p256::pkcs8::{
    EncodePrivateKey as _, EncodePublicKey as _, LineEnding, ObjectIdentifier, PrivateKeyInfo,
};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A signature algorithm, in its JOSE and COSE spellings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4, RFC 9053 §2.1).
    Es256,
    /// Ed25519 (RFC 8037, RFC 9053 §2.2).
    EdDsa,
    /// ECDSA on P-384 with SHA-384 (RFC 7518 §3.4, RFC 9053 §2.1).
    Es384,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt (RFC 7518 §3.5, RFC 8230 §2).
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3, RFC 8812 §2), for verifiers that need it.
    Rs256,
}

impl Algorithm {
    /// The JOSE `alg` value: `ES256` or `EdDSA`.
    pub const fn jose_name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es384 => "ES384",
            Algorithm::Ps256 => "PS256",
            Algorithm::Rs256 => "RS256",
        }
    }

    /// The COSE algorithm identifier (header label 1): -7 or -8.
    pub const fn cose_id(self) -> i64 {
        match self {
            Algorithm::Es256 => -7,
            Algorithm::EdDsa => -8,
            Algorithm::Es384 => -35,
            Algorithm::Ps256 => -37,
            Algorithm::Rs256 => -257,
        }
    }

    /// Reads a JOSE `alg`. `none`, every HMAC and every algorithm we do not verify are
    /// [`TokenError::UnsupportedAlgorithm`]; the comparison is exact, as RFC 7515 §4.1.1 says
    /// `alg` values are case-sensitive.
    pub fn from_jose_name(name: &str) -> Result<Self, TokenError> {
        match name {
            "ES256" => Ok(Algorithm::Es256),
            "EdDSA" => Ok(Algorithm::EdDsa),
            "ES384" => Ok(Algorithm::Es384),
            "PS256" => Ok(Algorithm::Ps256),
            "RS256" => Ok(Algorithm::Rs256),
            other => Err(TokenError::UnsupportedAlgorithm(other.to_owned())),
        }
    }

    /// Reads a COSE algorithm identifier.
    pub fn from_cose_id(id: i64) -> Result<Self, TokenError> {
        match id {
            -7 => Ok(Algorithm::Es256),
            -8 => Ok(Algorithm::EdDsa),
            -35 => Ok(Algorithm::Es384),
            -37 => Ok(Algorithm::Ps256),
            -257 => Ok(Algorithm::Rs256),
            4..=7 => Err(TokenError::UnsupportedAlgorithm(format!(
                "COSE algorithm {id} (HMAC)"
            ))),
            other => Err(TokenError::UnsupportedAlgorithm(format!(
                "COSE algorithm {other}"
            ))),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jose_name())
    }
}

#[derive(Clone)]
enum SigningInner {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
    Es384(p384::ecdsa::SigningKey),
    /// An RSA key pair (ring: constant-time, blinded) and the one algorithm it signs with.
    Rsa(std::sync::Arc<RsaPair>, Algorithm),
}

/// An RSA private key: ring's key pair and the PKCS#8 document it was read from (ring cannot
/// serialise a key pair).
struct RsaPair {
    pair: ring::rsa::KeyPair,
    pkcs8: Vec<u8>,
}

impl Drop for RsaPair {
    fn drop(&mut self) {
        // Best effort: the private key's document does not outlive the key.
        self.pkcs8.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.pkcs8);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum VerifyingInner {
    Es256(p256::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
    Es384(p384::ecdsa::VerifyingKey),
    /// An RSA public key and the one algorithm (PS256 or RS256) it verifies.
    Rsa(rsa::RsaPublicKey, Algorithm),
}

/// A private key that signs tokens, with the `kid` it signs under.
#[derive(Clone)]
pub struct SigningKey {
    inner: SigningInner,
    kid: String,
}

impl fmt::Debug for SigningKey {
    // Deliberately omits the secret: keys end up in logs through `{:?}` more often than not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.algorithm().jose_name())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_inner(inner: SigningInner) -> Self {
        let kid = thumbprint(&public_of(&inner));
        SigningKey { inner, kid }
    }

    /// A fresh random key from the operating system's CSPRNG; its `kid` is its thumbprint.
    ///
    /// # Panics
    ///
    /// For PS256 and RS256: RSA keys are generated inside a PKCS#11 token or by the
    /// operator's tools (`openssl genpkey -algorithm RSA`), never here.
    pub fn generate(alg: Algorithm) -> Self {
        let mut rng = rand::rngs::OsRng;
        Self::from_inner(match alg {
            Algorithm::Es256 => SigningInner::Es256(p256::ecdsa::SigningKey::random(&mut rng)),
            Algorithm::EdDsa => SigningInner::EdDsa(ed25519_dalek::SigningKey::generate(&mut rng)),
            Algorithm::Es384 => SigningInner::Es384(p384::ecdsa::SigningKey::random(&mut rng)),
            Algorithm::Ps256 | Algorithm::Rs256 => {
                panic!("RSA keys are generated by a PKCS#11 token or openssl, not here")
            }
        })
    }

    /// Loads an unencrypted PKCS#8 `PRIVATE KEY` PEM, detecting the algorithm from its OID (an
    /// RSA key signs PS256; [`SigningKey::with_rsa_algorithm`] picks RS256). SEC1 (`EC PRIVATE
    /// KEY`), PKCS#1, encrypted PKCS#8, RSA under 2048 bits and other curves get a specific
    /// error.
    /// The `kid` is the key's RFC 7638 thumbprint; override it with [`SigningKey::with_kid`].
    pub fn from_pkcs8_pem(pem_text: &str) -> Result<Self, KeyError> {
        let blocks = pem_blocks(pem_text)?;
        let [(label, der)] = blocks.as_slice() else {
            return Err(KeyError::Pem(format!(
                "expected exactly one PEM block, found {}",
                blocks.len()
            )));
        };
        match label.as_str() {
            "PRIVATE KEY" => signing_from_pkcs8_der(der).map(Self::from_inner),
            other => Err(wrong_private_label(other)),
        }
    }

    /// Loads a private JWK (`EC`/`P-256` or `OKP`/`Ed25519` with `d`). The public members, if
    /// present, must match `d`. The JWK's `kid` is kept; without one the thumbprint is used.
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let parsed = parse_jwk(jwk)?;
        let d_text = parsed
            .private
            .ok_or_else(|| KeyError::Jwk("no private key member \"d\"".into()))?;
        let inner = match parsed.public {
            VerifyingInner::Rsa(..) => {
                return Err(KeyError::UnsupportedKeyType(
                    "RSA private key as a JWK (give an RSA key as a PKCS#8 PEM file)".into(),
                ))
            }
            VerifyingInner::Es256(_) => SigningInner::Es256(
                p256::ecdsa::SigningKey::from_slice(&jwk_bytes32(d_text, "d")?)
                    .map_err(|_| KeyError::Jwk("d is not a valid P-256 scalar".into()))?,
            ),
            VerifyingInner::EdDsa(_) => SigningInner::EdDsa(ed25519_dalek::SigningKey::from_bytes(
                &jwk_bytes32(d_text, "d")?,
            )),
            VerifyingInner::Es384(_) => SigningInner::Es384(
                p384::ecdsa::SigningKey::from_slice(&jwk_bytes48(d_text, "d")?)
                    .map_err(|_| KeyError::Jwk("d is not a valid P-384 scalar".into()))?,
            ),
        };
        if public_of(&inner) != parsed.public {
            return Err(KeyError::Jwk(
                "the public members do not belong to the private key d".into(),
            ));
        }
        let kid = match parsed.kid {
            Some(kid) => kid,
            None => thumbprint(&parsed.public),
        };
        Ok(SigningKey { inner, kid })
    }

    /// The key as an unencrypted PKCS#8 PEM (LF line endings). The returned `String` is not
    /// zeroised on drop; write it out and drop it promptly.
    pub fn to_pkcs8_pem(&self) -> String {
        let pem = match &self.inner {
            SigningInner::Es256(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningInner::EdDsa(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningInner::Es384(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningInner::Rsa(k, _) => {
                return pem::encode_string("PRIVATE KEY", LineEnding::LF, &k.pkcs8)
                    .expect("PEM encoding of a key's document cannot fail")
            }
        };
        pem.expect("PKCS#8 encoding of a valid in-memory key cannot fail")
            .to_string()
    }

    /// An RSA key signing with `alg` (PS256 or RS256) instead; any other key, or any other
    /// `alg`, is returned unchanged.
    pub fn with_rsa_algorithm(mut self, alg: Algorithm) -> Self {
        if let (SigningInner::Rsa(_, current), Algorithm::Ps256 | Algorithm::Rs256) =
            (&mut self.inner, alg)
        {
            *current = alg;
        }
        self
    }

    /// Replaces the `kid` (e.g. with the spec's example kid `"12"`).
    pub fn with_kid(mut self, kid: String) -> Self {
        self.kid = kid;
        self
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            SigningInner::Es256(_) => Algorithm::Es256,
            SigningInner::EdDsa(_) => Algorithm::EdDsa,
            SigningInner::Es384(_) => Algorithm::Es384,
            SigningInner::Rsa(_, alg) => alg,
        }
    }

    /// The key id placed in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `msg`. ES256 yields the 64-byte fixed-size `R‖S` that JWS (RFC 7518 §3.4) and COSE
    /// (RFC 9053 §2.1) both require, with a deterministic nonce (RFC 6979); EdDSA yields the
    /// 64-byte Ed25519 signature; PS256 and RS256 yield the modulus-sized RSA signature.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match &self.inner {
            SigningInner::Es256(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k, msg);
                sig.to_bytes().to_vec()
            }
            SigningInner::EdDsa(k) => k.sign(msg).to_bytes().to_vec(),
            SigningInner::Es384(k) => {
                let sig: p384::ecdsa::Signature = p384::ecdsa::signature::Signer::sign(k, msg);
                sig.to_bytes().to_vec()
            }
            SigningInner::Rsa(k, alg) => {
                // PSS with a salt as long as the digest (32 bytes), as RFC 7518 §3.5 requires.
                let padding: &'static dyn ring::signature::RsaEncoding = match alg {
                    Algorithm::Rs256 => &ring::signature::RSA_PKCS1_SHA256,
                    _ => &ring::signature::RSA_PSS_SHA256,
                };
                let mut sig = vec![0; k.pair.public().modulus_len()];
                k.pair
                    .sign(padding, &ring::rand::SystemRandom::new(), msg, &mut sig)
                    .expect("the buffer has the modulus' length and the system RNG works");
                sig
            }
        }
    }

    /// The public half, with the same `kid`.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            x5c: None,
            inner: public_of(&self.inner),
            kid: self.kid.clone(),
        }
    }
}

/// A public key that verifies tokens, with its `kid`.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    inner: VerifyingInner,
    kid: String,
    /// The certificate chain (DER, leaf first) published with the key as the JWK's `x5c`; never
    /// read from a JWK (a key does not vouch for itself), and not part of the key's identity.
    x5c: Option<std::sync::Arc<[Vec<u8>]>>,
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && self.kid == other.kid
    }
}

impl Eq for VerifyingKey {}

impl VerifyingKey {
    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            VerifyingInner::Es256(_) => Algorithm::Es256,
            VerifyingInner::EdDsa(_) => Algorithm::EdDsa,
            VerifyingInner::Es384(_) => Algorithm::Es384,
            VerifyingInner::Rsa(_, alg) => alg,
        }
    }

    /// The key id tokens name it by.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Replaces the `kid`.
    pub fn with_kid(mut self, kid: String) -> Self {
        self.kid = kid;
        self
    }

    /// The RFC 7638 JWK SHA-256 thumbprint (base64url), whatever the `kid` is.
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.inner)
    }

    /// Verifies `sig` over `msg`. ES256 expects the 64-byte `R‖S` form (a DER signature is
    /// rejected, as RFC 7518 §3.4 requires); EdDSA uses RFC 8032 strict verification, which also
    /// rejects non-canonical signatures and small-order keys.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), TokenError> {
        match &self.inner {
            VerifyingInner::Es256(k) => {
                let sig = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| TokenError::BadSignature)?;
                p256::ecdsa::signature::Verifier::verify(k, msg, &sig)
                    .map_err(|_| TokenError::BadSignature)
            }
            VerifyingInner::EdDsa(k) => {
                let bytes: [u8; 64] = sig.try_into().map_err(|_| TokenError::BadSignature)?;
                k.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&bytes))
                    .map_err(|_| TokenError::BadSignature)
            }
            VerifyingInner::Es384(k) => {
                let sig = p384::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| TokenError::BadSignature)?;
                p384::ecdsa::signature::Verifier::verify(k, msg, &sig)
                    .map_err(|_| TokenError::BadSignature)
            }
            VerifyingInner::Rsa(k, alg) => rsa_verify(k, *alg, msg, sig),
        }
    }

    /// The same key published with a certificate chain (DER, leaf first) as its JWK's `x5c`.
    pub fn with_x5c(mut self, chain: Vec<Vec<u8>>) -> Self {
        self.x5c = (!chain.is_empty()).then(|| chain.into());
        self
    }

    /// The public JWK: `{kty, crv, x[, y], kid, alg, use: "sig"[, x5c]}`.
    pub fn to_jwk(&self) -> Value {
        let mut m = public_jwk_members(&self.inner);
        if let Some(chain) = &self.x5c {
            m.insert("x5c".into(), super::jws::x5c_json(chain));
        }
        m.insert("kid".into(), Value::from(self.kid.as_str()));
        m.insert("alg".into(), Value::from(self.algorithm().jose_name()));
        m.insert("use".into(), Value::from("sig"));
        Value::Object(m)
    }

    /// Reads a public JWK (`EC`/`P-256` or `OKP`/`Ed25519`). A private JWK is accepted and only
    /// its public members are used. `use`, if present, must be `sig`; `alg`, if present, must be
    /// the key's algorithm. Without a `kid` the thumbprint is used.
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let parsed = parse_jwk(jwk)?;
        let kid = match parsed.kid {
            Some(kid) => kid,
            None => thumbprint(&parsed.public),
        };
        Ok(VerifyingKey {
            x5c: None,
            inner: parsed.public,
            kid,
        })
    }

    /// An RSA public key from its modulus and public exponent (big-endian), verifying `alg`
    /// (PS256 or RS256); at least 2048 bits. The `kid` is the thumbprint.
    pub fn from_rsa_components(n: &[u8], e: &[u8], alg: Algorithm) -> Result<Self, KeyError> {
        rsa_public(n, e, alg).map(Self::from_verifying_inner)
    }

    /// The same RSA key verifying another RSA algorithm (PS256 ↔ RS256); other keys unchanged.
    pub fn with_rsa_algorithm(mut self, alg: Algorithm) -> Self {
        if let (VerifyingInner::Rsa(_, a), Algorithm::Ps256 | Algorithm::Rs256) =
            (&mut self.inner, alg)
        {
            *a = alg;
        }
        self
    }

    /// A P-384 public key from its SEC1 encoding (uncompressed or compressed point), as an HSM
    /// gives it; the `kid` is the thumbprint.
    pub fn from_p384_sec1(point: &[u8]) -> Result<Self, KeyError> {
        let k = p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| KeyError::Pem("not a point on P-384".into()))?;
        Ok(Self::from_verifying_inner(VerifyingInner::Es384(k)))
    }

    /// A P-256 public key from its SEC1 encoding; the `kid` is the thumbprint.
    pub fn from_p256_sec1(point: &[u8]) -> Result<Self, KeyError> {
        let k = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| KeyError::Pem("not a point on P-256".into()))?;
        Ok(Self::from_verifying_inner(VerifyingInner::Es256(k)))
    }

    /// An Ed25519 public key from its 32 bytes; the `kid` is the thumbprint.
    pub fn from_ed25519_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Pem("an Ed25519 public key is 32 bytes".into()))?;
        let k = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::Pem("not an Ed25519 point".into()))?;
        Ok(Self::from_verifying_inner(VerifyingInner::EdDsa(k)))
    }

    /// A public key from an SPKI DER (e.g. a certificate's `subjectPublicKeyInfo`); the `kid`
    /// is the thumbprint.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        verifying_from_spki_der(der).map(Self::from_verifying_inner)
    }

    /// The key as an SPKI DER.
    pub fn to_spki_der(&self) -> Vec<u8> {
        match &self.inner {
            VerifyingInner::Es256(k) => k.to_public_key_der(),
            VerifyingInner::EdDsa(k) => k.to_public_key_der(),
            VerifyingInner::Es384(k) => k.to_public_key_der(),
            VerifyingInner::Rsa(k, _) => k.to_public_key_der(),
        }
        .expect("SPKI encoding of a valid in-memory key cannot fail")
        .into_vec()
    }

    fn from_verifying_inner(inner: VerifyingInner) -> Self {
        VerifyingKey {
            x5c: None,
            kid: thumbprint(&inner),
            inner,
        }
    }

    /// Reads an SPKI `PUBLIC KEY` PEM; the `kid` is the thumbprint.
    pub fn from_public_pem(pem_text: &str) -> Result<Self, KeyError> {
        let blocks = pem_blocks(pem_text)?;
        let [(label, der)] = blocks.as_slice() else {
            return Err(KeyError::Pem(format!(
                "expected exactly one PEM block, found {}",
                blocks.len()
            )));
        };
        if label != "PUBLIC KEY" {
            return Err(KeyError::Pem(format!(
                "expected a PUBLIC KEY block, found {label}"
            )));
        }
        let inner = verifying_from_spki_der(der)?;
        Ok(VerifyingKey {
            x5c: None,
            kid: thumbprint(&inner),
            inner,
        })
    }

    /// The key as an SPKI `PUBLIC KEY` PEM (LF line endings).
    pub fn to_public_pem(&self) -> String {
        match &self.inner {
            VerifyingInner::Es256(k) => k.to_public_key_pem(LineEnding::LF),
            VerifyingInner::EdDsa(k) => k.to_public_key_pem(LineEnding::LF),
            VerifyingInner::Es384(k) => k.to_public_key_pem(LineEnding::LF),
            VerifyingInner::Rsa(k, _) => k.to_public_key_pem(LineEnding::LF),
        }
        .expect("SPKI encoding of a valid in-memory key cannot fail")
    }
}

/// The keys a verifier trusts. Lookup is by `kid`, then by algorithm; see [`KeySet::find`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<VerifyingKey>,
}

impl From<VerifyingKey> for KeySet {
    fn from(key: VerifyingKey) -> Self {
        KeySet { keys: vec![key] }
    }
}

impl FromIterator<VerifyingKey> for KeySet {
    fn from_iter<I: IntoIterator<Item = VerifyingKey>>(iter: I) -> Self {
        KeySet {
            keys: iter.into_iter().collect(),
        }
    }
}

impl KeySet {
    /// A set of the given keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        KeySet { keys }
    }

    /// Reads a JWK Set (`{"keys":[…]}`) or, for convenience, a single JWK object. Inside a set,
    /// keys of a type statusd does not support (RSA, `oct`, other curves) are skipped, as
    /// RFC 7517 §5 says to; a malformed supported key is an error. A set with no usable key is
    /// [`KeyError::NoUsableKeys`].
    pub fn from_jwks_json(json: &str) -> Result<Self, KeyError> {
        let v: Value =
            serde_json::from_str(json).map_err(|e| KeyError::Jwk(format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| KeyError::Jwk("a JWK Set must be a JSON object".into()))?;
        let keys = match obj.get("keys") {
            Some(Value::Array(items)) => {
                let mut keys = Vec::with_capacity(items.len());
                for item in items {
                    match VerifyingKey::from_jwk(item) {
                        Ok(k) => keys.push(k),
                        Err(KeyError::UnsupportedKeyType(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                keys
            }
            Some(_) => return Err(KeyError::Jwk("\"keys\" must be an array".into())),
            None if obj.contains_key("kty") => vec![VerifyingKey::from_jwk(&v)?],
            None => {
                return Err(KeyError::Jwk(
                    "expected a JWK Set with a \"keys\" array, or a single JWK".into(),
                ))
            }
        };
        if keys.is_empty() {
            return Err(KeyError::NoUsableKeys);
        }
        Ok(KeySet { keys })
    }

    /// The public JWK Set `{"keys":[…]}`, as served at a `jwks_uri`.
    pub fn to_jwks(&self) -> Value {
        serde_json::json!({ "keys": self.keys.iter().map(VerifyingKey::to_jwk).collect::<Vec<_>>() })
    }

    /// Reads one or more concatenated PEM blocks, each an unencrypted PKCS#8 `PRIVATE KEY` (its
    /// public half is kept) or an SPKI `PUBLIC KEY`. Every key gets its thumbprint as `kid`.
    /// Unlike a JWK Set, an unsupported key here is an error: the operator named this file.
    pub fn from_pem(pem_text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (label, der) in pem_blocks(pem_text)? {
            let inner = match label.as_str() {
                "PRIVATE KEY" => public_of(&signing_from_pkcs8_der(&der)?),
                "PUBLIC KEY" => verifying_from_spki_der(&der)?,
                other => return Err(wrong_private_label(other)),
            };
            keys.push(VerifyingKey {
                x5c: None,
                kid: thumbprint(&inner),
                inner,
            });
        }
        Ok(KeySet { keys })
    }

    /// Selects the key for a token whose header says `kid` and `alg`.
    ///
    /// With a `kid`, a key with that `kid` and algorithm is returned; a key with that `kid` but
    /// another algorithm is [`TokenError::AlgorithmMismatch`] (the header's `alg` never chooses
    /// how a key is used). Without a `kid`, the single key of that algorithm is used; none is
    /// [`TokenError::UnknownKey`] (or `AlgorithmMismatch` if the set holds exactly one key, of
    /// another algorithm) and several are [`TokenError::AmbiguousKey`].
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyingKey, TokenError> {
        let mismatch = |key: &VerifyingKey| TokenError::AlgorithmMismatch {
            token: alg.jose_name(),
            key: key.algorithm().jose_name(),
        };
        match kid {
            Some(kid) => {
                let mut same_kid = self.keys.iter().filter(|k| k.kid == kid).peekable();
                let first = same_kid.peek().copied();
                match same_kid.find(|k| k.algorithm() == alg) {
                    Some(key) => Ok(key),
                    None => Err(first
                        .map_or_else(|| TokenError::UnknownKey(Some(kid.to_owned())), mismatch)),
                }
            }
            None => {
                let candidates: Vec<&VerifyingKey> =
                    self.keys.iter().filter(|k| k.algorithm() == alg).collect();
                match candidates.as_slice() {
                    [key] => Ok(key),
                    [] => match self.keys.as_slice() {
                        [only] => Err(mismatch(only)),
                        _ => Err(TokenError::UnknownKey(None)),
                    },
                    many => Err(TokenError::AmbiguousKey {
                        alg: alg.jose_name(),
                        count: many.len(),
                    }),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn public_of(inner: &SigningInner) -> VerifyingInner {
    match inner {
        SigningInner::Es256(k) => VerifyingInner::Es256(*k.verifying_key()),
        SigningInner::EdDsa(k) => VerifyingInner::EdDsa(k.verifying_key()),
        SigningInner::Es384(k) => VerifyingInner::Es384(*k.verifying_key()),
        SigningInner::Rsa(k, alg) => {
            use rsa::pkcs1::DecodeRsaPublicKey as _;
            let public = rsa::RsaPublicKey::from_pkcs1_der(k.pair.public().as_ref())
                .expect("ring serialises a valid RSAPublicKey");
            VerifyingInner::Rsa(public, *alg)
        }
    }
}

/// The required public members of a key, which are also exactly the RFC 7638 thumbprint input.
fn public_jwk_members(inner: &VerifyingInner) -> Map<String, Value> {
    let mut m = Map::new();
    match inner {
        VerifyingInner::Es256(k) => {
            let point = k.to_encoded_point(false);
            let (x, y) = match (point.x(), point.y()) {
                (Some(x), Some(y)) => (x, y),
                _ => unreachable!("an uncompressed point of a verifying key has both coordinates"),
            };
            m.insert("crv".into(), Value::from("P-256"));
            m.insert("kty".into(), Value::from("EC"));
            m.insert("x".into(), Value::from(b64url_encode(x)));
            m.insert("y".into(), Value::from(b64url_encode(y)));
        }
        VerifyingInner::EdDsa(k) => {
            m.insert("crv".into(), Value::from("Ed25519"));
            m.insert("kty".into(), Value::from("OKP"));
            m.insert("x".into(), Value::from(b64url_encode(k.as_bytes())));
        }
        VerifyingInner::Rsa(k, _) => {
            use rsa::traits::PublicKeyParts as _;
            m.insert("e".into(), Value::from(b64url_encode(&k.e().to_bytes_be())));
            m.insert("kty".into(), Value::from("RSA"));
            m.insert("n".into(), Value::from(b64url_encode(&k.n().to_bytes_be())));
        }
        VerifyingInner::Es384(k) => {
            let point = k.to_encoded_point(false);
            let (x, y) = match (point.x(), point.y()) {
                (Some(x), Some(y)) => (x, y),
                _ => unreachable!("an uncompressed point of a verifying key has both coordinates"),
            };
            m.insert("crv".into(), Value::from("P-384"));
            m.insert("kty".into(), Value::from("EC"));
            m.insert("x".into(), Value::from(b64url_encode(x)));
            m.insert("y".into(), Value::from(b64url_encode(y)));
        }
    }
    m
}

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order with no whitespace,
/// base64url-encoded. `serde_json::Map` is a `BTreeMap` (no `preserve_order` feature), so its
/// compact serialisation is exactly that canonical form; the test suite checks it against a
/// hand-written literal.
fn thumbprint(inner: &VerifyingInner) -> String {
    let canonical = serde_json::to_string(&Value::Object(public_jwk_members(inner)))
        .expect("serialising a map of strings cannot fail");
    b64url_encode(&Sha256::digest(canonical.as_bytes()))
}

struct ParsedJwk<'a> {
    public: VerifyingInner,
    private: Option<&'a str>,
    kid: Option<String>,
}

fn jwk_str<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, KeyError> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(KeyError::Jwk(format!(
            "member {name:?} must be a string, got {other}"
        ))),
    }
}

fn jwk_required<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a str, KeyError> {
    jwk_str(m, name)?.ok_or_else(|| KeyError::Jwk(format!("missing member {name:?}")))
}

/// A base64url coordinate or scalar that must be exactly 32 bytes (RFC 7518 §6.2.1.2 requires
/// the full field length; RFC 8037 §2 fixes Ed25519 keys at 32 bytes).
fn jwk_bytes32(s: &str, name: &str) -> Result<[u8; 32], KeyError> {
    let bytes = b64url_decode(s, name).map_err(KeyError::Jwk)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| KeyError::Jwk(format!("{name} must be 32 bytes, got {len}")))
}

/// A base64url P-384 coordinate or scalar: exactly 48 bytes (RFC 7518 §6.2.1.2).
fn jwk_bytes48(s: &str, name: &str) -> Result<[u8; 48], KeyError> {
    let bytes = b64url_decode(s, name).map_err(KeyError::Jwk)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| KeyError::Jwk(format!("{name} must be 48 bytes, got {len}")))
}

fn parse_jwk(jwk: &Value) -> Result<ParsedJwk<'_>, KeyError> {
    let m = jwk
        .as_object()
        .ok_or_else(|| KeyError::Jwk("a JWK must be a JSON object".into()))?;
    let kty = jwk_required(m, "kty")?;
    let public = match kty {
        "EC" => match jwk_required(m, "crv")? {
            "P-256" => {
                let x = jwk_bytes32(jwk_required(m, "x")?, "x")?;
                let y = jwk_bytes32(jwk_required(m, "y")?, "y")?;
                let point =
                    p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                VerifyingInner::Es256(
                    p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                        .map_err(|_| KeyError::Jwk("x and y are not a point on P-256".into()))?,
                )
            }
            "P-384" => {
                let x = jwk_bytes48(jwk_required(m, "x")?, "x")?;
                let y = jwk_bytes48(jwk_required(m, "y")?, "y")?;
                let point =
                    p384::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                VerifyingInner::Es384(
                    p384::ecdsa::VerifyingKey::from_encoded_point(&point)
                        .map_err(|_| KeyError::Jwk("x and y are not a point on P-384".into()))?,
                )
            }
            crv => {
                return Err(KeyError::UnsupportedKeyType(format!(
                    "EC key on curve {crv} (only P-256 and P-384 are supported)"
                )))
            }
        },
        "OKP" => match jwk_required(m, "crv")? {
            "Ed25519" => {
                let x = jwk_bytes32(jwk_required(m, "x")?, "x")?;
                VerifyingInner::EdDsa(
                    ed25519_dalek::VerifyingKey::from_bytes(&x)
                        .map_err(|_| KeyError::Jwk("x is not an Ed25519 point".into()))?,
                )
            }
            crv => {
                return Err(KeyError::UnsupportedKeyType(format!(
                    "OKP key on curve {crv} (only Ed25519 is supported)"
                )))
            }
        },
        "RSA" => {
            // The JWK's alg chooses between the two RSA algorithms; PS256 without one.
            let alg = match jwk_str(m, "alg")? {
                Some("RS256") => Algorithm::Rs256,
                _ => Algorithm::Ps256,
            };
            let n = b64url_decode(jwk_required(m, "n")?, "n").map_err(KeyError::Jwk)?;
            let e = b64url_decode(jwk_required(m, "e")?, "e").map_err(KeyError::Jwk)?;
            rsa_public(&n, &e, alg)?
        }
        "oct" => {
            return Err(KeyError::UnsupportedKeyType(
                "oct (symmetric keys are not supported)".into(),
            ))
        }
        other => return Err(KeyError::UnsupportedKeyType(format!("kty {other}"))),
    };
    let alg = match &public {
        VerifyingInner::Es256(_) => Algorithm::Es256,
        VerifyingInner::EdDsa(_) => Algorithm::EdDsa,
        VerifyingInner::Es384(_) => Algorithm::Es384,
        VerifyingInner::Rsa(_, alg) => *alg,
    };
    if let Some(declared) = jwk_str(m, "alg")? {
        if declared != alg.jose_name() {
            return Err(KeyError::Jwk(format!(
                "alg {declared:?} does not fit this key (expected {:?})",
                alg.jose_name()
            )));
        }
    }
    if let Some(usage) = jwk_str(m, "use")? {
        if usage != "sig" {
            return Err(KeyError::Jwk(format!(
                "use {usage:?}: only signature keys (\"sig\") can verify tokens"
            )));
        }
    }
    Ok(ParsedJwk {
        public,
        private: jwk_str(m, "d")?,
        kid: jwk_str(m, "kid")?.map(str::to_owned),
    })
}

/// Splits text into its PEM blocks (label, DER), tolerating explanatory text between them.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = &rest[start..];
        let end_marker = after_begin
            .find(END)
            .ok_or_else(|| KeyError::Pem("unterminated PEM block (no -----END line)".into()))?;
        let tail = &after_begin[end_marker + END.len()..];
        let close = tail
            .find("-----")
            .ok_or_else(|| KeyError::Pem("malformed -----END line".into()))?;
        let block_len = end_marker + END.len() + close + "-----".len();
        let block = &after_begin[..block_len];
        let (label, der) = pem::decode_vec(block.as_bytes())
            .map_err(|e| KeyError::Pem(format!("invalid PEM: {e}")))?;
        blocks.push((label.to_owned(), der));
        rest = &after_begin[block_len..];
    }
    if blocks.is_empty() {
        return Err(KeyError::Pem("no PEM block found".into()));
    }
    Ok(blocks)
}

fn wrong_private_label(label: &str) -> KeyError {
    match label {
        "EC PRIVATE KEY" => KeyError::Pem(
            "SEC1 \"EC PRIVATE KEY\" is not supported; convert it with \
             `openssl pkcs8 -topk8 -nocrypt`"
                .into(),
        ),
        "ENCRYPTED PRIVATE KEY" => KeyError::Pem(
            "encrypted PKCS#8 is not supported; decrypt it with `openssl pkcs8 -nocrypt`".into(),
        ),
        "RSA PRIVATE KEY" => KeyError::Pem(
            "PKCS#1 \"RSA PRIVATE KEY\" is not supported; convert it with \
             `openssl pkcs8 -topk8 -nocrypt`"
                .into(),
        ),
        "RSA PUBLIC KEY" => KeyError::Pem(
            "PKCS#1 \"RSA PUBLIC KEY\" where a private key was expected (a public key is \
             read as an SPKI PUBLIC KEY)"
                .into(),
        ),
        other => KeyError::Pem(format!("expected a PRIVATE KEY block, found {other}")),
    }
}

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Smallest RSA modulus accepted (RFC 7518 §3.3 and §3.5 require 2048 bits).
const RSA_MIN_BITS: usize = 2048;

/// An RSA public key of at least [`RSA_MIN_BITS`]. A smaller or malformed one is reported as
/// unsupported, so a JWK Set skips it as it skips other key types it cannot use.
fn rsa_public(n: &[u8], e: &[u8], alg: Algorithm) -> Result<VerifyingInner, KeyError> {
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(n),
        rsa::BigUint::from_bytes_be(e),
    )
    .map_err(|e| KeyError::UnsupportedKeyType(format!("RSA key: {e}")))?;
    if key.size() * 8 < RSA_MIN_BITS {
        return Err(KeyError::UnsupportedKeyType(format!(
            "RSA key of {} bits (at least {RSA_MIN_BITS} are required)",
            key.size() * 8
        )));
    }
    Ok(VerifyingInner::Rsa(key, alg))
}

/// Verifies an RSA signature: PSS (SHA-256, MGF1-SHA-256, 32-byte salt) or PKCS#1 v1.5.
fn rsa_verify(
    key: &rsa::RsaPublicKey,
    alg: Algorithm,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), TokenError> {
    use rsa::signature::Verifier as _;
    match alg {
        Algorithm::Rs256 => {
            let sig =
                rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| TokenError::BadSignature)?;
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone())
                .verify(msg, &sig)
                .map_err(|_| TokenError::BadSignature)
        }
        _ => {
            let sig = rsa::pss::Signature::try_from(sig).map_err(|_| TokenError::BadSignature)?;
            rsa::pss::VerifyingKey::<sha2::Sha256>::new_with_salt_len(key.clone(), 32)
                .verify(msg, &sig)
                .map_err(|_| TokenError::BadSignature)
        }
    }
}

/// Maps a key's AlgorithmIdentifier to the algorithm we use it for, naming whatever else it is.
fn classify(
    oid: ObjectIdentifier,
    params: Option<ObjectIdentifier>,
) -> Result<Algorithm, KeyError> {
    if oid == OID_ED25519 {
        return Ok(Algorithm::EdDsa);
    }
    if oid == OID_EC_PUBLIC_KEY {
        return match params {
            Some(curve) if curve == OID_P256 => Ok(Algorithm::Es256),
            Some(curve) if curve == OID_P384 => Ok(Algorithm::Es384),
            Some(curve) => Err(KeyError::UnsupportedKeyType(format!(
                "EC key on curve {} (only P-256 and P-384 are supported)",
                curve_name(&curve.to_string())
            ))),
            None => Err(KeyError::Pem(
                "EC key without a named-curve parameter".into(),
            )),
        };
    }
    if oid == OID_RSA_ENCRYPTION {
        return Ok(Algorithm::Ps256);
    }
    let name = match oid.to_string().as_str() {
        "1.2.840.113549.1.1.10" => "RSASSA-PSS".to_owned(),
        "1.2.840.10040.4.1" => "DSA".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        "1.3.101.110" => "X25519".to_owned(),
        "1.3.101.111" => "X448".to_owned(),
        other => format!("algorithm OID {other}"),
    };
    Err(KeyError::UnsupportedKeyType(format!(
        "{name} (only P-256, P-384, Ed25519 and RSA keys are supported)"
    )))
}

fn curve_name(oid: &str) -> String {
    match oid {
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1".into(),
        other => format!("OID {other}"),
    }
}

fn signing_from_pkcs8_der(der: &[u8]) -> Result<SigningInner, KeyError> {
    let info = PrivateKeyInfo::try_from(der)
        .map_err(|e| KeyError::Pem(format!("not a PKCS#8 private key: {e}")))?;
    let bad = |e: p256::pkcs8::Error| KeyError::Pem(format!("invalid private key: {e}"));
    match classify(info.algorithm.oid, info.algorithm.parameters_oid().ok())? {
        Algorithm::Es256 => Ok(SigningInner::Es256(
            p256::ecdsa::SigningKey::try_from(info).map_err(bad)?,
        )),
        Algorithm::EdDsa => Ok(SigningInner::EdDsa(
            ed25519_dalek::SigningKey::try_from(info).map_err(bad)?,
        )),
        Algorithm::Es384 => Ok(SigningInner::Es384(
            p384::ecdsa::SigningKey::try_from(info).map_err(bad)?,
        )),
        Algorithm::Ps256 | Algorithm::Rs256 => {
            let pair = ring::rsa::KeyPair::from_pkcs8(der).map_err(|e| {
                KeyError::UnsupportedKeyType(format!(
                    "RSA private key: {e} (2048 to 4096 bits, a valid CRT key)"
                ))
            })?;
            let pair = RsaPair {
                pair,
                pkcs8: der.to_vec(),
            };
            Ok(SigningInner::Rsa(
                std::sync::Arc::new(pair),
                Algorithm::Ps256,
            ))
        }
    }
}

fn verifying_from_spki_der(der: &[u8]) -> Result<VerifyingInner, KeyError> {
    let info = SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|e| KeyError::Pem(format!("not an SPKI public key: {e}")))?;
    let bad = |e: p256::pkcs8::spki::Error| KeyError::Pem(format!("invalid public key: {e}"));
    if info.algorithm.oid == OID_RSA_ENCRYPTION {
        use rsa::pkcs8::DecodePublicKey as _;
        use rsa::traits::PublicKeyParts as _;
        let key = rsa::RsaPublicKey::from_public_key_der(der)
            .map_err(|e| KeyError::Pem(format!("invalid RSA public key: {e}")))?;
        return rsa_public(
            &key.n().to_bytes_be(),
            &key.e().to_bytes_be(),
            Algorithm::Ps256,
        );
    }
    match classify(info.algorithm.oid, info.algorithm.parameters_oid().ok())? {
        Algorithm::Es256 => Ok(VerifyingInner::Es256(
            p256::ecdsa::VerifyingKey::try_from(info).map_err(bad)?,
        )),
        Algorithm::EdDsa => Ok(VerifyingInner::EdDsa(
            ed25519_dalek::VerifyingKey::try_from(info).map_err(bad)?,
        )),
        Algorithm::Es384 => Ok(VerifyingInner::Es384(
            p384::ecdsa::VerifyingKey::try_from(info).map_err(bad)?,
        )),
        Algorithm::Ps256 | Algorithm::Rs256 => unreachable!("classify never names RSA"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_vectors::*;
    use super::*;
    use serde_json::json;

    fn spec_public() -> VerifyingKey {
        VerifyingKey::from_jwk(&serde_json::from_str(SPEC_PUBLIC_JWK).unwrap()).unwrap()
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::Es256.jose_name(), "ES256");
        assert_eq!(Algorithm::EdDsa.jose_name(), "EdDSA");
        assert_eq!(Algorithm::Es256.cose_id(), -7);
        assert_eq!(Algorithm::EdDsa.cose_id(), -8);
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Es384] {
            assert_eq!(Algorithm::from_jose_name(alg.jose_name()), Ok(alg));
            assert_eq!(Algorithm::from_cose_id(alg.cose_id()), Ok(alg));
        }
        assert_eq!(
            Algorithm::from_jose_name("none"),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
        assert!(matches!(
            Algorithm::from_cose_id(5),
            Err(TokenError::UnsupportedAlgorithm(m)) if m.contains("HMAC")
        ));
    }

    #[test]
    fn spec_jwk_loads_with_its_kid() {
        let key = spec_public();
        assert_eq!(key.algorithm(), Algorithm::Es256);
        assert_eq!(key.kid(), "12");
        // The private JWK is accepted as a public key too; only x and y are used.
        let private: Value = serde_json::from_str(SPEC_PRIVATE_JWK).unwrap();
        assert_eq!(VerifyingKey::from_jwk(&private).unwrap(), key);
        assert_eq!(spec_signing_key().verifying_key(), key);
    }

    #[test]
    fn jwk_round_trip_and_members() {
        let key = spec_public();
        let jwk = key.to_jwk();
        assert_eq!(
            jwk,
            json!({
                "kty": "EC", "crv": "P-256",
                "x": "I3HWm_0Ds1dPMI-IWmf4mBmH-YaeAVbPVu7vB27CxXo",
                "y": "6N_d5Elj9bs1htgV3okJKIdbHEpkgTmAluYKJemzn1M",
                "kid": "12", "alg": "ES256", "use": "sig"
            })
        );
        assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap(), key);

        let ed = SigningKey::generate(Algorithm::EdDsa).verifying_key();
        let jwk = ed.to_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], ed.kid());
        assert!(jwk.get("y").is_none() && jwk.get("d").is_none());
        assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap(), ed);
    }

    #[test]
    fn thumbprint_is_rfc7638() {
        // The canonical input written out by hand: required members only, sorted, no spaces.
        let canonical = r#"{"crv":"P-256","kty":"EC","x":"I3HWm_0Ds1dPMI-IWmf4mBmH-YaeAVbPVu7vB27CxXo","y":"6N_d5Elj9bs1htgV3okJKIdbHEpkgTmAluYKJemzn1M"}"#;
        let expected = b64url_encode(&Sha256::digest(canonical.as_bytes()));
        assert_eq!(spec_public().thumbprint(), expected);
        assert_eq!(expected.len(), 43);
        // Without a kid in the JWK, the thumbprint becomes the kid.
        let mut jwk: Value = serde_json::from_str(SPEC_PUBLIC_JWK).unwrap();
        jwk.as_object_mut().unwrap().remove("kid");
        assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap().kid(), expected);
        // A PEM-loaded key gets the same kid.
        let pem = spec_public().to_public_pem();
        assert_eq!(VerifyingKey::from_public_pem(&pem).unwrap().kid(), expected);
        assert_eq!(
            SigningKey::from_pkcs8_pem(&spec_signing_key().to_pkcs8_pem())
                .unwrap()
                .kid(),
            expected
        );
    }

    #[test]
    fn ed25519_thumbprint_is_rfc8037() {
        // RFC 8037 Appendix A.3: the thumbprint of the A.2 public key.
        let jwk =
            json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let key = VerifyingKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        // And A.4's signature over "Example of Ed25519 signing" verifies (strictly).
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = b64url_decode(
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
            "sig",
        )
        .unwrap();
        key.verify(input.as_bytes(), &sig).unwrap();
        assert_eq!(key.verify(b"other", &sig), Err(TokenError::BadSignature));
        // RFC 8037 A.1's private key signs deterministically to the same signature.
        let private = json!({"kty":"OKP","crv":"Ed25519",
            "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
            "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let signer = SigningKey::from_jwk(&private).unwrap();
        assert_eq!(signer.sign(input.as_bytes()), sig);
    }

    #[test]
    fn sign_and_verify_both_algorithms() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Es384] {
            let key = SigningKey::generate(alg);
            assert_eq!(key.algorithm(), alg);
            let sig = key.sign(b"msg");
            assert_eq!(sig.len(), if alg == Algorithm::Es384 { 96 } else { 64 });
            let public = key.verifying_key();
            assert_eq!(public.kid(), key.kid());
            public.verify(b"msg", &sig).unwrap();
            assert_eq!(public.verify(b"msh", &sig), Err(TokenError::BadSignature));
            assert_eq!(
                public.verify(b"msg", &sig[..63]),
                Err(TokenError::BadSignature)
            );
            assert_eq!(
                public.verify(b"msg", &[0; 64]),
                Err(TokenError::BadSignature)
            );
            let other = SigningKey::generate(alg).verifying_key();
            assert_eq!(other.verify(b"msg", &sig), Err(TokenError::BadSignature));
        }
        // ES256 signing is deterministic (RFC 6979).
        let key = spec_signing_key();
        assert_eq!(key.sign(b"x"), key.sign(b"x"));
    }

    #[test]
    fn pkcs8_pem_round_trip() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Es384] {
            let key = SigningKey::generate(alg);
            let pem = key.to_pkcs8_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
            let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.kid(), key.kid());
            assert_eq!(back.verifying_key(), key.verifying_key());
            // The reloaded key signs what the original's public key accepts.
            key.verifying_key().verify(b"m", &back.sign(b"m")).unwrap();
            // CRLF line endings and surrounding text are tolerated.
            let crlf = format!("Bag Attributes\r\n{}", pem.replace('\n', "\r\n"));
            assert_eq!(
                SigningKey::from_pkcs8_pem(&crlf).unwrap().verifying_key(),
                key.verifying_key()
            );

            let public_pem = key.verifying_key().to_public_pem();
            assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
            let public = VerifyingKey::from_public_pem(&public_pem).unwrap();
            assert_eq!(public, key.verifying_key());
        }
    }

    #[test]
    fn debug_does_not_leak_the_private_key() {
        let key = spec_signing_key();
        let debug = format!("{key:?}");
        assert!(
            debug.contains("ES256") && debug.contains("\"12\""),
            "{debug}"
        );
        // The scalar d = xzUEdsyL... starts with byte 0xc7 = 199.
        assert!(!debug.contains("199") && !debug.contains("xzUE"), "{debug}");
    }

    /// openssl signs, as a token would; the same key read from its PKCS#8 file signs too (ring),
    /// byte for byte like openssl for the deterministic RS256.
    #[test]
    fn rsa_signatures_verify_as_ps256_or_rs256() {
        use std::process::Command;
        let dir = std::env::temp_dir().join(format!(
            "statusd-rsa-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "k.pem",
        ]);
        openssl(&["pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem"]);
        std::fs::write(dir.join("msg"), b"statusd").unwrap();
        openssl(&[
            "dgst",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-sign",
            "k.pem",
            "-out",
            "pss.sig",
            "msg",
        ]);
        openssl(&[
            "dgst", "-sha256", "-sign", "k.pem", "-out", "v15.sig", "msg",
        ]);
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let ps =
            VerifyingKey::from_public_pem(&String::from_utf8(read("pub.pem")).unwrap()).unwrap();
        assert_eq!(ps.algorithm(), Algorithm::Ps256);
        ps.verify(b"statusd", &read("pss.sig")).unwrap();
        assert_eq!(
            ps.verify(b"statusd", &read("v15.sig")),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            ps.verify(b"statusE", &read("pss.sig")),
            Err(TokenError::BadSignature)
        );
        let rs = ps.clone().with_rsa_algorithm(Algorithm::Rs256);
        assert_eq!(rs.algorithm(), Algorithm::Rs256);
        rs.verify(b"statusd", &read("v15.sig")).unwrap();
        // The private key from its file: PS256 by default, the same public key and kid.
        let pem = String::from_utf8(read("k.pem")).unwrap();
        let signing = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(signing.algorithm(), Algorithm::Ps256);
        assert_eq!(signing.verifying_key(), ps);
        let pss = signing.sign(b"statusd");
        assert_eq!(pss.len(), 256);
        ps.verify(b"statusd", &pss).unwrap();
        assert_eq!(rs.verify(b"statusd", &pss), Err(TokenError::BadSignature));
        let rs_signing = signing.clone().with_rsa_algorithm(Algorithm::Rs256);
        assert_eq!(rs_signing.sign(b"statusd"), read("v15.sig"));
        // Another algorithm than PS256/RS256 leaves an RSA key as it is.
        assert_eq!(
            signing
                .clone()
                .with_rsa_algorithm(Algorithm::Es256)
                .algorithm(),
            Algorithm::Ps256
        );
        let again = SigningKey::from_pkcs8_pem(&signing.to_pkcs8_pem()).unwrap();
        assert_eq!(again.verifying_key(), ps);
        assert!(!format!("{signing:?}").contains(&pem[40..80]));
        assert_eq!(
            rs.verify(b"statusd", &read("pss.sig")),
            Err(TokenError::BadSignature)
        );
        // JWK: kty RSA with its alg; read back as the same key and algorithm.
        let jwk = rs.to_jwk();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["alg"].as_str()),
            (Some("RSA"), Some("RS256"))
        );
        assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap(), rs);
        assert_eq!(rs.thumbprint(), ps.thumbprint());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn with_kid_overrides() {
        let key = SigningKey::generate(Algorithm::EdDsa).with_kid("12".into());
        assert_eq!(key.kid(), "12");
        assert_eq!(key.verifying_key().kid(), "12");
        assert_eq!(key.verifying_key().with_kid("x".into()).kid(), "x");
    }

    // Fixed PEMs of key types we refuse, generated with OpenSSL 3 (public example material).
    const P384_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDBzbhyDB6VYwlm7U/Rg
AtXhvRqljqbCT4D8Ff4Hv6kWRBnN82jfRNNSq8DDSkx6s6ShZANiAARy/nvcQ4a/
NHy2jzqTvMz6N3QUQN5d6fW9knrrXNgzgXnMelxCr3X+NTrSAp3UPl95FHu1pgYF
f4W1eOA0y0ol6hW+TG6FHV4c9KJYF0/h36fpGrFUIGFYNvzczpOE3Lw=
-----END PRIVATE KEY-----
";
    const X25519_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VuBCIEIHBuTsCx5CWOq04h2ZW6/AJ9+nEnXJV7mEMebc3JvoNW
-----END PRIVATE KEY-----
";

    #[test]
    fn pem_errors_are_precise() {
        assert!(matches!(
            SigningKey::from_pkcs8_pem(X25519_PKCS8),
            Err(KeyError::UnsupportedKeyType(m)) if m.contains("X25519")
        ));
        // An RSA key whose envelope names rsaEncryption but holds no valid key: ring's reason.
        // PrivateKeyInfo { version 0, AlgorithmIdentifier { rsaEncryption, NULL }, OCTET STRING }
        let rsa = pem_of(
            "PRIVATE KEY",
            &hex("3017020100300d06092a864886f70d01010105000403020100"),
        );
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&rsa),
            Err(KeyError::UnsupportedKeyType(m)) if m.starts_with("RSA")
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"),
            Err(KeyError::Pem(m)) if m.contains("openssl pkcs8 -topk8")
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"),
            Err(KeyError::Pem(m)) if m.contains("SEC1")
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"),
            Err(KeyError::Pem(m)) if m.contains("encrypted")
        ));
        let public = spec_public().to_public_pem();
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&public),
            Err(KeyError::Pem(m)) if m.contains("found PUBLIC KEY")
        ));
        assert!(matches!(
            VerifyingKey::from_public_pem(&spec_signing_key().to_pkcs8_pem()),
            Err(KeyError::Pem(m)) if m.contains("found PRIVATE KEY")
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem("not a pem"),
            Err(KeyError::Pem(m)) if m.contains("no PEM block")
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n"),
            Err(KeyError::Pem(m)) if m.contains("unterminated")
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n"
            ),
            Err(KeyError::Pem(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(KeyError::Pem(m)) if m.contains("PKCS#8")
        ));
        let two = format!(
            "{}{}",
            spec_signing_key().to_pkcs8_pem(),
            spec_signing_key().to_pkcs8_pem()
        );
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&two),
            Err(KeyError::Pem(m)) if m.contains("exactly one")
        ));
        // P-384 is ES384: a generated key's PKCS#8 loads as one (the fixed PEM above, whose
        // public key is cut short, does not).
        let p384 = SigningKey::generate(Algorithm::Es384);
        let back = SigningKey::from_pkcs8_pem(&p384.to_pkcs8_pem()).unwrap();
        assert_eq!(back.algorithm(), Algorithm::Es384);
        assert_eq!(
            KeySet::from_pem(&p384.to_pkcs8_pem()).unwrap().keys,
            vec![p384.verifying_key()]
        );
        assert!(matches!(
            SigningKey::from_pkcs8_pem(P384_PKCS8),
            Err(KeyError::Pem(_))
        ));
    }

    /// Wraps hand-built DER as a PEM block.
    fn pem_of(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    #[test]
    fn jwk_errors_are_precise() {
        let unsupported = |jwk: Value, needle: &str| {
            assert!(
                matches!(VerifyingKey::from_jwk(&jwk), Err(KeyError::UnsupportedKeyType(ref m)) if m.contains(needle)),
                "{jwk}: {:?}",
                VerifyingKey::from_jwk(&jwk)
            );
        };
        unsupported(json!({"kty":"RSA","n":"AQAB","e":"AQAB"}), "RSA");
        unsupported(json!({"kty":"oct","k":"AAAA"}), "symmetric");
        unsupported(json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"}), "P-521");
        unsupported(json!({"kty":"OKP","crv":"X25519","x":"AA"}), "X25519");
        unsupported(json!({"kty":"OKP","crv":"Ed448","x":"AA"}), "Ed448");
        unsupported(json!({"kty":"XYZ"}), "kty XYZ");

        let invalid = |jwk: Value, needle: &str| {
            assert!(
                matches!(VerifyingKey::from_jwk(&jwk), Err(KeyError::Jwk(ref m)) if m.contains(needle)),
                "{jwk}: {:?}",
                VerifyingKey::from_jwk(&jwk)
            );
        };
        let mut good: Value = serde_json::from_str(SPEC_PUBLIC_JWK).unwrap();
        let with = |name: &str, v: Option<Value>| {
            let mut j = good.clone();
            match v {
                Some(v) => j[name] = v,
                None => {
                    j.as_object_mut().unwrap().remove(name);
                }
            }
            j
        };
        invalid(json!([1]), "JSON object");
        invalid(with("kty", None), "\"kty\"");
        invalid(with("crv", None), "\"crv\"");
        invalid(with("y", None), "\"y\"");
        invalid(with("x", Some(json!(5))), "must be a string");
        invalid(
            with(
                "x",
                Some(json!("I3HWm_0Ds1dPMI-IWmf4mBmH-YaeAVbPVu7vB27CxX")),
            ),
            "x",
        );
        invalid(
            with(
                "x",
                Some(json!("I3HWm_0Ds1dPMI-IWmf4mBmH-YaeAVbPVu7vB27CxXo=")),
            ),
            "padded",
        );
        invalid(with("x", Some(json!("AAAA"))), "32 bytes");
        // Flip the last bit of y: no longer on the curve.
        invalid(
            with(
                "y",
                Some(json!("6N_d5Elj9bs1htgV3okJKIdbHEpkgTmAluYKJemzn1I")),
            ),
            "not a point on P-256",
        );
        invalid(with("alg", Some(json!("ES384"))), "does not fit");
        invalid(with("alg", Some(json!("EdDSA"))), "does not fit");
        invalid(with("use", Some(json!("enc"))), "sig");
        invalid(with("kid", Some(json!(12))), "must be a string");
        good["d"] = json!(1);
        invalid(good.clone(), "\"d\" must be a string");

        // Signing keys additionally need a d that matches the public members.
        assert!(matches!(
            SigningKey::from_jwk(&serde_json::from_str(SPEC_PUBLIC_JWK).unwrap()),
            Err(KeyError::Jwk(m)) if m.contains("no private key")
        ));
        let mut wrong_d: Value = serde_json::from_str(SPEC_PRIVATE_JWK).unwrap();
        wrong_d["d"] = json!(b64url_encode(&[7u8; 32]));
        assert!(matches!(
            SigningKey::from_jwk(&wrong_d),
            Err(KeyError::Jwk(m)) if m.contains("do not belong")
        ));
        let mut zero_d: Value = serde_json::from_str(SPEC_PRIVATE_JWK).unwrap();
        zero_d["d"] = json!(b64url_encode(&[0u8; 32]));
        assert!(matches!(
            SigningKey::from_jwk(&zero_d),
            Err(KeyError::Jwk(m)) if m.contains("scalar")
        ));
    }

    #[test]
    fn jwks_parsing() {
        let ed = SigningKey::generate(Algorithm::EdDsa).verifying_key();
        let set = KeySet::new(vec![spec_public(), ed.clone()]);
        let json = set.to_jwks().to_string();
        assert_eq!(KeySet::from_jwks_json(&json).unwrap(), set);
        assert_eq!(set.to_jwks()["keys"].as_array().unwrap().len(), 2);

        // A single JWK is accepted as a one-key set.
        assert_eq!(
            KeySet::from_jwks_json(SPEC_PUBLIC_JWK).unwrap(),
            KeySet::from(spec_public())
        );
        // Unsupported key types inside a set are skipped (RFC 7517 §5)...
        let mixed = format!(
            r#"{{"keys":[{{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}},{SPEC_PUBLIC_JWK}]}}"#
        );
        assert_eq!(
            KeySet::from_jwks_json(&mixed).unwrap(),
            KeySet::from(spec_public())
        );
        // ...but a set with nothing usable is an error, as is a broken supported key.
        assert_eq!(
            KeySet::from_jwks_json(r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#),
            Err(KeyError::NoUsableKeys)
        );
        assert_eq!(
            KeySet::from_jwks_json(r#"{"keys":[]}"#),
            Err(KeyError::NoUsableKeys)
        );
        assert!(matches!(
            KeySet::from_jwks_json(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#),
            Err(KeyError::Jwk(_))
        ));
        // A lone unsupported JWK is reported as such.
        assert!(matches!(
            KeySet::from_jwks_json(r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#),
            Err(KeyError::UnsupportedKeyType(_))
        ));
        for (bad, needle) in [
            ("{", "not JSON"),
            ("[]", "JSON object"),
            (r#"{"keys":{}}"#, "array"),
            (r#"{"other":1}"#, "\"keys\""),
        ] {
            assert!(
                matches!(KeySet::from_jwks_json(bad), Err(KeyError::Jwk(ref m)) if m.contains(needle)),
                "{bad}"
            );
        }
    }

    #[test]
    fn keyset_from_pem_mixes_private_and_public() {
        let es = SigningKey::generate(Algorithm::Es256);
        let ed = SigningKey::generate(Algorithm::EdDsa);
        let text = format!(
            "# statusd keys\n{}\nsome comment\n{}",
            es.to_pkcs8_pem(),
            ed.verifying_key().to_public_pem()
        );
        let set = KeySet::from_pem(&text).unwrap();
        assert_eq!(set.keys, vec![es.verifying_key(), ed.verifying_key()]);
        assert!(matches!(
            KeySet::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(KeyError::Pem(m)) if m.contains("CERTIFICATE")
        ));
        assert!(matches!(KeySet::from_pem(""), Err(KeyError::Pem(_))));
    }

    #[test]
    fn find_rules() {
        let a = SigningKey::generate(Algorithm::Es256).with_kid("a".into());
        let a2 = SigningKey::generate(Algorithm::Es256).with_kid("a2".into());
        let b = SigningKey::generate(Algorithm::EdDsa).with_kid("a".into());
        // Same kid for two algorithms: the alg picks between them, never across.
        let set = KeySet::new(vec![a.verifying_key(), b.verifying_key()]);
        assert_eq!(set.find(Some("a"), Algorithm::Es256), Ok(&set.keys[0]));
        assert_eq!(set.find(Some("a"), Algorithm::EdDsa), Ok(&set.keys[1]));
        assert_eq!(
            set.find(Some("zz"), Algorithm::Es256),
            Err(TokenError::UnknownKey(Some("zz".into())))
        );
        let only_es = KeySet::new(vec![a.verifying_key(), a2.verifying_key()]);
        assert_eq!(
            only_es.find(Some("a"), Algorithm::EdDsa),
            Err(TokenError::AlgorithmMismatch {
                token: "EdDSA",
                key: "ES256"
            })
        );
        assert_eq!(
            only_es.find(None, Algorithm::Es256),
            Err(TokenError::AmbiguousKey {
                alg: "ES256",
                count: 2
            })
        );
        assert_eq!(
            only_es.find(None, Algorithm::EdDsa),
            Err(TokenError::UnknownKey(None))
        );
        assert_eq!(set.find(None, Algorithm::EdDsa), Ok(&set.keys[1]));
    }
}
