//! The signing key's X.509 certificate chain (`STATUSD_SIGNING_CERT`), and chain validation up
//! to a trust anchor (used through [`crate::anchor`] by `statusd inspect` and `statusd verify`).
//!
//! Owns reading the PEM chain (leaf first, then intermediates), the checks a replica makes of
//! its leaf at start and before every signing pass ([`CertChain::check_leaf`]: the leaf holds
//! the signing key, is valid for at least the token lifetime, allows digital signatures), and
//! [`validate`]: signatures from the leaf up to a given root, validity at a given time, key
//! usage and CA constraints. It never fetches anything (no AIA, no CRL/OCSP: the operator's PKI
//! and the verifier do that) and never trusts a chain by itself: only the anchor the caller
//! names is trusted.

use crate::token::keys::VerifyingKey;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

/// Why a certificate chain cannot be used or does not validate. Names the failed check.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("reading certificate file {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate file {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("certificate {index}: {reason}")]
    Malformed { index: usize, reason: String },
    #[error(
        "the leaf certificate is for another key (kid {cert}) than the signing key (kid {key})"
    )]
    OtherKey { cert: String, key: String },
    #[error("the leaf certificate is not valid before {} (now {})", time(*not_before), time(*now))]
    NotYetValid {
        not_before: SystemTime,
        now: SystemTime,
    },
    #[error("the leaf certificate expires at {}, before the tokens signed now do ({}): renew it", time(*not_after), time(*needed))]
    ExpiresTooSoon {
        not_after: SystemTime,
        needed: SystemTime,
    },
    #[error("the leaf certificate's key usage does not allow digital signatures")]
    NoDigitalSignature,
    #[error("certificate {index} ({subject}) is not valid at {}", time(*at))]
    OutsideValidity {
        index: usize,
        subject: String,
        at: SystemTime,
    },
    #[error("certificate {index} ({subject}) is not signed by the next certificate's key")]
    BadSignature { index: usize, subject: String },
    #[error("certificate {index} ({subject}) issues certificates but is not a CA allowed to sign them (basicConstraints cA, keyCertSign)")]
    NotACa { index: usize, subject: String },
    #[error("certificate {index} is signed with {alg}, which statusd does not verify")]
    UnsupportedSignature { index: usize, alg: String },
    #[error("the chain does not end at the trust anchor ({anchor}): its last certificate, issued by {issuer}, is not signed by the anchor's key")]
    UntrustedRoot { anchor: String, issuer: String },
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A certificate chain, leaf first, as read from the operator's PEM file.
#[derive(Clone, Debug)]
pub struct CertChain {
    certs: Vec<Certificate>,
    der: Vec<Vec<u8>>,
}

