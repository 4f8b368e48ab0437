//! `File`: an open file whose reads, writes, syncs and close are io_uring ops, each at an
//! explicit position (`pos: u64`, bytes from the start of the file); there is no cursor.
//!
//! The fd is shared (`Rc<OwnedFd>`) with the ops in flight on it, so an op whose future was
//! dropped keeps the fd open until its CQE: its number is never reused under it. Closing,
//! explicit or on drop, goes through the ring when the `File` holds the last reference.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

use corio_rt::{submit_detached, Op};

use super::{Metadata, OpenOptions};
use crate::buf::{IoBuf, IoBufMut};
use crate::op::fs::{Close, Fallocate, Fsync, Statx};
use crate::op::net::SharedFd;
use crate::op::rw::{ReadAt, Readv, WriteAt, Writev};

/// Why `File::fd` is never `None` while a method runs.
const FD_HELD: &str = "a File holds its fd until close or drop";

/// An open file. I/O takes owned buffers and gives them back, at explicit positions.
///
/// Dropping a `File` closes it: through the ring (`IORING_OP_CLOSE`, not waited for) on a
/// corio core, with `close(2)` elsewhere, and only once no op in flight still uses the fd.
/// [`close`](File::close) does the same and reports the result. A `File` is `!Send`: it belongs
/// to the core that opened it, like its ops.
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<corio::fs::File>();
/// ```
///
/// # Examples
/// ```no_run
/// use corio::fs::File;
/// # corio::block_on(async {
/// let file = File::create("greeting.txt").await?;
/// let (res, _) = file.write_all_at(b"hello".to_vec(), 0).await;
/// res?;
/// file.sync_all().await?;
/// file.close().await?;
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
///
/// A `File` is `!Send`: it belongs to the core that opened it.
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<corio::fs::File>();
/// ```
#[derive(Debug)]
pub struct File {
    /// `None` only once `close` or `drop` has taken it.
    fd: Option<SharedFd>,
}

impl File {
    pub(crate) fn from_shared(fd: SharedFd) -> File {
        File { fd: Some(fd) }
    }

    pub(crate) fn fd(&self) -> &SharedFd {
        self.fd.as_ref().expect(FD_HELD)
    }

