//! The command line: `serve`, `keygen`, `inspect`, `seed`, `health`, and the operator's client
//! of the issuer API (`credentials`, `lists`). Parsing is clap's; each command is a thin call
//! into the library. Errors surface as `anyhow` chains, printed by `main` through [`report`].
//!
//! Output goes through [`print_out`], never `println!`: a reader that closes the pipe early
//! (`statusd inspect … --all | head`) ends the command quietly with exit 0, as ripgrep does,
//! instead of a panic.

use crate::app;
use crate::config::{Config, ServeArgs};
use crate::inspect::{self, Options};
use crate::status::w3c::MIN_ENTRIES;
use crate::token::keys::{Algorithm, KeySet, SigningKey};
use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{Read as _, Write as _};
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
    about = "Credential status service: IETF Token Status List and W3C Bitstring Status List",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The end of `statusd --help`.
const EXAMPLES: &str = "\
Examples:
  statusd serve --demo
      Serve demo lists on 127.0.0.1:8080 (admin API on 127.0.0.1:9090) until Ctrl-C.
  statusd inspect http://127.0.0.1:8080/statuslists/1 \\
      --key http://127.0.0.1:8080/.well-known/jwks.json --idx 12345
      Fetch a list, verify its signature and print one entry's status.
  statusd credentials --token-file statusd-data/demo-admin-tokens \\
      register ic-7f3a9c --kind physical
      Register a card with the issuer API of a running `serve --demo`.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve status lists (public listener) and metrics/health (admin listener).
    // Boxed: serve's flags are far larger than any other command's.
    Serve(Box<ServeArgs>),
    /// Write a new PKCS#8 PEM signing key.
    Keygen(KeygenArgs),
    /// Write a certificate signing request (PKCS#10) for the signing key (file or PKCS#11), to
    /// have the operator's CA certify it.
    Csr(CsrArgs),
    /// Decode and verify a status list token, credential or signed delta and print its statuses
    /// (a delta's changes) as JSON.
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
    /// Check a credential's status as a relying party: follow its status references, fetch
    /// each whole list through an on-disk cache, verify it and read the entry. Exit 0 VALID,
    /// 10 INVALID, 11 SUSPENDED, 12 any other status, 1 the check failed.
    Verify(VerifyArgs),
    /// Print a shell completion script (e.g. `statusd completions bash >
    /// /etc/bash_completion.d/statusd`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or with --out-dir write one page per command there.
    Man {
        /// Directory for statusd.1 and one statusd-<command>.1 page per command.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
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
        /// The issuer's opaque id of the credential (never a resident registration number).
        credential_id: String,
        /// One of the server's accepted kinds (default physical and mobile;
        /// STATUSD_CREDENTIAL_KINDS).
        #[arg(long)]
        kind: String,
        /// The card a derived card comes from (e.g. the physical card of a mobile card).
        #[arg(long)]
        parent: Option<String>,
        /// The pool of lists to allocate from (default: the server's default pool).
        #[arg(long)]
        purpose: Option<String>,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        /// Your reference for this request, kept in the audit trail.
        #[arg(long)]
        request_id: Option<String>,
        /// The credential's own expiry, an RFC 3339 UTC time (2029-06-30T23:59:59Z); without
        /// it the credential never expires and keeps its list from retiring.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Put a hold (default: a loss report) on a credential; a physical card's hold also holds
    /// its derived cards.
    Suspend {
        /// The credential to hold.
        credential_id: String,
        /// Why, for the audit trail (e.g. "reported lost at a community center").
        #[arg(long)]
        reason: String,
        /// The hold's name (default: loss).
        #[arg(long)]
        hold: Option<String>,
        /// Your reference for this request, kept in the audit trail.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Lift a hold.
    Reinstate {
        /// The credential to lift the hold from.
        credential_id: String,
        /// Why, for the audit trail (e.g. "card found").
        #[arg(long)]
        reason: String,
        /// The hold to lift (default: loss).
        #[arg(long)]
        hold: Option<String>,
        /// Your reference for this request, kept in the audit trail.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Revoke for good (a physical card's derived cards too).
    Revoke {
        /// The credential to revoke.
        credential_id: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: String,
        /// Your reference for this request, kept in the audit trail.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Revoke a credential and register its replacement in one step.
    Reissue {
        /// The credential to replace (it is revoked).
        credential_id: String,
        /// The id of the replacement credential.
        #[arg(long)]
        new_id: String,
        /// For a derived card: the (new) card it comes from (default: the old card's parent).
        #[arg(long)]
        parent: Option<String>,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: String,
        /// Your reference for this request, kept in the audit trail.
        #[arg(long)]
        request_id: Option<String>,
        /// The new credential's own expiry, an RFC 3339 UTC time (2029-06-30T23:59:59Z).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Register credentials in bulk from a JSON Lines file, through the batch API, with a
    /// progress bar; run it again to resume after an interruption. Exit 0 every line
    /// registered, 3 some lines refused (see --refused), 65 not a JSON Lines file, 75 the admin
    /// API stayed unavailable (rerun to resume), 77 token refused, 130 interrupted, 1 other.
    Import(ImportArgs),
    /// Show a credential (and, with --audit, its audit trail).
    Show {
        /// The credential to show.
        credential_id: String,
        /// Show the audit trail: who did what, when, and why.
        #[arg(long)]
        audit: bool,
    },
}

#[derive(Debug, clap::Args)]
#[command(after_help = IMPORT_HELP)]
pub struct ImportArgs {
    /// The JSON Lines file: one registration per line, with the fields of a register operation
    /// of the batch API (credential_id, kind; optionally parent, purpose, reason, request_id;
    /// "op": "register" may be given).
    pub file: PathBuf,
    /// Registrations per request (1 to 10000).
    #[arg(long, default_value_t = crate::admin::import::DEFAULT_BATCH, value_parser = batch_size)]
    pub batch_size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = crate::admin::import::DEFAULT_CONCURRENCY as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Where refused lines are written, one JSON object per line (line, item, problem);
    /// default: FILE.refused.jsonl. Created anew on every run.
    #[arg(long)]
    pub refused: Option<PathBuf>,
    /// How long to keep retrying a batch through transient failures (connection errors, 503
    /// with Retry-After) before stopping with exit 75.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub retry_for: std::time::Duration,
    /// Start at this line (1-based), skipping the lines before it unread: the `resume_from` of
    /// a stopped import's summary. The refused file is then appended to.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub from_line: u64,
}

/// The end of `statusd credentials import --help`.
const IMPORT_HELP: &str = "\
Each line is sent once per run. Registration is idempotent by credential id, so a rerun of
the same file after an interruption skips what is registered (answered `exists`) and
registers the rest; nothing is registered twice. A stopped import's summary gives
`resume_from`: rerun with --from-line that line to skip the lines already answered.

Standard output: one JSON summary (lines, registered, existing, refused, skipped, seconds,
per_second, complete, exit_code; resume_from and error when it stopped early). Standard
error: the progress bar (on a terminal only), retries and the first refused lines.

Exit status:
  0    every line is registered (now or before)
  3    the file was imported, but some lines were refused: see the refused file
  65   the file cannot be read, is empty, or is not JSON Lines at all
  75   the admin API stayed unreachable or unavailable past --retry-for; rerun to resume
  77   the admin API refused the token (401, or 403 without the write scope)
  130  interrupted (Ctrl-C) after the batches in flight were answered; rerun to resume
  1    any other failure (an unexpected answer, the refused file cannot be written)";

fn batch_size(s: &str) -> Result<usize, String> {
    let max = crate::issuer::MAX_BATCH;
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("a number from 1 to {max}")),
    }
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
        /// The new list's id (default: `<purpose>-<n>`).
        #[arg(long)]
        id: Option<String>,
        /// Bits per entry: 1, 2, 4 or 8 (default: the server's --list-bits).
        #[arg(long)]
        bits: Option<u8>,
        /// Entries (default: the server's --list-size).
        #[arg(long)]
        size: Option<u32>,
    },
    /// Show every list, or one, with its fill level.
    Show {
        /// The list to show (default: every list).
        list_id: Option<String>,
    },
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
    /// Redis URL (redis://host:port[/db] or redis+cluster://h1:p1,h2:p2); without it the
    /// embedded store in --data-dir is seeded.
    #[arg(long, env = "STATUSD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Directory of the embedded store to seed (without --redis-url).
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
pub struct CsrArgs {
    /// Subject of the certificate, RFC 4514 (e.g. `CN=Revocation List Signer,O=Example,C=NL`).
    #[arg(long)]
    pub subject: String,
    /// Where to write the request (PEM `CERTIFICATE REQUEST`).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// The signing key: a PKCS#8 PEM file or a `pkcs11:` URI (as `serve` takes it).
    #[arg(long, env = "STATUSD_SIGNING_KEY")]
    pub signing_key: PathBuf,
    /// PKCS#11 module of a `pkcs11:` signing key.
    #[arg(long, env = "STATUSD_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN.
    #[arg(long, env = "STATUSD_PKCS11_PIN_FILE")]
    pub pkcs11_pin_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A file, `-` for standard input, or an http:// or https:// URL.
    pub input: String,
    /// Verification key: a JWKS (JSON) or PEM file, or an http(s):// URL of a JWKS.
    #[arg(long)]
    pub key: Option<String>,
    /// Index to read (repeatable). An index beyond the list fails, as a relying party must. Not
    /// for a delta, which carries only its changes.
    #[arg(long = "idx")]
    pub indices: Vec<u64>,
    /// List every non-VALID entry (of a delta: every change, not only the first 20).
    #[arg(long)]
    pub all: bool,
    /// Media type to ask for when the input is a URL (e.g. application/statuslist+cwt,
    /// application/statuslist-delta+cwt).
    #[arg(long, default_value = "*/*")]
    pub accept: String,
    /// Minimum entries of a W3C list (the REC's 131,072 unless your ecosystem sets less).
    #[arg(long, default_value_t = MIN_ENTRIES)]
    pub min_entries: u32,
    /// Check the validity period at this Unix time (seconds) instead of now.
    #[arg(long)]
    pub at: Option<u64>,
    /// PEM root certificate(s): validate the token's `x5c` / `x5chain` up to one of them
    /// (signatures, validity at `iat`, key usage) and verify the token with the leaf's key.
    #[arg(long)]
    pub trust_anchor: Option<PathBuf>,
    /// PEM CA certificates that verify https:// inputs and keys (a private CA). Default: the
    /// system's trust roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The credential: a file, `-` for standard input, or the credential itself (a JWT or
    /// SD-JWT, a W3C VC as JSON, or a COSE_Sign1 in hex or base64url). Its own signature is
    /// not checked: verify it first.
    pub credential: String,
    /// Use only the cache: make no request, fail if a list (or its JWKS) is not cached.
    #[arg(long)]
    pub offline: bool,
    /// Cache directory (default: $STATUSD_CACHE_DIR, $XDG_CACHE_HOME/statusd or
    /// ~/.cache/statusd).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the cache (every list is fetched).
    #[arg(long, conflicts_with_all = ["offline", "cache_dir"])]
    pub no_cache: bool,
    /// Pinned verification key: a JWKS (JSON) or PEM file, or an http:// URL of a JWKS.
    /// Without it the JWKS is discovered at the list issuer's /.well-known/jwks.json.
    #[arg(long, conflicts_with = "trust_anchor")]
    pub key: Option<String>,
    /// Trust anchor(s), a PEM file of one or more root certificates: each list's `x5c` /
    /// `x5chain` must validate up to one of them (signatures, validity now, key usage, CA
    /// constraints) and the leaf's key must verify the list; no JWKS is fetched.
    #[arg(long)]
    pub trust_anchor: Option<PathBuf>,
    /// PEM CA certificates that verify https:// lists and key sets (a private CA). Default: the
    /// system's roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Longest time in seconds a list is reused without asking, whatever its ttl says.
    #[arg(long, default_value_t = crate::verifier::DEFAULT_MAX_TTL.as_secs())]
    pub max_ttl: u64,
    /// Minimum entries of a W3C list (the REC's 131,072 unless your ecosystem sets less).
    #[arg(long, default_value_t = MIN_ENTRIES)]
    pub min_entries: u32,
    /// Check at this Unix time (seconds) instead of now.
    #[arg(long)]
    pub at: Option<u64>,
    /// Seconds to wait for each list or key set.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Keygen(args) => keygen(args),
        Command::Csr(args) => csr(args),
        Command::Inspect(args) => inspect(args),
        Command::Seed(args) => seed(args),
        Command::Credentials(args) => credentials(args),
        Command::Lists(args) => lists(args),
        Command::Health(args) => health(args),
        Command::Verify(args) => verify(args),
        Command::Completions { shell } => completions(shell),
        Command::Man { out_dir } => man(out_dir),
    }
}

/// Writes `text` and a newline to standard output. Unlike `println!` it returns the write's
/// error, so a closed pipe ends the command through [`is_broken_pipe`] instead of a panic.
pub fn print_out(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Whether `err` comes from writing to a closed pipe: the reader (`head`, `less` quit early)
/// has all it wants, so the command ends quietly with exit 0.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The text `main` prints for a failed command: the outermost message, then each cause that
/// the text so far does not already state (libraries often repeat their source's message in
/// their own), so every cause appears once.
pub fn report(err: &anyhow::Error) -> String {
    let mut msg = format!("statusd: {err}");
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str("\n  caused by: ");
            msg.push_str(&text);
        }
    }
    msg
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "statusd", &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

fn man(out_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?;
            print_out(&format!("man pages written to {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            std::io::stdout()
                .lock()
                .write_all(&page)
                .context("writing the man page")?;
        }
    }
    Ok(ExitCode::SUCCESS)
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
    print_out(&serde_json::to_string_pretty(&out)?)?;
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
            expires_at,
        } => print_call(
            "POST",
            "/v1/credentials".into(),
            Some(object(
                json!({"credential_id": credential_id, "kind": kind, "parent": parent, "purpose": purpose, "reason": reason, "request_id": request_id, "expires_at": expires_at}),
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
            expires_at,
        } => print_call(
            "POST",
            format!("/v1/credentials/{}/reissue", segment(&credential_id)),
            Some(object(
                json!({"new_credential_id": new_id, "parent": parent, "reason": reason, "request_id": request_id, "expires_at": expires_at}),
            )),
            c,
        ),
        CredentialsCommand::Import(args) => import(args, c),
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

fn import(args: ImportArgs, conn: &AdminConn) -> anyhow::Result<ExitCode> {
    use crate::admin::import::{self, ImportError, Options, EXIT_BAD_INPUT};
    let client = admin_client(conn)?;
    let opts = Options {
        refused: args
            .refused
            .unwrap_or_else(|| Options::default_refused(&args.file)),
        file: args.file,
        batch_size: args.batch_size,
        concurrency: usize::from(args.concurrency),
        retry_for: args.retry_for,
        from_line: args.from_line,
    };
    let summary = match runtime()?.block_on(import::run(client, &opts)) {
        Ok(s) => s,
        Err(e @ ImportError::BadInput(_)) => {
            eprintln!("statusd: {e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
        Err(e) => return Err(e.into()),
    };
    print_out(&serde_json::to_string(&summary)?)?;
    if let Some(e) = &summary.error {
        eprintln!("statusd: import stopped: {e}");
    } else if summary.refused > 0 {
        eprintln!(
            "statusd: {} of {} lines refused; they are listed in {}",
            summary.refused,
            summary.lines,
            summary.refused_file.display()
        );
    }
    Ok(ExitCode::from(summary.exit_code))
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
        print_out("configuration OK")?;
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
    print_out(
        &serde_json::json!({"path": args.out, "alg": key.algorithm().jose_name(), "kid": key.kid()})
            .to_string(),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn csr(args: CsrArgs) -> anyhow::Result<ExitCode> {
    use crate::token::TokenSigner as _;
    use std::io::Write as _;
    let pkcs11 = crate::config::Pkcs11Config::from_flags(
        Some(&args.signing_key),
        args.pkcs11_module.as_deref(),
        args.pkcs11_pin_file.as_deref(),
    )?;
    let (signer, _) = app::open_signing_key(&args.signing_key, pkcs11.as_ref())?;
    let pem = crate::cert::csr_pem(&args.subject, &signer)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if args.force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts
        .open(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    f.write_all(pem.as_bytes())?;
    println!(
        "{}",
        serde_json::json!({"path": args.out, "subject": args.subject, "alg": signer.algorithm().jose_name(), "kid": signer.kid()})
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a file, standard input (`-`) or an http:// or https:// URL; `what` names it in errors
/// ("the token", "the key set").
fn read_input(
    input: &str,
    accept: &str,
    what: &str,
    tls: &crate::tls::ClientTls,
) -> anyhow::Result<Vec<u8>> {
    if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {what} from standard input"))?;
        return Ok(buf);
    }
    if input.starts_with("http://") || input.starts_with("https://") {
        return runtime()?
            .block_on(fetch(input, accept, FETCH_TIMEOUT, tls))
            .with_context(|| format!("reading {what}"));
    }
    std::fs::read(input).with_context(|| format!("reading {input} ({what})"))
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
    let (status, body) = tokio::time::timeout(timeout, answer).await.map_err(|_| {
        anyhow::anyhow!(
            "fetching {url}: no complete answer within {} s",
            timeout.as_secs()
        )
    })??;
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
    let keys = args
        .key
        .as_deref()
        .map(|k| read_key_set(k, &tls))
        .transpose()?;
    let trust_anchors = read_trust_anchors(args.trust_anchor.as_deref())?;
    let input = read_input(&args.input, &args.accept, "the token", &tls)?;
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
        trust_anchors,
    };
    let report = inspect::inspect_any(&input, &opts)
        .with_context(|| format!("{}: verification failed", args.input))?;
    print_out(&serde_json::to_string_pretty(&report)?)?;
    Ok(ExitCode::SUCCESS)
}

/// A key set from a JWKS or PEM file, or an http:// or https:// URL of a JWKS.
fn read_key_set(k: &str, tls: &crate::tls::ClientTls) -> anyhow::Result<KeySet> {
    let bytes = read_input(
        k,
        "application/jwk-set+json, application/json",
        "the key set (--key)",
        tls,
    )?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{k}: the key set is not UTF-8 text (expected a JWKS or PEM)"))?;
    let set = if text.trim_start().starts_with('{') {
        KeySet::from_jwks_json(&text)
    } else {
        KeySet::from_pem(&text)
    };
    set.with_context(|| format!("{k}: not a usable key set (JWKS or PEM)"))
}

/// `--trust-anchor FILE`: every certificate of the PEM file (one root or a bundle); none without
/// the flag.
fn read_trust_anchors(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Vec<x509_cert::Certificate>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let pem =
        std::fs::read(path).with_context(|| format!("reading trust anchor {}", path.display()))?;
    crate::cert::anchors_from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("trust anchor {}: {e}", path.display()))
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    use crate::verifier::{Cache, Options, Verifier, EXIT_CHECK_FAILED};
    let tls = crate::tls::ClientTls {
        ca: args.ca.clone(),
        identity: None,
    };
    let keys = args
        .key
        .as_deref()
        .map(|k| read_key_set(k, &tls))
        .transpose()?;
    let trust_anchors = read_trust_anchors(args.trust_anchor.as_deref())?;
    let credential = if args.credential == "-" || std::path::Path::new(&args.credential).is_file() {
        read_input(&args.credential, "*/*", "the credential", &tls)?
    } else {
        args.credential.clone().into_bytes()
    };
    let cache = if args.no_cache {
        None
    } else {
        Some(Cache::new(
            args.cache_dir.unwrap_or_else(Cache::default_dir),
        ))
    };
    let verifier = Verifier::new(Options {
        cache,
        offline: args.offline,
        keys,
        trust_anchors,
        now: args.at,
        min_entries: args.min_entries,
        timeout: std::time::Duration::from_secs(args.timeout),
        max_ttl: std::time::Duration::from_secs(args.max_ttl),
        tls,
    });
    match runtime()?.block_on(verifier.verify(&credential)) {
        Ok(report) => {
            print_out(&serde_json::to_string_pretty(&report)?)?;
            Ok(ExitCode::from(report.exit_code))
        }
        Err(e) => {
            // The reason goes to stdout as JSON for programs and to stderr for people.
            print_out(&serde_json::to_string_pretty(&serde_json::json!({
                "status": "CHECK_FAILED",
                "exit_code": EXIT_CHECK_FAILED,
                "error": e.to_string(),
            }))?)?;
            eprintln!("statusd: status check failed: {e}");
            Ok(ExitCode::from(EXIT_CHECK_FAILED))
        }
    }
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
    std::io::stdout()
        .lock()
        .write_all(&body)
        .context("writing the answer")?;
    Ok(ExitCode::SUCCESS)
}

fn seed(args: SeedArgs) -> anyhow::Result<ExitCode> {
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
        let pb = crate::progress::bar(u64::from(args.lists), "lists");
        pb.set_message("seeding");
        for n in 1..=args.lists {
            let id = format!("{}{n}", args.prefix);
            crate::demo::seed_list(&store, &id, bits, args.size, args.invalid, args.suspended)
                .await
                .with_context(|| format!("seeding list {id:?}"))?;
            pb.inc(1);
        }
        pb.finish_and_clear();
        print_out(
            &serde_json::json!({
                "store": store.kind(),
                "lists": args.lists,
                "size": args.size,
                "bits": bits.get(),
                "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            })
            .to_string(),
        )?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Every command and subcommand, depth first, with its path (`statusd credentials show`).
    fn commands(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            commands(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    /// Issue 19: `--help` showed `[DEFAULT_MAX_INFLIGHT]` (a rustdoc link), "Accept `Accept`
    /// value", and arguments with no help at all. Fixed in e8a2d9f.
    #[test]
    fn issue_19_help_showed_rustdoc_links_and_arguments_without_help() {
        let mut all = Vec::new();
        commands(&Cli::command(), "statusd".into(), &mut all);
        for (path, cmd) in all {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                assert!(!help.trim().is_empty(), "{path} {id}: no help");
                for leak in ["[`", "`]", "Accept `Accept`", "DEFAULT_"] {
                    assert!(!help.contains(leak), "{path} {id}: {help:?} shows {leak:?}");
                }
            }
        }
    }

    #[test]
    fn broken_pipes_are_recognised_through_context() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the answer");
        assert!(is_broken_pipe(&e));
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&e));
    }

    #[test]
    fn a_report_states_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Repeats(#[source] std::io::Error);
        let e =
            anyhow::Error::new(Repeats(std::io::Error::other("disk on fire"))).context("saving");
        assert_eq!(
            report(&e),
            "statusd: saving\n  caused by: outer: disk on fire"
        );
    }
}
