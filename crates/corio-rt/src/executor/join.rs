//! `JoinHandle<T>`, the awaitable result of a spawned task, and `JoinError`.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::task::{self, AbortNow, TaskRef};
use crate::context;

/// Why a task produced no output.
pub enum JoinError {
    /// The task was aborted (or its core shut down) before it finished.
    Cancelled,
    /// The task panicked; the payload is what `panic!` was given.
    Panic(Box<dyn Any + Send + 'static>),
}

impl JoinError {
    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panic(_))
    }

    /// The panic payload, to resume the panic with `std::panic::resume_unwind`.
    ///
    /// # Panics
    /// If the task was cancelled rather than panicking.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self {
            JoinError::Panic(payload) => payload,
            JoinError::Cancelled => panic!("JoinError::into_panic on a cancelled task"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled"),
            JoinError::Panic(payload) => match task::panic_message(payload.as_ref()) {
                Some(msg) => write!(f, "task panicked: {msg}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for JoinError {}

/// The handle of a spawned task: await it for the task's output.
///
/// Dropping the handle detaches the task (it keeps running; its output is dropped when it
/// finishes). `JoinHandle` is `!Send`: the task lives on one core, and so does its handle.
///
/// # Examples
/// ```
/// corio::block_on(async {
///     let task = corio::spawn(async { 6 * 7 });
///     assert_eq!(task.await.unwrap(), 42);
/// });
/// ```
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<corio::rt::JoinHandle<u32>>(); // !Send, even for a Send output
/// ```
#[must_use = "dropping a JoinHandle detaches the task; call .detach() to say so"]
pub struct JoinHandle<T> {
    task: TaskRef,
    _output: PhantomData<(T, *const ())>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: TaskRef) -> JoinHandle<T> {
        JoinHandle {
            task,
            _output: PhantomData,
        }
    }

    /// Cancels the task: its future is dropped (at once, or when its current poll returns if
    /// it aborts itself), and awaiting the handle gives `Err(JoinError::Cancelled)`. No effect
    /// on a task that has finished.
    pub fn abort(&self) {
        // SAFETY: a JoinHandle is `!Send`, so this is the owner thread (T1).
        if unsafe { self.task.header().request_abort() } == AbortNow::No {
            return;
        }
        // SAFETY: owner thread, and request_abort found the task not running.
        unsafe { self.task.cancel() };
        context::with_core(|core| core.executor.forget(&self.task));
    }

    /// Lets the task run on without anyone awaiting it.
    pub fn detach(self) {}

    /// Whether the task has finished (with output, panic or cancellation).
    pub fn is_finished(&self) -> bool {
        // SAFETY: a JoinHandle is `!Send`, so this is the owner thread (T1).
        unsafe { self.task.header().is_complete() }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task = &self.task;
        if !self.is_finished() {
            // SAFETY: owner thread (the handle is `!Send`); the reference ends in this block.
            let slot = unsafe { task.join_waker() };
            match slot {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let mut out: Poll<Result<T, JoinError>> = Poll::Pending;
        // SAFETY: owner thread (the handle is !Send); `out` has the task's output type; the
        // task is COMPLETE.
        unsafe { task.take_output((&mut out as *mut Poll<Result<T, JoinError>>).cast()) };
        out
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        // SAFETY: a JoinHandle is `!Send`, so this is the owner thread (T1).
        if unsafe { self.task.header().drop_join_interest() } {
            // SAFETY: as above.
            unsafe { self.task.drop_output() };
        }
        // SAFETY: as above; the join waker reference ends with this statement.
        unsafe { self.task.join_waker() }.take();
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
