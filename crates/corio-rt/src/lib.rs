//! corio-rt: the per-core event loop of corio, a thread-per-core async runtime on io_uring.
//!
//! Each core is one thread with one io_uring, one executor and one timer store; nothing is
//! shared between cores by default. The ideas are asyncio's: `async fn` coroutines, an event
//! loop ([`block_on`] for one core, [`Runtime`] for all), tasks ([`spawn`]), gathering
//! ([`join!`], [`join_all`]) and timers ([`time`]).
//!
//! Crate map:
//! - `context`: the thread's current core; [`block_on`], [`current_core`], [`in_flight`].
//! - `runtime`: [`Builder`] and [`Runtime`]: threads, pinning, running a future on every core.
//! - `driver`: the ring: setup and probe, the slot table, [`Op`] and [`MultiOp`], the doorbell.
//! - `executor`: tasks, [`JoinHandle`], [`yield_now`], local and remote wake-ups, the budget.
//! - [`time`]: [`time::sleep`], [`time::timeout`], [`time::interval`] and the deadline store.
//! - `handle`: [`CoreHandle`] and [`peers`]: sending work to another core (corio-mesh's base).
//! - `future`: re-exported gathering helpers.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! let total = corio_rt::block_on(async {
//!     let a = corio_rt::spawn(async { 1 });
//!     let b = corio_rt::spawn(async {
//!         corio_rt::time::sleep(Duration::from_millis(1)).await;
//!         2
//!     });
//!     let (a, b) = corio_rt::join!(a, b);
//!     a.unwrap() + b.unwrap()
//! });
//! assert_eq!(total, 3);
//! ```

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, unreachable_pub)]

mod context;
mod driver;
mod executor;
mod future;
mod handle;
mod limits;
mod runtime;
mod sync;
pub mod time;

pub use context::{
    block_on, current_core, in_flight, live_tasks, ring_id, ring_setup, try_current_core,
};
pub use driver::multishot::{MultiOp, MultishotCode};
pub use driver::nop::{nop, Nop};
pub use driver::op::{submit_detached, Cqe, Op, OpCode};
pub use driver::register::{
    buf_ring_head, register_buf_ring, register_buffers, unregister_buf_ring, unregister_buffers,
};
pub use driver::{Poke, Setup};
pub use executor::join::{JoinError, JoinHandle};
pub use executor::{spawn, yield_now};
pub use future::*;
pub use handle::{peers, CoreHandle};
pub use limits::raise_fd_limit;
pub use runtime::{Builder, CoreId, Runtime};
