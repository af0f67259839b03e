//! The connection to Redis: URL and TLS preparation (shared with `--check-config`), the
//! standalone connection manager or cluster client, replacing a connection that would not recover
//! by itself, error classification, the wake-up subscription, and the durable write
//! ([`Inner::write`], [`Inner::durable`]: `WAIT` for replicas in the write's round trip).

use super::keys::CHANNEL;
use super::parse::corrupt;
use super::{RedisStore, APPLY_LUA, CREATE_LUA, READ_LUA, RETIRE_LUA};
use crate::store::{check_id, Hints, RedisWait, StoreError};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline,
    ProtocolVersion, PushKind, RedisError, RedisFuture, RedisResult, Script, ServerErrorKind,
    ToRedisArgs, Value,
};
use roaring::RoaringBitmap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Timeouts of the connection to Redis, and whether writes wait for replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// One attempt to connect (TCP and handshake) to one server.
    pub connect_timeout: Duration,
    /// One command (a pipeline or a script counts as one) on an established connection. It must
    /// cover the largest full load: a 2^26-entry 8-bit list is 64 MiB.
    pub response_timeout: Duration,
    /// `WAIT` for replicas after every acknowledged write (none by default).
    pub wait: RedisWait,
    /// Follow the change channel, whose messages name the lists written (the refresher's
    /// hints; on by default). A store that only writes (the issuer's bulk lane) does without.
    pub subscribe: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            wait: RedisWait::default(),
            subscribe: true,
        }
    }
}

pub(super) struct Inner {
    backend: Backend,
    pub(super) apply: Script,
    pub(super) create: Script,
    pub(super) read: Script,
    pub(super) retire: Script,
    /// Every hint that a list may have changed, for [`Store::changed`](crate::store::Store::changed):
    /// a `statusd:changes` message (naming its list), a (re)subscription (anything may have
    /// changed: messages may have been missed meanwhile) or a write through this store.
    pub(super) hints: Arc<Hints>,
    /// The subscription task (standalone only), stopped with the last clone of the store.
    subscriber: Option<tokio::task::AbortHandle>,
    /// What this store remembers between calls to save reads and round trips (see
    /// [`Remembered`]).
    pub(super) allocated: Remembered,
    /// Replicas every acknowledged write waits for ([`Inner::write`], [`Inner::durable`]).
    wait: RedisWait,
    /// `statusd_redis_wait_shortfalls_total`, once the metrics exist
    /// ([`RedisStore::count_wait_shortfalls`]).
    shortfalls: std::sync::OnceLock<prometheus::IntCounter>,
}

/// What a [`RedisStore`] remembers between calls. Neither is ever taken as the truth: each only
/// lets a read be skipped or sent earlier, and is checked against the store.
#[derive(Default)]
pub(super) struct Remembered {
    /// Allocation bitmaps read before, by list, kept up to date with this store's own claims.
    /// Allocations only ever add indices, so a cached bitmap is a subset of the truth, and the
    /// commit script refuses to claim an index another writer took meanwhile (`conflict
    /// claimed`), after which the list's bitmap is read afresh. Without it every registration
    /// would read the whole bitmap (128 KiB for a 2^20-entry list).
    pub(super) bitmaps: Mutex<std::collections::HashMap<String, RoaringBitmap>>,
    /// The list ids last read from [`LISTS_KEY`](super::LISTS_KEY):
    /// [`Store::lists`](crate::store::Store::lists) reads their metadata in the same round trip
    /// as the set itself, and only lists new to it in a second one.
    pub(super) list_ids: Mutex<Vec<String>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = &self.subscriber {
            task.abort();
        }
    }
}

pub(super) enum Backend {
    Standalone(Box<Standalone>),
    Cluster(ClusterConnection),
}

