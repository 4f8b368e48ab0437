//! The task cell: one heap allocation holding a spawned future, then its output, with the
//! header every waker and handle points at.
//!
//! # State rules
//! - T1: the future and the output (`stage`), the join waker, the state bits and `owned_index`
//!   are touched only on the owning core's thread: by the executor's poll, by the `JoinHandle`
//!   (which is `!Send`) and by shutdown. Every function that touches them is an `unsafe fn`
//!   whose contract is T1.
//! - T2: `scheduled` is the only state other threads change: a waker swaps it to `true` and the
//!   one that changed it queues the task. The executor clears it just before each poll.
//! - T3: `refs` counts `TaskRef`s and wakers. The owner's task list holds one reference until
//!   the task finishes or is shut down, and by then `stage` holds nothing `!Send` (the output is
//!   either consumed or dropped on the owner thread, T1), so whichever thread drops the last
//!   reference only frees memory.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use super::join::JoinError;
use super::Inbox;

/// Set while the task's future is being polled. Excludes: a second poll (the executor never
/// polls a task from inside its own poll) and an immediate cancel (`abort` then only sets
/// ABORT_REQUESTED, and the poll finishes the task when it returns).
const RUNNING: u8 = 1;
/// The task has finished: its output is stored or consumed, or it was cancelled. Set before the
/// future is dropped, so nothing the destructor does can finish it twice. Excludes RUNNING.
const COMPLETE: u8 = 2;
/// A `JoinHandle` exists. Cleared when it drops; a task finishing without it drops its output.
const JOIN_INTEREST: u8 = 4;
/// `abort` was called while RUNNING: the poll in progress ends the task as cancelled.
/// Only meaningful while RUNNING.
const ABORT_REQUESTED: u8 = 8;

/// The fixed-layout front of every task cell.
pub(crate) struct Header {
    scheduled: AtomicBool,
    refs: AtomicUsize,
    vtable: &'static Vtable,
    /// The core the task belongs to: remote wakers queue it there.
    pub(crate) owner: Arc<Inbox>,
    /// RUNNING | COMPLETE | JOIN_INTEREST | ABORT_REQUESTED; owner thread only (T1).
    state: Cell<u8>,
    /// Index in the owner's task list, while listed; owner thread only (T1).
    owned_index: Cell<usize>,
}

impl Header {
    /// Whether the task has finished (COMPLETE).
    ///
    /// # Safety
    /// Owner thread only (T1).
    pub(crate) unsafe fn is_complete(&self) -> bool {
        self.state.get() & COMPLETE != 0
    }

    /// Cancels the task on behalf of its `JoinHandle`: at once, or when the running poll returns
    /// if the task aborts itself. Returns true if it was cancelled now (the caller unlists it).
    ///
    /// # Safety
    /// Owner thread only (T1).
    pub(crate) unsafe fn request_abort(&self) -> AbortNow {
        let state = self.state.get();
        if state & COMPLETE != 0 {
            return AbortNow::No;
        }
        if state & RUNNING != 0 {
            self.state.set(state | ABORT_REQUESTED);
            return AbortNow::No;
        }
        AbortNow::Yes
    }

    /// The `JoinHandle` is gone: an output stored now or later is dropped. Returns whether the
    /// task had completed (its stored output must be dropped by the caller).
    ///
    /// # Safety
    /// Owner thread only (T1).
    pub(crate) unsafe fn drop_join_interest(&self) -> bool {
        let state = self.state.get() & !JOIN_INTEREST;
        self.state.set(state);
        state & COMPLETE != 0
    }

    /// Records the task's index in its core's task list.
    ///
    /// # Safety
    /// Owner thread only (T1).
    pub(crate) unsafe fn set_owned_index(&self, index: usize) {
        self.owned_index.set(index);
    }

    /// Takes the task's index in its core's task list, if it is listed.
    ///
    /// # Safety
    /// Owner thread only (T1).
    pub(crate) unsafe fn take_owned_index(&self) -> Option<usize> {
        Some(self.owned_index.replace(usize::MAX)).filter(|&i| i != usize::MAX)
    }

    fn begin_poll(&self) {
        self.state.set(self.state.get() | RUNNING);
    }

    /// Ends a poll; true if an abort was requested during it.
    fn end_poll(&self) -> bool {
        let state = self.state.get() & !RUNNING;
        self.state.set(state);
        state & ABORT_REQUESTED != 0
    }

    /// Sets COMPLETE; returns false if it was set already.
    fn mark_complete(&self) -> bool {
        let state = self.state.get();
        self.state.set(state | COMPLETE);
        state & COMPLETE == 0
    }

