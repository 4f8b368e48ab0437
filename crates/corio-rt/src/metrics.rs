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
            /// Converts `busy_ns` and `parked_ns`, kept in clock ticks, to nanoseconds.
            pub(crate) clock: TickClock,
        }

        impl Counters {
            /// A consistent-enough copy (each field read once, relaxed) for core `core`.
            pub(crate) fn snapshot(&self, core: CoreId) -> Metrics {
                let mut metrics = Metrics { core, $($name: self.$name.get(),)* };
                metrics.busy_ns = self.clock.to_ns(metrics.busy_ns);
                metrics.parked_ns = self.clock.to_ns(metrics.parked_ns);
                metrics
            }
        }

        /// A snapshot of one core's counters. Counts are totals since the core started;
        /// `ops_in_flight` and `tasks_alive` are gauges.
        ///
        /// # Examples
        /// ```
        /// corio::block_on(async {
        ///     corio::rt::nop().await.unwrap();
        ///     let m = corio::rt::metrics();
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
    /// Nanoseconds the core spent working (between parks).
    busy_ns: Counter,
    /// Nanoseconds the core spent parked in `io_uring_enter`, waiting for work.
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

/// The loop's cheap clock, for long polls and busy and parked time: the TSC on x86-64 (`rdtsc`,
/// one instruction, about 10 ns here against 26 ns for `Instant::now`; `constant_tsc` and
/// `nonstop_tsc` make it steady), elsewhere the monotonic clock in nanoseconds. Its ticks
/// become nanoseconds by the rate measured against `Instant` since the core started
/// ([`TickClock`], [`LongPoll`]), so no frequency is assumed.
#[inline]
pub(crate) fn clock_ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads the time-stamp counter; it has no preconditions on x86-64, where
        // every CPU has it, and touches no memory.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    }
}

/// The start of a core's tick clock, to turn ticks into nanoseconds.
pub(crate) struct TickClock {
    start_ticks: u64,
    start: std::time::Instant,
}

impl Default for TickClock {
    fn default() -> TickClock {
        TickClock {
            start_ticks: clock_ticks(),
            start: std::time::Instant::now(),
        }
    }
}

impl TickClock {
    /// `ticks` in nanoseconds, at the rate the clock ran since it was made.
    fn to_ns(&self, ticks: u64) -> u64 {
        let elapsed_ticks = clock_ticks().saturating_sub(self.start_ticks);
        if elapsed_ticks == 0 {
            return 0;
        }
        let elapsed_ns = self.start.elapsed().as_nanos();
        (u128::from(ticks) * elapsed_ns / u128::from(elapsed_ticks)) as u64
    }

    /// `d` in ticks, at the rate the clock ran since it was made (`u64::MAX` before it moved).
    fn ticks_for(&self, d: std::time::Duration) -> u64 {
        let elapsed_ns = self.start.elapsed().as_nanos();
        let elapsed_ticks = clock_ticks().saturating_sub(self.start_ticks);
        if elapsed_ns == 0 || elapsed_ticks == 0 {
            return u64::MAX;
        }
        (d.as_nanos() * u128::from(elapsed_ticks) / elapsed_ns).min(u128::from(u64::MAX)) as u64
    }
}

/// [`LONG_POLL`] in tick-clock ticks, measured again every 1,024 uses so the rate estimate
/// settles (it is taken over the time since the core started).
pub(crate) struct LongPoll {
    clock: TickClock,
    ticks: std::cell::Cell<u64>,
    uses: std::cell::Cell<u32>,
}

impl Default for LongPoll {
    fn default() -> LongPoll {
        LongPoll {
            clock: TickClock::default(),
            ticks: std::cell::Cell::new(u64::MAX),
            uses: std::cell::Cell::new(0),
        }
    }
}

impl LongPoll {
    /// `LONG_POLL` in ticks.
    pub(crate) fn ticks(&self) -> u64 {
        let uses = self.uses.get();
        self.uses.set(uses.wrapping_add(1));
        if uses % 1024 == 0 {
            self.ticks.set(self.clock.ticks_for(LONG_POLL));
        }
        self.ticks.get()
    }
}

/// The calling core's counters now; all zero outside a corio core.
///
/// # Examples
/// ```
/// corio::block_on(async {
///     let before = corio::rt::metrics().tasks_spawned;
///     corio::spawn(async {}).await.unwrap();
///     assert_eq!(corio::rt::metrics().tasks_spawned, before + 1);
/// });
/// ```
pub fn metrics() -> Metrics {
    crate::context::with_core(|core| core.counters().snapshot(core.id())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn busy_and_parked_time_add_up_to_what_the_core_did() {
        crate::block_on(async {
            let before = crate::metrics();
            crate::time::sleep(Duration::from_millis(30)).await; // parked
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(30) {
                crate::yield_now().await; // busy: a task always runnable
            }
            crate::nop().await.unwrap(); // one more park, to close the busy stretch
            let m = crate::metrics();
            let parked = Duration::from_nanos(m.parked_ns - before.parked_ns);
            let busy = Duration::from_nanos(m.busy_ns - before.busy_ns);
            assert!(parked >= Duration::from_millis(25), "parked {parked:?}");
            assert!(busy >= Duration::from_millis(25), "busy {busy:?}");
            assert!(
                parked + busy < Duration::from_secs(2),
                "{parked:?} + {busy:?}"
            );
        });
    }
}
