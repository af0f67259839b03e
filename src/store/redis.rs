//! The Redis source of truth: the production [`Store`] that many stateless replicas share.
//!
//! `docs/redis.md` is the contract this module implements: the key layout (every key of a list
//! carries the hash tag `{<id>}`, so a list lives in one cluster slot), the Redis bit order of
//! `data`, the change feed, and the write scripts `redis_apply.lua` and `redis_create.lua`, which
//! other writers may call as well. This module owns the connection to Redis (a standalone server
//! or a cluster), the strict parsing of everything read back, and the wake-up subscription.
//!
//! Availability: [`RedisStore::connect`] never waits for Redis. Connections are made on first
//! use and remade after a failure, each attempt bounded by [`RedisOptions::connect_timeout`], and
//! every command by [`RedisOptions::response_timeout`]; a call made while Redis is down, paused or
//! restarting fails fast with [`StoreError::Backend`] (`"redis unavailable: …"`) instead of
//! hanging, and a later call reconnects. The caller (the refresher) owns the retry cadence.
//!
//! TLS: `rediss://` (standalone) and `rediss+cluster://` (or comma-separated `rediss://` seeds)
//! connect over TLS, verified against the system's roots or a private CA, optionally with a
//! client certificate ([`RedisSecurity`]); the password may come from a file. [`check`] runs
//! every step of [`RedisStore::connect_secure`] that does not touch the network, so
//! `--check-config` accepts exactly the URLs start-up accepts.

use super::registry::{Location, MetaRecords, Records, Registry, Txn};
use super::{check_id, Applied, Change, ListMeta, NewList, Store, StoreError};
use crate::status::packing::{packed_len, unpack, Order};
use crate::status::{Bits, Status, StatusError, StatusList};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, ProtocolVersion, PushKind,
    RedisError, RedisFuture, Script, ServerErrorKind, Value,
};
use roaring::RoaringBitmap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How long the refresher waits at most between two polls of Redis; [`Store::changed`] of a
/// cluster store sleeps this long (there is no wake-up subscription on a cluster).
pub const POLL: Duration = Duration::from_millis(50);

/// The set of every list id.
pub const LISTS_KEY: &str = "statusd:lists";

/// The pub/sub channel that carries a list id after every applied batch.
pub const CHANNEL: &str = "statusd:changes";

/// The write script, as other writers must run it (docs/redis.md).
pub const APPLY_LUA: &str = include_str!("redis_apply.lua");

/// The create-if-absent script for a list's metadata.
pub const CREATE_LUA: &str = include_str!("redis_create.lua");

/// The most feed entries [`Store::changes_since`] replays; a replica further behind reloads the
/// list in full, which then costs less than the replay.
pub const MAX_CATCHUP: u64 = 1000;

/// `statusd:{<id>}:meta`
pub fn meta_key(id: &str) -> String {
    format!("statusd:{{{id}}}:meta")
}

/// `statusd:{<id>}:data`
pub fn data_key(id: &str) -> String {
    format!("statusd:{{{id}}}:data")
}

/// `statusd:{<id>}:feed`
pub fn feed_key(id: &str) -> String {
    format!("statusd:{{{id}}}:feed")
}

/// `statusd:{<id>}:creds`: the issuer registry's records of the list (hash: index → record).
pub fn creds_key(id: &str) -> String {
    format!("statusd:{{{id}}}:creds")
}

/// `statusd:{<id>}:alloc`: every index the issuer API ever allocated (bitmap, `SETBIT` order).
pub fn alloc_key(id: &str) -> String {
    format!("statusd:{{{id}}}:alloc")
}

/// `statusd:cid:<credential id>`: where a credential lives (`<list>/<index>`).
pub fn cid_key(cid: &str) -> String {
    format!("statusd:cid:{cid}")
}

/// Timeouts of the connection to Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// One attempt to connect (TCP and handshake) to one server.
    pub connect_timeout: Duration,
    /// One command (a pipeline or a script counts as one) on an established connection. It must
    /// cover the largest full load: a 2^26-entry 8-bit list is 64 MiB.
    pub response_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
        }
    }
}

/// The Redis store. Cheap to clone: clones share the connection and the subscription.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    apply: Script,
    create: Script,
    /// Bumped on every hint that a list may have changed: a `statusd:changes` message, a
    /// (re)subscription (messages may have been missed meanwhile) or a write through this store.
    wake: Arc<watch::Sender<u64>>,
    /// The refresher's view of `wake`.
    seen: tokio::sync::Mutex<watch::Receiver<u64>>,
    /// The subscription task (standalone only), stopped with the last clone of the store.
    subscriber: Option<tokio::task::AbortHandle>,
    /// What this store remembers between calls to save reads and round trips (see
    /// [`Remembered`]).
    allocated: Remembered,
}

