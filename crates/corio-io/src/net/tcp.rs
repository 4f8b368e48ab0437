//! TCP: a listener that every core may bind to the same port (SO_REUSEPORT), and a stream whose
//! reads and writes are io_uring ops taking buffers by value.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use corio_rt::Op;
use socket2::{Domain, Protocol, SockAddr, SockRef, Type};

use super::socket::Socket;
use super::{lookup_host, Incoming, RecvStream, ToSocketAddrs};
use crate::buf::{BufRing, IoBuf, IoBufMut};
use crate::op::net::{Accept, Connect, SharedFd};

/// Backlog of pending connections for [`TcpListener::bind`].
const BACKLOG: i32 = 1024;

/// A TCP listening socket.
///
/// [`bind`](TcpListener::bind) lets the cores of this process share a port (each core binds its
/// own listener with `SO_REUSEPORT`, and the kernel spreads incoming connections across them)
/// but refuses a port that another process already listens on, as a plain bind would; see
/// [`bind_shared`](TcpListener::bind_shared) to share with other processes on purpose.
///
/// # Examples
/// ```no_run
/// use corio::net::TcpListener;
/// corio::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:6380")?;
///     loop {
///         let (stream, peer) = listener.accept().await?;
///         corio::spawn(async move {
///             let (res, buf) = stream.read(Vec::with_capacity(4096)).await;
///             if res.is_ok() {
///                 let _ = stream.write_all(buf).await;
///             }
///         })
///         .detach();
///     }
///     # #[allow(unreachable_code)]
///     # std::io::Result::Ok(())
/// })?;
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug)]
pub struct TcpListener {
    fd: SharedFd,
    /// The address this listener holds in this process's table of ports it serves.
    claim: Option<SocketAddr>,
}

/// The addresses this process's [`TcpListener::bind`] listeners are bound to, each with how
/// many are open: a bind to one of these joins the process's own group; any other bind first
/// checks that no one else listens there.
static CLAIMED: Mutex<Vec<(SocketAddr, usize)>> = Mutex::new(Vec::new());

