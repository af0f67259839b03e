//! How background work runs beside the listeners: the shutdown signal every loop selects on
//! ([`stopped`]) and the lowered scheduling priority of threads that only do background work
//! ([`lower_priority`]: the admin plane and the refresher, list builds lower still), so lookups
//! come first when CPU is short and a change's publication comes before re-encodings.

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

/// The nice value of background threads (Linux): the admin plane and the refresher.
pub const BACKGROUND_NICE: i32 = 10;

/// The nice value of background re-encodings (Linux): below the refresher's, so that the
/// publication that makes a change visible to lookups never waits behind one. Builds that a
/// publication waits for (a cold start's) run at [`BACKGROUND_NICE`].
pub const BUILD_NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority to `nice` (Linux; a no-op elsewhere) if it
/// is not that low already. Background work (the admin plane, the refresher, list builds) runs
/// this way so that when CPU is short, the public workers' lookups come first. Raising it back
/// would need privileges, so only threads that do nothing but background work call it.
pub fn lower_priority(nice: i32) {
    thread_local! {
        static NICE: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
    }
    if NICE.with(|n| n.get() >= nice) {
        return;
    }
    NICE.with(|n| n.set(nice));
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::debug!(error = %e, nice, "could not lower the thread's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
