//! How background work runs beside the listeners: the shutdown signal every loop selects on
//! ([`stopped`]) and the lowered scheduling priority of threads that only do background work
//! ([`lower_priority`]: the admin plane and the refresher, list builds lower still), so lookups
//! come first when CPU is short and a change's publication comes before re-encodings; and the
//! [`Lane`]s: the issuer's bulk lane, whose threads run large batches (a launch-day import)
//! only on CPU that nothing else wants, and the thread of the store's connections.

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

/// How low background threads run (`--background-priority`), set once at start-up
/// ([`set_background_priority`]) for the whole process.
///
/// Under `Nice`, a thread of normal priority that wakes may still wait out a background
/// thread's slice (about a millisecond): during a launch import on the same replica, the
/// refresher and the admin plane took lookup p99 from 0.3 ms to 1–2 ms (issue 16). When lookups
/// saturate the CPU, background work keeps about a tenth of it, so changes keep reaching
/// lookups. Under `Idle` ([`idle_priority`], as the bulk lane), a lookup that wakes preempts
/// background work at once (lookup p99 during that import 1.3× idle), but when lookups saturate
/// the CPU, background work gets almost none of it, and changes reach lookups only as fast as
/// that allows (the replica then turns stale, and not ready, after `--max-staleness`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackgroundPriority {
    /// Nice +10 (list builds +19): a share of the CPU when lookups saturate it.
    #[default]
    Nice,
    /// SCHED_IDLE: lookups preempt background work at once; none of a saturated CPU.
    Idle,
}

static BACKGROUND_IDLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets how [`lower_priority`] lowers background threads from now on; start-up calls it before
/// any background thread starts.
pub fn set_background_priority(p: BackgroundPriority) {
    BACKGROUND_IDLE.store(
        p == BackgroundPriority::Idle,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Lowers the calling thread's scheduling priority to `nice` (Linux; a no-op elsewhere) if it
/// is not that low already, or moves it to `SCHED_IDLE` under [`BackgroundPriority::Idle`].
/// Background work (the admin plane, the refresher, list builds) runs this way so that when CPU
/// is short, the public workers' lookups come first. Raising it back would need privileges, so
/// only threads that do nothing but background work call it.
pub fn lower_priority(nice: i32) {
    thread_local! {
        static NICE: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
    }
    if NICE.with(|n| n.get() >= nice) {
        return;
    }
    if BACKGROUND_IDLE.load(std::sync::atomic::Ordering::Relaxed) {
        // Lowest already: no nice value below it counts.
        NICE.with(|n| n.set(i32::MAX));
        idle_priority();
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

/// Batches of at least this many items run on the [`Lane::bulk`]; smaller ones (a clerk's
/// single write, a desk's handful) stay on the admin plane's threads.
pub const BULK_MIN_ITEMS: usize = 64;

/// Puts the calling thread in Linux's `SCHED_IDLE` class (a no-op elsewhere): it runs only
/// when no thread of normal priority wants the CPU, and a lookup thread that wakes preempts it
/// at once, where a thread at nice +19 still keeps its slice (measured during an import: lookup
/// p99 3.5× idle with the admin threads at nice +19, 1.4× under `SCHED_IDLE`). Any thread may
/// enter the class; leaving it would need privileges, so only threads that do nothing else call
/// this.
pub fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        // After the class, the crate sets the nice value to 0, which fails for a thread that
        // was niced; the class is set by then, and within it nice does not count.
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            idle,
        ) {
            if !is_idle() {
                tracing::warn!(error = ?e, "could not move a background thread to SCHED_IDLE");
            }
        }
    }
}

/// Whether the calling thread runs in the `SCHED_IDLE` class (Linux; `false` elsewhere).
pub fn is_idle() -> bool {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            thread_schedule_policy, NormalThreadSchedulePolicy, ThreadSchedulePolicy,
        };
        matches!(
            thread_schedule_policy(),
            Ok(ThreadSchedulePolicy::Normal(
                NormalThreadSchedulePolicy::Idle
            ))
        )
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// A runtime of its own for one kind of background work, whose threads take a lower priority
/// as they start: the issuer's bulk lane ([`Lane::bulk`]) and the store's connections
/// ([`Lane::store_io`]).
///
/// **The bulk lane**: worker threads in `SCHED_IDLE` ([`idle_priority`]), for batches of
/// [`BULK_MIN_ITEMS`] items or more. A 52-million-card import keeps a replica's issuer busy for
/// half an hour; on the admin plane's threads (nice +10) it still took slices from the public
/// workers (lookup p99 8.3× idle during a 5-million import). On this lane it only uses CPU the
/// lookups leave, and single writes and the refresher, which stay on the admin threads, never
/// queue behind it.
///
/// **The store's connections**: one thread at nice +10 ([`BACKGROUND_NICE`]) where the Redis
/// client's connection tasks live (the redis crate spawns them where a connection is made).
/// They read every reply and every change message: made at start-up on the public runtime,
/// they parsed an import's traffic on the public workers, milliseconds at a time between
/// lookups (issue 16).
///
/// Owned by the admin thread and dropped after the admin plane and the background work have
/// drained; dropping it anywhere does not block.
pub struct Lane {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Lane {
    /// The issuer's bulk lane: `workers` threads (`statusd-bulk`) in `SCHED_IDLE`.
    pub fn bulk(workers: usize) -> std::io::Result<Self> {
        Self::start("statusd-bulk", workers, idle_priority)
    }

    /// The store's connections: one thread (`statusd-store`) at [`BACKGROUND_NICE`].
    pub fn store_io() -> std::io::Result<Self> {
        Self::start("statusd-store", 1, || lower_priority(BACKGROUND_NICE))
    }

    fn start(name: &str, workers: usize, on_start: fn()) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .on_thread_start(on_start)
            .enable_all()
            .build()?;
        Ok(Lane {
            runtime: Some(runtime),
        })
    }

    /// Where to spawn the lane's work.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the lane runs until dropped")
            .handle()
            .clone()
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // A runtime dropped in an async context would panic; this never blocks.
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane's threads are in `SCHED_IDLE`, the caller's are not moved.
    #[test]
    #[cfg(target_os = "linux")]
    fn bulk_lane_threads_run_in_the_idle_class() {
        let lane = Lane::bulk(1).expect("lane");
        let idle = lane.handle().block_on(async {
            tokio::spawn(async { (is_idle(), std::thread::current().name().map(String::from)) })
                .await
                .expect("ran")
        });
        assert_eq!(idle, (true, Some("statusd-bulk".into())));
        assert!(!is_idle(), "the test's own thread keeps its class");
        drop(lane);
    }

    /// The store's thread runs at the background priority, under its own name.
    #[test]
    #[cfg(target_os = "linux")]
    fn store_io_lane_runs_at_the_background_priority() {
        let lane = Lane::store_io().expect("lane");
        let (nice, name) = lane.handle().block_on(async {
            tokio::spawn(async {
                let tid = rustix::thread::gettid();
                (
                    rustix::process::getpriority_process(Some(tid)).expect("own priority"),
                    std::thread::current().name().map(String::from),
                )
            })
            .await
            .expect("ran")
        });
        assert!(nice >= BACKGROUND_NICE, "nice {nice}");
        assert_eq!(name.as_deref(), Some("statusd-store"));
    }
}
