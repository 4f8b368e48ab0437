//! `spawn_on` and `run_on_all`: futures built on another core, results brought back.
//!
//! The caller sends a `Send` closure; the target core calls it to build a (possibly `!Send`)
//! future and spawns it there. The output returns through a oneshot channel that wakes the
//! caller's task on its own core. As with [`corio_rt::JoinHandle`], dropping the
//! [`RemoteJoinHandle`] detaches the remote task (it runs to the end, its output is dropped);
//! [`RemoteJoinHandle::abort`] cancels it.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use corio_rt::{CoreHandle, CoreId};
use futures_channel::oneshot;
use futures_util::future::{self, Either};
use futures_util::FutureExt;

/// Why a remote task produced no output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// No such core in this runtime.
    NoSuchCore(CoreId),
    /// The target core has shut down (before or while running the task).
    Shutdown(CoreId),
    /// The remote task panicked; the panic message, if it was a string.
    Panicked(CoreId, String),
    /// The task was cancelled by [`RemoteJoinHandle::abort`].
    Aborted(CoreId),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::NoSuchCore(core) => write!(f, "no {core} in this runtime"),
            RemoteError::Shutdown(core) => write!(f, "{core} has shut down"),
            RemoteError::Panicked(core, msg) => write!(f, "task on {core} panicked: {msg}"),
            RemoteError::Aborted(core) => write!(f, "task on {core} was aborted"),
        }
    }
}

impl std::error::Error for RemoteError {}

/// The result of a [`spawn_on`]: await it for the remote task's output.
///
/// Dropping it detaches the remote task, as dropping a [`JoinHandle`](corio_rt::JoinHandle)
/// does: the task runs to its end on its core and its output is dropped there. To cancel the
/// task, call [`abort`](Self::abort); [`detach`](Self::detach) says "let it run" explicitly.
///
/// ```
/// fn send<T: Send>() {}
/// send::<corio::mesh::RemoteJoinHandle<u64>>();
/// ```
pub struct RemoteJoinHandle<T> {
    core: CoreId,
    rx: Result<oneshot::Receiver<Result<T, String>>, RemoteError>,
    /// Sending on it cancels the remote task; dropping it unsent lets the task run on.
    abort: Mutex<Option<oneshot::Sender<()>>>,
}

impl<T> RemoteJoinHandle<T> {
    /// Cancels the remote task: its future is dropped on its core at the next tick (or never
    /// starts). Awaiting the handle afterwards gives [`RemoteError::Aborted`] unless the task
    /// had already finished.
    pub fn abort(&self) {
        let sender = self
            .abort
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(());
        }
    }

    /// Lets the remote task run to its end without anyone awaiting it (what dropping the
    /// handle does too).
    pub fn detach(self) {}

    /// The core the task runs on.
    pub fn core(&self) -> CoreId {
        self.core
    }
}

impl<T> Future for RemoteJoinHandle<T> {
    type Output = Result<T, RemoteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = this.core;
        let aborted = this
            .abort
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_none();
        let rx = match &mut this.rx {
            Ok(rx) => rx,
            Err(err) => return Poll::Ready(Err(err.clone())),
        };
        Pin::new(rx).poll(cx).map(|received| match received {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(message)) => Err(RemoteError::Panicked(core, message)),
            // The sender was dropped unsent: the task was aborted, or dropped by a core
            // shutting down.
            Err(oneshot::Canceled) if aborted => Err(RemoteError::Aborted(core)),
            Err(oneshot::Canceled) => Err(RemoteError::Shutdown(core)),
        })
    }
}

impl<T> fmt::Debug for RemoteJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJoinHandle")
            .field("core", &self.core)
            .finish()
    }
}

