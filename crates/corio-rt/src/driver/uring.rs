//! The io_uring backend: the ring, its probe, the SQ and CQ, and the doorbell read kept pending
//! in the ring.
//!
//! SQEs are queued as ops are submitted and handed to the kernel once a tick, in the same
//! `io_uring_enter` that waits (DESIGN.md, "The loop of one core"); CQEs are reaped into the
//! shared slot table.

use std::io;
use std::time::Duration;

use io_uring::{opcode, register::Probe, squeue, types, EnterFlags, IoUring};

use super::fault::Faults;
use super::ring::{self, Setup};
use super::{Park, Shared, CANCEL_TAG, DOORBELL_TAG, POKE_TAG};
use crate::driver::Cqe;

/// One core's ring.
pub(crate) struct Uring {
    ring: IoUring,
    pub(crate) setup: Setup,
    probe: Probe,
    /// The 8 bytes the pending doorbell read writes into; boxed so it never moves (I1).
    doorbell_buf: Box<u64>,
    /// Whether a read is pending on the doorbell eventfd.
    doorbell_armed: bool,
    /// The next provided-buffer group id to hand out.
    next_buf_group: u16,
}

impl Uring {
    /// Sets up a ring of `entries` SQEs (see [`ring::build`]).
    pub(crate) fn new(entries: u32) -> io::Result<Uring> {
        let ring = ring::build(entries)?;
        Ok(Uring {
            ring: ring.uring,
            setup: ring.setup,
            probe: ring.probe,
            doorbell_buf: Box::new(0),
            doorbell_armed: false,
            next_buf_group: 0,
        })
    }

    pub(crate) fn supports(&self, code: u8) -> bool {
        self.probe.is_supported(code)
    }

