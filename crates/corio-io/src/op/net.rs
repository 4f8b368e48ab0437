//! Socket opcodes: ACCEPT (single and multishot), CONNECT, RECV (into a buffer, or multishot
//! over a provided-buffer ring) and SEND (io_uring_enter(2), accept(2), connect(2), recv(2),
//! send(2)).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use corio_rt::{Cqe, MultishotCode, OpCode};
use io_uring::{opcode, squeue, types};
use socket2::SockAddr;

use crate::buf::{
    fill_from_cqe, init_from, last_filled, spare_of, BufRing, IoBuf, IoBufMut, RingBuf,
};
use crate::net::ReadStash;

/// An fd shared by a socket and its ops in flight: it closes when the last of them lets go,
/// so an orphaned op never sees its fd number reused.
pub(crate) type SharedFd = Rc<OwnedFd>;

pub(crate) struct Accept {
    pub(crate) fd: SharedFd,
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Accept {
    pub(crate) fn new(fd: SharedFd) -> Accept {
        Accept {
            fd,
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }
}

// SAFETY: the SQE points at `storage` and `len`, fields of the boxed op (I1).
unsafe impl OpCode for Accept {
    const CODE: u8 = opcode::Accept::CODE;
    type Output = io::Result<(OwnedFd, SockAddr)>;

    fn sqe(&mut self) -> squeue::Entry {
        let addr = (&mut self.storage as *mut libc::sockaddr_storage).cast();
        opcode::Accept::new(types::Fd(self.fd.as_raw_fd()), addr, &mut self.len)
            .flags(libc::SOCK_CLOEXEC)
            .build()
    }

    fn complete(self, cqe: Cqe) -> Self::Output {
        // SAFETY: a non-negative ACCEPT result is a new fd that we now own; wrapping it first
        // means it is closed even if the address below is unusable.
        let fd = unsafe { OwnedFd::from_raw_fd(cqe.result()? as i32) };
        // SAFETY: the kernel wrote a valid address of `len` bytes into `storage`.
        let addr = unsafe { SockAddr::new(self.storage, self.len) };
        Ok((fd, addr))
    }
}

pub(crate) struct Connect {
    pub(crate) fd: SharedFd,
    pub(crate) addr: SockAddr,
}

// SAFETY: the SQE points at `addr`, a field of the boxed op (I1).
unsafe impl OpCode for Connect {
    const CODE: u8 = opcode::Connect::CODE;
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Connect::new(
            types::Fd(self.fd.as_raw_fd()),
            self.addr.as_ptr().cast(),
            self.addr.len(),
        )
        .build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<()> {
        cqe.result().map(drop)
    }
}

pub(crate) struct Recv<B> {
    pub(crate) fd: SharedFd,
    pub(crate) buf: B,
    /// The stream's stash, for a read that must not lose bytes if dropped (net/stash.rs);
    /// `None` for datagram sockets.
    stash: Option<Rc<ReadStash>>,
    /// Whether this op is counted in the stash's reads in flight.
    counted: bool,
}

impl<B> Recv<B> {
    /// A receive whose bytes are lost if its future is dropped (datagrams).
    pub(crate) fn new(fd: SharedFd, buf: B) -> Recv<B> {
        Recv {
            fd,
            buf,
            stash: None,
            counted: false,
        }
    }

    /// A stream read whose bytes go to `stash` if its future is dropped.
    pub(crate) fn kept(fd: SharedFd, buf: B, stash: Rc<ReadStash>) -> Recv<B> {
        Recv {
            fd,
            buf,
            stash: Some(stash),
            counted: false,
        }
    }

    fn end(&mut self, abandoned: &[u8]) {
        if let (Some(stash), true) = (&self.stash, self.counted) {
            self.counted = false;
            stash.end(abandoned);
        }
    }
}

// SAFETY: the SQE points into `buf`'s spare capacity, stable heap storage the op owns.
unsafe impl<B: IoBufMut> OpCode for Recv<B> {
    const CODE: u8 = opcode::Recv::CODE;
    type Output = (io::Result<usize>, B);

    fn sqe(&mut self) -> squeue::Entry {
        if let (Some(stash), false) = (&self.stash, self.counted) {
            self.counted = true;
            stash.begin();
        }
        let (ptr, len) = spare_of(&mut self.buf);
        opcode::Recv::new(types::Fd(self.fd.as_raw_fd()), ptr, len).build()
    }

    fn complete(mut self, cqe: Cqe) -> Self::Output {
        self.end(&[]);
        let res = fill_from_cqe(&mut self.buf, &cqe);
        (res, self.buf)
    }

    fn abandoned(mut self, cqe: Cqe) {
        // Nobody will see this read's result: its bytes go to the stream's next read.
        let n = fill_from_cqe(&mut self.buf, &cqe).unwrap_or(0);
        if let (Some(stash), true) = (self.stash.take(), self.counted) {
            stash.end(last_filled(&self.buf, n));
        }
    }
}

pub(crate) struct Send<B> {
    pub(crate) fd: SharedFd,
    pub(crate) buf: B,
    /// Offset into the initialised bytes where this send starts.
    pub(crate) pos: usize,
}

// SAFETY: the SQE points into `buf`'s initialised bytes, stable storage the op owns.
unsafe impl<B: IoBuf> OpCode for Send<B> {
    const CODE: u8 = opcode::Send::CODE;
    type Output = (io::Result<usize>, B);

    fn sqe(&mut self) -> squeue::Entry {
        let (ptr, len) = init_from(&self.buf, self.pos);
        // MSG_NOSIGNAL: a peer that went away is an EPIPE for this connection, not a SIGPIPE
        // that kills the process.
        opcode::Send::new(types::Fd(self.fd.as_raw_fd()), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
    }

    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.bytes(), self.buf)
    }
}

/// Multishot ACCEPT (Linux 5.19): one CQE per accepted connection.
pub(crate) struct AcceptMulti {
    pub(crate) fd: SharedFd,
}

// SAFETY: the SQE carries no pointers (no peer address is asked for).
unsafe impl MultishotCode for AcceptMulti {
    const CODE: u8 = opcode::AcceptMulti::CODE;
    type Item = io::Result<OwnedFd>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::AcceptMulti::new(types::Fd(self.fd.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
    }

    fn item(&mut self, cqe: Cqe) -> io::Result<OwnedFd> {
        // SAFETY: a non-negative ACCEPT result is a new fd that we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(cqe.result()? as i32) })
    }
}

/// Multishot RECV over a provided-buffer ring (Linux 6.0): one CQE per arrival of bytes, each
/// with a buffer the kernel picked from `ring`.
pub(crate) struct RecvMulti {
    pub(crate) fd: SharedFd,
    pub(crate) ring: BufRing,
}

// SAFETY: the SQE names a buffer group, not memory; the ring's memory outlives the op, which
// holds a handle to it (buf/ring.rs R1).
unsafe impl MultishotCode for RecvMulti {
    const CODE: u8 = opcode::RecvMulti::CODE;
    /// `Ok(None)` is EOF.
    type Item = io::Result<Option<RingBuf>>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::RecvMulti::new(types::Fd(self.fd.as_raw_fd()), self.ring.group()).build()
    }

