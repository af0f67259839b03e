//! The command line: `serve`, `keygen`, `inspect`, `seed`, `health`, and the operator's client
//! of the issuer API (`credentials`, `lists`). Parsing is clap's; each command is a thin call
//! into the library. Errors surface as `anyhow` chains, printed by `main`.

use crate::app;
use crate::config::{Config, ServeArgs};
use crate::inspect::{self, Options};
use crate::status::w3c::MIN_ENTRIES;
use crate::token::keys::{Algorithm, KeySet, SigningKey};
use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for a failed command (verification failure, bad input, I/O).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for an unusable configuration (sysexits EX_USAGE), as linkerd and others use.
pub const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "statusd",
    version,
    about = "Credential status service: IETF Token Status List and W3C Bitstring Status List"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process; boxing `ServeArgs` would save nothing that matters.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve status lists (public listener) and metrics/health (admin listener).
    Serve(ServeArgs),
    /// Write a new PKCS#8 PEM signing key.
    Keygen(KeygenArgs),
    /// Decode and verify a status list token or credential and print its statuses as JSON.
    Inspect(InspectArgs),
    /// Create lists with random INVALID and SUSPENDED entries, for demos, tests and load tests.
    Seed(SeedArgs),
    /// Register credentials and report losses, recoveries, revocations and reissues (issuer
    /// API on the admin listener).
    Credentials(CredentialsArgs),
    /// Create and show the issuer's lists (issuer API on the admin listener).
    Lists(ListsArgs),
    /// Probe a running statusd's admin plane (`/readyz` by default): exit 0 on a 2xx answer, 1
    /// otherwise. For container health checks in images that have no shell or curl.
    Health(HealthArgs),
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The admin endpoint to probe: `/readyz` (ready and fresh) or `/livez` (process alive).
    #[arg(long, default_value = "http://127.0.0.1:9090/readyz")]
    pub url: String,
    /// Seconds to wait for the whole answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// PEM CA certificates that verify an https:// admin listener.
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// How the CLI reaches the admin API.
#[derive(Debug, clap::Args)]
pub struct AdminConn {
    /// Base URL of the admin listener.
    #[arg(
        long,
        env = "STATUSD_ADMIN_URL",
        default_value = "http://127.0.0.1:9090",
        global = true
    )]
    pub admin_url: String,
    /// Bearer token (prefer STATUSD_ADMIN_TOKEN or --token-file: arguments are visible to
    /// other users of the machine).
    #[arg(
        long,
        env = "STATUSD_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// A file holding the token: either the token alone, or a tokens file
    /// (`<name> <scopes> <token>` lines), whose first token is used.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificates that verify an https:// admin listener (a private CA). Default:
    /// the system's trust roots.
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for an admin listener with mutual TLS (with --client-key).
    #[arg(long, global = true, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CredentialsArgs {
    #[command(flatten)]
    pub conn: AdminConn,
    #[command(subcommand)]
    pub command: CredentialsCommand,
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Register a credential; prints its assignment (what the credential embeds).
    Register {
        credential_id: String,
        /// physical, mobile, or another kind.
        #[arg(long)]
        kind: String,
        /// The physical card a derived (mobile) card comes from.
        #[arg(long)]
        parent: Option<String>,
        /// The pool of lists to allocate from.
        #[arg(long)]
        purpose: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Put a hold (default: a loss report) on a credential; a physical card's hold also holds
    /// its derived cards.
    Suspend {
        credential_id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        hold: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Lift a hold.
    Reinstate {
        credential_id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        hold: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Revoke for good (a physical card's derived cards too).
    Revoke {
        credential_id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Revoke a credential and register its replacement in one step.
    Reissue {
        credential_id: String,
        #[arg(long)]
        new_id: String,
        /// For a derived card: the (new) physical card it comes from.
        #[arg(long)]
        parent: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show a credential (and, with --audit, its audit trail).
    Show {
        credential_id: String,
        #[arg(long)]
        audit: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ListsArgs {
    #[command(flatten)]
    pub conn: AdminConn,
    #[command(subcommand)]
    pub command: ListsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ListsCommand {
    /// Create a list in a pool.
    Create {
        /// The pool (purpose) the list serves.
        #[arg(long)]
        purpose: String,
        /// Default: `<purpose>-<n>`.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        bits: Option<u8>,
        #[arg(long)]
        size: Option<u32>,
    },
    /// Show every list, or one, with its fill level.
    Show { list_id: Option<String> },
}

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// Number of lists to create.
    #[arg(long, default_value_t = 50)]
    pub lists: u32,
    /// Entries per list.
    #[arg(long, default_value_t = crate::status::DEFAULT_ENTRIES)]
    pub size: u32,
    /// Bits per entry (1, 2, 4 or 8).
    #[arg(long, default_value_t = 2)]
    pub bits: u64,
    /// Fraction of entries set INVALID.
    #[arg(long, default_value_t = 0.01)]
    pub invalid: f64,
    /// Fraction of entries set SUSPENDED (needs bits >= 2).
    #[arg(long, default_value_t = 0.002)]
    pub suspended: f64,
    /// List ids are `<prefix><n>` for n = 1..=lists.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Redis URL; without it the embedded store in --data-dir is seeded.
    #[arg(long, env = "STATUSD_REDIS_URL")]
    pub redis_url: Option<String>,
    #[arg(long, env = "STATUSD_DATA_DIR", default_value = "./statusd-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyAlg {
    Es256,
    Ed25519,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Signature algorithm.
    #[arg(long, value_enum, default_value = "es256")]
    pub alg: KeyAlg,
    /// Where to write the private key (created with mode 0600).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A file, `-` for standard input, or an http:// or https:// URL.
    pub input: String,
    /// Verification key: a JWKS (JSON) or PEM file, or an http(s):// URL of a JWKS.
    #[arg(long)]
    pub key: Option<String>,
    /// Index to read (repeatable). An index beyond the list fails, as a relying party must.
    #[arg(long = "idx")]
    pub indices: Vec<u64>,
    /// List every non-VALID entry.
    #[arg(long)]
    pub all: bool,
    /// Accept `Accept` value for URL inputs (e.g. application/statuslist+cwt).
    #[arg(long, default_value = "*/*")]
    pub accept: String,
    /// Minimum entries of a W3C list (the REC's 131,072 unless your ecosystem sets less).
    #[arg(long, default_value_t = MIN_ENTRIES)]
    pub min_entries: u32,
    /// Check validity at this Unix time instead of now.
    #[arg(long)]
    pub at: Option<u64>,
    /// PEM CA certificates that verify https:// inputs and keys (a private CA). Default: the
    /// system's trust roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Keygen(args) => keygen(args),
        Command::Inspect(args) => inspect(args),
        Command::Seed(args) => seed(args),
        Command::Credentials(args) => credentials(args),
        Command::Lists(args) => lists(args),
        Command::Health(args) => health(args),
    }
}

fn admin_client(conn: &AdminConn) -> anyhow::Result<crate::admin::client::Client> {
    let token = match (&conn.token, &conn.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let token = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .and_then(|l| l.split_whitespace().last())
                .with_context(|| format!("{}: no token in the file", path.display()))?;
            Some(token.to_owned())
        }
        (None, None) => None,
    };
    let tls = crate::tls::ClientTls {
        ca: conn.ca.clone(),
        identity: conn.client_cert.clone().zip(conn.client_key.clone()),
    };
    Ok(crate::admin::client::Client::new(&conn.admin_url, token).with_tls(tls))
}

fn print_call(
    method: &str,
    path: String,
    body: Option<serde_json::Value>,
    conn: &AdminConn,
) -> anyhow::Result<ExitCode> {
    let client = admin_client(conn)?;
    let out = runtime()?.block_on(client.call(method, &path, body.as_ref()))?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// Drops `null` members, so optional flags not given are not sent.
fn object(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

fn credentials(args: CredentialsArgs) -> anyhow::Result<ExitCode> {
    use crate::admin::client::segment;
    use serde_json::json;
    let c = &args.conn;
    match args.command {
        CredentialsCommand::Register {
            credential_id,
            kind,
            parent,
            purpose,
            reason,
            request_id,
        } => print_call(
            "POST",
            "/v1/credentials".into(),
            Some(object(
                json!({"credential_id": credential_id, "kind": kind, "parent": parent, "purpose": purpose, "reason": reason, "request_id": request_id}),
            )),
            c,
        ),
        CredentialsCommand::Suspend {
            credential_id,
            reason,
            hold,
            request_id,
        } => print_call(
            "POST",
            format!("/v1/credentials/{}/suspend", segment(&credential_id)),
            Some(object(
                json!({"reason": reason, "hold": hold, "request_id": request_id}),
            )),
            c,
        ),
        CredentialsCommand::Reinstate {
            credential_id,
            reason,
            hold,
            request_id,
        } => print_call(
            "POST",
            format!("/v1/credentials/{}/reinstate", segment(&credential_id)),
            Some(object(
                json!({"reason": reason, "hold": hold, "request_id": request_id}),
            )),
            c,
        ),
        CredentialsCommand::Revoke {
            credential_id,
            reason,
            request_id,
        } => print_call(
            "POST",
            format!("/v1/credentials/{}/revoke", segment(&credential_id)),
            Some(object(json!({"reason": reason, "request_id": request_id}))),
            c,
        ),
        CredentialsCommand::Reissue {
            credential_id,
            new_id,
            parent,
            reason,
            request_id,
        } => print_call(
            "POST",
            format!("/v1/credentials/{}/reissue", segment(&credential_id)),
            Some(object(
                json!({"new_credential_id": new_id, "parent": parent, "reason": reason, "request_id": request_id}),
            )),
            c,
        ),
        CredentialsCommand::Show {
            credential_id,
            audit,
        } => print_call(
            "GET",
            format!(
                "/v1/credentials/{}{}",
                segment(&credential_id),
                if audit { "/audit" } else { "" }
            ),
            None,
            c,
        ),
    }
}

fn lists(args: ListsArgs) -> anyhow::Result<ExitCode> {
    use crate::admin::client::segment;
    match args.command {
        ListsCommand::Create {
            purpose,
            id,
            bits,
            size,
        } => print_call(
            "POST",
            "/v1/lists".into(),
            Some(object(
                serde_json::json!({"purpose": purpose, "list_id": id, "bits": bits, "size": size}),
            )),
            &args.conn,
        ),
        ListsCommand::Show { list_id } => print_call(
            "GET",
            match list_id {
                Some(id) => format!("/v1/lists/{}", segment(&id)),
                None => "/v1/lists".into(),
            },
            None,
            &args.conn,
        ),
    }
}

fn init_tracing(format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STATUSD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if format == crate::config::LogFormat::Json {
        // One object per line: timestamp, level, target and the event's fields at the top
        // level, no span context (the request path has no spans, so nothing leaks from it).
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_target(true)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("statusd: invalid configuration: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if args.check_config {
        if let Err(e) = app::check_files(&config) {
            eprintln!("statusd: invalid configuration: {e:#}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        println!("configuration OK");
        return Ok(ExitCode::SUCCESS);
    }
    init_tracing(config.log_format);
    runtime()?.block_on(app::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = SigningKey::generate(match args.alg {
        KeyAlg::Es256 => Algorithm::Es256,
        KeyAlg::Ed25519 => Algorithm::EdDsa,
    });
    app::write_private_pem(&args.out, &key.to_pkcs8_pem(), args.force)?;
    println!(
        "{}",
        serde_json::json!({"path": args.out, "alg": key.algorithm().jose_name(), "kid": key.kid()})
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a file, standard input (`-`) or an http:// or https:// URL.
fn read_input(input: &str, accept: &str, tls: &crate::tls::ClientTls) -> anyhow::Result<Vec<u8>> {
    if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        return Ok(buf);
    }
    if input.starts_with("http://") || input.starts_with("https://") {
        return runtime()?.block_on(fetch(input, accept, FETCH_TIMEOUT, tls));
    }
    std::fs::read(input).with_context(|| format!("reading {input}"))
}

/// How long `inspect` waits for a token or key over HTTP.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// GETs `url` and returns the body of a 2xx answer; any other status is an error that carries
/// the status and the start of the body (a problem+json `detail` says why).
async fn fetch(
    url: &str,
    accept: &str,
    timeout: std::time::Duration,
    tls: &crate::tls::ClientTls,
) -> anyhow::Result<Vec<u8>> {
    use http_body_util::{BodyExt, Empty, Limited};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let req = hyper::Request::get(url)
        .header(hyper::header::ACCEPT, accept)
        .body(Empty::new())
        .with_context(|| format!("{url} is not a valid URL"))?;
    let answer = async {
        let resp = if url.starts_with("https://") {
            tls.send(req).await.map_err(anyhow::Error::from)
        } else {
            client.request(req).await.map_err(anyhow::Error::from)
        }
        .with_context(|| format!("fetching {url}"))?;
        let status = resp.status();
        // Twice the largest list we decode, compressed tokens are far smaller.
        let body = Limited::new(resp.into_body(), 256 << 20)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading {url}: {e}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, answer)
        .await
        .map_err(|_| anyhow::anyhow!("fetching {url}: no complete answer within {timeout:?}"))??;
    if !status.is_success() {
        bail!(
            "fetching {url}: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    Ok(body.to_vec())
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let tls = crate::tls::ClientTls {
        ca: args.ca.clone(),
        identity: None,
    };
    let keys = match &args.key {
        None => None,
        Some(k) => {
            let text = String::from_utf8(read_input(
                k,
                "application/jwk-set+json, application/json",
                &tls,
            )?)
            .with_context(|| format!("{k}: key is not UTF-8 text"))?;
            let set = if text.trim_start().starts_with('{') {
                KeySet::from_jwks_json(&text)
            } else {
                KeySet::from_pem(&text)
            };
            Some(set.with_context(|| format!("loading verification key {k}"))?)
        }
    };
    let input = read_input(&args.input, &args.accept, &tls)?;
    let now = match args.at {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let opts = Options {
        keys,
        indices: args.indices,
        all: args.all,
        now,
        min_entries: args.min_entries,
    };
    let report = inspect::inspect(&input, &opts)
        .with_context(|| format!("{}: verification failed", args.input))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    if !(args.url.starts_with("http://") || args.url.starts_with("https://")) {
        bail!(
            "--url {}: only http:// and https:// URLs are probed",
            args.url
        );
    }
    let tls = crate::tls::ClientTls {
        ca: args.ca.clone(),
        identity: None,
    };
    // A current-thread runtime: a probe runs every few seconds and must stay cheap.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let timeout = std::time::Duration::from_secs(args.timeout.max(1));
    let body = rt.block_on(fetch(&args.url, "text/plain, */*", timeout, &tls))?;
    print!("{}", String::from_utf8_lossy(&body));
    Ok(ExitCode::SUCCESS)
}

fn seed(args: SeedArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let bits = crate::status::Bits::new(args.bits)?;
    for (name, f) in [("--invalid", args.invalid), ("--suspended", args.suspended)] {
        if !(0.0..=1.0).contains(&f) {
            bail!("{name} must be a fraction between 0 and 1, got {f}");
        }
    }
    if args.invalid + args.suspended > 1.0 {
        bail!("--invalid plus --suspended must not exceed 1");
    }
    if args.suspended > 0.0 && bits == crate::status::Bits::One {
        bail!("--suspended needs --bits 2 or more (1-bit lists hold only VALID and INVALID)");
    }
    crate::status::StatusList::new(bits, args.size)?;
    runtime()?.block_on(async {
        let store = app::open_store(args.redis_url.as_deref(), &args.data_dir).await?;
        let started = std::time::Instant::now();
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        for n in 1..=args.lists {
            let id = format!("{}{n}", args.prefix);
            crate::demo::seed_list(&store, &id, bits, args.size, args.invalid, args.suspended)
                .await
                .with_context(|| format!("seeding list {id:?}"))?;
            if tty {
                eprint!(
                    "\rseeded {n}/{} lists ({:.1} s)",
                    args.lists,
                    started.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
            }
        }
        if tty {
            eprintln!();
        }
        println!(
            "{}",
            serde_json::json!({
                "store": store.kind(),
                "lists": args.lists,
                "size": args.size,
                "bits": bits.get(),
                "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            })
        );
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
