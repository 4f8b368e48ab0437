//! Unix signals as futures: [`ctrl_c`] (SIGINT), [`terminate`] (SIGTERM), [`shutdown`] (either)
//! and [`signal`] for any other, on every core at once.
//!
//! The first future for a signal installs a handler for it (signal-hook's, which only writes
//! to a pipe, as a handler must) and, once per process, a `corio-signal` thread that reads the
//! pipe, counts each signal, and wakes every future waiting for it, whichever core it is on.
//! From then on that signal no longer has its default action (SIGINT no longer ends the
//! process): the program decides what it means.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// SIGINT: what Ctrl-C in a terminal sends.
pub const SIGINT: i32 = libc::SIGINT;
/// SIGTERM: what `kill`, systemd and Kubernetes send to ask a process to stop.
pub const SIGTERM: i32 = libc::SIGTERM;
/// SIGHUP: by convention, "reload your configuration".
pub const SIGHUP: i32 = libc::SIGHUP;

/// The one process-wide registry: per signal number, how many have arrived and who waits.
struct Registry {
    handle: signal_hook::iterator::Handle,
    /// Signal numbers 1..=64 (`SIGRTMAX` on Linux), each with its count and waiters.
    slots: Vec<Slot>,
    installed: Mutex<u64>,
}

#[derive(Default)]
struct Slot {
    count: AtomicU64,
    waiters: Mutex<Slab<Waker>>,
}

const MAX_SIGNAL: usize = 64;

static REGISTRY: OnceLock<io::Result<Registry>> = OnceLock::new();

fn registry() -> io::Result<&'static Registry> {
    let result = REGISTRY.get_or_init(|| {
        let mut signals = signal_hook::iterator::Signals::new::<[i32; 0], i32>([])?;
        let handle = signals.handle();
        std::thread::Builder::new()
            .name("corio-signal".to_owned())
            .spawn(move || {
                for number in signals.forever() {
                    if let Some(registry) = REGISTRY.get().and_then(|r| r.as_ref().ok()) {
                        registry.deliver(number);
                    }
                }
            })?;
        Ok(Registry {
            handle,
            slots: (0..=MAX_SIGNAL).map(|_| Slot::default()).collect(),
            installed: Mutex::new(0),
        })
    });
    result
        .as_ref()
        .map_err(|err| io::Error::new(err.kind(), format!("cannot watch signals: {err}")))
}

impl Registry {
    fn slot(&self, number: i32) -> io::Result<&Slot> {
        usize::try_from(number)
            .ok()
            .filter(|&n| (1..=MAX_SIGNAL).contains(&n))
            .map(|n| &self.slots[n])
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("no signal {number}"))
            })
    }

    /// Installs the handler for `number` once; signals the OS does not let a process handle
    /// (SIGKILL, SIGSTOP) or that must stay fatal (SIGSEGV, SIGILL, SIGFPE) are refused.
    fn install(&self, number: i32) -> io::Result<()> {
        self.slot(number)?;
        let mut installed = self
            .installed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bit = 1u64 << (number - 1);
        if *installed & bit == 0 {
            if signal_hook::consts::FORBIDDEN.contains(&number) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("signal {number} cannot be handled"),
                ));
            }
            self.handle.add_signal(number).map_err(|err| {
                io::Error::new(err.kind(), format!("cannot handle signal {number}: {err}"))
            })?;
            *installed |= bit;
        }
        Ok(())
    }

    fn deliver(&self, number: i32) {
        let Ok(slot) = self.slot(number) else { return };
        slot.count.fetch_add(1, Ordering::SeqCst);
        let waiters = slot
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (_, waker) in waiters.iter() {
            waker.wake_by_ref();
        }
    }
}

/// A future that resolves when one of its signals arrives after it was made, with the signal's
/// number. Made by [`ctrl_c`], [`terminate`], [`shutdown`] and [`signal`].
///
/// Any number of these may wait at once, on any cores: each signal resolves every one of them.
///
/// A future waits only for signals that arrive after it is made. To wait again and again
/// (in a loop, or a `select!` in a loop), make one `Signal` before the loop and call
/// [`recv`](Signal::recv) on it each time: a signal that arrives between two calls is then
/// returned by the next one, where a fresh `ctrl_c()` per iteration would miss it.
///
/// # Cancel safety
/// `recv` is cancel-safe: a signal that arrives while no `recv` is pending is returned by the
/// next one. Dropping the `Signal` stops watching for this waiter.
///
/// # Examples
/// ```no_run
/// # corio::block_on(async {
/// let mut hangups = corio::signal::signal(&[corio::signal::SIGHUP]);
/// loop {
///     hangups.recv().await?;
///     println!("reloading the configuration");
/// }
/// # #[allow(unreachable_code)]
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
#[must_use = "a signal future does nothing unless awaited"]
pub struct Signal {
    state: Result<Waiting, Option<io::Error>>,
}

