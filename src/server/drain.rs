//! The graceful drain of a listener's connections at shutdown: every connection is told to
//! finish what it is serving and close (HTTP/1.1: after the response in flight; HTTP/2: a
//! GOAWAY), and [`Drain::shutdown`] resolves once the last one has ended.
//!
//! hyper-util's `GracefulShutdown` does the same by polling a `watch` receiver on every poll of
//! every connection, about 170 instructions a request (issue #18's profile, a sixth of what
//! statusd adds to bare hyper). Here a connection reads one atomic flag per poll and registers
//! its task's waker once (a task's waker does not change from poll to poll); the drain wakes
//! the registered tasks when it starts.

use hyper_util::server::graceful::GracefulConnection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use tokio::sync::Notify;

/// One listener's connections, drained together at shutdown.
#[derive(Default)]
pub struct Drain {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Set once the drain has started; read on every poll of every connection.
    draining: AtomicBool,
    conns: Mutex<Conns>,
    /// Notified when the last connection ends.
    ended: Notify,
}

/// The connections being served, and the waker of each one's task once it has been polled.
#[derive(Default)]
struct Conns {
    live: usize,
    /// Slots of registered wakers; `free` lists the empty ones.
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Conns {
    fn register(&mut self, waker: Waker) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.wakers[i] = Some(waker);
                i
            }
            None => {
                self.wakers.push(Some(waker));
                self.wakers.len() - 1
            }
        }
    }

    fn release(&mut self, slot: usize) {
        self.wakers[slot] = None;
        self.free.push(slot);
    }
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drain {
    pub fn new() -> Self {
        Drain::default()
    }

    /// Counts one more connection, from now until the returned watcher (or the future of its
    /// [`Watcher::watch`]) is dropped. Called where connections are accepted, so that a
    /// connection whose task has not run yet is waited for too.
    pub fn watcher(&self) -> Watcher {
        self.shared.conns().live += 1;
        Watcher {
            shared: self.shared.clone(),
            slot: None,
        }
    }

    /// Connections being served now.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.shared.conns().live
    }

    /// Tells every connection to finish and close, and resolves when the last one has ended.
    pub async fn shutdown(self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        // A connection registering after this sees the flag (the lock orders the two).
        for waker in self.shared.conns().wakers.iter().flatten() {
            waker.wake_by_ref();
        }
        loop {
            let ended = self.shared.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.shared.conns().live == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// One connection's place in a [`Drain`].
pub struct Watcher {
    shared: Arc<Shared>,
    /// Where its task's waker is registered, once polled.
    slot: Option<(usize, Waker)>,
}

impl Watcher {
    /// Serves `conn` to its end, starting its graceful shutdown when the drain starts.
    pub async fn watch<C: GracefulConnection>(mut self, conn: C) -> C::Output {
        let mut conn = std::pin::pin!(conn);
        let mut closing = false;
        std::future::poll_fn(move |cx| {
            if !closing {
                closing = self.shared.draining.load(Ordering::Acquire) || self.register(cx.waker());
                if closing {
                    conn.as_mut().graceful_shutdown();
                }
            }
            conn.as_mut().poll(cx)
        })
        .await
    }

    /// Registers the task's waker unless it already is (the common case: a pointer
    /// comparison); true if the drain started meanwhile.
    #[inline]
    fn register(&mut self, waker: &Waker) -> bool {
        if self.slot.as_ref().is_some_and(|(_, w)| w.will_wake(waker)) {
            return false;
        }
        self.register_anew(waker)
    }

    #[cold]
    fn register_anew(&mut self, waker: &Waker) -> bool {
        let mut conns = self.shared.conns();
        if let Some((slot, _)) = self.slot.take() {
            conns.release(slot);
        }
        let slot = conns.register(waker.clone());
        self.slot = Some((slot, waker.clone()));
        self.shared.draining.load(Ordering::Acquire)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut conns = self.shared.conns();
        if let Some((slot, _)) = self.slot.take() {
            conns.release(slot);
        }
        conns.live -= 1;
        if conns.live == 0 {
            drop(conns);
            self.shared.ended.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn shutdown_waits_for_watchers_and_resolves_at_once_without_any() {
        Drain::new().shutdown().await;

        let drain = Drain::new();
        let w = drain.watcher();
        assert_eq!(drain.live(), 1);
        let mut shutdown = Box::pin(drain.shutdown());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut shutdown)
                .await
                .is_err(),
            "a live connection holds the drain"
        );
        drop(w);
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .expect("the drain ends with its last connection");
    }

    #[test]
    fn slots_are_reused() {
        let mut conns = Conns::default();
        let a = conns.register(Waker::noop().clone());
        let b = conns.register(Waker::noop().clone());
        conns.release(a);
        assert_eq!(conns.register(Waker::noop().clone()), a);
        assert_ne!(a, b);
        assert_eq!(conns.wakers.len(), 2);
    }
}
