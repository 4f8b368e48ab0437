//! Running one future on every core and ending the run loudly: the first core whose future
//! fails or panics stops the others, and [`stop`] or a [`StopHandle`] ends a run from inside or
//! from any thread.
//!
//! Each core's future runs inside a guard that watches the run's cancel flag; cancelling drops
//! the future on its own core (its sockets close there), and the caller of
//! [`Runtime::try_run`](crate::Runtime::try_run) learns which core failed and why.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt;

use crate::executor::task::panic_message;
use crate::CoreId;

/// Why [`Runtime::try_run`](crate::Runtime::try_run) ended before every core's future returned
/// `Ok`.
///
/// With `E = io::Error` it converts into an `io::Error` of the same kind (so `?` works in a
/// `main` returning `io::Result`), and for any `E: Error + Send + Sync` into a boxed error.
#[derive(Debug)]
pub enum RunError<E> {
    /// A core's future returned `Err`; the other cores' futures were cancelled.
    Failed {
        /// The core whose future failed first.
        core: CoreId,
        /// What it returned.
        error: E,
    },
    /// A core's future (or the factory building it) panicked; the other cores' futures were
    /// cancelled. The panic message was also printed by the panic hook when it happened.
    Panicked {
        /// The core that panicked first.
        core: CoreId,
        /// The panic's message (`"<non-string panic payload>"` if it had none).
        message: String,
    },
    /// [`stop`] or [`StopHandle::stop`] ended the run before every core's future finished; the
    /// unfinished ones were cancelled.
    Stopped,
}

impl<E> RunError<E> {
    /// The core that failed or panicked (`None` for [`RunError::Stopped`]).
    pub fn core(&self) -> Option<CoreId> {
        match self {
            RunError::Failed { core, .. } | RunError::Panicked { core, .. } => Some(*core),
            RunError::Stopped => None,
        }
    }

    /// Whether the run was ended by [`stop`] rather than by a failure.
    pub fn is_stopped(&self) -> bool {
        matches!(self, RunError::Stopped)
    }
}

impl<E: fmt::Display> fmt::Display for RunError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Failed { core, error } => write!(f, "{core} failed: {error}"),
            RunError::Panicked { core, message } => write!(f, "{core} panicked: {message}"),
            RunError::Stopped => f.write_str("the runtime was stopped before every core finished"),
        }
    }
}

impl<E: Error + 'static> Error for RunError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RunError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<RunError<io::Error>> for io::Error {
    fn from(err: RunError<io::Error>) -> io::Error {
        let kind = match &err {
            RunError::Failed { error, .. } => error.kind(),
            RunError::Panicked { .. } => io::ErrorKind::Other,
            RunError::Stopped => io::ErrorKind::Interrupted,
        };
        io::Error::new(kind, err.to_string())
    }
}

/// Ends the current [`Runtime`](crate::Runtime)'s runs: every core's future still running under
/// [`run`](crate::Runtime::run), [`try_run`](crate::Runtime::try_run) or
/// [`run_each`](crate::Runtime::run_each) is cancelled (dropped on its core), and so is every
/// later run of this runtime. Tasks spawned by those futures keep running until the runtime is
/// dropped. Callable from any task on any core; [`Runtime::stop_handle`](crate::Runtime::stop_handle)
/// gives the same from other threads.
///
/// # Panics
/// Outside a `Runtime`'s core (in [`block_on`](crate::block_on), which has no runtime to stop,
/// or on a thread that is not a core).
///
/// # Examples
/// ```
/// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
/// let result = rt.try_run(|core| async move {
///     if core.0 == 0 {
///         corio::rt::stop(); // e.g. an admin command asked to shut down
///     }
///     std::future::pending::<std::io::Result<()>>().await // serve forever
/// });
/// assert!(result.unwrap_err().is_stopped());
/// # std::io::Result::Ok(())
/// ```
#[track_caller]
pub fn stop() {
    match crate::context::with_core(|core| core.runtime.borrow().clone()).flatten() {
        Some(shared) => shared.stop(),
        None => panic!("corio::rt::stop called outside a Runtime's core"),
    }
}

/// Stops a [`Runtime`](crate::Runtime) from any thread (a signal handler thread, a test, a
/// supervisor): the same as [`stop`] inside it. `Send + Sync + Clone`.
///
/// ```
/// fn send_sync<T: Send + Sync>() {}
/// send_sync::<corio::rt::StopHandle>();
/// ```
#[derive(Clone)]
pub struct StopHandle {
    pub(crate) shared: Arc<Shared>,
}

impl StopHandle {
    /// Cancels every running and later run of the runtime; see [`stop`].
    pub fn stop(&self) {
        self.shared.stop();
    }

    /// Whether the runtime was stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

/// What every core of one runtime shares about its runs.
#[derive(Default)]
pub(crate) struct Shared {
    stopped: AtomicBool,
    runs: Mutex<Vec<Weak<RunState>>>,
}

impl Shared {
    fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let runs = std::mem::take(&mut *lock(&self.runs));
        for run in runs.iter().filter_map(Weak::upgrade) {
            run.cancel();
        }
    }

