//! One connection's guard: the deadline for its first request, its place in the queue of
//! connections that may be displaced at the connection limit, and the rewrite of hyper's own
//! bodiless error answers into problem+json.
//!
//! hyper's HTTP/1.1 header-read timeout only starts once the auto builder has read enough bytes
//! to tell HTTP/1.1 from HTTP/2, so a socket that never sends a byte (or stops inside the
//! HTTP/2 preface) would hold a connection slot for ever. [`GuardedIo`] wraps the TCP stream
//! (below the TLS layer, so a silent handshake is covered too): until the connection's
//! first request head has been parsed, a read that is still pending at the deadline fails with
//! `TimedOut`, and hyper closes the connection. After the first request, hyper's own timers
//! take over (the HTTP/1.1 header-read timeout between requests, HTTP/2 keep-alive pings).
//!
//! Nothing here runs per request but one relaxed load in [`FirstRequest::call`] and a 12-byte
//! comparison per response write.

use bytes::{Bytes, BytesMut};
use hyper::service::Service;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What the accept loop, the IO wrapper and the service wrapper share about one connection.
#[derive(Default)]
pub struct ConnState {
    /// Set when the first request head has been parsed: the first-request deadline is off and
    /// the connection can no longer be displaced.
    first_request: AtomicBool,
    /// Set when the connection task has ended (its entry in the queue is then stale).
    done: AtomicBool,
    /// Set when the accept loop displaces the connection at the connection limit; its reads
    /// then fail (only a connection without a request can be displaced, and until its first
    /// request every read goes through the deadline branch of [`GuardedIo::poll_read`], so
    /// nothing is checked per request).
    evicted: AtomicBool,
    /// The connection task's waker while it waits for its first request, so that displacement
    /// wakes it.
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

impl ConnState {
    pub fn has_request(&self) -> bool {
        self.first_request.load(Ordering::Relaxed)
    }

    /// Marks the connection task as ended, and lets go of its waker: a waker holds the task's
    /// allocation (the whole connection future) for as long as this state lives in
    /// [`Waiting`].
    pub fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
        self.waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }

    /// Remembers the task to wake on displacement.
    fn park(&self, waker: &std::task::Waker) {
        let mut w = self
            .waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !w.as_ref().is_some_and(|x| x.will_wake(waker)) {
            *w = Some(waker.clone());
        }
    }

    /// Closes the connection: its next read fails.
    fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Still waiting for its first request, so displaceable.
    fn idle(&self) -> bool {
        !self.has_request() && !self.done.load(Ordering::Relaxed)
    }
}

/// The accept loop's queue of connections in accept order, from which the oldest one that has
/// not yet sent a request is displaced when a new connection arrives at the limit. Only the
/// accept loop touches it, so it needs no lock.
///
/// An entry goes stale once its connection has sent a request or ended. Stale entries at the
/// front are dropped on every admission (a relaxed load or two each); the rest, stuck behind an
/// older connection still waiting for its first request, when the queue reaches twice what the
/// last compaction kept (at least [`MIN_COMPACT_AT`]). What was kept was displaceable, so at
/// most `--max-connections`: the queue holds at most max([`MIN_COMPACT_AT`], 2 × the
/// connections without a request), 64 entries while every client sends its request at once,
/// whatever the connection limit, and each compaction is paid for by as many admissions.
pub struct Waiting {
    queue: std::collections::VecDeque<Arc<ConnState>>,
    /// Compact at this many entries: twice what the last compaction kept.
    compact_at: usize,
}

/// The smallest `Waiting::compact_at`.
pub const MIN_COMPACT_AT: usize = 64;

impl Default for Waiting {
    fn default() -> Self {
        Waiting {
            queue: std::collections::VecDeque::new(),
            compact_at: MIN_COMPACT_AT,
        }
    }
}

impl Waiting {
    /// A new connection's state, queued as displaceable.
    pub fn admit(&mut self) -> Arc<ConnState> {
        while self.queue.front().is_some_and(|c| !c.idle()) {
            self.queue.pop_front();
        }
        if self.queue.len() >= self.compact_at {
            self.queue.retain(|c| c.idle());
            self.resize();
        } else if self.queue.is_empty() && self.compact_at > MIN_COMPACT_AT {
            self.resize();
        }
        let state = Arc::new(ConnState::default());
        self.queue.push_back(state.clone());
        state
    }

    /// Sets the next compaction at twice the entries left, and after a burst of silent
    /// connections gives the buffer back (it regrows by doubling if another burst comes).
    fn resize(&mut self) {
        self.compact_at = (2 * self.queue.len()).max(MIN_COMPACT_AT);
        if self.queue.capacity() > 4 * self.compact_at {
            self.queue.shrink_to(self.compact_at);
        }
    }

    /// Closes the oldest connection that has not sent a request yet; false if there is none
    /// (every connection at the limit is serving requests).
    pub fn displace_oldest(&mut self) -> bool {
        while let Some(c) = self.queue.pop_front() {
            if c.idle() {
                c.evict();
                // Marked done too, so that a second displacement never picks it again.
                c.finish();
                return true;
            }
        }
        false
    }
}

