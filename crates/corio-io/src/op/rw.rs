//! Positional read and write opcodes: READ, WRITE, READV and WRITEV (pread(2), pwrite(2),
//! preadv(2), pwritev(2)), on files or any fd with a position.
//!
//! Reads fill a buffer's spare capacity, from its initialised length up to its capacity;
//! writes send its initialised bytes. The vectored ops keep their iovec array in a `Vec` inside
//! the boxed op, so the array and the buffers it points into stay put until the final CQE
//! (driver invariant I1).

use std::io;
use std::os::fd::AsRawFd;

use corio_rt::{Cqe, OpCode};
use io_uring::{opcode, squeue, types};

use crate::buf::{fill_from_cqe, init_from, spare_of, sqe_len, IoBuf, IoBufMut};
use crate::op::net::SharedFd;

pub(crate) struct ReadAt<B> {
    pub(crate) fd: SharedFd,
    pub(crate) buf: B,
    pub(crate) pos: u64,
}

// SAFETY: the SQE points into `buf`'s spare capacity, stable storage the op owns (I1).
unsafe impl<B: IoBufMut> OpCode for ReadAt<B> {
    const CODE: u8 = opcode::Read::CODE;
    type Output = (io::Result<usize>, B);

    fn sqe(&mut self) -> squeue::Entry {
        let (ptr, len) = spare_of(&mut self.buf);
        opcode::Read::new(types::Fd(self.fd.as_raw_fd()), ptr, len)
            .offset(self.pos)
            .build()
    }

    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let res = fill_from_cqe(&mut self.buf, &cqe);
        (res, self.buf)
    }
}

pub(crate) struct WriteAt<B> {
    pub(crate) fd: SharedFd,
    pub(crate) buf: B,
    /// Offset in bytes into `buf`'s initialised bytes where this write starts.
    pub(crate) buf_pos: usize,
    pub(crate) pos: u64,
}

// SAFETY: the SQE points into `buf`'s initialised bytes, stable storage the op owns (I1).
unsafe impl<B: IoBuf> OpCode for WriteAt<B> {
    const CODE: u8 = opcode::Write::CODE;
    type Output = (io::Result<usize>, B);

    fn sqe(&mut self) -> squeue::Entry {
        let (ptr, len) = init_from(&self.buf, self.buf_pos);
        opcode::Write::new(types::Fd(self.fd.as_raw_fd()), ptr, len)
            .offset(self.pos)
            .build()
    }

    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.bytes(), self.buf)
    }
}

/// One iovec per buffer; the array lives in the boxed op, the bytes in the buffers.
pub(crate) struct Readv<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
    pos: u64,
}

impl<B> Readv<B> {
    pub(crate) fn new(fd: SharedFd, bufs: Vec<B>, pos: u64) -> Readv<B> {
        let iovecs = Vec::with_capacity(bufs.len());
        Readv {
            fd,
            bufs,
            iovecs,
            pos,
        }
    }
}

// SAFETY: the SQE points at `iovecs`' heap array, which points into each buffer's spare
// capacity; the op owns both and neither moves until the final CQE (I1).
unsafe impl<B: IoBufMut> OpCode for Readv<B> {
    const CODE: u8 = opcode::Readv::CODE;
    type Output = (io::Result<usize>, Vec<B>);

    fn sqe(&mut self) -> squeue::Entry {
        self.iovecs = self
            .bufs
            .iter_mut()
            .map(|buf| {
                let init = buf.bytes_init();
                libc::iovec {
                    iov_base: buf.stable_mut_ptr().wrapping_add(init).cast(),
                    iov_len: buf.bytes_total() - init,
                }
            })
            .collect();
        let fd = types::Fd(self.fd.as_raw_fd());
        opcode::Readv::new(fd, self.iovecs.as_ptr(), sqe_len(self.iovecs.len()))
            .offset(self.pos)
            .build()
    }

    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let res = cqe.bytes();
        if let Ok(n) = res {
            let mut left = n;
            for buf in &mut self.bufs {
                let init = buf.bytes_init();
                let filled = left.min(buf.bytes_total() - init);
                // SAFETY: the kernel fills the iovecs in order, so this buffer's first
                // `filled` spare bytes were written.
                unsafe { buf.set_init(init + filled) };
                left -= filled;
            }
        }
        (res, self.bufs)
    }
}

/// One iovec per buffer; the array lives in the boxed op, the bytes in the buffers.
pub(crate) struct Writev<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
    pos: u64,
}

impl<B> Writev<B> {
    pub(crate) fn new(fd: SharedFd, bufs: Vec<B>, pos: u64) -> Writev<B> {
        let iovecs = Vec::with_capacity(bufs.len());
        Writev {
            fd,
            bufs,
            iovecs,
            pos,
        }
    }
}

// SAFETY: the SQE points at `iovecs`' heap array, which points into each buffer's initialised
// bytes; the op owns both and neither moves until the final CQE (I1).
unsafe impl<B: IoBuf> OpCode for Writev<B> {
    const CODE: u8 = opcode::Writev::CODE;
    type Output = (io::Result<usize>, Vec<B>);

    fn sqe(&mut self) -> squeue::Entry {
        self.iovecs = self
            .bufs
            .iter()
            .map(|buf| libc::iovec {
                // The kernel only reads through a WRITEV iovec.
                iov_base: buf.stable_ptr().cast_mut().cast(),
                iov_len: buf.bytes_init(),
            })
            .collect();
        let fd = types::Fd(self.fd.as_raw_fd());
        opcode::Writev::new(fd, self.iovecs.as_ptr(), sqe_len(self.iovecs.len()))
            .offset(self.pos)
            .build()
    }

    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.bytes(), self.bufs)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    #[test]
    fn a_readv_fills_the_buffers_in_order() {
        let fd: SharedFd = Rc::new(std::fs::File::open("/dev/null").unwrap().into());
        let bufs = vec![Vec::with_capacity(2), vec![9], Vec::with_capacity(8)];
        let mut op = Readv::new(fd, bufs, 0);
        let _ = op.sqe();
        assert_eq!(op.iovecs.len(), 3);
        assert_eq!(op.iovecs[1].iov_len, 0, "a full buffer gets an empty iovec");
        for (iov, src) in op.iovecs.iter().zip([b"ab".as_slice(), b"", b"cde"]) {
            // SAFETY: each iovec points at that buffer's spare capacity, at least this long.
            unsafe { iov.iov_base.cast::<u8>().copy_from(src.as_ptr(), src.len()) };
        }
        let (res, bufs) = op.complete(Cqe::new(5, 0));
        assert_eq!(res.unwrap(), 5);
        assert_eq!(bufs, [b"ab".to_vec(), vec![9], b"cde".to_vec()]);
    }
}
