//! What each opcode becomes on the epoll driver: the syscall that does the same work as the
//! kernel's io_uring op, read off the SQE, and whether it would block.
//!
//! Socket ops run with `MSG_DONTWAIT`; reads and writes of other files first try `RWF_NOWAIT`
//! (served from the page cache, or a pipe with room), and what must block runs on a blocking
//! thread (`pool.rs`). Results are the kernel's: a byte count or an fd, or `-errno`.

use std::time::Duration;

use io_uring::opcode;

use super::pool::Work;

use crate::driver::sqe::{
    Sqe, IORING_ACCEPT_MULTISHOT, IORING_FSYNC_DATASYNC, IORING_POLL_ADD_MULTI,
    IORING_RECV_MULTISHOT, IOSQE_BUFFER_SELECT,
};

/// What an SQE asks for, as the epoll driver carries it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Nop,
    /// READ, READ_FIXED (`vectored: false`) or READV; `plain`: the file has no non-blocking
    /// reads (a tty), so it is read plainly once it polls readable.
    Read {
        vectored: bool,
        plain: bool,
    },
    /// WRITE, WRITE_FIXED or WRITEV, as `Read`.
    Write {
        vectored: bool,
        plain: bool,
    },
    Recv,
    Send,
    RecvMsg,
    SendMsg,
    /// Multishot RECV from a provided-buffer group; `tcp`: a TCP socket (a short read means
    /// its receive queue is empty).
    RecvMulti {
        tcp: bool,
    },
    Accept,
    AcceptMulti,
    /// CONNECT; `started`: it returned EINPROGRESS, and writability says it finished.
    Connect {
        started: bool,
    },
    Poll,
    PollMulti,
    SendZc,
    Timeout,
    Close,
    /// A path or sync op that may block in the kernel (OPENAT, STATX, FSYNC, ...): run on a
    /// blocking thread.
    Blocking,
    Unsupported,
}

impl Kind {
    /// Reads the kind off an SQE.
    pub(crate) fn of(sqe: &Sqe) -> Kind {
        let plain = false;
        match sqe.opcode() {
            opcode::Nop::CODE => Kind::Nop,
            opcode::Read::CODE | opcode::ReadFixed::CODE => Kind::Read {
                vectored: false,
                plain,
            },
            opcode::Readv::CODE => Kind::Read {
                vectored: true,
                plain,
            },
            opcode::Write::CODE | opcode::WriteFixed::CODE => Kind::Write {
                vectored: false,
                plain,
            },
            opcode::Writev::CODE => Kind::Write {
                vectored: true,
                plain,
            },
            opcode::Recv::CODE => {
                let multi = sqe.ioprio() & IORING_RECV_MULTISHOT != 0;
                match (multi, sqe.flags() & IOSQE_BUFFER_SELECT != 0) {
                    (true, true) => Kind::RecvMulti {
                        tcp: is_tcp(sqe.fd()),
                    },
                    (false, false) => Kind::Recv,
                    _ => Kind::Unsupported,
                }
            }
            opcode::Send::CODE => Kind::Send,
            opcode::RecvMsg::CODE if sqe.ioprio() & IORING_RECV_MULTISHOT == 0 => Kind::RecvMsg,
            opcode::SendMsg::CODE => Kind::SendMsg,
            opcode::Accept::CODE if sqe.ioprio() & IORING_ACCEPT_MULTISHOT != 0 => {
                Kind::AcceptMulti
            }
            opcode::Accept::CODE => Kind::Accept,
            opcode::Connect::CODE => Kind::Connect { started: false },
            opcode::PollAdd::CODE if sqe.len() & IORING_POLL_ADD_MULTI != 0 => Kind::PollMulti,
            opcode::PollAdd::CODE => Kind::Poll,
            opcode::SendZc::CODE => Kind::SendZc,
            opcode::Timeout::CODE => Kind::Timeout,
            opcode::Close::CODE => Kind::Close,
            opcode::OpenAt::CODE
            | opcode::Statx::CODE
            | opcode::Fsync::CODE
            | opcode::Fallocate::CODE
            | opcode::UnlinkAt::CODE
            | opcode::RenameAt::CODE
            | opcode::MkDirAt::CODE => Kind::Blocking,
            _ => Kind::Unsupported,
        }
    }

    /// Whether the op posts CQEs for as long as it lives (one registration for its lifetime).
    pub(crate) fn persistent(self) -> bool {
        matches!(
            self,
            Kind::RecvMulti { .. } | Kind::AcceptMulti | Kind::PollMulti
        )
    }
}

