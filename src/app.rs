//! Wiring: opens the store, loads the signing key, seeds demo data, starts the refresher and
//! both listeners, and stops them in order. `statusd serve` and the end-to-end tests both use
//! [`start`], so tests run exactly what production runs.

use crate::admin::Admin;
use crate::config::Config;
use crate::demo;
use crate::http::{Public, PublicSettings};
use crate::issuer::auth::Tokens;
use crate::issuer::Issuer;
use crate::keyfile::{KeyFile, KeyWatch};
use crate::metrics::Metrics;
use crate::refresh::{Refresher, SyncState};
use crate::server::{self, Limits};
use crate::snapshot::build::BuildParams;
use crate::snapshot::persist;
use crate::snapshot::SnapshotStore;
use crate::store::any::AnyStore;
use crate::store::embedded::EmbeddedStore;
use crate::token::keys::{Algorithm, KeySet, SigningKey};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// File name of the key `--demo` generates when none is configured.
pub const DEMO_KEY_FILE: &str = "demo-signing-key.pem";

/// File name of the admin tokens `--demo` generates when none are configured.
pub const DEMO_TOKENS_FILE: &str = "demo-admin-tokens";

/// A running statusd: its bound addresses and the handles to stop it.
pub struct Running {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub snapshots: Arc<SnapshotStore>,
    pub store: Arc<AnyStore>,
    pub metrics: Arc<Metrics>,
    pub sync: Arc<SyncState>,
    /// The listeners' TLS configurations (public, admin), reloaded by [`Running::reload`].
    pub tls: [Option<Arc<crate::tls::ServerTls>>; 2],
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Signals shutdown and waits for the listeners to drain and the refresher to stop.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Waits until ready as `/readyz` defines it: a snapshot is published and synchronised
    /// with the store (a snapshot restored from disk alone is not enough), or `timeout` passes.
    pub async fn ready(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !(self.snapshots.is_ready() && self.sync.is_fresh()) {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }
}

/// Writes a PEM private key readable only by its owner.
pub fn write_private_pem(path: &Path, pem: &str, overwrite: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The JWKS: the signing key first, then every key of the `--published-keys` files (public or
/// private PEM; only public halves are published) that is not already in the set.
fn published_keys(config: &Config, signing: &SigningKey) -> anyhow::Result<KeySet> {
    let mut set = KeySet::new(vec![signing.verifying_key()]);
    for path in &config.published_keys {
        let pem = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading published key file {} (STATUSD_PUBLISHED_KEYS)",
                path.display()
            )
        })?;
        let keys = KeySet::from_pem(&pem).with_context(|| {
            format!(
                "parsing published key file {} (STATUSD_PUBLISHED_KEYS)",
                path.display()
            )
        })?;
        for key in keys.keys {
            if !set.keys.iter().any(|k| k.kid() == key.kid()) {
                set.keys.push(key);
            }
        }
    }
    Ok(set)
}

/// The signing key and its file (which the refresher checks before signing).
fn signing_key(config: &Config) -> anyhow::Result<(SigningKey, KeyFile)> {
    if let Some(path) = &config.signing_key {
        return Ok(KeyFile::open(path.clone())?);
    }
    // Config validation guarantees --demo here.
    let path = config.data_dir.join(DEMO_KEY_FILE);
    if path.exists() {
        return Ok(KeyFile::open(path)?);
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let key = SigningKey::generate(Algorithm::Es256);
    write_private_pem(&path, &key.to_pkcs8_pem(), false)?;
    tracing::warn!(path = %path.display(), kid = key.kid(), "generated a demo ES256 signing key; configure STATUSD_SIGNING_KEY for production");
    Ok(KeyFile::open(path)?)
}

/// The admin tokens: the configured file, or with --demo a generated one in the data
/// directory (one token with every scope), or none (the issuer API answers 401).
fn admin_tokens(config: &Config) -> anyhow::Result<Tokens> {
    if let Some(path) = &config.admin_tokens {
        return Tokens::load(path).context("loading the admin tokens");
    }
    if !config.demo {
        tracing::warn!(
            "no admin tokens configured (STATUSD_ADMIN_TOKENS): the issuer API is disabled"
        );
        return Ok(Tokens::default());
    }
    let path = config.data_dir.join(DEMO_TOKENS_FILE);
    if !path.exists() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let token: [u8; 24] = rand::random();
        let line = format!(
            "# generated by statusd --demo: <name> <scopes> <token>\ndemo admin {}\n",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token)
        );
        write_private_pem(&path, &line, false)?;
        tracing::warn!(path = %path.display(), "generated a demo admin token; configure STATUSD_ADMIN_TOKENS for production");
    }
    Tokens::load(&path).context("loading the demo admin tokens")
}

