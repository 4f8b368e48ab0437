//! The only thread-local of corio: which core this thread runs, if any.
//!
//! A core's loop (`core.rs`) enters itself here for as long as it runs; everything that acts on
//! "the current core" (spawning, submitting an op, arming a timer) finds it through
//! [`with_core`]. Nothing else is kept per thread.

use std::cell::Cell;

use crate::core::Core;
use crate::driver::Driver;
use crate::CoreId;

thread_local! {
    static CURRENT: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
}

/// Makes `core` the thread's current core until the guard drops.
///
/// # Panics
/// If another core is already current on this thread (`block_on` inside a task).
pub(crate) fn enter(core: &Core) -> EnterGuard {
    CURRENT.with(|current| {
        let previous = current.get();
        if !previous.is_null() && !std::ptr::eq(previous, core) {
            panic!("cannot start a corio loop from inside a corio task (nested block_on)");
        }
        current.set(core);
        EnterGuard { previous }
    })
}

/// Restores the previous current core when dropped.
pub(crate) struct EnterGuard {
    previous: *const Core,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
    }
}

/// Runs `f` with this thread's core, if there is one.
pub(crate) fn with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    let ptr = CURRENT.with(Cell::get);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: CURRENT is set only by `enter` to a core that outlives its guard (the core's loop
    // holds both), and is reset when the guard drops; the core is used only on this thread.
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

/// The core this thread runs.
///
/// # Panics
/// Outside a corio core; see [`try_current_core`].
///
/// # Examples
/// ```
/// corio::block_on(async { assert_eq!(corio::current_core().0, 0) });
/// ```
#[track_caller]
pub fn current_core() -> CoreId {
    match try_current_core() {
        Some(core) => core,
        None => panic!("corio::current_core called outside a corio core"),
    }
}

/// The core this thread runs, or `None` outside `block_on` and a `Runtime`'s threads.
pub fn try_current_core() -> Option<CoreId> {
    with_core(|core| core.id())
}
