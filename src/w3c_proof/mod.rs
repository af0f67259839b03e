//! Data Integrity proofs (W3C VC Data Integrity 1.0) on the W3C credentials statusd publishes:
//! `ecdsa-rdfc-2019` with a P-256 signing key (W3C VC DI ECDSA §3.2), `eddsa-rdfc-2022` with an
//! Ed25519 one (W3C VC DI EdDSA §3.2). Owns the proof algorithm (proof configuration, RDFC-1.0
//! canonicalisation of both halves, `SHA-256(proofConfig) ‖ SHA-256(document)`, signature,
//! multibase `proofValue`), the key's `Multikey` form and the controller document that lets
//! verifiers find it.
//!
//! JSON-LD expansion and RDFC-1.0 come from `affinidi-rdf-encoding` (see Cargo.toml); every
//! context is bundled, in that crate or in `contexts/` here, so nothing is fetched: a context
//! statusd does not know is an error, never a request. Proofs are built with the snapshot
//! (`snapshot::build`), never on the request path. Other key types (P-384, RSA) have no
//! cryptosuite here: [`Cryptosuite::for_algorithm`] says so and no proof is published.
//!
//! The verification method is `{issuer}#{kid}`, listed in the controller document whose `id`
//! is the issuer ([`controller_document`]), which statusd serves at the root of its public URL;
//! a verifier dereferences the issuer URL as VCDM 2.0 §4.7 intends and checks that the method
//! is an `assertionMethod` of the credential's issuer.

use crate::token::keys::{Algorithm, KeySet, VerifyingKey};
use crate::token::{SignError, TokenSigner};
use base64::Engine as _;
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

pub use crate::routes::{DI_MEDIA_TYPE, DI_MEDIA_TYPE_1_1};
/// The media type of the controller document.
pub const CONTROLLER_MEDIA_TYPE: &str = "application/ld+json";
/// Added to a VC 1.1 credential's `@context` so the proof's terms are defined (VCDM 2.0's
/// context already defines them).
pub const DATA_INTEGRITY_CONTEXT: &str = "https://w3id.org/security/data-integrity/v2";
const CREDENTIALS_V2_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";
/// VCDM 2.0's context for issuer-dependent terms: `@vocab` only.
pub const UNDEFINED_TERMS_CONTEXT: &str = "https://www.w3.org/ns/credentials/undefined-terms/v2";
const UNDEFINED_TERMS_VOCAB: &str = "https://www.w3.org/ns/credentials/undefined-term#";
const DID_V1_CONTEXT: &str = "https://www.w3.org/ns/did/v1";
const MULTIKEY_V1_CONTEXT: &str = "https://w3id.org/security/multikey/v1";
const SL2021_CONTEXT: &str = "https://w3id.org/vc/status-list/2021/v1";
/// The W3C CCG Status List 2021 context (not bundled by the canonicaliser).
const SL2021_CONTEXT_DOC: &str = include_str!("contexts/status-list-2021-v1.jsonld");

/// A Data Integrity cryptosuite statusd signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cryptosuite {
    /// ECDSA over P-256 with SHA-256, RDFC-1.0.
    EcdsaRdfc2019,
    /// Ed25519 (pure EdDSA), RDFC-1.0.
    EddsaRdfc2022,
}

impl Cryptosuite {
    /// The cryptosuite of a signing key's algorithm: none for ES384, PS256 and RS256 (no
    /// P-384 proofs are published: statusd keeps to the two suites verifiers implement most).
    pub fn for_algorithm(alg: Algorithm) -> Option<Cryptosuite> {
        match alg {
            Algorithm::Es256 => Some(Cryptosuite::EcdsaRdfc2019),
            Algorithm::EdDsa => Some(Cryptosuite::EddsaRdfc2022),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cryptosuite::EcdsaRdfc2019 => "ecdsa-rdfc-2019",
            Cryptosuite::EddsaRdfc2022 => "eddsa-rdfc-2022",
        }
    }
}

