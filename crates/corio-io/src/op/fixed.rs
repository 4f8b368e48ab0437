//! READ_FIXED and WRITE_FIXED: positional reads and writes through a registered buffer, named
//! by its index instead of mapped on every op (io_uring_prep_read_fixed(3)).

use std::io;
use std::os::fd::AsRawFd;

use corio_rt::{Cqe, OpCode};
use io_uring::{opcode, squeue, types};

use super::net::SharedFd;
use crate::buf::{fill_from_cqe, init_from, spare_of, FixedBuf};

pub(crate) struct ReadFixed {
    pub(crate) fd: SharedFd,
    pub(crate) buf: FixedBuf,
    pub(crate) pos: u64,
}

// SAFETY: the SQE points into the registered buffer's spare capacity; the op owns the buffer
// and the pool's memory outlives it (buf/fixed.rs F1).
unsafe impl OpCode for ReadFixed {
    const CODE: u8 = opcode::ReadFixed::CODE;
    type Output = (io::Result<usize>, FixedBuf);

    fn sqe(&mut self) -> squeue::Entry {
        let (ptr, len) = spare_of(&mut self.buf);
        let index = self.buf.buf_index();
        opcode::ReadFixed::new(types::Fd(self.fd.as_raw_fd()), ptr, len, index)
            .offset(self.pos)
            .build()
    }

    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let res = fill_from_cqe(&mut self.buf, &cqe);
        (res, self.buf)
    }
}

pub(crate) struct WriteFixed {
    pub(crate) fd: SharedFd,
    pub(crate) buf: FixedBuf,
    pub(crate) pos: u64,
}

// SAFETY: the SQE points into the registered buffer's initialised bytes, owned by the op.
unsafe impl OpCode for WriteFixed {
    const CODE: u8 = opcode::WriteFixed::CODE;
    type Output = (io::Result<usize>, FixedBuf);

    fn sqe(&mut self) -> squeue::Entry {
        let (ptr, len) = init_from(&self.buf, 0);
        let index = self.buf.buf_index();
        opcode::WriteFixed::new(types::Fd(self.fd.as_raw_fd()), ptr, len, index)
            .offset(self.pos)
            .build()
    }

    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.bytes(), self.buf)
    }
}
