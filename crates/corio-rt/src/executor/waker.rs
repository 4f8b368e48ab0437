//! Where a woken task goes: onto the local run queue when woken on its own core (no atomics
//! beyond the task's `scheduled` flag), or onto its core's remote queue from any other thread,
//! with a doorbell poke only if that core is parked.

use std::ptr::NonNull;

use super::task::{Header, TaskRef};
use crate::context;

/// Wakes the task `task` refers to, consuming the reference.
pub(crate) fn wake(task: TaskRef) {
    if task.mark_scheduled() {
        schedule(task);
    }
}

/// Wakes the task behind `ptr`, which the caller holds a reference to.
pub(crate) fn wake_by_ref(ptr: NonNull<Header>) {
    // SAFETY of the deref is in TaskRef: `clone_from_ptr` requires a held reference.
    let task = TaskRef::clone_from_ptr(ptr);
    if task.mark_scheduled() {
        schedule(task);
    }
}

/// Queues a task that was just marked scheduled.
pub(crate) fn schedule(task: TaskRef) {
    if let Err(task) = context::push_if_local(task) {
        // Another thread: the reference travels in the owner's remote queue.
        let owner = task.header().owner.clone();
        owner.push_remote_task(task);
    }
}
