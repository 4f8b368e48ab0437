//! One core: its driver, executor and timers, and the loop that turns them (`block_on`, and a
//! runtime core's main loop): run ready tasks, take remote work, submit and reap (parking in
//! the ring when there is nothing to do, or spinning first if asked), fire timers.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::context;
use crate::driver::{Doorbell, Driver, DriverKind, FaultPlan, Park};
use crate::executor::{Executor, Inbox, BUDGET};
use crate::handle::CoreHandle;
use crate::metrics::{Counters, LongPoll};
use crate::time::wheel::Wheel;
use crate::CoreId;

/// One core: a ring, an executor and a timer store, used only by the thread that made it.
pub(crate) struct Core {
    pub(crate) driver: RefCell<Driver>,
    pub(crate) executor: Executor,
    pub(crate) timers: RefCell<Wheel>,
    /// Spare vector for the wakers the driver reaped (kept to avoid an allocation per tick).
    woken: Cell<Vec<Waker>>,
    /// Every core of this core's runtime (set at start-up; just this one under `block_on`).
    pub(crate) peers: RefCell<Option<Arc<[CoreHandle]>>>,
    /// What the cores of this core's runtime share about runs (none under `block_on`).
    pub(crate) runtime: RefCell<Option<Arc<crate::run::Shared>>>,
    /// How long to poll for work before parking (zero: park at once).
    pub(crate) spin: Cell<Duration>,
    /// The tick clock at the end of the last tick: the start of the next batch of polls.
    stamp: Cell<u64>,
    /// `LONG_POLL` in tick-clock ticks.
    long_poll: LongPoll,
    /// When the current busy stretch began (the end of the last park, or the start), in
    /// the metrics' clock ticks.
    busy_since: Cell<u64>,
}

impl Core {
    /// Sets up a core with a ring of `ring_entries` SQEs, carrying out `faults` if given, on
    /// the driver `CORIO_DRIVER` names or the best one that works.
    pub(crate) fn new(
        id: CoreId,
        ring_entries: u32,
        faults: Option<FaultPlan>,
    ) -> io::Result<Core> {
        Core::with_driver(id, ring_entries, faults, None)
    }

    /// As [`new`](Self::new), on the driver `kind` if given.
    pub(crate) fn with_driver(
        id: CoreId,
        ring_entries: u32,
        faults: Option<FaultPlan>,
        kind: Option<DriverKind>,
    ) -> io::Result<Core> {
        let doorbell = Arc::new(Doorbell::new()?);
        let counters = Arc::new(Counters::default());
        let driver = Driver::new(
            ring_entries,
            doorbell.clone(),
            counters.clone(),
            faults,
            kind,
        )?;
        let inbox = Arc::new(Inbox::new(id, doorbell, counters));
        Ok(Core {
            driver: RefCell::new(driver),
            executor: Executor::new(inbox),
            timers: RefCell::new(Wheel::default()),
            woken: Cell::new(Vec::new()),
            peers: RefCell::new(None),
            runtime: RefCell::new(None),
            spin: Cell::new(Duration::ZERO),
            stamp: Cell::new(crate::metrics::clock_ticks()),
            long_poll: LongPoll::default(),
            busy_since: Cell::new(crate::metrics::clock_ticks()),
        })
    }

    pub(crate) fn id(&self) -> CoreId {
        self.inbox().core
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inbox().counters
    }

    /// Lets other cores poke this one with MSG_RING into its ring (if it has one: the epoll
    /// driver is poked through its eventfd).
    pub(crate) fn use_msg_ring(&self) {
        if let Some(fd) = self.driver.borrow().ring_fd() {
            self.inbox().doorbell.use_msg_ring(fd);
        }
    }

    pub(crate) fn inbox(&self) -> &Arc<Inbox> {
        &self.executor.inbox
    }

