//! The cryptosuite specs' test vectors (W3C vc-di-eddsa and vc-di-ecdsa, `TestVectors/`), then
//! statusd's own credentials signed and verified with each suite.

use super::*;
use crate::token::SigningKey;

/// The unsigned credential both suites' vectors sign, as their files spell it (the members up to
/// `proof`), so that each signed vector below reads as its file does.
macro_rules! alumni_credential {
    () => {
        r#"
  "@context": ["https://www.w3.org/ns/credentials/v2", "https://www.w3.org/ns/credentials/examples/v2"],
  "id": "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
  "type": ["VerifiableCredential", "AlumniCredential"],
  "name": "Alumni Credential",
  "description": "A minimum viable example of an Alumni Credential.",
  "issuer": "https://vc.example/issuers/5678",
  "validFrom": "2023-01-01T00:00:00Z",
  "credentialSubject": {"id": "did:example:abcdefgh", "alumniOf": "The School of Examples"},
"#
    };
}

/// `TestVectors/eddsa-rdfc-2022/signedDataInt.json` (vc-di-eddsa).
const EDDSA_SIGNED: &str = concat!(
    "{",
    alumni_credential!(),
    r#"  "proof": {
    "type": "DataIntegrityProof",
    "cryptosuite": "eddsa-rdfc-2022",
    "created": "2023-02-24T23:36:38Z",
    "verificationMethod": "https://vc.example/issuers/5678#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2",
    "proofPurpose": "assertionMethod",
    "proofValue": "z21EVs3eXERqTn4acNHT9viboqgzUaQ3kTmhPT3eA8qrVPE7CrQq78WkzctnMX5W4CrzcKnHw8V6dvy5pgWYCU5e9"
  }
}"#
);

/// `TestVectors/eddsa-rdfc-2022/proofCanonDataInt.txt`: the canonical proof configuration.
const EDDSA_PROOF_CANON: &str = "_:c14n0 <http://purl.org/dc/terms/created> \"2023-02-24T23:36:38Z\"^^<http://www.w3.org/2001/XMLSchema#dateTime> .
_:c14n0 <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <https://w3id.org/security#DataIntegrityProof> .
_:c14n0 <https://w3id.org/security#cryptosuite> \"eddsa-rdfc-2022\"^^<https://w3id.org/security#cryptosuiteString> .
_:c14n0 <https://w3id.org/security#proofPurpose> <https://w3id.org/security#assertionMethod> .
_:c14n0 <https://w3id.org/security#verificationMethod> <https://vc.example/issuers/5678#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2> .
";

/// `TestVectors/ecdsa-rdfc-2019-p256/signedECDSAP256.json` (vc-di-ecdsa, at commit 36e8159:
/// a did:key verification method, the context that types `cryptosuite`).
const ECDSA_SIGNED: &str = concat!(
    "{",
    alumni_credential!(),
    r#"  "proof": {
    "type": "DataIntegrityProof",
    "cryptosuite": "ecdsa-rdfc-2019",
    "created": "2023-02-24T23:36:38Z",
    "verificationMethod": "did:key:zDnaepBuvsQ8cpsWrVKw8fbpGpvPeNSjVPTWoq6cRqaYzBKVP#zDnaepBuvsQ8cpsWrVKw8fbpGpvPeNSjVPTWoq6cRqaYzBKVP",
    "proofPurpose": "assertionMethod",
    "proofValue": "zaHXrr7AQdydBk3ahpCDpWbxfLokDqmCToYm2dyWvpcFVyWooC2he63w1f7UNQoAMKdhaRtcnaE2KTo5o5vTCcfw"
  }
}"#
);

/// `TestVectors/ecdsa-rdfc-2019-p256/proofCanonECDSAP256.txt` (same commit).
const ECDSA_PROOF_CANON: &str = "_:c14n0 <http://purl.org/dc/terms/created> \"2023-02-24T23:36:38Z\"^^<http://www.w3.org/2001/XMLSchema#dateTime> .
_:c14n0 <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <https://w3id.org/security#DataIntegrityProof> .
_:c14n0 <https://w3id.org/security#cryptosuite> \"ecdsa-rdfc-2019\"^^<https://w3id.org/security#cryptosuiteString> .
_:c14n0 <https://w3id.org/security#proofPurpose> <https://w3id.org/security#assertionMethod> .
_:c14n0 <https://w3id.org/security#verificationMethod> <did:key:zDnaepBuvsQ8cpsWrVKw8fbpGpvPeNSjVPTWoq6cRqaYzBKVP#zDnaepBuvsQ8cpsWrVKw8fbpGpvPeNSjVPTWoq6cRqaYzBKVP> .
";

/// The key a spec vector's verification method names in its fragment (a multibase key).
fn vector_key(signed: &Json) -> VerifyingKey {
    let vm = signed["proof"]["verificationMethod"].as_str().unwrap();
    key_from_multibase(vm.rsplit_once('#').unwrap().1).unwrap()
}

