//! The only thread-local of corio: the core running on this thread, with its driver, executor
//! and timers, and the loop that turns them (`block_on`, and a runtime core's main loop).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::driver::{Doorbell, Driver, Park};
use crate::executor::task::TaskRef;
use crate::executor::{Executor, Shared, BUDGET};
use crate::handle::CoreHandle;
use crate::time::wheel::Wheel;
use crate::CoreId;

thread_local! {
    static CURRENT: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
}

/// One core: a ring, an executor and a timer store, used only by the thread that made it.
pub(crate) struct Core {
    pub(crate) driver: RefCell<Driver>,
    pub(crate) executor: Executor,
    pub(crate) timers: RefCell<Wheel>,
    /// Spare vector for the wakers the driver reaped (kept to avoid an allocation per tick).
    woken: Cell<Vec<Waker>>,
    /// Every core of this core's runtime (set at start-up; just this one under `block_on`).
    pub(crate) peers: RefCell<Option<Arc<[CoreHandle]>>>,
    /// How long to poll for work before parking (zero: park at once).
    pub(crate) spin: Cell<Duration>,
}

impl Core {
    /// Sets up a core with a ring of `ring_entries` SQEs.
    pub(crate) fn new(id: CoreId, ring_entries: u32) -> io::Result<Core> {
        let doorbell = Arc::new(Doorbell::new()?);
        let driver = Driver::new(ring_entries, doorbell.clone())?;
        let shared = Arc::new(Shared::new(id, doorbell));
        Ok(Core {
            driver: RefCell::new(driver),
            executor: Executor::new(shared),
            timers: RefCell::new(Wheel::default()),
            woken: Cell::new(Vec::new()),
            peers: RefCell::new(None),
            spin: Cell::new(Duration::ZERO),
        })
    }

    /// Lets other cores poke this one with MSG_RING into its ring.
    pub(crate) fn use_msg_ring(&self) {
        let fd = self.driver.borrow().ring_fd();
        self.shared().doorbell.use_msg_ring(fd);
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.executor.shared
    }

    /// Makes this the thread's current core until the guard drops.
    ///
    /// # Panics
    /// If another core is already current on this thread (`block_on` inside a task).
    fn enter(&self) -> EnterGuard {
        CURRENT.with(|current| {
            let previous = current.get();
            if !previous.is_null() && !std::ptr::eq(previous, self) {
                panic!("cannot start a corio loop from inside a corio task (nested block_on)");
            }
            current.set(self);
            EnterGuard { previous }
        })
    }

