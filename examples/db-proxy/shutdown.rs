//! Graceful shutdown on SIGINT or SIGTERM: stop accepting, let every request already read be
//! answered (for at most a grace period), then exit 0.
//!
//! The main thread waits for the signal (signal-hook sets a flag; nothing runs in the signal
//! handler itself). It then marks the process as draining and shuts down the listening sockets,
//! which ends every core's pending accept; sessions count the batches they are answering, and the
//! main thread exits once that count has stayed zero for 100 ms, so requests clients had sent
//! before the signal are read and answered too.

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

/// How long no batch may be in progress before the drain is over: requests that clients had
/// already sent when the signal came (in the socket buffers, or still on the wire) arrive in
/// the sessions' pending reads within it and are answered.
const QUIET: Duration = Duration::from_millis(100);

/// Stops accepting on `listeners` (duplicates of every core's listening socket) and waits, at
/// most `grace`, until no batch has been answered for [`QUIET`]. Each session answers the
/// batch it reads and then closes its connection.
pub(crate) fn drain(listeners: &[std::net::TcpListener], grace: Duration) {
    DRAINING.store(true, Ordering::SeqCst);
    for listener in listeners {
        // Ends the accept each core has pending on this socket.
        let _ = socket2::SockRef::from(listener).shutdown(Shutdown::Both);
    }
    let deadline = Instant::now() + grace;
    let mut idle_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        if BUSY.load(Ordering::SeqCst) > 0 {
            idle_since = None;
        } else if now - *idle_since.get_or_insert(now) >= QUIET {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
