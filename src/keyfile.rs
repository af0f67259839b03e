//! The signing key file, read at start and checked again before every signing pass; and
//! [`KeyWatch`], which does the same for whatever holds the key (file or PKCS#11 token).
//!
//! statusd signs with the key it loaded at start. If its file later becomes unreadable, stops
//! parsing or holds another key, the operator's key handling has gone wrong (a lost volume, a
//! half-done rotation): [`KeyWatch`] then pauses signing, so the replica keeps serving what it
//! signed (the refresher keeps those artefacts from being cached past `exp`) until the file
//! reads back with the same key. Rotation is a restart (docs/operations.md). Nothing here logs
//! or returns key material: errors name the path and, for another key, the two `kid`s.

use crate::cert::CertChain;
use crate::metrics::Metrics;
use crate::pkcs11::{Pkcs11Error, Pkcs11Key};
use crate::token::keys::{SigningKey, VerifyingKey};
use crate::token::{KeyError, SignError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why the key file cannot be used to sign.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("reading signing key {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing signing key {}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("signing key {} now holds another key (kid {found}) than the one loaded at start (kid {loaded}); rotating the key takes a restart", path.display())]
    Replaced {
        path: PathBuf,
        found: String,
        loaded: String,
    },
}

fn read_pem(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError::Unreadable {
        path: path.to_owned(),
        source,
    })
}

fn parse(path: &Path, pem: &str) -> Result<SigningKey, KeyFileError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|source| KeyFileError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// A key file and what was loaded from it. Not `Debug`: nothing about the file is logged but
/// its path.
#[derive(Clone)]
pub struct KeyFile {
    path: PathBuf,
    /// The public half of the key loaded at start.
    loaded: VerifyingKey,
    /// SHA-256 of the file as read at start: the same bytes need no parsing on later checks.
    digest: [u8; 32],
}

impl KeyFile {
    /// Reads the signing key at `path`.
    pub fn open(path: PathBuf) -> Result<(SigningKey, KeyFile), KeyFileError> {
        let pem = read_pem(&path)?;
        let key = parse(&path, &pem)?;
        let file = KeyFile {
            loaded: key.verifying_key(),
            digest: Sha256::digest(&pem).into(),
            path,
        };
        Ok((key, file))
    }

    /// Whether the file still holds the loaded key (same public key and `kid`). Blocking I/O.
    pub fn check(&self) -> Result<(), KeyFileError> {
        let pem = read_pem(&self.path)?;
        if Sha256::digest(&pem)[..] == self.digest {
            return Ok(());
        }
        // An RSA key signs with the algorithm chosen at start (`--signing-alg`).
        let found = parse(&self.path, &pem)?
            .with_rsa_algorithm(self.loaded.algorithm())
            .verifying_key();
        if found != self.loaded {
            return Err(KeyFileError::Replaced {
                path: self.path.clone(),
                found: found.kid().to_owned(),
                loaded: self.loaded.kid().to_owned(),
            });
        }
        Ok(())
    }
}

/// Where the signing key lives, checked before every signing pass.
#[derive(Clone)]
pub enum KeySource {
    File(Box<KeyFile>),
    Pkcs11(Arc<Pkcs11Key>),
}