/// Whether `fd` is a TCP socket (a stream socket of an IP family).
fn is_tcp(fd: i32) -> bool {
    let get = |opt| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one c_int into `value` and its length into `len`.
        let n = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (n == 0).then_some(value)
    };
    get(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && matches!(get(libc::SO_DOMAIN), Some(libc::AF_INET | libc::AF_INET6))
}

/// Whether `fd` was opened with O_DIRECT.
pub(crate) fn direct(fd: i32) -> bool {
    // SAFETY: fcntl with F_GETFL takes no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_DIRECT != 0
}

/// The opcodes the epoll driver carries out (the probe's answer on this driver).
pub(crate) fn supported(code: u8) -> bool {
    [
        opcode::Nop::CODE,
        opcode::Read::CODE,
        opcode::Write::CODE,
        opcode::Readv::CODE,
        opcode::Writev::CODE,
        opcode::ReadFixed::CODE,
        opcode::WriteFixed::CODE,
        opcode::Recv::CODE,
        opcode::Send::CODE,
        opcode::RecvMsg::CODE,
        opcode::SendMsg::CODE,
        opcode::Accept::CODE,
        opcode::Connect::CODE,
        opcode::PollAdd::CODE,
        opcode::SendZc::CODE,
        opcode::Timeout::CODE,
        opcode::Close::CODE,
        opcode::OpenAt::CODE,
        opcode::Statx::CODE,
        opcode::Fsync::CODE,
        opcode::Fallocate::CODE,
        opcode::UnlinkAt::CODE,
        opcode::RenameAt::CODE,
        opcode::MkDirAt::CODE,
    ]
    .contains(&code)
}

/// A syscall's return as a CQE result: the value, or `-errno`.
fn ret(n: isize) -> i32 {
    if n < 0 {
        -errno()
    } else {
        n.min(i32::MAX as isize) as i32
    }
}

pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The SQE's offset as a file offset: `u64::MAX` is -1, the current position.
fn offset(sqe: &Sqe) -> i64 {
    sqe.off() as i64
}

/// READ, READV, READ_FIXED and their writes with preadv2/pwritev2: `nowait` adds `RWF_NOWAIT`.
/// `skip` bytes were transferred already (a short non-blocking read finished on a blocking
/// thread): the transfer goes on after them, in a single-buffer op.
///
/// A stream (pipe, socket, tty) given an offset is read at its current position, as io_uring
/// does.
///
/// # Safety
/// The SQE's buffer (or iovec array and the buffers it names) must be owned by its op and live
/// until the op's CQE is posted (driver invariant I1).
pub(crate) unsafe fn rw(sqe: &Sqe, write: bool, vectored: bool, nowait: bool, skip: u32) -> i32 {
    let one = libc::iovec {
        iov_base: (sqe.addr() as usize + skip as usize) as *mut libc::c_void,
        iov_len: sqe.len().saturating_sub(skip) as usize,
    };
    let (iov, count) = if vectored {
        (sqe.addr() as *const libc::iovec, sqe.len() as i32)
    } else {
        (&one as *const libc::iovec, 1)
    };
    let mut off = offset(sqe);
    if off >= 0 {
        off += i64::from(skip);
    }
    let flags = sqe.op_flags() as i32 | if nowait { libc::RWF_NOWAIT } else { 0 };
    loop {
        // SAFETY: the iovecs point into memory the op owns (the caller's contract); `one`
        // lives on this stack for the call.
        let n = unsafe {
            if write {
                libc::pwritev2(sqe.fd(), iov, count, off, flags)
            } else {
                libc::preadv2(sqe.fd(), iov, count, off, flags)
            }
        };
        if n < 0 && errno() == libc::ESPIPE && off != -1 {
            off = -1; // a stream: no position to read at
            continue;
        }
        if n < 0 && skip > 0 {
            return skip as i32; // what was transferred before the error, as the kernel says
        }
        return ret(n).saturating_add(if n >= 0 { skip as i32 } else { 0 });
    }
}

/// RECV and SEND (`msg_flags` from the SQE, plus `MSG_DONTWAIT`).
///
/// # Safety
/// As [`rw`].
pub(crate) unsafe fn recv_send(sqe: &Sqe, send: bool) -> i32 {
    let flags = sqe.op_flags() as i32 | libc::MSG_DONTWAIT;
    let (buf, len) = (sqe.addr() as *mut libc::c_void, sqe.len() as usize);
    // SAFETY: the buffer is owned by the op (the caller's contract).
    ret(unsafe {
        if send {
            libc::send(sqe.fd(), buf, len, flags)
        } else {
            libc::recv(sqe.fd(), buf, len, flags)
        }
    })
}

