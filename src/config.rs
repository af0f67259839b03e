//! Configuration: the only place that reads flags and `STATUSD_*` environment variables.
//!
//! [`ServeArgs`] is the raw command line (every flag also readable from its environment
//! variable); [`Config::from_args`] validates it once into typed values. Nothing else in the
//! crate looks at the environment. `statusd serve --check-config` runs exactly this and exits.
//!
//! Each module owns its settings type (`http::PublicSettings`, `server::Limits`,
//! `issuer::Settings`, `consistency::Settings`, `store::RedisSecurity`, `tls::ServerFiles`);
//! this module builds them from the flags, so it sits above every one of them in the import
//! graph and none of them imports it.

use crate::http::PublicSettings;
use crate::server::Limits;
use crate::store::{RedisSecurity, RedisWait};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `statusd serve`. The environment variable names are a contract.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Public listener: status lists and lookups.
    #[arg(long, env = "STATUSD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Admin listener: metrics, health, issuer API. Never expose it publicly.
    #[arg(long, env = "STATUSD_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: String,
    /// Allow the admin listener on a non-loopback address.
    #[arg(long, env = "STATUSD_ADMIN_ALLOW_PUBLIC", default_value_t = false)]
    pub admin_allow_public: bool,
    /// Base URL verifiers use; it goes into `sub`, `uri` and credential ids.
    /// Default: http://<listen address>.
    #[arg(long, env = "STATUSD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Directory of the embedded store, the generated demo key and the last-good snapshot.
    #[arg(long, env = "STATUSD_DATA_DIR", default_value = "./statusd-data")]
    pub data_dir: PathBuf,
    /// PKCS#8 PEM signing key (ES256 or Ed25519), or an RFC 7512 PKCS#11 URI naming a key in
    /// an HSM (`pkcs11:token=…;object=…[;id=…]`). Default: generated in the data directory
    /// with --demo, required otherwise.
    #[arg(long, env = "STATUSD_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// PKCS#11 module (shared library) of the HSM holding a `pkcs11:` signing key.
    #[arg(long, env = "STATUSD_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN (one line; refused if every user may read it).
    #[arg(long, env = "STATUSD_PKCS11_PIN_FILE")]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// PEM certificate chain of the signing key, leaf first, then intermediates: published as
    /// `x5c` (JWS, JWKS) and `x5chain` (CWT).
    #[arg(long, env = "STATUSD_SIGNING_CERT")]
    pub signing_cert: Option<PathBuf>,
    /// Algorithm of an RSA signing key (a key file or a key in a PKCS#11 token): PS256
    /// (default) or RS256 (for verifiers that need it). Other keys have one algorithm each.
    #[arg(long, env = "STATUSD_SIGNING_ALG")]
    pub signing_alg: Option<RsaSigningAlg>,
    /// Extra public keys to publish in the JWKS beside the signing key, for key rotation:
    /// comma-separated paths of PEM files, each holding one or more SPKI `PUBLIC KEY` or
    /// PKCS#8 `PRIVATE KEY` blocks (only the public half is published). Empty: none.
    #[arg(long, env = "STATUSD_PUBLISHED_KEYS")]
    pub published_keys: Option<String>,
    /// Redis source of truth: redis://host:port[/db], or a cluster seed list
    /// redis+cluster://h1:p1,h2:p2. Without it statusd uses the embedded store.
    #[arg(long, env = "STATUSD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// File of admin bearer tokens (one `name scopes token` per line).
    #[arg(long, env = "STATUSD_ADMIN_TOKENS")]
    pub admin_tokens: Option<PathBuf>,
    /// `iss` of the tokens. Default: the public URL.
    #[arg(long, env = "STATUSD_ISSUER")]
    pub issuer: Option<String>,
    /// Token `ttl` in seconds: how long verifiers and caches may keep a list.
    #[arg(long, env = "STATUSD_TTL", default_value_t = 300)]
    pub ttl: u64,
    /// Token lifetime (`exp - iat`) in seconds; tokens are re-signed at half their lifetime.
    #[arg(long, env = "STATUSD_TOKEN_LIFETIME", default_value_t = 86_400)]
    pub token_lifetime: u64,
    /// `max-age` of per-credential lookup responses, in seconds (0 = no-store).
    #[arg(long, env = "STATUSD_LOOKUP_MAX_AGE", default_value_t = 10)]
    pub lookup_max_age: u64,
    /// Shortest interval in seconds between two re-encodings (and re-signings) of a list that
    /// keeps changing. Lookups see every change at once; tokens follow within this interval.
    #[arg(long, env = "STATUSD_REENCODE_INTERVAL", default_value_t = 5)]
    pub reencode_interval: u64,
    /// Seconds between two reads of every list's metadata while the Redis subscription is live
    /// (every write then names its list, and only that list is read): a safety net for a lost
    /// message. While the subscription is down or just taken again, and on a Redis cluster,
    /// every list is read on every 50 ms poll whatever this says. 0: on every poll. At most
    /// half of `--max-staleness` is used (the full read is what keeps a replica ready).
    #[arg(long, env = "STATUSD_FULL_SYNC_INTERVAL", default_value_t = 1)]
    pub full_sync_interval: u64,
    /// Seconds without a successful synchronisation with the store after which `/readyz`
    /// reports not ready (requests are still answered from the last good snapshot).
    #[arg(long, env = "STATUSD_MAX_STALENESS", default_value_t = 30)]
    pub max_staleness: u64,
    /// Seconds this replica's clock may differ from Redis's `TIME` (either way) before it
    /// pauses signing: tokens it signed would carry an `iat`/`exp` verifiers reject or trust
    /// too long. Measured every 5 s; no effect on the embedded store.
    #[arg(long, env = "STATUSD_MAX_CLOCK_SKEW", default_value_t = 30)]
    pub max_clock_skew: u64,
    /// Maximum concurrent connections per listener.
    #[arg(long, env = "STATUSD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most requests the public plane holds in flight; past it, new requests are answered 503
    /// with `Retry-After: 1` at once instead of queueing.
    #[arg(long, env = "STATUSD_MAX_INFLIGHT", default_value_t = 1024)]
    pub max_inflight: usize,
    /// Worker threads of the admin plane (issuer API, health, metrics), all at a lower priority
    /// (nice +10) than the public plane's: two take issuer batches in parallel.
    #[arg(long, env = "STATUSD_ADMIN_WORKERS", default_value_t = 2)]
    pub admin_workers: usize,
    /// Priority of everything but the public plane (admin plane, refresher, store connections,
    /// list builds): `nice` (+10, list builds +19) keeps them a share of the CPU when lookups
    /// saturate it; `idle` (SCHED_IDLE) makes a lookup preempt them at once, so a launch import
    /// costs lookups nothing, but under saturation changes then wait for CPU lookups leave.
    #[arg(long, env = "STATUSD_BACKGROUND_PRIORITY", default_value = "nice")]
    pub background_priority: crate::runtime::BackgroundPriority,
    /// Seconds a client has to send its request headers.
    #[arg(long, env = "STATUSD_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    #[arg(long, env = "STATUSD_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Entries per second the consistency check compares with the source of truth (0: off).
    #[arg(long, env = "STATUSD_CONSISTENCY_SAMPLES", default_value_t = 16)]
    pub consistency_samples: usize,
    /// Issuer API: share of a list's indices after which it takes no new top-level
    /// credentials (derived cards may still fill their parent's list).
    #[arg(long, env = "STATUSD_FILL_THRESHOLD", default_value_t = 0.75)]
    pub fill_threshold: f64,
    /// Issuer API: lists under the fill threshold each pool keeps, creating new ones ahead of
    /// demand.
    #[arg(long, env = "STATUSD_MIN_OPEN_LISTS", default_value_t = 2)]
    pub min_open_lists: usize,
    /// Issuer API: entries of the lists it creates.
    #[arg(long, env = "STATUSD_LIST_SIZE", default_value_t = 1048576)]
    pub list_size: u32,
    /// Issuer API: bits per entry of the lists it creates (2 or more to express SUSPENDED).
    #[arg(long, env = "STATUSD_LIST_BITS", default_value_t = 2)]
    pub list_bits: u8,
    /// Issuer API: most lists the store may hold, every list counted (beyond it: 409 list-limit)
    #[arg(long, env = "STATUSD_MAX_LISTS", default_value_t = 512)]
    pub max_lists: usize,
    /// Issuer API: how long after the last of its credentials expired a full list is retired
    /// (no longer published; its URLs answer 410). A duration (`30d`, `720h`, `1s`) or seconds.
    #[arg(long, env = "STATUSD_RETIRE_AFTER", default_value = "30d")]
    pub retire_after: String,
    /// How long after retirement a list's status data is deleted from the store (its tombstone
    /// and its credentials' audit trail stay). A duration (`90d`) or seconds.
    #[arg(long, env = "STATUSD_RETIRED_RETENTION", default_value = "90d")]
    pub retired_retention: String,
    /// Create demo lists (2^20 entries, realistic revocation and suspension rates) if the store
    /// has none, generate a signing key if none is configured, and an admin tokens file
    /// (<data-dir>/demo-admin-tokens) if --admin-tokens is not given.
    #[arg(long, env = "STATUSD_DEMO", default_value_t = false)]
    pub demo: bool,
    /// Issuer API: the credential kinds it registers, comma-separated; any other kind is
    /// refused with the list of these.
    #[arg(
        long,
        env = "STATUSD_CREDENTIAL_KINDS",
        default_value = "physical,mobile"
    )]
    pub credential_kinds: String,
    /// Issuer API: the kinds (among --credential-kinds) whose cards may have derived cards,
    /// comma-separated; empty: none.
    #[arg(long, env = "STATUSD_PARENT_KINDS", default_value = "physical")]
    pub parent_kinds: String,
    /// Issuer API: the pool derived cards (a mobile card registered with a parent) go to,
    /// linked to their parent in another list; `{kind}` stands for the card's kind (`mobile`,
    /// `{kind}`). Empty (the default): a derived card goes to its parent's list, where only the
    /// share above --fill-threshold is left for derived cards (docs/capacity.md). Set it only
    /// once every replica runs a version that knows derived pools.
    #[arg(long, env = "STATUSD_DERIVED_POOL", default_value = "")]
    pub derived_pool: String,
    /// PEM certificate chain of the public listener; with --tls-key it serves HTTPS only.
    /// Unset: plain HTTP (behind a CDN or load balancer that terminates TLS).
    #[arg(long, env = "STATUSD_TLS_CERT", value_parser = optional_path)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "STATUSD_TLS_KEY", value_parser = optional_path)]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate chain of the admin listener. Default: the public listener's pair.
    #[arg(long, env = "STATUSD_ADMIN_TLS_CERT", value_parser = optional_path)]
    pub admin_tls_cert: Option<PathBuf>,
    /// PEM private key of --admin-tls-cert.
    #[arg(long, env = "STATUSD_ADMIN_TLS_KEY", value_parser = optional_path)]
    pub admin_tls_key: Option<PathBuf>,
    /// PEM CA certificates of admin clients: mutual TLS, a client certificate they issued is
    /// then required on the admin listener (besides the bearer token).
    #[arg(long, env = "STATUSD_ADMIN_CLIENT_CA", value_parser = optional_path)]
    pub admin_client_ca: Option<PathBuf>,
    /// PEM CA certificates that verify a `rediss://` server (a private CA). Default: the
    /// system's trust roots.
    #[arg(long, env = "STATUSD_REDIS_CA", value_parser = optional_path)]
    pub redis_ca: Option<PathBuf>,
    /// PEM client certificate presented to a `rediss://` server (with --redis-client-key).
    #[arg(long, env = "STATUSD_REDIS_CLIENT_CERT", value_parser = optional_path)]
    pub redis_client_cert: Option<PathBuf>,
    /// PEM private key of --redis-client-cert.
    #[arg(long, env = "STATUSD_REDIS_CLIENT_KEY", value_parser = optional_path)]
    pub redis_client_key: Option<PathBuf>,
    /// File holding the Redis password (trailing newline ignored), instead of one in the URL;
    /// an ACL user name may stay in the URL.
    #[arg(long, env = "STATUSD_REDIS_PASSWORD_FILE", value_parser = optional_path)]
    pub redis_password_file: Option<PathBuf>,
    /// Redis replicas that must confirm a write before statusd acknowledges it (`WAIT`, sent in
    /// the write's round trip); 0: none. Redis replicates asynchronously, so without it a
    /// failover can lose an acknowledged write. Needs --redis-url.
    #[arg(long, env = "STATUSD_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,
    /// How long a write waits at most for --redis-wait-replicas (`1s`, `250ms`; 10 ms to 10 s);
    /// fewer confirmations by then answer 503 `not-replicated` (applied on the primary, retry).
    #[arg(long, env = "STATUSD_REDIS_WAIT_TIMEOUT", default_value = "1s")]
    pub redis_wait_timeout: String,
    /// Log format on standard error: `text` (for people), or `json` (one JSON object per line
    /// with timestamp, level, target and fields, for log pipelines).
    #[arg(long, env = "STATUSD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Validate the configuration and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// Parses a path setting; an empty value (a variable a ConfigMap spells out empty) means unset,