    /// Runs `future` to completion on this core, running spawned tasks alongside.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _guard = context::enter(self);
        let main = Arc::new(MainWaker {
            woken: AtomicBool::new(true),
            inbox: self.inbox().clone(),
        });
        let waker = Waker::from(main.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            if main.woken.swap(false, Ordering::SeqCst) {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return output;
                }
            }
            self.turn(&|| main.woken.load(Ordering::SeqCst));
        }
    }

    /// A runtime core's main loop: turn until asked to stop.
    pub(crate) fn run_until_stopped(&self) {
        let _guard = context::enter(self);
        let stopping = || self.inbox().stopping.load(Ordering::SeqCst);
        while !stopping() {
            self.turn(&stopping);
        }
    }

    /// One tick: run ready tasks (up to the budget), take remote work, turn the ring (blocking
    /// only if nothing is runnable and `ready()` is false), fire expired timers.
    ///
    /// The loop's own timing uses the metrics' tick clock (the TSC: one instruction, no system
    /// call): read once a tick, at the end, and once more before a park. Those readings end the
    /// batch of polls that began at the previous one (for long polls), and split the core's time
    /// into busy and parked. The precise clock (`Instant`) is read only when timers are pending.
    fn turn(&self, ready: &dyn Fn() -> bool) {
        let counters = self.counters();
        counters.ticks.inc();
        self.executor.drain_remote();
        let polled = self.executor.run(BUDGET, &self.long_poll);
        self.executor.drain_remote();
        self.wake_reaped();
        let park = self.park_mode(ready);
        let parked_at = match park {
            Park::Until(_) => {
                let now = crate::metrics::clock_ticks();
                if polled > 0 {
                    self.end_batch(now);
                }
                counters
                    .busy_ns
                    .add(now.saturating_sub(self.busy_since.get()));
                Some(now)
            }
            Park::No => None,
        };
        let result = self.driver.borrow_mut().tick(park);
        if let Err(err) = result {
            let kind = self.driver.borrow().kind();
            panic!(
                "corio {}: the {kind} driver's wait failed: {err}",
                self.id()
            );
        }
        let now = crate::metrics::clock_ticks();
        match parked_at {
            Some(parked_at) => {
                counters.parked_ns.add(now.saturating_sub(parked_at));
                self.busy_since.set(now);
            }
            None if polled > 0 => self.end_batch(now),
            None => {}
        }
        self.stamp.set(now);
        self.wake_reaped();
        let graveyard = self.driver.borrow_mut().take_graveyard();
        for (orphan, cqe) in graveyard {
            // A panicking destructor of an abandoned op's resources must not take the core down.
            let _ = catch_unwind(AssertUnwindSafe(|| orphan.finish(cqe)));
        }
        if !self.timers.borrow().is_empty() {
            self.fire_timers(Instant::now());
        }
    }

    /// Times the batch of polls that began at the last tick's end.
    fn end_batch(&self, now: u64) {
        let took = now.saturating_sub(self.stamp.get());
        self.executor.batch_ended(took > self.long_poll.ticks());
    }

    /// Wakes the tasks whose ops the driver reaped, outside the driver borrow.
    fn wake_reaped(&self) {
        let mut wakers = self.woken.take();
        self.driver.borrow_mut().swap_woken(&mut wakers);
        for waker in wakers.drain(..) {
            waker.wake();
        }
        self.woken.set(wakers);
    }

    fn park_mode(&self, ready: &dyn Fn() -> bool) -> Park {
        if self.executor.has_ready() || ready() {
            return Park::No;
        }
        // Arm the doorbell before deciding: if that flushes a full SQ, the reap may wake tasks.
        self.driver.borrow_mut().prepare_park();
        if self.driver.borrow().has_woken() || self.spin_for_work(ready) {
            return Park::No;
        }
        let timeout = match self.timers.borrow().next_deadline() {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Park::No,
            },
        };
        // Dekker handshake with remote wakers (see driver/doorbell.rs): publish "parked", then
        // look once more for work that raced with it.
        self.inbox().doorbell.park();
        if self.inbox().has_remote() || ready() {
            self.inbox().doorbell.unpark();
            return Park::No;
        }
        Park::Until(timeout)
    }

    /// Polls for work for up to the core's spin time before it parks: waking a parked CPU
    /// costs tens of microseconds in a VM, far more than a short spin, so a core that talks to
    /// other cores answers faster. Returns whether work arrived. The ring is polled too (one
    /// non-blocking `io_uring_enter` per round) so I/O completions are not held back.
    fn spin_for_work(&self, ready: &dyn Fn() -> bool) -> bool {
        let spin = self.spin.get();
        if spin.is_zero() {
            return false;
        }
        let until = Instant::now() + spin;
        loop {
            if self.inbox().has_remote() || ready() || self.timers_due() {
                return true;
            }
            if self.driver.borrow().in_flight() > 0 {
                let result = self.driver.borrow_mut().tick(Park::No);
                if result.is_ok() && self.driver.borrow().has_woken() {
                    return true;
                }
            }
            if Instant::now() >= until {
                return false;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }

    fn timers_due(&self) -> bool {
        self.timers.borrow().has_expired(Instant::now())
    }

    fn fire_timers(&self, now: Instant) {
        let mut timers = self.timers.borrow_mut();
        if !timers.has_expired(now) {
            return;
        }
        let wakers = timers.expire(now);
        drop(timers);
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let _guard = context::enter(self);
        self.executor.shutdown();
        self.timers.borrow_mut().clear();
        let graveyard = self.driver.borrow_mut().shutdown();
        for (orphan, cqe) in graveyard {
            let _ = catch_unwind(AssertUnwindSafe(|| orphan.finish(cqe)));
        }
    }
}

/// The waker of the future passed to `block_on`: a flag, plus a poke if the core is parked.
struct MainWaker {
    woken: AtomicBool,
    inbox: Arc<Inbox>,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.inbox.poke();
    }
}