/// A receive into provided buffers `(addr, len, bid)`, filled in order, without blocking.
///
/// # Safety
/// Each buffer must be valid for `len` bytes of writes.
pub(crate) unsafe fn recv_into(fd: i32, bufs: &[(u64, u32, u16)], flags: u32) -> i32 {
    let flags = flags as i32 | libc::MSG_DONTWAIT;
    if let [(addr, len, _)] = bufs {
        // SAFETY: forwarded from the caller's contract.
        return ret(unsafe { libc::recv(fd, *addr as *mut libc::c_void, *len as usize, flags) });
    }
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2];
    for (slot, (addr, len, _)) in iov.iter_mut().zip(bufs) {
        *slot = libc::iovec {
            iov_base: *addr as *mut libc::c_void,
            iov_len: *len as usize,
        };
    }
    // SAFETY: a zeroed msghdr is valid (null name and control, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = bufs.len().min(2) as _;
    // SAFETY: the iovecs on this stack name buffers valid for writes (the caller's contract).
    ret(unsafe { libc::recvmsg(fd, &mut msg, flags) })
}

/// RECVMSG and SENDMSG.
///
/// # Safety
/// The msghdr and everything it names must be owned by the op (as [`rw`]).
pub(crate) unsafe fn msg(sqe: &Sqe, send: bool) -> i32 {
    let flags = sqe.op_flags() as i32 | libc::MSG_DONTWAIT;
    let msg = sqe.addr() as *mut libc::msghdr;
    // SAFETY: the msghdr is owned by the op (the caller's contract).
    ret(unsafe {
        if send {
            libc::sendmsg(sqe.fd(), msg, flags)
        } else {
            libc::recvmsg(sqe.fd(), msg, flags)
        }
    })
}

/// ACCEPT: accept4 on a listener made non-blocking first (accept4 has no per-call flag).
///
/// # Safety
/// The SQE's address and length pointers (if not null) must be owned by the op.
pub(crate) unsafe fn accept(sqe: &Sqe, multi: bool) -> i32 {
    set_nonblocking(sqe.fd());
    let (addr, len) = if multi {
        (std::ptr::null_mut(), std::ptr::null_mut())
    } else {
        (
            sqe.addr() as *mut libc::sockaddr,
            sqe.off() as *mut libc::socklen_t,
        )
    };
    // SAFETY: null, or pointers the op owns (the caller's contract).
    ret(unsafe { libc::accept4(sqe.fd(), addr, len, sqe.op_flags() as i32) } as isize)
}

/// Makes `fd` non-blocking if it is not (for accept4 and connect, which take no flag).
fn set_nonblocking(fd: i32) -> Option<i32> {
    // SAFETY: fcntl with F_GETFL/F_SETFL takes no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || flags & libc::O_NONBLOCK != 0 {
        return None;
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    Some(flags)
}

/// CONNECT, started: the socket is made non-blocking for the call and put back as it was, so
/// the kernel goes on connecting in the background (EINPROGRESS).
///
/// # Safety
/// The sockaddr must be owned by the op.
pub(crate) unsafe fn connect(sqe: &Sqe) -> i32 {
    let restore = set_nonblocking(sqe.fd());
    // SAFETY: the sockaddr of `off` bytes is owned by the op (the caller's contract).
    let n = unsafe {
        libc::connect(
            sqe.fd(),
            sqe.addr() as *const libc::sockaddr,
            sqe.off() as libc::socklen_t,
        )
    };
    let result = ret(n as isize);
    if let Some(flags) = restore {
        // SAFETY: fcntl with F_SETFL takes no pointers.
        unsafe { libc::fcntl(sqe.fd(), libc::F_SETFL, flags) };
    }
    result
}

/// How a connect that said EINPROGRESS ended: 0 or `-errno` (`SO_ERROR`).
pub(crate) fn connect_result(fd: i32) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one c_int into `err` and its length into `len`.
    let n = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if n < 0 {
        -errno()
    } else {
        -err
    }
}

/// The events of `events` (poll bits) that `fd` has now, without waiting (0: none).
pub(crate) fn poll_now(fd: i32, events: u32) -> i32 {
    let mut pfd = libc::pollfd {
        fd,
        events: events as i16,
        revents: 0,
    };
    // SAFETY: poll reads and writes one pollfd on this stack.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n < 0 {
        -errno()
    } else {
        i32::from(pfd.revents as u16)
    }
}