/// as it does for `STATUSD_PUBLISHED_KEYS`.
fn optional_path(value: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(value))
}

/// The path of an optional path setting, `None` when unset or empty.
fn set(path: &Option<PathBuf>) -> Option<PathBuf> {
    path.clone().filter(|p| !p.as_os_str().is_empty())
}

/// `--log-format`. The default stays text whether or not standard error is a terminal: a
/// deployment that parses today's lines keeps working, and a log pipeline opts in to JSON
/// with one variable (the container image and manifests set it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Validated configuration of `statusd serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Base URL without a trailing slash.
    pub public_url: String,
    pub issuer: String,
    pub data_dir: PathBuf,
    pub signing_key: Option<PathBuf>,
    /// With a `pkcs11:` signing key: the module and the PIN file.
    pub pkcs11: Option<Pkcs11Config>,
    /// PEM certificate chain of the signing key, leaf first.
    pub signing_cert: Option<PathBuf>,
    /// `--signing-alg`: how an RSA signing key signs (PS256 without it). Refused at start for a
    /// key that is not RSA.
    pub rsa_alg: Option<crate::token::Algorithm>,
    /// PEM files of keys published in the JWKS besides the signing key (rotation).
    pub published_keys: Vec<PathBuf>,
    pub redis_url: Option<String>,
    pub admin_tokens: Option<PathBuf>,
    pub ttl: Duration,
    pub token_lifetime: Duration,
    pub lookup_max_age: Duration,
    pub max_staleness: Duration,
    /// Clock difference with the store beyond which signing pauses ([`crate::clock`]).
    pub max_clock_skew: Duration,
    pub reencode_interval: Duration,
    /// How often every list's metadata is read while change hints name every write.
    pub full_sync_interval: Duration,
    pub max_connections: NonZeroUsize,
    /// Public-plane requests in flight past which new ones are shed with 503.
    pub max_inflight: NonZeroUsize,
    /// Worker threads of the admin runtime.
    pub admin_workers: NonZeroUsize,
    /// Scheduling priority of the background threads (`--background-priority`).
    pub background_priority: crate::runtime::BackgroundPriority,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub demo: bool,
    /// Issuer API settings.
    pub issuer_settings: crate::issuer::Settings,
    /// When lists retire and their data is deleted.
    pub retire: crate::retire::Settings,
    pub consistency: crate::consistency::Settings,
    /// TLS of the public listener; `None` is plain HTTP.
    pub tls: Option<crate::tls::ServerFiles>,
    /// TLS of the admin listener (default: the public pair), with the client CA of mutual TLS.
    pub admin_tls: Option<crate::tls::ServerFiles>,
    /// TLS and password of the Redis connection.
    pub redis_security: RedisSecurity,
    /// Replicas each Redis write waits for.
    pub redis_wait: RedisWait,
    /// `--log-format`.
    pub log_format: LogFormat,
}

