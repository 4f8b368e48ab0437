//! Waking a parked ring from another thread.
//!
//! Each core has one eventfd. The driver keeps a read of it always pending in the ring, so a
//! write from any thread completes that read and ends the core's wait in `io_uring_enter`. The
//! `parked` flag makes the poke conditional: a core sets it just before it may block, and a
//! remote waker writes to the eventfd only if it swaps the flag from set to clear. A busy core is
//! never sent a syscall, and a parked one gets exactly one.
//!
//! The handshake (a Dekker pattern over two SeqCst operations): the core stores `parked = true`
//! and then re-checks its remote queue; a waker pushes to the remote queue and then swaps
//! `parked`. One of the two always sees the other's write, so no wake-up is lost.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// One core's doorbell: shared by every thread that may wake that core.
#[derive(Debug)]
pub(crate) struct Doorbell {
    fd: OwnedFd,
    parked: AtomicBool,
}

impl Doorbell {
    /// A blocking eventfd: io_uring then waits for a write rather than failing with EAGAIN.
    pub(crate) fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Doorbell {
            fd,
            parked: AtomicBool::new(false),
        })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Marks the core as about to block. The caller must re-check for remote work afterwards.
    pub(crate) fn park(&self) {
        self.parked.store(true, Ordering::SeqCst);
    }

    /// Marks the core as running again.
    pub(crate) fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Wakes the core if, and only if, it is parked. Call after publishing the work.
    pub(crate) fn wake(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            self.ring();
        }
    }

    /// Writes to the eventfd unconditionally.
    pub(crate) fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an fd we own. The only failure is EAGAIN
        // at a counter of u64::MAX - 1, when the core has a wake-up pending anyway.
        let _ = unsafe { libc::write(self.raw_fd(), (&one as *const u64).cast(), 8) };
    }
}