/// The connection's service: marks the first request on the connection's [`ConnState`].
#[derive(Clone)]
pub struct FirstRequest<S> {
    pub inner: S,
    pub state: Arc<ConnState>,
}

impl<S, R> Service<R> for FirstRequest<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: R) -> Self::Future {
        if !self.state.first_request.load(Ordering::Relaxed) {
            self.state.first_request.store(true, Ordering::Relaxed);
        }
        self.inner.call(req)
    }
}

/// The connection's stream: the first-request deadline on reads, hyper's error answers
/// rewritten on writes.
pub struct GuardedIo<T> {
    io: T,
    state: Arc<ConnState>,
    /// Armed until the first request head has been parsed.
    deadline: Option<Pin<Box<Sleep>>>,
    /// A rewritten error answer not yet fully written.
    pending: Bytes,
    /// Counts connections whose first-request deadline passed (none above TLS: no deadline).
    timed_out: Option<prometheus::IntCounter>,
}

impl<T> GuardedIo<T> {
    pub fn new(
        io: T,
        state: Arc<ConnState>,
        first_request_within: Duration,
        timed_out: prometheus::IntCounter,
    ) -> Self {
        GuardedIo {
            io,
            state,
            deadline: Some(Box::pin(tokio::time::sleep(first_request_within))),
            pending: Bytes::new(),
            timed_out: Some(timed_out),
        }
    }
}

impl<T> GuardedIo<T> {
    /// The layer above TLS: the rewrite of hyper's error answers (which the layer below sees
    /// only encrypted), no deadline (the layer below carries it).
    pub fn above_tls(io: T, state: Arc<ConnState>) -> Self {
        GuardedIo {
            io,
            state,
            deadline: None,
            pending: Bytes::new(),
            timed_out: None,
        }
    }
}

/// The error a displaced connection's read returns.
fn displaced() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "displaced at the connection limit before its first request",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.deadline.is_some() {
            if this.state.has_request() {
                this.deadline = None;
            } else if this.state.is_evicted() {
                return Poll::Ready(Err(displaced()));
            }
        }
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => {
                if let Some(d) = &mut this.deadline {
                    // Registered before the check, so a displacement in between still wakes us.
                    this.state.park(cx.waker());
                    if this.state.is_evicted() {
                        return Poll::Ready(Err(displaced()));
                    }
                    if d.as_mut().poll(cx).is_ready() {
                        if !this.state.done.swap(true, Ordering::Relaxed) {
                            if let Some(c) = &this.timed_out {
                                c.inc();
                            }
                        }
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no request head within the header read timeout",
                        )));
                    }
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    /// Writes what is left of a rewritten answer; ready once it is all written.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let _ = self.pending.split_to(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.drain(cx))?;
        if let Some(rewritten) = rewrite_hyper_error(buf) {
            this.pending = rewritten;
            // The original bytes count as written: what goes out instead is drained here, by
            // flush or by shutdown.
            let _ = this.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.drain(cx))?;
        // hyper's own error answer is a head alone, so it comes as one slice.
        if let [only] = bufs {
            if let Some(rewritten) = rewrite_hyper_error(only) {
                this.pending = rewritten;
                let _ = this.drain(cx)?;
                return Poll::Ready(Ok(only.len()));
            }
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The problem+json answers that replace hyper's bodiless ones, by status.
fn replacement_body(status: &[u8]) -> Option<&'static Bytes> {
    use crate::problem::Problem;
    use std::sync::OnceLock;
    static BODIES: OnceLock<[Bytes; 3]> = OnceLock::new();
    let bodies = BODIES.get_or_init(|| {
        [
            Problem::MalformedRequest,
            Problem::UriTooLong,
            Problem::HeadersTooLarge {
                limit: crate::wire::MAX_HEADER_BYTES,
            },
        ]
        .map(|p| crate::wire::body_bytes(p.response().into_body()))
    });
    match status {
        b"400" => Some(&bodies[0]),
        b"414" => Some(&bodies[1]),
        b"431" => Some(&bodies[2]),
        _ => None,
    }
}

/// hyper answers a request it cannot parse (a malformed request line or header field, a
/// request target or header section past its buffer, more than 100 header fields) itself, with
/// a head and no body: `HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n
/// date: …\r\n\r\n`. The services never answer 400, 414 or 431 without a problem body, so that
/// shape is hyper's alone; it is rewritten into the same head with a problem+json body.
#[inline]
pub(crate) fn rewrite_hyper_error(buf: &[u8]) -> Option<Bytes> {
    // One byte tells every answer but a 4xx apart (a 304, say) before any other work.
    if buf.get(9) != Some(&b'4') {
        return None;
    }
    rewrite_4xx(buf)
}