    /// Opens `path` read-only.
    ///
    /// # Errors
    /// As [`OpenOptions::open`], e.g. `NotFound`.
    ///
    /// # Cancellation
    /// Dropping the future cancels the open; a file opened in the meantime is closed.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens `path` write-only, creating it (mode `0o666` before the umask) or truncating it.
    ///
    /// # Errors
    /// As [`OpenOptions::open`], e.g. `NotFound` for a missing parent directory.
    ///
    /// # Cancellation
    /// Dropping the future cancels the open; a file opened in the meantime is closed.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        options.open(path).await
    }

    /// Reads into the spare capacity of `buf` (from its initialised length up to its
    /// capacity), starting `pos` bytes into the file.
    ///
    /// Returns the byte count and `buf`, grown by that count; `Ok(0)` means `pos` is at or past
    /// EOF. A read may be short; see [`read_exact_at`](File::read_exact_at).
    ///
    /// # Errors
    /// `pread(2)`'s errors, e.g. `InvalidInput` (`EINVAL`) for a buffer not aligned for
    /// `O_DIRECT`; `InvalidInput` if `buf` has no spare capacity (a zero-length read would look
    /// like EOF).
    ///
    /// # Cancellation
    /// Cancel-safe: a positional read consumes nothing, so a dropped one loses no data (read
    /// the same range again); `buf` is freed once the kernel releases it.
    ///
    /// # Examples
    /// ```no_run
    /// # corio::block_on(async {
    /// let file = corio::fs::File::open("log.bin").await?;
    /// let (n, buf) = file.read_at(Vec::with_capacity(8192), 0).await;
    /// assert_eq!(buf.len(), n?);
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub async fn read_at<B: IoBufMut>(&self, buf: B, pos: u64) -> (io::Result<usize>, B) {
        if buf.bytes_init() == buf.bytes_total() {
            return (Err(no_spare_capacity()), buf);
        }
        let fd = self.fd().clone();
        Op::new(ReadAt { fd, buf, pos }).await
    }

    /// Reads into the spare capacity of `buf` at the file's own position, and advances it, as
    /// `read(2)` does (io_uring offset -1). This is the read for files that are streams: pipes,
    /// FIFOs, terminals, character devices, sockets given as files, and generated files
    /// (`/proc`, `/sys`) whose size says nothing. On a regular file it reads from the cursor
    /// that the previous `read`/`write` left (positional reads and writes do not move it).
    ///
    /// Returns the byte count and `buf`; `Ok(0)` is EOF (the writer closed a pipe, Ctrl-D on a
    /// terminal).
    ///
    /// # Errors
    /// `read(2)`'s errors, e.g. `IsADirectory`; `InvalidInput` if `buf` has no spare capacity.
    ///
    /// # Cancellation
    /// Not cancel-safe on a stream: a read dropped after its bytes arrived consumed them (a
    /// pipe has no way to give them back). Await it to the end.
    ///
    /// # Examples
    /// Copy stdin (a pipe, a terminal, a file) to a vector:
    /// ```no_run
    /// use std::os::fd::AsFd;
    /// # corio::block_on(async {
    /// let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
    /// let input = corio::fs::File::from_std(stdin.into());
    /// let mut all = Vec::new();
    /// loop {
    ///     let (n, buf) = input.read(Vec::with_capacity(64 * 1024)).await;
    ///     if n? == 0 {
    ///         break;
    ///     }
    ///     all.extend_from_slice(&buf);
    /// }
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        if buf.bytes_init() == buf.bytes_total() {
            return (Err(no_spare_capacity()), buf);
        }
        // Offset -1: "the file position", for files and for fds that have none.
        let fd = self.fd().clone();
        Op::new(ReadAt {
            fd,
            buf,
            pos: u64::MAX,
        })
        .await
    }

    /// Writes some of `buf`'s initialised bytes at the file's own position and advances it, as
    /// `write(2)` does (appending on a file opened with `append`); returns how many, and `buf`.
    /// For pipes, terminals and the like; see [`read`](Self::read).
    ///
    /// # Errors
    /// `write(2)`'s errors, e.g. `BrokenPipe` when a pipe's reader has gone.
    ///
    /// # Cancellation
    /// Dropping the future cancels the write if it has not started; some bytes may have been
    /// written.
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        let fd = self.fd().clone();
        Op::new(WriteAt {
            fd,
            buf,
            buf_pos: 0,
            pos: u64::MAX,
        })
        .await
    }

    /// Writes all of `buf`'s initialised bytes at the file's own position, however many writes
    /// it takes.
    ///
    /// # Errors
    /// The first write error; `WriteZero` if a write accepts nothing.
    ///
    /// # Cancellation
    /// Dropping the future cancels the write in flight; a prefix may have been written.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        let mut op = WriteAt {
            fd: self.fd().clone(),
            buf,
            buf_pos: 0,
            pos: u64::MAX,
        };
        while op.buf_pos < op.buf.bytes_init() {
            let buf_pos = op.buf_pos;
            let fd = op.fd.clone();
            let (res, buf) = Op::new(op).await;
            op = WriteAt {
                fd,
                buf,
                buf_pos,
                pos: u64::MAX,
            };
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), op.buf),
                Ok(n) => op.buf_pos += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), op.buf),
            }
        }
        (Ok(()), op.buf)
    }

    /// Adopts a file opened elsewhere: `std::fs::File`, or any fd turned into one (stdin,
    /// a pipe end, an inherited fd), e.g. `File::from_std(owned_fd.into())`.
    pub fn from_std(file: std::fs::File) -> File {
        File::from_shared(Rc::new(std::os::fd::OwnedFd::from(file)))
    }

    /// Fills the spare capacity of `buf` completely, from `pos` bytes into the file, however
    /// many reads it takes.
    ///
    /// # Errors
    /// `UnexpectedEof` if the file ends first (`buf` then holds the bytes read up to EOF);
    /// otherwise the first read error. `buf` comes back in every case.
    ///
    /// # Cancellation
    /// Dropping the future cancels the read in flight; `buf` is freed once the kernel releases
    /// it.
    ///
    /// # Examples
    /// ```no_run
    /// # corio::block_on(async {
    /// let file = corio::fs::File::open("records.bin").await?;
    /// // The 512-byte record at index 3.
    /// let (res, record) = file.read_exact_at(Vec::with_capacity(512), 3 * 512).await;
    /// match res {
    ///     Ok(()) => assert_eq!(record.len(), 512),
    ///     Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => println!("truncated"),
    ///     Err(e) => return Err(e),
    /// }
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub async fn read_exact_at<B: IoBufMut>(&self, buf: B, pos: u64) -> (io::Result<()>, B) {
        let mut buf = buf;
        let start = buf.bytes_init();
        while buf.bytes_init() < buf.bytes_total() {
            let at = pos + (buf.bytes_init() - start) as u64;
            let (res, back) = self.read_at(buf, at).await;
            buf = back;
            match res {
                Ok(0) => return (Err(unexpected_eof()), buf),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Writes some of `buf`'s initialised bytes at `pos` bytes into the file; returns how many,
    /// and `buf`.
    ///
    /// # Errors
    /// `pwrite(2)`'s errors, e.g. `StorageFull` (`ENOSPC`), or `InvalidInput` for a buffer not
    /// aligned for `O_DIRECT`.
    ///
    /// # Cancellation
    /// Dropping the future cancels the write; some bytes may have been written.
    pub async fn write_at<B: IoBuf>(&self, buf: B, pos: u64) -> (io::Result<usize>, B) {
        self.write_from(buf, 0, pos).await
    }

    /// Writes all of `buf`'s initialised bytes at `pos` bytes into the file, however many
    /// writes it takes.
    ///
    /// # Errors
    /// The first write error; `WriteZero` if the kernel accepts nothing.
    ///
    /// # Cancellation
    /// Dropping the future cancels the write in flight; a prefix of `buf` may have been written.
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, pos: u64) -> (io::Result<()>, B) {
        let mut buf = buf;
        let mut done = 0;
        while done < buf.bytes_init() {
            let (res, back) = self.write_from(buf, done, pos + done as u64).await;
            buf = back;
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), buf),
            }
        }
        (Ok(()), buf)
    }

    async fn write_from<B: IoBuf>(
        &self,
        buf: B,
        buf_pos: usize,
        pos: u64,
    ) -> (io::Result<usize>, B) {
        let fd = self.fd().clone();
        Op::new(WriteAt {
            fd,
            buf,
            buf_pos,
            pos,
        })
        .await
    }

    /// Reads into the spare capacity of each buffer in turn (`preadv(2)`), starting `pos` bytes
    /// into the file; returns the total byte count and the buffers, each grown by its share.
    ///
    /// # Errors
    /// `preadv(2)`'s errors, e.g. `InvalidInput` for more than 1024 buffers (`IOV_MAX`).
    ///
    /// # Cancellation
    /// Cancel-safe: positional reads consume nothing, so a dropped one loses no data; the
    /// buffers are freed once the kernel releases them.
    ///
    /// # Examples
    /// ```no_run
    /// # corio::block_on(async {
    /// let file = corio::fs::File::open("packet.bin").await?;
    /// let bufs = vec![Vec::with_capacity(16), Vec::with_capacity(4096)]; // header, body
    /// let (n, bufs) = file.readv_at(bufs, 0).await;
    /// assert_eq!(bufs[0].len() + bufs[1].len(), n?);
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub async fn readv_at<B: IoBufMut>(
        &self,
        bufs: Vec<B>,
        pos: u64,
    ) -> (io::Result<usize>, Vec<B>) {
        Op::new(Readv::new(self.fd().clone(), bufs, pos)).await
    }

    /// Writes the initialised bytes of each buffer in turn (`pwritev(2)`) at `pos` bytes into
    /// the file; returns the total byte count, which may be short, and the buffers.
    ///
    /// # Errors
    /// `pwritev(2)`'s errors, e.g. `InvalidInput` for more than 1024 buffers (`IOV_MAX`).
    ///
    /// # Cancellation
    /// Dropping the future cancels the write; some bytes may have been written.
    ///
    /// # Examples
    /// ```no_run
    /// # corio::block_on(async {
    /// let file = corio::fs::File::create("parts.txt").await?;
    /// let parts: Vec<&'static [u8]> = vec![b"head ", b"body"];
    /// let (n, _) = file.writev_at(parts, 0).await;
    /// assert_eq!(n?, 9);
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub async fn writev_at<B: IoBuf>(&self, bufs: Vec<B>, pos: u64) -> (io::Result<usize>, Vec<B>) {
        Op::new(Writev::new(self.fd().clone(), bufs, pos)).await
    }

    /// Flushes the file's data and metadata to the device (`fsync(2)`).
    ///
    /// # Errors
    /// `fsync(2)`'s errors, e.g. `EIO` for a failed write-back.
    ///
    /// # Cancellation
    /// Dropping the future cancels the sync if it has not started; the data may or may not be
    /// on the device.
    pub async fn sync_all(&self) -> io::Result<()> {
        let fd = self.fd().clone();
        Op::new(Fsync {
            fd,
            data_only: false,
        })
        .await
    }

    /// Flushes the file's data, and only the metadata needed to read it back (`fdatasync(2)`).
    ///
    /// # Errors
    /// As [`sync_all`](File::sync_all).
    ///
    /// # Cancellation
    /// As [`sync_all`](File::sync_all).
    pub async fn sync_data(&self) -> io::Result<()> {
        let fd = self.fd().clone();
        Op::new(Fsync {
            fd,
            data_only: true,
        })
        .await
    }

    /// Allocates disk space for bytes `pos..pos + len` of the file (`fallocate(2)` with mode
    /// 0), growing the file size if that range ends past it.
    ///
    /// # Errors
    /// `fallocate(2)`'s errors, e.g. `StorageFull`, or `Unsupported` (`EOPNOTSUPP`) on a
    /// filesystem without it.
    ///
    /// # Cancellation
    /// Dropping the future cancels the call if it has not started; the space may or may not
    /// be allocated.
    pub async fn fallocate(&self, pos: u64, len: u64) -> io::Result<()> {
        let fd = self.fd().clone();
        Op::new(Fallocate {
            fd,
            pos,
            len,
            mode: 0,
        })
        .await
    }

    /// The file's metadata, from `statx(2)` on the open fd.
    ///
    /// # Errors
    /// `statx(2)`'s errors; `Unsupported` (`EOPNOTSUPP`) on a kernel without IORING_OP_STATX
    /// (before 5.6), for which there is no fallback.
    ///
    /// # Cancellation
    /// Dropping the future cancels the call; nothing is lost.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let statx = Op::new(Statx::new(self.fd().clone())).await?;
        Ok(Metadata::from_statx(&statx))
    }

    /// Closes the file through the ring and reports the result, which dropping cannot.
    ///
    /// If a dropped op is still in flight on the fd, the fd closes when that op finishes
    /// instead, and this returns `Ok(())` at once.
    ///
    /// # Errors
    /// `close(2)`'s errors, e.g. `EIO` from a write-back that failed late (NFS).
    ///
    /// # Cancellation
    /// Dropping the future still closes the fd, through the ring or with `close(2)`.
    pub async fn close(mut self) -> io::Result<()> {
        let fd = self.fd.take().expect(FD_HELD);
        match Rc::try_unwrap(fd) {
            Ok(fd) => Op::new(Close::new(fd)).await,
            // An orphaned op holds the last reference; the fd closes when it lets go.
            Err(_shared) => Ok(()),
        }
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        // Not the last reference: an orphaned op closes the fd when it lets go of it.
        let Ok(fd) = Rc::try_unwrap(fd) else { return };
        if let Err(unsubmitted) = submit_detached(Close::new(fd)) {
            // No core here, or no CLOSE opcode: dropping the op closes its fd with close(2).
            drop(unsubmitted);
        }
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd().as_raw_fd()
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd().as_fd()
    }
}

fn no_spare_capacity() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "read buffer has no spare capacity",
    )
}

fn unexpected_eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file ended before the buffer was filled",
    )
}
