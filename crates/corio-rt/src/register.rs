//! Resources registered with the current core's ring: provided-buffer rings (IORING_REGISTER_PBUF_RING,
//! Linux 5.19) and fixed buffers (IORING_REGISTER_BUFFERS). corio-io builds its `BufRing` and
//! `FixedBufPool` on these; they are per core, like the ring.
//!
//! On the epoll driver the same calls work: a buffer ring is read by the driver as the kernel
//! reads it (a receive takes a buffer only when bytes are there), and fixed buffers are plain
//! memory that fixed-buffer ops read and write with ordinary syscalls.

use std::io;

use crate::context;

/// Registers a provided-buffer ring with the current core's ring under a fresh buffer group id,
/// and returns that id (the `buf_group` multishot receives name).
///
/// `ring_addr` is the page-aligned address of `entries` 16-byte `io_uring_buf` entries
/// (`entries` a power of two, at most 32768); `flags` are the `IOU_PBUF_RING_*` flags (0, or
/// `IOU_PBUF_RING_INC` = 2 for incrementally consumed buffers, Linux 6.12). See
/// io_uring_register_buf_ring(3).
///
/// # Errors
/// `EINVAL` for a bad size or alignment, `EEXIST` if the id is taken, `ENOENT`-style errors
/// from kernels without buffer rings; outside a corio core, `Unsupported`.
///
/// # Safety
/// The ring at `ring_addr`, and every buffer it names, must stay valid until
/// [`unregister_buf_ring`] of the returned id and no receive from it is in flight.
pub unsafe fn register_buf_ring(ring_addr: u64, entries: u16, flags: u16) -> io::Result<u16> {
    // SAFETY: forwarded from the caller's contract.
    context::try_with_driver(|d| unsafe { d.register_buf_ring(ring_addr, entries, flags) })
        .unwrap_or_else(|| Err(no_core()))
}

/// Unregisters the provided-buffer ring `bgid` from the current core's ring; the kernel picks no
/// buffer from it afterwards.
///
/// # Errors
/// `EINVAL` if `bgid` is not registered on this core; outside a corio core, `Unsupported`.
pub fn unregister_buf_ring(bgid: u16) -> io::Result<()> {
    context::try_with_driver(|d| d.unregister_buf_ring(bgid)).unwrap_or_else(|| Err(no_core()))
}

/// Registers `iovecs` as the current core's fixed buffers, for READ_FIXED and WRITE_FIXED ops
/// that name them by index. A ring has one set at a time.
///
/// # Errors
/// `EBUSY` if a set is already registered; `ENOMEM` past `RLIMIT_MEMLOCK`; `EINVAL` for a bad
/// iovec; `Unsupported` outside a corio core.
///
/// # Safety
/// Every iovec must describe memory that stays valid until [`unregister_buffers`] has been
/// called on this core and no fixed-buffer op is in flight (the kernel pins the pages).
pub unsafe fn register_buffers(iovecs: &[libc::iovec]) -> io::Result<()> {
    // SAFETY: forwarded from the caller's contract.
    context::try_with_driver(|d| unsafe { d.register_buffers(iovecs) })
        .unwrap_or_else(|| Err(no_core()))
}

/// Unregisters the current core's fixed buffers.
///
/// # Errors
/// `ENXIO` if none are registered; `Unsupported` outside a corio core.
pub fn unregister_buffers() -> io::Result<()> {
    context::try_with_driver(|d| d.unregister_buffers()).unwrap_or_else(|| Err(no_core()))
}

/// The kernel's head of the provided-buffer ring `bgid` on the current core
/// (IORING_REGISTER_PBUF_STATUS, Linux 6.8): the ring holds `tail - head` buffers the kernel
/// may still pick.
///
/// # Errors
/// `EINVAL` on kernels without the status query or for an unknown group; `Unsupported` outside
/// a corio core.
pub fn buf_ring_head(bgid: u16) -> io::Result<u16> {
    context::try_with_driver(|d| d.buf_ring_head(bgid)).unwrap_or_else(|| Err(no_core()))
}

fn no_core() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not on a corio core")
}
