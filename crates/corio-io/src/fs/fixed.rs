//! Positional file I/O through registered buffers ([`FixedBuf`]): READ_FIXED and WRITE_FIXED
//! skip pinning the buffer's pages on every op.

use std::io;

use corio_rt::Op;

use super::File;
use crate::buf::{FixedBuf, IoBuf};
use crate::op::fixed::{ReadFixed, WriteFixed};

impl File {
    /// Reads into the spare capacity of a registered buffer, starting `pos` bytes into the
    /// file; as [`read_at`](File::read_at), with `IORING_OP_READ_FIXED`.
    ///
    /// # Errors
    /// What `pread(2)` reports; `InvalidInput` if `buf` is full; `EFAULT` if `buf` belongs to a
    /// pool registered on another core.
    ///
    /// # Cancellation
    /// Dropping the future cancels the read; `buf` returns to its pool once the kernel lets go.
    ///
    /// # Examples
    /// ```no_run
    /// use corio::io::{buf::FixedBufPool, fs::File};
    /// corio::block_on(async {
    ///     let pool = FixedBufPool::new(8, 4096)?;
    ///     let file = File::open("data.bin").await?;
    ///     let (n, buf) = file.read_fixed_at(pool.get().await, 0).await;
    ///     println!("{} bytes: {:?}", n?, &buf[..]);
    ///     std::io::Result::Ok(())
    /// })?;
    /// # std::io::Result::Ok(())
    /// ```
    pub async fn read_fixed_at(&self, buf: FixedBuf, pos: u64) -> (io::Result<usize>, FixedBuf) {
        if buf.bytes_init() == buf.bytes_total() {
            let err = io::Error::new(io::ErrorKind::InvalidInput, "buffer has no spare capacity");
            return (Err(err), buf);
        }
        let fd = self.fd().clone();
        Op::new(ReadFixed { fd, buf, pos }).await
    }

    /// Writes a registered buffer's initialised bytes at `pos`; returns how many were written.
    /// As [`write_at`](File::write_at), with `IORING_OP_WRITE_FIXED`.
    ///
    /// # Errors
    /// What `pwrite(2)` reports, e.g. `ENOSPC`.
    ///
    /// # Cancellation
    /// Dropping the future cancels the write; some bytes may have been written.
    pub async fn write_fixed_at(&self, buf: FixedBuf, pos: u64) -> (io::Result<usize>, FixedBuf) {
        let fd = self.fd().clone();
        Op::new(WriteFixed { fd, buf, pos }).await
    }
}
