//! Streams for the poll-based ecosystem: [`Compat`] gives a TCP or Unix stream tokio's
//! `AsyncRead`/`AsyncWrite` (feature `tokio`), futures-io's (feature `futures-io`) and hyper
//! 1.x's `rt::Read`/`rt::Write` (feature `hyper`, with `HyperExecutor` and `HyperTimer`),
//! so hyper, tokio-rustls, tokio-util codecs and `BufReader`s run on corio unchanged.
//!
//! # The readiness path
//! Those traits lend the caller's buffer for one poll only, and a caller may poll again with
//! different bytes after `Pending` (h2 does), so no io_uring read or write may hold it. Each
//! poll therefore makes the non-blocking syscall itself (`recv`/`send`/`sendmsg` with
//! `MSG_DONTWAIT`) straight into or out of the caller's slice: no copy, and no op holding the
//! caller's bytes when it returns. When the socket would block, it waits for readiness: reads
//! on one multishot `IORING_OP_POLL_ADD` armed once per stream (it holds no buffer, only the
//! fd), writes on a one-shot one. After a short read the socket was empty, so the next poll
//! waits for the next readiness edge instead of making a `recv` that would say EAGAIN (as tokio
//! clears its readiness after a short read); once an edge says the peer closed or the socket
//! failed, every poll tries `recv`. A stream that always has data costs one syscall per poll,
//! as under epoll.
//!
//! Measured against hyper on tokio in the compare bench's hyper rows: see the README. One
//! limit shared with tokio: a Unix stream whose `recv` stops short at a message carrying
//! ancillary data (passed fds, credentials) with more bytes queued is taken as empty until more
//! bytes arrive.
//!
//! # Mixing with the native API
//! Bytes a dropped native `read` left in the stream's stash are returned first. Do not run a
//! native read or write on the same stream while a compat poll is pending on it: the order of
//! the bytes between the two would be undefined.

#[cfg(feature = "futures-io")]
mod futures_io;
#[cfg(feature = "hyper")]
mod hyper;
#[cfg(feature = "tokio")]
mod tokio;

#[cfg(feature = "hyper")]
pub use self::hyper::{HyperExecutor, HyperTimer};

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use corio_rt::{MultiOp, Op};
use futures_util::Stream;

use crate::net::{TcpStream, UnixStream};
use crate::op::net::{PollAdd, PollMulti};

const POLLIN: u32 = libc::POLLIN as u32;
const POLLOUT: u32 = libc::POLLOUT as u32;
const POLLRDHUP: u32 = libc::POLLRDHUP as u32;

/// Whether a readiness mask says the peer closed its side or the socket failed.
fn closing(events: u32) -> bool {
    events & (POLLRDHUP | libc::POLLHUP as u32 | libc::POLLERR as u32) != 0
}
/// Syscall attempts in one poll before it yields (readiness that keeps flapping, a wait that
/// keeps failing transiently).
const RETRIES: usize = 32;

/// A wait that failed for a reason worth retrying: an injected or racing cancel, an interrupt.
fn transient(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECANCELED | libc::EINTR | libc::EAGAIN | libc::ETIME)
    ) || err.kind() == io::ErrorKind::Interrupted
}

/// A stream a [`Compat`] can wrap: [`TcpStream`] and [`UnixStream`].
pub trait CompatStream: sealed::Sealed {}
impl CompatStream for TcpStream {}
impl CompatStream for UnixStream {}

// The trait is unnameable outside the crate, so its crate-private types never leak.
#[allow(private_interfaces)]
mod sealed {
    use crate::net::socket::Socket;

    pub trait Sealed {
        fn socket(&self) -> &Socket;
    }

    impl Sealed for crate::net::TcpStream {
        fn socket(&self) -> &Socket {
            self.socket()
        }
    }

    impl Sealed for crate::net::UnixStream {
        fn socket(&self) -> &Socket {
            self.socket()
        }
    }
}

