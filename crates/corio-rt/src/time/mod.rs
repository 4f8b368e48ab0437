//! Time on a core: `sleep`, `sleep_until`, `timeout`, `timeout_or_cancel` and `interval`.
//!
//! Timers live in the core's deadline store (`time/wheel.rs`); the loop bounds its wait in
//! `io_uring_enter` by the earliest deadline (the `EXT_ARG` timeout), so no timer thread exists. A timer fires at or
//! after its deadline, never before: a sleep checks the clock itself before it reports ready.

pub(crate) mod wheel;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::context;
use crate::op::Cancellable;
use wheel::TimerKey;

/// Waits until `duration` has passed (`Duration::MAX` waits, in effect, forever).
///
/// # Panics
/// When polled outside a corio core.
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// corio::block_on(async {
///     let start = Instant::now();
///     corio::time::sleep(Duration::from_millis(5)).await;
///     assert!(start.elapsed() >= Duration::from_millis(5));
/// });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(deadline_after(duration))
}

/// `now + duration`, saturating at a deadline decades away instead of overflowing.
fn deadline_after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Waits until `deadline`. A deadline in the past completes at the first poll.
///
/// # Panics
/// When polled outside a corio core.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
    }
}

/// The future of [`sleep`] and [`sleep_until`]. Dropping it cancels the timer in O(log n).
///
/// `Send + Sync` (what hyper's `Timer` asks of a sleep): it registers with the timer store of
/// the core that polls it, and a sleep polled on another core than before registers there
/// afresh (its old entry fires once, harmlessly, then is gone).
///
/// ```
/// fn send_sync<T: Send + Sync>() {}
/// send_sync::<corio::time::Sleep>();
/// ```
#[must_use = "a sleep does nothing until awaited"]
pub struct Sleep {
    deadline: Instant,
    /// The registered timer, and the core (driver id) whose timer store holds it.
    key: Option<(TimerKey, u64)>,
}

impl Sleep {
    /// The instant this sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline, keeping the future (as `Interval` does between ticks).
    pub fn reset(&mut self, deadline: Instant) {
        self.unregister();
        self.deadline = deadline;
    }

    fn unregister(&mut self) {
        if let Some((key, core_id)) = self.key.take() {
            context::with_core(|core| {
                if core.driver.borrow().id() == core_id {
                    core.timers.borrow_mut().remove(key);
                }
            });
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            this.unregister();
            return Poll::Ready(());
        }
        let registered = context::with_core(|core| {
            let core_id = core.driver.borrow().id();
            let mut timers = core.timers.borrow_mut();
            match this.key {
                Some((key, id)) if id == core_id && timers.update(key, cx.waker()) => {}
                _ => {
                    let key = timers.insert(this.deadline, cx.waker().clone());
                    this.key = Some((key, core_id));
                }
            }
        });
        if registered.is_none() {
            panic!("corio::time::sleep polled outside a corio core");
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline has elapsed")
    }
}

/// Runs `future` for at most `duration`: its output, or `Err(Elapsed)` if time ran out first
/// (then `future` is dropped, cancelling whatever it had in flight).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// corio::block_on(async {
///     let slow = corio::time::sleep(Duration::from_secs(60));
///     assert!(corio::time::timeout(Duration::from_millis(1), slow).await.is_err());
/// });
/// ```
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

/// The future of [`timeout`].
#[must_use = "a timeout does nothing until awaited"]
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned (never moved out of the pinned Timeout);
        // `sleep` is Unpin and not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut this.sleep)
            .poll(cx)
            .map(|()| Err(Elapsed(())))
    }
}

/// Runs the op `op` for at most `duration`; when time runs out, cancels it and gives back what
/// it holds instead of dropping it: `Err(TimedOut)` carries the op's output after the cancel,
/// the buffer it was lent and, if the op completed as the deadline passed, its real result (a
/// read's bytes are then in the buffer, not lost).
///
/// Use it where [`timeout`] would drop a buffer you want back. `op` is any [`Cancellable`]:
/// an [`Op`](crate::Op), or corio-io's socket and file reads.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// corio::block_on(async {
///     let slow = corio::time::sleep(Duration::from_millis(1));
///     slow.await;
///     match corio::time::timeout_or_cancel(Duration::from_secs(1), corio::rt::nop()).await {
///         Ok(result) => result.unwrap(),
///         Err(timed_out) => drop(timed_out.into_inner()),
///     }
/// });
/// ```
pub fn timeout_or_cancel<F: Cancellable>(duration: Duration, op: F) -> TimeoutOrCancel<F> {
    TimeoutOrCancel {
        op,
        sleep: sleep(duration),
        cancelling: false,
    }
}

/// The future of [`timeout_or_cancel`].
#[must_use = "a timeout does nothing until awaited"]
pub struct TimeoutOrCancel<F> {
    op: F,
    sleep: Sleep,
    cancelling: bool,
}

/// The deadline of [`timeout_or_cancel`] passed: the op was cancelled, and this is its output.
#[derive(Debug)]
pub struct TimedOut<T>(T);

impl<T> TimedOut<T> {
    /// The op's output after the cancel (its buffer, and its result: `ECANCELED`, or what it
    /// did if it completed first).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Display for TimedOut<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl<T: fmt::Debug> std::error::Error for TimedOut<T> {}

impl<F: Cancellable> Future for TimeoutOrCancel<F> {
    type Output = Result<F::Output, TimedOut<F::Output>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(output) = Pin::new(&mut this.op).poll(cx) {
            return Poll::Ready(if this.cancelling {
                Err(TimedOut(output))
            } else {
                Ok(output)
            });
        }
        if this.cancelling || Pin::new(&mut this.sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.cancelling = true;
        this.op.start_cancel();
        Pin::new(&mut this.op)
            .poll(cx)
            .map(|output| Err(TimedOut(output)))
    }
}

/// A clock that ticks every `period`, starting one period from now.
///
/// If the loop falls behind (a tick is consumed late), the next tick is `period` after the
/// late one rather than a burst of catch-up ticks.
///
/// # Panics
/// If `period` is zero.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// corio::block_on(async {
///     let mut every = corio::time::interval(Duration::from_millis(1));
///     for _ in 0..3 { every.tick().await; }
/// });
/// ```
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval period must be non-zero");
    Interval {
        period,
        sleep: sleep(period),
    }
}

/// The clock made by [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        (&mut self.sleep).await;
        let due = self.sleep.deadline();
        let now = Instant::now();
        let next = due + self.period;
        self.sleep
            .reset(if next > now { next } else { now + self.period });
        due
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }
}
