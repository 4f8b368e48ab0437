//! The driver: one io_uring (or, where io_uring is blocked, one epoll instance) per core, the
//! slots of the ops in flight, and the tick that submits SQEs, waits (bounded by the next timer
//! deadline) and reaps CQEs.
//!
//! Ops describe themselves as SQEs on both backends. The io_uring backend (`uring.rs`) hands
//! them to the kernel; the epoll backend (`epoll/`) carries each out with the equivalent
//! syscall, waiting for readiness or running it on a blocking thread, and posts the CQE the
//! kernel would have. Everything above the backend (slots, polls, cancellation, orphans, the
//! fault plan) is one code path.
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
pub(crate) mod epoll;
pub(crate) mod fault;
mod kind;
mod ring;
mod slots;
pub(crate) mod sqe;
mod uring;

use std::io;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::squeue;

use crate::metrics::Counters;
pub use cqe::Cqe;
pub(crate) use doorbell::Doorbell;
pub use doorbell::Poke;
pub use fault::FaultPlan;
use fault::{Faults, Submission};
pub use kind::DriverKind;
pub use ring::Setup;
pub(crate) use slots::{Orphan, Slot};
use slots::{Reaped, Slots};

/// `user_data` of ASYNC_CANCEL SQEs, whose own CQEs carry nothing we need.
const CANCEL_TAG: u64 = u64::MAX;
/// `user_data` of the pending read on the doorbell eventfd.
const DOORBELL_TAG: u64 = u64::MAX - 1;
/// `user_data` of the CQE another core's MSG_RING poke posts here.
const POKE_TAG: u64 = u64::MAX - 2;

/// How long a tick may block in `io_uring_enter` (or `epoll_pwait2`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Park {
    /// Tasks are runnable: submit and reap, never block.
    No,
    /// Nothing is runnable: block until a CQE, or until the deadline (`None`: no deadline).
    Until(Option<Duration>),
}

/// Hands out a process-unique id per driver, so an op can tell the ring it was submitted on.
static NEXT_DRIVER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One core's backend and everything in flight on it.
pub(crate) struct Driver {
    id: u64,
    backend: Backend,
    sh: Shared,
}

/// Where SQEs go. The ring (the hot path) stays inline; the epoll backend is boxed.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Uring(uring::Uring),
    Epoll(Box<epoll::Epoll>),
}

/// What both backends update as they complete ops.
pub(crate) struct Shared {
    /// The slots and what reaping into them produces.
    table: Table,
    doorbell: Arc<Doorbell>,
    counters: Arc<Counters>,
    /// The fault plan being carried out, if any (tests only).
    faults: Option<Faults>,
    /// CQEs made in user space, delivered at the next reap: by the fault plan for ops it did
    /// not submit, and by the epoll backend for every op.
    posted: Vec<(u64, Cqe)>,
}

impl Shared {
    fn count_enter(&self, to_submit: usize) {
        self.counters.enters.inc();
        self.counters.sqes_submitted.add(to_submit as u64);
    }

    /// Lets the fault plan shuffle a batch of CQEs, if it says so.
    fn reorder(&mut self, batch: &mut [(u64, Cqe)]) {
        if let Some(faults) = self.faults.as_mut() {
            if faults.reorder(batch) {
                self.counters.faults_injected.inc();
            }
        }
    }

    /// Completes the CQEs made in user space.
    fn reap_posted(&mut self) {
        if self.posted.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.posted);
        self.reorder(&mut batch);
        for (user_data, cqe) in batch.drain(..) {
            self.table.complete(&self.counters, user_data, cqe);
        }
        if self.posted.is_empty() {
            self.posted = batch; // keep the allocation
        }
    }
}

impl Driver {
    /// Sets up the backend `kind` asks for (`None`: io_uring, else epoll; see
    /// [`kind::choose`]) with rings of `entries` SQEs.
    pub(crate) fn new(
        entries: u32,
        doorbell: Arc<Doorbell>,
        counters: Arc<Counters>,
        faults: Option<FaultPlan>,
        kind: Option<DriverKind>,
    ) -> io::Result<Driver> {
        let backend = match kind::choose(kind, || uring::Uring::new(entries))? {
            kind::Chosen::Uring(uring) => Backend::Uring(uring),
            kind::Chosen::Epoll => Backend::Epoll(Box::new(epoll::Epoll::new(&doorbell)?)),
        };
        Ok(Driver {
            id: NEXT_DRIVER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            backend,
            sh: Shared {
                table: Table::default(),
                doorbell,
                counters,
                faults: faults.map(Faults::new),
                posted: Vec::new(),
            },
        })
    }