    fn has_join_interest(&self) -> bool {
        self.state.get() & JOIN_INTEREST != 0
    }
}

/// What [`Header::request_abort`] asks the caller to do.
#[derive(PartialEq, Eq)]
pub(crate) enum AbortNow {
    /// Cancel the task now (it is neither running nor finished).
    Yes,
    /// Nothing: finished already, or the running poll will end it.
    No,
}

/// One type-erased operation of a task cell.
///
/// # Safety
/// Callers pass a live cell of the type the function was made for, on the owner thread (T1);
/// `dealloc` only with the last reference (T3).
type CellFn<R> = unsafe fn(NonNull<Header>) -> R;

/// The type-erased operations of a task cell (see [`CellFn`] for their contract).
struct Vtable {
    poll: CellFn<bool>,
    cancel: CellFn<()>,
    /// # Safety
    /// As [`CellFn`], and `dst` as [`TaskRef::take_output`] requires.
    take_output: unsafe fn(NonNull<Header>, *mut ()),
    drop_output: CellFn<()>,
    join_waker: CellFn<*mut Option<Waker>>,
    dealloc: CellFn<()>,
}

enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

#[repr(C)]
struct Cell_<F: Future> {
    header: Header,
    stage: UnsafeCell<Stage<F>>,
    join_waker: UnsafeCell<Option<Waker>>,
}

/// A counted reference to a task.
pub(crate) struct TaskRef {
    ptr: NonNull<Header>,
}

// SAFETY: a TaskRef only exposes, from other threads, the atomics `scheduled` and `refs` and
// the `Send + Sync` `owner`; everything else is touched on the owner thread only (T1), and the
// last reference frees nothing `!Send` (T3).
unsafe impl Send for TaskRef {}

impl TaskRef {
    /// Allocates a task for `future`, owned by `owner`, with `refs` references held by the
    /// caller (one per `TaskRef::from_raw` it will make).
    pub(crate) fn new<F: Future + 'static>(future: F, owner: Arc<Inbox>) -> TaskRef {
        let cell = Box::new(Cell_ {
            header: Header {
                scheduled: AtomicBool::new(true),
                refs: AtomicUsize::new(1),
                vtable: vtable::<F>(),
                owner,
                state: Cell::new(JOIN_INTEREST),
                owned_index: Cell::new(usize::MAX),
            },
            stage: UnsafeCell::new(Stage::Running(future)),
            join_waker: UnsafeCell::new(None),
        });
        let ptr = NonNull::from(Box::leak(cell)).cast::<Header>();
        TaskRef { ptr }
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the reference keeps the cell alive.
        unsafe { self.ptr.as_ref() }
    }

    /// Polls the future once, clearing `scheduled` first (T2). Returns true if it finished.
    ///
    /// # Safety
    /// Owner thread (T1), and not from inside a poll of this task.
    pub(crate) unsafe fn poll(&self) -> bool {
        self.header().scheduled.store(false, Ordering::Release);
        // SAFETY: owner thread (T1, our caller's contract); the vtable matches the cell's type.
        unsafe { (self.header().vtable.poll)(self.ptr) }
    }

    /// Drops the future in place and records cancellation (no effect on a finished task).
    ///
    /// # Safety
    /// Owner thread (T1), and the task is not RUNNING.
    pub(crate) unsafe fn cancel(&self) {
        // SAFETY: owner thread and not running (our caller's contract).
        unsafe { (self.header().vtable.cancel)(self.ptr) }
    }

    /// Moves the output into `dst` (a `*mut Poll<Result<T, JoinError>>` of the task's output
    /// type `T`).
    ///
    /// # Safety
    /// Owner thread; `dst` must point at a valid `Poll<Result<T, JoinError>>` for this task's
    /// output type; the task must be COMPLETE.
    pub(crate) unsafe fn take_output(&self, dst: *mut ()) {
        // SAFETY: forwarded from the caller.
        unsafe { (self.header().vtable.take_output)(self.ptr, dst) }
    }

    /// Drops a stored output (a detached task's, or one nobody collected).
    ///
    /// # Safety
    /// Owner thread (T1).
    pub(crate) unsafe fn drop_output(&self) {
        // SAFETY: owner thread (our caller's contract).
        unsafe { (self.header().vtable.drop_output)(self.ptr) }
    }

    /// The waker of the task awaiting the JoinHandle.
    ///
    /// # Safety
    /// Owner thread (T1), and no other reference from `join_waker` is alive.
    #[allow(clippy::mut_from_ref)] // exclusive by the contract above
    pub(crate) unsafe fn join_waker(&self) -> &mut Option<Waker> {
        // SAFETY: our caller's contract makes this the only reference, on the owner thread.
        unsafe { &mut *(self.header().vtable.join_waker)(self.ptr) }
    }

    /// Marks the task scheduled; true if it was not already (the caller must then queue it).
    /// Any thread (T2).
    pub(crate) fn mark_scheduled(&self) -> bool {
        !self.header().scheduled.swap(true, Ordering::AcqRel)
    }

    /// A new counted reference to the task behind `ptr`.
    ///
    /// # Safety
    /// `ptr` is a live task header and the caller holds a reference to it for the duration.
    pub(crate) unsafe fn clone_from_ptr(ptr: NonNull<Header>) -> TaskRef {
        // SAFETY: the caller holds a reference, so the cell is alive.
        unsafe { ptr.as_ref() }.refs.fetch_add(1, Ordering::Relaxed);
        TaskRef { ptr }
    }
}