/// A standalone server behind the redis crate's reconnecting [`ConnectionManager`].
pub(super) struct Standalone {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// The manager in use, and when it was last replaced (see [`Inner::note_error`]).
    current: Mutex<(ConnectionManager, Option<Instant>)>,
    /// The runtime the store was made on, where a replacement manager spawns its connection
    /// task too (the redis crate spawns where the manager is made): statusd makes its shared
    /// store on a thread of its own, away from the public workers.
    runtime: Option<tokio::runtime::Handle>,
}

/// One handle for one operation. Both kinds speak [`ConnectionLike`], so every operation is
/// written once; cluster routing (by the `{<id>}` hash tag) happens inside the cluster client.
#[derive(Clone)]
pub(super) enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        crate::store::note_requests(1);
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        crate::store::note_requests(1);
        match self {
            Conn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where `connect` goes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Target {
    Standalone(String),
    Cluster(Vec<String>),
}

/// TLS material and the password of the connection, read from the files
/// [`crate::store::RedisSecurity`] names.
#[derive(Clone, Default)]
pub struct Secrets {
    /// The private CA and client certificate (`rediss://` only).
    tls: Option<redis::TlsCertificates>,
    /// The password of `--redis-password-file`.
    password: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("tls", &self.tls)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Secrets {
    /// Reads the files `security` names.
    pub fn read(security: &crate::store::RedisSecurity) -> Result<Secrets, StoreError> {
        let read = |path: &std::path::Path, env: &str| {
            std::fs::read(path).map_err(|e| {
                StoreError::Backend(format!("reading {} ({env}): {e}", path.display()))
            })
        };
        let root_cert = match &security.ca {
            Some(ca) => {
                // Parsed here so that a wrong file is reported at start, not at first connect.
                crate::tls::roots(ca)
                    .map_err(|e| StoreError::Backend(format!("{e} (STATUSD_REDIS_CA)")))?;
                Some(read(ca, "STATUSD_REDIS_CA")?)
            }
            None => None,
        };
        let client_tls = match &security.client_cert {
            Some((cert, key)) => {
                crate::tls::certificates(cert)
                    .map_err(|e| StoreError::Backend(format!("{e} (STATUSD_REDIS_CLIENT_CERT)")))?;
                crate::tls::private_key(key)
                    .map_err(|e| StoreError::Backend(format!("{e} (STATUSD_REDIS_CLIENT_KEY)")))?;
                Some(redis::ClientTlsConfig {
                    client_cert: read(cert, "STATUSD_REDIS_CLIENT_CERT")?,
                    client_key: read(key, "STATUSD_REDIS_CLIENT_KEY")?,
                })
            }
            None => None,
        };
        let tls = (root_cert.is_some() || client_tls.is_some()).then_some(redis::TlsCertificates {
            client_tls,
            root_cert,
        });
        let password = match &security.password_file {
            Some(path) => {
                let bytes = read(path, "STATUSD_REDIS_PASSWORD_FILE")?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    StoreError::Backend(format!(
                        "{} (STATUSD_REDIS_PASSWORD_FILE) is not UTF-8 text",
                        path.display()
                    ))
                })?;
                let password = text.trim_end_matches(['\n', '\r']);
                if password.is_empty() || password.contains(['\n', '\r']) {
                    return Err(StoreError::Backend(format!(
                        "{} (STATUSD_REDIS_PASSWORD_FILE) must hold the password on one line",
                        path.display()
                    )));
                }
                Some(password.to_owned())
            }
            None => None,
        };
        Ok(Secrets { tls, password })
    }
}

/// The clients [`RedisStore::connect_secure`] builds, before anything is sent.
enum Prepared {
    Standalone {
        client: redis::Client,
        /// The subscription's client (RESP3).
        subscriber: redis::Client,
    },
    Cluster(redis::cluster::ClusterClient),
}

fn is_tls_url(url: &str) -> bool {
    url.trim_start().to_ascii_lowercase().starts_with("rediss")
}