/// Pokes the ring `target_fd` from this thread's ring with MSG_RING; false when this thread
/// has no free driver or the poke could not be submitted (the doorbell writes its eventfd).
pub(crate) fn msg_ring_from_here(target_fd: std::os::fd::RawFd) -> bool {
    context::try_with_driver(|d| d.msg_ring(target_fd)).unwrap_or(false)
}

/// The id of this thread's driver (unique in the process), if there is a core. Resources tied
/// to one ring (registered buffers, buffer rings) compare it before releasing themselves.
pub fn ring_id() -> Option<u64> {
    context::with_core(|core| core.driver.borrow().id())
}

/// Number of io_uring operations in flight on this core (orphans of dropped futures included),
/// or 0 outside a core. Tests use it to check that cancelled ops release their slots.
pub fn in_flight() -> usize {
    context::try_with_driver(|d| d.in_flight()).unwrap_or(0)
}

/// Which setup this core's ring got (`None` outside a core, or on the epoll driver):
/// `DeferTaskrun` on Linux 6.1+.
pub fn ring_setup() -> Option<crate::Setup> {
    context::try_with_driver(|d| d.setup()).flatten()
}

/// Which driver this core runs on (`None` outside a core): io_uring, or epoll where io_uring
/// is blocked or `CORIO_DRIVER=epoll` asks for it (see [`DriverKind`]).
///
/// # Examples
/// ```
/// corio::block_on(async {
///     let kind = corio::rt::driver_kind().unwrap();
///     println!("running on {kind}");
/// });
/// ```
pub fn driver_kind() -> Option<DriverKind> {
    context::try_with_driver(|d| d.kind())
}

/// Number of live (spawned, unfinished) tasks on this core, or 0 outside a core.
pub fn live_tasks() -> usize {
    context::with_core(|core| core.executor.live_tasks()).unwrap_or(0)
}

/// Runs `future` to completion on a new single-core event loop on this thread.
///
/// The loop has its own ring (256 SQEs), or its own epoll instance where io_uring is blocked
/// (see [`DriverKind`]); tasks spawned inside run alongside `future` and are dropped, with any
/// op still in flight cancelled, when it returns. A fault plan in `CORIO_FAULTS` (see
/// [`FaultPlan`]) is carried out.
///
/// # Panics
/// If `CORIO_DRIVER=io_uring` forces io_uring and it cannot be set up (the message names the
/// cause and fix; use [`Runtime::builder`](crate::Runtime::builder) to handle that as an
/// error), if `CORIO_FAULTS` or `CORIO_DRIVER` does not parse, or if called from inside a
/// corio task.
///
/// # Examples
/// ```
/// let answer = corio::block_on(async { 42 });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    if context::with_core(|_| ()).is_some() {
        panic!("cannot start a corio loop from inside a corio task (nested block_on)");
    }
    let faults = FaultPlan::from_env().unwrap_or_else(|err| panic!("{err}"));
    let core = Core::new(CoreId(0), 256, faults).unwrap_or_else(|err| panic!("{err}"));
    core.block_on(future)
}