    /// This driver's process-unique id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Which backend this driver runs on.
    pub(crate) fn kind(&self) -> DriverKind {
        match self.backend {
            Backend::Uring(_) => DriverKind::IoUring,
            Backend::Epoll(_) => DriverKind::Epoll,
        }
    }

    /// Moves the wakers of reaped ops into `out` (empty), to be woken outside the borrow.
    pub(crate) fn swap_woken(&mut self, out: &mut Vec<Waker>) {
        std::mem::swap(&mut self.sh.table.woken, out);
    }

    pub(crate) fn has_woken(&self) -> bool {
        !self.sh.table.woken.is_empty()
    }

    /// Gets ready to block: keeps a read pending on the doorbell. Pushing it may flush a full
    /// SQ and reap, so the caller must look for woken tasks again afterwards.
    pub(crate) fn prepare_park(&mut self) {
        if let Backend::Uring(uring) = &mut self.backend {
            uring.arm_doorbell(&mut self.sh);
        }
    }

    /// The ring's setup; `None` on the epoll backend.
    pub(crate) fn setup(&self) -> Option<Setup> {
        match &self.backend {
            Backend::Uring(uring) => Some(uring.setup),
            Backend::Epoll(_) => None,
        }
    }

    pub(crate) fn supports(&self, code: u8) -> bool {
        match &self.backend {
            Backend::Uring(uring) => uring.supports(code),
            Backend::Epoll(_) => epoll::supports(code),
        }
    }