/// A standalone client for `info`, over TLS with `secrets`' certificates for `rediss://`.
fn standalone_client(
    info: redis::ConnectionInfo,
    secrets: &Secrets,
) -> Result<redis::Client, StoreError> {
    let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    match &secrets.tls {
        Some(certs) if tls => redis::Client::build_with_tls(info, certs.clone()),
        _ => redis::Client::open(info),
    }
    .map_err(invalid_url)
}

/// TCP settings of every connection to Redis: `TCP_NODELAY`, so that a command written right
/// after another (a pipeline's tail, the commit after the planning read) is not held back by
/// Nagle's algorithm waiting for the server's delayed ACK: up to 40 ms per round trip on Linux.
fn tcp() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

/// Every step of connecting that needs no network: the URL, the files, the clients.
fn prepare(url: &str, secrets: &Secrets, opts: RedisOptions) -> Result<Prepared, StoreError> {
    if secrets.tls.is_some() && !is_tls_url(url) {
        return Err(StoreError::Backend(
            "a Redis CA or client certificate is configured but the URL is not rediss://".into(),
        ));
    }
    match parse_target(url)? {
        Target::Standalone(url) => {
            let mut info = url
                .as_str()
                .into_connection_info()
                .map_err(invalid_url)?
                .set_tcp_settings(tcp());
            if let Some(password) = &secrets.password {
                if info.redis_settings().password().is_some() {
                    return Err(StoreError::Backend(
                        "the Redis URL holds a password and STATUSD_REDIS_PASSWORD_FILE names \
                         another: keep one"
                            .into(),
                    ));
                }
                let settings = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(settings);
            }
            let client = standalone_client(info.clone(), secrets)?;
            // The subscription needs RESP3 (push messages on a multiplexed connection).
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let subscriber = standalone_client(info.set_redis_settings(settings), secrets)?;
            Ok(Prepared::Standalone { client, subscriber })
        }
        Target::Cluster(nodes) => {
            let mut builder = redis::cluster::ClusterClient::builder(nodes)
                .tcp_settings(tcp())
                .connection_timeout(opts.connect_timeout)
                .response_timeout(opts.response_timeout);
            if let Some(password) = &secrets.password {
                builder = builder.password(password);
            }
            if let Some(certs) = &secrets.tls {
                builder = builder.certs(certs.clone());
            }
            Ok(Prepared::Cluster(builder.build().map_err(invalid_url)?))
        }
    }
}

/// Checks `url` and `security` as [`RedisStore::connect_secure`] would, without connecting:
/// what `--check-config` runs.
pub fn check(url: &str, security: &crate::store::RedisSecurity) -> Result<(), StoreError> {
    let secrets = Secrets::read(security)?;
    prepare(url, &secrets, RedisOptions::default()).map(drop)
}

/// Parses the URL forms statusd accepts: `redis://host:port[/db]` (standalone), and a cluster
/// seed list as `redis+cluster://host1:port1,host2:port2` (credentials, if any, before the
/// first host apply to all) or as comma-separated `redis://` URLs; each also with TLS
/// (`rediss://`, `rediss+cluster://`).
pub(super) fn parse_target(url: &str) -> Result<Target, StoreError> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let cluster = if lower.starts_with("redis+cluster://") {
        Some(("redis", "redis+cluster://".len()))
    } else if lower.starts_with("rediss+cluster://") {
        Some(("rediss", "rediss+cluster://".len()))
    } else {
        None
    };
    if let Some((scheme, rest)) = cluster.map(|(scheme, at)| (scheme, &url[at..])) {
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}"))
            .collect();
        if nodes.is_empty() {
            return Err(StoreError::Backend(
                "invalid Redis URL: redis+cluster:// names no node".into(),
            ));
        }
        return Ok(Target::Cluster(nodes));
    }
    if url.contains(',') {
        let nodes: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        let scheme = if lower.starts_with("rediss://") {
            "rediss://"
        } else {
            "redis://"
        };
        if nodes
            .iter()
            .any(|n| !n.to_ascii_lowercase().starts_with(scheme))
        {
            return Err(StoreError::Backend(
                "invalid Redis URL: a comma-separated cluster seed list must consist of redis:// \
                 URLs, or of rediss:// URLs (TLS), not a mix"
                    .into(),
            ));
        }
        return Ok(Target::Cluster(nodes));
    }
    Ok(Target::Standalone(url.to_owned()))
}

