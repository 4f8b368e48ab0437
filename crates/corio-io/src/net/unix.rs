//! Unix-domain stream sockets: a listener bound to a path and streams connected to one, with
//! the same owned-buffer reads and writes as TCP.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

use corio_rt::Op;
use socket2::{Domain, SockAddr, Type};

use super::socket::Socket;
use super::RecvStream;
use crate::buf::{BufRing, IoBuf, IoBufMut};
use crate::op::net::{Accept, Connect, SharedFd};

/// A Unix-domain listening socket.
///
/// # Examples
/// ```
/// use corio::net::{UnixListener, UnixStream};
/// let path = std::env::temp_dir().join(format!("corio-doc-{}.sock", std::process::id()));
/// corio::block_on(async {
///     let listener = UnixListener::bind(&path)?;
///     let client = UnixStream::connect(&path).await?;
///     let server = listener.accept().await?;
///     let (res, _) = client.write_all(&b"hi"[..]).await;
///     res?;
///     let (n, buf) = server.read(Vec::with_capacity(8)).await;
///     assert_eq!(&buf[..n?], b"hi");
///     std::io::Result::Ok(())
/// })?;
/// # std::fs::remove_file(&path)?;
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug)]
pub struct UnixListener {
    fd: SharedFd,
}

impl UnixListener {
    /// Binds to `path` (which must not exist yet) and listens with a backlog of 1024.
    ///
    /// # Errors
    /// `bind(2)`'s, e.g. `AddrInUse` if the path exists; `InvalidInput` for a path too long
    /// for a socket address (about 107 bytes).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref();
        let listen = || {
            let socket = socket2::Socket::new(Domain::UNIX, Type::STREAM, None)?;
            socket.bind(&SockAddr::unix(path)?)?;
            socket.listen(1024)?;
            io::Result::Ok(socket)
        };
        let socket = listen()
            .map_err(|err| crate::error::context(err, format_args!("bind {}", path.display())))?;
        Ok(UnixListener {
            fd: Rc::new(socket.into()),
        })
    }

    /// Waits for a connection.
    ///
    /// # Errors
    /// `accept(2)`'s; the listener stays usable after one.
    ///
    /// # Cancellation
    /// Dropping the future cancels the accept; a connection accepted meanwhile is closed.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        let (fd, _peer) = Op::new(Accept::new(self.fd.clone())).await?;
        Ok(UnixStream::from_fd(Rc::new(fd)))
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A connected Unix-domain stream socket.
#[derive(Debug)]
pub struct UnixStream {
    socket: Socket,
}

impl UnixStream {
    fn from_fd(fd: SharedFd) -> UnixStream {
        UnixStream {
            socket: Socket::new(fd),
        }
    }

    /// Connects to the socket bound at `path`.
    ///
    /// # Errors
    /// `connect(2)`'s, e.g. `NotFound` or `ConnectionRefused`.
    ///
    /// # Cancellation
    /// Dropping the future cancels the connect and closes the socket.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let path = path.as_ref();
        let connected = async {
            let addr = SockAddr::unix(path)?;
            let socket = socket2::Socket::new(Domain::UNIX, Type::STREAM, None)?;
            let fd: SharedFd = Rc::new(OwnedFd::from(socket));
            Op::new(Connect {
                fd: fd.clone(),
                addr,
            })
            .await?;
            io::Result::Ok(UnixStream::from_fd(fd))
        };
        connected.await.map_err(|err| {
            crate::error::context(err, format_args!("connect to {}", path.display()))
        })
    }

    /// A connected pair (`socketpair(2)`).
    ///
    /// # Errors
    /// `socketpair(2)`'s, e.g. `EMFILE`.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = socket2::Socket::pair(Domain::UNIX, Type::STREAM, None)?;
        Ok((
            UnixStream::from_fd(Rc::new(a.into())),
            UnixStream::from_fd(Rc::new(b.into())),
        ))
    }

    /// Reads into the spare capacity of `buf`; `Ok(0)` is EOF.
    ///
    /// # Errors
    /// `recv(2)`'s; `InvalidInput` if `buf` has no spare capacity.
    ///
    /// # Cancellation
    /// Cancel-safe: a read dropped after its bytes arrived (it lost a `select`, a `timeout`
    /// fired) loses none of them; the stream's next read returns them first, in order. Reads
    /// on one stream run one at a time. [`Cancellable::cancel`](corio_rt::Cancellable::cancel)
    /// and [`timeout_or_cancel`](corio_rt::time::timeout_or_cancel) give the buffer back.
    pub fn read<B: IoBufMut>(&self, buf: B) -> super::Read<B> {
        self.socket.read(buf)
    }

    /// Writes some of `buf`'s initialised bytes; returns how many.
    ///
    /// # Errors
    /// `send(2)`'s, e.g. `BrokenPipe` (never a SIGPIPE).
    ///
    /// # Cancellation
    /// Dropping the future cancels the write; a prefix of `buf` may have been sent.
    /// [`Cancellable::cancel`](corio_rt::Cancellable::cancel) returns how much, with `buf`.
    pub fn write<B: IoBuf>(&self, buf: B) -> super::Write<B> {
        self.socket.write(buf)
    }

    /// Scatter read (`readv(2)`): fills the spare capacity of each buffer in turn; returns the
    /// total byte count (`Ok(0)` is EOF) and the buffers.
    ///
    /// # Errors
    /// `readv(2)`'s errors; `InvalidInput` for more than 1024 buffers.
    ///
    /// # Cancellation
    /// Not cancel-safe: bytes that arrived for a dropped `readv` are lost (the buffers are
    /// freed once the kernel lets go). Use [`read`](Self::read) where a read may be dropped.
    pub async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        self.socket.readv(bufs).await
    }

    /// Gather write (`sendmsg(2)`): sends the initialised bytes of each buffer in turn; returns
    /// the total byte count, which may be short, and the buffers.
    ///
    /// # Errors
    /// `sendmsg(2)`'s errors, e.g. `BrokenPipe` when the peer has gone (never a SIGPIPE);
    /// `InvalidInput` for more than 1024 buffers.
    ///
    /// # Cancellation
    /// Dropping the future cancels the write; a prefix may have been sent.
    pub async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        self.socket.writev(bufs).await
    }

    /// Writes all of `buf`'s initialised bytes.
    ///
    /// # Errors
    /// The first send error; `WriteZero` if the kernel accepts nothing.
    ///
    /// # Cancellation
    /// Dropping the future cancels the write in flight; a prefix may have been sent.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        self.socket.write_all(buf).await
    }

    /// A multishot receive over `ring`, as [`TcpStream::recv_stream`](super::TcpStream::recv_stream).
    pub fn recv_stream(&self, ring: &BufRing) -> RecvStream {
        self.socket.recv_stream(ring)
    }

    /// Shuts down the read side, the write side, or both.
    ///
    /// # Errors
    /// `shutdown(2)`'s.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket.shutdown(how)
    }
}

impl UnixStream {
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.fd.as_raw_fd()
    }
}
