//! The executor of one core: the local run queue, the remote queue that other threads push
//! woken tasks and jobs onto, the list of live tasks, and the budget per tick.
//!
//! Tasks are `!Send` and never leave their core. A tick runs at most [`BUDGET`] task polls, so
//! a task that keeps waking itself cannot starve the ring; then the core turns the ring.

pub(crate) mod inbox;
pub(crate) mod join;
pub(crate) mod task;
pub(crate) mod waker;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use slab::Slab;

use inbox::Remote;
pub(crate) use inbox::{Inbox, Job};
use join::JoinHandle;
use task::TaskRef;

/// Task polls per tick before the ring is turned.
pub(crate) const BUDGET: usize = 128;

/// One core's executor.
pub(crate) struct Executor {
    pub(crate) inbox: Arc<Inbox>,
    run_queue: RefCell<VecDeque<TaskRef>>,
    /// Every live task, so shutdown can drop each future on this thread.
    tasks: RefCell<Slab<TaskRef>>,
    /// Whether `run` times each poll (after a batch that took longer than `LONG_POLL`).
    time_each_poll: std::cell::Cell<bool>,
}

impl Executor {
    pub(crate) fn new(inbox: Arc<Inbox>) -> Executor {
        Executor {
            inbox,
            run_queue: RefCell::new(VecDeque::with_capacity(256)),
            tasks: RefCell::new(Slab::with_capacity(256)),
            time_each_poll: std::cell::Cell::new(false),
        }
    }

    pub(crate) fn spawn<F: Future + 'static>(&self, future: F) -> JoinHandle<F::Output> {
        let task = TaskRef::new(future, self.inbox.clone());
        let mut tasks = self.tasks.borrow_mut();
        let index = tasks.insert(task.clone());
        self.inbox.counters.tasks_spawned.inc();
        self.inbox.counters.tasks_alive.set(tasks.len() as u64);
        drop(tasks);
        // SAFETY: spawn runs on the core's own thread, the task's owner (T1).
        unsafe { task.header().set_owned_index(index) };
        self.run_queue.borrow_mut().push_back(task.clone());
        JoinHandle::new(task)
    }

    pub(crate) fn push_local(&self, task: TaskRef) {
        self.run_queue.borrow_mut().push_back(task);
    }

    /// Removes a finished or cancelled task from the live list.
    pub(crate) fn forget(&self, task: &TaskRef) {
        // SAFETY: the executor runs on its core's thread, the owner of its tasks (T1).
        if let Some(index) = unsafe { task.header().take_owned_index() } {
            let mut tasks = self.tasks.borrow_mut();
            tasks.try_remove(index);
            self.inbox.counters.tasks_alive.set(tasks.len() as u64);
        }
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.run_queue.borrow().is_empty()
    }

    pub(crate) fn live_tasks(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// Polls up to `budget` ready tasks and returns how many it polled.
    ///
    /// Long polls (over [`LONG_POLL`](crate::metrics::LONG_POLL)) are counted from the clock
    /// readings the loop takes anyway: the loop times each batch as a whole
    /// ([`batch_ended`](Self::batch_ended)); after a batch over `LONG_POLL`, the next batches
    /// time each poll (a tick-clock read per poll) until one stays under it. A long batch timed
    /// as a whole counts as one long poll, even if several of its polls were long: exact for
    /// long polls in separate ticks, a lower bound otherwise.
    pub(crate) fn run(&self, budget: usize, long_poll: &crate::metrics::LongPoll) -> u64 {
        let precise = self.time_each_poll.get();
        let counters = &self.inbox.counters;
        let clock = crate::metrics::clock_ticks;
        let (mut start, limit) = if precise {
            (clock(), long_poll.ticks())
        } else {
            (0, u64::MAX)
        };
        let mut polled = 0;
        for _ in 0..budget {
            let Some(task) = self.run_queue.borrow_mut().pop_front() else {
                break;
            };
            // SAFETY: the executor runs on its core's thread, the owner of every task it holds
            // (T1), and never while another poll of this task is on the stack.
            if unsafe { task.poll() } {
                self.forget(&task);
            }
            polled += 1;
            if precise {
                let now = clock();
                if now.saturating_sub(start) > limit {
                    counters.long_polls.inc();
                }
                start = now;
            }
        }
        counters.tasks_polled.add(polled);
        polled
    }

    /// The loop's timing of the last batch of polls: whether it took longer than `LONG_POLL`.
    pub(crate) fn batch_ended(&self, long: bool) {
        if long && !self.time_each_poll.get() {
            self.inbox.counters.long_polls.inc();
        }
        self.time_each_poll.set(long);
    }

    /// Moves remotely woken tasks to the run queue and runs the jobs sent to this core.
    pub(crate) fn drain_remote(&self) {
        let Some(items) = self.inbox.take() else {
            return;
        };
        for item in items {
            match item {
                Remote::Task(task) => self.push_local(task),
                Remote::Job(job) => job(),
            }
        }
    }

    /// Drops every task's future on this thread, and refuses further jobs.
    pub(crate) fn shutdown(&self) {
        drop(self.inbox.close());
        // Dropping a future may spawn or wake tasks; a few rounds settle it.
        for _ in 0..16 {
            let tasks: Vec<TaskRef> = self.tasks.borrow_mut().drain().collect();
            if tasks.is_empty() {
                break;
            }
            // Unlist them all first: cancelling one may abort another (a drop guard).
            for task in &tasks {
                // SAFETY: shutdown runs on the owner thread (T1).
                unsafe { task.header().take_owned_index() };
            }
            for task in &tasks {
                // SAFETY: shutdown runs on the owner thread (T1), outside any poll.
                unsafe { task.cancel() };
            }
        }
        self.inbox.counters.tasks_alive.set(0);
        self.run_queue.borrow_mut().clear();
        drop(self.inbox.close());
    }
}

