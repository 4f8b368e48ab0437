//! The ring driver: one io_uring per core, the slots of the ops in flight, and the tick that
//! submits SQEs, waits (bounded by the next timer deadline) and reaps CQEs.
//!
//! The driver is a leaf: it knows nothing of the thread-local, the executor, timers or other
//! cores. The core's loop (`core.rs`) owns it and turns it; the op futures (`op/`) reach it
//! through the core and call [`Driver::submit`], [`Driver::poll`], [`Driver::cancel`] and
//! [`Driver::orphan`]; wakers of reaped ops are handed back to the loop to wake. Its tests drive
//! a ring by hand, with no executor.
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

mod cqe;
pub(crate) mod doorbell;
pub(crate) mod fault;
mod ring;
mod slots;

use std::io;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, register::Probe, squeue, types, EnterFlags, IoUring};

use crate::metrics::Counters;
pub use cqe::Cqe;
pub(crate) use doorbell::Doorbell;
pub use doorbell::Poke;
pub use fault::FaultPlan;
use fault::{Faults, Submission};
pub use ring::Setup;
pub(crate) use slots::{Orphan, Slot};
use slots::{Reaped, Slots};

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
    /// The slots and what reaping into them produces (split off so the CQ can be read while
    /// they are updated).
    table: Table,
    doorbell: Arc<Doorbell>,
    /// The 8 bytes the pending doorbell read writes into; boxed so it never moves (I1).
    doorbell_buf: Box<u64>,
    /// The next provided-buffer group id to hand out.
    next_buf_group: u16,
    counters: Arc<Counters>,
    /// The fault plan being carried out, if any (tests only).
    faults: Option<Faults>,
    /// CQEs the fault plan made up for ops it did not submit, delivered at the next reap.
    injected: Vec<(u64, Cqe)>,
}

impl Driver {
    /// Sets up a ring of `entries` SQEs (see [`ring::build`]).
    pub(crate) fn new(
        entries: u32,
        doorbell: Arc<Doorbell>,
        counters: Arc<Counters>,
        faults: Option<FaultPlan>,
    ) -> io::Result<Driver> {
        let ring = ring::build(entries)?;
        Ok(Driver {
            id: NEXT_DRIVER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ring: ring.uring,
            setup: ring.setup,
            probe: ring.probe,
            table: Table::default(),
            doorbell,
            doorbell_buf: Box::new(0),
            next_buf_group: 0,
            counters,
            faults: faults.map(Faults::new),
            injected: Vec::new(),
        })
    }

    /// This driver's process-unique id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Moves the wakers of reaped ops into `out` (empty), to be woken outside the borrow.
    pub(crate) fn swap_woken(&mut self, out: &mut Vec<Waker>) {
        std::mem::swap(&mut self.table.woken, out);
    }

    pub(crate) fn has_woken(&self) -> bool {
        !self.table.woken.is_empty()
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
        self.table.slots.len()
    }

    /// Takes a slot for a new op and queues its SQE; returns the slot id (the SQE's
    /// `user_data`). A fault plan may complete a single-shot op waited for by a future without
    /// queueing it, or shorten its transfer (see `fault.rs`).
    #[inline]
    pub(crate) fn submit(&mut self, sqe: squeue::Entry, slot: Slot) -> usize {
        let faultable = matches!(slot, Slot::Waiting(_));
        let id = self.table.slots.insert(slot);
        let sqe = match self.faults.as_mut() {
            Some(faults) if faultable => match faults.submission(sqe) {
                Submission::Queue(sqe) => sqe,
                Submission::Fail(errno) => {
                    self.counters.faults_injected.inc();
                    self.injected.push((id as u64, Cqe::new(errno, 0)));
                    return id;
                }
            },
            _ => sqe,
        };
        self.push_sqe(&sqe.user_data(id as u64));
        id
    }

    /// Polls op `id`: its next CQE if one has arrived, else `waker` is stored and woken when one
    /// does. A single-shot op's slot is freed with its CQE; a multishot op's with its final CQE
    /// (the one without `IORING_CQE_F_MORE`).
    #[inline]
    pub(crate) fn poll(&mut self, id: usize, waker: &Waker) -> Poll<Cqe> {
        let ready = match self.table.slots.get_mut(id) {
            Slot::Waiting(slot_waker) => {
                set_waker(slot_waker, waker);
                return Poll::Pending;
            }
            Slot::Multi {
                queue,
                waker: slot_waker,
            } => match queue.pop_front() {
                None => {
                    set_waker(slot_waker, waker);
                    return Poll::Pending;
                }
                Some(cqe) if cqe.more() => return Poll::Ready(cqe),
                Some(cqe) => cqe, // the final one: free the slot below
            },
            Slot::Done(cqe) => *cqe,
            Slot::Orphaned(_) => unreachable!("slot {id} polled after its op was dropped"),
        };
        self.table.slots.remove(id);
        Poll::Ready(ready)
    }