    /// Runs `future` to completion on this core, running spawned tasks alongside.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _guard = self.enter();
        let main = Arc::new(MainWaker {
            woken: AtomicBool::new(true),
            doorbell: self.shared().doorbell.clone(),
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
        let _guard = self.enter();
        let stopping = || self.shared().stopping.load(Ordering::SeqCst);
        while !stopping() {
            self.turn(&stopping);
        }
    }

    /// One tick: run ready tasks (up to the budget), take remote work, turn the ring (blocking
    /// only if nothing is runnable and `ready()` is false), fire expired timers.
    fn turn(&self, ready: &dyn Fn() -> bool) {
        self.executor.drain_remote();
        self.executor.run(BUDGET);
        self.executor.drain_remote();
        self.wake_reaped();
        let park = self.park_mode(ready);
        let result = self.driver.borrow_mut().tick(park);
        if let Err(err) = result {
            panic!(
                "corio core {}: io_uring_enter failed: {err}",
                self.shared().core.0
            );
        }
        self.wake_reaped();
        let graveyard = self.driver.borrow_mut().take_graveyard();
        for (orphan, cqe) in graveyard {
            // A panicking destructor of an abandoned op's resources must not take the core down.
            let _ = catch_unwind(AssertUnwindSafe(|| orphan.finish(cqe)));
        }
        self.fire_timers();
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
        self.shared().doorbell.park();
        if self.shared().has_remote() || ready() {
            self.shared().doorbell.unpark();
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
            if self.shared().has_remote() || ready() || self.timers_due() {
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

    fn fire_timers(&self) {
        let mut timers = self.timers.borrow_mut();
        if !timers.has_expired(Instant::now()) {
            return;
        }
        let wakers = timers.expire(Instant::now());
        drop(timers);
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let _guard = self.enter();
        self.executor.shutdown();
        self.timers.borrow_mut().clear();
        let graveyard = self.driver.borrow_mut().shutdown();
        for (orphan, cqe) in graveyard {
            let _ = catch_unwind(AssertUnwindSafe(|| orphan.finish(cqe)));
        }
    }
}

struct EnterGuard {
    previous: *const Core,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
    }
}

/// The waker of the future passed to `block_on`: a flag, plus a poke if the core is parked.
struct MainWaker {
    woken: AtomicBool,
    doorbell: Arc<Doorbell>,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.doorbell.wake();
    }
}

/// Runs `f` with this thread's core, if there is one.
pub(crate) fn with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    let ptr = CURRENT.with(Cell::get);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: CURRENT is set only by `Core::enter` to a core that outlives its guard, and is
    // reset when the guard drops; the core is used only on this thread.
    Some(f(unsafe { &*ptr }))
}

/// Runs `f` with this thread's driver.
///
/// # Panics
/// Outside a corio core, or if the driver is already borrowed (a bug).
pub(crate) fn with_driver<R>(f: impl FnOnce(&mut Driver) -> R) -> R {
    with_core(|core| f(&mut core.driver.borrow_mut())).unwrap_or_else(|| {
        panic!("corio I/O used outside a corio core (not in block_on or a Runtime)")
    })
}

/// Runs `f` with this thread's driver, if there is a core and its driver is not borrowed
/// already (code running inside the driver, such as a waker, gets `None`).
pub(crate) fn try_with_driver<R>(f: impl FnOnce(&mut Driver) -> R) -> Option<R> {
    with_core(|core| {
        let mut driver = core.driver.try_borrow_mut().ok()?;
        Some(f(&mut driver))
    })
    .flatten()
}

/// Pokes the ring `target_fd` from this thread's ring with MSG_RING; false when this thread
/// has no free driver or the poke could not be submitted (the caller writes the eventfd).
pub(crate) fn msg_ring(target_fd: std::os::fd::RawFd) -> bool {
    try_with_driver(|d| d.msg_ring(target_fd)).unwrap_or(false)
}

/// The id of this thread's driver (unique in the process), if there is a core. Resources tied
/// to one ring (registered buffers, buffer rings) compare it before releasing themselves.
pub fn ring_id() -> Option<u64> {
    with_core(|core| core.driver.borrow().id())
}

/// Queues `task` on this thread's run queue if this thread is its owner core; else gives it
/// back.
pub(crate) fn push_if_local(task: TaskRef) -> Result<(), TaskRef> {
    let ptr = CURRENT.with(Cell::get);
    if ptr.is_null() {
        return Err(task);
    }
    // SAFETY: as in `with_core`.
    let core = unsafe { &*ptr };
    if !Arc::ptr_eq(core.shared(), &task.header().owner) {
        return Err(task);
    }
    core.executor.push_local(task);
    Ok(())
}

/// Removes an aborted task from its core's live list (called on the owner thread).
pub(crate) fn forget_task(task: &TaskRef) {
    with_core(|core| core.executor.forget(task));
}

/// The core this thread runs.
///
/// # Panics
/// Outside a corio core; see [`try_current_core`].
///
/// # Examples
/// ```
/// corio_rt::block_on(async { assert_eq!(corio_rt::current_core().0, 0) });
/// ```
pub fn current_core() -> CoreId {
    try_current_core().unwrap_or_else(|| panic!("corio::current_core called outside a corio core"))
}

/// The core this thread runs, or `None` outside `block_on` and a `Runtime`'s threads.
pub fn try_current_core() -> Option<CoreId> {
    with_core(|core| core.shared().core)
}

/// Number of io_uring operations in flight on this core (orphans of dropped futures included),
/// or 0 outside a core. Tests use it to check that cancelled ops release their slots.
pub fn in_flight() -> usize {
    try_with_driver(|d| d.in_flight()).unwrap_or(0)
}

/// Which setup this core's ring got (`None` outside a core): `DeferTaskrun` on Linux 6.1+.
pub fn ring_setup() -> Option<crate::Setup> {
    try_with_driver(|d| d.setup())
}

/// Number of live (spawned, unfinished) tasks on this core, or 0 outside a core.
pub fn live_tasks() -> usize {
    with_core(|core| core.executor.live_tasks()).unwrap_or(0)
}

/// Runs `future` to completion on a new single-core event loop on this thread.
///
/// The loop has its own ring (256 SQEs); tasks spawned inside run alongside `future` and are
/// dropped, with any op still in flight cancelled, when it returns.
///
/// # Panics
/// If io_uring cannot be set up (the message names the cause and fix; use
/// [`Runtime::builder`](crate::Runtime::builder) to handle that as an error), or if called
/// from inside a corio task.
///
/// # Examples
/// ```
/// let answer = corio_rt::block_on(async { 42 });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    if with_core(|_| ()).is_some() {
        panic!("cannot start a corio loop from inside a corio task (nested block_on)");
    }
    let core = Core::new(CoreId(0), 256).unwrap_or_else(|err| panic!("{err}"));
    core.block_on(future)
}