/// A corio stream with the poll-based read and write traits of tokio, futures-io and hyper
/// (each behind its cargo feature); see the [module docs](self) for how it reads and writes.
///
/// `!Send`, like the stream: it stays on its core. hyper's connection futures are therefore
/// run with [`corio::spawn`](corio_rt::spawn) (or `HyperExecutor`), which takes `!Send`
/// futures.
///
/// # Examples
/// ```
/// # #[cfg(feature = "tokio")]
/// # corio::block_on(async {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use corio::io::compat::Compat;
/// let listener = corio::net::TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let client = corio::spawn(async move {
///     let mut stream = Compat::new(corio::net::TcpStream::connect(addr).await?);
///     stream.write_all(b"ping").await?;
///     let mut reply = [0u8; 4];
///     stream.read_exact(&mut reply).await?;
///     std::io::Result::Ok(reply)
/// });
/// let (server, _) = listener.accept().await?;
/// let mut server = Compat::new(server);
/// let mut got = [0u8; 4];
/// server.read_exact(&mut got).await?;
/// server.write_all(b"pong").await?;
/// assert_eq!(&client.await.unwrap()?, b"pong");
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
pub struct Compat<S: CompatStream> {
    stream: S,
    /// The multishot POLL_ADD for readability, armed at the first read that would block.
    readable: Option<MultiOp<PollMulti>>,
    /// The last recv came back short: the socket had no more bytes then.
    drained: bool,
    /// A readiness edge said the peer closed or the socket failed: from then on every poll
    /// tries recv (EOF and errors stay readable without new edges).
    closed: bool,
    /// The POLL_ADD armed because a write would block, if any.
    write_wait: Option<Op<PollAdd>>,
}

