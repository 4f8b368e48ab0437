//! Streams over multishot ops: accepted connections ([`Incoming`]) and received bytes in
//! provided buffers ([`RecvStream`]). Each re-arms its multishot op when the kernel ends it
//! (a receive ends when the buffer ring runs dry: ENOBUFS), so the stream itself only ends at
//! EOF.

use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::Poll;

use corio_rt::MultiOp;

use super::TcpStream;
use crate::buf::{BufRing, RingBuf};
use crate::op::net::{AcceptMulti, RecvMulti, SharedFd};

/// The connections a [`TcpListener`](super::TcpListener) accepts, from one multishot ACCEPT.
///
/// # Cancellation
/// Dropping the stream cancels the accept; connections accepted meanwhile are closed.
pub struct Incoming {
    fd: SharedFd,
    op: Option<MultiOp<AcceptMulti>>,
}

impl Incoming {
    pub(crate) fn new(fd: SharedFd) -> Incoming {
        Incoming { fd, op: None }
    }

    /// Waits for the next connection.
    ///
    /// # Errors
    /// `accept(2)`'s errors, e.g. `EMFILE` when the process is out of fds; the stream stays
    /// usable and re-arms on the next call.
    pub async fn next(&mut self) -> io::Result<TcpStream> {
        loop {
            let fd = self.fd.clone();
            let op = self
                .op
                .get_or_insert_with(|| MultiOp::new(AcceptMulti { fd }));
            match op.next().await {
                Some(Ok(fd)) => return Ok(TcpStream::from_fd(Rc::new(fd))),
                Some(Err(err)) => {
                    op.rearm(); // at the next call
                    return Err(err);
                }
                None => op.rearm(), // the kernel ended the multishot: go on
            }
        }
    }
}

/// The bytes a [`TcpStream`] receives, each chunk in a buffer from a [`BufRing`].
///
/// While no bytes arrive the connection holds no buffer. Each [`RingBuf`] goes back to the
/// ring when dropped; if the application holds every buffer, the stream waits for one.
///
/// # Cancellation
/// Dropping the stream cancels the receive; buffers filled meanwhile return to the ring.
pub struct RecvStream {
    fd: SharedFd,
    ring: BufRing,
    op: Option<MultiOp<RecvMulti>>,
    eof: bool,
}

impl RecvStream {
    pub(crate) fn new(fd: SharedFd, ring: BufRing) -> RecvStream {
        RecvStream {
            fd,
            ring,
            op: None,
            eof: false,
        }
    }

    /// The next chunk of received bytes; `None` once the peer has closed its side (EOF).
    ///
    /// # Errors
    /// `recv(2)`'s errors, e.g. `ConnectionReset`; the stream ends after one.
    pub async fn next(&mut self) -> Option<io::Result<RingBuf>> {
        loop {
            if self.eof {
                return None;
            }
            let op = self.op.get_or_insert_with(|| {
                MultiOp::new(RecvMulti {
                    fd: self.fd.clone(),
                    ring: self.ring.clone(),
                })
            });
            match op.next().await {
                Some(Ok(Some(buf))) => return Some(Ok(buf)),
                Some(Ok(None)) => self.eof = true,
                Some(Err(err)) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The ring ran dry. Re-arm at once if buffers came back meanwhile (by the
                    // kernel's own head: buffers sitting unread in other streams' queues are
                    // not in the ring), else wait until one does.
                    let returned = self.ring.returned();
                    op.rearm();
                    if !self.ring.kernel_has_buffers() {
                        self.buffer_returned(returned).await;
                    }
                }
                Some(Err(err)) => {
                    self.eof = true;
                    self.op = None;
                    return Some(Err(err));
                }
                None => op.rearm(), // the kernel ended the multishot: go on
            }
        }
    }

    /// Waits until a buffer has come back to the ring since `returned` were.
    async fn buffer_returned(&self, returned: u64) {
        poll_fn(|cx| {
            if self.ring.returned() != returned {
                return Poll::Ready(());
            }
            self.ring.wait_for_buffer(cx.waker());
            Poll::Pending
        })
        .await
    }
}
