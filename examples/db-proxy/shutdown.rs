//! Graceful shutdown on SIGINT or SIGTERM: stop accepting, let every request already read be
//! answered (for at most a grace period), then exit 0.
//!
//! The main thread waits for the signal (signal-hook sets a flag; nothing runs in the signal
//! handler itself). It then marks the process as draining and shuts down the listening sockets,
//! which ends every core's pending accept; sessions count the batches they are answering, and the
//! main thread exits once that count is zero.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set once a signal asked the proxy to stop.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Batches of requests being answered right now, on every core.
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// Whether the proxy is shutting down (accept loops stop, sessions close after their batch).
pub(crate) fn draining() -> bool {
    DRAINING.load(Ordering::SeqCst)
}

/// Marks a batch as being answered until the guard drops.
pub(crate) fn busy() -> BusyGuard {
    BUSY.fetch_add(1, Ordering::SeqCst);
    BusyGuard
}

/// See [`busy`].
pub(crate) struct BusyGuard;

impl Drop for BusyGuard {
    fn drop(&mut self) {
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The flag SIGINT and SIGTERM set.
pub(crate) fn install() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, flag.clone())?;
    Ok(flag)
}

/// Stops accepting on `listeners` (duplicates of every core's listening socket) and waits, at
/// most `grace`, until no batch is being answered.
pub(crate) fn drain(listeners: &[std::net::TcpListener], grace: Duration) {
    DRAINING.store(true, Ordering::SeqCst);
    for listener in listeners {
        // Ends the accept each core has pending on this socket.
        let _ = socket2::SockRef::from(listener).shutdown(Shutdown::Both);
    }
    let deadline = Instant::now() + grace;
    while BUSY.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}
