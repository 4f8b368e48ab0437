//! Op futures: [`Op<T>`] for single-shot opcodes and [`MultiOp<T>`] for multishot ones, over
//! one submitted-op helper (`submitted.rs`) that owns submit, poll, cancel and
//! orphan-on-drop once.
//!
//! An opcode (corio-io's reads, writes, accepts; corio-rt's [`Nop`]) says only how to build its
//! SQE and what its CQE means. The op future submits the SQE on first poll, waits for the CQE,
//! hands it to the opcode, and when dropped in flight moves the boxed opcode into its slot as an
//! orphan and queues an ASYNC_CANCEL, so the kernel never writes into freed memory (driver
//! invariant I1). An opcode may say what to keep of a result nobody will see
//! ([`OpCode::abandoned`]): corio-io's socket reads keep the bytes for the next read.

mod multi;
mod nop;
mod submitted;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use io_uring::squeue;

pub use crate::driver::Cqe;
use crate::driver::Orphan;
pub use multi::{MultiOp, MultishotCode};
pub use nop::{nop, Nop};
use submitted::Submitted;

/// An operation the ring can run once: one SQE, one CQE.
///
/// # Safety
/// `Op` keeps `self` boxed at one address from the call to `sqe` until the final CQE has been
/// passed to `complete` (or `abandoned`); every pointer `sqe` puts in the entry must point into
/// `self` or into heap memory `self` owns and does not free or move before then. The kernel must
/// post exactly one CQE for the SQE: an op that posts more (SEND_ZC's notification, multishot
/// ops) is a [`MultishotCode`]. `sqe` may be called again after a CQE of `EINTR` or `EAGAIN`
/// (the kernel did nothing), to submit the op once more.
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
    /// The final CQE of an op whose future was dropped: nobody will see the output. The default
    /// drops it; an op whose result must not be lost (bytes a socket read took from the kernel)
    /// keeps it somewhere the next op finds it. Runs on the core's thread, outside the driver.
    fn abandoned(self, cqe: Cqe)
    where
        Self: Sized,
    {
        drop(self.complete(cqe));
    }
}

/// An op future that can be cancelled and still give back its output: the buffer it holds and,
/// if the op completed before the cancel reached it, its real result.
///
/// [`Op`] implements it, and so do corio-io's read futures; [`cancel`](Cancellable::cancel)
/// and [`time::timeout_or_cancel`](crate::time::timeout_or_cancel) build on it.
pub trait Cancellable: Future + Unpin {
    /// Asks for the op to be cancelled; polling the future afterwards yields its output (an
    /// `ECANCELED` error, or the result of an op that completed first). No effect once the
    /// future has completed.
    fn start_cancel(&mut self);

    /// Cancels the op and waits for its output.
    ///
    /// # Examples
    /// ```
    /// use corio::rt::Cancellable;
    /// corio::block_on(async {
    ///     let mut nop = corio::rt::nop();
    ///     let _ = futures_util::poll!(&mut nop); // in flight now
    ///     let result = nop.cancel().await; // ECANCELED, or Ok if the NOP won the race
    ///     assert!(result.is_ok() || result.unwrap_err().raw_os_error() == Some(libc::ECANCELED));
    /// });
    /// ```
    fn cancel(mut self) -> impl Future<Output = Self::Output>
    where
        Self: Sized,
    {
        self.start_cancel();
        self
    }
}

/// Times in a row an op is submitted again after `EINTR` or `EAGAIN` before the error is
/// returned (a non-blocking fd would otherwise spin the core forever).
const MAX_RETRIES: u8 = 16;

