//! The executor of one core: the local run queue, the remote queue that other threads push
//! woken tasks and jobs onto, the list of live tasks, and the budget per tick.
//!
//! Tasks are `!Send` and never leave their core. A tick runs at most [`BUDGET`] task polls, so
//! a task that keeps waking itself cannot starve the ring; then the core turns the ring.

pub(crate) mod join;
pub(crate) mod task;
pub(crate) mod waker;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use slab::Slab;

use crate::driver::Doorbell;
use crate::CoreId;
use join::JoinHandle;
use task::TaskRef;

/// Task polls per tick before the ring is turned.
pub(crate) const BUDGET: usize = 128;

/// A closure sent to a core from another thread; it runs on that core's thread.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

enum Remote {
    Task(TaskRef),
    Job(Job),
}

/// The part of a core other threads may touch: its remote queue and doorbell.
pub(crate) struct Shared {
    pub(crate) core: CoreId,
    remote: Mutex<Vec<Remote>>,
    remote_pending: AtomicBool,
    pub(crate) doorbell: Arc<Doorbell>,
    /// Set when the core should stop after its current tick (runtime shutdown).
    pub(crate) stopping: AtomicBool,
    /// Set once the core has stopped taking jobs.
    closed: AtomicBool,
}

impl Shared {
    pub(crate) fn new(core: CoreId, doorbell: Arc<Doorbell>) -> Shared {
        Shared {
            core,
            remote: Mutex::new(Vec::new()),
            remote_pending: AtomicBool::new(false),
            doorbell,
            stopping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn push_remote_task(&self, task: TaskRef) {
        self.push_remote(Remote::Task(task));
    }

    /// Queues a job to run on this core. Gives it back if the core has shut down.
    pub(crate) fn push_job(&self, job: Job) -> Result<(), Job> {
        let mut queue = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return Err(job);
        }
        queue.push(Remote::Job(job));
        drop(queue);
        self.remote_pending.store(true, Ordering::SeqCst);
        self.doorbell.wake();
        Ok(())
    }

    fn push_remote(&self, item: Remote) {
        let mut queue = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            // The core has shut down: nobody will drain the queue, and keeping the task would
            // make a cycle (queue -> task -> owner -> queue). Its stage was emptied at shutdown,
            // so dropping it here, outside the lock, frees only memory.
            drop(queue);
            drop(item);
            return;
        }
        queue.push(item);
        drop(queue);
        self.remote_pending.store(true, Ordering::SeqCst);
        self.doorbell.wake();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn has_remote(&self) -> bool {
        self.remote_pending.load(Ordering::SeqCst)
    }

    /// Asks the core to stop and wakes it if parked.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.doorbell.wake();
    }
}

/// One core's executor.
pub(crate) struct Executor {
    pub(crate) shared: Arc<Shared>,
    run_queue: RefCell<VecDeque<TaskRef>>,
    /// Every live task, so shutdown can drop each future on this thread.
    tasks: RefCell<Slab<TaskRef>>,
}

impl Executor {
    pub(crate) fn new(shared: Arc<Shared>) -> Executor {
        Executor {
            shared,
            run_queue: RefCell::new(VecDeque::with_capacity(256)),
            tasks: RefCell::new(Slab::with_capacity(256)),
        }
    }

    pub(crate) fn spawn<F: Future + 'static>(&self, future: F) -> JoinHandle<F::Output> {
        let task = TaskRef::new(future, self.shared.clone());
        let index = self.tasks.borrow_mut().insert(task.clone());
        task.header().owned_index.set(index);
        self.run_queue.borrow_mut().push_back(task.clone());
        JoinHandle::new(task)
    }

    pub(crate) fn push_local(&self, task: TaskRef) {
        self.run_queue.borrow_mut().push_back(task);
    }

    /// Removes a finished or cancelled task from the live list.
    pub(crate) fn forget(&self, task: &TaskRef) {
        let index = task.header().owned_index.replace(usize::MAX);
        if index != usize::MAX {
            self.tasks.borrow_mut().try_remove(index);
        }
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.run_queue.borrow().is_empty()
    }

    pub(crate) fn live_tasks(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// Polls up to `budget` ready tasks.
    pub(crate) fn run(&self, budget: usize) {
        for _ in 0..budget {
            let Some(task) = self.run_queue.borrow_mut().pop_front() else {
                return;
            };
            if task.poll() {
                self.forget(&task);
            }
        }
    }

    /// Moves remotely woken tasks to the run queue and runs the jobs sent to this core.
    pub(crate) fn drain_remote(&self) {
        if !self.shared.remote_pending.swap(false, Ordering::SeqCst) {
            return;
        }
        let items =
            std::mem::take(&mut *self.shared.remote.lock().unwrap_or_else(|e| e.into_inner()));
        for item in items {
            match item {
                Remote::Task(task) => self.push_local(task),
                Remote::Job(job) => job(),
            }
        }
    }

    /// Drops every task's future on this thread, and refuses further jobs.
    pub(crate) fn shutdown(&self) {
        {
            // Under the lock, so no remote push can slip in between the flag and the drain.
            let _queue = self.shared.remote.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.closed.store(true, Ordering::SeqCst);
        }
        // Dropping a future may spawn or wake tasks; a few rounds settle it.
        for _ in 0..16 {
            let tasks: Vec<TaskRef> = self.tasks.borrow_mut().drain().collect();
            if tasks.is_empty() {
                break;
            }
            // Unlist them all first: cancelling one may abort another (a drop guard).
            for task in &tasks {
                task.header().owned_index.set(usize::MAX);
            }
            for task in &tasks {
                task.cancel();
            }
        }
        self.run_queue.borrow_mut().clear();
        let items =
            std::mem::take(&mut *self.shared.remote.lock().unwrap_or_else(|e| e.into_inner()));
        drop(items);
    }
}

/// Yields to the other ready tasks of this core once.
///
/// The task is queued behind every task already runnable; no syscall is made while others
/// are runnable.
///
/// # Examples
/// ```
/// corio_rt::block_on(async { corio_rt::yield_now().await });
/// ```
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx: &mut Context<'_>| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Spawns a task on the current core and returns its handle.
///
/// The future may be `!Send`; it runs on this core only. It starts at the next chance the core
/// gets (after the current task yields), whether or not the handle is awaited.
///
/// # Panics
/// If called outside a corio core (not inside `block_on` or a `Runtime`).
///
/// # Examples
/// ```
/// use std::rc::Rc;
/// corio_rt::block_on(async {
///     let shared = Rc::new(5); // !Send is fine: the task stays on this core
///     let task = corio_rt::spawn({ let shared = shared.clone(); async move { *shared + 1 } });
///     assert_eq!(task.await.unwrap(), 6);
/// });
/// ```
pub fn spawn<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    crate::context::with_core(|core| core.executor.spawn(future))
        .unwrap_or_else(|| panic!("corio::spawn called outside a corio core"))
}