/// Yields to the other ready tasks of this core once.
///
/// The task is queued behind every task already runnable; no syscall is made while others
/// are runnable.
///
/// # Examples
/// ```
/// corio::block_on(async { corio::yield_now().await });
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
/// corio::block_on(async {
///     let shared = Rc::new(5); // !Send is fine: the task stays on this core
///     let task = corio::spawn({ let shared = shared.clone(); async move { *shared + 1 } });
///     assert_eq!(task.await.unwrap(), 6);
/// });
/// ```
#[track_caller]
pub fn spawn<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    match crate::context::with_core(|core| core.executor.spawn(future)) {
        Some(handle) => handle,
        None => panic!(
            "corio::spawn called outside a corio core: spawn from inside corio::block_on, a \
             Runtime's future, or a task"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn polls_over_50_us_are_counted_and_short_ones_are_not() {
        crate::block_on(async {
            let before = crate::metrics();
            for _ in 0..1_000 {
                crate::yield_now().await;
            }
            let short = crate::metrics();
            // Wall time: a batch the OS preempts for 50 µs counts too (tests run side by side
            // on two CPUs), so allow one; 1,000 short polls counted would be a bug.
            assert!(short.long_polls - before.long_polls <= 1, "{short:?}");
            assert!(short.tasks_polled >= before.tasks_polled);
            // A task that holds the core for 200 µs on each of 5 polls, waiting for a timer
            // between them (as a task computing between I/O does).
            crate::spawn(async {
                for _ in 0..5 {
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_micros(200) {
                        std::hint::spin_loop();
                    }
                    crate::time::sleep(Duration::from_micros(100)).await;
                }
            })
            .await
            .unwrap();
            let long = crate::metrics().long_polls - short.long_polls;
            // The five 200 µs polls, plus at most two preempted short batches.
            assert!((5..=7).contains(&long), "{long} long polls counted for 5");
        });
    }
}