fn invalid_url(e: RedisError) -> StoreError {
    // The URL is not echoed: it may carry a password.
    StoreError::Backend(format!("invalid Redis URL: {e}"))
}

/// Errors after which the connection manager must be replaced, because it would not replace
/// the connection itself (it reconnects only after a connection error):
/// * a failed handshake, which it caches for every later call: a wrong password fixed by the
///   operator, `SELECT` or `AUTH` answered while a restarted server is still loading its data;
/// * a response timeout, which leaves the connection in place: right for a server that is merely
///   slow or paused, but a connection whose packets are silently dropped (a failover that moved
///   the address, a network partition) would otherwise hang until TCP gives up, many minutes.
fn needs_new_connection(e: &RedisError) -> bool {
    e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::Client
                | ErrorKind::Server(ServerErrorKind::BusyLoading)
        )
        || e.to_string().contains("refused to switch database")
}

/// Errors that mean Redis cannot be reached (as opposed to Redis answering with an error).
fn is_unavailable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(ServerErrorKind::BusyLoading)
                | ErrorKind::Server(ServerErrorKind::ClusterDown)
                | ErrorKind::Server(ServerErrorKind::MasterDown)
                | ErrorKind::Server(ServerErrorKind::TryAgain)
        )
}

pub(super) fn is_wrong_type(e: &RedisError) -> bool {
    e.to_string().contains("WRONGTYPE")
}

impl RedisStore {
    /// Connects to Redis at `url` with the default [`RedisOptions`]; see
    /// [`RedisStore::connect_with`].
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// [`RedisStore::connect`] with the TLS material and password `security` names (read now).
    pub async fn connect_secure(
        url: &str,
        security: &crate::store::RedisSecurity,
    ) -> Result<RedisStore, StoreError> {
        Self::connect_secure_with(url, security, RedisOptions::default()).await
    }

    /// [`RedisStore::connect_secure`] with `opts`.
    pub async fn connect_secure_with(
        url: &str,
        security: &crate::store::RedisSecurity,
        opts: RedisOptions,
    ) -> Result<RedisStore, StoreError> {
        let secrets = Secrets::read(security)?;
        Self::connect_prepared(url, &secrets, opts, None).await
    }

    /// A store on the same Redis as this one (`url`, `security`, `opts` as it was made with)
    /// through connections of its own, made by the tasks that first use them: the issuer's bulk
    /// lane writes through one, so that its network I/O runs on the lane's threads. Its writes
    /// are named to this store's refresher as this store's own are, and it does not subscribe.
    pub async fn connect_beside(
        &self,
        url: &str,
        security: &crate::store::RedisSecurity,
        opts: RedisOptions,
    ) -> Result<RedisStore, StoreError> {
        let secrets = Secrets::read(security)?;
        let opts = RedisOptions {
            subscribe: false,
            ..opts
        };
        Self::connect_prepared(url, &secrets, opts, Some(self.inner.hints.clone())).await
    }

    /// Prepares the connection to Redis at `url`: `redis://host:port[/db]` for a standalone
    /// server, `redis+cluster://host1:port1,host2:port2,…` (or comma-separated `redis://` URLs)
    /// for a cluster. Nothing is sent yet, so this succeeds while Redis is down; it fails only
    /// on a URL it cannot use.
    pub async fn connect_with(url: &str, opts: RedisOptions) -> Result<RedisStore, StoreError> {
        Self::connect_prepared(url, &Secrets::default(), opts, None).await
    }

