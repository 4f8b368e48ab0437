//! Handles to cores that any thread may hold: the one door through which work crosses to
//! another core (corio-mesh builds `spawn_on`, channels and `Sharded` on it).
//!
//! A [`CoreHandle`] queues a `Send` closure on its core's remote queue (drained in batches each
//! tick) and pokes the core's doorbell only if it is parked. [`peers`] lists every core of the
//! runtime the calling task runs on.

use std::fmt;
use std::sync::Arc;

use crate::executor::{Inbox, Job};
use crate::CoreId;

/// A `Send + Sync` handle to one core, for sending it work from any thread.
///
/// ```
/// fn send_sync<T: Send + Sync>() {}
/// send_sync::<corio::rt::CoreHandle>();
/// ```
#[derive(Clone)]
pub struct CoreHandle {
    inbox: Arc<Inbox>,
}

impl CoreHandle {
    pub(crate) fn new(inbox: Arc<Inbox>) -> CoreHandle {
        CoreHandle { inbox }
    }

    /// The core's id.
    pub fn id(&self) -> CoreId {
        self.inbox.core
    }

    /// Runs `job` on the core's thread at its next tick (jobs from one sender run in the order
    /// sent). The job typically spawns a task there.
    ///
    /// # Errors
    /// Gives the job back if the core has shut down; it has not run and never will.
    pub fn execute(
        &self,
        job: Box<dyn FnOnce() + Send + 'static>,
    ) -> Result<(), Box<dyn FnOnce() + Send + 'static>> {
        let job: Job = job;
        self.inbox.push_job(job)
    }

    /// Whether the core has shut down (it takes no more jobs).
    pub fn is_closed(&self) -> bool {
        self.inbox.is_closed()
    }
}

impl fmt::Debug for CoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CoreHandle").field(&self.inbox.core).finish()
    }
}

pub(crate) fn set_peers(peers: Arc<[CoreHandle]>) {
    crate::context::with_core(|core| *core.peers.borrow_mut() = Some(peers));
}

/// Every core of the runtime the current task runs on, in core order (index `i` is core `i`).
/// Under [`block_on`](crate::block_on) that is the one core of that loop.
///
/// # Panics
/// Outside a corio core.
///
/// # Examples
/// ```
/// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
/// let counts = rt.run(|_| async { corio::rt::peers().len() });
/// assert_eq!(counts, vec![2, 2]);
/// # std::io::Result::Ok(())
/// ```
#[track_caller]
pub fn peers() -> Arc<[CoreHandle]> {
    let peers = crate::context::with_core(|core| {
        core.peers
            .borrow_mut()
            .get_or_insert_with(|| Arc::from(vec![CoreHandle::new(core.inbox().clone())]))
            .clone()
    });
    match peers {
        Some(peers) => peers,
        None => panic!("corio::peers called outside a corio core"),
    }
}