impl Signal {
    /// Waits for the next of its signals after the last one returned (or after this `Signal`
    /// was made); the signal's number.
    ///
    /// # Errors
    /// The error that kept the handler from being installed.
    pub async fn recv(&mut self) -> io::Result<i32> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll(cx)).await
    }
}

struct Waiting {
    registry: &'static Registry,
    /// Each watched signal's number, its count when this future was made, and its waker key.
    watched: Vec<(i32, u64, Option<usize>)>,
}

impl Signal {
    pub(crate) fn new(numbers: &[i32]) -> Signal {
        let state = (|| {
            let registry = registry()?;
            let mut watched = Vec::with_capacity(numbers.len());
            for &number in numbers {
                registry.install(number)?;
                let count = registry.slot(number)?.count.load(Ordering::SeqCst);
                watched.push((number, count, None));
            }
            Ok(Waiting { registry, watched })
        })();
        Signal {
            state: state.map_err(Some),
        }
    }
}

impl Future for Signal {
    type Output = io::Result<i32>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<i32>> {
        let waiting = match &mut self.state {
            Ok(waiting) => waiting,
            Err(err) => {
                return Poll::Ready(Err(err.take().unwrap_or_else(|| {
                    io::Error::other("signal future polled after it failed")
                })))
            }
        };
        let registry = waiting.registry;
        for (number, since, key) in &mut waiting.watched {
            let Ok(slot) = registry.slot(*number) else {
                continue;
            };
            {
                let mut waiters = slot
                    .waiters
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match key {
                    Some(key) => match waiters.get_mut(*key) {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        Some(waker) => *waker = cx.waker().clone(),
                        None => *key = waiters.insert(cx.waker().clone()),
                    },
                    None => *key = Some(waiters.insert(cx.waker().clone())),
                }
            }
            // Read after the waker is in place: a signal delivered in between is seen here
            // or wakes the waker.
            let count = slot.count.load(Ordering::SeqCst);
            if count > *since {
                // Seen: `recv` waits for the next one from here (several arrivals of the same
                // signal in between count as one, as the kernel coalesces them too).
                *since = count;
                return Poll::Ready(Ok(*number));
            }
        }
        Poll::Pending
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        let Ok(waiting) = &self.state else { return };
        for (number, _, key) in &waiting.watched {
            if let (Ok(slot), Some(key)) = (waiting.registry.slot(*number), key) {
                let mut waiters = slot
                    .waiters
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                waiters.try_remove(*key);
            }
        }
    }
}

/// Resolves at the next SIGINT (Ctrl-C). Output: `Ok(SIGINT)`, or the error that kept the
/// handler from being installed.
///
/// # Examples
/// A server on every core that stops at Ctrl-C: each core races its work against the signal.
/// ```no_run
/// use corio::{pin, select, Either};
/// let rt = corio::Runtime::builder().build()?;
/// rt.try_run(|_core| async move {
///     let serve = pin!(std::future::pending::<std::io::Result<()>>()); // accept loop here
///     match select(pin!(corio::signal::ctrl_c()), serve).await {
///         Either::Left((signal, _)) => signal.map(drop), // Ctrl-C: finish cleanly
///         Either::Right((served, _)) => served,
///     }
/// })?;
/// # std::io::Result::Ok(())
/// ```
pub fn ctrl_c() -> Signal {
    Signal::new(&[SIGINT])
}

/// Resolves at the next SIGTERM (`kill`, systemd, Kubernetes). Output: `Ok(SIGTERM)`.
pub fn terminate() -> Signal {
    Signal::new(&[SIGTERM])
}

/// Resolves at the next SIGINT or SIGTERM, with the one that came: what a server waits for to
/// shut down gracefully.
pub fn shutdown() -> Signal {
    Signal::new(&[SIGINT, SIGTERM])
}

/// Resolves at the next of any of `numbers` (signal numbers as in `signal(7)`: [`SIGHUP`],
/// `libc::SIGUSR1`, ...), with the one that came.
///
/// # Errors
/// The future resolves to `InvalidInput` if a number is not a signal or cannot be handled
/// (SIGKILL, SIGSTOP, SIGSEGV, SIGILL, SIGFPE).
///
/// # Examples
/// ```
/// # corio::block_on(async {
/// let err = corio::signal::signal(&[libc::SIGKILL]).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// # });
/// ```
pub fn signal(numbers: &[i32]) -> Signal {
    Signal::new(numbers)
}