impl Config {
    /// The public plane's settings.
    pub fn public_settings(&self) -> PublicSettings {
        PublicSettings::new(self.lookup_max_age)
            .with_max_inflight(self.max_inflight)
            .with_body_timeout(self.header_read_timeout)
    }

    /// The limits both listeners apply.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections.get(),
            header_read_timeout: self.header_read_timeout,
            grace: self.shutdown_grace,
        }
    }
}

/// A configuration value that cannot be used, with the flag and variable that carry it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--{flag} (STATUSD_{env}): {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub env: &'static str,
    pub reason: String,
}

fn err(flag: &'static str, env: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        env,
        reason: reason.into(),
    }
}

/// A duration setting: `30d`, `720h`, `1s` (humantime), or plain seconds; at least a second
/// and at most a century.
fn duration(value: &str, flag: &'static str, env: &'static str) -> Result<Duration, ConfigError> {
    let d = parse_duration(value, flag, env, "30d, 720h or 90s")?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(100 * 365 * 86_400) {
        return Err(err(flag, env, "must be between 1 second and 100 years"));
    }
    Ok(d)
}

/// A duration in humantime (`examples` shows some) or plain seconds.
fn parse_duration(
    value: &str,
    flag: &'static str,
    env: &'static str,
    examples: &str,
) -> Result<Duration, ConfigError> {
    let v = value.trim();
    match v.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(v).map_err(|e| {
            err(
                flag,
                env,
                format!("{value:?} is not a duration such as {examples}: {e}"),
            )
        }),
    }
}

/// Splits the comma-separated `--published-keys` list. An empty or blank value means none, so
/// a deployment can always set the variable; an empty entry or a repeated path inside a
/// non-empty list is a typo worth refusing.
fn published_keys(value: Option<&str>) -> Result<Vec<PathBuf>, ConfigError> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for (n, entry) in value.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(err(
                "published-keys",
                "PUBLISHED_KEYS",
                format!("entry {} of {value:?} is empty", n + 1),
            ));
        }
        let path = PathBuf::from(entry);
        if paths.contains(&path) {
            return Err(err(
                "published-keys",
                "PUBLISHED_KEYS",
                format!("{entry:?} is listed twice"),
            ));
        }
        paths.push(path);
    }
    Ok(paths)
}

fn addr(value: &str, flag: &'static str, env: &'static str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|e| {
        err(
            flag,
            env,
            format!("{value:?} is not an IP:port address ({e})"),
        )
    })
}

/// A certificate and its key: both or neither.
fn pair(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    (cert_flag, cert_env): (&'static str, &'static str),
    (key_flag, key_env): (&'static str, &'static str),
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (set(cert), set(key)) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(err(
            key_flag,
            key_env,
            format!("required with --{cert_flag}"),
        )),
        (None, Some(_)) => Err(err(
            cert_flag,
            cert_env,
            format!("required with --{key_flag}"),
        )),
    }
}

/// The listeners' TLS files: the public pair, the admin pair (default: the public one) and the
/// admin client CA, which needs TLS on the admin listener.
type ListenerTls = (
    Option<crate::tls::ServerFiles>,
    Option<crate::tls::ServerFiles>,
);