// With no compat feature on, only `new`, `get_ref` and `into_inner` are used.
#[cfg_attr(
    not(any(feature = "tokio", feature = "futures-io", feature = "hyper")),
    allow(dead_code)
)]
impl<S: CompatStream> Compat<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Compat<S> {
        Compat {
            stream,
            readable: None,
            drained: false,
            closed: false,
            write_wait: None,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream back (a pending readiness wait is cancelled).
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Receives into `dst` without blocking, or waits for readability and returns `Pending`.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let socket = self.stream.socket();
        // Bytes an abandoned native read took from the kernel come first, in order.
        match socket.stash.poll_take(cx.waker(), dst) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(n) if n > 0 => return Poll::Ready(Ok(n)),
            Poll::Ready(_) => {}
        }
        let fd = socket.fd.as_raw_fd();
        if self.drained {
            // The last recv came back short, so the socket was empty then: rather than a recv
            // that would say EAGAIN, wait for the next readiness edge (as tokio clears its
            // readiness after a short read).
            match self.poll_readable(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(())) => self.drained = false,
            }
        }
        for _ in 0..RETRIES {
            // SAFETY: recv(2) writes at most `dst.len()` bytes into `dst`, which is valid for
            // writes for that long; MaybeUninit<u8> has the layout of u8.
            let n =
                unsafe { libc::recv(fd, dst.as_mut_ptr().cast(), dst.len(), libc::MSG_DONTWAIT) };
            if n >= 0 {
                // Edges queued so far were for bytes this recv has taken; edges for bytes that
                // arrive later are reaped after this task yields, so none is lost.
                self.forget_read_edges();
                // A short read emptied the socket, unless the peer has closed or failed: then
                // the stream stays readable (EOF, the error) with no new edge to come.
                self.drained = n > 0 && (n as usize) < dst.len() && !self.closed;
                return Poll::Ready(Ok(n as usize));
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => {}
                io::ErrorKind::Interrupted => continue,
                _ => return Poll::Ready(Err(err)),
            }
            // Would block: wait for the next readiness edge. An edge queued before the recv
            // above only costs one more recv.
            match self.poll_readable(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(())) => {}
            }
        }
        // Readiness keeps flapping: let other tasks run, then try again.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Waits for the next readiness edge of the stream's multishot poll (armed at the first
    /// wait, re-armed if the kernel ended it). `Ready(Ok)` after an edge, a transient failure,
    /// or the op's end: time to try recv again.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = self.stream.socket();
        let readable = self.readable.get_or_insert_with(|| {
            MultiOp::new(PollMulti {
                fd: socket.fd.clone(),
                events: POLLIN | POLLRDHUP,
            })
        });
        if readable.is_ended() {
            readable.rearm();
        }
        match Pin::new(readable).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(err))) if !transient(&err) => Poll::Ready(Err(err)),
            Poll::Ready(Some(Ok(events))) => {
                self.closed |= closing(events);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    /// Drops the readiness edges queued while the stream was read without waiting, and stops
    /// them waking the task until it waits again.
    fn forget_read_edges(&mut self) {
        if let Some(readable) = &mut self.readable {
            let mut quiet = Context::from_waker(Waker::noop());
            while let Poll::Ready(Some(edge)) = Pin::new(&mut *readable).poll_next(&mut quiet) {
                self.closed |= edge.is_ok_and(closing);
            }
        }
    }

    /// Sends from `bufs` without blocking, or arms a readiness wait and returns `Pending`.
    pub(crate) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        let fd = self.stream.socket().fd.as_raw_fd();
        for _ in 0..RETRIES {
            if let Some(wait) = &mut self.write_wait {
                match Pin::new(wait).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(err)) if !transient(&err) => {
                        self.write_wait = None;
                        return Poll::Ready(Err(err));
                    }
                    // Writable, or a transient failure: try the syscall again.
                    Poll::Ready(_) => self.write_wait = None,
                }
            }
            let n = if bufs.len() == 1 {
                // SAFETY: send(2) reads `len` bytes from the slice, valid for reads.
                unsafe {
                    libc::send(
                        fd,
                        bufs[0].as_ptr().cast(),
                        bufs[0].len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                }
            } else {
                // IoSlice is ABI-compatible with iovec on Unix (std documents it).
                let iovlen = bufs.len().min(libc::UIO_MAXIOV as usize);
                // SAFETY: a zeroed msghdr is valid (null name and control, zero lengths).
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = bufs.as_ptr().cast_mut().cast();
                msg.msg_iovlen = iovlen as _;
                // SAFETY: the msghdr points at `iovlen` iovecs, each valid for reads, which
                // outlive the call; sendmsg(2) only reads them.
                unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) }
            };
            if n >= 0 {
                return Poll::Ready(Ok(n as usize));
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => {
                    // Writes block rarely (a full socket buffer): a one-shot poll, so that the
                    // ACKs of a busy stream post no CQEs nobody waits for.
                    self.write_wait = Some(Op::new(PollAdd {
                        fd: self.stream.socket().fd.clone(),
                        events: POLLOUT,
                    }));
                }
                io::ErrorKind::Interrupted => {}
                _ => return Poll::Ready(Err(err)),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Shuts the write side down (`shutdown(2)` with `SHUT_WR`): the peer reads EOF.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self.stream.socket().shutdown(Shutdown::Write) {
            // Already shut down or never connected: nothing more to send either way.
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

impl<S: CompatStream> Unpin for Compat<S> {}

impl<S: CompatStream + fmt::Debug> fmt::Debug for Compat<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compat")
            .field("stream", &self.stream)
            .field("watching_reads", &self.readable.is_some())
            .field("waiting_to_write", &self.write_wait.is_some())
            .finish()
    }
}

impl From<TcpStream> for Compat<TcpStream> {
    fn from(stream: TcpStream) -> Self {
        Compat::new(stream)
    }
}

impl From<UnixStream> for Compat<UnixStream> {
    fn from(stream: UnixStream) -> Self {
        Compat::new(stream)
    }
}
