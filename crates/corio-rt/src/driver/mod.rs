//! The ring driver: one io_uring per core, the slots of the ops in flight, and the tick that
//! submits SQEs, waits (bounded by the next timer deadline) and reaps CQEs.
//!
//! # Invariants
//! - I1: until its final CQE, an op's resources belong to its future (`Op`, `MultiOp`) or, once
//!   that is dropped, to its slot (`Slot::Orphaned`); nothing the kernel may touch is freed
//!   earlier, whatever the drop order.
//! - I2: an SQE's `user_data` is a live slot's index, or one of the reserved tags below; a slot
//!   is freed only after its final CQE is reaped, so an index is never reused while the kernel
//!   may still post to it.
//! - I3: only the owning core's thread touches the ring (it is set up `SINGLE_ISSUER`).
//! - I4: no SQE is ever dropped: a full SQ is submitted and the push retried; a CQ overflow is
//!   kept by the kernel (`FEAT_NODROP`) and flushed by entering with `GETEVENTS`.

mod doorbell;
pub(crate) mod multishot;
pub(crate) mod nop;
pub(crate) mod op;
pub(crate) mod register;
mod ring;
mod slots;

use std::io;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, register::Probe, squeue, types, EnterFlags, IoUring};

pub(crate) use doorbell::Doorbell;
pub use doorbell::Poke;
pub use ring::Setup;
use slots::{Orphan, Reaped, Slot, Slots};

use op::Cqe;

/// `user_data` of ASYNC_CANCEL SQEs, whose own CQEs carry nothing we need.
const CANCEL_TAG: u64 = u64::MAX;
/// `user_data` of the pending read on the doorbell eventfd.
const DOORBELL_TAG: u64 = u64::MAX - 1;
/// `user_data` of the CQE another core's MSG_RING poke posts here.
const POKE_TAG: u64 = u64::MAX - 2;

/// How long a tick may block in `io_uring_enter`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Park {
    /// Tasks are runnable: submit and reap, never block.
    No,
    /// Nothing is runnable: block until a CQE, or until the deadline (`None`: no deadline).
    Until(Option<Duration>),
}

/// Hands out a process-unique id per driver, so an op can tell the ring it was submitted on.
static NEXT_DRIVER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One core's ring and everything in flight on it.
pub(crate) struct Driver {
    id: u64,
    ring: IoUring,
    setup: Setup,
    probe: Probe,
    slots: Slots,
    doorbell: Arc<Doorbell>,
    /// The 8 bytes the pending doorbell read writes into; boxed so it never moves (I1).
    doorbell_buf: Box<u64>,
    doorbell_armed: bool,
    /// Orphans whose final CQE arrived, to be finished outside the driver borrow.
    graveyard: Vec<(Box<dyn Orphan>, Cqe)>,
    /// The next provided-buffer group id to hand out.
    next_buf_group: u16,
    /// Wakers of ops whose CQEs were reaped, woken once the driver is no longer borrowed.
    woken: Vec<Waker>,
}

impl Driver {
    /// Sets up a ring of `entries` SQEs (see [`ring::build`]).
    pub(crate) fn new(entries: u32, doorbell: Arc<Doorbell>) -> io::Result<Driver> {
        let ring = ring::build(entries)?;
        Ok(Driver {
            id: NEXT_DRIVER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ring: ring.uring,
            setup: ring.setup,
            probe: ring.probe,
            slots: Slots::default(),
            doorbell,
            doorbell_buf: Box::new(0),
            doorbell_armed: false,
            graveyard: Vec::new(),
            next_buf_group: 0,
            woken: Vec::new(),
        })
    }

    /// This driver's process-unique id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Moves the wakers of reaped ops into `out` (empty), to be woken outside the borrow.
    pub(crate) fn swap_woken(&mut self, out: &mut Vec<Waker>) {
        std::mem::swap(&mut self.woken, out);
    }

    pub(crate) fn has_woken(&self) -> bool {
        !self.woken.is_empty()
    }

