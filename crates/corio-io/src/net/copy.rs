//! Copying between two connected sockets inside the kernel with splice(2) through a pipe, in
//! both directions at once: the inner loop of a TCP proxy with no bytes crossing into user
//! space.

use std::io;
use std::net::Shutdown;

use corio_rt::Op;
use socket2::SockRef;

use super::{TcpStream, UnixStream};
use crate::op::net::{Recv, Send, SharedFd};
use crate::op::splice::{pipe, Splice};

/// Bytes moved per splice: the default pipe capacity.
const CHUNK: u32 = 64 * 1024;

/// A connected stream socket that [`copy_bidirectional`] can splice: [`TcpStream`] and
/// [`UnixStream`]. Sealed.
pub trait Spliceable: sealed::Sealed {}

mod sealed {
    use std::os::fd::OwnedFd;
    use std::rc::Rc;

    pub trait Sealed {
        fn fd(&self) -> &Rc<OwnedFd>;
    }
}

impl sealed::Sealed for TcpStream {
    fn fd(&self) -> &SharedFd {
        &self.socket().fd
    }
}
impl Spliceable for TcpStream {}

impl sealed::Sealed for UnixStream {
    fn fd(&self) -> &SharedFd {
        &self.socket().fd
    }
}
impl Spliceable for UnixStream {}

/// Copies bytes from `a` to `b` and from `b` to `a` until both directions reach EOF; when one
/// side's input ends, the other side's output is shut down (half-close is passed on).
///
/// Returns the bytes copied `(a to b, b to a)`. The bytes move through a pipe with splice(2),
/// never through user space; on the epoll driver, which has no splice op, they go through a
/// 64 KiB buffer per direction instead.
///
/// # Errors
/// The first error of either direction (e.g. `ConnectionReset`); the other direction is
/// abandoned then.
///
/// # Cancellation
/// Dropping the future cancels both directions; bytes already in a pipe (or buffer) are lost.
///
/// # Examples
/// ```no_run
/// use corio::net::{copy_bidirectional, TcpListener, TcpStream};
/// corio::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:8080")?;
///     let (client, _) = listener.accept().await?;
///     let upstream = TcpStream::connect("127.0.0.1:80").await?;
///     let (up, down) = copy_bidirectional(&client, &upstream).await?;
///     println!("{up} bytes up, {down} bytes down");
///     std::io::Result::Ok(())
/// })?;
/// # std::io::Result::Ok(())
/// ```
pub async fn copy_bidirectional(
    a: &impl Spliceable,
    b: &impl Spliceable,
) -> io::Result<(u64, u64)> {
    let (a, b) = (a.fd(), b.fd());
    let (a_to_b, b_to_a) = corio_rt::try_join!(copy(a, b), copy(b, a))?;
    Ok((a_to_b, b_to_a))
}

/// One direction: splice `from` into a pipe and the pipe into `to`, until EOF.
async fn copy(from: &SharedFd, to: &SharedFd) -> io::Result<u64> {
    let (pipe_read, pipe_write) = pipe()?;
    let mut total = 0u64;
    loop {
        let spliced = Op::new(Splice {
            from: from.clone(),
            to: pipe_write.clone(),
            len: CHUNK,
        })
        .await;
        let n = match spliced {
            // The driver has no splice (epoll): the first splice says so before moving a byte.
            Err(err) if total == 0 && err.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                return copy_through_buffer(from, to).await;
            }
            other => other?,
        };
        if n == 0 {
            // EOF from `from`: pass the half-close on. The peer may be gone already.
            let _ = SockRef::from(&**to).shutdown(Shutdown::Write);
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            let moved = Op::new(Splice {
                from: pipe_read.clone(),
                to: to.clone(),
                len: left as u32,
            })
            .await?;
            if moved == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= moved;
        }
        total += n as u64;
    }
}

/// One direction through a buffer in user space: recv, then send until all of it is out.
async fn copy_through_buffer(from: &SharedFd, to: &SharedFd) -> io::Result<u64> {
    let mut buf = Vec::with_capacity(CHUNK as usize);
    let mut total = 0u64;
    loop {
        buf.clear();
        let (n, back) = Op::new(Recv::new(from.clone(), buf)).await;
        buf = back;
        let n = n?;
        if n == 0 {
            let _ = SockRef::from(&**to).shutdown(Shutdown::Write);
            return Ok(total);
        }
        let mut pos = 0;
        while pos < n {
            let (sent, back) = Op::new(Send {
                fd: to.clone(),
                buf,
                pos,
            })
            .await;
            buf = back;
            match sent? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                sent => pos += sent,
            }
        }
        total += n as u64;
    }
}