/// Why a proof could not be made or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("{0} keys have no Data Integrity cryptosuite here: ecdsa-rdfc-2019 needs a P-256 (ES256) key, eddsa-rdfc-2022 an Ed25519 one")]
    UnsupportedKey(&'static str),
    #[error("JSON-LD to RDF / RDFC-1.0: {0}")]
    Canonicalization(String),
    #[error("signing the proof: {0}")]
    Sign(#[from] SignError),
    #[error("malformed proof: {0}")]
    Malformed(String),
    #[error("the proof's signature does not verify")]
    BadSignature,
}

/// The verification method of the key `kid` of `issuer`.
pub fn verification_method(issuer: &str, kid: &str) -> String {
    format!("{issuer}#{kid}")
}

/// `publicKeyMultibase` of a `Multikey` (W3C Controlled Identifiers §2.2.2): base58btc of the
/// multicodec-prefixed key, `p256-pub` (0x1200) compressed point or `ed25519-pub` (0xed).
pub fn public_key_multibase(key: &VerifyingKey) -> Option<String> {
    let jwk = key.to_jwk();
    let b64 = |m: &str| {
        jwk.get(m).and_then(Json::as_str).and_then(|s| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()
        })
    };
    let bytes = match key.algorithm() {
        Algorithm::Es256 => {
            let (x, y) = (b64("x")?, b64("y")?);
            let mut b = vec![0x80, 0x24, if y.last()? & 1 == 1 { 0x03 } else { 0x02 }];
            b.extend_from_slice(&x);
            b
        }
        Algorithm::EdDsa => {
            let mut b = vec![0xed, 0x01];
            b.extend_from_slice(&b64("x")?);
            b
        }
        _ => return None,
    };
    Some(format!("z{}", base58btc_encode(&bytes)))
}

/// The key of a `Multikey`'s `publicKeyMultibase` (P-256 or Ed25519).
pub fn key_from_multibase(multibase: &str) -> Result<VerifyingKey, ProofError> {
    let bad = |why: &str| ProofError::Malformed(format!("publicKeyMultibase: {why}"));
    let raw = multibase
        .strip_prefix('z')
        .and_then(base58btc_decode)
        .ok_or_else(|| bad("not base58btc multibase"))?;
    match raw.as_slice() {
        [0x80, 0x24, point @ ..] => {
            VerifyingKey::from_p256_sec1(point).map_err(|e| bad(&e.to_string()))
        }
        [0xed, 0x01, key @ ..] => {
            VerifyingKey::from_ed25519_bytes(key).map_err(|e| bad(&e.to_string()))
        }
        _ => Err(bad("neither p256-pub nor ed25519-pub")),
    }
}

/// The controller document of `issuer`: each published key that has a cryptosuite as a
/// `Multikey` verification method and an `assertionMethod`. Its first context is DID v1 (the
/// vocabulary of `verificationMethod` and `assertionMethod`), then Multikey v1.
pub fn controller_document(issuer: &str, keys: &KeySet) -> Json {
    let methods: Vec<Json> = keys
        .keys
        .iter()
        .filter_map(|k| {
            Some(json!({
                "id": verification_method(issuer, k.kid()),
                "type": "Multikey",
                "controller": issuer,
                "publicKeyMultibase": public_key_multibase(k)?,
            }))
        })
        .collect();
    let ids: Vec<Json> = methods.iter().map(|m| m["id"].clone()).collect();
    json!({
        "@context": [DID_V1_CONTEXT, MULTIKEY_V1_CONTEXT],
        "id": issuer,
        "verificationMethod": methods,
        "assertionMethod": ids,
    })
}