impl Clone for TaskRef {
    fn clone(&self) -> TaskRef {
        // SAFETY: `self` is a live reference to the task.
        unsafe { TaskRef::clone_from_ptr(self.ptr) }
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: `self` owned one reference, given up here.
        unsafe { release(self.ptr) };
    }
}

/// Gives up one reference, freeing the cell with the last.
///
/// # Safety
/// `ptr` is a live task header and the caller owns one reference to it, which it gives up.
unsafe fn release(ptr: NonNull<Header>) {
    // SAFETY: the caller owned one reference, so the cell is alive.
    let header = unsafe { ptr.as_ref() };
    if header.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
        // SAFETY: that was the last reference; by T3 nothing `!Send` is left in the cell.
        unsafe { (header.vtable.dealloc)(ptr) }
    }
}

fn vtable<F: Future + 'static>() -> &'static Vtable {
    &Vtable {
        poll: poll::<F>,
        cancel: cancel::<F>,
        take_output: take_output::<F>,
        drop_output: drop_output::<F>,
        join_waker: join_waker::<F>,
        dealloc: dealloc::<F>,
    }
}

/// # Safety
/// `ptr` is a live `Cell_<F>`; owner thread.
unsafe fn cell<'a, F: Future>(ptr: NonNull<Header>) -> &'a Cell_<F> {
    // SAFETY: `Cell_` is repr(C) with the header first, so the pointers coincide.
    unsafe { ptr.cast::<Cell_<F>>().as_ref() }
}

/// # Safety
/// `ptr` is a live task cell of future type `F`, used on its owner thread (T1).
unsafe fn poll<F: Future>(ptr: NonNull<Header>) -> bool {
    // SAFETY: caller contract of the vtable.
    let cell = unsafe { cell::<F>(ptr) };
    // SAFETY: owner thread, and no other borrow of the stage is live during a poll (T1).
    let stage = unsafe { &mut *cell.stage.get() };
    let Stage::Running(future) = stage else {
        return false; // already finished or cancelled; a stale wake-up.
    };
    cell.header.begin_poll();
    // SAFETY: the waker borrows the caller's reference for the duration of the poll.
    let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw_waker(ptr)) });
    let mut cx = Context::from_waker(&waker);
    // SAFETY: the future lives in the heap cell and is never moved until it is dropped.
    let future = unsafe { Pin::new_unchecked(future) };
    let result = catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx)));
    let abort_requested = cell.header.end_poll();
    let output = match result {
        Ok(Poll::Pending) if !abort_requested => return false,
        Ok(Poll::Pending) => Err(JoinError::Cancelled),
        Ok(Poll::Ready(output)) => Ok(output),
        Err(payload) => Err(JoinError::Panic(payload)),
    };
    finish::<F>(cell, output);
    true
}

/// Drops the future, stores the output (or drops it if nobody will read it) and wakes the
/// joiner.
///
/// COMPLETE is set first, so code run by the future's destructor (an abort of this very task,
/// the drop of its own JoinHandle) sees a finished task and cannot finish it a second time; and
/// no reference into the stage is held while that destructor runs.
fn finish<F: Future>(cell: &Cell_<F>, output: Result<F::Output, JoinError>) {
    cell.header.mark_complete();
    // SAFETY: owner thread (T1); the borrow ends with this statement.
    let future = std::mem::replace(unsafe { &mut *cell.stage.get() }, Stage::Consumed);
    let mut output = output;
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(future))) {
        output = Err(JoinError::Panic(payload));
    }
    // Read only now: the future's destructor may have dropped the JoinHandle.
    if cell.header.has_join_interest() {
        // SAFETY: owner thread (T1); nothing else borrows the stage now.
        unsafe { *cell.stage.get() = Stage::Finished(output) };
    } else {
        let _ = catch_unwind(AssertUnwindSafe(move || drop(output)));
    }
    // SAFETY: owner thread (T1).
    let waker = unsafe { &mut *cell.join_waker.get() }.take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// # Safety
