//! The slot table: one slot per op in flight, keyed by the SQE's `user_data`.
//!
//! A slot holds what the driver knows about its op between submission and the final CQE: the
//! waker of the task waiting for it, the CQE that finished it (until the op's future observes
//! it), the queued CQEs of a multishot op, or the resources of an op whose future was dropped
//! (an orphan) until the kernel releases them. A slot is freed only when its final CQE has been
//! reaped (driver invariant I2), so a `user_data` is never reused while the kernel may still
//! post to it.

use std::collections::VecDeque;
use std::task::Waker;

use slab::Slab;

use super::Cqe;

/// An op whose future was dropped while the kernel still owned its resources.
///
/// The driver keeps it in the slot and hands it every CQE; after the final one it is moved out
/// of the driver and `finish` runs outside any driver borrow, so dropping its resources may
/// itself use the driver (closing an fd through the ring, say).
pub(crate) trait Orphan {
    /// A non-final CQE of a multishot op (it carries `IORING_CQE_F_MORE`). It must release
    /// whatever resource the CQE carries (an accepted fd, a provided buffer) without touching the
    /// driver.
    fn item(&mut self, cqe: Cqe);
    /// The final CQE: release everything.
    fn finish(self: Box<Self>, cqe: Cqe);
}

/// The state of one in-flight op.
pub(crate) enum Slot {
    /// Single-shot op submitted; its future waits with this waker (none before the first poll).
    Waiting(Option<Waker>),
    /// Single-shot op finished; the future has not observed the CQE yet.
    Done(Cqe),
    /// Multishot op: CQEs not yet taken by its stream (the last one without MORE ends it).
    Multi {
        queue: VecDeque<Cqe>,
        waker: Option<Waker>,
    },
    /// The future was dropped; the kernel still holds the op's resources.
    Orphaned(Box<dyn Orphan>),
}

/// What reaping one CQE into the table did.
pub(crate) enum Reaped {
    /// Nothing more to do.
    Nothing,
    /// Wake this waker, once the driver is no longer borrowed.
    Wake(Waker),
    /// The final CQE of an orphan: run `finish` once the driver is no longer borrowed.
    Orphan(Box<dyn Orphan>, Cqe),
}

/// The slot table.
#[derive(Default)]
pub(crate) struct Slots {
    slab: Slab<Slot>,
}

impl Slots {
    /// Number of ops in flight, orphans included.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    #[inline]
    pub(crate) fn insert(&mut self, slot: Slot) -> usize {
        self.slab.insert(slot)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: usize) -> &mut Slot {
        self.slab
            .get_mut(id)
            .unwrap_or_else(|| unreachable!("I2: slot {id} is not live"))
    }

    #[inline]
    pub(crate) fn remove(&mut self, id: usize) -> Slot {
        self.slab
            .try_remove(id)
            .unwrap_or_else(|| unreachable!("I2: slot {id} freed twice"))
    }

    /// Frees a finished single-shot slot and returns its CQE.
    pub(crate) fn remove_done(&mut self, id: usize) -> Cqe {
        match self.remove(id) {
            Slot::Done(cqe) => cqe,
            _ => unreachable!("slot {id} is not a finished single-shot op"),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Forgets every slot left at shutdown: orphans the kernel never released are leaked, as
    /// freeing memory it may still write would be unsound (I1).
    pub(crate) fn leak_all(&mut self) {
        for slot in std::mem::take(&mut self.slab).drain() {
            if let Slot::Orphaned(orphan) = slot {
                std::mem::forget(orphan);
            }
        }
    }

    /// Ids of every live slot, for cancelling them all at shutdown.
    pub(crate) fn ids(&self) -> Vec<usize> {
        self.slab.iter().map(|(id, _)| id).collect()
    }

    /// Records `cqe` in slot `id` and wakes whoever waits for it.
    #[inline(always)] // the hot path of every completion (measured: out of line costs ~30 instructions)
    pub(crate) fn reap(&mut self, id: usize, cqe: Cqe) -> Reaped {
        let Some(slot) = self.slab.get_mut(id) else {
            unreachable!("I2: CQE for slot {id}, which is not live");
        };
        match slot {
            Slot::Waiting(_) => {
                // Moves the waker out of the old state, leaving nothing in it to drop.
                let Slot::Waiting(waker) = std::mem::replace(slot, Slot::Done(cqe)) else {
                    unreachable!("matched Waiting above")
                };
                return waker.map_or(Reaped::Nothing, Reaped::Wake);
            }
            Slot::Multi { queue, waker } => {
                queue.push_back(cqe);
                if let Some(waker) = waker.take() {
                    return Reaped::Wake(waker);
                }
            }
            Slot::Orphaned(orphan) => {
                if cqe.more() {
                    orphan.item(cqe);
                    return Reaped::Nothing;
                }
                let Slot::Orphaned(orphan) = self.slab.remove(id) else {
                    unreachable!("slot {id} changed state while reaped");
                };
                return Reaped::Orphan(orphan, cqe);
            }
            Slot::Done(_) => unreachable!("I2: second CQE for single-shot slot {id}"),
        }
        Reaped::Nothing
    }
}