impl CertChain {
    /// Reads the PEM file at `path`: one or more `CERTIFICATE` blocks, leaf first.
    pub fn load(path: &Path) -> Result<CertChain, CertError> {
        let pem = std::fs::read(path).map_err(|source| CertError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem).map_err(|reason| CertError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses one or more PEM `CERTIFICATE` blocks, leaf first.
    pub fn from_pem(pem: &[u8]) -> Result<CertChain, String> {
        let certs = Certificate::load_pem_chain(pem)
            .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
        if certs.is_empty() {
            return Err("no CERTIFICATE block".into());
        }
        Self::from_certs(certs)
    }

    /// A chain from DER certificates, leaf first (an `x5c` or `x5chain`).
    pub fn from_der(ders: &[Vec<u8>]) -> Result<CertChain, String> {
        let certs = ders
            .iter()
            .enumerate()
            .map(|(i, d)| {
                Certificate::from_der(d).map_err(|e| format!("certificate {i} is not DER: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            return Err("an empty certificate chain".into());
        }
        Self::from_certs(certs)
    }

    fn from_certs(certs: Vec<Certificate>) -> Result<CertChain, String> {
        let der = certs
            .iter()
            .map(|c| c.to_der().map_err(|e| format!("re-encoding: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CertChain { certs, der })
    }

    /// The DER certificates, leaf first, as `x5c` and `x5chain` carry them.
    pub fn der(&self) -> &[Vec<u8>] {
        &self.der
    }

    /// The leaf's `notAfter`.
    pub fn not_after(&self) -> SystemTime {
        self.certs[0]
            .tbs_certificate
            .validity
            .not_after
            .to_system_time()
    }

    /// The leaf's public key.
    pub fn leaf_key(&self) -> Result<VerifyingKey, CertError> {
        spki_key(&self.certs[0], 0)
    }

    /// The checks a replica makes before signing: the leaf holds `key`, is valid from `now`
    /// until `now + lifetime` (every token signed now expires within its validity), and allows
    /// digital signatures.
    pub fn check_leaf(
        &self,
        key: &VerifyingKey,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<(), CertError> {
        let cert_key = self.leaf_key()?;
        if cert_key.thumbprint() != key.thumbprint() {
            return Err(CertError::OtherKey {
                cert: cert_key.thumbprint(),
                key: key.kid().to_owned(),
            });
        }
        let validity = &self.certs[0].tbs_certificate.validity;
        let not_before = validity.not_before.to_system_time();
        if now < not_before {
            return Err(CertError::NotYetValid { not_before, now });
        }
        let needed = now + lifetime;
        if self.not_after() < needed {
            return Err(CertError::ExpiresTooSoon {
                not_after: self.not_after(),
                needed,
            });
        }
        match key_usage(&self.certs[0], 0)? {
            Some(ku) if !ku.digital_signature() => Err(CertError::NoDigitalSignature),
            _ => Ok(()),
        }
    }
}

fn subject(c: &Certificate) -> String {
    c.tbs_certificate.subject.to_string()
}

fn key_usage(c: &Certificate, index: usize) -> Result<Option<KeyUsage>, CertError> {
    c.tbs_certificate
        .get::<KeyUsage>()
        .map(|o| o.map(|(_, ku)| ku))
        .map_err(|e| CertError::Malformed {
            index,
            reason: format!("keyUsage: {e}"),
        })
}

fn spki_key(c: &Certificate, index: usize) -> Result<VerifyingKey, CertError> {
    let der = c
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| CertError::Malformed {
            index,
            reason: format!("subjectPublicKeyInfo: {e}"),
        })?;
    VerifyingKey::from_spki_der(&der).map_err(|e| CertError::Malformed {
        index,
        reason: format!("public key: {e}"),
    })
}

/// OID of ecdsa-with-SHA256 (RFC 5758 §3.2).
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
/// OID of ecdsa-with-SHA384 (RFC 5758 §3.2).
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
/// OID of RSASSA-PSS (RFC 4055 §3.1).
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
/// OID of sha256WithRSAEncryption (RFC 4055 §5).
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
/// DER RSASSA-PSS-params { sha256, mgf1SHA256, saltLength 32 } (RFC 4055 §3.1).
const PSS_SHA256_PARAMS: [u8; 54] = [
    0x30, 0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x20,
];
/// OID of Ed25519 (RFC 8410 §3).
const ED25519: &str = "1.3.101.112";

/// Checks that `issuer` signed `c`.
fn verify_signed_by(c: &Certificate, index: usize, issuer: &Certificate) -> Result<(), CertError> {
    let alg = c.signature_algorithm.oid.to_string();
    let key = spki_key(issuer, index + 1)?;
    let tbs = c
        .tbs_certificate
        .to_der()
        .map_err(|e| CertError::Malformed {
            index,
            reason: format!("tbsCertificate: {e}"),
        })?;
    let sig = c.signature.as_bytes().ok_or_else(|| CertError::Malformed {
        index,
        reason: "signature is not whole bytes".into(),
    })?;
    let bad = || CertError::BadSignature {
        index,
        subject: subject(c),
    };
    match (alg.as_str(), key.algorithm()) {
        (ECDSA_SHA256, crate::token::Algorithm::Es256)
        | (ECDSA_SHA384, crate::token::Algorithm::Es384)
        | (ED25519, crate::token::Algorithm::EdDsa) => {
            let sig = signature_from_x509(key.algorithm(), sig).map_err(|_| bad())?;
            key.verify(&tbs, &sig).map_err(|_| bad())
        }
        // Government CAs often sign with RSA PKCS#1 v1.5.
        (SHA256_WITH_RSA, crate::token::Algorithm::Ps256 | crate::token::Algorithm::Rs256) => key
            .with_rsa_algorithm(crate::token::Algorithm::Rs256)
            .verify(&tbs, sig)
            .map_err(|_| bad()),
        _ => Err(CertError::UnsupportedSignature { index, alg }),
    }
}

fn check_validity(c: &Certificate, index: usize, at: SystemTime) -> Result<(), CertError> {
    let v = &c.tbs_certificate.validity;
    if at < v.not_before.to_system_time() || at > v.not_after.to_system_time() {
        return Err(CertError::OutsideValidity {
            index,
            subject: subject(c),
            at,
        });
    }
    Ok(())
}

fn check_ca(c: &Certificate, index: usize) -> Result<(), CertError> {
    let not_a_ca = || CertError::NotACa {
        index,
        subject: subject(c),
    };
    let bc = c
        .tbs_certificate
        .get::<BasicConstraints>()
        .map_err(|e| CertError::Malformed {
            index,
            reason: format!("basicConstraints: {e}"),
        })?;
    if !bc.is_some_and(|(_, bc)| bc.ca) {
        return Err(not_a_ca());
    }
    match key_usage(c, index)? {
        Some(ku) if !ku.key_cert_sign() => Err(not_a_ca()),
        _ => Ok(()),
    }
}

/// Validates `chain` (leaf first) up to `anchor`, as a verifier anchored in X.509 does: every
/// certificate is signed by the next one's key and the last by the anchor's (or is the anchor
/// itself); every certificate, the anchor included, is valid at `at` (the token's `iat`); the
/// leaf allows digital signatures; every issuer is a CA allowed to sign certificates. Returns
/// the leaf's public key, which must then verify the token.
pub fn validate(
    chain: &CertChain,
    anchor: &Certificate,
    at: SystemTime,
) -> Result<VerifyingKey, CertError> {
    let certs = &chain.certs;
    let anchor_der = anchor.to_der().ok();
    // A chain that includes the anchor itself ends there.
    let end = certs
        .iter()
        .position(|c| c.to_der().ok() == anchor_der)
        .unwrap_or(certs.len());
    if end == 0 {
        return Err(CertError::Malformed {
            index: 0,
            reason: "the leaf is the trust anchor itself".into(),
        });
    }
    for (i, c) in certs[..end].iter().enumerate() {
        check_validity(c, i, at)?;
        let issuer = certs[..end].get(i + 1).unwrap_or(anchor);
        if c.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            if i + 1 == end {
                return Err(CertError::UntrustedRoot {
                    anchor: subject(anchor),
                    issuer: c.tbs_certificate.issuer.to_string(),
                });
            }
            return Err(CertError::BadSignature {
                index: i,
                subject: subject(c),
            });
        }
        match verify_signed_by(c, i, issuer) {
            Err(CertError::BadSignature { .. }) if i + 1 == end => {
                return Err(CertError::UntrustedRoot {
                    anchor: subject(anchor),
                    issuer: c.tbs_certificate.issuer.to_string(),
                })
            }
            other => other?,
        }
        if i > 0 {
            check_ca(c, i)?;
        }
    }
    check_validity(anchor, end, at)?;
    if let Some(ku) = key_usage(&certs[0], 0)? {
        if !ku.digital_signature() {
            return Err(CertError::NoDigitalSignature);
        }
    }
    chain.leaf_key()
}

/// Reads trust anchors: every `CERTIFICATE` block of a PEM file's text (one root, or a bundle).
pub fn anchors_from_pem(pem: &[u8]) -> Result<Vec<Certificate>, String> {
    let certs =
        Certificate::load_pem_chain(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(certs)
}

/// A PKCS#10 certificate signing request (PEM `CERTIFICATE REQUEST`) for the operator's CA:
/// `subject` (an RFC 4514 string such as `CN=Revocation List Signer,O=Example`) and the key of
/// `signer`, self-signed by that key (in its token, for a PKCS#11 key).
pub fn csr_pem(subject: &str, signer: &crate::token::Signer) -> Result<String, CsrError> {
    use crate::token::{Algorithm, TokenSigner as _};
    use x509_cert::der::asn1::BitString;
    use x509_cert::der::EncodePem as _;
    use x509_cert::request::{CertReq, CertReqInfo, Version};
    use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
    let subject: x509_cert::name::Name = subject
        .parse()
        .map_err(|e| CsrError::Subject(format!("{subject:?}: {e}")))?;
    let public_key = SubjectPublicKeyInfoOwned::from_der(&signer.verifying_key().to_spki_der())
        .map_err(|e| CsrError::Encoding(e.to_string()))?;
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key,
        attributes: Default::default(),
    };
    let tbs = info
        .to_der()
        .map_err(|e| CsrError::Encoding(e.to_string()))?;
    let sig = signer.try_sign(&tbs)?;
    let oid = match signer.algorithm() {
        Algorithm::Es256 => ECDSA_SHA256,
        Algorithm::EdDsa => ED25519,
        Algorithm::Es384 => ECDSA_SHA384,
        Algorithm::Ps256 => RSASSA_PSS,
        Algorithm::Rs256 => SHA256_WITH_RSA,
    };
    let sig = signature_to_x509(signer.algorithm(), &sig)
        .map_err(|e| CsrError::Encoding(e.to_string()))?;
    let parameters = match signer.algorithm() {
        // RSASSA-PSS-params: SHA-256, MGF1 with SHA-256, salt 32 (RFC 4055 §3.1).
        Algorithm::Ps256 => Some(
            x509_cert::der::Any::from_der(&PSS_SHA256_PARAMS)
                .map_err(|e| CsrError::Encoding(e.to_string()))?,
        ),
        Algorithm::Rs256 => Some(x509_cert::der::asn1::Null.into()),
        _ => None,
    };
    let req = CertReq {
        info,
        algorithm: AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap(oid),
            parameters,
        },
        signature: BitString::from_bytes(&sig).map_err(|e| CsrError::Encoding(e.to_string()))?,
    };
    req.to_pem(x509_cert::der::pem::LineEnding::LF)
        .map_err(|e| CsrError::Encoding(e.to_string()))
}

/// Why a certificate signing request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("invalid subject {0} (expected e.g. CN=Revocation List Signer,O=Example)")]
    Subject(String),
    #[error("encoding the request: {0}")]
    Encoding(String),
    #[error(transparent)]
    Sign(#[from] crate::token::SignError),
}

/// X.509 carries an ECDSA signature as a DER `Ecdsa-Sig-Value`; JOSE, COSE and the signing keys
/// use the fixed-size `R‖S` form. Every other algorithm has one form, returned as it is.
fn signature_to_x509(
    alg: crate::token::Algorithm,
    sig: &[u8],
) -> Result<Vec<u8>, p256::ecdsa::Error> {
    use crate::token::Algorithm;
    Ok(match alg {
        Algorithm::Es256 => p256::ecdsa::Signature::from_slice(sig)?
            .to_der()
            .as_bytes()
            .to_vec(),
        Algorithm::Es384 => p384::ecdsa::Signature::from_slice(sig)?
            .to_der()
            .as_bytes()
            .to_vec(),
        Algorithm::EdDsa | Algorithm::Ps256 | Algorithm::Rs256 => sig.to_vec(),
    })
}

/// The inverse of [`signature_to_x509`]: the form [`VerifyingKey::verify`] takes.
fn signature_from_x509(
    alg: crate::token::Algorithm,
    sig: &[u8],
) -> Result<Vec<u8>, p256::ecdsa::Error> {
    use crate::token::Algorithm;
    Ok(match alg {
        Algorithm::Es256 => p256::ecdsa::Signature::from_der(sig)?.to_bytes().to_vec(),
        Algorithm::Es384 => p384::ecdsa::Signature::from_der(sig)?.to_bytes().to_vec(),
        Algorithm::EdDsa | Algorithm::Ps256 | Algorithm::Rs256 => sig.to_vec(),
    })
}

/// Seconds since the epoch, for the `notAfter` gauge.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[doc(hidden)]
pub mod test_pki {
    //! For tests only (unit and end-to-end): a throwaway PKI made with the openssl CLI at test
    //! time (root, intermediate, and leaves for a given public key), so no private key is ever
    //! committed.
    use std::path::{Path, PathBuf};
    use std::process::Command;

    pub struct Pki {
        pub dir: PathBuf,
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    const EXT: &str = "[req]\ndistinguished_name = dn\n[dn]\n[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n\
[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n\
[nosig]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, keyEncipherment\n";

    impl Pki {
        /// A root CA and an intermediate CA (P-256).
        #[allow(clippy::new_without_default)]
        pub fn new() -> Pki {
            let dir = std::env::temp_dir().join(format!(
                "statusd-pki-{}-{:x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("ext.cnf"), EXT).unwrap();
            let o = |a: &[&str]| openssl(&dir, a);
            // A P-256 key in `{name}.key`.
            let genkey = |name: &str| {
                let key = format!("{name}.key");
                o(&[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    &key,
                ]);
                key
            };
            // A P-256 key in `{name}.key` and a request for it with `subject` in `{name}.csr`.
            let request = |name: &str, subject: &str| {
                let (key, csr) = (genkey(name), format!("{name}.csr"));
                o(&[
                    "req", "-new", "-key", &key, "-subj", subject, "-out", &csr, "-config",
                    "ext.cnf",
                ]);
            };
            let root_key = genkey("root");
            o(&[
                "req",
                "-x509",
                "-new",
                "-key",
                &root_key,
                "-subj",
                "/CN=Test Root",
                "-days",
                "3650",
                "-out",
                "root.pem",
                "-config",
                "ext.cnf",
                "-extensions",
                "ca",
            ]);
            request("inter", "/CN=Test Intermediate");
            o(&[
                "x509",
                "-req",
                "-in",
                "inter.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-CAcreateserial",
                "-days",
                "1825",
                "-extfile",
                "ext.cnf",
                "-extensions",
                "ca",
                "-out",
                "inter.pem",
            ]);
            // Any request will do: -force_pubkey puts the signing key in the leaf.
            request("throwaway", "/CN=x");
            Pki { dir }
        }

        /// A leaf for `public_pem` (SPKI PEM) signed by the intermediate, with extensions
        /// section `ext` (`leaf` or `nosig`), valid for `days`; returns the chain file (leaf,
        /// intermediate).
        pub fn leaf(&self, name: &str, public_pem: &str, ext: &str, days: u32) -> PathBuf {
            let pub_file = format!("{name}.pub.pem");
            std::fs::write(self.dir.join(&pub_file), public_pem).unwrap();
            // The throwaway request's key is replaced by `public_pem`, its subject too.
            let key = [
                "-force_pubkey",
                &pub_file,
                "-subj",
                "/CN=Revocation List Signer",
            ];
            self.certify(name, "throwaway.csr", &key, ext, days)
        }

        /// The certificate request `csr` (a file in the PKI's directory) signed by the
        /// intermediate, with `extra` arguments to `openssl x509 -req`, extensions section
        /// `ext`, valid for `days`; returns the chain file `{name}.chain.pem` (leaf,
        /// intermediate).
        pub fn certify(
            &self,
            name: &str,
            csr: &str,
            extra: &[&str],
            ext: &str,
            days: u32,
        ) -> PathBuf {
            let leaf = format!("{name}.pem");
            let days = days.to_string();
            let mut args = vec!["x509", "-req", "-in", csr];
            args.extend_from_slice(extra);
            args.extend([
                "-CA",
                "inter.pem",
                "-CAkey",
                "inter.key",
                "-CAcreateserial",
                "-days",
                &days,
                "-extfile",
                "ext.cnf",
                "-extensions",
                ext,
                "-out",
                &leaf,
            ]);
            openssl(&self.dir, &args);
            let chain = self.dir.join(format!("{name}.chain.pem"));
            let text = std::fs::read_to_string(self.dir.join(&leaf)).unwrap()
                + &std::fs::read_to_string(self.dir.join("inter.pem")).unwrap();
            std::fs::write(&chain, text).unwrap();
            chain
        }

        pub fn root(&self) -> PathBuf {
            self.dir.join("root.pem")
        }

        pub fn intermediate(&self) -> PathBuf {
            self.dir.join("inter.pem")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_pki::Pki;
    use super::*;
    use crate::token::keys::{Algorithm, SigningKey};

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn leaf_checks_name_what_failed() {
        let pki = Pki::new();
        let key = SigningKey::generate(Algorithm::Es256);
        let public = key.verifying_key();
        let chain = CertChain::load(&pki.leaf("ok", &public.to_public_pem(), "leaf", 30)).unwrap();
        // After the certificate's notBefore (second precision, set as it was made).
        let now = SystemTime::now() + Duration::from_secs(1);
        assert_eq!(chain.der().len(), 2);
        chain.check_leaf(&public, DAY, now).unwrap();
        assert!(chain.not_after() > now + 29 * DAY);

        let other = SigningKey::generate(Algorithm::Es256).verifying_key();
        assert!(matches!(
            chain.check_leaf(&other, DAY, now),
            Err(CertError::OtherKey { .. })
        ));
        // Expired: checked at a time past notAfter.
        assert!(matches!(
            chain.check_leaf(&public, DAY, now + 40 * DAY),
            Err(CertError::ExpiresTooSoon { .. })
        ));
        let e = chain.check_leaf(&public, 31 * DAY, now).unwrap_err();
        assert!(matches!(e, CertError::ExpiresTooSoon { .. }), "{e}");
        assert!(e.to_string().contains("renew"), "{e}");
        assert!(matches!(
            chain.check_leaf(&public, DAY, now - 2 * DAY),
            Err(CertError::NotYetValid { .. })
        ));
        let nosig =
            CertChain::load(&pki.leaf("nosig", &public.to_public_pem(), "nosig", 30)).unwrap();
        assert!(matches!(
            nosig.check_leaf(&public, DAY, now),
            Err(CertError::NoDigitalSignature)
        ));
        assert!(matches!(
            CertChain::load(&pki.dir.join("missing.pem")),
            Err(CertError::Unreadable { .. })
        ));
        std::fs::write(pki.dir.join("junk.pem"), "junk").unwrap();
        assert!(matches!(
            CertChain::load(&pki.dir.join("junk.pem")),
            Err(CertError::Invalid { .. })
        ));
    }

    #[test]
    fn a_csr_is_self_signed_and_a_ca_certifies_its_key() {
        let pki = Pki::new();
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let key = SigningKey::generate(alg);
            let signer = crate::token::Signer::from(key.clone());
            let pem = csr_pem("CN=Revocation List Signer,O=Example", &signer).unwrap();
            assert!(
                pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
                "{pem}"
            );
            let path = pki.dir.join("req.pem");
            std::fs::write(&path, &pem).unwrap();
            // openssl checks the request's self-signature.
            let out = std::process::Command::new("openssl")
                .args([
                    "req",
                    "-in",
                    path.to_str().unwrap(),
                    "-verify",
                    "-noout",
                    "-subject",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("verify OK"), "{text}");
            assert!(text.contains("Revocation List Signer"), "{text}");
        }
        let signer = crate::token::Signer::from(SigningKey::generate(Algorithm::Es256));
        assert!(matches!(
            csr_pem("not a name", &signer),
            Err(CsrError::Subject(_))
        ));
    }

    #[test]
    fn validation_up_to_the_anchor() {
        let pki = Pki::new();
        let key = SigningKey::generate(Algorithm::Es256);
        let public = key.verifying_key();
        let chain = CertChain::load(&pki.leaf("ok", &public.to_public_pem(), "leaf", 30)).unwrap();
        let root = anchors_from_pem(&std::fs::read(pki.root()).unwrap())
            .unwrap()
            .remove(0);
        let now = SystemTime::now();
        assert_eq!(validate(&chain, &root, now).unwrap(), public);
        // Outside the leaf's validity.
        assert!(matches!(
            validate(&chain, &root, now + 60 * DAY),
            Err(CertError::OutsideValidity { index: 0, .. })
        ));
        // Another root.
        let other = Pki::new();
        let other_root = anchors_from_pem(&std::fs::read(other.root()).unwrap())
            .unwrap()
            .remove(0);
        assert!(matches!(
            validate(&chain, &other_root, now),
            Err(CertError::UntrustedRoot { .. })
        ));
        // The leaf without its intermediate does not reach the root.
        let leaf_only = CertChain::from_der(&chain.der()[..1]).unwrap();
        assert!(matches!(
            validate(&leaf_only, &root, now),
            Err(CertError::UntrustedRoot { .. })
        ));
        // A leaf whose signature was tampered with.
        let mut tampered = chain.der().to_vec();
        let n = tampered[0].len();
        tampered[0][n - 5] ^= 1;
        let tampered = CertChain::from_der(&tampered).unwrap();
        assert!(matches!(
            validate(&tampered, &root, now),
            Err(CertError::BadSignature { index: 0, .. })
        ));
    }
}