    async fn connect_prepared(
        url: &str,
        secrets: &Secrets,
        opts: RedisOptions,
        hints: Option<Arc<Hints>>,
    ) -> Result<RedisStore, StoreError> {
        let hints = hints.unwrap_or_default();
        let mut opts = opts;
        if opts.wait.replicas > 0 {
            // A write's round trip holds its `WAIT`, which may take all of its timeout.
            opts.response_timeout += opts.wait.timeout;
        }
        let (backend, subscriber) = match prepare(url, secrets, opts)? {
            Prepared::Standalone { client, subscriber } => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(opts.connect_timeout))
                    .set_response_timeout(Some(opts.response_timeout))
                    // One attempt per call: while Redis is down a call fails at once and the
                    // next call tries again, so the caller's cadence is the backoff.
                    .set_number_of_retries(0);
                let manager =
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                        .map_err(|e| StoreError::Backend(format!("redis: {e}")))?;
                let task = opts.subscribe.then(|| {
                    tokio::spawn(subscribe(subscriber, opts, hints.clone())).abort_handle()
                });
                let backend = Backend::Standalone(Box::new(Standalone {
                    client,
                    config,
                    current: Mutex::new((manager, None)),
                    runtime: tokio::runtime::Handle::try_current().ok(),
                }));
                (backend, task)
            }
            Prepared::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(opts.connect_timeout)
                    .set_response_timeout(opts.response_timeout);
                // Connects in the background: a cluster that is down fails the calls, not this.
                let conn = client.get_pending_async_connection_with_config(config);
                (Backend::Cluster(conn), None)
            }
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                backend,
                apply: Script::new(APPLY_LUA),
                create: Script::new(CREATE_LUA),
                read: Script::new(READ_LUA),
                retire: Script::new(RETIRE_LUA),
                hints,
                subscriber,
                allocated: Default::default(),
                wait: opts.wait,
                shortfalls: Default::default(),
            }),
        })
    }

    /// Whether this store talks to a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.backend, Backend::Cluster(_))
    }

    /// Counts every write that fewer replicas than asked confirmed in `counter`
    /// (`statusd_redis_wait_shortfalls_total`); the first counter given stays.
    pub fn count_wait_shortfalls(&self, counter: prometheus::IntCounter) {
        let _ = self.inner.shortfalls.set(counter);
    }
}

