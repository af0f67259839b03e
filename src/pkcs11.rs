//! Signing keys that live in a PKCS#11 token (an HSM; SoftHSM2 in tests).
//!
//! Owns the RFC 7512 URI statusd is given (`pkcs11:token=…;object=…[;id=…]`), the PIN file, and
//! [`Pkcs11Key`]: a logged-in session on the token and the handle of the private key, which
//! signs without ever leaving it (the key is only ever named, never read: `CKA_EXTRACTABLE`
//! false works). ES256 and ES384 are `CKM_ECDSA` over the SHA-256 / SHA-384 digest, whose
//! output is already the fixed-size `R‖S` JOSE and COSE want; Ed25519 is `CKM_EDDSA`; an RSA
//! key signs PS256 through `CKM_SHA256_RSA_PKCS_PSS` (MGF1-SHA-256, 32-byte salt).
//!
//! A token can fail at any time (module error, session lost, token removed, PIN changed): the
//! failing call drops the session and finalises the module, and the next [`Pkcs11Key::check`]
//! (before every signing pass) initialises it again, finds the token, logs in and finds the key,
//! so signing resumes by itself once the token is back. Nothing here logs or returns the PIN.

use crate::token::keys::{Algorithm, VerifyingKey};
use crate::token::{ExternalSigner, KeyError, SignError};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The scheme prefix that tells a PKCS#11 URI from a key file path.
pub const URI_SCHEME: &str = "pkcs11:";

/// Why a PKCS#11 key cannot be used. Never carries the PIN.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error("invalid PKCS#11 URI: {0}")]
    Uri(String),
    #[error("reading the PKCS#11 PIN file {}", path.display())]
    PinUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the PKCS#11 PIN file {} is readable by every user (mode {mode:o}); make it readable by statusd only (chmod 600)", path.display())]
    PinWorldReadable { path: PathBuf, mode: u32 },
    #[error("the PKCS#11 PIN file {} is empty", path.display())]
    PinEmpty { path: PathBuf },
    #[error("PKCS#11 module {}: {what}", module.display())]
    Module {
        module: PathBuf,
        what: String,
        #[source]
        source: cryptoki::error::Error,
    },
    #[error("no token labelled {0:?} in the PKCS#11 module's slots")]
    NoToken(String),
    #[error("logging in to token {token:?} failed (wrong PIN?)")]
    Login {
        token: String,
        #[source]
        source: cryptoki::error::Error,
    },
    #[error("no private key {object:?} on token {token:?}")]
    NoKey { token: String, object: String },
    #[error("{count} private keys match {object:?} on token {token:?}; add id= to the URI")]
    AmbiguousKey {
        token: String,
        object: String,
        count: usize,
    },
    #[error("key {object:?}: {reason}")]
    UnsupportedKey { object: String, reason: String },
    #[error("key {object:?}: its public key")]
    PublicKey {
        object: String,
        #[source]
        source: KeyError,
    },
    #[error("key {object:?} on token {token:?} now holds another key (kid {found}) than the one loaded at start (kid {loaded}); rotating the key takes a restart")]
    Replaced {
        token: String,
        object: String,
        found: String,
        loaded: String,
    },
    #[error("the token's test signature does not verify under the loaded public key")]
    BadSignature,
}

/// An RFC 7512 PKCS#11 URI naming a private key: token label and object label, optionally the
/// object id. Other path attributes (`type`, `manufacturer`, `model`, `serial`, `library-*`)
/// are accepted and not matched; a query (`?pin-value=…`) is refused: the PIN comes from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: String,
    pub object: String,
    pub id: Option<Vec<u8>>,
}

impl Pkcs11Uri {
    /// Whether `s` is a PKCS#11 URI rather than a file path.
    pub fn is_uri(s: &str) -> bool {
        s.get(..URI_SCHEME.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(URI_SCHEME))
    }