    /// The ring's fd; `None` on the epoll backend.
    pub(crate) fn ring_fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.backend {
            Backend::Uring(uring) => Some(uring.ring_fd()),
            Backend::Epoll(_) => None,
        }
    }

    /// Registers a provided-buffer ring under a fresh group id: with the kernel, or with the
    /// epoll backend, which reads it as the kernel would.
    ///
    /// # Safety
    /// As [`crate::register_buf_ring`]'s.
    pub(crate) unsafe fn register_buf_ring(
        &mut self,
        ring_addr: u64,
        entries: u16,
        flags: u16,
    ) -> io::Result<u16> {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            match &mut self.backend {
                Backend::Uring(uring) => uring.register_buf_ring(ring_addr, entries, flags),
                Backend::Epoll(epoll) => {
                    epoll.groups().register_buf_ring(ring_addr, entries, flags)
                }
            }
        }
    }

    pub(crate) fn unregister_buf_ring(&mut self, bgid: u16) -> io::Result<()> {
        match &mut self.backend {
            Backend::Uring(uring) => uring.unregister_buf_ring(bgid),
            Backend::Epoll(epoll) => epoll.groups().unregister_buf_ring(bgid),
        }
    }

    /// The head of provided-buffer group `bgid`, as the kernel (or the epoll backend) has it.
    pub(crate) fn buf_ring_head(&mut self, bgid: u16) -> io::Result<u16> {
        match &mut self.backend {
            Backend::Uring(uring) => uring.buf_ring_head(bgid),
            Backend::Epoll(epoll) => epoll.groups().buf_ring_head(bgid),
        }
    }

    /// Registers fixed buffers (plain memory on the epoll backend, which reads and writes them
    /// with ordinary syscalls).
    ///
    /// # Safety
    /// As [`crate::register_buffers`]'s.
    pub(crate) unsafe fn register_buffers(&mut self, iovecs: &[libc::iovec]) -> io::Result<()> {
        match &mut self.backend {
            // SAFETY: forwarded from the caller's contract.
            Backend::Uring(uring) => unsafe { uring.register_buffers(iovecs) },
            Backend::Epoll(epoll) => epoll.register_buffers(),
        }
    }

    pub(crate) fn unregister_buffers(&mut self) -> io::Result<()> {
        match &mut self.backend {
            Backend::Uring(uring) => uring.unregister_buffers(),
            Backend::Epoll(epoll) => epoll.unregister_buffers(),
        }
    }

    /// Ops in flight, orphans included.
    pub(crate) fn in_flight(&self) -> usize {
        self.sh.table.slots.len()
    }

    /// Takes a slot for a new op and queues its SQE; returns the slot id (the SQE's
    /// `user_data`). A fault plan may complete a single-shot op waited for by a future without
    /// queueing it, or shorten its transfer (see `fault.rs`).
    #[inline]
    pub(crate) fn submit(&mut self, sqe: squeue::Entry, slot: Slot) -> usize {
        let faultable = matches!(slot, Slot::Waiting(_));
        let id = self.sh.table.slots.insert(slot);
        let sqe = match self.sh.faults.as_mut() {
            Some(faults) if faultable => match faults.submission(sqe) {
                Submission::Queue(sqe) => sqe,
                Submission::Fail(errno) => {
                    self.sh.counters.faults_injected.inc();
                    self.sh.posted.push((id as u64, Cqe::new(errno, 0)));
                    return id;
                }
            },
            _ => sqe,
        };
        match &mut self.backend {
            Backend::Uring(uring) => uring.push_sqe(&mut self.sh, &sqe.user_data(id as u64)),
            Backend::Epoll(epoll) => epoll.submit(&mut self.sh, id, sqe),
        }
        id
    }
    /// Polls op `id`: its next CQE if one has arrived, else `waker` is stored and woken when one
    /// does. A single-shot op's slot is freed with its CQE; a multishot op's with its final CQE
    /// (the one without `IORING_CQE_F_MORE`).
    #[inline]
    pub(crate) fn poll(&mut self, id: usize, waker: &Waker) -> Poll<Cqe> {
        let slots = &mut self.sh.table.slots;
        let ready = match slots.get_mut(id) {
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
        slots.remove(id);
        Poll::Ready(ready)
    }

    /// Asks the kernel to cancel op `id`, whose future still waits for it: its final CQE will
    /// say `ECANCELED`, or carry the op's result if it completed first.
    pub(crate) fn cancel(&mut self, id: usize) {
        if matches!(self.sh.table.slots.get_mut(id), Slot::Done(_)) {
            return; // finished already: nothing to cancel
        }
        self.push_cancel(id);
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
        self.sh.counters.orphaned_ops.inc();
        let slots = &mut self.sh.table.slots;
        match slots.get_mut(id) {
            Slot::Done(_) => {
                return Some((orphan, slots.remove_done(id)));
            }
            Slot::Multi { queue, .. } => {
                while let Some(cqe) = queue.pop_front() {
                    if !cqe.more() {
                        slots.remove(id);
                        return Some((orphan, cqe));
                    }
                    orphan.item(cqe);
                }
            }
            Slot::Waiting(_) => {}
            Slot::Orphaned(_) => unreachable!("slot {id} orphaned twice"),
        }
        *slots.get_mut(id) = Slot::Orphaned(orphan);
        self.push_cancel(id);
        None
    }

    /// Cancels op `id` in the backend (ASYNC_CANCEL on io_uring).
    fn push_cancel(&mut self, id: usize) {
        match &mut self.backend {
            Backend::Uring(uring) => uring.push_cancel(&mut self.sh, id as u64),
            Backend::Epoll(epoll) => epoll.cancel(&mut self.sh, id),
        }
    }

    /// Counts a multishot op submitted again after the kernel ended it.
    pub(crate) fn note_rearm(&mut self) {
        self.sh.counters.multishot_rearms.inc();
    }

    /// Orphans whose final CQE has arrived; finish them outside the driver borrow.
    pub(crate) fn take_graveyard(&mut self) -> Vec<(Box<dyn Orphan>, Cqe)> {
        std::mem::take(&mut self.sh.table.graveyard)
    }

    /// One turn: submit every queued SQE, wait as `park` allows, reap every CQE.
    ///
    /// # Errors
    /// An `io_uring_enter` (or `epoll_pwait2`) failure other than the transient EINTR, ETIME,
    /// EBUSY and EAGAIN.
    pub(crate) fn tick(&mut self, park: Park) -> io::Result<()> {
        match &mut self.backend {
            Backend::Uring(uring) => uring.tick(&mut self.sh, park),
            Backend::Epoll(epoll) => epoll.tick(&mut self.sh, park),
        }
    }

    /// Pokes the ring `target_fd` (another core's) with an `IORING_OP_MSG_RING`, submitted at
    /// once. False if this driver cannot (no opcode, or the epoll backend): use the eventfd.
    pub(crate) fn msg_ring(&mut self, target_fd: std::os::fd::RawFd) -> bool {
        match &mut self.backend {
            Backend::Uring(uring) => uring.msg_ring(&mut self.sh, target_fd),
            Backend::Epoll(_) => false,
        }
    }

    /// Cancels every op still in flight and waits (at most about a second) for the backend to
    /// release them, so nothing writes into freed memory afterwards. Orphans that never
    /// completed are leaked rather than freed (I1).
    pub(crate) fn shutdown(&mut self) -> Vec<(Box<dyn Orphan>, Cqe)> {
        self.sh.faults = None;
        match &mut self.backend {
            Backend::Uring(uring) => uring.shutdown(&mut self.sh),
            Backend::Epoll(epoll) => epoll.shutdown(&mut self.sh),
        }
        self.sh.table.slots.leak_all();
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
}

impl Table {
    /// Records one CQE of op `id` in its slot.
    #[inline(always)] // the hot path of every completion
    fn complete(&mut self, counters: &Counters, id: u64, cqe: Cqe) {
        counters.cqes_reaped.inc();
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

/// Replaces the stored waker unless it would wake the same task.
fn set_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(old) if old.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

#[cfg(test)]
mod tests;