fn listener_tls(args: &ServeArgs) -> Result<ListenerTls, ConfigError> {
    let public = pair(
        &args.tls_cert,
        &args.tls_key,
        ("tls-cert", "TLS_CERT"),
        ("tls-key", "TLS_KEY"),
    )?;
    let admin = pair(
        &args.admin_tls_cert,
        &args.admin_tls_key,
        ("admin-tls-cert", "ADMIN_TLS_CERT"),
        ("admin-tls-key", "ADMIN_TLS_KEY"),
    )?
    .or_else(|| public.clone());
    let client_ca = set(&args.admin_client_ca);
    if client_ca.is_some() && admin.is_none() {
        return Err(err(
            "admin-client-ca",
            "ADMIN_CLIENT_CA",
            "mutual TLS needs TLS on the admin listener: set --admin-tls-cert and \
             --admin-tls-key (or --tls-cert and --tls-key)",
        ));
    }
    let files =
        |(cert, key): (PathBuf, PathBuf), client_ca: Option<PathBuf>| crate::tls::ServerFiles {
            cert,
            key,
            client_ca,
        };
    Ok((
        public.map(|p| files(p, None)),
        admin.map(|p| files(p, client_ca)),
    ))
}

fn redis_security(args: &ServeArgs) -> Result<RedisSecurity, ConfigError> {
    let client_cert = pair(
        &args.redis_client_cert,
        &args.redis_client_key,
        ("redis-client-cert", "REDIS_CLIENT_CERT"),
        ("redis-client-key", "REDIS_CLIENT_KEY"),
    )?;
    let tls = args.redis_url.as_deref().is_some_and(|u| {
        let u = u.trim_start().to_ascii_lowercase();
        u.starts_with("rediss://") || u.starts_with("rediss+cluster://")
    });
    let ca = set(&args.redis_ca);
    if !tls && (ca.is_some() || client_cert.is_some()) {
        let (flag, env) = if ca.is_some() {
            ("redis-ca", "REDIS_CA")
        } else {
            ("redis-client-cert", "REDIS_CLIENT_CERT")
        };
        return Err(err(
            flag,
            env,
            "applies to a TLS Redis only: use a rediss:// (or rediss+cluster://) --redis-url",
        ));
    }
    let password_file = set(&args.redis_password_file);
    if password_file.is_some() && args.redis_url.is_none() {
        return Err(err(
            "redis-password-file",
            "REDIS_PASSWORD_FILE",
            "needs --redis-url",
        ));
    }
    Ok(RedisSecurity {
        ca,
        client_cert,
        password_file,
    })
}

fn redis_wait(args: &ServeArgs) -> Result<RedisWait, ConfigError> {
    let (flag, env) = ("redis-wait-timeout", "REDIS_WAIT_TIMEOUT");
    let timeout = parse_duration(&args.redis_wait_timeout, flag, env, "1s or 250ms")?;
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(10) {
        return Err(err(flag, env, "must be between 10ms and 10s"));
    }
    if args.redis_wait_replicas > 0 && args.redis_url.is_none() {
        return Err(err(
            "redis-wait-replicas",
            "REDIS_WAIT_REPLICAS",
            "needs --redis-url (the embedded store has no replicas: its commits are durable \
             on disk)",
        ));
    }
    Ok(RedisWait {
        replicas: args.redis_wait_replicas,
        timeout,
    })
}

