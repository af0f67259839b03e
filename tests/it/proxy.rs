//! A TCP proxy on loopback in front of a real `redis-server`: it counts the round trips its
//! clients make and can add a fixed delay each way, as a link to another zone would.
//!
//! A round trip is a burst of requests a client sends before it has heard back: on each
//! connection, bytes from the client after bytes from the server (or first on the connection)
//! start a new one; more bytes before the server answers (the rest of a pipeline, a concurrent
//! command on the same multiplexed connection) belong to the same trip. Connections whose first
//! request is a `SUBSCRIBE` (the change-hint subscription and its keep-alive pings) are not
//! counted: they are not on the request path.
//!
//! Shared with `examples/write_latency.rs` through `#[path]`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stops accepting (and closes its connections) when dropped.
pub struct Proxy {
    pub port: u16,
    round_trips: Arc<AtomicU64>,
    /// Nanoseconds chunks were held beyond `delay`, summed (a loaded machine wakes the writer
    /// late).
    overshoot: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Proxies `127.0.0.1:<port>` (a free port) to `127.0.0.1:<upstream>`, holding every chunk
    /// `delay` in each direction.
    pub async fn start(upstream: u16, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let overshoot = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        let late = overshoot.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (counter, late) = (counter.clone(), late.clone());
                conns.spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        relay(client, server, delay, counter, late).await;
                    }
                });
            }
        });
        Proxy {
            port,
            round_trips,
            overshoot,
            task,
        }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Round trips counted so far, over every counted connection.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }

    /// How much longer than `delay` chunks were held so far, summed over every chunk.
    #[allow(dead_code)] // for examples/write_latency.rs
    pub fn overshoot(&self) -> Duration {
        Duration::from_nanos(self.overshoot.load(Ordering::SeqCst))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one connection's two directions share.
struct Link {
    /// The last bytes seen came from the client (a trip is under way).
    client_spoke: AtomicBool,
    /// Set once the first request shows this is a subscription: never counted.
    ignored: AtomicBool,
    first_seen: AtomicBool,
    counter: Arc<AtomicU64>,
    overshoot: Arc<AtomicU64>,
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    delay: Duration,
    counter: Arc<AtomicU64>,
    overshoot: Arc<AtomicU64>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let link = Arc::new(Link {
        client_spoke: AtomicBool::new(false),
        ignored: AtomicBool::new(false),
        first_seen: AtomicBool::new(false),
        counter,
        overshoot,
    });
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, delay, link.clone(), true);
    let down = pump(sr, cw, delay, link, false);
    tokio::join!(up, down);
}

/// Copies one direction, noting round trips, each chunk held exactly `delay` after it was
/// read (order kept). A writer thread releases the chunks: a tokio timer rounds every deadline
/// up to its next millisecond tick and fires on the driver's next turn after that, which held
/// each chunk up to a millisecond or two longer than asked (about 2.5 ms per round trip, each
/// way, even with no delay at all: the fixed part of the single-write latencies measured for
/// issue #22), while a thread's sleep ends within tens of microseconds of its deadline, and a
/// chunk already due is written at once.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    link: Arc<Link>,
    from_client: bool,
) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let runtime = tokio::runtime::Handle::current();
    let late = link.overshoot.clone();
    let writer = std::thread::spawn(move || {
        while let Ok((due, chunk)) = rx.recv() {
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            let over = Instant::now().saturating_duration_since(due);
            late.fetch_add(
                u64::try_from(over.as_nanos()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
            if runtime.block_on(to.write_all(&chunk)).is_err() {
                return;
            }
        }
        let _ = runtime.block_on(to.shutdown());
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = buf[..n].to_vec();
        if from_client {
            if !link.first_seen.swap(true, Ordering::SeqCst)
                && chunk
                    .windows(9)
                    .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                link.ignored.store(true, Ordering::SeqCst);
            }
            if !link.client_spoke.swap(true, Ordering::SeqCst)
                && !link.ignored.load(Ordering::SeqCst)
            {
                link.counter.fetch_add(1, Ordering::SeqCst);
            }
        } else {
            link.client_spoke.store(false, Ordering::SeqCst);
        }
        if tx.send((Instant::now() + delay, chunk)).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
}