#[test]
fn base58btc_round_trips_and_keeps_leading_zeros() {
    for bytes in [&[][..], &[0], &[0, 0, 1], &[255; 40], b"hello world"] {
        assert_eq!(
            base58btc_decode(&base58btc_encode(bytes)).as_deref(),
            Some(bytes)
        );
    }
    assert_eq!(base58btc_encode(b"hello world"), "StV1DL6CwTryKyV");
    assert_eq!(base58btc_decode("0OIl"), None);
}

#[test]
fn multikeys_of_the_spec_vectors_round_trip() {
    for mb in [
        "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2",
        "zDnaepBuvsQ8cpsWrVKw8fbpGpvPeNSjVPTWoq6cRqaYzBKVP",
    ] {
        let key = key_from_multibase(mb).unwrap();
        assert_eq!(public_key_multibase(&key).as_deref(), Some(mb));
    }
}

/// A cryptosuite spec's signed vector: its proof configuration canonicalises to the spec's
/// `canon`, its proof verifies, and after `tamper` it no longer does.
fn check_spec_vector(signed: &str, canon: &str, tamper: impl FnOnce(&mut Json)) {
    let signed: Json = serde_json::from_str(signed).unwrap();
    let mut config = signed["proof"].as_object().unwrap().clone();
    config.remove("proofValue");
    config.insert("@context".into(), signed["@context"].clone());
    assert_eq!(canonicalize(&Json::Object(config)).unwrap(), canon);
    verify_proof(&signed, &vector_key(&signed)).expect("the spec's proof verifies");
    let mut tampered = signed.clone();
    tamper(&mut tampered);
    assert!(matches!(
        verify_proof(&tampered, &vector_key(&signed)),
        Err(ProofError::BadSignature)
    ));
}

#[test]
fn eddsa_rdfc_2022_spec_vector_canonicalises_and_verifies() {
    check_spec_vector(EDDSA_SIGNED, EDDSA_PROOF_CANON, |t| {
        t["credentialSubject"]["alumniOf"] = json!("Another School");
    });
}

#[test]
fn ecdsa_rdfc_2019_p256_spec_vector_canonicalises_and_verifies() {
    check_spec_vector(ECDSA_SIGNED, ECDSA_PROOF_CANON, |t| {
        t["validFrom"] = json!("2023-01-02T00:00:00Z");
    });
}

fn statusd_credentials() -> Vec<Json> {
    use crate::status::w3c::{CredentialParams, Purpose};
    use crate::status::{Bits, StatusList};
    let mut list = StatusList::new(Bits::Two, 131_072).unwrap();
    list.set(7, crate::status::Status::INVALID).unwrap();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let params = |id: &'static str, ttl| CredentialParams {
        id,
        issuer: "https://status.example",
        valid_from: at,
        valid_until: Some(at + std::time::Duration::from_secs(86_400)),
        ttl_ms: ttl,
    };
    let p = params(
        "https://status.example/bitstringlists/1/revocation",
        Some(300_000),
    );
    let m = params(
        "https://status.example/bitstringlists/1/message",
        Some(300_000),
    );
    let s = params("https://status.example/statuslist2021/1/revocation", None);
    let bitstring = |c| with_issuer_dependent_terms(&c);
    vec![
        bitstring(crate::status::w3c::credential(&list, Purpose::Revocation, &p).unwrap()),
        bitstring(crate::status::w3c::credential(&list, Purpose::Message, &m).unwrap()),
        crate::status::sl2021::credential(&list, Purpose::Revocation, &s).unwrap(),
    ]
}

#[test]
fn statusd_credentials_are_signed_and_verified_with_both_suites() {
    for alg in [Algorithm::Es256, Algorithm::EdDsa] {
        let key = SigningKey::generate(alg);
        for c in statusd_credentials() {
            let signed =
                add_proof(&c, &key, "https://status.example", "2027-01-15T08:00:00Z").unwrap();
            let proof = &signed["proof"];
            assert_eq!(
                proof["cryptosuite"],
                Cryptosuite::for_algorithm(alg).unwrap().name()
            );
            assert_eq!(
                proof["verificationMethod"],
                format!("https://status.example#{}", key.kid())
            );
            verify_proof(&signed, &key.verifying_key()).unwrap();
            let ctx = signed["@context"].as_array().unwrap();
            // VC 1.1 credentials get the Data Integrity context; VCDM 2.0 ones already have it.
            assert_eq!(
                ctx.iter().any(|c| c == DATA_INTEGRITY_CONTEXT),
                !ctx.iter().any(|c| c == CREDENTIALS_V2_CONTEXT),
                "{ctx:?}"
            );
            let mut tampered = signed.clone();
            tampered["credentialSubject"]["encodedList"] =
                json!("uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQsvoAAAAAAAAAAAAAAAAP4GcwM92tQwAAA");
            assert!(matches!(
                verify_proof(&tampered, &key.verifying_key()),
                Err(ProofError::BadSignature)
            ));
        }
    }
}