impl Config {
    /// Validates `args` into a [`Config`].
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigError> {
        let listen = addr(&args.listen, "listen", "LISTEN")?;
        let (tls, admin_tls) = listener_tls(args)?;
        let admin_listen = addr(&args.admin_listen, "admin-listen", "ADMIN_LISTEN")?;
        if !admin_listen.ip().is_loopback() && !args.admin_allow_public {
            return Err(err(
                "admin-listen",
                "ADMIN_LISTEN",
                format!(
                    "{admin_listen} is not a loopback address; the admin plane holds the issuer \
                     API, so binding it elsewhere needs --admin-allow-public"
                ),
            ));
        }
        if listen == admin_listen && listen.port() != 0 {
            return Err(err(
                "admin-listen",
                "ADMIN_LISTEN",
                "must differ from --listen: the two planes never share a port",
            ));
        }
        let public_url = match &args.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if tls.is_some() => format!("https://{listen}"),
            None => format!("http://{listen}"),
        };
        if !(public_url.starts_with("https://") || public_url.starts_with("http://"))
            || public_url.contains(['?', '#', ' '])
            || public_url.split("://").nth(1).is_none_or(str::is_empty)
        {
            return Err(err(
                "public-url",
                "PUBLIC_URL",
                format!("{public_url:?} must be an absolute http(s) URL without query or fragment"),
            ));
        }
        if args.ttl == 0 || args.ttl > 86_400 {
            return Err(err("ttl", "TTL", "must be between 1 and 86400 seconds"));
        }
        if args.token_lifetime < 4 * args.ttl {
            return Err(err(
                "token-lifetime",
                "TOKEN_LIFETIME",
                format!(
                    "must be at least 4 x ttl ({} s) so a cached token never outlives its exp",
                    4 * args.ttl
                ),
            ));
        }
        if args.token_lifetime > 30 * 86_400 {
            return Err(err(
                "token-lifetime",
                "TOKEN_LIFETIME",
                "must be at most 30 days",
            ));
        }
        if args.lookup_max_age > 3600 {
            return Err(err(
                "lookup-max-age",
                "LOOKUP_MAX_AGE",
                "must be at most 3600 seconds",
            ));
        }
        if args.reencode_interval >= args.ttl {
            return Err(err(
                "reencode-interval",
                "REENCODE_INTERVAL",
                format!("must be shorter than the token ttl ({} s), or verifiers would cache tokens older than one ttl", args.ttl),
            ));
        }
        if args.max_staleness == 0 {
            return Err(err(
                "max-staleness",
                "MAX_STALENESS",
                "must be at least 1 second",
            ));
        }
        if args.max_clock_skew == 0 {
            return Err(err(
                "max-clock-skew",
                "MAX_CLOCK_SKEW",
                "must be at least 1 second",
            ));
        }
        let max_connections = NonZeroUsize::new(args.max_connections)
            .ok_or_else(|| err("max-connections", "MAX_CONNECTIONS", "must be at least 1"))?;
        let max_inflight = NonZeroUsize::new(args.max_inflight).ok_or_else(|| {
            err(
                "max-inflight",
                "MAX_INFLIGHT",
                "must be at least 1 (it bounds requests in flight; 503 beyond it)",
            )
        })?;
        let admin_workers = NonZeroUsize::new(args.admin_workers)
            .filter(|n| n.get() <= 64)
            .ok_or_else(|| err("admin-workers", "ADMIN_WORKERS", "must be between 1 and 64"))?;
        if args.header_read_timeout == 0 {
            return Err(err(
                "header-read-timeout",
                "HEADER_READ_TIMEOUT",
                "must be at least 1 second",
            ));
        }
        if args.signing_key.is_none() && !args.demo {
            return Err(err(
                "signing-key",
                "SIGNING_KEY",
                "a PKCS#8 PEM signing key is required (create one with `statusd keygen`), \
                 or run with --demo to generate one in the data directory",
            ));
        }
        let mut pkcs11 = pkcs11_config(args)?;
        let rsa_alg = args.signing_alg.map(RsaSigningAlg::algorithm);
        if let (Some(p11), Some(alg)) = (&mut pkcs11, rsa_alg) {
            p11.rsa_alg = alg;
        }
        let published_keys = published_keys(args.published_keys.as_deref())?;
        if let Some(url) = &args.redis_url {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+cluster://")
                || url.starts_with("rediss+cluster://"))
            {
                return Err(err(
                    "redis-url",
                    "REDIS_URL",
                    format!("{url:?} is not a redis:// URL"),
                ));
            }
        }
        if !(args.fill_threshold > 0.0 && args.fill_threshold <= 1.0) {
            return Err(err(
                "fill-threshold",
                "FILL_THRESHOLD",
                "must be a share above 0 and at most 1",
            ));
        }
        if args.min_open_lists == 0 || args.min_open_lists > 64 {
            return Err(err(
                "min-open-lists",
                "MIN_OPEN_LISTS",
                "must be between 1 and 64",
            ));
        }
        let list_bits = crate::status::Bits::new(args.list_bits.into())
            .map_err(|e| err("list-bits", "LIST_BITS", e.to_string()))?;
        crate::status::StatusList::new(list_bits, args.list_size)
            .map_err(|e| err("list-size", "LIST_SIZE", e.to_string()))?;
        // The accepted kinds alone first, so an error in the parent kinds names its own flag.
        use crate::issuer::kinds::Kinds;
        Kinds::parse(&args.credential_kinds, "")
            .map_err(|e| err("credential-kinds", "CREDENTIAL_KINDS", e.to_string()))?;
        let kinds = Kinds::parse(&args.credential_kinds, &args.parent_kinds)
            .map_err(|e| err("parent-kinds", "PARENT_KINDS", e.to_string()))?;
        let derived_pool = (!args.derived_pool.is_empty()).then(|| args.derived_pool.clone());
        if let Some(pool) = &derived_pool {
            // Each kind's pool must make list ids `<pool>-<n>`.
            for kind in kinds.accepted() {
                let pool = pool.replace("{kind}", kind);
                if crate::store::check_id(&format!("{pool}-{}", u32::MAX)).is_err() {
                    return Err(err(
                        "derived-pool",
                        "DERIVED_POOL",
                        format!(
                            "{pool:?} is not a pool name: a-z A-Z 0-9 - _ (`{{kind}}` for the \
                             card's kind), short enough for list ids `<pool>-<n>`"
                        ),
                    ));
                }
            }
        }
        if args.max_lists == 0 || args.max_lists > 100_000 {
            return Err(err(
                "max-lists",
                "MAX_LISTS",
                "must be between 1 and 100000",
            ));
        }
        if args.consistency_samples > 10_000 {
            return Err(err(
                "consistency-samples",
                "CONSISTENCY_SAMPLES",
                "must be at most 10000 per second",
            ));
        }
        let redis_security = redis_security(args)?;
        let redis_wait = redis_wait(args)?;
        let retire = crate::retire::Settings {
            after: duration(&args.retire_after, "retire-after", "RETIRE_AFTER")?,
            retention: duration(
                &args.retired_retention,
                "retired-retention",
                "RETIRED_RETENTION",
            )?,
            fill_threshold: args.fill_threshold,
        };
        Ok(Config {
            retire,
            tls,
            admin_tls,
            redis_security,
            redis_wait,
            log_format: args.log_format,
            consistency: crate::consistency::Settings {
                samples: args.consistency_samples,
                every: Duration::from_secs(1),
            },
            issuer_settings: crate::issuer::Settings {
                fill_threshold: args.fill_threshold,
                min_open_lists: args.min_open_lists,
                list_bits,
                list_size: args.list_size,
                kinds,
                max_lists: args.max_lists,
                derived_pool,
                ..Default::default()
            },
            listen,
            admin_listen,
            issuer: args.issuer.clone().unwrap_or_else(|| public_url.clone()),
            public_url,
            data_dir: args.data_dir.clone(),
            signing_key: args.signing_key.clone(),
            pkcs11,
            signing_cert: args.signing_cert.clone(),
            rsa_alg,
            published_keys,
            redis_url: args.redis_url.clone(),
            admin_tokens: args.admin_tokens.clone(),
            ttl: Duration::from_secs(args.ttl),
            token_lifetime: Duration::from_secs(args.token_lifetime),
            lookup_max_age: Duration::from_secs(args.lookup_max_age),
            max_staleness: Duration::from_secs(args.max_staleness),
            max_clock_skew: Duration::from_secs(args.max_clock_skew),
            reencode_interval: Duration::from_secs(args.reencode_interval),
            // A replica in sync must never look stale between two full reads.
            full_sync_interval: Duration::from_secs(args.full_sync_interval)
                .min(Duration::from_secs(args.max_staleness) / 2),
            max_connections,
            max_inflight,
            admin_workers,
            background_priority: args.background_priority,
            header_read_timeout: Duration::from_secs(args.header_read_timeout),
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
            demo: args.demo,
        })
    }
}

/// How an RSA signing key signs (`--signing-alg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RsaSigningAlg {
    #[value(name = "PS256")]
    Ps256,
    #[value(name = "RS256")]
    Rs256,
}

impl RsaSigningAlg {
    pub fn algorithm(self) -> crate::token::Algorithm {
        match self {
            RsaSigningAlg::Ps256 => crate::token::Algorithm::Ps256,
            RsaSigningAlg::Rs256 => crate::token::Algorithm::Rs256,
        }
    }
}

/// The PKCS#11 module and PIN file of a `pkcs11:` signing key.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    pub uri: crate::pkcs11::Pkcs11Uri,
    pub module: PathBuf,
    pub pin_file: PathBuf,
    /// How an RSA key signs (PS256 unless `--signing-alg RS256`); ignored for other keys.
    pub rsa_alg: crate::token::Algorithm,
}

