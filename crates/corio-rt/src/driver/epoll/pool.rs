//! The blocking threads of the epoll driver: file reads and writes that miss the page cache,
//! and path and sync ops (OPENAT, STATX, FSYNC, ...), which block in the kernel however they
//! are called, run here, as tokio's `spawn_blocking` runs them.
//!
//! One pool per process, started lazily: a thread is added when jobs outnumber idle threads (up to
//! [`MAX_THREADS`]), and a thread idle for [`IDLE`] exits. A job carries its SQE (plain bytes)
//! and reports its result to the core that queued it, poking that core only if it is parked (the
//! doorbell's handshake). A job cancelled before a thread picks it up reports `ECANCELED`
//! without running; one already running finishes, and the op's memory stays in its slot until
//! then (driver invariant I1).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::ops;
use crate::driver::sqe::Sqe;
use crate::driver::Doorbell;

/// Threads at most.
const MAX_THREADS: usize = 64;
/// How long an idle thread waits for work before it exits.
const IDLE: Duration = Duration::from_secs(10);

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;

/// What a job does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Work {
    /// A read or write of a file, blocking; `skip` bytes were done without blocking already.
    Rw {
        write: bool,
        vectored: bool,
        skip: u32,
    },
    /// A path or sync op.
    Blocking,
}

/// Where a core's jobs report: finished `(slot, result)` pairs and the core's doorbell.
pub(crate) struct Replies {
    done: Mutex<Vec<(usize, i32)>>,
    /// Finished jobs not yet taken (a cheap look before the lock).
    ready: AtomicUsize,
    doorbell: Arc<Doorbell>,
}

impl Replies {
    pub(crate) fn new(doorbell: Arc<Doorbell>) -> Replies {
        Replies {
            done: Mutex::new(Vec::new()),
            ready: AtomicUsize::new(0),
            doorbell,
        }
    }

    /// Whether a finished job waits to be taken. SeqCst: the core reads it after publishing
    /// that it parks, a job writes it before looking whether the core parked.
    pub(crate) fn any(&self) -> bool {
        self.ready.load(Ordering::SeqCst) > 0
    }

    /// Moves the finished jobs into `out`.
    pub(crate) fn take(&self, out: &mut Vec<(usize, i32)>) {
        if !self.any() {
            return;
        }
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        self.ready.store(0, Ordering::SeqCst);
        out.append(&mut done);
    }

    fn put(&self, slot: usize, result: i32) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((slot, result));
        self.ready.fetch_add(1, Ordering::SeqCst);
        self.doorbell.wake(|_| false);
    }
}

/// A queued job's handle, to cancel it.
pub(crate) struct Ticket(Arc<AtomicU8>);

impl Ticket {
    /// Cancels the job if no thread has picked it up (it then reports `ECANCELED`).
    pub(crate) fn cancel(&self) {
        let _ = self
            .0
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
    }
}

struct Job {
    sqe: Sqe,
    work: Work,
    slot: usize,
    state: Arc<AtomicU8>,
    replies: Arc<Replies>,
}

impl Job {
    fn run(self) {
        let result = if self
            .state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            match self.work {
                // Bytes moved without blocking already: they are the result, not lost.
                Work::Rw { skip, .. } if skip > 0 => skip as i32,
                _ => -libc::ECANCELED,
            }
        } else {
            // SAFETY: the op's slot stays live, owning what the SQE points to, until the core
            // reaps the result this job reports (I1), which is after this call returns.
            unsafe {
                match self.work {
                    Work::Rw {
                        write,
                        vectored,
                        skip,
                    } => ops::rw(&self.sqe, write, vectored, false, skip),
                    Work::Blocking => ops::blocking(&self.sqe),
                }
            }
        };
        self.replies.put(self.slot, result);
    }
}

struct Pool {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    threads: AtomicUsize,
    idle: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            tx,
            rx,
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
        }
    })
}

/// Queues `sqe`'s op for slot `slot`, to report to `replies`.
pub(crate) fn queue(sqe: Sqe, work: Work, slot: usize, replies: &Arc<Replies>) -> Ticket {
    let state = Arc::new(AtomicU8::new(QUEUED));
    let job = Job {
        sqe,
        work,
        slot,
        state: state.clone(),
        replies: replies.clone(),
    };
    let pool = pool();
    pool.tx
        .send(job)
        .expect("the pool's receiver lives as long as the process");
    // Pairs with the fence in an idle thread that exits: either it sees this job, or this sees
    // it gone from the idle count and starts a thread.
    std::sync::atomic::fence(Ordering::SeqCst);
    if pool.idle.load(Ordering::SeqCst) < pool.rx.len()
        && !add_thread(pool)
        && pool.threads.load(Ordering::SeqCst) == 0
    {
        // No thread runs and none could be started: do the work here rather than never.
        if let Ok(job) = pool.rx.try_recv() {
            job.run();
        }
    }
    Ticket(state)
}

/// Starts one more thread unless the pool is at its limit; false if none was started.
fn add_thread(pool: &'static Pool) -> bool {
    let started = pool
        .threads
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < MAX_THREADS).then_some(n + 1)
        });
    if started.is_err() {
        return false;
    }
    let spawned = std::thread::Builder::new()
        .name("corio-blocking".into())
        .spawn(move || loop {
            pool.idle.fetch_add(1, Ordering::SeqCst);
            let job = pool.rx.recv_timeout(IDLE);
            pool.idle.fetch_sub(1, Ordering::SeqCst);
            match job {
                Ok(job) => job.run(),
                Err(_) => {
                    std::sync::atomic::fence(Ordering::SeqCst);
                    if pool.rx.is_empty() {
                        pool.threads.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
    if spawned.is_err() {
        pool.threads.fetch_sub(1, Ordering::SeqCst);
        return false;
    }
    true
}
