//! Atomics and locks from std, or from loom under `--cfg loom`, so that the cross-thread
//! handshakes (the doorbell's park flag, the inbox's remote queue) can be model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;
