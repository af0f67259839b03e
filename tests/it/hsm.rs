//! Signing with a key that lives only in a PKCS#11 token (issue #13), against a real SoftHSM2.
//!
//! Each test initialises its own token in a temporary directory (`SOFTHSM2_CONF`), generates the
//! key inside it with `pkcs11-tool` and runs the real `statusd` binary against it: the module is
//! a process-wide singleton, so a server per process keeps the tests independent. The token
//! "goes away" by moving its directory out of SoftHSM2's token directory, and comes back by
//! moving it back. Every server runs at `trace` level and its whole log is searched for the PIN.

use crate::support::{get, problem, run, until, TempDir};
use statusd::status::{Bits, Status};

use statusd::token::{decode_jwt_unverified, verify_cwt, verify_jwt, KeySet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SoftHSM2's module, as Debian and Ubuntu install it.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// A PIN no log line could contain by accident.
pub const PIN: &str = "739164825";
pub const TOKEN: &str = "statusd";
pub const OBJECT: &str = "list-signer";

/// A SoftHSM2 installation of its own: config, token directory and PIN file.
pub struct SoftHsm {
    pub dir: TempDir,
    pub conf: PathBuf,
    pub pin_file: PathBuf,
}

impl SoftHsm {
    /// A fresh token labelled [`TOKEN`] with user PIN [`PIN`].
    pub fn new(tag: &str) -> SoftHsm {
        let dir = TempDir::new(tag);
        let tokens = dir.0.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.0.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let pin_file = dir.0.join("pin");
        write_mode(&pin_file, &format!("{PIN}\n"), 0o600);
        let hsm = SoftHsm {
            dir,
            conf,
            pin_file,
        };
        run(hsm
            .cmd("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN])
            .args(["--so-pin", "5678"]));
        hsm
    }

    /// A command with this installation's `SOFTHSM2_CONF`.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    /// [`crate::support::statusd`] with this installation's `SOFTHSM2_CONF`.
    pub fn statusd(&self) -> Command {
        let mut c = crate::support::statusd();
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    /// Generates a key pair inside the token (`key_type` as pkcs11-tool spells it, e.g.
    /// `EC:prime256v1`), labelled `label`, with `id`.
    pub fn keygen(&self, key_type: &str, label: &str, id: &str) {
        run(self
            .cmd("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", TOKEN, "--login"])
            .args(["--pin", PIN, "--keypairgen", "--key-type", key_type])
            .args(["--label", label, "--id", id, "--usage-sign"]));
    }

    /// The public key of `label` as an SPKI PEM, read from the token.
    pub fn public_pem(&self, label: &str) -> String {
        let der = self.dir.0.join(format!("{label}.pub.der"));
        run(self
            .cmd("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", TOKEN])
            .args(["--read-object", "--type", "pubkey", "--label", label])
            .arg("--output-file")
            .arg(&der));
        run(Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-in"])
            .arg(&der))
    }

    /// The token's directory inside the token directory (SoftHSM2 names it by a UUID).
    fn token_dir(&self) -> PathBuf {
        let tokens = self.dir.0.join("tokens");
        let mut entries: Vec<_> = std::fs::read_dir(&tokens)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "one token in {}", tokens.display());
        entries.pop().unwrap()
    }

    /// Takes the token away: returns where it went, for [`SoftHsm::put_back`].
    pub fn remove_token(&self) -> (PathBuf, PathBuf) {
        let from = self.token_dir();
        let to = self.dir.0.join("removed-token");
        std::fs::rename(&from, &to).unwrap();
        (to, from)
    }

    pub fn put_back(&self, (from, to): (PathBuf, PathBuf)) {
        std::fs::rename(from, to).unwrap();
    }
}

