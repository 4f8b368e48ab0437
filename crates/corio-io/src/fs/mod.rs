//! Files and directories on the ring: [`File`] (positional reads and writes, vectored I/O,
//! syncs, `statx` metadata), [`OpenOptions`], and std-like helpers ([`read`], [`write()`],
//! [`rename`], ...) that run as io_uring ops, never blocking the core's thread.
//!
//! Paths resolve as std's do (relative ones against the current directory); a path holding a
//! NUL byte is an `InvalidInput` error. Each call is one op (or a loop of them) from the
//! crate's `op::fs`, which owns its path and buffers until the kernel is done with them.
//!
//! # Kernel support
//! OPENAT, CLOSE, STATX and FALLOCATE need Linux 5.6, RENAMEAT and UNLINKAT 5.11, MKDIRAT
//! 5.15. On an older kernel the ring's probe lacks the opcode and the call fails with
//! `Unsupported` (`EOPNOTSUPP`); there is no blocking fallback, except that a dropped [`File`]
//! is closed with `close(2)`.

mod file;
mod fixed;
mod metadata;
mod options;

use std::io;
use std::path::Path;

use corio_rt::Op;

pub use file::File;
pub use metadata::Metadata;
pub use options::OpenOptions;

use crate::buf::IoBuf;
use crate::error::context;
use crate::op::fs::{MkDirAt, RenameAt, UnlinkAt};

/// How much `read` asks for at a time once the file outgrows the size statx gave.
const READ_GROWTH: usize = 64 * 1024;

/// Reads the whole file at `path` into a new `Vec`.
///
/// The size from `statx` sizes the buffer; reading goes on until a read returns 0 (EOF), so a
/// file that grows meanwhile, or reports size 0 (`/proc`), is read whole.
///
/// # Errors
/// `NotFound` and the other open errors; read errors; `OutOfMemory` if the reported size cannot
/// be allocated.
///
/// # Cancellation
/// Dropping the future cancels the op in flight and closes the file.
///
/// # Examples
/// ```no_run
/// # corio::block_on(async {
/// let config = corio::fs::read("app.toml").await?;
/// println!("{} bytes", config.len());
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let file = File::open(path).await?;
    let size = usize::try_from(file.metadata().await?.len()).unwrap_or(usize::MAX);
    let mut buf = Vec::new();
    // One spare byte, so the read that finds EOF needs no reallocation.
    reserve(&mut buf, size.saturating_add(1))?;
    loop {
        if buf.len() == buf.capacity() {
            reserve(&mut buf, READ_GROWTH)?;
        }
        let pos = buf.len() as u64;
        let (res, back) = file.read_at(buf, pos).await;
        buf = back;
        match res {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    file.close().await?;
    Ok(buf)
}

fn reserve(buf: &mut Vec<u8>, more: usize) -> io::Result<()> {
    buf.try_reserve_exact(more)
        .map_err(|err| io::Error::new(io::ErrorKind::OutOfMemory, err))
}

/// Writes `data`'s initialised bytes to `path`, creating the file or truncating it first.
///
/// `data` is any owned buffer (`Vec<u8>`, `&'static [u8]`, ...) and is dropped afterwards.
/// The data is not synced to the device; open a [`File`] and call
/// [`sync_all`](File::sync_all) for that.
///
/// # Errors
/// Open, write and close errors, e.g. `NotFound` for a missing parent directory.
///
/// # Cancellation
/// Dropping the future cancels the op in flight and closes the file; a prefix of `data` may
/// have been written.
///
/// # Examples
/// ```no_run
/// # corio::block_on(async {
/// corio::fs::write("hello.txt", b"hello\n".as_slice()).await?;
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub async fn write<B: IoBuf>(path: impl AsRef<Path>, data: B) -> io::Result<()> {
    let file = File::create(path).await?;
    let (res, _data) = file.write_all_at(data, 0).await;
    res?;
    file.close().await
}

/// Removes the file (or symlink) at `path` (`unlink(2)`).
///
/// # Errors
/// `unlinkat(2)`'s errors, e.g. `NotFound`, or `IsADirectory` for a directory.
///
/// # Cancellation
/// Dropping the future cancels the call if it has not started; the file may or may not be gone.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    let removed = async { Op::new(UnlinkAt::new(path, false)?).await };
    removed
        .await
        .map_err(|err| context(err, format_args!("remove {}", path.display())))
}

/// Removes the empty directory at `path` (`rmdir(2)`).
///
/// # Errors
/// `unlinkat(2)`'s errors, e.g. `NotFound`, or `DirectoryNotEmpty`.
///
/// # Cancellation
/// Dropping the future cancels the call if it has not started; the directory may or may not be
/// gone.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    let removed = async { Op::new(UnlinkAt::new(path, true)?).await };
    removed
        .await
        .map_err(|err| context(err, format_args!("remove directory {}", path.display())))
}

/// Renames `from` to `to`, replacing `to` if it exists (`rename(2)`).
///
/// # Errors
/// `renameat2(2)`'s errors, e.g. `NotFound`, or `CrossesDevices` (`EXDEV`) across filesystems.
///
/// # Cancellation
/// Dropping the future cancels the call if it has not started; the rename may or may not have
/// happened.
///
/// # Examples
/// ```no_run
/// # corio::block_on(async {
/// corio::fs::write("state.tmp", b"v2".as_slice()).await?;
/// corio::fs::rename("state.tmp", "state").await?;
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    let renamed = async { Op::new(RenameAt::new(from, to)?).await };
    renamed.await.map_err(|err| {
        context(
            err,
            format_args!("rename {} to {}", from.display(), to.display()),
        )
    })
}

/// Creates the directory `path` with mode `0o777` before the umask (`mkdir(2)`); its parent
/// must exist.
///
/// # Errors
/// `mkdirat(2)`'s errors, e.g. `AlreadyExists`, or `NotFound` for a missing parent.
///
/// # Cancellation
/// Dropping the future cancels the call if it has not started; the directory may or may not
/// exist.
///
/// # Examples
/// ```no_run
/// use corio::io::fs;
/// # corio::block_on(async {
/// fs::create_dir("spool").await?;
/// fs::write("spool/job", b"run".as_slice()).await?;
/// fs::remove_file("spool/job").await?;
/// fs::remove_dir("spool").await?;
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    let made = async { Op::new(MkDirAt::new(path, 0o777)?).await };
    made.await
        .map_err(|err| context(err, format_args!("create directory {}", path.display())))
}
