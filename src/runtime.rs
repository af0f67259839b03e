//! How background work runs beside the listeners: the shutdown signal every loop selects on
//! ([`stopped`]) and the lowered scheduling priority of threads that only do background work
//! ([`lower_priority`]: the admin plane, list builds), so lookups come first when CPU is short.

use tokio::sync::watch;

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // `wait_for` holds a non-Send guard across its await; poll `changed` instead.
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// The nice value of background threads (Linux): the admin plane and list builds.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to `nice` (Linux; a no-op elsewhere), once
/// per thread. Background work (the admin plane, list builds) runs this way so that when CPU is
/// short, the public workers' lookups come first. Raising it back would need privileges, so
/// only threads that do nothing but background work call it.
pub fn lower_priority(nice: i32) {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if LOWERED.with(|l| l.replace(true)) {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::debug!(error = %e, nice, "could not lower the thread's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