pub fn write_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A `statusd serve` process and everything it logged.
pub struct Server {
    child: Child,
    pub public: String,
    pub admin: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `statusd serve` on ports 0 with `args`, in `hsm`'s SoftHSM2, logging at `trace`,
    /// and waits until it logs its addresses. `Err` holds the log of a process that exited.
    pub fn start(hsm: &SoftHsm, data: &Path, args: &[&str]) -> Result<Server, String> {
        let mut child = hsm
            .statusd()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env("STATUSD_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (log, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let field = |line: &str, name: &str| {
            line.split(name)
                .nth(1)
                .map(|r| r.split_whitespace().next().unwrap().to_owned())
        };
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let (Some(public), Some(admin)) =
                        (field(&line, "public_addr="), field(&line, "admin_addr="))
                    {
                        return Ok(Server {
                            child,
                            public: format!("http://{public}"),
                            admin: format!("http://{admin}"),
                            log,
                        });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Let the readers drain what is left.
                    std::thread::sleep(Duration::from_millis(100));
                    return Err(log.lock().unwrap().join("\n"));
                }
            }
        }
    }

    /// Waits until `/readyz` answers 200.
    /// statusd signing with `hsm`'s key (the [`pkcs11_args`]) and `extra` flags, over `data`
    /// seeded with list "1" of 1,024 entries; started and ready.
    pub async fn serving(hsm: &SoftHsm, data: &Path, extra: &[&str]) -> Server {
        seed(data, 1024).await;
        let mut args = pkcs11_args(hsm);
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start(hsm, data, &args).expect("statusd starts");
        server.ready().await;
        server
    }

    pub async fn ready(&self) {
        let url = format!("{}/readyz", self.admin);
        until("readiness", Duration::from_secs(30), || async {
            (get(&url, &[]).await.0 == 200).then_some(())
        })
        .await;
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let (_, _, body) = get(&format!("{}/metrics", self.admin), &[]).await;
        let text = String::from_utf8(body.to_vec()).unwrap();
        text.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(' ')?;
                (n == name || n.starts_with(&format!("{name}{{"))).then(|| v.parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// Stops the server (SIGTERM, then wait) and returns its whole log.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().join("\n");
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seeds list "1" (1 bit, `size` entries, index 3 revoked) into the embedded store in `data`.
async fn seed(data: &Path, size: u32) {
    let store = statusd::store::embedded::EmbeddedStore::open(data).unwrap();
    crate::support::seed_list(&store, "1", Bits::One, size, &[(3, Status::INVALID.0)]).await;
}

pub fn pkcs11_args(hsm: &SoftHsm) -> Vec<String> {
    vec![
        "--signing-key".into(),
        format!("pkcs11:token={TOKEN};object={OBJECT}"),
        "--pkcs11-module".into(),
        MODULE.into(),
        "--pkcs11-pin-file".into(),
        hsm.pin_file.to_str().unwrap().into(),
    ]
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A fresh token `tag` holding a new key of `key_type` (object id `id`), and statusd signing
/// with it ([`Server::serving`]) over a data directory of its own.
async fn serve_new_key(tag: &str, key_type: &str, id: &str) -> (SoftHsm, TempDir, Server) {
    let hsm = SoftHsm::new(tag);
    hsm.keygen(key_type, OBJECT, id);
    let data = TempDir::new(&format!("{tag}-data"));
    let server = Server::serving(&hsm, &data.0, &[]).await;
    (hsm, data, server)
}

/// The key set served at `base` and a signed JWT, once one is served; the JWT and the CWT are
/// checked to verify against the key set.
async fn verified_tokens(base: &str) -> (KeySet, String) {
    let keys = jwks(base).await;
    let token = until("a signed token", Duration::from_secs(20), || jwt(base)).await;
    verify_jwt(&token, &keys).expect("the JWT verifies");
    verify_cwt(&cwt(base).await, &keys).expect("the CWT verifies");
    (keys, token)
}

pub async fn jwks(base: &str) -> KeySet {
    let (s, _, b) = get(&format!("{base}/.well-known/jwks.json"), &[]).await;
    assert_eq!(s, 200);
    KeySet::from_jwks_json(std::str::from_utf8(&b).unwrap()).unwrap()
}

pub async fn jwt(base: &str) -> Option<String> {
    let (s, _, b) = get(
        &format!("{base}/statuslists/1"),
        &[("accept", "application/statuslist+jwt")],
    )
    .await;
    (s == 200).then(|| String::from_utf8(b.to_vec()).unwrap())
}

pub async fn cwt(base: &str) -> Vec<u8> {
    let (s, _, b) = get(
        &format!("{base}/statuslists/1"),
        &[("accept", "application/statuslist+cwt")],
    )
    .await;
    assert_eq!(s, 200);
    b.to_vec()
}

async fn lookup(base: &str, idx: u64) -> u64 {
    let (s, _, b) = get(&format!("{base}/statuses/1/{idx}"), &[]).await;
    assert_eq!(s, 200, "lookups keep answering");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    v["value"].as_u64().unwrap()
}

pub fn assert_no_secret(log: &str) {
    assert!(!log.is_empty());
    assert!(!log.contains(PIN), "the PIN appears in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_softhsm_signs_and_signing_survives_the_token_going_away() {
    let hsm = SoftHsm::new("hsm-signs");
    hsm.keygen("EC:prime256v1", OBJECT, "01");
    let expected = statusd::token::VerifyingKey::from_public_pem(&hsm.public_pem(OBJECT)).unwrap();
    let data = TempDir::new("hsm-signs-data");
    let server = Server::serving(&hsm, &data.0, &crate::support::RESIGN_EVERY_SECOND).await;
    let base = server.public.clone();
    let base = base.as_str();

    // Signed inside the token: the JWKS holds the token's public key, JWT and CWT verify.
    let keys = jwks(base).await;
    assert_eq!(keys.keys, vec![expected.clone()]);
    let first = until("a signed token", Duration::from_secs(20), || jwt(base)).await;
    let claims = verify_jwt(&first, &keys).expect("the JWT verifies");
    assert_eq!(
        claims.status_list.decode().unwrap().get(3).unwrap(),
        Status::INVALID
    );
    verify_cwt(&cwt(base).await, &keys).expect("the CWT verifies");
    let (s, _, _) = get(
        &format!("{base}/bitstringlists/1/revocation"),
        &[("accept", "application/vc+jwt")],
    )
    .await;
    assert!(s == 200 || s == 404, "{s}");
    assert_eq!(server.metric("statusd_signing_key_ok").await, 1.0);

    // The token goes away: signing pauses; the last token ages and is withheld before exp.
    let signed = until("a re-signed token", Duration::from_secs(8), || async {
        let t = jwt(base).await?;
        let c = decode_jwt_unverified(&t).ok()?.claims;
        (c.iat > claims.iat).then_some(c)
    })
    .await;
    let removed = hsm.remove_token();
    until(
        "statusd_signing_key_ok 0",
        Duration::from_secs(5),
        || async { (server.metric("statusd_signing_key_ok").await == 0.0).then_some(()) },
    )
    .await;
    let exp = signed.exp.unwrap() as f64;
    let mut withheld = false;
    let mut last_iat = 0;
    while now() < exp + 1.0 {
        let asked = now();
        match jwt(base).await {
            Some(t) => {
                let c = decode_jwt_unverified(&t).unwrap().claims;
                assert!(!withheld, "a token served again after a 503");
                assert!(asked < c.exp.unwrap() as f64, "a token served past its exp");
                last_iat = c.iat;
            }
            None => {
                let (s, h, b) = get(
                    &format!("{base}/statuslists/1"),
                    &[("accept", "application/statuslist+jwt")],
                )
                .await;
                let p = problem(s, &h, &b);
                assert_eq!(p["type"], "urn:statusd:problem:signing-unavailable");
                withheld = true;
            }
        }
        assert_eq!(lookup(base, 3).await, 1);
        assert_eq!(lookup(base, 4).await, 0);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(withheld, "the token was never withheld");
    assert!(last_iat >= signed.iat);
    assert_eq!(server.metric("statusd_signing_key_ok").await, 0.0);
    assert!(server.metric("statusd_signing_key_errors_total").await >= 1.0);

    // The token is back: the session is re-opened, signing resumes by itself.
    hsm.put_back(removed);
    let resumed = until("a newly signed token", Duration::from_secs(10), || {
        jwt(base)
    })
    .await;
    let c = verify_jwt(&resumed, &keys).expect("signed by the token's key");
    assert!(c.iat > signed.iat);
    assert!(c.exp.unwrap() as f64 > now());
    assert_eq!(server.metric("statusd_signing_key_ok").await, 1.0);
    let log = server.stop();
    assert!(log.contains("signing resumes"), "{log}");
    assert_no_secret(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_or_an_unsafe_pin_file_stops_the_start_with_a_clear_error() {
    let hsm = SoftHsm::new("hsm-pin");
    hsm.keygen("EC:prime256v1", OBJECT, "01");
    let data = TempDir::new("hsm-pin-data");
    let args = pkcs11_args(&hsm);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let wrong = "111111111";
    write_mode(&hsm.pin_file, wrong, 0o600);
    let log = match Server::start(&hsm, &data.0, &args) {
        Ok(_) => panic!("started with a wrong PIN"),
        Err(log) => log,
    };
    assert!(log.contains("wrong PIN?"), "{log}");
    assert!(!log.contains(wrong), "the PIN appears in the log: {log}");

    write_mode(&hsm.pin_file, PIN, 0o644);
    let log = Server::start(&hsm, &data.0, &args).err().expect("refused");
    assert!(log.contains("readable by every user"), "{log}");
    assert_no_secret(&log);

    std::fs::remove_file(&hsm.pin_file).unwrap();
    let log = Server::start(&hsm, &data.0, &args).err().expect("refused");
    assert!(log.contains("reading the PKCS#11 PIN file"), "{log}");

    // A label no key has.
    write_mode(&hsm.pin_file, PIN, 0o600);
    let mut other = args.clone();
    other[1] = "pkcs11:token=statusd;object=nothing";
    let log = Server::start(&hsm, &data.0, &other).err().expect("refused");
    assert!(log.contains("no private key \"nothing\""), "{log}");
    assert_no_secret(&log);
}

/// `der` as a PEM `CERTIFICATE`.
fn cert_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// A fixed-size ECDSA `R‖S` (P-256) as the DER `Ecdsa-Sig-Value` openssl verifies.
fn ecdsa_der(sig: &[u8]) -> Vec<u8> {
    assert_eq!(sig.len(), 64);
    let int = |b: &[u8]| {
        let mut v: Vec<u8> = b.iter().copied().skip_while(|&x| x == 0).collect();
        if v.first().is_none_or(|&x| x & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let body = [int(&sig[..32]), int(&sig[32..])].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

/// What an independent verifier anchored in X.509 does, with the openssl CLI: validate the
/// chain (`chain`, DER, leaf first) up to `root`, take the leaf's key and verify `sig` over
/// `input` with it (ES256).
fn openssl_verifies(dir: &Path, root: &Path, chain: &[Vec<u8>], input: &[u8], sig: &[u8]) {
    std::fs::write(dir.join("leaf.pem"), cert_pem(&chain[0])).unwrap();
    let rest: String = chain[1..].iter().map(|d| cert_pem(d)).collect();
    std::fs::write(dir.join("untrusted.pem"), rest).unwrap();
    let out = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            "untrusted.pem",
            "leaf.pem",
        ],
    );
    assert!(out.contains("leaf.pem: OK"), "{out}");
    let public = openssl(dir, &["x509", "-in", "leaf.pem", "-pubkey", "-noout"]);
    std::fs::write(dir.join("leaf.pub.pem"), public).unwrap();
    std::fs::write(dir.join("input"), input).unwrap();
    std::fs::write(dir.join("sig.der"), ecdsa_der(sig)).unwrap();
    let out = openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "leaf.pub.pem",
            "-signature",
            "sig.der",
            "input",
        ],
    );
    assert!(out.contains("Verified OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_in_softhsm_carry_a_chain_that_openssl_validates_to_the_root() {
    use base64::Engine as _;
    use ciborium::Value as Cbor;
    let hsm = SoftHsm::new("hsm-chain");
    hsm.keygen("EC:prime256v1", OBJECT, "01");
    let pki = statusd::cert::test_pki::Pki::new();
    let chain_file = pki.leaf("signer", &hsm.public_pem(OBJECT), "leaf", 30);
    let chain_pem = std::fs::read(&chain_file).unwrap();
    let expected = statusd::cert::CertChain::from_pem(&chain_pem).unwrap();
    let data = TempDir::new("hsm-chain-data");
    let flags = ["--signing-cert", chain_file.to_str().unwrap()];
    let server = Server::serving(&hsm, &data.0, &flags).await;
    let base = server.public.as_str();
    let work = TempDir::new("hsm-chain-verify");

    // statuslist+jwt: x5c in the header, leaf first; the project's decoder verifies it.
    let keys = jwks(base).await;
    let token = until("a signed token", Duration::from_secs(20), || jwt(base)).await;
    verify_jwt(&token, &keys).expect("the JWT verifies");
    let (input, sig) = token.rsplit_once('.').unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(input.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let x5c: Vec<Vec<u8>> = header["x5c"]
        .as_array()
        .expect("x5c in the JWS header")
        .iter()
        .map(|c| {
            base64::engine::general_purpose::STANDARD
                .decode(c.as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(x5c, expected.der());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    openssl_verifies(&work.0, &pki.root(), &x5c, input.as_bytes(), &sig);

    // The JWKS entry carries the same chain.
    let (_, _, body) = get(&format!("{base}/.well-known/jwks.json"), &[]).await;
    let set: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(set["keys"][0]["x5c"], header["x5c"]);

    // The CWT: x5chain (label 33) in the protected header; Sig_structure verified by openssl.
    let cwt_bytes = cwt(base).await;
    verify_cwt(&cwt_bytes, &keys).expect("the CWT verifies");
    let Cbor::Tag(18, msg) = ciborium::from_reader::<Cbor, _>(&cwt_bytes[..]).unwrap() else {
        panic!("COSE_Sign1_Tagged");
    };
    let Cbor::Array(parts) = *msg else {
        panic!("a COSE_Sign1 array")
    };
    let protected_bytes = parts[0].as_bytes().unwrap().clone();
    let protected: Cbor = ciborium::from_reader(&protected_bytes[..]).unwrap();
    let x5chain = protected
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_integer() == Some(33.into()))
        .map(|(_, v)| v.clone())
        .expect("x5chain in the protected header");
    let x5chain: Vec<Vec<u8>> = x5chain
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_bytes().unwrap().clone())
        .collect();
    assert_eq!(x5chain, expected.der());
    let sig_structure = Cbor::Array(vec![
        Cbor::Text("Signature1".into()),
        Cbor::Bytes(protected_bytes),
        Cbor::Bytes(vec![]),
        parts[2].clone(),
    ]);
    let mut tbs = Vec::new();
    ciborium::into_writer(&sig_structure, &mut tbs).unwrap();
    openssl_verifies(
        &work.0,
        &pki.root(),
        &x5chain,
        &tbs,
        parts[3].as_bytes().unwrap(),
    );

    // statusd inspect --trust-anchor validates the chain to the root and the signature, for
    // both forms, with and without --key; another root is refused.
    let other_pki = statusd::cert::test_pki::Pki::new();
    for accept in ["application/statuslist+jwt", "application/statuslist+cwt"] {
        let url = format!("{base}/statuslists/1");
        let root = pki.root();
        let jwks_url = format!("{base}/.well-known/jwks.json");
        let anchored = |anchor: &Path, extra: &[&str]| {
            let mut args = vec![
                url.as_str(),
                "--accept",
                accept,
                "--trust-anchor",
                anchor.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            inspect(&args)
        };
        let out = anchored(&root, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["signature"], "verified");
        assert!(
            r["chain"]
                .as_str()
                .unwrap()
                .contains("2 certificate(s) validated to CN=Test Root"),
            "{r}"
        );
        let out = anchored(&root, &["--key", &jwks_url]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = anchored(&other_pki.root(), &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("does not end at the trust anchor"), "{err}");
    }

    // The leaf's notAfter is exported.
    let not_after = server
        .metric("statusd_signing_cert_not_after_timestamp_seconds")
        .await;
    let expected_not_after = expected
        .not_after()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(not_after, expected_not_after);
    assert_no_secret(&server.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_cannot_vouch_for_the_signing_key_stops_the_start() {
    use statusd::token::keys::{Algorithm, SigningKey};
    let pki = statusd::cert::test_pki::Pki::new();
    let dir = TempDir::new("cert-refusals");
    let key = SigningKey::generate(Algorithm::Es256);
    let key_file = dir.0.join("key.pem");
    std::fs::write(&key_file, key.to_pkcs8_pem()).unwrap();
    let public = key.verifying_key().to_public_pem();
    let other = SigningKey::generate(Algorithm::Es256)
        .verifying_key()
        .to_public_pem();
    let cases = [
        (
            pki.leaf("other", &other, "leaf", 30),
            "86400",
            "another key",
        ),
        // Valid for one day: tokens living two days would outlive it.
        (
            pki.leaf("short", &public, "leaf", 1),
            "172800",
            "expires at",
        ),
        (
            pki.leaf("nosig", &public, "nosig", 30),
            "86400",
            "digital signatures",
        ),
    ];
    // The key file with the certificate chain `chain`, plus `extra` flags.
    let config = |chain: &Path, extra: &[&str]| {
        let mut flags = vec![
            "--signing-key",
            key_file.to_str().unwrap(),
            "--signing-cert",
            chain.to_str().unwrap(),
        ];
        flags.extend_from_slice(extra);
        crate::support::config(&dir.0, &flags)
    };
    for (chain, lifetime, needle) in cases {
        let config = config(&chain, &["--token-lifetime", lifetime]);
        let e = match statusd::app::start(&config).await {
            Ok(_) => panic!("started with {}", chain.display()),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains(needle), "{needle}: {e}");
        assert!(e.contains("STATUSD_SIGNING_CERT"), "{e}");
    }
    // The right certificate starts.
    let ok = pki.leaf("ok", &public, "leaf", 30);
    let config = config(&ok, &[]);
    let r = statusd::app::start(&config).await.expect("starts");
    r.stop().await;
}

/// `statusd inspect` with `args`.
fn inspect(args: &[&str]) -> std::process::Output {
    crate::support::statusd()
        .arg("inspect")
        .args(args)
        .output()
        .unwrap()
}

/// The operator's flow of docs/operations.md: key generated in the token, `statusd csr`, the
/// CA certifies it, statusd serves with the chain, a verifier anchored at the root accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_for_the_token_key_gets_certified_and_served() {
    let hsm = SoftHsm::new("hsm-csr");
    hsm.keygen("EC:prime256v1", OBJECT, "01");
    let pki = statusd::cert::test_pki::Pki::new();
    let req = pki.dir.join("req.pem");
    let mut csr = hsm.statusd();
    csr.args(["csr", "--subject", "CN=Revocation List Signer,O=Example"])
        .arg("--out")
        .arg(&req)
        .args(pkcs11_args(&hsm));
    let out = run(&mut csr);
    assert!(out.contains("\"alg\":\"ES256\""), "{out}");
    let verified = openssl(&pki.dir, &["req", "-in", "req.pem", "-verify", "-noout"]);
    assert!(verified.contains("verify OK"), "{verified}");
    let chain = pki.certify("signer", "req.pem", &[], "leaf", 30);

    let data = TempDir::new("hsm-csr-data");
    let flags = ["--signing-cert", chain.to_str().unwrap()];
    let server = Server::serving(&hsm, &data.0, &flags).await;
    let url = format!("{}/statuslists/1", server.public);
    let out = inspect(&[&url, "--trust-anchor", pki.root().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secret(&server.stop());
}

/// Ed25519 keys sign through CKM_EDDSA where the token offers it (SoftHSM2 does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ed25519_key_in_softhsm_signs_through_ckm_eddsa() {
    let (_hsm, _data, server) = serve_new_key("hsm-eddsa", "EC:edwards25519", "02").await;
    let (keys, _) = verified_tokens(&server.public).await;
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].algorithm(), statusd::token::Algorithm::EdDsa);
    assert_no_secret(&server.stop());
}

/// ES384: a P-384 key in the token signs through CKM_ECDSA over SHA-384; JWT and CWT verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p384_key_in_softhsm_signs_es384() {
    let (_hsm, _data, server) = serve_new_key("hsm-es384", "EC:secp384r1", "03").await;
    let (keys, token) = verified_tokens(&server.public).await;
    assert_eq!(keys.keys[0].algorithm(), statusd::token::Algorithm::Es384);
    let header = decode_jwt_unverified(&token).unwrap().header;
    assert_eq!(header["alg"], "ES384");
    assert_no_secret(&server.stop());
}

/// PS256: an RSA-2048 key in the token (government HSMs are often RSA-only) signs through
/// CKM_SHA256_RSA_PKCS_PSS; JWT and CWT verify, and a CSR for it is accepted by openssl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_key_in_softhsm_signs_ps256() {
    let hsm = SoftHsm::new("hsm-ps256");
    hsm.keygen("rsa:2048", OBJECT, "04");
    let data = TempDir::new("hsm-ps256-data");
    let args = pkcs11_args(&hsm);
    let req = data.0.join("req.pem");
    let mut csr = hsm.statusd();
    csr.args(["csr", "--subject", "CN=Revocation List Signer"])
        .arg("--out")
        .arg(&req)
        .args(&args);
    assert!(run(&mut csr).contains("\"alg\":\"PS256\""));
    let verified = openssl(&data.0, &["req", "-in", "req.pem", "-verify", "-noout"]);
    assert!(verified.contains("verify OK"), "{verified}");
    let server = Server::serving(&hsm, &data.0, &[]).await;
    let base = server.public.as_str();
    let (keys, token) = verified_tokens(base).await;
    assert_eq!(keys.keys[0].algorithm(), statusd::token::Algorithm::Ps256);
    let (_, _, body) = get(&format!("{base}/.well-known/jwks.json"), &[]).await;
    let set: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(set["keys"][0]["kty"], "RSA");
    assert_eq!(set["keys"][0]["alg"], "PS256");
    assert_eq!(
        decode_jwt_unverified(&token).unwrap().header["alg"],
        "PS256"
    );
    assert_no_secret(&server.stop());

    // The same key signing RS256, for verifiers that need it.
    let mut rs: Vec<&str> = args.iter().map(String::as_str).collect();
    rs.extend(["--signing-alg", "RS256"]);
    let server = Server::start(&hsm, &data.0, &rs).expect("statusd starts");
    server.ready().await;
    let base = server.public.as_str();
    let keys = jwks(base).await;
    assert_eq!(keys.keys[0].algorithm(), statusd::token::Algorithm::Rs256);
    let token = until("an RS256 token", Duration::from_secs(20), || async {
        jwt(base)
            .await
            .filter(|t| decode_jwt_unverified(t).unwrap().header["alg"] == "RS256")
    })
    .await;
    verify_jwt(&token, &keys).expect("the RS256 JWT verifies");
    verify_cwt(&cwt(base).await, &keys).expect("the RS256 CWT verifies");
    assert_no_secret(&server.stop());
}