fn claimed() -> std::sync::MutexGuard<'static, Vec<(SocketAddr, usize)>> {
    CLAIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TcpListener {
    /// Binds to the first address `addr` resolves to with `SO_REUSEADDR` and `SO_REUSEPORT`,
    /// and listens with a backlog of 1024.
    ///
    /// Every core of a process may bind the same address: their listeners form one group and
    /// the kernel spreads connections across them. A port that another process listens on is
    /// refused with `AddrInUse` (with `SO_REUSEPORT` alone, a second copy of a server would
    /// silently take half its connections); [`bind_shared`](Self::bind_shared) joins it on
    /// purpose. Port 0 gives each call its own free port.
    ///
    /// `addr` is resolved by the standard library; pass an IP address to avoid a blocking name
    /// lookup.
    ///
    /// # Errors
    /// `AddrInUse` when another process listens on the address (or holds it without
    /// `SO_REUSEPORT`), `PermissionDenied` for a port below 1024 without the capability, and
    /// other `bind(2)`/`listen(2)` errors; `InvalidInput` if `addr` resolves to nothing. The
    /// message names the address (`bind 127.0.0.1:6380: ...`).
    pub fn bind(addr: impl std::net::ToSocketAddrs) -> io::Result<TcpListener> {
        let addr = resolve(addr)?;
        let mut claimed = claimed();
        let ours = claimed.iter().any(|&(held, _)| held == addr);
        if !ours && addr.port() != 0 {
            // A plain bind fails if anyone listens there, SO_REUSEPORT or not. That someone
            // may be this process itself, through a socket whose `TcpListener` is gone but
            // whose fd lives on (an `incoming()` stream, an accept being cancelled): the
            // kernel's table of listeners says whose sockets they are.
            if let Err(err) = std::net::TcpListener::bind(addr) {
                if err.kind() != io::ErrorKind::AddrInUse || !listeners_all_ours(addr) {
                    return Err(bind_error(err, addr));
                }
            }
        }
        let fd = listen(addr)?;
        let bound = socket_addr(SockRef::from(&fd).local_addr()?)?;
        let key = if addr.port() == 0 { bound } else { addr };
        match claimed.iter_mut().find(|(held, _)| *held == key) {
            Some((_, count)) => *count += 1,
            None => claimed.push((key, 1)),
        }
        Ok(TcpListener {
            fd: Rc::new(fd),
            claim: Some(key),
        })
    }

    /// Binds as [`bind`](Self::bind) does but joins a port that other processes listen on
    /// with `SO_REUSEPORT` (same user): the kernel then spreads connections across every
    /// process's listeners. For zero-downtime restarts, where the new copy starts serving
    /// before the old one stops.
    ///
    /// # Errors
    /// As `bind`; `AddrInUse` only when a socket without `SO_REUSEPORT` holds the address.
    pub fn bind_shared(addr: impl std::net::ToSocketAddrs) -> io::Result<TcpListener> {
        let addr = resolve(addr)?;
        Ok(TcpListener {
            fd: Rc::new(listen(addr)?),
            claim: None,
        })
    }

    /// Adopts a listening socket made elsewhere (on another thread, by `std`, or inherited).
    /// The socket must be in blocking mode: io_uring then waits for connections itself.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(false)?;
        Ok(TcpListener {
            fd: Rc::new(OwnedFd::from(listener)),
            claim: None,
        })
    }

    /// The address the listener is bound to (with the port the kernel chose for port 0).
    ///
    /// # Errors
    /// `getsockname(2)`'s.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket_addr(SockRef::from(&*self.fd).local_addr()?)
    }

    /// A stream of accepted connections from one multishot accept (fewer SQEs than calling
    /// [`accept`](Self::accept) in a loop; peer addresses are not collected).
    ///
    /// # Examples
    /// ```no_run
    /// corio::block_on(async {
    ///     let listener = corio::net::TcpListener::bind("127.0.0.1:7000")?;
    ///     let mut incoming = listener.incoming();
    ///     while let Ok(stream) = incoming.next().await {
    ///         drop(stream);
    ///     }
    ///     std::io::Result::Ok(())
    /// })?;
    /// # std::io::Result::Ok(())
    /// ```
    pub fn incoming(&self) -> Incoming {
        Incoming::new(self.fd.clone())
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// # Errors
    /// `accept(2)`'s errors, e.g. `EMFILE` when the process is out of fds; the listener stays
    /// usable after one.
    ///
    /// # Cancellation
    /// Dropping the future cancels the accept; a connection accepted in the meantime is closed.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = Op::new(Accept::new(self.fd.clone())).await?;
        Ok((TcpStream::from_fd(Rc::new(fd)), socket_addr(addr)?))
    }
}

/// Binds `count` listening sockets to one address with `SO_REUSEPORT`, one for each core to
/// adopt with [`TcpListener::from_std`]; the kernel spreads connections across them.
///
/// Port 0 is resolved once, so every socket shares the port the kernel picked. Binding fails if
/// another socket already listens on the address, even one with `SO_REUSEPORT` (a second copy
/// of the same server), rather than silently sharing its connections.
///
/// # Errors
/// `AddrInUse` if the address is taken; other `bind(2)`/`listen(2)` errors.
///
/// # Examples
/// ```
/// let listeners = corio::net::reuseport_listeners("127.0.0.1:0".parse().unwrap(), 2)?;
/// let port = listeners[0].local_addr()?.port();
/// assert_eq!(listeners[1].local_addr()?.port(), port);
/// # std::io::Result::Ok(())
/// ```
pub fn reuseport_listeners(
    addr: SocketAddr,
    count: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        // A plain bind fails if anyone listens there, SO_REUSEPORT or not.
        drop(std::net::TcpListener::bind(addr).map_err(|err| bind_error(err, addr))?);
    }
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let bind_to = match listeners.first() {
            Some(first) => first.local_addr()?,
            None => addr,
        };
        listeners.push(listen(bind_to)?.into());
    }
    Ok(listeners)
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        if let Some(addr) = self.claim {
            let mut claimed = claimed();
            if let Some(at) = claimed.iter().position(|&(held, _)| held == addr) {
                claimed[at].1 -= 1;
                if claimed[at].1 == 0 {
                    claimed.swap_remove(at);
                }
            }
        }
    }
}

