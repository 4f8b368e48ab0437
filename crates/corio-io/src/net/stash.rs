//! Loss-free socket reads: what a stream keeps of reads nobody awaited any more, and the
//! [`Read`] future that looks there first.
//!
//! A socket read whose bytes have arrived may still be dropped (it lost a `select`, or a
//! `timeout` fired as its CQE landed). The kernel has taken those bytes out of the socket, so
//! dropping them would lose them for good. Instead the dropped read's op, when its final CQE
//! comes, copies them into its stream's stash ([`OpCode::abandoned`](corio_rt::OpCode::abandoned)),
//! and the next read on the stream returns them before it asks the kernel for more. To keep the
//! bytes in order, a read waits until every earlier read on its stream has reached its final
//! CQE (an abandoned one is cancelled within a tick or two) before it looks at the stash or
//! submits: reads on one stream run one at a time.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use corio_rt::{Cancellable, Op};

use crate::buf::{fill_from_slice, IoBufMut};
use crate::op::net::{Recv, SharedFd};

/// One stream's read state, shared by the stream and its reads in flight.
#[derive(Debug, Default)]
pub(crate) struct ReadStash {
    /// Bytes abandoned reads took from the kernel, in arrival order.
    bytes: RefCell<VecDeque<u8>>,
    /// Reads submitted to the kernel and not yet at their final CQE.
    in_flight: Cell<usize>,
    /// Reads waiting for `in_flight` to reach zero.
    waiters: RefCell<Vec<Waker>>,
}

impl ReadStash {
    /// A read was submitted.
    pub(crate) fn begin(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    /// A read reached its final CQE; `abandoned` are the bytes of one whose future was dropped.
    pub(crate) fn end(&self, abandoned: &[u8]) {
        self.bytes.borrow_mut().extend(abandoned);
        self.in_flight.set(self.in_flight.get() - 1);
        if self.in_flight.get() == 0 {
            for waker in self.waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }

    /// Ready once no read is in flight; `Pending` with `waker` stored otherwise.
    fn poll_idle(&self, waker: &Waker) -> Poll<()> {
        if self.in_flight.get() == 0 {
            return Poll::Ready(());
        }
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
        Poll::Pending
    }

    /// For the readiness path (`compat`): once no read is in flight, moves kept bytes into
    /// `dst`; the count (0 if none are kept). `Pending` with `waker` stored while a read is in
    /// flight.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "futures-io", feature = "hyper")),
        allow(dead_code)
    )]
    pub(crate) fn poll_take(
        &self,
        waker: &Waker,
        dst: &mut [std::mem::MaybeUninit<u8>],
    ) -> Poll<usize> {
        if self.poll_idle(waker).is_pending() {
            return Poll::Pending;
        }
        let mut bytes = self.bytes.borrow_mut();
        let (front, _) = bytes.as_slices();
        let n = front.len().min(dst.len());
        for (slot, &byte) in dst.iter_mut().zip(&front[..n]) {
            slot.write(byte);
        }
        bytes.drain(..n);
        Poll::Ready(n)
    }

    /// Moves kept bytes into `buf`'s spare capacity; the count moved (0 if none are kept).
    fn take_into<B: IoBufMut>(&self, buf: &mut B) -> usize {
        let mut bytes = self.bytes.borrow_mut();
        let (front, _) = bytes.as_slices();
        let n = fill_from_slice(buf, front);
        bytes.drain(..n);
        n
    }
}

/// The future of a stream socket's [`read`](crate::net::TcpStream::read).
///
/// # Cancellation
/// Cancel-safe: dropping it loses no byte. Bytes that had already arrived are kept by the
/// stream and returned, in order, by its next read. [`Cancellable::cancel`] (or
/// [`timeout_or_cancel`](corio_rt::time::timeout_or_cancel)) gives back the buffer too, with
/// the bytes if the read completed first.
#[must_use = "a read does nothing until it is awaited"]
pub struct Read<B: IoBufMut> {
    stage: Stage<B>,
}

enum Stage<B: IoBufMut> {
    /// Not submitted: waiting for earlier reads on the stream, or for the first poll.
    Start {
        fd: SharedFd,
        stash: Rc<ReadStash>,
        buf: B,
        cancelled: bool,
    },
    InFlight(Op<Recv<B>>),
    Done,
}

impl<B: IoBufMut> Read<B> {
    pub(crate) fn new(fd: SharedFd, stash: Rc<ReadStash>, buf: B) -> Read<B> {
        Read {
            stage: Stage::Start {
                fd,
                stash,
                buf,
                cancelled: false,
            },
        }
    }
}

impl<B: IoBufMut> Future for Read<B> {
    type Output = (io::Result<usize>, B);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Stage::Start {
            stash, cancelled, ..
        } = &this.stage
        {
            if !*cancelled && stash.poll_idle(cx.waker()).is_pending() {
                return Poll::Pending;
            }
            let Stage::Start {
                fd,
                stash,
                mut buf,
                cancelled,
            } = std::mem::replace(&mut this.stage, Stage::Done)
            else {
                unreachable!("matched Start above")
            };
            if cancelled {
                let err = io::Error::from_raw_os_error(libc::ECANCELED);
                return Poll::Ready((Err(err), buf));
            }
            if buf.bytes_init() == buf.bytes_total() {
                let err = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "read buffer has no spare capacity",
                );
                return Poll::Ready((Err(err), buf));
            }
            let n = stash.take_into(&mut buf);
            if n > 0 {
                return Poll::Ready((Ok(n), buf));
            }
            this.stage = Stage::InFlight(Op::new(Recv::kept(fd, buf, stash)));
        }
        let Stage::InFlight(op) = &mut this.stage else {
            panic!("Read polled after it completed");
        };
        let output = std::task::ready!(Pin::new(op).poll(cx));
        this.stage = Stage::Done;
        Poll::Ready(output)
    }
}

impl<B: IoBufMut> Cancellable for Read<B> {
    fn start_cancel(&mut self) {
        match &mut self.stage {
            Stage::Start { cancelled, .. } => *cancelled = true,
            Stage::InFlight(op) => op.start_cancel(),
            Stage::Done => {}
        }
    }
}