/// What a [`RedisStore`] remembers between calls. Neither is ever taken as the truth: each only
/// lets a read be skipped or sent earlier, and is checked against the store.
#[derive(Default)]
struct Remembered {
    /// Allocation bitmaps read before, by list, kept up to date with this store's own claims.
    /// Allocations only ever add indices, so a cached bitmap is a subset of the truth, and the
    /// commit script refuses to claim an index another writer took meanwhile (`conflict
    /// claimed`), after which the list's bitmap is read afresh. Without it every registration
    /// would read the whole bitmap (128 KiB for a 2^20-entry list).
    bitmaps: Mutex<std::collections::HashMap<String, RoaringBitmap>>,
    /// The list ids last read from [`LISTS_KEY`]: [`Store::lists`] reads their metadata in the
    /// same round trip as the set itself, and only lists new to it in a second one.
    list_ids: Mutex<Vec<String>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = &self.subscriber {
            task.abort();
        }
    }
}

enum Backend {
    Standalone(Box<Standalone>),
    Cluster(ClusterConnection),
}

/// A standalone server behind the redis crate's reconnecting [`ConnectionManager`].
struct Standalone {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// The manager in use, and when it was last replaced (see [`Inner::note_error`]).
    current: Mutex<(ConnectionManager, Option<Instant>)>,
}

