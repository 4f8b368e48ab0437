//! `OpCode` and `Op<T>`: the one future every single-shot io_uring operation runs as.
//!
//! An opcode (corio-io's reads, writes, accepts; corio-rt's [`Nop`](super::nop::Nop)) says only
//! how to build its SQE and what its CQE means. `Op<T>` owns the lifecycle once: it submits the
//! SQE on first poll, waits for the CQE, hands it to `complete`, and when dropped in flight moves
//! the boxed opcode into its slot as an orphan and queues an ASYNC_CANCEL, so the kernel never
//! writes into freed memory (driver invariant I1).

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use io_uring::squeue;

use super::slots::{Orphan, Slot};
use crate::context;

/// One completion queue entry: the result and flags of a finished (or continuing) op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cqe {
    result: i32,
    flags: u32,
}

impl Cqe {
    /// Makes a CQE by hand, as the kernel would post it: `result` is the syscall-style return
    /// (negative errno on failure), `flags` the `IORING_CQE_F_*` bits.
    pub fn new(result: i32, flags: u32) -> Cqe {
        Cqe { result, flags }
    }

    /// The raw result: a byte count, fd or zero on success, `-errno` on failure.
    pub fn raw_result(&self) -> i32 {
        self.result
    }

    /// The result as `Ok(value)` (bytes transferred, an fd, zero) or the error it encodes.
    ///
    /// # Errors
    /// The `std::io::Error` for the negative errno the kernel posted.
    pub fn result(&self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        }
    }

    /// The result as a byte count.
    ///
    /// # Errors
    /// As [`Cqe::result`].
    pub fn bytes(&self) -> io::Result<usize> {
        self.result().map(|n| n as usize)
    }

    /// The `IORING_CQE_F_*` flags.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether more CQEs will follow for the same SQE (`IORING_CQE_F_MORE`).
    pub fn more(&self) -> bool {
        io_uring::cqueue::more(self.flags)
    }

    /// The provided-buffer id the kernel picked (`IORING_CQE_F_BUFFER`), if any.
    pub fn buffer_id(&self) -> Option<u16> {
        io_uring::cqueue::buffer_select(self.flags)
    }
}

/// An operation the ring can run once: one SQE, one CQE.
///
/// # Safety
/// `Op` keeps `self` boxed at one address from the call to `sqe` until the final CQE has been
/// passed to `complete` (or the orphaned op is dropped after it); every pointer `sqe` puts in the
/// entry must point into `self` or into heap memory `self` owns and does not free or move before
/// then. The kernel must post exactly one CQE for the SQE: an op that posts more (SEND_ZC's
/// notification, multishot ops) is a [`MultishotCode`](crate::MultishotCode).
pub unsafe trait OpCode: 'static {
    /// The opcode number (`io_uring::opcode::X::CODE`), checked against the ring's probe before
    /// submission so a kernel without it fails the op with `EOPNOTSUPP` instead of garbage.
    const CODE: u8;
    /// The result, plus every resource that was lent to the kernel.
    type Output;
    /// Builds the SQE. `user_data` is set by the driver.
    fn sqe(&mut self) -> squeue::Entry;
    /// Turns the final CQE into the output, giving back the resources.
    fn complete(self, cqe: Cqe) -> Self::Output;
}

/// The future of one single-shot op.
///
/// Created by an opcode's public method (`Op::new(ReadAt { .. })`); submits on first poll.
///
/// # Cancellation
/// Dropping an `Op` that was submitted and has not completed submits `IORING_OP_ASYNC_CANCEL`
/// for it; the opcode and everything it owns stay in the driver until the kernel posts the final
/// CQE, then `complete` runs and its output is dropped.
#[must_use = "an op does nothing until it is awaited"]
pub struct Op<T: OpCode> {
    state: State<T>,
    /// An op belongs to the ring it was submitted on: `!Send`.
    _core: PhantomData<*const ()>,
}

enum State<T> {
    Idle(Box<T>),
    /// Submitted on the driver `driver`, in slot `id`.
    InFlight {
        id: usize,
        driver: u64,
        op: Box<T>,
    },
    Done,
}

impl<T: OpCode> Op<T> {
    /// Wraps an opcode; nothing is submitted until the first poll.
    pub fn new(op: T) -> Op<T> {
        Op {
            state: State::Idle(Box::new(op)),
            _core: PhantomData,
        }
    }
}

