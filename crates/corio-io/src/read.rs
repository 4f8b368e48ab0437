//! [`OwnedRead`]: one trait over every source corio reads with owned buffers (TCP and Unix
//! streams, files at their position), and the helpers built on it: [`read_exact`] and
//! [`read_to_end`]. [`BufReader`](crate::BufReader) adds lines on top.
//!
//! [`read_exact`]: OwnedRead::read_exact
//! [`read_to_end`]: OwnedRead::read_to_end

use std::io;

use crate::buf::IoBufMut;
use crate::fs::File;
use crate::net::{TcpStream, UnixStream};

/// A source of bytes read with owned buffers: `read(buf)` fills `buf`'s spare capacity and
/// gives it back with the count, `Ok(0)` at EOF.
///
/// Implemented for [`TcpStream`], [`UnixStream`] (cancel-safe reads) and [`File`] (reads at the
/// file's position, as `read(2)`: pipes, terminals, `/proc`), and for references to them.
///
/// # Examples
/// ```no_run
/// use corio::io::OwnedRead;
/// # corio::block_on(async {
/// let stream = corio::net::TcpStream::connect("127.0.0.1:7000").await?;
/// // A 4-byte length, then that many bytes.
/// let (res, header) = stream.read_exact(Vec::with_capacity(4)).await;
/// res?;
/// let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
/// let (res, body) = stream.read_exact(Vec::with_capacity(len)).await;
/// res?;
/// assert_eq!(body.len(), len);
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
#[allow(async_fn_in_trait)] // corio's futures are !Send by design: they stay on their core.
pub trait OwnedRead {
    /// Reads into the spare capacity of `buf` (from its initialised length to its capacity);
    /// the count and `buf`, grown by it. `Ok(0)` is EOF.
    ///
    /// # Errors
    /// The source's read errors; `InvalidInput` if `buf` has no spare capacity.
    async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B);

    /// Fills `buf`'s spare capacity completely (up to `bytes_total`), however many reads it
    /// takes: `Vec::with_capacity(n)` comes back with exactly `n` bytes (`with_capacity` may
    /// give more capacity than asked; use [`IoBuf::slice`](crate::buf::IoBuf::slice) for an
    /// exact window).
    ///
    /// # Errors
    /// `UnexpectedEof` if the source ends first (`buf` holds what was read); the first read
    /// error otherwise. `buf` comes back in every case.
    ///
    /// # Cancellation
    /// Dropping it mid-way loses the bytes already read into `buf` (on a socket, bytes of the
    /// read in flight are kept for the next read).
    async fn read_exact<B: IoBufMut>(&self, mut buf: B) -> (io::Result<()>, B) {
        while buf.bytes_init() < buf.bytes_total() {
            let (res, back) = self.read(buf).await;
            buf = back;
            match res {
                Ok(0) => {
                    let err = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the source ended before the buffer was full",
                    );
                    return (Err(err), buf);
                }
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Reads until EOF, appending to `buf` and growing it as needed (doubling, from at least
    /// 8 KiB); the count read, and `buf`.
    ///
    /// # Errors
    /// The first read error (`buf` holds what was read before it); `OutOfMemory` if `buf`
    /// cannot grow.
    ///
    /// # Examples
    /// ```no_run
    /// use corio::io::OwnedRead;
    /// # corio::block_on(async {
    /// let file = corio::fs::File::open("/proc/self/status").await?;
    /// let (res, text) = file.read_to_end(Vec::new()).await;
    /// println!("{} bytes", res?);
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    async fn read_to_end(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let start = buf.len();
        loop {
            if buf.len() == buf.capacity() {
                let more = buf.capacity().max(8 * 1024);
                if let Err(err) = buf.try_reserve(more) {
                    return (Err(io::Error::new(io::ErrorKind::OutOfMemory, err)), buf);
                }
            }
            let (res, back) = self.read(buf).await;
            buf = back;
            match res {
                Ok(0) => return (Ok(buf.len() - start), buf),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), buf),
            }
        }
    }
}

impl OwnedRead for TcpStream {
    async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        TcpStream::read(self, buf).await
    }
}

impl OwnedRead for UnixStream {
    async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        UnixStream::read(self, buf).await
    }
}

impl OwnedRead for File {
    async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        File::read(self, buf).await
    }
}

impl<R: OwnedRead + ?Sized> OwnedRead for &R {
    async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        (**self).read(buf).await
    }
}

impl<R: OwnedRead + ?Sized> OwnedRead for std::rc::Rc<R> {
    async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        (**self).read(buf).await
    }
}
