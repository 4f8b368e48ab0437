//! Where a woken task goes: onto the local run queue when woken on its own core (no atomics
//! beyond the task's `scheduled` flag), or onto its core's inbox from any other thread, with a
//! doorbell poke only if that core is parked.

use std::sync::Arc;

use super::task::TaskRef;
use crate::context;

/// Wakes the task `task` refers to, consuming the reference.
#[inline]
pub(crate) fn wake(task: TaskRef) {
    if task.mark_scheduled() {
        schedule(task);
    }
}

/// Queues a task that was just marked scheduled.
fn schedule(task: TaskRef) {
    let task = match push_if_local(task) {
        Ok(()) => return,
        Err(task) => task,
    };
    // Another thread: the reference travels in the owner's inbox.
    let owner = task.header().owner.clone();
    owner.push_task(task);
}

/// Queues `task` on this thread's run queue if this thread is its owner core; else gives it
/// back.
fn push_if_local(task: TaskRef) -> Result<(), TaskRef> {
    let mut task = Some(task);
    context::with_core(|core| {
        let owned = Arc::ptr_eq(core.inbox(), &task.as_ref().expect("held").header().owner);
        if owned {
            core.executor.push_local(task.take().expect("held"));
        }
    });
    task.map_or(Ok(()), Err)
}