impl<T: OpCode> Future for Op<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.get_mut();
        match &mut this.state {
            State::Idle(op) => {
                if !context::with_driver(|d| d.supports(T::CODE)) {
                    let State::Idle(op) = std::mem::replace(&mut this.state, State::Done) else {
                        unreachable!()
                    };
                    return Poll::Ready(op.complete(Cqe::new(-libc::EOPNOTSUPP, 0)));
                }
                let sqe = op.sqe();
                let waker = cx.waker().clone();
                let (id, driver) =
                    context::with_driver(|d| (d.push_op(sqe, Slot::Waiting(Some(waker))), d.id()));
                let State::Idle(op) = std::mem::replace(&mut this.state, State::Done) else {
                    unreachable!()
                };
                this.state = State::InFlight { id, driver, op };
                Poll::Pending
            }
            State::InFlight { id, driver, .. } => {
                let (id, driver) = (*id, *driver);
                let cqe = match context::with_driver(|d| {
                    assert_eq!(
                        d.id(),
                        driver,
                        "op polled outside the core it was submitted on"
                    );
                    d.poll_single(id, cx.waker())
                }) {
                    Poll::Ready(cqe) => cqe,
                    Poll::Pending => return Poll::Pending,
                };
                let State::InFlight { op, .. } = std::mem::replace(&mut this.state, State::Done)
                else {
                    unreachable!()
                };
                Poll::Ready(op.complete(cqe))
            }
            State::Done => panic!("Op polled after it completed"),
        }
    }
}

impl<T: OpCode> Drop for Op<T> {
    fn drop(&mut self) {
        let State::InFlight { id, driver, op } = std::mem::replace(&mut self.state, State::Done)
        else {
            return;
        };
        orphan_or_leak(id, driver, Box::new(Orphaned(op)));
    }
}

/// Submits `op` without waiting for it: the driver owns it from now on, runs `complete` at its
/// CQE and drops the output. For work nobody awaits, such as closing an fd from a `Drop` impl.
///
/// # Errors
/// Gives `op` back, unsubmitted, when called outside a corio core or when the kernel lacks the
/// opcode; the caller then does the work another way (a plain `close(2)`, say).
pub fn submit_detached<T: OpCode>(op: T) -> Result<(), T> {
    let supported = context::try_with_driver(|d| d.supports(T::CODE)).unwrap_or(false);
    if !supported {
        return Err(op);
    }
    // Box first: the SQE may point into the op itself, which must not move afterwards (I1).
    let mut op = Some(Box::new(op));
    let pushed = context::try_with_driver(|d| {
        let mut op = op.take().expect("taken once");
        let sqe = op.sqe();
        d.push_op(sqe, Slot::Orphaned(Box::new(Orphaned(op))));
    });
    match (pushed, op) {
        (Some(()), _) => Ok(()),
        // The driver is busy (we run inside it): give the op back, never submitted.
        (None, Some(op)) => Err(*op),
        (None, None) => unreachable!("the closure ran but reported no push"),
    }
}

/// Hands a dropped op's resources to the driver it was submitted on, or leaks them if that
/// driver is not this thread's current one (gone, or busy running this very drop): the kernel
/// may still touch them, and freeing them would be unsound (I1).
pub(crate) fn orphan_or_leak(id: usize, driver: u64, orphan: Box<dyn Orphan>) {
    let mut orphan = Some(orphan);
    let finished = context::try_with_driver(|d| {
        (d.id() == driver).then(|| d.orphan(id, orphan.take().expect("taken once")))
    })
    .flatten();
    if let Some(Some((orphan, cqe))) = finished {
        orphan.finish(cqe);
    }
    if let Some(orphan) = orphan {
        std::mem::forget(orphan);
    }
}

/// A dropped single-shot op, kept until its CQE.
struct Orphaned<T>(Box<T>);

impl<T: OpCode> Orphan for Orphaned<T> {
    fn item(&mut self, _cqe: Cqe) {
        // A single-shot op posts no intermediate CQEs; nothing to release.
    }

    fn finish(self: Box<Self>, cqe: Cqe) {
        drop(self.0.complete(cqe));
    }
}
