//! `MultishotCode` and `MultiOp<T>`: one SQE, a stream of CQEs.
//!
//! Multishot accept, multishot receive over a provided-buffer ring and multishot timeouts post a
//! CQE per event, each carrying `IORING_CQE_F_MORE` until the last. `MultiOp` is a
//! [`Stream`](futures_util::Stream) of the opcode's items; its slot lives until the CQE without
//! MORE (I2). Dropping it cancels the op and hands later CQEs to the opcode's `item`, so
//! resources they carry (accepted fds, provided buffers) are released, never leaked.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use io_uring::squeue;

use super::op::{orphan_or_leak, Cqe};
use super::slots::{Orphan, Slot};
use crate::context;

/// An operation that posts a stream of CQEs for one SQE.
///
/// # Safety
/// As for [`OpCode`](super::op::OpCode): `self` stays boxed at one address from `sqe` until
/// the CQE without `IORING_CQE_F_MORE`; every pointer in the entry points into `self` or heap
/// memory it owns.
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
    /// The slot and the driver it lives on, while in flight.
    id: Option<(usize, u64)>,
    ended: bool,
    /// An op belongs to the ring it was submitted on: `!Send`.
    _core: PhantomData<*const ()>,
}

impl<T: MultishotCode> MultiOp<T> {
    /// Wraps a multishot opcode; nothing is submitted until the first poll.
    pub fn new(op: T) -> MultiOp<T> {
        MultiOp {
            op: Some(Box::new(op)),
            id: None,
            ended: false,
            _core: PhantomData,
        }
    }

    /// The opcode back, with whatever it owns, once the op has ended (after the item of its
    /// final CQE) or if it was never submitted; `None` while it is in flight.
    pub fn into_inner(mut self) -> Option<T> {
        if self.id.is_some() {
            return None; // in flight: Drop orphans it
        }
        self.op.take().map(|op| *op)
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
        let Some(id) = this.id else {
            if !context::with_driver(|d| d.supports(T::CODE)) {
                this.ended = true;
                return Poll::Ready(Some(op.item(Cqe::new(-libc::EOPNOTSUPP, 0))));
            }
            let sqe = op.sqe();
            let slot = Slot::Multi {
                queue: Default::default(),
                waker: Some(cx.waker().clone()),
            };
            this.id = Some(context::with_driver(|d| (d.push_op(sqe, slot), d.id())));
            return Poll::Pending;
        };
        let (id, driver) = id;
        let polled = context::with_driver(|d| {
            assert_eq!(
                d.id(),
                driver,
                "op polled outside the core it was submitted on"
            );
            d.poll_multi(id, cx.waker())
        });
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(cqe) => {
                if !cqe.more() {
                    this.ended = true;
                    this.id = None;
                }
                Poll::Ready(Some(op.item(cqe)))
            }
        }
    }
}

impl<T: MultishotCode> Drop for MultiOp<T> {
    fn drop(&mut self) {
        let (Some((id, driver)), Some(op)) = (self.id.take(), self.op.take()) else {
            return;
        };
        orphan_or_leak(id, driver, Box::new(OrphanedMulti(op)));
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