    /// Gets ready to block: keeps a read pending on the doorbell. Pushing it may flush a full
    /// SQ and reap, so the caller must look for woken tasks again afterwards.
    pub(crate) fn prepare_park(&mut self) {
        self.arm_doorbell();
    }

    pub(crate) fn setup(&self) -> Setup {
        self.setup
    }

    pub(crate) fn supports(&self, code: u8) -> bool {
        self.probe.is_supported(code)
    }

    pub(crate) fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    pub(crate) fn ring_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.ring)
    }

    pub(crate) fn next_buf_group(&mut self) -> u16 {
        let id = self.next_buf_group;
        self.next_buf_group = self.next_buf_group.wrapping_add(1);
        id
    }

    /// Ops in flight, orphans included.
    pub(crate) fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Takes a slot for a new op and queues its SQE. Returns the slot id.
    pub(crate) fn push_op(&mut self, sqe: squeue::Entry, slot: Slot) -> usize {
        let id = self.slots.insert(slot);
        self.push_sqe(&sqe.user_data(id as u64));
        id
    }

    /// Polls a single-shot op: its CQE if it has arrived (freeing the slot), else stores `waker`.
    pub(crate) fn poll_single(&mut self, id: usize, waker: &Waker) -> Poll<Cqe> {
        match self.slots.get_mut(id) {
            Slot::Done(_) => {
                let Slot::Done(cqe) = self.slots.remove(id) else {
                    unreachable!()
                };
                Poll::Ready(cqe)
            }
            Slot::Waiting(slot_waker) => {
                set_waker(slot_waker, waker);
                Poll::Pending
            }
            _ => unreachable!("slot {id} is not a single-shot op"),
        }
    }

    /// Polls a multishot op: its next CQE, freeing the slot after the final one.
    pub(crate) fn poll_multi(&mut self, id: usize, waker: &Waker) -> Poll<Cqe> {
        let Slot::Multi {
            queue,
            waker: slot_waker,
        } = self.slots.get_mut(id)
        else {
            unreachable!("slot {id} is not a multishot op");
        };
        let Some(cqe) = queue.pop_front() else {
            set_waker(slot_waker, waker);
            return Poll::Pending;
        };
        if !cqe.more() {
            self.slots.remove(id);
        }
        Poll::Ready(cqe)
    }

    /// Takes over the resources of an op whose future was dropped.
    ///
    /// Returns the orphan with its final CQE if that has already arrived: the caller finishes it
    /// once the driver is no longer borrowed. Otherwise the orphan is parked in the slot and an
    /// ASYNC_CANCEL is queued.
    pub(crate) fn orphan(
        &mut self,
        id: usize,
        mut orphan: Box<dyn Orphan>,
    ) -> Option<(Box<dyn Orphan>, Cqe)> {
        let slot = self.slots.get_mut(id);
        match slot {
            Slot::Done(_) => {
                let Slot::Done(cqe) = self.slots.remove(id) else {
                    unreachable!()
                };
                return Some((orphan, cqe));
            }
            Slot::Multi { queue, .. } => {
                while let Some(cqe) = queue.pop_front() {
                    if !cqe.more() {
                        self.slots.remove(id);
                        return Some((orphan, cqe));
                    }
                    orphan.item(cqe);
                }
            }
            Slot::Waiting(_) => {}
            Slot::Orphaned(_) => unreachable!("slot {id} orphaned twice"),
        }
        *self.slots.get_mut(id) = Slot::Orphaned(orphan);
        self.push_sqe(
            &opcode::AsyncCancel::new(id as u64)
                .build()
                .user_data(CANCEL_TAG),
        );
        None
    }

    /// Orphans whose final CQE has arrived; finish them outside the driver borrow.
    pub(crate) fn take_graveyard(&mut self) -> Vec<(Box<dyn Orphan>, Cqe)> {
        std::mem::take(&mut self.graveyard)
    }

    /// One turn of the ring: submit every queued SQE, wait as `park` allows, reap every CQE.
    ///
    /// # Errors
    /// An `io_uring_enter` failure other than the transient EINTR, ETIME, EBUSY and EAGAIN.
    pub(crate) fn tick(&mut self, park: Park) -> io::Result<()> {
        let result = match park {
            Park::No => {
                if self.slots.is_empty() && self.ring.submission().is_empty() {
                    return Ok(());
                }
                self.enter_nowait()
            }
            Park::Until(timeout) => {
                self.arm_doorbell(); // armed already by prepare_park; a no-op then
                match timeout {
                    None => self.ring.submit_and_wait(1),
                    Some(timeout) => {
                        let ts = timespec(timeout);
                        let args = types::SubmitArgs::new().timespec(&ts);
                        self.ring.submitter().submit_with_args(1, &args)
                    }
                }
            }
        };
        // Awake again before reaping: wake-ups the CQEs trigger on this thread must not poke
        // the doorbell.
        self.doorbell.unpark();
        transient_ok(result)?;
        self.reap();
        Ok(())
    }

    /// Queues an SQE; a full SQ is submitted first (I4).
    fn push_sqe(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: every SQE the driver pushes satisfies I1 (opcodes promise it through the
            // unsafe OpCode/MultishotCode traits; the doorbell read targets `doorbell_buf`, and
            // ASYNC_CANCEL carries no pointer).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            // The SQ is full: hand it to the kernel and reap, which also frees CQ room if the
            // kernel refused with EBUSY because of overflowed CQEs.
            if let Err(err) = transient_ok(self.enter_nowait()) {
                panic!("io_uring_enter failed while the SQ was full: {err}");
            }
            self.reap();
        }
    }

    /// Submits what is queued and processes completions without waiting for any.
    fn enter_nowait(&mut self) -> io::Result<usize> {
        let to_submit = self.ring.submission().len() as u32;
        // SAFETY: no extended argument is passed; the flags are valid for io_uring_enter.
        unsafe {
            self.ring.submitter().enter::<libc::sigset_t>(
                to_submit,
                0,
                EnterFlags::GETEVENTS.bits(),
                None,
            )
        }
    }

    /// Pokes the ring `target_fd` (another core's) with an `IORING_OP_MSG_RING`, submitted at
    /// once. False if this ring lacks the opcode or the submit failed: use the eventfd then.
    pub(crate) fn msg_ring(&mut self, target_fd: std::os::fd::RawFd) -> bool {
        if !self.probe.is_supported(opcode::MsgRingData::CODE) {
            return false;
        }
        let sqe = opcode::MsgRingData::new(types::Fd(target_fd), 0, POKE_TAG, None)
            .build()
            .user_data(CANCEL_TAG);
        self.push_sqe(&sqe);
        transient_ok(self.enter_nowait()).is_ok()
    }

    /// Keeps a read pending on the doorbell eventfd, so a remote poke ends a wait.
    fn arm_doorbell(&mut self) {
        if self.doorbell_armed {
            return;
        }
        let buf: *mut u64 = &mut *self.doorbell_buf;
        let sqe = opcode::Read::new(types::Fd(self.doorbell.raw_fd()), buf.cast(), 8)
            .build()
            .user_data(DOORBELL_TAG);
        self.push_sqe(&sqe);
        self.doorbell_armed = true;
    }

    /// Moves every CQE into its slot, flushing overflowed CQEs kept by the kernel (I4).
    fn reap(&mut self) {
        loop {
            let mut cq = self.ring.completion();
            for entry in &mut cq {
                let cqe = Cqe::new(entry.result(), entry.flags());
                match entry.user_data() {
                    CANCEL_TAG | POKE_TAG => {}
                    DOORBELL_TAG => self.doorbell_armed = false,
                    id => match self.slots.reap(id as usize, cqe) {
                        Reaped::Orphan(orphan, cqe) => self.graveyard.push((orphan, cqe)),
                        Reaped::Wake(waker) => self.woken.push(waker),
                        Reaped::Nothing => {}
                    },
                }
            }
            drop(cq);
            if !self.ring.submission().cq_overflow() {
                return;
            }
            // The kernel holds CQEs that did not fit; entering with GETEVENTS flushes them.
            if let Err(err) = transient_ok(self.enter_nowait()) {
                panic!("io_uring_enter failed while flushing CQ overflow: {err}");
            }
        }
    }

    /// Cancels every op still in flight and waits (at most about a second) for the kernel to
    /// release them, so the ring can be closed without it writing into freed memory. Orphans
    /// that never completed are leaked rather than freed (I1).
    pub(crate) fn shutdown(&mut self) -> Vec<(Box<dyn Orphan>, Cqe)> {
        for id in self.slots.ids() {
            self.push_sqe(
                &opcode::AsyncCancel::new(id as u64)
                    .build()
                    .user_data(CANCEL_TAG),
            );
        }
        if self.doorbell_armed {
            self.push_sqe(
                &opcode::AsyncCancel::new(DOORBELL_TAG)
                    .build()
                    .user_data(CANCEL_TAG),
            );
        }
        for _ in 0..100 {
            if self.slots.is_empty() && !self.doorbell_armed {
                break;
            }
            let ts = timespec(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap();
        }
        if self.doorbell_armed {
            // The kernel may still write these 8 bytes: leak them.
            std::mem::forget(std::mem::take(&mut self.doorbell_buf));
        }
        self.slots.leak_all();
        self.take_graveyard()
    }
}

