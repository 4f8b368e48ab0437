//! A core's inbox: the one part of a core other threads touch. Tasks woken on other threads and
//! jobs sent from them (`CoreHandle::execute`, corio-mesh's `spawn_on`) queue here; the core
//! drains the queue in one batch per tick, and is poked through its doorbell only if parked.
//!
//! The queue is a mutex-guarded vector swapped out whole by the core, with a `pending` flag the
//! core reads without the lock. The handshake with a parking core is the doorbell's (see
//! `driver/doorbell.rs`): a sender publishes its item, then pokes only if the core has said it
//! is parked; the core says so, then looks at `pending` once more. It is model-checked with
//! loom below.

use std::sync::Arc;

use crate::driver::Doorbell;
use crate::executor::task::TaskRef;
use crate::metrics::Counters;
use crate::sync::{AtomicBool, Mutex, Ordering};
use crate::CoreId;

/// A closure sent to a core from another thread; it runs on that core's thread.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// One item of the remote queue.
pub(crate) enum Remote {
    Task(TaskRef),
    Job(Job),
}

/// A queue many threads push to and one core drains whole: the items, a `pending` flag read
/// without the lock, and a `closed` flag after which pushes are refused.
pub(crate) struct RemoteQueue<T> {
    items: Mutex<Vec<T>>,
    pending: AtomicBool,
    closed: AtomicBool,
}

impl<T> RemoteQueue<T> {
    pub(crate) fn new() -> RemoteQueue<T> {
        RemoteQueue {
            items: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues `item` and announces it (`pending`), or gives it back once closed. The caller
    /// pokes the core afterwards, in that order (the handshake's first half).
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return Err(item);
        }
        items.push(item);
        drop(items);
        self.pending.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Whether something was announced and not yet taken.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Takes every queued item, if any was announced.
    pub(crate) fn take(&self) -> Option<Vec<T>> {
        // A compare-exchange, not a swap: the same effect (clear the flag if set), no store when
        // it is clear, and loom models it correctly (loom 0.7 lets a concurrent store slip into
        // a swap: tokio-rs/loom#254, #389).
        if self
            .pending
            .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return None;
        }
        Some(std::mem::take(
            &mut *self.items.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    /// Refuses every later push and returns what was queued.
    pub(crate) fn close(&self) -> Vec<T> {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        // Under the lock, so no push can slip in between the flag and the drain.
        self.closed.store(true, Ordering::SeqCst);
        std::mem::take(&mut *items)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// The part of a core other threads may touch: its remote queue, doorbell, stop flag and
/// counters.
pub(crate) struct Inbox {
    pub(crate) core: CoreId,
    queue: RemoteQueue<Remote>,
    pub(crate) doorbell: Arc<Doorbell>,
    /// Set when the core should stop after its current tick (runtime shutdown).
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    pub(crate) counters: Arc<Counters>,
}

impl Inbox {
    pub(crate) fn new(core: CoreId, doorbell: Arc<Doorbell>, counters: Arc<Counters>) -> Inbox {
        Inbox {
            core,
            queue: RemoteQueue::new(),
            doorbell,
            stopping: std::sync::atomic::AtomicBool::new(false),
            counters,
        }
    }

    pub(crate) fn push_task(&self, task: TaskRef) {
        if let Err(item) = self.push(Remote::Task(task)) {
            // The core has shut down: nobody will drain the queue, and keeping the task would
            // make a cycle (queue -> task -> owner -> queue). Its stage was emptied at shutdown,
            // so dropping it here, outside the lock, frees only memory.
            drop(item);
        }
    }

    /// Queues a job to run on this core. Gives it back if the core has shut down.
    pub(crate) fn push_job(&self, job: Job) -> Result<(), Job> {
        match self.push(Remote::Job(job)) {
            Ok(()) => {
                self.counters.jobs_received.inc();
                Ok(())
            }
            Err(Remote::Job(job)) => Err(job),
            Err(Remote::Task(_)) => unreachable!("a job was pushed"),
        }
    }

    fn push(&self, item: Remote) -> Result<(), Remote> {
        self.queue.push(item)?;
        self.poke();
        Ok(())
    }

    /// Wakes the core if it is parked (after the caller published its work).
    pub(crate) fn poke(&self) {
        if self.doorbell.wake(crate::core::msg_ring_from_here) {
            self.counters.pokes_received.inc();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    pub(crate) fn has_remote(&self) -> bool {
        self.queue.has_pending()
    }

    /// Takes every queued item, if any was announced.
    pub(crate) fn take(&self) -> Option<Vec<Remote>> {
        self.queue.take()
    }

    /// Refuses every later push and returns what was queued.
    pub(crate) fn close(&self) -> Vec<Remote> {
        self.queue.close()
    }

    /// Asks the core to stop and wakes it if parked.
    pub(crate) fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.poke();
    }
}

/// Model checks of the remote queue against a parking core (run with `RUSTFLAGS="--cfg loom"
/// cargo test -p corio-rt --lib --release loom`): every item pushed is taken by the core or
/// handed back, and a core that parks has either seen the item or is poked.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::RemoteQueue;
    use crate::driver::doorbell::ParkFlag;
    use loom::sync::Arc;

    #[test]
    fn loom_no_item_is_lost_and_a_parked_core_is_poked() {
        loom::model(|| {
            let queue = Arc::new(RemoteQueue::new());
            let flag = Arc::new(ParkFlag::new());
            let sender = {
                let (queue, flag) = (queue.clone(), flag.clone());
                loom::thread::spawn(move || {
                    queue.push(7u32).expect("open");
                    flag.take_parked()
                })
            };
            // The core: take what is there, park, look again, and block only if still empty.
            let first = queue.take();
            let mut got = first.clone().unwrap_or_default();
            flag.park();
            let blocks = got.is_empty() && !queue.has_pending();
            if !blocks {
                flag.unpark();
            }
            let poked = sender.join().unwrap();
            assert!(
                !blocks || poked,
                "the core blocked with an item queued and no poke"
            );
            let last = queue.take();
            got.extend(last.clone().unwrap_or_default());
            assert_eq!(got, vec![7], "first take {first:?}, last take {last:?}");
        });
    }

    #[test]
    fn loom_a_push_racing_close_is_taken_or_handed_back() {
        loom::model(|| {
            let queue = Arc::new(RemoteQueue::new());
            let sender = {
                let queue = queue.clone();
                loom::thread::spawn(move || queue.push(1u32).is_err())
            };
            let drained = queue.close();
            let refused = sender.join().unwrap();
            // Exactly one of: drained at close, or refused. Never queued after close.
            assert_eq!(drained.len() + usize::from(refused), 1);
            assert!(queue.take().unwrap_or_default().is_empty());
        });
    }
}
