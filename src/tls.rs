//! TLS: the listeners' server configurations (certificate chain, key, optional client CA for
//! mutual TLS), reloadable in place, and the client configuration of the https clients.
//!
//! A listener's configuration lives in one [`ServerTls`] behind one `ArcSwap`: a handshake
//! loads it once, so a reload (SIGHUP) changes what new connections are offered while open
//! connections keep the session they negotiated. A reload that fails leaves the old
//! configuration in force. The crypto provider is ring (see `Cargo.toml`); only TLS 1.3 and
//! 1.2 are offered, with ALPN `h2` and `http/1.1`.
//!
//! Nothing here runs per request: the client subject of a mutual-TLS connection is read once,
//! after its handshake.

use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The protocol versions offered: TLS 1.3 and 1.2, nothing older.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A TLS file that cannot be used, with its path.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: {what}: {reason}", path.display())]
    Pem {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{}: the certificate and key cannot be used together: {source}", path.display())]
    Pair {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{}: client CA unusable: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
}

/// Where a listener's certificate, key and (for mutual TLS) client CA are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate they issued.
    pub client_ca: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of the PEM file at `path` (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: "certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key of the PEM file at `path`.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: "private key",
        reason: e.to_string(),
    })
}

/// A root store of every certificate in the PEM file at `path`.
pub fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|e| TlsError::ClientCa {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// ring: it builds with a C compiler alone, where aws-lc-rs needs a much longer native build.
/// rustls 0.23.48 deprecates it because it lacks the post-quantum hybrid key exchange
/// (X25519MLKEM768); X25519 and the NIST curves remain, which every client offers.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server configuration `files` describe.
pub fn server_config(files: &ServerFiles) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3");
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::ClientCa {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Pair {
            path: files.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// One listener's TLS configuration, replaced whole on reload.
pub struct ServerTls {
    /// The files it is (re)loaded from.
    files: ServerFiles,
    /// The configuration new handshakes use.
    current: ArcSwap<rustls::ServerConfig>,
}

impl ServerTls {
    /// Loads `files`; fails if any of them cannot be used.
    pub fn load(files: ServerFiles) -> Result<ServerTls, TlsError> {
        let config = server_config(&files)?;
        Ok(ServerTls {
            files,
            current: ArcSwap::from_pointee(config),
        })
    }

    /// Reads the files again; on success new connections get the new configuration, on failure
    /// the old one stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    pub fn files(&self) -> &ServerFiles {
        &self.files
    }

    /// An acceptor for one new connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }
}

/// The client certificate's subject of a mutual-TLS connection (RFC 4514 form), attached to
/// each of its requests as an extension so the audit trail can record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSubject(pub Arc<str>);

/// The subject of the first (leaf) certificate the peer presented, if any.
pub fn peer_subject(conn: &rustls::ServerConnection) -> Option<ClientSubject> {
    use x509_cert::der::Decode as _;
    let leaf = conn.peer_certificates()?.first()?;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).ok()?;
    Some(ClientSubject(
        cert.tbs_certificate.subject.to_string().into(),
    ))
}

/// The trust roots of the https clients: only the certificates of `ca` (a private CA) when
/// given, else the system's.
fn trust(ca: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    match ca {
        Some(path) => roots(path),
        None => {
            let mut store = rustls::RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Ok(store)
        }
    }
}

/// How an https client authenticates the server and itself.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM CA certificates to trust instead of the system's roots (`--ca`).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for an admin plane with mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Why an https request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Files(#[from] TlsError),
    #[error("{0}: not an https:// URL with a host")]
    Url(String),
    #[error("connecting to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {authority}: {source}")]
    Handshake {
        authority: String,
        source: std::io::Error,
    },
    #[error("HTTP exchange with {authority}: {source}")]
    Http {
        authority: String,
        source: hyper::Error,
    },
}

impl ClientTls {
    /// The rustls client configuration: trust, ALPN `http/1.1`, and the client identity.
    pub fn config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(trust(self.ca.as_deref())?);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(certificates(cert)?, private_key(key)?)
                .map_err(|source| TlsError::Pair {
                    path: key.clone(),
                    source,
                })?,
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Sends `req` (an `https://` URI) over a new TLS connection, HTTP/1.1, and returns the
    /// answer's head with its streaming body. One connection per request: the CLI sends one.
    pub async fn send<B>(
        &self,
        mut req: hyper::Request<B>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let uri = req.uri().clone();
        let (Some("https"), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return Err(ClientError::Url(uri.to_string()));
        };
        let port = uri.port_u16().unwrap_or(443);
        let authority = format!("{host}:{port}");
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
        .map_err(|_| ClientError::Url(uri.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.config()?));
        let tcp = tokio::net::TcpStream::connect((
            host.trim_start_matches('[').trim_end_matches(']'),
            port,
        ))
        .await
        .map_err(|source| ClientError::Connect {
            authority: authority.clone(),
            source,
        })?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|source| ClientError::Handshake {
                authority: authority.clone(),
                source,
            })?;
        let http = |source| ClientError::Http {
            authority: authority.clone(),
            source,
        };
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(http)?;
        tokio::spawn(conn);
        if !req.headers().contains_key(hyper::header::HOST) {
            let host = uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default();
            if let Ok(v) = hyper::header::HeaderValue::from_str(&host) {
                req.headers_mut().insert(hyper::header::HOST, v);
            }
        }
        // Origin form on the wire, as HTTP/1.1 servers expect.
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = path.parse().expect("a path of a valid URI is valid");
        send.send_request(req).await.map_err(http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "statusd-tls-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn loads_a_pair_and_refuses_broken_files_keeping_the_old_config() {
        let dir = tempdir("load");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = ServerFiles {
            cert: write(&dir, "cert.pem", &cert.pem()),
            key: write(&dir, "key.pem", &key.serialize_pem()),
            client_ca: None,
        };
        let tls = ServerTls::load(files.clone()).unwrap();
        let before = tls.current.load_full();
        assert_eq!(
            before.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        std::fs::write(&files.cert, "not a certificate").unwrap();
        let e = tls.reload().unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        assert!(Arc::ptr_eq(&before, &tls.current.load_full()), "old kept");
        // A certificate whose key is another one.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, other.serialize_pem()).unwrap();
        let e = tls.reload().unwrap_err();
        assert!(matches!(e, TlsError::Pair { .. }), "{e}");
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.current.load_full()), "swapped");
        let missing = ServerFiles {
            key: dir.join("absent.pem"),
            ..files
        };
        assert!(matches!(
            ServerTls::load(missing),
            Err(TlsError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