/// The RDFC-1.0 canonical N-Quads of a JSON-LD document, every context from the bundle.
pub fn canonicalize(document: &Json) -> Result<String, ProofError> {
    let err = |e: affinidi_rdf_encoding::RdfError| ProofError::Canonicalization(e.to_string());
    let mut doc = document.clone();
    if let Some(ctx) = doc.get_mut("@context") {
        inline_contexts(ctx);
    }
    let dataset = affinidi_rdf_encoding::jsonld::expand_and_to_rdf_safe(&doc).map_err(err)?;
    affinidi_rdf_encoding::rdfc1::canonicalize(&dataset).map_err(err)
}

/// Replaces the URLs of contexts bundled here (not in the canonicaliser) by their content.
fn inline_contexts(ctx: &mut Json) {
    match ctx {
        Json::String(url) if url == UNDEFINED_TERMS_CONTEXT => {
            *ctx = json!({ "@vocab": UNDEFINED_TERMS_VOCAB });
        }
        Json::String(url) if url == SL2021_CONTEXT => {
            let doc: Json =
                serde_json::from_str(SL2021_CONTEXT_DOC).expect("the bundled context is JSON");
            *ctx = doc["@context"].clone();
        }
        Json::Array(items) => items.iter_mut().for_each(inline_contexts),
        _ => {}
    }
}

/// `credential` with VCDM 2.0's undefined-terms context appended. statusd's Bitstring lists
/// carry `statusSize` (and the message view `statusMessages`) on the list itself, where the
/// VCDM 2.0 context defines them only on entries: they are issuer-dependent terms, and without
/// this context a JSON-LD processor in safe mode (the canonicaliser here, jsonld.js in Digital
/// Bazaar's verifiers) refuses to sign or verify a document that would drop them.
pub fn with_issuer_dependent_terms(credential: &Json) -> Json {
    let mut c = credential.clone();
    if let Some(Json::Array(ctx)) = c.get_mut("@context") {
        if !ctx.iter().any(|x| x == UNDEFINED_TERMS_CONTEXT) {
            ctx.push(json!(UNDEFINED_TERMS_CONTEXT));
        }
    }
    c
}

/// `SHA-256(canonical proof configuration) ‖ SHA-256(canonical document)` (§3.3.4 hashing).
fn hash_data(document: &Json, proof_options: &Map<String, Json>) -> Result<Vec<u8>, ProofError> {
    let mut config = proof_options.clone();
    config.remove("proofValue");
    config.insert(
        "@context".into(),
        document.get("@context").cloned().unwrap_or(Json::Null),
    );
    let mut out = config_hash(&Json::Object(config))?.to_vec();
    let doc = canonicalize(document)?;
    out.extend_from_slice(&Sha256::digest(doc.as_bytes()));
    Ok(out)
}

/// How many proof configurations [`config_hash`] remembers: a build signs each list's few
/// documents with one `created`, key and a couple of `@context`s, so a handful are live.
const CONFIG_CACHE: usize = 16;

/// `SHA-256` of the canonical N-Quads of a proof configuration, remembered by the
/// configuration's JSON text. Canonicalisation is a pure function of the document (every
/// context is bundled), so a remembered hash is exactly the one computed afresh; and the
/// configurations of a build are all alike (same `created`, key and contexts for every list),
/// while canonicalising one (expanding its contexts) was a fifth of a list's build (issue 16).
fn config_hash(config: &Json) -> Result<[u8; 32], ProofError> {
    use std::sync::{Mutex, PoisonError};
    static CACHE: Mutex<Vec<(String, [u8; 32])>> = Mutex::new(Vec::new());
    let key = config.to_string();
    let lock = || CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, hash)) = lock().iter().find(|(k, _)| *k == key) {
        return Ok(*hash);
    }
    let hash: [u8; 32] = Sha256::digest(canonicalize(config)?.as_bytes()).into();
    let mut cache = lock();
    if cache.len() >= CONFIG_CACHE {
        cache.remove(0);
    }
    cache.push((key, hash));
    Ok(hash)
}

