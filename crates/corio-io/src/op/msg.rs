//! Datagram opcodes: SENDMSG and RECVMSG with a peer address (sendmsg(2), recvmsg(2)). The
//! `msghdr`, its `iovec` and the address live in the boxed op, so the kernel's pointers stay
//! valid until the CQE (I1).

use std::io;
use std::os::fd::AsRawFd;

use corio_rt::{Cqe, OpCode};
use io_uring::{opcode, squeue, types};
use socket2::SockAddr;

use super::net::SharedFd;
use crate::buf::{sqe_len, IoBuf, IoBufMut};

pub(crate) struct SendTo<B> {
    fd: SharedFd,
    buf: B,
    addr: SockAddr,
    iov: libc::iovec,
    msg: libc::msghdr,
}

impl<B: IoBuf> SendTo<B> {
    pub(crate) fn new(fd: SharedFd, buf: B, addr: SockAddr) -> SendTo<B> {
        SendTo {
            fd,
            buf,
            addr,
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: msghdr is plain data; all-zero is a valid empty header.
            msg: unsafe { std::mem::zeroed() },
        }
    }
}

// SAFETY: the SQE points at `msg`, which points at `iov` and `addr` (fields of the boxed op)
// and at `buf`'s stable storage, all owned by the op.
unsafe impl<B: IoBuf> OpCode for SendTo<B> {
    const CODE: u8 = opcode::SendMsg::CODE;
    type Output = (io::Result<usize>, B);

    fn sqe(&mut self) -> squeue::Entry {
        self.iov.iov_base = self.buf.stable_ptr() as *mut libc::c_void;
        self.iov.iov_len = sqe_len(self.buf.bytes_init()) as usize;
        self.msg.msg_name = self.addr.as_ptr() as *mut libc::c_void;
        self.msg.msg_namelen = self.addr.len();
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        opcode::SendMsg::new(types::Fd(self.fd.as_raw_fd()), &self.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    }

    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.bytes(), self.buf)
    }
}

pub(crate) struct RecvFrom<B> {
    fd: SharedFd,
    buf: B,
    storage: libc::sockaddr_storage,
    iov: libc::iovec,
    msg: libc::msghdr,
}

impl<B: IoBufMut> RecvFrom<B> {
    pub(crate) fn new(fd: SharedFd, buf: B) -> RecvFrom<B> {
        RecvFrom {
            fd,
            buf,
            // SAFETY: plain data; all-zero is valid.
            storage: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: plain data; all-zero is a valid empty header.
            msg: unsafe { std::mem::zeroed() },
        }
    }
}

// SAFETY: the SQE points at `msg`, which points at `iov` and `storage` (fields of the boxed
// op) and at `buf`'s spare capacity, stable storage owned by the op.
unsafe impl<B: IoBufMut> OpCode for RecvFrom<B> {
    const CODE: u8 = opcode::RecvMsg::CODE;
    type Output = (io::Result<(usize, SockAddr)>, B);

    fn sqe(&mut self) -> squeue::Entry {
        let init = self.buf.bytes_init();
        // SAFETY: `init <= bytes_total`, inside the allocation.
        self.iov.iov_base = unsafe { self.buf.stable_mut_ptr().add(init) }.cast();
        self.iov.iov_len = sqe_len(self.buf.bytes_total() - init) as usize;
        self.msg.msg_name = (&mut self.storage as *mut libc::sockaddr_storage).cast();
        self.msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        opcode::RecvMsg::new(types::Fd(self.fd.as_raw_fd()), &mut self.msg).build()
    }

    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let n = match cqe.bytes() {
            Ok(n) => n,
            Err(err) => return (Err(err), self.buf),
        };
        let init = self.buf.bytes_init() + n;
        // SAFETY: the kernel initialised `n` bytes after the old initialised length.
        unsafe { self.buf.set_init(init) };
        // SAFETY: the kernel wrote a valid address of `msg_namelen` bytes into `storage`.
        let addr = unsafe { SockAddr::new(self.storage, self.msg.msg_namelen) };
        (Ok((n, addr)), self.buf)
    }
}

/// A gather send on a connected socket: SENDMSG with one iovec per buffer and no address, so
/// it can carry `MSG_NOSIGNAL` (a plain WRITEV cannot).
pub(crate) struct SendVectored<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovs: Vec<libc::iovec>,
    msg: libc::msghdr,
}

impl<B: IoBuf> SendVectored<B> {
    pub(crate) fn new(fd: SharedFd, bufs: Vec<B>) -> SendVectored<B> {
        let iovs = bufs
            .iter()
            .map(|buf| libc::iovec {
                iov_base: buf.stable_ptr() as *mut libc::c_void,
                iov_len: buf.bytes_init(),
            })
            .collect();
        SendVectored {
            fd,
            bufs,
            iovs,
            // SAFETY: msghdr is plain data; all-zero is a valid empty header.
            msg: unsafe { std::mem::zeroed() },
        }
    }
}

// SAFETY: the SQE points at `msg`, which points at `iovs` (a heap array the op owns), whose
// entries point at the buffers' stable storage, also owned by the op.
unsafe impl<B: IoBuf> OpCode for SendVectored<B> {
    const CODE: u8 = opcode::SendMsg::CODE;
    type Output = (io::Result<usize>, Vec<B>);

    fn sqe(&mut self) -> squeue::Entry {
        self.msg.msg_iov = self.iovs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovs.len();
        opcode::SendMsg::new(types::Fd(self.fd.as_raw_fd()), &self.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    }

    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.bytes(), self.bufs)
    }
}
