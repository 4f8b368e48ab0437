//! `OpCode` and `Op<T>`: the one future every single-shot io_uring operation runs as.
//!
//! An opcode (corio-io's reads, writes, accepts; corio-rt's [`Nop`](super::nop::Nop)) says only
//! how to build its SQE and what its CQE means. `Op<T>` owns the lifecycle once: it submits the
//! SQE on first poll, waits for the CQE, hands it to `complete`, and when dropped in flight moves
//! the boxed opcode into its slot as an orphan and queues an ASYNC_CANCEL, so the kernel never
//! writes into freed memory (driver invariant I1).

use std::future::Future;
use std::io;
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
/// then.
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
}

enum State<T> {
    Idle(Box<T>),
    InFlight { id: usize, op: Box<T> },
    Done,
}

impl<T: OpCode> Op<T> {
    /// Wraps an opcode; nothing is submitted until the first poll.
    pub fn new(op: T) -> Op<T> {
        Op {
            state: State::Idle(Box::new(op)),
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
                let id = context::with_driver(|d| d.push_op(sqe, Slot::Waiting(Some(waker))));
                let State::Idle(op) = std::mem::replace(&mut this.state, State::Done) else {
                    unreachable!()
                };
                this.state = State::InFlight { id, op };
                Poll::Pending
            }
            State::InFlight { id, .. } => {
                let id = *id;
                let cqe = match context::with_driver(|d| d.poll_single(id, cx.waker())) {
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
        let State::InFlight { id, op } = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        let mut orphan: Option<Box<dyn Orphan>> = Some(Box::new(Orphaned(op)));
        let finished = context::try_with_driver(|d| d.orphan(id, orphan.take().expect("once")));
        match finished {
            Some(Some((orphan, cqe))) => orphan.finish(cqe),
            Some(None) => {}
            // No driver on this thread any more: the kernel may still write into the op's
            // memory, so leaking it is the only sound choice (I1).
            None => std::mem::forget(orphan),
        }
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
    let mut op = Box::new(op);
    let sqe = op.sqe();
    let orphan: Box<dyn Orphan> = Box::new(Orphaned(op));
    context::with_driver(|d| d.push_op(sqe, Slot::Orphaned(orphan)));
    Ok(())
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
