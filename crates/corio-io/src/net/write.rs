//! The future of a stream socket's single write, cancellable so that the count the kernel sent
//! is never lost: [`Cancellable::cancel`] returns it with the buffer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use corio_rt::{Cancellable, Op};

use crate::buf::IoBuf;
use crate::op::net::{Send, SharedFd};

/// The future of a stream socket's [`write`](crate::net::TcpStream::write): the byte count
/// the kernel took, and the buffer.
///
/// # Cancellation
/// Dropping it cancels the send; a prefix of the buffer may have been sent, and nobody learns
/// how much. [`Cancellable::cancel`] (or
/// [`timeout_or_cancel`](corio_rt::time::timeout_or_cancel)) gives back the buffer with that
/// count (`Ok(n)`), or `ECANCELED` if nothing was sent.
#[must_use = "a write does nothing until it is awaited"]
pub struct Write<B: IoBuf> {
    op: Op<Send<B>>,
}

impl<B: IoBuf> Write<B> {
    pub(crate) fn new(fd: SharedFd, buf: B, pos: usize) -> Write<B> {
        Write {
            op: Op::new(Send { fd, buf, pos }),
        }
    }
}

impl<B: IoBuf> Future for Write<B> {
    type Output = (io::Result<usize>, B);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.op).poll(cx)
    }
}

impl<B: IoBuf> Cancellable for Write<B> {
    fn start_cancel(&mut self) {
        self.op.start_cancel();
    }
}