/// Runs the future that `f` builds on core `core` of the current runtime; its output comes back
/// to the caller's core.
///
/// `f` is `Send` (it crosses cores); the future it builds need not be.
///
/// # Errors
/// Through the handle: [`RemoteError::NoSuchCore`], [`RemoteError::Shutdown`] if the target
/// core has shut down, [`RemoteError::Panicked`] if `f` or its future panics (the target core
/// keeps serving).
///
/// # Panics
/// Outside a corio core (use [`spawn_on_handle`] from other threads).
///
/// # Examples
/// ```
/// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
/// let answers = rt.run(|_| async {
///     corio::mesh::spawn_on(corio::CoreId(1), || async { corio::current_core().0 * 10 })
///         .await
///         .unwrap()
/// });
/// assert_eq!(answers, vec![10, 10]);
/// # std::io::Result::Ok(())
/// ```
#[track_caller]
pub fn spawn_on<F, Fut>(core: CoreId, f: F) -> RemoteJoinHandle<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    match corio_rt::peers().get(core.0) {
        Some(handle) => spawn_on_handle(handle, f),
        None => RemoteJoinHandle {
            core,
            rx: Err(RemoteError::NoSuchCore(core)),
            abort: Mutex::new(None),
        },
    }
}

/// [`spawn_on`] through a [`CoreHandle`], callable from any thread (the handle is a future any
/// executor can await, e.g. `futures::executor::block_on`).
pub fn spawn_on_handle<F, Fut>(handle: &CoreHandle, f: F) -> RemoteJoinHandle<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let (abort_tx, abort_rx) = oneshot::channel();
    let core = handle.id();
    let job = Box::new(move || {
        corio_rt::spawn(run_remote(f, tx, abort_rx)).detach();
    });
    // A refused job is dropped here with its sender: the handle reports Shutdown.
    let _ = handle.execute(job);
    RemoteJoinHandle {
        core,
        rx: Ok(rx),
        abort: Mutex::new(Some(abort_tx)),
    }
}

/// The remote side: build the future, run it unless aborted, send the result (if anyone is
/// still there to receive it).
async fn run_remote<F, Fut>(
    f: F,
    tx: oneshot::Sender<Result<Fut::Output, String>>,
    mut abort: oneshot::Receiver<()>,
) where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    // Aborted before it started: never build or poll the future.
    if let Ok(Some(())) = abort.try_recv() {
        return;
    }
    let future = match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(future) => future,
        Err(payload) => {
            let _ = tx.send(Err(panic_message(payload.as_ref())));
            return;
        }
    };
    let output = AssertUnwindSafe(future).catch_unwind();
    // Only an abort cancels; a handle dropped without one (detached) lets the task run on.
    let aborted = async {
        if abort.await.is_err() {
            future::pending::<()>().await;
        }
    };
    futures_util::pin_mut!(output, aborted);
    // The abort side is polled first: an abort seen at a poll wins over an output ready then.
    match future::select(aborted, output).await {
        Either::Right((Ok(output), _)) => {
            let _ = tx.send(Ok(output));
        }
        Either::Right((Err(payload), _)) => {
            let _ = tx.send(Err(panic_message(payload.as_ref())));
        }
        Either::Left(((), _)) => {} // aborted: drop the future (and the sender, unsent)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".to_owned())
}

/// Runs `f(core)` on every core of the current runtime and gathers the outputs in core order.
///
/// # Errors
/// The first core's error, as for [`spawn_on`].
///
/// # Panics
/// Outside a corio core.
///
/// # Examples
/// ```
/// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
/// let all = rt.run(|_| async {
///     corio::mesh::run_on_all(|core| async move { core.0 }).await.unwrap()
/// });
/// assert_eq!(all, vec![vec![0, 1], vec![0, 1]]);
/// # std::io::Result::Ok(())
/// ```
pub async fn run_on_all<F, Fut>(f: F) -> Result<Vec<Fut::Output>, RemoteError>
where
    F: Fn(CoreId) -> Fut + Send + Clone + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let handles: Vec<_> = corio_rt::peers()
        .iter()
        .map(|peer| {
            let (f, core) = (f.clone(), peer.id());
            spawn_on_handle(peer, move || f(core))
        })
        .collect();
    futures_util::future::try_join_all(handles).await
}