/// `credential` with a Data Integrity proof by `signer` (whose verification method is
/// `{issuer}#{kid}`), created at `created` (RFC 3339). A credential without the VCDM 2.0
/// context gets the Data Integrity context appended first.
pub fn add_proof(
    credential: &Json,
    signer: &(impl TokenSigner + ?Sized),
    issuer: &str,
    created: &str,
) -> Result<Json, ProofError> {
    let suite = Cryptosuite::for_algorithm(signer.algorithm())
        .ok_or(ProofError::UnsupportedKey(signer.algorithm().jose_name()))?;
    let mut document = credential.clone();
    if let Some(Json::Array(ctx)) = document.get_mut("@context") {
        let has = |u: &str| ctx.iter().any(|c| c == u);
        if !has(CREDENTIALS_V2_CONTEXT) && !has(DATA_INTEGRITY_CONTEXT) {
            ctx.push(json!(DATA_INTEGRITY_CONTEXT));
        }
    }
    let mut proof = Map::new();
    proof.insert("type".into(), json!("DataIntegrityProof"));
    proof.insert("cryptosuite".into(), json!(suite.name()));
    proof.insert("created".into(), json!(created));
    proof.insert(
        "verificationMethod".into(),
        json!(verification_method(issuer, signer.kid())),
    );
    proof.insert("proofPurpose".into(), json!("assertionMethod"));
    let data = hash_data(&document, &proof)?;
    // ES256 is ECDSA with SHA-256 over the message, as ecdsa-rdfc-2019 signs hashData; EdDSA
    // signs hashData itself. Both come back in the raw form the suites use (R‖S, 64 bytes).
    let signature = signer.try_sign(&data)?;
    proof.insert(
        "proofValue".into(),
        json!(format!("z{}", base58btc_encode(&signature))),
    );
    document["proof"] = Json::Object(proof);
    Ok(document)
}

/// Verifies the Data Integrity proof of `secured` with `key` (the key its verification method
/// resolves to; resolving it is the caller's).
pub fn verify_proof(secured: &Json, key: &VerifyingKey) -> Result<(), ProofError> {
    let malformed = |m: &str| ProofError::Malformed(m.into());
    let mut document = secured.clone();
    let proof = document
        .as_object_mut()
        .and_then(|o| o.remove("proof"))
        .ok_or_else(|| malformed("no proof"))?;
    let proof = proof
        .as_object()
        .ok_or_else(|| malformed("proof is not an object"))?;
    if proof.get("type") != Some(&json!("DataIntegrityProof")) {
        return Err(malformed("type is not DataIntegrityProof"));
    }
    let suite = Cryptosuite::for_algorithm(key.algorithm())
        .ok_or(ProofError::UnsupportedKey(key.algorithm().jose_name()))?;
    if proof.get("cryptosuite") != Some(&json!(suite.name())) {
        return Err(malformed("cryptosuite does not match the key"));
    }
    let signature = proof
        .get("proofValue")
        .and_then(Json::as_str)
        .and_then(|v| v.strip_prefix('z'))
        .and_then(base58btc_decode)
        .ok_or_else(|| malformed("proofValue is not base58btc multibase"))?;
    let data = hash_data(&document, proof)?;
    key.verify(&data, &signature)
        .map_err(|_| ProofError::BadSignature)
}

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Base58 in the Bitcoin alphabet (multibase `z`).
fn base58btc_encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    // Little-endian base-58 digits of the big-endian number.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &b in &bytes[zeros..] {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut s = String::with_capacity(zeros + digits.len());
    s.extend(std::iter::repeat_n('1', zeros));
    s.extend(digits.iter().rev().map(|&d| BASE58[usize::from(d)] as char));
    s
}

fn base58btc_decode(text: &str) -> Option<Vec<u8>> {
    let zeros = text.bytes().take_while(|&c| c == b'1').count();
    let mut bytes: Vec<u8> = Vec::with_capacity(text.len());
    for c in text.bytes().skip(zeros) {
        let mut carry = BASE58.iter().position(|&a| a == c)? as u32;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0; zeros];
    out.extend(bytes.iter().rev());
    Some(out)
}

#[cfg(test)]
mod tests;
