//! corio-mesh: routing tasks and messages between cores.
//!
//! Thread-per-core means no shared state by default; work crosses cores only as messages.
//! This crate will provide `spawn_on(core, ..)`, `run_on_all`, bounded channels between cores
//! and `Sharded<T>` (one `T` per core, a key routed to its owning core).
//!
//! **Not yet implemented.** Today corio-rt's [`Runtime::run`](corio_rt::Runtime::run) runs a
//! future on every core and gathers the results; everything else listed above is missing.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub use corio_rt::CoreId;
