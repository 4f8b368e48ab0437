//! `Submitted`: one op's life on the ring once its SQE is queued, written once for [`Op`] and
//! [`MultiOp`]: submit into a slot of the current core's driver, poll that slot, ask for a
//! cancel, and hand the op's resources to the driver if the future is dropped in flight.
//!
//! [`Op`]: super::Op
//! [`MultiOp`]: super::MultiOp

use std::task::{Poll, Waker};

use io_uring::squeue;

use super::{OpCode, Orphaned};
use crate::context;
use crate::driver::{Cqe, Orphan, Slot};

/// An op whose SQE is queued on driver `driver` in slot `id`. Its owner ends it with
/// [`finish`](Self::finish) after the final CQE or [`orphan`](Self::orphan) before it.
pub(crate) struct Submitted {
    id: usize,
    driver: u64,
}

impl Submitted {
    /// Queues the SQE `sqe()` builds in a new slot (`multishot` picks the slot kind), to wake
    /// `waker` on its CQE; `None`, with `sqe` never called, if the ring lacks opcode `code`
    /// (`IORING_OP_*`, checked against the probe). One driver lookup for both.
    ///
    /// # Panics
    /// Outside a corio core.
    pub(crate) fn submit(
        code: u8,
        multishot: bool,
        waker: &Waker,
        sqe: impl FnOnce() -> squeue::Entry,
    ) -> Option<Submitted> {
        context::with_driver(|d| {
            if !d.supports(code) {
                return None;
            }
            let slot = if multishot {
                Slot::Multi {
                    queue: Default::default(),
                    waker: Some(waker.clone()),
                }
            } else {
                Slot::Waiting(Some(waker.clone()))
            };
            let id = d.submit(sqe(), slot);
            Some(Submitted { id, driver: d.id() })
        })
    }

    /// Queues `op` with nobody waiting for it: the driver owns it from now on and runs
    /// [`OpCode::abandoned`] at its CQE. Gives `op` back, never submitted, when this thread has
    /// no free driver (outside a core, or inside the driver running a waker).
    pub(crate) fn detach<T: OpCode>(op: Box<T>) -> Result<(), Box<T>> {
        let mut op = Some(op);
        let pushed = context::try_with_driver(|d| {
            // Box first: the SQE may point into the op itself, which must not move (I1).
            let mut op = op.take().expect("taken once");
            let sqe = op.sqe();
            d.submit(sqe, Slot::Orphaned(Box::new(Orphaned(op))));
        });
        match (pushed, op) {
            (Some(()), _) => Ok(()),
            (None, Some(op)) => Err(op),
            (None, None) => unreachable!("the closure ran but reported no push"),
        }
    }

    /// The op's next CQE, or `Pending` with `waker` stored.
    ///
    /// # Panics
    /// On another core than the one the op was submitted on.
    #[inline]
    pub(crate) fn poll(&self, waker: &Waker) -> Poll<Cqe> {
        context::with_driver(|d| {
            assert_eq!(
                d.id(),
                self.driver,
                "op polled outside the core it was submitted on"
            );
            d.poll(self.id, waker)
        })
    }

    /// Asks the kernel to cancel the op; its future still receives the final CQE.
    pub(crate) fn cancel(&self) {
        context::try_with_driver(|d| {
            if d.id() == self.driver {
                d.cancel(self.id);
            }
        });
    }

    /// The op has seen its final CQE (its slot is free): nothing more to do.
    pub(crate) fn finish(self) {}

    /// Hands a dropped op's resources to the driver it was submitted on, or leaks them if that
    /// driver is not this thread's current one (gone, or busy running this very drop): the
    /// kernel may still touch them, and freeing them would be unsound (driver invariant I1).
    pub(crate) fn orphan(self, orphan: Box<dyn Orphan>) {
        let Submitted { id, driver } = self;
        let mut orphan = Some(orphan);
        let finished = context::try_with_driver(|d| {
            (d.id() == driver).then(|| d.orphan(id, orphan.take().expect("taken once")))
        })
        .flatten();
        if let Some(Some((orphan, cqe))) = finished {
            orphan.finish(cqe);
        }
        if let Some(orphan) = orphan {
            std::mem::forget(orphan);
        }
    }
}
