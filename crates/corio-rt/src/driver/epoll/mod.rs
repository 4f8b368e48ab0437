//! The epoll driver: for where io_uring is blocked (Docker's default seccomp profile, gVisor,
//! `kernel.io_uring_disabled`), the same ops carried out by readiness and blocking threads.
//!
//! Each op still builds its SQE; this backend reads it (`sqe.rs`) and does what the kernel
//! would (`ops.rs`): a socket op tries its non-blocking syscall at once and, on EAGAIN, waits for
//! the fd's readiness (`fds.rs`) and tries again; file reads and writes try `RWF_NOWAIT` and
//! otherwise run on a blocking thread (`pool.rs`); TIMEOUT waits in the epoll wait's timeout; the
//! doorbell eventfd is registered in the epoll instance. Each result is posted as the CQE the
//! kernel would post, flags included (`MORE` for multishot ops, buffer ids from provided-buffer
//! groups, `NOTIF` after a zero-copy send), so the op futures, cancellation and orphans above
//! work unchanged. Provided-buffer rings are read as the kernel reads them: a receive takes a
//! buffer only when bytes are there, so a waiting connection holds none.
//!
//! Cancelling an op that waits for readiness or a timer posts `ECANCELED` at once; one queued on
//! a blocking thread is skipped; one running there finishes, and its memory stays in its slot
//! until then (I1).

mod fds;
mod groups;
mod ops;
mod pool;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::squeue;

use super::sqe::{
    Sqe, IORING_CQE_BUFFER_SHIFT, IORING_CQE_F_BUFFER, IORING_CQE_F_MORE, IORING_CQE_F_NOTIF,
    IORING_TIMEOUT_ABS, IORING_TIMEOUT_MULTISHOT,
};
use super::{Cqe, Doorbell, Park, Shared};
use fds::{Fds, Waiter};
pub(crate) use groups::Groups;
use ops::{would_block, FileKind, Kind, Step};
use pool::{Replies, Ticket, Work};

/// Whether the epoll driver carries out opcode `code`.
pub(crate) fn supports(code: u8) -> bool {
    ops::supported(code)
}

/// `epoll_event.u64` of the doorbell eventfd (fds are non-negative).
const DOORBELL: u64 = u64::MAX;
const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
/// Rounds of a multishot op per event before it lets other fds have their turn.
const ROUNDS: usize = 16;

/// An op the backend holds.
enum Pending {
    /// Waiting for its fd's readiness (or, multishot, living on it).
    Ready { sqe: Sqe, kind: Kind },
    /// On a blocking thread.
    Pool(Ticket),
    /// A TIMEOUT: fires at `deadline`, then every `every` while `left` (0: forever).
    Timer {
        deadline: Instant,
        every: Duration,
        left: u32,
        multishot: bool,
    },
}

/// One core's epoll instance and the ops it holds.
pub(crate) struct Epoll {
    epfd: OwnedFd,
    fds: Fds,
    ops: HashMap<usize, Pending>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    groups: Groups,
    fixed_buffers: bool,
    replies: Arc<Replies>,
    /// Ops on blocking threads.
    in_pool: usize,
    events: Vec<libc::epoll_event>,
    fired: Vec<Waiter>,
    /// Multishot ops that stopped after `ROUNDS` with more to do: tried again next tick.
    again: Vec<usize>,
    finished: Vec<(usize, i32)>,
    doorbell_fd: RawFd,
    /// Whether `epoll_pwait2` (Linux 5.11) exists; else `epoll_wait` in milliseconds.
    pwait2: bool,
}