/// Replaces the stored waker unless it would wake the same task.
fn set_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(old) if old.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// EINTR (a signal), ETIME (the wait's deadline), EBUSY and EAGAIN (the kernel wants CQ room
/// first) end a wait without anything being wrong; EBADR is survived (see below).
fn transient_ok(result: io::Result<usize>) -> io::Result<()> {
    match result {
        Ok(_) => Ok(()),
        // EBADR: the kernel dropped CQEs after an overflow it could not keep (memory pressure);
        // the ops involved never complete, but the ring itself goes on working.
        Err(err)
            if matches!(
                err.raw_os_error(),
                Some(libc::EINTR | libc::ETIME | libc::EBUSY | libc::EAGAIN | libc::EBADR)
            ) =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// A kernel timespec, rounded up to whole microseconds so a wait never ends before a deadline.
fn timespec(d: Duration) -> types::Timespec {
    let d = Duration::from_micros(d.as_nanos().div_ceil(1000) as u64);
    types::Timespec::new()
        .sec(d.as_secs())
        .nsec(d.subsec_nanos())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::future::Future;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::pin::pin;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use io_uring::{opcode, squeue, types};

    use super::multishot::{MultiOp, MultishotCode};
    use super::op::{Cqe, Op, OpCode};
    use crate::{block_on, in_flight, spawn};

    /// A buffer whose drop is counted, so tests can prove orphaned resources are released.
    struct Counted(Vec<u8>, Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

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

    fn pipe() -> (Rc<OwnedFd>, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 returned two fresh fds we now own.
        unsafe {
            (
                Rc::new(OwnedFd::from_raw_fd(fds[0])),
                OwnedFd::from_raw_fd(fds[1]),
            )
        }
    }

    /// Tests that count open fds must not overlap with others that open rings or pipes.
    pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        std::pin::Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn dropped_reads_release_everything() {
        let _serial = serial();
        block_on(async {
            let fds_before = open_fds();
            let dropped = Arc::new(AtomicUsize::new(0));
            let (rx, tx) = pipe();
            for _ in 0..1_000 {
                let buf = Counted(Vec::with_capacity(64), dropped.clone());
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
            let buf = Counted(Vec::with_capacity(64), dropped.clone());
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
    fn detached_ops_complete_and_release_their_resources() {
        let _serial = serial();
        let dropped = Arc::new(AtomicUsize::new(0));
        block_on(async {
            let (rx, tx) = pipe();
            let buf = Counted(Vec::with_capacity(8), dropped.clone());
            assert!(super::op::submit_detached(PipeRead {
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
        let core = crate::context::Core::new(crate::CoreId(0), 4).unwrap();
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
                let buf = Counted(Vec::with_capacity(8), dropped.clone());
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
}