    /// Asks the kernel to cancel op `id`, whose future still waits for it: its final CQE will
    /// say `ECANCELED`, or carry the op's result if it completed first.
    pub(crate) fn cancel(&mut self, id: usize) {
        if matches!(self.table.slots.get_mut(id), Slot::Done(_)) {
            return; // finished already: nothing to cancel
        }
        self.push_cancel(id as u64);
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
        self.counters.orphaned_ops.inc();
        match self.table.slots.get_mut(id) {
            Slot::Done(_) => {
                return Some((orphan, self.table.slots.remove_done(id)));
            }
            Slot::Multi { queue, .. } => {
                while let Some(cqe) = queue.pop_front() {
                    if !cqe.more() {
                        self.table.slots.remove(id);
                        return Some((orphan, cqe));
                    }
                    orphan.item(cqe);
                }
            }
            Slot::Waiting(_) => {}
            Slot::Orphaned(_) => unreachable!("slot {id} orphaned twice"),
        }
        *self.table.slots.get_mut(id) = Slot::Orphaned(orphan);
        self.push_cancel(id as u64);
        None
    }

    /// Counts a multishot op submitted again after the kernel ended it.
    pub(crate) fn note_rearm(&mut self) {
        self.counters.multishot_rearms.inc();
    }

    /// Orphans whose final CQE has arrived; finish them outside the driver borrow.
    pub(crate) fn take_graveyard(&mut self) -> Vec<(Box<dyn Orphan>, Cqe)> {
        std::mem::take(&mut self.table.graveyard)
    }