    pub(crate) fn ring_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.ring)
    }

    fn next_buf_group(&mut self) -> u16 {
        let id = self.next_buf_group;
        self.next_buf_group = self.next_buf_group.wrapping_add(1);
        id
    }

    /// IORING_REGISTER_PBUF_RING under a fresh group id (see `register.rs`).
    ///
    /// # Safety
    /// As `register_buf_ring`'s.
    pub(crate) unsafe fn register_buf_ring(
        &mut self,
        ring_addr: u64,
        entries: u16,
        flags: u16,
    ) -> io::Result<u16> {
        let bgid = self.next_buf_group();
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            self.ring
                .submitter()
                .register_buf_ring_with_flags(ring_addr, entries, bgid, flags)
        }?;
        Ok(bgid)
    }

    pub(crate) fn unregister_buf_ring(&mut self, bgid: u16) -> io::Result<()> {
        self.ring.submitter().unregister_buf_ring(bgid)
    }

    /// IORING_REGISTER_BUFFERS.
    ///
    /// # Safety
    /// As `register_buffers`'s.
    pub(crate) unsafe fn register_buffers(&mut self, iovecs: &[libc::iovec]) -> io::Result<()> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.ring.submitter().register_buffers(iovecs) }
    }

    pub(crate) fn unregister_buffers(&mut self) -> io::Result<()> {
        self.ring.submitter().unregister_buffers()
    }

    /// The kernel's head of group `bgid` (IORING_REGISTER_PBUF_STATUS, Linux 6.8).
    pub(crate) fn buf_ring_head(&self, bgid: u16) -> io::Result<u16> {
        #[repr(C)]
        struct BufStatus {
            buf_group: u32,
            head: u32,
            resv: [u32; 8],
        }
        const IORING_REGISTER_PBUF_STATUS: libc::c_uint = 26;
        let fd = self.ring_fd();
        let mut status = BufStatus {
            buf_group: bgid as u32,
            head: 0,
            resv: [0; 8],
        };
        // SAFETY: io_uring_register reads and writes one `io_uring_buf_status`, which `status` is
        // (same layout), on the ring fd this core owns.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                fd,
                IORING_REGISTER_PBUF_STATUS,
                &mut status as *mut BufStatus,
                1,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(status.head as u16)
    }

    /// One turn of the ring: submit every queued SQE, wait as `park` allows, reap every CQE.
    pub(crate) fn tick(&mut self, sh: &mut Shared, park: Park) -> io::Result<()> {
        let result = match park {
            Park::No => {
                if sh.table.slots.is_empty() && self.ring.submission().is_empty() {
                    return Ok(());
                }
                self.enter_nowait(sh)
            }
            Park::Until(_) if !sh.posted.is_empty() => self.enter_nowait(sh),
            Park::Until(timeout) => {
                self.arm_doorbell(sh); // armed already by prepare_park; a no-op then
                let to_submit = self.ring.submission().len();
                sh.count_enter(to_submit);
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
        sh.doorbell.unpark();
        transient_ok(result)?;
        self.reap(sh);
        Ok(())
    }

    /// Queues an SQE; a full SQ is submitted first (I4).
    pub(crate) fn push_sqe(&mut self, sh: &mut Shared, sqe: &squeue::Entry) {
        if sh.faults.as_mut().is_some_and(Faults::sq_full) {
            sh.counters.faults_injected.inc();
            self.flush_full_sq(sh);
        }
        loop {
            // SAFETY: every SQE the driver pushes satisfies I1 (opcodes promise it through the
            // unsafe OpCode/MultishotCode traits; the doorbell read targets `doorbell_buf`, and
            // ASYNC_CANCEL carries no pointer).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            self.flush_full_sq(sh);
        }
    }

    /// The SQ is full: hand it to the kernel and reap, which also frees CQ room if the kernel
    /// refused with EBUSY because of overflowed CQEs.
    fn flush_full_sq(&mut self, sh: &mut Shared) {
        sh.counters.sq_full_waits.inc();
        if let Err(err) = transient_ok(self.enter_nowait(sh)) {
            panic!("io_uring_enter failed while the SQ was full: {err}");
        }
        self.reap_all(sh);
    }

    pub(crate) fn push_cancel(&mut self, sh: &mut Shared, target: u64) {
        sh.counters.cancels.inc();
        self.push_sqe(
            sh,
            &opcode::AsyncCancel::new(target)
                .build()
                .user_data(CANCEL_TAG),
        );
    }

    /// Submits what is queued and processes completions without waiting for any.
    fn enter_nowait(&mut self, sh: &Shared) -> io::Result<usize> {
        let to_submit = self.ring.submission().len();
        sh.count_enter(to_submit);
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
    pub(crate) fn msg_ring(&mut self, sh: &mut Shared, target_fd: std::os::fd::RawFd) -> bool {
        if !self.probe.is_supported(opcode::MsgRingData::CODE) {
            return false;
        }
        let sqe = opcode::MsgRingData::new(types::Fd(target_fd), 0, POKE_TAG, None)
            .build()
            .user_data(CANCEL_TAG);
        self.push_sqe(sh, &sqe);
        transient_ok(self.enter_nowait(sh)).is_ok()
    }

    /// Keeps a read pending on the doorbell eventfd, so a remote poke ends a wait.
    pub(crate) fn arm_doorbell(&mut self, sh: &mut Shared) {
        if self.doorbell_armed {
            return;
        }
        let buf: *mut u64 = &mut *self.doorbell_buf;
        let sqe = opcode::Read::new(types::Fd(sh.doorbell.raw_fd()), buf.cast(), 8)
            .build()
            .user_data(DOORBELL_TAG);
        self.push_sqe(sh, &sqe);
        self.doorbell_armed = true;
    }

    /// Reaps, unless the fault plan holds the CQ for this tick.
    fn reap(&mut self, sh: &mut Shared) {
        if sh.faults.as_mut().is_some_and(Faults::cq_hold) {
            sh.counters.faults_injected.inc();
            return;
        }
        self.reap_all(sh);
    }

    /// Moves every CQE into its slot, flushing overflowed CQEs kept by the kernel (I4). Under
    /// a fault plan the CQEs go through a batch first, which the plan may reorder.
    fn reap_all(&mut self, sh: &mut Shared) {
        sh.reap_posted();
        loop {
            if sh.faults.is_some() {
                let batch = self
                    .ring
                    .completion()
                    .map(|e| (e.user_data(), Cqe::new(e.result(), e.flags())))
                    .collect();
                self.complete_batch(sh, batch);
            } else {
                let armed = &mut self.doorbell_armed;
                for entry in self.ring.completion() {
                    let cqe = Cqe::new(entry.result(), entry.flags());
                    complete(armed, sh, entry.user_data(), cqe);
                }
            }
            if !self.ring.submission().cq_overflow() {
                break;
            }
            // The kernel holds CQEs that did not fit; entering with GETEVENTS flushes them.
            sh.counters.cq_overflows.inc();
            if let Err(err) = transient_ok(self.enter_nowait(sh)) {
                panic!("io_uring_enter failed while flushing CQ overflow: {err}");
            }
        }
        sh.counters.ops_in_flight.set(sh.table.slots.len() as u64);
    }

    /// Lets the fault plan reorder a reaped batch, then completes it.
    fn complete_batch(&mut self, sh: &mut Shared, mut batch: Vec<(u64, Cqe)>) {
        sh.reorder(&mut batch);
        for (user_data, cqe) in batch {
            complete(&mut self.doorbell_armed, sh, user_data, cqe);
        }
    }

    /// Cancels every op still in flight and waits (at most about a second) for the kernel to
    /// release them, so the ring can be closed without it writing into freed memory.
    pub(crate) fn shutdown(&mut self, sh: &mut Shared) {
        for id in sh.table.slots.ids() {
            self.push_cancel(sh, id as u64);
        }
        if self.doorbell_armed {
            self.push_cancel(sh, DOORBELL_TAG);
        }
        for _ in 0..100 {
            if sh.table.slots.is_empty() && !self.doorbell_armed {
                break;
            }
            let ts = timespec(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap_all(sh);
        }
        if self.doorbell_armed {
            // The kernel may still write these 8 bytes: leak them.
            std::mem::forget(std::mem::take(&mut self.doorbell_buf));
        }
    }
}

/// Records one CQE: the ring's own tags here, an op's in its slot.
#[inline(always)] // the hot path of every completion
fn complete(doorbell_armed: &mut bool, sh: &mut Shared, user_data: u64, cqe: Cqe) {
    match user_data {
        CANCEL_TAG | POKE_TAG => sh.counters.cqes_reaped.inc(),
        DOORBELL_TAG => {
            sh.counters.cqes_reaped.inc();
            *doorbell_armed = false;
        }
        id => sh.table.complete(&sh.counters, id, cqe),
    }
}

/// EINTR (a signal), ETIME (the wait's deadline), EBUSY and EAGAIN (the kernel wants CQ room
/// first) end a wait without anything being wrong; EBADR is survived (see below).
pub(crate) fn transient_ok(result: io::Result<usize>) -> io::Result<()> {
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