/// Without the undefined-terms context the list-level `statusSize` would be dropped from the
/// signed dataset: refused, not signed.
#[test]
fn undefined_terms_are_refused_not_dropped() {
    use crate::status::w3c::{CredentialParams, Purpose};
    let list = crate::status::StatusList::new(crate::status::Bits::One, 131_072).unwrap();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let p = CredentialParams {
        id: "https://status.example/bitstringlists/1/revocation",
        issuer: "https://status.example",
        valid_from: at,
        valid_until: None,
        ttl_ms: None,
    };
    let plain = crate::status::w3c::credential(&list, Purpose::Revocation, &p).unwrap();
    let key = SigningKey::generate(Algorithm::EdDsa);
    let e = add_proof(
        &plain,
        &key,
        "https://status.example",
        "2027-01-15T08:00:00Z",
    )
    .unwrap_err();
    assert!(e.to_string().contains("statusSize"), "{e}");
}

#[test]
fn other_key_types_publish_no_proof() {
    let key = SigningKey::generate(Algorithm::Es384);
    let c = &statusd_credentials()[0];
    let e = add_proof(c, &key, "https://status.example", "2027-01-15T08:00:00Z").unwrap_err();
    assert!(matches!(e, ProofError::UnsupportedKey("ES384")), "{e}");
}

#[test]
fn the_controller_document_lists_each_key_as_an_assertion_method() {
    let keys: KeySet = [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Es384]
        .into_iter()
        .map(|a| SigningKey::generate(a).verifying_key())
        .collect();
    let doc = controller_document("https://status.example", &keys);
    assert_eq!(doc["id"], "https://status.example");
    let methods = doc["verificationMethod"].as_array().unwrap();
    assert_eq!(methods.len(), 2, "P-384 has no suite here: {doc}");
    for (m, k) in methods.iter().zip(&keys.keys) {
        assert_eq!(m["type"], "Multikey");
        assert_eq!(m["controller"], "https://status.example");
        let key = key_from_multibase(m["publicKeyMultibase"].as_str().unwrap()).unwrap();
        assert_eq!(key.thumbprint(), k.thumbprint());
    }
    assert_eq!(
        doc["assertionMethod"],
        json!([methods[0]["id"], methods[1]["id"]])
    );
}

/// The remembered hash of a proof configuration is the one computed afresh, whether it was
/// remembered, evicted or never seen: more distinct configurations than the cache holds, each
/// asked for several times, interleaved, over every context statusd signs with.
#[test]
fn remembered_config_hashes_are_the_fresh_ones() {
    let key = SigningKey::generate(Algorithm::EdDsa);
    let contexts: Vec<Json> = statusd_credentials()
        .iter()
        .map(|c| {
            let signed = add_proof(c, &key, "https://status.example", "2027-01-15T08:00:00Z");
            signed.unwrap()["@context"].clone()
        })
        .collect();
    let configs: Vec<Json> = (0..CONFIG_CACHE + 5)
        .map(|n| {
            json!({
                "type": "DataIntegrityProof",
                "cryptosuite": if n % 2 == 0 { "ecdsa-rdfc-2019" } else { "eddsa-rdfc-2022" },
                "created": format!("2027-01-15T08:00:{:02}Z", n % 60),
                "verificationMethod": format!("https://status.example#k{}", n / 7),
                "proofPurpose": "assertionMethod",
                "@context": contexts[n % contexts.len()].clone(),
            })
        })
        .collect();
    for round in 0..3 {
        for (n, config) in configs.iter().enumerate().rev().skip(round) {
            let fresh: [u8; 32] = Sha256::digest(canonicalize(config).unwrap().as_bytes()).into();
            assert_eq!(
                config_hash(config).unwrap(),
                fresh,
                "config {n}, round {round}"
            );
        }
    }
}

/// A proof whose configuration was changed after signing fails, although the configuration it
/// was signed with is remembered.
#[test]
fn a_changed_proof_configuration_does_not_verify() {
    let key = SigningKey::generate(Algorithm::Es256);
    for c in statusd_credentials() {
        let signed = add_proof(&c, &key, "https://status.example", "2027-01-15T08:00:00Z").unwrap();
        verify_proof(&signed, &key.verifying_key()).unwrap();
        let mut tampered = signed.clone();
        tampered["proof"]["created"] = json!("2027-01-15T08:00:01Z");
        assert!(matches!(
            verify_proof(&tampered, &key.verifying_key()),
            Err(ProofError::BadSignature)
        ));
    }
}