/// One handle for one operation. Both kinds speak [`ConnectionLike`], so every operation is
/// written once; cluster routing (by the `{<id>}` hash tag) happens inside the cluster client.
#[derive(Clone)]
enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        super::note_requests(1);
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
        super::note_requests(1);
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
enum Target {
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

/// Every step of connecting that needs no network: the URL, the files, the clients.
fn prepare(url: &str, secrets: &Secrets, opts: RedisOptions) -> Result<Prepared, StoreError> {
    if secrets.tls.is_some() && !is_tls_url(url) {
        return Err(StoreError::Backend(
            "a Redis CA or client certificate is configured but the URL is not rediss://".into(),
        ));
    }
    match parse_target(url)? {
        Target::Standalone(url) => {
            let mut info = url.as_str().into_connection_info().map_err(invalid_url)?;
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
fn parse_target(url: &str) -> Result<Target, StoreError> {
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn corrupt(id: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        list: id.to_owned(),
        reason: reason.into(),
    }
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

fn is_wrong_type(e: &RedisError) -> bool {
    e.to_string().contains("WRONGTYPE")
}

/// The bytes of a string reply.
fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The field/value pairs of a hash reply (a flat array in RESP2, a map in RESP3).
fn pairs_of(v: &Value) -> Option<Vec<(&[u8], &[u8])>> {
    match v {
        Value::Array(items) if items.len() % 2 == 0 => items
            .chunks(2)
            .map(|kv| Some((bytes_of(&kv[0])?, bytes_of(&kv[1])?)))
            .collect(),
        Value::Map(items) => items
            .iter()
            .map(|(k, v)| Some((bytes_of(k)?, bytes_of(v)?)))
            .collect(),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

/// A decimal integer without sign or spaces.
fn parse_uint(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Parses a `meta` hash strictly; `Ok(None)` if it is empty (the list does not exist).
fn parse_meta(id: &str, reply: &Value) -> Result<Option<ListMeta>, StoreError> {
    let pairs = pairs_of(reply).ok_or_else(|| corrupt(id, "meta is not a hash"))?;
    if pairs.is_empty() {
        return Ok(None);
    }
    let field = |name: &str| -> Result<u64, StoreError> {
        let raw = pairs
            .iter()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| *v)
            .ok_or_else(|| corrupt(id, format!("meta has no {name}")))?;
        parse_uint(raw).ok_or_else(|| {
            corrupt(
                id,
                format!(
                    "meta {name} is {:?}, not an integer",
                    String::from_utf8_lossy(raw)
                ),
            )
        })
    };
    let bits = Bits::new(field("bits")?).map_err(|e| corrupt(id, format!("meta: {e}")))?;
    let size = field("size")?;
    let size = u32::try_from(size)
        .map_err(|_| StatusError::InvalidSize(size))
        // The same rule every list is built with.
        .and_then(|size| StatusList::new(bits, size).map(|_| size))
        .map_err(|e| corrupt(id, format!("meta: {e}")))?;
    Ok(Some(ListMeta {
        id: id.to_owned(),
        bits: bits.get(),
        size,
        version: field("version")?,
        updated_at: field("updated_at")?,
        // Optional: writers other than statusd may not record it.
        updated_ms: pairs
            .iter()
            .find(|(k, _)| *k == b"updated_ms")
            .and_then(|(_, v)| parse_uint(v))
            .unwrap_or(0),
        // Issuer fields, absent on lists the issuer API does not manage.
        purpose: pairs
            .iter()
            .find(|(k, _)| *k == b"purpose")
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .filter(|p| check_id(p).is_ok())
            .map(str::to_owned),
        allocated: pairs
            .iter()
            .find(|(k, _)| *k == b"allocated")
            .and_then(|(_, v)| parse_uint(v))
            .unwrap_or(0),
    }))
}

/// The pure half of [`Store::load`]: a list from the replies to `HGETALL meta` and `GET data`,
/// checked as strictly as every other read (public so the fuzz targets reach it without Redis).
pub fn parse_list(
    id: &str,
    meta: &Value,
    data: Value,
) -> Result<(ListMeta, StatusList), StoreError> {
    let meta = parse_meta(id, meta)?.ok_or_else(|| StoreError::UnknownList(id.to_owned()))?;
    let bits = meta.bits()?;
    let mut data = match data {
        // A missing data key is an all-VALID list.
        Value::Nil => Vec::new(),
        Value::BulkString(b) => b,
        other => return Err(corrupt(id, format!("data is not a string: {other:?}"))),
    };
    let len = packed_len(bits, meta.size);
    if data.len() > len {
        return Err(corrupt(
            id,
            format!(
                "data is {} bytes, longer than the {len} bytes of {} {bits}-bit entries",
                data.len(),
                meta.size
            ),
        ));
    }
    // Redis grows the string lazily: missing bytes are zero (VALID).
    data.resize(len, 0);
    let list = unpack(bits, Order::MsbFirst, &data).map_err(|e| corrupt(id, e.to_string()))?;
    debug_assert_eq!(list.size(), meta.size);
    Ok((meta, list))
}

/// Parses one feed entry's `c` field: `idx=value` pairs joined by `,`, each within the list.
fn parse_changes(c: &[u8], bits: Bits, size: u32, out: &mut Vec<Change>) -> Option<()> {
    if c.is_empty() {
        return Some(());
    }
    for pair in c.split(|&b| b == b',') {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let idx = u32::try_from(parse_uint(&pair[..eq])?).ok()?;
        let value = u8::try_from(parse_uint(&pair[eq + 1..])?).ok()?;
        if idx >= size || value > bits.max_value() {
            return None;
        }
        out.push(Change {
            idx,
            status: Status(value),
        });
    }
    Some(())
}

/// Checks one feed entry (`[id, [field, value, …]]`) against the expected version and appends
/// its changes; `None` if it is not exactly that version, well-formed.
fn parse_feed_entry(
    entry: &Value,
    expected: u64,
    bits: Bits,
    size: u32,
    out: &mut Vec<Change>,
) -> Option<()> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let [entry_id, fields] = parts.as_slice() else {
        return None;
    };
    if bytes_of(entry_id)? != format!("{expected}-0").as_bytes() {
        return None;
    }
    let fields = pairs_of(fields)?;
    let get = |name: &[u8]| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    if parse_uint(get(b"v")?)? != expected {
        return None;
    }
    parse_changes(get(b"c")?, bits, size, out)
}

/// The pure half of [`Store::changes_since`]: the changes after `version` from the replies to
/// `HGETALL meta` and `XRANGE feed`, or `None` where only a full load can judge (a gap, a list
/// recreated or too far ahead, a malformed entry). Public so the fuzz targets reach it.
pub fn parse_changes_since(
    id: &str,
    version: u64,
    meta: &Value,
    feed: &Value,
) -> Result<Option<(u64, Vec<Change>)>, StoreError> {
    let Some(start) = version.checked_add(1) else {
        return Ok(None);
    };
    let Some(meta) = parse_meta(id, meta)? else {
        return Ok(None);
    };
    let current = meta.version;
    if current == version {
        return Ok(Some((version, Vec::new())));
    }
    // Behind the caller (the list was recreated), or further ahead than a replay is worth.
    if current < version || current - version > MAX_CATCHUP {
        return Ok(None);
    }
    let bits = meta.bits()?;
    let Value::Array(entries) = feed else {
        return Ok(None);
    };
    if entries.len() as u64 != current - version {
        return Ok(None);
    }
    let mut changes = Vec::new();
    for (k, entry) in entries.iter().enumerate() {
        let expected = start + k as u64;
        if parse_feed_entry(entry, expected, bits, meta.size, &mut changes).is_none() {
            return Ok(None);
        }
    }
    Ok(Some((current, changes)))
}

/// Maps the error of the apply script to the error the embedded store returns for the same
/// batch; `None` if it is not one of the script's own errors.
fn script_error(id: &str, changes: &[Change], e: &RedisError) -> Option<StoreError> {
    let text = e.to_string();
    let at = text.find("STATUSD ")?;
    let rest = &text[at + "STATUSD ".len()..];
    let mut words = rest.split_whitespace();
    let kind = words.next()?;
    let mut number = || words.next().and_then(|w| w.parse::<u64>().ok());
    let change = |n: Option<u64>| n.and_then(|n| changes.get(usize::try_from(n).ok()?));
    Some(match kind {
        "unknown-list" => StoreError::UnknownList(id.to_owned()),
        "corrupt" => corrupt(id, format!("meta: {}", rest["corrupt".len()..].trim())),
        "out-of-range" => {
            let c = change(number())?;
            let size = u32::try_from(number()?).ok()?;
            StatusError::IndexOutOfRange {
                idx: c.idx.into(),
                size,
            }
            .into()
        }
        "too-wide" => {
            let c = change(number())?;
            let bits = u8::try_from(number()?).ok()?;
            StatusError::ValueTooWide {
                value: c.status.0,
                bits,
            }
            .into()
        }
        "terminal" => {
            let c = change(number())?;
            StoreError::Terminal {
                idx: c.idx,
                to: c.status,
            }
        }
        _ => return None,
    })
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
        let secrets = Secrets::read(security)?;
        Self::connect_prepared(url, &secrets, RedisOptions::default()).await
    }

    /// Prepares the connection to Redis at `url`: `redis://host:port[/db]` for a standalone
    /// server, `redis+cluster://host1:port1,host2:port2,…` (or comma-separated `redis://` URLs)
    /// for a cluster. Nothing is sent yet, so this succeeds while Redis is down; it fails only
    /// on a URL it cannot use.
    pub async fn connect_with(url: &str, opts: RedisOptions) -> Result<RedisStore, StoreError> {
        Self::connect_prepared(url, &Secrets::default(), opts).await
    }

    async fn connect_prepared(
        url: &str,
        secrets: &Secrets,
        opts: RedisOptions,
    ) -> Result<RedisStore, StoreError> {
        let (wake, seen) = watch::channel(0u64);
        let wake = Arc::new(wake);
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
                let task = tokio::spawn(subscribe(subscriber, opts, wake.clone()));
                let backend = Backend::Standalone(Box::new(Standalone {
                    client,
                    config,
                    current: Mutex::new((manager, None)),
                }));
                (backend, Some(task.abort_handle()))
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
                wake,
                seen: tokio::sync::Mutex::new(seen),
                subscriber,
                allocated: Default::default(),
            }),
        })
    }

    /// Whether this store talks to a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.backend, Backend::Cluster(_))
    }
}