/// Opens the source of truth: Redis when a URL is given, else the embedded store in `data_dir`.
pub async fn open_store(redis_url: Option<&str>, data_dir: &Path) -> anyhow::Result<AnyStore> {
    open_store_secure(redis_url, &Default::default(), data_dir).await
}

/// [`open_store`] with the Redis TLS material and password file of `security`.
pub async fn open_store_secure(
    redis_url: Option<&str>,
    security: &crate::config::RedisSecurity,
    data_dir: &Path,
) -> anyhow::Result<AnyStore> {
    if let Some(url) = redis_url.filter(|_| *security != Default::default()) {
        let store = crate::store::redis::RedisStore::connect_secure(url, security)
            .await
            .context("configuring the Redis store")?;
        return Ok(AnyStore::Redis(store));
    }
    if let Some(url) = redis_url {
        // Connecting is lazy: a Redis that is down at start is retried by the refresher while
        // the last good snapshot serves.
        let store = crate::store::redis::RedisStore::connect(url)
            .await
            .context("configuring the Redis store")?;
        return Ok(AnyStore::Redis(store));
    }
    let store = EmbeddedStore::open(data_dir)
        .with_context(|| format!("opening the embedded store in {}", data_dir.display()))?;
    Ok(AnyStore::Embedded(store))
}

/// What `--check-config` verifies beyond [`Config::from_args`]: every file start-up reads
/// (TLS certificates and keys, the Redis CA, client certificate and password file) and the
/// Redis URL, exactly as start-up does, without binding or connecting.
pub fn check_files(config: &Config) -> anyhow::Result<()> {
    for (files, which) in [(&config.tls, "public"), (&config.admin_tls, "admin")] {
        if let Some(files) = files {
            crate::tls::ServerTls::load(files.clone())
                .with_context(|| format!("the {which} listener's TLS certificate"))?;
        }
    }
    if let Some(url) = &config.redis_url {
        crate::store::redis::check(url, &config.redis_security)
            .context("the Redis connection (STATUSD_REDIS_URL)")?;
    }
    Ok(())
}

/// Starts statusd as configured and returns once both listeners are bound.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let (key, key_file) = signing_key(config)?;
    let key = Arc::new(key);
    let tokens = admin_tokens(config)?;
    let jwks = published_keys(config, &key)?;
    let store = Arc::new(
        open_store_secure(
            config.redis_url.as_deref(),
            &config.redis_security,
            &config.data_dir,
        )
        .await?,
    );
    if config.demo {
        // A store that is down must not stop a replica from serving its last good snapshot.
        if let Err(e) = demo::seed_if_empty(store.as_ref()).await {
            tracing::warn!(error = %e, "could not create the demo lists");
        }
    }
    let metrics = Arc::new(Metrics::new());
    metrics
        .signing_key_info
        .with_label_values(&[key.kid(), key.algorithm().jose_name()])
        .set(1);
    metrics.signing_key_ok.set(1);
    metrics.jwks_keys.set(jwks.keys.len() as i64);
    tracing::info!(
        signing_kid = key.kid(),
        published_kids = ?jwks.keys.iter().map(|k| k.kid()).collect::<Vec<_>>(),
        "signing keys loaded"
    );
    let snapshots = Arc::new(SnapshotStore::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let load_tls = |files: &Option<crate::tls::ServerFiles>, which: &str| {
        files
            .clone()
            .map(|f| crate::tls::ServerTls::load(f).map(Arc::new))
            .transpose()
            .with_context(|| format!("loading the {which} listener's TLS certificate"))
    };
    let public_tls = load_tls(&config.tls, "public")?;
    let admin_tls = load_tls(&config.admin_tls, "admin")?;

    let public_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the public listener on {}", config.listen))?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener on {}", config.admin_listen))?;
    let public_addr = public_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    // With port 0 the public URL default must name the port actually bound.
    let scheme = if public_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let public_url = if config.public_url == format!("{scheme}://{}", config.listen) {
        format!("{scheme}://{public_addr}")
    } else {
        config.public_url.clone()
    };
    let issuer = if config.issuer == config.public_url {
        public_url.clone()
    } else {
        config.issuer.clone()
    };

    let sync = Arc::new(SyncState::new(config.max_staleness));
    let persist_path = config.data_dir.join(persist::FILE);
    let build_params = BuildParams {
        public_url,
        issuer,
        ttl: config.ttl,
        lifetime: config.token_lifetime,
        tick: store.poll_interval(),
    };
    let issuer_api = Arc::new(
        crate::admin::api::Api::new(
            Issuer::new(
                store.clone(),
                build_params.clone(),
                config.issuer_settings.clone(),
            ),
            tokens,
            metrics.clone(),
        )
        .with_body_timeout(config.header_read_timeout),
    );
    let refresher = Refresher {
        store: store.clone(),
        snapshots: snapshots.clone(),
        published_keys: jwks,
        key,
        key_watch: KeyWatch::new(Some(key_file)),
        params: build_params,
        metrics: metrics.clone(),
        sync: sync.clone(),
        persist_to: Some(persist_path.clone()),
        rejected: Default::default(),
        reencode_every: config.reencode_interval,
        encoding: Default::default(),
        built: Default::default(),
        missing_warned: Default::default(),
    };
    // Serve the last good state at once (stale, so not ready) while the first sync runs; a
    // store that is down at start then still leaves verifiers with signed, valid lists.
    match persist::read(&persist_path) {
        Ok(Some(lists)) => {
            let n = refresher.restore(lists);
            tracing::info!(lists = n, path = %persist_path.display(), "serving the last good snapshot until the store answers");
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "ignoring an unreadable last good snapshot"),
    }
    let limits = Limits {
        max_connections: config.max_connections.get(),
        header_read_timeout: config.header_read_timeout,
        grace: config.shutdown_grace,
    };
    let public = Public::new(
        snapshots.clone(),
        metrics.clone(),
        PublicSettings::new(config.lookup_max_age)
            .with_max_inflight(config.max_inflight)
            .with_body_timeout(config.header_read_timeout),
    );
    let admin = Admin::new(snapshots.clone(), metrics.clone(), sync.clone()).with_api(issuer_api);
    // The refresher and the consistency check run beside the admin plane, off the public
    // workers: applying a 10,000-change batch to a list, or re-reading every list's metadata,
    // is milliseconds of CPU that lookups would otherwise queue behind.
    let background: Vec<Background> = vec![
        Box::pin(refresher.run(shutdown_rx.clone())),
        Box::pin(crate::consistency::run(
            config.consistency,
            snapshots.clone(),
            store.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        )),
    ];
    let tasks = vec![
        tokio::spawn(server::serve(
            public_listener,
            public,
            limits,
            public_tls.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        )),
        spawn_admin(
            admin_listener,
            admin,
            limits,
            admin_tls.clone(),
            config.admin_workers.get(),
            background,
            metrics.clone(),
            shutdown_rx,
        )?,
    ];
    tracing::info!(%public_addr, %admin_addr, "statusd listening");
    Ok(Running {
        public_addr,
        admin_addr,
        snapshots,
        store,
        metrics,
        sync,
        tls: [public_tls, admin_tls],
        shutdown,
        tasks,
    })
}