    /// One turn of the ring: submit every queued SQE, wait as `park` allows, reap every CQE.
    ///
    /// # Errors
    /// An `io_uring_enter` failure other than the transient EINTR, ETIME, EBUSY and EAGAIN.
    pub(crate) fn tick(&mut self, park: Park) -> io::Result<()> {
        let result = match park {
            Park::No => {
                if self.table.slots.is_empty() && self.ring.submission().is_empty() {
                    return Ok(());
                }
                self.enter_nowait()
            }
            Park::Until(_) if !self.injected.is_empty() => self.enter_nowait(),
            Park::Until(timeout) => {
                self.arm_doorbell(); // armed already by prepare_park; a no-op then
                let to_submit = self.ring.submission().len();
                self.count_enter(to_submit);
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
        if self.faults.as_mut().is_some_and(Faults::sq_full) {
            self.counters.faults_injected.inc();
            self.flush_full_sq();
        }
        loop {
            // SAFETY: every SQE the driver pushes satisfies I1 (opcodes promise it through the
            // unsafe OpCode/MultishotCode traits; the doorbell read targets `doorbell_buf`, and
            // ASYNC_CANCEL carries no pointer).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            self.flush_full_sq();
        }
    }

    /// The SQ is full: hand it to the kernel and reap, which also frees CQ room if the kernel
    /// refused with EBUSY because of overflowed CQEs.
    fn flush_full_sq(&mut self) {
        self.counters.sq_full_waits.inc();
        if let Err(err) = transient_ok(self.enter_nowait()) {
            panic!("io_uring_enter failed while the SQ was full: {err}");
        }
        self.reap_all();
    }

    fn push_cancel(&mut self, target: u64) {
        self.counters.cancels.inc();
        self.push_sqe(
            &opcode::AsyncCancel::new(target)
                .build()
                .user_data(CANCEL_TAG),
        );
    }

    fn count_enter(&self, to_submit: usize) {
        self.counters.enters.inc();
        self.counters.sqes_submitted.add(to_submit as u64);
    }

    /// Submits what is queued and processes completions without waiting for any.
    fn enter_nowait(&mut self) -> io::Result<usize> {
        let to_submit = self.ring.submission().len();
        self.count_enter(to_submit);
        let to_submit = to_submit as u32;
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
        if self.table.doorbell_armed {
            return;
        }
        let buf: *mut u64 = &mut *self.doorbell_buf;
        let sqe = opcode::Read::new(types::Fd(self.doorbell.raw_fd()), buf.cast(), 8)
            .build()
            .user_data(DOORBELL_TAG);
        self.push_sqe(&sqe);
        self.table.doorbell_armed = true;
    }

    /// Reaps, unless the fault plan holds the CQ for this tick.
    fn reap(&mut self) {
        if self.faults.as_mut().is_some_and(Faults::cq_hold) {
            self.counters.faults_injected.inc();
            return;
        }
        self.reap_all();
    }

    /// Moves every CQE into its slot, flushing overflowed CQEs kept by the kernel (I4). Under
    /// a fault plan the CQEs go through a batch first, which the plan may reorder.
    fn reap_all(&mut self) {
        if !self.injected.is_empty() {
            for (user_data, cqe) in std::mem::take(&mut self.injected) {
                self.table.complete(&self.counters, user_data, cqe);
            }
        }
        loop {
            if self.faults.is_some() {
                self.reap_batch();
            } else {
                for entry in self.ring.completion() {
                    let cqe = Cqe::new(entry.result(), entry.flags());
                    self.table.complete(&self.counters, entry.user_data(), cqe);
                }
            }
            if !self.ring.submission().cq_overflow() {
                break;
            }
            // The kernel holds CQEs that did not fit; entering with GETEVENTS flushes them.
            self.counters.cq_overflows.inc();
            if let Err(err) = transient_ok(self.enter_nowait()) {
                panic!("io_uring_enter failed while flushing CQ overflow: {err}");
            }
        }
        self.counters
            .ops_in_flight
            .set(self.table.slots.len() as u64);
    }

    /// Reaps the CQ into a batch, lets the fault plan reorder it, then completes it.
    fn reap_batch(&mut self) {
        let mut batch: Vec<(u64, Cqe)> = self
            .ring
            .completion()
            .map(|e| (e.user_data(), Cqe::new(e.result(), e.flags())))
            .collect();
        let faults = self.faults.as_mut().expect("a fault plan is set");
        if faults.reorder(&mut batch) {
            self.counters.faults_injected.inc();
        }
        for (user_data, cqe) in batch {
            self.table.complete(&self.counters, user_data, cqe);
        }
    }

    /// Cancels every op still in flight and waits (at most about a second) for the kernel to
    /// release them, so the ring can be closed without it writing into freed memory. Orphans
    /// that never completed are leaked rather than freed (I1).
    pub(crate) fn shutdown(&mut self) -> Vec<(Box<dyn Orphan>, Cqe)> {
        self.faults = None;
        for id in self.table.slots.ids() {
            self.push_cancel(id as u64);
        }
        if self.table.doorbell_armed {
            self.push_cancel(DOORBELL_TAG);
        }
        for _ in 0..100 {
            if self.table.slots.is_empty() && !self.table.doorbell_armed {
                break;
            }
            let ts = timespec(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap_all();
        }
        if self.table.doorbell_armed {
            // The kernel may still write these 8 bytes: leak them.
            std::mem::forget(std::mem::take(&mut self.doorbell_buf));
        }
        self.table.slots.leak_all();
        self.take_graveyard()
    }
}

/// The slot table and what reaping into it produces.
#[derive(Default)]
struct Table {
    slots: Slots,
    /// Wakers of ops whose CQEs were reaped, woken once the driver is no longer borrowed.
    woken: Vec<Waker>,
    /// Orphans whose final CQE arrived, to be finished outside the driver borrow.
    graveyard: Vec<(Box<dyn Orphan>, Cqe)>,
    /// Whether a read is pending on the doorbell eventfd.
    doorbell_armed: bool,
}

impl Table {
    /// Records one CQE: in its slot, or in the driver's own state for the reserved tags.
    #[inline(always)] // the hot path of every completion
    fn complete(&mut self, counters: &Counters, user_data: u64, cqe: Cqe) {
        counters.cqes_reaped.inc();
        match user_data {
            CANCEL_TAG | POKE_TAG => {}
            DOORBELL_TAG => self.doorbell_armed = false,
            id => {
                if cqe.raw_result() == -libc::ENOBUFS {
                    counters.buffers_exhausted.inc();
                }
                match self.slots.reap(id as usize, cqe) {
                    Reaped::Orphan(orphan, cqe) => self.graveyard.push((orphan, cqe)),
                    Reaped::Wake(waker) => self.woken.push(waker),
                    Reaped::Nothing => {}
                }
            }
        }
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
mod tests;