impl Inner {
    fn conn(&self) -> Conn {
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
    fn error(&self, id: Option<&str>, e: RedisError) -> StoreError {
        self.note_error(&e);
        match id {
            Some(id) if is_wrong_type(&e) => corrupt(id, format!("a key has the wrong type: {e}")),
            _ if is_unavailable(&e) => StoreError::Backend(format!("redis unavailable: {e}")),
            _ => StoreError::Backend(format!("redis: {e}")),
        }
    }

    fn notify(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// `HGETALL` of many `meta` keys.
    async fn hgetall_many(&self, keys: Vec<String>) -> Result<Vec<Value>, RedisError> {
        self.per_key("HGETALL", keys).await
    }

    /// One single-key command (`HGETALL`, `GET`) on many keys: one pipeline on a standalone
    /// server; concurrent commands on a cluster, where a pipeline must stay within one slot.
    async fn per_key(
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
                super::note_requests(u32::try_from(n).unwrap_or(u32::MAX));
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

/// Keeps a subscription to [`CHANNEL`] and turns its messages into wake-ups, reconnecting with
/// backoff (100 ms doubling to 5 s) for as long as the store lives. A silent connection is
/// pinged every few seconds so that a half-open one is noticed.
async fn subscribe(client: redis::Client, opts: RedisOptions, wake: Arc<watch::Sender<u64>>) {
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
                // Messages published while unsubscribed are lost: have the refresher look.
                wake.send_modify(|n| *n = n.wrapping_add(1));
                loop {
                    match tokio::time::timeout(PING_EVERY, rx.recv()).await {
                        Ok(Some(push)) => match push.kind {
                            PushKind::Message => wake.send_modify(|n| *n = n.wrapping_add(1)),
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

/// The bitmap `SETBIT` builds: index `i` is bit `7 - i % 8` of byte `i / 8`.
fn bitmap_from_redis(bytes: &[u8]) -> RoaringBitmap {
    let mut out = RoaringBitmap::new();
    for (i, &b) in bytes.iter().enumerate() {
        if b == 0 {
            continue;
        }
        for j in 0..8u32 {
            if b & (0x80 >> j) != 0 {
                out.insert(i as u32 * 8 + j);
            }
        }
    }
    out
}

fn location_of(v: &Value) -> Result<Option<Location>, StoreError> {
    match v {
        Value::Nil => Ok(None),
        other => {
            let raw = bytes_of(other).ok_or_else(|| {
                StoreError::Backend(format!("redis: credential index entry is {other:?}"))
            })?;
            let s = std::str::from_utf8(raw).ok();
            s.and_then(Location::parse).map(Some).ok_or_else(|| {
                StoreError::Backend(format!(
                    "credential index entry {:?} is corrupt",
                    String::from_utf8_lossy(raw)
                ))
            })
        }
    }
}

impl Registry for RedisStore {
    async fn allocated(&self, list: &str) -> Result<(u64, RoaringBitmap), StoreError> {
        check_id(list).map_err(|_| StoreError::UnknownList(list.to_owned()))?;
        let inner = &self.inner;
        let cached = inner
            .allocated
            .bitmaps
            .lock()
            .expect("not poisoned")
            .get(list)
            .cloned();
        // The version is always read; the bitmap only when this replica holds none.
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HGETALL").arg(meta_key(list));
        if cached.is_none() {
            pipe.cmd("GET").arg(alloc_key(list));
        }
        let replies: Vec<Value> = pipe
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(list), e))?;
        let reply = |i: usize| {
            replies.get(i).ok_or_else(|| {
                StoreError::Backend(format!("redis: short reply reading {list:?}'s allocations"))
            })
        };
        let meta =
            parse_meta(list, reply(0)?)?.ok_or_else(|| StoreError::UnknownList(list.to_owned()))?;
        if let Some(bitmap) = cached {
            return Ok((meta.version, bitmap));
        }
        let bitmap = match reply(1)? {
            Value::Nil => RoaringBitmap::new(),
            v => bitmap_from_redis(
                bytes_of(v).ok_or_else(|| corrupt(list, "alloc is not a string"))?,
            ),
        };
        if bitmap.max().is_some_and(|m| m >= meta.size) {
            return Err(corrupt(list, "alloc marks an index beyond the list"));
        }
        inner
            .allocated
            .bitmaps
            .lock()
            .expect("not poisoned")
            .insert(list.to_owned(), bitmap.clone());
        Ok((meta.version, bitmap))
    }

    async fn records(&self, list: &str, idxs: &[u32]) -> Result<Records, StoreError> {
        let (meta, records) = self.list_records(list, idxs).await?;
        Ok((meta.version, records))
    }

    async fn list_records(&self, list: &str, idxs: &[u32]) -> Result<MetaRecords, StoreError> {
        check_id(list).map_err(|_| StoreError::UnknownList(list.to_owned()))?;
        let inner = &self.inner;
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HGETALL").arg(meta_key(list));
        if !idxs.is_empty() {
            pipe.cmd("HMGET").arg(creds_key(list)).arg(idxs);
        }
        let mut replies: Vec<Value> = pipe
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(list), e))?;
        let bad = || StoreError::Backend(format!("redis: unexpected records reply for {list:?}"));
        let meta = parse_meta(list, replies.first().ok_or_else(bad)?)?
            .ok_or_else(|| StoreError::UnknownList(list.to_owned()))?;
        let records = match replies.pop() {
            _ if idxs.is_empty() => Vec::new(),
            Some(Value::Array(values)) if values.len() == idxs.len() => values
                .into_iter()
                .map(|v| match v {
                    Value::Nil => Ok(None),
                    Value::BulkString(b) => Ok(Some(b)),
                    _ => Err(bad()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad()),
        };
        Ok((meta, records))
    }

    fn allocated_cached(&self, list: &str) -> Option<RoaringBitmap> {
        self.inner
            .allocated
            .bitmaps
            .lock()
            .expect("not poisoned")
            .get(list)
            .cloned()
    }

    async fn commit(&self, list: &str, txn: &Txn) -> Result<u64, StoreError> {
        check_id(list).map_err(|_| StoreError::UnknownList(list.to_owned()))?;
        let inner = &self.inner;
        let mut call = inner.apply.key(meta_key(list));
        call.key(data_key(list))
            .key(feed_key(list))
            .key(creds_key(list))
            .key(alloc_key(list))
            .arg(now_secs())
            .arg(txn.expect_version)
            .arg(txn.claim.len())
            .arg(&txn.claim)
            .arg(txn.records.len());
        for (idx, record) in &txn.records {
            call.arg(*idx).arg(record.as_slice());
        }
        for c in &txn.changes {
            call.arg(c.idx).arg(c.status.0);
        }
        let reply: Vec<i64> = match call.invoke_async(&mut inner.conn()).await {
            Ok(reply) => reply,
            Err(e) if e.to_string().contains("STATUSD conflict") => {
                if e.to_string().contains("STATUSD conflict claimed") {
                    // Another writer took an index our bitmap showed free: read it afresh.
                    inner
                        .allocated
                        .bitmaps
                        .lock()
                        .expect("not poisoned")
                        .remove(list);
                }
                return Err(StoreError::Conflict(list.to_owned()));
            }
            Err(e) => {
                return Err(match script_error(list, &txn.changes, &e) {
                    Some(mapped) => mapped,
                    None => inner.error(Some(list), e),
                })
            }
        };
        if !txn.claim.is_empty() {
            if let Some(bitmap) = inner
                .allocated
                .bitmaps
                .lock()
                .expect("not poisoned")
                .get_mut(list)
            {
                bitmap.extend(txn.claim.iter().copied());
            }
        }
        inner.notify();
        reply
            .first()
            .and_then(|&v| u64::try_from(v).ok())
            .ok_or_else(|| {
                StoreError::Backend(format!("redis: unexpected commit reply for {list:?}"))
            })
    }

    async fn locate(&self, ids: &[String]) -> Result<Vec<Option<Location>>, StoreError> {
        let inner = &self.inner;
        let replies = inner
            .per_key("GET", ids.iter().map(|id| cid_key(id)).collect())
            .await
            .map_err(|e| inner.error(None, e))?;
        replies.iter().map(location_of).collect()
    }

    async fn bind(&self, binds: &[(String, Location)]) -> Result<Vec<Location>, StoreError> {
        let inner = &self.inner;
        if binds.is_empty() {
            return Ok(Vec::new());
        }
        // SET NX per id (a pipeline on a standalone server, concurrent commands on a cluster),
        // then read back the ids another writer bound first.
        let replies: Vec<Value> = match inner.conn() {
            Conn::Standalone(c) => {
                let mut pipe = redis::pipe();
                for (cid, at) in binds {
                    pipe.cmd("SET")
                        .arg(cid_key(cid))
                        .arg(at.to_string())
                        .arg("NX");
                }
                pipe.query_async(&mut Conn::Standalone(c))
                    .await
                    .map_err(|e| inner.error(None, e))?
            }
            Conn::Cluster(c) => {
                let mut out = Vec::with_capacity(binds.len());
                for (cid, at) in binds {
                    super::note_requests(1);
                    let v: Value = redis::cmd("SET")
                        .arg(cid_key(cid))
                        .arg(at.to_string())
                        .arg("NX")
                        .query_async(&mut c.clone())
                        .await
                        .map_err(|e| inner.error(None, e))?;
                    out.push(v);
                }
                out
            }
        };
        let lost: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == Value::Nil)
            .map(|(i, _)| i)
            .collect();
        let existing = inner
            .per_key("GET", lost.iter().map(|&i| cid_key(&binds[i].0)).collect())
            .await
            .map_err(|e| inner.error(None, e))?;
        let mut out: Vec<Location> = binds.iter().map(|(_, at)| at.clone()).collect();
        for (&i, v) in lost.iter().zip(&existing) {
            out[i] = location_of(v)?.ok_or_else(|| {
                StoreError::Backend(format!(
                    "credential index entry of {:?} vanished",
                    binds[i].0
                ))
            })?;
        }
        Ok(out)
    }
}

impl Store for RedisStore {
    async fn lists(&self) -> Result<Vec<ListMeta>, StoreError> {
        let inner = &self.inner;
        // The set and the metadata of the lists it held last time, in one round trip; the
        // metadata of lists new to this store in a second one.
        let known: Vec<String> = inner
            .allocated
            .list_ids
            .lock()
            .expect("not poisoned")
            .clone();
        let mut members = redis::cmd("SMEMBERS");
        members.arg(LISTS_KEY);
        let mut conn = inner.conn();
        let (raw, known_replies) = tokio::join!(
            members.query_async::<Vec<Vec<u8>>>(&mut conn),
            inner.hgetall_many(known.iter().map(|id| meta_key(id)).collect())
        );
        let raw = raw.map_err(|e| inner.error(None, e))?;
        let known_replies = known_replies.map_err(|e| inner.error(None, e))?;
        let mut ids = Vec::with_capacity(raw.len());
        // One bad entry written by another system must not stop updates of every list: it is
        // skipped and logged, and the refresher keeps serving such a list's last good version.
        for raw in raw {
            match String::from_utf8(raw) {
                Ok(id) if check_id(&id).is_ok() => ids.push(id),
                bad => {
                    let shown = match bad {
                        Ok(id) => id,
                        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    };
                    tracing::error!(key = LISTS_KEY, entry = ?shown, "ignoring an invalid list id in the list set");
                }
            }
        }
        ids.sort_unstable();
        let mut by_id: std::collections::HashMap<&str, Value> = known
            .iter()
            .map(String::as_str)
            .zip(known_replies)
            .collect();
        let fresh: Vec<&String> = ids
            .iter()
            .filter(|id| !by_id.contains_key(id.as_str()))
            .collect();
        let fresh_replies = inner
            .hgetall_many(fresh.iter().map(|id| meta_key(id)).collect())
            .await
            .map_err(|e| inner.error(None, e))?;
        by_id.extend(fresh.iter().map(|id| id.as_str()).zip(fresh_replies));
        let replies: Vec<Value> = ids
            .iter()
            .map(|id| by_id.remove(id.as_str()).unwrap_or(Value::Nil))
            .collect();
        *inner.allocated.list_ids.lock().expect("not poisoned") = ids.clone();
        let mut out = Vec::with_capacity(ids.len());
        for (id, reply) in ids.iter().zip(&replies) {
            // An id without meta is being created (or was deleted): not a list yet. Corrupt
            // meta is skipped the same way, loudly.
            match parse_meta(id, reply) {
                Ok(Some(meta)) => out.push(meta),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "ignoring a list with corrupt metadata"),
            }
        }
        Ok(out)
    }

    async fn load(&self, id: &str) -> Result<(ListMeta, StatusList), StoreError> {
        if check_id(id).is_err() {
            return Err(StoreError::UnknownList(id.to_owned()));
        }
        let inner = &self.inner;
        // One slot, one transaction: the data is exactly that of the version read.
        let (meta, data): (Value, Value) = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(meta_key(id))
            .cmd("GET")
            .arg(data_key(id))
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(id), e))?;
        parse_list(id, &meta, data)
    }

    async fn create_list(&self, new: NewList) -> Result<ListMeta, StoreError> {
        check_id(&new.id)?;
        // Validates bits and size the same way every list is built.
        StatusList::new(new.bits, new.size)?;
        let inner = &self.inner;
        let id = new.id.as_str();
        let now = now_secs();
        if let Some(p) = &new.purpose {
            check_id(p)?;
        }
        let mut call = inner.create.key(meta_key(id));
        call.key(data_key(id))
            .key(feed_key(id))
            .key(creds_key(id))
            .key(alloc_key(id))
            .arg(new.bits.get())
            .arg(new.size)
            .arg(now);
        if let Some(p) = &new.purpose {
            call.arg(p);
        }
        let created: i64 = call
            .invoke_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(id), e))?;
        // Also when the list existed: repairs a creation that stopped between the two steps.
        let _: i64 = redis::cmd("SADD")
            .arg(LISTS_KEY)
            .arg(id)
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(None, e))?;
        if created == 0 {
            return Err(StoreError::ListExists(new.id));
        }
        // A wake-up hint, sent once the list is in the set, so that replicas pick it up at once.
        // Only a hint: a replica that misses it finds the list on its next poll.
        let hint: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(id)
            .query_async(&mut inner.conn())
            .await;
        if let Err(e) = hint {
            tracing::debug!(list = id, error = %e, "publishing the creation hint failed");
        }
        inner.notify();
        Ok(ListMeta {
            id: new.id,
            bits: new.bits.get(),
            size: new.size,
            version: 0,
            updated_at: now,
            updated_ms: now * 1000,
            purpose: new.purpose,
            allocated: 0,
        })
    }

    async fn apply(&self, id: &str, changes: &[Change]) -> Result<Applied, StoreError> {
        if check_id(id).is_err() {
            return Err(StoreError::UnknownList(id.to_owned()));
        }
        let inner = &self.inner;
        let mut call = inner.apply.key(meta_key(id));
        call.key(data_key(id)).key(feed_key(id)).arg(now_secs());
        for c in changes {
            call.arg(c.idx).arg(c.status.0);
        }
        let reply: Vec<i64> = match call.invoke_async(&mut inner.conn()).await {
            Ok(reply) => reply,
            Err(e) => {
                return Err(match script_error(id, changes, &e) {
                    Some(mapped) => mapped,
                    None => inner.error(Some(id), e),
                })
            }
        };
        let bad = || StoreError::Backend(format!("redis: unexpected apply reply for {id:?}"));
        let (&version, olds) = reply.split_first().ok_or_else(bad)?;
        if olds.len() != changes.len() {
            return Err(bad());
        }
        let previous = olds
            .iter()
            .map(|&v| u8::try_from(v).map(Status).map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        inner.notify();
        Ok(Applied {
            version: u64::try_from(version).map_err(|_| bad())?,
            previous,
        })
    }

    async fn changes_since(
        &self,
        id: &str,
        version: u64,
    ) -> Result<Option<(u64, Vec<Change>)>, StoreError> {
        if check_id(id).is_err() {
            return Ok(None);
        }
        let Some(start) = version.checked_add(1) else {
            return Ok(None);
        };
        let inner = &self.inner;
        // Meta and feed in one transaction, so the feed is compared with the version it led to.
        let reply: Result<(Value, Value), RedisError> = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(meta_key(id))
            // XRANGE's start is inclusive: the first entry wanted is the one of version v+1.
            .cmd("XRANGE")
            .arg(feed_key(id))
            .arg(format!("{start}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(MAX_CATCHUP)
            .query_async(&mut inner.conn())
            .await;
        let (meta, feed) = match reply {
            Ok(r) => r,
            // A feed that is not a stream is a gap; a full load judges the rest of the list.
            Err(e) if is_wrong_type(&e) => return Ok(None),
            Err(e) => return Err(inner.error(Some(id), e)),
        };
        parse_changes_since(id, version, &meta, &feed)
    }

    async fn entries(&self, id: &str, idxs: &[u32]) -> Result<(u64, Vec<Status>), StoreError> {
        if check_id(id).is_err() {
            return Err(StoreError::UnknownList(id.to_owned()));
        }
        let inner = &self.inner;
        // The meta first, outside the transaction: the width of the entries to read.
        let meta: Value = redis::cmd("HGETALL")
            .arg(meta_key(id))
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(id), e))?;
        let meta = parse_meta(id, &meta)?.ok_or_else(|| StoreError::UnknownList(id.to_owned()))?;
        if let Some(&bad) = idxs.iter().find(|&&i| i >= meta.size) {
            return Err(StatusError::IndexOutOfRange {
                idx: bad.into(),
                size: meta.size,
            }
            .into());
        }
        if idxs.is_empty() {
            return Ok((meta.version, Vec::new()));
        }
        let ty = format!("u{}", meta.bits);
        let mut bitfield = redis::cmd("BITFIELD");
        bitfield.arg(data_key(id));
        for i in idxs {
            bitfield.arg("GET").arg(&ty).arg(format!("#{i}"));
        }
        // Version and values in one transaction (one slot): consistent with each other.
        let (version, values): (Option<u64>, Vec<Option<u8>>) = redis::pipe()
            .atomic()
            .cmd("HGET")
            .arg(meta_key(id))
            .arg("version")
            .add_command(bitfield)
            .query_async(&mut inner.conn())
            .await
            .map_err(|e| inner.error(Some(id), e))?;
        let version = version.ok_or_else(|| StoreError::UnknownList(id.to_owned()))?;
        if values.len() != idxs.len() {
            return Err(corrupt(id, "BITFIELD answered the wrong number of values"));
        }
        Ok((
            version,
            values.into_iter().map(|v| Status(v.unwrap_or(0))).collect(),
        ))
    }

    async fn changed(&self, timeout: Duration) {
        if self.is_cluster() {
            tokio::time::sleep(timeout.min(POLL)).await;
            return;
        }
        let mut seen = self.inner.seen.lock().await;
        let _ = tokio::time::timeout(timeout, seen.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_target("redis://127.0.0.1:6379/2").unwrap(),
            Target::Standalone("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            parse_target("redis+cluster://a:1,b:2").unwrap(),
            Target::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert_eq!(
            parse_target("redis+cluster://u:p@a:1, b:2").unwrap(),
            Target::Cluster(vec!["redis://u:p@a:1".into(), "redis://u:p@b:2".into()])
        );
        assert_eq!(
            parse_target("redis://a:1,redis://b:2").unwrap(),
            Target::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert_eq!(
            parse_target("rediss://a:1").unwrap(),
            Target::Standalone("rediss://a:1".into())
        );
        assert_eq!(
            parse_target("rediss+cluster://u:p@a:1,b:2").unwrap(),
            Target::Cluster(vec!["rediss://u:p@a:1".into(), "rediss://u:p@b:2".into()])
        );
        assert_eq!(
            parse_target("rediss://a:1,rediss://b:2").unwrap(),
            Target::Cluster(vec!["rediss://a:1".into(), "rediss://b:2".into()])
        );
        for mixed in ["redis://a:1,rediss://b:2", "rediss://a:1,redis://b:2"] {
            let e = parse_target(mixed).unwrap_err().to_string();
            assert!(e.contains("not a mix"), "{e}");
        }
        assert!(parse_target("redis+cluster://").is_err());
        assert!(parse_target("redis://a:1,http://b:2").is_err());
    }

    #[test]
    fn meta_is_parsed_strictly() {
        let hash = |pairs: &[(&str, &str)]| {
            Value::Array(
                pairs
                    .iter()
                    .flat_map(|(k, v)| {
                        [
                            Value::BulkString(k.as_bytes().to_vec()),
                            Value::BulkString(v.as_bytes().to_vec()),
                        ]
                    })
                    .collect(),
            )
        };
        let ok = [
            ("bits", "2"),
            ("size", "64"),
            ("version", "3"),
            ("updated_at", "9"),
        ];
        let meta = parse_meta("a", &hash(&ok)).unwrap().unwrap();
        assert_eq!((meta.bits, meta.size, meta.version), (2, 64, 3));
        assert!(parse_meta("a", &Value::Array(vec![])).unwrap().is_none());
        for (field, bad) in [
            ("bits", "3"),
            ("size", "0"),
            ("size", "3"),
            ("size", "99999999999"),
            ("version", "-1"),
            ("version", "1.5"),
            ("updated_at", ""),
        ] {
            let pairs: Vec<_> = ok
                .iter()
                .map(|&(k, v)| if k == field { (k, bad) } else { (k, v) })
                .collect();
            assert!(
                matches!(
                    parse_meta("a", &hash(&pairs)),
                    Err(StoreError::Corrupt { .. })
                ),
                "{field}={bad}"
            );
        }
        assert!(matches!(
            parse_meta("a", &hash(&ok[..3])),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn feed_changes_are_checked() {
        let mut out = Vec::new();
        assert!(parse_changes(b"1=2,7=1", Bits::Two, 8, &mut out).is_some());
        assert_eq!(out.len(), 2);
        assert!(parse_changes(b"", Bits::Two, 8, &mut out).is_some());
        for bad in [&b"8=1"[..], b"1=4", b"1", b"x=1", b"1=1,", b"-1=1", b"1=+1"] {
            assert!(
                parse_changes(bad, Bits::Two, 8, &mut out).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn script_errors_map_to_store_errors() {
        let c = |idx, v| Change {
            idx,
            status: Status(v),
        };
        let changes = [c(3, 2), c(70, 1)];
        let err = |msg: &str| RedisError::from((ErrorKind::Extension, "script", msg.to_string()));
        assert!(matches!(
            script_error("a", &changes, &err("ERR STATUSD out-of-range 1 64")),
            Some(StoreError::Status(StatusError::IndexOutOfRange {
                idx: 70,
                size: 64
            }))
        ));
        assert!(matches!(
            script_error("a", &changes, &err("ERR STATUSD too-wide 0 1")),
            Some(StoreError::Status(StatusError::ValueTooWide {
                value: 2,
                bits: 1
            }))
        ));
        assert!(matches!(
            script_error("a", &changes, &err("ERR STATUSD terminal 0")),
            Some(StoreError::Terminal {
                idx: 3,
                to: Status(2)
            })
        ));
        assert!(matches!(
            script_error("a", &changes, &err("ERR STATUSD unknown-list")),
            Some(StoreError::UnknownList(_))
        ));
        assert!(script_error("a", &changes, &err("ERR STATUSD terminal 5")).is_none());
        assert!(script_error("a", &changes, &err("WRONGTYPE nope")).is_none());
    }
}
