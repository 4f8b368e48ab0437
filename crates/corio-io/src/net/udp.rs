//! UDP sockets: datagrams to and from any peer (`send_to`, `recv_from`), or to one connected
//! peer (`send`, `recv`), each an io_uring op with an owned buffer.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use corio_rt::Op;
use socket2::{Domain, Protocol, SockAddr, SockRef, Type};

use crate::buf::{IoBuf, IoBufMut};
use crate::op::msg::{RecvFrom, SendTo};
use crate::op::net::{Recv, Send, SharedFd};

/// A UDP socket.
///
/// # Examples
/// ```
/// use corio::net::UdpSocket;
/// corio::block_on(async {
///     let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
///     let b = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
///     let (sent, _) = a.send_to(&b"ping"[..], b.local_addr()?).await;
///     assert_eq!(sent?, 4);
///     let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
///     assert_eq!((got?.1, &buf[..]), (a.local_addr()?, &b"ping"[..]));
///     std::io::Result::Ok(())
/// })?;
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug)]
pub struct UdpSocket {
    fd: SharedFd,
}

impl UdpSocket {
    /// Binds to `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// `bind(2)`'s, e.g. `AddrInUse`.
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        let socket =
            socket2::Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.bind(&addr.into())?;
        Ok(UdpSocket {
            fd: Rc::new(socket.into()),
        })
    }

    /// Sets the default peer: `send` goes to it and `recv` takes datagrams only from it.
    ///
    /// # Errors
    /// `connect(2)`'s, e.g. `AddrNotAvailable`.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        SockRef::from(&*self.fd).connect(&addr.into())
    }

    /// Sends `buf`'s initialised bytes as one datagram to `addr`.
    ///
    /// # Errors
    /// `sendmsg(2)`'s, e.g. `EMSGSIZE` for a datagram over the size limit.
    ///
    /// # Cancellation
    /// Dropping the future cancels the send; the datagram may or may not have gone.
    pub async fn send_to<B: IoBuf>(&self, buf: B, addr: SocketAddr) -> (io::Result<usize>, B) {
        Op::new(SendTo::new(self.fd.clone(), buf, SockAddr::from(addr))).await
    }

    /// Receives one datagram into `buf`'s spare capacity; returns its length and sender. A
    /// datagram longer than the spare capacity is truncated.
    ///
    /// # Errors
    /// `recvmsg(2)`'s; `InvalidData` if the sender's address is not IP.
    ///
    /// # Cancellation
    /// Not cancel-safe: a datagram that arrived for a dropped receive is lost (as a datagram
    /// can be on the wire); `buf` is freed once the kernel releases it.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, SocketAddr)>, B) {
        let (res, buf) = Op::new(RecvFrom::new(self.fd.clone(), buf)).await;
        let res = res.and_then(|(n, addr)| {
            let addr = addr.as_socket().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address")
            })?;
            Ok((n, addr))
        });
        (res, buf)
    }

    /// Sends one datagram to the connected peer.
    ///
    /// # Errors
    /// `send(2)`'s, e.g. `ConnectionRefused` after the peer's port answered ICMP unreachable.
    ///
    /// # Cancellation
    /// As [`send_to`](Self::send_to).
    pub async fn send<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        Op::new(Send {
            fd: self.fd.clone(),
            buf,
            pos: 0,
        })
        .await
    }

    /// Receives one datagram from the connected peer into `buf`'s spare capacity.
    ///
    /// # Errors
    /// `recv(2)`'s.
    ///
    /// # Cancellation
    /// As [`recv_from`](Self::recv_from).
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        Op::new(Recv::new(self.fd.clone(), buf)).await
    }

    /// The bound address.
    ///
    /// # Errors
    /// `getsockname(2)`'s.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(SockRef::from(&*self.fd).local_addr()?)
    }

    /// The connected peer's address.
    ///
    /// # Errors
    /// `NotConnected` if [`connect`](Self::connect) was not called.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(SockRef::from(&*self.fd).peer_addr()?)
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn ip_addr(addr: SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
}