/// Why signing is paused.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error(transparent)]
    File(#[from] KeyFileError),
    #[error(transparent)]
    Pkcs11(#[from] Pkcs11Error),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("signing certificate: {0}")]
    Certificate(#[from] crate::cert::CertError),
    /// The check itself panicked: as good as unreadable.
    #[error("the signing key check failed: {0}")]
    Panicked(String),
}

impl KeySource {
    /// Whether the source still holds the loaded key and (for a token) signs. Blocking I/O.
    pub fn check(&self) -> Result<(), KeyCheckError> {
        match self {
            KeySource::File(f) => Ok(f.check()?),
            KeySource::Pkcs11(k) => Ok(k.check()?),
        }
    }
}

/// Whether signing may proceed: the outcome of the last check of the key's source (and of the
/// last signature) and, when given one, the clock's verdict ([`crate::clock`]); for the key, the
/// `statusd_signing_key_ok` gauge, the error counter and one log line per transition.
pub struct KeyWatch {
    /// `None` when the key was given in memory (tests that build a refresher directly).
    source: Option<KeySource>,
    /// The signing key's certificate chain, its key and the token lifetime: the leaf must hold
    /// the key and outlive every token signed now ([`CertChain::check_leaf`]). Replaced whole
    /// by a reload ([`KeyWatch::set_certificate`]).
    cert: arc_swap::ArcSwapOption<CertCheck>,
    /// This replica's clock against the store's: signing also pauses while it is too far off.
    clock: Option<Arc<crate::clock::ClockWatch>>,
    ok: AtomicBool,
}

/// What [`KeyWatch`] checks of the certificate before every signing pass.
struct CertCheck {
    chain: Arc<CertChain>,
    key: VerifyingKey,
    lifetime: std::time::Duration,
}

impl KeyWatch {
    pub fn new(source: Option<KeySource>) -> KeyWatch {
        KeyWatch {
            source,
            cert: arc_swap::ArcSwapOption::empty(),
            clock: None,
            ok: AtomicBool::new(true),
        }
    }

    /// Also checks, before every pass, that `chain`'s leaf certifies `key` for `lifetime`.
    pub fn with_certificate(
        self,
        chain: Arc<CertChain>,
        key: VerifyingKey,
        lifetime: std::time::Duration,
    ) -> KeyWatch {
        self.cert.store(Some(Arc::new(CertCheck {
            chain,
            key,
            lifetime,
        })));
        self
    }

    /// Whether `chain` could replace the certificate in force (a SIGHUP reload): its leaf
    /// certifies the signing key and outlives a token signed `now`. `Ok(false)` when statusd
    /// started without a certificate (there is nothing to replace).
    pub fn check_certificate(
        &self,
        chain: &CertChain,
        now: std::time::SystemTime,
    ) -> Result<bool, crate::cert::CertError> {
        match &*self.cert.load() {
            None => Ok(false),
            Some(c) => chain.check_leaf(&c.key, c.lifetime, now).map(|()| true),
        }
    }

    /// Puts `chain`, checked by [`Self::check_certificate`], in force from the next pass.
    pub fn set_certificate(&self, chain: Arc<CertChain>) {
        let current = self.cert.load_full();
        if let Some(c) = current {
            self.cert.store(Some(Arc::new(CertCheck {
                chain,
                key: c.key.clone(),
                lifetime: c.lifetime,
            })));
        }
    }

    /// Also pauses signing while `clock` says this replica's clock is too far off the store's
    /// (the key's gauge and error counter are left alone: the key is fine).
    pub fn with_clock(mut self, clock: Arc<crate::clock::ClockWatch>) -> KeyWatch {
        self.clock = Some(clock);
        self
    }

    fn clock_ok(&self) -> bool {
        self.clock.as_ref().is_none_or(|c| c.may_sign())
    }

    /// A signature failed while building artefacts (the token went away between two checks):
    /// signing pauses until the next check passes.
    pub fn sign_failed(&self, e: &SignError, metrics: &Metrics) {
        self.record(Err(KeyCheckError::Sign(e.clone())), metrics);
    }

    /// The outcome of the last check: false while signing is paused.
    pub fn is_ok(&self) -> bool {
        self.ok.load(Ordering::Relaxed) && self.clock_ok()
    }

    /// Checks the key file on the blocking pool and records the outcome. Returns whether this
    /// pass may sign.
    pub async fn may_sign(&self, metrics: &Metrics) -> bool {
        self.key_may_sign(metrics).await && self.clock_ok()
    }

    async fn key_may_sign(&self, metrics: &Metrics) -> bool {
        let cert = self.cert.load_full();
        if self.source.is_none() && cert.is_none() {
            return true;
        }
        let source = self.source.clone();
        let check = move || -> Result<(), KeyCheckError> {
            if let Some(source) = source {
                source.check()?;
            }
            if let Some(c) = cert {
                c.chain
                    .check_leaf(&c.key, c.lifetime, std::time::SystemTime::now())?;
            }
            Ok(())
        };
        let checked = match tokio::task::spawn_blocking(check).await {
            Ok(checked) => checked,
            Err(e) => Err(KeyCheckError::Panicked(e.to_string())),
        };
        self.record(checked, metrics)
    }

    fn record(&self, checked: Result<(), KeyCheckError>, metrics: &Metrics) -> bool {
        let ok = checked.is_ok();
        let was_ok = self.ok.swap(ok, Ordering::Relaxed);
        metrics.signing_key_ok.set(i64::from(ok));
        match checked {
            Ok(()) if !was_ok => {
                tracing::info!("the signing key is usable again; signing resumes");
            }
            Ok(()) => {}
            Err(e) => {
                metrics.signing_key_errors.inc();
                if was_ok {
                    tracing::error!(error = %error_chain(&e), "signing paused: serving the last signed lists until the signing key is usable again");
                }
            }
        }
        ok
    }
}

/// `e` and its causes on one line (the I/O, PEM or PKCS#11 reason, never key material).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::keys::Algorithm;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Dir {
        let p = std::env::temp_dir().join(format!(
            "statusd-keyfile-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    #[test]
    fn check_tells_missing_garbage_and_another_key_apart() {
        let d = dir();
        let path = d.0.join("key.pem");
        let key = SigningKey::generate(Algorithm::Es256);
        std::fs::write(&path, key.to_pkcs8_pem()).unwrap();
        let (loaded, file) = KeyFile::open(path.clone()).unwrap();
        assert_eq!(loaded.kid(), key.kid());
        file.check().unwrap();

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(file.check(), Err(KeyFileError::Unreadable { .. })));
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(file.check(), Err(KeyFileError::Unreadable { .. })));
        std::fs::remove_dir(&path).unwrap();

        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(file.check(), Err(KeyFileError::Invalid { .. })));

        let other = SigningKey::generate(Algorithm::Es256);
        std::fs::write(&path, other.to_pkcs8_pem()).unwrap();
        let err = file.check().unwrap_err();
        assert!(matches!(err, KeyFileError::Replaced { .. }));
        assert!(err.to_string().contains(other.kid()), "{err}");

        std::fs::write(&path, key.to_pkcs8_pem()).unwrap();
        file.check().unwrap();
        // The same key in other bytes (CRLF line endings) is the same key.
        std::fs::write(&path, key.to_pkcs8_pem().replace('\n', "\r\n")).unwrap();
        file.check().unwrap();
    }

    #[test]
    fn watch_records_the_gauge_and_counts_each_failed_check() {
        let metrics = Metrics::new();
        let watch = KeyWatch::new(None);
        let unreadable = || {
            Err(KeyFileError::Unreadable {
                path: "k.pem".into(),
                source: std::io::ErrorKind::NotFound.into(),
            }
            .into())
        };
        assert!(watch.record(Ok(()), &metrics));
        assert_eq!(metrics.signing_key_ok.get(), 1);
        assert!(!watch.record(unreadable(), &metrics));
        assert!(!watch.record(unreadable(), &metrics));
        assert_eq!(metrics.signing_key_ok.get(), 0);
        assert_eq!(metrics.signing_key_errors.get(), 2);
        assert!(watch.record(Ok(()), &metrics));
        assert_eq!(metrics.signing_key_ok.get(), 1);
        // A failed signature pauses signing like a failed check.
        watch.sign_failed(&SignError("token removed".into()), &metrics);
        assert!(!watch.is_ok());
        assert_eq!(metrics.signing_key_ok.get(), 0);
        assert_eq!(metrics.signing_key_errors.get(), 3);
    }

    #[tokio::test]
    async fn a_certificate_that_no_longer_outlives_the_tokens_pauses_signing() {
        let pki = crate::cert::test_pki::Pki::new();
        let key = SigningKey::generate(Algorithm::Es256).verifying_key();
        let chain =
            crate::cert::CertChain::load(&pki.leaf("k", &key.to_public_pem(), "leaf", 2)).unwrap();
        let chain = Arc::new(chain);
        let metrics = Metrics::new();
        let day = std::time::Duration::from_secs(86_400);
        let watch = KeyWatch::new(None).with_certificate(chain.clone(), key.clone(), day);
        assert!(watch.may_sign(&metrics).await);
        // Tokens that would outlive the certificate: paused.
        let watch = KeyWatch::new(None).with_certificate(chain.clone(), key.clone(), 3 * day);
        assert!(!watch.may_sign(&metrics).await);
        assert_eq!(metrics.signing_key_ok.get(), 0);
        let other = SigningKey::generate(Algorithm::Es256).verifying_key();
        let watch = KeyWatch::new(None).with_certificate(chain, other, day);
        assert!(!watch.may_sign(&metrics).await);
    }
}
