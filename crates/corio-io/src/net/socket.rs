//! What every connected socket does the same way, TCP or Unix: reads and writes as ring ops
//! with owned buffers, shutdown, and a multishot receive over a provided-buffer ring.

use std::io;
use std::net::Shutdown;
use std::rc::Rc;

use corio_rt::{MultiOp, Op};
use socket2::SockRef;

use super::stash::{Read, ReadStash};
use super::write::Write;
use super::RecvStream;
use crate::buf::{BufRing, IoBuf, IoBufMut};
use crate::op::msg::SendVectored;
use crate::op::net::{SendZc, SharedFd};
use crate::op::rw::Readv;

/// A connected stream socket's fd, what its dropped reads kept, and the operations on it.
#[derive(Debug, Clone)]
pub(crate) struct Socket {
    pub(crate) fd: SharedFd,
    pub(crate) stash: Rc<ReadStash>,
}

impl Socket {
    pub(crate) fn new(fd: SharedFd) -> Socket {
        Socket {
            fd,
            stash: Rc::default(),
        }
    }

    pub(crate) fn read<B: IoBufMut>(&self, buf: B) -> Read<B> {
        Read::new(self.fd.clone(), self.stash.clone(), buf)
    }

    pub(crate) fn write<B: IoBuf>(&self, buf: B) -> Write<B> {
        self.write_from(buf, 0)
    }

    pub(crate) async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        write_all_with(buf, |buf, pos| self.write_from(buf, pos)).await
    }

    fn write_from<B: IoBuf>(&self, buf: B, pos: usize) -> Write<B> {
        Write::new(self.fd.clone(), buf, pos)
    }

    /// One zero-copy send from `pos`; `buf` comes back once the kernel has let go of it.
    pub(crate) async fn send_zc_from<B: IoBuf>(
        &self,
        buf: B,
        pos: usize,
    ) -> (io::Result<usize>, B) {
        let mut op = MultiOp::new(SendZc {
            fd: self.fd.clone(),
            buf,
            pos,
        });
        let mut result = None;
        while let Some(cqe) = op.next().await {
            if !io_uring::cqueue::notif(cqe.flags()) {
                result = Some(cqe.bytes());
            }
        }
        let op = op.into_inner().expect("the op has ended");
        let result = result.unwrap_or_else(|| Err(io::ErrorKind::WriteZero.into()));
        (result, op.buf)
    }

    /// Writes all of `buf` with zero-copy sends.
    pub(crate) async fn write_all_zc<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        write_all_with(buf, |buf, pos| self.send_zc_from(buf, pos)).await
    }

    /// Scatter read: fills each buffer's spare capacity in turn (`readv(2)`).
    pub(crate) async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        // A stream socket has no file position: offset -1 means "the current one".
        Op::new(Readv::new(self.fd.clone(), bufs, u64::MAX)).await
    }

    /// Gather write: sends each buffer's initialised bytes in turn (`sendmsg(2)` with
    /// `MSG_NOSIGNAL`, so a closed peer is an error, not a SIGPIPE).
    pub(crate) async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        Op::new(SendVectored::new(self.fd.clone(), bufs)).await
    }

    pub(crate) fn recv_stream(&self, ring: &BufRing) -> RecvStream {
        RecvStream::new(self.fd.clone(), ring.clone())
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&*self.fd).shutdown(how)
    }
}

/// Sends all of `buf`'s initialised bytes with `send(buf, pos)` (one send from offset `pos`),
/// however many sends it takes.
async fn write_all_with<B, F, Fut>(buf: B, mut send: F) -> (io::Result<()>, B)
where
    B: IoBuf,
    F: FnMut(B, usize) -> Fut,
    Fut: std::future::Future<Output = (io::Result<usize>, B)>,
{
    let mut buf = buf;
    let mut pos = 0;
    while pos < buf.bytes_init() {
        let (res, back) = send(buf, pos).await;
        buf = back;
        match res {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => pos += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return (Err(err), buf),
        }
    }
    (Ok(()), buf)
}