/// A `pkcs11:` signing key needs a valid URI, the module and the PIN file; a key file needs
/// neither.
fn pkcs11_config(args: &ServeArgs) -> Result<Option<Pkcs11Config>, ConfigError> {
    Pkcs11Config::from_flags(
        args.signing_key.as_deref(),
        args.pkcs11_module.as_deref(),
        args.pkcs11_pin_file.as_deref(),
    )
}

impl Pkcs11Config {
    /// The PKCS#11 settings of `--signing-key`, `--pkcs11-module` and `--pkcs11-pin-file`
    /// (`serve` and `csr`): `None` for a key file.
    pub fn from_flags(
        signing_key: Option<&std::path::Path>,
        module: Option<&std::path::Path>,
        pin_file: Option<&std::path::Path>,
    ) -> Result<Option<Pkcs11Config>, ConfigError> {
        pkcs11_flags(signing_key, module, pin_file)
    }
}

fn pkcs11_flags(
    signing_key: Option<&std::path::Path>,
    module: Option<&std::path::Path>,
    pin_file: Option<&std::path::Path>,
) -> Result<Option<Pkcs11Config>, ConfigError> {
    use crate::pkcs11::Pkcs11Uri;
    let key = signing_key.and_then(|p| p.to_str());
    let Some(uri) = key.filter(|k| Pkcs11Uri::is_uri(k)) else {
        for (set, flag, env) in [
            (module.is_some(), "pkcs11-module", "PKCS11_MODULE"),
            (pin_file.is_some(), "pkcs11-pin-file", "PKCS11_PIN_FILE"),
        ] {
            if set {
                return Err(err(
                    flag,
                    env,
                    "is only used with a pkcs11: URI as the signing key",
                ));
            }
        }
        return Ok(None);
    };
    let uri =
        Pkcs11Uri::parse(uri).map_err(|e| err("signing-key", "SIGNING_KEY", e.to_string()))?;
    let module = module.map(ToOwned::to_owned).ok_or_else(|| {
        err(
            "pkcs11-module",
            "PKCS11_MODULE",
            "a pkcs11: signing key needs the PKCS#11 module's path",
        )
    })?;
    let pin_file = pin_file.map(ToOwned::to_owned).ok_or_else(|| {
        err(
            "pkcs11-pin-file",
            "PKCS11_PIN_FILE",
            "a pkcs11: signing key needs a file with the user PIN",
        )
    })?;
    Ok(Some(Pkcs11Config {
        uri,
        module,
        pin_file,
        rsa_alg: crate::token::Algorithm::Ps256,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let t = T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
        Config::from_args(&t.a)
    }

    #[test]
    fn defaults_with_demo() {
        let c = parse(&["--demo"]).unwrap();
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.issuer, c.public_url);
        assert_eq!(c.ttl, Duration::from_secs(300));
        assert_eq!(c.max_clock_skew, Duration::from_secs(30));
    }

    #[test]
    fn precise_errors() {
        let e = parse(&["--demo", "--listen", "nope"]).unwrap_err();
        assert_eq!((e.flag, e.env), ("listen", "LISTEN"));
        let e = parse(&["--demo", "--admin-listen", "0.0.0.0:9090"]).unwrap_err();
        assert!(e.reason.contains("loopback"), "{e}");
        assert!(parse(&[
            "--demo",
            "--admin-listen",
            "0.0.0.0:9090",
            "--admin-allow-public"
        ])
        .is_ok());
        assert_eq!(parse(&[]).unwrap_err().flag, "signing-key");
        assert_eq!(
            parse(&["--demo", "--public-url", "ftp://x"])
                .unwrap_err()
                .flag,
            "public-url"
        );
        assert_eq!(
            parse(&["--demo", "--public-url", "https://x/?a"])
                .unwrap_err()
                .flag,
            "public-url"
        );
        assert_eq!(parse(&["--demo", "--ttl", "0"]).unwrap_err().flag, "ttl");
        assert_eq!(
            parse(&["--demo", "--max-clock-skew", "0"])
                .unwrap_err()
                .flag,
            "max-clock-skew"
        );
        assert_eq!(
            parse(&["--demo", "--ttl", "600", "--token-lifetime", "1200"])
                .unwrap_err()
                .flag,
            "token-lifetime"
        );
        assert_eq!(
            parse(&["--demo", "--redis-url", "http://x"])
                .unwrap_err()
                .flag,
            "redis-url"
        );
        assert_eq!(
            parse(&["--demo", "--fill-threshold", "1.5"])
                .unwrap_err()
                .flag,
            "fill-threshold"
        );
        assert_eq!(
            parse(&["--demo", "--list-bits", "3"]).unwrap_err().flag,
            "list-bits"
        );
        assert_eq!(
            parse(&["--demo", "--list-size", "0"]).unwrap_err().flag,
            "list-size"
        );
        let c = parse(&["--demo", "--public-url", "https://status.example.kr/"]).unwrap();
        assert_eq!(c.public_url, "https://status.example.kr");
    }

    #[test]
    fn the_derived_pool_is_off_by_default_and_names_pools_per_kind() {
        let s = parse(&["--demo"]).unwrap().issuer_settings;
        assert_eq!(s.derived_pool, None);
        assert_eq!(s.derived_pool_for("mobile"), None);
        let s = parse(&[
            "--demo",
            "--credential-kinds",
            "physical,mobile,licence,mobile-licence",
            "--parent-kinds",
            "physical,licence",
            "--derived-pool",
            "{kind}",
        ])
        .unwrap()
        .issuer_settings;
        assert_eq!(
            s.derived_pool_for("mobile-licence").as_deref(),
            Some("mobile-licence")
        );
        assert!(s.is_configured_pool("mobile") && s.is_configured_pool("default"));
        assert!(!s.is_configured_pool("transit"));
        let s = parse(&["--demo", "--derived-pool", "wallet"])
            .unwrap()
            .issuer_settings;
        assert_eq!(s.derived_pool_for("mobile").as_deref(), Some("wallet"));
        for bad in ["mobile pool", "{kind}/x", &"p".repeat(200)] {
            let e = parse(&["--demo", "--derived-pool", bad]).unwrap_err();
            assert_eq!((e.flag, e.env), ("derived-pool", "DERIVED_POOL"), "{bad}");
        }
    }

    #[test]
    fn credential_kinds_default_to_the_mobile_id_and_are_validated() {
        let k = parse(&["--demo"]).unwrap().issuer_settings.kinds;
        assert_eq!(k, crate::issuer::kinds::Kinds::default());
        let k = parse(&[
            "--demo",
            "--credential-kinds",
            "physical,mobile,driver-licence",
            "--parent-kinds",
            "physical,driver-licence",
        ])
        .unwrap()
        .issuer_settings
        .kinds;
        assert!(k.may_be_parent("driver-licence"));
        let e = parse(&["--demo", "--credential-kinds", "physical,Mobile"]).unwrap_err();
        assert_eq!((e.flag, e.env), ("credential-kinds", "CREDENTIAL_KINDS"));
        let e = parse(&["--demo", "--parent-kinds", "veteran"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--parent-kinds (STATUSD_PARENT_KINDS): parent kind \"veteran\" is not one of the \
             accepted kinds"
        );
        let e = parse(&["--demo", "--parent-kinds", "physical,physical"]).unwrap_err();
        assert_eq!(e.flag, "parent-kinds");
    }

    #[test]
    fn max_inflight_defaults_and_must_be_positive() {
        assert_eq!(
            parse(&["--demo"]).unwrap().max_inflight.get(),
            crate::http::DEFAULT_MAX_INFLIGHT
        );
        assert_eq!(
            parse(&["--demo", "--max-inflight", "8"])
                .unwrap()
                .max_inflight
                .get(),
            8
        );
        let e = parse(&["--demo", "--max-inflight", "0"]).unwrap_err();
        assert_eq!((e.flag, e.env), ("max-inflight", "MAX_INFLIGHT"));
        assert!(e.reason.contains("at least 1"), "{e}");
    }

    #[test]
    fn max_lists_defaults_and_is_bounded() {
        assert_eq!(
            parse(&["--demo"]).unwrap().issuer_settings.max_lists,
            crate::issuer::DEFAULT_MAX_LISTS
        );
        assert_eq!(
            parse(&["--demo", "--max-lists", "3"])
                .unwrap()
                .issuer_settings
                .max_lists,
            3
        );
        for bad in ["0", "100001"] {
            let e = parse(&["--demo", "--max-lists", bad]).unwrap_err();
            assert_eq!((e.flag, e.env), ("max-lists", "MAX_LISTS"));
        }
    }

    #[test]
    fn retirement_periods_default_to_30_and_90_days_and_take_durations() {
        let c = parse(&["--demo"]).unwrap();
        assert_eq!(c.retire.after, crate::retire::DEFAULT_RETIRE_AFTER);
        assert_eq!(c.retire.retention, crate::retire::DEFAULT_RETENTION);
        assert_eq!(c.retire.after, Duration::from_secs(30 * 86_400));
        let c = parse(&[
            "--demo",
            "--retire-after",
            "1s",
            "--retired-retention",
            "90",
        ])
        .unwrap();
        assert_eq!(c.retire.after, Duration::from_secs(1));
        assert_eq!(c.retire.retention, Duration::from_secs(90));
        for bad in ["0", "soon", "1 fortnight", "200years"] {
            let e = parse(&["--demo", "--retire-after", bad]).unwrap_err();
            assert_eq!((e.flag, e.env), ("retire-after", "RETIRE_AFTER"), "{bad}");
        }
        let e = parse(&["--demo", "--retired-retention", "0s"]).unwrap_err();
        assert_eq!(e.env, "RETIRED_RETENTION");
    }

    #[test]
    fn background_priority_defaults_to_nice_and_takes_idle() {
        use crate::runtime::BackgroundPriority;
        let priority = |args: &[&str]| parse(args).map(|c| c.background_priority);
        assert_eq!(priority(&["--demo"]).unwrap(), BackgroundPriority::Nice);
        assert_eq!(
            priority(&["--demo", "--background-priority", "idle"]).unwrap(),
            BackgroundPriority::Idle
        );
        let bad = T::try_parse_from(["t", "--demo", "--background-priority", "realtime"])
            .err()
            .expect("an unknown priority is refused");
        assert!(bad.to_string().contains("nice, idle"), "{bad}");
    }

    #[test]
    fn admin_workers_default_to_two_and_are_bounded() {
        assert_eq!(parse(&["--demo"]).unwrap().admin_workers.get(), 2);
        assert_eq!(
            parse(&["--demo", "--admin-workers", "1"])
                .unwrap()
                .admin_workers
                .get(),
            1
        );
        for bad in ["0", "65"] {
            let e = parse(&["--demo", "--admin-workers", bad]).unwrap_err();
            assert_eq!((e.flag, e.env), ("admin-workers", "ADMIN_WORKERS"));
        }
    }

    #[test]
    fn tls_pairs_default_and_mutual_tls_needs_admin_tls() {
        let c = parse(&["--demo"]).unwrap();
        assert!(c.tls.is_none() && c.admin_tls.is_none());
        let c = parse(&["--demo", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert_eq!(c.public_url, "https://127.0.0.1:8080");
        let admin = c.admin_tls.expect("the public pair by default");
        assert_eq!(
            (admin.cert, admin.key, admin.client_ca),
            ("c.pem".into(), "k.pem".into(), None)
        );
        let c = parse(&[
            "--demo",
            "--admin-tls-cert",
            "a.pem",
            "--admin-tls-key",
            "ak.pem",
            "--admin-client-ca",
            "ca.pem",
        ])
        .unwrap();
        assert!(c.tls.is_none());
        let admin = c.admin_tls.unwrap();
        assert_eq!(admin.client_ca, Some("ca.pem".into()));
        let e = parse(&["--demo", "--tls-cert", "c.pem"]).unwrap_err();
        assert_eq!((e.flag, e.env), ("tls-key", "TLS_KEY"));
        let e = parse(&["--demo", "--admin-tls-key", "k.pem"]).unwrap_err();
        assert_eq!((e.flag, e.env), ("admin-tls-cert", "ADMIN_TLS_CERT"));
        let e = parse(&["--demo", "--admin-client-ca", "ca.pem"]).unwrap_err();
        assert_eq!((e.flag, e.env), ("admin-client-ca", "ADMIN_CLIENT_CA"));
        // Empty means unset, so a ConfigMap can spell every variable out.
        let c = parse(&[
            "--demo",
            "--tls-cert",
            "",
            "--tls-key",
            "",
            "--admin-client-ca",
            "",
        ])
        .unwrap();
        assert!(c.tls.is_none() && c.admin_tls.is_none());
    }

    #[test]
    fn redis_wait_is_off_by_default_and_needs_redis() {
        let c = parse(&["--demo"]).unwrap();
        assert_eq!(c.redis_wait, RedisWait::default());
        assert_eq!(c.redis_wait.replicas, 0);
        assert_eq!(c.redis_wait.timeout, Duration::from_secs(1));
        let c = parse(&[
            "--demo",
            "--redis-url",
            "redis://r:6379",
            "--redis-wait-replicas",
            "1",
            "--redis-wait-timeout",
            "250ms",
        ])
        .unwrap();
        assert_eq!(
            c.redis_wait,
            RedisWait {
                replicas: 1,
                timeout: Duration::from_millis(250)
            }
        );
        // The embedded store has no replicas: refused, as the other Redis-only settings are.
        let e = parse(&["--demo", "--redis-wait-replicas", "1"]).unwrap_err();
        assert_eq!(
            (e.flag, e.env),
            ("redis-wait-replicas", "REDIS_WAIT_REPLICAS")
        );
        for bad in ["5ms", "11s", "soon"] {
            let e = parse(&["--demo", "--redis-wait-timeout", bad]).unwrap_err();
            assert_eq!(e.flag, "redis-wait-timeout", "{bad}");
        }
    }

    #[test]
    fn redis_tls_settings_need_a_tls_url() {
        let ok = parse(&[
            "--demo",
            "--redis-url",
            "rediss://redis.internal:6380",
            "--redis-ca",
            "ca.pem",
            "--redis-client-cert",
            "c.pem",
            "--redis-client-key",
            "k.pem",
            "--redis-password-file",
            "pw",
        ])
        .unwrap();
        assert_eq!(
            ok.redis_security,
            RedisSecurity {
                ca: Some("ca.pem".into()),
                client_cert: Some(("c.pem".into(), "k.pem".into())),
                password_file: Some("pw".into()),
            }
        );
        let e = parse(&[
            "--demo",
            "--redis-url",
            "redis://r:6379",
            "--redis-ca",
            "ca.pem",
        ])
        .unwrap_err();
        assert_eq!((e.flag, e.env), ("redis-ca", "REDIS_CA"));
        let e = parse(&["--demo", "--redis-password-file", "pw"]).unwrap_err();
        assert_eq!(e.flag, "redis-password-file");
        let e = parse(&[
            "--demo",
            "--redis-url",
            "rediss://r:1",
            "--redis-client-cert",
            "c.pem",
        ])
        .unwrap_err();
        assert_eq!(e.flag, "redis-client-key");
    }

    #[test]
    fn log_format_defaults_to_text() {
        assert_eq!(parse(&["--demo"]).unwrap().log_format, LogFormat::Text);
        let c = parse(&["--demo", "--log-format", "json"]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(T::try_parse_from(["t", "--demo", "--log-format", "yaml"]).is_err());
    }

    #[test]
    fn published_keys_are_a_comma_separated_path_list() {
        assert!(parse(&["--demo"]).unwrap().published_keys.is_empty());
        // Blank means none, so a ConfigMap can carry the variable empty between rotations.
        for blank in ["", "  "] {
            let c = parse(&["--demo", "--published-keys", blank]).unwrap();
            assert!(c.published_keys.is_empty(), "{blank:?}");
        }
        let c = parse(&[
            "--demo",
            "--published-keys",
            "/keys/next.pub.pem, /keys/old.pem",
        ])
        .unwrap();
        assert_eq!(
            c.published_keys,
            vec![
                PathBuf::from("/keys/next.pub.pem"),
                PathBuf::from("/keys/old.pem")
            ]
        );
        let e = parse(&["--demo", "--published-keys", "a.pem,,b.pem"]).unwrap_err();
        assert_eq!((e.flag, e.env), ("published-keys", "PUBLISHED_KEYS"));
        assert!(e.reason.contains("entry 2"), "{e}");
        let e = parse(&["--demo", "--published-keys", "a.pem,"]).unwrap_err();
        assert!(e.reason.contains("entry 2"), "{e}");
        let e = parse(&["--demo", "--published-keys", "a.pem, b.pem ,a.pem"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--published-keys (STATUSD_PUBLISHED_KEYS): \"a.pem\" is listed twice"
        );
    }

    #[test]
    fn a_pkcs11_signing_key_needs_its_module_and_pin_file() {
        let uri = "pkcs11:token=statusd;object=list-signer";
        let e = parse(&["--signing-key", uri]).unwrap_err();
        assert_eq!((e.flag, e.env), ("pkcs11-module", "PKCS11_MODULE"));
        let e = parse(&["--signing-key", uri, "--pkcs11-module", "/m.so"]).unwrap_err();
        assert_eq!((e.flag, e.env), ("pkcs11-pin-file", "PKCS11_PIN_FILE"));
        let c = parse(&[
            "--signing-key",
            uri,
            "--pkcs11-module",
            "/m.so",
            "--pkcs11-pin-file",
            "/pin",
        ])
        .unwrap();
        let p11 = c.pkcs11.unwrap();
        assert_eq!(
            (p11.uri.token.as_str(), p11.uri.object.as_str()),
            ("statusd", "list-signer")
        );
        assert_eq!(p11.module, PathBuf::from("/m.so"));
        let e = parse(&[
            "--signing-key",
            "pkcs11:token=statusd",
            "--pkcs11-module",
            "/m.so",
        ])
        .unwrap_err();
        assert!(e.reason.contains("object="), "{e}");
        // The PKCS#11 flags without a pkcs11: key are a mistake worth a clear message.
        let e = parse(&["--demo", "--pkcs11-module", "/m.so"]).unwrap_err();
        assert_eq!(e.flag, "pkcs11-module");
        assert!(parse(&["--signing-key", "k.pem"]).unwrap().pkcs11.is_none());
        let rs = parse(&[
            "--signing-key",
            uri,
            "--pkcs11-module",
            "/m.so",
            "--pkcs11-pin-file",
            "/pin",
            "--signing-alg",
            "RS256",
        ])
        .unwrap();
        assert_eq!(rs.pkcs11.unwrap().rsa_alg, crate::token::Algorithm::Rs256);
        // A key file's algorithm is known once it is read: app::start refuses it for non-RSA.
        let file = parse(&["--signing-key", "k.pem", "--signing-alg", "RS256"]).unwrap();
        assert_eq!(file.rsa_alg, Some(crate::token::Algorithm::Rs256));
        // Only PS256 and RS256 parse.
        assert!(T::try_parse_from(["t", "--signing-alg", "ES256"]).is_err());
    }
}