    fn item(&mut self, cqe: Cqe) -> Self::Item {
        // Take the buffer first, whatever the result, so it always goes back to the ring (R2).
        let taken = cqe.buffer_id().map(|bid| {
            let len = cqe.bytes().unwrap_or(0);
            self.ring.take(bid, len)
        });
        let n = cqe.bytes()?;
        match taken {
            Some(buf) => Ok(Some(buf)),
            None if n == 0 => Ok(None),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "receive completed without a provided buffer",
            )),
        }
    }
}

/// SEND_ZC (Linux 6.0): a send from `buf` without copying it into the kernel. The first CQE
/// carries the result; a second, the notification (`IORING_CQE_F_NOTIF`), says the kernel no
/// longer reads `buf`. The op (and `buf`) lives until that one.
pub(crate) struct SendZc<B> {
    pub(crate) fd: SharedFd,
    pub(crate) buf: B,
    pub(crate) pos: usize,
}

// SAFETY: the SQE points into `buf`'s initialised bytes, stable storage owned by the op until
// the final (notification) CQE.
unsafe impl<B: IoBuf> MultishotCode for SendZc<B> {
    const CODE: u8 = opcode::SendZc::CODE;
    type Item = Cqe;

    fn sqe(&mut self) -> squeue::Entry {
        let (ptr, len) = init_from(&self.buf, self.pos);
        opcode::SendZc::new(types::Fd(self.fd.as_raw_fd()), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
    }

    fn item(&mut self, cqe: Cqe) -> Cqe {
        cqe
    }
}

/// Waits until the fd is ready for `events` (`POLLIN`, `POLLOUT`), once: the readiness path of
/// the compat streams. Output: the ready events.
pub(crate) struct PollAdd {
    pub(crate) fd: SharedFd,
    pub(crate) events: u32,
}

// SAFETY: the SQE holds no pointer; the fd stays open through `fd`, owned by the op (I1).
unsafe impl OpCode for PollAdd {
    const CODE: u8 = opcode::PollAdd::CODE;
    type Output = io::Result<u32>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(self.fd.as_raw_fd()), self.events).build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<u32> {
        cqe.result()
    }
}

/// Multishot POLL_ADD (`IORING_POLL_ADD_MULTI`): a CQE each time the fd becomes ready for
/// `events`, armed once for as long as the op lives. The compat streams' read side waits on it,
/// so a connection's read readiness costs no SQE per wait.
pub(crate) struct PollMulti {
    pub(crate) fd: SharedFd,
    pub(crate) events: u32,
}

// SAFETY: the SQE holds no pointer; the fd stays open through `fd`, owned by the op (I1).
unsafe impl MultishotCode for PollMulti {
    const CODE: u8 = opcode::PollAdd::CODE;
    type Item = io::Result<u32>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(self.fd.as_raw_fd()), self.events)
            .multi(true)
            .build()
    }

    fn item(&mut self, cqe: Cqe) -> io::Result<u32> {
        cqe.result()
    }
}
