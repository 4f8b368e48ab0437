//! `MultishotCode` and `MultiOp<T>`: one SQE, a stream of CQEs.
//!
//! Multishot accept, multishot receive over a provided-buffer ring and multishot timeouts post a
//! CQE per event, each carrying `IORING_CQE_F_MORE` until the last. `MultiOp` is a
//! [`Stream`](futures_util::Stream) of the opcode's items; its slot lives until the CQE without
//! MORE (I2). Dropping it cancels the op and hands later CQEs to the opcode's `item`, so
//! resources they carry (accepted fds, provided buffers) are released, never leaked. The
//! lifecycle (submit, poll, orphan) is the one `Op` uses, in `submitted.rs`.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use io_uring::squeue;

use super::submitted::Submitted;
use crate::driver::{Cqe, Orphan};

/// An operation that posts a stream of CQEs for one SQE.
///
/// # Safety
/// As for [`OpCode`](super::OpCode): `self` stays boxed at one address from `sqe` until
/// the CQE without `IORING_CQE_F_MORE`; every pointer in the entry points into `self` or heap
/// memory it owns. `sqe` is called again for each [`MultiOp::rearm`].
pub unsafe trait MultishotCode: 'static {
    /// The opcode number, checked against the ring's probe.
    const CODE: u8;
    /// What one CQE becomes (typically an `io::Result` of an fd or a buffer).
    type Item;
    /// Builds the SQE. `user_data` is set by the driver.
    fn sqe(&mut self) -> squeue::Entry;
    /// Turns one CQE into an item. Called for every CQE, the final one included; it must not
    /// use the driver (it may run while the driver is reaping).
    fn item(&mut self, cqe: Cqe) -> Self::Item;
}

/// The stream of one multishot op. Ends (`None`) after the item of the final CQE.
///
/// # Cancellation
/// Dropping it before the final CQE submits `IORING_OP_ASYNC_CANCEL`; every CQE that still
/// arrives is turned into an item and dropped, so its resources are released.
#[must_use = "a multishot op does nothing until it is polled"]
pub struct MultiOp<T: MultishotCode> {
    op: Option<Box<T>>,
    submitted: Option<Submitted>,
    ended: bool,
    /// An op belongs to the ring it was submitted on: `!Send`.
    _core: PhantomData<*const ()>,
}

impl<T: MultishotCode> MultiOp<T> {
    /// Wraps a multishot opcode; nothing is submitted until the first poll.
    pub fn new(op: T) -> MultiOp<T> {
        MultiOp {
            op: Some(Box::new(op)),
            submitted: None,
            ended: false,
            _core: PhantomData,
        }
    }

    /// The opcode back, with whatever it owns, once the op has ended (after the item of its
    /// final CQE) or if it was never submitted; `None` while it is in flight.
    pub fn into_inner(mut self) -> Option<T> {
        if self.submitted.is_some() {
            return None; // in flight: Drop orphans it
        }
        self.op.take().map(|op| *op)
    }

    /// Whether the op has ended (the item of its final CQE was returned).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Makes an ended op submit its SQE again at the next poll, keeping the opcode (and what it
    /// owns): what a stream does when the kernel ends a multishot op it wants to go on with
    /// (a receive whose buffer ring ran dry, an accept after an error). Counted in
    /// [`Metrics::multishot_rearms`](crate::Metrics::multishot_rearms). No effect on an op that
    /// has not ended.
    pub fn rearm(&mut self) {
        if self.ended && self.submitted.is_none() {
            self.ended = false;
            crate::context::try_with_driver(|d| d.note_rearm());
        }
    }

    /// Waits for the next item; `None` once the op has ended.
    pub async fn next(&mut self) -> Option<T::Item> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl<T: MultishotCode> Stream for MultiOp<T> {
    type Item = T::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let op = this.op.as_mut().expect("op is held until the stream ends");
        let Some(submitted) = &this.submitted else {
            this.submitted = Submitted::submit(T::CODE, true, cx.waker(), || op.sqe());
            if this.submitted.is_none() {
                this.ended = true;
                return Poll::Ready(Some(op.item(Cqe::new(-libc::EOPNOTSUPP, 0))));
            }
            return Poll::Pending;
        };
        let Poll::Ready(cqe) = submitted.poll(cx.waker()) else {
            return Poll::Pending;
        };
        if !cqe.more() {
            this.ended = true;
            this.submitted.take().expect("in flight").finish();
        }
        Poll::Ready(Some(op.item(cqe)))
    }
}

impl<T: MultishotCode> Drop for MultiOp<T> {
    fn drop(&mut self) {
        if let (Some(submitted), Some(op)) = (self.submitted.take(), self.op.take()) {
            submitted.orphan(Box::new(OrphanedMulti(op)));
        }
    }
}

/// A dropped multishot op, kept until its final CQE.
struct OrphanedMulti<T>(Box<T>);

impl<T: MultishotCode> Orphan for OrphanedMulti<T> {
    fn item(&mut self, cqe: Cqe) {
        drop(self.0.item(cqe));
    }

    fn finish(mut self: Box<Self>, cqe: Cqe) {
        drop(self.0.item(cqe));
    }
}
