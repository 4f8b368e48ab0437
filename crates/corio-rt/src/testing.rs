//! Helpers for corio-rt's unit tests, written once: a lock for tests that count process-wide
//! resources, fd counting, pipes, one poll with a no-op waker, and buffers whose drops are
//! counted.

use std::future::Future;
use std::os::fd::{FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Tests that count open fds must not overlap with others that open rings or pipes.
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open fds of this process.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A pipe: the read end shared (ops hold it), the write end owned.
pub(crate) fn pipe() -> (Rc<OwnedFd>, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two fresh fds we now own.
    unsafe {
        (
            Rc::new(OwnedFd::from_raw_fd(fds[0])),
            OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// Writes `bytes` to `fd` with write(2), asserting all of it went.
pub(crate) fn write_fd(fd: &OwnedFd, bytes: &[u8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: writes from a live slice to an fd we own.
    let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n, bytes.len() as isize);
}

/// Polls `f` once with a waker that does nothing.
pub(crate) fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// A buffer whose drop is counted, so tests can prove orphaned resources are released.
pub(crate) struct Counted(pub(crate) Vec<u8>, Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

/// A counted buffer of `capacity` bytes whose drop adds one to `drops`.
pub(crate) fn counted(capacity: usize, drops: &Arc<AtomicUsize>) -> Counted {
    Counted(Vec::with_capacity(capacity), drops.clone())
}
