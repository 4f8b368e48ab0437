//! SPLICE (splice(2)): moving bytes between an fd and a pipe inside the kernel, and the pipe
//! the copy runs through.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use corio_rt::{Cqe, OpCode};
use io_uring::{opcode, squeue, types};

use super::net::SharedFd;

pub(crate) struct Splice {
    pub(crate) from: SharedFd,
    pub(crate) to: SharedFd,
    pub(crate) len: u32,
}

// SAFETY: the SQE carries fds and a length, no pointers.
unsafe impl OpCode for Splice {
    const CODE: u8 = opcode::Splice::CODE;
    type Output = io::Result<usize>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Splice::new(
            types::Fd(self.from.as_raw_fd()),
            -1,
            types::Fd(self.to.as_raw_fd()),
            -1,
            self.len,
        )
        .flags(libc::SPLICE_F_MOVE)
        .build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<usize> {
        cqe.bytes()
    }
}

/// A new pipe: (read end, write end), close-on-exec.
pub(crate) fn pipe() -> io::Result<(SharedFd, SharedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded and returned two fresh fds that we now own.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((Rc::new(read), Rc::new(write)))
}