#[cold]
fn rewrite_4xx(buf: &[u8]) -> Option<Bytes> {
    const MARK: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";
    if buf.len() < 12 || &buf[..9] != b"HTTP/1.1 " {
        return None;
    }
    let body = replacement_body(&buf[9..12])?;
    let at = buf.windows(MARK.len()).position(|w| w == MARK)?;
    let rest = &buf[at + MARK.len()..];
    if !rest.ends_with(b"\r\n\r\n") {
        return None;
    }
    let mut out = BytesMut::with_capacity(buf.len() + 128 + body.len());
    out.extend_from_slice(&buf[..at]);
    out.extend_from_slice(b"\r\nconnection: close\r\ncontent-type: application/problem+json\r\n");
    out.extend_from_slice(b"cache-control: no-store\r\naccess-control-allow-origin: *\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(rest);
    out.extend_from_slice(body);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_heads_become_problem_json() {
        let head = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 19:56:31 GMT\r\n\r\n";
        let out = rewrite_hyper_error(head).expect("rewritten");
        let text = std::str::from_utf8(&out).unwrap();
        let (h, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(h.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(h.contains("content-type: application/problem+json"));
        assert!(h.contains("date: Sun, 06 Dec 2026 19:56:31 GMT"));
        assert!(h.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 400);
        assert_eq!(v["type"], "urn:statusd:problem:malformed-request");
        for (status, slug) in [("431", "headers-too-large"), ("414", "uri-too-long")] {
            let head = format!(
                "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n"
            );
            let out = rewrite_hyper_error(head.as_bytes()).expect("rewritten");
            assert!(String::from_utf8_lossy(&out).contains(slug), "{status}");
        }
    }

    #[test]
    fn the_services_own_answers_pass_through() {
        for head in [
            // A problem of our own: it has a body.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 99\r\ndate: x\r\n\r\n"[..],
            // A 304 and a HEAD answer: not an error status.
            b"HTTP/1.1 304 Not Modified\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            // HTTP/2 frames.
            b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",
        ] {
            assert!(rewrite_hyper_error(head).is_none());
        }
    }

    #[test]
    fn displacement_takes_the_oldest_connection_without_a_request() {
        let mut w = Waiting::default();
        let a = w.admit();
        let b = w.admit();
        let c = w.admit();
        a.first_request.store(true, Ordering::Relaxed);
        assert!(w.displace_oldest());
        assert!(
            !b.idle() && c.idle(),
            "b, the oldest idle one, was displaced"
        );
        c.finish();
        assert!(!w.displace_oldest(), "a serves requests, b and c are gone");
    }

    /// Issue 20: the queue kept every connection's state until it held 2 × `--max-connections`
    /// entries (20,000 at the default), which a soak read as a leak.
    #[test]
    fn issue_20_the_queue_stays_short_while_clients_send_their_requests() {
        let mut w = Waiting::default();
        for _ in 0..10_000 {
            let c = w.admit();
            assert_eq!(w.queue.len(), 1, "every earlier entry was stale");
            c.first_request.store(true, Ordering::Relaxed);
        }
        // A silent connection at the front: the entries behind it go at compactions.
        let silent = w.admit();
        for n in 0..10_000 {
            let c = w.admit();
            assert!(w.queue.len() <= MIN_COMPACT_AT, "{} entries", w.queue.len());
            if n % 2 == 0 {
                c.first_request.store(true, Ordering::Relaxed);
            } else {
                c.finish();
            }
        }
        assert!(
            w.displace_oldest() && silent.is_evicted(),
            "still displaceable"
        );
        assert!(!w.displace_oldest());
    }

    #[test]
    fn issue_20_the_queue_keeps_every_silent_connection_and_twice_their_number_at_most() {
        let mut w = Waiting::default();
        let mut silent = Vec::new();
        for n in 0..20_000 {
            let c = w.admit();
            assert!(
                w.queue.len() <= MIN_COMPACT_AT.max(2 * (silent.len() + 1)),
                "{} entries for {} silent connections",
                w.queue.len(),
                silent.len() + 1
            );
            if n % 10 == 0 {
                silent.push(c);
            } else {
                c.first_request.store(true, Ordering::Relaxed);
            }
        }
        // Displaced in accept order, every one of them.
        for c in &silent {
            assert!(w.displace_oldest());
            assert!(c.is_evicted());
        }
        assert!(!w.displace_oldest());
        // Once they are gone the queue and its buffer shrink back.
        for _ in 0..2 * MIN_COMPACT_AT {
            w.admit().finish();
        }
        assert!(w.queue.len() <= 1 && w.queue.capacity() <= 4 * MIN_COMPACT_AT);
    }

    #[test]
    fn a_finished_connection_lets_go_of_its_waker() {
        struct Counted;
        impl std::task::Wake for Counted {
            fn wake(self: Arc<Self>) {}
        }
        let task = Arc::new(Counted);
        let state = ConnState::default();
        state.park(&std::task::Waker::from(task.clone()));
        assert_eq!(Arc::strong_count(&task), 2, "parked");
        state.finish();
        assert_eq!(Arc::strong_count(&task), 1, "released with the connection");
    }
}