/// The future of one single-shot op.
///
/// Created by an opcode's public method (`Op::new(ReadAt { .. })`); submits on first poll. A CQE
/// of `EINTR` or `EAGAIN` (the kernel did nothing) submits the op again, up to 16 times in a row.
///
/// # Cancellation
/// Dropping an `Op` that was submitted and has not completed submits `IORING_OP_ASYNC_CANCEL`
/// for it; the opcode and everything it owns stay in the driver until the kernel posts the final
/// CQE, then [`OpCode::abandoned`] runs. [`Cancellable::cancel`] cancels it and returns its
/// output instead.
///
/// An `Op` is `!Send`: it belongs to the ring it was submitted on.
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<corio::rt::Op<corio::rt::Nop>>();
/// ```
#[must_use = "an op does nothing until it is awaited"]
pub struct Op<T: OpCode> {
    op: Option<Box<T>>,
    submitted: Option<Submitted>,
    retries: u8,
    cancelled: bool,
    /// An op belongs to the ring it was submitted on: `!Send`.
    _core: PhantomData<*const ()>,
}

impl<T: OpCode> Op<T> {
    /// Wraps an opcode; nothing is submitted until the first poll.
    pub fn new(op: T) -> Op<T> {
        Op {
            op: Some(Box::new(op)),
            submitted: None,
            retries: 0,
            cancelled: false,
            _core: PhantomData,
        }
    }

    /// Whether the op has been submitted and has not completed yet.
    pub fn is_in_flight(&self) -> bool {
        self.submitted.is_some()
    }

    fn take_op(&mut self) -> T {
        *self.op.take().expect("Op polled after it completed")
    }
}

impl<T: OpCode> Future for Op<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.get_mut();
        loop {
            let Some(submitted) = &this.submitted else {
                if this.cancelled {
                    return Poll::Ready(this.take_op().complete(Cqe::new(-libc::ECANCELED, 0)));
                }
                let op = this.op.as_mut().expect("Op polled after it completed");
                this.submitted = Submitted::submit(T::CODE, false, cx.waker(), || op.sqe());
                if this.submitted.is_none() {
                    let unsupported = Cqe::new(-libc::EOPNOTSUPP, 0);
                    return Poll::Ready(this.take_op().complete(unsupported));
                }
                return Poll::Pending;
            };
            let Poll::Ready(cqe) = submitted.poll(cx.waker()) else {
                return Poll::Pending;
            };
            this.submitted.take().expect("in flight").finish();
            let transient = matches!(-cqe.raw_result(), libc::EINTR | libc::EAGAIN);
            if transient && !this.cancelled && this.retries < MAX_RETRIES {
                this.retries += 1;
                continue; // the kernel did nothing: submit again
            }
            return Poll::Ready(this.take_op().complete(cqe));
        }
    }
}

impl<T: OpCode> Cancellable for Op<T> {
    fn start_cancel(&mut self) {
        self.cancelled = true;
        if let Some(submitted) = &self.submitted {
            submitted.cancel();
        }
    }
}

impl<T: OpCode> Drop for Op<T> {
    fn drop(&mut self) {
        if let (Some(submitted), Some(op)) = (self.submitted.take(), self.op.take()) {
            submitted.orphan(Box::new(Orphaned(op)));
        }
    }
}

/// Submits `op` without waiting for it: the driver owns it from now on, runs `complete` at its
/// CQE and drops the output. For work nobody awaits, such as closing an fd from a `Drop` impl.
///
/// # Errors
/// Gives `op` back, unsubmitted, when called outside a corio core, from inside the driver (a
/// waker), or when the kernel lacks the opcode; the caller then does the work another way (a
/// plain `close(2)`, say).
pub fn submit_detached<T: OpCode>(op: T) -> Result<(), T> {
    let supported = crate::context::try_with_driver(|d| d.supports(T::CODE)).unwrap_or(false);
    if !supported {
        return Err(op);
    }
    Submitted::detach(Box::new(op)).map_err(|op| *op)
}

/// A dropped single-shot op, kept until its CQE.
pub(super) struct Orphaned<T>(pub(super) Box<T>);

impl<T: OpCode> Orphan for Orphaned<T> {
    fn item(&mut self, _cqe: Cqe) {
        // A single-shot op posts no intermediate CQEs; nothing to release.
    }