/// A script call: keys and arguments, as the redis crate's `ScriptInvocation` collects them
/// (whose command is not public, so it cannot join a pipeline).
pub(super) struct Call<'a> {
    script: &'a Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl<'a> Call<'a> {
    pub(super) fn new(script: &'a Script) -> Self {
        Call {
            script,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(super) fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    pub(super) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    fn evalsha(&self) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}

/// How many replicas confirmed a write ([`Inner::write`], [`Inner::durable`]): checked after
/// the caller has noted what the write did, since it was applied on the master either way.
#[must_use]
pub(super) struct Replicated(Option<StoreError>);

impl Replicated {
    /// [`StoreError::NotReplicated`] if fewer replicas than asked confirmed the write.
    pub(super) fn check(self) -> Result<(), StoreError> {
        self.0.map_or(Ok(()), Err)
    }
}

impl Inner {
    pub(super) fn conn(&self) -> Conn {
        match &self.backend {
            Backend::Standalone(s) => {
                let current = s.current.lock().unwrap_or_else(|p| p.into_inner());
                Conn::Standalone(current.0.clone())
            }
            Backend::Cluster(c) => Conn::Cluster(c.clone()),
        }
    }

    /// Replaces the standalone connection manager after an error it would not recover from by
    /// itself ([`needs_new_connection`]), at most once a second. Calls in flight keep the old one.
    fn note_error(&self, e: &RedisError) {
        let Backend::Standalone(s) = &self.backend else {
            return;
        };
        if !needs_new_connection(e) {
            return;
        }
        let mut current = s.current.lock().unwrap_or_else(|p| p.into_inner());
        if current
            .1
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let _on_its_runtime = s.runtime.as_ref().map(|r| r.enter());
        if let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(s.client.clone(), s.config.clone())
        {
            if e.is_timeout() {
                tracing::debug!(error = %e, "replacing the Redis connection");
            } else {
                tracing::warn!(error = %e, "replacing the Redis connection");
            }
            *current = (fresh, Some(Instant::now()));
        }
    }

    /// Maps a Redis error of an operation on list `id` (if any) to a [`StoreError`].
    pub(super) fn error(&self, id: Option<&str>, e: RedisError) -> StoreError {
        self.note_error(&e);
        match id {
            Some(id) if is_wrong_type(&e) => corrupt(id, format!("a key has the wrong type: {e}")),
            _ if is_unavailable(&e) => StoreError::Backend(format!("redis unavailable: {e}")),
            _ => StoreError::Backend(format!("redis: {e}")),
        }
    }

    /// Runs a write script: `EVALSHA`, followed in the same pipeline (one round trip, to the
    /// master of the script's slot on a cluster: the pipeline is routed by its keyed command) by
    /// `WAIT` when writes wait for replicas. A script Redis does not hold yet (`NOSCRIPT`) is
    /// loaded and the call sent again, as the redis crate's `invoke_async` does.
    pub(super) async fn write<T: FromRedisValue>(
        &self,
        call: &Call<'_>,
    ) -> RedisResult<(T, Replicated)> {
        let mut retried = false;
        loop {
            let (reply, replicated) = if self.wait.replicas == 0 {
                let reply = call.evalsha().query_async(&mut self.conn()).await;
                (reply, Replicated(None))
            } else {
                let mut pipe = redis::pipe();
                // The script's error is taken from its own reply, as a plain call reports it.
                pipe.add_command(call.evalsha()).ignore_errors();
                let (mut values, replicated) = self.durable(&mut pipe).await?;
                (
                    values.pop().unwrap_or(Value::Nil).extract_error(),
                    replicated,
                )
            };
            match reply {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) && !retried => {
                    call.script.load_async(&mut self.conn()).await?;
                    retried = true;
                }
                Err(e) => return Err(e),
                Ok(v) => return Ok((redis::from_redis_value(v)?, replicated)),
            }
        }
    }

    /// Sends the write `pipe` with `WAIT` appended when writes wait for replicas, and returns
    /// the replies of `pipe`'s commands. A shortfall is counted and logged here.
    pub(super) async fn durable(
        &self,
        pipe: &mut Pipeline,
    ) -> RedisResult<(Vec<Value>, Replicated)> {
        let wanted = self.wait.replicas;
        if wanted == 0 {
            let values = pipe.query_async(&mut self.conn()).await?;
            return Ok((values, Replicated(None)));
        }
        let timeout_ms = u64::try_from(self.wait.timeout.as_millis()).unwrap_or(u64::MAX);
        pipe.cmd("WAIT").arg(wanted).arg(timeout_ms);
        let mut values: Vec<Value> = pipe.query_async(&mut self.conn()).await?;
        let acked = match values.pop() {
            Some(Value::Int(n)) => u32::try_from(n).unwrap_or(0),
            other => {
                return Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "unexpected WAIT reply",
                    format!("{other:?}"),
                )))
            }
        };
        if acked >= wanted {
            return Ok((values, Replicated(None)));
        }
        if let Some(c) = self.shortfalls.get() {
            c.inc();
        }
        tracing::warn!(
            acked,
            wanted,
            "a Redis write was not confirmed by enough replicas in time; answering 503"
        );
        Ok((
            values,
            Replicated(Some(StoreError::NotReplicated { acked, wanted })),
        ))
    }

    /// Notes a write through this store to list `id` (`None`: a list was created).
    pub(super) fn notify(&self, id: Option<&str>) {
        self.hints.note(id);
    }

    /// `HGETALL` of many `meta` keys.
    pub(super) async fn hgetall_many(&self, keys: Vec<String>) -> Result<Vec<Value>, RedisError> {
        self.per_key("HGETALL", keys).await
    }

    /// One single-key command (`HGETALL`, `GET`) on many keys: one pipeline on a standalone
    /// server; concurrent commands on a cluster, where a pipeline must stay within one slot.
    pub(super) async fn per_key(
        &self,
        cmd: &'static str,
        keys: Vec<String>,
    ) -> Result<Vec<Value>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self.conn() {
            Conn::Standalone(c) => {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd(cmd).arg(k);
                }
                pipe.query_async(&mut Conn::Standalone(c)).await
            }
            Conn::Cluster(c) => {
                let mut tasks = tokio::task::JoinSet::new();
                let n = keys.len();
                // Counted here: the spawned tasks are outside the caller's count.
                crate::store::note_requests(u32::try_from(n).unwrap_or(u32::MAX));
                for (i, key) in keys.into_iter().enumerate() {
                    let mut c = c.clone();
                    tasks.spawn(async move {
                        let v: Result<Value, RedisError> =
                            redis::cmd(cmd).arg(key).query_async(&mut c).await;
                        (i, v)
                    });
                }
                let mut out = vec![Value::Nil; n];
                while let Some(done) = tasks.join_next().await {
                    let (i, v) = done.map_err(|e| {
                        RedisError::from((ErrorKind::Client, "redis task failed", e.to_string()))
                    })?;
                    out[i] = v?;
                }
                Ok(out)
            }
        }
    }
}