/// Whether every socket listening on `addr`'s port (at least one) belongs to this process:
/// their inodes in `/proc/net/tcp` or `tcp6` against the sockets among `/proc/self/fd`. False
/// whenever something cannot be read.
fn listeners_all_ours(addr: SocketAddr) -> bool {
    let table = if addr.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let Ok(table) = std::fs::read_to_string(table) else {
        return false;
    };
    let port = format!(":{:04X}", addr.port());
    // Columns: sl local_address rem_address st ... inode (the 10th).
    let listening: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            (local.ends_with(&port) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9).copied())?
        })
        .collect();
    if listening.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    let ours: Vec<String> = fds
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    listening
        .iter()
        .all(|inode| ours.iter().any(|o| o == inode))
}

/// A listening socket on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`.
fn listen(addr: SocketAddr) -> io::Result<OwnedFd> {
    let socket =
        socket2::Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket
        .bind(&addr.into())
        .and_then(|()| socket.listen(BACKLOG))
        .map_err(|err| bind_error(err, addr))?;
    Ok(socket.into())
}

fn bind_error(err: io::Error, addr: SocketAddr) -> io::Error {
    let what = if err.kind() == io::ErrorKind::AddrInUse {
        format!("bind {addr}: another socket or process listens there")
    } else {
        format!("bind {addr}")
    };
    crate::error::context(err, what)
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A TCP connection. Reads and writes take owned buffers and give them back.
///
/// The stream is `!Send`: it belongs to the core that made it, like its ops.
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<corio::net::TcpStream>(); // !Send: it may not leave its core
/// ```
#[derive(Debug)]
pub struct TcpStream {
    socket: Socket,
}

impl TcpStream {
    /// Connects to `addr`, trying each address it resolves to in turn (a name is resolved off
    /// the event loop: see [`lookup_host`](super::lookup_host)).
    ///
    /// # Errors
    /// `connect(2)`'s error for the last address tried, e.g. `ConnectionRefused`; the
    /// resolver's error for a name that does not resolve.
    ///
    /// # Cancellation
    /// Dropping the future cancels the connect and closes the socket.
    ///
    /// # Examples
    /// ```no_run
    /// corio::block_on(async {
    ///     let stream = corio::net::TcpStream::connect("127.0.0.1:6379").await?;
    ///     stream.set_nodelay(true)?;
    ///     std::io::Result::Ok(())
    /// })?;
    /// # std::io::Result::Ok(())
    /// ```
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last_err = None;
        for addr in lookup_host(addr).await? {
            match TcpStream::connect_addr(addr).await {
                Ok(stream) => return Ok(stream),
                Err(err) => {
                    last_err = Some(crate::error::context(
                        err,
                        format_args!("connect to {addr}"),
                    ))
                }
            }
        }
        Err(last_err.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
        }))
    }

    /// Like [`connect`](Self::connect), giving up after `timeout` (resolution included).
    ///
    /// # Errors
    /// `TimedOut` when the time runs out; otherwise as `connect`.
    pub async fn connect_timeout(
        addr: impl ToSocketAddrs,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        corio_rt::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect timed out after {timeout:?}"),
                )
            })?
    }

    async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        let socket =
            socket2::Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        let fd: SharedFd = Rc::new(socket.into());
        Op::new(Connect {
            fd: fd.clone(),
            addr: SockAddr::from(addr),
        })
        .await?;
        Ok(TcpStream::from_fd(fd))
    }

    pub(crate) fn from_fd(fd: SharedFd) -> TcpStream {
        TcpStream {
            socket: Socket::new(fd),
        }
    }

    /// A stream of received bytes in buffers from `ring`: a multishot receive, so the
    /// connection holds no buffer while idle. Do not mix with [`read`](Self::read) on the
    /// same stream at the same time (bytes would be split between the two).
    ///
    /// # Examples
    /// ```no_run
    /// use corio::io::{buf::BufRing, net::TcpStream};
    /// corio::block_on(async {
    ///     let ring = BufRing::new(256, 4096)?;
    ///     let stream = TcpStream::connect("127.0.0.1:7000").await?;
    ///     let mut received = stream.recv_stream(&ring);
    ///     while let Some(chunk) = received.next().await {
    ///         println!("{} bytes", chunk?.len());
    ///     }
    ///     std::io::Result::Ok(())
    /// })?;
    /// # std::io::Result::Ok(())
    /// ```
    pub fn recv_stream(&self, ring: &BufRing) -> RecvStream {
        self.socket.recv_stream(ring)
    }

    /// Adopts a connected socket made elsewhere, switching it to blocking mode (io_uring waits
    /// for readiness itself).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(false)?;
        Ok(TcpStream::from_fd(Rc::new(OwnedFd::from(stream))))
    }

    /// Reads into the spare capacity of `buf` (from its length up to its capacity).
    ///
    /// Returns the byte count and `buf`, grown by that count; `Ok(0)` means the peer closed
    /// its side (EOF).
    ///
    /// # Errors
    /// `recv(2)`'s errors, e.g. `ConnectionReset`; `InvalidInput` if `buf` has no spare
    /// capacity (a zero-length read would look like EOF).
    ///
    /// # Cancellation
    /// Cancel-safe: a read dropped after its bytes arrived (it lost a `select`, a `timeout`
    /// fired) loses none of them; the stream's next read returns them first, in order. Reads
    /// on one stream run one at a time. [`Cancellable::cancel`](corio_rt::Cancellable::cancel)
    /// and [`timeout_or_cancel`](corio_rt::time::timeout_or_cancel) give the buffer back.
    pub fn read<B: IoBufMut>(&self, buf: B) -> super::Read<B> {
        self.socket.read(buf)
    }

    /// Writes some of `buf`'s initialised bytes; returns how many, and `buf`.
    ///
    /// # Errors
    /// `send(2)`'s errors, e.g. `BrokenPipe` when the peer has gone (never a SIGPIPE).
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

    /// Writes all of `buf`'s initialised bytes, however many sends it takes.
    ///
    /// # Errors
    /// The first send error; `WriteZero` if the kernel accepts nothing.
    ///
    /// # Cancellation
    /// Dropping the future cancels the write in flight; a prefix of `buf` may have been sent.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        self.socket.write_all(buf).await
    }

    /// Writes all of `buf` with zero-copy sends (`IORING_OP_SEND_ZC`): the kernel transmits
    /// from `buf` itself, which comes back once the kernel has let go of it.
    ///
    /// Zero-copy pays only for large buffers sent to a real network device; over loopback the
    /// kernel copies anyway and the extra notification makes it slower (see the README's
    /// numbers), so [`write_all`](Self::write_all) never uses it on its own.
    ///
    /// # Errors
    /// As [`write_all`](Self::write_all); `EOPNOTSUPP` on kernels without SEND_ZC (before 6.0).
    ///
    /// # Cancellation
    /// Dropping the future cancels the send in flight; `buf` is freed only after the kernel's
    /// notification.
    pub async fn write_all_zc<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        self.socket.write_all_zc(buf).await
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    ///
    /// # Errors
    /// `setsockopt(2)`'s.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        SockRef::from(&*self.socket.fd).set_nodelay(nodelay)
    }

    /// Shuts down the read side, the write side, or both (`shutdown(2)`).
    ///
    /// # Errors
    /// `shutdown(2)`'s, e.g. `NotConnected`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket.shutdown(how)
    }

    /// The peer's address.
    ///
    /// # Errors
    /// `getpeername(2)`'s, e.g. `NotConnected`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket_addr(SockRef::from(&*self.socket.fd).peer_addr()?)
    }

    /// This end's address.
    ///
    /// # Errors
    /// `getsockname(2)`'s.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket_addr(SockRef::from(&*self.socket.fd).local_addr()?)
    }
}

impl TcpStream {
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.fd.as_raw_fd()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.fd.as_fd()
    }
}

fn resolve(addr: impl std::net::ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing"))
}

fn socket_addr(addr: SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
}
