//! `Cqe`: the result and flags of one completion, as the driver hands it to an op.

use std::io;

/// One completion queue entry: the result and flags of a finished (or continuing) op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cqe {
    result: i32,
    flags: u32,
}

impl Cqe {
    /// Makes a CQE by hand, as the kernel would post it: `result` is the syscall-style return
    /// (negative errno on failure), `flags` the `IORING_CQE_F_*` bits.
    pub fn new(result: i32, flags: u32) -> Cqe {
        Cqe { result, flags }
    }

    /// The raw result: a byte count, fd or zero on success, `-errno` on failure.
    pub fn raw_result(&self) -> i32 {
        self.result
    }

    /// The result as `Ok(value)` (bytes transferred, an fd, zero) or the error it encodes.
    ///
    /// # Errors
    /// The `std::io::Error` for the negative errno the kernel posted.
    pub fn result(&self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        }
    }

    /// The result as a byte count.
    ///
    /// # Errors
    /// As [`Cqe::result`].
    pub fn bytes(&self) -> io::Result<usize> {
        self.result().map(|n| n as usize)
    }

    /// The `IORING_CQE_F_*` flags.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether more CQEs will follow for the same SQE (`IORING_CQE_F_MORE`).
    pub fn more(&self) -> bool {
        io_uring::cqueue::more(self.flags)
    }

    /// The provided-buffer id the kernel picked (`IORING_CQE_F_BUFFER`), if any.
    pub fn buffer_id(&self) -> Option<u16> {
        io_uring::cqueue::buffer_select(self.flags)
    }
}