impl Epoll {
    /// A new epoll instance with `doorbell`'s eventfd registered in it.
    pub(crate) fn new(doorbell: &Arc<Doorbell>) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut event = libc::epoll_event {
            events: IN,
            u64: DOORBELL,
        };
        // SAFETY: epoll_ctl reads one epoll_event from this stack.
        let added = unsafe {
            libc::epoll_ctl(
                epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                doorbell.raw_fd(),
                &mut event,
            )
        };
        if added < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            fds: Fds::new(epfd.as_raw_fd()),
            epfd,
            ops: HashMap::new(),
            timers: BinaryHeap::new(),
            groups: Groups::default(),
            fixed_buffers: false,
            replies: Arc::new(Replies::new(doorbell.clone())),
            in_pool: 0,
            events: Vec::with_capacity(256),
            fired: Vec::new(),
            again: Vec::new(),
            finished: Vec::new(),
            doorbell_fd: doorbell.raw_fd(),
            pwait2: true,
        })
    }

    /// Carries out the op `entry` describes for slot `id`: at once if it can, else it waits.
    pub(crate) fn submit(&mut self, sh: &mut Shared, id: usize, entry: squeue::Entry) {
        sh.counters.sqes_submitted.inc();
        let sqe = Sqe::from(entry);
        match Kind::of(&sqe) {
            Kind::Nop => post(sh, id, 0, 0),
            Kind::Timeout => self.start_timer(sh, id, &sqe),
            Kind::Close => {
                self.fds.forget(sqe.fd());
                match ops::file_kind(sqe.fd()) {
                    // close(2) of a file may flush it (NFS, FUSE): on a thread.
                    FileKind::Disk => self.queue_on_pool(id, sqe, Work::Blocking),
                    FileKind::Stream => post(sh, id, ops::close(sqe.fd()), 0),
                }
            }
            Kind::Blocking => self.queue_on_pool(id, sqe, Work::Blocking),
            Kind::Unsupported => post(sh, id, -libc::EINVAL, 0),
            kind => self.attempt(sh, id, sqe, kind, 0, false),
        }
    }

    /// Tries op `id` once (after readiness `events` if `waiting`), and posts, waits or queues
    /// it on a blocking thread as the try says.
    fn attempt(
        &mut self,
        sh: &mut Shared,
        id: usize,
        sqe: Sqe,
        mut kind: Kind,
        events: u32,
        waiting: bool,
    ) {
        let fd = sqe.fd();
        match self.step(sh, id, &sqe, &mut kind, events) {
            Step::Done(result, flags) => {
                if waiting {
                    self.fds.remove(fd, id, false);
                    self.ops.remove(&id);
                }
                post(sh, id, result, flags);
            }
            Step::Pool(work) => {
                if waiting {
                    self.fds.remove(fd, id, false);
                }
                self.queue_on_pool(id, sqe, work);
            }
            Step::Wait(wait_for) => {
                if waiting {
                    self.ops.insert(id, Pending::Ready { sqe, kind });
                    return;
                }
                let waiter = Waiter {
                    id,
                    events: wait_for,
                    persistent: kind.persistent(),
                };
                match self.fds.wait(fd, waiter) {
                    Ok(()) => {
                        self.ops.insert(id, Pending::Ready { sqe, kind });
                    }
                    // Not pollable (a regular file): it never blocks on readiness.
                    Err(err) if err.raw_os_error() == Some(libc::EPERM) => match kind {
                        Kind::Read { vectored, .. } | Kind::Write { vectored, .. } => {
                            let write = matches!(kind, Kind::Write { .. });
                            let work = Work::Rw {
                                write,
                                vectored,
                                skip: 0,
                            };
                            self.queue_on_pool(id, sqe, work);
                        }
                        Kind::Poll | Kind::PollMulti => {
                            post(sh, id, (wait_for & (IN | OUT)) as i32, 0)
                        }
                        _ => post(sh, id, -libc::EPERM, 0),
                    },
                    Err(err) => post(sh, id, -err.raw_os_error().unwrap_or(libc::EIO), 0),
                }
            }
        }
    }

    /// One try of an op; intermediate CQEs of multishot ops are posted here.
    fn step(
        &mut self,
        sh: &mut Shared,
        id: usize,
        sqe: &Sqe,
        kind: &mut Kind,
        events: u32,
    ) -> Step {
        let fd = sqe.fd();
        // SAFETY: for every call below, the op's slot is live and owns what its SQE points to
        // until the CQE this step posts is reaped (I1); provided-buffer rings stay registered
        // while a receive names them (`register_buf_ring`'s contract).
        unsafe {
            match *kind {
                Kind::Read { vectored, plain } | Kind::Write { vectored, plain } => {
                    let write = matches!(kind, Kind::Write { .. });
                    let wait = if write { OUT } else { IN };
                    let work = |skip| Work::Rw {
                        write,
                        vectored,
                        skip,
                    };
                    if plain {
                        // No non-blocking form: a write may need more room than POLLOUT
                        // promised, so it goes to a thread; a read goes ahead only if the
                        // bytes are still there (another reader may have taken them).
                        if write {
                            return Step::Pool(work(0));
                        }
                        if ops::poll_now(fd, IN) == 0 {
                            return Step::Wait(wait);
                        }
                        return Step::Done(ops::rw(sqe, write, vectored, false, 0), 0);
                    }
                    if ops::direct(fd) {
                        // O_DIRECT waits for the device whatever the flags say.
                        return Step::Pool(work(0));
                    }
                    let result = ops::rw(sqe, write, vectored, true, 0);
                    match -result {
                        libc::EAGAIN => match ops::file_kind(fd) {
                            FileKind::Disk => Step::Pool(work(0)),
                            FileKind::Stream => Step::Wait(wait),
                        },
                        // EOPNOTSUPP: no RWF_NOWAIT for this file; EINVAL: none for buffered
                        // writes on this filesystem (XFS before 6.0, f2fs). A real EINVAL comes
                        // back from the thread.
                        libc::EOPNOTSUPP | libc::EINVAL => match ops::file_kind(fd) {
                            FileKind::Disk => Step::Pool(work(0)),
                            FileKind::Stream if result == -libc::EINVAL => Step::Done(result, 0),
                            FileKind::Stream => {
                                *kind = if write {
                                    Kind::Write {
                                        vectored,
                                        plain: true,
                                    }
                                } else {
                                    Kind::Read {
                                        vectored,
                                        plain: true,
                                    }
                                };
                                Step::Wait(wait)
                            }
                        },
                        _ if result > 0
                            && !vectored
                            && (result as u32) < sqe.len()
                            && ops::file_kind(fd) == FileKind::Disk =>
                        {
                            // Part of a file was cached: the rest may block, on a thread.
                            Step::Pool(work(result as u32))
                        }
                        _ => Step::Done(result, 0),
                    }
                }
                Kind::Recv | Kind::Send => {
                    let send = *kind == Kind::Send;
                    would_block(ops::recv_send(sqe, send), if send { OUT } else { IN })
                }
                Kind::RecvMsg | Kind::SendMsg => {
                    let send = *kind == Kind::SendMsg;
                    would_block(ops::msg(sqe, send), if send { OUT } else { IN })
                }
                Kind::Accept => would_block(ops::accept(sqe, false), IN),
                Kind::AcceptMulti => {
                    for _ in 0..ROUNDS {
                        match ops::accept(sqe, true) {
                            fd if fd >= 0 => post(sh, id, fd, IORING_CQE_F_MORE),
                            e if e == -libc::EAGAIN => return Step::Wait(IN),
                            e if e == -libc::EINTR || e == -libc::ECONNABORTED => {}
                            e => return Step::Done(e, 0),
                        }
                    }
                    self.again.push(id);
                    Step::Wait(IN)
                }
                Kind::Connect { started: false } => match ops::connect(sqe) {
                    e if e == -libc::EINPROGRESS => {
                        *kind = Kind::Connect { started: true };
                        Step::Wait(OUT)
                    }
                    // A Unix listener's backlog is full: its socket polls writable at once, so
                    // waiting would spin. A blocking connect on a thread waits for room.
                    e if e == -libc::EAGAIN => Step::Pool(Work::Blocking),
                    result => Step::Done(result, 0),
                },
                Kind::Connect { started: true } => {
                    if ops::poll_now(fd, OUT) == 0 {
                        return Step::Wait(OUT); // an event meant for another file
                    }
                    Step::Done(ops::connect_result(fd), 0)
                }
                Kind::Poll => match ops::poll_now(fd, sqe.op_flags()) {
                    0 => Step::Wait(sqe.op_flags()),
                    result => Step::Done(result, 0),
                },
                Kind::PollMulti => {
                    let wanted = sqe.op_flags();
                    let ready = if events == 0 {
                        ops::poll_now(fd, wanted) // arming: post if ready already
                    } else {
                        (events & (wanted | (libc::EPOLLERR | libc::EPOLLHUP) as u32)) as i32
                    };
                    if ready < 0 {
                        return Step::Done(ready, 0);
                    }
                    if ready > 0 {
                        post(sh, id, ready, IORING_CQE_F_MORE);
                    }
                    Step::Wait(wanted)
                }
                Kind::SendZc => match ops::recv_send(sqe, true) {
                    e if e == -libc::EAGAIN => Step::Wait(OUT),
                    sent if sent >= 0 => {
                        post(sh, id, sent, IORING_CQE_F_MORE);
                        Step::Done(0, IORING_CQE_F_NOTIF)
                    }
                    e => Step::Done(e, 0),
                },
                Kind::RecvMulti { tcp } => self.recv_multi(sh, id, sqe, tcp),
                Kind::Nop | Kind::Timeout | Kind::Close | Kind::Blocking | Kind::Unsupported => {
                    Step::Done(-libc::EINVAL, 0)
                }
            }
        }
    }

    /// Multishot receive: a provided buffer per arrival of bytes, until the socket is drained
    /// (or `ROUNDS`); the group running dry ends the op with ENOBUFS, as the kernel does.
    /// `tcp`: a short read means the socket is drained, saving the receive that says EAGAIN.
    ///
    /// # Safety
    /// As in [`step`](Self::step).
    unsafe fn recv_multi(&mut self, sh: &mut Shared, id: usize, sqe: &Sqe, tcp: bool) -> Step {
        for _ in 0..ROUNDS {
            let Some(group) = self.groups.get_mut(sqe.buf_group()) else {
                return Step::Done(-libc::ENOBUFS, 0);
            };
            // SAFETY: the group stays registered while a receive names it (the caller's
            // contract).
            let Some(first) = (unsafe { group.peek(0) }) else {
                return Step::Done(-libc::ENOBUFS, 0);
            };
            // TCP: receive into the next buffer too, so that bytes filling the first exactly
            // are known to have drained the socket without a receive that says EAGAIN.
            // SAFETY: as above.
            let second = if tcp { unsafe { group.peek(1) } } else { None };
            let bufs = [first, second.unwrap_or((0, 0, 0))];
            let count = if second.is_some() { 2 } else { 1 };
            // SAFETY: the buffers belong to the ring until a CQE hands them out (R2).
            match unsafe { ops::recv_into(sqe.fd(), &bufs[..count], sqe.op_flags()) } {
                0 => return Step::Done(0, 0),
                n if n > 0 => {
                    let mut left = n as u32;
                    for (_, len, bid) in &bufs[..count] {
                        if left == 0 {
                            break;
                        }
                        let took = left.min(*len);
                        left -= took;
                        group.head = group.head.wrapping_add(1);
                        let flags = IORING_CQE_F_BUFFER
                            | IORING_CQE_F_MORE
                            | (u32::from(*bid) << IORING_CQE_BUFFER_SHIFT);
                        post(sh, id, took as i32, flags);
                    }
                    let room: u32 = bufs[..count].iter().map(|b| b.1).sum();
                    if tcp && (n as u32) < room {
                        // A short TCP read emptied the receive queue: the next bytes bring an
                        // edge. (Datagrams and Unix streams stop at message boundaries.)
                        return Step::Wait(IN);
                    }
                }
                e if e == -libc::EAGAIN => return Step::Wait(IN),
                e if e == -libc::EINTR => {}
                e => return Step::Done(e, 0),
            }
        }
        self.again.push(id);
        Step::Wait(IN)
    }

    fn queue_on_pool(&mut self, id: usize, sqe: Sqe, work: Work) {
        let ticket = pool::queue(sqe, work, id, &self.replies);
        self.ops.insert(id, Pending::Pool(ticket));
        self.in_pool += 1;
    }

    fn start_timer(&mut self, sh: &mut Shared, id: usize, sqe: &Sqe) {
        let flags = sqe.op_flags();
        // SAFETY: the timespec is owned by the op, whose slot is live (I1).
        let every = unsafe { ops::timeout(sqe.addr(), flags & IORING_TIMEOUT_ABS != 0) };
        let multishot = flags & IORING_TIMEOUT_MULTISHOT != 0;
        if multishot && flags & IORING_TIMEOUT_ABS != 0 {
            return post(sh, id, -libc::EINVAL, 0);
        }
        let now = Instant::now();
        // A timespec past what `Instant` holds (centuries) never fires; it waits for its cancel.
        let deadline = now.checked_add(every);
        self.ops.insert(
            id,
            Pending::Timer {
                deadline: deadline.unwrap_or(now),
                every,
                left: sqe.off() as u32,
                multishot,
            },
        );
        if let Some(deadline) = deadline {
            self.timers.push(Reverse((deadline, id)));
        }
    }

    /// Fires the TIMEOUT ops due at `now`.
    fn fire_timers(&mut self, sh: &mut Shared, now: Instant) {
        while let Some(&Reverse((deadline, id))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(Pending::Timer {
                deadline: due,
                every,
                left,
                multishot,
            }) = self.ops.get_mut(&id)
            else {
                continue; // cancelled
            };
            if *due != deadline {
                continue;
            }
            if !*multishot || *left == 1 {
                self.ops.remove(&id);
                post(sh, id, -libc::ETIME, 0);
                continue;
            }
            *left = left.saturating_sub(1);
            post(sh, id, -libc::ETIME, IORING_CQE_F_MORE);
            // Past what `Instant` holds: it never fires again, and waits for its cancel.
            if let Some(next) = deadline.checked_add(*every) {
                *due = next;
                self.timers.push(Reverse((next, id)));
            }
        }
    }

    /// Cancels op `id`: at once if it waits for readiness or a timer, else (on a blocking
    /// thread) when the thread reports.
    pub(crate) fn cancel(&mut self, sh: &mut Shared, id: usize) {
        sh.counters.cancels.inc();
        match self.ops.remove(&id) {
            Some(Pending::Ready { sqe, .. }) => {
                self.fds.remove(sqe.fd(), id, true);
                self.again.retain(|&again| again != id);
                post(sh, id, -libc::ECANCELED, 0);
            }
            Some(Pending::Timer { .. }) => post(sh, id, -libc::ECANCELED, 0),
            Some(Pending::Pool(ticket)) => {
                ticket.cancel();
                self.ops.insert(id, Pending::Pool(ticket));
            }
            None => {} // finished: its CQE is posted already
        }
    }

    /// One turn: wait for readiness as `park` allows, try the ops it concerns, fire timers,
    /// take what blocking threads finished, and reap.
    pub(crate) fn tick(&mut self, sh: &mut Shared, park: Park) -> io::Result<()> {
        self.take_replies(sh);
        let busy = !sh.posted.is_empty() || !self.again.is_empty() || self.replies.any();
        let mut timeout = match park {
            Park::Until(timeout) if !busy => timeout,
            _ => Some(Duration::ZERO),
        };
        if let Some(&Reverse((deadline, _))) = self.timers.peek() {
            let left = deadline.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        let idle = timeout == Some(Duration::ZERO) && self.fds.waiting() == 0;
        let result = if idle { Ok(0) } else { self.wait(sh, timeout) };
        sh.doorbell.unpark();
        let n = match result {
            Ok(n) => n,
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => 0,
            Err(err) => return Err(err),
        };
        for i in 0..n {
            let libc::epoll_event { events, u64: data } = self.events[i];
            if data == DOORBELL {
                let mut buf = 0u64;
                // SAFETY: reads 8 bytes into a local from the eventfd, which is readable.
                let _ = unsafe { libc::read(self.doorbell_fd, (&mut buf as *mut u64).cast(), 8) };
            } else {
                self.ready(sh, data as RawFd, events);
            }
        }
        for id in std::mem::take(&mut self.again) {
            if let Some(&Pending::Ready { sqe, kind }) = self.ops.get(&id) {
                self.attempt(sh, id, sqe, kind, IN, true);
                if !self.ops.contains_key(&id) {
                    let _ = self.fds.arm(sqe.fd()); // it ended: its registration goes
                }
            }
        }
        if !self.timers.is_empty() {
            self.fire_timers(sh, Instant::now());
        }
        self.take_replies(sh);
        if sh.faults.as_mut().is_some_and(super::Faults::cq_hold) {
            sh.counters.faults_injected.inc();
        } else {
            sh.reap_posted();
        }
        sh.counters.ops_in_flight.set(sh.table.slots.len() as u64);
        Ok(())
    }

    /// `epoll_pwait2` for up to `timeout` (`None`: no limit); the number of events.
    fn wait(&mut self, sh: &Shared, timeout: Option<Duration>) -> io::Result<usize> {
        sh.counters.enters.inc();
        let cap = self.events.capacity() as i32;
        let events = self.events.as_mut_ptr();
        let n = if self.pwait2 {
            let ts = timeout.map(|t| libc::timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            let ts_ptr = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: the kernel writes at most `cap` events into the vector's spare capacity
            // and reads the timespec on this stack; no signal mask is passed.
            let n = unsafe {
                libc::epoll_pwait2(self.epfd.as_raw_fd(), events, cap, ts_ptr, std::ptr::null())
            };
            // ENOSYS: before Linux 5.11; EPERM: a seccomp profile that predates the call.
            if n < 0 && matches!(ops::errno(), libc::ENOSYS | libc::EPERM) {
                self.pwait2 = false;
                return self.wait(sh, timeout);
            }
            n
        } else {
            // Milliseconds, rounded up so a wait never ends before a deadline.
            let ms = timeout.map_or(-1, |t| {
                t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
            });
            // SAFETY: as above, with a timeout in milliseconds.
            unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), events, cap, ms) }
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel initialised the first `n` events.
        unsafe { self.events.set_len(n as usize) };
        Ok(n as usize)
    }

    /// `fd` reported `events`: tries the ops waiting for them, then re-arms it.
    fn ready(&mut self, sh: &mut Shared, fd: RawFd, events: u32) {
        let mut fired = std::mem::take(&mut self.fired);
        self.fds.fired(fd, events, &mut fired);
        for waiter in fired.drain(..) {
            if let Some(&Pending::Ready { sqe, kind }) = self.ops.get(&waiter.id) {
                self.attempt(sh, waiter.id, sqe, kind, events, true);
            }
        }
        self.fired = fired;
        if let Err(err) = self.fds.arm(fd) {
            // The fd cannot be waited on any more (closed under its ops): fail them.
            let errno = err.raw_os_error().unwrap_or(libc::EIO);
            let stuck: Vec<usize> = self
                .ops
                .iter()
                .filter(|(_, p)| matches!(p, Pending::Ready { sqe, .. } if sqe.fd() == fd))
                .map(|(&id, _)| id)
                .collect();
            for id in stuck {
                self.ops.remove(&id);
                self.fds.remove(fd, id, false);
                post(sh, id, -errno, 0);
            }
        }
    }

    /// Posts what blocking threads finished.
    fn take_replies(&mut self, sh: &mut Shared) {
        if !self.replies.any() {
            return;
        }
        self.replies.take(&mut self.finished);
        for (id, result) in self.finished.drain(..) {
            self.ops.remove(&id);
            self.in_pool -= 1;
            post(sh, id, result, 0);
        }
    }

    /// Cancels everything and waits (at most about a second) for blocking threads to report,
    /// so nothing writes into memory that is freed afterwards.
    pub(crate) fn shutdown(&mut self, sh: &mut Shared) {
        let ids: Vec<usize> = self.ops.keys().copied().collect();
        for id in ids {
            self.cancel(sh, id);
        }
        for _ in 0..100 {
            self.take_replies(sh);
            if self.in_pool == 0 {
                break;
            }
            let _ = self.wait(sh, Some(Duration::from_millis(10)));
        }
        // A thread that reported its last job may still hold the replies (and through them
        // the doorbell's eventfd) for a moment: let it go, so the core closes every fd it
        // opened before it is gone.
        for _ in 0..1_000 {
            if self.in_pool > 0 || Arc::strong_count(&self.replies) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        sh.reap_posted();
    }

    /// The provided-buffer groups, for `register.rs`'s calls.
    pub(crate) fn groups(&mut self) -> &mut Groups {
        &mut self.groups
    }

    /// Stands in for `IORING_REGISTER_BUFFERS`: fixed-buffer ops are plain reads and writes
    /// here, so only the one-set-at-a-time rule is kept.
    pub(crate) fn register_buffers(&mut self) -> io::Result<()> {
        if self.fixed_buffers {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        self.fixed_buffers = true;
        Ok(())
    }

    pub(crate) fn unregister_buffers(&mut self) -> io::Result<()> {
        if !std::mem::take(&mut self.fixed_buffers) {
            return Err(io::Error::from_raw_os_error(libc::ENXIO));
        }
        Ok(())
    }
}

fn post(sh: &mut Shared, id: usize, result: i32, flags: u32) {
    sh.posted.push((id as u64, Cqe::new(result, flags)));
}