    pub fn parse(s: &str) -> Result<Pkcs11Uri, Pkcs11Error> {
        let bad = |m: String| Pkcs11Error::Uri(m);
        if !Self::is_uri(s) {
            return Err(bad(format!("{s:?} does not start with {URI_SCHEME}")));
        }
        let rest = &s[URI_SCHEME.len()..];
        if rest.contains('?') {
            return Err(bad(
                "query attributes (pin-value, pin-source, module-path) are not accepted: give \
                 the PIN with STATUSD_PKCS11_PIN_FILE and the module with STATUSD_PKCS11_MODULE"
                    .into(),
            ));
        }
        let (mut token, mut object, mut id) = (None, None, None);
        for attr in rest.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| bad(format!("attribute {attr:?} has no '='")))?;
            let value = percent_decode(value).map_err(bad)?;
            let text = || {
                String::from_utf8(value.clone()).map_err(|_| bad(format!("{name} is not UTF-8")))
            };
            let slot = match name {
                "token" => {
                    token = Some(text()?);
                    continue;
                }
                "object" => {
                    object = Some(text()?);
                    continue;
                }
                "id" => &mut id,
                "type" => {
                    if value != b"private" {
                        return Err(bad(format!(
                            "type={} does not name a private key",
                            String::from_utf8_lossy(&value)
                        )));
                    }
                    continue;
                }
                "manufacturer"
                | "model"
                | "serial"
                | "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer"
                | "slot-id" => continue,
                other => return Err(bad(format!("unknown attribute {other:?}"))),
            };
            *slot = Some(value);
        }
        Ok(Pkcs11Uri {
            token: token.ok_or_else(|| bad("token= is required".into()))?,
            object: object.ok_or_else(|| bad("object= is required".into()))?,
            id,
        })
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pkcs11:token={};object={}",
            percent_encode(&self.token),
            percent_encode(&self.object)
        )?;
        if let Some(id) = &self.id {
            f.write_str(";id=")?;
            for b in id {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// RFC 7512 §2.3: everything but unreserved characters and a few safe ones percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,=&".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Reads the user PIN from `path`: one line (a trailing newline is dropped). A file that every
/// user may read is refused, so a PIN never sits where anyone on the host can see it.
pub fn read_pin_file(path: &Path) -> Result<AuthPin, Pkcs11Error> {
    read_pin_text(path).map(AuthPin::from)
}

fn read_pin_text(path: &Path) -> Result<String, Pkcs11Error> {
    let unreadable = |source| Pkcs11Error::PinUnreadable {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o004 != 0 {
            return Err(Pkcs11Error::PinWorldReadable {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let pin = text.strip_suffix('\n').unwrap_or(&text);
    let pin = pin.strip_suffix('\r').unwrap_or(pin);
    if pin.is_empty() {
        return Err(Pkcs11Error::PinEmpty {
            path: path.to_owned(),
        });
    }
    Ok(pin.to_owned())
}

/// A logged-in session and the key's handle in it. The session is dropped before the module
/// is finalised ([`close`]).
struct Live {
    session: Session,
    key: ObjectHandle,
    ctx: Pkcs11,
}

fn close(live: Live) {
    let Live { session, ctx, .. } = live;
    drop(session);
    if let Err(e) = ctx.finalize() {
        tracing::debug!(error = %e, "finalising the PKCS#11 module");
    }
}

/// A private key in a PKCS#11 token, with the public key read at start. Not `Debug` beyond its
/// names: the PIN stays inside.
pub struct Pkcs11Key {
    module: PathBuf,
    uri: Pkcs11Uri,
    pin: AuthPin,
    public: VerifyingKey,
    live: Mutex<Option<Live>>,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("module", &self.module)
            .field("uri", &self.uri.to_string())
            .field("kid", &self.public.kid())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    /// Loads `module`, logs in to the token `uri` names with `pin`, finds the private key and
    /// reads its public half (from the matching public key object).
    pub fn open(module: PathBuf, uri: Pkcs11Uri, pin: AuthPin) -> Result<Pkcs11Key, Pkcs11Error> {
        let (live, public) = connect(&module, &uri, &pin)?;
        let key = Pkcs11Key {
            module,
            uri,
            pin,
            public,
            live: Mutex::new(Some(live)),
        };
        key.probe()?;
        Ok(key)
    }

    /// An RSA key signs `alg` (PS256, the default, or RS256); other keys are unchanged.
    pub fn with_rsa_algorithm(mut self, alg: Algorithm) -> Pkcs11Key {
        self.public = self.public.with_rsa_algorithm(alg);
        self
    }

    /// The public key (its `kid` the RFC 7638 thumbprint).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The URI the key was opened with.
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    /// Whether the token still signs with the loaded key: reconnects (initialise, find the
    /// token, log in, find the key) if the last call failed, checks that the key is the one
    /// loaded at start, and signs and verifies a probe. Blocking.
    pub fn check(&self) -> Result<(), Pkcs11Error> {
        {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            if live.is_none() {
                let (fresh, public) = connect(&self.module, &self.uri, &self.pin)?;
                let public = public.with_rsa_algorithm(self.public.algorithm());
                if public != self.public {
                    close(fresh);
                    return Err(Pkcs11Error::Replaced {
                        token: self.uri.token.clone(),
                        object: self.uri.object.clone(),
                        found: public.kid().to_owned(),
                        loaded: self.public.kid().to_owned(),
                    });
                }
                *live = Some(fresh);
            }
        }
        self.probe()
    }

    fn probe(&self) -> Result<(), Pkcs11Error> {
        let msg = b"statusd key check";
        let sig = self.sign_raw(msg).map_err(|e| match e {
            Failure::Token(e) => e,
            Failure::Down => Pkcs11Error::NoToken(self.uri.token.clone()),
        })?;
        self.public
            .verify(msg, &sig)
            .map_err(|_| Pkcs11Error::BadSignature)
    }

    fn sign_raw(&self, msg: &[u8]) -> Result<Vec<u8>, Failure> {
        let mut guard = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let live = guard.as_ref().ok_or(Failure::Down)?;
        let (mechanism, input) = match self.public.algorithm() {
            Algorithm::Es256 => (Mechanism::Ecdsa, Sha256::digest(msg).to_vec()),
            Algorithm::Es384 => (Mechanism::Ecdsa, sha2::Sha384::digest(msg).to_vec()),
            // RFC 7518 §3.5: MGF1 with SHA-256 and a salt as long as the hash.
            Algorithm::Ps256 => (
                Mechanism::Sha256RsaPkcsPss(cryptoki::mechanism::rsa::PkcsPssParams {
                    hash_alg: cryptoki::mechanism::MechanismType::SHA256,
                    mgf: cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                }),
                msg.to_vec(),
            ),
            Algorithm::Rs256 => (Mechanism::Sha256RsaPkcs, msg.to_vec()),
            Algorithm::EdDsa => (
                Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
                    cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
                )),
                msg.to_vec(),
            ),
        };
        match live.session.sign(&mechanism, live.key, &input) {
            Ok(sig) => Ok(sig),
            Err(source) => {
                // Whatever broke (session, token, module), start over on the next check.
                if let Some(live) = guard.take() {
                    close(live);
                }
                Err(Failure::Token(Pkcs11Error::Module {
                    module: self.module.clone(),
                    what: format!("signing with {}", self.uri),
                    source,
                }))
            }
        }
    }
}

enum Failure {
    /// Not connected: the last call failed and no check has reconnected since.
    Down,
    Token(Pkcs11Error),
}

impl ExternalSigner for Pkcs11Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_raw(msg).map_err(|e| match e {
            Failure::Down => SignError(format!(
                "PKCS#11 token {:?} unavailable since its last failure",
                self.uri.token
            )),
            Failure::Token(e) => SignError(crate::keyfile::error_chain(&e)),
        })
    }
}

fn module_error(module: &Path, what: &str) -> impl FnOnce(cryptoki::error::Error) -> Pkcs11Error {
    let module = module.to_owned();
    let what = what.to_owned();
    move |source| Pkcs11Error::Module {
        module,
        what,
        source,
    }
}

/// Initialises the module, opens a session on the token, logs in and finds the key.
fn connect(
    module: &Path,
    uri: &Pkcs11Uri,
    pin: &AuthPin,
) -> Result<(Live, VerifyingKey), Pkcs11Error> {
    let ctx = Pkcs11::new(module).map_err(module_error(module, "loading"))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(module_error(module, "initialising"))?;
    match open_session(&ctx, module, uri, pin) {
        Ok((session, key, public)) => Ok((Live { session, key, ctx }, public)),
        Err(e) => {
            if let Err(fe) = ctx.finalize() {
                tracing::debug!(error = %fe, "finalising the PKCS#11 module");
            }
            Err(e)
        }
    }
}

fn open_session(
    ctx: &Pkcs11,
    module: &Path,
    uri: &Pkcs11Uri,
    pin: &AuthPin,
) -> Result<(Session, ObjectHandle, VerifyingKey), Pkcs11Error> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(module_error(module, "listing slots"))?;
    let mut slot = None;
    for s in slots {
        let info = ctx
            .get_token_info(s)
            .map_err(module_error(module, "reading token info"))?;
        if info.label().trim_end() == uri.token {
            slot = Some(s);
            break;
        }
    }
    let slot = slot.ok_or_else(|| Pkcs11Error::NoToken(uri.token.clone()))?;
    let session = ctx
        .open_ro_session(slot)
        .map_err(module_error(module, "opening a session"))?;
    match session.login(UserType::User, Some(pin)) {
        Ok(()) => {}
        // Another session of this process is logged in already: the login is per token.
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(source) => {
            return Err(Pkcs11Error::Login {
                token: uri.token.clone(),
                source,
            })
        }
    }
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Label(uri.object.as_bytes().to_vec()),
    ];
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let found = session
        .find_objects(&template)
        .map_err(module_error(module, "finding the key"))?;
    let key = match found.as_slice() {
        [key] => *key,
        [] => {
            return Err(Pkcs11Error::NoKey {
                token: uri.token.clone(),
                object: uri.object.clone(),
            })
        }
        many => {
            return Err(Pkcs11Error::AmbiguousKey {
                token: uri.token.clone(),
                object: uri.object.clone(),
                count: many.len(),
            })
        }
    };
    let public = public_key(&session, module, uri, key)?;
    Ok((session, key, public))
}

