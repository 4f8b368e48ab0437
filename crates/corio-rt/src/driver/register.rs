//! Resources registered with a core's ring: provided-buffer rings (IORING_REGISTER_PBUF_RING,
//! Linux 5.19). corio-io builds its `BufRing` on these; they are per core, like the ring.

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
/// # Safety
/// The memory at `ring_addr` must stay valid, and every buffer address written into it must
/// stay valid, until [`unregister_buf_ring`] for the returned id has been called on this core
/// and no receive that could still pick a buffer is in flight.
///
/// # Errors
/// `EINVAL` for a bad size or alignment, `EEXIST` if the id is taken, `ENOENT`-style errors
/// from kernels without buffer rings; outside a corio core, `Unsupported`.
pub unsafe fn register_buf_ring(ring_addr: u64, entries: u16, flags: u16) -> io::Result<u16> {
    context::try_with_driver(|d| {
        let bgid = d.next_buf_group();
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            d.submitter()
                .register_buf_ring_with_flags(ring_addr, entries, bgid, flags)
        }?;
        Ok(bgid)
    })
    .unwrap_or_else(|| Err(no_core()))
}

/// Unregisters the provided-buffer ring `bgid` from the current core's ring; the kernel picks no
/// buffer from it afterwards.
///
/// # Errors
/// `EINVAL` if `bgid` is not registered on this core; outside a corio core, `Unsupported`.
pub fn unregister_buf_ring(bgid: u16) -> io::Result<()> {
    context::try_with_driver(|d| d.submitter().unregister_buf_ring(bgid))
        .unwrap_or_else(|| Err(no_core()))
}

fn no_core() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not on a corio core")
}