/// Keeps a subscription to [`CHANNEL`] and turns its messages into hints naming their lists
/// ([`message_list`]), reconnecting with backoff (100 ms doubling to 5 s) for as long as the
/// store lives. A silent connection is pinged every few seconds so that a half-open one is
/// noticed.
async fn subscribe(client: redis::Client, opts: RedisOptions, hints: Arc<Hints>) {
    const MIN_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    const PING_EVERY: Duration = Duration::from_secs(5);
    let mut backoff = MIN_BACKOFF;
    let mut warned = false;
    loop {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.response_timeout))
            .set_push_sender(tx);
        let subscribed = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            conn.subscribe(CHANNEL).await?;
            Ok::<_, RedisError>(conn)
        }
        .await;
        match subscribed {
            Ok(mut conn) => {
                if warned {
                    tracing::info!("subscribed to {CHANNEL} again");
                }
                backoff = MIN_BACKOFF;
                warned = false;
                // Messages published while unsubscribed are lost: have the refresher read
                // every list. From now on every write is named.
                hints.note(None);
                hints.set_complete(true);
                loop {
                    match tokio::time::timeout(PING_EVERY, rx.recv()).await {
                        Ok(Some(push)) => match push.kind {
                            PushKind::Message => hints.note(message_list(&push.data)),
                            PushKind::Disconnection => break,
                            _ => {}
                        },
                        Ok(None) => break,
                        Err(_) => {
                            let pong: Result<Value, _> =
                                redis::cmd("PING").query_async(&mut conn).await;
                            if pong.is_err() {
                                break;
                            }
                        }
                    }
                }
                // Writes may go unnamed until the subscription is back: the refresher reads
                // every list now and on every tick meanwhile.
                hints.set_complete(false);
                tracing::debug!("subscription to {CHANNEL} lost; resubscribing");
            }
            Err(e) => {
                if warned {
                    tracing::debug!(error = %e, "subscribing to {CHANNEL} failed");
                } else {
                    tracing::warn!(error = %e, "subscribing to {CHANNEL} failed; polling meanwhile, retrying with backoff");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The list a `statusd:changes` message names (its payload, `[channel, payload]`), if it is a
/// valid list id; `None` (read every list) for anything else another writer may publish.
fn message_list(data: &[Value]) -> Option<&str> {
    match data.get(1)? {
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .filter(|id| check_id(id).is_ok()),
        _ => None,
    }
}