/// `ptr` is a live task cell of future type `F`, used on its owner thread (T1).
unsafe fn cancel<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: caller contract.
    let cell = unsafe { cell::<F>(ptr) };
    if !cell.header.mark_complete() {
        return;
    }
    finish::<F>(cell, Err(JoinError::Cancelled));
}

/// # Safety
/// `ptr` is a live task cell of future type `F`, used on its owner thread (T1).
unsafe fn take_output<F: Future>(ptr: NonNull<Header>, dst: *mut ()) {
    // SAFETY: caller contract.
    let cell = unsafe { cell::<F>(ptr) };
    // SAFETY: owner thread (T1).
    let stage = unsafe { &mut *cell.stage.get() };
    match std::mem::replace(stage, Stage::Consumed) {
        Stage::Finished(output) => {
            // SAFETY: caller contract: dst is a Poll<Result<F::Output, JoinError>>.
            unsafe { *dst.cast::<Poll<Result<F::Output, JoinError>>>() = Poll::Ready(output) };
        }
        _ => panic!("JoinHandle polled after it returned its output"),
    }
}

/// # Safety
/// `ptr` is a live task cell of future type `F`, used on its owner thread (T1).
unsafe fn drop_output<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: caller contract.
    let cell = unsafe { cell::<F>(ptr) };
    // SAFETY: owner thread (T1).
    let stage = unsafe { &mut *cell.stage.get() };
    if matches!(stage, Stage::Finished(_)) {
        let old = std::mem::replace(stage, Stage::Consumed);
        // A panicking destructor of a detached task's output must not unwind into the caller.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(old)));
    }
}

/// # Safety
/// `ptr` is a live task cell of future type `F`, used on its owner thread (T1).
unsafe fn join_waker<F: Future>(ptr: NonNull<Header>) -> *mut Option<Waker> {
    // SAFETY: caller contract.
    unsafe { cell::<F>(ptr) }.join_waker.get()
}

/// # Safety
/// `ptr` is a live task cell of future type `F`, used on its owner thread (T1).
unsafe fn dealloc<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: the last reference is gone; the cell was made by Box in `TaskRef::new`.
    drop(unsafe { Box::from_raw(ptr.cast::<Cell_<F>>().as_ptr()) });
}

// The waker: its data pointer is the task's header; clone/drop count references.

const WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

fn raw_waker(ptr: NonNull<Header>) -> RawWaker {
    RawWaker::new(ptr.as_ptr() as *const (), &WAKER_VTABLE)
}

/// # Safety
/// `data` is the header pointer of a task waker that holds one reference (RawWaker contract).
unsafe fn waker_clone(data: *const ()) -> RawWaker {
    // SAFETY: the data pointer of a task waker is a live header.
    let ptr = unsafe { NonNull::new_unchecked(data as *mut Header) };
    // SAFETY: the waker holds a reference for the duration of this call.
    std::mem::forget(unsafe { TaskRef::clone_from_ptr(ptr) });
    raw_waker(ptr)
}

/// # Safety
/// `data` is the header pointer of a task waker that holds one reference (RawWaker contract).
unsafe fn waker_wake(data: *const ()) {
    // SAFETY: the data pointer of a task waker is a live, non-null header; the waker owned one
    // reference, which this TaskRef now holds.
    let ptr = unsafe { NonNull::new_unchecked(data as *mut Header) };
    let task = TaskRef { ptr };
    super::waker::wake(task);
}

/// # Safety
/// `data` is the header pointer of a task waker that holds one reference (RawWaker contract).
unsafe fn waker_wake_by_ref(data: *const ()) {
    // SAFETY: the data pointer of a task waker is a live header.
    let ptr = unsafe { NonNull::new_unchecked(data as *mut Header) };
    // SAFETY: the waker holds a reference for the duration of this call.
    super::waker::wake(unsafe { TaskRef::clone_from_ptr(ptr) });
}

/// # Safety
/// `data` is the header pointer of a task waker that holds one reference (RawWaker contract).
unsafe fn waker_drop(data: *const ()) {
    // SAFETY: the waker owned one reference, given up here; its data is a live header.
    unsafe { release(NonNull::new_unchecked(data as *mut Header)) };
}

/// A panic payload's message, when it is a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
