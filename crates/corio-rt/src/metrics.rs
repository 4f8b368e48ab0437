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

/// Every counter of one core. The driver, the executor and the loop each hold it through the
/// core's `Arc`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) ticks: Counter,
    pub(crate) enters: Counter,
    pub(crate) sqes_submitted: Counter,
    pub(crate) cqes_reaped: Counter,
    pub(crate) sq_full_waits: Counter,
    pub(crate) cq_overflows: Counter,
    pub(crate) ops_in_flight: Counter,
    pub(crate) cancels: Counter,
    pub(crate) orphaned_ops: Counter,
    pub(crate) multishot_rearms: Counter,
    pub(crate) buffers_exhausted: Counter,
    pub(crate) faults_injected: Counter,
    pub(crate) tasks_spawned: Counter,
    pub(crate) tasks_alive: Counter,
    pub(crate) tasks_polled: Counter,
    pub(crate) long_polls: Counter,
    pub(crate) busy_ns: Counter,
    pub(crate) parked_ns: Counter,
    pub(crate) jobs_received: SharedCounter,
    pub(crate) pokes_received: SharedCounter,
}

impl Counters {
    /// A consistent-enough copy (each field read once, relaxed) for core `core`.
    pub(crate) fn snapshot(&self, core: CoreId) -> Metrics {
        Metrics {
            core,
            ticks: self.ticks.get(),
            enters: self.enters.get(),
            sqes_submitted: self.sqes_submitted.get(),
            cqes_reaped: self.cqes_reaped.get(),
            sq_full_waits: self.sq_full_waits.get(),
            cq_overflows: self.cq_overflows.get(),
            ops_in_flight: self.ops_in_flight.get(),
            cancels: self.cancels.get(),
            orphaned_ops: self.orphaned_ops.get(),
            multishot_rearms: self.multishot_rearms.get(),
            buffers_exhausted: self.buffers_exhausted.get(),
            faults_injected: self.faults_injected.get(),
            tasks_spawned: self.tasks_spawned.get(),
            tasks_alive: self.tasks_alive.get(),
            tasks_polled: self.tasks_polled.get(),
            long_polls: self.long_polls.get(),
            busy_ns: self.busy_ns.get(),
            parked_ns: self.parked_ns.get(),
            jobs_received: self.jobs_received.get(),
            pokes_received: self.pokes_received.get(),
        }
    }
}

/// A task poll longer than this counts in [`Metrics::long_polls`]: a task that holds its
/// core this long delays every other task and completion on it.
pub const LONG_POLL: std::time::Duration = std::time::Duration::from_micros(50);

/// A snapshot of one core's counters. Counts are totals since the core started; `ops_in_flight`
/// and `tasks_alive` are gauges.
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
    /// Turns of the event loop (run tasks, submit and reap, fire timers).
    pub ticks: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// SQEs handed to the kernel (ops, cancels, doorbell reads, pokes).
    pub sqes_submitted: u64,
    /// CQEs reaped.
    pub cqes_reaped: u64,
    /// Times the SQ was full and had to be submitted before an SQE could be queued.
    pub sq_full_waits: u64,
    /// Times the kernel reported CQEs it had to hold back (CQ overflow), then flushed.
    pub cq_overflows: u64,
    /// Ops in flight now (abandoned ops waiting for their final CQE included).
    pub ops_in_flight: u64,
    /// `IORING_OP_ASYNC_CANCEL`s submitted (for dropped ops, explicit cancels and shutdown).
    pub cancels: u64,
    /// Ops whose future was dropped while in flight (their resources waited in the driver).
    pub orphaned_ops: u64,
    /// Multishot ops submitted again after the kernel ended them.
    pub multishot_rearms: u64,
    /// Receives that found their provided-buffer ring empty (`ENOBUFS`).
    pub buffers_exhausted: u64,
    /// Completions changed by the fault plan (zero unless one is set: see `FaultPlan`).
    pub faults_injected: u64,
    /// Tasks spawned on this core.
    pub tasks_spawned: u64,
    /// Tasks alive now (spawned, not finished).
    pub tasks_alive: u64,
    /// Task polls.
    pub tasks_polled: u64,
    /// Task polls that took longer than [`LONG_POLL`] (50 µs): exact for long polls in
    /// separate ticks; several in one tick's batch may count once (the batch is timed as a
    /// whole until one is long, then each poll is timed).
    pub long_polls: u64,
    /// Nanoseconds the core spent working (ticks that did not block).
    pub busy_ns: u64,
    /// Nanoseconds the core spent parked in `io_uring_enter`, waiting for work.
    pub parked_ns: u64,
    /// Jobs other threads sent to this core (`CoreHandle::execute`, `spawn_on`, ...).
    pub jobs_received: u64,
    /// Doorbell pokes that woke this core from a park.
    pub pokes_received: u64,
}

impl Metrics {
    /// Every counter with its name, in a fixed order (the names Display and db-proxy's INFO
    /// print).
    pub fn fields(&self) -> [(&'static str, u64); 20] {
        [
            ("ticks", self.ticks),
            ("enters", self.enters),
            ("sqes_submitted", self.sqes_submitted),
            ("cqes_reaped", self.cqes_reaped),
            ("sq_full_waits", self.sq_full_waits),
            ("cq_overflows", self.cq_overflows),
            ("ops_in_flight", self.ops_in_flight),
            ("cancels", self.cancels),
            ("orphaned_ops", self.orphaned_ops),
            ("multishot_rearms", self.multishot_rearms),
            ("buffers_exhausted", self.buffers_exhausted),
            ("faults_injected", self.faults_injected),
            ("tasks_spawned", self.tasks_spawned),
            ("tasks_alive", self.tasks_alive),
            ("tasks_polled", self.tasks_polled),
            ("long_polls", self.long_polls),
            ("busy_ns", self.busy_ns),
            ("parked_ns", self.parked_ns),
            ("jobs_received", self.jobs_received),
            ("pokes_received", self.pokes_received),
        ]
    }
}

impl fmt::Display for Metrics {
    /// One `name:value` line per field, as Redis's INFO prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in self.fields() {
            writeln!(f, "{name}:{value}")?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Adds `other`'s counts and gauges to these (for a whole-runtime total); `core` is kept.
    pub fn merge(&mut self, other: &Metrics) {
        self.ticks += other.ticks;
        self.enters += other.enters;
        self.sqes_submitted += other.sqes_submitted;
        self.cqes_reaped += other.cqes_reaped;
        self.sq_full_waits += other.sq_full_waits;
        self.cq_overflows += other.cq_overflows;
        self.ops_in_flight += other.ops_in_flight;
        self.cancels += other.cancels;
        self.orphaned_ops += other.orphaned_ops;
        self.multishot_rearms += other.multishot_rearms;
        self.buffers_exhausted += other.buffers_exhausted;
        self.faults_injected += other.faults_injected;
        self.tasks_spawned += other.tasks_spawned;
        self.tasks_alive += other.tasks_alive;
        self.tasks_polled += other.tasks_polled;
        self.long_polls += other.long_polls;
        self.busy_ns += other.busy_ns;
        self.parked_ns += other.parked_ns;
        self.jobs_received += other.jobs_received;
        self.pokes_received += other.pokes_received;
    }
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
