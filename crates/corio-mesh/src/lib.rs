//! corio-mesh: routing tasks and messages between cores.
//!
//! Thread-per-core means no shared state by default; work crosses cores only as messages, and
//! this crate makes that easy and cheap, in the manner of Seastar's `submit_to` and
//! `sharded<T>`:
//! - [`spawn_on`]: run a future built by a `Send` closure on another core and await its result
//!   here (dropping the handle detaches the task, as with `spawn`; `abort` cancels it);
//!   [`run_on_all`]: the same on every core, gathered in core order.
//! - [`channel()`]: bounded, typed channels between cores; a full channel makes the sender await,
//!   never block its thread; close and disconnect are seen by the other side.
//! - [`Sharded`]: one `T` per core, built inside the runtime or before it (`new_in`);
//!   `with(key, f)` runs `f` on the core that owns `key`, `with_batch` sends many keys in one
//!   message per owning core, `local` touches the current core's `T` with no message. A
//!   cross-core call costs a round trip (about 2 µs to a busy core, 50 to 70 µs to a parked
//!   one): batch them.
//!
//! Everything travels through corio-rt's [`CoreHandle`](corio_rt::CoreHandle): a job on the
//! target core's inbox (drained in batches each tick) and a doorbell poke only if that core is
//! parked (an `IORING_OP_MSG_RING` from the sending core's ring, or an eventfd write). The
//! channel's waiting handshake (`waiters.rs`) is model-checked with loom.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod channel;
mod sharded;
mod spawn;
mod sync;
mod waiters;

pub use channel::channel;
pub use corio_rt::CoreId;
pub use sharded::Sharded;
pub use spawn::{run_on_all, spawn_on, spawn_on_handle, RemoteError, RemoteJoinHandle};
