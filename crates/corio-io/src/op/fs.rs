//! File and directory opcodes: OPENAT, FSYNC, FALLOCATE, STATX, CLOSE, UNLINKAT, RENAMEAT and
//! MKDIRAT (openat(2), fsync(2), fallocate(2), statx(2), close(2), unlinkat(2), renameat2(2),
//! mkdirat(2)). Positional reads and writes are in `rw.rs`.
//!
//! Every path is an owned `CString` inside the boxed op, so what the kernel reads stays put
//! until the final CQE (driver invariant I1). Paths are relative to the current directory
//! (`AT_FDCWD`), as std's are.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use corio_rt::{Cqe, OpCode};
use io_uring::{opcode, squeue, types};

use crate::op::net::SharedFd;

/// Paths resolve against the current directory.
const CWD: types::Fd = types::Fd(libc::AT_FDCWD);

/// `path` as the NUL-terminated string the kernel reads.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path contains a NUL byte: {}", path.display()),
        )
    })
}

pub(crate) struct OpenAt {
    path: CString,
    flags: i32,
    mode: libc::mode_t,
}

impl OpenAt {
    /// # Errors
    /// `InvalidInput` if `path` holds a NUL byte.
    pub(crate) fn new(path: &Path, flags: i32, mode: libc::mode_t) -> io::Result<OpenAt> {
        let path = c_path(path)?;
        Ok(OpenAt { path, flags, mode })
    }
}

// SAFETY: the SQE points at `path`'s heap bytes, owned by the boxed op (I1).
unsafe impl OpCode for OpenAt {
    const CODE: u8 = opcode::OpenAt::CODE;
    type Output = io::Result<OwnedFd>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::OpenAt::new(CWD, self.path.as_ptr())
            .flags(self.flags)
            .mode(self.mode)
            .build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<OwnedFd> {
        // SAFETY: a non-negative OPENAT result is a new fd nobody else owns; wrapping it at
        // once closes it even when the op was orphaned and nobody takes the output.
        Ok(unsafe { OwnedFd::from_raw_fd(cqe.result()? as i32) })
    }
}

pub(crate) struct Fsync {
    pub(crate) fd: SharedFd,
    /// `fdatasync(2)`: skip metadata not needed to read the data back.
    pub(crate) data_only: bool,
}

// SAFETY: the SQE holds no pointer.
unsafe impl OpCode for Fsync {
    const CODE: u8 = opcode::Fsync::CODE;
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        let flags = if self.data_only {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        opcode::Fsync::new(types::Fd(self.fd.as_raw_fd()))
            .flags(flags)
            .build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<()> {
        cqe.result().map(drop)
    }
}

pub(crate) struct Fallocate {
    pub(crate) fd: SharedFd,
    pub(crate) pos: u64,
    pub(crate) len: u64,
    /// `FALLOC_FL_*` bits; 0 allocates and extends the file size.
    pub(crate) mode: i32,
}

// SAFETY: the SQE holds no pointer.
unsafe impl OpCode for Fallocate {
    const CODE: u8 = opcode::Fallocate::CODE;
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Fallocate::new(types::Fd(self.fd.as_raw_fd()), self.len)
            .offset(self.pos)
            .mode(self.mode)
            .build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<()> {
        cqe.result().map(drop)
    }
}

/// `statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS)`: the metadata of an open file.
pub(crate) struct Statx {
    fd: SharedFd,
    statx: libc::statx,
}

impl Statx {
    pub(crate) fn new(fd: SharedFd) -> Statx {
        Statx {
            fd,
            // SAFETY: statx is plain integers; all-zero is a valid value.
            statx: unsafe { std::mem::zeroed() },
        }
    }
}

/// The path STATX reads with `AT_EMPTY_PATH`: static, so it never moves.
const EMPTY_PATH: &CStr = c"";

// SAFETY: the SQE points at `EMPTY_PATH` (static) and at `statx`, a field of the boxed op (I1).
unsafe impl OpCode for Statx {
    const CODE: u8 = opcode::Statx::CODE;
    type Output = io::Result<libc::statx>;