/// Work that runs on the background runtime until shutdown.
type Background = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Serves the admin plane, and runs `background` (the refresher, the consistency check), on
/// their own runtime and threads (`--admin-workers`, default 2): an issuer batch of 10,000
/// items is milliseconds of CPU at a time, and on the public plane's workers it would hold up
/// lookups queued behind it. The public workers never run this work, and on Linux these threads
/// also run at a lower priority (nice +10): when CPU is short, verifiers come first and the
/// rest takes what is left. Returns once the admin plane has drained and `background` ended.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn spawn_admin(
    listener: TcpListener,
    admin: Admin,
    limits: Limits,
    tls: Option<Arc<crate::tls::ServerTls>>,
    workers: usize,
    background: Vec<Background>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = listener.into_std()?;
    // The runtime is built (and dropped) on its own thread; whether that worked comes back here,
    // so that a replica without its refresher never starts.
    let (started, outcome) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("statusd-admin".into())
        .spawn(move || {
            server::lower_priority(server::BACKGROUND_NICE);
            // Its own workers (`--admin-workers`), every one at the background priority.
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("statusd-admin")
                .on_thread_start(|| server::lower_priority(server::BACKGROUND_NICE))
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = started.send(Ok(()));
                    rt
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let background: Vec<_> = background.into_iter().map(tokio::spawn).collect();
                match TcpListener::from_std(listener) {
                    Ok(listener) => {
                        server::serve(listener, admin, limits, tls, metrics, shutdown).await
                    }
                    Err(e) => tracing::error!(error = %e, "admin listener unusable"),
                }
                for task in background {
                    if let Err(e) = task.await {
                        tracing::error!(error = %e, "a background task failed");
                    }
                }
            });
        })
        .context("starting the admin thread")?;
    match outcome.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e).context("starting the admin runtime"),
        Err(_) => anyhow::bail!("the admin thread ended before its runtime started"),
    }
    Ok(tokio::task::spawn_blocking(move || {
        if thread.join().is_err() {
            tracing::error!("the admin thread panicked");
        }
    }))
}

/// Runs until SIGINT or SIGTERM, then drains.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = start(&config).await?;
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await?;
    tracing::info!("shutting down: draining in-flight requests");
    running.stop().await;
    Ok(())
}
