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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A running proxy; stops accepting (and closes its connections) when dropped.
pub struct Proxy {
    pub port: u16,
    round_trips: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Proxies `127.0.0.1:<port>` (a free port) to `127.0.0.1:<upstream>`, holding every chunk
    /// `delay` in each direction.
    pub async fn start(upstream: u16, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                conns.spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        relay(client, server, delay, counter).await;
                    }
                });
            }
        });
        Proxy {
            port,
            round_trips,
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
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration, counter: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let link = Arc::new(Link {
        client_spoke: AtomicBool::new(false),
        ignored: AtomicBool::new(false),
        first_seen: AtomicBool::new(false),
        counter,
    });
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, delay, link.clone(), true);
    let down = pump(sr, cw, delay, link, false);
    tokio::join!(up, down);
}

/// Copies one direction, noting round trips, each chunk held `delay` (order kept: a writer
/// task releases chunks at their due time).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    link: Arc<Link>,
    from_client: bool,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
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
    let _ = writer.await;
}
