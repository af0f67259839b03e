//! The signer abstraction: everything that signs a token (JWT, CWT, `vc+jwt`) goes through
//! [`TokenSigner`], whatever holds the private key.
//!
//! Two implementations: an in-memory [`SigningKey`] (tests, tools) and [`Signer`], what a
//! replica signs with: a key file's key or a key that never leaves a PKCS#11 token (reached
//! through [`ExternalSigner`]), with the certificate chain that vouches for it, if any. Signing
//! with a token can fail at any time (the HSM went away), so every signature is a `Result`; a
//! caller never publishes a token whose signature failed. Nothing here holds or prints a PIN.

use super::keys::{Algorithm, SigningKey, VerifyingKey};
use arc_swap::ArcSwap;
use std::fmt;
use std::sync::Arc;

/// A certificate chain as DER, leaf first; empty without one.
pub type Chain = Arc<[Vec<u8>]>;

/// Why a signature could not be made. Carries the backend's reason, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// What signs a token: its algorithm and `kid` for the header, the certificate chain (DER, leaf
/// first) for `x5c` / `x5chain`, and the signature itself in the JOSE/COSE form (ECDSA as the
/// fixed-size `R‖S`).
pub trait TokenSigner {
    fn algorithm(&self) -> Algorithm;
    fn kid(&self) -> &str;
    /// The certificate chain, leaf first, as DER; empty without one. A handle rather than a
    /// borrow: a replica's chain can be replaced while it runs (SIGHUP).
    fn x5c(&self) -> Chain {
        Arc::from(Vec::new())
    }
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError>;
}

impl TokenSigner for SigningKey {
    fn algorithm(&self) -> Algorithm {
        SigningKey::algorithm(self)
    }

    fn kid(&self) -> &str {
        SigningKey::kid(self)
    }

    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self.sign(msg))
    }
}

/// A private key held elsewhere (a PKCS#11 token): signs `msg` with the key's algorithm and
/// returns the JOSE/COSE form of the signature.
pub trait ExternalSigner: Send + Sync {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError>;
}

#[derive(Clone)]
enum Backend {
    Key(Box<SigningKey>),
    External(Arc<dyn ExternalSigner>),
}

/// The key a replica signs with, and the certificate chain published with it.
///
/// Clones share the chain: [`Signer::set_chain`] (a SIGHUP reload of `STATUSD_SIGNING_CERT`)
/// reaches every holder, and the next token signed carries the new chain.
#[derive(Clone)]
pub struct Signer {
    backend: Backend,
    /// The public half without a chain: what the leaf certificate must certify.
    public: VerifyingKey,
    certified: Arc<ArcSwap<Certified>>,
}

/// The chain in force and the public key as published with it (its JWK's `x5c`).
struct Certified {
    chain: Chain,
    public: VerifyingKey,
}

impl Certified {
    fn new(public: &VerifyingKey, chain: Vec<Vec<u8>>) -> Arc<Self> {
        Arc::new(Certified {
            public: public.clone().with_x5c(chain.clone()),
            chain: chain.into(),
        })
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.public.algorithm().jose_name())
            .field("kid", &self.public.kid())
            .field(
                "backend",
                &match self.backend {
                    Backend::Key(_) => "key",
                    Backend::External(_) => "external",
                },
            )
            .field("certificates", &self.certified.load().chain.len())
            .finish_non_exhaustive()
    }
}

impl From<SigningKey> for Signer {
    fn from(key: SigningKey) -> Self {
        let public = key.verifying_key();
        Signer {
            certified: Arc::new(ArcSwap::new(Certified::new(&public, Vec::new()))),
            backend: Backend::Key(Box::new(key)),
            public,
        }
    }
}

impl Signer {
    /// A key held by `backend`, whose public half is `public` (with the `kid` to sign under).
    pub fn external(public: VerifyingKey, backend: Arc<dyn ExternalSigner>) -> Self {
        Signer {
            certified: Arc::new(ArcSwap::new(Certified::new(&public, Vec::new()))),
            backend: Backend::External(backend),
            public,
        }
    }

    /// The same key with a certificate chain (DER, leaf first) to publish in token headers.
    /// The caller has checked that the leaf certifies this key.
    pub fn with_chain(self, chain: Vec<Vec<u8>>) -> Self {
        self.set_chain(chain);
        self
    }

    /// Replaces the chain for every clone of this signer: tokens signed from now on carry it.
    /// The caller has checked that the new leaf certifies this key.
    pub fn set_chain(&self, chain: Vec<Vec<u8>>) {
        self.certified.store(Certified::new(&self.public, chain));
    }

    /// The public half, with the `kid` tokens carry and the chain in force as its `x5c`.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.certified.load().public.clone()
    }
}

impl TokenSigner for Signer {
    fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    fn kid(&self) -> &str {
        self.public.kid()
    }

    fn x5c(&self) -> Chain {
        self.certified.load().chain.clone()
    }

    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.backend {
            Backend::Key(k) => Ok(k.sign(msg)),
            Backend::External(e) => {
                let sig = e.sign(msg)?;
                // A token that answers with a wrong signature (another key behind the label, a
                // faulty module) must never reach a verifier.
                self.public.verify(msg, &sig).map_err(|_| {
                    SignError(
                        "the token's signature does not verify under the loaded public key".into(),
                    )
                })?;
                Ok(sig)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Broken;
    impl ExternalSigner for Broken {
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, SignError> {
            Err(SignError("token removed".into()))
        }
    }

    struct Other(SigningKey);
    impl ExternalSigner for Other {
        fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
            Ok(self.0.sign(msg))
        }
    }

    #[test]
    fn external_signatures_are_checked_before_use() {
        let key = SigningKey::generate(Algorithm::Es256);
        let s = Signer::external(key.verifying_key(), Arc::new(Other(key.clone())));
        let sig = s.try_sign(b"m").unwrap();
        key.verifying_key().verify(b"m", &sig).unwrap();
        assert_eq!(s.kid(), key.kid());

        let wrong = Signer::external(
            key.verifying_key(),
            Arc::new(Other(SigningKey::generate(Algorithm::Es256))),
        );
        assert!(wrong
            .try_sign(b"m")
            .unwrap_err()
            .0
            .contains("does not verify"));
        let broken = Signer::external(key.verifying_key(), Arc::new(Broken));
        assert_eq!(
            broken.try_sign(b"m"),
            Err(SignError("token removed".into()))
        );
        assert!(format!("{broken:?}").contains("external"));
    }
}
