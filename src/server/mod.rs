//! Listeners: the accept loop, connection limits, HTTP/1.1 and HTTP/2 on one port, timeouts
//! against slow and silent clients, and a graceful drain on shutdown.
//!
//! At the connection limit a new connection displaces the oldest one that has not sent a
//! request yet ([`guard::Waiting`]); only when every connection is serving requests is the new
//! one refused. Silent sockets therefore cannot lock verifiers (or the admin plane's `/livez`)
//! out, even before their first-request deadline closes them.
//!
//! With TLS ([`crate::tls`]) the handshake runs in the connection's task, on top of the
//! [`guard::GuardedIo`] that carries the first-request deadline: a silent or slow handshake is
//! closed at the same deadline as a silent plain connection, and it holds its slot in the
//! displacement queue like one. A second `GuardedIo` above TLS, without a deadline, rewrites
//! hyper's own error answers as it does for plain connections.

mod drain;
pub mod guard;

use crate::metrics::Metrics;
use crate::wire::MAX_HEADER_BYTES;
use bytes::Bytes;
use drain::Drain;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Connection-level limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long in-flight requests get after shutdown is signalled.
    pub grace: Duration,
}

/// Adds the client certificate's subject of a mutual-TLS connection to each of its requests
/// (for the audit trail); a plain or one-sided TLS connection adds nothing.
#[derive(Clone)]
struct WithSubject<S> {
    inner: S,
    subject: Option<crate::tls::ClientSubject>,
}

impl<S, B> hyper::service::Service<Request<B>> for WithSubject<S>
where
    S: hyper::service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        if let Some(subject) = &self.subject {
            req.extensions_mut().insert(subject.clone());
        }
        self.inner.call(req)
    }
}

/// The HTTP/1.1 + HTTP/2 connection builder both listeners use (and the load-test baseline, so
/// the comparison is like for like).
pub fn builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // hyper answers 431 itself past this buffer; below it the service answers 431 as
        // problem+json once the headers exceed MAX_HEADER_BYTES.
        .max_buf_size(MAX_HEADER_BYTES * 4)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size((MAX_HEADER_BYTES * 4) as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// How long a new connection at the limit waits for the slot of the connection it displaced.
const DISPLACE_WAIT: Duration = Duration::from_secs(1);

/// Serves `service` on `listener` until `shutdown` turns true, then drains connections for at
/// most `limits.grace`. With `tls`, every connection starts with a TLS handshake.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    tls: Option<Arc<crate::tls::ServerTls>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let builder = Arc::new(builder(limits.header_read_timeout));
    let drain = Drain::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut waiting = guard::Waiting::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = match permits.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    // At the limit: make room by closing the oldest connection that has not
                    // sent a request, if there is one; its slot comes back within moments.
                    Err(_) if waiting.displace_oldest() => {
                        metrics.connections_displaced.inc();
                        match tokio::time::timeout(DISPLACE_WAIT, permits.clone().acquire_owned()).await {
                            Ok(Ok(permit)) => permit,
                            _ => {
                                metrics.connections_refused.inc();
                                continue;
                            }
                        }
                    }
                    Err(_) => {
                        metrics.connections_refused.inc();
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = waiting.admit();
                let io = guard::GuardedIo::new(
                    stream,
                    state.clone(),
                    limits.header_read_timeout,
                    metrics.connections_timed_out.clone(),
                );
                let acceptor = tls.as_ref().map(|tls| tls.acceptor());
                let (builder, service, metrics) = (builder.clone(), service.clone(), metrics.clone());
                let watcher = drain.watcher();
                tokio::spawn(async move {
                    let conn = async {
                        let Some(acceptor) = acceptor else {
                            let service = guard::FirstRequest { inner: service, state: state.clone() };
                            return drive(&builder, io, service, watcher).await;
                        };
                        let stream = match acceptor.accept(io).await {
                            Ok(stream) => stream,
                            Err(e) => {
                                // A deadline that passed is counted by GuardedIo already.
                                if !matches!(
                                    e.kind(),
                                    std::io::ErrorKind::TimedOut
                                        | std::io::ErrorKind::ConnectionAborted
                                ) {
                                    metrics.tls_handshake_failures.inc();
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                }
                                return;
                            }
                        };
                        let subject = crate::tls::peer_subject(stream.get_ref().1);
                        let io = guard::GuardedIo::above_tls(stream, state.clone());
                        let service = guard::FirstRequest {
                            inner: WithSubject { inner: service, subject },
                            state: state.clone(),
                        };
                        drive(&builder, io, service, watcher).await;
                    };
                    conn.await;
                    state.finish();
                    drop(permit);
                });
            }
            _ = crate::runtime::stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = drain.shutdown() => {}
        _ = tokio::time::sleep(limits.grace) => {
            tracing::warn!(grace = ?limits.grace, "grace period over; closing remaining connections");
        }
    }
}

/// Serves one connection to its end under the graceful drain. Client resets and protocol errors
/// end one connection; nothing to report (timeouts and displacements are counted where they
/// happen, and a displaced connection ends through a failed read: no second future polled on
/// every wake-up).
async fn drive<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    watcher: drain::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let _ = watcher
        .watch(builder.serve_connection(TokioIo::new(io), service))
        .await;
}
