//! Per-core counters, cheap enough to stay on: what the ring, the executor and the loop did.
//!
//! Each core owns one [`Counters`]; its driver, executor and loop bump them from the core's own
//! thread with a relaxed load and store (a plain `mov` on x86-64, no locked instruction), and any
//! thread may read them at any time: [`metrics`] for the calling core, and
//! [`Runtime::metrics`](crate::Runtime::metrics) for every core of a runtime. Counts only grow
//! (wrapping at `u64::MAX`); gauges (`ops_in_flight`, `tasks_alive`) are current values.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::CoreId;

/// One counter written by one thread (its core) and read by any.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning core's thread calls this (single writer), so a relaxed load
    /// and store lose nothing.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    /// Sets a gauge (single writer, as `add`).
    #[inline]
    pub(crate) fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter many threads add to (jobs and pokes sent to a core from elsewhere).
#[derive(Default)]
pub(crate) struct SharedCounter(AtomicU64);

impl SharedCounter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Defines every counter once: the `Counters` the core bumps, the public `Metrics` snapshot,
/// and the snapshot, name list and merge between them.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident: $kind:ident,)*) => {
        /// Every counter of one core. The driver, the executor and the loop each hold it
        /// through the core's `Arc`.
        #[derive(Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: $kind,)*
        }

        impl Counters {
            /// A consistent-enough copy (each field read once, relaxed) for core `core`.
            pub(crate) fn snapshot(&self, core: CoreId) -> Metrics {
                Metrics { core, $($name: self.$name.get(),)* }
            }
        }

        /// A snapshot of one core's counters. Counts are totals since the core started;
        /// `ops_in_flight` and `tasks_alive` are gauges.
        ///
        /// # Examples
        /// ```
        /// corio_rt::block_on(async {
        ///     corio_rt::nop().await.unwrap();
        ///     let m = corio_rt::metrics();
        ///     assert!(m.sqes_submitted >= 1 && m.cqes_reaped >= 1);
        ///     println!("{m}");
        /// });
        /// ```
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Metrics {
            /// The core these counters belong to.
            pub core: CoreId,
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Metrics {
            /// Every counter with its name, in a fixed order (the names `Display` and
            /// db-proxy's INFO print).
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }

            /// Adds `other`'s counts and gauges to these (for a whole-runtime total); `core`
            /// is kept.
            pub fn merge(&mut self, other: &Metrics) {
                $(self.$name = self.$name.wrapping_add(other.$name);)*
            }
        }
    };
}

counters! {
    /// Turns of the event loop (run tasks, submit and reap, fire timers).
    ticks: Counter,
    /// `io_uring_enter` calls.
    enters: Counter,
    /// SQEs handed to the kernel (ops, cancels, doorbell reads, pokes).
    sqes_submitted: Counter,
    /// CQEs reaped.
    cqes_reaped: Counter,
    /// Times the SQ was full and had to be submitted before an SQE could be queued.
    sq_full_waits: Counter,
    /// Times the kernel reported CQEs it had to hold back (CQ overflow), then flushed.
    cq_overflows: Counter,
    /// Ops in flight at the core's last reap (abandoned ops waiting for their final CQE
    /// included); `in_flight()` gives the current count on the core itself.
    ops_in_flight: Counter,
    /// `IORING_OP_ASYNC_CANCEL`s submitted (for dropped ops, explicit cancels and shutdown).
    cancels: Counter,
    /// Ops whose future was dropped while in flight (their resources waited in the driver).
    orphaned_ops: Counter,
    /// Multishot ops submitted again after the kernel ended them.
    multishot_rearms: Counter,
    /// Receives that found their provided-buffer ring empty (`ENOBUFS`).
    buffers_exhausted: Counter,
    /// Completions changed by the fault plan (zero unless one is set: see `FaultPlan`).
    faults_injected: Counter,
    /// Tasks spawned on this core.
    tasks_spawned: Counter,
    /// Tasks alive now (spawned, not finished).
    tasks_alive: Counter,
    /// Task polls.
    tasks_polled: Counter,
    /// Task polls that took longer than [`LONG_POLL`] (50 µs): exact for long polls in
    /// separate ticks; several in one tick's batch may count once (the batch is timed as a
    /// whole until one is long, then each poll is timed).
    long_polls: Counter,
    /// Nanoseconds the core spent working (between parks), by the coarse monotonic clock:
    /// accurate over many parks, not for one.
    busy_ns: Counter,
    /// Nanoseconds the core spent parked in `io_uring_enter`, waiting for work (coarse
    /// clock, as `busy_ns`).
    parked_ns: Counter,
    /// Jobs other threads sent to this core (`CoreHandle::execute`, `spawn_on`, ...).
    jobs_received: SharedCounter,
    /// Doorbell pokes that woke this core from a park.
    pokes_received: SharedCounter,
}

/// A task poll longer than this counts in [`Metrics::long_polls`]: a task that holds its
/// core this long delays every other task and completion on it.
pub const LONG_POLL: std::time::Duration = std::time::Duration::from_micros(50);

impl fmt::Display for Metrics {
    /// One `name:value` line per field, as Redis's INFO prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in self.fields() {
            writeln!(f, "{name}:{value}")?;
        }
        Ok(())
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the time of the last timer interrupt (a few
/// milliseconds' resolution), read from the vDSO without touching the TSC. Sums of its
/// differences over many intervals are accurate, which is what busy and parked time need.
pub(crate) fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the local it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The calling core's counters now; all zero outside a corio core.
///
/// # Examples
/// ```
/// corio_rt::block_on(async {
///     let before = corio_rt::metrics().tasks_spawned;
///     corio_rt::spawn(async {}).await.unwrap();
///     assert_eq!(corio_rt::metrics().tasks_spawned, before + 1);
/// });
/// ```
pub fn metrics() -> Metrics {
    crate::context::with_core(|core| core.counters().snapshot(core.id())).unwrap_or_default()
}