/// The public half of `key`: from the public key object with the same label (and id), as
/// pkcs11-tool and every HSM's key generation leave it.
fn public_key(
    session: &Session,
    module: &Path,
    uri: &Pkcs11Uri,
    key: ObjectHandle,
) -> Result<VerifyingKey, Pkcs11Error> {
    let unsupported = |reason: &str| Pkcs11Error::UnsupportedKey {
        object: uri.object.clone(),
        reason: reason.to_owned(),
    };
    let attrs = session
        .get_attributes(key, &[AttributeType::KeyType, AttributeType::Id])
        .map_err(module_error(module, "reading the key's attributes"))?;
    let mut key_type = None;
    let mut id = uri.id.clone();
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Id(i) if id.is_none() && !i.is_empty() => id = Some(i),
            _ => {}
        }
    }
    let key_type = key_type.ok_or_else(|| unsupported("no CKA_KEY_TYPE"))?;
    let public_error = |source| Pkcs11Error::PublicKey {
        object: uri.object.clone(),
        source,
    };
    if key_type == KeyType::RSA {
        // The private key object carries the modulus and public exponent (PKCS#11 §2.1.3).
        let (mut n, mut e) = (None, None);
        for a in session
            .get_attributes(
                key,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )
            .map_err(module_error(module, "reading the RSA public key"))?
        {
            match a {
                Attribute::Modulus(v) => n = Some(v),
                Attribute::PublicExponent(v) => e = Some(v),
                _ => {}
            }
        }
        let (Some(n), Some(e)) = (n, e) else {
            return Err(unsupported("no CKA_MODULUS / CKA_PUBLIC_EXPONENT"));
        };
        // PS256: the RSA algorithm RFC 7518 recommends; RS256 is not selectable yet.
        return VerifyingKey::from_rsa_components(&n, &e, Algorithm::Ps256).map_err(public_error);
    }
    let mut template = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Label(uri.object.as_bytes().to_vec()),
    ];
    if let Some(id) = id {
        template.push(Attribute::Id(id));
    }
    let found = session
        .find_objects(&template)
        .map_err(module_error(module, "finding the public key"))?;
    let [public] = found.as_slice() else {
        return Err(unsupported(&format!(
            "expected one public key object with the same label, found {}",
            found.len()
        )));
    };
    let point = session
        .get_attributes(*public, &[AttributeType::EcPoint])
        .map_err(module_error(module, "reading the public key"))?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| unsupported("the public key object has no CKA_EC_POINT"))?;
    let point = unwrap_octet_string(&point);
    let public = if key_type == KeyType::EC {
        // The curve shows in the point's length (uncompressed or compressed SEC1).
        match point.len() {
            65 | 33 => VerifyingKey::from_p256_sec1(point),
            97 | 49 => VerifyingKey::from_p384_sec1(point),
            n => {
                return Err(unsupported(&format!(
                    "an EC point of {n} bytes is neither P-256 nor P-384"
                )))
            }
        }
    } else if key_type == KeyType::EC_EDWARDS {
        VerifyingKey::from_ed25519_bytes(point)
    } else {
        return Err(unsupported(&format!(
            "key type {key_type} is not supported"
        )));
    };
    public.map_err(public_error)
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (PKCS#11 2.40 §2.3.3); some modules
/// give the bare point. Short-form lengths only: a point of P-256 or Ed25519 is under 128 bytes.
fn unwrap_octet_string(v: &[u8]) -> &[u8] {
    match v {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => rest,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parsing() {
        let u = Pkcs11Uri::parse("pkcs11:token=statusd;object=list-signer").unwrap();
        assert_eq!(
            u,
            Pkcs11Uri {
                token: "statusd".into(),
                object: "list-signer".into(),
                id: None
            }
        );
        let u = Pkcs11Uri::parse(
            "PKCS11:token=Nat%20ID;object=signer%3b2;id=%01%A0;type=private;serial=42",
        )
        .unwrap();
        assert_eq!(u.token, "Nat ID");
        assert_eq!(u.object, "signer;2");
        assert_eq!(u.id, Some(vec![1, 0xa0]));
        assert_eq!(
            u.to_string(),
            "pkcs11:token=Nat%20ID;object=signer%3B2;id=%01%A0"
        );
        assert_eq!(Pkcs11Uri::parse(&u.to_string()).unwrap(), u);
        for (bad, needle) in [
            ("pkcs11:object=x", "token="),
            ("pkcs11:token=x", "object="),
            (
                "pkcs11:token=x;object=y?pin-value=1234",
                "STATUSD_PKCS11_PIN_FILE",
            ),
            ("pkcs11:token=x;object=y;type=public", "private"),
            ("pkcs11:token=x;object=y;colour=blue", "colour"),
            ("pkcs11:token=%zz;object=y", "percent"),
            ("pkcs11:token", "no '='"),
            ("/etc/key.pem", "does not start"),
        ] {
            let e = Pkcs11Uri::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert!(Pkcs11Uri::is_uri("pkcs11:token=a;object=b"));
        assert!(!Pkcs11Uri::is_uri("./pkcs11.pem"));
    }

    #[test]
    fn pin_file_checks() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!(
            "statusd-pin-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pin");
        std::fs::write(&path, "1234\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_pin_text(&path).unwrap(), "1234");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_pin_text(&path).unwrap(), "1234");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_pin_file(&path).unwrap_err();
        assert!(
            matches!(e, Pkcs11Error::PinWorldReadable { mode: 0o644, .. }),
            "{e}"
        );
        assert!(!e.to_string().contains("1234"), "{e}");

        std::fs::write(&path, "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read_pin_file(&path),
            Err(Pkcs11Error::PinEmpty { .. })
        ));
        assert!(matches!(
            read_pin_file(&dir.join("missing")),
            Err(Pkcs11Error::PinUnreadable { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ec_point_forms() {
        let mut wrapped = vec![0x04, 65, 0x04];
        wrapped.extend([7u8; 64]);
        assert_eq!(unwrap_octet_string(&wrapped), &wrapped[2..]);
        let bare = &wrapped[2..];
        assert_eq!(unwrap_octet_string(bare), bare);
    }

    #[test]
    fn a_missing_module_is_a_clear_error() {
        let e = Pkcs11Key::open(
            "/nonexistent/libpkcs11.so".into(),
            Pkcs11Uri::parse("pkcs11:token=a;object=b").unwrap(),
            AuthPin::from("1234".to_owned()),
        )
        .unwrap_err();
        assert!(matches!(e, Pkcs11Error::Module { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/libpkcs11.so"), "{e}");
    }
}