    /// Registers a run, or gives `None` if the runtime was stopped already.
    fn begin(&self, run: &Arc<RunState>) -> Option<()> {
        let mut runs = lock(&self.runs);
        runs.retain(|weak| weak.strong_count() > 0);
        runs.push(Arc::downgrade(run));
        drop(runs);
        // Checked after registering: a stop racing with this either sees the run or is seen.
        if self.stopped.load(Ordering::SeqCst) {
            run.cancel();
            return None;
        }
        Some(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One run's cancel flag and the wakers of its cores' guarded futures.
pub(crate) struct RunState {
    cancelled: AtomicBool,
    wakers: Vec<Mutex<Option<Waker>>>,
}

impl RunState {
    pub(crate) fn new(cores: usize) -> Arc<RunState> {
        Arc::new(RunState {
            cancelled: AtomicBool::new(false),
            wakers: (0..cores).map(|_| Mutex::new(None)).collect(),
        })
    }

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        for slot in &self.wakers {
            if let Some(waker) = lock(slot).take() {
                waker.wake();
            }
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// How one core's future ended.
pub(crate) enum Outcome<T> {
    Done(T),
    Cancelled,
    Panicked(Box<dyn Any + Send>),
}

/// A core's future under its run's cancel flag: `None` once cancelled (the future is dropped
/// then, on this core).
pub(crate) struct Guarded<F> {
    /// `None` once finished or cancelled: a cancelled future is dropped inside `poll`, so a
    /// destructor that panics is caught and reported like any other panic of the core's future.
    pub(crate) future: Option<Pin<Box<F>>>,
    pub(crate) run: Arc<RunState>,
    pub(crate) core: usize,
}

impl<F: Future> Future for Guarded<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.run.is_cancelled() {
            self.future = None;
            return Poll::Ready(None);
        }
        {
            let mut slot = lock(&self.run.wakers[self.core]);
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        // Checked again after publishing the waker: a cancel in between has woken it or is seen.
        if self.run.is_cancelled() {
            self.future = None;
            return Poll::Ready(None);
        }
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready(None);
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(Some(output))
    }
}

/// Runs `factory(core)` on every core under one run and collects each core's outcome, in core
/// order, with the index of the core whose outcome ended the run first, if one did.
/// `fails(&output)` says whether an output ends the run (the other cores are cancelled).
pub(crate) fn drive<F, Fut>(
    runtime: &crate::Runtime,
    factory: F,
    fails: fn(&Fut::Output) -> bool,
    fail_fast_on_panic: bool,
) -> (Vec<Outcome<Fut::Output>>, Option<usize>)
where
    F: Fn(CoreId) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let cores = runtime.cores();
    let run = RunState::new(cores);
    let registered = runtime.shared.begin(&run).is_some();
    let factory = Arc::new(factory);
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Outcome<Fut::Output>)>();
    let mut outcomes: Vec<Option<Outcome<Fut::Output>>> = (0..cores).map(|_| None).collect();
    let mut expected = 0;
    let mut first_failure = None;
    for (index, handle) in runtime.handles().into_iter().enumerate() {
        if !registered {
            outcomes[index] = Some(Outcome::Cancelled);
            continue;
        }
        let (factory, tx, run) = (factory.clone(), tx.clone(), run.clone());
        let id = handle.id();
        let job =
            Box::new(
                move || match std::panic::catch_unwind(AssertUnwindSafe(|| factory(id))) {
                    Ok(future) => crate::spawn(async move {
                        let guarded = Guarded {
                            future: Some(Box::pin(future)),
                            run,
                            core: id.0,
                        };
                        let outcome = match AssertUnwindSafe(guarded).catch_unwind().await {
                            Ok(Some(output)) => Outcome::Done(output),
                            Ok(None) => Outcome::Cancelled,
                            Err(payload) => Outcome::Panicked(payload),
                        };
                        let _ = tx.send((id.0, outcome));
                    })
                    .detach(),
                    Err(payload) => {
                        let _ = tx.send((id.0, Outcome::Panicked(payload)));
                    }
                },
            );
        match handle.execute(job) {
            Ok(()) => expected += 1,
            Err(_) => outcomes[index] = Some(Outcome::Cancelled),
        }
    }
    drop(tx);
    for _ in 0..expected {
        let Ok((index, outcome)) = rx.recv() else {
            // Every sender is gone: a core shut down with the task unfinished.
            break;
        };
        let ends_run = match &outcome {
            Outcome::Done(output) => fails(output),
            Outcome::Panicked(_) => fail_fast_on_panic,
            Outcome::Cancelled => false,
        };
        if ends_run {
            first_failure = first_failure.or(Some(index));
            run.cancel();
        }
        outcomes[index] = Some(outcome);
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Cancelled))
        .collect();
    (outcomes, first_failure)
}

/// The message of a panic payload.
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    panic_message(payload)
        .unwrap_or("<non-string panic payload>")
        .to_owned()
}
