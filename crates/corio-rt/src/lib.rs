//! corio-rt: the per-core event loop of corio, a thread-per-core async runtime on io_uring.
//!
//! Each core is one thread with one io_uring, one executor and one timer store; nothing is
//! shared between cores by default. Where io_uring is blocked (a container's seccomp profile,
//! `kernel.io_uring_disabled`), each core runs an epoll driver behind the same API instead:
//! see [`DriverKind`]. The ideas are asyncio's: `async fn` coroutines, an event
//! loop ([`block_on`] for one core, [`Runtime`] for all), tasks ([`spawn`]), gathering
//! ([`join!`], [`join_all`]) and timers ([`time`]).
//!
//! Crate map (each module's doc says more):
//! - `context`: the only thread-local: which core this thread runs; [`current_core`].
//! - `core`: one core (driver, executor, timers) and its loop: tick, park, spin; [`block_on`].
//! - `driver`: a leaf that owns the ring: setup and probe, the slot table, submit and reap, the
//!   doorbell (eventfd, MSG_RING, park flag), and the [`FaultPlan`] it can carry out; the
//!   epoll backend ([`DriverKind`]) that carries out the same SQEs where io_uring is blocked.
//! - `op`: [`Op`] and [`MultiOp`] over one submitted-op helper; [`OpCode`], [`MultishotCode`],
//!   [`Cancellable`], [`nop`].
//! - `executor`: tasks (`task.rs`, state bits behind `Header`), [`JoinHandle`], wakers, the
//!   inbox other threads send to, [`yield_now`], the budget.
//! - [`time`]: [`time::sleep`], [`time::timeout`], [`time::timeout_or_cancel`],
//!   [`time::interval`] and the deadline store.
//! - `handle`: [`CoreHandle`] and [`peers`]: sending work to another core (corio-mesh's base).
//! - `metrics`: per-core counters, [`metrics`] and [`Runtime::metrics`].
//! - `register`: provided-buffer rings and fixed buffers registered with the current ring.
//! - `runtime`: [`Builder`] and [`Runtime`]: threads, pinning, running a future on every core.
//! - `future`: re-exported gathering helpers.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! let total = corio::block_on(async {
//!     let a = corio::spawn(async { 1 });
//!     let b = corio::spawn(async {
//!         corio::time::sleep(Duration::from_millis(1)).await;
//!         2
//!     });
//!     let (a, b) = corio::join!(a, b);
//!     a.unwrap() + b.unwrap()
//! });
//! assert_eq!(total, 3);
//! ```

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, unreachable_pub)]

mod context;
mod core;
mod driver;
mod executor;
mod future;
mod handle;
mod limits;
mod metrics;
mod op;
mod register;
mod run;
mod runtime;
pub mod signal;
mod sync;
#[cfg(test)]
mod testing;
pub mod time;

pub use crate::core::{block_on, driver_kind, in_flight, live_tasks, ring_id, ring_setup};
pub use context::{current_core, try_current_core};
pub use driver::{DriverKind, FaultPlan, Poke, Setup};
pub use executor::join::{JoinError, JoinHandle};
pub use executor::{spawn, yield_now};
#[doc(hidden)]
pub use future::__private;
pub use future::{join_all, select, try_join_all, Either};
pub use futures_util::{join, pin_mut, try_join};
pub use handle::{peers, CoreHandle};
pub use limits::raise_fd_limit;
pub use metrics::{metrics, Metrics, LONG_POLL};
pub use op::{nop, submit_detached, Cancellable, Cqe, MultiOp, MultishotCode, Nop, Op, OpCode};
pub use register::{
    buf_ring_head, register_buf_ring, register_buffers, unregister_buf_ring, unregister_buffers,
};
pub use run::{stop, RunError, StopHandle};
pub use runtime::{Builder, CoreId, Runtime};
pub use std::pin::pin;