    fn finish(self: Box<Self>, cqe: Cqe) {
        self.0.abandoned(cqe);
    }
}
/// Op futures on a real core: submission, cancellation on drop, detached ops, multishot streams.
#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::pin::pin;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use io_uring::{opcode, squeue, types};

    use super::{Cancellable, Cqe, MultiOp, MultishotCode, Op, OpCode};
    use crate::testing::{open_fds, pipe, poll_once, serial, Counted};
    use crate::{block_on, in_flight, spawn};

    struct PipeRead {
        fd: Rc<OwnedFd>,
        buf: Counted,
    }

    // SAFETY: the SQE points into `buf.0`'s heap storage, owned by the op.
    unsafe impl OpCode for PipeRead {
        const CODE: u8 = opcode::Read::CODE;
        type Output = (std::io::Result<usize>, Counted);
        fn sqe(&mut self) -> squeue::Entry {
            let buf = &mut self.buf.0;
            opcode::Read::new(
                types::Fd(self.fd.as_raw_fd()),
                buf.as_mut_ptr(),
                buf.capacity() as u32,
            )
            .build()
        }
        fn complete(mut self, cqe: Cqe) -> Self::Output {
            let n = cqe.bytes();
            if let Ok(n) = n {
                // SAFETY: the kernel wrote `n` bytes into the buffer's capacity.
                unsafe { self.buf.0.set_len(n) };
            }
            (n, self.buf)
        }
    }

    struct MultiTimeout(types::Timespec, u32);

    // SAFETY: the SQE points at the timespec inside the boxed op.
    unsafe impl MultishotCode for MultiTimeout {
        const CODE: u8 = opcode::Timeout::CODE;
        type Item = i32;
        fn sqe(&mut self) -> squeue::Entry {
            opcode::Timeout::new(&self.0)
                .count(self.1)
                .flags(types::TimeoutFlags::MULTISHOT)
                .build()
        }
        fn item(&mut self, cqe: Cqe) -> i32 {
            cqe.raw_result()
        }
    }

    /// A single-shot `IORING_OP_TIMEOUT`; the timespec lives in the boxed op.
    struct Timeout(types::Timespec);

    // SAFETY: the SQE points at the timespec inside the boxed op.
    unsafe impl OpCode for Timeout {
        const CODE: u8 = opcode::Timeout::CODE;
        type Output = i32;
        fn sqe(&mut self) -> squeue::Entry {
            opcode::Timeout::new(&self.0).build()
        }
        fn complete(self, cqe: Cqe) -> i32 {
            cqe.raw_result()
        }
    }

    #[test]
    fn dropped_reads_release_everything() {
        let _serial = serial();
        block_on(async {
            let fds_before = open_fds();
            let dropped = Arc::new(AtomicUsize::new(0));
            let (rx, tx) = pipe();
            for _ in 0..1_000 {
                let buf = crate::testing::counted(64, &dropped);
                let mut read = Op::new(PipeRead {
                    fd: rx.clone(),
                    buf,
                });
                assert!(poll_once(&mut read).is_pending()); // submitted on first poll
            } // dropped in flight: orphaned, ASYNC_CANCEL queued
            assert!(in_flight() > 0, "orphans wait for their CQEs");
            while in_flight() > 0 {
                crate::yield_now().await;
            }
            assert_eq!(dropped.load(Ordering::SeqCst), 1_000);
            assert_eq!(Rc::strong_count(&rx), 1, "every orphan released its fd");
            // The ring still works: a read that is written to completes with the bytes.
            let buf = crate::testing::counted(64, &dropped);
            let read = Op::new(PipeRead {
                fd: rx.clone(),
                buf,
            });
            // SAFETY: writes 2 bytes from a static to the pipe's write end.
            let written = unsafe { libc::write(tx.as_raw_fd(), b"ok".as_ptr().cast(), 2) };
            assert_eq!(written, 2);
            let (n, buf) = read.await;
            assert_eq!((n.unwrap(), &buf.0[..]), (2, &b"ok"[..]));
            drop((rx, tx, buf));
            assert_eq!(open_fds(), fds_before);
        });
    }

    #[test]
    fn dropped_long_timeouts_release_their_slots() {
        let _serial = serial();
        block_on(async {
            for _ in 0..1_000 {
                let mut op = Op::new(Timeout(types::Timespec::new().sec(3600)));
                assert!(poll_once(&mut op).is_pending());
            }
            while in_flight() > 0 {
                crate::yield_now().await;
            }
            let short = Op::new(Timeout(types::Timespec::new().nsec(1_000)));
            assert_eq!(short.await, -libc::ETIME, "the ring still works");
        });
    }

    #[test]
    fn a_timeout_of_centuries_waits_and_is_cancelled() {
        let _serial = serial();
        block_on(async {
            // Past what `Instant` holds (the epoll driver's clock): it must wait, not panic.
            let mut op = Op::new(Timeout(types::Timespec::new().sec(i64::MAX as u64)));
            assert!(poll_once(&mut op).is_pending());
            assert_eq!(op.cancel().await, -libc::ECANCELED);
            assert_eq!(in_flight(), 0);
        });
    }

    #[test]
    fn detached_ops_complete_and_release_their_resources() {
        let _serial = serial();
        let dropped = Arc::new(AtomicUsize::new(0));
        block_on(async {
            let (rx, tx) = pipe();
            let buf = crate::testing::counted(8, &dropped);
            assert!(super::submit_detached(PipeRead {
                fd: rx.clone(),
                buf
            })
            .is_ok());
            assert_eq!(in_flight(), 1);
            // SAFETY: writes 1 byte from a static to the pipe's write end.
            let written = unsafe { libc::write(tx.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            assert_eq!(written, 1);
            while in_flight() > 0 {
                crate::yield_now().await;
            }
            assert_eq!(Rc::strong_count(&rx), 1);
        });
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn more_ops_than_sq_and_cq_entries_all_complete() {
        let _serial = serial();
        let core = crate::core::Core::new(crate::CoreId(0), 4, None).unwrap();
        let done = core.block_on(async {
            let tasks: Vec<_> = (0..10_000)
                .map(|_| spawn(async { crate::nop().await }))
                .collect();
            let mut done = 0;
            for task in tasks {
                task.await.unwrap().unwrap();
                done += 1;
            }
            done
        });
        assert_eq!(done, 10_000);
    }

    #[test]
    fn multishot_streams_until_final_cqe() {
        let _serial = serial();
        block_on(async {
            let ts = types::Timespec::new().nsec(100_000);
            let mut ticks = MultiOp::new(MultiTimeout(ts, 3));
            let mut results = Vec::new();
            while let Some(res) = ticks.next().await {
                results.push(res);
            }
            assert_eq!(results, vec![-libc::ETIME; 3]);
            assert_eq!(in_flight(), 0);
        });
    }

    #[test]
    fn dropped_multishot_is_cancelled() {
        let _serial = serial();
        block_on(async {
            let ts = types::Timespec::new().sec(3600);
            let mut ticks = MultiOp::new(MultiTimeout(ts, 0));
            assert!(futures_util::poll!(pin!(ticks.next())).is_pending());
            assert_eq!(in_flight(), 1);
            drop(ticks);
            while in_flight() > 0 {
                crate::yield_now().await;
            }
        });
    }

    #[test]
    fn dropped_in_flight_ops_at_shutdown_do_not_leak_fds() {
        let _serial = serial();
        let fds_before = open_fds();
        let dropped = Arc::new(AtomicUsize::new(0));
        block_on(async {
            let (rx, _tx) = pipe();
            for _ in 0..10 {
                let buf = crate::testing::counted(8, &dropped);
                let read = Op::new(PipeRead {
                    fd: rx.clone(),
                    buf,
                });
                spawn(read).detach(); // never completes: the core's shutdown must cancel it
            }
            crate::yield_now().await;
            assert_eq!(in_flight(), 10);
        });
        assert_eq!(dropped.load(Ordering::SeqCst), 10);
        assert_eq!(open_fds(), fds_before);
    }

    #[test]
    fn cancel_gives_back_the_buffer_and_a_result_that_arrived() {
        let _serial = serial();
        let dropped = Arc::new(AtomicUsize::new(0));
        block_on(async {
            let (rx, tx) = pipe();
            // Nothing written: the cancel wins, the buffer comes back with ECANCELED.
            let mut read = Op::new(PipeRead {
                fd: rx.clone(),
                buf: crate::testing::counted(8, &dropped),
            });
            assert!(poll_once(&mut read).is_pending());
            let (res, buf) = read.cancel().await;
            assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
            assert_eq!(buf.0.capacity(), 8);
            drop(buf);
            // Bytes arrive before the cancel is seen: the result is the read's, not lost.
            let mut read = Op::new(PipeRead {
                fd: rx.clone(),
                buf: crate::testing::counted(8, &dropped),
            });
            assert!(poll_once(&mut read).is_pending());
            crate::testing::write_fd(&tx, b"abc");
            crate::yield_now().await; // a tick: the read completes with the bytes
            let (res, buf) = read.cancel().await;
            assert_eq!((res.unwrap(), &buf.0[..]), (3, &b"abc"[..]));
            assert_eq!(in_flight(), 0);
        });
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_op_not_yet_submitted_cancels_without_the_ring() {
        let _serial = serial();
        block_on(async {
            let res = crate::nop().cancel().await;
            assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
            assert_eq!(crate::metrics().sqes_submitted, 0);
        });
    }

    /// An op whose abandoned result is recorded, as a socket read keeps its bytes.
    struct Keeps(Rc<std::cell::Cell<i32>>);
    // SAFETY: a NOP carries no pointers.
    unsafe impl OpCode for Keeps {
        const CODE: u8 = opcode::Nop::CODE;
        type Output = ();
        fn sqe(&mut self) -> squeue::Entry {
            opcode::Nop::new().build()
        }
        fn complete(self, _cqe: Cqe) {}
        fn abandoned(self, cqe: Cqe) {
            self.0.set(cqe.raw_result() + 100);
        }
    }

    #[test]
    fn a_dropped_op_hands_its_result_to_abandoned() {
        let _serial = serial();
        block_on(async {
            let kept = Rc::new(std::cell::Cell::new(-1));
            let mut op = Op::new(Keeps(kept.clone()));
            assert!(poll_once(&mut op).is_pending());
            drop(op);
            while in_flight() > 0 {
                crate::yield_now().await;
            }
            // The NOP either completed (0) or was cancelled (-ECANCELED): either way it was seen.
            assert!(
                [100, 100 - libc::ECANCELED].contains(&kept.get()),
                "{}",
                kept.get()
            );
        });
    }

    #[test]
    fn eintr_and_eagain_are_retried_ecanceled_is_returned() {
        let _serial = serial();
        let plan = crate::FaultPlan::new(3)
            .eintr(0.3)
            .eagain(0.3)
            .ecanceled(0.05);
        let core = crate::core::Core::new(crate::CoreId(0), 32, Some(plan)).unwrap();
        let (ok, cancelled) = core.block_on(async {
            let (mut ok, mut cancelled) = (0, 0);
            for _ in 0..2_000 {
                match crate::nop().await {
                    Ok(()) => ok += 1,
                    Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => cancelled += 1,
                    Err(e) => panic!("a transient error reached the caller: {e}"),
                }
            }
            (ok, cancelled)
        });
        assert_eq!(ok + cancelled, 2_000);
        assert!(
            cancelled > 20 && ok > 1_500,
            "{ok} ok, {cancelled} cancelled"
        );
    }
}
