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
            slots: Slots::default(),
            doorbell,
            doorbell_buf: Box::new(0),
            doorbell_armed: false,
            graveyard: Vec::new(),
            next_buf_group: 0,
            woken: Vec::new(),
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

    /// Takes a slot for a new op and queues its SQE; returns the slot id (the SQE's
    /// `user_data`). A fault plan may complete a single-shot op waited for by a future without
    /// queueing it, or shorten its transfer (see `fault.rs`).
    pub(crate) fn submit(&mut self, sqe: squeue::Entry, slot: Slot) -> usize {
        let faultable = matches!(slot, Slot::Waiting(_));
        let id = self.slots.insert(slot);
        self.counters.ops_in_flight.set(self.slots.len() as u64);
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
    pub(crate) fn poll(&mut self, id: usize, waker: &Waker) -> Poll<Cqe> {
        let ready = match self.slots.get_mut(id) {
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
        self.slots.remove(id);
        self.counters.ops_in_flight.set(self.slots.len() as u64);
        Poll::Ready(ready)
    }

    /// Asks the kernel to cancel op `id`, whose future still waits for it: its final CQE will
    /// say `ECANCELED`, or carry the op's result if it completed first.
    pub(crate) fn cancel(&mut self, id: usize) {
        if matches!(self.slots.get_mut(id), Slot::Done(_)) {
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
        match self.slots.get_mut(id) {
            Slot::Done(_) => {
                let cqe = self.slots.remove_done(id);
                self.counters.ops_in_flight.set(self.slots.len() as u64);
                return Some((orphan, cqe));
            }
            Slot::Multi { queue, .. } => {
                while let Some(cqe) = queue.pop_front() {
                    if !cqe.more() {
                        self.slots.remove(id);
                        self.counters.ops_in_flight.set(self.slots.len() as u64);
                        return Some((orphan, cqe));
                    }
                    orphan.item(cqe);
                }
            }
            Slot::Waiting(_) => {}
            Slot::Orphaned(_) => unreachable!("slot {id} orphaned twice"),
        }
        *self.slots.get_mut(id) = Slot::Orphaned(orphan);
        self.push_cancel(id as u64);
        None
    }

    /// Counts a multishot op submitted again after the kernel ended it.
    pub(crate) fn note_rearm(&mut self) {
        self.counters.multishot_rearms.inc();
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
            Park::Until(_) if !self.injected.is_empty() => self.enter_nowait(),
            Park::Until(timeout) => {
                self.arm_doorbell(); // armed already by prepare_park; a no-op then
                self.count_submit();
                self.counters.enters.inc();
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

    fn count_submit(&mut self) {
        let queued = self.ring.submission().len() as u64;
        self.counters.sqes_submitted.add(queued);
    }

    /// Submits what is queued and processes completions without waiting for any.
    fn enter_nowait(&mut self) -> io::Result<usize> {
        self.count_submit();
        self.counters.enters.inc();
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

    /// Reaps, unless the fault plan holds the CQ for this tick.
    fn reap(&mut self) {
        if self.faults.as_mut().is_some_and(Faults::cq_hold) && self.injected.is_empty() {
            self.counters.faults_injected.inc();
            return;
        }
        self.reap_all();
    }

    /// Moves every CQE into its slot, flushing overflowed CQEs kept by the kernel (I4).
    fn reap_all(&mut self) {
        let injected = std::mem::take(&mut self.injected);
        for (user_data, cqe) in injected {
            self.complete(user_data, cqe);
        }
        loop {
            if self.faults.is_some() {
                self.reap_faulty();
            } else {
                let mut cq = self.ring.completion();
                for entry in &mut cq {
                    let cqe = Cqe::new(entry.result(), entry.flags());
                    self.counters.cqes_reaped.inc();
                    // `complete` needs `&mut self`; the CQ borrows only the ring's memory map.
                    let user_data = entry.user_data();
                    Self::complete_into(
                        &mut self.slots,
                        &mut self.woken,
                        &mut self.graveyard,
                        &mut self.doorbell_armed,
                        &self.counters,
                        user_data,
                        cqe,
                    );
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
        self.counters.ops_in_flight.set(self.slots.len() as u64);
    }

    /// Reaps the CQ as a batch and, when the fault plan says so, delivers it shuffled (each
    /// op's own CQEs keep their order).
    fn reap_faulty(&mut self) {
        let mut batch: Vec<(u64, Cqe)> = self
            .ring
            .completion()
            .map(|e| (e.user_data(), Cqe::new(e.result(), e.flags())))
            .collect();
        self.counters.cqes_reaped.add(batch.len() as u64);
        let faults = self.faults.as_mut().expect("reap_faulty runs with a plan");
        if batch.len() > 1 && faults.reorder() {
            self.counters.faults_injected.inc();
            // A random rank per op, then a stable sort: ops are shuffled, each op's CQEs stay
            // in the order the kernel posted them.
            let mut ranks = std::collections::HashMap::new();
            for (user_data, _) in &batch {
                ranks
                    .entry(*user_data)
                    .or_insert_with(|| faults.below(u64::MAX));
            }
            batch.sort_by_key(|(user_data, _)| ranks[user_data]);
        }
        for (user_data, cqe) in batch {
            self.complete(user_data, cqe);
        }
    }

    fn complete(&mut self, user_data: u64, cqe: Cqe) {
        Self::complete_into(
            &mut self.slots,
            &mut self.woken,
            &mut self.graveyard,
            &mut self.doorbell_armed,
            &self.counters,
            user_data,
            cqe,
        );
    }

    /// Records one CQE: in its slot, or in the driver's own state for the reserved tags.
    fn complete_into(
        slots: &mut Slots,
        woken: &mut Vec<Waker>,
        graveyard: &mut Vec<(Box<dyn Orphan>, Cqe)>,
        doorbell_armed: &mut bool,
        counters: &Counters,
        user_data: u64,
        cqe: Cqe,
    ) {
        match user_data {
            CANCEL_TAG | POKE_TAG => {}
            DOORBELL_TAG => *doorbell_armed = false,
            id => {
                if cqe.raw_result() == -libc::ENOBUFS {
                    counters.buffers_exhausted.inc();
                }
                match slots.reap(id as usize, cqe) {
                    Reaped::Orphan(orphan, cqe) => graveyard.push((orphan, cqe)),
                    Reaped::Wake(waker) => woken.push(waker),
                    Reaped::Nothing => {}
                }
            }
        }
    }

    /// Cancels every op still in flight and waits (at most about a second) for the kernel to
    /// release them, so the ring can be closed without it writing into freed memory. Orphans
    /// that never completed are leaked rather than freed (I1).
    pub(crate) fn shutdown(&mut self) -> Vec<(Box<dyn Orphan>, Cqe)> {
        self.faults = None;
        for id in self.slots.ids() {
            self.push_cancel(id as u64);
        }
        if self.doorbell_armed {
            self.push_cancel(DOORBELL_TAG);
        }
        for _ in 0..100 {
            if self.slots.is_empty() && !self.doorbell_armed {
                break;
            }
            let ts = timespec(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap_all();
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

/// The driver alone: SQEs pushed by hand, ticks turned by hand, slots inspected. No executor,
/// no thread-local, no `block_on`.
#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Poll, Waker};

    use super::*;
    use crate::testing::{pipe, serial, write_fd};

    fn driver(entries: u32, faults: Option<FaultPlan>) -> Driver {
        let doorbell = Arc::new(Doorbell::new().unwrap());
        Driver::new(entries, doorbell, Arc::default(), faults).unwrap()
    }

    fn wait(driver: &mut Driver, id: usize) -> Cqe {
        for _ in 0..1_000 {
            if let Poll::Ready(cqe) = driver.poll(id, Waker::noop()) {
                return cqe;
            }
            driver
                .tick(Park::Until(Some(Duration::from_millis(10))))
                .unwrap();
        }
        panic!("op {id} did not complete in 1,000 ticks");
    }

    /// An orphan that counts its final CQEs.
    struct CountFinish(Arc<AtomicUsize>);
    impl Orphan for CountFinish {
        fn item(&mut self, _cqe: Cqe) {}
        fn finish(self: Box<Self>, _cqe: Cqe) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_read_completes_into_its_slot_and_frees_it() {
        let _serial = serial();
        let mut d = driver(8, None);
        let (rx, tx) = pipe();
        let mut buf = vec![0u8; 16];
        let sqe = opcode::Read::new(types::Fd(rx.as_raw_fd()), buf.as_mut_ptr(), 16).build();
        let id = d.submit(sqe, Slot::Waiting(None));
        d.tick(Park::No).unwrap();
        assert_eq!(d.poll(id, Waker::noop()), Poll::Pending);
        write_fd(&tx, b"hello");
        assert_eq!(wait(&mut d, id).bytes().unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(d.in_flight(), 0);
        let m = d.counters.snapshot(crate::CoreId(0));
        assert!(
            m.sqes_submitted >= 1 && m.cqes_reaped >= 1 && m.enters >= 1,
            "{m:?}"
        );
    }

    #[test]
    fn orphans_are_cancelled_and_finished_once() {
        let _serial = serial();
        let mut d = driver(8, None);
        let (rx, _tx) = pipe();
        let finished = Arc::new(AtomicUsize::new(0));
        let mut bufs = vec![vec![0u8; 8]; 100];
        for buf in &mut bufs {
            let sqe = opcode::Read::new(types::Fd(rx.as_raw_fd()), buf.as_mut_ptr(), 8).build();
            let id = d.submit(sqe, Slot::Waiting(None));
            assert!(d
                .orphan(id, Box::new(CountFinish(finished.clone())))
                .is_none());
        }
        for _ in 0..1_000 {
            if d.in_flight() == 0 {
                break;
            }
            d.tick(Park::Until(Some(Duration::from_millis(10))))
                .unwrap();
        }
        assert_eq!(d.in_flight(), 0);
        for (orphan, cqe) in d.take_graveyard() {
            assert_eq!(cqe.raw_result(), -libc::ECANCELED);
            orphan.finish(cqe);
        }
        assert_eq!(finished.load(Ordering::SeqCst), 100);
        let m = d.counters.snapshot(crate::CoreId(0));
        assert_eq!((m.orphaned_ops, m.cancels), (100, 100));
    }

    #[test]
    fn more_ops_than_the_sq_and_cq_hold_all_complete() {
        let _serial = serial();
        let mut d = driver(4, None); // SQ 4, CQ 8
        let ids: Vec<usize> = (0..1_000)
            .map(|_| d.submit(opcode::Nop::new().build(), Slot::Waiting(None)))
            .collect();
        for id in ids {
            assert_eq!(wait(&mut d, id).raw_result(), 0);
        }
        let m = d.counters.snapshot(crate::CoreId(0));
        assert!(m.sq_full_waits > 0, "{m:?}");
    }

    #[test]
    fn the_fault_plan_fails_reorders_and_holds_without_losing_a_cqe() {
        let _serial = serial();
        let plan = FaultPlan::new(9)
            .eintr(0.2)
            .ecanceled(0.1)
            .sq_full(0.2)
            .cq_hold(0.3)
            .reorder(1.0);
        let mut d = driver(4, Some(plan));
        let mut ids = Vec::new();
        for _ in 0..500 {
            // Waves of 4 (the SQ's size), a tick after each: held CQs pile up past 8 entries.
            for _ in 0..4 {
                ids.push(d.submit(opcode::Nop::new().build(), Slot::Waiting(None)));
            }
            d.tick(Park::No).unwrap();
        }
        let mut results = std::collections::BTreeMap::new();
        for id in ids {
            *results.entry(-wait(&mut d, id).raw_result()).or_insert(0) += 1;
        }
        assert_eq!(results.values().sum::<i32>(), 2_000, "{results:?}");
        assert!(
            results[&libc::EINTR] > 100 && results[&libc::ECANCELED] > 50,
            "{results:?}"
        );
        assert!(results[&0] > 1_000, "{results:?}");
        let m = d.counters.snapshot(crate::CoreId(0));
        assert!(
            m.cq_overflows > 0,
            "holding the CQ of a small ring overflows it: {m:?}"
        );
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn a_multishot_slot_queues_cqes_until_the_final_one() {
        let _serial = serial();
        let mut d = driver(8, None);
        let ts = types::Timespec::new().nsec(100_000);
        let sqe = opcode::Timeout::new(&ts)
            .count(3)
            .flags(types::TimeoutFlags::MULTISHOT)
            .build();
        let id = d.submit(
            sqe,
            Slot::Multi {
                queue: Default::default(),
                waker: None,
            },
        );
        let mut seen = 0;
        loop {
            let cqe = wait(&mut d, id);
            seen += 1;
            if !cqe.more() {
                break;
            }
        }
        assert_eq!((seen, d.in_flight()), (3, 0));
    }
}