    fn sqe(&mut self) -> squeue::Entry {
        let statx = (&mut self.statx as *mut libc::statx).cast::<types::statx>();
        let fd = types::Fd(self.fd.as_raw_fd());
        opcode::Statx::new(fd, EMPTY_PATH.as_ptr(), statx)
            .flags(libc::AT_EMPTY_PATH)
            .mask(libc::STATX_BASIC_STATS)
            .build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<libc::statx> {
        cqe.result()?;
        Ok(self.statx)
    }
}

/// Closes an fd the op owns outright (no op in flight shares it).
///
/// A CQE of `-ECANCELED` (cancelled before it started) or `-EOPNOTSUPP` (the driver's answer
/// when the kernel lacks CLOSE) means the op never ran, so `complete` closes the fd with
/// close(2) instead. The kernel's own close could only post those if a filesystem's flush
/// failed with exactly that errno after the fd was released, which no in-tree filesystem does.
pub(crate) struct Close {
    fd: OwnedFd,
}

impl Close {
    pub(crate) fn new(fd: OwnedFd) -> Close {
        Close { fd }
    }
}

// SAFETY: the SQE holds no pointer.
unsafe impl OpCode for Close {
    const CODE: u8 = opcode::Close::CODE;
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Close::new(types::Fd(self.fd.as_raw_fd())).build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<()> {
        // From here on the number is ours to close or to consider closed, never both.
        let fd = self.fd.into_raw_fd();
        let res = cqe.raw_result();
        if res != -libc::ECANCELED && res != -libc::EOPNOTSUPP {
            // The kernel released the fd number whatever the result, as close(2) does.
            return cqe.result().map(drop);
        }
        // SAFETY: the op never ran, so `fd` is still open, and it came out of the OwnedFd
        // just above, so nothing else closes it.
        if unsafe { libc::close(fd) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

pub(crate) struct UnlinkAt {
    path: CString,
    dir: bool,
}

impl UnlinkAt {
    /// Removes a file, or with `dir` an empty directory.
    ///
    /// # Errors
    /// `InvalidInput` if `path` holds a NUL byte.
    pub(crate) fn new(path: &Path, dir: bool) -> io::Result<UnlinkAt> {
        Ok(UnlinkAt {
            path: c_path(path)?,
            dir,
        })
    }
}

// SAFETY: the SQE points at `path`'s heap bytes, owned by the boxed op (I1).
unsafe impl OpCode for UnlinkAt {
    const CODE: u8 = opcode::UnlinkAt::CODE;
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        let flags = if self.dir { libc::AT_REMOVEDIR } else { 0 };
        opcode::UnlinkAt::new(CWD, self.path.as_ptr())
            .flags(flags)
            .build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<()> {
        cqe.result().map(drop)
    }
}

pub(crate) struct RenameAt {
    from: CString,
    to: CString,
}

impl RenameAt {
    /// # Errors
    /// `InvalidInput` if either path holds a NUL byte.
    pub(crate) fn new(from: &Path, to: &Path) -> io::Result<RenameAt> {
        Ok(RenameAt {
            from: c_path(from)?,
            to: c_path(to)?,
        })
    }
}

// SAFETY: the SQE points at `from`'s and `to`'s heap bytes, owned by the boxed op (I1).
unsafe impl OpCode for RenameAt {
    const CODE: u8 = opcode::RenameAt::CODE;
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::RenameAt::new(CWD, self.from.as_ptr(), CWD, self.to.as_ptr()).build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<()> {
        cqe.result().map(drop)
    }
}

pub(crate) struct MkDirAt {
    path: CString,
    mode: libc::mode_t,
}

impl MkDirAt {
    /// # Errors
    /// `InvalidInput` if `path` holds a NUL byte.
    pub(crate) fn new(path: &Path, mode: libc::mode_t) -> io::Result<MkDirAt> {
        Ok(MkDirAt {
            path: c_path(path)?,
            mode,
        })
    }
}

// SAFETY: the SQE points at `path`'s heap bytes, owned by the boxed op (I1).
unsafe impl OpCode for MkDirAt {
    const CODE: u8 = opcode::MkDirAt::CODE;
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::MkDirAt::new(CWD, self.path.as_ptr())
            .mode(self.mode)
            .build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<()> {
        cqe.result().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_with_a_nul_byte_is_invalid_input() {
        let err = OpenAt::new(Path::new("a\0b"), 0, 0).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(RenameAt::new(Path::new("ok"), Path::new("\0")).is_err());
        assert_eq!(c_path(Path::new("/tmp/x")).unwrap().as_bytes(), b"/tmp/x");
    }

    #[test]
    fn a_close_that_never_ran_closes_the_fd_and_one_that_ran_does_not() {
        let open = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        // Ok means close(2) found the fd open and closed it.
        Close::new(open())
            .complete(Cqe::new(-libc::ECANCELED, 0))
            .unwrap();
        Close::new(open())
            .complete(Cqe::new(-libc::EOPNOTSUPP, 0))
            .unwrap();
        let fd = open();
        let raw = fd.as_raw_fd();
        Close::new(fd).complete(Cqe::new(0, 0)).unwrap();
        // SAFETY: no kernel closed `raw` (the CQE was made up), so it is still open and this
        // closes it once.
        let closed = unsafe { libc::close(raw) };
        assert_eq!(closed, 0, "a close that ran is not closed again");
    }
}
