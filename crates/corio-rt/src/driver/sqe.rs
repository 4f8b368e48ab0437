//! The 64 bytes of an SQE, read field by field: the fault plan changes a read's length through
//! it, and the epoll driver carries out the op an SQE describes with the equivalent syscall.
//!
//! The layout is the kernel's `struct io_uring_sqe` (include/uapi/linux/io_uring.h); the
//! comments name each field as the kernel's unions do. `squeue::Entry` is `#[repr(C)]` around
//! exactly that struct.

use io_uring::squeue;

/// An SQE as plain bytes. `Copy` and `Send`: the pointers it carries are plain numbers here,
/// and only the code that carries out the op (under the op's ownership rule, I1) follows them.
#[derive(Clone, Copy)]
pub(crate) struct Sqe([u8; 64]);

const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// `IOSQE_BUFFER_SELECT`: the op picks a buffer from the group in `buf_group`.
pub(crate) const IOSQE_BUFFER_SELECT: u8 = 1 << 5;
/// `IORING_ACCEPT_MULTISHOT`, in an ACCEPT's `ioprio`.
pub(crate) const IORING_ACCEPT_MULTISHOT: u16 = 1 << 0;
/// `IORING_RECV_MULTISHOT`, in a RECV's `ioprio`.
pub(crate) const IORING_RECV_MULTISHOT: u16 = 1 << 1;
/// `IORING_POLL_ADD_MULTI`, in a POLL_ADD's `len`.
pub(crate) const IORING_POLL_ADD_MULTI: u32 = 1 << 0;
/// `IORING_TIMEOUT_ABS`, in a TIMEOUT's `timeout_flags`.
pub(crate) const IORING_TIMEOUT_ABS: u32 = 1 << 0;
/// `IORING_TIMEOUT_MULTISHOT`, in a TIMEOUT's `timeout_flags` (Linux 6.4).
pub(crate) const IORING_TIMEOUT_MULTISHOT: u32 = 1 << 6;
/// `IORING_FSYNC_DATASYNC`, in an FSYNC's `fsync_flags`.
pub(crate) const IORING_FSYNC_DATASYNC: u32 = 1 << 0;
/// CQE flags: a buffer id is in the upper 16 bits.
pub(crate) const IORING_CQE_F_BUFFER: u32 = 1 << 0;
/// CQE flags: more CQEs follow for this SQE.
pub(crate) const IORING_CQE_F_MORE: u32 = 1 << 1;
/// CQE flags: the notification of a zero-copy send.
pub(crate) const IORING_CQE_F_NOTIF: u32 = 1 << 3;
/// Shift of the buffer id in the CQE flags.
pub(crate) const IORING_CQE_BUFFER_SHIFT: u32 = 16;

impl Sqe {
    pub(crate) fn from(sqe: squeue::Entry) -> Sqe {
        // SAFETY: `squeue::Entry` is a 64-byte `#[repr(C)]` wrapper of `io_uring_sqe` (size
        // checked above), plain data; every bit pattern is a valid `[u8; 64]`.
        Sqe(unsafe { std::mem::transmute::<squeue::Entry, [u8; 64]>(sqe) })
    }

    pub(crate) fn into_entry(self) -> squeue::Entry {
        // SAFETY: the bytes came from an `Entry`; the fields callers may change (`len`) keep
        // the SQE pointing into the same memory the op owns, at most a prefix of it.
        unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(self.0) }
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_ne_bytes([self.0[at], self.0[at + 1]])
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }

    /// `opcode`: an `IORING_OP_*`.
    pub(crate) fn opcode(&self) -> u8 {
        self.0[0]
    }

    /// `flags`: the `IOSQE_*` bits.
    pub(crate) fn flags(&self) -> u8 {
        self.0[1]
    }

    /// `ioprio`: for sends, receives and accepts, their `IORING_RECVSEND_*`/`ACCEPT_*` flags.
    pub(crate) fn ioprio(&self) -> u16 {
        self.u16_at(2)
    }

    /// `fd`: the file the op works on (or the directory fd of a path op).
    pub(crate) fn fd(&self) -> i32 {
        self.u32_at(4) as i32
    }

    /// `off` / `addr2`: a file offset (`u64::MAX`: the current position), a timeout's count,
    /// an ACCEPT's address-length pointer, a STATX's buffer.
    pub(crate) fn off(&self) -> u64 {
        self.u64_at(8)
    }

    /// `addr`: the buffer, iovec array, msghdr, sockaddr, path or timespec.
    pub(crate) fn addr(&self) -> u64 {
        self.u64_at(16)
    }

    /// `len`: a byte count, an iovec count, a mode, or a POLL_ADD's flags.
    pub(crate) fn len(&self) -> u32 {
        self.u32_at(24)
    }

    pub(crate) fn set_len(&mut self, len: u32) {
        self.0[24..28].copy_from_slice(&len.to_ne_bytes());
    }

    /// The op's own flags (`rw_flags`, `msg_flags`, `accept_flags`, `poll32_events`,
    /// `timeout_flags`, `fsync_flags`, `open_flags`, `statx_flags`, `rename_flags`, ...).
    pub(crate) fn op_flags(&self) -> u32 {
        self.u32_at(28)
    }

    /// `buf_group`: the provided-buffer group of an op with `IOSQE_BUFFER_SELECT`.
    pub(crate) fn buf_group(&self) -> u16 {
        self.u16_at(40)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{opcode, types};

    #[test]
    fn fields_are_where_the_kernel_puts_them() {
        let mut buf = [0u8; 16];
        let read = Sqe::from(
            opcode::Read::new(types::Fd(7), buf.as_mut_ptr(), 16)
                .offset(99)
                .rw_flags(libc::RWF_NOWAIT)
                .build(),
        );
        assert_eq!(read.opcode(), opcode::Read::CODE);
        assert_eq!(read.fd(), 7);
        assert_eq!(read.addr(), buf.as_ptr() as u64);
        assert_eq!((read.len(), read.off()), (16, 99));
        assert_eq!(read.op_flags(), libc::RWF_NOWAIT as u32);
        let recv = Sqe::from(opcode::RecvMulti::new(types::Fd(3), 5).build());
        assert_eq!(recv.opcode(), opcode::Recv::CODE);
        assert_eq!(recv.buf_group(), 5);
        assert!(recv.flags() & IOSQE_BUFFER_SELECT != 0);
        assert!(recv.ioprio() & IORING_RECV_MULTISHOT != 0);
        let accept = Sqe::from(opcode::AcceptMulti::new(types::Fd(3)).build());
        assert!(accept.ioprio() & IORING_ACCEPT_MULTISHOT != 0);
        let poll = Sqe::from(opcode::PollAdd::new(types::Fd(3), 1).multi(true).build());
        assert_eq!((poll.op_flags(), poll.len()), (1, IORING_POLL_ADD_MULTI));
        let mut short = read;
        short.set_len(3);
        assert_eq!(Sqe::from(short.into_entry()).len(), 3);
    }
}