/// CLOSE.
pub(crate) fn close(fd: i32) -> i32 {
    // SAFETY: the op owned `fd` and hands it over to be closed (CLOSE's contract).
    ret(unsafe { libc::close(fd) } as isize)
}

/// The path and sync ops, a CLOSE of a file, and a Unix connect that must wait, run on a
/// blocking thread.
///
/// # Safety
/// The SQE's paths and buffers must be owned by the op (as [`rw`]).
pub(crate) unsafe fn blocking(sqe: &Sqe) -> i32 {
    let (fd, addr, len, off, flags) = (sqe.fd(), sqe.addr(), sqe.len(), sqe.off(), sqe.op_flags());
    let path = addr as *const libc::c_char;
    // SAFETY: the paths and buffers named are owned by the op (the caller's contract); the
    // argument meanings are the kernel's for each opcode (io_uring_enter(2)).
    let n: isize = unsafe {
        match sqe.opcode() {
            opcode::OpenAt::CODE => {
                libc::openat(fd, path, flags as i32, len as libc::mode_t) as isize
            }
            opcode::Statx::CODE => libc::syscall(
                libc::SYS_statx,
                fd,
                path,
                flags as i32,
                len,
                off as *mut libc::statx,
            ) as isize,
            opcode::Fsync::CODE if flags & IORING_FSYNC_DATASYNC != 0 => {
                libc::fdatasync(fd) as isize
            }
            opcode::Fsync::CODE => libc::fsync(fd) as isize,
            opcode::Fallocate::CODE => {
                libc::fallocate(fd, len as i32, off as i64, addr as i64) as isize
            }
            opcode::UnlinkAt::CODE => libc::unlinkat(fd, path, flags as i32) as isize,
            opcode::RenameAt::CODE => libc::syscall(
                libc::SYS_renameat2,
                fd,
                path,
                len as i32,
                off as *const libc::c_char,
                flags,
            ) as isize,
            opcode::MkDirAt::CODE => libc::mkdirat(fd, path, len as libc::mode_t) as isize,
            // A Unix socket's connect that found the backlog full: wait for room.
            opcode::Connect::CODE => {
                libc::connect(fd, addr as *const libc::sockaddr, off as libc::socklen_t) as isize
            }
            opcode::Close::CODE => libc::close(fd) as isize,
            _ => {
                return -libc::EOPNOTSUPP;
            }
        }
    };
    ret(n)
}

/// What `fstat` says the fd is, for reads and writes that would block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A regular file, block device or directory: no readiness; block on a thread.
    Disk,
    /// A socket, pipe, FIFO, tty or other character device: wait for readiness.
    Stream,
}

pub(crate) fn file_kind(fd: i32) -> FileKind {
    // SAFETY: fstat writes one `stat` into the zeroed local.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return FileKind::Stream; // the op itself reports EBADF
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFBLK | libc::S_IFDIR => FileKind::Disk,
        _ => FileKind::Stream,
    }
}

/// A TIMEOUT's wait: the timespec at `addr`, relative or (`abs`) on `CLOCK_MONOTONIC`.
///
/// # Safety
/// `addr` must point to a `__kernel_timespec` owned by the op.
pub(crate) unsafe fn timeout(addr: u64, abs: bool) -> Duration {
    // SAFETY: the timespec (two i64s) is owned by the op (the caller's contract).
    let (sec, nsec) = unsafe {
        let ts = addr as *const [i64; 2];
        ((*ts)[0], (*ts)[1])
    };
    let wait = Duration::new(sec.max(0) as u64, nsec.clamp(0, 999_999_999) as u32);
    if !abs {
        return wait;
    }
    // SAFETY: clock_gettime writes one timespec into the zeroed local.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
    wait.saturating_sub(now)
}

/// What one try of an op came to.
pub(crate) enum Step {
    /// Finished: post this final CQE (result, flags).
    Done(i32, u32),
    /// Would block: wait for these events on the op's fd.
    Wait(u32),
    /// Blocks in the kernel however it is called: run it on a blocking thread.
    Pool(Work),
}

/// A syscall's result, or a wait for `events` if it said EAGAIN.
pub(crate) fn would_block(result: i32, events: u32) -> Step {
    if result == -libc::EAGAIN {
        Step::Wait(events)
    } else {
        Step::Done(result, 0)
    }
}
